"""What the notification tests of health maintenance, quiet hours and the events for
people share: the app on a store mailing through a real local SMTP server
(``tests/smtp_receiver.py``), with settings of the test's choosing, and waits on the
Communication records of what was sent."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from fhir_server.app import create_app
from fhir_server.config import Settings
from fhir_server.notifications.recipients import PREFERENCES_SYSTEM
from smart_auth.store.base import Client, DuplicateError
from tests.conftest import BASE
from tests.smtp_receiver import Mailbox, smtp_server

PORTAL = "https://portal.example/clinic/"


@pytest.fixture(name="mailbox")
def mailbox_fixture() -> Iterator[Mailbox]:
    """``mailbox``: a real local SMTP server (import this into the test module)."""
    with smtp_server() as box:
        yield box


def preferences_of(person: str, *extensions: dict[str, Any]) -> dict[str, Any]:
    """A person's preferences Basic (``fhir_server.notifications.recipients``)."""
    return {
        "resourceType": "Basic",
        "code": {"coding": [{"system": PREFERENCES_SYSTEM, "code": "preferences"}]},
        "subject": {"reference": person},
        "extension": list(extensions),
    }


@asynccontextmanager
async def app_on(
    storage: str, mailbox: Mailbox, **overrides: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """The app on ``storage`` (a URL), mailing through ``mailbox``; a client of it."""
    options: dict[str, Any] = {
        "storage": storage,
        "auth": "smart",
        "smtp_url": mailbox.url,
        "smtp_from": "portal@clinic.example",
        "portal_url": PORTAL,
        "reminder_leads": "1h,8s",
    }
    app = create_app(Settings(**(options | overrides)))
    async with app.router.lifespan_context(app):
        with contextlib.suppress(DuplicateError):  # a second app on the same store
            app.state.auth.store.add_client(Client(client_id="test-app"))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE + "/") as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


def at(seconds: float) -> str:
    """The instant ``seconds`` from now, as FHIR writes it."""
    moment = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=seconds)
    return moment.isoformat().replace("+00:00", "Z")


async def records_about(
    http: httpx.AsyncClient, admin: dict[str, str], patient: str = "Patient/alice"
) -> list[dict[str, Any]]:
    found = await http.get(
        "Communication", params={"subject": patient, "_count": "100"}, headers=admin
    )
    assert found.status_code == 200, found.text
    return [e["resource"] for e in found.json().get("entry", [])]


async def wait_records(
    http: httpx.AsyncClient, admin: dict[str, str], count: int, timeout: float = 20
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while len(found := await records_about(http, admin)) < count:
        assert time.monotonic() < deadline, found
        await asyncio.sleep(0.2)
    return found


def subjects(mailbox: Mailbox) -> list[str]:
    return sorted(str(m["Subject"]) for m in mailbox.snapshot())
