"""Types outside the R4 Patient compartment (Task, PaymentReconciliation, ...) are
default-deny for patient-context tokens: readable only when they refer to that patient
and no other; the directory types when they refer to no other patient (security review,
issue 14, item 4b), on every store; and stores of earlier releases get those
memberships on start-up.
"""

from __future__ import annotations

import sqlite3

import httpx

from fhir_server.app import create_app
from fhir_server.config import Settings
from tests.conftest import BASE
from tests.patient_data.support import Token, bearer, ids, issuer, refill_task

# -- 4b: types outside the Patient compartment -------------------------------------------


async def test_types_outside_the_compartment_are_default_deny(
    http: httpx.AsyncClient, alice: dict[str, str], token: Token
) -> None:
    """Item 4b: Bob's refill Task and a PaymentReconciliation naming him were returned to
    Alice by read and by search."""
    for path in ("Task/b-task", "PaymentReconciliation/b-payment", "Subscription/nobodys"):
        assert (await http.get(path, headers=alice)).status_code == 404, path
    assert (await http.get("Task/both-task", headers=alice)).status_code == 404
    assert await ids(http, "Task", alice) == {"Task/a-task"}
    assert await ids(http, "PaymentReconciliation", alice) == set()
    assert await ids(http, "Subscription", alice) == set()
    found = await ids(http, "Task?_include=Task:patient", alice)
    assert found == {"Task/a-task", "Patient/alice"}
    revinclude = await ids(http, "Patient?_revinclude=Task:patient", alice)
    assert revinclude == {"Patient/alice", "Task/a-task"}
    mixed = await ids(
        http, BASE + "?_type=Task,Observation,Practitioner,PaymentReconciliation", alice
    )
    assert mixed == {
        "Task/a-task",
        "Observation/a-obs",
        "Observation/shared",
        "Practitioner/dr",
    }
    history = (await http.get("_history", headers=alice)).json()
    seen = {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in history["entry"]}
    assert not seen & {"Task/b-task", "Task/both-task", "PaymentReconciliation/b-payment"}
    assert "Task/a-task" in seen
    bob = bearer(token("patient/*.rs", patient="bob"))
    assert (await http.get("Task/b-task", headers=bob)).status_code == 200
    assert await ids(http, "PaymentReconciliation", bob) == {"PaymentReconciliation/b-payment"}
    assert await ids(http, "Task", bob) == {"Task/b-task"}


async def test_directory_types_are_readable_unless_another_patients(
    http: httpx.AsyncClient, alice: dict[str, str]
) -> None:
    for path in ("Practitioner/dr", "Organization/org", "Slot/slot", "Schedule/dr-schedule"):
        assert (await http.get(path, headers=alice)).status_code == 200, path
    assert (await http.get("Schedule/bob-schedule", headers=alice)).status_code == 404
    assert await ids(http, "Schedule", alice) == {"Schedule/dr-schedule"}
    included = await ids(http, "Slot?_include=Slot:schedule", alice)
    assert included == {"Slot/slot", "Schedule/dr-schedule"}


async def test_a_patient_writes_outside_the_compartment_only_about_herself(
    http: httpx.AsyncClient, alice: dict[str, str], token: Token
) -> None:
    """A refill request (Task) for herself is hers; one naming Bob is refused."""
    mine = await http.post("Task", json=refill_task("new", "Patient/alice"), headers=alice)
    assert mine.status_code == 201
    new_id = mine.json()["id"]
    assert (await http.get(f"Task/{new_id}", headers=alice)).status_code == 200
    bob = bearer(token("patient/*.rs", patient="bob"))
    assert (await http.get(f"Task/{new_id}", headers=bob)).status_code == 404
    others = (
        refill_task("t", "Patient/bob"),
        refill_task("t", "Patient/alice", "Patient/bob"),
        refill_task("t"),
    )
    for task in others:
        assert (await http.post("Task", json=task, headers=alice)).status_code == 403
    # a Task naming both is not hers to change either
    both = refill_task("both-task", "Patient/alice")
    assert (await http.put("Task/both-task", json=both, headers=alice)).status_code == 404


# -- stored data of earlier releases -----------------------------------------------------


async def test_earlier_stores_get_the_memberships_of_types_outside_the_compartment(
    settings: Settings, token: Token, http: httpx.AsyncClient
) -> None:
    """A store written before this rule kept no memberships for Task and the like: on
    start-up they are recorded from the stored contents (SQLite schema 6, MongoDB
    schema 4), so Bob keeps seeing his Task and Alice still does not."""
    await _as_earlier_release(settings)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        issue = issuer(app)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE + "/") as client:

            def holder(patient: str) -> dict[str, str]:
                return bearer(issue("patient/*.rs", patient=patient))

            assert await ids(client, "Task", holder("bob")) == {"Task/b-task"}
            assert await ids(client, "Task", holder("alice")) == {"Task/a-task"}
            history = await ids(client, "Task/b-task/_history", holder("bob"))
            assert history == {"Task/b-task"}


async def _as_earlier_release(settings: Settings) -> None:
    """Remove what the previous schema did not record: memberships of Tasks and
    PaymentReconciliations (and mark the store as of that schema)."""
    url = settings.storage
    if url.startswith("sqlite"):
        path = url.removeprefix("sqlite:///")
        conn = sqlite3.connect(path)
        conn.execute(
            "DELETE FROM member WHERE seq IN (SELECT seq FROM history WHERE type IN"
            " ('Task', 'PaymentReconciliation'))"
        )
        conn.execute("PRAGMA user_version=5")
        conn.commit()
        conn.close()
        return
    from fhir_server.storage.mongomock_async import client_from_url

    client, database = client_from_url(url)
    db = client[database]
    for name in ("resources", "history"):
        await db[name].update_many(
            {"type": {"$in": ["Task", "PaymentReconciliation"]}}, {"$set": {"m": []}}
        )
    await db["counters"].update_one({"_id": "schema"}, {"$set": {"version": 3}})
