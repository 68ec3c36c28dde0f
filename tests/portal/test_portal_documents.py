"""Documents in the portal in a real headless Chromium (issue 22), as demo patient 1:
the patient summary downloaded as a PDF, and a file uploaded, listed and downloaded back
unchanged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.portal.support import nav, operations, text, wait
from tests.smart_support import NO_CHROMIUM, NO_CHROMIUM_REASON

pytestmark = [pytest.mark.skipif(NO_CHROMIUM, reason=NO_CHROMIUM_REASON)]


def test_a_pdf_download(site: dict[str, Any], patient_session: Any, tmp_path: Path) -> None:
    """The patient summary as a PDF, when the server offers Patient/$summary."""
    from selenium.webdriver.common.by import By

    browser = patient_session
    if "summary" not in operations(site, "Patient"):
        pytest.skip("this server does not offer Patient/$summary")
    browser.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(tmp_path)}
    )
    nav(browser, "Documents")
    browser.find_element(By.XPATH, "//button[.='Download your patient summary (PDF)']").click()
    pdf = tmp_path / "patient-summary.pdf"
    wait(browser, lambda d: pdf.is_file() and pdf.stat().st_size > 0)
    assert pdf.read_bytes().startswith(b"%PDF")
    assert "Downloaded." in text(browser)


def test_uploading_and_downloading_a_document(patient_session: Any, tmp_path: Path) -> None:
    """A file uploaded from Documents becomes a DocumentReference of the patient (the
    server keeps its bytes in a Binary), listed, and downloaded back unchanged."""
    from selenium.webdriver.common.by import By

    browser = patient_session
    upload = tmp_path / "upload" / "blood-pressure-diary.txt"
    upload.parent.mkdir()
    upload.write_text("Mon 128/82\nTue 131/85\n")
    downloads = tmp_path / "downloads"
    browser.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    nav(browser, "Documents")
    browser.find_element(By.ID, "upload-file").send_keys(str(upload))
    browser.find_element(By.ID, "upload-title").send_keys("Blood pressure diary")
    browser.find_element(By.XPATH, "//button[.='Upload']").click()
    wait(browser, lambda d: "Blood pressure diary was uploaded." in text(d))
    listed = browser.find_element(By.CSS_SELECTOR, "[aria-labelledby=docs-list]")
    button = wait(
        browser,
        lambda d: listed.find_elements(
            By.XPATH, ".//button[starts-with(., 'Download Blood pressure diary')]"
        ),
    )[0]
    button.click()
    copy = downloads / "blood-pressure-diary.txt"
    wait(browser, lambda d: copy.is_file() and copy.stat().st_size > 0)
    assert copy.read_text() == upload.read_text()
