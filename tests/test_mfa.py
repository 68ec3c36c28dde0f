"""Two-step sign-in with TOTP (issue 21, ``smart_auth.mfa``): over HTTP against the real
application with SMART on, every store. A user with a second factor gets no token
without a right, unused code; ``FHIR_SERVER_MFA=staff`` makes practitioners enrol before
their first token (QR code, first code, recovery codes) while patients sign in as
before; recovery codes work once; the help desk's ``users mfa-reset`` removes it."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pyotp
import pytest

from fhir_server.cli import main
from smart_auth import mfa
from tests.conftest import STORES, storage_url
from tests.security_support import app_on
from tests.smart_support import (
    Env,
    add_user,
    auth_params,
    consent,
    csrf_of,
    exchange,
    login,
    pkce,
    public_app,
    redirect_params,
    start,
)


async def _env(request: pytest.FixtureRequest, tmp_path: Path, policy: str) -> AsyncIterator[Env]:
    async with app_on(storage_url(request.param, tmp_path), mfa=policy) as env:
        add_user(env.store, "alice", "Patient/p1")
        add_user(env.store, "drwho", "Practitioner/dr")
        yield env


@pytest.fixture(params=STORES)
async def env(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Env]:
    async for env in _env(request, tmp_path, "optional"):
        yield env


@pytest.fixture(params=STORES)
async def staff_env(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Env]:
    async for env in _env(request, tmp_path, "staff"):
        yield env


def _enrol(env: Env, username: str) -> tuple[str, list[str]]:
    """Enrol ``username`` as the account page would: (secret, recovery codes)."""
    user = env.store.find_user(username)
    assert user is not None
    factor = mfa.start_enrolment(env.store, user.user_id)
    # confirmed with the code of the previous 30 s step (accepted: clock drift), so the
    # current one is still unused for the test
    earlier = pyotp.TOTP(factor.secret).at(time.time() - 30)
    codes = mfa.confirm_enrolment(env.store, user.user_id, earlier)
    assert codes is not None and len(codes) == 10
    return factor.secret, codes


async def _password_step(env: Env, username: str) -> tuple[str, str]:
    """Start a launch and give the password: (where it leads, the PKCE verifier)."""
    verifier, challenge = pkce()
    client_id = public_app(env.store)
    env.data["client_id"] = client_id
    started = await start(env.http, auth_params(client_id, challenge))
    assert started.status_code == 303
    response = await login(env.http, username)
    assert response.status_code == 303, response.text
    return response.headers["location"], verifier


async def _code(http: httpx.AsyncClient, code: str) -> httpx.Response:
    page = await http.get("/auth/mfa")
    assert page.status_code == 200, page.text
    return await http.post("/auth/mfa", data={"csrf": csrf_of(page.text), "code": code})


async def _token(env: Env, verifier: str) -> httpx.Response:
    params = redirect_params(await consent(env.http))
    return await exchange(env.http, env.data["client_id"], params["code"], verifier)


async def test_no_token_without_the_second_factor(env: Env) -> None:
    secret, _ = _enrol(env, "alice")
    where, verifier = await _password_step(env, "alice")
    assert where.endswith("/auth/mfa")
    skipped = await env.http.get("/auth/consent")  # the password alone goes no further
    assert skipped.status_code == 400
    assert "Sign-in expired" in skipped.text
    wrong = await _code(env.http, "000000" if pyotp.TOTP(secret).now() != "000000" else "111111")
    assert wrong.status_code == 401
    assert "not right" in wrong.text
    right = await _code(env.http, pyotp.TOTP(secret).now())
    assert right.status_code == 303, right.text
    assert right.headers["location"].endswith("/auth/consent")
    token = await _token(env, verifier)
    assert token.status_code == 200, token.text
    assert token.json()["patient"] == "p1"


async def test_a_code_works_once(env: Env) -> None:
    secret, _ = _enrol(env, "alice")
    code = pyotp.TOTP(secret).now()
    await _password_step(env, "alice")
    assert (await _code(env.http, code)).status_code == 303
    await _password_step(env, "alice")
    replay = await _code(env.http, code)
    assert replay.status_code == 401


async def test_a_recovery_code_works_once(env: Env) -> None:
    _, codes = _enrol(env, "alice")
    _, verifier = await _password_step(env, "alice")
    assert (await _code(env.http, codes[0].upper())).status_code == 303
    assert (await _token(env, verifier)).status_code == 200
    await _password_step(env, "alice")
    assert (await _code(env.http, codes[0])).status_code == 401
    assert (await _code(env.http, codes[1])).status_code == 303


async def test_users_without_a_factor_sign_in_as_before(env: Env) -> None:
    where, verifier = await _password_step(env, "alice")
    assert where.endswith("/auth/consent")
    assert (await _token(env, verifier)).status_code == 200


async def test_wrong_codes_are_throttled(env: Env) -> None:
    secret, _ = _enrol(env, "alice")
    right = pyotp.TOTP(secret).now()
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    await _password_step(env, "alice")
    statuses = [(await _code(env.http, wrong)).status_code for _ in range(6)]
    assert statuses[:5] == [401] * 5
    assert statuses[5] == 429


async def test_staff_policy_makes_practitioners_enrol_first(staff_env: Env) -> None:
    env = staff_env
    patient_where, _ = await _password_step(env, "alice")
    assert patient_where.endswith("/auth/consent")  # patients are not asked

    where, _ = await _password_step(env, "drwho")
    assert where.endswith("/auth/mfa/enrol")
    assert (await env.http.get("/auth/consent")).status_code != 200
    page = await env.http.get("/auth/mfa/enrol")
    assert page.status_code == 200
    assert "<svg" in page.text
    secret = re.search(r'<code id="secret">([A-Z2-7]+)</code>', page.text)
    assert secret is not None
    csrf = csrf_of(page.text)
    bad = await env.http.post("/auth/mfa/enrol", data={"csrf": csrf, "code": "12345"})
    assert bad.status_code == 401
    code = pyotp.TOTP(secret.group(1)).now()
    shown = await env.http.post("/auth/mfa/enrol", data={"csrf": csrf, "code": code})
    assert shown.status_code == 200
    recovery = re.findall(r"<li><code>([a-z0-9]{5}-[a-z0-9]{5})</code></li>", shown.text)
    assert len(recovery) == 10
    onward = await env.http.post("/auth/mfa/continue", data={"csrf": csrf_of(shown.text)})
    assert onward.status_code == 303
    assert onward.headers["location"].endswith(("/auth/patient", "/auth/consent"))
    user = env.store.find_user("drwho")
    assert user is not None and mfa.enrolled(env.store, user.user_id)
    # the next sign-in asks for a code
    again, _ = await _password_step(env, "drwho")
    assert again.endswith("/auth/mfa")


def test_the_help_desk_removes_a_factor(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'fhir.sqlite3'}"
    from smart_auth.store import open_auth_store

    store = open_auth_store(storage)
    try:
        created = add_user(store, "alice", "Patient/p1")
        factor = mfa.start_enrolment(store, created["user_id"])
        mfa.confirm_enrolment(store, created["user_id"], pyotp.TOTP(factor.secret).now())
        assert mfa.enrolled(store, created["user_id"])
    finally:
        store.close()
    assert main(["users", "mfa-reset", "alice", "--storage", storage]) == 0
    assert '"mfa_removed": true' in capsys.readouterr().out
    store = open_auth_store(storage)
    try:
        assert not mfa.enrolled(store, created["user_id"])
    finally:
        store.close()
