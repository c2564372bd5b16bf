"""What every command shares: the common options, the stderr console, progress bars, output helpers."""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
from typing import Annotated

import typer

__all__ = [
    "WorkspaceOpt",
    "StudyOpt",
    "StorageOpt",
    "TrackingOpt",
    "DatasetOpt",
    "CacheUrlOpt",
    "ConfigOpt",
    "SetOpt",
    "StrictOpt",
    "GoldOpt",
    "GoldModeOpt",
    "FeedbackUrlOpt",
    "JsonOpt",
    "err_console",
    "out_console",
    "rich_progress",
    "emit_json",
    "parse_size",
    "setup_logging",
    "warn_dataset",
    "pipeline_config",
    "metrics_table",
    "load_workspace_study",
    "load_study_view",
    "pick_study",
    "run_study_name",
    "study_names",
    "study_options",
    "trial_printer",
]

WorkspaceOpt = Annotated[
    str | None,
    typer.Option("--workspace", envvar="EVOLVE_HOME", help="Workspace folder (cache, study, MLflow store, champion).", show_default="./.evolve"),
]
StudyOpt = Annotated[
    str | None,
    typer.Option("--study", envvar="EVOLVE_STUDY", help="Optuna study name.",
                 show_default="the workspace's only study; 'evolve' when `evolve run` creates one"),
]
StorageOpt = Annotated[
    str | None,
    typer.Option("--storage", envvar="EVOLVE_STORAGE", help="Optuna storage URL.", show_default="sqlite:///<workspace>/optuna.db"),
]
TrackingOpt = Annotated[
    str | None,
    typer.Option("--tracking-uri", envvar="EVOLVE_TRACKING_URI", help="MLflow tracking URI.", show_default="sqlite:///<workspace>/mlflow.db"),
]
CacheUrlOpt = Annotated[
    str | None,
    typer.Option("--cache-url", envvar="EVOLVE_CACHE_URL",
                 help="A shared embedding cache behind the local one, e.g. postgresql://evolve@db/evolve (password: PGPASSWORD or a passfile)."),
]
DatasetOpt = Annotated[
    str, typer.Option("--dataset", envvar="EVOLVE_DATASET", help="Bundled dataset name (scifact) or a path (BEIR folder, .md/.txt folder, SQuAD JSON).")
]
ConfigOpt = Annotated[
    str | None, typer.Option("--config", "-c", help="Pipeline config YAML.", show_default="the workspace champion, else configs/default.yaml")
]
SetOpt = Annotated[
    list[str] | None, typer.Option("--set", help="Override a config key: --set embedding.backend=vllm (repeatable).")
]
GoldOpt = Annotated[
    list[str] | None,
    typer.Option("--gold", help="A gold folder (queries.jsonl + qrels.tsv/qrels.txt), repeatable; stored with the study. `feedback` (run only): what people marked, exported from the feedback store at the start of the night.",
                 show_default="the study's stored gold, else none"),
]
GoldModeOpt = Annotated[
    str | None,
    typer.Option("--gold-mode", help="merge: gold joins the dataset's own qrels; replace: gold replaces them.",
                 show_default="the study's stored mode, else merge"),
]
FeedbackUrlOpt = Annotated[
    str | None,
    typer.Option("--feedback-url", envvar="EVOLVE_FEEDBACK_URL",
                 help="The feedback (UBI) store, e.g. postgresql://evolve@db/evolve.", show_default="<workspace>/feedback.sqlite"),
]
StrictOpt = Annotated[bool, typer.Option("--strict", help="Treat dropped documents and dangling qrels as errors.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on the last line of stdout.")]

#: the name `evolve run` gives a new study when --study is not set and the storage holds none (or several)
DEFAULT_STUDY = "evolve"


def _consoles():
    from rich.console import Console

    # outside a terminal (logs, tests, pipes) rich would wrap at 80 columns: tables need more
    err = Console(stderr=True, soft_wrap=True, width=None if sys.stderr.isatty() else 200)
    out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)
    return err, out


err_console, out_console = _consoles()


def setup_logging(verbose: bool = False) -> None:
    from rich.logging import RichHandler

    root = logging.getLogger()
    if any(getattr(h, "_evolve", False) for h in root.handlers):
        return
    handler = RichHandler(console=err_console, show_time=False, show_path=False, markup=False)
    handler._evolve = True
    handler.setFormatter(logging.Formatter("%(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("evolve").setLevel(logging.INFO if verbose else logging.WARNING)
    for noisy in ("faiss", "faiss.loader", "sentence_transformers", "httpx", "alembic", "mlflow", "numba", "bm25s",
                  "vllm", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@contextlib.contextmanager
def rich_progress(description: str, total: int):
    """A rich progress bar on stderr (the library's ProgressFactory)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    if total <= 0 or not err_console.is_terminal:
        yield lambda n: None  # no bars in logs (CI, systemd journal): they would only add noise
        return
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    ) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n: progress.advance(task, n)


def emit_json(obj) -> None:
    """One JSON object on one line, last on stdout."""
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, sort_keys=True) + "\n")
    sys.stdout.flush()


_UNITS = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9, "kib": 1024, "mib": 1024**2, "gib": 1024**3}


def parse_size(text: str) -> int:
    from evolve.errors import ConfigError

    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*", text)
    if not m or m.group(2).lower() not in _UNITS:
        raise ConfigError(f"expected a size like 500MB or 2GiB, got '{text}'")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def warn_dataset(dataset) -> None:
    for w in dataset.warnings:
        err_console.print(f"[yellow]warning:[/] {dataset.source}: {w}", highlight=False)


def pipeline_config(workspace, config: str | None, overrides: list[str] | None):
    """The config a command runs: ``--config``, else the workspace champion, else the shipped default."""
    from evolve.config import apply_overrides, load_config
    from evolve.promote import current_champion

    if config is None:  # the champion as every reader sees it (a recorded change counts before its file is written)
        return apply_overrides(current_champion(workspace)[0], overrides or [])
    return load_config(config, overrides or [])


def metrics_table(title: str, rows: dict[str, dict[str, float]]):
    """A rich table: one row per label, one column per metric."""
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    metrics = list(next(iter(rows.values())).keys()) if rows else []
    table.add_column("")
    for m in metrics:
        table.add_column(m, justify="right")
    for label, values in rows.items():
        table.add_row(label, *(f"{values[m]:.4f}" for m in metrics))
    return table


def study_names(storage_obj) -> list[str]:
    return sorted(s.study_name for s in storage_obj.get_all_studies())


def pick_study(names: list[str], study_name: str | None, where: str) -> str:
    """``study_name``, checked; or, when it is None, the storage's only study. One line otherwise."""
    from evolve.errors import StorageError, did_you_mean

    if study_name is None:
        if len(names) == 1:
            return names[0]
        if not names:
            raise StorageError(f"no study in {where}: expected one made by `evolve run`, found none")
        raise StorageError(f"{where} holds {len(names)} studies: expected --study, one of {', '.join(names)}")
    if study_name not in names:
        raise StorageError(f"no study '{study_name}' in {where}: "
                           f"expected one of {', '.join(names) or '(none: run `evolve run` first)'}{did_you_mean(study_name, names)}")
    return study_name


def run_study_name(ws, study_name: str | None, storage: str | None) -> str:
    """The study `evolve run` / `evolve worker` work on: ``--study``, else the storage's only study, else
    :data:`DEFAULT_STUDY`."""
    if study_name is not None:
        return study_name
    from evolve.storage import open_storage

    url = storage or ws.default_storage
    if url == ws.default_storage and not (ws.path / "optuna.db").exists():
        return DEFAULT_STUDY
    names = study_names(open_storage(url))
    return names[0] if len(names) == 1 else DEFAULT_STUDY


def _open_workspace_study(ws, study_name: str | None, storage: str | None):
    import optuna

    from evolve.storage import open_storage

    st_storage = open_storage(storage or ws.default_storage)
    study_name = pick_study(study_names(st_storage), study_name,
                            ws.default_storage if not storage else "the storage")
    return optuna.load_study(study_name=study_name, storage=st_storage)


def load_study_view(ws, study_name: str | None, storage: str | None, *, gold: list[str] | None = None,
                    gold_mode: str | None = None):
    """The study (``--study``, or the storage's only one) as a :class:`~evolve.study.StudyView`: its dataset with
    the gold stored with it (or ``--gold`` / ``--gold-mode`` when given), its roles and fingerprints."""
    from evolve.study import view_study

    return view_study(_open_workspace_study(ws, study_name, storage), gold=gold, gold_mode=gold_mode)


def load_workspace_study(ws, study_name: str | None, storage: str | None, *, with_dataset: bool = True,
                         gold: list[str] | None = None, gold_mode: str | None = None):
    """The study (``--study``, or the storage's only one) and optionally its dataset, as recorded with the study:
    ``--dataset``, ``--subset`` and the stored gold (``gold`` / ``gold_mode`` replace the stored ones)."""
    st = _open_workspace_study(ws, study_name, storage)
    if not with_dataset:
        return st, None
    from evolve.study import view_study

    return st, view_study(st, gold=gold, gold_mode=gold_mode).dataset


def study_options(**kw):
    """The :class:`~evolve.study.StudyOptions` of `evolve run` / `evolve worker` from their CLI arguments."""
    from evolve.gold import GoldSpec
    from evolve.search_space import load_search_space
    from evolve.study import StudyOptions, parse_objectives
    from evolve.workspace import Workspace

    GoldSpec.parse((), kw.get("gold_mode"))  # an unknown --gold-mode is one line before anything starts
    from evolve.study._strategy import STRATEGIES

    if kw.get("strategy", "tpe") not in STRATEGIES:  # an unknown --strategy too
        from evolve.errors import ConfigError

        raise ConfigError(f"--strategy: expected one of {', '.join(STRATEGIES)}, got '{kw['strategy']}'")
    if kw.get("gold") is not None:
        kw["gold"] = tuple(kw["gold"])
    ws = Workspace(kw.pop("workspace"), kw.pop("cache_url", None)).ensure()
    kw["study_name"] = run_study_name(ws, kw.get("study_name"), kw.get("storage_url"))
    space = load_search_space(kw.pop("search_space"), kw.pop("overrides", None))
    objectives = parse_objectives(kw.pop("objectives"))
    return StudyOptions(workspace=ws, space=space, objectives=objectives, **kw)


def trial_printer():
    """One stderr line per finished trial: number, state, value and why."""

    def on_trial(trial):
        state = trial.state.name
        value = f"{trial.values[0]:.4f}" if state == "COMPLETE" and trial.values else "-"
        note = ""
        if "evolve.repeat_of" in trial.user_attrs:
            note = f" (same config as trial {trial.user_attrs['evolve.repeat_of']}: recorded value, not counted)"
        elif "evolve.error" in trial.user_attrs:
            note = f": {trial.user_attrs['evolve.error']}"
        elif state == "PRUNED":
            note = f" after {trial.user_attrs.get('evolve.pruned_at_query', '?')} queries"
        err_console.print(f"trial {trial.number:>3} {state:<8} {value}{note}", highlight=False, markup=False)

    return on_trial
