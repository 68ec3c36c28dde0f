"""The audit trail writes its AuditEvents in small transactions while it keeps up, and in
big ones when it is behind (``fhir_server.audit.trail``: ``TRANSACTION``,
``CATCH_UP_TRANSACTION``, ``CATCH_UP_AT``): a transaction holds the store's one writer,
which every process's writes wait for, for its whole length."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fhir_server.audit import balp, trail
from fhir_server.audit.balp import Touched
from fhir_server.audit.record import Activity, Agent
from fhir_server.audit.trail import AuditTrail
from fhir_server.storage.base import WriteRequest, WriteResult
from tests.store_support import sqlite_store

READ = Activity("rest", "read", Agent("Practitioner/dr", "ann", "portal", "10.0.0.1"), 200)


class _Batches:
    """The real store, the size of each batch written through it noted."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.sizes: list[int] = []

    async def write_batch(self, requests: Sequence[WriteRequest]) -> list[WriteResult]:
        self.sizes.append(len(requests))
        return await self.inner.write_batch(requests)

    async def write(self, request: WriteRequest) -> WriteResult:
        return (await self.write_batch([request]))[0]


def _events(n: int) -> list[dict[str, Any]]:
    events = []
    for i in range(n):
        (event,) = balp.rest_events(READ, [Touched(f"Observation/{i}", ("Patient/a",))])
        events.append({**event, "id": f"e{i}"})
    return events


async def test_small_transactions_while_the_trail_keeps_up(tmp_path: Path) -> None:
    async with sqlite_store(tmp_path / "fhir.sqlite3") as store:
        batches = _Batches(store)
        await AuditTrail(batches, None).write(_events(100))
        small = trail.TRANSACTION
        assert small < 100
        assert batches.sizes == [small] * (100 // small) + [100 % small]
        for i in (0, 99):
            assert await store.read("AuditEvent", f"e{i}") is not None


async def test_big_transactions_when_it_is_behind(tmp_path: Path) -> None:
    async with sqlite_store(tmp_path / "fhir.sqlite3") as store:
        batches = _Batches(store)
        behind = AuditTrail(batches, None)
        for _ in range(trail.CATCH_UP_AT):
            behind.record(READ)  # queued, waiting for the events being written
        big = trail.CATCH_UP_TRANSACTION
        await behind.write(_events(big + 50))
        assert batches.sizes == [big, 50]
        assert await store.read("AuditEvent", f"e{big + 49}") is not None


async def test_big_transactions_for_many_events_at_once(tmp_path: Path) -> None:
    """One search that returned thousands of patients is as many AuditEvents."""
    async with sqlite_store(tmp_path / "fhir.sqlite3") as store:
        batches = _Batches(store)
        many = trail.CATCH_UP_AT + 100
        await AuditTrail(batches, None).write(_events(many))
        big, small = trail.CATCH_UP_TRANSACTION, trail.TRANSACTION
        # big ones until fewer than CATCH_UP_AT are left, then small ones
        assert batches.sizes[0] == big and batches.sizes[-1] <= small
        assert sum(batches.sizes) == many
        assert len(batches.sizes) < many / small
