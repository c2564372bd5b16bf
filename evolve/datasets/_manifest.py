"""A dataset manifest: one YAML file that names a team's sources and how to read them.

``--dataset team.yaml`` is one string that every later command (``promote-config``, ``status``, ``search``,
``serve``) reloads, so a field mapping that lives in a flag would not survive the night: it lives here. Paths are
relative to the manifest's folder. Short form (one source)::

    format: tickets
    path: exports/tickets.csv
    fields: {id: ticket_id, title: subject, text: [body, comments]}

Several sources (their documents together are the corpus; ids must not collide, ``id_prefix`` helps)::

    name: helpdesk
    sources:
      - {format: notion, path: notion-export.zip}
      - {format: zammad, path: zammad/, internal_notes: drop}

Each format is a :class:`SourceSpec` subclass: its fields are that format's options (unknown keys are an error
with "did you mean"), and :meth:`SourceSpec.read` returns the source's :class:`Parts`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from evolve.datasets._beir import read_beir
from evolve.datasets._common import Parts, finalize_parts
from evolve.datasets._folder import read_folder
from evolve.datasets._notion import read_notion
from evolve.datasets._squad import read_squad
from evolve.datasets._tickets import FieldMap, read_tickets
from evolve.datasets._types import Dataset, Document
from evolve.datasets._zammad import read_zammad
from evolve.errors import ConfigError, DatasetError, did_you_mean

__all__ = ["FORMATS", "Manifest", "SourceSpec", "is_manifest", "load_manifest", "read_manifest"]


def _as_list(v: Any) -> Any:
    return [v] if isinstance(v, str) else v


def _link_base(v: Any) -> Any:
    """A source's ``url_base``: an http(s) URL (links open in a browser), trailing ``/`` dropped."""
    if v is None:
        return v
    from urllib.parse import urlsplit

    parts = urlsplit(str(v).strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("an http(s) URL such as https://helpdesk.example.com")
    return str(v).strip().rstrip("/")


class SourceSpec(BaseModel):
    """One source of a manifest.

    Contract: a subclass fixes ``format`` (a ``Literal``), declares its options as fields with defaults, and
    implements :meth:`read`, which reads ``path`` (already resolved against the manifest's folder) into
    :class:`Parts` without finalising them: empty documents and dangling qrels are dropped once, over all
    sources. Every document it returns carries ``metadata["source"] = label``.
    """

    model_config = ConfigDict(extra="forbid")
    format: str
    #: file or folder, relative to the manifest's folder (or absolute)
    path: str
    #: the label documents carry as ``metadata["source"]`` (default: the format)
    name: str | None = None
    #: prepended to every document id of this source (and to its qrels' document ids)
    id_prefix: str = ""

    @property
    def label(self) -> str:
        return self.name or self.format

    def read(self, path: Path) -> Parts:  # pragma: no cover - abstract
        raise NotImplementedError


class NotionSpec(SourceSpec):
    format: Literal["notion"]
    #: database columns whose values are content (kept in the text), e.g. a FAQ's "Answer" column
    content_properties: list[str] = []

    #: where page ids open: ``<url_base>/<id>`` is each page's ``metadata["url"]``
    url_base: str = "https://www.notion.so"

    listify = field_validator("content_properties", mode="before")(_as_list)
    link_base = field_validator("url_base")(_link_base)

    def read(self, path: Path) -> Parts:
        return read_notion(path, source=self.label, content_properties=tuple(self.content_properties),
                           url_base=self.url_base)


class FieldsSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    title: list[str] = []
    text: list[str]
    properties: list[str] = []
    #: the field holding a link to the original (``metadata["url"]``)
    url: str | None = None

    listify = field_validator("title", "text", "properties", mode="before")(_as_list)

    def field_map(self) -> FieldMap:
        return FieldMap(self.id, tuple(self.title), tuple(self.text), tuple(self.properties), self.url)


class TicketsSpec(SourceSpec):
    format: Literal["tickets"]
    fields: FieldsSpec
    #: CSV only: the file's text encoding (UTF-8, with or without BOM, unless told; e.g. cp949)
    encoding: str = "utf-8"
    #: CSV only
    delimiter: str = ","
    #: the mapped values are HTML: keep their text
    strip_html: bool = False

    def read(self, path: Path) -> Parts:
        return read_tickets(path, self.fields.field_map(), source=self.label, encoding=self.encoding,
                            delimiter=self.delimiter, strip_html=self.strip_html)


class ZammadSpec(SourceSpec):
    format: Literal["zammad"]
    #: internal notes (agents only): dropped by default, so answers never quote them
    internal_notes: Literal["drop", "keep"] = "drop"
    #: the ticket field that is the document id: ``number`` (what people quote) or ``id``
    id_field: str = "number"
    #: the Zammad server (``https://helpdesk.example.com``): ``<url_base>/#ticket/zoom/<id>`` is each ticket's
    #: ``metadata["url"]``; no links without it
    url_base: str | None = None

    link_base = field_validator("url_base")(_link_base)

    def read(self, path: Path) -> Parts:
        return read_zammad(path, source=self.label, internal_notes=self.internal_notes, id_field=self.id_field,
                           url_base=self.url_base)


class BeirSpec(SourceSpec):
    format: Literal["beir"]

    def read(self, path: Path) -> Parts:
        return read_beir(path)


class FolderSpec(SourceSpec):
    format: Literal["folder"]

    def read(self, path: Path) -> Parts:
        return read_folder(path, source=self.label)


class SquadSpec(SourceSpec):
    format: Literal["squad"]

    def read(self, path: Path) -> Parts:
        return read_squad(path, source=self.label)


_SPECS: tuple[type[SourceSpec], ...] = (NotionSpec, TicketsSpec, ZammadSpec, BeirSpec, FolderSpec, SquadSpec)
#: format name -> its spec
FORMATS: dict[str, type[SourceSpec]] = {spec.model_fields["format"].annotation.__args__[0]: spec for spec in _SPECS}

AnySource = Annotated[NotionSpec | TicketsSpec | ZammadSpec | BeirSpec | FolderSpec | SquadSpec,
                      Field(discriminator="format")]


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: the dataset's name (default: the manifest file's name, or its folder's for ``dataset.yaml``)
    name: str | None = None
    sources: list[AnySource] = Field(min_length=1)

    _generic_stems: ClassVar[set[str]] = {"dataset", "manifest", "evolve-dataset"}


def is_manifest(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in {".yaml", ".yml"}


def _known(loc: tuple) -> list[str]:
    """Field names of the model that ``loc`` (without the bad key) points at."""
    model: type[BaseModel] | None = Manifest
    for part in loc:
        if isinstance(part, str) and part in FORMATS:  # the discriminated union's tag
            model = FORMATS[part]
            continue
        if isinstance(part, int) or model is None:
            continue
        field = model.model_fields.get(part)
        ann = field.annotation if field is not None else None
        model = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
    return list(model.model_fields) if model is not None else []


def _message(err: ValidationError, short: bool) -> str:
    e = err.errors()[0]
    loc = tuple(e.get("loc", ()))
    shown = [p for p in loc if p not in FORMATS]
    if short and shown[:2] == ["sources", 0]:
        shown = shown[2:]
    parts: list[str] = []
    for p in shown:
        if isinstance(p, int):
            parts[-1] = f"{parts[-1]}[{p}]" if parts else f"[{p}]"
        else:
            parts.append(str(p))
    where = ".".join(parts)
    kind = e.get("type")
    if kind == "extra_forbidden":
        key = str(loc[-1])
        section = ".".join(parts[:-1])
        return f"unknown manifest key '{key}'{f' in {section}' if section else ''}{did_you_mean(key, _known(loc[:-1]))}"
    if kind in {"union_tag_invalid", "union_tag_not_found"}:
        tag = (e.get("ctx") or {}).get("tag")
        got = f"'{tag}'" if tag is not None else "none"
        prefix = f"{where}: " if where else ""
        return f"{prefix}expected a format, one of {', '.join(FORMATS)}, got {got}{did_you_mean(str(tag), FORMATS) if tag else ''}"
    if kind == "missing":
        return f"expected the key '{where}', got none"
    msg = str(e.get("msg", "invalid value")).removeprefix("Value error, ").removeprefix("Input should be ")
    got = e.get("input")
    shown_input = repr(got) if not isinstance(got, dict | list) else f"a {type(got).__name__}"
    return f"{where or '<root>'}: expected {msg}, got {shown_input[:60]}"


def read_manifest(path: Path) -> Manifest:
    from evolve.config import read_yaml

    try:
        data = read_yaml(path, "dataset manifest")
    except ConfigError as err:
        raise DatasetError(err.message, path=err.path, line=err.line) from None
    if not isinstance(data, dict):
        raise DatasetError(f"expected a mapping with 'format' and 'path' (or 'sources'), got {type(data).__name__}",
                           path=str(path))
    short = "sources" not in data
    if short:
        data = {"sources": [{k: v for k, v in data.items() if k != "name"}], **({"name": data["name"]} if "name" in data else {})}
    try:
        return Manifest.model_validate(data)
    except ValidationError as err:
        raise DatasetError(_message(err, short), path=str(path)) from None


def _merge(into: Parts, part: Parts, spec: SourceSpec, index: int, seen: dict[str, str], manifest: Path) -> None:
    where = f"sources[{index}] ({spec.label})"
    for doc_id, doc in part.corpus.items():
        new_id = spec.id_prefix + doc_id
        if new_id in seen:
            raise DatasetError(f"duplicate document id '{new_id}' in {where} and {seen[new_id]}: "
                               "expected ids unique across sources (set id_prefix on one of them)", path=str(manifest))
        seen[new_id] = where
        into.corpus[new_id] = Document(new_id, doc.title, doc.text, {"source": spec.label, **doc.metadata})
    for qid, text in part.queries.items():
        if qid in into.queries:
            raise DatasetError(f"duplicate query id '{qid}' in {where} and an earlier source: expected query ids "
                               "unique across sources", path=str(manifest))
        into.queries[qid] = text
    for qid, refs in part.answers.items():
        into.answers[qid] = list(refs)
    for split, sq in part.qrels.items():
        target = into.qrels.setdefault(split, {})
        for qid, docs in sq.items():
            target.setdefault(qid, {}).update({spec.id_prefix + d: r for d, r in docs.items()})
    into.notes.extend(part.notes)


def dataset_name(path: Path, manifest: Manifest) -> str:
    if manifest.name:
        return manifest.name
    stem = path.stem
    return path.parent.name if stem.lower() in Manifest._generic_stems and path.parent.name else stem


def load_manifest(path: Path, *, strict: bool = False) -> Dataset:
    """The dataset a manifest describes (source: the manifest's absolute path)."""
    path = path.expanduser().absolute()
    manifest = read_manifest(path)
    merged = Parts({})
    seen: dict[str, str] = {}
    for i, spec in enumerate(manifest.sources):
        target = Path(spec.path).expanduser()
        target = target if target.is_absolute() else path.parent / target
        if not target.exists():
            where = "path" if len(manifest.sources) == 1 else f"sources[{i}].path"
            raise DatasetError(f"{where}: expected '{spec.path}' to exist (resolved to {target}), got nothing there",
                               path=str(path))
        _merge(merged, spec.read(target), spec, i, seen, path)
    return finalize_parts(dataset_name(path, manifest), str(path), merged, strict=strict)
