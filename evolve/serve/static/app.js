// The evolve search page: search, read the streamed answer and its sources, open a document or a cited passage,
// mark results and answers. Talks only to the server that served it. Every text from the server is put into the
// page as text (textContent, text nodes), never as HTML.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const HANGUL = /[\u1100-\u11ff\u3130-\u318f\uac00-\ud7af]/;
  const langOf = (text) => (HANGUL.test(text || "") ? "ko" : "en");
  // [1], and groups the model writes as [1, 2] or [1; 2] (the checker reads the same forms)
  const MARKER = /\[\s*(\d{1,3}(?:\s*[,;]\s*\d{1,3})*)\s*\]/g;

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

  function askForKey() {
    const key = window.prompt("이 서버는 키가 필요합니다 · This server needs its API key:");
    if (!key) throw new Error("an API key is needed");
    sessionStorage.setItem("evolve.api_key", key.trim());
  }

  // fetch with the JSON body and the bearer key; a 401 asks for the key once and tries again
  async function send(method, path, body, accept, signal) {
    for (let attempt = 0; attempt < 2; attempt++) {
      const headers = { "Accept": accept };
      if (body !== undefined) headers["Content-Type"] = "application/json";
      if (apiKey()) headers["Authorization"] = "Bearer " + apiKey();
      const resp = await fetch(path, { method, headers, signal, body: body === undefined ? undefined : JSON.stringify(body) });
      if (resp.status === 401 && attempt === 0) {
        askForKey();
        continue;
      }
      return resp;
    }
    throw new Error("the API key was not accepted");
  }

  async function call(method, path, body) {
    const resp = await send(method, path, body, "application/json");
    const data = await resp.json().catch(() => ({ error: resp.statusText }));
    if (!resp.ok) throw new Error(data.error || resp.statusText);
    return data;
  }

  // Server-sent events from a POST reply (EventSource cannot POST): blocks separated by a blank line, each with
  // `event:` and `data:` lines (several data lines join with a newline; lines starting with ':' are comments).
  async function* sseEvents(resp) {
    const reader = resp.body.getReader();
    const decoder = new TextDecoder("utf-8");
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      buffer += done ? decoder.decode() : decoder.decode(value, { stream: true });
      buffer = buffer.replace(/\r\n?/g, "\n");
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        let event = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (!line || line.startsWith(":")) continue;
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          const val = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
          if (field === "event") event = val;
          else if (field === "data") data.push(val);
        }
        if (data.length) yield { event, data: JSON.parse(data.join("\n")) };
      }
      if (done) return;
    }
  }

  let current = null;  // the result list shown: {query_id, results}
  let answer = null;   // the answer shown: {query_id, passages, text, final, pending}
  let inflight = null; // the AbortController of the search in progress

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

  // a link to a document's original (Notion, a ticket): only http(s), opened in a new tab on a click, never fetched
  function safeUrl(url) { return typeof url === "string" && /^https?:\/\//i.test(url) ? url : null; }

  function originalLink(url, className) {
    const a = document.createElement("a");
    if (className) a.className = className;
    a.href = url;
    a.target = "_blank";
    a.rel = "noopener noreferrer";
    a.textContent = "원문 · original";
    return a;
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
      $("doc-id").replaceChildren(document.createTextNode(doc.doc_id));
      const url = safeUrl(doc.url);
      if (url) $("doc-id").append(document.createTextNode(" · "), originalLink(url));
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

  async function searchList(q) {
    const data = await call("POST", "/v1/retrieve", { query: q, k: 10, client_id: clientId() });
    current = data;
    render(data);
    setStatus(data.results.length + " results in " + Math.round(data.took_ms) + " ms · config " + data.config_version);
  }

  // ---------------------------------------------------------------- the answer

  const STATE_LABELS = {
    retrieving: "찾는 중 · searching…",
    writing: "쓰는 중 · writing…",
    done: "",
    refused: "찾지 못함 · not found in these documents",
    failed: "답변 실패 · no answer",
  };

  function setAnswerState(state) {
    $("answer").dataset.state = state;
    $("answer-state").textContent = STATE_LABELS[state] || "";
  }

  function answerNotice(text) {
    $("answer-notice").textContent = text;
    $("answer-notice").hidden = false;
  }


  function passageOf(n) { return answer && answer.passages.find((p) => p.marker === n); }

  function citedMarkers() {
    return new Set(answer && answer.final ? answer.final.citations.map((c) => c.marker) : []);
  }

  async function recordCitation(n) {
    const p = passageOf(n);
    if (!p || !citedMarkers().has(n)) return; // only the answer's citations are citation clicks
    try {
      await call("POST", "/v1/feedback", { query_id: answer.query_id, action_name: "citation_click",
                                          object_id: p.doc_id, position: n, client_id: clientId() });
    } catch (err) {
      setStatus("저장 못 함 · not saved: " + err.message);
    }
  }

  function openPassage(n, event) {
    if (event) event.preventDefault();
    const p = passageOf(n);
    if (!p) return;
    $("passage-title").textContent = "[" + n + "] " + (p.title || p.doc_id);
    $("passage-title").lang = langOf(p.title || p.passage);
    const meta = $("passage-meta");
    meta.replaceChildren(document.createTextNode(p.doc_id));
    const url = safeUrl(p.url);
    if (url) meta.append(document.createTextNode(" · "), originalLink(url));
    $("passage-text").textContent = p.passage;
    $("passage-text").lang = langOf(p.passage);
    $("passage").hidden = false;
    $("passage").dataset.marker = String(n);
    for (const li of $("sources").children) li.classList.toggle("open", li.dataset.marker === String(n));
    if (answer.final) recordCitation(n);
    else answer.pending.push(n); // the answer is still being written: recorded once it is checked
  }

  // text with its [n] markers as links to passage n (those that name a given passage; others stay text)
  function appendWithMarkers(parent, text, markerOk) {
    let last = 0;
    for (const m of text.matchAll(MARKER)) {
      const ns = m[1].split(/[,;]/).map((x) => Number(x.trim()));
      if (!ns.some(markerOk)) continue;
      if (m.index > last) parent.appendChild(document.createTextNode(text.slice(last, m.index)));
      for (const n of ns) { // each number its own link; one that names no given passage stays text
        if (!markerOk(n)) { parent.appendChild(document.createTextNode("[" + n + "]")); continue; }
        const a = document.createElement("a");
        a.className = "cite";
        a.href = "#source-" + n;
        a.dataset.marker = String(n);
        a.textContent = "[" + n + "]";
        a.addEventListener("click", (ev) => openPassage(n, ev));
        parent.appendChild(a);
      }
      last = m.index + m[0].length;
    }
    if (last < text.length) parent.appendChild(document.createTextNode(text.slice(last)));
  }

  // [start, end) ranges of the unsupported sentences inside the text, in order, without overlaps
  function unsupportedRanges(text, sentences) {
    const ranges = [];
    let from = 0;
    for (const s of sentences || []) {
      const t = String(s).trim();
      if (!t) continue;
      let i = text.indexOf(t, from);
      if (i < 0) i = text.indexOf(t);
      if (i < 0 || ranges.some(([a, b]) => i < b && i + t.length > a)) continue;
      ranges.push([i, i + t.length]);
      from = i + t.length;
    }
    return ranges.sort((x, y) => x[0] - y[0]);
  }

  function renderAnswer() {
    const box = $("answer-text");
    const fin = answer.final;
    const text = fin ? fin.answer : answer.text;
    box.lang = fin && fin.language ? fin.language : langOf(text);
    box.classList.toggle("refused", Boolean(fin && fin.refused));
    const n = answer.passages.length;
    const ok = fin ? ((m) => citedMarkers().has(m)) : ((m) => m >= 1 && m <= n);
    const frag = document.createDocumentFragment();
    let last = 0;
    const ranges = fin && !fin.refused ? unsupportedRanges(text, fin.unsupported_sentences) : [];
    for (const [a, b] of ranges) {
      if (a > last) appendWithMarkers(frag, text.slice(last, a), ok);
      const span = document.createElement("span");
      span.className = "unsupported";
      span.title = "출처가 없는 문장 · this sentence cites no source";
      appendWithMarkers(span, text.slice(a, b), ok);
      frag.appendChild(span);
      last = b;
    }
    if (last < text.length) appendWithMarkers(frag, text.slice(last), ok);
    box.replaceChildren(frag);
  }

  function renderSources(passages) {
    const list = $("sources");
    list.replaceChildren();
    for (const p of passages) {
      const li = document.createElement("li");
      li.id = "source-" + p.marker;
      li.value = p.marker;
      li.dataset.marker = String(p.marker);
      li.dataset.docId = p.doc_id;
      li.lang = langOf((p.title || "") + " " + p.passage);
      const open = document.createElement("a");
      open.className = "title";
      open.href = "#source-" + p.marker;
      open.textContent = p.title || p.doc_id;
      open.addEventListener("click", (ev) => openPassage(p.marker, ev));
      const meta = document.createElement("span");
      meta.className = "meta";
      meta.lang = "en";
      meta.textContent = "[" + p.marker + "] " + p.doc_id;
      const url = safeUrl(p.url);
      li.append(open, meta);
      if (url) li.append(originalLink(url, "meta"));
      const excerpt = document.createElement("p");
      excerpt.className = "snippet";
      const flat = p.passage.replace(/\s+/g, " ").trim();
      excerpt.textContent = flat.length > 200 ? flat.slice(0, 199) + "…" : flat;
      li.append(excerpt);
      list.appendChild(li);
    }
    $("sources-h").hidden = passages.length === 0;
  }

  function finish(fin) {
    answer.final = fin;
    renderAnswer();
    const cited = citedMarkers();
    for (const li of $("sources").children) li.classList.toggle("cited", cited.has(Number(li.dataset.marker)));
    const flags = [];
    if (!fin.refused && !fin.grounded) flags.push("이 답은 출처를 인용하지 않았습니다 · this answer cites no source");
    const unsupported = (fin.unsupported_sentences || []).length;
    if (!fin.refused && unsupported) {
      flags.push("출처 없는 문장 " + unsupported + "개 (밑줄) · " + unsupported + " sentence(s) without a source (underlined)");
    }
    $("answer-flags").textContent = flags.join(" · ");
    $("answer-flags").hidden = flags.length === 0;
    $("answer-actions").hidden = false;
    setAnswerState(fin.refused ? "refused" : "done");
    const pending = answer.pending.splice(0);
    for (const n of pending) recordCitation(n);
  }

  function resetAnswer() {
    answer = { query_id: null, passages: [], text: "", final: null, pending: [] };
    $("answer").hidden = false;
    $("answer-notice").hidden = true;
    $("answer-notice").textContent = "";
    $("answer-text").replaceChildren();
    $("answer-text").classList.remove("refused");
    $("answer-flags").hidden = true;
    $("answer-actions").hidden = true;
    for (const b of $("answer-actions").querySelectorAll("button")) b.setAttribute("aria-pressed", "false");
    $("passage").hidden = true;
    $("sources").replaceChildren();
    $("sources-h").hidden = true;
    setAnswerState("retrieving");
  }

  async function verdict(action, button) {
    if (!answer || !answer.final) return;
    try {
      await call("POST", "/v1/feedback", { query_id: answer.query_id, action_name: action, client_id: clientId() });
      for (const b of $("answer-actions").querySelectorAll("button")) b.setAttribute("aria-pressed", String(b === button));
      setStatus("저장했습니다 · saved: " + action.replace(/_/g, " "));
    } catch (err) {
      setStatus("저장 못 함 · not saved: " + err.message);
    }
  }

  // Ask for the answer as a stream; the list comes with it (the retrieval event) or, when the answer part is
  // unavailable, from /v1/retrieve: search never fails because the LLM did.
  async function ask(q, signal) {
    resetAnswer();
    let resp;
    try {
      resp = await send("POST", "/v1/answer", { query: q, k: 10, stream: true, client_id: clientId() },
                        "text/event-stream", signal);
    } catch (err) {
      if (signal.aborted) return;
      answerNotice("답변을 쓸 수 없음 · no answer: " + err.message);
      setAnswerState("failed");
      return searchList(q);
    }
    if (!resp.ok || !(resp.headers.get("content-type") || "").startsWith("text/event-stream")) {
      const data = await resp.json().catch(() => ({ error: resp.statusText }));
      answerNotice("답변을 쓸 수 없음 · no answer (" + resp.status + "): " + (data.error || resp.statusText));
      setAnswerState("failed");
      return searchList(q);
    }
    let listed = false;
    let ended = false;
    try {
      for await (const ev of sseEvents(resp)) {
        if (signal.aborted) return;
        const d = ev.data;
        if (ev.event === "retrieval") {
          answer.query_id = d.query_id;
          answer.passages = d.passages || [];
          renderSources(answer.passages);
          setAnswerState("writing");
          if (Array.isArray(d.results)) {
            current = { query_id: d.query_id, results: d.results };
            render(current);
            setStatus(d.results.length + " results in " + Math.round(d.took_ms) + " ms · config " + d.config_version);
            listed = true;
          } else {
            listed = true;
            searchList(q).catch((err) => setStatus("검색 실패 · search failed: " + err.message));
          }
        } else if (ev.event === "token") {
          answer.text += d.text;
          renderAnswer();
        } else if (ev.event === "done") {
          ended = true;
          finish(d);
        } else if (ev.event === "error") {
          ended = true;
          answerNotice("답변 실패 · the answer failed: " + d.error);
          setAnswerState("failed");
        }
      }
    } catch (err) {
      if (signal.aborted) return;
      answerNotice("답변이 끊겼습니다 · the answer was cut off: " + err.message);
      setAnswerState("failed");
      ended = true;
    }
    if (!ended) {
      answerNotice("답변이 끊겼습니다 · the answer was cut off");
      setAnswerState("failed");
    }
    if (!listed) return searchList(q);
  }

  $("search").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const q = $("q").value.trim();
    if (!q) return;
    $("q").lang = langOf(q);
    if (inflight) inflight.abort(); // a new question: the old stream is closed, its LLM request cancelled
    inflight = new AbortController();
    setStatus("검색 중 · searching…");
    try {
      await ask(q, inflight.signal);
    } catch (err) {
      if (!inflight.signal.aborted) setStatus("검색 실패 · search failed: " + err.message);
    }
  });
  $("no-answer").addEventListener("click", () => current && mark("no_answer", $("no-answer"), null));
  $("doc-close").addEventListener("click", () => { $("doc").hidden = true; });
  $("passage-close").addEventListener("click", () => { $("passage").hidden = true; });
  for (const b of $("answer-actions").querySelectorAll("button")) {
    b.addEventListener("click", () => verdict(b.dataset.action, b));
  }

  call("GET", "/v1/version").then((v) => {
    $("version").textContent = v.dataset + " · " + v.n_documents + " documents · champion " + v.config_version +
      (v.challenger ? " (interleaved with a challenger)" : "");
  }).catch(() => {});
})();
