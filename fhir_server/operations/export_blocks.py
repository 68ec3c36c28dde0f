"""``$export`` with ``organizeOutputBy=Patient`` (Bulk Data Access, output file
organization: https://build.fhir.org/ig/HL7/bulk-data/export.html#bulk-data-output-file-organization):
the files hold one block per patient, a header ``Parameters`` whose ``header``
parameter refers to the Patient, then the Patient, then the resources of the export
that refer to that patient (those in its record, read by the memberships stored with
each version, as a Patient-level export reads them), then the resources outside any
Patient compartment that these refer to (Practitioner, Organization, Location,
Medication...: repeated in every block that refers to them, as the spec allows), then,
with ``includeAssociatedData``, their Provenance.

Resources that are no patient's record and that no block refers to are left out. A
resource that refers to two patients of the export is in both blocks. The manifest
says ``outputOrganizedBy: Patient``; its ``output`` items have no ``type`` and, for a
block that goes on in the next file, ``continuesInFile``.
"""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING

from fhir_server.operations.export_files import BlockWriter
from fhir_server.storage.base import StoredVersion
from fhir_server.storage.search_page import Cursor
from resources import fhir_json
from resources.compartments import MEMBERSHIP_COMPARTMENT, literal_references
from resources.errors import FhirError

if TYPE_CHECKING:
    from fhir_server.operations.export_run import _Run

DETAIL = (
    "One block per patient: a Parameters header referring to the Patient, the Patient,"
    " the resources of the export that refer to it, the resources outside any Patient"
    " compartment those refer to, and their Provenance when asked for."
)


_PATIENT_REFERENCE = re.compile(
    rb'"reference"\s*:\s*"(?:[^"\\]*/)?Patient/([A-Za-z0-9\-.]{1,64})[/"]'
)
"""The ids of the Patients a stored resource refers to (``Reference.reference``, relative
or absolute, versioned or not), read from its bytes: ~10x cheaper than parsing it."""


class _Block:
    """The lines of one patient's block (each resource once)."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []
        self.keys: set[tuple[str, str]] = set()
        self.entries: list[StoredVersion] = []
        self.references: dict[tuple[str, str], None] = {}

    def add(self, stored: StoredVersion, line: bytes) -> bool:
        key = (stored.type, stored.id)
        if key in self.keys:
            return False
        self.keys.add(key)
        first = stored.type == MEMBERSHIP_COMPARTMENT  # the Patient leads its block
        if first:
            self.lines.insert(0, line)
        else:
            self.lines.append(line)
        self.entries.append(stored)
        return True


async def export_blocks(run: _Run) -> None:
    """Every patient's block, a batch of patients at a time."""
    from fhir_server.operations.export_run import PAGE

    writer = BlockWriter(run.files)
    together = [t for t in run.plan.types if t not in run.plan.filters]
    searches: list[tuple[str | list[str], list[tuple[str, str]]]] = []
    if together:
        searches.append((together, []))  # one search over these types
    searches += [(t, items) for t, filters in sorted(run.plan.filters.items()) for items in filters]
    batches = [b for b in run.batches() if b]
    for batch in batches:
        members = set(batch)
        blocks = {patient_id: _Block() for patient_id in batch}
        for types, items in searches:
            query = run.query(types, items, batch)
            cursor: Cursor | None = None
            while True:
                run.check()
                page = await run.store.search(query, cursor, PAGE, False)
                # parsed on a thread: the requests meanwhile are not held up a page long
                await asyncio.to_thread(_place_all, run, page.entries, members, blocks)
                cursor = page.next_cursor
                if cursor is None:
                    break
        await _add_referenced(run, blocks)
        if run.associated is not None:
            for block in blocks.values():
                for stored in await run.associated.lookup(block.entries):
                    block.add(stored, run.line(stored))
        full = [(patient_id, blocks[patient_id].lines) for patient_id in batch]
        full = [(patient_id, lines) for patient_id, lines in full if lines]
        await writer.write(full)
        run.written += sum(len(lines) for _, lines in full)
    await writer.finish()
    run.job.organized_by = MEMBERSHIP_COMPARTMENT


def _place_all(
    run: _Run, entries: list[StoredVersion], members: set[str], blocks: dict[str, _Block]
) -> None:
    for stored in entries:
        _place(run, stored, members, blocks)


def _place(run: _Run, stored: StoredVersion, members: set[str], blocks: dict[str, _Block]) -> None:
    """Add ``stored`` to the blocks of the batch's patients it refers to."""
    assert stored.content is not None
    owners = [m.decode() for m in _PATIENT_REFERENCE.findall(stored.content)]
    if stored.type == MEMBERSHIP_COMPARTMENT:
        owners.insert(0, stored.id)
    line = run.line(stored)
    wanted = run.plan.referenced_types
    references = []
    if wanted:
        resource = fhir_json.loads(stored.content)
        references = [key for key in literal_references(resource) if key[0] in wanted]
    for owner in dict.fromkeys(owners):
        if owner in members and blocks[owner].add(stored, line):
            blocks[owner].references.update(dict.fromkeys(references))


async def _add_referenced(run: _Run, blocks: dict[str, _Block]) -> None:
    """Each block's resources outside any compartment (read once a batch)."""
    found: dict[tuple[str, str], StoredVersion | None] = {}
    for block in blocks.values():
        for key in block.references:
            if key in block.keys:
                continue
            if key not in found:
                try:
                    found[key] = await run.referenced_version(*key)
                except FhirError:
                    found[key] = None  # not readable with this token
            stored = found[key]
            if stored is not None:
                block.add(stored, run.line(stored))
