"""Reminders of what is due at a time (issue 17): appointment reminders and health
maintenance ("alerts for upcoming check-ups, screenings, or vaccinations"), sent
``FHIR_SERVER_REMINDER_LEADS`` before (durations, default ``24h,2h``).

Every :data:`SCAN_EVERY` seconds one process (a lease on the outbox cursor :data:`KEY`)
searches the store for what is due within the longest lead:

=============================  ==========================  ==========================
what                           search                      its time
=============================  ==========================  ==========================
a booked Appointment           ``status=booked``, ``date``   ``start``
an active ServiceRequest       ``status=active``,          ``occurrenceDateTime`` /
(a screening, a test)          ``occurrence``              ``occurrencePeriod.start``
an active CarePlan's activity  ``status=active``,          ``activity.detail.scheduled
                               ``activity-date``           Period.start``
=============================  ==========================  ==========================

For each item, time T and lead L, the reminder is due at T - L. It is sent once it is due
and before T, to the people of the patient (``notifier``), and recorded as a
``Communication`` of category ``reminder`` whose ``identifier`` (system
``urn:fhir-server:reminder``, value ``[type]/[id]/[T]/[L seconds]``) says it was sent: each
reminder goes once, whichever process sends it. A lead already past when the item got its
current time (its current version's ``lastUpdated``) is skipped. A moved appointment
has a new T, so new reminders; a cancelled one is no longer found. Appointments are read
from the store as whatever writes them (the API, the scheduling workflow) leaves them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from fhir_server.config import parse_duration
from fhir_server.notifications.notifier import REMINDER_SYSTEM, Notifier
from fhir_server.notifications.people import patients_of
from resources import fhir_json
from resources.fhir_datetime import format_instant
from resources.search.parameters import search_params
from resources.search.parse import parse_search

log = logging.getLogger("fhir_server.notifications")

KEY = "notifications/reminders"
LEASE = 30.0
SCAN_EVERY = 5.0
"""Seconds between scans (reminders go out within this of their time)."""
PAGE = 500

Resource = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Source:
    type: str
    status: str
    date_param: str
    kind: str
    times: Callable[[Resource], list[str]]


def _activity_starts(plan: Resource) -> list[str]:
    out = []
    for activity in plan.get("activity") or []:
        detail = (activity or {}).get("detail") or {}
        start = (detail.get("scheduledPeriod") or {}).get("start")
        if isinstance(start, str) and detail.get("status") not in ("completed", "cancelled"):
            out.append(start)
    return out


SOURCES = (
    Source("Appointment", "booked", "date", "appointment-reminder", lambda r: [r.get("start")]),
    Source(
        "ServiceRequest",
        "active",
        "occurrence",
        "health-maintenance",
        lambda r: [r.get("occurrenceDateTime") or (r.get("occurrencePeriod") or {}).get("start")],
    ),
    Source("CarePlan", "active", "activity-date", "health-maintenance", _activity_starts),
)


def parse_leads(text: str) -> list[int]:
    return sorted({parse_duration(p) for p in text.split(",") if p.strip()}, reverse=True)


def _when(text: Any) -> datetime | None:
    if not isinstance(text, str) or "T" not in text:
        return None  # a date without a time is not a moment to remind at
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class Reminders:
    """The reminder scan (see the module)."""

    def __init__(self, store: Any, notifier: Notifier, leads: list[int], owner: str) -> None:
        self.store = store
        self.outbox = store.outbox
        self.notifier = notifier
        self.leads = leads
        self.owner = owner
        self._next = 0.0
        self._opened = False

    async def tick(self, last: int = 0) -> int:
        """Scan when it is time and this process holds the lease; reminders sent."""
        now = time.time()
        if now < self._next or not self.leads:
            return 0
        self._next = now + SCAN_EVERY
        if not self._opened:
            await self.outbox.open_cursor(KEY, 0)
            self._opened = True
        if not await self.outbox.claim([KEY], self.owner, now, now + LEASE):
            return 0
        return await self.scan(datetime.fromtimestamp(now, UTC))

    async def release(self) -> None:
        if self._opened:
            await self.outbox.release(KEY, self.owner)

    async def scan(self, now: datetime) -> int:
        sent = 0
        horizon = now + timedelta(seconds=max(self.leads))
        for source in SOURCES:
            params = [
                ("status", source.status),
                (source.date_param, f"ge{format_instant(now)}"),
                (source.date_param, f"le{format_instant(horizon)}"),
            ]
            for stored, resource in await self._search(source.type, params):
                for text in source.times(resource):
                    sent += await self._remind(source, stored, resource, text, now)
        return sent

    async def _remind(
        self, source: Source, stored: Any, resource: Resource, text: str, now: datetime
    ) -> int:
        moment = _when(text)
        if moment is None or moment <= now:
            return 0
        current_since = _when(stored.last_updated)
        sent = 0
        for lead in self.leads:
            due = moment - timedelta(seconds=lead)
            if due > now or (current_since is not None and due < current_since):
                continue  # not yet, or already past when the item got this time
            identifier = f"{source.type}/{stored.id}/{text}/{lead}"
            if await self._already(identifier):
                continue
            for patient in patients_of(resource):
                sent += await self.notifier.notify(
                    source.kind,
                    patient,
                    f"{source.type}/{stored.id}",
                    category="reminder",
                    identifier=identifier,
                    time=text,
                )
        return sent

    async def _already(self, identifier: str) -> bool:
        found = await self._search(
            "Communication", [("identifier", f"{REMINDER_SYSTEM}|{identifier}")]
        )
        return bool(found)

    async def _search(
        self, type_: str, params: list[tuple[str, str]]
    ) -> list[tuple[Any, Resource]]:
        query = parse_search(
            [type_],
            params,
            strict=True,
            params_for=search_params,
            max_count=PAGE,
            default_count=PAGE,
        )
        out = []
        cursor = None
        while True:
            page = await self.store.search(query, cursor, PAGE, False)
            out += [(s, fhir_json.loads(s.content)) for s in page.entries if s.content is not None]
            cursor = page.next_cursor
            if cursor is None:
                return out
