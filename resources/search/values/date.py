"""Date values: https://hl7.org/fhir/R4/search.html#date.

``[prefix]YYYY[-MM[-DD[Thh:mm[:ss[.fff]][zone]]]]`` stands for the UTC range its
precision covers (``resources.fhir_datetime``); a time without a zone is UTC. A ``+``
of a zone that arrived unencoded in a URL (and so became a space) is read as ``+``.
``ap`` widens the range by 10% of the gap between now and the date
(https://hl7.org/fhir/R4/search.html#prefix).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from resources.errors import FhirError
from resources.fhir_datetime import format_instant, parse_range
from resources.search.query import DateMatch
from resources.search.values.common import bad
from resources.search.values.number import split_prefix

_DECODED_PLUS = re.compile(r"(T[\d:.]+) (\d{2}:\d{2})$")
_EARLIEST = datetime(1, 1, 1, tzinfo=UTC)
_LATEST = datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)


def parse_date(text: str, name: str, now: datetime) -> DateMatch:
    """``[prefix]date`` as a :class:`DateMatch`."""
    prefix, rest = split_prefix(text, name)
    low, high = date_range(rest, name)
    if prefix == "ap":
        low, high = _approximately(low, high, now)
    return DateMatch(prefix, format_instant(low), format_instant(high))


def date_range(text: str, name: str) -> tuple[datetime, datetime]:
    """The half-open UTC range a date value stands for."""
    text = _DECODED_PLUS.sub(r"\1+\2", text)
    try:
        low, high = parse_range(text, name)
    except FhirError:
        raise bad(name, f"{text!r} is not a date, dateTime or instant") from None
    except (ValueError, OverflowError):
        raise bad(name, f"{text!r} is out of range") from None
    if high > _LATEST:
        high = _LATEST
    return low, high


def _approximately(low: datetime, high: datetime, now: datetime) -> tuple[datetime, datetime]:
    middle = low + (high - low) / 2
    margin = abs(now - middle) / 10
    try:
        wide_low = low - margin
    except OverflowError:
        wide_low = _EARLIEST
    try:
        wide_high = min(high + margin, _LATEST)
    except OverflowError:
        wide_high = _LATEST
    return max(wide_low, _EARLIEST), wide_high
