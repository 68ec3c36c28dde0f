"""Bulk import: ``fhir-server import PATH…`` loads Bundles, NDJSON (files or folders in
the bulk-export layout, https://hl7.org/fhir/uv/bulkdata/export.html) and single resource
files into a store, with the API's validation, batched transactions, a progress line,
a summary per type, and idempotence (ids are kept; unchanged resources are not written).

- :mod:`~fhir_server.bulk_import.sources`: files -> items (one resource each, with where
  it came from);
- :mod:`~fhir_server.bulk_import.bundles`: Bundle entries, ``urn:uuid:`` placeholders
  resolved;
- :mod:`~fhir_server.bulk_import.prepare`: parse, validate, index, serialise (in workers);
- :mod:`~fhir_server.bulk_import.pipeline`: resolve, compare, write in batches;
- :mod:`~fhir_server.bulk_import.deferred`: resources whose conditional references point
  at resources read later, kept on disk until those are written;
- :mod:`~fhir_server.bulk_import.report`: counts, problems, progress.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from fhir_server.bulk_import.pipeline import BATCH_SIZE, Importer, default_workers
from fhir_server.bulk_import.report import ImportReport, Progress
from fhir_server.bulk_import.sources import (
    find_files,
    ignored_files,
    read_items,
    resource_items,
    total_bytes,
)
from fhir_server.storage.base import Store

__all__ = ["ImportReport", "import_paths", "import_resources"]


async def import_paths(
    store: Store,
    paths: Sequence[str | Path],
    *,
    batch_size: int = BATCH_SIZE,
    workers: int | None = None,
    progress: bool = False,
) -> ImportReport:
    """Import every Bundle, NDJSON and resource file named by ``paths`` into ``store``
    (``workers``: processes that prepare resources; None: :func:`default_workers`)."""
    files = find_files(paths)
    bar = Progress(total_bytes(files), enabled=progress)
    if workers is None:
        workers = default_workers()
    importer = Importer(store, batch_size=batch_size, workers=workers, progress=bar)
    importer.report.ignored_files = [str(p) for p in ignored_files(paths)]
    return await importer.run(read_items(files))


async def import_resources(
    store: Store,
    resources: Iterable[dict[str, Any]],
    *,
    where: str = "resource",
    batch_size: int = BATCH_SIZE,
    workers: int | None = 0,
    progress: bool = False,
) -> ImportReport:
    """Import resources made in this process (validated and written like a file's;
    ``workers`` None: :func:`default_workers`)."""
    if workers is None:
        workers = default_workers()
    bar = Progress(0, enabled=progress)
    importer = Importer(store, batch_size=batch_size, workers=workers, progress=bar)
    return await importer.run(resource_items(resources, where))
