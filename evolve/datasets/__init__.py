"""Retrieval datasets: loaders, validation, fingerprints and query splits."""

from evolve.datasets._beir import load_beir
from evolve.datasets._common import Parts, drop_dangling
from evolve.datasets._folder import load_folder
from evolve.datasets._load import BUNDLED, bundled_path, load_dataset
from evolve.datasets._manifest import FORMATS, load_manifest, read_manifest
from evolve.datasets._notion import load_notion
from evolve.datasets._squad import load_squad
from evolve.datasets._tickets import FieldMap, load_tickets
from evolve.datasets._types import Dataset, Document, nfc
from evolve.datasets._zammad import load_zammad

__all__ = [
    "BUNDLED",
    "FORMATS",
    "Dataset",
    "Document",
    "FieldMap",
    "Parts",
    "bundled_path",
    "drop_dangling",
    "load_beir",
    "load_dataset",
    "load_folder",
    "load_manifest",
    "load_notion",
    "load_squad",
    "load_tickets",
    "load_zammad",
    "nfc",
    "read_manifest",
]
