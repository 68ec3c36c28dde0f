"""Data and helpers of the patient-data security tests (security review, issue 14): two patients,
staff data, directory data and types outside the Patient compartment, on every store,
with tokens from the app's own authorization server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from tests.conftest import BASE

Token = Callable[..., str]
JSON_PATCH = {"content-type": "application/json-patch+json"}


def observation(id_: str, subject: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": id_,
        "status": "final",
        "code": {"text": "note"},
        "subject": {"reference": subject},
        **extra,
    }


def refill_task(id_: str, *patients: str, description: str = "refill") -> dict[str, Any]:
    task: dict[str, Any] = {
        "resourceType": "Task",
        "id": id_,
        "status": "requested",
        "intent": "order",
        "description": description,
    }
    if patients:
        task["for"] = {"reference": patients[0]}
    if len(patients) > 1:
        task["input"] = [
            {"type": {"text": "also"}, "valueReference": {"reference": p}} for p in patients[1:]
        ]
    return task


SEED: list[dict[str, Any]] = [
    {"resourceType": "Patient", "id": "alice", "name": [{"family": "Liddell"}]},
    {"resourceType": "Patient", "id": "bob", "name": [{"family": "Bravo"}]},
    {"resourceType": "Practitioner", "id": "dr", "name": [{"family": "Who"}]},
    {"resourceType": "Organization", "id": "org", "name": "Clinic"},
    {
        "resourceType": "Schedule",
        "id": "dr-schedule",
        "actor": [{"reference": "Practitioner/dr"}],
    },
    {
        "resourceType": "Schedule",
        "id": "bob-schedule",
        "actor": [{"reference": "Patient/bob"}],
    },
    {
        "resourceType": "Slot",
        "id": "slot",
        "schedule": {"reference": "Schedule/dr-schedule"},
        "status": "free",
        "start": "2030-01-07T09:00:00Z",
        "end": "2030-01-07T09:30:00Z",
    },
    observation("a-obs", "Patient/alice"),
    observation("b-obs", "Patient/bob"),
    # written by staff: in Alice's compartment and in Bob's (performer)
    observation("shared", "Patient/alice", performer=[{"reference": "Patient/bob"}]),
    refill_task("b-task", "Patient/bob", description="refill of lisinopril for Bravo"),
    refill_task("a-task", "Patient/alice"),
    refill_task("both-task", "Patient/alice", "Patient/bob"),
    {
        "resourceType": "PaymentReconciliation",
        "id": "b-payment",
        "status": "active",
        "created": "2026-01-01",
        "paymentDate": "2026-01-01",
        "paymentAmount": {"value": 120, "currency": "USD"},
        "detail": [{"type": {"text": "payment"}, "submitter": {"reference": "Patient/bob"}}],
    },
    {
        "resourceType": "Subscription",
        "id": "nobodys",
        "status": "active",
        "reason": "watch",
        "criteria": "Observation?patient=bob",
        "channel": {"type": "rest-hook", "endpoint": "https://hook.example.invalid/hook"},
    },
    {
        "resourceType": "RelatedPerson",
        "id": "mum",
        "active": True,
        "patient": {"reference": "Patient/alice"},
    },
    {
        "resourceType": "Person",
        "id": "alice-login",
        "link": [{"target": {"reference": "Patient/alice"}}],
    },
]


def issuer(app: Any) -> Token:
    """Access tokens signed by the app's own authorization server."""
    service = app.state.auth.token_service()

    def issue(scope: str, **context: Any) -> str:
        value, _ = service.issue_access_token(
            issuer=BASE, audience=BASE, client_id="test-app", scope=scope, **context
        )
        return value

    return issue


def bearer(value: str) -> dict[str, str]:
    return {"authorization": f"Bearer {value}"}


async def seed(http: httpx.AsyncClient, admin: dict[str, str]) -> None:
    for resource in SEED:
        path = f"{resource['resourceType']}/{resource['id']}"
        response = await http.put(path, json=resource, headers=admin)
        assert response.status_code in (200, 201), response.text


async def ids(http: httpx.AsyncClient, query: str, headers: dict[str, str]) -> set[str]:
    response = await http.get(query, headers=headers)
    assert response.status_code == 200, response.text
    return {
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in response.json().get("entry", [])
    }
