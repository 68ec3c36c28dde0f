"""A real headless Chromium signs in through the pages of a live ``fhir-server serve``
with SMART on (the real application over seeded FHIR data): login form, consent with an
unticked scope, redirect with the code to the app's page; then the app exchanges the code
with PKCE and reads the patient. Skipped, with the reason, when Chromium or chromedriver
is not installed (``scripts/setup_browser.sh``)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from smart_auth.admin import create_client, create_user
from smart_auth.store import open_auth_store
from tests.live import LiveServer
from tests.smart_support import (
    NO_CHROMIUM,
    NO_CHROMIUM_REASON,
    PASSWORD,
    chromium,
    live_smart_server,
    pkce,
    static_server,
    storage_of,
    wait_for_heading,
)

pytestmark = pytest.mark.skipif(NO_CHROMIUM, reason=NO_CHROMIUM_REASON)


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    with live_smart_server(tmp_path) as server:
        yield server


@pytest.fixture
def browser() -> Iterator[Any]:
    with chromium() as driver:
        yield driver


def test_standalone_launch_in_chromium(live: LiveServer, browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    driver = browser
    with static_server() as app_site:
        app_site.documents["/callback"] = ("text/html", b"<p>app callback</p>")
        redirect = f"{app_site.origin}/callback"
        store = open_auth_store(storage_of(tmp_path))
        try:
            client_id = create_client(store, "Browser app", auth="none", redirect_uris=[redirect])[
                "client_id"
            ]
            create_user(store, "alice", PASSWORD, "Patient/p1")
        finally:
            store.close()
        verifier, challenge = pkce()
        params = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect,
            "scope": "launch/patient openid fhirUser patient/Observation.rs patient/Patient.rs",
            "state": "browser-state",
            "aud": live.base,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        driver.get(f"{live.origin}/auth/authorize?{urlencode(params)}")
        wait_for_heading(driver, "Sign in")
        assert driver.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en"
        driver.find_element(By.ID, "username").send_keys("alice")
        driver.find_element(By.ID, "password").send_keys("wrong password")
        driver.find_element(By.ID, "sign-in").click()
        WebDriverWait(driver, 20).until(lambda d: d.find_elements(By.CSS_SELECTOR, "[role=alert]"))
        alert = driver.find_element(By.CSS_SELECTOR, "[role=alert]")
        assert "not right" in alert.text
        driver.find_element(By.ID, "password").send_keys(PASSWORD)
        driver.find_element(By.ID, "sign-in").click()
        wait_for_heading(driver, "Allow")
        # the consent page names the patient, from the FHIR data
        assert "Alice Smith" in driver.find_element(By.TAG_NAME, "main").text
        observations = driver.find_element(By.CSS_SELECTOR, "input[value='patient/Observation.rs']")
        label = driver.find_element(
            By.CSS_SELECTOR, f"label[for='{observations.get_attribute('id')}']"
        )
        assert "observations" in label.text.lower() or "results" in label.text.lower()
        label.click()  # unticking through the label works
        assert not observations.is_selected()
        driver.find_element(By.ID, "allow").click()
        deadline = time.monotonic() + 10
        while not driver.current_url.startswith(redirect):
            assert time.monotonic() < deadline, driver.current_url
            time.sleep(0.1)
        assert "app callback" in driver.page_source
        query = parse_qs(urlsplit(driver.current_url).query)
    assert query["state"] == ["browser-state"]
    response = httpx.post(
        f"{live.origin}/auth/token",
        data={
            "grant_type": "authorization_code",
            "code": query["code"][0],
            "redirect_uri": redirect,
            "client_id": client_id,
            "code_verifier": verifier,
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["patient"] == "p1"
    assert body["scope"] == "launch/patient openid fhirUser patient/Patient.rs"
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    patient = httpx.get(f"{live.base}/Patient/p1", headers=headers)
    assert patient.status_code == 200, patient.text
    assert patient.json()["name"][0]["family"] == "Smith"
    # the unticked scope was not granted: no Observations, even the patient's own
    refused = httpx.get(f"{live.base}/Observation/o1", headers=headers)
    assert refused.status_code == 403, refused.text
