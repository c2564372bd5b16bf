"""The feedback store's contract: UBI query and event records, each committed before the call returns."""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import datetime

__all__ = ["FeedbackStore", "FeedbackCounts"]


class FeedbackCounts(dict):
    """``{"queries": n, "events": n, "by_action": {action: n}, "clients": n}``."""


class FeedbackStore(ABC):
    """Where the serving side's searches and the events on them live (SQLite in the workspace, or PostgreSQL).

    Contract:

    * :meth:`add_query` and :meth:`add_event` return only once the record is durably committed: a server that
      answered "stored" and is then killed still has it after a restart.
    * :meth:`add_event` is idempotent on ``event_id``: a client that retries a request whose answer it never
      got stores the event once. It returns ``False`` when the id was stored already.
    * Records go in and come out as UBI 1.3.0 dicts (see :mod:`evolve.feedback._records`); no document text is
      ever stored, only ids.
    * Readers return records in timestamp order. ``since`` keeps records at or after that instant.
    * Deleting (a person who asks to be forgotten, or an old period) removes the queries *and* the events on
      them, and returns how many of each went.
    * The store is safe to share between threads; several processes may read while one writes.
    """

    #: where the records live, without secrets (a path or a redacted URL)
    location: str = ""

    @abstractmethod
    def add_query(self, record: dict) -> None: ...

    @abstractmethod
    def add_event(self, record: dict) -> bool: ...

    def set_query_attribute(self, query_id: str, key: str, value) -> bool:
        """Set ``query_attributes[key]`` of a stored query record to ``value`` (what an answer adds once it is
        done: the query was stored when its passages were). Returns whether the query exists. Committed before
        it returns, like every write."""
        raise NotImplementedError(f"{type(self).__name__} cannot update a query record")

    @abstractmethod
    def get_query(self, query_id: str) -> dict | None: ...

    @abstractmethod
    def queries(self, since: datetime | None = None) -> list[dict]: ...

    @abstractmethod
    def events(self, since: datetime | None = None) -> list[dict]: ...

    @abstractmethod
    def event_ids(self) -> set[str]: ...

    @abstractmethod
    def delete_client(self, client_id: str) -> tuple[int, int]:
        """Remove every query of ``client_id``, the events on them and the client's own events.
        Returns (queries removed, events removed)."""

    @abstractmethod
    def delete_before(self, when: datetime) -> tuple[int, int]:
        """Remove queries and events older than ``when`` (and events on removed queries)."""

    @abstractmethod
    def check(self) -> str:
        """An integrity check; returns ``"ok"`` or raises :class:`~evolve.errors.StorageError`."""

    def counts(self) -> FeedbackCounts:
        events = self.events()
        by_action: dict[str, int] = {}
        for e in events:
            by_action[e["action_name"]] = by_action.get(e["action_name"], 0) + 1
        queries = self.queries()
        clients = {q["client_id"] for q in queries} | {e["client_id"] for e in events}
        return FeedbackCounts(queries=len(queries), events=len(events), by_action=by_action, clients=len(clients))

    def close(self) -> None:
        """Release connections; the store is unusable afterwards."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
