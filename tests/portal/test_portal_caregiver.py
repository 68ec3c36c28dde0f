"""A caregiver and refills in the portal in a real headless Chromium (issue 22): the
caregiver of two signs in for one (the server's patient picker), asks for a refill of
his prescription, then switches to the other; a second refill request of one
prescription is refused by the server and the portal says why in words."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.live import LiveServer
from tests.portal.support import (
    REFILL_PATIENT,
    nav,
    session_tokens,
    settled,
    shot,
    sign_in,
    start_session,
    text,
    wait,
)
from tests.smart_support import NO_CHROMIUM, NO_CHROMIUM_REASON

pytestmark = [pytest.mark.skipif(NO_CHROMIUM, reason=NO_CHROMIUM_REASON)]

FULFILL = ("http://hl7.org/fhir/CodeSystem/task-code", "fulfill")


def test_a_caregiver_switches_patients(site: dict[str, Any], browser: Any) -> None:
    from selenium.webdriver.common.by import By

    server: LiveServer = site["server"]
    start_session(browser, site, "demo-caregiver", route="results", patient="Samuel Kim")
    acting = browser.find_element(By.CSS_SELECTOR, "[data-testid=acting-for]")
    wait(browser, lambda d: acting.text == "Samuel Kim")
    shot(browser, "caregiver-desktop")
    # a refill of one of the patients' prescriptions, asked by their caregiver (a Task);
    # the demo data gives some prescriptions an open request already (one per prescription)
    nav(browser, "Medications")
    asked = _request_a_refill(browser)
    browser.find_element(By.XPATH, "//button[.='Switch patient']").click()
    sign_in(browser, "demo-caregiver", site["password"], patient="Mark Kowalski")
    settled(browser, "Medications")
    wait(
        browser,
        lambda d: (
            d.find_element(By.CSS_SELECTOR, "[data-testid=acting-for]").text == "Mark Kowalski"
        ),
    )
    assert "Samuel Kim" not in browser.find_element(By.TAG_NAME, "main").text
    asked = asked or _request_a_refill(browser)
    if not asked:  # the demo caregiver's patients: one open request, no prescription
        browser.find_element(By.XPATH, "//nav//button[.='Sign out']").click()
        wait(browser, lambda d: "You have signed out" in text(d))
        start_session(browser, site, "demo-pat-000005", route="medications")
        assert _request_a_refill(browser), "demo patient 5 has a prescription to refill"
    assert server.process.poll() is None


def _request_a_refill(browser: Any) -> bool:
    """On the Medications screen: ask for a refill of the first prescription without an
    open request, and check the request is shown; False when every one has one (then
    the screen shows it instead of the button)."""
    from selenium.webdriver.common.by import By

    wait(browser, lambda d: "Current medications" in text(d) or "No current" in text(d))
    buttons = browser.find_elements(By.XPATH, "//button[starts-with(., 'Request a refill of ')]")
    if not buttons:
        shown = text(browser)
        assert "A refill was requested" in shown or "No current medications" in shown, shown
        return False
    medication = buttons[0].text.removeprefix("Request a refill of ")
    buttons[0].click()
    wait(browser, lambda d: "A refill was requested: Requested." in text(d))
    refills = browser.find_element(By.CSS_SELECTOR, "[aria-labelledby=meds-refills]").text
    assert f"Refill of {medication}" in refills and "Requested" in refills, refills
    return True


def test_a_second_refill_request_is_refused_in_words(site: dict[str, Any], browser: Any) -> None:
    """One open refill request per prescription: one asked meanwhile elsewhere (through
    the API with the session's token), the portal's button is refused by the server
    (409), which the portal says in words, and it shows the open request."""
    from selenium.webdriver.common.by import By

    start_session(browser, site, REFILL_PATIENT, route="medications")
    wait(browser, lambda d: "Current medications" in text(d) or "No current" in text(d))
    token = session_tokens(browser)["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    base = site["server"].base
    chosen = None
    for item in browser.find_elements(By.CSS_SELECTOR, "li[data-request]"):
        if not item.find_elements(By.XPATH, ".//button[starts-with(., 'Request a refill')]"):
            continue
        request = item.get_attribute("data-request")
        asked = httpx.post(
            f"{base}/Task",
            json={
                "resourceType": "Task",
                "status": "requested",
                "intent": "order",
                "code": {"coding": [{"system": FULFILL[0], "code": FULFILL[1]}]},
                "focus": {"reference": f"MedicationRequest/{request}"},
                "for": {"reference": f"Patient/{REFILL_PATIENT}"},
            },
            headers=headers,
        )
        if asked.status_code == 422:  # not refillable: the next one
            continue
        assert asked.status_code == 201, asked.text
        chosen = request
        break
    assert chosen is not None, f"{REFILL_PATIENT} has no prescription to ask a refill of"
    shown = f"li[data-request='{chosen}']"
    item = browser.find_element(By.CSS_SELECTOR, shown)
    item.find_element(By.XPATH, ".//button[starts-with(., 'Request a refill')]").click()
    said = wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, f"{shown} [role=alert]").text)
    assert "a refill of this medicine was already requested" in said, said
    assert "409" not in said and "Task/" not in said, said
    status = "A refill was requested: Requested."
    wait(browser, lambda d: status in d.find_element(By.CSS_SELECTOR, shown).text)
