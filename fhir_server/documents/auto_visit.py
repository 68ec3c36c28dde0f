"""Visit summaries filed automatically (issue 20: ``FHIR_SERVER_AUTO_VISIT_SUMMARY=on``,
default off): when an Encounter becomes ``finished``, its visit summary PDF
(:mod:`.visit`) is filed as a DocumentReference of the patient (``type`` LOINC 34133-9,
``context.encounter`` the Encounter), its bytes in a Binary secured by it.

It is a reader of the outbox (``fhir_server.events``) with its own leased cursor
(:data:`KEY`), driven by the dispatcher like the notifications to people: nothing runs
inside the Encounter's write, which is neither slowed down nor able to fail because of
it, and one process files each summary. The DocumentReference is a conditional create
(none yet for that Encounter), so an event seen twice (a lease taken over) files one.
A summary that cannot be made (the Encounter names no Patient) is skipped and logged.
"""

from __future__ import annotations

import base64
import logging
import time
from typing import Any

from fhir_server.documents import visit
from fhir_server.documents.record import now_text
from fhir_server.events.outbox import Event, Outbox
from fhir_server.interactions.context import Context
from fhir_server.interactions.write import create_request
from fhir_server.storage.base import ConditionMatched, now_instant
from fhir_server.workflows import Caller, WorkflowStore
from resources import fhir_json
from resources.search.parameters import search_params
from resources.search.parse import parse_search

log = logging.getLogger("fhir_server.documents")

KEY = "documents/visit-summaries"
LEASE = 10.0
BATCH = 200


def _finished(resource: dict[str, Any] | None) -> bool:
    return resource is not None and resource.get("status") == "finished"


class VisitSummaryReader:
    """The outbox reader that files visit summaries (see the module)."""

    def __init__(self, store: Any, settings: Any, owner: str) -> None:
        self.store = store
        self.settings = settings
        self.outbox: Outbox = store.outbox
        self.owner = owner
        self._opened = False
        self._until = 0.0
        self._retry_at = 0.0
        self._position = self._number = 0

    async def tick(self, last: int) -> None:
        now = time.time()
        if not self._opened:
            if await self.outbox.min_position([KEY]) is None:
                await self.outbox.open_cursor(KEY, last)  # from now on, not the past
            self._opened = True
        if now < self._retry_at:
            return
        if self._until - now < LEASE / 2:
            held = await self.outbox.claim([KEY], self.owner, now, now + LEASE)
            if not held:
                self._until = 0.0
                self._retry_at = now + LEASE / 2  # another process has it
                return
            self._until = now + LEASE
            self._position, self._number = held[0].position, held[0].number
        while self._position < last:
            events = await self.outbox.events_after(self._position, BATCH)
            if not events:
                self._position = last
                break
            for event in events:
                if event.type == "Encounter" and event.method != "delete":
                    try:
                        self._number += await self._handle(event)
                    except Exception:  # one Encounter's failure does not stop the others
                        log.exception("filing the visit summary of Encounter/%s failed", event.id)
                self._position = event.seq
            if not await self.outbox.advance(KEY, self.owner, self._position, self._number):
                self._until = 0.0  # lost: claim again (and read from the saved position)
                return

    async def release(self) -> None:
        if self._until:
            await self.outbox.release(KEY, self.owner)

    async def _version(self, event: Event, version: int) -> dict[str, Any] | None:
        stored = await self.store.vread(event.type, event.id, version)
        if stored is None or stored.deleted or stored.content is None:
            return None
        return fhir_json.loads(stored.content)

    async def _handle(self, event: Event) -> int:
        encounter = await self._version(event, event.version)
        before = await self._version(event, event.version - 1) if event.version > 1 else None
        if not _finished(encounter) or _finished(before):
            return 0
        return await file_visit_summary(self.store, self.settings, event.id)


async def file_visit_summary(store: Any, settings: Any, encounter_id: str) -> int:
    """File the visit summary of ``Encounter/encounter_id`` unless one is filed (1 when
    it was filed now, else 0)."""
    ruled = WorkflowStore(store, Caller.system(), settings=settings)
    ctx = Context(ruled, settings, (settings.base_url or "").rstrip("/"))
    summary = await visit.gather(ctx, encounter_id)
    subject = (summary.encounter.get("subject") or {}).get("reference")
    if not isinstance(subject, str) or not subject.startswith("Patient/"):
        log.warning("Encounter/%s names no Patient: no visit summary filed", encounter_id)
        return 0
    document = {
        "resourceType": "DocumentReference",
        "status": "current",
        "docStatus": "final",
        "type": visit.VISIT_SUMMARY_TYPE,
        "subject": {"reference": subject},
        "date": now_instant(),
        "description": f"Visit summary, generated {now_text()}",
        "content": [
            {
                "attachment": {
                    "contentType": "application/pdf",
                    "data": base64.b64encode(summary.pdf).decode(),
                    "title": f"visit-summary-{encounter_id}.pdf",
                    "creation": now_instant(),
                }
            }
        ],
        "context": {"encounter": [{"reference": f"Encounter/{encounter_id}"}]},
    }
    type_coding = visit.VISIT_SUMMARY_TYPE["coding"][0]
    filed = parse_search(
        ("DocumentReference",),
        [
            ("encounter", f"Encounter/{encounter_id}"),
            ("type", f"{type_coding['system']}|{type_coding['code']}"),
        ],
        strict=True,
        params_for=search_params,
        max_count=1,
        default_count=1,
    )
    try:
        await ruled.write_batch([create_request(document, unless_exists=filed)])
    except ConditionMatched:
        return 0
    return 1
