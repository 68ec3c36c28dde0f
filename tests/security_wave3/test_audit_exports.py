"""Attacks on the audit of bulk exports (``fhir_server.audit.disclosure``): after a system
export that held Alice's and Bob's data, Alice's token finds only the export event about
her, by every search and read a patient app can make (by id, by ``patient``, ``entity``,
``_id``, ``_include``, history), never Bob's. ``tests/test_export.py``'s app and seed, on
every store."""

from __future__ import annotations

from tests.test_audit_export import export_events, patients_named
from tests.test_export import Env, env, export

FIXTURES = (env,)


async def test_a_patient_finds_no_other_patients_export_event(env: Env) -> None:
    await export(env, "$export?_type=Patient,Observation")
    staff = await export_events(env, env.staff(), "AuditEvent?type=110106")
    by_patient = {patients_named(e)[0]: e["id"] for e in staff}
    assert set(by_patient) == {"Patient/alice", "Patient/bob"}
    bobs = by_patient["Patient/bob"]
    alice = env.patient("alice")
    assert (await env.http.get(f"AuditEvent/{bobs}", headers=alice)).status_code in (403, 404)
    for query in (
        "AuditEvent?patient=Patient/bob",
        "AuditEvent?entity=Patient/bob",
        f"AuditEvent?_id={bobs}",
        "AuditEvent?type=110106",
        "AuditEvent?_include=AuditEvent:entity&_count=100",
        "AuditEvent?subtype=$export",
        "AuditEvent/_history?_count=100",
        f"AuditEvent/{bobs}/_history",
    ):
        found = await env.http.get(query, headers=alice)
        assert found.status_code in (200, 403, 404), (query, found.text)
        if found.status_code == 200:
            entries = found.json().get("entry", [])
            assert bobs not in str(entries), query
            assert "Patient/bob" not in str(entries), query
    mine = await export_events(env, alice, "AuditEvent?type=110106")
    assert [patients_named(e) for e in mine] == [["Patient/alice"]]
