"""Appointments in the portal in a real headless Chromium (issue 22), as demo patient 1,
when the server offers Appointment/$find and $book: a free time found, booked and
cancelled; an appointment rescheduled (one transaction: the old one cancelled, the new
time booked); a reschedule to a time taken meanwhile refused in words with the old
appointment kept; a video visit booked shows its join link."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.live import LiveServer
from tests.portal.support import (
    PATIENT,
    PRACTITIONER,
    accessible_at_both_widths,
    nav,
    operations,
    session_tokens,
    settled,
    start_session,
    text,
    wait,
)
from tests.smart_support import NO_CHROMIUM, NO_CHROMIUM_REASON

pytestmark = [pytest.mark.skipif(NO_CHROMIUM, reason=NO_CHROMIUM_REASON)]


@pytest.fixture(autouse=True)
def _booking(site: dict[str, Any]) -> None:
    if not {"find", "book"} <= operations(site, "Appointment"):
        pytest.skip("this server does not offer Appointment/$find and $book")


def _upcoming(browser: Any) -> Any:
    from selenium.webdriver.common.by import By

    return browser.find_element(By.CSS_SELECTOR, "[aria-labelledby=appts-upcoming]")


def _item(browser: Any, appointment: str) -> Any:
    from selenium.webdriver.common.by import By

    return browser.find_element(By.CSS_SELECTOR, f"li[data-appointment='{appointment}']")


def test_booking_and_cancelling_an_appointment(patient_session: Any) -> None:
    """A free time found (with anyone), booked (listed as upcoming), then cancelled."""
    from selenium.webdriver.common.by import By

    browser = patient_session
    nav(browser, "Appointments")
    browser.find_element(By.XPATH, "//button[.='Find free times']").click()
    free = wait(browser, lambda d: d.find_elements(By.XPATH, "//button[starts-with(., 'Book ')]"))
    when = free[0].text.removeprefix("Book ")
    free[0].click()
    wait(browser, lambda d: f"Booked: {when}" in text(d))
    upcoming = _upcoming(browser)
    cancel = wait(
        browser,
        lambda d: upcoming.find_elements(
            By.XPATH, f".//button[.='Cancel the appointment of {when}']"
        ),
    )
    cancel[0].click()
    browser.switch_to.alert.accept()
    wait(browser, lambda d: f"The appointment of {when} is cancelled." in text(d))


def test_free_times_by_kind_of_care_and_place(patient_session: Any) -> None:
    """The search for free times narrowed by kind of care (a specialty of the
    practitioners' roles) and place (a Location): only the practitioner of that
    specialty is proposed, at that place."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.select import Select

    browser = patient_session
    nav(browser, "Appointments")
    book = browser.find_element(By.CSS_SELECTOR, "[aria-labelledby=appts-book]")
    kinds = Select(browser.find_element(By.ID, "book-specialty"))
    wait(browser, lambda d: len(kinds.options) > 2)
    kinds.select_by_visible_text("Internal medicine")  # demo practitioner 2's
    places = Select(browser.find_element(By.ID, "book-location"))
    wait(browser, lambda d: len(places.options) > 1)
    places.select_by_index(1)
    book.find_element(By.XPATH, ".//button[.='Find free times']").click()
    found = wait(browser, lambda d: book.find_elements(By.CSS_SELECTOR, "li[data-slot]"))
    names = {item.text.split("\n")[0] for item in found}
    doctors = {
        o.text
        for o in Select(browser.find_element(By.ID, "book-practitioner")).options
        if o.get_attribute("value")
    }
    offered = {d for d in doctors if any(d in n for n in names)}
    assert len(offered) == 1, names


def _open_reschedule(browser: Any, appointment: str) -> tuple[str, Any]:
    """Open "Reschedule" of an upcoming appointment and look for other times (with its
    practitioner, chosen already); returns its time as shown and the panel."""
    from selenium.webdriver.common.by import By

    item = wait(browser, lambda d: _item(d, appointment))
    when = item.find_element(By.TAG_NAME, "strong").text
    item.find_element(By.XPATH, f".//button[.='Reschedule the appointment of {when}']").click()
    panel = item.find_element(By.CSS_SELECTOR, ".panel")

    # the practitioners are loaded after the panel opens: the choice is there once they are
    def choice(_: Any) -> str:
        return str(panel.find_element(By.TAG_NAME, "select").get_attribute("value") or "")

    chosen = wait(browser, choice)
    assert chosen == PRACTITIONER
    panel.find_element(By.XPATH, ".//button[.='Find other times']").click()
    wait(browser, lambda d: panel.find_elements(By.XPATH, ".//button[starts-with(., 'Move to ')]"))
    return when, panel


def _booked_appointment(site: dict[str, Any], token: str) -> list[dict[str, Any]]:
    found = httpx.get(
        f"{site['server'].base}/Appointment",
        params={"patient": PATIENT, "status": "booked", "_sort": "date"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert found.status_code == 200, found.text
    return [e["resource"] for e in found.json().get("entry", [])]


def test_rescheduling_an_appointment(site: dict[str, Any], patient_session: Any) -> None:
    """The demo patient's next appointment moved to another free time of her
    practitioner: the new time is upcoming and booked, the old one is cancelled (with the
    reason the portal gave) and no longer upcoming."""
    from selenium.webdriver.common.by import By

    browser = patient_session
    nav(browser, "Appointments")
    old = "demo-appt-000001-99"
    when, panel = _open_reschedule(browser, old)
    choice = panel.find_elements(By.XPATH, ".//button[starts-with(., 'Move to ')]")[0]
    new_when = choice.text.removeprefix("Move to ")
    assert new_when != when
    choice.click()
    wait(browser, lambda d: f"Moved: your appointment is now {new_when}" in text(d))
    assert f"The one of {when} is cancelled." in text(browser)
    upcoming = _upcoming(browser)
    wait(browser, lambda d: new_when in upcoming.text)
    assert when not in upcoming.text
    moved = _item(browser, old)
    assert "Cancelled" in moved.text and "Rescheduled by the patient" in moved.text
    assert (
        moved.find_element(By.XPATH, "ancestor::section").get_attribute("aria-labelledby")
        == "appts-past"
    )
    booked = _booked_appointment(site, session_tokens(browser)["access_token"])
    assert old not in {a["id"] for a in booked}


def test_a_refused_reschedule_keeps_the_appointment(
    site: dict[str, Any], patient_session: Any
) -> None:
    """The time chosen was taken meanwhile (booked elsewhere between the look-up and the
    click): the portal says so in words, looks again, and the appointment stays booked
    at its time (the transaction changed nothing)."""
    from selenium.webdriver.common.by import By

    browser = patient_session
    nav(browser, "Appointments")
    token = session_tokens(browser)["access_token"]
    now = datetime.now(UTC)
    upcoming = [
        a for a in _booked_appointment(site, token) if datetime.fromisoformat(a["start"]) > now
    ]
    mine = next(
        a
        for a in upcoming
        if any(p["actor"]["reference"] == PRACTITIONER for p in a["participant"])
    )
    when, panel = _open_reschedule(browser, mine["id"])
    first = panel.find_element(By.CSS_SELECTOR, "li[data-slot]")
    slot = first.get_attribute("data-slot")
    taken = httpx.post(  # by the patient in another tab: $book fills in the times
        f"{site['server'].base}/Appointment/$book",
        json={
            "resourceType": "Parameters",
            "parameter": [
                {
                    "name": "appt-resource",
                    "resource": {
                        "resourceType": "Appointment",
                        "status": "proposed",
                        "slot": [{"reference": slot}],
                        "participant": [
                            {"actor": {"reference": f"Patient/{PATIENT}"}, "status": "accepted"}
                        ],
                    },
                }
            ],
        },
        headers={"Authorization": f"Bearer {token}"},
    )
    assert taken.status_code == 201, taken.text
    first.find_element(By.XPATH, ".//button[starts-with(., 'Move to ')]").click()
    wait(browser, lambda d: "That time was just taken, choose another." in panel.text)
    # the list was looked up again: the taken time is gone from it
    wait(browser, lambda d: not panel.find_elements(By.CSS_SELECTOR, f"li[data-slot='{slot}']"))
    item = _item(browser, mine["id"])
    assert "Booked" in item.text and when in item.text
    accessible_at_both_widths(browser, "appointments-reschedule", show=item)
    still = httpx.get(
        f"{site['server'].base}/Appointment/{mine['id']}",
        headers={"Authorization": f"Bearer {token}"},
    ).json()
    assert still["status"] == "booked"


def test_a_video_visit_shows_its_join_link(patient_session: Any) -> None:
    """A free video-visit time of the patient's practitioner, booked: the upcoming
    appointment shows the join link the server gave it (FHIR_SERVER_TELEHEALTH_URL_TEMPLATE)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.select import Select

    browser = patient_session
    browser.get(browser.current_url.split("#")[0] + "#/appointments")
    browser.refresh()  # nothing left open by an earlier test
    settled(browser, "Appointments")
    Select(browser.find_element(By.ID, "book-practitioner")).select_by_value(PRACTITIONER)
    browser.find_element(By.XPATH, "//button[.='Find free times']").click()
    book = browser.find_element(By.CSS_SELECTOR, "[aria-labelledby=appts-book]")
    video = wait(
        browser,
        lambda d: book.find_elements(By.CSS_SELECTOR, "li[data-slot='Slot/portal-test-video']"),
    )[0]
    assert "Video visit" in video.text
    button = video.find_element(By.XPATH, ".//button[starts-with(., 'Book ')]")
    when = button.text.removeprefix("Book ")
    button.click()
    wait(browser, lambda d: f"Booked: {when}" in text(d))
    upcoming = _upcoming(browser)
    link = wait(
        browser,
        lambda d: upcoming.find_elements(By.PARTIAL_LINK_TEXT, "Join the video visit"),
    )[0]
    assert link.get_attribute("href").startswith("https://meet.example.org/")
    item = link.find_element(By.XPATH, "ancestor::li")
    assert when in item.text and "Video visit" in item.text
    assert item.get_attribute("data-appointment") in link.get_attribute("href")


def test_the_cancellation_cutoff_is_said_in_words(
    site: dict[str, Any], browser: Any, tmp_path: Path
) -> None:
    """The same data served with FHIR_SERVER_CANCEL_CUTOFF=30d (a second server on the
    store): cancelling or moving an appointment online is refused, and the portal says
    it is too late and to phone the clinic, not a status code; the appointment stays
    booked."""
    from selenium.webdriver.common.by import By

    strict = LiveServer(
        site["storage"], tmp_path / "strict.log", auth="smart", FHIR_SERVER_CANCEL_CUTOFF="30d"
    )
    try:
        start_session(browser, {**site, "server": strict}, route="appointments")
        upcoming = _upcoming(browser)
        item = upcoming.find_elements(By.CSS_SELECTOR, "li[data-appointment]")[0]
        when = item.find_element(By.TAG_NAME, "strong").text
        item.find_element(By.XPATH, f".//button[.='Cancel the appointment of {when}']").click()
        browser.switch_to.alert.accept()
        too_late = "too late to cancel this appointment online (online changes close 30 days"
        wait(browser, lambda d: too_late in item.text)
        assert "please phone your clinic" in item.text and "FHIR_SERVER" not in item.text
        appointment = item.get_attribute("data-appointment")
        when, panel = _open_reschedule(browser, appointment)
        panel.find_elements(By.XPATH, ".//button[starts-with(., 'Move to ')]")[0].click()
        wait(browser, lambda d: "It is too late to change this appointment online" in panel.text)
        assert "Booked" in _item(browser, appointment).text
    finally:
        strict.stop()
