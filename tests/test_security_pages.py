"""Security review of the sign-in pages (issue 14), over HTTP against the real app on
SQLite and the MongoDB stand-in:

- item 7: failed sign-ins are throttled per address and username, with waits that grow
  (``429`` + ``Retry-After``), never a lock-out that a stranger can cause; unknown
  usernames are answered exactly like known ones; the activation page tells whether a
  username is taken only to the holder of a valid code;
- item 11: a ``redirect_uri`` that is not a URI gets a ``400`` page, never a 500 or a
  redirect;
- item 14: consent uses up its authorization request, so a copy of the session cookie
  taken before consent gives no second code (in any server process);
- item 17: no secret reaches the logs, and one person gets one account whatever the
  invitations.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from fhir_server.app import create_app
from fhir_server.cli import main
from fhir_server.config import Settings
from fhir_server.redact import query_for_log, url_for_log
from smart_auth import throttle
from smart_auth.activation import Activation
from smart_auth.admin import AdminError, create_invitation, normalize_code
from smart_auth.pages import Pages
from smart_auth.passwords import hash_secret
from smart_auth.store import open_auth_store
from smart_auth.store.base import AuthStore, Invitation, Throttle
from smart_auth.throttle import LoginThrottle, client_address
from tests.conftest import STORES, storage_url
from tests.smart_support import (
    ORIGIN,
    PASSWORD,
    REDIRECT,
    add_user,
    auth_params,
    consent,
    csrf_of,
    exchange,
    login,
    pkce,
    public_app,
    redirect_params,
    seed,
    start,
)

ATTACKER = "203.0.113.7"
OWNER = "198.51.100.4"


@dataclass
class Server:
    """The app over one store, and browsers at given client addresses."""

    app: FastAPI
    store: AuthStore
    storage: str
    client_id: str

    def browser(self, address: str = "127.0.0.1") -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app, client=(address, 40000))
        return httpx.AsyncClient(transport=transport, base_url=ORIGIN)


@asynccontextmanager
async def serve(storage: str, **settings: Any) -> AsyncIterator[Server]:
    app = create_app(Settings(storage=storage, auth="smart", **settings))
    async with app.router.lifespan_context(app):
        store = app.state.auth.store
        server = Server(app, store, storage, "")
        async with server.browser() as http:
            await seed(http, app.state.auth)
        server.client_id = public_app(store)
        yield server


@pytest.fixture(params=STORES)
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return storage_url(request.param, tmp_path)


@pytest.fixture
async def server(storage: str) -> AsyncIterator[Server]:
    async with serve(storage, lockout_after=3, lockout_seconds=20) as running:
        add_user(running.store, "alice", "Patient/p1")
        yield running


class Clock:
    """The throttle's clock, moved by hand."""

    def __init__(self) -> None:
        self.now = int(time.time())

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fixed = Clock()
    monkeypatch.setattr(throttle, "_clock", fixed)
    return fixed


async def sign_in_page(server: Server, http: httpx.AsyncClient) -> None:
    """Start an authorization request in this browser (the login page needs one)."""
    _, challenge = pkce()
    started = await start(http, auth_params(server.client_id, challenge))
    assert started.status_code == 303, started.text


async def attempt(http: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    return await login(http, username, password)


def alert(page: httpx.Response) -> str:
    match = re.search(r'role="alert"[^>]*>([^<]*)<', page.text)
    assert match, page.text
    return match.group(1)


# -- item 7: throttling, not lock-out ------------------------------------------------------
async def test_failures_from_one_address_never_lock_the_owner_out(server: Server) -> None:
    async with server.browser(ATTACKER) as attacker, server.browser(OWNER) as owner:
        await sign_in_page(server, attacker)
        for _ in range(3):
            assert (await attempt(attacker, "alice", "guess")).status_code == 401
        held = await attempt(attacker, "alice", PASSWORD)  # even the right one waits
        assert held.status_code == 429
        assert held.headers["retry-after"] in ("1", "2")
        assert "Too many failed sign-ins" in alert(held)
        assert 'id="password"' in held.text  # the form is there to try again
        await sign_in_page(server, owner)
        signed_in = await attempt(owner, "alice", PASSWORD)
        assert signed_in.status_code == 303, signed_in.text
        assert signed_in.headers["location"].endswith("/auth/consent")


async def test_unknown_usernames_are_answered_like_known_ones(server: Server, clock: Clock) -> None:
    answers: dict[str, list[tuple[int, str | None, str]]] = {}
    async with server.browser(ATTACKER) as http:
        await sign_in_page(server, http)
        for name in ("alice", "ghost"):
            answers[name] = []
            for _ in range(5):
                page = await attempt(http, name, "guess")
                answers[name].append(
                    (page.status_code, page.headers.get("retry-after"), alert(page))
                )
    assert [status for status, _, _ in answers["alice"]] == [401, 401, 401, 429, 429]
    assert answers["alice"] == answers["ghost"]


async def test_waits_double_up_to_the_longest(server: Server, clock: Clock) -> None:
    """lockout_after=3, lockout_seconds=20: after the third failure the waits are 2, 4,
    8, 16, then 20 s; once a wait is over an attempt is admitted, and the right password
    clears the address's count."""
    async with server.browser(ATTACKER) as http:
        await sign_in_page(server, http)
        for _ in range(3):
            assert (await attempt(http, "alice", "guess")).status_code == 401
        for wait in (2, 4, 8, 16, 20, 20):
            held = await attempt(http, "alice", "guess")
            assert held.status_code == 429
            assert held.headers["retry-after"] == str(wait)
            clock.now += wait - 1
            assert (await attempt(http, "alice", "guess")).status_code == 429
            clock.now += 1
            assert (await attempt(http, "alice", "guess")).status_code == 401
        clock.now += 20
        assert (await attempt(http, "alice", PASSWORD)).status_code == 303
        await sign_in_page(server, http)
        assert (await attempt(http, "alice", "guess")).status_code == 401  # counted afresh


async def test_one_address_guessing_many_usernames_is_slowed(storage: str) -> None:
    """lockout_after=1: an address may fail 20 times an hour over all usernames."""
    async with (
        serve(storage, lockout_after=1, lockout_seconds=60) as server,
        server.browser(ATTACKER) as http,
        server.browser(OWNER) as other,
    ):
        await sign_in_page(server, http)
        for n in range(20):
            assert (await attempt(http, f"user{n}", "guess")).status_code == 401
        held = await attempt(http, "user-next", "guess")
        assert held.status_code == 429 and held.headers["retry-after"] in ("1", "2")
        await sign_in_page(server, other)
        assert (await attempt(other, "user-next", "guess")).status_code == 401


async def test_guessing_spread_over_addresses_gets_one_free_failure_each(
    server: Server,
) -> None:
    """Past 20 x lockout_after failures on one username (from anywhere), each address
    gets one free failure on it instead of three; an address that has not failed still
    signs in at once."""
    counter = LoginThrottle(server.store, 3, 20)
    for n in range(60):
        counter.failed("alice", f"192.0.2.{n}")
    async with server.browser(ATTACKER) as http, server.browser(OWNER) as owner:
        await sign_in_page(server, http)
        assert (await attempt(http, "alice", "guess")).status_code == 401
        assert (await attempt(http, "alice", "guess")).status_code == 429
        await sign_in_page(server, owner)
        assert (await attempt(owner, "alice", PASSWORD)).status_code == 303


async def test_parallel_attempts_cannot_slip_past_the_wait(server: Server) -> None:
    async with server.browser(ATTACKER) as http:
        await sign_in_page(server, http)
        page = await http.get("/auth/login")
        form = {"csrf": csrf_of(page.text), "username": "alice", "password": "guess"}
        answers = await asyncio.gather(*(http.post("/auth/login", data=form) for _ in range(10)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [401] * 3 + [429] * 7


def test_addresses_are_counted_by_ip_and_ipv6_by_their_64() -> None:
    assert client_address("203.0.113.7") == "203.0.113.7"
    assert client_address("2001:db8:1:2:aaaa::1") == client_address("2001:db8:1:2:bbbb::9")
    assert client_address("2001:db8:1:2::1") != client_address("2001:db8:1:3::1")
    assert client_address("::ffff:203.0.113.7") == "203.0.113.7"
    assert client_address(None) == "unknown"


def test_throttle_counts_hold_across_processes(storage: str) -> None:
    """Compare-and-set on the store: attempts racing from two store instances (two
    server processes) all count, and purge_expired forgets finished windows."""
    stores = [open_auth_store(storage), open_auth_store(storage)]
    try:
        counters = [LoginThrottle(s, 1000, 60) for s in stores]
        calls = [lambda c=c: c.admit("alice", ATTACKER) for c in counters * 5]
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=len(calls)) as pool:
            waits = list(pool.map(lambda call: call(), calls))
        assert waits == [0] * 10
        key = throttle._key("pair", "alice", ATTACKER)
        assert counters[0].failures(key) == 10
        current = stores[1].get_throttle(key)
        assert current is not None and current.failures == 10
        assert not stores[0].swap_throttle(key, Throttle(9, 0, 0), None)  # stale: refused
        stores[0].purge_expired(now=current.window_end + 1)
        assert stores[1].get_throttle(key) is None
        # what is stored is hashed: no username or address in clear
        assert "alice" not in key and ATTACKER not in key
    finally:
        for s in stores:
            s.close()


# -- item 7: activation does not reveal usernames ------------------------------------------
async def activate(
    http: httpx.AsyncClient, code: str, username: str, password: str = PASSWORD
) -> httpx.Response:
    page = await http.get("/auth/activate")
    return await http.post(
        "/auth/activate",
        data={
            "csrf": csrf_of(page.text),
            "code": code,
            "username": username,
            "password": password,
            "password2": password,
        },
    )


async def test_activation_answers_the_same_for_taken_and_free_usernames(server: Server) -> None:
    code = create_invitation(server.store, "Patient/p2", server_url=ORIGIN)["code"]
    async with server.browser() as http:
        taken = await activate(http, "WRONG-CODE-0000", "alice")
        free = await activate(http, "WRONG-CODE-0000", "nobody-yet")
        assert taken.status_code == free.status_code == 400
        assert alert(taken) == alert(free) == "That activation code is not right."
        # the holder of a valid code may learn that a name is taken, and keeps the code
        holder = await activate(http, code, "ALICE")
        assert holder.status_code == 400 and "taken" in alert(holder)
        assert (await activate(http, code, "bob.jones")).status_code == 201


async def test_username_taken_meanwhile_gives_the_code_back(server: Server) -> None:
    """The race the early check cannot see: the username appears between the check and
    the account's creation; the code is not spent."""
    code = create_invitation(server.store, "Patient/p2", server_url=ORIGIN)["code"]
    activation = Activation(Pages(server.app.state.auth))
    code_hash = hash_secret(normalize_code(code))
    answer = await asyncio.to_thread(activation.create, code_hash, "alice", "hash")
    assert answer is not None and "taken" in answer
    invitation = server.store.get_invitation(code_hash)
    assert invitation is not None and invitation.used_at is None


# -- item 17: one person, one account ------------------------------------------------------
async def test_no_invitation_for_a_patient_with_an_account(server: Server) -> None:
    with pytest.raises(AdminError, match=r"Patient/p1 already has an account \(alice\)"):
        create_invitation(server.store, "Patient/p1", server_url=ORIGIN)


async def test_fhir_server_invite_refuses_a_patient_with_an_account(
    server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    if not server.storage.startswith("sqlite:"):
        pytest.skip("the command runs as another process would: a file it can open")
    args = ["invite", "Patient/p1", "--storage", server.storage, "--base-url", ORIGIN]
    capsys.readouterr()
    assert await asyncio.to_thread(main, args) == 2
    assert "already has an account (alice)" in capsys.readouterr().err
    assert await asyncio.to_thread(main, ["invite", "Patient/p2", *args[2:]]) == 0
    assert json.loads(capsys.readouterr().out)["replaced"] == 0


async def test_a_new_invitation_replaces_the_unused_one(server: Server) -> None:
    first = create_invitation(server.store, "Patient/p2", server_url=ORIGIN)
    second = create_invitation(server.store, "Patient/p2", server_url=ORIGIN)
    assert (first["replaced"], second["replaced"]) == (0, 1)
    async with server.browser() as http:
        old = await activate(http, first["code"], "bob")
        assert old.status_code == 400 and "replaced" in alert(old)
        assert (await activate(http, second["code"], "bob")).status_code == 201
    assert [u.username for u in server.store.users_for("Patient/p2")] == ["bob"]


async def test_two_live_invitations_still_make_one_account(server: Server) -> None:
    """Invitations left by an earlier release (both usable): the second code is refused
    once the first made the account, and stays unused."""
    now = int(time.time())
    codes = ["AAAA-BBBB-CCCC-DDDD", "EEEE-FFFF-GGGG-HHHH"]
    for code in codes:
        server.store.add_invitation(
            Invitation(hash_secret(normalize_code(code)), "Patient/p3", now + 3600, None, now)
        )
    async with server.browser() as http:
        assert (await activate(http, codes[0], "carol")).status_code == 201
        again = await activate(http, codes[1], "carol2")
        assert again.status_code == 400
        assert "already have an account" in alert(again)
    assert [u.username for u in server.store.users_for("Patient/p3")] == ["carol"]
    left = server.store.get_invitation(hash_secret(normalize_code(codes[1])))
    assert left is not None and left.used_at is None


# -- item 11: redirect_uri that is not a URI -----------------------------------------------
@pytest.mark.parametrize(
    "redirect_uri",
    [
        'https://app.example/callback"x',
        "https://app.example/call\\back",
        "https://app.example/callback\nLocation: https://evil.example/",
        "https://app.example/callbäck",
        "https://app.example/call back",
    ],
)
async def test_redirect_uri_that_is_not_a_uri_gets_an_error_page(
    server: Server, redirect_uri: str
) -> None:
    _, challenge = pkce()
    params = auth_params(server.client_id, challenge, redirect_uri=redirect_uri)
    async with server.browser() as http:
        for answer in (
            await http.get("/auth/authorize", params=params),
            await http.post("/auth/authorize", data=params),
        ):
            assert answer.status_code == 400, answer.text
            assert "location" not in answer.headers
            assert answer.headers["content-type"].startswith("text/html")
            assert "redirect_uri is not a valid URI" in answer.text


async def test_other_parameters_authlib_cannot_quote_are_a_400_page(server: Server) -> None:
    _, challenge = pkce()
    params = auth_params(server.client_id, challenge, response_type='co"de')
    async with server.browser() as http:
        answer = await http.get("/auth/authorize", params=params)
    assert answer.status_code == 400, answer.text
    assert "location" not in answer.headers
    assert "invalid_request" in answer.text


async def test_redirect_is_never_to_an_unregistered_uri_either(server: Server) -> None:
    """The plain case next to item 11: a well-formed but unregistered URI is a page too."""
    _, challenge = pkce()
    params = auth_params(server.client_id, challenge, redirect_uri=REDIRECT + "/other")
    async with server.browser() as http:
        answer = await http.get("/auth/authorize", params=params)
    assert answer.status_code == 400 and "location" not in answer.headers


# -- item 14: one consent per authorization request ----------------------------------------
async def reach_consent(server: Server, http: httpx.AsyncClient) -> tuple[str, httpx.Cookies]:
    """Sign alice in up to the consent page; the code verifier and a copy of the cookies."""
    verifier, challenge = pkce()
    await start(http, auth_params(server.client_id, challenge))
    assert (await login(http, "alice")).status_code == 303
    assert (await http.get("/auth/consent")).status_code == 200
    return verifier, httpx.Cookies(http.cookies)


async def test_cookie_copied_before_consent_gives_no_second_code(server: Server) -> None:
    async with server.browser() as http:
        verifier, copied = await reach_consent(server, http)
        code = redirect_params(await consent(http))["code"]
        assert (await exchange(http, server.client_id, code, verifier)).status_code == 200
        http.cookies = copied
        page = await http.get("/auth/consent")  # the page still shows ...
        replay = await http.post(
            "/auth/consent", data={"csrf": csrf_of(page.text), "decision": "allow"}
        )
        assert replay.status_code == 400, replay.text  # ... but mints nothing
        assert "location" not in replay.headers
        assert "no longer in progress" in replay.text


async def test_a_denied_request_cannot_be_allowed_with_its_old_cookie(server: Server) -> None:
    async with server.browser() as http:
        _, copied = await reach_consent(server, http)
        denied = redirect_params(await consent(http, decision="deny"))
        assert denied["error"] == "access_denied"
        http.cookies = copied
        replay = await consent(http)
        assert replay.status_code == 400 and "location" not in replay.headers


async def test_consent_is_once_across_server_processes(server: Server) -> None:
    """Two apps (two processes) over one store: a cookie used up on one is refused on
    the other."""
    async with (
        serve(server.storage) as other,
        server.browser() as first,
        other.browser() as second,
    ):
        _, copied = await reach_consent(server, first)
        second.cookies = copied
        assert "code" in redirect_params(await consent(first))
        replay = await consent(second)
        assert replay.status_code == 400 and "location" not in replay.headers


# -- item 17: secrets out of the logs ------------------------------------------------------
def test_query_strings_lose_their_secrets() -> None:
    assert query_for_log("/auth/activate", "code=ABCD-EFGH-JKLM-NPQR") == "code=***"
    assert query_for_log("/fhir/Observation", "code=http://loinc.org%7C1234-5&patient=1") == (
        "code=http://loinc.org%7C1234-5&patient=1"
    )
    assert query_for_log("/fhir/Patient", "access_token=abc&Access%5FToken=d&_count=1") == (
        "access_token=***&Access%5FToken=***&_count=1"
    )
    assert query_for_log("/auth/authorize", "launch=L1&state=s&client_secret=x") == (
        "launch=***&state=s&client_secret=***"
    )
    assert query_for_log("/auth/token", "password&PASSWORD=1") == "password&PASSWORD=***"


def test_storage_urls_lose_their_passwords() -> None:
    assert url_for_log("mongodb://app:s3cret@db1:27017,db2/fhir?replicaSet=rs") == (
        "mongodb://app:***@db1:27017,db2/fhir?replicaSet=rs"
    )
    assert url_for_log("mongodb+srv://u:p@c.example.net/?tlsCertificateKeyFilePassword=k") == (
        "mongodb+srv://u:***@c.example.net/?tlsCertificateKeyFilePassword=***"
    )
    assert url_for_log("sqlite:////data/fhir.sqlite3") == "sqlite:////data/fhir.sqlite3"
    assert url_for_log("mongodb://db1/fhir") == "mongodb://db1/fhir"


@pytest.fixture
def every_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.DEBUG)
    yield caplog


async def test_no_secret_reaches_the_log(
    server: Server, every_log: pytest.LogCaptureFixture
) -> None:
    """A whole patient story (invitation link, activation, sign-in, code, tokens,
    refresh, a FHIR call with a token in the query) and no secret in any log line."""
    invitation = create_invitation(server.store, "Patient/p3", server_url=f"{ORIGIN}/fhir")
    secrets_seen: list[str] = [invitation["code"], PASSWORD]
    async with server.browser() as http:
        page = await http.get(invitation["link"])
        assert page.status_code == 200
        created = await activate(http, invitation["code"], "carol")
        assert created.status_code == 201
        verifier, challenge = pkce()
        await start(http, auth_params(server.client_id, challenge))
        assert (await login(http, "carol")).status_code == 303
        code = redirect_params(await consent(http))["code"]
        tokens = (await exchange(http, server.client_id, code, verifier)).json()
        refreshed = await http.post(
            "/auth/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": tokens["refresh_token"],
                "client_id": server.client_id,
            },
        )
        assert refreshed.status_code == 200, refreshed.text
        await http.get("/fhir/Patient/p3", params={"access_token": tokens["access_token"]})
        await http.get("/auth/token", params={"refresh_token": refreshed.json()["refresh_token"]})
        await http.get("/auth/authorize", params={"code": code, "code_verifier": verifier})
    secrets_seen += [code, verifier, tokens["access_token"], tokens["refresh_token"]]
    secrets_seen.append(refreshed.json()["refresh_token"])
    server_lines = [r for r in every_log.records if not r.name.startswith(("httpx", "httpcore"))]
    text = "\n".join(map(logging.Formatter().format, server_lines))  # with any traceback
    assert "/auth/activate?code=***" in text
    for secret in secrets_seen:
        assert secret not in text
        assert normalize_code(secret) not in text


async def test_store_url_password_not_logged(
    tmp_path: Path, every_log: pytest.LogCaptureFixture
) -> None:
    url = f"mongomock://app:s3cret@{tmp_path.name}/fhir"
    app = create_app(Settings(storage=url, auth="smart"))
    async with app.router.lifespan_context(app):
        pass
    lines = [r.getMessage() for r in every_log.records if r.getMessage().startswith("store open")]
    assert lines == [f"store open: mongomock://app:***@{tmp_path.name}/fhir"]
