"""``evolve gold export`` / ``gold import`` (review in Quepid or a spreadsheet) and ``evolve gold assess``."""

from __future__ import annotations

from typing import Annotated

import typer

from evolve.cli._common import (
    CacheUrlOpt,
    GoldModeOpt,
    GoldOpt,
    StorageOpt,
    StudyOpt,
    WorkspaceOpt,
)
from evolve.cli.gold import gold_app

__all__ = ["export_command", "import_command", "assess_command", "assess_lines"]

FormatOpt = Annotated[str, typer.Option("--format", help="quepid (CSV query,docid,rating) or trec (qid 0 docid grade).")]


def _one_folder(gold: list[str] | None) -> str:
    from evolve.errors import ConfigError

    if not gold or len(gold) != 1:
        raise ConfigError(f"--gold: expected exactly one gold folder, got {len(gold or [])}")
    return gold[0]


@gold_app.command("export")
def export_command(
    gold: GoldOpt = None,
    out: Annotated[str, typer.Option("--out", help="The file to write.")] = "",
    fmt: FormatOpt = "quepid",
):
    """Write a gold folder's judgements for review: Quepid's rating CSV or TREC qrels."""
    from evolve.cli._common import out_console
    from evolve.errors import ConfigError
    from evolve.gold._review import export_gold

    folder = _one_folder(gold)
    if not out:
        raise ConfigError("--out: expected the file to write, got none")
    n, nq = export_gold(folder, out, fmt)
    out_console.print(f"wrote {n} judgement(s) of {nq} quer(y/ies) to {out} ({fmt})", highlight=False)


@gold_app.command("import")
def import_command(
    file: Annotated[str, typer.Argument(help="Ratings: a Quepid CSV (query,docid,rating) or TREC qrels.")],
    gold: GoldOpt = None,
    fmt: Annotated[str | None, typer.Option("--format", help="quepid or trec.", show_default="quepid for .csv, else trec")] = None,
    reviewer: Annotated[str | None, typer.Option("--reviewer", help="Who reviewed (recorded with each rated query).",
                                                 show_default="$USER")] = None,
):
    """Merge reviewed ratings into a gold folder and mark the rated queries reviewed (atomically)."""
    from evolve.cli._common import out_console
    from evolve.gold._review import import_ratings

    folder = _one_folder(gold)
    r = import_ratings(file, folder, fmt=fmt, reviewer=reviewer)
    out_console.print(
        f"imported {r.ratings} rating(s) into {folder}: {r.changed} changed, {r.added} added, {r.unchanged} unchanged, "
        f"{r.new_queries} new quer(y/ies); {r.reviewed} quer(y/ies) marked reviewed by {r.reviewer}",
        highlight=False,
    )


def _pct(k: int, n: int) -> str:
    return f"{100.0 * k / n:.1f}%" if n else "-"


def _mix(counter) -> str:
    total = sum(counter.values())
    return ", ".join(f"{k} {v} ({_pct(v, total)})" for k, v in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])))


def assess_lines(a, splits=None, dataset=None, power=None) -> list[str]:
    """The report of ``evolve gold assess``, one string a line (the warning, when there is one, comes last)."""
    from evolve.gold._power import size_warning

    lines = [f"gold: {a.n_queries} quer(y/ies) in {len(a.folders)} folder(s): {', '.join(a.folders)}"]
    lines.append(f"kinds: {_mix(a.kinds) or '-'}")
    lines.append(f"languages: {_mix(a.langs) or '-'}")
    s = a.overlap_summary()
    if s is None:
        lines.append("overlap with the source passage: not recorded (no 'overlap' in metadata or provenance)")
    else:
        lines.append(f"overlap with the source passage ({len(a.overlap)} queries): "
                     + ", ".join(f"{k} {v:.3f}" for k, v in s.items()))
        lines.append("overlap histogram: " + " | ".join(f"{b} {n}" for b, n in a.overlap_histogram()))
    lines.append(f"reviewed: {a.n_reviewed} of {a.n_queries} ({_pct(a.n_reviewed, a.n_queries)}); "
                 f"judged: {a.n_judged} of {a.n_queries} ({_pct(a.n_judged, a.n_queries)})")
    if dataset is not None:
        lines.append(f"dropped on load: {a.dropped_stale} stale quer(y/ies), {a.dropped_dangling} dangling judgement(s)")
    if splits is not None:
        n = {r: len(splits.qrels(dataset, r)) for r in ("tune", "holdout", "report")}
        lines.append(f"roles (split seed {splits.seed}, holdout fraction {splits.holdout_fraction:g}): tune {n['tune']}, "
                     f"holdout {n['holdout']}, report {n['report']}, kept out (same text as a report query) "
                     f"{len(splits.excluded)}")
    if power is not None:
        lines.append(power.formula())
        if power.mde is None:
            lines.append(f"minimum detectable {power.label} difference: unknown (n = {power.n} holdout queries; sd: "
                         f"{power.sd_source})")
        else:
            bound = "" if power.paired else (" at most if rho >= sigma_Y/(2 sigma_X) (sd of scores, not of paired "
                                             "differences)")
            lines.append(f"minimum detectable {power.label} difference: {power.mde:.4f}{bound} (n = {power.n} holdout "
                         f"queries, sd = {power.sd:.4f}: {power.sd_source})")
        warning = size_warning(power)
        if warning:
            lines.append(warning)
    return lines


def _workspace_study(ws, study: str | None, storage: str | None):
    """The workspace's study, or None when its storage holds none."""
    import optuna

    from evolve.cli._common import pick_study, study_names
    from evolve.storage import open_storage

    if storage is None and not (ws.path / "optuna.db").exists():
        return None
    st_storage = open_storage(storage or ws.default_storage)
    names = study_names(st_storage)
    if not names and study is None:
        return None
    name = pick_study(names, study, ws.default_storage if not storage else "the storage")
    return optuna.load_study(study_name=name, storage=st_storage)


@gold_app.command("assess")
def assess_command(
    gold: GoldOpt = None,
    dataset: Annotated[str | None, typer.Option("--dataset", help="The corpus the gold is for (default: the study's).")] = None,
    gold_mode: GoldModeOpt = None,
    max_p: Annotated[float, typer.Option("--max-p", help="Significance level (alpha, one-sided) of the promotion test.")] = 0.05,
    workspace: WorkspaceOpt = None,
    study: StudyOpt = None,
    storage: StorageOpt = None,
    cache_url: CacheUrlOpt = None,
):
    """Size, mix, overlap, review and judging coverage of a gold set, and the smallest nDCG@10 gain it can detect."""
    from evolve.cache import EmbeddingCache
    from evolve.cli._common import out_console, rich_progress
    from evolve.errors import ConfigError
    from evolve.gold import GoldSpec
    from evolve.gold._assess import assess_folders
    from evolve.gold._power import Power, champion_power, power_for
    from evolve.promote import current_champion
    from evolve.splits import make_splits, role_hash
    from evolve.study import ATTR, view_study
    from evolve.study._identity import dataset_spec, load_dataset_with_gold
    from evolve.workspace import Workspace

    if not 0 < max_p < 1:
        raise ConfigError(f"--max-p: expected a number in (0, 1), got {max_p}")
    spec = GoldSpec.parse(gold, gold_mode)
    if not spec.folders:
        raise ConfigError("--gold: expected at least one gold folder, got none")
    ws = Workspace(workspace, cache_url).ensure()
    champion, _ = current_champion(ws)
    st = _workspace_study(ws, study, storage)
    if st is not None and dataset is not None and dataset_spec(dataset) != st.user_attrs.get(ATTR + "dataset"):
        st = None  # the gold is for another corpus than the study's
    power = splits = ds = info = None
    if st is not None:
        view = view_study(st, gold=spec.folders, gold_mode=spec.mode)
        ds, info, splits = view.dataset, view.gold, view.splits
        power = power_for(view, ws, champion, alpha=max_p)
    elif dataset is not None:
        ds, info = load_dataset_with_gold(dataset, spec)
        splits = make_splits(ds, 0, 0.3, reviewed=info.reviewed)
    if ds is not None and (power is None or power.sd is None):
        cache = EmbeddingCache.open(ws)
        try:
            power = champion_power(ds, splits, champion, cache=cache, progress=rich_progress, alpha=max_p)
        finally:
            cache.close()
    a = assess_folders(spec, info)
    if power is None:  # no corpus: the holdout size by hash (seed 0, fraction 0.3), no spread
        from evolve.gold import read_gold

        texts = {q: t for f in spec.folders for q, t in read_gold(f).queries.items()}
        n = sum(role_hash(t, 0) < 0.3 for t in texts.values())
        power = Power(n, None, "needs --dataset (or a study) to score the champion", max_p)
    for line in assess_lines(a, splits, ds, power):
        out_console.print(line, highlight=False, markup=False)
