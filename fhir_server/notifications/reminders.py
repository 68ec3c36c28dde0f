"""Reminders of what is due at a time (issue 17): appointment reminders and health
maintenance ("alerts for upcoming check-ups, screenings, or vaccinations",
``health_maintenance``), sent ``FHIR_SERVER_REMINDER_LEADS`` before (durations, default
``24h,2h``).

Every :data:`~fhir_server.notifications.leased.SCAN_EVERY` seconds one process (a lease
on the outbox cursor :data:`KEY`, ``leased``) looks for what is due within the longest
lead:

=================================  ==========================  ==========================
what                               search                      its time
=================================  ==========================  ==========================
a booked Appointment               ``status=booked``, ``date``   ``start``
an active ServiceRequest           ``status=active``,          ``occurrence[x]``
(a screening, a test)              ``occurrence``
an active CarePlan's activity      ``status=active``,          ``activity.detail.
                                   ``activity-date``           scheduled[x]``
an ImmunizationRecommendation      (none in R4: kept in         ``recommendation.
                                   memory, ``health_            dateCriterion`` (due)
                                   maintenance``)
=================================  ==========================  ==========================

For each item, time T and lead L, the reminder is due at T - L. It is sent once it is due
and before T, to the people of the patient (``notifier``), and recorded as a
``Communication`` of category ``reminder`` whose ``identifier`` (system
``urn:fhir-server:reminder``, value ``[type]/[id]/[T]/[L seconds]``) says it was sent: each
reminder goes once, whichever process sends it. A lead already past when the item got its
current time (its current version's ``lastUpdated``) is skipped. A moved item has a new
T, so new reminders; a cancelled (completed, no longer due) one is no longer found.
Appointments are read from the store as whatever writes them (the API, the scheduling
workflow) leaves them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from fhir_server.config import parse_duration
from fhir_server.notifications.health_maintenance import (
    IMMUNIZATION,
    ImmunizationSchedule,
    care_plan_times,
    moment_of,
    service_request_times,
    widened,
)
from fhir_server.notifications.leased import LeasedScan, search_all
from fhir_server.notifications.notifier import REMINDER_SYSTEM, Notifier
from fhir_server.notifications.people import patients_of
from resources.fhir_datetime import format_instant

log = logging.getLogger("fhir_server.notifications")

KEY = "notifications/reminders"

Resource = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Source:
    type: str
    status: str
    date_param: str
    kind: str
    times: Callable[[Resource], list[str]]
    dates: bool = False
    """Whether a date without a time counts (``health_maintenance.DAY_TIME``)."""


SOURCES = (
    Source("Appointment", "booked", "date", "appointment-reminder", lambda r: [r.get("start")]),
    Source(
        "ServiceRequest", "active", "occurrence", "health-maintenance", service_request_times, True
    ),
    Source("CarePlan", "active", "activity-date", "health-maintenance", care_plan_times, True),
)
IMMUNIZATIONS = Source(IMMUNIZATION, "", "", "health-maintenance", lambda r: [], True)


def parse_leads(text: str) -> list[int]:
    return sorted({parse_duration(p) for p in text.split(",") if p.strip()}, reverse=True)


class Reminders(LeasedScan):
    """The reminder scan (see the module)."""

    key = KEY

    def __init__(
        self, store: Any, notifier: Notifier, leads: list[int], owner: str, timezone: str = "UTC"
    ) -> None:
        super().__init__(store, owner)
        self.notifier = notifier
        self.leads = leads
        self.zone = ZoneInfo(timezone)
        self.immunizations = ImmunizationSchedule(store, self.zone)

    def enabled(self) -> bool:
        return bool(self.leads)

    def taken(self) -> None:
        self.immunizations.reset()

    async def scan(self, now: datetime) -> int:
        sent = 0
        horizon = now + timedelta(seconds=max(self.leads))
        for source in SOURCES:
            first, last = widened(now, horizon) if source.dates else (now, horizon)
            params = [
                ("status", source.status),
                (source.date_param, f"ge{format_instant(first)}"),
                (source.date_param, f"le{format_instant(last)}"),
            ]
            for stored, resource in await search_all(self.store, source.type, params):
                for text in source.times(resource):
                    sent += await self._remind(source, stored, resource, text, now)
        for stored, resource, text in await self.immunizations.due(now, horizon):
            sent += await self._remind(IMMUNIZATIONS, stored, resource, text, now)
        return sent

    async def _remind(
        self, source: Source, stored: Any, resource: Resource, text: str, now: datetime
    ) -> int:
        moment = moment_of(text, self.zone if source.dates else None)
        if moment is None or moment <= now:
            return 0
        current_since = moment_of(stored.last_updated, None)
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
        found = await search_all(
            self.store, "Communication", [("identifier", f"{REMINDER_SYSTEM}|{identifier}")]
        )
        return bool(found)
