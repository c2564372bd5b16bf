// The evolve search page: search, open a document, mark results. Talks only to the server that served it.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const HANGUL = /[\u1100-\u11ff\u3130-\u318f\uac00-\ud7af]/;
  const langOf = (text) => (HANGUL.test(text || "") ? "ko" : "en");

  // A stable, random id for this browser (UBI client_id); no personal data.
  function clientId() {
    let id = localStorage.getItem("evolve.client_id");
    if (!id) {
      id = "web-" + Array.from(crypto.getRandomValues(new Uint8Array(8)), (b) => b.toString(16).padStart(2, "0")).join("");
      localStorage.setItem("evolve.client_id", id);
    }
    return id;
  }

  // With --api-key-env the server wants a bearer key: ask once, keep it for this tab.
  function apiKey() { return sessionStorage.getItem("evolve.api_key") || ""; }

  async function call(method, path, body) {
    for (let attempt = 0; attempt < 2; attempt++) {
      const headers = { "Accept": "application/json" };
      if (body !== undefined) headers["Content-Type"] = "application/json";
      if (apiKey()) headers["Authorization"] = "Bearer " + apiKey();
      const resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
      if (resp.status === 401 && attempt === 0) {
        const key = window.prompt("이 서버는 키가 필요합니다 · This server needs its API key:");
        if (!key) throw new Error("an API key is needed");
        sessionStorage.setItem("evolve.api_key", key.trim());
        continue;
      }
      const data = await resp.json().catch(() => ({ error: resp.statusText }));
      if (!resp.ok) throw new Error(data.error || resp.statusText);
      return data;
    }
    throw new Error("the API key was not accepted");
  }

  let current = null; // {query_id, results}

  function setStatus(text) { $("status").textContent = text; }

  async function mark(action, button, hit) {
    const body = { query_id: current.query_id, action_name: action, client_id: clientId() };
    if (hit) { body.object_id = hit.doc_id; body.position = hit.rank; }
    try {
      await call("POST", "/v1/feedback", body);
      if (button) button.setAttribute("aria-pressed", "true");
      setStatus("저장했습니다 · saved: " + action.replace("_", " "));
    } catch (err) {
      setStatus("저장 못 함 · not saved: " + err.message);
    }
  }

  // The document's URL: its id as one encoded path segment. The server decodes %2F back to "/"; a literal "/"
  // would let the browser resolve "." and ".." segments of an id ("notes/../secret") before the request leaves.
  function documentUrl(docId) {
    return "/v1/documents/" + encodeURIComponent(docId);
  }

  async function openDocument(hit, event) {
    if (event && (event.ctrlKey || event.metaKey || event.shiftKey || event.button === 1)) {
      mark("click", null, hit); // a new tab: record the click, let the browser open the link
      return;
    }
    if (event) event.preventDefault();
    await mark("click", null, hit);
    try {
      const doc = await call("GET", documentUrl(hit.doc_id));
      $("doc-title").textContent = doc.title || doc.doc_id;
      $("doc-title").lang = langOf(doc.title || doc.text);
      $("doc-id").textContent = doc.doc_id;
      $("doc-text").textContent = doc.text;
      $("doc-text").lang = langOf(doc.text);
      $("doc").hidden = false;
      $("doc").scrollIntoView({ block: "start" });
    } catch (err) {
      setStatus("문서를 열 수 없음 · could not open the document: " + err.message);
    }
  }

  function render(data) {
    const list = $("results");
    list.replaceChildren();
    $("doc").hidden = true;
    for (const hit of data.results) {
      const li = document.createElement("li");
      li.dataset.docId = hit.doc_id;
      li.lang = langOf(hit.title + " " + hit.snippet);
      const a = document.createElement("a");
      a.className = "title";
      a.href = documentUrl(hit.doc_id);
      a.textContent = hit.title || hit.doc_id;
      a.addEventListener("click", (ev) => openDocument(hit, ev));
      const meta = document.createElement("span");
      meta.className = "meta";
      meta.lang = "en";
      meta.textContent = hit.doc_id + " · score " + hit.score.toFixed(4);
      const snippet = document.createElement("p");
      snippet.className = "snippet";
      snippet.textContent = hit.snippet;
      const marks = document.createElement("div");
      marks.className = "marks";
      for (const [action, label] of [["useful", "유용함 · useful"], ["not_useful", "도움 안 됨 · not useful"],
                                     ["answered", "이게 답이에요 · this answered it"]]) {
        const b = document.createElement("button");
        b.type = "button";
        b.dataset.action = action;
        b.setAttribute("aria-pressed", "false");
        b.textContent = label;
        b.addEventListener("click", () => mark(action, b, hit));
        marks.appendChild(b);
      }
      li.append(a, meta, snippet, marks);
      list.appendChild(li);
    }
    $("query-actions").hidden = data.results.length === 0;
    $("no-answer").setAttribute("aria-pressed", "false");
  }

  $("search").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const q = $("q").value.trim();
    if (!q) return;
    $("q").lang = langOf(q);
    setStatus("검색 중 · searching…");
    try {
      const data = await call("POST", "/v1/retrieve", { query: q, k: 10, client_id: clientId() });
      current = data;
      render(data);
      setStatus(data.results.length + " results in " + Math.round(data.took_ms) + " ms · config " + data.config_version);
    } catch (err) {
      setStatus("검색 실패 · search failed: " + err.message);
    }
  });
  $("no-answer").addEventListener("click", () => current && mark("no_answer", $("no-answer"), null));
  $("doc-close").addEventListener("click", () => { $("doc").hidden = true; });

  call("GET", "/v1/version").then((v) => {
    $("version").textContent = v.dataset + " · " + v.n_documents + " documents · champion " + v.config_version +
      (v.challenger ? " (interleaved with a challenger)" : "");
  }).catch(() => {});
})();
