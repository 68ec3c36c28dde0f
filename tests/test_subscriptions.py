"""R4 Subscriptions with the rest-hook channel (https://hl7.org/fhir/R4/subscription.html)
over HTTP on every store, delivered to a real local HTTP receiver (issue 17): a write is
notified, the Subscription's writes are checked, a patient's subscription hears only of
what that patient may read, a failing endpoint is retried and then the status is error."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhir_server.config import Settings
from smart_auth.store.base import Client
from tests.conftest import BASE, STORES, storage_url
from tests.hook_receiver import Receiver, receiver

JSON = {"content-type": "application/fhir+json"}


@pytest.fixture(params=STORES)
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    return Settings(
        storage=storage_url(request.param, tmp_path),
        auth="smart",
        outbound_allow="127.0.0.1,localhost",
        delivery_attempts=3,
        delivery_backoff=0.2,
    )


@pytest.fixture
async def http(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE + "/") as client:
        yield client


@pytest.fixture
def hook() -> Iterator[Receiver]:
    with receiver() as state:
        yield state


def bearer(app: Any, scope: str, **context: Any) -> dict[str, str]:
    """A token of the registered client ``test-app`` (a Subscription stops when the
    client that created it is deleted)."""
    if app.state.auth.store.get_client("test-app") is None:
        app.state.auth.store.add_client(Client(client_id="test-app", scope=scope))
    value, _ = app.state.auth.token_service().issue_access_token(
        issuer=BASE, audience=BASE, client_id="test-app", scope=scope, **context
    )
    return {"authorization": f"Bearer {value}", **JSON}


def subscription(endpoint: str, criteria: str, **channel: Any) -> dict[str, Any]:
    return {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "test",
        "criteria": criteria,
        "channel": {"type": "rest-hook", "endpoint": endpoint, **channel},
    }


def observation(patient: str, code: str = "1234-5") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": patient},
    }


async def wait_status(
    http: httpx.AsyncClient, sid: str, headers: dict[str, str], status: str, timeout: float = 15
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        found = (await http.get(f"Subscription/{sid}", headers=headers)).json()
        if found.get("status") == status or time.monotonic() > deadline:
            assert found.get("status") == status, found
            return found
        await asyncio.sleep(0.05)


async def until_received(hook: Receiver, count: int, timeout: float = 15) -> list[Any]:
    return await asyncio.to_thread(hook.wait_for, count, timeout)


async def seed(http: httpx.AsyncClient, admin: dict[str, str]) -> None:
    for pid in ("alice", "bob"):
        body = {"resourceType": "Patient", "id": pid}
        assert (await http.put(f"Patient/{pid}", json=body, headers=admin)).status_code == 201


async def test_a_write_is_put_to_the_endpoint_with_its_headers(
    app: Any, http: httpx.AsyncClient, hook: Receiver
) -> None:
    admin = bearer(app, "system/*.cruds")
    await seed(http, admin)
    body = subscription(
        hook.url,
        "Observation?code=http://loinc.org|1234-5",
        payload="application/fhir+json",
        header=["Authorization: Bearer hook-secret"],
    )
    created = await http.post("Subscription", json=body, headers=admin)
    assert created.status_code == 201, created.text
    sid = created.json()["id"]
    assert created.json()["status"] == "requested"
    await wait_status(http, sid, admin, "active")
    other = await http.post(
        "Observation", json=observation("Patient/alice", "9999-9"), headers=admin
    )
    assert other.status_code == 201
    written = await http.post("Observation", json=observation("Patient/alice"), headers=admin)
    oid = written.json()["id"]
    [got] = await until_received(hook, 1)
    assert (got.method, got.path) == ("PUT", f"/hook/Observation/{oid}")
    assert got.headers["Authorization"] == "Bearer hook-secret"
    assert got.headers["Content-Type"] == "application/fhir+json"
    assert got.headers["X-Subscription-Event"] == "1"
    assert got.json()["id"] == oid and got.json()["meta"]["versionId"] == "1"
    await asyncio.sleep(0.5)
    assert len(hook.snapshot()) == 1  # the other code did not match


async def test_without_payload_an_empty_post(
    app: Any, http: httpx.AsyncClient, hook: Receiver
) -> None:
    admin = bearer(app, "system/*.cruds")
    await seed(http, admin)
    created = await http.post(
        "Subscription", json=subscription(hook.url, "Patient?"), headers=admin
    )
    await wait_status(http, created.json()["id"], admin, "active")
    await http.put(
        "Patient/alice",
        json={"resourceType": "Patient", "id": "alice", "active": True},
        headers=admin,
    )
    await http.put(
        "Patient/bob", json={"resourceType": "Patient", "id": "bob", "active": True}, headers=admin
    )
    first, second = await until_received(hook, 2)
    assert (first.method, first.path, first.body) == ("POST", "/hook", b"")
    assert [first.headers["X-Subscription-Event"], second.headers["X-Subscription-Event"]] == [
        "1",
        "2",
    ]


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"criteria": "Observation?flavour=sweet"}, "flavour"),
        ({"criteria": "Observation?date=yesterday"}, "date"),
        ({"criteria": "Nothing?x=1"}, "Nothing"),
        ({"channel": {"type": "message", "endpoint": "https://x.example/m"}}, "message"),
        ({"channel": {"type": "websocket", "payload": "application/fhir+json"}}, "payload"),
        ({"channel": {"type": "rest-hook", "endpoint": "http://10.0.0.7/hook"}}, "endpoint"),
        ({"channel": {"type": "rest-hook", "endpoint": "https://169.254.169.254/x"}}, "endpoint"),
    ],
)
async def test_a_bad_subscription_is_400_naming_the_problem(
    app: Any, http: httpx.AsyncClient, hook: Receiver, change: dict[str, Any], named: str
) -> None:
    body = {**subscription(hook.url, "Observation?code=1234-5"), **change}
    response = await http.post("Subscription", json=body, headers=bearer(app, "system/*.cruds"))
    assert response.status_code == 400, response.text
    assert named in response.text


async def test_nothing_is_delivered_while_off(
    app: Any, http: httpx.AsyncClient, hook: Receiver
) -> None:
    admin = bearer(app, "system/*.cruds")
    await seed(http, admin)
    body = {**subscription(hook.url, "Observation?"), "status": "off"}
    created = await http.post("Subscription", json=body, headers=admin)
    assert created.json()["status"] == "off"
    await http.post("Observation", json=observation("Patient/alice"), headers=admin)
    await asyncio.sleep(1.0)
    assert hook.snapshot() == []
    assert (await http.get(f"Subscription/{created.json()['id']}", headers=admin)).json()[
        "status"
    ] == "off"


async def test_a_patients_subscription_hears_only_of_her_data(
    app: Any, http: httpx.AsyncClient, hook: Receiver
) -> None:
    admin = bearer(app, "system/*.cruds")
    await seed(http, admin)
    alice = bearer(app, "patient/*.cruds", patient="alice")
    bob = bearer(app, "patient/*.cruds", patient="bob")
    body = subscription(hook.url, "Observation?", payload="application/fhir+json")
    created = await http.post("Subscription", json=body, headers=alice)
    assert created.status_code == 201, created.text
    sid = created.json()["id"]
    await wait_status(http, sid, alice, "active")
    # Bob neither sees nor changes it; staff do
    assert (await http.get(f"Subscription/{sid}", headers=bob)).status_code == 404
    assert sid not in (await http.get("Subscription", headers=bob)).text
    changed = {**created.json(), "status": "off"}
    assert (await http.put(f"Subscription/{sid}", json=changed, headers=bob)).status_code == 404
    assert sid in (await http.get("Subscription", headers=alice)).text
    await http.post("Observation", json=observation("Patient/bob"), headers=admin)
    mine = await http.post("Observation", json=observation("Patient/alice"), headers=admin)
    [got] = await until_received(hook, 1)
    assert got.path == f"/hook/Observation/{mine.json()['id']}"
    await asyncio.sleep(0.5)
    assert len(hook.snapshot()) == 1


async def test_the_creator_is_recorded_by_the_server(
    app: Any, http: httpx.AsyncClient, hook: Receiver
) -> None:
    admin = bearer(app, "system/*.cruds")
    await seed(http, admin)
    forged = {
        "url": "urn:fhir-server:subscription-creator",
        "extension": [{"url": "patient", "valueReference": {"reference": "Patient/bob"}}],
    }
    body = {**subscription(hook.url, "Observation?"), "extension": [forged]}
    alice = bearer(app, "patient/*.cruds", patient="alice")
    created = await http.post("Subscription", json=body, headers=alice)
    assert created.status_code == 201, created.text
    [creator] = created.json()["extension"]
    parts = {p["url"]: p for p in creator["extension"]}
    assert parts["patient"]["valueReference"] == {"reference": "Patient/alice"}
    assert parts["client"]["valueString"] == "test-app"
    assert "Patient/bob" not in created.text


async def test_a_failing_endpoint_is_retried_then_the_status_is_error(
    app: Any, http: httpx.AsyncClient, hook: Receiver
) -> None:
    admin = bearer(app, "system/*.cruds")
    await seed(http, admin)
    hook.status = 503
    created = await http.post(
        "Subscription", json=subscription(hook.url, "Observation?"), headers=admin
    )
    sid = created.json()["id"]
    await wait_status(http, sid, admin, "active")
    started = time.monotonic()
    written = await http.post("Observation", json=observation("Patient/alice"), headers=admin)
    assert written.status_code == 201
    assert time.monotonic() - started < 1.0  # the write does not wait for the endpoint
    found = await wait_status(http, sid, admin, "error")
    assert "failed 3 times" in found["error"] and "503" not in found["error"]
    assert len(hook.snapshot()) == 3  # FHIR_SERVER_DELIVERY_ATTEMPTS
    await http.post("Observation", json=observation("Patient/alice"), headers=admin)
    await asyncio.sleep(0.6)
    assert len(hook.snapshot()) == 3  # error: no more deliveries


async def test_an_endpoint_that_does_not_resolve_is_not_activated(
    app: Any, http: httpx.AsyncClient
) -> None:
    admin = bearer(app, "system/*.cruds")
    body = subscription("https://no-such-host.invalid/hook", "Observation?")
    created = await http.post("Subscription", json=body, headers=admin)
    assert created.status_code == 201, created.text
    found = await wait_status(http, created.json()["id"], admin, "error")
    assert "refused" in found["error"]


async def test_the_entries_of_a_transaction_are_notified_in_order(
    app: Any, http: httpx.AsyncClient, hook: Receiver
) -> None:
    admin = bearer(app, "system/*.cruds")
    await seed(http, admin)
    body = subscription(hook.url, "Observation?patient=alice", payload="application/fhir+json")
    created = await http.post("Subscription", json=body, headers=admin)
    await wait_status(http, created.json()["id"], admin, "active")
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {**observation("Patient/alice", code), "id": code},
                "request": {"method": "PUT", "url": f"Observation/{code}"},
            }
            for code in ("first", "second", "third")
        ],
    }
    assert (await http.post("", json=bundle, headers=admin)).status_code == 200
    received = await until_received(hook, 3)
    assert [r.path for r in received] == [
        f"/hook/Observation/{code}" for code in ("first", "second", "third")
    ]
    assert [r.headers["X-Subscription-Event"] for r in received] == ["1", "2", "3"]


async def test_the_outbox_keeps_only_what_an_active_subscription_still_needs(
    app: Any, http: httpx.AsyncClient, hook: Receiver
) -> None:
    admin = bearer(app, "system/*.cruds")
    await seed(http, admin)
    created = await http.post(
        "Subscription", json=subscription(hook.url, "Observation?"), headers=admin
    )
    sid = created.json()["id"]
    await wait_status(http, sid, admin, "active")
    first = await http.post("Observation", json=observation("Patient/alice"), headers=admin)
    await until_received(hook, 1)
    hook.status = 500  # the next one stays pending
    second = await http.post("Observation", json=observation("Patient/alice"), headers=admin)
    await until_received(hook, 2)
    outbox = app.state.store.outbox
    dispatcher = app.state.dispatcher
    dispatcher.retention = 0
    await asyncio.sleep(0.01)
    assert await dispatcher.prune([f"Subscription/{sid}"]) > 0
    left = {e.id for e in await outbox.events_after(0, 1000)}
    assert first.json()["id"] not in left
    assert second.json()["id"] in left
