"""evolve: a self-tuning experiment loop for retrieval pipelines.

The library never prints and never exits: it raises :class:`evolve.errors.EvolveError`
subclasses with user-facing one-line messages; :mod:`evolve.cli` turns them into exit code 2.
Heavy dependencies (torch, faiss, vllm, mlflow, optuna) are imported lazily.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
