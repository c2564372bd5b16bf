"""Gold queries with known answers: the gold-folder format, LLM generation and judging, review, assessment.

Every source of gold (a public set, an LLM, people's feedback, a reviewer) writes the same gold folder
(:mod:`evolve.gold._folder`), and ``--gold DIR`` reads it (:mod:`evolve.gold._apply`).
"""

from evolve.gold._apply import GOLD_MODES, GoldFolderInfo, GoldInfo, GoldSpec, apply_gold, query_counts
from evolve.gold._folder import ROLES, GoldSet, is_gold_folder, read_gold, write_gold
from evolve.gold._quepid import quepid_csv

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
    "quepid_csv",
    "read_gold",
    "write_gold",
]

# --- LLM-made gold (generate, judge): loaded on first use, since they pull in the pipeline's config and datasets
_LLM_EXPORTS = {
    "ChatClient": "evolve.llm",
    "GenerateOptions": "evolve.gold._generate",
    "generate_gold": "evolve.gold._generate",
    "JudgeOptions": "evolve.gold._judge",
    "judge_gold": "evolve.gold._judge",
}
__all__ += list(_LLM_EXPORTS)


def __getattr__(name: str):
    if name in _LLM_EXPORTS:
        import importlib

        return getattr(importlib.import_module(_LLM_EXPORTS[name]), name)
    raise AttributeError(f"module 'evolve.gold' has no attribute {name!r}")
# --- end of LLM-made gold
