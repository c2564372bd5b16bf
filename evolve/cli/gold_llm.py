"""``evolve gold generate`` and ``evolve gold judge``: gold from an LLM the team runs (vLLM, Ollama, any
OpenAI-compatible chat server). Thin: the work is in :mod:`evolve.gold._generate` and :mod:`evolve.gold._judge`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from evolve.cli._common import CacheUrlOpt, DatasetOpt, JsonOpt, StrictOpt, WorkspaceOpt
from evolve.cli.gold import gold_app

__all__ = ["generate_command", "judge_command"]

LLMUrlOpt = Annotated[str, typer.Option("--llm-url", envvar="EVOLVE_LLM_URL",
                                        help="The chat server's OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1 "
                                             "(vLLM) or http://127.0.0.1:11434/v1 (Ollama).")]
LLMModelOpt = Annotated[str, typer.Option("--llm-model", envvar="EVOLVE_LLM_MODEL",
                                          help="The served model's id (as GET /v1/models lists it).")]
LLMKeyEnvOpt = Annotated[str | None, typer.Option("--llm-api-key-env",
                                                  help="NAME of the environment variable holding the API key (never logged).")]
ConcurrencyOpt = Annotated[int, typer.Option("--concurrency", help="Requests in flight at once.")]
TimeoutOpt = Annotated[float, typer.Option("--timeout", help="Seconds to wait for one answer.")]
RetriesOpt = Annotated[int, typer.Option("--max-retries", help="Retries of a failed request (5xx, timeout, refused).")]


def _check(ok: bool, message: str) -> None:
    if not ok:
        from evolve.errors import ConfigError

        raise ConfigError(message)


def _client(url: str, model: str, key_env: str | None, concurrency: int, timeout: float, retries: int):
    from evolve.llm import ChatClient

    _check(concurrency >= 1, f"--concurrency: expected at least 1, got {concurrency}")
    _check(timeout > 0, f"--timeout: expected a positive number of seconds, got {timeout:g}")
    _check(retries >= 0, f"--max-retries: expected 0 or more, got {retries}")
    return ChatClient(url, model, api_key_env=key_env, concurrency=concurrency, timeout=timeout, max_retries=retries)


def _out_folder(out: str, append: bool, force: bool) -> Path:
    from evolve.errors import ConfigError
    from evolve.gold import is_gold_folder

    path = Path(out).expanduser().absolute()
    if append and force:
        raise ConfigError("--append and --force: expected one of them, got both")
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--out {path}: expected a folder for the gold, got a file")
    if path.is_dir() and any(path.iterdir()):
        dataset_like = any((path / n).exists() for n in ("corpus.jsonl", "corpus.jsonl.gz"))
        if dataset_like or not is_gold_folder(path):
            raise ConfigError(f"--out {path}: expected a new or empty folder, or a gold folder, got a folder "
                              "with other files (never replaced)")
        if not (append or force):
            raise ConfigError(f"--out {path} is a gold folder already: expected --append (add to it) or --force "
                              "(replace it)")
    return path


@gold_app.command("generate")
def generate_command(
    out: Annotated[str, typer.Option("--out", help="The gold folder to write (queries.jsonl, qrels.tsv, gold.jsonl, report.md).")],
    llm_url: LLMUrlOpt,
    llm_model: LLMModelOpt,
    dataset: DatasetOpt = "scifact",
    n: Annotated[int, typer.Option("--n", help="Passages to write a question for (fewer survive the filters: see the report).")] = 300,
    seed: Annotated[int, typer.Option("--seed", help="Seeds the sample, the kinds and the model's sampling.")] = 0,
    lang: Annotated[str, typer.Option("--lang", help="auto: every passage, each asked in its own language; ko or en: passages in that language only.")] = "auto",
    max_per_doc: Annotated[int, typer.Option("--max-per-doc", help="At most this many passages of one document.")] = 2,
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="Longest reply, in tokens.")] = 256,
    max_overlap: Annotated[float, typer.Option("--max-overlap", help="Drop questions whose content words are more than this share copied from the passage.")] = 0.6,
    append: Annotated[bool, typer.Option("--append", help="Add to the gold folder at --out, keeping what it has.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace the gold folder at --out.")] = False,
    llm_api_key_env: LLMKeyEnvOpt = None,
    concurrency: ConcurrencyOpt = 2,
    timeout: TimeoutOpt = 120.0,
    max_retries: RetriesOpt = 3,
    strict: StrictOpt = False,
    json_out: JsonOpt = False,
):
    """Write gold queries for a corpus with an LLM: one question per sampled passage, filtered, into a gold folder."""
    from evolve.cli._common import emit_json, out_console, rich_progress, warn_dataset
    from evolve.datasets import load_dataset
    from evolve.gold._filters import FILTERS, FilterSettings
    from evolve.gold._generate import GenerateOptions, generate_gold

    _check(lang in ("auto", "ko", "en"), f"--lang: expected auto, ko or en, got '{lang}'")
    _check(n >= 1, f"--n: expected at least 1, got {n}")
    _check(max_per_doc >= 1, f"--max-per-doc: expected at least 1, got {max_per_doc}")
    _check(max_tokens >= 8, f"--max-tokens: expected at least 8, got {max_tokens}")
    _check(0.0 <= max_overlap <= 1.0, f"--max-overlap: expected a number in [0, 1], got {max_overlap:g}")
    path = _out_folder(out, append, force)
    ds = load_dataset(dataset, strict=strict)
    warn_dataset(ds)
    options = GenerateOptions(n=n, seed=seed, lang=lang, max_per_doc=max_per_doc, max_tokens=max_tokens,
                              filters=FilterSettings(max_overlap=max_overlap))
    with _client(llm_url, llm_model, llm_api_key_env, concurrency, timeout, max_retries) as client:
        result = generate_gold(ds, path, client, options, append=append, progress=rich_progress)
    rejected = ", ".join(f"{result.counts[f]} {f}" for f in FILTERS)
    if not result.written:
        from evolve.errors import EvolveError

        raise EvolveError(f"no generated question survived the filters ({result.generated} generated; rejected: "
                          f"{rejected}): expected at least one, nothing written to {result.out}")
    if json_out:
        emit_json(result.summary())
        return
    out_console.print(
        f"wrote {result.kept} generated queries to {result.out} ({result.generated} generated; rejected: {rejected}); "
        f"report: {result.out / 'report.md'}", highlight=False, markup=False, soft_wrap=True)


def _pool_configs(spec: str | None, ws):
    from evolve.config import load_config
    from evolve.errors import ConfigError, did_you_mean
    from evolve.gold._judge import default_pool_configs

    builtin = default_pool_configs(ws.champion_path)
    if not spec:
        return builtin
    out = {}
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        if item in builtin:
            out[item] = builtin[item]
        elif Path(item).expanduser().is_file():
            out[Path(item).stem] = load_config(item)
        else:
            raise ConfigError(f"--configs: expected a config YAML file or one of {', '.join(builtin)}, got "
                              f"'{item}'{did_you_mean(item, builtin)}")
    if not out:
        raise ConfigError("--configs: expected at least one config, got none")
    return out


@gold_app.command("judge")
def judge_command(
    gold: Annotated[str, typer.Option("--gold", help="The gold folder whose queries get judged.")],
    llm_url: LLMUrlOpt,
    llm_model: LLMModelOpt,
    dataset: DatasetOpt = "scifact",
    depth: Annotated[int, typer.Option("--depth", help="Pool the top DEPTH documents of each config.")] = 20,
    configs: Annotated[str | None, typer.Option("--configs", help="Comma-separated config YAMLs (or bm25, dense, hybrid, champion) to pool.", show_default="bm25,dense,hybrid and the workspace champion")] = None,
    out: Annotated[str | None, typer.Option("--out", help="Write the judged folder here instead of updating --gold.")] = None,
    max_passage_chars: Annotated[int, typer.Option("--max-passage-chars", help="Show the judge at most this many characters of a document.")] = 2000,
    rejudge: Annotated[bool, typer.Option("--rejudge", help="Ask again about pairs judged before.")] = False,
    llm_api_key_env: LLMKeyEnvOpt = None,
    concurrency: ConcurrencyOpt = 2,
    timeout: TimeoutOpt = 120.0,
    max_retries: RetriesOpt = 3,
    workspace: WorkspaceOpt = None,
    cache_url: CacheUrlOpt = None,
    strict: StrictOpt = False,
    json_out: JsonOpt = False,
):
    """Grade pooled results (BM25, dense, hybrid, champion) for every gold query 0-3 with an LLM (UMBRELA-style)."""
    from evolve.cache import EmbeddingCache
    from evolve.cli._common import emit_json, out_console, rich_progress, warn_dataset
    from evolve.datasets import load_dataset
    from evolve.embedders import EmbedderPool
    from evolve.gold import is_gold_folder
    from evolve.gold._judge import JudgeOptions, judge_gold
    from evolve.workspace import Workspace

    _check(1 <= depth <= 100, f"--depth: expected 1 to 100, got {depth}")
    _check(max_passage_chars >= 100, f"--max-passage-chars: expected at least 100, got {max_passage_chars}")
    _check(is_gold_folder(gold), f"--gold {gold}: expected a gold folder (queries.jsonl and qrels), got none")
    if out is not None:
        _out_folder(out, append=False, force=True)
    ws = Workspace(workspace, cache_url).ensure()
    pool_configs = _pool_configs(configs, ws)
    ds = load_dataset(dataset, strict=strict)
    warn_dataset(ds)
    cache = EmbeddingCache.open(ws)
    embedders = EmbedderPool()
    try:
        with _client(llm_url, llm_model, llm_api_key_env, concurrency, timeout, max_retries) as client:
            client.info()  # an unreachable endpoint fails before the corpus is embedded
            result = judge_gold(ds, gold, client, pool_configs, JudgeOptions(depth=depth, max_passage_chars=max_passage_chars,
                                                                            rejudge=rejudge),
                                out=out, cache=cache, embedders=embedders, progress=rich_progress)
    finally:
        embedders.close()
        cache.close()
    if json_out:
        emit_json(result.summary())
        return
    grades = " ".join(f"{g}:{c}" for g, c in result.grades.items())
    out_console.print(
        f"judged {result.judged} of {result.asked} pooled pairs for {result.queries} queries (grades {grades}; "
        f"{result.failed} unreadable; pooled from {', '.join(result.configs)}) into {result.out}; "
        f"report: {result.out / 'judge.md'}", highlight=False, markup=False, soft_wrap=True)
