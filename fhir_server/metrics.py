"""Prometheus metrics at ``GET /metrics`` (text exposition format,
https://prometheus.io/docs/instrumenting/exposition_formats/), rendered by
``prometheus_client``:

- ``fhir_http_requests_total{method, route, status}``: requests answered;
- ``fhir_http_request_duration_seconds{method, route, status}``: their latency
  (histogram, from the request's arrival to the end of its response);
- ``fhir_store_operation_duration_seconds{operation, outcome}``: the store's ``read``,
  ``vread``, ``write``, ``write_batch``, ``history`` and ``search`` calls (histogram;
  ``outcome`` ``ok`` or ``error``).

``route`` is the route template (``/fhir/{type}/{id}``, ``/auth/token``,
``(unmatched)`` for a 404 no route answered), never the path: no ids and no patient data
reach the metrics, so ``/metrics`` is served without authorization
(``FHIR_SERVER_METRICS=off`` removes it, and the measuring with it).

Cost: a request adds one dict lookup, one bisection and two additions in the process
(``observe_*``), about a microsecond; nothing is locked or written to disk on the request
path. ``prometheus_client``'s own metric objects cost 3.5 us per request (7.5 us in its
multiprocess mode, which writes memory-mapped files on every increment).

**Several worker processes** (``fhir-server serve --workers N``): a scrape reaches one of
them, so each process writes its totals to a file of its own in ``FHIR_SERVER_METRICS_DIR``
(``metrics-<pid>.json``, replaced atomically) once a second when they changed, and at
shutdown; ``/metrics`` adds up every file there (those of exited workers too, so counters
never go back when a worker is replaced). ``fhir-server serve`` makes the folder (a new
temporary one per start) and removes it at exit; under plain ``uvicorn --workers N`` set
``FHIR_SERVER_METRICS_DIR`` to an empty folder, or each scrape shows one process's
figures. A scrape sees the other workers' requests of the last second or so late.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger("fhir_server")

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Histogram bucket upper bounds (seconds); one more bucket counts the rest (``+Inf``)."""

STORE_OPERATIONS = ("read", "vread", "write", "write_batch", "history", "search")
FLUSH_SECONDS = 1.0

Series = list[float]
"""Counts per bucket (``len(BUCKETS) + 1``), then the sum of the observed values."""


def _new_series() -> Series:
    return [0] * (len(BUCKETS) + 2)


class Metrics:
    """The process's measurements, and the other processes' when ``directory`` is set."""

    def __init__(self, directory: str | None = None) -> None:
        self.requests: dict[tuple[str, str, int], Series] = {}
        self.store: dict[tuple[str, str], Series] = {}
        self.directory = Path(directory) if directory else None
        self._file = self.directory / f"metrics-{os.getpid()}.json" if self.directory else None
        self._changes = 0
        self._flushed = 0
        self._task: asyncio.Task[None] | None = None

    # -- the request path --------------------------------------------------------------

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        series = self.requests.get(key)
        if series is None:
            series = self.requests[key] = _new_series()
        series[bisect_left(BUCKETS, seconds)] += 1
        series[-1] += seconds
        self._changes += 1

    def observe_store(self, operation: str, ok: bool, seconds: float) -> None:
        key = (operation, "ok" if ok else "error")
        series = self.store.get(key)
        if series is None:
            series = self.store[key] = _new_series()
        series[bisect_left(BUCKETS, seconds)] += 1
        series[-1] += seconds
        self._changes += 1

    # -- several processes ---------------------------------------------------------------

    async def start(self) -> None:
        """Write this process's totals to its file every second (with a directory)."""
        if self.directory is not None and self._task is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._task = asyncio.create_task(self._flush_regularly())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
            self.flush()

    async def _flush_regularly(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            try:
                self.flush()
            except OSError as exc:  # a full or removed folder: keep serving
                log.warning("metrics: cannot write %s: %s", self._file, exc)

    def flush(self) -> None:
        """Write the totals to this process's file, if they changed since the last time."""
        if self._file is None or self._changes == self._flushed:
            return
        changes = self._changes
        data = {
            "requests": [[*key, series] for key, series in self.requests.items()],
            "store": [[*key, series] for key, series in self.store.items()],
        }
        temporary = self._file.with_suffix(".tmp")
        temporary.write_text(json.dumps(data))
        os.replace(temporary, self._file)
        self._flushed = changes

    def totals(self) -> tuple[dict[Any, Series], dict[Any, Series]]:
        """Requests and store series of every process (this one's only, without a
        directory)."""
        if self.directory is None:
            return self.requests, self.store
        self.flush()
        requests: dict[Any, Series] = {}
        store: dict[Any, Series] = {}
        for path in sorted(self.directory.glob("metrics-*.json")):
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):  # pragma: no cover - replaced atomically
                continue
            _add(requests, [((m, r, int(s)), series) for m, r, s, series in data["requests"]])
            _add(store, [((o, k), series) for o, k, series in data["store"]])
        return requests, store

    # -- exposition ---------------------------------------------------------------------

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """The exposition (body, media type), in the format ``accept`` asks for."""
        from prometheus_client import CollectorRegistry
        from prometheus_client.exposition import choose_encoder

        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Collector(self.totals))
        encoder, media_type = choose_encoder(accept or "")
        return encoder(registry), media_type


def _add(into: dict[Any, Series], items: list[tuple[Any, Series]]) -> None:
    for key, series in items:
        found = into.get(key)
        if found is None:
            into[key] = list(series)
        else:
            for i, value in enumerate(series):
                found[i] += value


class _Collector:
    """``prometheus_client`` collector of the totals."""

    def __init__(self, totals: Callable[[], tuple[dict[Any, Series], dict[Any, Series]]]):
        self._totals = totals

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

        requests, store = self._totals()
        labels = ["method", "route", "status"]
        count = CounterMetricFamily(
            "fhir_http_requests", "HTTP requests answered, by route template", labels=labels
        )
        latency = HistogramMetricFamily(
            "fhir_http_request_duration_seconds",
            "Time from a request's arrival to the end of its response",
            labels=labels,
        )
        for (method, route, status), series in sorted(requests.items()):
            values = [method, route, str(status)]
            count.add_metric(values, sum(series[:-1]))
            latency.add_metric(values, _buckets(series), series[-1])
        yield count
        yield latency
        timing = HistogramMetricFamily(
            "fhir_store_operation_duration_seconds",
            "Time of the store's operations (outcome: ok, or error when it raised)",
            labels=["operation", "outcome"],
        )
        for (operation, outcome), series in sorted(store.items()):
            timing.add_metric([operation, outcome], _buckets(series), series[-1])
        yield timing


def _buckets(series: Series) -> list[tuple[str, float]]:
    cumulative = 0.0
    buckets = []
    for bound, n in zip((*map(str, BUCKETS), "+Inf"), series[:-1], strict=True):
        cumulative += n
        buckets.append((bound, cumulative))
    return buckets


class TimedStore:
    """A store whose operations are timed into :class:`Metrics`; everything else is the
    store's own (attributes and other methods pass through)."""

    def __init__(self, store: Any, metrics: Metrics) -> None:
        self._store = store
        self._metrics = metrics

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def _timed(operation: str) -> Callable[..., Any]:
    async def timed(self: TimedStore, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        ok = False
        try:
            result = await getattr(self._store, operation)(*args, **kwargs)
            ok = True
            return result
        finally:
            self._metrics.observe_store(operation, ok, time.perf_counter() - started)

    timed.__name__ = operation
    return timed


for _operation in STORE_OPERATIONS:
    setattr(TimedStore, _operation, _timed(_operation))
