"""Refusal, measured on two variants of the same questions:

* **answerable**: the champion's passages as retrieved. A refusal here is a false refusal (the relevant
  documents were there to answer from): ``false_refusal_rate`` = refused / questions.
* **unanswerable**: the same ranked lists with every document judged relevant to the question (grade > 0)
  taken out before packing (no re-index; the next documents move up). A refusal here is right:
  ``refusal_rate`` = refused / questions.

A question whose LLM call failed is counted in neither (its flag is None).
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["refusal_rates"]


def _rate(flags: Iterable[bool | None]) -> tuple[float | None, int]:
    kept = [bool(f) for f in flags if f is not None]
    return (sum(kept) / len(kept) if kept else None), len(kept)


def refusal_rates(
    answerable_refused: Iterable[bool | None], unanswerable_refused: Iterable[bool | None]
) -> dict[str, float | int | None]:
    """``{"refusal_rate", "false_refusal_rate", "n_unanswerable", "n_answerable"}``."""
    refusal, n_un = _rate(unanswerable_refused)
    false_refusal, n_ans = _rate(answerable_refused)
    return {"refusal_rate": refusal, "false_refusal_rate": false_refusal, "n_unanswerable": n_un, "n_answerable": n_ans}
