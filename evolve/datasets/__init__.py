"""Retrieval datasets: loaders, validation, fingerprints and query splits."""

from evolve.datasets._beir import load_beir
from evolve.datasets._folder import load_folder
from evolve.datasets._load import BUNDLED, bundled_path, load_dataset
from evolve.datasets._squad import load_squad
from evolve.datasets._types import Dataset, Document, nfc

__all__ = [
    "BUNDLED",
    "Dataset",
    "Document",
    "bundled_path",
    "load_beir",
    "load_dataset",
    "load_folder",
    "load_squad",
    "nfc",
]
