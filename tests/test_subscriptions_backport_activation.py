"""The activation of topic-based Subscriptions by several processes on one store
(Subscriptions R5 Backport IG, https://hl7.org/fhir/uv/subscriptions-backport/, the
handshake: sent once, when the Subscription is ``requested``, before it is ``active``):
two dispatchers that list the same ``requested`` Subscription at once send one handshake
between them; one whose process died while it held the activation leaves it to another
once its lease ended; and the notification log writes every record a process keeps,
also one kept while its previous records were being written (``$events`` of another
process reads only what was written). On every store."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from fhir_server.config import Settings
from fhir_server.events import dispatcher as dispatching
from fhir_server.events import notification_log
from fhir_server.events.dispatcher import Dispatcher
from fhir_server.outbound import OutboundGuard
from fhir_server.storage.open import open_store
from resources import fhir_json
from tests.conftest import BASE, STORES, storage_url
from tests.hook_receiver import Receiver
from tests.store_support import put
from tests.test_subscriptions import hook
from tests.test_subscriptions_backport import kinds, topic_subscription

FIXTURES = (hook,)
"""The receiver fixture shared with ``test_subscriptions``."""


@pytest.fixture(params=STORES)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    opened = open_store(storage_url(request.param, tmp_path))
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


def dispatcher(store: Any) -> Dispatcher:
    """A dispatcher as one server process has it (not started: the test drives it)."""
    settings = Settings(
        storage="sqlite:///unused", outbound_allow="127.0.0.1,localhost", base_url=BASE
    )
    return Dispatcher(store, settings, OutboundGuard(settings.outbound_allow))


async def requested(store: Any, hook: Receiver) -> str:
    """A ``requested`` topic-based Subscription to ``hook``, stored as a client wrote it."""
    body = {**topic_subscription(hook.url, "encounter-change"), "id": "s1"}
    await store.write(put(body))
    return "s1"


async def status(store: Any, sid: str) -> str:
    stored = await store.read("Subscription", sid)
    return str(fhir_json.loads(stored.content)["status"])


async def test_two_processes_listing_a_requested_subscription_send_one_handshake(
    store: Any, hook: Receiver
) -> None:
    sid = await requested(store, hook)
    first, second = dispatcher(store), dispatcher(store)
    try:
        await asyncio.gather(first.tick(), second.tick())
        await asyncio.gather(first.tick(), second.tick())  # a listing after the activation
    finally:
        await first.stop()
        await second.stop()
    assert await status(store, sid) == "active"
    assert kinds(hook.snapshot()) == ["handshake"]
    assert hook.snapshot()[0].headers["X-Subscription-Id"] == sid


async def test_an_activation_whose_process_died_is_done_by_another_once_its_lease_ended(
    store: Any, hook: Receiver
) -> None:
    sid = await requested(store, hook)
    claim = dispatching._activation_key(await store.read("Subscription", sid))
    await store.outbox.open_cursor(claim, 0)
    now = time.time()
    assert await store.outbox.claim([claim], "dead", now, now + 60)  # then it died
    alive = dispatcher(store)
    try:
        await alive.tick()
        assert await status(store, sid) == "requested"
        assert hook.snapshot() == []
        assert await store.outbox.claim([claim], "dead", now, now - 1)  # its lease ends
        alive._reload_at = 0.0  # the next listing
        await alive.tick()
    finally:
        await alive.stop()
    assert await status(store, sid) == "active"
    assert kinds(hook.snapshot()) == ["handshake"]


async def written_numbers(store: Any, subscription: str) -> list[int]:
    """The event numbers of ``subscription`` in the store (not this process's pending
    ones: what another process's ``$events`` reads)."""
    if hasattr(store, "run_write"):
        if not store.query(
            "SELECT 1 FROM sqlite_master WHERE name = 'subscription_event'", ()
        ):  # created with the first write
            return []
        rows = store.query(
            "SELECT number FROM subscription_event WHERE subscription = ? ORDER BY number",
            (subscription,),
        )
        return [int(row[0]) for row in rows]
    found = store.db[notification_log.COLLECTION].find({"subscription": subscription})
    return sorted(int(d["number"]) for d in await found.to_list(None))


async def test_a_record_kept_while_the_log_was_being_written_is_written_too(
    store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def item(number: int) -> notification_log.Record:
        return notification_log.Record(number, number, "Encounter", "e", 1, "create", "2026")

    real = notification_log.flush
    calls = 0

    async def flush(raw: Any) -> None:
        nonlocal calls
        calls += 1
        await real(raw)
        if calls == 1:  # the next notification was sent while the first were written
            await notification_log.record(raw, "s1", item(2))

    monkeypatch.setattr(notification_log, "flush", flush)
    await notification_log.record(store, "s1", item(1))
    deadline = time.monotonic() + 5
    while await written_numbers(store, "s1") != [1, 2]:
        assert time.monotonic() < deadline, await written_numbers(store, "s1")
        await asyncio.sleep(0.05)
