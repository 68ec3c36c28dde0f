"""Deletions are notified (issue 17), on every store: a deleted resource that was in the
criteria's results is sent as ``DELETE [endpoint]/[type]/[id]`` (with a payload) or the
empty ``POST`` (without), in order with the other notifications; a deletion of what the
criteria did not match, or of what the Subscription's creator may not read, is not."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.hook_receiver import Receiver
from tests.test_subscriptions import (  # noqa: F401 (fixtures)
    bearer,
    hook,
    http,
    observation,
    seed,
    settings,
    subscription,
    until_received,
    wait_status,
)


async def test_a_deleted_match_is_a_delete_to_the_endpoint(
    app: Any,  # noqa: F811
    http: httpx.AsyncClient,  # noqa: F811
    hook: Receiver,  # noqa: F811
) -> None:
    admin = bearer(app, "system/*.cruds")
    await seed(http, admin)
    body = subscription(
        hook.url, "Observation?code=http://loinc.org|1234-5", payload="application/fhir+json"
    )
    created = await http.post("Subscription", json=body, headers=admin)
    await wait_status(http, created.json()["id"], admin, "active")
    matching = await http.post("Observation", json=observation("Patient/alice"), headers=admin)
    other = await http.post("Observation", json=observation("Patient/alice", "9-9"), headers=admin)
    await until_received(hook, 1)
    assert (await http.delete(f"Observation/{other.json()['id']}", headers=admin)).is_success
    oid = matching.json()["id"]
    assert (await http.delete(f"Observation/{oid}", headers=admin)).is_success
    put, deleted = await until_received(hook, 2)
    assert (put.method, put.path) == ("PUT", f"/hook/Observation/{oid}")
    assert (deleted.method, deleted.path, deleted.body) == (
        "DELETE",
        f"/hook/Observation/{oid}",
        b"",
    )
    assert deleted.headers["X-Subscription-Event"] == "2"
    await asyncio.sleep(0.5)
    assert len(hook.snapshot()) == 2  # the other code's deletion did not match


async def test_a_patients_subscription_hears_only_of_her_deletions(
    app: Any,  # noqa: F811
    http: httpx.AsyncClient,  # noqa: F811
    hook: Receiver,  # noqa: F811
) -> None:
    admin = bearer(app, "system/*.cruds")
    await seed(http, admin)
    alice = bearer(app, "patient/*.cruds", patient="alice")
    created = await http.post(
        "Subscription", json=subscription(hook.url, "Observation?"), headers=alice
    )
    assert created.status_code == 201, created.text
    await wait_status(http, created.json()["id"], alice, "active")
    bobs = await http.post("Observation", json=observation("Patient/bob"), headers=admin)
    hers = await http.post("Observation", json=observation("Patient/alice"), headers=admin)
    await until_received(hook, 1)  # hers
    assert (await http.delete(f"Observation/{bobs.json()['id']}", headers=admin)).is_success
    assert (await http.delete(f"Observation/{hers.json()['id']}", headers=admin)).is_success
    first, second = await until_received(hook, 2)
    assert (second.method, second.path, second.body) == ("POST", "/hook", b"")
    assert second.headers["X-Subscription-Event"] == "2"
    await asyncio.sleep(0.5)
    assert len(hook.snapshot()) == 2  # Bob's deletion was not told to her
