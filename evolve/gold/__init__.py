"""Gold queries with known answers: the gold-folder format, LLM generation and judging, review, assessment.

Every source of gold (a public set, an LLM, people's feedback, a reviewer) writes the same gold folder
(:mod:`evolve.gold._folder`), and ``--gold DIR`` reads it (:mod:`evolve.gold._apply`).
"""

from evolve.gold._apply import GOLD_MODES, GoldFolderInfo, GoldInfo, GoldSpec, apply_gold, query_counts
from evolve.gold._folder import ROLES, GoldSet, is_gold_folder, read_gold, write_gold

__all__ = [
    "GOLD_MODES",
    "ROLES",
    "GoldFolderInfo",
    "GoldInfo",
    "GoldSet",
    "GoldSpec",
    "apply_gold",
    "is_gold_folder",
    "query_counts",
    "read_gold",
    "write_gold",
]
