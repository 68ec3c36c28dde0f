"""Billing in the portal in a real headless Chromium (issue 22), as demo patient 2: an
open bill paid at the payment processor (the Stripe double: the test plays the payer
and the processor's signed webhook), then paid and in the payment history; and the
education links of her conditions."""

from __future__ import annotations

from typing import Any

import pytest

from tests.doubles.fake_stripe import FakeStripe
from tests.live import LiveServer
from tests.portal.support import nav, settled, start_session, text, wait
from tests.smart_support import NO_CHROMIUM, NO_CHROMIUM_REASON

pytestmark = [pytest.mark.skipif(NO_CHROMIUM, reason=NO_CHROMIUM_REASON)]


def test_paying_a_bill_online(site: dict[str, Any], browser: Any) -> None:
    """The portal sends the browser to the checkout page, and back on Billing the bill
    is paid and in the payment history."""
    from selenium.webdriver.common.by import By

    server: LiveServer = site["server"]
    stripe: FakeStripe = site["stripe"]
    start_session(browser, site, "demo-pat-000002", route="billing")
    # an open bill: its Pay button names what is left to pay (the demo data has part
    # payments, which the history lists and the amount leaves out)
    button = browser.find_element(By.XPATH, "//button[starts-with(., 'Pay $')]")
    amount = button.text.removeprefix("Pay ")
    cents = round(float(amount.strip("$").replace(",", "")) * 100)
    button.click()
    wait(browser, lambda d: d.current_url.startswith(f"{stripe.api_base}/pay/"))
    session = browser.current_url.rsplit("/", 1)[1]
    assert stripe.sessions[session]["amount_total"] == cents
    assert stripe.pay(session).send(f"{server.origin}/payments/webhook") == 200
    browser.get(stripe.sessions[session]["success_url"].replace("{CHECKOUT_SESSION_ID}", session))
    settled(browser, "Billing")
    shown = text(browser)
    assert "Thank you: your payment was made." in shown
    history = browser.find_element(By.CSS_SELECTOR, "[aria-labelledby=bill-history]").text
    assert f"{amount} paid" in history
    statements = browser.find_element(By.CSS_SELECTOR, "[aria-labelledby=bill-statements]")
    assert not statements.find_elements(By.XPATH, ".//button[starts-with(., 'Pay ')]")
    # education for the patient's conditions: MedlinePlus links by SNOMED CT code
    nav(browser, "Health record")
    learn = browser.find_elements(By.PARTIAL_LINK_TEXT, "Learn about")
    assert learn and learn[0].get_attribute("href").startswith(
        "https://connect.medlineplus.gov/application?"
    )
    browser.find_element(By.XPATH, "//nav//button[.='Sign out']").click()
    wait(browser, lambda d: "You have signed out" in text(d))
