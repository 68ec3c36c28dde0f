"""Patient-context tokens cannot change other people's data (security review, issue 14,
items 1, 2, 3 and 15), on every store.

- every patient a new version refers to, and every compartment the version it replaces is
  in, must be the patient in context (or the patient a caregiver acts for); a write refers
  only to resources that patient may read;
- what decides access (Person, RelatedPerson, ``Patient.link``) and directory data
  (Practitioner, Organization, Slot, ...) is written by staff and backend services only;
- a change to something the caller cannot read is answered as a read is (404).

Each test holds data that the request would reach without the rule (the data:
``tests/patient_data/support.py``). Reads of the types outside the Patient
compartment: ``test_reads.py``.
"""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import BASE
from tests.patient_data.support import JSON_PATCH, Token, bearer, ids, observation

# -- 1: writing into another patient's chart ---------------------------------------------


async def test_a_patient_cannot_create_in_another_patients_chart(
    http: httpx.AsyncClient, alice: dict[str, str], admin: dict[str, str]
) -> None:
    """Item 1: ``subject: Patient/B`` with ``performer: [Patient/A]`` was accepted (the
    resource was in one of the token's compartments) and showed up in B's chart."""
    intruding = [
        (
            "Observation",
            observation("x1", "Patient/bob", performer=[{"reference": "Patient/alice"}]),
        ),
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
        ("Observation", observation("x2", "Patient/alice", focus=[{"reference": "Patient/bob"}])),
    ]
    for type_, resource in intruding:
        response = await http.post(type_, json=resource, headers=alice)
        assert response.status_code == 403, (type_, response.text)
        assert response.json()["issue"][0]["code"] == "forbidden"
    for type_ in ("Observation", "Condition", "Group", "List"):
        found = await ids(http, f"{type_}?_count=100", admin)
        assert not {f for f in found if f.endswith(("/x1", "/x2"))}
    assert await ids(http, "Condition", admin) == set()
    assert await ids(http, "Group", admin) == set()
    # her own data still goes in
    mine = await http.post("Observation", json=observation("n", "Patient/alice"), headers=alice)
    assert mine.status_code == 201


async def test_a_patient_cannot_move_her_resource_into_another_chart(
    http: httpx.AsyncClient, alice: dict[str, str], admin: dict[str, str]
) -> None:
    """Item 1 by PUT and PATCH of her own Observation."""
    moved = observation("a-obs", "Patient/bob", performer=[{"reference": "Patient/alice"}])
    assert (await http.put("Observation/a-obs", json=moved, headers=alice)).status_code == 403
    patch = [{"op": "add", "path": "/performer", "value": [{"reference": "Patient/bob"}]}]
    headers = {**alice, **JSON_PATCH}
    response = await http.patch("Observation/a-obs", json=patch, headers=headers)
    assert response.status_code == 403
    stored = (await http.get("Observation/a-obs", headers=admin)).json()
    assert stored["meta"]["versionId"] == "1" and "performer" not in stored
    assert "Observation/a-obs" not in await ids(http, "Observation?patient=bob", admin)


async def test_a_version_in_another_patients_compartment_is_not_hers_to_change(
    http: httpx.AsyncClient, alice: dict[str, str], admin: dict[str, str]
) -> None:
    """Item 1, "and of the version it replaces": staff wrote an Observation in both
    compartments; Alice reads it, but neither changes nor deletes it."""
    assert (await http.get("Observation/shared", headers=alice)).status_code == 200
    cleaned = observation("shared", "Patient/alice")
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
    ok = await http.post("Observation", json=observation("m1", "Patient/alice"), headers=mum)
    assert ok.status_code == 201
    other = observation("m2", "Patient/alice", performer=[{"reference": "Patient/bob"}])
    assert (await http.post("Observation", json=other, headers=mum)).status_code == 403
    assert (
        await http.post("Observation", json=observation("m3", "Patient/bob"), headers=mum)
    ).status_code == 403


async def test_a_transaction_cannot_carry_a_write_into_another_chart(
    http: httpx.AsyncClient, alice: dict[str, str], admin: dict[str, str]
) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": observation("t1", "Patient/alice"),
                "request": {"method": "PUT", "url": "Observation/t1"},
            },
            {
                "resource": observation(
                    "t2", "Patient/bob", performer=[{"reference": "Patient/alice"}]
                ),
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
    same = {
        "resourceType": "Person",
        "id": "alice-login",
        "active": True,
        "link": [{"target": {"reference": "Patient/alice"}}],
    }
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


# -- 15: the same answer on every method -------------------------------------------------


async def test_changes_to_what_she_cannot_see_answer_like_a_read(
    http: httpx.AsyncClient, alice: dict[str, str], admin: dict[str, str]
) -> None:
    """Item 15: PUT/DELETE answered 403 where GET answered 404, confirming the id."""
    assert (await http.get("Observation/b-obs", headers=alice)).status_code == 404
    assert (await http.get("Observation/no-such", headers=alice)).status_code == 404
    body = observation("b-obs", "Patient/alice")
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
    linked = await ids(http, "Provenance?target=Observation/b-obs", admin)
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
                "resource": observation(
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
