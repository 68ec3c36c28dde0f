"""Data of the wave-2 attack tests (tests/security_wave2): the patient-data seed of
``tests.patient_data.support`` (Alice, Bob, their caregiver, staff and directory data)
plus what the portal workflows work on: Bob's prescription, bill, visit, immunization,
document with its Binary, a message thread with the clinic, a booked appointment and an
AuditEvent about him; Alice's own counterparts; a practitioner who is nobody's."""

from __future__ import annotations

import base64
from typing import Any

from tests.patient_data.support import SEED as PATIENT_SEED

FUTURE = "2031-03-03"


def _money(value: float) -> dict[str, Any]:
    return {"value": value, "currency": "USD"}


def prescription(id_: str, patient: str) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": id_,
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": {"text": "lisinopril 10 mg"},
        "subject": {"reference": f"Patient/{patient}"},
        "dispenseRequest": {"numberOfRepeatsAllowed": 3},
    }


def invoice(id_: str, patient: str) -> dict[str, Any]:
    return {
        "resourceType": "Invoice",
        "id": id_,
        "status": "issued",
        "subject": {"reference": f"Patient/{patient}"},
        "recipient": {"reference": f"Patient/{patient}"},
        "totalNet": _money(100),
        "totalGross": _money(100),
    }


def encounter(id_: str, patient: str) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "id": id_,
        "status": "finished",
        "class": {"code": "AMB"},
        "subject": {"reference": f"Patient/{patient}"},
        "reasonCode": [{"text": f"SECRET-REASON-{patient}"}],
        "period": {"start": "2026-01-01T09:00:00Z", "end": "2026-01-01T09:30:00Z"},
    }


def slot(id_: str, day: str = FUTURE, schedule: str = "dr-schedule") -> dict[str, Any]:
    return {
        "resourceType": "Slot",
        "id": id_,
        "schedule": {"reference": f"Schedule/{schedule}"},
        "status": "free",
        "start": f"{day}T10:00:00Z",
        "end": f"{day}T10:30:00Z",
    }


def appointment(id_: str, patient: str, slot_id: str, day: str = FUTURE) -> dict[str, Any]:
    return {
        "resourceType": "Appointment",
        "id": id_,
        "status": "booked",
        "slot": [{"reference": f"Slot/{slot_id}"}],
        "start": f"{day}T10:00:00Z",
        "end": f"{day}T10:30:00Z",
        "participant": [
            {"actor": {"reference": f"Patient/{patient}"}, "status": "accepted"},
            {"actor": {"reference": "Practitioner/dr"}, "status": "accepted"},
        ],
    }


SECRET = base64.b64encode(b"Bob's HIV result").decode()

EXTRA: list[dict[str, Any]] = [
    {"resourceType": "Practitioner", "id": "stranger", "name": [{"family": "Nobody"}]},
    {"resourceType": "Organization", "id": "other-org", "name": "Elsewhere"},
    {
        "resourceType": "Patient",
        "id": "bob",
        "name": [{"family": "Bravo"}],
        "generalPractitioner": [{"reference": "Practitioner/dr"}],
    },
    {
        "resourceType": "Patient",
        "id": "alice",
        "name": [{"family": "Liddell"}],
        "generalPractitioner": [{"reference": "Practitioner/dr"}],
    },
    prescription("b-mr", "bob"),
    prescription("a-mr", "alice"),
    invoice("b-inv", "bob"),
    invoice("a-inv", "alice"),
    encounter("b-enc", "bob"),
    encounter("a-enc", "alice"),
    {
        "resourceType": "Immunization",
        "id": "b-imm",
        "status": "completed",
        "vaccineCode": {"text": "SECRET-VACCINE-bob"},
        "patient": {"reference": "Patient/bob"},
        "occurrenceDateTime": "2025-10-01",
    },
    {
        "resourceType": "Condition",
        "id": "b-cond",
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": "active",
                }
            ]
        },
        "code": {
            "coding": [{"system": "http://snomed.info/sct", "code": "44054006"}],
            "text": "SECRET-CONDITION-bob",
        },
        "subject": {"reference": "Patient/bob"},
    },
    {
        "resourceType": "DocumentReference",
        "id": "b-doc",
        "status": "current",
        "subject": {"reference": "Patient/bob"},
        "content": [{"attachment": {"contentType": "text/plain", "url": "Binary/b-bin"}}],
    },
    {
        "resourceType": "Binary",
        "id": "b-bin",
        "contentType": "text/plain",
        "securityContext": {"reference": "DocumentReference/b-doc"},
        "data": SECRET,
    },
    {
        "resourceType": "Communication",
        "id": "b-msg",
        "status": "in-progress",
        "subject": {"reference": "Patient/bob"},
        "topic": {"text": "SECRET-TOPIC-bob"},
        "sender": {"reference": "Practitioner/dr"},
        "recipient": [{"reference": "Patient/bob"}],
        "payload": [{"contentString": "your results"}],
    },
    {
        "resourceType": "Communication",
        "id": "a-msg",
        "status": "in-progress",
        "subject": {"reference": "Patient/alice"},
        "topic": {"text": "hello alice"},
        "sender": {"reference": "Practitioner/dr"},
        "recipient": [{"reference": "Patient/alice"}],
        "payload": [{"contentString": "hi"}],
    },
    slot("b-slot"),
    slot("a-slot", "2031-03-04"),
    slot("free-slot", "2031-03-05"),
    slot("bob-own-slot", "2031-03-06", schedule="bob-schedule"),
    appointment("b-appt", "bob", "b-slot"),
    appointment("a-appt", "alice", "a-slot", "2031-03-04"),
]
"""Written by staff after ``PATIENT_SEED`` (Patients replaced by their versions here)."""

_REPLACED = {(r["resourceType"], r["id"]) for r in EXTRA}
SEED: list[dict[str, Any]] = [
    *(
        r
        for r in PATIENT_SEED
        # the Subscription's endpoint check would look up its (unresolvable) host
        if r["resourceType"] != "Subscription" and (r["resourceType"], r["id"]) not in _REPLACED
    ),
    *EXTRA,
]

AUDIT_ABOUT_BOB: dict[str, Any] = {
    "resourceType": "AuditEvent",
    "type": {
        "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
        "code": "rest",
    },
    "action": "R",
    "recorded": "2026-11-01T10:00:00Z",
    "outcome": "0",
    "agent": [{"who": {"reference": "Practitioner/dr"}, "requestor": True}],
    "source": {"observer": {"display": "test"}},
    "entity": [{"what": {"reference": "Patient/bob"}}],
}
