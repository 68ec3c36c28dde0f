"""What ``fhir-server import PATH…`` reads, as a stream of items (one resource each).

- NDJSON (``*.ndjson``, ``*.ndjson.gz``; https://hl7.org/fhir/uv/bulkdata/export.html):
  read line by line, one resource a line, blank lines ignored; an item names its file
  and line.
- JSON files (``*.json``, ``*.json.gz``): a Bundle (each entry's resource, see
  :mod:`fhir_server.bulk_import.bundles`) or a single resource.
- Folders: every such file under them (the bulk-export layout ``Patient.ndjson``,
  ``Observation.000.ndjson``…), in name order.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from fhir_server.bulk_import.bundles import bundle_entries
from fhir_server.bulk_import.report import NOT_RESOURCE
from resources import fhir_json
from resources.errors import FhirError

_NDJSON = (".ndjson", ".ndjson.gz", ".jsonl")
_JSON = (".json", ".json.gz")


@dataclass(slots=True)
class Item:
    """One resource to import (``data`` is its JSON), or a problem found while reading."""

    where: str
    data: bytes | None
    error: str | None = None
    size: int = 0
    """Bytes of input this item consumed (for progress)."""


def find_files(paths: Iterable[str | Path]) -> list[Path]:
    """The importable files named by ``paths`` (folders are searched recursively)."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.is_file() and _kind(p) is not None))
        elif path.exists():
            files.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
    return files


def ignored_files(paths: Iterable[str | Path]) -> list[Path]:
    """The files under the folders named by ``paths`` that are not imported (neither
    NDJSON nor JSON: a README, a LICENSE…)."""
    ignored: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            ignored.extend(sorted(p for p in path.rglob("*") if p.is_file() and _kind(p) is None))
    return ignored


def read_items(files: Iterable[Path]) -> Iterator[Item]:
    """Every resource of every file, in order."""
    for path in files:
        kind = _kind(path) or "json"
        try:
            if kind == "ndjson":
                yield from _ndjson_items(path)
            else:
                yield from _json_items(path)
        except OSError as exc:
            yield Item(str(path), None, f"cannot read the file: {exc}")


def resource_items(resources: Iterable[dict[str, Any]], where: str) -> Iterator[Item]:
    """Items of resources made in this process (e.g. the demo population)."""
    for n, resource in enumerate(resources, 1):
        data = fhir_json.dumps(resource)
        yield Item(f"{where}#{n}", data, size=len(data))


def total_bytes(files: Iterable[Path]) -> int:
    return sum(p.stat().st_size for p in files)


def _kind(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(_NDJSON):
        return "ndjson"
    if name.endswith(_JSON):
        return "json"
    return None


def _open(path: Path) -> IO[bytes]:
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rb")
    return path.open("rb")


def _ndjson_items(path: Path) -> Iterator[Item]:
    compressed = path.name.lower().endswith(".gz")
    with _open(path) as stream:
        for number, line in enumerate(stream, 1):
            size = 0 if compressed else len(line)
            where = f"{path}:{number}"
            if not line.strip():
                yield Item(where, None, size=size)  # blank line: nothing to import
                continue
            yield Item(where, line, size=size)


def _json_items(path: Path) -> Iterator[Item]:
    with _open(path) as stream:
        raw = stream.read()
    size = path.stat().st_size
    try:
        document = fhir_json.loads_resource(raw)
    except FhirError as exc:
        yield Item(str(path), None, exc.diagnostics, size=size)
        return
    if "resourceType" not in document:  # e.g. a bulk-data client's manifest.json
        yield Item(str(path), None, NOT_RESOURCE, size=size)
        return
    if document.get("resourceType") != "Bundle":
        yield Item(str(path), raw, size=size)
        return
    entries = list(bundle_entries(document))
    share = size // max(len(entries), 1)
    for entry in entries:
        where = f"{path}#entry[{entry.index}]"
        if entry.resource is None:
            yield Item(where, None, f"skipped: {entry.skipped}", size=share)
        else:
            yield Item(where, fhir_json.dumps(entry.resource), size=share)
