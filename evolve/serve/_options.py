"""What every route of ``evolve serve`` shares: the server's options and its services."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ServeOptions", "Services"]


@dataclass
class ServeOptions:
    max_k: int = 100
    max_query_chars: int = 1000
    max_body_bytes: int = 64 * 1024
    #: POST /v1/chat/completions: OpenAI clients (Open WebUI) send the whole conversation every turn; only the last
    #: user message is answered, and it is held to max_query_chars like every question
    max_chat_body_bytes: int = 1024 * 1024
    keep_query_text: bool = True
    api_key: str | None = None
    snippet_chars: int = 240
    search_timeout: float = 120.0
    #: answers being written at once (LLM calls in flight); past it an answer gets 429 with Retry-After
    max_answers: int = 4
    #: makes query ids (default: random UUIDs); the interleaving coin is seeded by the query id, so a seeded
    #: factory replays a whole interleaving experiment exactly (tests, benchmarks)
    query_ids: Callable[[], str] | None = None
    #: ``GET /v1/doctor`` answers ``doctor()`` (the records of ``evolve doctor --json``); None: no such route
    doctor: Callable[[], list[dict]] | None = None

    def new_query_id(self) -> str:
        import uuid

        return self.query_ids() if self.query_ids else uuid.uuid4().hex


@dataclass
class Services:
    """The live champion (:class:`~evolve.serve.LiveChampion`), the feedback store, the search engine, the
    answers (:class:`~evolve.serve._answers.AnswerService`) and the options."""

    live: Any
    store: Any
    engine: Any
    options: ServeOptions
    answers: Any = None
    extra: dict = field(default_factory=dict)
