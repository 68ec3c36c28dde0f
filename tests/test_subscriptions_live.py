"""Subscription delivery on a live ``fhir-server serve`` (issue 17): an acknowledged write
whose server is killed with ``kill -9`` before the notification was accepted is
delivered after a restart, and two worker processes deliver each event once, in order.
They run once (SQLite), not per store: the outbox and the cursor leases are the same
code on MongoDB (``tests/test_subscriptions.py`` runs the delivery on both stores)."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import httpx

from tests.hook_receiver import receiver
from tests.live import LiveServer

JSON = {"content-type": "application/fhir+json"}
ENV = {"FHIR_SERVER_OUTBOUND_ALLOW": "127.0.0.1,localhost", "FHIR_SERVER_DELIVERY_BACKOFF": "0.2"}


def _subscribe(base: str, endpoint: str) -> str:
    body = {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "live",
        "criteria": "Observation?",
        "channel": {"type": "rest-hook", "endpoint": endpoint, "payload": "application/fhir+json"},
    }
    created = httpx.post(f"{base}/Subscription", json=body, headers=JSON)
    assert created.status_code == 201, created.text
    sid = created.json()["id"]
    deadline = time.monotonic() + 15
    while httpx.get(f"{base}/Subscription/{sid}").json()["status"] != "active":
        assert time.monotonic() < deadline, "the subscription was not activated"
        time.sleep(0.05)
    return sid


def _observation(n: int) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": f"reading {n}"},
        "valueQuantity": {"value": n},
    }


def test_a_write_acknowledged_before_kill_9_is_delivered_after_restart(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'fhir.sqlite3'}"
    with receiver() as hook:
        env = {**ENV, "FHIR_SERVER_DELIVERY_ATTEMPTS": "30"}
        server = LiveServer(storage, tmp_path / "first.log", **env)
        try:
            _subscribe(server.base, hook.url)
            hook.status = 500  # the endpoint fails: the notification stays pending
            written = httpx.post(f"{server.base}/Observation", json=_observation(1), headers=JSON)
            assert written.status_code == 201
            oid = written.json()["id"]
            hook.wait_for(1)  # tried, refused by the endpoint
        finally:
            server.stop(signal.SIGKILL)
        hook.status = 200
        tried = len(hook.snapshot())
        restarted = LiveServer(storage, tmp_path / "second.log", **env)
        try:
            # the dead process's lease ends, then the new one delivers
            received = hook.wait_for(tried + 1, timeout=30)
        finally:
            restarted.stop()
    delivered = received[tried]
    assert (delivered.method, delivered.path) == ("PUT", f"/hook/Observation/{oid}")
    assert delivered.headers["X-Subscription-Event"] == "1"


def test_two_workers_deliver_each_event_once_in_order(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'fhir.sqlite3'}"
    with receiver() as hook:
        server = LiveServer(storage, tmp_path / "server.log", FHIR_SERVER_WORKERS="2", **ENV)
        try:
            _subscribe(server.base, hook.url)
            ids = []
            for n in range(20):
                written = httpx.post(
                    f"{server.base}/Observation", json=_observation(n), headers=JSON
                )
                assert written.status_code == 201
                ids.append(written.json()["id"])
            received = hook.wait_for(20, timeout=30)
            time.sleep(1.5)  # a second delivery would come by now
            received = hook.snapshot()
        finally:
            server.stop()
    assert [r.path for r in received] == [f"/hook/Observation/{i}" for i in ids]
    assert [r.headers["X-Subscription-Event"] for r in received] == [str(n) for n in range(1, 21)]
