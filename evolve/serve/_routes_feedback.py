"""``POST /v1/feedback``: what a person did with a result list or an answer, checked against the search it names
(:func:`evolve.feedback.check_event`) and stored as a UBI event (idempotent on event_id)."""

from __future__ import annotations

import re
import uuid

from pydantic import BaseModel, ConfigDict, Field

from evolve.feedback import ACTIONS, FeedbackRejected, check_event, event_record
from evolve.serve._checks import unprocessable

__all__ = ["router"]

_EVENT_ID = re.compile(r"[A-Za-z0-9_.:-]{1,100}")


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query_id: str = Field(max_length=100)
    action_name: str = Field(description=f"One of {', '.join(ACTIONS)}.")
    object_id: str | None = Field(None, max_length=256, description="The document (not for no_answer and the "
                                                                   "verdicts on an answer).")
    position: int | None = Field(None, description="1-based rank of object_id in the list shown; for citation_click "
                                                   "the marker n of [n] (checked).")
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
            raise unprocessable(f"query_id: expected one returned by POST /v1/retrieve or /v1/answer, got unknown "
                                f"'{req.query_id}'")
        try:
            checked = check_event(q, req.action_name, req.object_id, req.position)
        except FeedbackRejected as err:
            raise unprocessable(str(err)) from None
        attrs = q.get("query_attributes") or {}
        event_id = req.event_id or uuid.uuid4().hex
        record = event_record(event_id=event_id, action_name=req.action_name, query_id=req.query_id,
                              client_id=req.client_id or q["client_id"], object_id=req.object_id,
                              ordinal=checked.ordinal, config_version=attrs.get("config_version", ""),
                              extra=checked.extra)
        stored = store.add_event(record)
        return {"event_id": event_id, "duplicate": not stored}

    return api
