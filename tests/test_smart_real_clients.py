"""Real SMART clients complete a standalone launch with PKCE against a live
``fhir-server serve`` (SMART on, seeded FHIR data) and read the patient:

- the Python ``fhirclient`` (client-py), which finds the endpoints only through the
  CapabilityStatement's ``oauth-uris`` extension; the browser part (login and consent
  pages) is driven over HTTP, the forms posted with their CSRF tokens;
- the JavaScript ``fhirclient`` (npm, client-js) in headless Chromium, which uses
  ``.well-known/smart-configuration`` and calls the server from another origin (CORS).

The app is registered and the user created with the admin commands
(``fhir-server clients create``, ``fhir-server users create``). Each test checks the app
sees its patient's data and nothing of another patient's.
"""

from __future__ import annotations

import io
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from fhir_server.cli import main
from tests.live import ROOT, LiveServer
from tests.smart_support import (
    NO_CHROMIUM,
    NO_CHROMIUM_REASON,
    PASSWORD,
    chromium,
    csrf_of,
    live_smart_server,
    sign_in_and_allow,
    static_server,
    storage_of,
)

SCOPE = "launch/patient patient/*.rs openid fhirUser"
JS_CLIENT = ROOT / ".cache/js-client/node_modules/fhirclient/build/fhir-client.js"
JS_PAGES = Path(__file__).parent / "js_client"


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    with live_smart_server(tmp_path) as server:
        yield server


def admin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str
) -> dict[str, Any]:
    """Run ``fhir-server ARGS`` (the password, if asked, comes from stdin); its JSON."""
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    capsys.readouterr()
    assert main(list(args)) == 0, capsys.readouterr().err
    return dict(json.loads(capsys.readouterr().out))


def register(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    redirect: str,
    username: str,
) -> str:
    """A public app and a user linked to Patient/p1, with the admin commands; the
    client_id."""
    storage = storage_of(tmp_path)
    client = admin(
        capsys,
        monkeypatch,
        *("clients", "create", "--name", "SMART app", "--auth", "none"),
        *("--redirect-uri", redirect, "--storage", storage),
    )
    assert "client_secret" not in client
    user = admin(
        capsys,
        monkeypatch,
        *("users", "create", "--username", username, "--fhir-user", "Patient/p1"),
        *("--storage", storage),
    )
    assert user["fhir_user"] == "Patient/p1"
    return str(client["client_id"])


def test_python_fhirclient_standalone_launch(
    live: LiveServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from fhirclient import client as smart_client
    from fhirclient.models.observation import Observation
    from fhirclient.models.patient import Patient
    from fhirclient.server import FHIRNotFoundException

    redirect = "http://127.0.0.1:9/smart/callback"  # never visited: the test catches it
    client_id = register(tmp_path, capsys, monkeypatch, redirect, "alice")
    smart = smart_client.FHIRClient(
        settings={
            "app_id": client_id,
            "api_base": live.base,
            "redirect_uri": redirect,
            "scope": SCOPE,
        }
    )
    authorize_url = smart.authorize_url  # read from the CapabilityStatement's oauth-uris
    assert authorize_url.startswith(f"{live.origin}/auth/authorize?")
    assert "code_challenge_method=S256" in authorize_url
    assert ".well-known" not in live.log()  # client-py knows only the oauth-uris extension

    with httpx.Client(timeout=30) as browser:
        started = browser.get(authorize_url)
        assert started.status_code == 303, started.text
        login_page = browser.get(started.headers["location"])
        assert login_page.status_code == 200, login_page.text
        logged_in = browser.post(
            str(login_page.url),
            data={"csrf": csrf_of(login_page.text), "username": "alice", "password": PASSWORD},
        )
        assert logged_in.status_code == 303, logged_in.text
        consent_page = browser.get(logged_in.headers["location"])
        assert "Alice Smith" in consent_page.text
        ticked = [
            s.replace("&amp;", "&")
            for s in re.findall(r'name="scope" value="([^"]+)"', consent_page.text)
        ]
        allowed = browser.post(
            str(consent_page.url),
            data={"csrf": csrf_of(consent_page.text), "decision": "allow", "scope": ticked},
        )
        assert allowed.status_code in (302, 303), allowed.text
        callback = allowed.headers["location"]
    assert callback.startswith(redirect + "?")

    smart.handle_callback(callback)  # checks state, exchanges the code with the verifier
    assert smart.ready
    assert smart.patient_id == "p1"
    patient = smart.patient
    assert patient is not None
    assert smart.human_name(patient.name[0]) == "Alice Smith"
    assert Patient.read("p1", smart.server).id == "p1"
    observations = list(Observation.where(struct={}).perform_resources_iter(smart.server))
    assert sorted(o.id for o in observations) == ["o1", "o1b"]
    assert {o.subject.reference for o in observations} == {"Patient/p1"}
    with pytest.raises(FHIRNotFoundException):
        Observation.read("o2", smart.server)  # Bob's
    with pytest.raises(FHIRNotFoundException):
        Patient.read("p2", smart.server)


@pytest.mark.skipif(NO_CHROMIUM, reason=NO_CHROMIUM_REASON)
@pytest.mark.skipif(
    not JS_CLIENT.exists(),
    reason=f"the npm fhirclient is not installed at {JS_CLIENT} (scripts/setup_browser.sh)",
)
def test_javascript_fhirclient_standalone_launch_in_chromium(
    live: LiveServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from selenium.webdriver.common.by import By

    with static_server(JS_PAGES) as app_site, chromium() as driver:
        app_site.documents["/fhir-client.js"] = ("text/javascript", JS_CLIENT.read_bytes())
        assert app_site.origin != live.origin  # a cross-origin app: CORS is exercised
        client_id = register(
            tmp_path, capsys, monkeypatch, f"{app_site.origin}/index.html", "alice"
        )
        launch = {"iss": live.base, "client_id": client_id, "scope": SCOPE}
        driver.get(f"{app_site.origin}/launch.html?{urlencode(launch)}")
        deadline = time.monotonic() + 20
        while not driver.current_url.startswith(f"{live.origin}/auth/login"):
            # one script reads the status: the page may navigate away between a
            # lookup and a read of the element (a stale element reference)
            message = str(
                driver.execute_script(
                    "const s = document.getElementById('status');"
                    " return s ? s.textContent : location.href;"
                )
            )
            assert time.monotonic() < deadline, message
            time.sleep(0.1)
        sign_in_and_allow(driver, "alice")

        def done() -> str:
            return str(
                driver.execute_script(
                    "const d = document.getElementById('done'); return d ? d.textContent : '';"
                )
            )

        deadline = time.monotonic() + 30
        while done() != "done":
            assert time.monotonic() < deadline, driver.page_source
            time.sleep(0.1)
        error = driver.find_element(By.ID, "error").text
        assert error == "", error
        assert driver.find_element(By.ID, "patient").text == "Alice Smith"
        assert driver.find_element(By.ID, "patient-id").text == "p1"
        assert driver.find_element(By.ID, "observations").text == "o1,o1b"
        # the JS client found the endpoints through .well-known and was served from
        # another origin: the server answered its cross-origin calls
        assert "/index.html" in app_site.requests
