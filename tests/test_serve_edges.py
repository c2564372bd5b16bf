"""Cases `evolve serve` had no test for (issue 19, defect 17): markup in a document's title or text (the page shows
it as text, in a real Chromium), and document ids holding ``/``, ``..`` or ``%2F`` on ``/v1/documents/{id}``.
(A search that times out during a swap is in test_serve_parts.py: it needs a stalled embedding endpoint.)

The server is the app `evolve serve` runs, in this process (``InProcessServer``), over a BEIR folder whose ids
and texts are the hostile ones."""

from __future__ import annotations

import http.client
import json
import os
from pathlib import Path

import pytest
from serve_helpers import InProcessServer, get, post

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]

MARKUP_TITLE = '<img src=x onerror="window.__xss=1">Release <b>notes</b>'
MARKUP_TEXT = ('<script>window.__xss=2</script> release checklist &amp; <i>steps</i> '
               '<a href="javascript:window.__xss=3">open</a> <iframe src="/"></iframe>')
DOCS = {
    "team/vpn-guide": ("VPN guide", "vpn certificate error reissue the certificate"),
    "notes/../secret": ("Quarterly notes", "quarterly budget planning notes for the team"),
    "../../pyproject.toml": ("Not a file", "parent path lookalike document about lookalikes"),
    "a%2Fb": ("Percent id", "percent encoded identifier document"),
    "markup": (MARKUP_TITLE, MARKUP_TEXT),
    "plain": ("Printer offline", "restart the spooler when the printer is offline"),
}


@pytest.fixture(scope="module")
def edge_server(tmp_path_factory):
    base = tmp_path_factory.mktemp("serve-edges")
    folder = base / "beir"
    (folder / "qrels").mkdir(parents=True)
    with open(folder / "corpus.jsonl", "w", encoding="utf-8") as fh:
        for doc_id, (title, text) in DOCS.items():
            fh.write(json.dumps({"_id": doc_id, "title": title, "text": text}, ensure_ascii=False) + "\n")
    (folder / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "printer offline"}) + "\n")
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\tplain\t1\n")
    ws = base / "ws"
    ws.mkdir()
    (ws / "champion.yaml").write_text("retrieval:\n  mode: sparse\n  top_k: 100\nsparse:\n  tokenizer: regex\n")
    with InProcessServer(ws, folder) as srv:
        yield srv


def _one_line_404(resp, *parts: str) -> None:
    assert resp.status_code == 404, (resp.status_code, resp.text)
    body = resp.json()
    assert list(body) == ["error"] and "\n" not in body["error"], body
    for p in parts:
        assert p in body["error"], (p, body)


def test_document_ids_with_slashes_dots_and_percent(edge_server):
    """An id is one path segment once decoded: ``/`` (literal or %2F), ``..`` and a literal ``%2F`` in an id all
    reach the document; a path that climbs out of /v1/documents/ is a one-line 404 from the corpus, never a file."""
    u = edge_server.url + "/v1/documents/"
    for path, doc_id in (("team/vpn-guide", "team/vpn-guide"), ("team%2Fvpn-guide", "team/vpn-guide"),
                         ("notes%2F..%2Fsecret", "notes/../secret"), ("..%2F..%2Fpyproject.toml", "../../pyproject.toml"),
                         ("a%252Fb", "a%2Fb")):
        r = get(u + path)
        assert r.status_code == 200, (path, r.text)
        assert r.json()["doc_id"] == doc_id and r.json()["text"] == DOCS[doc_id][1], path
    _one_line_404(get(u + "a%2Fb"), "unknown 'a/b'")  # %2F decodes to "/": the id "a/b" is not in the corpus
    # raw request lines, as a client that does not normalise dot segments sends them: the decoded path after
    # /v1/documents/ is looked up as an id of the corpus, and nothing else
    host, port = edge_server.url.removeprefix("http://").split(":")
    for raw, doc_id in (("/v1/documents/../../static/app.js", None), ("/v1/documents/../../../../etc/passwd", None),
                        ("/v1/documents/notes/./../secret", None), ("/v1/documents/notes/../secret", "notes/../secret"),
                        ("/v1/documents/%2e%2e/%2e%2e/pyproject.toml", "../../pyproject.toml")):
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        try:
            conn.request("GET", raw)
            resp = conn.getresponse()
            body = resp.read().decode()
        finally:
            conn.close()
        data = json.loads(body)
        if doc_id is None:
            assert resp.status == 404, (raw, resp.status, body[:200])
            assert list(data) == ["error"] and "expected a document of the served corpus" in data["error"], (raw, data)
        else:
            assert resp.status == 200 and data["doc_id"] == doc_id and data["text"] == DOCS[doc_id][1], (raw, data)
        assert "root:" not in body and "function" not in body and "[project]" not in body
    r = post(edge_server.url + "/v1/retrieve", {"query": "printer offline", "k": 3})
    assert r.status_code == 200 and r.json()["results"][0]["doc_id"] == "plain"  # still serving


def test_markup_in_titles_and_text_is_shown_as_text(edge_server):
    """The page in Debian's Chromium: a title and a snippet full of markup show as the characters they are (no
    element made, no script run), in the list and in the opened document; documents whose ids hold ``/``,
    ``..`` and ``%2F`` open from the page."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail("CI must have Debian's chromium (.ci/run installs it)")
        pytest.skip("needs /usr/bin/chromium (apt-get install -y chromium fonts-noto-cjk)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            dialogs: list[str] = []
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(edge_server.url + "/")
            page.wait_for_function("document.getElementById('version').textContent.includes('documents')")
            page.fill("#q", "release checklist steps")
            page.press("#q", "Enter")
            hit = page.locator("#results li[data-doc-id=markup]")
            hit.wait_for()
            assert hit.locator("a.title").inner_text() == MARKUP_TITLE
            assert "<script>window.__xss=2</script>" in hit.locator("p.snippet").inner_text()
            assert page.locator("#results img, #results script, #results b, #results iframe, #results i").count() == 0
            hit.locator("a.title").click()
            page.locator("#doc").wait_for(state="visible")
            assert page.locator("#doc-title").inner_text() == MARKUP_TITLE
            assert page.locator("#doc-text").inner_text() == MARKUP_TEXT
            assert page.locator("#doc img, #doc script, #doc iframe, #doc a[href^=javascript]").count() == 0
            assert page.evaluate("window.__xss === undefined") and not dialogs

            for query, doc_id in (("quarterly budget planning", "notes/../secret"),
                                  ("parent path lookalike", "../../pyproject.toml"),
                                  ("percent encoded identifier", "a%2Fb"), ("vpn certificate", "team/vpn-guide")):
                page.fill("#q", query)
                page.press("#q", "Enter")
                # the list of the previous question stays until this one's arrives: wait for this one's
                page.wait_for_function("(id) => { const li = document.querySelector('#results li');"
                                       " return li !== null && li.dataset.docId === id; }", arg=doc_id,
                                       timeout=30_000)
                first = page.locator("#results li").first
                assert first.get_attribute("data-doc-id") == doc_id
                first.locator("a.title").click()
                page.locator("#doc").wait_for(state="visible")
                page.wait_for_function("(id) => document.getElementById('doc-id').textContent === id", arg=doc_id,
                                       timeout=10_000)
                assert page.locator("#doc-text").inner_text() == DOCS[doc_id][1], doc_id
        finally:
            browser.close()
