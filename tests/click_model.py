"""Scripted users (a stand-in for people): they live in :mod:`evolve.testing.users`, shared with the benchmarks."""

from evolve.testing.users import Action, CascadeUser, simulate

__all__ = ["Action", "CascadeUser", "simulate"]
