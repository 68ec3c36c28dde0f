"""Topic-based Subscriptions (Subscriptions R5 Backport IG) on a live ``fhir-server
serve`` (issue 17): two worker processes send one handshake and each event once, in
order, numbered 1, 2, 3... in ``notification-event.event-number``, and ``$events``
answers them again; a notification refused when the server is killed with ``kill -9`` is
sent after the restart with the same event number. Once (SQLite): the leases and cursors
are the classic subscriptions' (``tests/test_subscriptions_backport.py`` runs the topic
logic on both stores)."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import httpx

from fhir_server.events.topics import CANONICAL_BASE
from tests.hook_receiver import Received, receiver
from tests.live import LiveServer

JSON = {"content-type": "application/fhir+json"}
ENV = {"FHIR_SERVER_OUTBOUND_ALLOW": "127.0.0.1,localhost", "FHIR_SERVER_DELIVERY_BACKOFF": "0.2"}
IG = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"


def _subscribe(base: str, endpoint: str) -> str:
    body = {
        "resourceType": "Subscription",
        "meta": {"profile": [IG + "backport-subscription"]},
        "status": "requested",
        "reason": "live",
        "criteria": CANONICAL_BASE + "encounter-change",
        "channel": {
            "type": "rest-hook",
            "endpoint": endpoint,
            "payload": "application/fhir+json",
            "_payload": {
                "extension": [{"url": IG + "backport-payload-content", "valueCode": "id-only"}]
            },
        },
    }
    created = httpx.post(f"{base}/Subscription", json=body, headers=JSON)
    assert created.status_code == 201, created.text
    sid = created.json()["id"]
    deadline = time.monotonic() + 15
    while httpx.get(f"{base}/Subscription/{sid}").json()["status"] != "active":
        assert time.monotonic() < deadline, "the subscription was not activated"
        time.sleep(0.05)
    return sid


def _encounter(base: str) -> str:
    body = {"resourceType": "Encounter", "status": "arrived", "class": {"code": "AMB"}}
    written = httpx.post(f"{base}/Encounter", json=body, headers=JSON)
    assert written.status_code == 201, written.text
    return str(written.json()["id"])


def _event(received: Received) -> tuple[str, str, str]:
    """(type, event number, focus id) of a notification."""
    status = received.json()["entry"][0]["resource"]["parameter"]
    kind = next(p["valueCode"] for p in status if p["name"] == "type")
    events = [p["part"] for p in status if p["name"] == "notification-event"]
    if not events:
        return kind, "", ""
    parts = {p["name"]: p for p in events[0]}
    focus = parts["focus"]["valueReference"]["reference"].split("/_history")[0]
    return kind, parts["event-number"]["valueString"], focus.rsplit("/", 1)[1]


def test_two_workers_send_each_topic_event_once_in_order(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'fhir.sqlite3'}"
    with receiver() as hook:
        server = LiveServer(storage, tmp_path / "server.log", FHIR_SERVER_WORKERS="2", **ENV)
        try:
            sid = _subscribe(server.base, hook.url)
            ids = [_encounter(server.base) for _ in range(15)]
            hook.wait_for(16, timeout=30)
            time.sleep(1.5)  # a second delivery would come by now
            received = hook.snapshot()
            events = httpx.get(f"{server.base}/Subscription/{sid}/$events").json()
        finally:
            server.stop()
    assert [_event(r) for r in received] == [
        ("handshake", "", ""),
        *(("event-notification", str(n), i) for n, i in enumerate(ids, 1)),
    ]
    assert [e["fullUrl"].rsplit("/", 1)[1] for e in events["entry"][1:]] == ids


def test_a_notification_refused_before_kill_9_is_sent_again_with_its_number(
    tmp_path: Path,
) -> None:
    storage = f"sqlite:///{tmp_path / 'fhir.sqlite3'}"
    env: dict[str, Any] = {**ENV, "FHIR_SERVER_DELIVERY_ATTEMPTS": "30"}
    with receiver() as hook:
        server = LiveServer(storage, tmp_path / "first.log", **env)
        try:
            _subscribe(server.base, hook.url)
            first = _encounter(server.base)
            hook.wait_for(2)
            hook.status = 500  # the endpoint fails: the next notification stays pending
            second = _encounter(server.base)
            hook.wait_for(3)
        finally:
            server.stop(signal.SIGKILL)
        hook.status = 200
        tried = len(hook.snapshot())
        restarted = LiveServer(storage, tmp_path / "second.log", **env)
        try:
            received = hook.wait_for(tried + 1, timeout=30)
            deadline = time.monotonic() + 15
            while "2" not in {_event(r)[1] for r in received[tried:]}:
                assert time.monotonic() < deadline, [_event(r) for r in received]
                time.sleep(0.1)
                received = hook.snapshot()
        finally:
            restarted.stop()
    # at least once: what the dead process sent in its last moments may come again, with
    # the same number (a receiver drops it by number)
    again = {number: focus for _, number, focus in map(_event, received[tried:])}
    assert _event(received[1]) == ("event-notification", "1", first)
    assert again["2"] == second
    assert again.get("1", first) == first
