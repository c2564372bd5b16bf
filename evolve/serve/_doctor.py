"""``GET /v1/doctor``: the checks of ``evolve doctor`` (never ``--deep``) on the server's node, behind the API key.

The body is the list of records ``evolve doctor --json`` prints (``evolve/doctor/schema.json``), always with
status 200: the records' own ``status`` fields say what failed. The checks run when asked (a few seconds: they
ask every endpoint and store once), in the threadpool, so searches go on meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["doctor_router"]


def doctor_router(run: Callable[[], list[dict]]):
    """A FastAPI router with ``GET /v1/doctor`` answering ``run()``."""
    from fastapi import APIRouter

    router = APIRouter()

    @router.get("/v1/doctor")
    def doctor() -> list[dict]:
        return run()

    return router
