"""Attacks on who gets another patient's notifications (``fhir_server.notifications``
``recipients.people_of``: a patient's RelatedPersons with an address get her messages):
Alice must not make a RelatedPerson of Bob's (a new one with her address, or her own
caregiver moved over to Bob) nor change the address of Bob's caregiver, so that the
server's messages about Bob reach her. The app of ``tests/conftest.py``, on every
store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.app_client import asgi_client
from tests.patient_data.support import Token, bearer

SEED: list[dict[str, Any]] = [
    {"resourceType": "Patient", "id": "alice"},
    {"resourceType": "Patient", "id": "bob"},
    {
        "resourceType": "RelatedPerson",
        "id": "mum",
        "active": True,
        "patient": {"reference": "Patient/alice"},
        "telecom": [{"system": "email", "value": "mum@home.example"}],
    },
    {
        "resourceType": "RelatedPerson",
        "id": "uncle",
        "active": True,
        "patient": {"reference": "Patient/bob"},
        "telecom": [{"system": "email", "value": "uncle@home.example"}],
    },
]
HERS = [{"system": "email", "value": "alice-attacker@evil.example"}]


@pytest.fixture
async def http(app: Any, admin: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(app) as client:
        for r in SEED:
            made = await client.put(f"{r['resourceType']}/{r['id']}", json=r, headers=admin)
            assert made.status_code == 201, made.text
        yield client


@pytest.mark.parametrize(
    "scopes", ["patient/*.cruds", "patient/RelatedPerson.cu patient/Patient.r"]
)
async def test_a_patient_cannot_become_anothers_caregiver(
    http: httpx.AsyncClient, token: Token, admin: dict[str, str], scopes: str
) -> None:
    alice = bearer(token(scopes, patient="alice", fhir_user="Patient/alice"))
    new = {
        "resourceType": "RelatedPerson",
        "active": True,
        "patient": {"reference": "Patient/bob"},
        "telecom": HERS,
    }
    assert (await http.post("RelatedPerson", json=new, headers=alice)).status_code == 403
    put = await http.put("RelatedPerson/spy", json={**new, "id": "spy"}, headers=alice)
    assert put.status_code == 403, put.text
    moved = {**SEED[2], "patient": {"reference": "Patient/bob"}, "telecom": HERS}
    assert (await http.put("RelatedPerson/mum", json=moved, headers=alice)).status_code == 403
    patch = [{"op": "replace", "path": "/patient/reference", "value": "Patient/bob"}]
    patched = await http.patch(
        "RelatedPerson/mum",
        json=patch,
        headers={**alice, "content-type": "application/json-patch+json"},
    )
    assert patched.status_code == 403, patched.text
    uncles = {**SEED[3], "telecom": HERS}
    changed = await http.put("RelatedPerson/uncle", json=uncles, headers=alice)
    assert changed.status_code in (403, 404), changed.text
    conditional = await http.put(
        "RelatedPerson?patient=Patient/bob", json={**SEED[3], "telecom": HERS}, headers=alice
    )
    assert conditional.status_code in (403, 404, 412), conditional.text
    bobs = await http.get("RelatedPerson", params={"patient": "Patient/bob"}, headers=admin)
    assert [e["resource"]["id"] for e in bobs.json().get("entry", [])] == ["uncle"]
    assert "evil.example" not in bobs.text
