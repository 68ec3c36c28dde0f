"""The account page ``/auth/account`` (issue 21, ``smart_auth.account_pages``), over HTTP
against the real application with SMART on, every store: sign-in (with a code when
enrolled), connected apps and ending one, sign out everywhere, password change, and
setting two-step sign-in up and off."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pyotp
import pytest

from tests.conftest import STORES, storage_url
from tests.security_support import app_on, offline_launch, refresh
from tests.smart_support import PASSWORD, Env, add_user, csrf_of

NEW_PASSWORD = "a quieter horse, stapled"


@pytest.fixture(params=STORES)
async def env(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Env]:
    async with app_on(storage_url(request.param, tmp_path)) as env:
        add_user(env.store, "alice", "Patient/p1")
        yield env


async def _sign_in(http: httpx.AsyncClient, password: str = PASSWORD) -> httpx.Response:
    page = await http.get("/auth/account")
    assert page.status_code == 200 and 'action="http://testserver/auth/account/login"' in page.text
    return await http.post(
        "/auth/account/login",
        data={"csrf": csrf_of(page.text), "username": "alice", "password": password},
    )


async def _page(http: httpx.AsyncClient) -> httpx.Response:
    page = await http.get("/auth/account")
    assert page.status_code == 200
    assert "Signed in as" in page.text, page.text
    return page


async def _post(http: httpx.AsyncClient, path: str, **data: str) -> httpx.Response:
    page = await http.get("/auth/account")
    return await http.post(f"/auth/account/{path}", data={"csrf": csrf_of(page.text), **data})


async def test_a_user_signs_in_and_sees_the_connected_apps(env: Env) -> None:
    client_id, tokens = await offline_launch(env, "alice")
    wrong = await _sign_in(env.http, "not the password")
    assert wrong.status_code == 401
    signed_in = await _sign_in(env.http)
    assert signed_in.status_code == 303
    page = await _page(env.http)
    assert '<strong id="username">alice</strong>' in page.text
    assert "Alice Smith" in page.text
    assert "<strong>Portal</strong>" in page.text
    ended = await _post(env.http, "revoke", client_id=client_id)
    assert ended.status_code == 200 and "no longer has access" in ended.text
    assert "No app is connected" in ended.text
    assert (await refresh(env, client_id, tokens["refresh_token"])).status_code in (400, 401)


async def test_forms_need_the_session_and_its_csrf_token(env: Env) -> None:
    client_id, tokens = await offline_launch(env, "alice")
    anonymous = await env.http.post("/auth/account/revoke", data={"client_id": client_id})
    assert anonymous.status_code in (401, 403)
    await _sign_in(env.http)
    forged = await env.http.post("/auth/account/revoke", data={"client_id": client_id})
    assert forged.status_code == 403
    assert (await refresh(env, client_id, tokens["refresh_token"])).status_code == 200


async def test_sign_out_everywhere_ends_every_grant(env: Env) -> None:
    first, one = await offline_launch(env, "alice")
    second, two = await offline_launch(env, "alice")
    await _sign_in(env.http)
    out = await _post(env.http, "sign-out-everywhere")
    assert out.status_code == 200 and "signed out everywhere" in out.text
    assert (await refresh(env, first, one["refresh_token"])).status_code in (400, 401)
    assert (await refresh(env, second, two["refresh_token"])).status_code in (400, 401)
    again = await env.http.get("/auth/account")
    assert "Sign in to see" in again.text


async def test_a_password_change_checks_the_current_one_and_the_rules(env: Env) -> None:
    client_id, tokens = await offline_launch(env, "alice")
    await _sign_in(env.http)
    wrong = await _post(env.http, "password", current="nope", new=NEW_PASSWORD, again=NEW_PASSWORD)
    assert wrong.status_code == 400 and "current password is not right" in wrong.text
    common = await _post(env.http, "password", current=PASSWORD, new="password1", again="password1")
    assert common.status_code == 400 and "most common" in common.text
    changed = await _post(
        env.http, "password", current=PASSWORD, new=NEW_PASSWORD, again=NEW_PASSWORD
    )
    assert changed.status_code == 200 and "password is changed" in changed.text
    assert (await refresh(env, client_id, tokens["refresh_token"])).status_code in (400, 401)
    await _post(env.http, "sign-out")
    assert (await _sign_in(env.http)).status_code == 401
    assert (await _sign_in(env.http, NEW_PASSWORD)).status_code == 303


async def test_two_step_sign_in_is_set_up_and_turned_off_on_the_page(env: Env) -> None:
    await _sign_in(env.http)
    start = await env.http.get("/auth/account/mfa/enrol")
    assert start.status_code == 200 and "<svg" in start.text
    found = re.search(r'<code id="secret">([A-Z2-7]+)</code>', start.text)
    assert found is not None
    totp = pyotp.TOTP(found.group(1))
    earlier = totp.at(time.time() - 30)  # leaves the current code unused for below
    shown = await env.http.post(
        "/auth/account/mfa/enrol", data={"csrf": csrf_of(start.text), "code": earlier}
    )
    assert shown.status_code == 200
    assert len(re.findall(r"<li><code>[a-z0-9]{5}-[a-z0-9]{5}</code></li>", shown.text)) == 10
    done = await env.http.post("/auth/account/mfa/done", data={"csrf": csrf_of(shown.text)})
    assert done.status_code == 303
    assert "On: signing in asks for a code" in (await _page(env.http)).text

    await _post(env.http, "sign-out")
    asked = await _sign_in(env.http)
    assert asked.status_code == 200 and "Verification code" in asked.text
    passed = await env.http.post(
        "/auth/account/mfa", data={"csrf": csrf_of(asked.text), "code": totp.now()}
    )
    assert passed.status_code == 303
    await _page(env.http)

    bad = await _post(env.http, "mfa/off", code="000000" if totp.now() != "000000" else "111111")
    assert bad.status_code == 401
    off = await _post(env.http, "mfa/off", code=totp.at(time.time() + 30))
    assert off.status_code == 200 and "Two-step sign-in is off" in off.text
