"""The people and records of the messaging and refill tests (issue 19): two patients,
Alice (with a caregiver, a general practitioner, a care team, an encounter and a
managing organization) and Bob (with a doctor of his own, a stranger to Alice), staff
users, prescriptions; tokens of the app's own authorization server."""

from __future__ import annotations

from typing import Any

import httpx

from tests.patient_data.support import Token, bearer


def ref(reference: str) -> dict[str, str]:
    return {"reference": reference}


def prescription(id_: str, patient: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": id_,
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": {"text": "lisinopril 10 mg tablet"},
        "subject": ref(patient),
        "dispenseRequest": {"numberOfRepeatsAllowed": 2},
        **extra,
    }


SEED: list[dict[str, Any]] = [
    {"resourceType": "Organization", "id": "clinic", "name": "Riverside Clinic"},
    {"resourceType": "Organization", "id": "billing", "name": "Billing office"},
    {"resourceType": "Organization", "id": "elsewhere", "name": "Another clinic"},
    {"resourceType": "Location", "id": "corner-pharmacy", "name": "Corner Pharmacy"},
    {"resourceType": "Practitioner", "id": "dr", "name": [{"family": "Grey"}]},
    {"resourceType": "Practitioner", "id": "nurse", "name": [{"family": "Joy"}]},
    {"resourceType": "Practitioner", "id": "surgeon", "name": [{"family": "Cut"}]},
    {"resourceType": "Practitioner", "id": "bobs-dr", "name": [{"family": "House"}]},
    {
        "resourceType": "PractitionerRole",
        "id": "dr-role",
        "practitioner": ref("Practitioner/dr"),
        "organization": ref("Organization/clinic"),
    },
    {
        "resourceType": "PractitionerRole",
        "id": "bobs-dr-role",
        "practitioner": ref("Practitioner/bobs-dr"),
        "organization": ref("Organization/elsewhere"),
    },
    {
        "resourceType": "Patient",
        "id": "alice",
        "name": [{"family": "Liddell"}],
        "generalPractitioner": [ref("Practitioner/dr")],
        "managingOrganization": ref("Organization/clinic"),
    },
    {
        "resourceType": "Patient",
        "id": "bob",
        "name": [{"family": "Bravo"}],
        "generalPractitioner": [ref("Practitioner/bobs-dr")],
    },
    {"resourceType": "RelatedPerson", "id": "mum", "active": True, "patient": ref("Patient/alice")},
    {
        "resourceType": "CareTeam",
        "id": "alice-team",
        "status": "active",
        "subject": ref("Patient/alice"),
        "participant": [
            {"member": ref("Practitioner/nurse")},
            {"member": ref("PractitionerRole/dr-role")},
        ],
    },
    {
        "resourceType": "CareTeam",
        "id": "bob-team",
        "status": "active",
        "subject": ref("Patient/bob"),
        "participant": [{"member": ref("Practitioner/bobs-dr")}],
    },
    {
        "resourceType": "Encounter",
        "id": "alice-visit",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": ref("Patient/alice"),
        "participant": [{"individual": ref("Practitioner/surgeon")}],
    },
    prescription("alice-rx", "Patient/alice"),
    prescription("alice-rx2", "Patient/alice"),
    prescription(
        "alice-acute",
        "Patient/alice",
        dispenseRequest={"numberOfRepeatsAllowed": 0},
        courseOfTherapyType={
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/medicationrequest-course-of-therapy",
                    "code": "acute",
                }
            ]
        },
    ),
    prescription("alice-old", "Patient/alice", status="completed"),
    prescription("bob-rx", "Patient/bob"),
]


class People:
    """Authorization headers of everyone in the tests."""

    def __init__(self, token: Token) -> None:
        self.alice = bearer(token("patient/*.cruds", patient="alice", fhir_user="Patient/alice"))
        self.bob = bearer(token("patient/*.cruds", patient="bob", fhir_user="Patient/bob"))
        self.mum = bearer(token("user/*.cruds", patient="alice", fhir_user="RelatedPerson/mum"))
        self.dr = bearer(token("user/*.cruds", fhir_user="Practitioner/dr"))
        self.nurse = bearer(token("user/*.cruds", fhir_user="Practitioner/nurse"))
        self.bobs_dr = bearer(token("user/*.cruds", fhir_user="Practitioner/bobs-dr"))
        self.admin = bearer(token("system/*.cruds"))


async def seed(http: httpx.AsyncClient, admin: dict[str, str]) -> None:
    for resource in SEED:
        path = f"{resource['resourceType']}/{resource['id']}"
        response = await http.put(path, json=resource, headers=admin)
        assert response.status_code in (200, 201), response.text


def message(
    sender: str, recipients: list[str], text: str, subject: str = "Patient/alice", **extra: Any
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "resourceType": "Communication",
        "status": "in-progress",
        "subject": ref(subject),
        "sender": ref(sender),
        "recipient": [ref(r) for r in recipients],
        "payload": [{"contentString": text}],
        **extra,
    }
    if "inResponseTo" not in extra and "topic" not in extra:
        out["topic"] = {"text": "A question"}
    return out


async def send(
    http: httpx.AsyncClient, headers: dict[str, str], body: dict[str, Any], status: int = 201
) -> dict[str, Any]:
    response = await http.post("Communication", json=body, headers=headers)
    assert response.status_code == status, response.text
    return response.json()
