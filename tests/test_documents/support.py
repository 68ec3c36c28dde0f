"""Data and helpers of the documents and education tests (issue 20): two patients'
records (Alice's and Bob's) and tokens of the app's own authorization server."""

from __future__ import annotations

import base64
from collections.abc import Callable
from io import BytesIO
from typing import Any

from pypdf import PdfReader

from tests.conftest import BASE

SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CVX = "http://hl7.org/fhir/sid/cvx"
Token = Callable[..., str]


def _code(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


def _patient(id_: str, given: str, family: str, birth: str, org: str | None) -> dict[str, Any]:
    patient: dict[str, Any] = {
        "resourceType": "Patient",
        "id": id_,
        "name": [{"given": [given], "family": family}],
        "birthDate": birth,
        "gender": "female" if given == "Alice" else "male",
    }
    if org:
        patient["managingOrganization"] = {"reference": f"Organization/{org}"}
    return patient


def _record(p: str, prefix: str) -> list[dict[str, Any]]:
    subject = {"reference": f"Patient/{p}"}
    return [
        {
            "resourceType": "Condition",
            "id": f"{prefix}-htn",
            "clinicalStatus": _code(
                "http://terminology.hl7.org/CodeSystem/condition-clinical", "active", "Active"
            ),
            "code": _code(SNOMED, "38341003", "Hypertensive disorder, systemic arterial"),
            "subject": subject,
            "onsetDateTime": "2019-04-02",
        },
        {
            "resourceType": "AllergyIntolerance",
            "id": f"{prefix}-pen",
            "patient": subject,
            "code": _code(RXNORM, "7980", "Penicillin G"),
            "criticality": "high",
            "clinicalStatus": _code(
                "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                "active",
                "Active",
            ),
        },
        {
            "resourceType": "MedicationRequest",
            "id": f"{prefix}-lis",
            "status": "active",
            "intent": "order",
            "medicationCodeableConcept": _code(RXNORM, "314076", "lisinopril 10 MG Oral Tablet"),
            "subject": subject,
            "encounter": {"reference": f"Encounter/{prefix}-visit"},
            "authoredOn": "2024-03-05",
            "dosageInstruction": [{"text": "Take 1 tablet by mouth once daily"}],
        },
        {
            "resourceType": "Immunization",
            "id": f"{prefix}-flu",
            "status": "completed",
            "vaccineCode": _code(CVX, "140", "Influenza, seasonal, injectable"),
            "patient": subject,
            "occurrenceDateTime": "2024-10-01",
            "lotNumber": f"LOT-{prefix.upper()}-77",
            "performer": [{"actor": {"reference": "Practitioner/doc", "display": "Dr. Grey"}}],
        },
        {
            "resourceType": "Encounter",
            "id": f"{prefix}-visit",
            "status": "finished",
            "class": {
                "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                "code": "AMB",
            },
            "subject": subject,
            "period": {"start": "2024-03-05T09:00:00Z", "end": "2024-03-05T09:30:00Z"},
            "reasonCode": [_code(SNOMED, "185349003", "Encounter for check up")],
            "diagnosis": [{"condition": {"reference": f"Condition/{prefix}-htn"}}],
        },
        {
            "resourceType": "Observation",
            "id": f"{prefix}-bp",
            "status": "final",
            "category": [
                _code(
                    "http://terminology.hl7.org/CodeSystem/observation-category",
                    "vital-signs",
                    "Vital Signs",
                )
            ],
            "code": _code(LOINC, "8867-4", "Heart rate"),
            "subject": subject,
            "encounter": {"reference": f"Encounter/{prefix}-visit"},
            "effectiveDateTime": "2024-03-05T09:05:00Z",
            "valueQuantity": {"value": 72, "unit": "/min"},
        },
        {
            "resourceType": "Observation",
            "id": f"{prefix}-a1c",
            "status": "final",
            "category": [
                _code(
                    "http://terminology.hl7.org/CodeSystem/observation-category",
                    "laboratory",
                    "Laboratory",
                )
            ],
            "code": _code(LOINC, "4548-4", "Hemoglobin A1c"),
            "subject": subject,
            "encounter": {"reference": f"Encounter/{prefix}-visit"},
            "effectiveDateTime": "2024-03-05T09:10:00Z",
            "valueQuantity": {"value": 6.1, "unit": "%"},
        },
    ]


SEED: list[dict[str, Any]] = [
    {"resourceType": "Organization", "id": "clinic", "name": "Riverside Family Clinic"},
    {"resourceType": "Practitioner", "id": "doc", "name": [{"family": "Grey", "prefix": ["Dr."]}]},
    _patient("alice", "Alice", "Smith", "1970-05-17", "clinic"),
    _patient("bob", "Bob", "Jones", "1965-11-02", None),
    *_record("alice", "a"),
    *_record("bob", "b"),
]


def issuer(app: Any) -> Token:
    service = app.state.auth.token_service()

    def issue(scope: str, **context: Any) -> str:
        value, _ = service.issue_access_token(
            issuer=BASE, audience=BASE, client_id="test-app", scope=scope, **context
        )
        return value

    return issue


def bearer(value: str) -> dict[str, str]:
    return {"authorization": f"Bearer {value}"}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def pdf_text(data: bytes) -> str:
    """The text of every page of a PDF, as pypdf extracts it."""
    assert data.startswith(b"%PDF-"), data[:40]
    return "\n".join(page.extract_text() or "" for page in PdfReader(BytesIO(data)).pages)
