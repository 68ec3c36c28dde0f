"""The server side of the patient portal (issue 22), in-process on every store: the app
served at /portal/ with its settings and a Content-Security-Policy, FHIR_SERVER_PORTAL=off,
the public SMART client registered at start-up (and kept up to date), and the demo
sign-ins of ``fhir-server demo-data --users``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhir_server.app import create_app
from fhir_server.config import Settings
from fhir_server.demo.users import CAREGIVER_OF_TWO, create_sign_ins, demo_sign_ins, write_person
from fhir_server.demo_data import Population
from fhir_server.portal import STATIC, portal_redirect_uris, register_portal
from tests.conftest import STORES, storage_url

ORIGIN = "http://testserver"


async def _serving(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as http:
            yield http, app


@pytest.fixture(params=STORES)
async def served(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    settings = Settings(storage=storage_url(request.param, tmp_path), auth="smart", port=8123)
    async for pair in _serving(settings):
        yield pair


async def test_the_app_is_served_with_its_settings(served: Any) -> None:
    http, _ = served
    moved = await http.get("/portal")
    assert moved.status_code == 308 and moved.headers["location"].endswith("/portal/")
    page = await http.get("/portal/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "<title>Patient portal</title>" in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    script = page.text.split('<script src="')[1].split('"')[0]
    asset = await http.get(f"/portal/{script}")
    assert asset.status_code == 200 and asset.headers["content-type"].startswith("text/javascript")
    assert "immutable" in asset.headers["cache-control"]
    config = (await http.get("/portal/config.json")).json()
    assert config == {
        "fhirBaseUrl": f"{ORIGIN}/fhir",
        "clientId": "fhir-server-portal",
        "scope": "openid fhirUser launch/patient online_access patient/*.rs"
        " patient/DocumentReference.c patient/Communication.cu patient/Binary.c patient/Task.c"
        " patient/Basic.cu patient/Appointment.cu",
        "signIn": True,
    }
    manifest = (await http.get("/portal/manifest.webmanifest")).json()
    sizes = {icon["sizes"] for icon in manifest["icons"]}
    assert {"192x192", "512x512"} <= sizes
    icon = await http.get("/portal/icon-512.png")
    assert icon.content.startswith(b"\x89PNG") and icon.headers["content-type"] == "image/png"


async def test_no_file_outside_the_app_is_served(served: Any) -> None:
    http, _ = served
    for path in (
        "/portal/../fhir_server/config.py",
        "/portal/%2e%2e/__init__.py",
        "/portal/nope.js",
    ):
        response = await http.get(path)
        assert response.status_code == 404, path
        assert response.json()["resourceType"] == "OperationOutcome"


async def test_the_portal_client_is_registered_at_start_up(served: Any) -> None:
    http, app = served
    client = app.state.auth.store.get_client("fhir-server-portal")
    assert client is not None and client.token_endpoint_auth_method == "none"
    assert client.redirect_uris == [
        "http://127.0.0.1:8123/portal/",
        "http://localhost:8123/portal/",
    ]
    # the app's sign-in request is accepted by the authorization server (login page next)
    params = {
        "response_type": "code",
        "client_id": "fhir-server-portal",
        "redirect_uri": "http://127.0.0.1:8123/portal/",
        "scope": "openid fhirUser launch/patient online_access patient/*.rs"
        " patient/DocumentReference.c patient/Communication.cu patient/Binary.c patient/Task.c"
        " patient/Basic.cu patient/Appointment.cu",
        "state": "s",
        "aud": f"{ORIGIN}/fhir",
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        "code_challenge_method": "S256",
    }
    started = await http.get("/auth/authorize", params=params)
    assert started.status_code in (302, 303) and "/auth/login" in started.headers["location"]


def test_a_new_address_adds_its_redirect_uri_and_nothing_else(tmp_path: Path) -> None:
    from smart_auth.store import open_auth_store

    storage = storage_url("sqlite", tmp_path)
    store = open_auth_store(storage)
    try:
        register_portal(store, Settings(storage=storage, port=8080))
        again = register_portal(
            store, Settings(storage=storage, port=9000, base_url="https://care.example.org/fhir")
        )
        assert again["redirect_uris"] == [
            "http://127.0.0.1:8080/portal/",
            "http://localhost:8080/portal/",
            "https://care.example.org/portal/",
            "http://127.0.0.1:9000/portal/",
            "http://localhost:9000/portal/",
        ]
        assert len(store.list_clients()) == 1
    finally:
        store.close()
    plain_http = Settings(storage=storage, base_url="http://care.example.org/fhir")
    assert "http://care.example.org/portal/" not in portal_redirect_uris(plain_http)


async def test_portal_off(tmp_path: Path) -> None:
    settings = Settings(storage=storage_url("sqlite", tmp_path), auth="smart", portal="off")
    async for http, app in _serving(settings):
        assert (await http.get("/portal/")).status_code == 404
        assert (await http.get("/portal/config.json")).status_code == 404
        assert app.state.auth.store.get_client("fhir-server-portal") is None


async def test_without_authorization_the_portal_says_it_cannot_sign_in(tmp_path: Path) -> None:
    settings = Settings(storage=storage_url("sqlite", tmp_path), auth="off")
    async for http, _ in _serving(settings):
        assert (await http.get("/portal/config.json")).json()["signIn"] is False


def test_the_built_app_is_small() -> None:
    import gzip

    scripts = list((STATIC / "assets").glob("*.js"))
    assert scripts, "the portal is not built (cd portal && npm ci && npm run build)"
    size = sum(len(gzip.compress(p.read_bytes(), 9)) for p in scripts)
    assert size < 300_000, f"{size} bytes of JavaScript gzipped"


@pytest.mark.parametrize("kind", STORES)
async def test_demo_sign_ins(kind: str, tmp_path: Path) -> None:
    """Patients, caregivers and the caregiver of two (a Person linking two
    RelatedPersons): each account names its FHIR resource and the sign-in pages offer
    the patients it acts for."""
    from smart_auth.keys import KeyManager
    from smart_auth.tokens import TokenService

    settings = Settings(storage=storage_url(kind, tmp_path), auth="smart")
    population = Population(20, 1, date(2026, 12, 6))
    four = [s.username for s in demo_sign_ins(population, 4)[0]]
    assert four == [
        "demo-pat-000001",
        "demo-pat-000002",
        "demo-pat-000003",
        "demo-pat-000004",
        "demo-rp-000004-01",
        CAREGIVER_OF_TWO,
    ]
    sign_ins, person = demo_sign_ins(population, 1)
    assert person is not None
    async for _, app in _serving(settings):
        from fhir_server.bulk_import import import_resources

        store = app.state.store
        people = [r for r in population if r["resourceType"] in ("Patient", "RelatedPerson")]
        await import_resources(store, people)
        await write_person(store, person)
        auth = app.state.auth
        tokens = TokenService(KeyManager(auth.store, max_token_lifetime=400), auth.store, 300)
        made = create_sign_ins(auth.store, tokens, sign_ins, "a demo password")
        names = {row["username"]: row for row in made}
        assert set(names) == {"demo-pat-000001", CAREGIVER_OF_TWO}
        assert names["demo-pat-000001"]["state"] == "created"
        assert "caregiver of Samuel Kim and" in names[CAREGIVER_OF_TWO]["who"]
        assert auth.store.find_user(CAREGIVER_OF_TWO).fhir_user == "Person/demo-person-1"
        choices = await auth.hooks.patients_for("Person/demo-person-1", None)
        assert len(choices) == 2
        again = create_sign_ins(auth.store, tokens, sign_ins[:1], "another password")
        assert again[0]["state"] == "new password"


def test_the_build_matches_the_source() -> None:
    """The committed build (fhir_server/portal/static) was made from the committed source:
    after a change under portal/, run ``npm ci && npm run build`` there."""
    import hashlib
    import json

    root = Path(__file__).resolve().parents[2] / "portal"
    files = ["package.json", "package-lock.json", "build.mjs"]
    files += [p.relative_to(root).as_posix() for p in (root / "src").rglob("*") if p.is_file()]
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + (root / name).read_bytes() + b"\0")
    built = json.loads((STATIC / "BUILD").read_text())
    assert built["source"] == digest.hexdigest(), "portal/ changed: rebuild it (npm run build)"


def test_portal_register_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from fhir_server.cli import main

    storage = storage_url("sqlite", tmp_path)
    assert main(["portal", "register", "--storage", storage, "--port", "8111"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["client_id"] == "fhir-server-portal"
    assert printed["redirect_uris"] == [
        "http://127.0.0.1:8111/portal/",
        "http://localhost:8111/portal/",
    ]
    assert "client_secret" not in printed
    ndjson = ["demo-data", "--users", "--ndjson", str(tmp_path / "out"), "--storage", storage]
    assert main(ndjson) == 2
    assert "--users writes sign-ins to a store" in capsys.readouterr().err
