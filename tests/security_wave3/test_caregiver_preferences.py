"""Attacks on caregivers' own preferences (``fhir_server.access.with_own_records``,
``resources.compartments``) by the paths ``tests/test_caregiver_preferences.py`` does not
take: conditional update, create, patch and delete naming another caregiver's or
patient's preferences, ``_has`` as an existence oracle, a transaction updating another's
preferences by id. The data and tokens of that module (Dad's, Uncle's and Bob's
preferences, a note about Mum), on every store."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from fhir_server.notifications.recipients import PREFERENCES
from tests.test_caregiver_preferences import (
    OPT_OUT_RESULTS,
    Call,
    alice,
    app,
    http,
    ids,
    mum,
    preferences_of,
)

FIXTURES = (alice, app, http, mum)
"""The app, seeded, and the portal tokens of ``tests.test_caregiver_preferences``."""

OTHERS = {
    "RelatedPerson/dad": "dad-prefs",
    "RelatedPerson/uncle": "uncle-prefs",
    "Patient/bob": "bob-prefs",
}
ADMIN = "system/*.cruds"


async def _versions(http: httpx.AsyncClient, app: Any) -> dict[str, str]:
    """The current version of each of the others' preferences (as staff sees them)."""
    from tests.test_caregiver_preferences import _token

    staff = _token(app, ADMIN)
    out = {}
    for id_ in [*OTHERS.values(), "mum-note"]:
        read = await http.get(f"Basic/{id_}", headers=staff)
        assert read.status_code == 200, read.text
        out[id_] = read.json()["meta"]["versionId"]
    listed = await http.get("Basic", params={"code": PREFERENCES, "_count": "100"}, headers=staff)
    out["total"] = str(len(ids(listed.json())))
    return out


@pytest.mark.parametrize("subject", sorted(OTHERS))
async def test_conditional_writes_naming_anothers_preferences_change_nothing(
    app: Any, http: httpx.AsyncClient, mum: Call, subject: str
) -> None:
    before = await _versions(http, app)
    query = f"Basic?subject={subject}&code={PREFERENCES}"
    body = preferences_of(subject, OPT_OUT_RESULTS)
    put = await mum("PUT", query, json=body)
    assert put.status_code in (403, 404, 412), put.text
    mine = await mum("PUT", query, json=preferences_of("RelatedPerson/mum"))
    # a no-match conditional update would create Mum's own; it must not touch theirs
    assert mine.status_code in (201, 403, 404, 412), mine.text
    patch = [{"op": "replace", "path": "/subject/reference", "value": "RelatedPerson/mum"}]
    patched = await mum(
        "PATCH", query, json=patch, headers={"content-type": "application/json-patch+json"}
    )
    assert patched.status_code in (403, 404, 412), patched.text
    deleted = await mum("DELETE", query)
    assert deleted.status_code in (200, 204, 403, 404, 412), deleted.text
    after = await _versions(http, app)
    for id_ in [*OTHERS.values(), "mum-note"]:
        assert after[id_] == before[id_], (id_, put.text, patched.text, deleted.text)


@pytest.mark.parametrize("subject", sorted(OTHERS))
async def test_conditional_create_is_no_oracle_of_anothers_preferences(
    mum: Call, subject: str
) -> None:
    """``If-None-Exist`` naming another's preferences answers as if there were none (a
    200 'already exists' would tell Mum that Dad keeps preferences)."""
    query = f"subject={subject}&code={PREFERENCES}"
    made = await mum(
        "POST",
        "Basic",
        json=preferences_of("RelatedPerson/mum"),
        headers={"if-none-exist": query},
    )
    nobody = await mum(
        "POST",
        "Basic",
        json=preferences_of("RelatedPerson/mum"),
        headers={"if-none-exist": f"subject=RelatedPerson/nobody&code={PREFERENCES}"},
    )
    assert made.status_code == nobody.status_code, (made.text, nobody.text)
    assert OTHERS[subject] not in made.text


async def test_has_is_no_oracle_of_others_preferences(mum: Call) -> None:
    found = await mum("GET", "RelatedPerson", params={"_has:Basic:subject:code": PREFERENCES})
    assert found.status_code == 200, found.text
    # Dad keeps preferences (staff wrote them), Mum none yet: neither is found by them
    assert "RelatedPerson/dad" not in ids(found.json())
    patients = await mum("GET", "Patient", params={"_has:Basic:subject:code": PREFERENCES})
    assert "Patient/bob" not in ids(patients.json())


async def test_a_transaction_cannot_overwrite_anothers_preferences(
    app: Any, http: httpx.AsyncClient, mum: Call
) -> None:
    before = await _versions(http, app)
    for subject, id_ in OTHERS.items():
        body = {**preferences_of(subject, OPT_OUT_RESULTS), "id": id_}
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "resource": preferences_of("RelatedPerson/mum"),
                    "request": {"method": "POST", "url": "Basic"},
                },
                {"resource": body, "request": {"method": "PUT", "url": f"Basic/{id_}"}},
            ],
        }
        answer = await mum("POST", "", json=bundle)
        assert answer.status_code in (403, 404), answer.text
        batch = {**bundle, "type": "batch"}
        answer = await mum("POST", "", json=batch)
        assert answer.status_code == 200, answer.text
        assert not answer.json()["entry"][1]["response"]["status"].startswith("2"), answer.text
    after = await _versions(http, app)
    for id_ in [*OTHERS.values(), "mum-note"]:
        assert after[id_] == before[id_], id_
