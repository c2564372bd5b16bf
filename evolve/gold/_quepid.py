"""Quepid's rating CSV (``query,docid,rating``), written safe to open in a spreadsheet and read back exactly.

What people typed (a query, a document id from a ticket system) goes into cells that a spreadsheet may run as a
formula (CSV injection, OWASP: https://owasp.org/www-community/attacks/CSV_Injection). A cell that starts with
``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a leading ``'`` (OWASP's rule); so does a cell that
already starts with ``'`` followed by such a cell, so that :func:`unneutralise` gives back exactly what was
written. The reader strips that one ``'`` again (``evolve gold import``). A rating written by another tool whose
query genuinely starts with ``'=`` (or ``'+`` ...) loses that quote: the rule cannot tell it from ours.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

__all__ = ["FORMULA_STARTS", "neutralise", "unneutralise", "quepid_csv"]

#: first characters that make a spreadsheet read a cell as a formula (OWASP)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _needs_quote(cell: str) -> bool:
    i = 0
    while i < len(cell) and cell[i] == "'":
        i += 1
    return i < len(cell) and cell[i] in FORMULA_STARTS


def neutralise(cell: str) -> str:
    """``'`` before a cell a spreadsheet would run as a formula (``=1+1`` -> ``'=1+1``, ``'=x`` -> ``''=x``)."""
    return "'" + cell if _needs_quote(cell) else cell


def unneutralise(cell: str) -> str:
    """The inverse of :func:`neutralise` (``'=1+1`` -> ``=1+1``; ``'abc`` stays ``'abc``)."""
    return cell[1:] if cell.startswith("'") and _needs_quote(cell[1:]) else cell


def quepid_csv(rows: Iterable[tuple[str, str, int]]) -> str:
    """The CSV text of ``(query text, doc id, rating)`` rows under Quepid's header, every text cell neutralised."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    # the csv module quotes a cell holding a character of the line terminator, and "\n" lacks "\r": a row with a
    # carriage return is quoted whole, or a reader would take the "\r" for the end of the row
    quoted = csv.writer(buf, lineterminator="\n", quoting=csv.QUOTE_ALL)
    writer.writerow(["query", "docid", "rating"])
    for text, doc_id, rating in rows:
        row = [neutralise(text), neutralise(doc_id), int(rating)]
        (quoted if "\r" in text or "\r" in doc_id else writer).writerow(row)
    return buf.getvalue()
