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
from typing import Any

from fhir_server.documents import visit
from fhir_server.documents.record import now_text
from fhir_server.events.outbox import Event
from fhir_server.events.reader import OutboxReader
from fhir_server.interactions.context import Context
from fhir_server.interactions.write import create_request
from fhir_server.storage.base import ConditionMatched, now_instant
from fhir_server.workflows import Caller, WorkflowStore
from resources.search.parameters import search_params
from resources.search.parse import parse_search

log = logging.getLogger("fhir_server.documents")

KEY = "documents/visit-summaries"


def _finished(resource: dict[str, Any] | None) -> bool:
    return resource is not None and resource.get("status") == "finished"


class VisitSummaryReader(OutboxReader):
    """The outbox reader that files visit summaries (see the module)."""

    key = KEY

    def __init__(self, store: Any, settings: Any, owner: str) -> None:
        super().__init__(store, owner)
        self.settings = settings

    async def handle(self, event: Event) -> int:
        if event.type != "Encounter" or event.method == "delete":
            return 0
        try:
            encounter, before = await self.versions(event)
            if not _finished(encounter) or _finished(before):
                return 0
            return await file_visit_summary(self.store, self.settings, event.id)
        except Exception:  # one Encounter's failure does not stop the others
            log.exception("filing the visit summary of Encounter/%s failed", event.id)
            return 0


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
