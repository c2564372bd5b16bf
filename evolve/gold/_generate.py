"""``evolve gold generate``: gold queries written by an LLM the team runs, filtered, into a gold folder.

1. Sample passages across the corpus (:mod:`evolve.gold._passages`: stratified by source, folder, length and
   language, at most ``max_per_doc`` per document).
2. For each, ask the model (in the passage's own language: ``prompts/generate.<lang>.yaml``) for a question a
   colleague would ask that the passage answers, without copying its phrasing; the kind (factual, how-to,
   conceptual) rotates from a seeded start.
3. Filter (:mod:`evolve.gold._filters`): each rejection counted; the counts add up to the number generated.
4. Write the gold folder through :func:`evolve.gold.write_gold` (all or nothing): ``queries.jsonl`` (metadata
   ``lang``, ``kind``, ``source: generated``, ``doc_id``, ``passage``, ``overlap``, and ``answers``: the answer
   the model gave with its question, a reference for answer metrics), ``qrels.tsv`` (the source
   document, grade 2: "holds an answer" on the UMBRELA scale the judge uses), ``gold.jsonl`` (per query: the
   passage and its span, model, prompt hash and version, seeds, tokens, seconds, the raw reply and every
   filter's verdict), ``rejected.jsonl`` (the same for what the filters dropped), ``report.md``/``report.json``
   and ``overlap.png`` (the distribution of question/passage overlap).

With ``append``, an existing gold folder at ``out`` keeps everything it has; new passages skip the ones it
quotes or tried before (``rejected.jsonl``) and new questions are checked for duplicates against its questions.
"""

from __future__ import annotations

import hashlib
import json
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from evolve.datasets import Dataset
from evolve.datasets._types import clean_answers
from evolve.errors import DatasetError
from evolve.gold._filters import FILTERS, Candidate, FilterSettings, apply_filters
from evolve.gold._passages import DEFAULT_PASSAGE_TOKENS, Passage, sample_passages
from evolve.llm import ChatClient, LLMStats
from evolve.progress import ProgressFactory, null_progress

__all__ = ["GenerateOptions", "GenerationResult", "generate_gold", "KINDS", "GENERATED_GRADE", "question_id"]

#: question kinds, in the order the rotation walks them
KINDS = ("factual", "how-to", "conceptual")
#: the grade the source document of a generated question gets (UMBRELA 2: holds an answer)
GENERATED_GRADE = 2


@dataclass(frozen=True)
class GenerateOptions:
    n: int = 300
    seed: int = 0
    lang: str = "auto"
    max_per_doc: int = 2
    max_tokens: int = 256
    temperature: float = 0.7
    passage_tokens: int = DEFAULT_PASSAGE_TOKENS
    filters: FilterSettings = field(default_factory=FilterSettings)

    def __post_init__(self):
        if self.lang not in ("auto", "ko", "en"):
            raise ValueError(f"lang must be auto, ko or en, got {self.lang!r}")


@dataclass
class GenerationResult:
    out: Path
    generated: int
    kept: int
    counts: dict[str, int]
    stats: LLMStats
    total: int  # queries in the folder (kept now + kept before, with append)
    written: bool = True  # False when no question survived and there was no folder to add to: nothing written

    def summary(self) -> dict[str, Any]:
        return {"out": str(self.out), "generated": self.generated, "kept": self.kept, "total_queries": self.total,
                "rejected": {k: v for k, v in self.counts.items() if k != "kept"}, "llm": self.stats.as_dict()}


def question_id(question: str, doc_id: str) -> str:
    """A stable id: the same question about the same document gets the same id on every night."""
    return "gen-" + hashlib.sha256(f"{doc_id}\n{' '.join(question.split()).lower()}".encode()).hexdigest()[:16]


def _seed_of(seed: int, p: Passage) -> int:
    return zlib.crc32(f"{seed}:{p.doc_id}:{p.index}".encode()) & 0x7FFFFFFF


def _fields(data: dict | None) -> dict:
    """The reply's fields with lower-cased keys (small models write "Question")."""
    return {str(k).strip().lower(): v for k, v in (data or {}).items()}


def _accept(data: dict) -> bool:
    q = _fields(data).get("question")
    return isinstance(q, str) and bool(q.strip())


def _existing(out: Path):
    from evolve.gold._folder import is_gold_folder, read_gold

    return read_gold(out) if is_gold_folder(out) else None


def _read_rejected(folder: Path) -> list[dict]:
    path = folder / "rejected.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _extra_files(folder: Path, skip: set[str]) -> dict[str, bytes]:
    """Files of an existing gold folder besides the ones the format defines (reports, pictures)."""
    keep = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.name not in skip and p.name not in ("queries.jsonl", "qrels.tsv", "qrels.txt",
                                                                 "gold.jsonl") and not p.name.startswith("."):
            keep[p.name] = p.read_bytes()
    return keep


def generate_gold(
    dataset: Dataset,
    out: str | Path,
    client: ChatClient,
    options: GenerateOptions = GenerateOptions(),
    *,
    append: bool = False,
    doc_ids: set[str] | None = None,
    progress: ProgressFactory = null_progress,
) -> GenerationResult:
    """Generate, filter and write a gold folder at ``out`` (see the module doc). Nothing is written unless
    every request got an answer: an endpoint that stays down raises :class:`~evolve.errors.BackendError` and
    leaves ``out`` as it was. ``doc_ids`` restricts the documents passages are sampled from."""
    from evolve.gold.prompts import load_prompt

    out = Path(out).expanduser().absolute()
    identity = client.identity()  # an unreachable endpoint or an unserved model fails before any work
    old = _existing(out) if append else None
    exclude = set()
    if old is not None:  # passages the folder quotes, or tried and rejected before, are not asked about again
        for meta in old.metadata.values():
            if meta.get("doc_id") and meta.get("passage"):
                exclude.add((str(meta["doc_id"]), str(meta["passage"])))
        for rec in _read_rejected(out):
            exclude.add((str(rec.get("doc_id")), str(rec.get("passage"))))
    passages = sample_passages(dataset, options.n, seed=options.seed, lang=options.lang,
                               max_per_doc=options.max_per_doc, size=options.passage_tokens, exclude=exclude,
                               doc_ids=doc_ids)
    if not passages:
        raise DatasetError(f"expected passages to write questions from (language {options.lang}), got none: "
                           "every document is empty, too short, or in another language", path=dataset.source)
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    kinds = [KINDS[(options.seed + i) % len(KINDS)] for i in range(len(passages))]
    prompts = [load_prompt("generate", p.lang) for p in passages]
    messages = [pr.render(passage=p.text, kind=pr.kinds[k]) for p, pr, k in zip(passages, prompts, kinds)]
    seeds = [_seed_of(options.seed, p) for p in passages]
    with progress("writing questions", len(messages)) as advance:
        answers = client.json_many(messages, max_tokens=options.max_tokens, temperature=options.temperature,
                                   seeds=seeds, accept=_accept, progress=advance)
    cands = []
    for p, a in zip(passages, answers):
        data = _fields(a.data)
        q = data.get("question") if isinstance(data.get("question"), str) else None
        ans = data.get("answer")
        cands.append(Candidate(question=" ".join(q.split()) if q else None, passage=p.text, lang=p.lang,
                               answer=str(ans) if ans is not None else None))
    existing_q = list(old.queries.values()) if old is not None else []
    counts = apply_filters(cands, options.filters, existing_questions=existing_q)

    queries: dict[str, str] = dict(old.queries) if old else {}
    metadata: dict[str, dict] = {q: dict(m) for q, m in old.metadata.items()} if old else {}
    qrels: dict[str, dict[str, int]] = {q: dict(d) for q, d in old.qrels.items()} if old else {}
    provenance: list[dict] = [r for recs in old.provenance.values() for r in recs] if old else []
    rejected: list[dict] = []
    overlaps: list[float] = []
    for p, pr, kind, seed, a, c in zip(passages, prompts, kinds, seeds, answers, cands):
        ov = c.verdicts.get("overlap", {}).get("value")
        record = {
            "source": "generated", "doc_id": p.doc_id, "passage": p.text, "span": [p.start, p.end],
            "passage_index": p.index, "stratum": list(p.stratum), "lang": p.lang, "kind": kind,
            "question": c.question, "answer": c.answer, "model": identity, "prompt": pr.provenance(),
            "seed": options.seed, "request_seed": seed, "temperature": options.temperature,
            "max_tokens": options.max_tokens, "llm": a.record(), "filters": c.verdicts,
            "rejected_by": c.rejected_by, "created_at": started,
        }
        if c.rejected_by is not None:
            rejected.append(record)
            continue
        qid = question_id(c.question, p.doc_id)
        if qid in queries:  # the very same question about the same document: the duplicate filter's job
            rejected.append({**record, "rejected_by": "duplicate"})
            counts["kept"] -= 1
            counts["duplicate"] += 1
            continue
        overlaps.append(float(ov) if ov is not None else 0.0)
        queries[qid] = c.question
        metadata[qid] = {"lang": p.lang, "kind": kind, "source": "generated", "doc_id": p.doc_id,
                         "passage": p.text, "overlap": float(ov) if ov is not None else 0.0}
        refs = clean_answers([c.answer] if c.answer else [])
        if refs:  # the answer the question was asked about, beside its passage (a reference for answer metrics)
            metadata[qid]["answers"] = refs
        qrels[qid] = {p.doc_id: GENERATED_GRADE}
        provenance.append({"query_id": qid, **record})
    if not queries:  # nothing survived and nothing to add to: no folder (an empty one would not read as gold)
        return GenerationResult(out, len(passages), 0, counts, client.stats, 0, written=False)
    all_overlaps = [float(c.verdicts["overlap"]["value"]) for c in cands if "overlap" in c.verdicts]
    report = {
        "command": "gold generate", "created_at": started, "dataset": dataset.name, "dataset_source": dataset.source,
        "dataset_fingerprint": dataset.fingerprint, "model": identity, "options": _options_dict(options),
        "prompts": {f"{pr.name}.{pr.lang}": pr.provenance() for pr in {(x.name, x.lang): x for x in prompts}.values()},
        "generated": len(passages), "counts": counts, "llm": client.stats.as_dict(),
        "overlap": {"kept": _describe(overlaps), "all": _describe(all_overlaps),
                    "histogram_all": _histogram(all_overlaps), "histogram_kept": _histogram(overlaps),
                    "cap": options.filters.max_overlap},
        "languages": _tally(p.lang for p in passages), "kinds": _tally(kinds),
        "strata": len({p.stratum for p in passages}),
        "appended_to": len(old.queries) if old else 0,
    }
    from evolve.provenance import provenance as run_provenance

    report["provenance"] = run_provenance()
    extra: dict[str, str | bytes] = {}
    if old is not None:
        extra.update(_extra_files(out, skip={"report.md", "report.json", "overlap.png", "rejected.jsonl"}))
        rejected = _read_rejected(out) + rejected
    extra["report.md"] = render_report(report)
    extra["report.json"] = json.dumps(report, ensure_ascii=False, indent=2, sort_keys=True) + "\n"
    extra["rejected.jsonl"] = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rejected)
    extra["overlap.png"] = overlap_png(all_overlaps, overlaps, options.filters.max_overlap)
    from evolve.gold._folder import write_gold

    write_gold(out, queries, qrels, metadata=metadata, pinned=old.pinned if old else None,
               provenance=provenance, extra_files=extra)
    return GenerationResult(out, len(passages), counts["kept"], counts, client.stats, len(queries))


def _options_dict(options: GenerateOptions) -> dict[str, Any]:
    return asdict(options)


def _tally(items) -> dict[str, int]:
    out: dict[str, int] = {}
    for x in items:
        out[x] = out.get(x, 0) + 1
    return dict(sorted(out.items()))


def _describe(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "mean": None, "median": None, "p90": None, "max": None}
    s = sorted(values)

    def q(f: float) -> float:
        return round(s[min(len(s) - 1, int(f * (len(s) - 1) + 0.5))], 4)

    return {"n": len(s), "mean": round(sum(s) / len(s), 4), "median": q(0.5), "p90": q(0.9), "max": round(s[-1], 4)}


def _histogram(values: list[float], bins: int = 10) -> list[int]:
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, max(0, int(v * bins)))] += 1
    return counts


def _text_histogram(counts: list[int], cap: float, width: int = 40) -> list[str]:
    peak = max(counts) if counts and max(counts) else 1
    bins = len(counts)
    lines = []
    for i, c in enumerate(counts):
        lo, hi = i / bins, (i + 1) / bins
        mark = "  <- cap" if lo < cap <= hi else ""
        lines.append(f"{lo:.1f}-{hi:.1f} | {'#' * round(width * c / peak):<{width}} {c}{mark}")
    return lines


def render_report(report: dict) -> str:
    """report.md: counts that add up, the overlap distribution, and the LLM's work."""
    counts = report["counts"]
    lines = [
        "# Generated gold: report",
        "",
        f"- dataset: {report['dataset']} ({report['dataset_fingerprint'][:12]})",
        f"- model: {report['model']['model']} at {report['model']['url']}",
        "- prompts: " + ", ".join(f"{k} {v['version']} (sha256 {v['sha256'][:12]})"
                                    for k, v in sorted(report["prompts"].items())),
        f"- seed: {report['options']['seed']}; languages: {report['languages']}; kinds: {report['kinds']}; "
        f"strata sampled: {report['strata']}",
        "",
        "## Filters (each question counted once, at the first filter it fails)",
        "",
        "| filter | rejected |",
        "|---|---:|",
    ]
    lines += [f"| {name} | {counts[name]} |" for name in FILTERS]
    lines += [f"| **kept** | **{counts['kept']}** |",
              f"| generated | {report['generated']} |", ""]
    ov = report["overlap"]
    lines += [
        "## Question/passage overlap",
        "",
        "The share of a question's content words (BM25's tokens: stemmed English words, kiwipiepy content "
        "morphemes for Korean) that occur in its passage. High overlap makes BM25 look better than it is; "
        f"questions above the cap ({ov['cap']}) are dropped.",
        "",
        f"All generated: {ov['all']}",
        f"Kept: {ov['kept']}",
        "",
        "```",
        *_text_histogram(ov["histogram_all"], ov["cap"]),
        "```",
        "",
        "overlap.png shows the same distribution.",
        "",
        "## LLM",
        "",
    ]
    llm = report["llm"]
    lines += [
        f"- requests: {llm['requests']} (asked again after an unreadable reply: {llm['retried']})",
        f"- replies read: {llm['parsed']}",
        f"- tokens: {llm['prompt_tokens']} prompt, {llm['completion_tokens']} completion; {llm['seconds']} s",
        "",
    ]
    return "\n".join(lines)


def overlap_png(all_values: list[float], kept: list[float], cap: float) -> bytes:
    """A histogram of overlaps (all generated, and kept), as PNG bytes (matplotlib, Agg)."""
    import io

    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.2), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    bins = [i / 10 for i in range(11)]
    ax.hist(all_values, bins=bins, color="#c8c8c8", label=f"generated ({len(all_values)})")
    ax.hist(kept, bins=bins, color="#3b6ea5", label=f"kept ({len(kept)})")
    ax.axvline(cap, color="#b03030", linestyle="--", label=f"cap {cap}")
    ax.set_xlabel("content-word overlap with the passage")
    ax.set_ylabel("questions")
    ax.set_xlim(0, 1)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()
