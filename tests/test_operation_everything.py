"""``Patient/[id]/$everything`` and ``Patient/$everything``
(https://hl7.org/fhir/R4/patient-operation-everything.html) over HTTP on every store,
with SMART tokens: the record, the resources it refers to, paging, ``_since``, ``_type``,
``start``/``end``, and the access rules on every entry."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from fhir_server.config import Settings
from fhir_server.operations.everything_params import CARE_DATES
from resources.compartments import patient_member_types
from resources.search.parameters import search_params
from tests.conftest import BASE, STORES, storage_url

Token = Callable[..., str]


def _obs(id_: str, patient: str, when: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": id_,
        "status": "final",
        "code": {"text": "weight"},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": when,
        **extra,
    }


CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
SEED: list[dict[str, Any]] = [
    {"resourceType": "Patient", "id": "alice", "name": [{"family": "Liddell"}]},
    {"resourceType": "Patient", "id": "bob", "name": [{"family": "Bravo"}]},
    {"resourceType": "Organization", "id": "org", "name": "Clinic"},
    {"resourceType": "Practitioner", "id": "dr", "name": [{"family": "Who"}]},
    {
        "resourceType": "PractitionerRole",
        "id": "dr-role",
        "practitioner": {"reference": "Practitioner/dr"},
        "organization": {"reference": "Organization/org"},
    },
    {"resourceType": "Location", "id": "room", "name": "Room 1"},
    {"resourceType": "Location", "id": "unused", "name": "Nobody's room"},
    # a device implanted in Bob: directory type, but Bob's
    {"resourceType": "Device", "id": "b-pump", "patient": {"reference": "Patient/bob"}},
    {"resourceType": "Device", "id": "scale", "deviceName": [{"name": "scale", "type": "other"}]},
    {"resourceType": "Medication", "id": "med", "code": {"text": "lisinopril"}},
    {
        "resourceType": "ResearchStudy",
        "id": "study",
        "status": "active",
    },
    {
        "resourceType": "Encounter",
        "id": "a-visit",
        "status": "finished",
        "class": {"code": "AMB"},
        "subject": {"reference": "Patient/alice"},
        "period": {"start": "2021-05-01T09:00:00Z", "end": "2021-05-01T09:30:00Z"},
        "location": [{"location": {"reference": "Location/room"}}],
        "serviceProvider": {"reference": "Organization/org"},
    },
    _obs(
        "a-2020",
        "alice",
        "2020-03-01",
        performer=[{"reference": "PractitionerRole/dr-role"}],
        device={"reference": "Device/scale"},
    ),
    _obs(
        "a-2021",
        "alice",
        "2021-05-01",
        encounter={"reference": "Encounter/a-visit"},
        device={"reference": "Device/b-pump"},  # Bob's: never in Alice's record
        category=[{"coding": [{"system": CATEGORY, "code": "laboratory"}]}],
    ),
    _obs("b-obs", "bob", "2021-05-01"),
    {
        "resourceType": "DiagnosticReport",
        "id": "a-report",
        "status": "final",
        "code": {"text": "panel"},
        "subject": {"reference": "Patient/alice"},
        # Bob's result referred to from Alice's report: never part of Alice's record
        "result": [{"reference": "Observation/a-2021"}, {"reference": "Observation/b-obs"}],
    },
    {
        "resourceType": "MedicationRequest",
        "id": "a-rx",
        "status": "active",
        "intent": "order",
        "medicationReference": {"reference": "Medication/med"},
        "subject": {"reference": "Patient/alice"},
    },
    {
        "resourceType": "ResearchSubject",
        "id": "a-subject",
        "status": "on-study",
        "study": {"reference": "ResearchStudy/study"},
        "individual": {"reference": "Patient/alice"},
    },
    {
        "resourceType": "DocumentReference",
        "id": "a-note",
        "status": "current",
        "subject": {"reference": "Patient/alice"},
        "content": [
            {"attachment": {"contentType": "text/plain", "url": "Binary/a-doc"}},
            # an attachment that is Bob's (its securityContext): never in her record
            {"attachment": {"contentType": "text/plain", "url": f"{BASE}/Binary/b-doc"}},
        ],
    },
    {
        "resourceType": "Binary",
        "id": "a-doc",
        "contentType": "text/plain",
        "securityContext": {"reference": "DocumentReference/a-note"},
        "data": "bm90ZQ==",
    },
    {
        "resourceType": "Binary",
        "id": "b-doc",
        "contentType": "text/plain",
        "securityContext": {"reference": "Patient/bob"},
        "data": "Ym9i",
    },
    {
        "resourceType": "Task",
        "id": "a-task",
        "status": "requested",
        "intent": "order",
        "for": {"reference": "Patient/alice"},
    },
    {
        "resourceType": "Task",
        "id": "both-task",
        "status": "requested",
        "intent": "order",
        "for": {"reference": "Patient/alice"},
        "focus": {"reference": "Patient/bob"},
    },
]

ALICE_RECORD = {
    "Patient/alice",
    "Encounter/a-visit",
    "Observation/a-2020",
    "Observation/a-2021",
    "DiagnosticReport/a-report",
    "MedicationRequest/a-rx",
    "ResearchSubject/a-subject",
    "DocumentReference/a-note",
    "Task/a-task",
}
ALICE_REFERENCED = {
    "PractitionerRole/dr-role",
    "Practitioner/dr",
    "Organization/org",
    "Location/room",
    "Medication/med",
    "Device/scale",
    "Binary/a-doc",  # an attachment of her DocumentReference, secured by it
}
BOB_RECORD = {"Patient/bob", "Observation/b-obs", "Device/b-pump", "Binary/b-doc"}


@pytest.fixture(params=STORES)
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    # the audit trail (tested on its own) would add AuditEvents of the test's requests
    # to the records compared here
    return Settings(storage=storage_url(request.param, tmp_path), auth="smart", audit="off")


@pytest.fixture
def token(app: Any) -> Token:
    service = app.state.auth.token_service()

    def issue(scope: str, **context: Any) -> dict[str, str]:
        value, _ = service.issue_access_token(
            issuer=BASE, audience=BASE, client_id="test-app", scope=scope, **context
        )
        return {"authorization": f"Bearer {value}"}

    return issue


@pytest.fixture
def system(token: Token) -> dict[str, str]:
    return token("system/*.cruds")


@pytest.fixture
def alice(token: Token) -> dict[str, str]:
    return token("patient/*.rs", patient="alice")


@pytest.fixture
def bob(token: Token) -> dict[str, str]:
    return token("patient/*.rs", patient="bob")


@pytest.fixture
def staff(token: Token) -> dict[str, str]:
    return token("user/*.rs", fhir_user="Practitioner/dr", subject="dr")


@pytest.fixture
async def http(app: Any, system: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE + "/") as client:
        for resource in SEED:
            path = f"{resource['resourceType']}/{resource['id']}"
            response = await client.put(path, json=resource, headers=system)
            assert response.status_code in (200, 201), response.text
        yield client


def _keys(bundle: dict[str, Any], mode: str | None = None) -> list[str]:
    return [
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in bundle.get("entry", [])
        if mode is None or e["search"]["mode"] == mode
    ]


async def _get(http: httpx.AsyncClient, url: str, headers: dict[str, str]) -> dict[str, Any]:
    response = await http.get(url, headers=headers)
    assert response.status_code == 200, response.text
    bundle = response.json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    return bundle


async def _all_pages(
    http: httpx.AsyncClient, url: str, headers: dict[str, str]
) -> tuple[list[str], set[str], int]:
    """Every match and include over the next links, and how many pages."""
    matches: list[str] = []
    included: set[str] = set()
    pages = 0
    while url:
        bundle = await _get(http, url, headers)
        pages += 1
        matches += _keys(bundle, "match")
        included |= set(_keys(bundle, "include"))
        url = next((link["url"] for link in bundle["link"] if link["relation"] == "next"), "")
        assert pages < 50
    return matches, included, pages


# -- the record ---------------------------------------------------------------------------


async def test_the_record_and_what_it_refers_to(
    http: httpx.AsyncClient, system: dict[str, str]
) -> None:
    bundle = await _get(http, "Patient/alice/$everything", system)
    assert set(_keys(bundle, "match")) == ALICE_RECORD
    assert len(_keys(bundle, "match")) == len(ALICE_RECORD)
    assert bundle["total"] == len(ALICE_RECORD)
    # the resources it refers to that are nobody's record, and what they refer to
    assert set(_keys(bundle, "include")) == ALICE_REFERENCED | {"ResearchStudy/study"}
    every = set(_keys(bundle))
    assert "Observation/b-obs" not in every  # Bob's result on her report
    assert "Task/both-task" not in every  # refers to Bob too
    assert "Location/unused" not in every
    assert "Device/b-pump" not in every  # Bob's device, referred to from her Observation
    assert "Binary/b-doc" not in every  # Bob's attachment on her DocumentReference
    entry = bundle["entry"][0]
    assert entry["fullUrl"] == f"{BASE}/{_keys(bundle)[0]}"
    assert bundle["link"][0] == {"relation": "self", "url": f"{BASE}/Patient/alice/$everything"}


async def test_staff_read_any_record(http: httpx.AsyncClient, staff: dict[str, str]) -> None:
    bundle = await _get(http, "Patient/bob/$everything", staff)
    assert set(_keys(bundle, "match")) == BOB_RECORD
    assert "include" not in {e["search"]["mode"] for e in bundle.get("entry", [])}


async def test_a_patient_downloads_her_own_record(
    http: httpx.AsyncClient, alice: dict[str, str]
) -> None:
    bundle = await _get(http, "Patient/alice/$everything", alice)
    assert set(_keys(bundle, "match")) == ALICE_RECORD
    # directory resources yes; a ResearchStudy is not directory data (default-deny)
    assert set(_keys(bundle, "include")) == ALICE_REFERENCED


async def test_a_caregiver_and_a_v1_token_get_the_same(
    http: httpx.AsyncClient, token: Token
) -> None:
    for headers in (
        token("user/*.rs", fhir_user="RelatedPerson/mum", subject="mum", patient="alice"),
        token("patient/*.read", patient="alice"),
    ):
        matches, included, _ = await _all_pages(http, "Patient/alice/$everything", headers)
        assert set(matches) == ALICE_RECORD
        assert included == ALICE_REFERENCED
        response = await http.get("Patient/bob/$everything", headers=headers)
        assert response.status_code == 404


async def test_another_patients_token_gets_nothing(
    http: httpx.AsyncClient, bob: dict[str, str]
) -> None:
    for path in ("Patient/alice/$everything", "Patient/alice/$everything?_type=Observation"):
        response = await http.get(path, headers=bob)
        assert response.status_code == 404, response.text
        assert response.json()["resourceType"] == "OperationOutcome"
    response = await http.post(
        "Patient/alice/$everything",
        json={"resourceType": "Parameters", "parameter": [{"name": "_count", "valueInteger": 5}]},
        headers={**bob, "content-type": "application/fhir+json"},
    )
    assert response.status_code == 404
    # at type level: Bob's own record only
    matches, included, _ = await _all_pages(http, "Patient/$everything", bob)
    assert set(matches) == BOB_RECORD
    assert not (set(matches) | included) & (ALICE_RECORD | {"Task/both-task"})


async def test_unknown_and_deleted_patients(
    http: httpx.AsyncClient, system: dict[str, str]
) -> None:
    assert (await http.get("Patient/nobody/$everything", headers=system)).status_code == 404
    assert (await http.delete("Patient/bob", headers=system)).status_code in (200, 204)
    assert (await http.get("Patient/bob/$everything", headers=system)).status_code == 410


async def test_a_token_without_read_access_is_refused(
    http: httpx.AsyncClient, token: Token
) -> None:
    headers = token("patient/Observation.rs", patient="alice")
    response = await http.get("Patient/alice/$everything", headers=headers)
    assert response.status_code == 403
    assert (await http.get("Patient/alice/$everything")).status_code == 401


async def test_scopes_limit_the_types(http: httpx.AsyncClient, token: Token) -> None:
    headers = token("patient/Patient.rs patient/Observation.rs", patient="alice")
    bundle = await _get(http, "Patient/alice/$everything", headers)
    assert set(_keys(bundle)) == {"Patient/alice", "Observation/a-2020", "Observation/a-2021"}


async def test_granular_scopes_narrow_the_record(http: httpx.AsyncClient, token: Token) -> None:
    headers = token(
        f"patient/Patient.rs patient/Observation.rs?category={CATEGORY}|laboratory",
        patient="alice",
    )
    bundle = await _get(http, "Patient/alice/$everything", headers)
    assert set(_keys(bundle)) == {"Patient/alice", "Observation/a-2021"}


# -- paging ---------------------------------------------------------------------------------


async def test_paging_with_next_links(http: httpx.AsyncClient, system: dict[str, str]) -> None:
    matches, included, pages = await _all_pages(http, "Patient/alice/$everything?_count=3", system)
    assert pages == 3
    assert len(matches) == len(set(matches)) == len(ALICE_RECORD)
    assert set(matches) == ALICE_RECORD
    assert included == ALICE_REFERENCED | {"ResearchStudy/study"}
    first = await _get(http, "Patient/alice/$everything?_count=3", system)
    assert first["total"] == len(ALICE_RECORD)
    assert len(_keys(first, "match")) == 3
    next_url = next(link["url"] for link in first["link"] if link["relation"] == "next")
    assert next_url.startswith(f"{BASE}/Patient/alice/$everything?_count=3&_cursor=")


async def test_nothing_is_repeated_across_pages(
    http: httpx.AsyncClient, system: dict[str, str]
) -> None:
    """What the record refers to is included once over its pages, whatever pages the
    matches that refer to it are on (the cursor carries what was included)."""
    for count in (1, 2, 5):
        url = f"Patient/alice/$everything?_count={count}"
        pages: list[dict[str, Any]] = []
        while url:
            pages.append(await _get(http, url, system))
            url = next((x["url"] for x in pages[-1]["link"] if x["relation"] == "next"), "")
        every = [key for bundle in pages for key in _keys(bundle)]
        assert len(every) == len(set(every))
        assert set(every) == ALICE_RECORD | ALICE_REFERENCED | {"ResearchStudy/study"}
    # a cursor whose digests were tampered with is refused
    first = await _get(http, "Patient/alice/$everything?_count=5", system)
    url = next(x["url"] for x in first["link"] if x["relation"] == "next")
    cursor = url.split("_cursor=", 1)[1]
    payload = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    payload["s"] = "abc"
    bad = base64.urlsafe_b64encode(orjson.dumps(payload)).decode().rstrip("=")
    response = await http.get(f"Patient/alice/$everything?_count=5&_cursor={bad}", headers=system)
    assert response.status_code == 400
    # at type level: each record brings what it refers to once
    url = "Patient/$everything?_count=2"
    included: list[str] = []
    while url:
        bundle = await _get(http, url, system)
        included += _keys(bundle, "include")
        url = next((x["url"] for x in bundle["link"] if x["relation"] == "next"), "")
    assert sorted(included) == sorted(ALICE_REFERENCED | {"ResearchStudy/study"})


async def test_pages_are_stable_while_the_record_grows(
    http: httpx.AsyncClient, system: dict[str, str]
) -> None:
    first = await _get(http, "Patient/alice/$everything?_count=4", system)
    seen = _keys(first, "match")
    await http.put("Observation/a-new", json=_obs("a-new", "alice", "2022-01-01"), headers=system)
    url = next(link["url"] for link in first["link"] if link["relation"] == "next")
    rest, _, _ = await _all_pages(http, url, system)
    assert not set(seen) & set(rest)
    assert set(seen) | set(rest) == ALICE_RECORD | {"Observation/a-new"}


async def test_a_bad_cursor_or_count_is_a_400(
    http: httpx.AsyncClient, system: dict[str, str]
) -> None:
    for query in ("_cursor=nonsense", "_count=-1", "_count=many", "_type=Nothing"):
        response = await http.get(f"Patient/alice/$everything?{query}", headers=system)
        assert response.status_code == 400, query
    response = await http.get("Patient/$everything?_cursor=nonsense", headers=system)
    assert response.status_code == 400


# -- parameters -----------------------------------------------------------------------------


async def test_since(http: httpx.AsyncClient, system: dict[str, str]) -> None:
    await asyncio.sleep(0.01)
    before = await _get(http, "Patient/alice/$everything", system)
    stamp = before["meta"]["lastUpdated"]
    await asyncio.sleep(0.01)
    changed = _obs("a-2021", "alice", "2021-05-02")
    assert (await http.put("Observation/a-2021", json=changed, headers=system)).status_code == 200
    bundle = await _get(http, f"Patient/alice/$everything?_since={stamp}", system)
    assert _keys(bundle) == ["Observation/a-2021"]
    self_link = bundle["link"][0]["url"]
    assert "_since=" in self_link


async def test_type(http: httpx.AsyncClient, system: dict[str, str]) -> None:
    bundle = await _get(
        http, "Patient/alice/$everything?_type=Observation,Encounter,Location", system
    )
    assert set(_keys(bundle, "match")) == {
        "Observation/a-2020",
        "Observation/a-2021",
        "Encounter/a-visit",
    }
    assert set(_keys(bundle, "include")) == {"Location/room"}
    bundle = await _get(http, "Patient/bob/$everything?_type=Device", system)
    assert _keys(bundle) == ["Device/b-pump"]


async def test_start_and_end_are_care_dates(
    http: httpx.AsyncClient, system: dict[str, str]
) -> None:
    undated = ALICE_RECORD - {"Observation/a-2020", "Observation/a-2021", "Encounter/a-visit"}
    bundle = await _get(http, "Patient/alice/$everything?start=2021-01-01", system)
    assert set(_keys(bundle, "match")) == undated | {"Observation/a-2021", "Encounter/a-visit"}
    bundle = await _get(http, "Patient/alice/$everything?end=2020-12-31", system)
    assert set(_keys(bundle, "match")) == undated | {"Observation/a-2020"}
    bundle = await _get(http, "Patient/alice/$everything?start=2021-05&end=2021-05", system)
    assert set(_keys(bundle, "match")) == undated | {"Observation/a-2021", "Encounter/a-visit"}
    response = await http.get("Patient/alice/$everything?start=yesterday", headers=system)
    assert response.status_code == 400
    assert "start" in response.json()["issue"][0]["expression"]


async def test_parameters_by_post(http: httpx.AsyncClient, system: dict[str, str]) -> None:
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "_type", "valueCode": "Observation"},
            {"name": "start", "valueDate": "2021-01-01"},
        ],
    }
    headers = {**system, "content-type": "application/fhir+json"}
    response = await http.post("Patient/alice/$everything", json=body, headers=headers)
    assert response.status_code == 200, response.text
    assert _keys(response.json()) == ["Observation/a-2021"]


async def test_unknown_parameters_under_strict_handling(
    http: httpx.AsyncClient, system: dict[str, str]
) -> None:
    assert (await http.get("Patient/alice/$everything?foo=1", headers=system)).status_code == 200
    strict = {**system, "prefer": "handling=strict"}
    response = await http.get("Patient/alice/$everything?foo=1", headers=strict)
    assert response.status_code == 400


# -- type level -----------------------------------------------------------------------------


async def test_every_patient_for_staff_and_systems(
    http: httpx.AsyncClient, system: dict[str, str], staff: dict[str, str]
) -> None:
    for headers in (system, staff):
        for count in (2, 3, 50):
            matches, included, _ = await _all_pages(
                http, f"Patient/$everything?_count={count}", headers
            )
            assert len(matches) == len(set(matches))
            assert set(matches) == ALICE_RECORD | BOB_RECORD
            assert "Task/both-task" not in included


async def test_count_zero(http: httpx.AsyncClient, system: dict[str, str]) -> None:
    bundle = await _get(http, "Patient/alice/$everything?_count=0", system)
    assert bundle["total"] == len(ALICE_RECORD) and "entry" not in bundle
    assert [link["relation"] for link in bundle["link"]] == ["self"]
    bundle = await _get(http, "Patient/$everything?_count=0", system)
    assert "entry" not in bundle
    assert [link["relation"] for link in bundle["link"]] == ["self"]


async def test_a_patient_gets_only_her_own_at_type_level(
    http: httpx.AsyncClient, alice: dict[str, str]
) -> None:
    matches, included, _ = await _all_pages(http, "Patient/$everything?_count=4", alice)
    assert set(matches) == ALICE_RECORD
    assert included == ALICE_REFERENCED


async def test_listed_in_the_capability_statement(http: httpx.AsyncClient) -> None:
    statement = (await http.get("metadata")).json()
    patient = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Patient")
    operations = {(o["name"], o["definition"]) for o in patient.get("operation", [])}
    assert (
        "everything",
        "http://hl7.org/fhir/OperationDefinition/Patient-everything",
    ) in operations


def test_every_care_date_is_a_date_parameter_of_its_type() -> None:
    """And no type of the record has two of them (each is compared on its own)."""
    codes = set(CARE_DATES.values())
    for type_, code in CARE_DATES.items():
        assert search_params(type_)[code].type == "date", type_
    for type_ in patient_member_types():
        params = search_params(type_)
        assert len(codes & set(params)) <= 1, type_
