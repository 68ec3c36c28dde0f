"""The demo patients' care teams and prescription refill requests (the model of
``fhir_server.workflows.refills``): a Task with ``code`` task-code ``fulfill``, ``focus``
the MedicationRequest, ``for`` the patient, in every state across the population
(requested, received, accepted, in-progress, completed with the renewed prescription,
rejected with a reason, cancelled by the patient). A completed request's prescription is
a completed one written before the renewal, which names it as ``priorPrescription``.

https://hl7.org/fhir/R4/task.html, https://hl7.org/fhir/R4/careteam.html
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from fhir_server.demo import codes as c
from fhir_server.demo.layout import ref, when

if TYPE_CHECKING:
    from fhir_server.demo.patient import Person

TASK_CODES = "http://hl7.org/fhir/CodeSystem/task-code"
STATES = (
    None,
    "requested",
    "received",
    "accepted",
    "in-progress",
    "completed",
    "rejected",
    "cancelled",
)
"""The state of patient ``n``'s refill request: ``STATES[n % 8]`` (None: no request)."""
NOTES = (
    "Running low: about a week of tablets left.",
    "Going away for a month, could I have the refill early?",
    "Please send it to the pharmacy on Main Street.",
)


def plan_refill(person: Person, k: int, authored: datetime) -> str | None:
    """The state of the refill request on the patient's prescription ``k`` (the first
    active one gets the request), recorded on the person."""
    if person.refill is not None:
        return None
    state = STATES[person.n % len(STATES)]
    if state is None:
        return None
    person.refill = (k, state, authored)
    return state


def prior_prescription(
    person: Person, k: int, rxnorm: str, display: str, sig: str, renewed: datetime
) -> dict[str, Any]:
    """The completed prescription that the renewal ``k`` replaced."""
    authored = renewed - timedelta(days=180)
    return {
        "resourceType": "MedicationRequest",
        "id": person.sub_id("medrx", 10 + k),
        "status": "completed",
        "intent": "order",
        "medicationCodeableConcept": {
            "coding": [{"system": c.RXNORM, "code": rxnorm, "display": display}],
            "text": display,
        },
        "subject": person.ref,
        "authoredOn": when(authored),
        "requester": person.doctor,
        "dosageInstruction": [{"sequence": 1, "text": sig}],
        "dispenseRequest": {
            "validityPeriod": {
                "start": authored.date().isoformat(),
                "end": renewed.date().isoformat(),
            },
            "numberOfRepeatsAllowed": 2,
        },
    }


def care_team(person: Person) -> Iterator[dict[str, Any]]:
    """The patient's care team: their primary care practitioner (and role) at their
    clinic."""
    layout = person.layout
    yield {
        "resourceType": "CareTeam",
        "id": person.sub_id("team", 1),
        "status": "active",
        "name": "Primary care team",
        "subject": person.ref,
        "participant": [
            {
                "role": [{"text": "Primary care physician"}],
                "member": person.doctor,
                "onBehalfOf": ref("Organization", layout.clinic_id(person.clinic)),
            },
            {
                "role": [{"text": "Care coordination"}],
                "member": ref("PractitionerRole", layout.role_id(person.practitioner)),
            },
        ],
        "managingOrganization": [ref("Organization", layout.clinic_id(person.clinic))],
    }


def refill_requests(person: Person) -> Iterator[dict[str, Any]]:
    """The patient's refill request, in the state :func:`plan_refill` chose."""
    if person.refill is None:
        return
    k, state, authored = person.refill
    renewed = state == "completed"
    focus = person.sub_id("medrx", 10 + k if renewed else k)
    asked = authored - timedelta(days=2) if renewed else _recent(person)
    task: dict[str, Any] = {
        "resourceType": "Task",
        "id": person.sub_id("refill", 1),
        "status": state,
        "intent": "order",
        "priority": "routine",
        "code": {
            "coding": [
                {"system": TASK_CODES, "code": "fulfill", "display": "Fulfill the focal request"}
            ],
            "text": "Prescription refill",
        },
        "focus": ref("MedicationRequest", focus),
        "for": person.ref,
        "authoredOn": when(asked),
        "lastModified": when(authored if renewed else asked + timedelta(hours=3)),
        "requester": person.ref,
        "note": [{"text": NOTES[person.n % len(NOTES)]}],
    }
    if state not in ("requested", "cancelled"):
        task["owner"] = person.doctor
    if state == "rejected":
        task["statusReason"] = {
            "text": "Please book a visit first: a check-up is due before this is renewed."
        }
    if state == "cancelled":
        task["statusReason"] = {"text": "Cancelled by the patient: found a spare pack."}
    if renewed:
        task["output"] = [
            {
                "type": {"text": "Renewed prescription"},
                "valueReference": ref("MedicationRequest", person.sub_id("medrx", k)),
            }
        ]
    yield task


def _recent(person: Person) -> datetime:
    day = person.today - timedelta(days=1 + person.n % 5)
    return datetime(day.year, day.month, day.day, 9 + person.n % 8, (7 * person.n) % 60)
