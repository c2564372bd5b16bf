"""A prepared pipeline (:class:`Slot`) and the one thread that runs every search on it (:class:`SearchEngine`)."""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future

from evolve.serve._sources import config_version

__all__ = ["Slot", "SearchEngine"]

log = logging.getLogger("evolve.serve")


class Slot:
    """One config prepared on one corpus (embedder loaded, faiss index and BM25 built): what a response answers
    as. Each slot owns its embedder pool and its cache connection (``cache_factory()``), so a slot being built
    never shares a model, a tokenizer or a SQLite connection with the slot serving."""

    def __init__(self, config, dataset, corpus_fingerprint: str, *, cache_factory, source: str,
                 promoted_at: str | None, role: str = "champion"):
        from evolve.pipeline import Pipeline

        self.config = config
        self.dataset = dataset
        self.source = source
        self.promoted_at = promoted_at
        self.role = role
        self.config_fingerprint = config.fingerprint()
        self.corpus_fingerprint = corpus_fingerprint
        self.config_version = config_version(self.config_fingerprint, corpus_fingerprint)
        self.cache = cache_factory()
        self.pipeline = Pipeline(config, dataset, cache=self.cache)
        self.closed = False
        self._busy = 0  # searches queued or running on this slot (SearchEngine)
        self._close_pending = False
        self._busy_lock = threading.Lock()

    def prepare(self) -> Slot:
        """Build everything and answer two queries (English and Korean: the ``auto`` tokenizer loads Kiwi on its
        first Korean text), so the first person does not pay for loading a model."""
        self.pipeline.prepare()
        self.pipeline.search_texts(["warm up", "준비 운동"])
        return self

    def same_as(self, config, corpus_fingerprint: str) -> bool:
        return self.config_fingerprint == config.fingerprint() and self.corpus_fingerprint == corpus_fingerprint

    def describe(self) -> dict:
        return {
            "role": self.role,
            "config_version": self.config_version,
            "config_fingerprint": self.config_fingerprint,
            "corpus_fingerprint": self.corpus_fingerprint,
            "source": self.source,
            "promoted_at": self.promoted_at,
        }

    def acquire(self) -> bool:
        """A search is queued on this slot (False: the slot is closed or closing, do not search on it)."""
        with self._busy_lock:
            if self.closed or self._close_pending:
                return False
            self._busy += 1
            return True

    def release(self) -> None:
        """A search queued by :meth:`acquire` is done; a close asked for meanwhile happens now."""
        with self._busy_lock:
            self._busy -= 1
            close = self._busy == 0 and self._close_pending
        if close:
            self._close_now()

    def close(self) -> None:
        """Release the pipeline and the cache connection, once no search is queued or running on the slot any
        more (a request that timed out leaves its search running: the slot closes when that search ends)."""
        with self._busy_lock:
            if self.closed or self._close_pending:
                return
            if self._busy:
                self._close_pending = True
                return
        self._close_now()

    def _close_now(self) -> None:
        with self._busy_lock:
            if self.closed:
                return
            self.closed = True
        try:
            self.pipeline.close()
        finally:
            self.cache.close()


class SearchEngine:
    """Every search of the server runs on this one thread, in batches of whatever is waiting.

    A pipeline is not thread-safe (its embedder's tokenizer and its counters are shared state), and on a
    2-core box parallel searches only fight for the cores; one thread that embeds and searches all waiting
    queries at once (per slot: champion, challenger, or a slot that is being retired) is both safe and faster
    under load than a lock taken per request.
    """

    def __init__(self, max_batch: int = 32):
        self.max_batch = max_batch
        self._queue: queue.Queue = queue.Queue()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="evolve-search", daemon=True)
        self._thread.start()

    def submit(self, slot: Slot, text: str) -> Future:
        """The ranked list (doc id -> score) of ``text`` on ``slot``."""
        return self._put(slot, text, None)

    def submit_passages(self, slot: Slot, text: str, k: int) -> Future:
        """The best ``k`` documents of ``text`` on ``slot`` with the chunks behind them (an
        :class:`evolve.passages.Retrieval`): what an answer is packed from."""
        return self._put(slot, text, int(k))

    def _put(self, slot: Slot, text: str, k: int | None) -> Future:
        fut: Future = Future()
        if self._closed:
            fut.set_exception(RuntimeError("the search engine is shut down"))
            return fut
        if not slot.acquire():
            fut.set_exception(RuntimeError(f"the {slot.role} {slot.config_version} is closed (it was swapped out)"))
            return fut
        self._queue.put((slot, text, fut, k))
        return fut

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            while len(batch) < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)  # finish this batch, then stop
                    break
                batch.append(nxt)
            groups: dict[tuple[int, bool], tuple[Slot, list]] = {}
            for slot, text, fut, k in batch:
                groups.setdefault((id(slot), k is not None), (slot, []))[1].append((text, fut, k))
            for (_, passages), (slot, items) in groups.items():
                try:
                    texts = [t for t, _, _ in items]
                    if passages:  # one search at the deepest k asked; each request keeps its own head
                        from dataclasses import replace

                        deep = slot.pipeline.retrieve_passages(texts, max(k for _, _, k in items))
                        results = [replace(r, docs=r.docs[:k]) for r, (_, _, k) in zip(deep, items)]
                    else:
                        results = slot.pipeline.search_texts(texts)
                except Exception as err:  # noqa: BLE001 - every waiting request gets the error
                    for _, fut, _ in items:
                        fut.set_exception(err)
                    continue
                else:
                    for (_, fut, _), result in zip(items, results):
                        fut.set_result(result)
                finally:
                    for _ in items:
                        slot.release()

    def close(self) -> None:
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout=30)
