"""Issue 13 (loaders): a team's own documents as a dataset: Notion exports, tickets through a field mapping,
Zammad tickets, dataset manifests, corpus-only datasets, and the cache re-embedding nothing for moved pages.

Fixtures are written by the tests (tests/fixtures_notion.py follows Notion's "Markdown & CSV" export layout;
the Zammad JSON follows its REST API's ticket and article objects)."""

from __future__ import annotations

import io
import json
import unicodedata
import zipfile
from pathlib import Path

import pytest
from conftest import expect_one_line, run_cli
from fixtures_notion import Database, Page, Row, export_files, notion_id, write_folder, write_part_zips, write_zip
from fixtures_team import TEAM_TICKETS, write_team_corpus

from evolve.datasets import Dataset, Document, drop_dangling, load_dataset, read_manifest
from evolve.errors import DatasetError

LONG = "A very long request title that Notion cuts short in the file name of the page"


def wiki() -> list:
    """A small workspace: nested pages, Korean titles, a cross-link, a database (stub, CSV, _all.csv, rows)."""
    return [
        Page("팀 위키", "팀 위키 첫 페이지입니다.", [
            Page("VPN 설정 가이드", "VPN은 GlobalProtect로 접속합니다.", [
                Page("인증서 갱신", "인증서는 매년 3월에 갱신합니다."),
            ], links=["Deploy Guide"]),
            Page("Deploy Guide", "Deploys run on Tuesdays and Thursdays at 2 pm."),
            Database("요청 DB", ["Name", "상태", "담당자"], [
                Row("노트북 교체 요청", {"상태": "완료", "담당자": "김민수"}, "배터리 불량으로 교체했습니다."),
                Row(LONG, {"상태": "진행", "담당자": "Lee"}, "Waiting for the vendor.", file_title=LONG[:40]),
                Row("모니터 요청", {"상태": "대기", "담당자": "박지은"}, has_page=False),
                Row("권한 요청", {"상태": "진행", "담당자": ""}, "스테이징 권한을 요청합니다."),
            ], view_rows=2),
        ]),
    ]


PAGE = {t: notion_id("page:" + t) for t in ("팀 위키", "VPN 설정 가이드", "인증서 갱신", "Deploy Guide")}
ROW = {t: notion_id("row:" + t) for t in ("노트북 교체 요청", LONG, "모니터 요청", "권한 요청")}
DB_ID = notion_id("db:요청 DB")


@pytest.fixture(scope="module")
def files() -> dict[str, bytes]:
    out = export_files(wiki())
    out[f"팀 위키 {PAGE['팀 위키']}/{'0' * 32}.md"] = b""  # an untitled, empty page
    return out


@pytest.fixture(scope="module")
def notion_zip(tmp_path_factory, files) -> Path:
    return write_zip(files, tmp_path_factory.mktemp("notion") / "Export-9f2c.zip", nfd=True)


@pytest.fixture(scope="module")
def notion(notion_zip) -> Dataset:
    return load_dataset(notion_zip)


def _nfc(text: str) -> bool:
    return unicodedata.is_normalized("NFC", text)


# ----------------------------------------------------------------------------- Notion


def test_notion_zip_pages_become_documents(notion, notion_zip):
    ds = notion
    # every page once; the database's stub page is not a document, its rows are; the empty page is dropped
    assert set(ds.corpus) == {*PAGE.values(), ROW["노트북 교체 요청"], ROW[LONG], ROW["권한 요청"]}
    assert ds.qrels == {} and ds.queries == {} and ds.splits == []
    assert ds.name == "Export-9f2c"
    vpn = ds.corpus[PAGE["VPN 설정 가이드"]]
    # links to the sub-page and to another page become their text (their paths are not content)
    assert (vpn.title, vpn.text) == ("VPN 설정 가이드", "VPN은 GlobalProtect로 접속합니다.\n\n인증서 갱신\nDeploy Guide")
    assert vpn.metadata == {"source": "notion", "path": "팀 위키",
                            "file": f"팀 위키 {PAGE['팀 위키']}/VPN 설정 가이드 {PAGE['VPN 설정 가이드']}.md",
                            "url": f"https://www.notion.so/{PAGE['VPN 설정 가이드']}"}
    assert ds.corpus[PAGE["인증서 갱신"]].metadata["path"] == "팀 위키/VPN 설정 가이드"
    assert ds.corpus[PAGE["팀 위키"]].metadata["path"] == ""
    # a row page: its property lines are metadata, not text; the heading gives the title Notion's file name cut
    row = ds.corpus[ROW["노트북 교체 요청"]]
    assert row == Document(ROW["노트북 교체 요청"], "노트북 교체 요청", "배터리 불량으로 교체했습니다.")
    assert row.metadata["properties"] == {"상태": "완료", "담당자": "김민수"}
    assert row.metadata["database"] == "요청 DB" and row.metadata["path"] == "팀 위키/요청 DB"
    assert ds.corpus[ROW[LONG]].title == LONG
    # the _all.csv (every row) gives properties, not the view's CSV (2 rows): '권한 요청' is only in _all,
    # and its empty cell is there although the page has no line for it
    assert ds.corpus[ROW["권한 요청"]].metadata["properties"] == {"상태": "진행", "담당자": ""}
    assert sum(d.title == "노트북 교체 요청" for d in ds.corpus.values()) == 1
    all_csv = unicodedata.normalize("NFD", f"팀 위키 {PAGE['팀 위키']}/요청 DB {DB_ID}_all.csv")
    where = f"{notion_zip}!{all_csv}"
    assert ds.warnings == [f"{where}: skipped 1 database row(s) without a page file (matched by title): '모니터 요청'",
                           f"dropped 1 empty document(s): '{'0' * 32}'"]
    # the zip's names were NFD (made on a Mac): everything is NFC
    for doc in ds.corpus.values():
        assert _nfc(doc.id) and _nfc(doc.title) and _nfc(doc.text) and _nfc(doc.metadata["path"])


def test_notion_unpacked_folder_is_the_same_export(notion, files, tmp_path):
    folder = write_folder(files, tmp_path / "unpacked", nfd=True)
    ds = load_dataset(folder)
    assert ds.corpus_fingerprint() == notion.corpus_fingerprint()
    assert {d: doc.metadata for d, doc in ds.corpus.items()} == {d: doc.metadata for d, doc in notion.corpus.items()}
    assert len(ds.warnings) == 2


def test_notion_nested_part_zips_and_legacy_names(notion, files, tmp_path):
    korean = next(n for n in files if n.endswith(f"{PAGE['인증서 갱신']}.md"))
    row = next(n for n in files if n.endswith(f"{ROW['노트북 교체 요청']}.md"))
    outer = write_part_zips(files, tmp_path / "Export-big.zip", n_parts=2, legacy={korean: "utf-8", row: "cp949"})
    # the fixture really wrote entries without the UTF-8 flag: zipfile alone reads them as cp437 mojibake
    with zipfile.ZipFile(outer) as zf:
        assert [n for n in zf.namelist()] == ["Export-5c1e4f2a-9b7d-4e3a-8f61-2d0c9a7b3e10-Part-1.zip",
                                              "Export-5c1e4f2a-9b7d-4e3a-8f61-2d0c9a7b3e10-Part-2.zip"]
        infos = [i for part in zf.namelist() for i in zipfile.ZipFile(io.BytesIO(zf.read(part))).infolist()]
    legacy = [i for i in infos if not i.flag_bits & 0x800 and not i.filename.isascii()]
    assert len(legacy) == 2 and korean not in {i.filename for i in legacy} and row not in {i.filename for i in legacy}
    ds = load_dataset(outer)
    assert ds.corpus_fingerprint() == notion.corpus_fingerprint()
    assert ds.corpus[PAGE["인증서 갱신"]].metadata["file"] == korean
    assert ds.corpus[ROW["노트북 교체 요청"]].metadata["properties"] == {"상태": "완료", "담당자": "김민수"}


def test_notion_broken_inputs(tmp_path, files):
    bad = tmp_path / "broken.zip"
    bad.write_bytes(b"PK\x03\x04 this is not really a zip")
    expect_one_line(lambda: load_dataset(bad), str(bad), "expected a zip archive, got a damaged or non-zip file",
                    exc=DatasetError)
    outer = tmp_path / "outer.zip"
    with zipfile.ZipFile(outer, "w") as zf:
        zf.writestr("Export-1234abcd-Part-1.zip", b"garbage")
    expect_one_line(lambda: load_dataset(outer), f"{outer}!Export-1234abcd-Part-1.zip:", "expected a zip archive",
                    exc=DatasetError)
    dup = dict(files)
    first = next(n for n in files if n.endswith(f"{PAGE['Deploy Guide']}.md"))
    dup[f"Elsewhere/Deploy Guide copy {PAGE['Deploy Guide']}.md"] = b"# Deploy Guide\n\nagain\n"
    path = write_zip(dup, tmp_path / "dup.zip")
    expect_one_line(lambda: load_dataset(path), f"duplicate Notion page id '{PAGE['Deploy Guide']}'", first,
                    exc=DatasetError)
    undecodable = write_zip({f"Page {'a' * 32}.md": "# 제목".encode("cp949")}, tmp_path / "cp949.zip")
    expect_one_line(lambda: load_dataset(undecodable), f"Page {'a' * 32}.md:", "expected UTF-8 text", exc=DatasetError)


# ----------------------------------------------------------------------------- moved pages embed nothing new


def test_moved_pages_embed_nothing_new(tmp_path):
    """The same pages in other folders: same corpus fingerprint, and a real evaluation through the cache embeds
    no document again (a page's own text, not where it sits, is content). One edited page embeds exactly one."""
    from evolve.cache import EmbeddingCache
    from evolve.config import PipelineConfig
    from evolve.embedders import EmbedderPool
    from evolve.pipeline import evaluate_config

    def pages(layout: str, vpn_text: str = "VPN은 GlobalProtect로 접속합니다.") -> list:
        vpn = Page("VPN 설정 가이드", vpn_text, links=["Deploy Guide"])
        deploy = Page("Deploy Guide", "Deploys run on Tuesdays and Thursdays at 2 pm.")
        leave = Page("휴가 신청", "휴가는 그룹웨어에서 신청합니다.")
        if layout == "before":
            return [Page("IT", "IT 안내.", [vpn, deploy]), Page("인사", "인사 안내.", [leave])]
        return [Page("IT", "IT 안내.", [Page("인사", "인사 안내.", [leave, Page("Archive", "Old pages.", [deploy])])]),
                Page("Archive 2023", "Pages from 2023.", [vpn])]

    def dataset(layout: str, **kw) -> Dataset:
        path = write_zip(export_files(pages(layout, **kw), child_links=False), tmp_path / f"{layout}-{len(kw)}.zip")
        ds = load_dataset(path)
        vpn, deploy = notion_id("page:VPN 설정 가이드"), notion_id("page:Deploy Guide")
        gold = {"q1": {vpn: 1}, "q2": {deploy: 1}}
        return Dataset(ds.name, ds.source, ds.corpus, {"q1": "VPN 접속 방법", "q2": "when are deploys"}, {"test": gold})

    before, after = dataset("before"), dataset("after")
    vpn_id = notion_id("page:VPN 설정 가이드")
    assert before.corpus[vpn_id].metadata["path"] == "IT" and after.corpus[vpn_id].metadata["path"] == "Archive 2023"
    moved_ids = set(before.corpus)
    same = Dataset("x", "x", {d: after.corpus[d] for d in moved_ids}, {}, {})
    assert same.corpus_fingerprint() == before.corpus_fingerprint()  # the moved pages: content unchanged
    cache, pool = EmbeddingCache(tmp_path / "embeddings.sqlite"), EmbedderPool()  # one MiniLM load
    try:
        first = evaluate_config(PipelineConfig(), before, "test", cache=cache, embedders=pool)
        assert first.cache.n_embedded == len(before.corpus) + 2 == 7  # 5 pages + 2 queries
        moved = evaluate_config(PipelineConfig(), after, "test", cache=cache, embedders=pool)
        assert moved.cache.n_embedded == 2 == len(after.corpus) - len(before.corpus)  # the two new folder pages only
        edited = evaluate_config(PipelineConfig(), dataset("after", vpn_text="VPN은 새 클라이언트로 접속합니다."),
                                 "test", cache=cache, embedders=pool)
        assert edited.cache.n_embedded == 1
    finally:
        pool.close()
        cache.close()


# ----------------------------------------------------------------------------- Zammad


def _zammad_ticket(number: str, title: str, articles: list[dict], **extra) -> dict:
    return {"id": int(number) - 22000, "number": number, "title": title, "group": "IT", "state": "closed",
            "priority": "2 normal", "created_at": "2024-05-02T09:00:00.000Z", **extra, "articles": articles}


def _article(i: int, body: str, *, html: bool = False, internal: bool = False, sender: str = "Customer") -> dict:
    return {"id": i, "ticket_id": 1, "from": "Kim", "subject": "", "body": body, "sender": sender,
            "content_type": "text/html" if html else "text/plain", "type": "note" if internal else "email",
            "internal": internal, "created_at": f"2024-05-02T09:{i:02d}:00.000Z"}


@pytest.fixture
def zammad_folder(tmp_path) -> Path:
    folder = tmp_path / "zammad"
    folder.mkdir()
    tickets = [
        _zammad_ticket("22001", "VPN 접속 불가", [
            _article(3, "인증서를 재발급 받으세요.", sender="Agent"),
            _article(1, "<p>VPN이 <b>안 됩니다</b>.<br>오류: 인증 실패&nbsp;입니다</p>", html=True),
            _article(2, "고객 인증서 만료 확인함 (내부 메모)", internal=True, sender="Agent"),
        ], tags=["vpn"]),
        _zammad_ticket("22002", "Printer offline", [_article(4, "The printer on floor 7 is offline.")]),
    ]
    (folder / "tickets.json").write_text(json.dumps(tickets, ensure_ascii=False), encoding="utf-8")
    # GET /api/v1/tickets/3?all=true: the ticket and its articles as assets
    assets = {"ticket_id": 3, "ticket_article_ids": [5], "assets": {
        "Ticket": {"3": _zammad_ticket("22003", "Wi-Fi drops", [])},
        "TicketArticle": {"5": {**_article(5, "CORP-5G drops every few minutes."), "ticket_id": 3}},
    }}
    (folder / "ticket-3.json").write_text(json.dumps(assets), encoding="utf-8")
    return folder


def _manifest(folder: Path, text: str, name: str = "dataset.yaml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_zammad_tickets(zammad_folder, tmp_path):
    ds = load_dataset(_manifest(tmp_path, "format: zammad\npath: zammad\n", "helpdesk.yaml"))
    assert ds.name == "helpdesk" and ds.source == str(tmp_path / "helpdesk.yaml")
    assert sorted(ds.corpus) == ["22001", "22002", "22003"]
    vpn = ds.corpus["22001"]
    # articles in the order they were written, HTML as text, the internal note dropped
    assert vpn == Document("22001", "VPN 접속 불가", "VPN이 안 됩니다.\n오류: 인증 실패 입니다\n\n인증서를 재발급 받으세요.")
    assert vpn.metadata["properties"] == {"number": "22001", "id": 1, "state": "closed", "priority": "2 normal",
                                          "group": "IT", "tags": ["vpn"], "created_at": "2024-05-02T09:00:00.000Z"}
    assert vpn.metadata["internal_notes_dropped"] == 1 and vpn.metadata["source"] == "zammad"
    assert ds.corpus["22003"].text == "CORP-5G drops every few minutes."
    kept = load_dataset(_manifest(tmp_path, "format: zammad\npath: zammad\ninternal_notes: keep\n"))
    assert "고객 인증서 만료 확인함 (내부 메모)" in kept.corpus["22001"].text
    assert kept.corpus_fingerprint() != ds.corpus_fingerprint()
    by_id = load_dataset(_manifest(tmp_path, "format: zammad\npath: zammad/tickets.json\nid_field: id\n"))
    assert sorted(by_id.corpus) == ["1", "2"]


def test_zammad_errors(zammad_folder, tmp_path):
    (zammad_folder / "again.json").write_text(json.dumps(_zammad_ticket("22002", "dup", [])))
    m = _manifest(tmp_path, "format: zammad\npath: zammad\n")
    expect_one_line(lambda: load_dataset(m), str(zammad_folder / "tickets.json"), "duplicate ticket number '22002'",
                    f"first seen in {zammad_folder / 'again.json'}", exc=DatasetError)
    (zammad_folder / "again.json").write_text(json.dumps({"hello": 1}))
    expect_one_line(lambda: load_dataset(m), "expected a Zammad ticket", "got an object with keys hello", exc=DatasetError)


# ----------------------------------------------------------------------------- tickets through a mapping


TICKETS_CSV = ("\ufeffticket_id,subject,body,answer,status\n"
               "T-1,휴가 신청 오류,휴가 신청 버튼이 안 눌립니다.,캐시를 지우고 다시 시도하세요.,closed\n"
               'T-2,Deploy failed,"The deploy stopped at\ncanary.",Re-run the canary check.,open\n'
               "T-3,결재선 변경,,결재선은 그룹웨어 설정에서 바꿉니다.,closed\n")


def test_mapped_csv_through_a_manifest(tmp_path):
    exports = tmp_path / "exports"
    exports.mkdir()
    (exports / "tickets.csv").write_text(TICKETS_CSV, encoding="utf-8")
    m = _manifest(tmp_path, "name: helpdesk\nformat: tickets\npath: exports/tickets.csv\n"
                            "fields: {id: ticket_id, title: subject, text: [body, answer], properties: status}\n")
    ds = load_dataset(m)
    assert ds.name == "helpdesk" and sorted(ds.corpus) == ["T-1", "T-2", "T-3"]
    assert ds.corpus["T-1"] == Document("T-1", "휴가 신청 오류", "휴가 신청 버튼이 안 눌립니다.\n\n캐시를 지우고 다시 시도하세요.")
    assert ds.corpus["T-2"].text == "The deploy stopped at\ncanary.\n\nRe-run the canary check."
    assert ds.corpus["T-3"].text == "결재선은 그룹웨어 설정에서 바꿉니다."
    assert ds.corpus["T-2"].metadata == {"source": "tickets", "properties": {"status": "open"}}
    # a manifest's own parse: the short form is one source
    assert [s.format for s in read_manifest(m).sources] == ["tickets"]


def test_channel_io_mapping_from_the_docs(tmp_path):
    """The Channel.io example of docs/datasets.md: one user chat a line with its messages."""
    chats = [
        {"id": "6643a1", "name": "VPN 문의", "tags": ["vpn"], "state": "closed",
         "messages": [{"personType": "user", "plainText": "VPN이 연결되지 않아요."},
                      {"personType": "manager", "plainText": "인증서를 재발급해 주세요."}]},
        {"id": "6643a2", "name": "Printer", "tags": [], "state": "opened",
         "messages": [{"personType": "user", "plainText": "The printer is offline."}]},
    ]
    (tmp_path / "userchats.jsonl").write_text("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in chats))
    docs = Path(__file__).resolve().parents[1] / "docs" / "datasets.md"
    example = docs.read_text(encoding="utf-8").split("<!-- channel-io -->")[1].split("```yaml")[1].split("```")[0]
    ds = load_dataset(_manifest(tmp_path, example, "channel.yaml"))
    assert ds.corpus["6643a1"] == Document("6643a1", "VPN 문의", "VPN이 연결되지 않아요.\n\n인증서를 재발급해 주세요.")
    assert ds.corpus["6643a1"].metadata["properties"] == {"tags": ["vpn"], "state": "closed"}


def test_ticket_mapping_errors(tmp_path):
    (tmp_path / "t.csv").write_text(TICKETS_CSV, encoding="utf-8")
    m = _manifest(tmp_path, "format: tickets\npath: t.csv\nfields: {id: ticket_id, title: subjct, text: body}\n")
    expect_one_line(lambda: load_dataset(m), f"{tmp_path / 't.csv'}:1:", "expected a column 'subjct' (mapped as title)",
                    "did you mean 'subject'?", exc=DatasetError)
    lines = ['{"id": 1, "subject": "a", "articles": [{"body": "x"}]}', '{"id": 2, "subject": "b", "articles": []}',
             '{"id": 1, "subject": "c"}']
    (tmp_path / "t.jsonl").write_text("\n".join(lines) + "\n")
    m = _manifest(tmp_path, "format: tickets\npath: t.jsonl\nfields: {id: id, title: subject, text: articles.*.body}\n")
    expect_one_line(lambda: load_dataset(m), f"{tmp_path / 't.jsonl'}:3:", "duplicate document id '1'",
                    "first seen on line 1", exc=DatasetError)
    m = _manifest(tmp_path, "format: tickets\npath: t.jsonl\nfields: {id: id, text: articles.*.bdy}\n")
    (tmp_path / "t.jsonl").write_text("\n".join(lines[:2]) + "\n")
    expect_one_line(lambda: load_dataset(m), "expected the field 'articles.*.bdy' (mapped as text) in some record",
                    "did you mean 'articles.*.body'?", exc=DatasetError)
    (tmp_path / "t.jsonl").write_text(lines[0] + "\n" + '{"subject": "no id"}\n')
    expect_one_line(lambda: load_dataset(m), f"{tmp_path / 't.jsonl'}:2:", "expected one id at 'id', got none",
                    exc=DatasetError)
    (tmp_path / "k.csv").write_bytes("ticket_id,subject,body\nK-1,휴가,신청\n".encode("cp949"))
    m = _manifest(tmp_path, "format: tickets\npath: k.csv\nfields: {id: ticket_id, text: body}\n")
    expect_one_line(lambda: load_dataset(m), f"{tmp_path / 'k.csv'}:2:", "set 'encoding: cp949'", exc=DatasetError)
    m = _manifest(tmp_path, "format: tickets\npath: k.csv\nencoding: cp949\nfields: {id: ticket_id, text: body}\n")
    assert load_dataset(m).corpus["K-1"].text == "신청"
    expect_one_line(lambda: load_dataset(tmp_path / "t.jsonl"), "expected a dataset manifest naming this file's fields",
                    exc=DatasetError)


# ----------------------------------------------------------------------------- manifests


@pytest.mark.parametrize(("text", "parts"), [
    ("format: zammad\npath: z\ninternal_note: keep\n", ["unknown manifest key 'internal_note'",
                                                         "did you mean 'internal_notes'?"]),
    ("format: notoin\npath: x.zip\n", ["expected a format, one of notion, tickets, zammad, beir, folder, squad",
                                       "got 'notoin'", "did you mean 'notion'?"]),
    ("path: x.zip\n", ["expected a format, one of notion", "got none"]),
    ("format: tickets\npath: t.csv\n", ["expected the key 'fields', got none"]),
    ("format: tickets\npath: t.csv\nfields: {id: a, text: b, titel: c}\n", ["unknown manifest key 'titel' in fields",
                                                                          "did you mean 'title'?"]),
    ("name: x\nsources:\n  - {format: notion, path: a.zip}\n  - {format: folder, path: b, id_prefx: x}\n",
     ["unknown manifest key 'id_prefx' in sources[1]", "did you mean 'id_prefix'?"]),
    ("format: zammad\npath: z\ninternal_notes: hide\n", ["internal_notes: expected 'drop' or 'keep', got 'hide'"]),
    ("format: notion\npath: missing.zip\n", ["path: expected 'missing.zip' to exist"]),
    ("- a\n- b\n", ["expected a mapping with 'format' and 'path' (or 'sources'), got list"]),
    ("format: notion\n  path: [\n", ["expected valid YAML"]),
])
def test_manifest_errors(tmp_path, text, parts):
    m = _manifest(tmp_path, text)
    expect_one_line(lambda: load_dataset(m), str(m), *parts, exc=DatasetError)


def test_manifest_with_several_sources(tmp_path, zammad_folder, notion_zip):
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "corpus.jsonl").write_text('{"_id": "22001", "text": "a BEIR doc with a clashing id"}\n')
    text = ("name: team\nsources:\n  - {format: notion, path: %s, name: wiki}\n  - {format: zammad, path: zammad}\n"
            "  - {format: beir, path: corpus%s}\n")
    m = _manifest(tmp_path, text % (notion_zip, ""))
    expect_one_line(lambda: load_dataset(m), "duplicate document id '22001' in sources[2] (beir) and sources[1] (zammad)",
                    "set id_prefix on one of them", exc=DatasetError)
    ds = load_dataset(_manifest(tmp_path, text % (notion_zip, ", id_prefix: 'kb-'")))
    assert ds.name == "team" and "kb-22001" in ds.corpus and "22001" in ds.corpus
    sources = {d.metadata["source"] for d in ds.corpus.values()}
    assert sources == {"wiki", "zammad", "beir"}
    assert len(ds.corpus) == 7 + 3 + 1


# ----------------------------------------------------------------------------- a corpus alone


def test_corpus_alone_is_a_dataset_and_gold_is_asked_for(tmp_path):
    beir = tmp_path / "beir"
    beir.mkdir()
    (beir / "corpus.jsonl").write_text('{"_id": "d1", "text": "alpha"}\n{"_id": "d2", "title": "B", "text": ""}\n')
    folder = tmp_path / "notes"
    (folder / "docs" / "sub").mkdir(parents=True)
    (folder / "docs" / "sub" / "a.md").write_text("# A\n\ntext a\n")
    for path, n in ((beir, 2), (folder, 1)):
        ds = load_dataset(path)
        assert len(ds.corpus) == n and ds.qrels == {} and ds.splits == []
        expect_one_line(ds.require_gold, f"dataset {path.name} has no judged queries: expected --gold DIR "
                        "(see `evolve gold generate`)", exc=DatasetError)
        expect_one_line(lambda ds=ds: ds.split_qrels("test"), "has no judged queries", exc=DatasetError)
    assert load_dataset(folder).corpus["sub/a"].metadata == {"source": "folder", "path": "sub"}


def test_drop_dangling_for_gold_readers():
    kept, messages = drop_dangling({"q1": {"d1": 1, "gone": 2}, "q2": {"gone": 1}, "q9": {"d1": 1}},
                                   {"q1": "x", "q2": "y"}, {"d1"}, label="gold folder /g")
    assert kept == {"q1": {"d1": 1}}
    assert messages == ["gold folder /g: dropped qrels of 1 unknown quer(y/ies): 'q9'",
                        "gold folder /g: dropped qrels pointing at 1 unknown document(s): 'gone'"]


# ----------------------------------------------------------------------------- the team fixture


def test_team_fixture_corpus(tmp_path):
    team = write_team_corpus(tmp_path / "team")
    ds = load_dataset(team.manifest)
    assert ds.warnings == [] and ds.qrels == {}
    assert set(ds.corpus) == set(team.languages) and 40 <= team.n_documents <= 80
    langs = list(team.languages.values())
    assert langs.count("ko") >= 15 and langs.count("en") >= 15
    assert {d.metadata["source"] for d in ds.corpus.values()} == {"wiki", "helpdesk"}
    assert sum(d.metadata["source"] == "helpdesk" for d in ds.corpus.values()) == len(TEAM_TICKETS)
    assert ds.corpus_fingerprint() == load_dataset(write_team_corpus(tmp_path / "again").manifest).corpus_fingerprint()


# ----------------------------------------------------------------------------- the command line


def test_cli_dataset_info_exact(tmp_path):
    (tmp_path / "t.csv").write_text(TICKETS_CSV, encoding="utf-8")
    m = _manifest(tmp_path, "format: tickets\npath: t.csv\nname: desk\nfields: {id: ticket_id, title: subject, text: body}\n")
    ds = load_dataset(m)
    proc = run_cli("dataset", "info", "--dataset", str(m))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (
        "dataset      desk\n"
        f"source       {m}\n"
        "documents    3 (tickets 3)\n"
        "queries      0\n"
        "judged       none (a corpus alone: gold comes from --gold DIR, see `evolve gold generate`)\n"
        f"corpus       {ds.corpus_fingerprint()}\n"
        "gold         -\n"
        f"fingerprint  {ds.fingerprint}\n"
    )
    assert proc.stderr == ""
    proc = run_cli("eval", "--dataset", str(m), "--workspace", str(tmp_path / "ws"))
    assert proc.returncode == 2
    assert proc.stderr == (f"error: {m}: dataset desk has no judged queries: expected --gold DIR "
                           "(see `evolve gold generate`)\n")


def _broken(tmp_path: Path, case: str) -> tuple[Path, list[str]]:
    if case == "bad zip":
        bad = tmp_path / "export.zip"
        bad.write_bytes(b"not a zip at all")
        return bad, [f"{bad}: expected a zip archive, got a damaged or non-zip file"]
    if case == "missing mapped column":
        (tmp_path / "t.csv").write_text(TICKETS_CSV, encoding="utf-8")
        m = _manifest(tmp_path, "format: tickets\npath: t.csv\nfields: {id: ticket_id, text: [body, anwser]}\n")
        return m, [f"{tmp_path / 't.csv'}:1: expected a column 'anwser' (mapped as text)", "did you mean 'answer'?"]
    if case == "duplicate id":
        (tmp_path / "t.csv").write_text(TICKETS_CSV + "T-2,again,body,,open\n", encoding="utf-8")
        m = _manifest(tmp_path, "format: tickets\npath: t.csv\nfields: {id: ticket_id, text: body}\n")
        return m, [f"{tmp_path / 't.csv'}:6: duplicate document id 'T-2' (first seen on line 3)"]
    (tmp_path / "t.jsonl").write_text('{"id": 1, "body": "x"}\n{"id": 2, "body": \n')
    m = _manifest(tmp_path, "format: tickets\npath: t.jsonl\nfields: {id: id, text: body}\n")
    return m, [f"{tmp_path / 't.jsonl'}:2: expected one JSON object per line, got malformed JSON"]


@pytest.mark.parametrize("case", ["bad zip", "missing mapped column", "duplicate id", "malformed line"])
def test_cli_broken_inputs_one_line_exit_2(tmp_path, case):
    path, parts = _broken(tmp_path, case)
    proc = run_cli("dataset", "info", "--dataset", str(path))
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr
    for p in parts:
        assert p in lines[0], (p, lines[0])
    assert proc.stdout == ""


# ----------------------------------------------------------------------------- source links (metadata["url"])


def test_notion_pages_link_to_notion_and_the_base_changes_no_fingerprint(tmp_path):
    team = write_team_corpus(tmp_path / "team")
    ds = load_dataset(team.manifest)
    wiki = [d for d in ds.corpus.values() if d.metadata["source"] == "wiki"]
    assert wiki
    # the page id as Notion writes it in links: 32 lower-case hex digits, no dashes (the fixture's ids are md5s)
    assert all(len(d.id) == 32 and d.metadata["url"] == f"https://www.notion.so/{d.id}" for d in wiki)
    # an export read without a manifest links the same way
    direct = load_dataset(team.notion_zip)
    assert all(d.metadata["url"] == f"https://www.notion.so/{d.id}" for d in direct.corpus.values())
    text = team.manifest.read_text(encoding="utf-8").replace("    name: wiki\n",
                                                               "    name: wiki\n    url_base: https://wiki.example.com/n/\n")
    other = load_dataset(_manifest(team.root, text, "team-proxy.yaml"))
    assert all(other.corpus[d.id].metadata["url"] == f"https://wiki.example.com/n/{d.id}" for d in wiki)
    assert other.corpus_fingerprint() == ds.corpus_fingerprint() and other.fingerprint == ds.fingerprint
    bad = _manifest(team.root, text.replace("https://wiki.example.com/n/", "wiki.example.com"), "bad.yaml")
    expect_one_line(lambda: load_dataset(bad), "url_base", "expected an http(s) URL", "got 'wiki.example.com'",
                    exc=Exception)


def test_tickets_take_their_link_from_a_url_field_mapping(tmp_path):
    team = write_team_corpus(tmp_path / "team")
    records = [json.loads(line) for line in team.tickets.read_text(encoding="utf-8").splitlines()]
    linked = {r["id"]: f"https://helpdesk.example.com/tickets/{r['id']}" for r in records[::2]}
    for r in records:
        if r["id"] in linked:
            r["link"] = linked[r["id"]]
    team.tickets.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    plain = load_dataset(team.manifest)
    text = team.manifest.read_text(encoding="utf-8").replace("      properties: [status, channel, tags]\n",
                                                               "      properties: [status, channel, tags]\n      url: link\n")
    ds = load_dataset(_manifest(team.root, text, "team-links.yaml"))
    got = {d: doc.metadata["url"] for d, doc in ds.corpus.items() if "url" in doc.metadata and doc.metadata["source"] == "helpdesk"}
    assert got == linked  # a record without the field has no link
    assert ds.corpus_fingerprint() == plain.corpus_fingerprint() and ds.fingerprint == plain.fingerprint
    # a mapped field that no record holds is the mapping's usual one-line error
    missing = _manifest(team.root, text.replace("url: link", "url: lnk"), "team-typo.yaml")
    expect_one_line(lambda: load_dataset(missing), "expected the field 'lnk' (mapped as url) in some record",
                    exc=DatasetError)


def test_zammad_tickets_link_to_their_page_with_a_url_base(zammad_folder, tmp_path):
    plain = load_dataset(_manifest(tmp_path, "format: zammad\npath: zammad\n"))
    assert all("url" not in d.metadata for d in plain.corpus.values())  # no base, no link: Zammad's host is unknown
    ds = load_dataset(_manifest(tmp_path, "format: zammad\npath: zammad\nurl_base: https://helpdesk.example.com/\n",
                                "linked.yaml"))
    # the web UI's ticket page, by Zammad's internal id (22001 is id 1), whatever the document id is
    assert {d: doc.metadata["url"] for d, doc in ds.corpus.items()} == {
        "22001": "https://helpdesk.example.com/#ticket/zoom/1",
        "22002": "https://helpdesk.example.com/#ticket/zoom/2",
        "22003": "https://helpdesk.example.com/#ticket/zoom/3",
    }
    assert ds.corpus_fingerprint() == plain.corpus_fingerprint() and ds.fingerprint == plain.fingerprint
    other = load_dataset(_manifest(tmp_path, "format: zammad\npath: zammad\nurl_base: https://zammad.example.org\n",
                                   "other.yaml"))
    assert other.corpus["22002"].metadata["url"] == "https://zammad.example.org/#ticket/zoom/2"
    assert other.fingerprint == ds.fingerprint
