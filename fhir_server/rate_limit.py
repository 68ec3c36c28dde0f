"""Rate limits per client on the FHIR API (issue 21): ``FHIR_SERVER_RATE_LIMIT`` (e.g.
``600/minute``) for every client, and per-client overrides set by ``fhir-server clients
create|update --rate-limit`` (kept in the client's registration as ``rate_limit``).

A caller past its client's limit gets ``429 Too Many Requests`` with ``Retry-After``
(https://www.rfc-editor.org/rfc/rfc6585#section-4, RFC 9110 section 10.2.3) and an
OperationOutcome ``throttled``; nothing is done for that request. Each client has a
bucket of its own, so a backend service exporting or syncing at its limit does not
slow the requests of portal users (other clients); and each user of an app has one of
their own (the limit applies per person and app), so one patient of a shared app such
as the portal cannot throttle its other patients.

The limit is a token bucket of the limit's size that refills evenly over its period (a
client may burst up to the whole limit, then goes on at the steady rate). Buckets live
in each worker process: with ``--workers N`` each process enforces ``1/N`` of the
limit, which is the limit in total when requests are spread over the workers, as the
kernel does for new connections. A client's override is read from the auth store at
most every :data:`OVERRIDE_TTL` seconds, so a change by the CLI applies within that
time without a restart.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from resources.errors import FhirError

_PERIODS = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
}
_LIMIT = re.compile(r"\s*(\d+)\s*/\s*([a-z]+?)s?\s*", re.IGNORECASE)
OVERRIDE_TTL = 30.0
"""Seconds a client's override is cached before the auth store is asked again."""
_MAX_BUCKETS = 10_000


@dataclass(frozen=True, slots=True)
class Limit:
    """``count`` requests per ``period`` seconds."""

    count: int
    period: float

    def text(self) -> str:
        unit = {1.0: "second", 60.0: "minute", 3600.0: "hour", 86400.0: "day"}[self.period]
        return f"{self.count}/{unit}"


def parse_limit(text: str | None) -> Limit | None:
    """``"600/minute"`` -> Limit(600, 60); ``""``/``"off"``/None -> None (no limit).
    Raises ValueError naming the accepted forms."""
    if text is None or text.strip().lower() in ("", "off", "none"):
        return None
    match = _LIMIT.fullmatch(text)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _PERIODS or int(match.group(1)) < 1:
        raise ValueError(
            f"rate limit {text!r}: write COUNT/UNIT with a COUNT >= 1 and a UNIT of second,"
            " minute, hour or day (e.g. 600/minute), or off"
        )
    return Limit(int(match.group(1)), _PERIODS[unit])


OverrideLookup = Callable[[str], str | None]
"""client_id -> its ``rate_limit`` override as written ("" or None: the default)."""


class RateLimiter:
    """The buckets of one worker process."""

    def __init__(
        self,
        default: Limit | None,
        overrides: OverrideLookup | None = None,
        workers: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.default = default
        self._overrides = overrides
        self._share = 1 / max(workers, 1)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        """client_id -> (tokens left, when last refilled)."""
        self._limits: dict[str, tuple[float, Limit | None]] = {}
        """client_id -> (when looked up, its limit)."""

    def limit_for(self, client_id: str) -> Limit | None:
        now = self._clock()
        cached = self._limits.get(client_id)
        if cached is not None and now - cached[0] < OVERRIDE_TTL:
            return cached[1]
        limit = self.default
        if self._overrides is not None:
            try:
                override = self._overrides(client_id)
            except Exception:  # the auth store is unavailable: keep the default
                override = None
            if override:
                try:
                    limit = parse_limit(override)
                except ValueError:
                    limit = self.default
        if len(self._limits) >= _MAX_BUCKETS:
            self._limits.clear()
        self._limits[client_id] = (now, limit)
        return limit

    def check(self, client_id: str, user: str | None = None) -> None:
        """Take one request from the bucket of ``client_id`` and ``user`` (a user's
        token: each person using an app has a bucket of their own, so one patient of a
        shared app such as the portal cannot throttle its other patients; a backend
        service's token: the client's); FhirError 429 when empty."""
        limit = self.limit_for(client_id)
        if limit is None:
            return
        bucket = client_id if user is None else f"{client_id}\x00{user}"
        capacity = max(limit.count * self._share, 1.0)
        rate = capacity / limit.period
        now = self._clock()
        tokens, then = self._buckets.get(bucket, (capacity, now))
        tokens = min(capacity, tokens + (now - then) * rate)
        if tokens < 1.0:
            self._buckets[bucket] = (tokens, now)
            wait = math.ceil((1.0 - tokens) / rate)
            error = FhirError(
                429,
                "throttled",
                f"This app has made more requests than its limit ({limit.text()});"
                f" try again in {wait} s",
            )
            error.headers["Retry-After"] = str(wait)
            raise error
        if len(self._buckets) >= _MAX_BUCKETS and bucket not in self._buckets:
            self._buckets.clear()
        self._buckets[bucket] = (tokens - 1.0, now)
