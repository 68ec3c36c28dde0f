"""What the portal's browser tests share (issue 22): the pages they drive through
selenium in headless Chromium, sign-ins through the server's login, patient picker and
consent pages, waits that ride out an app that re-renders as its data arrives, axe-core,
the 375 px phone, screenshots, and the timings they report."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import httpx

from tests.live import ROOT
from tests.smart_support import wait_for_heading

AXE_PLACES = [
    ROOT / ".cache/js-client/node_modules/axe-core/axe.min.js",
    ROOT / "portal/node_modules/axe-core/axe.min.js",
]
AXE = next((p for p in AXE_PLACES if p.is_file()), None)
SHOTS = ROOT / os.environ.get("PORTAL_SCREENSHOTS", ".cache/portal-screenshots")
REPORT = ROOT / ".cache/portal-e2e.json"
SCREENS = [
    ("Home", ""),
    ("Health record", "record"),
    ("Results", "results"),
    ("Appointments", "appointments"),
    ("Messages", "messages"),
    ("Medications", "medications"),
    ("Billing", "billing"),
    ("Documents", "documents"),
    ("Settings", "settings"),
]
LABELS = {path: label for label, path in SCREENS}
PATIENT = "demo-pat-000001"
"""The demo patient most tests sign in as (Charles Ramirez)."""
PRACTITIONER = "Practitioner/demo-prac-00001"
"""Patient 1's primary care practitioner in the demo data."""
UNREAD_TOPIC = "Your blood test results"
"""The subject of the unread message from the care team the tests add for patient 1."""
REFILL_PATIENT = "demo-pat-000002"
"""The demo patient the tests give a prescription to refill (the demo data gives her
none)."""
TELEHEALTH = "https://meet.example.org/{appointment_id}"
SIGN_IN_WAIT = 60.0
"""Seconds to wait for each sign-in page: checking a password is made slow on purpose,
and slower still on a loaded machine (23 s seen with a load of 14 on 2 cores)."""
measured: dict[str, Any] = {}
"""Timings the tests report (written to :data:`REPORT`)."""


def wait(driver: Any, condition: Any, timeout: float = 20) -> Any:
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.support.wait import WebDriverWait

    def checked(d: Any) -> Any:
        try:
            return condition(d)
        except WebDriverException as error:
            # Chromium's word for an element of a page that was just replaced
            if "does not belong to the document" in str(error):
                return False
            raise

    # the app re-renders as its data arrives: an element found a moment ago may be gone
    waiting = WebDriverWait(driver, timeout, ignored_exceptions=(StaleElementReferenceException,))
    return waiting.until(checked)


def text(driver: Any) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.TAG_NAME, "body").text


def settled(driver: Any, heading: str) -> None:
    """The screen named ``heading`` is shown and nothing on it is loading any more."""
    from selenium.webdriver.common.by import By

    def done(d: Any) -> bool:
        h1 = d.find_elements(By.TAG_NAME, "h1")
        if not h1 or h1[0].text != heading:
            return False
        return "Loading" not in d.find_element(By.TAG_NAME, "main").text

    wait(driver, done)


def sign_in(driver: Any, username: str, password: str, patient: str | None = None) -> None:
    """The server's login (and patient picker, and consent) pages."""
    from selenium.webdriver.common.by import By

    wait_for_heading(driver, "Sign in", SIGN_IN_WAIT)
    driver.find_element(By.ID, "username").send_keys(username)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.ID, "sign-in").click()
    if patient is not None:
        wait_for_heading(driver, "Choose a patient", SIGN_IN_WAIT)
        label = driver.find_element(By.XPATH, f"//label[contains(., '{patient}')]")
        label.click()
        driver.find_element(By.ID, "choose").click()
    wait_for_heading(driver, "Allow", SIGN_IN_WAIT)
    driver.find_element(By.ID, "allow").click()


def start_session(
    driver: Any,
    site: dict[str, Any],
    username: str = PATIENT,
    route: str = "",
    patient: str | None = None,
) -> None:
    """A new session of its own: the tab's session and the server's login cookie are
    forgotten, the portal is opened at ``route`` and signed in from its welcome page."""
    from selenium.webdriver.common.by import By

    origin = site["server"].origin
    driver.get(f"{origin}/portal/")
    driver.execute_script("sessionStorage.clear();")
    driver.delete_all_cookies()
    driver.get("about:blank")
    driver.get(f"{origin}/portal/#/{route}")
    wait_for_heading(driver, "Welcome to your patient portal")
    driver.find_element(By.XPATH, "//button[.='Sign in']").click()
    sign_in(driver, username, site["password"], patient)
    settled(driver, LABELS.get(route.split("/")[0], "Home"))


def nav(driver: Any, label: str) -> None:
    from selenium.webdriver.common.by import By

    menu = driver.find_element(By.CSS_SELECTOR, "nav[aria-label=Portal]")
    menu.find_element(By.LINK_TEXT, label).click()
    settled(driver, label)


def axe(driver: Any) -> list[dict[str, Any]]:
    """axe-core's serious and critical WCAG 2.1 A/AA violations on the page."""
    assert AXE is not None
    driver.execute_script(AXE.read_text())
    violations = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {runOnly: {type: 'tag', values:"
        " ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})"
        ".then(r => done(r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,"
        " targets: v.nodes.slice(0, 3).map(n => n.target)}))))"
        ".catch(e => done([{id: 'axe-error', impact: 'critical', help: String(e)}]));"
    )
    return [v for v in violations if v["impact"] in ("serious", "critical")]


def phone(driver: Any, on: bool) -> None:
    if on:
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": 375, "height": 812, "deviceScaleFactor": 1, "mobile": True},
        )
    else:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def shot(driver: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SHOTS / f"portal-{name}.png"))


def accessible_at_both_widths(driver: Any, name: str, show: Any = None) -> None:
    """axe-core finds no serious or critical violation on the screen as it is now, at
    desktop width and at 375 px (where nothing overflows sideways); screenshots of both
    (``portal-<name>-desktop.png``, ``-mobile.png``), scrolled to the element ``show``
    when given. Without axe-core: the width only."""

    def look() -> None:
        if show is not None:
            driver.execute_script("arguments[0].scrollIntoView({block: 'start'});", show)

    problems = {"desktop": axe(driver) if AXE else []}
    look()
    shot(driver, f"{name}-desktop")
    phone(driver, True)
    try:
        time.sleep(0.2)  # the layout follows the new width
        # (a mobile viewport widens itself to the content: compare with 375 px)
        overflow = driver.execute_script("return document.documentElement.scrollWidth - 375")
        assert overflow <= 0, f"{name} is {overflow} px too wide for a 375 px screen"
        problems["375 px"] = axe(driver) if AXE else []
        look()
        shot(driver, f"{name}-mobile")
    finally:
        phone(driver, False)
    assert not any(problems.values()), json.dumps(problems, indent=1)


def session_tokens(driver: Any) -> dict[str, Any]:
    return driver.execute_script(
        "const key = sessionStorage.getItem('SMART_KEY');"
        "return key ? JSON.parse(sessionStorage.getItem(JSON.parse(key))).tokenResponse : null;"
    )


def expire_access_token(driver: Any) -> None:
    """Make the portal's access token look expired (the next request refreshes it)."""
    driver.execute_script(
        "const key = JSON.parse(sessionStorage.getItem('SMART_KEY'));"
        "const state = JSON.parse(sessionStorage.getItem(key));"
        "state.expiresAt = 0; sessionStorage.setItem(key, JSON.stringify(state));"
    )


def operations(site: dict[str, Any], type_: str) -> set[str]:
    """The operations the server's CapabilityStatement lists for ``type_``."""
    statement = httpx.get(f"{site['server'].base}/metadata").json()
    resource = next(r for r in statement["rest"][0]["resource"] if r["type"] == type_)
    return {op["name"] for op in resource.get("operation", [])}
