"""Helpers for the SMART end-to-end tests: the real application
(``create_app(Settings(auth="smart"))`` over a SQLite file) seeded with FHIR resources
through its own API, the steps of a browser sign-in driven over HTTP (forms with their
CSRF tokens), a small static HTTP server on 127.0.0.1 (the pages of a browser app, or a
client's JWKS), and signed client assertions.

The authorization server answers "which patients may this user act for?" from the FHIR
data through the real ``fhir_server.auth_hooks.StoreHooks``: the seed below holds the
patients, the RelatedPersons (current, ended, inactive, not yet started), a Practitioner
and an Encounter those questions are about.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import secrets
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from fastapi import FastAPI
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from fhir_server.app import create_app
from fhir_server.config import Settings
from smart_auth.admin import create_client, create_user
from smart_auth.service import SmartAuth
from smart_auth.store.base import AuthStore
from tests.live import LiveServer

ORIGIN = "http://testserver"
BASE = f"{ORIGIN}/fhir"
TOKEN_URL = f"{ORIGIN}/auth/token"
REDIRECT = "https://app.example/callback"
PASSWORD = "correct horse battery"

PATIENTS = {"p1": ("Alice", "Smith"), "p2": ("Bob", "Jones"), "p3": ("Carol", "White")}


def patient_name(pid: str) -> str:
    """ "Alice Smith"."""
    return " ".join(PATIENTS[pid])


def _related(rid: str, patient: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "RelatedPerson",
        "id": rid,
        "patient": {"reference": f"Patient/{patient}"},
        "name": [{"family": "Smith", "given": ["Mary"]}],
        **extra,
    }


def _observation(oid: str, patient: str, code: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": f"Patient/{patient}"},
        "valueQuantity": {"value": 70, "unit": "kg"},
    }


SEED: list[dict[str, Any]] = [
    *(
        {"resourceType": "Patient", "id": pid, "name": [{"family": family, "given": [given]}]}
        for pid, (given, family) in PATIENTS.items()
    ),
    {"resourceType": "Practitioner", "id": "dr", "name": [{"family": "Who", "given": ["John"]}]},
    {
        "resourceType": "Encounter",
        "id": "e1",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": "Patient/p2"},
    },
    # Mary acts for Alice: active, within her period
    _related("rp1", "p1", active=True, period={"start": "2020-01-01"}),
    # ... and these do not (any more, or not yet)
    _related("rp-ended", "p1", active=True, period={"start": "2019-01-01", "end": "2021-06-30"}),
    _related("rp-inactive", "p1", active=False),
    _related("rp-future", "p1", period={"start": "2999-01-01"}),
    _observation("o1", "p1", "29463-7"),
    _observation("o1b", "p1", "8302-2"),
    _observation("o2", "p2", "29463-7"),
]


@dataclass
class Env:
    """The running app, its authorization server and an HTTP client for it."""

    auth: SmartAuth
    store: AuthStore
    http: httpx.AsyncClient
    data: dict[str, Any] = field(default_factory=dict)


def storage_of(tmp_path: Path) -> str:
    """The SQLite storage URL of a test (FHIR data and auth tables in one file)."""
    return f"sqlite:///{tmp_path / 'fhir.sqlite3'}"


def system_headers(auth: SmartAuth, base: str = BASE) -> dict[str, str]:
    """A backend-service token that may do anything (to seed the data)."""
    token, _ = auth.token_service().issue_access_token(
        issuer=base, audience=base, client_id="seeder", scope="system/*.cruds"
    )
    return {"Authorization": f"Bearer {token}"}


async def seed(http: httpx.AsyncClient, auth: SmartAuth) -> None:
    """PUT the seed resources through the FHIR API."""
    headers = system_headers(auth)
    for resource in SEED:
        path = f"/fhir/{resource['resourceType']}/{resource['id']}"
        response = await http.put(path, json=resource, headers=headers)
        assert response.status_code in (200, 201), response.text


@asynccontextmanager
async def real_app(tmp_path: Path, **settings: Any) -> AsyncIterator[Env]:
    """The real application with SMART on, seeded, driven in-process."""
    storage = storage_of(tmp_path)
    app: FastAPI = create_app(Settings(storage=storage, auth="smart", **settings))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as http:
            auth: SmartAuth = app.state.auth
            await seed(http, auth)
            yield Env(auth, auth.store, http, {"storage": storage, "app": app})


def seed_storage(tmp_path: Path) -> str:
    """Seed a SQLite file through the real app (for a live server started on it after);
    returns its storage URL."""

    async def run() -> None:
        async with real_app(tmp_path):
            pass

    asyncio.run(run())
    return storage_of(tmp_path)


@contextmanager
def live_smart_server(tmp_path: Path) -> Iterator[LiveServer]:
    """``fhir-server serve`` with SMART on, over a seeded SQLite file; users and clients
    can be added to that file (``fhir-server users create --storage ...``) while it runs."""
    server = LiveServer(seed_storage(tmp_path), tmp_path / "server.log", auth="smart")
    try:
        yield server
    finally:
        server.stop()


# -- headless Chromium (selenium) -----------------------------------------------------------
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
NO_CHROMIUM = not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists())
NO_CHROMIUM_REASON = (
    "Chromium and chromedriver are not installed (scripts/setup_browser.sh, or"
    " apt-get install chromium chromium-driver)"
)


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium with a fresh profile, driven by selenium."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def sign_in_and_allow(driver: Any, username: str, password: str = PASSWORD) -> None:
    """Fill in the login form, then allow everything on the consent page."""
    from selenium.webdriver.common.by import By

    wait_for_heading(driver, "Sign in")
    driver.find_element(By.ID, "username").send_keys(username)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.ID, "sign-in").click()
    wait_for_heading(driver, "Allow")
    driver.find_element(By.ID, "allow").click()


def wait_for_heading(driver: Any, text: str, timeout: float = 20) -> None:
    """Wait until the page loaded in the browser has an ``h1`` containing ``text`` (a
    click that submits a form does not wait for the next page)."""
    from selenium.common.exceptions import (
        NoSuchElementException,
        StaleElementReferenceException,
        WebDriverException,
    )
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    def found(d: Any) -> bool:
        try:
            return text in d.find_element(By.TAG_NAME, "h1").text
        except WebDriverException as error:
            # the page navigated between finding the heading and reading it; Chromium
            # may say so as "Node with given id does not belong to the document"
            if "does not belong to the document" in str(error):
                return False
            raise

    ignored = (NoSuchElementException, StaleElementReferenceException)
    try:
        WebDriverWait(driver, timeout, ignored_exceptions=ignored).until(found)
    except Exception as error:
        raise AssertionError(f"no heading {text!r} on {driver.current_url}") from error


# -- the browser flow over HTTP --------------------------------------------------------------
def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, html
    return match.group(1)


def add_user(store: AuthStore, username: str, fhir_user: str | None) -> dict[str, Any]:
    return create_user(store, username, PASSWORD, fhir_user)


def public_app(store: AuthStore, **kwargs: Any) -> str:
    return create_client(store, "Portal", auth="none", redirect_uris=[REDIRECT], **kwargs)[
        "client_id"
    ]


def auth_params(
    client_id: str,
    challenge: str,
    scope: str = "launch/patient openid fhirUser offline_access patient/*.rs",
    **extra: str,
) -> dict[str, str]:
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "scope": scope,
        "state": "st-123",
        "aud": BASE,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    params.update(extra)
    return {k: v for k, v in params.items() if v is not None}


async def start(http: httpx.AsyncClient, params: dict[str, str]) -> httpx.Response:
    return await http.get("/auth/authorize", params=params)


async def login(http: httpx.AsyncClient, username: str, password: str = PASSWORD) -> httpx.Response:
    page = await http.get("/auth/login")
    assert page.status_code == 200, page.text
    return await http.post(
        "/auth/login",
        data={"csrf": csrf_of(page.text), "username": username, "password": password},
    )


async def consent(
    http: httpx.AsyncClient, decision: str = "allow", untick: tuple[str, ...] = ()
) -> httpx.Response:
    page = await http.get("/auth/consent")
    assert page.status_code == 200, page.text
    scopes = re.findall(r'name="scope" value="([^"]+)"', page.text)
    kept = [s.replace("&amp;", "&") for s in scopes if s not in untick]
    data = {"csrf": csrf_of(page.text), "decision": decision, "scope": kept}
    return await http.post("/auth/consent", data=data)


def redirect_params(response: httpx.Response, redirect: str = REDIRECT) -> dict[str, str]:
    assert response.status_code in (302, 303), response.text
    location = response.headers["location"]
    assert location.startswith(redirect), location
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


async def get_code(
    env: Env, client_id: str, username: str, verifier_challenge: tuple[str, str], **extra: Any
) -> str:
    """Run the whole browser flow for a user with one patient; the code."""
    _, challenge = verifier_challenge
    started = await start(env.http, auth_params(client_id, challenge, **extra))
    assert started.status_code == 303, started.text
    logged_in = await login(env.http, username)
    assert logged_in.status_code == 303, logged_in.text
    assert logged_in.headers["location"].endswith("/auth/consent")
    params = redirect_params(await consent(env.http))
    assert params["state"] == "st-123"
    return params["code"]


async def exchange(
    http: httpx.AsyncClient, client_id: str, code: str, verifier: str, **extra: str
) -> httpx.Response:
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "client_id": client_id,
        "code_verifier": verifier,
        **extra,
    }
    return await http.post("/auth/token", data=data)


async def launch_tokens(
    env: Env, username: str, scope: str = "launch/patient openid fhirUser patient/*.rs"
) -> dict[str, Any]:
    """A standalone launch by a user with one patient; the token response."""
    client_id = public_app(env.store)
    verifier, challenge = pkce()
    code = await get_code(env, client_id, username, (verifier, challenge), scope=scope)
    response = await exchange(env.http, client_id, code, verifier)
    assert response.status_code == 200, response.text
    return dict(response.json())


def bearer_of(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


# -- a static HTTP server on 127.0.0.1 ------------------------------------------------------
class StaticServer:
    """Serves files of a directory and fixed documents, on a free port of 127.0.0.1, in a
    thread (for the pages of a browser app, or a client's ``jwks_uri``)."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory
        self.documents: dict[str, tuple[str, bytes]] = {}
        self.requests: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                path = urlsplit(self.path).path
                owner.requests.append(path)
                found = owner.lookup(path)
                status, kind, body = (200, *found) if found else (404, "text/plain", b"none")
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def lookup(self, path: str) -> tuple[str, bytes] | None:
        if path in self.documents:
            return self.documents[path]
        if self.directory is None:
            return None
        file = (self.directory / path.lstrip("/")).resolve()
        if not file.is_file() or self.directory.resolve() not in file.parents:
            return None
        kinds = {".html": "text/html; charset=utf-8", ".js": "text/javascript"}
        return kinds.get(file.suffix, "application/octet-stream"), file.read_bytes()

    def __enter__(self) -> StaticServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@contextmanager
def static_server(directory: Path | None = None) -> Iterator[StaticServer]:
    with StaticServer(directory) as server:
        yield server


# -- client assertions (RFC 7523) -----------------------------------------------------------
def rsa_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": uuid.uuid4().hex})


def ec_key() -> ECKey:
    return ECKey.generate_key("P-384", parameters={"kid": uuid.uuid4().hex})


def public_jwks(*keys: Any) -> dict[str, Any]:
    return {"keys": [k.as_dict(private=False) for k in keys]}


def assertion(
    key: Any,
    client_id: str,
    *,
    alg: str,
    aud: str = TOKEN_URL,
    lifetime: int = 240,
    jti: str | None = None,
) -> str:
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": aud,
        "exp": now + lifetime,
        "iat": now,
        "jti": jti or uuid.uuid4().hex,
    }
    return jwt.encode({"alg": alg, "kid": key.kid, "typ": "JWT"}, claims, key, algorithms=[alg])


ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
