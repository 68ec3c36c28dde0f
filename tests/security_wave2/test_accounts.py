"""Attacks on the account additions (issue 21) that go through FHIR data: the password
reset link goes to an address read from the user's FHIR resource, which a patient-context
token (a third-party app of the patient, or the patient's caregiver) may change. Against
the real application with SMART on and a real local SMTP server (the test double of the
clinic's mail server)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from smart_auth.admin import create_user
from tests.conftest import STORES, storage_url
from tests.security_support import app_on, offline_launch, token_for
from tests.smart_support import PASSWORD, Env, bearer_of, csrf_of
from tests.smtp_receiver import smtp_server

ATTACKER = "attacker@evil.example"


@pytest.fixture(params=STORES)
async def env(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Env]:
    with smtp_server() as box:
        async with app_on(storage_url(request.param, tmp_path), smtp_url=box.url) as env:
            env.data["mailbox"] = box
            yield env


async def _forgot(http: httpx.AsyncClient, name: str) -> httpx.Response:
    page = await http.get("/auth/forgot")
    assert page.status_code == 200, page.text
    return await http.post("/auth/forgot", data={"csrf": csrf_of(page.text), "name": name})


@pytest.mark.parametrize("attacker", ["app", "caregiver"])
async def test_an_app_that_may_edit_the_patient_cannot_take_over_her_account(
    env: Env, attacker: str
) -> None:
    create_user(env.store, "carol", PASSWORD, "Patient/p1")  # no address recorded
    if attacker == "app":  # a third-party app the patient granted patient/Patient.u
        app = token_for(env, "patient/Patient.ru", patient="p1")
    else:  # her caregiver (RelatedPerson/rp1), launched for her
        app = token_for(env, "user/Patient.ru", fhir_user="RelatedPerson/rp1", patient="p1")
    current = await env.http.get("/fhir/Patient/p1", headers=app)
    assert current.status_code == 200, current.text
    patient = current.json()
    patient.pop("meta", None)
    patient["telecom"] = [{"system": "email", "value": ATTACKER, "rank": 1}]
    changed = await env.http.put("/fhir/Patient/p1", json=patient, headers=app)
    assert changed.status_code == 200, changed.text
    for name in ("carol", ATTACKER):
        answered = await _forgot(env.http, name)
        assert answered.status_code == 200
    await asyncio.sleep(0.5)  # the email leaves after the answer
    box = env.data["mailbox"]
    sent = await asyncio.to_thread(box.snapshot)
    assert not [m for m in sent if ATTACKER in str(m["To"])], (
        "reset link mailed to the app's address"
    )


async def test_forgot_answers_alike_and_mails_nobody_for_unknown_names(env: Env) -> None:
    known = await _forgot(env.http, "carol-unknown")
    create_user(env.store, "dave", PASSWORD, "Patient/p2", email="dave@example.org")
    other = await _forgot(env.http, "dave")
    assert known.status_code == other.status_code == 200
    assert known.text.replace(csrf_of(known.text) if 'name="csrf"' in known.text else "", "") == (
        other.text.replace(csrf_of(other.text) if 'name="csrf"' in other.text else "", "")
    )
    for evil in ("dave@example.org\r\nBcc: attacker@evil.example", "a@b.c, attacker@evil.example"):
        assert (await _forgot(env.http, evil)).status_code in (200, 400, 429)
    await asyncio.sleep(0.5)
    sent = await asyncio.to_thread(env.data["mailbox"].snapshot)
    assert all(ATTACKER not in str(m) for m in sent)


async def test_a_reset_link_is_not_a_guessable_or_reusable_token(env: Env) -> None:
    page = await env.http.get("/auth/reset?token=AAAA")
    assert page.status_code == 200
    form = {"csrf": csrf_of(page.text), "token": "AAAA", "new": "x" * 20, "again": "x" * 20}
    answer = await env.http.post("/auth/reset", data=form)
    assert answer.status_code == 400 and "cannot be used" in answer.text


async def test_a_patient_app_cannot_mail_strangers_through_subscriptions(env: Env) -> None:
    create_user(env.store, "pat", PASSWORD, "Patient/p1")
    scope = "launch/patient openid fhirUser offline_access patient/*.cruds"
    _, tokens = await offline_launch(env, "pat", scope=scope)  # a registered app's grant
    app = bearer_of(tokens)
    lure = "URGENT: your clinic account is locked, call +1 555 0100 now"
    subscription = {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": lure,
        "criteria": "Observation?patient=Patient/p1",
        "channel": {"type": "email", "endpoint": "mailto:victim@elsewhere.example"},
    }
    made = await env.http.post("/fhir/Subscription", json=subscription, headers=app)
    if made.status_code != 201:
        assert made.status_code in (400, 403, 422), made.text
        return
    status = "requested"
    for _ in range(80):  # the dispatcher checks and activates it from its own task
        current = await env.http.get(f"/fhir/Subscription/{made.json()['id']}", headers=app)
        status = current.json().get("status")
        if status != "requested":
            break
        await asyncio.sleep(0.1)
    if status != "active":  # refused: the address is not the patient's
        assert status in ("error", "off"), current.text
        return
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "weight"},
        "subject": {"reference": "Patient/p1"},
    }
    written = await env.http.post("/fhir/Observation", json=observation, headers=app)
    assert written.status_code == 201, written.text
    box = env.data["mailbox"]
    sent: list = []
    for _ in range(80):  # the dispatcher sends from its own task (~5 s an email here)
        await asyncio.sleep(0.1)
        sent = [m for m in await asyncio.to_thread(box.snapshot) if "elsewhere" in str(m["To"])]
        if sent:
            break
    assert not sent, "the clinic mailed a stranger the app's text"
