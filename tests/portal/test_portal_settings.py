"""Quiet hours on the portal's Settings screen, in a real headless Chromium, as demo
patient 1: set (22:00 to 07:00 in a chosen time zone), kept on reload and in the
preferences Basic (``urn:fhir-server:notification|preferences``); changing a notification
choice afterwards keeps them and every other extension of that Basic; a time zone the
server refuses is said in words and changes nothing; axe-core clean at desktop width and
375 px with the quiet hours shown."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.portal.support import (
    PATIENT,
    accessible_at_both_widths,
    nav,
    session_tokens,
    settled,
    text,
    wait,
)
from tests.smart_support import NO_CHROMIUM, NO_CHROMIUM_REASON

pytestmark = [pytest.mark.skipif(NO_CHROMIUM, reason=NO_CHROMIUM_REASON)]

PREFERENCES = "urn:fhir-server:notification|preferences"
QUIET = "urn:fhir-server:notification-quiet-hours"
OPT_OUT = "urn:fhir-server:notification-opt-out"
OTHER = "urn:example:portal-test-other"


def _headers(browser: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {session_tokens(browser)['access_token']}"}


def _stored(site: dict[str, Any], browser: Any) -> dict[str, Any] | None:
    found = httpx.get(
        f"{site['server'].base}/Basic",
        params={"code": PREFERENCES, "subject": f"Patient/{PATIENT}"},
        headers=_headers(browser),
    )
    assert found.status_code == 200, found.text
    entries = found.json().get("entry", [])
    assert len(entries) <= 1
    return entries[0]["resource"] if entries else None


def _parts(basic: dict[str, Any] | None, url: str) -> list[dict[str, Any]]:
    """The sub-extensions of each extension of ``basic`` with ``url``, as dicts."""
    found = []
    for ext in (basic or {}).get("extension", []):
        if ext["url"] == url:
            found.append(
                {
                    p["url"]: next(v for k, v in p.items() if k.startswith("value"))
                    for p in ext["extension"]
                }
            )
    return found


def _set_time(browser: Any, element: Any, value: str) -> None:
    """A native time field set as typing would (its value, then input and change)."""
    browser.execute_script(
        "arguments[0].value = arguments[1];"
        "arguments[0].dispatchEvent(new Event('input', {bubbles: true}));"
        "arguments[0].dispatchEvent(new Event('change', {bubbles: true}));",
        element,
        value,
    )


def _save(browser: Any) -> None:
    from selenium.webdriver.common.by import By

    browser.find_element(By.XPATH, "//button[.='Save my choices']").click()
    wait(browser, lambda d: "Your choices are saved." in text(d) or "Could not save" in text(d))


def test_quiet_hours_are_kept_with_the_other_preferences(
    site: dict[str, Any], patient_session: Any
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.select import Select

    browser = patient_session
    nav(browser, "Settings")
    # an extension of the person's own (set by another app) that the portal does not manage
    basic = _stored(site, browser) or {
        "resourceType": "Basic",
        "code": {"coding": [{"system": "urn:fhir-server:notification", "code": "preferences"}]},
        "subject": {"reference": f"Patient/{PATIENT}"},
    }
    basic["extension"] = [
        e for e in basic.get("extension", []) if e["url"] not in (QUIET, OTHER)
    ] + [{"url": OTHER, "valueString": "kept"}]
    written = (
        httpx.put(
            f"{site['server'].base}/Basic/{basic['id']}", json=basic, headers=_headers(browser)
        )
        if basic.get("id")
        else httpx.post(f"{site['server'].base}/Basic", json=basic, headers=_headers(browser))
    )
    assert written.status_code in (200, 201), written.text
    browser.refresh()
    settled(browser, "Settings")

    switch = browser.find_element(By.ID, "quiet-on")
    assert not switch.is_selected()
    assert not browser.find_element(By.ID, "quiet-start").is_displayed()
    switch.click()
    start = browser.find_element(By.ID, "quiet-start")
    wait(browser, lambda d: start.is_displayed())
    # labelled native time fields, the device's time zone chosen by default
    assert start.get_attribute("type") == "time"
    assert browser.find_element(By.CSS_SELECTOR, "label[for=quiet-start]").text == "From"
    assert browser.find_element(By.CSS_SELECTOR, "label[for=quiet-end]").text == "Until"
    zone = Select(browser.find_element(By.ID, "quiet-zone"))
    here = browser.execute_script("return Intl.DateTimeFormat().resolvedOptions().timeZone")
    assert zone.first_selected_option.get_attribute("value") == here
    _set_time(browser, start, "22:00")
    _set_time(browser, browser.find_element(By.ID, "quiet-end"), "07:00")
    zone.select_by_value("Europe/Berlin")
    _save(browser)
    assert "Your choices are saved." in text(browser), text(browser)

    browser.refresh()
    settled(browser, "Settings")
    assert browser.find_element(By.ID, "quiet-on").is_selected()
    assert browser.find_element(By.ID, "quiet-start").get_attribute("value") == "22:00"
    assert browser.find_element(By.ID, "quiet-end").get_attribute("value") == "07:00"
    chosen = Select(browser.find_element(By.ID, "quiet-zone")).first_selected_option
    assert chosen.get_attribute("value") == "Europe/Berlin"
    stored = _stored(site, browser)
    assert _parts(stored, QUIET) == [
        {"start": "22:00:00", "end": "07:00:00", "timezone": "Europe/Berlin"}
    ]

    # a notification choice changed afterwards: the quiet hours and the other extension stay
    box = browser.find_element(By.ID, "sms-new-message")
    was_on = box.is_selected()
    box.click()
    _save(browser)
    assert "Your choices are saved." in text(browser), text(browser)
    stored = _stored(site, browser)
    assert _parts(stored, QUIET) == [
        {"start": "22:00:00", "end": "07:00:00", "timezone": "Europe/Berlin"}
    ]
    assert {"url": OTHER, "valueString": "kept"} in stored["extension"]
    sms_new_message_off = {"channel": "sms", "kind": "new-message"} in _parts(stored, OPT_OUT)
    assert sms_new_message_off == was_on

    # a time zone the server does not know: refused in words, nothing changed
    browser.execute_script(
        "const s = document.getElementById('quiet-zone');"
        "s.add(new Option('Mars/Olympus', 'Mars/Olympus')); s.value = 'Mars/Olympus';"
    )
    version = stored["meta"]["versionId"]
    _save(browser)
    shown = text(browser)
    assert "Could not save: unknown time zone 'Mars/Olympus'" in shown, shown
    assert _stored(site, browser)["meta"]["versionId"] == version

    browser.refresh()
    settled(browser, "Settings")
    fieldset = browser.find_element(By.CSS_SELECTOR, "fieldset.quiet")
    accessible_at_both_widths(browser, "settings-quiet-hours", show=fieldset)


def test_quiet_hours_turned_off_are_kept_off(site: dict[str, Any], patient_session: Any) -> None:
    """Turning them off stores "none" (start = end), which the screen shows as off."""
    from selenium.webdriver.common.by import By

    browser = patient_session
    nav(browser, "Settings")
    switch = browser.find_element(By.ID, "quiet-on")
    if not switch.is_selected():
        switch.click()
        _save(browser)
        browser.refresh()
        settled(browser, "Settings")
        switch = browser.find_element(By.ID, "quiet-on")
    switch.click()
    _save(browser)
    assert "Your choices are saved." in text(browser), text(browser)
    (quiet,) = _parts(_stored(site, browser), QUIET)
    assert quiet["start"] == quiet["end"]
    browser.refresh()
    settled(browser, "Settings")
    assert not browser.find_element(By.ID, "quiet-on").is_selected()
