"""Notifications to people from the outbox (issue 17, "Events for people"): a reader of
the outbox with its own cursor (:data:`KEY`, leased like a subscription's, so one process
sends each), driven by the dispatcher's looks (``fhir_server.events.dispatcher``).

Each committed version is looked at once; a rule says whether it is news for a patient,
comparing it with the version before (so a result is told once, when it becomes final):

==========================  =========================================================
kind                        when
==========================  =========================================================
``new-result``              an Observation of category ``laboratory``, or a
                            DiagnosticReport, becomes ``final`` (created so, or
                            updated to it)
``new-message``             a Communication to the patient is created (not one of the
                            server's own records, tagged ``urn:fhir-server:notification``)
``new-document``            a DocumentReference ``current`` is created
``new-invoice``             an Invoice becomes ``issued``
``appointment-booked``      an Appointment becomes ``booked``
``appointment-changed``     a ``booked`` Appointment's start or end changes
``appointment-cancelled``   a ``booked`` Appointment becomes ``cancelled``
``refill-decided``          a refill request (a Task ``fulfill`` of a MedicationRequest,
                            ``fhir_server.workflows.refills``) becomes ``completed`` or
                            ``rejected``; or a MedicationRequest whose
                            ``priorPrescription`` is set leaves ``draft``
==========================  =========================================================

The patient is the one the resource is about (``subject``/``patient``, a Task's ``for``,
a Communication's ``recipient``, an Appointment's Patient participants). Nothing is sent
when notifications are not configured (no ``FHIR_SERVER_SMTP_URL``); the cursor starts at
the outbox's end when they first are (no mail about the past).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fhir_server.events.outbox import Event
from fhir_server.events.reader import OutboxReader
from fhir_server.notifications.notifier import SENT_TAG, Notifier

log = logging.getLogger("fhir_server.notifications")

KEY = "notifications/people"

Resource = dict[str, Any]
Rule = Callable[[Resource, Resource | None], str | None]


def _status(resource: Resource | None) -> Any:
    return None if resource is None else resource.get("status")


def _became(resource: Resource, before: Resource | None, *statuses: str) -> bool:
    return resource.get("status") in statuses and _status(before) not in statuses


def _lab(resource: Resource) -> bool:
    for category in resource.get("category") or []:
        for coding in (category or {}).get("coding") or []:
            if coding.get("code") == "laboratory":
                return True
    return False


def _observation(resource: Resource, before: Resource | None) -> str | None:
    return "new-result" if _lab(resource) and _became(resource, before, "final") else None


def _report(resource: Resource, before: Resource | None) -> str | None:
    return "new-result" if _became(resource, before, "final") else None


def _communication(resource: Resource, before: Resource | None) -> str | None:
    tags = (resource.get("meta") or {}).get("tag") or []
    ours = any(t.get("system") == SENT_TAG["system"] for t in tags if isinstance(t, dict))
    return "new-message" if before is None and not ours else None


def _document(resource: Resource, before: Resource | None) -> str | None:
    return "new-document" if before is None and resource.get("status") == "current" else None


def _invoice(resource: Resource, before: Resource | None) -> str | None:
    return "new-invoice" if _became(resource, before, "issued") else None


def _appointment(resource: Resource, before: Resource | None) -> str | None:
    if _became(resource, before, "booked"):
        return "appointment-booked"
    if _status(before) == "booked" and resource.get("status") == "cancelled":
        return "appointment-cancelled"
    if (
        before is not None
        and resource.get("status") == "booked"
        and (resource.get("start"), resource.get("end")) != (before.get("start"), before.get("end"))
    ):
        return "appointment-changed"
    return None


def _refill(resource: Resource, before: Resource | None) -> str | None:
    if not resource.get("priorPrescription") or _status(before) != "draft":
        return None
    return "refill-decided" if resource.get("status") != "draft" else None


FULFILL = "http://hl7.org/fhir/CodeSystem/task-code"


def _refill_task(resource: Resource, before: Resource | None) -> str | None:
    codings = (resource.get("code") or {}).get("coding") or []
    if not any(c.get("system") == FULFILL and c.get("code") == "fulfill" for c in codings):
        return None
    focus = (resource.get("focus") or {}).get("reference")
    if not isinstance(focus, str) or not focus.startswith("MedicationRequest/"):
        return None
    return "refill-decided" if _became(resource, before, "completed", "rejected") else None


RULES: dict[str, Rule] = {
    "Observation": _observation,
    "DiagnosticReport": _report,
    "Communication": _communication,
    "DocumentReference": _document,
    "Invoice": _invoice,
    "Appointment": _appointment,
    "MedicationRequest": _refill,
    "Task": _refill_task,
}


def patients_of(resource: Resource) -> list[str]:
    """The patients a resource is news for (``Patient/id``)."""
    refs: list[Any] = []
    if resource.get("resourceType") == "Communication":
        refs = list(resource.get("recipient") or [])
    elif resource.get("resourceType") == "Appointment":
        refs = [p.get("actor") for p in resource.get("participant") or [] if isinstance(p, dict)]
    else:
        refs = [resource.get("subject"), resource.get("patient"), resource.get("for")]
    out = []
    for ref in refs:
        text = ref.get("reference") if isinstance(ref, dict) else None
        if isinstance(text, str) and text.startswith("Patient/") and text not in out:
            out.append(text)
    return out


class PeopleReader(OutboxReader):
    """The outbox reader of notifications to people (see the module)."""

    key = KEY

    def __init__(self, store: Any, notifier: Notifier, owner: str) -> None:
        super().__init__(store, owner)
        self.notifier = notifier

    async def handle(self, event: Event) -> int:
        rule = RULES.get(event.type)
        if rule is None or event.method == "delete":
            return 0
        resource, before = await self.versions(event)
        if resource is None:
            return 0
        kind = rule(resource, before)
        if kind is None:
            return 0
        sent = 0
        for patient in patients_of(resource):
            try:
                sent += await self.notifier.notify(kind, patient, f"{event.type}/{event.id}")
            except Exception:  # one person's failure is recorded; go on with the others
                log.exception("notifying %s of %s/%s failed", patient, event.type, event.id)
        return sent
