"""``evolve serve``: the champion answers people over HTTP (the ASGI app in :mod:`._app`, one router per piece in
``_routes_*``, answers from the team's LLM in :mod:`._answers`, the live champion and its blue/green swap in
:mod:`._live`, Team-Draft Interleaving in :mod:`._interleave`, the page in ``static/``)."""

from __future__ import annotations

from evolve.serve._answers import AnswerService
from evolve.serve._app import STATIC_DIR, ServeOptions, Services, create_app
from evolve.serve._engine import SearchEngine, Slot
from evolve.serve._interleave import CHALLENGER, CHAMPION, team_draft
from evolve.serve._live import LiveChampion, ServeState
from evolve.serve._run import bind, serve_forever
from evolve.serve._sources import ChampionFile, CorpusSource, config_version, trial_config

__all__ = [
    "AnswerService",
    "CHALLENGER",
    "CHAMPION",
    "STATIC_DIR",
    "ChampionFile",
    "CorpusSource",
    "LiveChampion",
    "SearchEngine",
    "ServeOptions",
    "Services",
    "ServeState",
    "Slot",
    "config_version",
    "create_app",
    "bind",
    "serve_forever",
    "team_draft",
    "trial_config",
]
