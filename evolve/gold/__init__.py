"""Gold queries with known answers: the gold-folder format, LLM generation and judging, review, assessment.

Every source of gold (a public set, an LLM, people's feedback, a reviewer) writes the same gold folder
(:mod:`evolve.gold._folder`), and ``--gold DIR`` reads it.
"""

from evolve.gold._folder import ROLES, GoldSet, is_gold_folder, read_gold, write_gold

__all__ = ["ROLES", "GoldSet", "is_gold_folder", "read_gold", "write_gold"]
