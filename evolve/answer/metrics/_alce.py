"""ALCE-style citation support (Gao et al. 2023, "Enabling Large Language Models to Generate Text with
Citations", EMNLP; the definitions of ``compute_autoais`` in princeton-nlp/ALCE ``eval.py``), with a judge that
says whether a premise supports a claim (``evolve answer eval --judge``: the team's LLM asked a yes/no
NLI-style question, :mod:`evolve.answer.prompts` ``support.<lang>.yaml``; ALCE uses the TRUE NLI model, T5-XXL).

Per answer, with its sentences ``s_1..s_m`` (the answer's sentences as :func:`evolve.answer.sentence_citations`
splits them; ALCE uses NLTK's ``sent_tokenize``), each with its cited passages ``C_i`` (at most the first
``at_most_citations``, 3 as in ALCE's runs) and its text with the markers removed:

* sentence support ``e_i`` = 1 when ``C_i`` is not empty and the judge says the cited passages joined (each
  ``Title: t\\ntext``, joined by newlines, as ALCE formats them) support the sentence; 0 otherwise (an uncited
  sentence is unsupported);
* **citation recall** of the answer = ``sum(e_i) / m``;
* a citation ``c`` of sentence i is *relevant* when ``e_i`` = 1 and either ``C_i`` = {c}, or the judge says ``c``
  alone supports the sentence, or the judge says the other citations of ``C_i`` do NOT support it without ``c``
  (ALCE: a citation is irrelevant, "over-citation", only when it alone does not support the sentence and the
  rest does without it); no citation of an unsupported sentence is relevant;
* **citation precision** of the answer = relevant citations / all citations (0 when it cites nothing).

The figures are the means over answers (ALCE reports them x100; here as fractions). An answer with no sentence
is skipped, as ALCE skips it. Which answers go in is the caller's choice: ``evolve answer eval`` gives the
answered (non-refused) ones, since a refusal claims nothing.

The judge is a callable that takes (premise, claim) pairs and returns one bool per pair; it is called in two
rounds (every sentence's joint support, then the single and leave-one-out checks the precision needs), so an
LLM judge batches its requests.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["Claim", "Judge", "alce_support", "format_passage"]

#: (premise, claim) pairs -> one "supports" verdict per pair
Judge = Callable[[list[tuple[str, str]]], list[bool]]


@dataclass(frozen=True)
class Claim:
    """One sentence of an answer: its text without markers, and the passages it cites (formatted premises, in
    citation order)."""

    text: str
    passages: Sequence[str]


def format_passage(title: str, text: str) -> str:
    """A passage as ALCE formats a document for the NLI judge."""
    return f"Title: {title}\n{text}"


def _premise(passages: Sequence[str]) -> str:
    return "\n".join(passages)


def alce_support(
    answers: Sequence[Sequence[Claim]], judge: Judge, *, at_most_citations: int | None = 3
) -> dict[str, float | int | None]:
    """``{"support_recall", "support_precision", "n_judged_answers", "n_judge_calls"}`` over ``answers`` (each a
    list of its sentences); recall and precision None when no answer has a sentence."""
    answers = [
        [Claim(c.text, list(c.passages)[:at_most_citations] if at_most_citations else list(c.passages)) for c in a]
        for a in answers
        if a
    ]
    # round 1: each cited sentence's joint support
    joint_idx = [(i, j) for i, a in enumerate(answers) for j, c in enumerate(a) if c.passages]
    verdicts = (
        judge([(_premise(answers[i][j].passages), answers[i][j].text) for i, j in joint_idx]) if joint_idx else []
    )
    supported = {key: bool(v) for key, v in zip(joint_idx, verdicts)}
    # round 2: for a supported sentence with several citations, each citation alone and the rest without it
    multi = [(i, j) for (i, j), ok in supported.items() if ok and len(answers[i][j].passages) > 1]
    pairs: list[tuple[str, str]] = []
    for i, j in multi:
        c = answers[i][j]
        for k in range(len(c.passages)):
            rest = [p for n, p in enumerate(c.passages) if n != k]
            pairs += [(c.passages[k], c.text), (_premise(rest), c.text)]
    second = judge(pairs) if pairs else []
    calls = len(joint_idx) + len(pairs)
    relevant_multi: dict[tuple[int, int], int] = {}
    pos = 0
    for i, j in multi:
        n_rel = 0
        for _ in answers[i][j].passages:
            alone, rest = bool(second[pos]), bool(second[pos + 1])
            pos += 2
            n_rel += 1 if alone or not rest else 0
        relevant_multi[(i, j)] = n_rel
    recalls, precisions = [], []
    for i, a in enumerate(answers):
        entail = sum(1 for j in range(len(a)) if supported.get((i, j), False))
        n_cit = sum(len(c.passages) for c in a)
        n_rel = sum(
            relevant_multi.get((i, j), len(c.passages) if supported.get((i, j), False) else 0) for j, c in enumerate(a)
        )
        recalls.append(entail / len(a))
        precisions.append(n_rel / n_cit if n_cit else 0.0)
    n = len(answers)
    return {
        "support_recall": sum(recalls) / n if n else None,
        "support_precision": sum(precisions) / n if n else None,
        "n_judged_answers": n,
        "n_judge_calls": calls,
    }
