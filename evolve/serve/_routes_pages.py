"""The documents (``GET /v1/documents/{doc_id}``), the page at ``/`` and its favicon."""

from __future__ import annotations

from pathlib import Path

__all__ = ["router", "STATIC_DIR"]

STATIC_DIR = Path(__file__).with_name("static")


def router(svc):
    from fastapi import APIRouter, HTTPException
    from fastapi.responses import FileResponse

    api = APIRouter()
    live = svc.live

    @api.get("/v1/documents/{doc_id:path}")
    def document(doc_id: str):
        corpus = live.state.dataset.corpus
        doc = corpus.get(doc_id)
        if doc is None:
            raise HTTPException(status_code=404, detail=f"doc_id: expected a document of the served corpus, got unknown '{doc_id[:200]}'")
        url = (doc.metadata or {}).get("url")
        return {"doc_id": doc.id, "title": doc.title, "text": doc.text, "url": str(url) if url else None}

    @api.get("/", include_in_schema=False)
    def page():
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html; charset=utf-8",
                            headers={"Cache-Control": "no-cache"})

    @api.get("/favicon.ico", include_in_schema=False)
    def favicon():
        return FileResponse(STATIC_DIR / "favicon.svg", media_type="image/svg+xml")

    return api
