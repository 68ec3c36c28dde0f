"""Messages in the portal in a real headless Chromium (issue 22), as demo patient 1:
writing to the care team with an attachment and replying in the thread; an unread
message from the care team shown as unread, marked read when it is opened (the server's
read receipt, kept on reload) and no longer counted on Home."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.portal.support import (
    UNREAD_TOPIC,
    accessible_at_both_widths,
    nav,
    settled,
    text,
    wait,
)
from tests.smart_support import NO_CHROMIUM, NO_CHROMIUM_REASON

pytestmark = [pytest.mark.skipif(NO_CHROMIUM, reason=NO_CHROMIUM_REASON)]


def test_writing_to_the_care_team(patient_session: Any, tmp_path: Path) -> None:
    """A new message with an attachment to a practitioner of the patient's care team
    starts a thread; a reply in it answers the last message and joins the thread."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.select import Select

    browser = patient_session
    nav(browser, "Messages")
    to = Select(browser.find_element(By.ID, "msg-to"))
    assert any("(the clinic)" in o.text for o in to.options)  # the managing organization
    assert any("(your care team)" in o.text for o in to.options)  # the patient's CareTeam
    to.select_by_index(0)
    browser.find_element(By.ID, "msg-subject").send_keys("Question about my allergy")
    browser.find_element(By.ID, "msg-text").send_keys("Can I take amoxicillin?")
    attachment = tmp_path / "rash-notes.txt"
    attachment.write_text("Rash on both arms since Monday.\n")
    browser.find_element(By.ID, "msg-attachment").send_keys(str(attachment))
    browser.find_element(By.XPATH, "//button[.='Send']").click()
    wait(browser, lambda d: 'Your message "Question about my allergy" was sent.' in text(d))
    threads = browser.find_element(By.CSS_SELECTOR, "[aria-labelledby=msg-threads]")
    summary = wait(
        browser,
        lambda d: threads.find_elements(
            By.XPATH, ".//summary[contains(., 'Question about my allergy')]"
        ),
    )[0]
    summary.click()
    thread = summary.find_element(By.XPATH, "..")
    assert "Can I take amoxicillin?" in thread.text and "From You" in thread.text
    assert "Not read yet" in thread.text  # nobody of the care team has read it
    # the attachment, a Binary of the patient, downloads unchanged
    downloads = tmp_path / "downloads"
    browser.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    thread.find_element(By.XPATH, ".//button[.='Download the attachment rash-notes.txt']").click()
    copy = downloads / "rash-notes.txt"
    wait(browser, lambda d: copy.is_file() and copy.stat().st_size > 0)
    assert copy.read_text() == attachment.read_text()
    thread.find_element(By.TAG_NAME, "textarea").send_keys("It is for a sore throat.")
    thread.find_element(By.XPATH, ".//button[.='Send reply']").click()
    wait(
        browser,
        lambda d: d.find_elements(
            By.XPATH,
            "//summary[contains(., 'Question about my allergy') and contains(., '2 messages')]",
        ),
    )


def _unread_on_home(browser: Any) -> int:
    from selenium.webdriver.common.by import By

    nav(browser, "Home")
    box = browser.find_element(By.CSS_SELECTOR, "[aria-labelledby=home-messages]")
    if "No unread messages." in box.text:
        return 0
    return int(box.find_element(By.CSS_SELECTOR, "[data-testid=unread-count] strong").text)


def _thread(browser: Any, topic: str) -> Any:
    from selenium.webdriver.common.by import By

    threads = browser.find_element(By.CSS_SELECTOR, "[aria-labelledby=msg-threads]")
    path = f".//details[summary[contains(., '{topic}')]]"
    return wait(browser, lambda d: threads.find_elements(By.XPATH, path))[0]


def test_opening_an_unread_message_marks_it_read(patient_session: Any) -> None:
    """A message from the patient's practitioner, not yet read: shown as unread and
    counted on Home; opening it records the read receipt (the patient is its recipient),
    so it shows as read, Home counts one fewer, and a reload keeps it read."""
    from selenium.webdriver.common.by import By

    browser = patient_session
    before = _unread_on_home(browser)
    assert before >= 1
    nav(browser, "Messages")
    thread = _thread(browser, UNREAD_TOPIC)
    summary = thread.find_element(By.TAG_NAME, "summary")
    assert "1 unread" in summary.text
    summary.click()
    message = thread.find_element(By.CSS_SELECTOR, ".message")
    assert "Your results are normal." in message.text
    wait(browser, lambda d: "Read " in message.text and "Unread" not in message.text)
    assert "unread" not in summary.text
    assert not browser.find_elements(By.CSS_SELECTOR, "[role=alert]")
    accessible_at_both_widths(browser, "messages-read", show=thread)
    assert _unread_on_home(browser) == before - 1
    browser.get(browser.current_url.split("#")[0] + "#/messages")
    browser.refresh()
    settled(browser, "Messages")
    thread = _thread(browser, UNREAD_TOPIC)
    assert "unread" not in thread.find_element(By.TAG_NAME, "summary").text
    thread.find_element(By.TAG_NAME, "summary").click()
    wait(browser, lambda d: "Read " in thread.find_element(By.CSS_SELECTOR, ".message").text)
