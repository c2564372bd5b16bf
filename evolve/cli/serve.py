"""``evolve serve``: the champion answers people over HTTP; what they mark is stored as UBI feedback."""

from __future__ import annotations

from typing import Annotated

import typer

from evolve.cli._common import (
    CacheUrlOpt,
    FeedbackUrlOpt,
    SetOpt,
    StorageOpt,
    StudyOpt,
    TrackingOpt,
    WorkspaceOpt,
)

__all__ = ["register", "resolve_corpus", "load_challenger", "serve_doctor"]


def _study_source(ws, study_name: str | None, storage: str | None):
    from evolve.cli._common import load_workspace_study
    from evolve.errors import StorageError
    from evolve.serve import CorpusSource
    from evolve.study import ATTR

    st, _ = load_workspace_study(ws, study_name, storage, with_dataset=False)
    spec = st.user_attrs.get(ATTR + "dataset")
    if not spec:
        raise StorageError(f"study '{st.study_name}' records no dataset: expected one made by `evolve run`")
    subset = st.user_attrs.get(ATTR + "subset")
    label = f"{spec}" + (f" (subset {subset})" if subset else "") + f", the dataset of study '{st.study_name}'"
    return CorpusSource(str(spec), int(subset) if subset else None, label, st.study_name), st


def resolve_corpus(ws, *, dataset: str | None, study: str | None, storage: str | None):
    """The corpus to serve and the study it belongs to (``None`` for a bare ``--dataset``).

    ``--dataset`` or ``--study`` given: that one (both: they must name the same dataset). Neither: the study the
    latest promotion came from (its history record names it); else the storage's only study. Anything else is
    ambiguous and refused in one line that names the choices.
    """
    from evolve.errors import ConfigError, StorageError
    from evolve.promote import history
    from evolve.serve import CorpusSource

    if dataset is not None and study is not None:
        src, st = _study_source(ws, study, storage)
        if src.spec != dataset:
            raise ConfigError(f"--dataset '{dataset}' and --study '{study}' disagree: the study's dataset is "
                              f"'{src.spec}'; expected one of the two, or both naming the same dataset")
        return src, st
    if dataset is not None:
        return CorpusSource(dataset, None, f"{dataset} (--dataset)"), None
    if study is not None:
        return _study_source(ws, study, storage)
    promoted = [r for r in history(ws) if r.get("study")]
    if promoted:
        return _study_source(ws, promoted[-1]["study"], storage)
    try:
        return _study_source(ws, None, storage)
    except StorageError as err:
        raise ConfigError(f"which corpus to serve is ambiguous: no promotion in {ws.history_dir} names a study and "
                          f"{str(err).removeprefix('no ')}; expected --dataset D or --study S") from None


def load_challenger(spec: str, study):
    """``--challenger``: a trial number of the served study, or a config YAML. Returns (config, label)."""
    from pathlib import Path

    from evolve.config import load_config
    from evolve.errors import ConfigError
    from evolve.serve import trial_config

    if spec.strip().isdigit():
        if study is None:
            raise ConfigError(f"--challenger {spec}: expected a trial number of a study (--study S) or a config "
                              "YAML, got a trial number while serving a bare --dataset")
        return trial_config(study, int(spec)), f"trial {int(spec)} of study '{study.study_name}'"
    if not Path(spec).expanduser().is_file():
        raise ConfigError(f"--challenger: expected a trial number or a config YAML file, got '{spec}'")
    return load_config(spec), str(Path(spec).expanduser().absolute())


def serve_doctor(ws, live, **urls):
    """What ``GET /v1/doctor`` runs: the doctor's checks for the champion being served (its engines already run in
    this process, so their memory is in the GPU's used memory and is not asked for again)."""

    def run() -> list[dict]:
        from evolve.doctor import DoctorContext, run_checks

        ctx = DoctorContext(ws, {"champion (served)": live.state.champion.config}, engines_running=True,
                            storage_url=urls.get("storage"), tracking_uri=urls.get("tracking_uri"),
                            cache_url=urls.get("cache_url"), feedback_url=urls.get("feedback_url"))
        return [r.to_record() for r in run_checks(ctx)]

    return run


def _one_line_logs() -> None:
    """A server's log is read in a journal: one plain line per record (rich would wrap long lines)."""
    import logging
    import sys

    logger = logging.getLogger("evolve.serve")
    if not any(getattr(h, "_evolve_serve", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler._evolve_serve = True
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def serve_command(
    host: Annotated[str, typer.Option("--host", help="Address to bind (0.0.0.0 exposes it to the network).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8080,
    dataset: Annotated[str | None, typer.Option("--dataset", help="Corpus to serve (default: the dataset of the study the latest promotion came from).")] = None,
    challenger: Annotated[str | None, typer.Option("--challenger", help="Interleave the champion with this trial number (or config YAML): Team-Draft Interleaving.")] = None,
    api_key_env: Annotated[str | None, typer.Option("--api-key-env", help="Name of an environment variable holding a bearer key the API requires (/healthz and the page stay open).")] = None,
    no_query_text: Annotated[bool, typer.Option("--no-query-text", help="Do not store what people typed (feedback then cannot become gold queries).")] = False,
    check_interval: Annotated[float, typer.Option("--check-interval", help="Seconds between corpus fingerprint checks (also on SIGHUP).")] = 60.0,
    watch_interval: Annotated[float, typer.Option("--watch-interval", help="Seconds between looks at champion.yaml.")] = 1.0,
    max_k: Annotated[int, typer.Option("--max-k", help="Largest k a request may ask for.")] = 100,
    max_answers: Annotated[int, typer.Option("--max-answers", help="Answers the LLM writes at once (POST /v1/answer, /v1/chat/completions); past it an answer gets 429 with Retry-After, search goes on.")] = 4,
    retry_interval: Annotated[float, typer.Option("--retry-interval", help="Seconds before a failed champion or challenger build is tried again (doubling each time, at most 300).")] = 5.0,
    set_: SetOpt = None,
    workspace: WorkspaceOpt = None,
    study: StudyOpt = None,
    storage: StorageOpt = None,
    tracking_uri: TrackingOpt = None,
    cache_url: CacheUrlOpt = None,
    feedback_url: FeedbackUrlOpt = None,
):
    """Serve the champion over HTTP (POST /v1/retrieve, POST /v1/answer, the OpenAI-compatible /v1/chat/completions,
    POST /v1/feedback, the page at /); swap in a new champion when promote-config or rollback changes it.
    --set KEY=VALUE overrides the champion's config (every champion served, a promoted one too), e.g.
    --set answer.base_url=http://127.0.0.1:8000/v1 --set answer.model=NAME. --tracking-uri is accepted like
    everywhere; serve reads nothing from MLflow."""
    import os

    from evolve.cache import EmbeddingCache
    from evolve.cli._common import err_console
    from evolve.errors import ConfigError
    from evolve.feedback import open_feedback_store
    from evolve.serve import AnswerService, ChampionFile, LiveChampion, SearchEngine, ServeOptions, create_app
    from evolve.serve._run import bind, serve_forever
    from evolve.workspace import Workspace

    if not 1 <= port <= 65535:
        raise ConfigError(f"--port: expected 1 to 65535, got {port}")
    if not 1 <= max_k <= 1000:
        raise ConfigError(f"--max-k: expected 1 to 1000, got {max_k}")
    if not 1 <= max_answers <= 1000:
        raise ConfigError(f"--max-answers: expected 1 to 1000, got {max_answers}")
    overrides = tuple(set_ or ())
    if overrides:
        from evolve.config import PipelineConfig, apply_overrides

        apply_overrides(PipelineConfig(), list(overrides))  # a bad key is one line now, before any model loads
    if check_interval <= 0 or watch_interval <= 0 or retry_interval <= 0:
        raise ConfigError("--check-interval, --watch-interval and --retry-interval: expected positive seconds")
    key = None
    if api_key_env:
        key = os.environ.get(api_key_env, "").strip()
        if not key:
            raise ConfigError(f"--api-key-env {api_key_env}: expected the environment variable to hold a key, got it unset or empty")
    _one_line_logs()
    ws = Workspace(workspace, cache_url).ensure()
    source, st = resolve_corpus(ws, dataset=dataset, study=study, storage=storage)
    challenger_cfg, challenger_label = (None, "")
    if challenger is not None:
        challenger_cfg, challenger_label = load_challenger(challenger, st)
        if overrides:
            from evolve.config import apply_overrides

            challenger_cfg = apply_overrides(challenger_cfg, list(overrides))
    sock = bind(host, port)  # a taken port fails now, not after the model loaded
    store = live = engine = answers = None
    try:
        store = open_feedback_store(ws, feedback_url)
        live = LiveChampion(ChampionFile(ws, overrides), source, cache_factory=lambda: EmbeddingCache.open(ws),
                            challenger_config=challenger_cfg, challenger_label=challenger_label,
                            check_interval=check_interval, watch_interval=watch_interval,
                            retry_base=retry_interval, retry_max=max(300.0, retry_interval))
        err_console.print(f"evolve serve: loading {source.label} and the champion ...", highlight=False)
        state = live.start()
        engine = SearchEngine()
        answers = AnswerService(max_answers)
        doctor = serve_doctor(ws, live, storage=storage, tracking_uri=tracking_uri, cache_url=cache_url,
                              feedback_url=feedback_url)
        app = create_app(live, store, engine,
                         ServeOptions(max_k=max_k, keep_query_text=not no_query_text, api_key=key,
                                      max_answers=max_answers, doctor=doctor), answers=answers)
        url = f"http://{host}:{port}"
        llm = state.champion.config.answer

        def ready():
            extra = (f"; interleaving with {challenger_label} ({state.challenger.config_version})"
                     if state.challenger else
                     f"; the challenger {challenger_label} is not built yet, the champion serves alone (/healthz)"
                     if challenger_cfg is not None else "")
            answering = (f"answers from {llm.model} at {llm.base_url} (at most {max_answers} at once)"
                         if llm.configured else "no LLM configured (answer.base_url, answer.model): search only")
            err_console.print(f"evolve serve: {url} serves config_version {state.champion.config_version} "
                              f"({state.champion.source}) on {len(state.dataset.corpus)} documents{extra}; "
                              f"{answering}; feedback in {store.location}" + ("; API key required" if key else ""),
                              highlight=False)
            if llm.configured:  # an LLM that is down degrades /healthz at once, not at the first question
                import threading

                threading.Thread(target=answers.probe, args=(llm,), name="evolve-answer-probe", daemon=True).start()

        serve_forever(app, live, sock, on_ready=ready)
    finally:
        sock.close()
        for part in (engine, live, store, answers):
            if part is not None:
                part.close()

def register(app: typer.Typer) -> None:
    app.command("serve")(serve_command)
