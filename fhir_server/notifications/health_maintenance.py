"""Health maintenance due (issue 17: "alerts for upcoming check-ups, screenings, or
vaccinations"): the times ``reminders`` reminds of, kind ``health-maintenance``.

==============================================  ======================================
what                                            its times
==============================================  ======================================
an ``active`` ServiceRequest (a screening, a    ``occurrenceDateTime``,
test; https://hl7.org/fhir/R4/servicerequest    ``occurrencePeriod.start``,
.html)                                          ``occurrenceTiming.event``
an ``active`` CarePlan's activities whose       ``activity.detail.scheduledPeriod
``detail.status`` is not ``completed``,         .start``, ``scheduledTiming.event``
``cancelled``, ``stopped`` nor                  and ``.repeat.boundsPeriod.start``
``entered-in-error`` (https://hl7.org/fhir/R4/
careplan.html)
an ImmunizationRecommendation's recommendations  ``dateCriterion.value`` of the
whose ``forecastStatus`` is not ``immune``,      criterion coded LOINC ``30980-7``
``contraindicated`` nor ``complete``             ("Date vaccine due")
(https://hl7.org/fhir/R4/immunization
recommendation.html)
==============================================  ======================================

A time that is a date without a time of day (a due date) counts as :data:`DAY_TIME`
(09:00) that day in ``FHIR_SERVER_TIMEZONE``.

ServiceRequests and CarePlans are found by searching their date parameters
(``occurrence``, ``activity-date``). R4 has no search parameter for a recommendation's
due date, so :class:`ImmunizationSchedule` keeps them in memory in the process that
holds the reminders' lease: all recommendations when it takes the lease (a start, a
restart, another process stopped) and every :data:`RESCAN` seconds, and in between those
written since the last scan (``_lastUpdated``, with :data:`MARGIN` seconds of overlap).
Before a reminder, the recommendation is read again: a changed one is reminded of at its
new due dates, a deleted one not at all. What was sent is in the store
(``Communication`` identifiers), so nothing is sent twice across restarts.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from fhir_server.notifications.leased import search_all
from resources import fhir_json
from resources.fhir_datetime import format_instant

Resource = dict[str, Any]

DAY_TIME = time(9, 0)
"""The time of day a due date (a date without a time) is taken to be at."""
RESCAN = 600.0
MARGIN = 60.0
DUE_DATE = "30980-7"
DONE_FORECASTS = frozenset({"immune", "contraindicated", "complete"})
DONE_ACTIVITIES = frozenset({"completed", "cancelled", "stopped", "entered-in-error"})
IMMUNIZATION = "ImmunizationRecommendation"


def moment_of(text: Any, zone: ZoneInfo | None) -> datetime | None:
    """The moment of a FHIR dateTime; a date (``2026-03-01``) is :data:`DAY_TIME` that
    day in ``zone`` (None: a date is no moment)."""
    if not isinstance(text, str):
        return None
    if "T" not in text:
        if zone is None or len(text) != 10:
            return None  # a year or a month is no moment to remind at
        try:
            day = date.fromisoformat(text)
        except ValueError:
            return None
        return datetime.combine(day, DAY_TIME, tzinfo=zone).astimezone(UTC)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _timing_starts(timing: Any) -> list[Any]:
    if not isinstance(timing, dict):
        return []
    events = timing.get("event")
    out = list(events) if isinstance(events, list) else []
    bounds = (timing.get("repeat") or {}).get("boundsPeriod") or {}
    return [*out, bounds.get("start")]


def service_request_times(request: Resource) -> list[str]:
    found = [
        request.get("occurrenceDateTime"),
        (request.get("occurrencePeriod") or {}).get("start"),
        *_timing_starts(request.get("occurrenceTiming")),
    ]
    return _texts(found)


def care_plan_times(plan: Resource) -> list[str]:
    found: list[Any] = []
    for activity in plan.get("activity") or []:
        detail = (activity or {}).get("detail") if isinstance(activity, dict) else None
        if not isinstance(detail, dict) or detail.get("status") in DONE_ACTIVITIES:
            continue
        found.append((detail.get("scheduledPeriod") or {}).get("start"))
        found += _timing_starts(detail.get("scheduledTiming"))
    return _texts(found)


def immunization_times(recommendation: Resource) -> list[str]:
    found: list[Any] = []
    for item in recommendation.get("recommendation") or []:
        if not isinstance(item, dict) or _codes(item.get("forecastStatus")) & DONE_FORECASTS:
            continue
        for criterion in item.get("dateCriterion") or []:
            if isinstance(criterion, dict) and DUE_DATE in _codes(criterion.get("code")):
                found.append(criterion.get("value"))
    return _texts(found)


def _codes(concept: Any) -> set[str]:
    codings = concept.get("coding") if isinstance(concept, dict) else None
    return {str(c.get("code")) for c in codings or [] if isinstance(c, dict)}


def _texts(values: list[Any]) -> list[str]:
    out: list[str] = []
    for value in values:
        if isinstance(value, str) and value not in out:
            out.append(value)
    return out


class ImmunizationSchedule:
    """The due dates of the ImmunizationRecommendations (see the module)."""

    def __init__(self, store: Any, zone: ZoneInfo) -> None:
        self.store = store
        self.zone = zone
        self._items: dict[str, tuple[Any, Resource, list[str]]] = {}
        self._since: float | None = None
        self._full_at = 0.0

    def reset(self) -> None:
        """Read them all at the next scan (the lease was just taken)."""
        self._since = None

    async def due(self, now: datetime, horizon: datetime) -> list[tuple[Any, Resource, str]]:
        """``(stored, recommendation, due date)`` of what is due after ``now`` and by
        ``horizon``, as currently stored."""
        await self._refresh(now)
        out = []
        for id_, (stored, resource, times) in list(self._items.items()):
            if not any(self._between(t, now, horizon) for t in times):
                if all(self._past(t, now) for t in times):
                    del self._items[id_]  # nothing more to remind of
                continue
            current = await self.store.read(IMMUNIZATION, id_)
            if current is None or current.deleted or current.content is None:
                del self._items[id_]
                continue
            if current.version != stored.version:
                resource = fhir_json.loads(current.content)
                stored, times = current, immunization_times(resource)
                self._items[id_] = (stored, resource, times)
            out += [(stored, resource, t) for t in times if self._between(t, now, horizon)]
        return out

    def _between(self, text: str, now: datetime, horizon: datetime) -> bool:
        moment = moment_of(text, self.zone)
        return moment is not None and now < moment <= horizon

    def _past(self, text: str, now: datetime) -> bool:
        moment = moment_of(text, self.zone)
        return moment is None or moment <= now

    async def _refresh(self, now: datetime) -> None:
        at = now.timestamp()
        params: list[tuple[str, str]] = []
        if self._since is None or at >= self._full_at:
            self._items.clear()
            self._full_at = at + RESCAN
        else:
            since = datetime.fromtimestamp(self._since - MARGIN, UTC)
            params = [("_lastUpdated", f"ge{format_instant(since)}")]
        found = await search_all(self.store, IMMUNIZATION, params)
        self._since = at
        for stored, resource in found:
            times = [t for t in immunization_times(resource) if not self._past(t, now)]
            if times:  # what a reminder needs of it: whose it is
                kept = {"resourceType": IMMUNIZATION, "patient": resource.get("patient")}
                self._items[stored.id] = (stored, kept, times)
            else:
                self._items.pop(stored.id, None)


def widened(now: datetime, horizon: datetime) -> tuple[datetime, datetime]:
    """The search window of dated items: a day more each way (a due date's day in UTC
    and in the clinic's time zone differ by up to 14 hours)."""
    return now - timedelta(days=1), horizon + timedelta(days=1)
