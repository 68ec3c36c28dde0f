"""``includeAssociatedData`` of ``$export`` (Bulk Data Access 2.0,
https://hl7.org/fhir/uv/bulkdata/export.html; the codes of
http://hl7.org/fhir/uv/bulkdata/CodeSystem/include-associated-data):

- ``LatestProvenanceResources``: for each resource exported, the most recent Provenance
  that names it in ``target`` (latest ``recorded``, then latest ``lastUpdated``);
- ``RelevantProvenanceResources``: every Provenance that names it in ``target``.

Provenance is then only exported as associated data (not as a type of its own); each
Provenance is written once, in ``Provenance`` files (in the patient's block when the
output is organized by Patient). The Provenance are searched for (``target``) through
the caller's store, as the caller may read them, at or before the job's
``transactionTime``, one search per page of exported resources; ``_since`` does not
apply to them (they are associated with the resources that changed).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from fhir_server.operations.export_files import TypeWriter
from fhir_server.operations.export_run import PAGE, build_query
from fhir_server.storage.base import StoredVersion
from fhir_server.storage.search_page import Cursor
from resources import fhir_json
from resources.search.index.reference import parse_reference

if TYPE_CHECKING:
    from fhir_server.operations.export_run import _Run

PROVENANCE = "Provenance"
CODES = {"LatestProvenanceResources": "latest", "RelevantProvenanceResources": "relevant"}
"""The ``includeAssociatedData`` values supported, and what the run calls them."""
_CHUNK = 100
"""Targets asked for in one search (the search engine takes 100 values of a parameter)."""


def least_restrictive(kinds: Sequence[str]) -> str | None:
    """Of several values, the one that returns the most ("if multiple conflicting values
    are included, the server SHALL apply the least restrictive value")."""
    if "relevant" in kinds:
        return "relevant"
    return "latest" if "latest" in kinds else None


class Associated:
    """The Provenance of the resources a run exports."""

    def __init__(self, run: _Run, kind: str) -> None:
        self.run, self.latest = run, kind == "latest"
        self.written: set[str] = set()
        self.writer: TypeWriter | None = None

    async def lookup(self, entries: Sequence[StoredVersion]) -> list[StoredVersion]:
        """The Provenance of ``entries`` (each once)."""
        targets = [f"{s.type}/{s.id}" for s in entries if s.type != PROVENANCE]
        found: dict[str, StoredVersion] = {}
        for start in range(0, len(targets), _CHUNK):
            chunk = targets[start : start + _CHUNK]
            until = self.run.job.transaction_time
            query = build_query(
                PROVENANCE, [("target", ",".join(chunk)), ("_lastUpdated", f"le{until}")]
            )
            provenances: list[StoredVersion] = []
            cursor: Cursor | None = None
            while True:
                self.run.check()
                page = await self.run.store.search(query, cursor, PAGE, False)
                provenances += page.entries
                cursor = page.next_cursor
                if cursor is None:
                    break
            if self.latest:
                provenances = _latest(provenances, set(chunk))
            for stored in provenances:
                found.setdefault(stored.id, stored)
        return list(found.values())

    async def write(self, entries: Sequence[StoredVersion]) -> None:
        """Write the Provenance of ``entries`` not written yet."""
        if not entries:
            return
        new = [p for p in await self.lookup(entries) if p.id not in self.written]
        if not new:
            return
        self.written.update(p.id for p in new)
        if self.writer is None:
            self.writer = TypeWriter(self.run.files, PROVENANCE, "output")
        await self.writer.write([self.run.line(p) for p in new])
        self.run.written += len(new)

    async def finish(self) -> None:
        if self.writer is not None:
            await self.writer.finish()


def _latest(provenances: list[StoredVersion], targets: set[str]) -> list[StoredVersion]:
    """For each of ``targets``, the Provenance naming it that was recorded last."""
    best: dict[str, tuple[tuple[datetime, str], StoredVersion]] = {}
    for stored in provenances:
        assert stored.content is not None
        resource = fhir_json.loads(stored.content)
        key = (_instant(resource.get("recorded")), stored.last_updated)
        for target in resource.get("target") or []:
            type_, id_, _, _ = parse_reference(str((target or {}).get("reference") or ""))
            name = f"{type_}/{id_}"
            if name in targets and (name not in best or key > best[name][0]):
                best[name] = (key, stored)
    chosen: dict[str, StoredVersion] = {}
    for _, stored in best.values():
        chosen.setdefault(stored.id, stored)
    return list(chosen.values())


def _instant(value: object) -> datetime:
    """``Provenance.recorded`` (an instant) as a moment; the earliest when unreadable."""
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        moment = datetime.min
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
