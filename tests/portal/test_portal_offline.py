"""The portal as an installable app that knows when it is offline, in a real headless
Chromium (issue 22): its service worker keeps the app shell (page, script, stylesheet,
manifest, icons) and nothing else (no FHIR response, no token, nothing of a patient,
after every screen was used); without a network the portal opens from that shell and
says plainly that it is offline."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest

from fhir_server.portal import STATIC
from tests.portal.support import SCREENS, accessible_at_both_widths, nav, settled, text, wait
from tests.smart_support import NO_CHROMIUM, NO_CHROMIUM_REASON, wait_for_heading

pytestmark = [pytest.mark.skipif(NO_CHROMIUM, reason=NO_CHROMIUM_REASON)]

CACHED = (
    "const done = arguments[arguments.length - 1];"
    "(async () => { const urls = [];"
    " for (const name of await caches.keys()) {"
    "  for (const request of await (await caches.open(name)).keys()) urls.push(request.url); }"
    " return urls; })().then(done, (e) => done(['error: ' + e]));"
)


def _shell(origin: str) -> set[str]:
    built = (STATIC / "assets").iterdir()
    assets = [f"assets/{p.name}" for p in built if p.suffix in (".js", ".css")]
    files = ["", "manifest.webmanifest", "icon.svg", "icon-192.png", "icon-512.png", *assets]
    return {f"{origin}/portal/{name}" for name in files}


def _offline(browser: Any, offline: bool) -> None:
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd(
        "Network.emulateNetworkConditions",
        {"offline": offline, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
    )


def test_the_service_worker_keeps_the_app_shell_only(
    site: dict[str, Any], patient_session: Any
) -> None:
    browser = patient_session
    origin = site["server"].origin
    ready = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "navigator.serviceWorker.ready.then((r) => done(r.active && r.active.scriptURL),"
        " (e) => done('error: ' + e));"
    )
    assert ready == f"{origin}/portal/sw.js"
    for label, _ in SCREENS:  # the app used: every screen's data looked up
        nav(browser, label)
    browser.refresh()  # a page controlled by the worker from its start
    settled(browser, "Settings")
    assert browser.execute_script("return !!navigator.serviceWorker.controller")
    kept = browser.execute_async_script(CACHED)
    assert kept, "the service worker kept nothing"
    assert set(kept) <= _shell(origin), sorted(set(kept) - _shell(origin))
    for url in kept:
        parts = urlsplit(url)
        assert parts.path.startswith("/portal/") and not parts.query, url
        assert "/fhir" not in url and "/auth" not in url and "config.json" not in url, url


def test_offline_the_portal_says_so(site: dict[str, Any], patient_session: Any) -> None:
    """The network gone: the signed-in portal says it is offline, and a screen whose
    data cannot be loaded says why; a new page load comes from the kept shell and says
    so too (instead of the browser's error page); back online, the portal works again."""
    browser = patient_session
    origin = site["server"].origin
    browser.get(f"{origin}/portal/#/")
    settled(browser, "Home")
    try:
        _offline(browser, True)
        wait(browser, lambda d: "You are offline." in text(d))  # the open screen says so
        nav(browser, "Results")  # its data cannot be loaded: said in words
        wait(browser, lambda d: "you are offline (or the server cannot be reached)" in text(d))
        accessible_at_both_widths(browser, "offline-screen")
        browser.refresh()  # a new page load: the page and its script from the kept shell
        wait_for_heading(browser, "Welcome to your patient portal")
        wait(browser, lambda d: "You are offline. The portal needs the internet" in text(d))
        assert "This portal is not for emergencies." in text(browser)
        # the shell comes from the worker's cache, anything else would need the network
        answered = browser.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "const get = (u) => fetch(u, {cache: 'no-store'}).then((r) => r.status, () => 0);"
            "Promise.all([get('icon.svg'), get('config.json')]).then(done);"
        )
        assert answered == [200, 0], answered
        accessible_at_both_widths(browser, "offline")
    finally:
        _offline(browser, False)
    browser.refresh()
    settled(browser, "Results")
    assert "You are offline" not in text(browser)
