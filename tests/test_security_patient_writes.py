"""Patient-context tokens cannot reach or change other people's data (security review,
issue 14, items 1, 2, 3, 4b and 15), on every store.

- writes: every patient a new version refers to, and every compartment the version it
  replaces is in, must be the patient in context (or the patient a caregiver acts for);
- what decides access (Person, RelatedPerson, ``Patient.link``) and directory data
  (Practitioner, Organization, Slot, ...) is written by staff and backend services only;
- types outside the R4 Patient compartment (Task, PaymentReconciliation, ...) are
  default-deny: readable by a patient-context token only when they refer to that
  patient and no other; the directory types when they refer to no other patient;
- a change to something the caller cannot read is answered as a read is (404).

Each test holds data that the request would reach without the rule.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhir_server.app import create_app
from fhir_server.config import Settings
from tests.conftest import BASE, STORES, storage_url

Token = Callable[..., str]
JSON_PATCH = {"content-type": "application/json-patch+json"}


def _obs(id_: str, subject: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": id_,
        "status": "final",
        "code": {"text": "note"},
        "subject": {"reference": subject},
        **extra,
    }


def _task(id_: str, *patients: str, description: str = "refill") -> dict[str, Any]:
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
    _obs("a-obs", "Patient/alice"),
    _obs("b-obs", "Patient/bob"),
    # written by staff: in Alice's compartment and in Bob's (performer)
    _obs("shared", "Patient/alice", performer=[{"reference": "Patient/bob"}]),
    _task("b-task", "Patient/bob", description="refill of lisinopril for Bravo"),
    _task("a-task", "Patient/alice"),
    _task("both-task", "Patient/alice", "Patient/bob"),
    {
        "resourceType": "PaymentReconciliation",
        "id": "b-payment",
        "status": "active",
        "created": "2026-01-01",
        "paymentDate": "2026-01-01",
        "paymentAmount": {"value": 120, "currency": "USD"},
        "detail": [
            {"type": {"text": "payment"}, "submitter": {"reference": "Patient/bob"}}
        ],
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


@pytest.fixture(params=STORES)
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    return Settings(storage=storage_url(request.param, tmp_path), auth="smart")


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Any]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


def issuer(app: Any) -> Token:
    """Access tokens signed by the app's own authorization server."""
    service = app.state.auth.token_service()

    def issue(scope: str, **context: Any) -> str:
        value, _ = service.issue_access_token(
            issuer=BASE, audience=BASE, client_id="test-app", scope=scope, **context
        )
        return value

    return issue


@pytest.fixture
def token(app: Any) -> Token:
    return issuer(app)


def bearer(value: str) -> dict[str, str]:
    return {"authorization": f"Bearer {value}"}


async def _seed(http: httpx.AsyncClient, admin: dict[str, str]) -> None:
    for resource in SEED:
        path = f"{resource['resourceType']}/{resource['id']}"
        response = await http.put(path, json=resource, headers=admin)
        assert response.status_code in (200, 201), response.text


@pytest.fixture
async def http(app: Any, token: Token) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE + "/") as client:
        await _seed(client, bearer(token("system/*.cruds")))
        yield client


@pytest.fixture
def alice(token: Token) -> dict[str, str]:
    return bearer(token("patient/*.cruds", patient="alice"))


@pytest.fixture
def admin(token: Token) -> dict[str, str]:
    return bearer(token("system/*.cruds"))


async def _ids(http: httpx.AsyncClient, query: str, headers: dict[str, str]) -> set[str]:
    response = await http.get(query, headers=headers)
    assert response.status_code == 200, response.text
    return {
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in response.json().get("entry", [])
    }


# -- 1: writing into another patient's chart ---------------------------------------------


async def test_a_patient_cannot_create_in_another_patients_chart(
    http: httpx.AsyncClient, alice: dict[str, str], admin: dict[str, str]
) -> None:
    """Item 1: ``subject: Patient/B`` with ``performer: [Patient/A]`` was accepted (the
    resource was in one of the token's compartments) and showed up in B's chart."""
    intruding = [
        ("Observation", _obs("x1", "Patient/bob", performer=[{"reference": "Patient/alice"}])),
        (
            "Condition",
            {
                "resourceType": "Condition",
                "subject": {"reference": "Patient/bob"},
                "asserter": {"reference": "Patient/alice"},
            },
        ),
        (
            "Group",
            {
                "resourceType": "Group",
                "type": "person",
                "actual": True,
                "member": [
                    {"entity": {"reference": "Patient/alice"}},
                    {"entity": {"reference": "Patient/bob"}},
                ],
            },
        ),
        (
            "List",
            {
                "resourceType": "List",
                "status": "current",
                "mode": "working",
                "subject": {"reference": "Patient/bob"},
                "source": {"reference": "Patient/alice"},
            },
        ),
        # outside any compartment parameter: still another patient's name on her write
        ("Observation", _obs("x2", "Patient/alice", focus=[{"reference": "Patient/bob"}])),
    ]
    for type_, resource in intruding:
        response = await http.post(type_, json=resource, headers=alice)
        assert response.status_code == 403, (type_, response.text)
        assert response.json()["issue"][0]["code"] == "forbidden"
    for type_ in ("Observation", "Condition", "Group", "List"):
        found = await _ids(http, f"{type_}?_count=100", admin)
        assert not {f for f in found if f.endswith(("/x1", "/x2"))}
    assert await _ids(http, "Condition", admin) == set()
    assert await _ids(http, "Group", admin) == set()
    # her own data still goes in
    mine = await http.post("Observation", json=_obs("n", "Patient/alice"), headers=alice)
    assert mine.status_code == 201


async def test_a_patient_cannot_move_her_resource_into_another_chart(
    http: httpx.AsyncClient, alice: dict[str, str], admin: dict[str, str]
) -> None:
    """Item 1 by PUT and PATCH of her own Observation."""
    moved = _obs("a-obs", "Patient/bob", performer=[{"reference": "Patient/alice"}])
    assert (await http.put("Observation/a-obs", json=moved, headers=alice)).status_code == 403
    patch = [{"op": "add", "path": "/performer", "value": [{"reference": "Patient/bob"}]}]
    headers = {**alice, **JSON_PATCH}
    response = await http.patch("Observation/a-obs", json=patch, headers=headers)
    assert response.status_code == 403
    stored = (await http.get("Observation/a-obs", headers=admin)).json()
    assert stored["meta"]["versionId"] == "1" and "performer" not in stored
    assert "Observation/a-obs" not in await _ids(http, "Observation?patient=bob", admin)


async def test_a_version_in_another_patients_compartment_is_not_hers_to_change(
    http: httpx.AsyncClient, alice: dict[str, str], admin: dict[str, str]
) -> None:
    """Item 1, "and of the version it replaces": staff wrote an Observation in both
    compartments; Alice reads it, but neither changes nor deletes it."""
    assert (await http.get("Observation/shared", headers=alice)).status_code == 200
    cleaned = _obs("shared", "Patient/alice")
    assert (await http.put("Observation/shared", json=cleaned, headers=alice)).status_code == 403
    assert (await http.delete("Observation/shared", headers=alice)).status_code == 403
    stored = (await http.get("Observation/shared", headers=admin)).json()
    assert stored["meta"]["versionId"] == "1"


async def test_patient_link_to_another_patient_is_refused(
    http: httpx.AsyncClient, alice: dict[str, str], admin: dict[str, str]
) -> None:
    linked = {
        "resourceType": "Patient",
        "id": "alice",
        "name": [{"family": "Liddell"}],
        "link": [{"other": {"reference": "Patient/bob"}, "type": "seealso"}],
    }
    assert (await http.put("Patient/alice", json=linked, headers=alice)).status_code == 403
    # her own details she may change
    moved = {"resourceType": "Patient", "id": "alice", "name": [{"family": "Hargreaves"}]}
    assert (await http.put("Patient/alice", json=moved, headers=alice)).status_code == 200
    assert "link" not in (await http.get("Patient/alice", headers=admin)).json()
    # and her record is not hers to delete
    assert (await http.delete("Patient/alice", headers=alice)).status_code == 403
    assert (await http.get("Patient/alice", headers=admin)).status_code == 200


async def test_a_caregiver_writes_only_for_the_patient_they_act_for(
    http: httpx.AsyncClient, token: Token
) -> None:
    mum = bearer(token("user/*.cruds", fhir_user="RelatedPerson/mum", patient="alice"))
    ok = await http.post("Observation", json=_obs("m1", "Patient/alice"), headers=mum)
    assert ok.status_code == 201
    other = _obs("m2", "Patient/alice", performer=[{"reference": "Patient/bob"}])
    assert (await http.post("Observation", json=other, headers=mum)).status_code == 403
    assert (
        await http.post("Observation", json=_obs("m3", "Patient/bob"), headers=mum)
    ).status_code == 403


async def test_a_transaction_cannot_carry_a_write_into_another_chart(
    http: httpx.AsyncClient, alice: dict[str, str], admin: dict[str, str]
) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": _obs("t1", "Patient/alice"),
                "request": {"method": "PUT", "url": "Observation/t1"},
            },
            {
                "resource": _obs("t2", "Patient/bob", performer=[{"reference": "Patient/alice"}]),
                "request": {"method": "PUT", "url": "Observation/t2"},
            },
        ],
    }
    assert (await http.post(BASE, json=bundle, headers=alice)).status_code == 403
    assert (await http.get("Observation/t1", headers=admin)).status_code == 404


# -- 2: what grants access ---------------------------------------------------------------


async def test_a_person_user_cannot_link_another_patient(
    app: Any, http: httpx.AsyncClient, token: Token, admin: dict[str, str]
) -> None:
    """Item 2: the Person is in the user's compartment (it links her Patient); adding
    ``link: Patient/bob`` would have put Bob in her patient picker."""
    person = bearer(token("user/*.cruds", fhir_user="Person/alice-login", patient="alice"))
    assert (await http.get("Person/alice-login", headers=person)).status_code == 200
    widened = {
        "resourceType": "Person",
        "id": "alice-login",
        "link": [
            {"target": {"reference": "Patient/alice"}},
            {"target": {"reference": "Patient/bob"}},
        ],
    }
    response = await http.put("Person/alice-login", json=widened, headers=person)
    assert response.status_code == 403
    # not even a change that names her alone: Person decides access
    same = {"resourceType": "Person", "id": "alice-login", "active": True, "link": [
        {"target": {"reference": "Patient/alice"}}
    ]}
    assert (await http.put("Person/alice-login", json=same, headers=person)).status_code == 403
    choices = await app.state.auth.hooks.patients_for("Person/alice-login", None)
    assert [c.id for c in choices] == ["alice"]


async def test_related_persons_are_written_by_staff_only(
    http: httpx.AsyncClient, alice: dict[str, str], token: Token, admin: dict[str, str]
) -> None:
    extended = {
        "resourceType": "RelatedPerson",
        "id": "mum",
        "active": True,
        "patient": {"reference": "Patient/alice"},
        "period": {"end": "2099-01-01"},
    }
    assert (await http.put("RelatedPerson/mum", json=extended, headers=alice)).status_code == 403
    new = {"resourceType": "RelatedPerson", "patient": {"reference": "Patient/alice"}}
    assert (await http.post("RelatedPerson", json=new, headers=alice)).status_code == 403
    mum = bearer(token("user/*.cruds", fhir_user="RelatedPerson/mum", patient="alice"))
    assert (await http.put("RelatedPerson/mum", json=extended, headers=mum)).status_code == 403
    assert (await http.delete("RelatedPerson/mum", headers=mum)).status_code == 403
    stored = (await http.get("RelatedPerson/mum", headers=admin)).json()
    assert stored["meta"]["versionId"] == "1"
    staff = bearer(token("user/*.cruds", fhir_user="Practitioner/dr"))
    assert (await http.put("RelatedPerson/mum", json=extended, headers=staff)).status_code == 200


# -- 3: directory data -------------------------------------------------------------------


async def test_directory_data_is_read_only_for_patient_tokens(
    http: httpx.AsyncClient, alice: dict[str, str], admin: dict[str, str]
) -> None:
    """Item 3: ``DELETE Practitioner`` answered 200 and everyone got 410."""
    assert (await http.get("Practitioner/dr", headers=alice)).status_code == 200
    assert (await http.delete("Practitioner/dr", headers=alice)).status_code == 403
    org = {"resourceType": "Organization", "id": "org", "name": "Mine now"}
    assert (await http.put("Organization/org", json=org, headers=alice)).status_code == 403
    slot = (await http.get("Slot/slot", headers=alice)).json()
    assert (
        await http.put("Slot/slot", json={**slot, "status": "busy"}, headers=alice)
    ).status_code == 403
    assert (await http.delete("Slot/slot", headers=alice)).status_code == 403
    new = {"resourceType": "Practitioner", "name": [{"family": "Fake"}]}
    assert (await http.post("Practitioner", json=new, headers=alice)).status_code == 403
    patch = [{"op": "replace", "path": "/name", "value": "Hijacked"}]
    response = await http.patch("Organization/org", json=patch, headers={**alice, **JSON_PATCH})
    assert response.status_code == 403
    assert (await http.get("Practitioner/dr", headers=admin)).status_code == 200
    assert (await http.get("Organization/org", headers=admin)).json()["name"] == "Clinic"
    assert (await http.get("Slot/slot", headers=admin)).json()["status"] == "free"


# -- 4b: types outside the Patient compartment -------------------------------------------


async def test_types_outside_the_compartment_are_default_deny(
    http: httpx.AsyncClient, alice: dict[str, str], token: Token
) -> None:
    """Item 4b: Bob's refill Task and a PaymentReconciliation naming him were returned to
    Alice by read and by search."""
    for path in ("Task/b-task", "PaymentReconciliation/b-payment", "Subscription/nobodys"):
        assert (await http.get(path, headers=alice)).status_code == 404, path
    assert (await http.get("Task/both-task", headers=alice)).status_code == 404
    assert await _ids(http, "Task", alice) == {"Task/a-task"}
    assert await _ids(http, "PaymentReconciliation", alice) == set()
    assert await _ids(http, "Subscription", alice) == set()
    found = await _ids(http, "Task?_include=Task:patient", alice)
    assert found == {"Task/a-task", "Patient/alice"}
    revinclude = await _ids(http, "Patient?_revinclude=Task:patient", alice)
    assert revinclude == {"Patient/alice", "Task/a-task"}
    mixed = await _ids(
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
    assert await _ids(http, "PaymentReconciliation", bob) == {"PaymentReconciliation/b-payment"}
    assert await _ids(http, "Task", bob) == {"Task/b-task"}


async def test_directory_types_are_readable_unless_another_patients(
    http: httpx.AsyncClient, alice: dict[str, str]
) -> None:
    for path in ("Practitioner/dr", "Organization/org", "Slot/slot", "Schedule/dr-schedule"):
        assert (await http.get(path, headers=alice)).status_code == 200, path
    assert (await http.get("Schedule/bob-schedule", headers=alice)).status_code == 404
    assert await _ids(http, "Schedule", alice) == {"Schedule/dr-schedule"}
    included = await _ids(http, "Slot?_include=Slot:schedule", alice)
    assert included == {"Slot/slot", "Schedule/dr-schedule"}


async def test_a_patient_writes_outside_the_compartment_only_about_herself(
    http: httpx.AsyncClient, alice: dict[str, str], token: Token
) -> None:
    """A refill request (Task) for herself is hers; one naming Bob is refused."""
    mine = await http.post("Task", json=_task("new", "Patient/alice"), headers=alice)
    assert mine.status_code == 201
    new_id = mine.json()["id"]
    assert (await http.get(f"Task/{new_id}", headers=alice)).status_code == 200
    bob = bearer(token("patient/*.rs", patient="bob"))
    assert (await http.get(f"Task/{new_id}", headers=bob)).status_code == 404
    for task in (_task("t", "Patient/bob"), _task("t", "Patient/alice", "Patient/bob"), _task("t")):
        assert (await http.post("Task", json=task, headers=alice)).status_code == 403
    # a Task naming both is not hers to change either
    both = _task("both-task", "Patient/alice")
    assert (await http.put("Task/both-task", json=both, headers=alice)).status_code == 404


# -- 15: the same answer on every method -------------------------------------------------


async def test_changes_to_what_she_cannot_see_answer_like_a_read(
    http: httpx.AsyncClient, alice: dict[str, str], admin: dict[str, str]
) -> None:
    """Item 15: PUT/DELETE answered 403 where GET answered 404, confirming the id."""
    assert (await http.get("Observation/b-obs", headers=alice)).status_code == 404
    assert (await http.get("Observation/no-such", headers=alice)).status_code == 404
    body = _obs("b-obs", "Patient/alice")
    assert (await http.put("Observation/b-obs", json=body, headers=alice)).status_code == 404
    patch = [{"op": "replace", "path": "/status", "value": "cancelled"}]
    for id_ in ("b-obs", "no-such"):
        response = await http.patch(
            f"Observation/{id_}", json=patch, headers={**alice, **JSON_PATCH}
        )
        assert response.status_code == 404, id_
    absent = await http.delete("Observation/no-such", headers=alice)
    hidden = await http.delete("Observation/b-obs", headers=alice)
    assert (hidden.status_code, hidden.json()["issue"][0]["diagnostics"]) == (
        absent.status_code,
        absent.json()["issue"][0]["diagnostics"].replace("no-such", "b-obs"),
    )
    stored = (await http.get("Observation/b-obs", headers=admin)).json()
    assert stored["meta"]["versionId"] == "1" and stored["status"] == "final"


async def test_a_transaction_delete_of_what_she_cannot_see_deletes_nothing(
    http: httpx.AsyncClient, alice: dict[str, str], admin: dict[str, str]
) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"request": {"method": "DELETE", "url": "Observation/b-obs"}},
            {"request": {"method": "DELETE", "url": "Observation/a-obs"}},
        ],
    }
    response = await http.post(BASE, json=bundle, headers=alice)
    assert response.status_code == 200, response.text
    assert (await http.get("Observation/b-obs", headers=admin)).status_code == 200
    assert (await http.get("Observation/a-obs", headers=admin)).status_code == 410


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

            assert await _ids(client, "Task", holder("bob")) == {"Task/b-task"}
            assert await _ids(client, "Task", holder("alice")) == {"Task/a-task"}
            history = await _ids(client, "Task/b-task/_history", holder("bob"))
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


# -- found in the review of the write path: references to other patients' resources ------


async def test_a_patient_cannot_attach_her_data_to_another_patients(
    http: httpx.AsyncClient, alice: dict[str, str], admin: dict[str, str]
) -> None:
    """A Provenance or a Communication of hers pointing at Bob's Observation would be in
    her compartment only, yet staff would see it linked to Bob's result
    (``_revinclude``). A target that does not exist gets the same answer."""
    provenance = {
        "resourceType": "Provenance",
        "target": [{"reference": "Patient/alice"}, {"reference": "Observation/b-obs"}],
        "recorded": "2026-01-01T00:00:00Z",
        "agent": [{"who": {"reference": "Patient/alice"}}],
    }
    refused = await http.post("Provenance", json=provenance, headers=alice)
    assert refused.status_code == 403
    provenance["target"][1] = {"reference": "Observation/no-such"}
    missing = await http.post("Provenance", json=provenance, headers=alice)
    assert missing.status_code == 403
    assert refused.json()["issue"][0]["diagnostics"].replace("b-obs", "X") == missing.json()[
        "issue"
    ][0]["diagnostics"].replace("no-such", "X")
    about = {
        "resourceType": "Communication",
        "status": "completed",
        "subject": {"reference": "Patient/alice"},
        "about": [{"reference": "http://elsewhere.example/fhir/Observation/b-obs"}],
    }
    assert (await http.post("Communication", json=about, headers=alice)).status_code == 403
    linked = await _ids(http, "Provenance?target=Observation/b-obs", admin)
    assert linked == set()
    # her own data, directory data and what the same transaction creates are fine
    fine = {
        **provenance,
        "target": [{"reference": "Patient/alice"}, {"reference": "Observation/a-obs"}],
        "agent": [{"who": {"reference": "Practitioner/dr"}}],
    }
    assert (await http.post("Provenance", json=fine, headers=alice)).status_code == 201
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:0a8e3b4c-6f2d-4d7e-9a51-3c2f1e0b9d77",
                "resource": {
                    "resourceType": "Encounter",
                    "status": "finished",
                    "class": {"code": "VR"},
                    "subject": {"reference": "Patient/alice"},
                },
                "request": {"method": "POST", "url": "Encounter"},
            },
            {
                "resource": _obs(
                    "with-visit",
                    "Patient/alice",
                    encounter={"reference": "urn:uuid:0a8e3b4c-6f2d-4d7e-9a51-3c2f1e0b9d77"},
                ),
                "request": {"method": "PUT", "url": "Observation/with-visit"},
            },
        ],
    }
    response = await http.post(BASE, json=bundle, headers=alice)
    assert response.status_code == 200, response.text
