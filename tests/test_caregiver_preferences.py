"""A caregiver's own notification preferences (issue 17; ``fhir_server.access``
``with_own_records``): the token of a caregiver (``fhirUser`` ``RelatedPerson/mum``,
acting for Alice) reads, searches and writes the preferences ``Basic`` whose ``subject``
is ``RelatedPerson/mum``, as the portal's Settings screen does, and nothing else outside
Alice's compartment: not another caregiver's preferences, not another patient's, not a
``Basic`` of another code about itself; Alice's own token does not see them either.

Every test holds data the request would return if the rule were wider than it is (Dad's
and Uncle's preferences, Bob's, a note about Mum), and runs on every store. The last one
sends real email (``tests/smtp_receiver.py``): the opt-out Mum saves with her own token
is honoured for her mail, while Alice still gets hers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhir_server.app import create_app
from fhir_server.config import Settings
from fhir_server.notifications.recipients import OPT_OUT, PREFERENCES, PREFERENCES_SYSTEM
from tests.conftest import BASE, STORES, storage_url
from tests.notifications_support import app_on, mailbox_fixture
from tests.notifications_support import preferences_of as _preferences_of
from tests.smtp_receiver import Mailbox

__all__ = ["mailbox_fixture"]  # the ``mailbox`` fixture

Call = Callable[..., Awaitable[httpx.Response]]

OPT_OUT_RESULTS = {
    "url": OPT_OUT,
    "extension": [
        {"url": "channel", "valueCode": "email"},
        {"url": "kind", "valueCode": "new-result"},
    ],
}


def _related(id_: str, patient: str, email: str) -> dict[str, Any]:
    return {
        "resourceType": "RelatedPerson",
        "id": id_,
        "active": True,
        "patient": {"reference": f"Patient/{patient}"},
        "telecom": [{"system": "email", "value": email}],
    }


def preferences_of(person: str, *extensions: dict[str, Any]) -> dict[str, Any]:
    """A person's preferences Basic (without ``extension`` when there is none)."""
    body = _preferences_of(person, *extensions)
    if not extensions:
        del body["extension"]
    return body


def _with_id(id_: str, resource: dict[str, Any]) -> dict[str, Any]:
    return {**resource, "id": id_}


SEED: list[dict[str, Any]] = [
    {
        "resourceType": "Patient",
        "id": "alice",
        "telecom": [{"system": "email", "value": "alice@home.example"}],
    },
    {"resourceType": "Patient", "id": "bob"},
    _related("mum", "alice", "mum@home.example"),
    _related("dad", "alice", "dad@home.example"),  # another caregiver of Alice
    _related("uncle", "bob", "uncle@home.example"),  # Bob's caregiver
    # preferences of others, written by staff
    _with_id("dad-prefs", preferences_of("RelatedPerson/dad", OPT_OUT_RESULTS)),
    _with_id("uncle-prefs", preferences_of("RelatedPerson/uncle")),
    _with_id("bob-prefs", preferences_of("Patient/bob")),
    _with_id("alice-prefs", preferences_of("Patient/alice")),
    # a Basic about Mum that is not her preferences: not hers to read
    {
        "resourceType": "Basic",
        "id": "mum-note",
        "code": {"coding": [{"system": "urn:example:notes", "code": "note"}]},
        "subject": {"reference": "RelatedPerson/mum"},
    },
]


@pytest.fixture(params=STORES)
async def app(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    application = create_app(Settings(storage=storage_url(request.param, tmp_path), auth="smart"))
    async with application.router.lifespan_context(application):
        yield application


def _token(app: Any, scope: str, **context: Any) -> dict[str, str]:
    value, _ = app.state.auth.token_service().issue_access_token(
        issuer=BASE, audience=BASE, client_id="test-app", scope=scope, **context
    )
    return {"authorization": f"Bearer {value}"}


@pytest.fixture
async def http(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE + "/") as client:
        admin = _token(app, "system/*.cruds")
        for resource in SEED:
            path = f"{resource['resourceType']}/{resource['id']}"
            response = await client.put(path, json=resource, headers=admin)
            assert response.status_code == 201, response.text
        yield client


def _caller(http: httpx.AsyncClient, headers: dict[str, str]) -> Call:
    async def call(method: str, url: str, **kwargs: Any) -> httpx.Response:
        more = kwargs.pop("headers", {})
        return await http.request(method, url, headers={**headers, **more}, **kwargs)

    return call


@pytest.fixture(params=["patient/*.cruds", "user/*.cruds"])
def mum(request: pytest.FixtureRequest, app: Any, http: httpx.AsyncClient) -> Call:
    """Mum's portal app, acting for Alice (patient/ scopes, or her user/ scopes)."""
    headers = _token(
        app, request.param, fhir_user="RelatedPerson/mum", patient="alice", subject="u-mum"
    )
    return _caller(http, headers)


@pytest.fixture
def alice(app: Any, http: httpx.AsyncClient) -> Call:
    """Alice's own portal app."""
    headers = _token(
        app, "patient/*.cruds", fhir_user="Patient/alice", patient="alice", subject="u-alice"
    )
    return _caller(http, headers)


def ids(bundle: dict[str, Any]) -> set[str]:
    return {
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in bundle.get("entry", [])
        if e.get("resource", {}).get("resourceType") != "OperationOutcome"
    }


MINE = {"subject": "RelatedPerson/mum", "code": PREFERENCES}


async def _save_mine(mum: Call) -> str:
    created = await mum("POST", "Basic", json=preferences_of("RelatedPerson/mum"))
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


# -- what the Settings screen does -------------------------------------------------------


async def test_a_caregiver_saves_finds_and_changes_her_own_preferences(mum: Call) -> None:
    found = await mum("GET", "Basic", params=MINE)
    assert found.status_code == 200, found.text
    assert ids(found.json()) == set()
    id_ = await _save_mine(mum)
    found = await mum("GET", "Basic", params=MINE)
    assert ids(found.json()) == {f"Basic/{id_}"}
    current = (await mum("GET", f"Basic/{id_}")).json()
    changed = await mum("PUT", f"Basic/{id_}", json={**current, "extension": [OPT_OUT_RESULTS]})
    assert changed.status_code == 200, changed.text
    assert (await mum("GET", f"Basic/{id_}")).json()["extension"] == [OPT_OUT_RESULTS]
    assert (await mum("GET", f"Basic/{id_}/_history/1")).status_code == 200
    history = (await mum("GET", f"Basic/{id_}/_history")).json()
    assert len(history["entry"]) == 2
    # type history: her own and Alice's (whose compartment she acts in), no one else's
    versions = (await mum("GET", "Basic/_history")).json()
    assert ids(versions) == {f"Basic/{id_}", "Basic/alice-prefs"}
    deleted = await mum("DELETE", f"Basic/{id_}")
    assert deleted.status_code in (200, 204), deleted.text
    assert (await mum("GET", f"Basic/{id_}")).status_code == 410


async def test_a_caregiver_saves_her_preferences_in_a_transaction(mum: Call) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": preferences_of("RelatedPerson/mum"),
                "request": {"method": "POST", "url": "Basic"},
            }
        ],
    }
    response = await mum("POST", "", json=bundle)
    assert response.status_code == 200, response.text
    assert response.json()["entry"][0]["response"]["status"].startswith("201")
    theirs = {
        **bundle,
        "entry": [
            {
                "resource": preferences_of("RelatedPerson/dad"),
                "request": {"method": "POST", "url": "Basic"},
            }
        ],
    }
    assert (await mum("POST", "", json=theirs)).status_code == 403


# -- what stays closed -------------------------------------------------------------------


@pytest.mark.parametrize("other", ["dad-prefs", "uncle-prefs", "bob-prefs", "mum-note"])
async def test_others_preferences_are_not_found_by_a_caregiver(mum: Call, other: str) -> None:
    absent = await mum("GET", "Basic/no-such-basic")
    for url in (f"Basic/{other}", f"Basic/{other}/_history/1", f"Basic/{other}/_history"):
        response = await mum("GET", url)
        assert response.status_code == absent.status_code == 404, (url, response.text)
    body = preferences_of("RelatedPerson/mum")
    changed = await mum("PUT", f"Basic/{other}", json={**body, "id": other})
    assert changed.status_code == 404, changed.text
    gone, nothing = await mum("DELETE", f"Basic/{other}"), await mum("DELETE", "Basic/nope")
    same = nothing.text.replace("Basic/nope", f"Basic/{other}")
    assert (gone.status_code, gone.text) == (nothing.status_code, same)
    by_id = await mum("GET", "Basic", params={"_id": other})
    assert ids(by_id.json()) == set()


async def test_nothing_of_others_is_written_as_a_caregivers_own(mum: Call) -> None:
    for subject in ("RelatedPerson/dad", "RelatedPerson/uncle", "Patient/bob"):
        response = await mum("POST", "Basic", json=preferences_of(subject))
        assert response.status_code == 403, (subject, response.text)
    note = {
        "resourceType": "Basic",
        "code": {"coding": [{"system": "urn:example:notes", "code": "note"}]},
        "subject": {"reference": "RelatedPerson/mum"},
    }
    assert (await mum("POST", "Basic", json=note)).status_code == 403
    almost = preferences_of("RelatedPerson/mum")
    almost["code"]["coding"][0]["system"] = PREFERENCES_SYSTEM + "-x"
    assert (await mum("POST", "Basic", json=almost)).status_code == 403
    absolute = preferences_of(f"{BASE}/RelatedPerson/mum")
    assert (await mum("POST", "Basic", json=absolute)).status_code == 403


async def test_a_caregiver_cannot_hand_her_preferences_to_someone_else(mum: Call) -> None:
    id_ = await _save_mine(mum)
    mine = (await mum("GET", f"Basic/{id_}")).json()
    for subject in ("RelatedPerson/dad", "Patient/bob"):
        moved = {**mine, "subject": {"reference": subject}}
        response = await mum("PUT", f"Basic/{id_}", json=moved)
        assert response.status_code == 403, (subject, response.text)
    recoded = {**mine, "code": {"coding": [{"system": "urn:example:notes", "code": "note"}]}}
    assert (await mum("PUT", f"Basic/{id_}", json=recoded)).status_code == 403
    patch = [{"op": "replace", "path": "/subject/reference", "value": "RelatedPerson/dad"}]
    patched = await mum(
        "PATCH",
        f"Basic/{id_}",
        json=patch,
        headers={"content-type": "application/json-patch+json"},
    )
    assert patched.status_code == 403, patched.text
    still = (await mum("GET", f"Basic/{id_}")).json()
    assert still["subject"] == {"reference": "RelatedPerson/mum"}
    assert still["meta"]["versionId"] == "1"


async def test_searches_and_includes_show_no_other_caregivers_preferences(mum: Call) -> None:
    id_ = await _save_mine(mum)
    for subject in ("RelatedPerson/dad", "RelatedPerson/uncle", "Patient/bob"):
        found = await mum("GET", "Basic", params={"subject": subject, "code": PREFERENCES})
        assert ids(found.json()) == set(), subject
    everyone = await mum("GET", "Basic", params={"code": PREFERENCES})
    assert ids(everyone.json()) == {f"Basic/{id_}", "Basic/alice-prefs"}
    carers = await mum(
        "GET", "RelatedPerson", params={"patient": "alice", "_revinclude": "Basic:subject"}
    )
    assert ids(carers.json()) == {"RelatedPerson/mum", "RelatedPerson/dad", f"Basic/{id_}"}
    everything = await mum("GET", "RelatedPerson", params={"_revinclude": "*", "_include": "*"})
    assert "Basic/dad-prefs" not in ids(everything.json())
    assert "Basic/mum-note" not in ids(everything.json())
    included = await mum("GET", "Basic", params={**MINE, "_include": "Basic:subject"})
    assert ids(included.json()) == {f"Basic/{id_}", "RelatedPerson/mum"}
    chained = await mum("GET", "Basic", params={"subject:RelatedPerson.patient": "alice"})
    assert ids(chained.json()) == {f"Basic/{id_}"}


async def test_the_patient_does_not_see_her_caregivers_preferences(mum: Call, alice: Call) -> None:
    id_ = await _save_mine(mum)
    assert (await alice("GET", f"Basic/{id_}")).status_code == 404
    assert (await alice("GET", f"Basic/{id_}/_history")).status_code == 404
    found = await alice("GET", "Basic", params={"code": PREFERENCES})
    assert ids(found.json()) == {"Basic/alice-prefs"}
    carers = await alice("GET", "RelatedPerson", params={"_revinclude": "Basic:subject"})
    assert ids(carers.json()) == {"RelatedPerson/mum", "RelatedPerson/dad"}
    # and she cannot write one for her caregiver: it would not be in her compartment
    theirs = await alice("POST", "Basic", json=preferences_of("RelatedPerson/mum"))
    assert theirs.status_code == 403


async def test_the_scopes_still_decide(app: Any, http: httpx.AsyncClient) -> None:
    context = {"fhir_user": "RelatedPerson/mum", "patient": "alice", "subject": "u-mum"}
    reader = _caller(http, _token(app, "patient/Basic.rs", **context))
    refused = await reader("POST", "Basic", json=preferences_of("RelatedPerson/mum"))
    assert refused.status_code == 403
    labs = _caller(http, _token(app, "patient/Observation.rs", **context))
    assert (await labs("GET", "Basic", params=MINE)).status_code == 403
    # without a patient in context, a caregiver's token sees nothing, her own included
    writer = _caller(http, _token(app, "patient/*.cruds", **context))
    id_ = (await writer("POST", "Basic", json=preferences_of("RelatedPerson/mum"))).json()["id"]
    lost = {"fhir_user": "RelatedPerson/mum", "subject": "u-mum"}
    alone = _caller(http, _token(app, "user/*.cruds", **lost))
    assert (await alone("GET", f"Basic/{id_}")).status_code == 404
    # someone else claiming to be her caregiver of another patient: Uncle's token
    uncle = {"fhir_user": "RelatedPerson/uncle", "patient": "bob", "subject": "u-uncle"}
    other = _caller(http, _token(app, "patient/*.cruds", **uncle))
    assert (await other("GET", f"Basic/{id_}")).status_code == 404
    assert ids((await other("GET", "Basic", params={"code": PREFERENCES})).json()) == {
        "Basic/uncle-prefs",
        "Basic/bob-prefs",
    }


# -- the notifications pipeline reads them -----------------------------------------------


@pytest.mark.parametrize("kind", STORES)
async def test_a_caregivers_own_opt_out_is_honoured_for_her_email(
    kind: str, tmp_path: Path, mailbox: Mailbox
) -> None:
    async with app_on(storage_url(kind, tmp_path), mailbox) as http:
        app = http.app  # type: ignore[attr-defined]
        admin = _token(app, "system/*.cruds")
        for resource in SEED[:4]:  # Alice, Bob, Mum, Dad; no preferences yet
            path = f"{resource['resourceType']}/{resource['id']}"
            assert (await http.put(path, json=resource, headers=admin)).status_code == 201
        await asyncio.sleep(1.0)  # the reader's cursor opens at the outbox's end
        # before Mum chooses: Alice and both caregivers hear of a new result
        assert (await http.post("Observation", json=LAB, headers=admin)).status_code == 201
        first = await asyncio.to_thread(mailbox.wait_for, 3, 30.0)
        assert sorted(m["To"] for m in first) == [
            "alice@home.example",
            "dad@home.example",
            "mum@home.example",
        ]
        context = {"fhir_user": "RelatedPerson/mum", "patient": "alice", "subject": "u-mum"}
        mum = _caller(http, _token(app, "patient/*.cruds", **context))
        found = await mum("GET", "Basic", params=MINE)
        assert ids(found.json()) == set()
        saved = await mum(
            "POST", "Basic", json=preferences_of("RelatedPerson/mum", OPT_OUT_RESULTS)
        )
        assert saved.status_code == 201, saved.text
        assert (await http.post("Observation", json=LAB, headers=admin)).status_code == 201
        await asyncio.to_thread(mailbox.wait_for, 5, 30.0)
        await asyncio.sleep(1.5)  # a sixth mail (Mum's) would have come by now
        later = mailbox.snapshot()[3:]
        assert sorted(m["To"] for m in later) == ["alice@home.example", "dad@home.example"]


LAB = {
    "resourceType": "Observation",
    "status": "final",
    "category": [
        {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                    "code": "laboratory",
                }
            ]
        }
    ],
    "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]},
    "subject": {"reference": "Patient/alice"},
}
"""A final laboratory result of Alice's: a ``new-result`` for her and her caregivers."""
