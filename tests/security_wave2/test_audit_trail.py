"""Attacks on the audit trail: AuditEvents about Bob are invisible to Alice's app and her
caregiver, append-only and not forgeable; Alice's access report names no other patient;
a staff read of pretty-printed data is still in the patient's report."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx

from tests.patient_data.support import bearer
from tests.security_wave2.calls import current


async def test_audit_events_about_another_patient_are_invisible(
    http: httpx.AsyncClient, alice: dict[str, str], mum: dict[str, str]
) -> None:
    bob_audit = http.headers["x-bob-audit"]
    for who in (alice, mum):
        assert (await http.get(f"AuditEvent/{bob_audit}", headers=who)).status_code == 404
        for query in (
            "AuditEvent?patient=Patient/bob",
            "AuditEvent?entity=Patient/bob",
            "AuditEvent",
            "Patient?_id=alice&_revinclude=AuditEvent:patient",
            "AuditEvent?agent=Practitioner/dr",
        ):
            response = await http.get(query, headers=who)
            assert response.status_code in (200, 400, 403), (query, response.text)
            assert bob_audit not in response.text and "Patient/bob" not in response.text, query


async def test_audit_events_are_append_only(
    http: httpx.AsyncClient, alice: dict[str, str], admin: dict[str, str]
) -> None:
    bob_audit = http.headers["x-bob-audit"]
    stored = await current(http, admin, f"AuditEvent/{bob_audit}")
    for who in (alice, admin):
        put = await http.put(f"AuditEvent/{bob_audit}", json=stored, headers=who)
        assert put.status_code in (403, 404, 405), put.text
        assert (await http.delete(f"AuditEvent/{bob_audit}", headers=who)).status_code in (404, 405)


async def test_patient_cannot_forge_audit_events(
    http: httpx.AsyncClient, alice: dict[str, str]
) -> None:
    forged = {
        "resourceType": "AuditEvent",
        "type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "code": "rest",
        },
        "action": "R",
        "recorded": "2026-12-06T03:00:00Z",
        "outcome": "0",
        "agent": [{"who": {"reference": "Practitioner/dr"}, "requestor": True}],
        "source": {"observer": {"display": "FHIR server"}},
        "entity": [{"what": {"reference": "Patient/alice"}}],
    }
    response = await http.post("AuditEvent", json=forged, headers=alice)
    assert response.status_code == 403, response.text


async def test_access_report_names_no_other_patient(
    app: Any, http: httpx.AsyncClient, alice: dict[str, str], dr: dict[str, str]
) -> None:
    searched = await http.get("Observation?patient=Patient/alice,Patient/bob", headers=dr)
    assert searched.status_code == 200, searched.text
    await app.state.audit.flush()
    report = await http.get("AuditEvent?patient=Patient/alice&_sort=-date", headers=alice)
    assert report.status_code == 200, report.text
    events = [e["resource"] for e in report.json().get("entry", [])]
    assert any("Observation" in str(e) for e in events), "the staff search is in her report"
    for event in events:
        text = str(event)
        for entity in event.get("entity", []):
            if isinstance(entity.get("query"), str):
                text += base64.b64decode(entity["query"]).decode()
        assert "bob" not in text, text


async def test_a_staff_read_of_pretty_printed_data_is_in_the_patients_report(
    app: Any, http: httpx.AsyncClient, admin: dict[str, str], dr: dict[str, str], token: Any
) -> None:
    """An EHR pushes JSON as json.dumps writes it ("reference": "Patient/bob", with a
    space): a staff read of it is still in Bob's access report."""
    body = json.dumps(
        {
            "resourceType": "Observation",
            "id": "pretty",
            "status": "final",
            "code": {"text": "HIV viral load"},
            "subject": {"reference": "Patient/bob"},
        },
        indent=2,
    ).encode()
    written = await http.put(
        "Observation/pretty",
        content=body,
        headers={**admin, "content-type": "application/fhir+json"},
    )
    assert written.status_code == 201, written.text
    await app.state.audit.flush()
    read = await http.get("Observation/pretty", headers=dr)
    assert read.status_code == 200
    found = await http.get("Observation?code:text=HIV", headers=dr)
    assert found.status_code == 200 and found.json()["entry"]
    await app.state.audit.flush()
    bob = bearer(token("patient/*.rs", patient="bob", fhir_user="Patient/bob"))
    report = await http.get("AuditEvent?patient=Patient/bob", headers=bob)
    assert report.status_code == 200, report.text
    seen = [
        e["resource"]
        for e in report.json().get("entry", [])
        if e["resource"].get("agent", [{}])[0].get("who", {}).get("reference") == "Practitioner/dr"
        and (
            "Observation/pretty" in json.dumps(e["resource"]) or "HIV" in json.dumps(e["resource"])
        )
    ]
    kinds = {e["subtype"][0]["code"] for e in seen}
    assert {"read", "search-type"} <= kinds, kinds
