"""The in-process wake-up of the dispatcher (``fhir_server.events.dispatcher``): the store
the requests of this process write through tells the dispatcher as soon as a write
committed, so its notifications go out at once instead of at its next look (it still
looks every ``POLL`` seconds, for the writes of other processes)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from fhir_server.events.matching import RecentRefs
from fhir_server.storage.base import WriteRequest, WriteResult

SUBSCRIPTION = "Subscription"


class WakingStore:
    """``inner`` whose :meth:`write` and :meth:`write_batch` call ``wake`` once they
    returned (committed; with True when a Subscription was written) and note the
    reference rows they wrote in ``recent`` (``matching.RecentRefs``); everything else
    passes through."""

    def __init__(
        self, inner: Any, wake: Callable[[bool], None], recent: RecentRefs | None = None
    ) -> None:
        self._inner = inner
        self._wake = wake
        self._recent = recent

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def write(self, request: WriteRequest) -> WriteResult:
        result = await self._inner.write(request)
        if self._recent is not None:
            self._recent.note((request,), (result,))
        self._wake(request.type == SUBSCRIPTION)
        return result

    async def write_batch(self, requests: Sequence[WriteRequest]) -> list[WriteResult]:
        results = await self._inner.write_batch(requests)
        if self._recent is not None:
            self._recent.note(requests, results)
        self._wake(any(r.type == SUBSCRIPTION for r in requests))
        return results
