"""The patient portal end to end in a real headless Chromium (issue 22): a live
``fhir-server serve`` over a demo population with demo sign-ins made by ``fhir-server
demo-data --users``; the portal signs in through the server's login, patient picker and
consent pages (SMART standalone launch with PKCE), shows the patient's data on every
screen, draws a result trend chart, keeps its place on reload, refreshes its token,
uploads and downloads documents, downloads a PDF summary, sends a message with an
attachment and a reply, keeps notification choices, lists who accessed the record and
the connected apps, books and cancels an appointment, pays a bill at the payment
processor (the Stripe double), lets a caregiver ask for a refill and switch patients,
and signs out with its tokens revoked (the features the server lacks skip, naming it).
Every screen is checked with axe-core (no serious or critical WCAG 2.1 A/AA violation)
at desktop width and at 375 px, where nothing may overflow sideways; screenshots of
both go to ``.cache/portal-screenshots`` (``PORTAL_SCREENSHOTS=docs/screenshots``
refreshes the README's).

One run, not per store (the stores are covered by the in-process tests); the measured
time from the redirect back from the login to an interactive home screen is printed and
written to ``.cache/portal-e2e.json``, not asserted.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.doubles.fake_stripe import FakeStripe, fake_stripe
from tests.live import ROOT, LiveServer
from tests.smart_support import NO_CHROMIUM, NO_CHROMIUM_REASON, chromium, wait_for_heading

pytestmark = [pytest.mark.skipif(NO_CHROMIUM, reason=NO_CHROMIUM_REASON)]

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
measured: dict[str, Any] = {}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    folder = tmp_path_factory.mktemp("portal")
    storage = f"sqlite:///{folder / 'fhir.sqlite3'}"
    made = subprocess.run(
        [
            sys.executable,
            "-m",
            "fhir_server.cli",
            "demo-data",
            "--patients",
            "20",
            "--users",
            "5",
            "--today",
            date.today().isoformat(),
            "--storage",
            storage,
            "--quiet",
            "--workers",
            "0",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr
    password = re.search(r"all with the password: (\S+)", made.stdout)
    assert password, made.stdout
    with fake_stripe() as stripe:
        server = LiveServer(
            storage,
            folder / "server.log",
            auth="smart",
            FHIR_SERVER_PAYMENTS="stripe",
            FHIR_SERVER_STRIPE_SECRET_KEY=stripe.secret_key,
            FHIR_SERVER_STRIPE_WEBHOOK_SECRET=stripe.webhook_secret,
            FHIR_SERVER_STRIPE_API_BASE=stripe.api_base,
        )
        try:
            yield {"server": server, "password": password.group(1), "stripe": stripe}
        finally:
            server.stop()
    if measured:
        REPORT.parent.mkdir(parents=True, exist_ok=True)
        REPORT.write_text(json.dumps(measured, indent=2))


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as driver:
        driver.set_window_size(1280, 900)
        driver.set_script_timeout(30)
        yield driver


def _wait(driver: Any, condition: Any, timeout: float = 20) -> Any:
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
    wait = WebDriverWait(driver, timeout, ignored_exceptions=(StaleElementReferenceException,))
    return wait.until(checked)


def _text(driver: Any) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.TAG_NAME, "body").text


def _settled(driver: Any, heading: str) -> None:
    """The screen named ``heading`` is shown and nothing on it is loading any more."""
    from selenium.webdriver.common.by import By

    def done(d: Any) -> bool:
        h1 = d.find_elements(By.TAG_NAME, "h1")
        if not h1 or h1[0].text != heading:
            return False
        return "Loading" not in d.find_element(By.TAG_NAME, "main").text

    _wait(driver, done)


def _sign_in(driver: Any, username: str, password: str, patient: str | None = None) -> None:
    from selenium.webdriver.common.by import By

    wait_for_heading(driver, "Sign in")
    driver.find_element(By.ID, "username").send_keys(username)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.ID, "sign-in").click()
    if patient is not None:
        wait_for_heading(driver, "Choose a patient")
        label = driver.find_element(By.XPATH, f"//label[contains(., '{patient}')]")
        label.click()
        driver.find_element(By.ID, "choose").click()
    wait_for_heading(driver, "Allow")
    driver.find_element(By.ID, "allow").click()


def _nav(driver: Any, label: str) -> None:
    from selenium.webdriver.common.by import By

    nav = driver.find_element(By.CSS_SELECTOR, "nav[aria-label=Portal]")
    nav.find_element(By.LINK_TEXT, label).click()
    _settled(driver, label)


def _axe(driver: Any) -> list[dict[str, Any]]:
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


def _phone(driver: Any, on: bool) -> None:
    if on:
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": 375, "height": 812, "deviceScaleFactor": 1, "mobile": True},
        )
    else:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def _shot(driver: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SHOTS / f"portal-{name}.png"))


def _session_tokens(driver: Any) -> dict[str, Any]:
    return driver.execute_script(
        "const key = sessionStorage.getItem('SMART_KEY');"
        "return key ? JSON.parse(sessionStorage.getItem(JSON.parse(key))).tokenResponse : null;"
    )


def test_a_patient_signs_in_and_sees_their_home(site: dict[str, Any], browser: Any) -> None:
    from selenium.webdriver.common.by import By

    server: LiveServer = site["server"]
    browser.get(f"{server.origin}/portal/")
    wait_for_heading(browser, "Welcome to your patient portal")
    assert "not for emergencies" in _text(browser)
    browser.find_element(By.XPATH, "//button[.='Sign in']").click()
    _sign_in(browser, "demo-pat-000001", site["password"])
    _settled(browser, "Home")
    assert browser.current_url == f"{server.origin}/portal/#/" or browser.current_url.endswith(
        "/portal/"
    )
    text = _text(browser)
    assert "Signed in as Charles Ramirez" in text
    assert "Hello, Charles." in text
    # the patient's own data: a lab result of patient 1 with its value and unit
    results = browser.find_element(By.CSS_SELECTOR, "[aria-labelledby=home-results]").text
    assert re.search(r"Glucose \[Mass/volume\] in Serum or Plasma: \d+ mg/dL", results), results
    assert "current medication" in text or "No current medications" in text
    assert "This portal is not for emergencies." in text
    for label, _ in SCREENS:
        assert browser.find_elements(By.LINK_TEXT, label), label
    assert browser.find_elements(By.XPATH, "//nav//button[.='Sign out']")
    timing = browser.execute_script(
        "const nav = performance.getEntriesByType('navigation')[0];"
        "const ready = performance.getEntriesByName('portal-home-ready')[0];"
        "return {ready: ready ? ready.startTime : null,"
        " dom: nav.domContentLoadedEventEnd, load: nav.loadEventEnd};"
    )
    assert timing["ready"] is not None
    measured["home_interactive_ms_after_login_redirect"] = round(timing["ready"])
    measured["dom_content_loaded_ms"] = round(timing["dom"])
    print(f"\nportal: home interactive {timing['ready']:.0f} ms after the redirect from login")


def test_keyboard_skip_link_and_focus(site: dict[str, Any], browser: Any) -> None:
    """The first Tab reaches "Skip to content", which moves the focus to the screen's
    heading; following a menu link with the keyboard focuses the new screen's heading."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.refresh()
    _settled(browser, "Home")
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
    focused = browser.switch_to.active_element
    assert focused.text == "Skip to content"
    focused.send_keys(Keys.ENTER)
    assert browser.switch_to.active_element.tag_name == "h1"
    link = browser.find_element(By.CSS_SELECTOR, "nav[aria-label=Portal]").find_element(
        By.LINK_TEXT, "Results"
    )
    link.send_keys(Keys.ENTER)
    _settled(browser, "Results")
    active = browser.switch_to.active_element
    assert active.tag_name == "h1" and active.text == "Results"
    assert link.get_attribute("aria-current") == "page"


@pytest.mark.skipif(AXE is None, reason="axe-core is not installed (scripts/setup_browser.sh)")
def test_every_screen_is_accessible_and_fits_a_phone(site: dict[str, Any], browser: Any) -> None:
    problems: dict[str, Any] = {}
    for label, path in SCREENS:
        _nav(browser, label)
        assert browser.current_url.endswith(f"#/{path}")
        assert "This portal is not for emergencies." in _text(browser)
        name = path or "home"
        found = _axe(browser)
        if found:
            problems[f"{label} (desktop)"] = found
        _shot(browser, f"{name}-desktop")
        _phone(browser, True)
        try:
            time.sleep(0.2)  # the layout follows the new width
            # (a mobile viewport widens itself to the content: compare with 375 px)
            overflow = browser.execute_script("return document.documentElement.scrollWidth - 375")
            assert overflow <= 0, f"{label} is {overflow} px too wide for a 375 px screen"
            found = _axe(browser)
            if found:
                problems[f"{label} (375 px)"] = found
            _shot(browser, f"{name}-mobile")
        finally:
            _phone(browser, False)
    assert not problems, json.dumps(problems, indent=1)


def test_screens_show_the_record_and_what_is_not_available(
    site: dict[str, Any], browser: Any
) -> None:
    """Data as people read it, empty states that say what is missing, and "not
    available" for what the server lacks (booking without Appointment/$find)."""
    _nav(browser, "Health record")
    text = _text(browser)
    assert "Problems" in text and "Immunizations" in text and "Visits" in text
    assert "Encounter for symptom" in text  # a visit of patient 1, by its type's display
    _nav(browser, "Medications")
    text = _text(browser)
    assert "No current medications." in text and "No refill requests." in text
    _nav(browser, "Billing")
    text = _text(browser)
    assert "Office or other outpatient visit" in text  # an invoice line, by its display
    assert re.search(r"\$\d[\d,]*\.\d\d", text), "amounts with their currency"
    _nav(browser, "Appointments")
    text = _text(browser)
    assert "Upcoming" in text and "Past" in text
    statement = httpx.get(f"{site['server'].base}/metadata").json()
    appointment = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Appointment")
    if not any(op["name"] == "find" for op in appointment.get("operation", [])):
        assert "Booking online is not available on this server." in text


def test_who_accessed_my_record_and_connected_apps(site: dict[str, Any], browser: Any) -> None:
    """The server's AuditEvents about the patient: this session's own reads, by the
    patient with the portal; and the apps connected to the account."""
    from selenium.webdriver.common.by import By

    text = ""
    browser.get(f"{site['server'].origin}/portal/#/results")
    browser.refresh()
    _settled(browser, "Results")  # the patient's app looks up her results
    # the server writes its audit trail off the request path, like reads of a user and app
    # grouped over FHIR_SERVER_AUDIT_WINDOW (5 s) into one event: let the window end
    for _ in range(4):
        time.sleep(6)
        browser.get(f"{site['server'].origin}/portal/#/settings")
        browser.refresh()  # the portal loads each screen's data once per page load
        _settled(browser, "Settings")
        text = browser.find_element(By.CSS_SELECTOR, "[aria-labelledby=settings-audit]").text
        if "Charles Ramirez, with Patient portal" in text and "results" in text:
            break
    assert re.search(r"Charles Ramirez, with Patient portal (viewed|looked up) ", text), text
    assert "results" in text  # the kinds of data, in words
    # the apps connected to the account (the server's account API): this portal
    apps = browser.find_element(By.CSS_SELECTOR, "[aria-labelledby=settings-apps]").text
    assert "Patient portal (this portal)" in apps and "May read and change your record" in apps, (
        apps
    )


def test_notification_choices_are_kept(site: dict[str, Any], browser: Any) -> None:
    """Turning off email about new bills is saved (a Basic of the patient's preferences,
    as the server's notifications read it) and shown again after a reload."""
    from selenium.webdriver.common.by import By

    _nav(browser, "Settings")
    box = browser.find_element(By.ID, "email-new-invoice")
    assert box.is_selected() and browser.find_element(By.ID, "sms-new-invoice").is_selected()
    box.click()
    browser.find_element(By.XPATH, "//button[.='Save my choices']").click()
    _wait(browser, lambda d: "Your choices are saved." in _text(d))
    browser.refresh()
    _settled(browser, "Settings")
    assert not browser.find_element(By.ID, "email-new-invoice").is_selected()
    assert browser.find_element(By.ID, "sms-new-invoice").is_selected()
    assert browser.find_element(By.ID, "email-new-result").is_selected()


def test_a_pdf_download(site: dict[str, Any], browser: Any, tmp_path: Path) -> None:
    """The patient summary as a PDF, when the server offers Patient/$summary."""
    from selenium.webdriver.common.by import By

    server: LiveServer = site["server"]
    statement = httpx.get(f"{server.base}/metadata").json()
    patient = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Patient")
    if not any(op["name"] == "summary" for op in patient.get("operation", [])):
        pytest.skip("this server does not offer Patient/$summary")
    browser.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(tmp_path)}
    )
    _nav(browser, "Documents")
    browser.find_element(By.XPATH, "//button[.='Download your patient summary (PDF)']").click()
    pdf = tmp_path / "patient-summary.pdf"
    _wait(browser, lambda d: pdf.is_file() and pdf.stat().st_size > 0)
    assert pdf.read_bytes().startswith(b"%PDF")
    assert "Downloaded." in _text(browser)


def test_uploading_and_downloading_a_document(
    site: dict[str, Any], browser: Any, tmp_path: Path
) -> None:
    """A file uploaded from Documents becomes a DocumentReference of the patient (the
    server keeps its bytes in a Binary), listed, and downloaded back unchanged."""
    from selenium.webdriver.common.by import By

    upload = tmp_path / "upload" / "blood-pressure-diary.txt"
    upload.parent.mkdir()
    upload.write_text("Mon 128/82\nTue 131/85\n")
    downloads = tmp_path / "downloads"
    browser.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    _nav(browser, "Documents")
    browser.find_element(By.ID, "upload-file").send_keys(str(upload))
    browser.find_element(By.ID, "upload-title").send_keys("Blood pressure diary")
    browser.find_element(By.XPATH, "//button[.='Upload']").click()
    _wait(browser, lambda d: "Blood pressure diary was uploaded." in _text(d))
    listed = browser.find_element(By.CSS_SELECTOR, "[aria-labelledby=docs-list]")
    button = _wait(
        browser,
        lambda d: listed.find_elements(
            By.XPATH, ".//button[starts-with(., 'Download Blood pressure diary')]"
        ),
    )[0]
    button.click()
    copy = downloads / "blood-pressure-diary.txt"
    _wait(browser, lambda d: copy.is_file() and copy.stat().st_size > 0)
    assert copy.read_text() == upload.read_text()


def test_writing_to_the_care_team(site: dict[str, Any], browser: Any, tmp_path: Path) -> None:
    """A new message with an attachment to a practitioner of the patient's care team
    starts a thread; a reply in it answers the last message and joins the thread."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.select import Select

    _nav(browser, "Messages")
    to = Select(browser.find_element(By.ID, "msg-to"))
    assert any("(the clinic)" in o.text for o in to.options)  # the managing organization
    to.select_by_index(0)
    browser.find_element(By.ID, "msg-subject").send_keys("Question about my allergy")
    browser.find_element(By.ID, "msg-text").send_keys("Can I take amoxicillin?")
    attachment = tmp_path / "rash-notes.txt"
    attachment.write_text("Rash on both arms since Monday.\n")
    browser.find_element(By.ID, "msg-attachment").send_keys(str(attachment))
    browser.find_element(By.XPATH, "//button[.='Send']").click()
    _wait(browser, lambda d: 'Your message "Question about my allergy" was sent.' in _text(d))
    threads = browser.find_element(By.CSS_SELECTOR, "[aria-labelledby=msg-threads]")
    summary = _wait(
        browser,
        lambda d: threads.find_elements(
            By.XPATH, ".//summary[contains(., 'Question about my allergy')]"
        ),
    )[0]
    summary.click()
    thread = summary.find_element(By.XPATH, "..")
    assert "Can I take amoxicillin?" in thread.text and "From You" in thread.text
    # the attachment, a Binary of the patient, downloads unchanged
    downloads = tmp_path / "downloads"
    browser.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    thread.find_element(By.XPATH, ".//button[.='Download the attachment rash-notes.txt']").click()
    copy = downloads / "rash-notes.txt"
    _wait(browser, lambda d: copy.is_file() and copy.stat().st_size > 0)
    assert copy.read_text() == attachment.read_text()
    thread.find_element(By.TAG_NAME, "textarea").send_keys("It is for a sore throat.")
    thread.find_element(By.XPATH, ".//button[.='Send reply']").click()
    _wait(
        browser,
        lambda d: d.find_elements(
            By.XPATH,
            "//summary[contains(., 'Question about my allergy') and contains(., '2 messages')]",
        ),
    )


def test_booking_and_cancelling_an_appointment(site: dict[str, Any], browser: Any) -> None:
    """With the server's Appointment/$find and $book: a free time found, booked (listed
    as upcoming), then cancelled."""
    from selenium.webdriver.common.by import By

    statement = httpx.get(f"{site['server'].base}/metadata").json()
    appointment = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Appointment")
    if not {"find", "book"} <= {op["name"] for op in appointment.get("operation", [])}:
        pytest.skip("this server does not offer Appointment/$find and $book")
    _nav(browser, "Appointments")
    browser.find_element(By.XPATH, "//button[.='Find free times']").click()
    free = _wait(browser, lambda d: d.find_elements(By.XPATH, "//button[starts-with(., 'Book ')]"))
    when = free[0].text.removeprefix("Book ")
    free[0].click()
    _wait(browser, lambda d: f"Booked: {when}" in _text(d))
    upcoming = browser.find_element(By.CSS_SELECTOR, "[aria-labelledby=appts-upcoming]")
    cancel = _wait(
        browser,
        lambda d: upcoming.find_elements(
            By.XPATH, f".//button[.='Cancel the appointment of {when}']"
        ),
    )
    cancel[0].click()
    browser.switch_to.alert.accept()
    _wait(browser, lambda d: f"The appointment of {when} is cancelled." in _text(d))


def test_a_result_trend_chart_and_reload(site: dict[str, Any], browser: Any) -> None:
    from selenium.webdriver.common.by import By

    _nav(browser, "Results")
    text = _text(browser)
    assert "Lab results" in text and "Reference range" in text
    assert "High" in text or "Normal" in text  # flags in words
    browser.find_element(By.LINK_TEXT, "Body weight").click()
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "[data-testid=trend-chart] canvas"))
    assert "#/results/29463-7" in browser.current_url
    rows = browser.find_elements(By.CSS_SELECTOR, "#content [role=region] table tbody tr")
    assert len(rows) >= 2 and " kg" in rows[0].text
    _shot(browser, "results-chart-desktop")
    _phone(browser, True)
    try:
        time.sleep(0.2)
        _shot(browser, "results-chart-mobile")
    finally:
        _phone(browser, False)
    browser.refresh()  # the place and the session are kept
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "[data-testid=trend-chart] canvas"))
    assert "Body weight" in _text(browser)


def test_an_expired_access_token_is_refreshed(site: dict[str, Any], browser: Any) -> None:
    """The portal stays signed in: when its access token has expired, the SMART client
    gets a new one with the refresh token (rotated) before its next request."""
    before = _session_tokens(browser)
    browser.execute_script(
        "const key = JSON.parse(sessionStorage.getItem('SMART_KEY'));"
        "const state = JSON.parse(sessionStorage.getItem(key));"
        "state.expiresAt = 0; sessionStorage.setItem(key, JSON.stringify(state));"
    )
    browser.get(browser.current_url.split("#")[0] + "#/medications")
    browser.refresh()
    _settled(browser, "Medications")
    after = _session_tokens(browser)
    assert after["access_token"] != before["access_token"]
    assert after["refresh_token"] != before["refresh_token"]  # rotated on use
    assert "Signed in as Charles Ramirez" in _text(browser)


def test_sign_out_revokes_the_tokens(site: dict[str, Any], browser: Any) -> None:
    from selenium.webdriver.common.by import By

    server: LiveServer = site["server"]
    tokens = _session_tokens(browser)
    assert tokens and tokens.get("refresh_token")
    browser.find_element(By.XPATH, "//nav//button[.='Sign out']").click()
    _wait(browser, lambda d: "You have signed out" in _text(d))
    assert _session_tokens(browser) is None
    refreshed = httpx.post(
        f"{server.origin}/auth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": "fhir-server-portal",
        },
    )
    assert refreshed.status_code == 400, refreshed.text
    read = httpx.get(
        f"{server.base}/Patient/demo-pat-000001",
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
    )
    assert read.status_code == 401


def test_paying_a_bill_online(site: dict[str, Any], browser: Any) -> None:
    """An open bill paid at the payment processor (the Stripe double: the test plays the
    payer and the processor's signed webhook): the portal sends the browser to the
    checkout page, and back on Billing the bill is paid and in the payment history."""
    from selenium.webdriver.common.by import By

    server: LiveServer = site["server"]
    stripe: FakeStripe = site["stripe"]
    browser.get(f"{server.origin}/portal/#/billing")
    wait_for_heading(browser, "Welcome to your patient portal")
    browser.find_element(By.XPATH, "//button[.='Sign in']").click()
    _sign_in(browser, "demo-pat-000002", site["password"])
    _settled(browser, "Billing")
    # an open bill: its Pay button names what is left to pay (the demo data has part
    # payments, which the history lists and the amount leaves out)
    button = browser.find_element(By.XPATH, "//button[starts-with(., 'Pay $')]")
    amount = button.text.removeprefix("Pay ")
    cents = round(float(amount.strip("$").replace(",", "")) * 100)
    button.click()
    _wait(browser, lambda d: d.current_url.startswith(f"{stripe.api_base}/pay/"))
    session = browser.current_url.rsplit("/", 1)[1]
    assert stripe.sessions[session]["amount_total"] == cents
    assert stripe.pay(session).send(f"{server.origin}/payments/webhook") == 200
    browser.get(stripe.sessions[session]["success_url"].replace("{CHECKOUT_SESSION_ID}", session))
    _settled(browser, "Billing")
    text = _text(browser)
    assert "Thank you: your payment was made." in text
    history = browser.find_element(By.CSS_SELECTOR, "[aria-labelledby=bill-history]").text
    assert f"{amount} paid" in history
    statements = browser.find_element(By.CSS_SELECTOR, "[aria-labelledby=bill-statements]")
    assert not statements.find_elements(By.XPATH, ".//button[starts-with(., 'Pay ')]")
    # education for the patient's conditions: MedlinePlus links by SNOMED CT code
    _nav(browser, "Health record")
    learn = browser.find_elements(By.PARTIAL_LINK_TEXT, "Learn about")
    assert learn and learn[0].get_attribute("href").startswith(
        "https://connect.medlineplus.gov/application?"
    )
    browser.find_element(By.XPATH, "//nav//button[.='Sign out']").click()
    _wait(browser, lambda d: "You have signed out" in _text(d))


def test_a_caregiver_switches_patients(site: dict[str, Any], browser: Any) -> None:
    """A caregiver of two signs in for one (the server's patient picker), asks for a
    refill of his prescription, then switches to the other."""
    from selenium.webdriver.common.by import By

    server: LiveServer = site["server"]
    browser.get(f"{server.origin}/portal/#/results")
    wait_for_heading(browser, "Welcome to your patient portal")
    browser.find_element(By.XPATH, "//button[.='Sign in']").click()
    _sign_in(browser, "demo-caregiver", site["password"], patient="Samuel Kim")
    _settled(browser, "Results")  # back where the sign-in started
    acting = browser.find_element(By.CSS_SELECTOR, "[data-testid=acting-for]")
    _wait(browser, lambda d: acting.text == "Samuel Kim")
    _shot(browser, "caregiver-desktop")
    # a refill of one of the patients' prescriptions, asked by their caregiver (a Task);
    # the demo data gives some prescriptions an open request already (one per prescription)
    _nav(browser, "Medications")
    asked = _request_a_refill(browser)
    browser.find_element(By.XPATH, "//button[.='Switch patient']").click()
    _sign_in(browser, "demo-caregiver", site["password"], patient="Mark Kowalski")
    _settled(browser, "Medications")
    _wait(
        browser,
        lambda d: (
            d.find_element(By.CSS_SELECTOR, "[data-testid=acting-for]").text == "Mark Kowalski"
        ),
    )
    assert "Samuel Kim" not in browser.find_element(By.TAG_NAME, "main").text
    asked = asked or _request_a_refill(browser)
    if not asked:  # the demo caregiver's patients: one open request, no prescription
        browser.find_element(By.XPATH, "//nav//button[.='Sign out']").click()
        _wait(browser, lambda d: "You have signed out" in _text(d))
        browser.get(f"{server.origin}/portal/#/medications")
        wait_for_heading(browser, "Welcome to your patient portal")
        browser.find_element(By.XPATH, "//button[.='Sign in']").click()
        _sign_in(browser, "demo-pat-000005", site["password"])
        _settled(browser, "Medications")
        assert _request_a_refill(browser), "demo patient 5 has a prescription to refill"


def _request_a_refill(browser: Any) -> bool:
    """On the Medications screen: ask for a refill of the first prescription without an
    open request, and check the request is shown; False when every one has one (then
    the screen shows it instead of the button)."""
    from selenium.webdriver.common.by import By

    _wait(browser, lambda d: "Current medications" in _text(d) or "No current" in _text(d))
    buttons = browser.find_elements(By.XPATH, "//button[starts-with(., 'Request a refill of ')]")
    if not buttons:
        shown = _text(browser)
        assert "A refill was requested" in shown or "No current medications" in shown, shown
        return False
    medication = buttons[0].text.removeprefix("Request a refill of ")
    buttons[0].click()
    _wait(browser, lambda d: "A refill was requested: Requested." in _text(d))
    refills = browser.find_element(By.CSS_SELECTOR, "[aria-labelledby=meds-refills]").text
    assert f"Refill of {medication}" in refills and "Requested" in refills, refills
    return True


def test_a_revoked_session_asks_to_sign_in_again(site: dict[str, Any], browser: Any) -> None:
    """Access ended elsewhere (the grant revoked): once the access token expires the
    refresh is refused, and the portal says to sign in again instead of showing data."""
    from selenium.webdriver.common.by import By

    server: LiveServer = site["server"]
    # a session of its own (not the one an earlier test left behind)
    browser.get(f"{server.origin}/portal/")
    browser.execute_script("sessionStorage.clear();")
    browser.delete_all_cookies()
    browser.refresh()
    wait_for_heading(browser, "Welcome to your patient portal")
    browser.find_element(By.XPATH, "//button[.='Sign in']").click()
    _sign_in(browser, "demo-pat-000003", site["password"])
    _settled(browser, "Home")
    user = browser.find_element(By.CSS_SELECTOR, "[data-testid=user-name]")
    _wait(browser, lambda d: user.text not in ("", "…", "you"))
    name = user.text
    tokens = _session_tokens(browser)
    assert tokens and tokens.get("refresh_token"), tokens
    revoked = httpx.post(
        f"{server.origin}/auth/revoke",
        data={"token": tokens["refresh_token"], "client_id": "fhir-server-portal"},
    )
    assert revoked.status_code == 200
    browser.execute_script(
        "const key = JSON.parse(sessionStorage.getItem('SMART_KEY'));"
        "const state = JSON.parse(sessionStorage.getItem(key));"
        "state.expiresAt = 0; sessionStorage.setItem(key, JSON.stringify(state));"
    )
    browser.refresh()
    _wait(browser, lambda d: "Please sign in again" in _text(d))
    assert name not in _text(browser)
