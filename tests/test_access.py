"""SMART enforcement on every read and write path: a patient-context token sees only that
patient's compartment, whatever way it asks (read, vread, search, chains, ``_has``,
``_include``/``_revinclude`` with ``:iterate``, compartment search, history at every
level, batch and transaction entries), and writes are held to the same rule.

Each test is written so that it fails if the filter were missing: the data always holds
something of another patient that the request would otherwise return.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhir_server.app import create_app
from fhir_server.config import Settings
from tests.conftest import BASE, STORES, storage_url

Token = Callable[..., str]

LAB = "http://terminology.hl7.org/CodeSystem/observation-category|laboratory"


def _obs(id_: str, patient: str, code: str, category: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": id_,
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": category,
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": f"Patient/{patient}"},
        **extra,
    }


SEED: list[dict[str, Any]] = [
    {"resourceType": "Patient", "id": "alice", "name": [{"family": "Liddell", "given": ["Alice"]}]},
    {"resourceType": "Patient", "id": "bob", "name": [{"family": "Builder", "given": ["Bob"]}]},
    {"resourceType": "Practitioner", "id": "dr", "name": [{"family": "Who"}]},
    {"resourceType": "Organization", "id": "org", "name": "Clinic"},
    _obs("a-lab", "alice", "2345-7", "laboratory", performer=[{"reference": "Practitioner/dr"}]),
    _obs("a-vital", "alice", "8867-4", "vital-signs"),
    _obs("b-lab", "bob", "9999-9", "laboratory", performer=[{"reference": "Practitioner/dr"}]),
    # in Alice's compartment AND Bob's (performer is a Patient compartment parameter)
    _obs("shared", "alice", "1111-1", "survey", performer=[{"reference": "Patient/bob"}]),
    {
        "resourceType": "DiagnosticReport",
        "id": "b-report",
        "status": "final",
        "code": {"text": "panel"},
        "subject": {"reference": "Patient/bob"},
        "result": [{"reference": "Observation/b-lab"}],
    },
    {
        "resourceType": "DiagnosticReport",
        "id": "a-report",
        "status": "final",
        "code": {"text": "panel"},
        "subject": {"reference": "Patient/alice"},
        "result": [{"reference": "Observation/a-lab"}, {"reference": "Observation/b-lab"}],
    },
    *[
        {
            "resourceType": "DocumentReference",
            "id": f"{who[0]}-doc",
            "status": "current",
            "subject": {"reference": f"Patient/{who}"},
            "content": [
                {"attachment": {"contentType": "application/pdf", "url": f"Binary/{who[0]}-pdf"}}
            ],
        }
        for who in ("alice", "bob")
    ],
    *[
        {
            "resourceType": "Binary",
            "id": id_,
            "contentType": "application/pdf",
            "data": "JVBERi0=",
            **({"securityContext": {"reference": context}} if context else {}),
        }
        for id_, context in (
            ("a-pdf", "DocumentReference/a-doc"),
            ("b-pdf", "DocumentReference/b-doc"),
            ("a-note", "Patient/alice"),
            ("b-note", "Patient/bob"),
            ("loose", None),
        )
    ],
    {
        "resourceType": "RelatedPerson",
        "id": "mum",
        "active": True,
        "patient": {"reference": "Patient/alice"},
        "name": [{"family": "Liddell", "given": ["Lorina"]}],
    },
]


@pytest.fixture(params=STORES)
async def app(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    settings = Settings(storage=storage_url(request.param, tmp_path), auth="smart")
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
def token(app: Any) -> Token:
    service = app.state.auth.token_service()

    def issue(scope: str, **context: Any) -> str:
        value, _ = service.issue_access_token(
            issuer=BASE, audience=BASE, client_id="test-app", scope=scope, **context
        )
        return value

    return issue


@pytest.fixture
async def http(app: Any, token: Token) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE + "/") as client:
        admin = {"authorization": f"Bearer {token('system/*.cruds')}"}
        for resource in SEED:
            path = f"{resource['resourceType']}/{resource['id']}"
            response = await client.put(path, json=resource, headers=admin)
            assert response.status_code == 201, response.text
        # a second version of Bob's and Alice's lab results, for history
        for id_, who, code in (("b-lab", "bob", "9999-9"), ("a-lab", "alice", "2345-7")):
            body = _obs(id_, who, code, "laboratory", performer=[{"reference": "Practitioner/dr"}])
            body["status"] = "amended"
            response = await client.put(f"Observation/{id_}", json=body, headers=admin)
            assert response.status_code == 200, response.text
        yield client


As = Callable[..., Awaitable[httpx.Response]]


@pytest.fixture
def alice(http: httpx.AsyncClient, token: Token) -> As:
    """Alice's portal app: patient/*.rs in Alice's context."""
    headers = {"authorization": f"Bearer {token('patient/*.rs', patient='alice')}"}

    async def call(method: str, url: str, **kwargs: Any) -> httpx.Response:
        more = kwargs.pop("headers", {})
        return await http.request(method, url, headers={**headers, **more}, **kwargs)

    return call


def ids(bundle: dict[str, Any], mode: str | None = None) -> set[str]:
    return {
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in bundle.get("entry", [])
        if "resource" in e
        and (mode is None or e.get("search", {}).get("mode") == mode)
        and e["resource"]["resourceType"] != "OperationOutcome"
    }


def bearer(value: str) -> dict[str, str]:
    return {"authorization": f"Bearer {value}"}


# -- authentication ----------------------------------------------------------------------


async def test_no_token_is_401_with_www_authenticate(http: httpx.AsyncClient) -> None:
    response = await http.get("Patient/alice")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["resourceType"] == "OperationOutcome"


async def test_bad_and_foreign_tokens_are_401(http: httpx.AsyncClient, app: Any) -> None:
    assert (await http.get("Patient", headers=bearer("not-a-jwt"))).status_code == 401
    service = app.state.auth.token_service()
    other_aud, _ = service.issue_access_token(
        issuer=BASE, audience="https://elsewhere/fhir", client_id="x", scope="system/*.rs"
    )
    response = await http.get("Patient", headers=bearer(other_aud))
    assert response.status_code == 401
    assert "invalid_token" in response.headers["www-authenticate"]


async def test_metadata_needs_no_token_and_names_the_oauth_endpoints(
    http: httpx.AsyncClient,
) -> None:
    response = await http.get("metadata")
    assert response.status_code == 200
    security = response.json()["rest"][0]["security"]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    uris = security["extension"][0]
    assert uris["url"].endswith("oauth-uris")
    names = {e["url"] for e in uris["extension"]}
    assert {"authorize", "token"} <= names


async def test_revoked_token_is_refused(http: httpx.AsyncClient, app: Any, token: Token) -> None:
    value = token("patient/*.rs", patient="alice")
    assert (await http.get("Patient/alice", headers=bearer(value))).status_code == 200
    app.state.auth.token_service().revoke_access_token(value)
    assert (await http.get("Patient/alice", headers=bearer(value))).status_code == 401


# -- read and vread --------------------------------------------------------------------------


async def test_read_own_and_not_others(alice: As) -> None:
    assert (await alice("GET", "Patient/alice")).status_code == 200
    assert (await alice("GET", "Observation/a-lab")).status_code == 200
    assert (await alice("GET", "Patient/bob")).status_code == 404
    assert (await alice("GET", "Observation/b-lab")).status_code == 404
    assert (await alice("GET", "DiagnosticReport/b-report")).status_code == 404


async def test_resources_outside_every_patient_compartment_are_readable(alice: As) -> None:
    assert (await alice("GET", "Practitioner/dr")).status_code == 200
    assert (await alice("GET", "Organization/org")).status_code == 200


async def test_vread_of_another_patients_version_is_not_found(alice: As) -> None:
    assert (await alice("GET", "Observation/a-lab/_history/1")).status_code == 200
    assert (await alice("GET", "Observation/b-lab/_history/1")).status_code == 404
    assert (await alice("GET", "Observation/b-lab/_history/2")).status_code == 404


async def test_binary_follows_its_security_context(
    alice: As, http: httpx.AsyncClient, token: Token
) -> None:
    # a document's attachment is readable when the document is
    assert (await alice("GET", "Binary/a-pdf")).status_code == 200
    assert (await alice("GET", "Binary/b-pdf")).status_code == 404
    # a Binary naming a patient is in that patient's compartment
    assert (await alice("GET", "Binary/a-note")).status_code == 200
    assert (await alice("GET", "Binary/b-note")).status_code == 404
    # no security context: not for patients
    assert (await alice("GET", "Binary/loose")).status_code == 404
    assert ids((await alice("GET", "Binary")).json()) == {"Binary/a-note"}
    admin = bearer(token("system/*.rs"))
    assert (await http.get("Binary/loose", headers=admin)).status_code == 200


# -- search ------------------------------------------------------------------------------------


async def test_search_returns_only_the_patients_compartment(alice: As) -> None:
    bundle = (await alice("GET", "Observation")).json()
    assert ids(bundle) == {"Observation/a-lab", "Observation/a-vital", "Observation/shared"}
    assert bundle["total"] == 3
    asked = (await alice("GET", "Observation", params={"patient": "bob"})).json()
    assert ids(asked) == set() and asked["total"] == 0
    patients = (await alice("GET", "Patient")).json()
    assert ids(patients) == {"Patient/alice"}


async def test_post_search_and_system_search_are_filtered(alice: As) -> None:
    form = {"content-type": "application/x-www-form-urlencoded"}
    posted = await alice("POST", "Observation/_search", content="code=9999-9", headers=form)
    assert posted.status_code == 200 and ids(posted.json()) == set()
    system = (await alice("GET", BASE, params={"_type": "Observation,Patient,Practitioner"})).json()
    assert ids(system) == {
        "Observation/a-lab",
        "Observation/a-vital",
        "Observation/shared",
        "Patient/alice",
        "Practitioner/dr",
    }


async def test_compartment_search_of_another_patient_is_empty(alice: As) -> None:
    own = (await alice("GET", "Patient/alice/Observation")).json()
    assert ids(own) == {"Observation/a-lab", "Observation/a-vital", "Observation/shared"}
    other = (await alice("GET", "Patient/bob/Observation")).json()
    # "shared" is in both compartments: Bob is its performer; Alice may see it
    assert ids(other) == {"Observation/shared"}


async def test_chained_search_does_not_reach_other_patients(alice: As) -> None:
    # Alice's "shared" observation has Bob as performer: a chain through Bob's name must
    # not find it, since Bob is not visible to Alice
    chained = await alice("GET", "Observation", params={"performer:Patient.name": "Builder"})
    assert chained.status_code == 200
    assert ids(chained.json()) == set()
    own = await alice("GET", "Observation", params={"subject:Patient.name": "Liddell"})
    assert ids(own.json()) == {"Observation/a-lab", "Observation/a-vital", "Observation/shared"}


async def test_has_search_does_not_reveal_other_patients_data(alice: As) -> None:
    # only Bob's observation has code 9999-9: the practitioner must not be found by it
    found = await alice("GET", "Practitioner", params={"_has:Observation:performer:code": "9999-9"})
    assert found.status_code == 200 and ids(found.json()) == set()
    own = await alice("GET", "Practitioner", params={"_has:Observation:performer:code": "2345-7"})
    assert ids(own.json()) == {"Practitioner/dr"}


async def test_include_and_revinclude_leave_out_other_patients(alice: As) -> None:
    included = await alice(
        "GET", "DiagnosticReport", params={"_include": "DiagnosticReport:result"}
    )
    bundle = included.json()
    assert ids(bundle, "match") == {"DiagnosticReport/a-report"}
    assert ids(bundle, "include") == {"Observation/a-lab"}  # not b-lab
    rev = await alice("GET", "Practitioner", params={"_revinclude": "Observation:performer"})
    assert ids(rev.json(), "include") == {"Observation/a-lab"}  # not b-lab
    iterate = await alice(
        "GET",
        "Patient",
        params={
            "_revinclude": "Observation:subject",
            "_include:iterate": "Observation:performer",
        },
    )
    got = ids(iterate.json())
    assert "Patient/bob" not in got and "Observation/b-lab" not in got
    assert {"Patient/alice", "Observation/a-lab", "Practitioner/dr"} <= got


# -- history ------------------------------------------------------------------------------------


async def test_history_at_every_level_is_filtered(alice: As) -> None:
    assert (await alice("GET", "Observation/b-lab/_history")).status_code == 404
    instance = (await alice("GET", "Observation/a-lab/_history")).json()
    assert instance["total"] == 2
    type_level = (await alice("GET", "Observation/_history")).json()
    seen = {e["fullUrl"].split("/fhir/")[1] for e in type_level["entry"]}
    assert seen == {"Observation/a-lab", "Observation/a-vital", "Observation/shared"}
    assert type_level["total"] == 4  # a-lab twice
    system = (await alice("GET", "_history")).json()
    every = {e["fullUrl"].split("/fhir/")[1] for e in system["entry"]}
    assert not any(ref in every for ref in ("Patient/bob", "Observation/b-lab"))
    assert "DiagnosticReport/b-report" not in every
    assert {"Patient/alice", "Practitioner/dr"} <= every


# -- scope letters and types ---------------------------------------------------------------------


async def test_scope_letters_limit_interactions(http: httpx.AsyncClient, token: Token) -> None:
    read_only = bearer(token("patient/Observation.rs", patient="alice"))
    create = await http.post(
        "Observation", json=_obs("x", "alice", "1-1", "survey"), headers=read_only
    )
    assert create.status_code == 403
    assert create.json()["issue"][0]["code"] == "forbidden"
    search_only = bearer(token("patient/Observation.s", patient="alice"))
    assert (await http.get("Observation/a-lab", headers=search_only)).status_code == 403
    assert (await http.get("Observation", headers=search_only)).status_code == 200
    # no scope for the type at all
    assert (await http.get("Patient/alice", headers=read_only)).status_code == 403
    assert (await http.get("Patient", headers=read_only)).status_code == 403


async def test_v1_scopes_work(http: httpx.AsyncClient, token: Token) -> None:
    headers = bearer(token("patient/Observation.read", patient="alice"))
    bundle = (await http.get("Observation", headers=headers)).json()
    assert ids(bundle) == {"Observation/a-lab", "Observation/a-vital", "Observation/shared"}
    assert (await http.get("Observation/b-lab", headers=headers)).status_code == 404


async def test_granular_scope_narrows_search_and_read(
    http: httpx.AsyncClient, token: Token
) -> None:
    headers = bearer(token(f"patient/Observation.rs?category={LAB}", patient="alice"))
    bundle = (await http.get("Observation", headers=headers)).json()
    assert ids(bundle) == {"Observation/a-lab"}
    assert (await http.get("Observation/a-lab", headers=headers)).status_code == 200
    assert (await http.get("Observation/a-vital", headers=headers)).status_code == 404


# -- writes ---------------------------------------------------------------------------


async def test_writes_stay_in_the_patients_compartment(
    http: httpx.AsyncClient, token: Token
) -> None:
    writer = bearer(token("patient/Observation.cruds", patient="alice"))
    mine = await http.post("Observation", json=_obs("n", "alice", "1-1", "survey"), headers=writer)
    assert mine.status_code == 201
    theirs = await http.post("Observation", json=_obs("n", "bob", "1-1", "survey"), headers=writer)
    assert theirs.status_code == 403
    # moving Bob's result into Alice's compartment: the current version is not hers, and
    # she cannot read it, so the answer is a read's (404), not a 403 that confirms the id
    moved = _obs("b-lab", "alice", "9999-9", "laboratory")
    assert (await http.put("Observation/b-lab", json=moved, headers=writer)).status_code == 404
    # moving her own result to Bob
    away = _obs("a-vital", "bob", "8867-4", "vital-signs")
    assert (await http.put("Observation/a-vital", json=away, headers=writer)).status_code == 403
    # a delete of what she cannot see is answered as for a resource that does not exist
    gone = await http.delete("Observation/b-lab", headers=writer)
    assert gone.status_code == 200 and "does not exist" in gone.text
    admin = bearer(token("system/*.rs"))
    still = (await http.get("Observation/b-lab", headers=admin)).json()
    assert still["subject"]["reference"] == "Patient/bob" and still["meta"]["versionId"] == "2"
    assert (await http.delete("Observation/a-vital", headers=writer)).status_code == 200


async def test_patch_of_another_patients_resource_is_refused(
    http: httpx.AsyncClient, token: Token
) -> None:
    writer = bearer(token("patient/Observation.rus", patient="alice"))
    patch = [{"op": "replace", "path": "/status", "value": "cancelled"}]
    headers = {**writer, "content-type": "application/json-patch+json"}
    assert (await http.patch("Observation/b-lab", json=patch, headers=headers)).status_code in (
        403,
        404,
    )
    assert (await http.patch("Observation/a-lab", json=patch, headers=headers)).status_code == 200


# -- bundles --------------------------------------------------------------------------


async def test_batch_entries_are_filtered(http: httpx.AsyncClient, token: Token) -> None:
    headers = bearer(token("patient/*.rs", patient="alice"))
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"request": {"method": "GET", "url": "Observation/b-lab"}},
            {"request": {"method": "GET", "url": "Observation?code=9999-9"}},
            {"request": {"method": "GET", "url": "Observation/a-lab"}},
        ],
    }
    response = await http.post(BASE, json=batch, headers=headers)
    assert response.status_code == 200
    entries = response.json()["entry"]
    assert entries[0]["response"]["status"].startswith("404")
    assert entries[1]["resource"].get("total") == 0
    assert entries[2]["response"]["status"].startswith("200")


async def test_transaction_writing_for_another_patient_is_refused_whole(
    http: httpx.AsyncClient, token: Token
) -> None:
    headers = bearer(token("patient/Observation.cruds", patient="alice"))
    transaction = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": _obs("t1", "alice", "1-1", "survey"),
                "request": {"method": "POST", "url": "Observation"},
            },
            {
                "resource": _obs("t2", "bob", "1-1", "survey"),
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    response = await http.post(BASE, json=transaction, headers=headers)
    assert response.status_code == 403
    admin = bearer(token("system/*.rs"))
    found = (await http.get("Observation", params={"code": "1-1"}, headers=admin)).json()
    assert found["total"] == 0


# -- users: patient, caregiver, staff ------------------------------------------------


async def test_patient_user_scopes_see_only_their_own_record(
    http: httpx.AsyncClient, token: Token
) -> None:
    headers = bearer(token("user/Observation.rs", fhir_user="Patient/alice", subject="u1"))
    bundle = (await http.get("Observation", headers=headers)).json()
    assert ids(bundle) == {"Observation/a-lab", "Observation/a-vital", "Observation/shared"}


async def test_caregiver_sees_the_patient_it_acts_for(
    http: httpx.AsyncClient, token: Token
) -> None:
    headers = bearer(
        token("user/*.rs", fhir_user="RelatedPerson/mum", patient="alice", subject="u2")
    )
    bundle = (await http.get("Observation", headers=headers)).json()
    assert ids(bundle) == {"Observation/a-lab", "Observation/a-vital", "Observation/shared"}
    assert (await http.get("Patient/bob", headers=headers)).status_code == 404


async def test_staff_user_scopes_see_everything_named(
    http: httpx.AsyncClient, token: Token
) -> None:
    headers = bearer(token("user/Observation.rs", fhir_user="Practitioner/dr", subject="u3"))
    bundle = (await http.get("Observation", headers=headers)).json()
    assert "Observation/b-lab" in ids(bundle) and "Observation/a-lab" in ids(bundle)
