"""The question's language, by the Hangul-share rule of the gold filters (no language-ID model installs offline):
``ko`` when at least 30 % of its letters are Hangul, else ``en``. The answer is asked for in that language."""

from __future__ import annotations

__all__ = ["question_language"]


def question_language(text: str) -> str:
    from evolve.gold._filters import is_korean_text

    return "ko" if is_korean_text(text) else "en"
