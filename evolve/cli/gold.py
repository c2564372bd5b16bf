"""``evolve gold …``: gold queries for a team's own corpus.

The ``gold`` group lives here; its commands live in one module per concern, each adding itself to
:data:`gold_app`: ``gold_llm`` (generate, judge: an LLM the team runs) and ``gold_review`` (export, import,
assess: people and statistics). Heavy imports stay inside the commands, so ``evolve --help`` stays instant.
"""

from __future__ import annotations

import typer

__all__ = ["gold_app", "register"]

gold_app = typer.Typer(
    name="gold",
    help="Gold queries: generate them with a local LLM, judge pooled results, review, assess.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)


def register(app: typer.Typer) -> None:
    for name in ("gold_llm", "gold_review"):
        try:
            __import__(f"evolve.cli.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"evolve.cli.{name}":
                raise
    app.add_typer(gold_app, name="gold")
