"""The live champion: what the server answers with now, and its blue/green swap.

A watcher thread looks at ``champion.yaml``'s content fingerprint every ``watch_interval`` seconds (a promotion
or a rollback rewrites it) and reloads the corpus every ``check_interval`` seconds or when asked (``SIGHUP``).
When either changed, it builds the new slots *beside* the serving ones (green), and once they answer, swaps one
reference (blue -> green). A request takes the state it started with (:meth:`LiveChampion.using`) and finishes
on it; the old slots are closed when the last such request (and the last search queued on them) is done.

A build that fails leaves the old state serving, logs one line, and is retried with exponential backoff
(``retry_base`` seconds, doubling, at most ``retry_max``) while the champion file and the corpus stay as they
are; meanwhile :meth:`LiveChampion.health` reports the champion ``degraded`` with the version waiting to be
served and the last error. A challenger that cannot be built does not hold the champion back: the state serves
without it (interleaving pauses, ``degraded``) and its build is retried the same way. A challenger whose search
fails is counted (:meth:`LiveChampion.challenger_failed`); the request is answered with the champion's list.
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


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class _Pending:
    """A build that failed and waits for its retry: what it was for, how often it failed, when to try again."""

    def __init__(self, key: tuple[str, str], version: str | None, error: str, attempts: int, retry_at: float,
                 dataset=None, since: str | None = None):
        self.key, self.version, self.error, self.attempts, self.retry_at = key, version, error, attempts, retry_at
        self.dataset = dataset  # the reloaded corpus the build was for (a retry builds on it again)
        self.since = since or _now_iso()


class LiveChampion:
    def __init__(self, champion_file, corpus, *, cache_factory, challenger_config=None, challenger_label: str = "",
                 check_interval: float = 60.0, watch_interval: float = 1.0, retry_base: float = 5.0,
                 retry_max: float = 300.0):
        self.champion_file = champion_file
        self.corpus = corpus
        self.cache_factory = cache_factory
        self.challenger_config = challenger_config
        self.challenger_label = challenger_label
        self.check_interval = check_interval
        self.watch_interval = watch_interval
        self.retry_base = float(retry_base)
        self.retry_max = float(retry_max)
        self.swaps = 0
        self.failed_builds = 0
        self.last_error: str | None = None
        #: searches the challenger failed (the champion's list was served alone), and the last such error
        self.challenger_failures = 0
        self.challenger_error: str | None = None
        self._challenger_failing = False
        self._lock = threading.Lock()
        self._state: ServeState | None = None
        self._retired: list[ServeState] = []
        self._pending: _Pending | None = None
        self._challenger_pending: _Pending | None = None
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
                    challenger = self._build_challenger(dataset, corpus_fp)
        except BaseException:
            for s in made:
                try:
                    s.close()
                except Exception:  # noqa: BLE001 - the build error is the one to report
                    pass
            raise
        return ServeState(champion, challenger, champion_fp, corpus_fp, dataset)

    def _build_challenger(self, dataset, corpus_fp: str) -> Slot | None:
        """The challenger's slot, or None when it cannot be built (one line logged, retried with backoff): a
        broken challenger never holds the champion back."""
        key = ("challenger", corpus_fp)
        pending = self._challenger_pending
        if pending is not None and pending.key == key and time.monotonic() < pending.retry_at:
            return None
        slot = None
        try:
            slot = Slot(self.challenger_config, dataset, corpus_fp, cache_factory=self.cache_factory,
                        source=self.challenger_label, promoted_at=None, role="challenger")
            slot.prepare()
        except Exception as err:  # noqa: BLE001 - the champion serves alone meanwhile
            if slot is not None:
                try:
                    slot.close()
                except Exception:  # noqa: BLE001 - the build error is the one to report
                    pass
            attempts = pending.attempts + 1 if pending is not None and pending.key == key else 1
            delay = self._delay(attempts)
            self._challenger_pending = _Pending(key, None, _one_line(err), attempts, time.monotonic() + delay)
            log.error("evolve serve: building the challenger failed (%s); serving the champion alone, no "
                      "interleaving; retrying in %.3g s (attempt %d)", _one_line(err), delay, attempts)
            return None
        if pending is not None:
            log.info("evolve serve: the challenger is built again (after %d failed attempt(s)); interleaving",
                     pending.attempts)
        self._challenger_pending = None
        return slot

    def _delay(self, attempts: int) -> float:
        """Backoff before attempt ``attempts + 1``: ``retry_base * 2 ** (attempts - 1)``, at most ``retry_max``."""
        return min(self.retry_max, self.retry_base * 2.0 ** max(0, attempts - 1))

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
        pending = self._pending
        if pending is not None and pending.dataset is not None:  # a failed build on a changed corpus: retry on it
            dataset, corpus_fp = pending.dataset, pending.key[1]
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
        key = (champion_fp, corpus_fp)
        if champion_fp == state.champion_file and corpus_fp == state.corpus_fingerprint:
            self._pending = None  # (a rollback to what serves ends a pending build)
            if self.challenger_config is None or state.challenger is not None:
                return False
            return self._retry_challenger(state)
        if pending is not None and pending.key == key and time.monotonic() < pending.retry_at:
            return False
        t0 = time.perf_counter()
        try:
            new = self._build(dataset, corpus_fp, champion_fp, state)
        except Exception as err:  # noqa: BLE001 - the old champion keeps serving; retried with backoff
            again = pending is not None and pending.key == key
            attempts = pending.attempts + 1 if again else 1
            delay = self._delay(attempts)
            self.failed_builds += 1
            self.last_error = _one_line(err)
            self._pending = _Pending(key, self._version_of(corpus_fp), self.last_error, attempts,
                                     time.monotonic() + delay,
                                     dataset if corpus_fp != state.corpus_fingerprint else None,
                                     pending.since if again else None)
            log.error("evolve serve: building the new champion failed (%s); still serving config_version %s; "
                      "retrying in %.3g s (attempt %d)", self.last_error, state.champion.config_version, delay,
                      attempts)
            return False
        if pending is not None:
            log.info("evolve serve: the new champion built after %d failed attempt(s)", pending.attempts)
        self._pending = None
        self._swap(new, t0, "champion" if champion_fp != state.champion_file else "corpus")
        return True

    def _version_of(self, corpus_fp: str) -> str | None:
        """The config_version the champion file asks for on ``corpus_fp`` (None when the file cannot be read)."""
        from evolve.serve._sources import config_version

        try:
            cfg = self.champion_file.load()[0]
            return config_version(cfg.fingerprint(), corpus_fp)
        except Exception:  # noqa: BLE001 - the build error already says why
            return None

    def _retry_challenger(self, state: ServeState) -> bool:
        """The champion serves without the challenger it should have: build the challenger when its backoff
        allows, and swap it in beside the same champion slot."""
        challenger = self._build_challenger(state.dataset, state.corpus_fingerprint)
        if challenger is None:
            return False
        new = ServeState(state.champion, challenger, state.champion_file, state.corpus_fingerprint, state.dataset)
        self._swap(new, time.perf_counter(), "challenger")
        return True

    def _swap(self, new: ServeState, t0: float, why: str) -> None:
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
        if why == "challenger":
            log.info("evolve serve: interleaving config_version %s with the challenger %s again",
                     new.champion.config_version, new.challenger.config_version)
            return
        log.info("evolve serve: %s changed; now serving config_version %s (was %s; built in %.1f s)",
                 why, new.champion.config_version, old.champion.config_version, time.perf_counter() - t0)

    # ------------------------------------------------------------------ health
    def challenger_failed(self, err: BaseException) -> str:
        """Count a search the challenger failed (the request is answered with the champion's list). One log line
        when the challenger starts failing, one when it answers again. Returns the error on one line."""
        line = _one_line(err)
        with self._lock:
            self.challenger_failures += 1
            self.challenger_error = line
            first = not self._challenger_failing
            self._challenger_failing = True
        if first:
            log.error("evolve serve: the challenger's search failed (%s); answering with the champion's list "
                      "alone until it answers again (failures are counted in /healthz and evolve status)", line)
        return line

    def challenger_answered(self) -> None:
        if self._challenger_failing:
            with self._lock:
                self._challenger_failing = False
            log.info("evolve serve: the challenger answers again (%d failed search(es) so far)",
                     self.challenger_failures)

    def health(self) -> dict:
        """``{"status": "ok" | "degraded", "config_version", "features": {"champion": ..., "challenger": ...}}``:
        a feature is ``degraded`` with its error on one line while it serves less than it should (the champion
        while a newer one fails to build; the challenger while it cannot be built or its searches fail)."""
        state = self._state
        serving = state.champion.config_version
        pending = self._pending
        champion: dict = {"status": "ok", "config_version": serving, "failed_builds": self.failed_builds}
        if pending is not None:
            champion.update(status="degraded", pending_version=pending.version, last_error=pending.error,
                            attempts=pending.attempts, failing_since=pending.since,
                            retry_in_s=round(max(0.0, pending.retry_at - time.monotonic()), 1))
        features = {"champion": champion}
        if self.challenger_config is not None:
            ch = state.challenger
            challenger: dict = {"status": "ok", "config_version": ch.config_version if ch else None,
                                "failed_searches": self.challenger_failures}
            cp = self._challenger_pending
            if ch is None:
                challenger.update(status="degraded", last_error=cp.error if cp else "not built yet",
                                  attempts=cp.attempts if cp else 0,
                                  retry_in_s=round(max(0.0, cp.retry_at - time.monotonic()), 1) if cp else 0.0)
            elif self._challenger_failing:
                challenger.update(status="degraded", last_error=self.challenger_error)
            features["challenger"] = challenger
        degraded = any(f["status"] != "ok" for f in features.values())
        return {"status": "degraded" if degraded else "ok", "config_version": serving, "features": features}

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
