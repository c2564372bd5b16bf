"""A deterministic OpenAI-compatible embedding endpoint for evolve's NixOS VM test.

Standard library only.  POST /v1/embeddings returns hashed bag-of-words vectors
(L2-normalised, the same text always gives the same vector, shared words give
similar vectors), so retrieval over them is meaningful enough for one trial.
Also answers GET /v1/models and /health, and POST /v1/rerank and /v1/score.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import math
import re
import struct
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODEL = "fake-embedder"
DIM = 384
TOKEN = re.compile(r"\w+", re.UNICODE)


def embed(text: str) -> list[float]:
    vec = [0.0] * DIM
    for token in TOKEN.findall(text.lower()) or [""]:
        digest = hashlib.blake2b(token.encode("utf-8"), digest_size=8).digest()
        index = int.from_bytes(digest[:4], "little") % DIM
        sign = 1.0 if digest[4] & 1 else -1.0
        vec[index] += sign
    norm = math.sqrt(sum(x * x for x in vec)) or 1.0
    return [x / norm for x in vec]


def score(query: str, doc: str) -> float:
    return sum(a * b for a, b in zip(embed(query), embed(doc)))


def as_texts(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if value and all(isinstance(v, int) for v in value):  # one text as token ids
        return [" ".join(map(str, value))]
    return [v if isinstance(v, str) else " ".join(map(str, v)) for v in value]


class Handler(BaseHTTPRequestHandler):
    server_version = "fake-embedder/1"

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _path(self) -> str:
        path = self.path.split("?", 1)[0].rstrip("/")
        return path[3:] if path.startswith("/v1/") else path

    def do_GET(self) -> None:  # noqa: N802
        path = self._path()
        if path in ("/health", ""):
            self._send(200, {"status": "ok"})
        elif path == "/models":
            self._send(200, {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "evolve-vm-test"}]})
        else:
            self._send(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self._send(400, {"error": {"message": "invalid JSON"}})
            return
        path = self._path()
        if path == "/embeddings":
            texts = as_texts(body.get("input", []))
            b64 = body.get("encoding_format") == "base64"
            data = []
            for i, text in enumerate(texts):
                vec = embed(text)
                if b64:
                    vec = base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode("ascii")
                data.append({"object": "embedding", "index": i, "embedding": vec})
            tokens = sum(len(TOKEN.findall(t)) for t in texts)
            self._send(200, {"object": "list", "model": body.get("model", MODEL), "data": data,
                             "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})
        elif path == "/rerank":
            docs = as_texts(body.get("documents", []))
            results = sorted(
                ({"index": i, "relevance_score": score(body.get("query", ""), d), "document": {"text": d}}
                 for i, d in enumerate(docs)),
                key=lambda r: -r["relevance_score"],
            )
            top_n = body.get("top_n") or len(results)
            self._send(200, {"id": "rerank", "model": body.get("model", MODEL), "results": results[:top_n]})
        elif path == "/score":
            query = body.get("text_1", "")
            query = query[0] if isinstance(query, list) else query
            docs = as_texts(body.get("text_2", []))
            self._send(200, {"object": "list", "model": body.get("model", MODEL),
                             "data": [{"index": i, "object": "score", "score": score(query, d)} for i, d in enumerate(docs)]})
        else:
            self._send(404, {"error": {"message": f"no route {self.path}"}})

    def log_message(self, fmt: str, *args) -> None:
        sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))


def main() -> None:
    global DIM
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--dim", type=int, default=DIM)
    args = parser.parse_args()
    DIM = args.dim
    ThreadingHTTPServer((args.host, args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
