"""``$status`` and ``$events`` of topic-based Subscriptions (Subscriptions R5 Backport IG,
https://hl7.org/fhir/uv/subscriptions-backport/) over HTTP on every store (issue 17):
the number of events notified, the notifications sent again by number and content, and
bad calls as OperationOutcomes (never a 5xx). Who may call them is in
``test_subscriptions_backport`` (a patient's Subscription, another patient's token)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from tests.conftest import BASE
from tests.hook_receiver import Receiver
from tests.test_subscriptions import bearer, hook, http, seed, until_received
from tests.test_subscriptions_backport import (
    events_of,
    settings,
    status_of_bundle,
    subscribe,
    topic_subscription,
)

FIXTURES = (hook, http, settings)
"""The fixtures shared with ``test_subscriptions`` and ``test_subscriptions_backport``."""


async def test_status_and_events_answer_what_was_sent(
    app: Any, http: httpx.AsyncClient, hook: Receiver
) -> None:
    admin = bearer(app, "system/*.cruds")
    await seed(http, admin)
    sid = await subscribe(
        http, admin, topic_subscription(hook.url, "encounter-change", "patient=Patient/alice"), hook
    )
    ids = []
    for _ in range(3):
        encounter = {
            "resourceType": "Encounter",
            "status": "arrived",
            "class": {"code": "AMB"},
            "subject": {"reference": "Patient/alice"},
        }
        ids.append((await http.post("Encounter", json=encounter, headers=admin)).json()["id"])
    await until_received(hook, 4)
    deadline = time.monotonic() + 5
    while True:
        bundle = (await http.get(f"Subscription/$status?id={sid}", headers=admin)).json()
        assert bundle["type"] == "searchset" and bundle["total"] == 1
        status = status_of_bundle(bundle)
        if status["events-since-subscription-start"] == ["3"] or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert status["type"] == ["query-status"] and status["status"] == ["active"]
    assert status["events-since-subscription-start"] == ["3"]
    instance = (await http.get(f"Subscription/{sid}/$status", headers=admin)).json()
    assert instance["total"] == 1
    events = await events_of(http, sid, admin, 2, "?eventsSinceNumber=2")
    numbers = [e[0]["valueString"] for e in status_of_bundle(events)["notification-event"]]
    assert numbers == ["2", "3"]
    assert [e["fullUrl"] for e in events["entry"][1:]] == [f"{BASE}/Encounter/{i}" for i in ids[1:]]
    only = await http.get(
        f"Subscription/{sid}/$events?eventsSinceNumber=1&eventsUntilNumber=1&content=empty",
        headers=admin,
    )
    assert len(only.json()["entry"]) == 1
    assert "focus" not in only.text


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("Subscription/{sid}/$events?eventsSinceNumber=two", 400, "invalid"),
        ("Subscription/{sid}/$events?content=all", 400, "invalid"),
        ("Subscription/{classic}/$events", 400, "invalid"),
        ("Subscription/$status?status=sleeping", 400, "invalid"),
        ("Subscription/$status?id=nope", 404, "not-found"),
        ("Subscription/$status?id=bad*id", 400, "invalid"),
    ],
)
async def test_bad_status_and_events_calls_are_outcomes(
    app: Any, http: httpx.AsyncClient, hook: Receiver, path: str, status: int, code: str
) -> None:
    admin = bearer(app, "system/*.cruds")
    created = await http.post(
        "Subscription",
        json={**topic_subscription(hook.url, "new-message"), "status": "off"},
        headers=admin,
    )
    classic = {
        "resourceType": "Subscription",
        "status": "off",
        "reason": "test",
        "criteria": "Observation?",
        "channel": {"type": "rest-hook", "endpoint": hook.url},
    }
    other = await http.post("Subscription", json=classic, headers=admin)
    url = path.format(sid=created.json()["id"], classic=other.json()["id"])
    response = await http.get(url, headers=admin)
    assert response.status_code == status, response.text
    assert response.json()["issue"][0]["code"] == code
