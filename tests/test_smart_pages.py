"""The sign-in pages against the real application, whose FHIR data (seeded through the
API) answers who may act for whom: EHR launch with a launch context, proxy access for a
RelatedPerson (only while active and within its period), the patient picker of a
practitioner, sign-in throttling, and account activation from a staff invitation (single
use, expiring) - including the whole first-run story of a patient portal, from
``fhir-server invite`` to reading the record."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from fhir_server.cli import main
from smart_auth.admin import AdminError, create_invitation, create_user, normalize_code
from smart_auth.passwords import hash_password, hash_secret
from smart_auth.store.base import Invitation, User
from tests.smart_support import (
    BASE,
    PASSWORD,
    Env,
    add_user,
    auth_params,
    bearer_of,
    consent,
    csrf_of,
    exchange,
    launch_tokens,
    login,
    pkce,
    public_app,
    real_app,
    redirect_params,
    start,
)


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async with real_app(tmp_path, lockout_after=3, lockout_seconds=600) as env:
        yield env


def bearer(env: Env, fhir_user: str | None, scope: str) -> dict[str, str]:
    token, _ = env.auth.token_service().issue_access_token(
        issuer=BASE,
        audience=BASE,
        client_id="ehr",
        scope=scope,
        subject="staff-1" if fhir_user else None,
        fhir_user=fhir_user,
    )
    return {"Authorization": f"Bearer {token}"}


async def test_ehr_launch_puts_patient_and_encounter_in_the_token(env: Env) -> None:
    response = await env.http.post(
        "/auth/launch",
        json={"patient": "p2", "encounter": "e1"},
        headers=bearer(env, "Practitioner/dr", "user/*.rs"),
    )
    assert response.status_code == 201, response.text
    launch = response.json()["launch"]
    client_id = public_app(env.store)
    add_user(env.store, "drwho", "Practitioner/dr")
    verifier, challenge = pkce()
    started = await start(
        env.http,
        auth_params(
            client_id, challenge, scope="launch openid fhirUser patient/*.rs", launch=launch
        ),
    )
    assert started.status_code == 303, started.text
    logged_in = await login(env.http, "drwho")
    assert logged_in.headers["location"].endswith("/auth/consent")
    code = redirect_params(await consent(env.http))["code"]
    body = (await exchange(env.http, client_id, code, verifier)).json()
    assert body["patient"] == "p2"
    assert body["encounter"] == "e1"
    policy = env.auth.authenticate(f"Bearer {body['access_token']}", BASE)
    assert (policy.patient, policy.encounter) == ("p2", "e1")
    headers = bearer_of(body)
    assert (await env.http.get("/fhir/Encounter/e1", headers=headers)).status_code == 200
    assert (await env.http.get("/fhir/Observation/o2", headers=headers)).status_code == 200
    assert (await env.http.get("/fhir/Observation/o1", headers=headers)).status_code == 404


async def test_launch_api_needs_staff_or_system_token_and_a_real_patient(env: Env) -> None:
    assert (await env.http.post("/auth/launch", json={"patient": "p1"})).status_code == 401
    patient = await env.http.post(
        "/auth/launch", json={"patient": "p1"}, headers=bearer(env, "Patient/p1", "patient/*.rs")
    )
    assert patient.status_code == 403
    system = bearer(env, None, "system/*.rs")
    assert (
        await env.http.post("/auth/launch", json={"patient": "p1"}, headers=system)
    ).status_code == 201
    missing = await env.http.post("/auth/launch", json={"patient": "nobody"}, headers=system)
    assert missing.status_code == 400
    assert missing.json()["error"] == "invalid_request"
    bad = await env.http.post("/auth/launch", content=b"{not json", headers=system)
    assert bad.status_code == 400


async def test_ehr_launch_refused_for_a_patient_of_someone_else(env: Env) -> None:
    launch = (
        await env.http.post(
            "/auth/launch", json={"patient": "p2"}, headers=bearer(env, None, "system/*.rs")
        )
    ).json()["launch"]
    client_id = public_app(env.store)
    add_user(env.store, "alice", "Patient/p1")
    _, challenge = pkce()
    await start(
        env.http, auth_params(client_id, challenge, scope="launch patient/*.rs", launch=launch)
    )
    answer = redirect_params(await login(env.http, "alice"))
    assert answer["error"] == "access_denied"


async def test_related_person_acts_for_the_patient_only(env: Env) -> None:
    add_user(env.store, "mum", "RelatedPerson/rp1")
    tokens = await launch_tokens(env, "mum")  # one patient: no picker
    assert tokens["patient"] == "p1"
    policy = env.auth.authenticate(f"Bearer {tokens['access_token']}", BASE)
    assert policy.fhir_user == "RelatedPerson/rp1"
    headers = bearer_of(tokens)
    assert (await env.http.get("/fhir/Observation/o1", headers=headers)).status_code == 200
    assert (await env.http.get("/fhir/Observation/o2", headers=headers)).status_code == 404
    found = await env.http.get("/fhir/Observation", headers=headers)
    assert found.status_code == 200, found.text
    ids = sorted(e["resource"]["id"] for e in found.json().get("entry", []))
    assert ids == ["o1", "o1b"]


@pytest.mark.parametrize("related", ["rp-ended", "rp-inactive", "rp-future"])
async def test_related_person_out_of_period_or_inactive_cannot_launch(
    env: Env, related: str
) -> None:
    client_id = public_app(env.store)
    add_user(env.store, "carer", f"RelatedPerson/{related}")
    _, challenge = pkce()
    await start(env.http, auth_params(client_id, challenge))
    answer = redirect_params(await login(env.http, "carer"))
    assert answer["error"] == "access_denied"
    # nor through an EHR launch for that patient
    launch = (
        await env.http.post(
            "/auth/launch", json={"patient": "p1"}, headers=bearer(env, None, "system/*.rs")
        )
    ).json()["launch"]
    env.http.cookies.clear()
    await start(
        env.http, auth_params(client_id, challenge, scope="launch patient/*.rs", launch=launch)
    )
    answer = redirect_params(await login(env.http, "carer"))
    assert answer["error"] == "access_denied"


async def test_picker_for_a_practitioner(env: Env) -> None:
    client_id = public_app(env.store)
    add_user(env.store, "drwho", "Practitioner/dr")
    verifier, challenge = pkce()
    await start(env.http, auth_params(client_id, challenge))
    logged_in = await login(env.http, "drwho")
    assert logged_in.headers["location"].endswith("/auth/patient")
    page = await env.http.get("/auth/patient")
    for name in ("Alice Smith", "Bob Jones", "Carol White"):
        assert name in page.text
    assert '<label for="patient-1">' in page.text
    # a patient that is not among the choices is refused
    refused = await env.http.post(
        "/auth/patient", data={"csrf": csrf_of(page.text), "patient": "nobody"}
    )
    assert refused.status_code == 400
    assert (await env.http.get("/auth/consent")).status_code == 400
    chosen = await env.http.post(
        "/auth/patient", data={"csrf": csrf_of(page.text), "patient": "p3"}
    )
    assert chosen.headers["location"].endswith("/auth/consent")
    consent_page = await env.http.get("/auth/consent")
    assert "Carol White" in consent_page.text
    code = redirect_params(await consent(env.http))["code"]
    body = (await exchange(env.http, client_id, code, verifier)).json()
    assert body["patient"] == "p3"
    assert (
        env.auth.authenticate(f"Bearer {body['access_token']}", BASE).fhir_user == "Practitioner/dr"
    )
    headers = bearer_of(body)
    assert (await env.http.get("/fhir/Patient/p3", headers=headers)).status_code == 200
    assert (await env.http.get("/fhir/Patient/p1", headers=headers)).status_code == 404


async def test_caregiver_person_picks_among_the_people_they_care_for(env: Env) -> None:
    """One login (a Person) for a parent of two: the picker offers both children (through
    their RelatedPersons) and the token sees only the one picked."""
    admin = {**bearer(env, None, "system/*.cruds"), "content-type": "application/fhir+json"}
    for resource in (
        {
            "resourceType": "RelatedPerson",
            "id": "parent-of-p3",
            "active": True,
            "patient": {"reference": "Patient/p3"},
        },
        {
            "resourceType": "Person",
            "id": "parent",
            "link": [
                {"target": {"reference": "RelatedPerson/rp1"}},  # acts for p1
                {"target": {"reference": "RelatedPerson/parent-of-p3"}},
                {"target": {"reference": "RelatedPerson/rp-ended"}},  # no longer
            ],
        },
    ):
        path = f"/fhir/{resource['resourceType']}/{resource['id']}"
        assert (await env.http.put(path, json=resource, headers=admin)).status_code == 201
    client_id = public_app(env.store)
    add_user(env.store, "parent", "Person/parent")
    verifier, challenge = pkce()
    await start(env.http, auth_params(client_id, challenge))
    logged_in = await login(env.http, "parent")
    assert logged_in.headers["location"].endswith("/auth/patient")
    page = await env.http.get("/auth/patient")
    assert "Alice Smith" in page.text and "Carol White" in page.text
    assert "Bob Jones" not in page.text
    chosen = await env.http.post(
        "/auth/patient", data={"csrf": csrf_of(page.text), "patient": "p3"}
    )
    assert chosen.headers["location"].endswith("/auth/consent")
    code = redirect_params(await consent(env.http))["code"]
    body = (await exchange(env.http, client_id, code, verifier)).json()
    assert body["patient"] == "p3"
    headers = bearer_of(body)
    assert (await env.http.get("/fhir/Patient/p3", headers=headers)).status_code == 200
    assert (await env.http.get("/fhir/Patient/p1", headers=headers)).status_code == 404
    assert (await env.http.get("/fhir/Observation/o1", headers=headers)).status_code == 404


async def test_practitioner_searches_the_picker(env: Env) -> None:
    client_id = public_app(env.store)
    add_user(env.store, "drwho", "Practitioner/dr")
    verifier, challenge = pkce()
    await start(env.http, auth_params(client_id, challenge, scope="launch/patient patient/*.rs"))
    await login(env.http, "drwho")
    page = await env.http.get("/auth/patient", params={"q": "bob"})
    assert "Bob Jones" in page.text and "Alice Smith" not in page.text
    assert 'role="search"' in page.text
    # outside the search the user ran, a patient is not a choice
    outside = await env.http.post(
        "/auth/patient", data={"csrf": csrf_of(page.text), "patient": "p1", "q": "bob"}
    )
    assert outside.status_code == 400
    chosen = await env.http.post(
        "/auth/patient", data={"csrf": csrf_of(page.text), "patient": "p2", "q": "bob"}
    )
    assert chosen.status_code == 303
    code = redirect_params(await consent(env.http))["code"]
    assert (await exchange(env.http, client_id, code, verifier)).json()["patient"] == "p2"


async def test_user_without_patient_gets_access_denied(env: Env) -> None:
    client_id = public_app(env.store)
    # an account without a fhirUser (made before --fhir-user was required)
    env.store.add_user(
        User(user_id="u-nobody", username="nobody", password_hash=hash_password(PASSWORD))
    )
    _, challenge = pkce()
    await start(env.http, auth_params(client_id, challenge))
    assert redirect_params(await login(env.http, "nobody"))["error"] == "access_denied"


async def test_failed_sign_ins_slow_down_and_never_lock(env: Env) -> None:
    """lockout_after=3: the third failure in a row makes the next attempt wait (429 with
    Retry-After, even with the right password), for unknown usernames alike; nothing
    locks the account (tests/test_security_pages.py has the rules in full)."""
    client_id = public_app(env.store)
    add_user(env.store, "alice", "Patient/p1")
    _, challenge = pkce()
    await start(env.http, auth_params(client_id, challenge))
    for name in ("alice", "mallory"):
        for _ in range(3):
            wrong = await login(env.http, name, "wrong password")
            assert wrong.status_code == 401
            assert 'role="alert"' in wrong.text
        held = await login(env.http, name, PASSWORD)
        assert held.status_code == 429
        assert held.headers["retry-after"] in ("1", "2")  # 2 s after the third failure
        assert "Too many failed sign-ins. Wait " in held.text


async def activate(
    env: Env, code: str, username: str, password: str = PASSWORD, again: str | None = None
) -> httpx.Response:
    page = await env.http.get("/auth/activate", params={"code": code})
    assert page.status_code == 200
    return await env.http.post(
        "/auth/activate",
        data={
            "csrf": csrf_of(page.text),
            "code": code,
            "username": username,
            "password": password,
            "password2": password if again is None else again,
        },
    )


async def test_invitation_activates_one_account_once(env: Env) -> None:
    invitation = create_invitation(env.store, "Patient/p1", server_url=BASE)
    assert invitation["link"].startswith("http://testserver/auth/activate?code=")
    assert invitation["expires_at"].endswith("Z")
    page = await env.http.get(invitation["link"])
    assert invitation["code"] in page.text and '<label for="password">' in page.text
    created = await activate(env, invitation["code"].lower(), "alice")
    assert created.status_code == 201, created.text
    user = env.store.find_user("alice")
    assert user is not None and user.fhir_user == "Patient/p1"
    again = await activate(env, invitation["code"], "alice2")
    assert again.status_code == 400
    assert "already used" in again.text
    assert env.store.find_user("alice2") is None
    # the new account signs in
    client_id = public_app(env.store)
    _, challenge = pkce()
    await start(env.http, auth_params(client_id, challenge))
    assert (await login(env.http, "alice")).status_code == 303


async def test_expired_or_wrong_invitation_codes(env: Env) -> None:
    env.store.add_invitation(
        Invitation(
            code_hash=hash_secret(normalize_code("OLD-CODE")),
            fhir_user="Patient/p1",
            expires_at=int(time.time()) - 1,
            created_at=int(time.time()) - 100,
        )
    )
    expired = await activate(env, "OLD-CODE", "late")
    assert expired.status_code == 400 and "expired" in expired.text
    wrong = await activate(env, "NOPE-NOPE", "guess")
    assert wrong.status_code == 400 and "not right" in wrong.text
    code = create_invitation(env.store, "Patient/p1", server_url=BASE)["code"]
    short = await activate(env, code, "alice", "short")
    assert short.status_code == 400 and "at least" in short.text
    differ = await activate(env, code, "alice", PASSWORD, "something else")
    assert differ.status_code == 400
    assert (await activate(env, code, "alice")).status_code == 201  # the code survived


async def test_activation_needs_csrf(env: Env) -> None:
    code = create_invitation(env.store, "Patient/p1", server_url=BASE)["code"]
    response = await env.http.post(
        "/auth/activate",
        data={"code": code, "username": "x1234", "password": PASSWORD, "password2": PASSWORD},
    )
    assert response.status_code == 403


async def test_admin_functions_refuse_bad_input(env: Env) -> None:
    with pytest.raises(AdminError):
        create_invitation(env.store, "Practitioner/dr", server_url=BASE)
    with pytest.raises(AdminError):
        create_user(env.store, "x", PASSWORD, "Patient/p1")
    create_user(env.store, "alice", PASSWORD, "Patient/p1")
    with pytest.raises(AdminError):
        create_user(env.store, "ALICE", PASSWORD, "Patient/p1")


async def test_portal_first_run_from_invitation_to_the_record(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    """Staff run ``fhir-server invite Patient/p1``; the patient opens the link, chooses a
    username and password, signs in to the portal app and reads her own record - and not
    another patient's."""
    storage = env.data["storage"]
    args = ["invite", "Patient/p1", "--storage", storage, "--base-url", BASE, "--days", "2"]
    capsys.readouterr()
    # the command runs its own event loop, as from a shell: give it a thread
    assert await asyncio.to_thread(main, args) == 0
    invitation = json.loads(capsys.readouterr().out)
    assert invitation["fhir_user"] == "Patient/p1"
    assert invitation["link"].startswith("http://testserver/auth/activate?code=")
    # no invitation for a patient that does not exist
    assert await asyncio.to_thread(main, [*args[:1], "Patient/nobody", *args[2:]]) == 2
    assert "not a Patient" in capsys.readouterr().err

    page = await env.http.get(invitation["link"])
    assert page.status_code == 200
    assert invitation["code"] in page.text
    created = await env.http.post(
        "/auth/activate",
        data={
            "csrf": csrf_of(page.text),
            "code": invitation["code"],
            "username": "alice.smith",
            "password": PASSWORD,
            "password2": PASSWORD,
        },
    )
    assert created.status_code == 201, created.text
    assert "alice.smith" in created.text

    tokens = await launch_tokens(env, "alice.smith")
    assert tokens["patient"] == "p1"
    headers = bearer_of(tokens)
    patient = await env.http.get("/fhir/Patient/p1", headers=headers)
    assert patient.status_code == 200, patient.text
    assert patient.json()["name"][0]["given"] == ["Alice"]
    assert (await env.http.get("/fhir/Observation/o1", headers=headers)).status_code == 200
    assert (await env.http.get("/fhir/Observation/o2", headers=headers)).status_code == 404
    assert (await env.http.get("/fhir/Patient/p2", headers=headers)).status_code == 404
    # the invitation served once
    again = await env.http.get(invitation["link"])
    reused = await env.http.post(
        "/auth/activate",
        data={
            "csrf": csrf_of(again.text),
            "code": invitation["code"],
            "username": "mallory",
            "password": PASSWORD,
            "password2": PASSWORD,
        },
    )
    assert reused.status_code == 400 and "already used" in reused.text
