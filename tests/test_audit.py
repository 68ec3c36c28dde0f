"""The audit trail over HTTP with SMART tokens, on every store (issue 21, "Audit"): each
FHIR interaction is an AuditEvent (BALP) that the patient whose data it touched reads in
``AuditEvent?patient=Patient/X&_sort=-date``, nobody else's; AuditEvents are append-only.

The trail writes its queue every quarter second; the tests write it at once
(``AuditTrail.flush``, what the writer task calls) instead of waiting.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhir_server.app import create_app
from fhir_server.audit.balp import CLIENT_SYSTEM, write_event_id
from fhir_server.audit.record import Activity, Agent
from fhir_server.config import Settings
from tests.conftest import BASE, STORES, storage_url
from tests.patient_data.support import Token, bearer, issuer

SEED: list[dict[str, Any]] = [
    {"resourceType": "Patient", "id": "alice", "name": [{"family": "Liddell"}]},
    {"resourceType": "Patient", "id": "bob", "name": [{"family": "Bravo"}]},
    {"resourceType": "Practitioner", "id": "dr", "name": [{"family": "Who", "given": ["Ann"]}]},
    *(
        {
            "resourceType": "Observation",
            "id": f"{who}-obs",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
            "subject": {"reference": f"Patient/{who}"},
        }
        for who in ("alice", "bob")
    ),
]

REPORT = "AuditEvent?patient=Patient/{}&_sort=-date"


@pytest.fixture(params=STORES)
async def app(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    settings = Settings(storage=storage_url(request.param, tmp_path), auth="smart")
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
def token(app: Any) -> Token:
    return issuer(app)


@pytest.fixture
async def http(app: Any, token: Token) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE + "/") as client:
        for resource in SEED:
            path = f"{resource['resourceType']}/{resource['id']}"
            response = await client.put(path, json=resource, headers=staff_of(token))
            assert response.status_code == 201, response.text
        yield client


def staff_of(token: Token) -> dict[str, str]:
    return bearer(token("user/*.cruds", fhir_user="Practitioner/dr", subject="ann"))


def patient_of(token: Token, who: str) -> dict[str, str]:
    return bearer(token("patient/*.rs", fhir_user=f"Patient/{who}", patient=who))


async def report(
    app: Any, http: httpx.AsyncClient, headers: dict[str, str], who: str
) -> list[dict[str, Any]]:
    await app.state.audit.flush()
    response = await http.get(REPORT.format(who), headers=headers)
    assert response.status_code == 200, response.text
    return [e["resource"] for e in response.json().get("entry", [])]


def reads_of(events: list[dict[str, Any]], reference: str) -> list[dict[str, Any]]:
    def names(event: dict[str, Any]) -> list[str]:
        return [x.get("what", {}).get("reference", "") for x in event.get("entity", [])]

    return [
        e
        for e in events
        if e["subtype"][0]["code"] == "read" and any(n.startswith(reference) for n in names(e))
    ]


async def test_a_staff_read_is_in_the_patients_access_report(
    app: Any, http: httpx.AsyncClient, token: Token
) -> None:
    read = await http.get("Observation/alice-obs", headers=staff_of(token))
    assert read.status_code == 200
    events = reads_of(await report(app, http, patient_of(token, "alice"), "alice"), "Observation/")
    assert len(events) == 1
    event = events[0]
    assert event["action"] == "R" and event["outcome"] == "0"
    user, app_agent = event["agent"][0], event["agent"][1]
    assert user["who"] == {"reference": "Practitioner/dr", "display": "Ann Who"}
    assert user["altId"] == "ann"
    assert app_agent["who"]["identifier"] == {"system": CLIENT_SYSTEM, "value": "test-app"}
    whats = [x["what"]["reference"] for x in event["entity"]]
    assert whats == ["Patient/alice", "Observation/alice-obs/_history/1"]


async def test_a_patient_never_reads_another_patients_trail(
    app: Any, http: httpx.AsyncClient, token: Token
) -> None:
    staff = staff_of(token)
    assert (await http.get("Observation/alice-obs", headers=staff)).status_code == 200
    assert (await http.get("Observation/bob-obs", headers=staff)).status_code == 200
    bob = patient_of(token, "bob")
    assert await report(app, http, bob, "alice") == []
    everything = await http.get("AuditEvent", headers=bob)
    for entry in everything.json().get("entry", []):
        refs = {x.get("what", {}).get("reference") for x in entry["resource"].get("entity", [])}
        assert "Patient/alice" not in refs
    alice_events = await report(app, http, staff, "alice")
    assert alice_events
    for event in alice_events:  # not even by id
        answer = await http.get(f"AuditEvent/{event['id']}", headers=bob)
        assert answer.status_code == 404
    own = reads_of(await report(app, http, bob, "bob"), "Observation/bob-obs")
    assert len(own) == 1


async def test_a_search_over_several_patients_gives_one_event_each(
    app: Any, http: httpx.AsyncClient, token: Token
) -> None:
    found = await http.get("Observation?code=29463-7", headers=staff_of(token))
    assert found.json()["total"] == 2
    for who in ("alice", "bob"):
        events = await report(app, http, patient_of(token, who), who)
        searches = [e for e in events if e["subtype"][0]["code"] == "search-type"]
        searches = [e for e in searches if "Observation?" in e["entity"][-1]["description"]]
        assert len(searches) == 1
        entities = [x.get("what", {}).get("reference") for x in searches[0]["entity"]]
        assert entities == [f"Patient/{who}", None]  # BALP's query event: patient, query
        assert searches[0]["entity"][-1]["description"] == "GET Observation?code=29463-7"


async def test_auditevents_cannot_be_changed(
    app: Any, http: httpx.AsyncClient, token: Token
) -> None:
    staff = staff_of(token)
    await http.get("Observation/alice-obs", headers=staff)
    event = reads_of(await report(app, http, staff, "alice"), "Observation/")[0]
    path = f"AuditEvent/{event['id']}"
    system = bearer(token("system/*.cruds"))
    changed = {**event, "outcome": "8"}
    for headers in (staff, system):
        put = await http.put(path, json=changed, headers=headers)
        patch = await http.patch(
            path,
            json=[{"op": "replace", "path": "/outcome", "value": "8"}],
            headers={**headers, "content-type": "application/json-patch+json"},
        )
        deleted = await http.delete(path, headers=headers)
        for answer in (put, patch, deleted):
            assert answer.status_code == 405, answer.text
            assert answer.json()["resourceType"] == "OperationOutcome"
        for entry in (
            {"request": {"method": "DELETE", "url": path}},
            {"resource": changed, "request": {"method": "PUT", "url": path}},
        ):
            new = {**SEED[0], "id": "new"}
            created = {"resource": new, "request": {"method": "PUT", "url": "Patient/new"}}
            bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [created, entry]}
            answer = await http.post("", json=bundle, headers=headers)
            assert answer.status_code == 405, answer.text
            assert answer.json()["resourceType"] == "OperationOutcome"
    assert (await http.get("Patient/new", headers=staff)).status_code == 404  # all or nothing
    after = await http.get(path, headers=staff)
    assert after.status_code == 200
    assert after.json()["meta"]["versionId"] == "1" and after.json()["outcome"] == "0"


async def test_a_write_is_recorded_with_its_version(
    app: Any, http: httpx.AsyncClient, token: Token
) -> None:
    staff = staff_of(token)
    body = {**SEED[3], "id": None, "status": "amended"}
    del body["id"]
    created = await http.post("Observation", json=body, headers=staff)
    assert created.status_code == 201
    reference = created.headers["location"].split("/fhir/")[1]
    await app.state.audit.flush()
    event = await http.get(f"AuditEvent/{write_event_id(reference)}", headers=staff)
    assert event.status_code == 200, event.text
    recorded = event.json()
    assert recorded["action"] == "C" and recorded["subtype"][0]["code"] == "create"
    assert [x["what"]["reference"] for x in recorded["entity"]] == ["Patient/alice", reference]


async def test_the_trail_does_not_record_itself(
    app: Any, http: httpx.AsyncClient, token: Token
) -> None:
    staff = staff_of(token)
    await app.state.audit.flush()
    before = (await http.get("AuditEvent?_summary=count", headers=staff)).json()["total"]
    assert await app.state.audit.flush() == 1  # the count above, and nothing else
    again = (await http.get("AuditEvent?_summary=count", headers=staff)).json()["total"]
    assert again == before + 1


async def test_like_reads_within_the_window_are_one_event(
    app: Any, http: httpx.AsyncClient, token: Token
) -> None:
    staff = staff_of(token)
    assert (await http.get("Observation/alice-obs", headers=staff)).status_code == 200
    assert (await http.get("Patient/alice", headers=staff)).status_code == 200
    events = reads_of(await report(app, http, staff, "alice"), "Observation/alice-obs")
    assert len(events) == 1
    event = events[0]
    assert event["period"]["start"] <= event["period"]["end"] == event["recorded"]
    assert event["entity"][0]["detail"] == [{"type": "interactions", "valueString": "2"}]
    whats = [x["what"]["reference"] for x in event["entity"]]
    assert whats == [
        "Patient/alice",
        "Observation/alice-obs/_history/1",
        "Patient/alice/_history/1",
    ]


async def test_a_write_whose_record_was_lost_is_recorded_from_the_outbox(
    app: Any, http: httpx.AsyncClient, token: Token
) -> None:
    trail = app.state.audit
    await trail.flush()
    sweep = trail.sweep
    sweep.grace = 0.0
    await sweep.tick(time.monotonic() + 100)  # the sweep has passed every write so far
    app.state.audit = None  # the process dies before its queue is written
    body = {k: v for k, v in SEED[3].items() if k != "id"}
    created = await http.post("Observation", json=body, headers=staff_of(token))
    app.state.audit = trail
    reference = created.headers["location"].split("/fhir/")[1]
    assert await sweep.tick(time.monotonic() + 200) == 1
    event = await http.get(f"AuditEvent/{write_event_id(reference)}", headers=staff_of(token))
    assert event.status_code == 200, event.text
    recorded = event.json()
    assert recorded["action"] == "C"
    assert [a["who"] for a in recorded["agent"]] == [{"display": "fhir-server"}]
    assert [x["what"]["reference"] for x in recorded["entity"]] == ["Patient/alice", reference]
    assert await sweep.tick(time.monotonic() + 300) == 0  # once


async def test_auditevents_older_than_the_retention_are_removed_for_good(
    app: Any, http: httpx.AsyncClient, token: Token
) -> None:
    """Retention purges: the resource, its history and its index rows (a delete would
    leave a tombstone and the versions)."""
    trail = app.state.audit
    staff = staff_of(token)
    agent = Agent("Practitioner/dr", "ann", "test-app", "10.0.0.9")  # another group
    old = Activity("rest", "read", agent, 200, "GET", "Patient/bob", recorded=time.time() - 7200)
    trail.record(old)
    await http.get("Patient/bob", headers=staff)
    events = await report(app, http, staff, "bob")
    reads = [e for e in events if e["subtype"][0]["code"] == "read"]
    assert len(reads) == 2
    [expired] = [e for e in reads if e["agent"][1]["network"]["address"] == "10.0.0.9"]
    store = trail.store
    assert await index_rows(store, expired["id"]) > 0
    await trail.flush()  # a newer version than the expired one's is stored
    trail.retention = 3600
    assert await trail.prune() == 1
    events = await report(app, http, staff, "bob")
    assert expired["id"] not in {e["id"] for e in events}
    path = f"AuditEvent/{expired['id']}"
    assert (await http.get(path, headers=staff)).status_code == 404  # not 410: no tombstone
    assert (await http.get(f"{path}/_history/1", headers=staff)).status_code == 404
    assert await store.read("AuditEvent", expired["id"]) is None
    assert await store.vread("AuditEvent", expired["id"], 1) is None
    assert await index_rows(store, expired["id"]) == 0
    assert await trail.prune() == 0


async def index_rows(store: Any, id_: str) -> int:
    """The search index rows and memberships an AuditEvent has left in the store."""
    if hasattr(store, "run_write"):  # SQLite: rows of every index table and of member
        from fhir_server.storage.sqlite_index import INDEX_TABLES

        def count(conn: Any) -> int:
            found = conn.execute(
                "SELECT pk FROM resource WHERE type='AuditEvent' AND id=?", (id_,)
            ).fetchone()
            pks = {pk for (pk,) in conn.execute("SELECT pk FROM resource")}
            stray = sum(
                conn.execute(
                    f"SELECT count(*) FROM {t} WHERE res_pk NOT IN (SELECT pk FROM resource)"
                ).fetchone()[0]
                for t in INDEX_TABLES
            )
            members = conn.execute(
                "SELECT count(*) FROM member WHERE seq NOT IN (SELECT seq FROM history)"
            ).fetchone()[0]
            own = 0
            if found is not None and found[0] in pks:
                own = sum(
                    conn.execute(f"SELECT count(*) FROM {t} WHERE res_pk=?", found).fetchone()[0]
                    for t in INDEX_TABLES
                )
            return own + stray + members

        return int(await store.run_write(count))
    found = await store.db["resources"].find_one({"_id": f"AuditEvent/{id_}"})
    history = await store.db["history"].count_documents({"type": "AuditEvent", "id": id_})
    return (len(found) if found is not None else 0) + history


@pytest.mark.parametrize("store", STORES)
async def test_with_audit_off_nothing_is_recorded_and_auditevents_stay_append_only(
    store: str, tmp_path: Path
) -> None:
    settings = Settings(storage=storage_url(store, tmp_path), auth="smart", audit="off")
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        assert application.state.audit is None
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url=BASE + "/") as http:
            staff = staff_of(issuer(application))
            event = {
                "resourceType": "AuditEvent",
                "type": {
                    "system": "http://dicom.nema.org/resources/ontology/DCM",
                    "code": "110100",
                },
                "recorded": "2025-01-01T00:00:00Z",
                "agent": [{"who": {"reference": "Practitioner/dr"}, "requestor": True}],
                "source": {"observer": {"display": "an EHR"}},
            }
            created = await http.post("AuditEvent", json=event, headers=staff)
            assert created.status_code == 201, created.text  # a system may add its own
            found = await http.get("AuditEvent", headers=staff)
            assert found.json()["total"] == 1
            path = created.headers["location"].split("/fhir/")[1].split("/_history")[0]
            assert (await http.delete(path, headers=staff)).status_code == 405


async def test_an_operation_is_audited_through_the_same_hook(
    app: Any, http: httpx.AsyncClient, token: Token
) -> None:
    everything = await http.get("Patient/alice/$everything", headers=staff_of(token))
    assert everything.status_code == 200, everything.text
    events = await report(app, http, patient_of(token, "alice"), "alice")
    [event] = [e for e in events if e["subtype"][-1]["code"] == "$everything"]
    assert event["subtype"][0] == {
        "system": "http://hl7.org/fhir/restful-interaction",
        "code": "operation",
        "display": "operation",
    }
    assert event["agent"][0]["who"]["reference"] == "Practitioner/dr"
    assert event["entity"][0]["what"] == {"reference": "Patient/alice"}


async def test_a_patient_cannot_create_an_auditevent(
    app: Any, http: httpx.AsyncClient, token: Token
) -> None:
    forged = {
        "resourceType": "AuditEvent",
        "type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "code": "rest",
        },
        "recorded": "2026-01-01T00:00:00Z",
        "agent": [{"who": {"reference": "Practitioner/dr"}, "requestor": True}],
        "source": {"observer": {"display": "fhir-server"}},
        "entity": [{"what": {"reference": "Patient/alice"}}],
    }
    alice = bearer(token("patient/*.cruds", fhir_user="Patient/alice", patient="alice"))
    refused = await http.post("AuditEvent", json=forged, headers=alice)
    assert refused.status_code == 403, refused.text
    assert refused.json()["resourceType"] == "OperationOutcome"


async def test_the_access_log_is_not_part_of_the_record_unless_asked(
    app: Any, http: httpx.AsyncClient, token: Token
) -> None:
    """$everything (and a patient's $export) leave AuditEvents out unless _type names
    them: the log changes with every look at the record."""
    assert (await http.get("Observation/alice-obs", headers=staff_of(token))).status_code == 200
    assert await report(app, http, patient_of(token, "alice"), "alice")  # events exist
    record = await http.get("Patient/alice/$everything", headers=patient_of(token, "alice"))
    types = {e["resource"]["resourceType"] for e in record.json().get("entry", [])}
    assert "AuditEvent" not in types and "Observation" in types
    asked = await http.get(
        "Patient/alice/$everything?_type=AuditEvent", headers=patient_of(token, "alice")
    )
    assert {e["resource"]["resourceType"] for e in asked.json()["entry"]} == {"AuditEvent"}
