"""``POST /v1/feedback``: what a person did with a result list, stored as a UBI event (idempotent on event_id)."""

from __future__ import annotations

import re
import uuid

from pydantic import BaseModel, ConfigDict, Field

from evolve.feedback import ACTIONS, OBJECT_ACTIONS, event_record
from evolve.serve._checks import unprocessable

__all__ = ["router"]

_EVENT_ID = re.compile(r"[A-Za-z0-9_.:-]{1,100}")


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query_id: str = Field(max_length=100)
    action_name: str = Field(description=f"One of {', '.join(ACTIONS)}.")
    object_id: str | None = Field(None, max_length=256, description="The document (not for no_answer).")
    position: int | None = Field(None, description="1-based rank of object_id in the list shown (checked).")
    client_id: str | None = Field(None, max_length=100)
    event_id: str | None = Field(None, description="Optional idempotency key: a retried request is stored once.")


class FeedbackResponse(BaseModel):
    event_id: str
    duplicate: bool = False


def router(svc):
    from fastapi import APIRouter

    api = APIRouter()
    store = svc.store

    @api.post("/v1/feedback", status_code=201, response_model=FeedbackResponse)
    def feedback(req: FeedbackRequest):
        if req.action_name not in ACTIONS:
            raise unprocessable(f"action_name: expected one of {', '.join(ACTIONS)}, got '{req.action_name}'")
        if req.event_id is not None and not _EVENT_ID.fullmatch(req.event_id):
            raise unprocessable(f"event_id: expected 1 to 100 of A-Z a-z 0-9 _ . : -, got '{req.event_id[:100]}'")
        q = store.get_query(req.query_id)
        if q is None:
            raise unprocessable(f"query_id: expected one returned by POST /v1/retrieve, got unknown '{req.query_id}'")
        hits = q.get("query_response_hit_ids") or []
        attrs = q.get("query_attributes") or {}
        extra: dict = {}
        if req.action_name in OBJECT_ACTIONS:
            if not req.object_id:
                raise unprocessable(f"object_id: expected the document for action '{req.action_name}', got none")
            if req.object_id not in hits:
                raise unprocessable(f"object_id: expected one of the {len(hits)} documents returned for query "
                                    f"'{req.query_id}', got '{req.object_id}'")
            ordinal = hits.index(req.object_id) + 1
            if req.position is not None and req.position != ordinal:
                raise unprocessable(f"position: expected {ordinal} (the rank of '{req.object_id}'), got {req.position}")
            inter = attrs.get("interleaving")
            if inter:
                extra["interleaving_team"] = inter["teams"][ordinal - 1]
        else:
            if req.object_id is not None:
                raise unprocessable(f"object_id: expected none for '{req.action_name}' (it is about the whole list), "
                                    f"got '{req.object_id}'")
            ordinal = 0
        event_id = req.event_id or uuid.uuid4().hex
        record = event_record(event_id=event_id, action_name=req.action_name, query_id=req.query_id,
                              client_id=req.client_id or q["client_id"], object_id=req.object_id, ordinal=ordinal,
                              config_version=attrs.get("config_version", ""), extra=extra)
        stored = store.add_event(record)
        return {"event_id": event_id, "duplicate": not stored}

    return api
