"""Date search values (https://hl7.org/fhir/R4/search.html#date).

Every value becomes the half-open UTC range ``[low, high)`` it covers
(:mod:`resources.fhir_datetime`: the precision sets the width; a time without a zone is
UTC; instants with zones are converted):

- ``date``, ``dateTime``, ``instant``: ``2024`` covers the year, ``2024-03-05`` the day.
- ``Period``: from the low of ``start`` to the high of ``end``; a missing start is open
  (:data:`MIN_INSTANT`), a missing end is ongoing (:data:`MAX_INSTANT`).
- ``Timing``: "the specified scheduling details are ignored and only the outer limits
  matter": one range from the earliest ``event`` / ``repeat.boundsPeriod.start`` to the
  latest ``event`` / ``repeat.boundsPeriod.end``.

Other types (``Age``, ``Range``, ``string``: ``CarePlan.activity.detail.scheduledString``
"2020-01-01" is text, not a date) carry no date and give no rows. Values that
do not parse (validation rejects them before indexing) are skipped. Sort values:
``min(low)`` ascending, ``max(high)`` descending.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from resources.errors import FhirError
from resources.fhir_datetime import parse_range_text
from resources.search.model import DateRow

Item = tuple[Any, str]

MIN_INSTANT = "0001-01-01T00:00:00.000Z"
MAX_INSTANT = "9999-12-31T23:59:59.999Z"


@lru_cache(maxsize=8192)
def date_range(text: str) -> tuple[str, str] | None:
    """``(low, high)`` of a date/dateTime/instant, or None when it does not parse."""
    try:
        return parse_range_text(text)
    except (FhirError, ValueError, OverflowError):
        return None


_DATE_PRIMITIVES = frozenset(
    {"date", "dateTime", "instant", "System.Date", "System.DateTime", "System.Instant"}
)


def date_rows(code: str, items: Iterable[Item]) -> list[DateRow]:
    rows: list[DateRow] = []
    for value, type_name in items:
        if isinstance(value, str) and type_name in _DATE_PRIMITIVES:
            bounds = date_range(value)
        elif isinstance(value, dict) and type_name == "Period":
            bounds = _period(value)
        elif isinstance(value, dict) and type_name == "Timing":
            bounds = _timing(value)
        else:
            bounds = None
        if bounds is not None:
            rows.append(DateRow(code, bounds[0], bounds[1]))
    return rows


def _period(period: dict[str, Any]) -> tuple[str, str] | None:
    start, end = period.get("start"), period.get("end")
    low = date_range(start) if isinstance(start, str) else None
    high = date_range(end) if isinstance(end, str) else None
    if low is None and high is None:
        return None
    return (low[0] if low else MIN_INSTANT), (high[1] if high else MAX_INSTANT)


def _timing(timing: dict[str, Any]) -> tuple[str, str] | None:
    events = timing.get("event")
    ranges = (
        [date_range(e) for e in events if isinstance(e, str)] if isinstance(events, list) else []
    )
    bounds = [r for r in ranges if r is not None]
    repeat = timing.get("repeat")
    if isinstance(repeat, dict) and isinstance(repeat.get("boundsPeriod"), dict):
        period = _period(repeat["boundsPeriod"])
        if period is not None:
            bounds.append(period)
    if not bounds:
        return None
    return min(low for low, _ in bounds), max(high for _, high in bounds)
