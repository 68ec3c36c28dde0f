"""Password reset by email (issue 21, ``smart_auth.password_reset``), over HTTP against
the real application with SMART on (every store) and a real local SMTP server (the test
double of the clinic's mail server): the link goes to the account's address, works once,
ends the account's grants; the page answers alike for unknown names."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from smart_auth.passwords import hash_secret
from smart_auth.store.base import PasswordReset
from tests.conftest import STORES, storage_url
from tests.security_support import app_on, offline_launch, refresh, staff_write
from tests.smart_support import PASSWORD, Env, add_user, csrf_of, login
from tests.smtp_receiver import Mailbox, smtp_server, text_of

NEW = "a quieter horse, stapled"


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


async def _link(box: Mailbox, count: int = 1) -> tuple[str, str]:
    # the email leaves after the answer, from the app's event loop: wait off it
    message = (await asyncio.to_thread(box.wait_for, count))[count - 1]
    found = re.search(r"http://testserver/auth/reset\?token=\S+", text_of(message))
    assert found is not None
    return str(message["To"]), found.group(0)


async def _reset(http: httpx.AsyncClient, link: str, new: str) -> httpx.Response:
    page = await http.get(link)
    assert page.status_code == 200
    token = re.search(r'name="token" value="([^"]+)"', page.text)
    assert token is not None
    data = {"csrf": csrf_of(page.text), "token": token.group(1), "new": new, "again": new}
    return await http.post("/auth/reset", data=data)


async def test_a_link_by_email_sets_a_new_password_once(env: Env) -> None:
    from smart_auth.admin import create_user

    create_user(env.store, "alice", PASSWORD, "Patient/p1", email="alice@example.org")
    client_id, tokens = await offline_launch(env, "alice")
    answered = await _forgot(env.http, "alice")
    assert answered.status_code == 200 and "If an account matches" in answered.text
    to, link = await _link(env.data["mailbox"])
    assert to == "alice@example.org"
    common = await _reset(env.http, link, "password1")
    assert common.status_code == 400 and "most common" in common.text
    done = await _reset(env.http, link, NEW)
    assert done.status_code == 200 and "Your password is changed" in done.text
    assert (await refresh(env, client_id, tokens["refresh_token"])).status_code in (400, 401)
    again = await _reset(env.http, link, "another good passphrase")
    assert again.status_code == 400 and "cannot be used" in again.text
    user = env.store.find_user("alice")
    assert user is not None
    from smart_auth.passwords import verify_password

    assert verify_password(user.password_hash, NEW)


async def test_an_address_of_the_record_finds_the_account_but_the_link_goes_to_its_own(
    env: Env,
) -> None:
    """The FHIR record's telecom may be changed by apps with patient write scopes, so it
    only finds the account: the link goes to the address the account holder gave."""
    from smart_auth.admin import create_user

    create_user(env.store, "alice", PASSWORD, "Patient/p1", email="alice@example.org")
    patient = (await env.http.get("/fhir/Patient/p1", headers=_staff(env))).json()
    patient["telecom"] = [{"system": "email", "value": "alice.smith@example.org"}]
    await staff_write(env, "PUT", "Patient/p1", patient)
    assert (await _forgot(env.http, "ALICE.SMITH@example.org")).status_code == 200
    to, link = await _link(env.data["mailbox"])
    assert to == "alice@example.org"
    assert (await _reset(env.http, link, NEW)).status_code == 200
    assert (await login_status(env, "alice", NEW)) == 303


async def test_an_account_without_its_own_address_gets_no_link(env: Env) -> None:
    add_user(env.store, "bea", "Patient/p2")  # no address given
    patient = (await env.http.get("/fhir/Patient/p2", headers=_staff(env))).json()
    patient["telecom"] = [{"system": "email", "value": "bea@example.org"}]
    await staff_write(env, "PUT", "Patient/p2", patient)
    for name in ("bea", "bea@example.org"):
        assert (await _forgot(env.http, name)).status_code == 200
    await asyncio.sleep(1.0)
    assert env.data["mailbox"].snapshot() == []


async def test_the_address_given_at_sign_up_receives_the_link(env: Env) -> None:
    from smart_auth.admin import create_invitation
    from tests.smart_support import BASE

    invitation = create_invitation(env.store, "Patient/p3", server_url=BASE)
    page = await env.http.get("/auth/activate", params={"code": invitation["code"]})
    form = {
        "csrf": csrf_of(page.text),
        "code": invitation["code"],
        "username": "carol",
        "password": PASSWORD,
        "password2": PASSWORD,
        "email": "carol@example.org",
    }
    assert (await env.http.post("/auth/activate", data=form)).status_code == 201
    assert (await _forgot(env.http, "carol")).status_code == 200
    to, _ = await _link(env.data["mailbox"])
    assert to == "carol@example.org"


def _staff(env: Env) -> dict[str, str]:
    from tests.smart_support import system_headers

    return system_headers(env.auth)


async def login_status(env: Env, username: str, password: str) -> int:
    from tests.smart_support import auth_params, pkce, public_app, start

    _, challenge = pkce()
    await start(env.http, auth_params(public_app(env.store), challenge))
    return (await login(env.http, username, password)).status_code


async def test_unknown_names_get_the_same_answer_and_no_email(env: Env) -> None:
    add_user(env.store, "alice", "Patient/p1")  # no address anywhere
    known = await _forgot(env.http, "alice")
    unknown = await _forgot(env.http, "nobody-here")
    assert known.status_code == unknown.status_code == 200
    assert known.text.replace(csrf_of(known.text) if "csrf" in known.text else "", "") == (
        unknown.text.replace(csrf_of(unknown.text) if "csrf" in unknown.text else "", "")
    )
    await asyncio.sleep(1.0)
    assert env.data["mailbox"].snapshot() == []


async def test_an_old_or_forged_link_is_refused(env: Env) -> None:
    created = add_user(env.store, "alice", "Patient/p1")
    old = PasswordReset(hash_secret("old-token"), created["user_id"], int(time.time()) - 1)
    env.store.add_reset(old)
    for token in ("old-token", "made-up"):
        refused = await _reset(env.http, f"/auth/reset?token={token}", NEW)
        assert refused.status_code == 400
    assert (await login_status(env, "alice", PASSWORD)) == 303


async def test_concurrent_uses_of_one_link_change_it_once(env: Env) -> None:
    from smart_auth.admin import create_user

    create_user(env.store, "alice", PASSWORD, "Patient/p1", email="alice@example.org")
    await _forgot(env.http, "alice")
    _, link = await _link(env.data["mailbox"])
    page = await env.http.get(link)
    token = re.search(r'name="token" value="([^"]+)"', page.text)
    assert token is not None
    forms = [
        {"csrf": csrf_of(page.text), "token": token.group(1), "new": p, "again": p}
        for p in (NEW, "another good passphrase")
    ]
    results = await asyncio.gather(*(env.http.post("/auth/reset", data=f) for f in forms))
    assert sorted(r.status_code for r in results) == [200, 400]


async def test_without_a_mail_server_the_page_says_so(tmp_path: Path) -> None:
    async with app_on(storage_url("sqlite", tmp_path)) as env:
        page = await env.http.get("/auth/forgot")
        assert page.status_code == 404
        assert "cannot send emails" in page.text
