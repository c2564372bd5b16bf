"""A team-like corpus for end-to-end tests: a Korean/English platform team's Notion wiki and helpdesk tickets.

:func:`write_team_corpus` writes into a folder:

- ``notion-export.zip``: a Notion "Markdown & CSV" export (nested pages, Korean titles, a FAQ database with
  stub page, CSV, ``_all.csv`` and row pages), written by :mod:`fixtures_notion`;
- ``tickets.jsonl``: helpdesk tickets (subject, body, replies; Korean and English);
- ``team.yaml``: the dataset manifest naming both (``--dataset <folder>/team.yaml``).

Every document is short and answers something a colleague would ask (VPN, 결재, 휴가 신청, 배포 절차, ...).
The content is fixed, so fingerprints are stable across runs. No queries or qrels: gold comes from ``--gold``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from fixtures_notion import Database, Page, Row, export_files, write_zip

__all__ = ["TeamCorpus", "write_team_corpus", "team_pages", "TEAM_TICKETS"]


def team_pages() -> list[Page | Database]:
    """The wiki: three top-level pages with sub-pages, and the helpdesk FAQ database."""
    it = Page("IT 헬프데스크", "사내 IT 지원 안내 페이지입니다. 문제가 해결되지 않으면 #it-help 채널에 문의하거나 티켓을 남겨 주세요.", [
        Page("VPN 접속 가이드", "사내 VPN은 GlobalProtect 클라이언트로 접속합니다. 포털 주소는 vpn.example.co.kr 이며 "
             "사번과 SSO 비밀번호로 로그인합니다. 접속 후 내부 위키와 배포 콘솔을 사용할 수 있습니다.", [
                 Page("VPN 인증서 갱신", "VPN 인증서는 매년 3월에 만료됩니다. 만료 2주 전에 메일로 안내가 오며, "
                      "셀프서비스 포털의 '인증서 재발급' 메뉴에서 새 인증서를 내려받아 설치하면 됩니다."),
                 Page("macOS에서 VPN 연결 오류", "macOS 업데이트 후 VPN이 '게이트웨이에 연결할 수 없음' 오류를 내면 "
                      "시스템 설정 > 개인정보 보호 및 보안에서 GlobalProtect 시스템 확장을 허용하고 재부팅하세요."),
             ]),
        Page("Wi-Fi and Network", "Connect to the CORP-5G network with your SSO account. Guests use CORP-GUEST with "
             "the daily password posted at the reception desk. Wired ports on the 7th floor need a registered MAC address."),
        Page("비밀번호 초기화", "SSO 비밀번호를 잊었다면 로그인 화면의 '비밀번호 찾기'에서 휴대폰 인증 후 재설정합니다. "
             "5회 이상 틀리면 계정이 30분간 잠깁니다."),
        Page("Laptop Setup for New Hires", "New laptops arrive with the base image installed. On the first day, "
             "enroll the device in MDM, install the VPN client and request access to GitHub through the access portal."),
    ])
    eng = Page("Engineering Handbook", "How the platform team builds, ships and operates services.", [
        Page("Deployment Procedure", "Production deploys run through the release pipeline. Merge to main, wait for "
             "the staging canary to stay green for 30 minutes, then press Promote in the deploy console. "
             "Deploys are frozen on Fridays after 4 pm.", [
                 Page("Rollback Checklist", "To roll back, select the previous release in the deploy console and "
                      "press Rollback. Then post in #incidents, check error rates on the dashboard and open a "
                      "postmortem ticket within one business day."),
             ]),
        Page("배포 절차 (운영 환경)", "운영 배포는 화요일과 목요일 오후 2시에 진행합니다. 배포 전 변경 요청서를 전자 결재로 "
             "올리고 팀장 승인을 받아야 하며, 배포 후 30분 동안 모니터링 대시보드를 확인합니다."),
        Page("On-call Rotation", "The on-call engineer is paged by PagerDuty for SEV1 and SEV2 alerts. Rotations "
             "last one week and hand over on Monday at 10 am; swaps are agreed in #oncall."),
        Page("코드 리뷰 규칙", "모든 PR은 최소 1명의 승인이 필요합니다. 300줄이 넘는 변경은 나누어 올리고, "
             "리뷰 요청 후 하루 안에 응답하는 것을 원칙으로 합니다."),
    ])
    hr = Page("인사 · 총무", "휴가, 결재, 경비 처리 등 인사·총무 업무 안내입니다.", [
        Page("휴가 신청 방법", "연차 휴가는 그룹웨어의 근태 메뉴에서 신청합니다. 3일 이상 연속 휴가는 2주 전까지 신청하고 "
             "팀장 승인을 받아야 합니다. 반차는 오전 또는 오후 4시간 단위입니다."),
        Page("전자 결재 사용법", "전자 결재는 그룹웨어 > 결재 > 새 결재에서 양식을 고른 뒤 결재선을 지정해 상신합니다. "
             "반려된 문서는 수정 후 재상신할 수 있고, 긴급 건은 '긴급' 표시를 체크합니다."),
        Page("Expense Reports", "Submit expense reports in the finance portal within 30 days, with a photo of each "
             "receipt. Meals over 50,000 KRW per person need a short business reason."),
        Page("법인카드 사용 규정", "법인카드는 업무 목적으로만 사용하며, 사용 후 3일 안에 영수증을 경비 시스템에 등록합니다. "
             "주말 사용은 사전 승인이 필요합니다."),
    ])
    faq = Database("헬프데스크 FAQ", ["Name", "카테고리", "담당팀", "상태"], [
        Row("프린터가 인쇄되지 않아요", {"카테고리": "장비", "담당팀": "IT", "상태": "게시"},
            "프린터 목록에서 'FL7-Printer'를 삭제한 뒤 다시 추가하세요. 그래도 안 되면 드라이버를 재설치합니다."),
        Row("How do I get access to the staging cluster?", {"카테고리": "Access", "담당팀": "Platform", "상태": "게시"},
            "Request the 'staging-developer' role in the access portal. Your team lead approves it, and kubectl "
            "credentials are issued through the SSO login command."),
        Row("회의실 예약은 어떻게 하나요?", {"카테고리": "총무", "담당팀": "총무", "상태": "게시"},
            "그룹웨어 일정에서 회의실을 선택해 예약합니다. 4시간 이상 예약은 총무팀 확인이 필요합니다."),
        Row("Where can I find the on-call schedule?", {"카테고리": "Engineering", "담당팀": "Platform", "상태": "게시"},
            "The schedule lives in PagerDuty under the 'platform-primary' service. The current on-call is also "
            "shown in the #oncall channel topic."),
        Row("모니터 추가 지급 신청", {"카테고리": "장비", "담당팀": "IT", "상태": "게시"},
            "모니터는 1인당 2대까지 지급됩니다. 헬프데스크 포털에서 '장비 요청' 양식을 제출하세요."),
        Row("How do I reset MFA on a new phone?", {"카테고리": "Account", "담당팀": "IT", "상태": "게시"},
            "Open the SSO self-service page, choose 'Reset MFA' and verify with your employee ID. Then scan the new "
            "QR code with the authenticator app."),
        Row("급여 명세서는 어디서 보나요?", {"카테고리": "인사", "담당팀": "인사", "상태": "게시"},
            "매월 25일에 그룹웨어 > 인사 > 급여 명세서에서 확인할 수 있습니다."),
        Row("Can I install software myself?", {"카테고리": "Equipment", "담당팀": "IT", "상태": "게시"},
            "Apps from the self-service catalog install without approval. Anything else needs a software request "
            "ticket so security can review the license."),
    ], view_rows=6)
    return [it, eng, hr, faq]


#: (id, lang, subject, body, replies): helpdesk tickets as the team's ticket export writes them
TEAM_TICKETS: list[tuple[str, str, str, str, list[str]]] = [
    ("HD-1001", "ko", "VPN 접속이 갑자기 안 됩니다", "오늘 아침부터 VPN 연결 시 인증 실패가 뜹니다.",
     ["인증서가 만료되었습니다. 셀프서비스 포털에서 인증서를 재발급 받아 설치해 주세요."]),
    ("HD-1002", "en", "Cannot connect to VPN from home", "The GlobalProtect client keeps spinning on 'connecting'.",
     ["Your home router blocks UDP 4501. Switch the client to SSL mode under Settings > Connection."]),
    ("HD-1003", "ko", "휴가 신청 승인자가 잘못 지정됨", "휴가 신청서의 승인자가 이전 팀장님으로 되어 있습니다.",
     ["조직 개편 정보가 반영되지 않았습니다. 인사팀에서 결재선을 수정했으니 다시 신청해 주세요."]),
    ("HD-1004", "en", "Deploy stuck at canary stage", "My release has been in canary for two hours.",
     ["The canary waits for a green error-rate check. The check was failing on a flaky probe; we re-ran it and "
      "the release promoted."]),
    ("HD-1005", "ko", "전자 결재 문서가 사라졌어요", "상신한 결재 문서가 목록에 보이지 않습니다.",
     ["반려된 문서는 '반려함'으로 이동합니다. 반려함에서 수정 후 재상신하시면 됩니다."]),
    ("HD-1006", "en", "Need access to production logs", "I need to read production logs for an incident.",
     ["Request the 'prod-logs-reader' role in the access portal; on-call engineers get it approved within an hour."]),
    ("HD-1007", "ko", "노트북 배터리가 빨리 닳아요", "지급받은 노트북 배터리가 2시간도 못 갑니다.",
     ["배터리 상태 점검 결과 교체 대상입니다. IT 데스크(7층)에 방문하시면 당일 교체해 드립니다."]),
    ("HD-1008", "en", "Expense report rejected", "My taxi receipt was rejected in the finance portal.",
     ["Taxi rides need the start and end address in the description. Add them and resubmit."]),
    ("HD-1009", "ko", "배포 롤백 방법 문의", "방금 배포한 버전에서 오류가 나서 롤백하고 싶습니다.",
     ["배포 콘솔에서 이전 릴리스를 선택하고 Rollback을 누르세요. 이후 #incidents 채널에 공유 부탁드립니다."]),
    ("HD-1010", "en", "Locked out after password attempts", "I typed my password wrong and now I cannot log in.",
     ["The account unlocks automatically after 30 minutes, or reset the password from the login page."]),
    ("HD-1011", "ko", "법인카드 영수증 등록 기한", "출장 중 사용한 법인카드 영수증은 언제까지 등록해야 하나요?",
     ["사용 후 3일 안에 경비 시스템에 등록해야 합니다. 출장 중이면 복귀 후 3일 안에 등록하셔도 됩니다."]),
    ("HD-1012", "en", "Wi-Fi keeps dropping on the 5th floor", "CORP-5G disconnects every few minutes.",
     ["An access point on the 5th floor was faulty and has been replaced. Forget the network and reconnect."]),
    ("HD-1013", "ko", "신규 입사자 계정 생성 요청", "다음 주 월요일 입사자의 계정을 미리 만들어 주세요.",
     ["입사 3일 전까지 인사팀 요청이 있으면 계정이 자동 생성됩니다. 입사 당일 SSO 초기 비밀번호가 문자로 발송됩니다."]),
    ("HD-1014", "en", "GitHub access for a contractor", "A contractor needs read access to one repository.",
     ["Contractors get access through an outside-collaborator invite. File an access request with the repository "
      "name and the end date of the contract."]),
    ("HD-1015", "ko", "회의실 화상회의 장비 고장", "12층 회의실 카메라가 인식되지 않습니다.",
     ["USB 허브 전원이 빠져 있었습니다. 다시 연결했으니 확인 부탁드립니다."]),
    ("HD-1016", "en", "How to request a second monitor", "Can I get another monitor for my desk?",
     ["Yes, up to two monitors per person. Use the equipment request form in the helpdesk portal."]),
    ("HD-1017", "ko", "반차 사용 단위 문의", "반차를 2시간 단위로 쓸 수 있나요?",
     ["반차는 오전 또는 오후 4시간 단위로만 사용할 수 있습니다. 2시간 단위는 시간 연차를 이용하세요."]),
    ("HD-1018", "en", "MFA codes not accepted", "The authenticator codes are rejected on login.",
     ["Your phone clock was out of sync. Enable automatic time and the codes will work again."]),
    ("HD-1019", "ko", "스테이징 클러스터 권한 요청", "스테이징 클러스터에 kubectl로 접근이 안 됩니다.",
     ["접근 포털에서 'staging-developer' 권한을 신청하고 팀장 승인을 받으면 SSO 로그인으로 자격 증명이 발급됩니다."]),
    ("HD-1020", "en", "Printer prints blank pages", "The 7th floor printer outputs empty sheets.",
     ["The toner cartridge was empty. Facilities replaced it; printing works again."]),
    ("HD-1021", "ko", "급여 명세서 조회 오류", "그룹웨어에서 급여 명세서 메뉴가 보이지 않습니다.",
     ["권한 동기화 오류였습니다. 조치 완료되었으니 로그아웃 후 다시 로그인해 주세요."]),
    ("HD-1022", "en", "Freeze exception for a Friday deploy", "We need to ship a hotfix on Friday evening.",
     ["Friday deploys after 4 pm need a freeze exception approved by the engineering manager on call. Attach "
      "the incident link to the change request."]),
    ("HD-1023", "ko", "사내 Wi-Fi 게스트 비밀번호", "외부 손님용 Wi-Fi 비밀번호를 알고 싶습니다.",
     ["CORP-GUEST 비밀번호는 매일 바뀌며 안내 데스크에 게시되어 있습니다."]),
    ("HD-1024", "en", "On-call swap next week", "I need to swap my on-call week with a colleague.",
     ["Agree the swap in #oncall and update the override in PagerDuty; the rotation itself stays unchanged."]),
]


@dataclass
class TeamCorpus:
    """Where :func:`write_team_corpus` put things, and what a loader should find."""

    root: Path
    manifest: Path
    notion_zip: Path
    tickets: Path
    #: document id -> "ko" or "en"
    languages: dict[str, str] = field(default_factory=dict)

    @property
    def n_documents(self) -> int:
        return len(self.languages)


def _lang(text: str) -> str:
    hangul = sum(1 for ch in text if "\uac00" <= ch <= "\ud7a3")
    return "ko" if hangul >= 2 else "en"


MANIFEST = """\
# evolve dataset manifest: the platform team's wiki and helpdesk tickets
name: team
sources:
  - format: notion
    path: notion-export.zip
    name: wiki
  - format: tickets
    path: tickets.jsonl
    name: helpdesk
    fields:
      id: id
      title: subject
      text: [body, "replies.*.body"]
      properties: [status, channel, tags]
"""


def write_team_corpus(folder: Path) -> TeamCorpus:
    """Write the corpus (a Notion export zip, tickets JSONL, the manifest) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    pages = team_pages()
    files = export_files(pages)
    notion_zip = write_zip(files, folder / "notion-export.zip")
    languages: dict[str, str] = {}

    def walk(node) -> None:
        if isinstance(node, Database):
            for r in node.rows:
                languages[r.id] = _lang(r.title + r.body)
            return
        languages[node.id] = _lang(node.title + node.body)
        for c in node.children:
            walk(c)

    for p in pages:
        walk(p)
    lines = []
    for i, (tid, lang, subject, body, replies) in enumerate(TEAM_TICKETS):
        lines.append(json.dumps({
            "id": tid, "subject": subject, "body": body,
            "status": "closed" if i % 3 else "open", "channel": "web" if i % 2 else "email",
            "tags": ["vpn"] if "VPN" in subject else [],
            "replies": [{"author": "helpdesk", "body": r} for r in replies],
        }, ensure_ascii=False))
        languages[tid] = lang
    tickets = folder / "tickets.jsonl"
    tickets.write_text("\n".join(lines) + "\n", encoding="utf-8")
    manifest = folder / "team.yaml"
    manifest.write_text(MANIFEST, encoding="utf-8")
    return TeamCorpus(folder, manifest, notion_zip, tickets, languages)
