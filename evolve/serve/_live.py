"""The live champion: what the server answers with now, and its blue/green swap.

A watcher thread looks at ``champion.yaml``'s content fingerprint every ``watch_interval`` seconds (a promotion
or a rollback rewrites it) and reloads the corpus every ``check_interval`` seconds or when asked (``SIGHUP``).
When either changed, it builds the new slots *beside* the serving ones (green), and once they answer, swaps one
reference (blue -> green). A request takes the state it started with (:meth:`LiveChampion.using`) and finishes
on it; the old slots are closed when the last such request is done. A build that fails leaves the old state
serving and logs one line; it is not retried until the champion file or the corpus changes again.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time

from evolve.serve._engine import Slot

__all__ = ["LiveChampion", "ServeState"]

log = logging.getLogger("evolve.serve")


class ServeState:
    """The champion slot, the challenger slot (or None), and the fingerprints they were built from."""

    def __init__(self, champion: Slot, challenger: Slot | None, champion_file: str, corpus_fingerprint: str, dataset):
        self.champion = champion
        self.challenger = challenger
        self.champion_file = champion_file
        self.corpus_fingerprint = corpus_fingerprint
        self.dataset = dataset
        self.refs = 0

    def slots(self) -> list[Slot]:
        return [s for s in (self.champion, self.challenger) if s is not None]


def _one_line(err: BaseException) -> str:
    return f"{type(err).__name__}: " + " ".join(str(err).split())


class LiveChampion:
    def __init__(self, champion_file, corpus, *, cache_factory, challenger_config=None, challenger_label: str = "",
                 check_interval: float = 60.0, watch_interval: float = 1.0):
        self.champion_file = champion_file
        self.corpus = corpus
        self.cache_factory = cache_factory
        self.challenger_config = challenger_config
        self.challenger_label = challenger_label
        self.check_interval = check_interval
        self.watch_interval = watch_interval
        self.swaps = 0
        self.failed_builds = 0
        self.last_error: str | None = None
        self._lock = threading.Lock()
        self._state: ServeState | None = None
        self._retired: list[ServeState] = []
        self._failed: tuple[str, str] | None = None
        self._corpus_due = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ building
    def _build(self, dataset, corpus_fp: str, champion_fp: str, reuse: ServeState | None) -> ServeState:
        cfg, source, when = self.champion_file.load()
        made: list[Slot] = []
        try:
            if reuse is not None and reuse.champion.same_as(cfg, corpus_fp):
                champion = reuse.champion
                champion.source, champion.promoted_at = source, when
                champion.config = cfg  # the same retrieval; its answer section may be new
            else:
                champion = Slot(cfg, dataset, corpus_fp, cache_factory=self.cache_factory, source=source,
                                promoted_at=when)
                made.append(champion)
                champion.prepare()
            challenger = None
            if self.challenger_config is not None:
                if reuse is not None and reuse.challenger is not None and reuse.challenger.same_as(self.challenger_config, corpus_fp):
                    challenger = reuse.challenger
                else:
                    challenger = Slot(self.challenger_config, dataset, corpus_fp, cache_factory=self.cache_factory,
                                      source=self.challenger_label, promoted_at=None, role="challenger")
                    made.append(challenger)
                    challenger.prepare()
        except BaseException:
            for s in made:
                try:
                    s.close()
                except Exception:  # noqa: BLE001 - the build error is the one to report
                    pass
            raise
        return ServeState(champion, challenger, champion_fp, corpus_fp, dataset)

    def start(self) -> ServeState:
        """Build the first state (in the caller: the server listens only once it can answer) and start watching."""
        dataset = self.corpus.load()
        state = self._build(dataset, dataset.corpus_fingerprint(), self.champion_file.fingerprint(), None)
        with self._lock:
            self._state = state
        self._thread = threading.Thread(target=self._watch, name="evolve-serve-watch", daemon=True)
        self._thread.start()
        return state

    # ------------------------------------------------------------------ requests
    @property
    def state(self) -> ServeState:
        return self._state

    @contextlib.contextmanager
    def using(self):
        """The state a request runs on, held until the request is done (a swap never closes it under us)."""
        with self._lock:
            state = self._state
            state.refs += 1
        try:
            yield state
        finally:
            self._release(state)

    def _release(self, state: ServeState) -> None:
        closing: list[Slot] = []
        with self._lock:
            state.refs -= 1
            if state is not self._state and state.refs == 0 and state in self._retired:
                self._retired.remove(state)
                closing = self._unused(state)
        for s in closing:
            s.close()

    def _unused(self, state: ServeState) -> list[Slot]:
        """Slots of ``state`` no live state holds (call under the lock)."""
        live = {id(s) for st in [self._state, *self._retired] if st is not None for s in st.slots()}
        return [s for s in state.slots() if id(s) not in live]

    # ------------------------------------------------------------------ watching
    def request_check(self) -> None:
        """Reload the corpus now (``SIGHUP``), besides the timer."""
        self._corpus_due.set()

    def check_now(self) -> bool:
        """One look at the champion file and the corpus; build and swap when either changed. Returns whether it
        swapped. Runs in the watcher thread (tests may call it directly)."""
        state = self._state
        champion_fp = self.champion_file.fingerprint()
        dataset, corpus_fp = state.dataset, state.corpus_fingerprint
        if self._corpus_due.is_set():
            self._corpus_due.clear()
            try:
                fresh = self.corpus.load()
                fresh_fp = fresh.corpus_fingerprint()
            except Exception as err:  # noqa: BLE001 - a broken corpus edit must not stop the server
                log.error("evolve serve: reloading the corpus %s failed (%s); still serving config_version %s",
                          self.corpus.label, _one_line(err), state.champion.config_version)
                fresh_fp = corpus_fp
            if fresh_fp != corpus_fp:
                dataset, corpus_fp = fresh, fresh_fp
        if champion_fp == state.champion_file and corpus_fp == state.corpus_fingerprint:
            return False
        if self._failed == (champion_fp, corpus_fp):
            return False
        t0 = time.perf_counter()
        try:
            new = self._build(dataset, corpus_fp, champion_fp, state)
        except Exception as err:  # noqa: BLE001 - the old champion keeps serving
            self._failed = (champion_fp, corpus_fp)
            self.failed_builds += 1
            self.last_error = _one_line(err)
            log.error("evolve serve: building the new champion failed (%s); still serving config_version %s",
                      self.last_error, state.champion.config_version)
            return False
        self._failed = None
        closing: list[Slot] = []
        with self._lock:
            old = self._state
            self._state = new
            self.swaps += 1
            if old.refs > 0:
                self._retired.append(old)
            else:
                closing = self._unused(old)
        for s in closing:
            s.close()
        why = "champion" if champion_fp != old.champion_file else "corpus"
        log.info("evolve serve: %s changed; now serving config_version %s (was %s; built in %.1f s)",
                 why, new.champion.config_version, old.champion.config_version, time.perf_counter() - t0)
        return True

    def _watch(self) -> None:
        next_corpus = time.monotonic() + self.check_interval
        while not self._stop.wait(self.watch_interval):
            if time.monotonic() >= next_corpus:
                self._corpus_due.set()
                next_corpus = time.monotonic() + self.check_interval
            try:
                self.check_now()
            except Exception as err:  # noqa: BLE001 - the watcher must outlive any one bad look
                log.error("evolve serve: checking for a new champion failed (%s)", _one_line(err))

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        with self._lock:
            states = [s for s in [self._state, *self._retired] if s is not None]
            self._retired.clear()
        seen: set[int] = set()
        for st in states:
            for s in st.slots():
                if id(s) not in seen:
                    seen.add(id(s))
                    s.close()
