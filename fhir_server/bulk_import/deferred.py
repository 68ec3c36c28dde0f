"""Resources put off until the rest of the import is written, kept in a temporary file.

A bulk export (https://hl7.org/fhir/uv/bulkdata/export.html) writes one file per type,
and a conditional reference (``Practitioner?identifier=…|999…``,
https://hl7.org/fhir/R4/http.html#trules) may point at a resource in a file that comes
later (``Encounter.000.ndjson`` before ``Practitioner.000.ndjson``). The importer puts
such a resource into a :class:`Spool` (its input bytes on disk, so memory stays bounded
however many wait) and reads it again once everything else has been written; it repeats
that while a pass makes progress. Only what is still unresolved after the last pass is
reported.

Within one import the last copy of a resource wins: when a resource that waits in the
spool is written again later in the input, the waiting (older) copy is dropped
(:meth:`Spool.written`, :meth:`Spool.items`).
"""

from __future__ import annotations

import struct
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO

from fhir_server.bulk_import.sources import Item

_HEADER = struct.Struct("<IIIII")
MAX_REFERENCES = 10_000
"""Distinct unresolved references remembered to tell whether a new pass can progress."""


@dataclass(slots=True)
class Waiting:
    """One resource read back from a spool."""

    item: Item
    type: str
    id: str
    reason: str


class Spool:
    """Resources waiting for the targets of their conditional references."""

    def __init__(self) -> None:
        self._file: IO[bytes] | None = None
        """Made on the first :meth:`put`: most imports never need one."""
        self.count = 0
        self._keys: set[int] = set()
        self._superseded: dict[tuple[str, str], int] = {}
        self.references: set[str] | None = set()
        """The conditional references not found (None: too many to remember)."""

    def put(self, item: Item, type_: str, id_: str, reason: str, missing: list[str]) -> None:
        """Keep ``item`` (a resource of ``type_``/``id_``) for the next pass."""
        assert item.data is not None
        if self._file is None:
            self._file = tempfile.TemporaryFile(prefix="fhir-import-")  # noqa: SIM115
        fields = [s.encode(errors="surrogateescape") for s in (item.where, type_, id_, reason)]
        self._file.write(_HEADER.pack(*(len(f) for f in fields), len(item.data)))
        for field in fields:
            self._file.write(field)
        self._file.write(item.data)
        self.count += 1
        self._keys.add(hash((type_, id_)))
        if self.references is not None:
            self.references.update(missing)
            if len(self.references) > MAX_REFERENCES:
                self.references = None

    def written(self, type_: str, id_: str) -> None:
        """``type_``/``id_`` is written from later in the input: a copy waiting here is
        older and must not overwrite it."""
        if self.count and hash((type_, id_)) in self._keys:
            self._superseded[(type_, id_)] = self.count

    def items(self, superseded: Callable[[str], None]) -> Iterator[Waiting]:
        """What waits, in input order; ``superseded(type)`` for each copy dropped."""
        if self._file is None:
            return
        self._file.flush()
        self._file.seek(0)
        for position in range(self.count):
            header = self._file.read(_HEADER.size)
            lengths = _HEADER.unpack(header)
            fields = (self._file.read(n).decode(errors="surrogateescape") for n in lengths[:4])
            where, type_, id_, reason = fields
            data = self._file.read(lengths[4])
            if self._superseded.get((type_, id_), 0) > position:
                superseded(type_)
                continue
            yield Waiting(Item(where, data), type_, id_, reason)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
