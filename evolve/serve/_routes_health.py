"""``GET /healthz`` (open, always 200 while the server serves: a degraded feature is said, not failed) and
``GET /v1/version``."""

from __future__ import annotations

__all__ = ["router", "health"]


def health(svc) -> dict:
    """``{"status": "ok|degraded", "config_version", "features": {name: {"status": ..., ...}}}``: the server is
    degraded when any feature is; a feature that is ``off`` (not configured) degrades nothing. The features: the
    champion (a newer one failing to build), the challenger (when one is served), search, and the answer."""
    st = svc.live.state
    features = {**svc.live.health()["features"], "search": {"status": "ok"}}
    if svc.answers is not None:
        features["answer"] = svc.answers.health(st.champion.config.answer)
    degraded = any(f.get("status") == "degraded" for f in features.values())
    return {"status": "degraded" if degraded else "ok", "config_version": st.champion.config_version,
            "features": features}


def router(svc):
    from fastapi import APIRouter

    api = APIRouter()
    live = svc.live

    @api.get("/healthz")
    def healthz():
        return health(svc)

    @api.get("/v1/version")
    def version():
        st = live.state
        ch = st.champion
        return {
            "config_version": ch.config_version,
            "config_fingerprint": ch.config_fingerprint,
            "promoted_at": ch.promoted_at,
            "champion_source": ch.source,
            "corpus_fingerprint": st.corpus_fingerprint,
            "dataset": st.dataset.name,
            "n_documents": len(st.dataset.corpus),
            "challenger": st.challenger.describe() if st.challenger else None,
            "challenger_failures": live.challenger_failures,
            "swaps": live.swaps,
        }

    return api
