"""The NDJSON files of an ``$export`` job (https://hl7.org/fhir/uv/bulkdata/export.html):
each written as ``NAME.part`` and renamed when complete (a job interrupted half-way
never shows a half-written file under its final name), a new file past
``FHIR_SERVER_EXPORT_FILE_MAX_BYTES``.

- :class:`TypeWriter`: the files of one type (``Observation.000.ndjson``, ...), or of
  one type's deleted resources (``deleted-Observation.000.ndjson``).
- :class:`BlockWriter`: the files of an export organized by Patient (``organizeOutputBy``,
  https://build.fhir.org/ig/HL7/bulk-data/export.html#bulk-data-output-file-organization):
  blocks of a header ``Parameters`` naming a Patient, then that patient's resources. A
  block starts a new file rather than being split; a block larger than a file goes on
  in the next one, its header repeated there, and the manifest links the two with
  ``continuesInFile``.

Writes run on a thread while the job reads its next page (one page in flight).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from fhir_server.operations.export_jobs import Job
from resources import fhir_json


@dataclass
class Files:
    """Where a job's files go and what it lists of them."""

    folder: Path
    job: Job
    max_bytes: int
    numbers: dict[tuple[str, str], int] = field(default_factory=dict)
    """The next file number of each (kind, name)."""
    open: set[_Writer] = field(default_factory=set)

    def abort(self) -> None:
        for writer in list(self.open):
            writer.abort()


class _Writer:
    """One file at a time of a series ``{prefix}{name}.{n:03d}.ndjson``."""

    def __init__(self, files: Files, name: str, kind: str) -> None:
        self.files, self.name, self.kind = files, name, kind
        self.file: IO[bytes] | None = None
        self.size = 0
        self.count = 0
        self.pending: asyncio.Future[None] | None = None
        files.open.add(self)

    def _file_name(self, number: int | None = None) -> str:
        if number is None:
            number = self.files.numbers.get((self.kind, self.name), 0)
        prefix = "deleted-" if self.kind == "deleted" else ""
        return f"{prefix}{self.name}.{number:03d}.ndjson"

    async def _hand_off(self, fn: Any, *args: Any) -> None:
        """Run ``fn`` on a thread once the previous write is done."""
        await self.flush()
        self.pending = asyncio.ensure_future(asyncio.to_thread(fn, *args))

    async def flush(self) -> None:
        if self.pending is not None:
            pending, self.pending = self.pending, None
            await pending

    def _line(self, line: bytes) -> None:
        if self.file is None:
            path = self.files.folder / (self._file_name() + ".part")
            self.file = open(path, "wb")  # noqa: SIM115
            self.size = self.count = 0
        self.file.write(line)
        self.file.write(b"\n")
        self.size += len(line) + 1
        self.count += 1

    def _close(self, **extra: Any) -> None:
        assert self.file is not None
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        self.file = None
        name = self._file_name()
        os.replace(self.files.folder / (name + ".part"), self.files.folder / name)
        self._listed({"file": name, "count": self.count, **extra})
        key = (self.kind, self.name)
        self.files.numbers[key] = self.files.numbers.get(key, 0) + 1

    def _listed(self, entry: dict[str, Any]) -> None:
        job = self.files.job
        if self.kind == "deleted":
            job.deleted.append({"type": "Bundle", **entry})
        elif self.kind == "blocks":
            job.output.append(entry)
        else:
            job.output.append({"type": self.name, **entry})

    async def finish(self) -> None:
        await self.flush()
        if self.file is not None:
            await asyncio.to_thread(self._close)
        self.files.open.discard(self)

    def abort(self) -> None:
        if self.pending is not None:
            self.pending.cancel()
        if self.file is not None:
            self.file.close()
            self.file = None
        self.files.open.discard(self)


class TypeWriter(_Writer):
    """The files of one type (``kind`` ``output``) or of its deleted resources
    (``deleted``: Bundles of DELETE requests)."""

    async def write(self, lines: list[bytes]) -> None:
        if lines:
            await self._hand_off(self._write, lines)

    def _write(self, lines: list[bytes]) -> None:
        for line in lines:
            if self.file is not None and self.size + len(line) + 1 > self.files.max_bytes:
                self._close()
            self._line(line)


def header(patient_id: str) -> bytes:
    """The ``Parameters`` that starts the block of ``Patient/patient_id``."""
    return fhir_json.dumps(
        {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "header", "valueReference": {"reference": f"Patient/{patient_id}"}}
            ],
        }
    )


class BlockWriter(_Writer):
    """The files of an export organized by Patient (``by-Patient.000.ndjson``, ...)."""

    def __init__(self, files: Files) -> None:
        super().__init__(files, "by-Patient", "blocks")

    async def write(self, blocks: Sequence[tuple[str, list[bytes]]]) -> None:
        """``(patient id, lines)`` of each block, its header added."""
        if blocks:
            await self._hand_off(self._write, blocks)

    def _write(self, blocks: Sequence[tuple[str, list[bytes]]]) -> None:
        limit = self.files.max_bytes
        for patient_id, lines in blocks:
            top = header(patient_id)
            size = len(top) + 1 + sum(len(line) + 1 for line in lines)
            if self.file is not None and self.size + size > limit:
                self._close()  # the block starts a new file rather than being split
            self._line(top)
            for line in lines:
                if self.size + len(line) + 1 > limit and self.count > 1:
                    # larger than a file: on in the next, its header repeated there
                    following = self.files.numbers.get((self.kind, self.name), 0) + 1
                    self._close(continues=self._file_name(following))
                    self._line(top)
                self._line(line)
