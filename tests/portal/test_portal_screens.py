"""Every screen of the portal in a real headless Chromium (issue 22), signed in as demo
patient 1: axe-core finds no serious or critical WCAG 2.1 A/AA violation at desktop
width nor at 375 px, where nothing may overflow sideways (screenshots of both go to
``.cache/portal-screenshots``; ``PORTAL_SCREENSHOTS=docs/screenshots`` refreshes the
README's); data as people read it and "not available" for what the server lacks; a
result trend chart that keeps its place on reload; who accessed the record and the
connected apps; notification choices that are kept."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest

from tests.portal.support import (
    AXE,
    SCREENS,
    axe,
    nav,
    operations,
    phone,
    settled,
    shot,
    text,
    wait,
)
from tests.smart_support import NO_CHROMIUM, NO_CHROMIUM_REASON

pytestmark = [pytest.mark.skipif(NO_CHROMIUM, reason=NO_CHROMIUM_REASON)]


@pytest.mark.skipif(AXE is None, reason="axe-core is not installed (scripts/setup_browser.sh)")
def test_every_screen_is_accessible_and_fits_a_phone(patient_session: Any) -> None:
    browser = patient_session
    problems: dict[str, Any] = {}
    for label, path in SCREENS:
        nav(browser, label)
        assert browser.current_url.endswith(f"#/{path}")
        assert "This portal is not for emergencies." in text(browser)
        name = path or "home"
        found = axe(browser)
        if found:
            problems[f"{label} (desktop)"] = found
        shot(browser, f"{name}-desktop")
        phone(browser, True)
        try:
            time.sleep(0.2)  # the layout follows the new width
            # (a mobile viewport widens itself to the content: compare with 375 px)
            overflow = browser.execute_script("return document.documentElement.scrollWidth - 375")
            assert overflow <= 0, f"{label} is {overflow} px too wide for a 375 px screen"
            found = axe(browser)
            if found:
                problems[f"{label} (375 px)"] = found
            shot(browser, f"{name}-mobile")
        finally:
            phone(browser, False)
    assert not problems, json.dumps(problems, indent=1)


def test_screens_show_the_record_and_what_is_not_available(
    site: dict[str, Any], patient_session: Any
) -> None:
    """Data as people read it, empty states that say what is missing, and "not
    available" for what the server lacks (booking without Appointment/$find)."""
    browser = patient_session
    nav(browser, "Health record")
    shown = text(browser)
    assert "Problems" in shown and "Immunizations" in shown and "Visits" in shown
    assert "Encounter for symptom" in shown  # a visit of patient 1, by its type's display
    nav(browser, "Medications")
    shown = text(browser)
    assert "No current medications." in shown and "No refill requests." in shown
    nav(browser, "Billing")
    shown = text(browser)
    assert "Office or other outpatient visit" in shown  # an invoice line, by its display
    assert re.search(r"\$\d[\d,]*\.\d\d", shown), "amounts with their currency"
    nav(browser, "Appointments")
    shown = text(browser)
    assert "Upcoming" in shown and "Past" in shown
    if "find" not in operations(site, "Appointment"):
        assert "Booking online is not available on this server." in shown


def test_a_result_trend_chart_and_reload(patient_session: Any) -> None:
    from selenium.webdriver.common.by import By

    browser = patient_session
    nav(browser, "Results")
    shown = text(browser)
    assert "Lab results" in shown and "Reference range" in shown
    assert "High" in shown or "Normal" in shown  # flags in words
    browser.find_element(By.LINK_TEXT, "Body weight").click()
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "[data-testid=trend-chart] canvas"))
    assert "#/results/29463-7" in browser.current_url
    rows = browser.find_elements(By.CSS_SELECTOR, "#content [role=region] table tbody tr")
    assert len(rows) >= 2 and " kg" in rows[0].text
    shot(browser, "results-chart-desktop")
    phone(browser, True)
    try:
        time.sleep(0.2)
        shot(browser, "results-chart-mobile")
    finally:
        phone(browser, False)
    browser.refresh()  # the place and the session are kept
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "[data-testid=trend-chart] canvas"))
    assert "Body weight" in text(browser)


def test_who_accessed_my_record_and_connected_apps(
    site: dict[str, Any], patient_session: Any
) -> None:
    """The server's AuditEvents about the patient: this session's own reads, by the
    patient with the portal; and the apps connected to the account."""
    from selenium.webdriver.common.by import By

    browser = patient_session
    shown = ""
    browser.get(f"{site['server'].origin}/portal/#/results")
    browser.refresh()
    settled(browser, "Results")  # the patient's app looks up her results
    # the server writes its audit trail off the request path, like reads of a user and app
    # grouped over FHIR_SERVER_AUDIT_WINDOW (5 s) into one event: let the window end
    for _ in range(4):
        time.sleep(6)
        browser.get(f"{site['server'].origin}/portal/#/settings")
        browser.refresh()  # the portal loads each screen's data once per page load
        settled(browser, "Settings")
        shown = browser.find_element(By.CSS_SELECTOR, "[aria-labelledby=settings-audit]").text
        if "Charles Ramirez, with Patient portal" in shown and "results" in shown:
            break
    assert re.search(r"Charles Ramirez, with Patient portal (viewed|looked up) ", shown), shown
    assert "results" in shown  # the kinds of data, in words
    # the apps connected to the account (the server's account API): this portal
    apps = browser.find_element(By.CSS_SELECTOR, "[aria-labelledby=settings-apps]").text
    assert "Patient portal (this portal)" in apps and "May read and change your record" in apps, (
        apps
    )


def test_notification_choices_are_kept(patient_session: Any) -> None:
    """Turning off email about new bills is saved (a Basic of the patient's preferences,
    as the server's notifications read it) and shown again after a reload."""
    from selenium.webdriver.common.by import By

    browser = patient_session
    nav(browser, "Settings")
    box = browser.find_element(By.ID, "email-new-invoice")
    assert box.is_selected() and browser.find_element(By.ID, "sms-new-invoice").is_selected()
    box.click()
    browser.find_element(By.XPATH, "//button[.='Save my choices']").click()
    wait(browser, lambda d: "Your choices are saved." in text(d))
    browser.refresh()
    settled(browser, "Settings")
    assert not browser.find_element(By.ID, "email-new-invoice").is_selected()
    assert browser.find_element(By.ID, "sms-new-invoice").is_selected()
    assert browser.find_element(By.ID, "email-new-result").is_selected()
