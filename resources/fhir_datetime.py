"""FHIR date, dateTime and instant values as UTC ranges, by their precision.

https://hl7.org/fhir/R4/datatypes.html#dateTime and
https://hl7.org/fhir/R4/search.html#date: a value stands for the whole period its
precision covers (``2024`` is all of 2024, ``2024-03-05T10:00`` one minute). A time without
a zone is taken as UTC. Ranges are half-open ``[start, end)`` in the store's instant format.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from resources.errors import invalid

_DATE_TIME = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.(?P<f>\d{1,9}))?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


def format_instant(moment: datetime) -> str:
    """UTC instant text with milliseconds, e.g. ``2024-03-05T10:00:00.000Z``."""
    m = moment.astimezone(UTC)
    return (
        f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}"
        f".{m.microsecond // 1000:03d}Z"
    )


def parse_range(text: str, name: str = "value") -> tuple[datetime, datetime]:
    """The half-open UTC range ``[start, end)`` a date/dateTime/instant stands for."""
    match = _DATE_TIME.match(text.strip())
    if not match:
        raise invalid(f"Invalid date/time {text!r} for {name}", name)
    parts = match.groupdict()
    try:
        start = _start(parts)
    except ValueError as exc:
        raise invalid(f"Invalid date/time {text!r} for {name}: {exc}", name) from None
    return start, _end(start, parts)


def parse_range_text(text: str, name: str = "value") -> tuple[str, str]:
    start, end = parse_range(text, name)
    return format_instant(start), format_instant(end)


def _start(p: dict[str, str | None]) -> datetime:
    fraction = (p["f"] or "0")[:6].ljust(6, "0")
    naive = datetime(
        int(p["y"] or 0),
        int(p["m"] or 1),
        int(p["d"] or 1),
        int(p["H"] or 0),
        int(p["M"] or 0),
        int(p["S"] or 0),
        int(fraction),
    )
    tz = p["tz"]
    if tz in (None, "Z"):
        return naive.replace(tzinfo=UTC)
    return datetime.fromisoformat(naive.isoformat() + tz).astimezone(UTC)


def _end(start: datetime, p: dict[str, str | None]) -> datetime:
    if p["m"] is None:
        return start.replace(year=start.year + 1)
    if p["d"] is None:
        month = start.month + 1
        return start.replace(year=start.year + month // 13, month=(month - 1) % 12 + 1)
    if p["H"] is None:
        return start + timedelta(days=1)
    if p["S"] is None:
        return start + timedelta(minutes=1)
    if p["f"] is None:
        return start + timedelta(seconds=1)
    digits = len(p["f"] or "")
    return start + timedelta(microseconds=max(1, 10 ** max(0, 6 - digits)))
