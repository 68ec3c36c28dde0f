"""Date index values: each value as the UTC range its precision covers
(https://hl7.org/fhir/R4/search.html#date)."""

from __future__ import annotations

from typing import Any

import pytest

from resources.search.extract import Indexer
from resources.search.index.date import MAX_INSTANT, MIN_INSTANT
from resources.search.model import DateRow, SearchParam


def rows(resource: dict[str, Any], expression: str) -> list:
    type_name = resource["resourceType"]
    indexer = Indexer({"p": SearchParam(type_name, "p", "date", expression)}, type_name)
    return [row for row in indexer.extract(resource) if row.code == "p"]


@pytest.mark.parametrize(
    ("value", "low", "high"),
    [
        ("2024", "2024-01-01T00:00:00.000Z", "2025-01-01T00:00:00.000Z"),
        ("2024-02", "2024-02-01T00:00:00.000Z", "2024-03-01T00:00:00.000Z"),
        ("2024-02-29", "2024-02-29T00:00:00.000Z", "2024-03-01T00:00:00.000Z"),
        ("2024-02-29T10:30", "2024-02-29T10:30:00.000Z", "2024-02-29T10:31:00.000Z"),
        ("2024-02-29T10:30:15", "2024-02-29T10:30:15.000Z", "2024-02-29T10:30:16.000Z"),
    ],
)
def test_a_date_time_covers_its_precision(value: str, low: str, high: str) -> None:
    resource = {"resourceType": "Observation", "effectiveDateTime": value}
    assert rows(resource, "Observation.effective") == [DateRow("p", low, high)]


def test_a_zone_is_converted_to_utc() -> None:
    resource = {"resourceType": "Observation", "issued": "2013-04-03T15:30:10.123+01:00"}
    assert rows(resource, "Observation.issued") == [
        DateRow("p", "2013-04-03T14:30:10.123Z", "2013-04-03T14:30:10.124Z")
    ]


def test_a_time_without_zone_is_taken_as_utc() -> None:
    resource = {"resourceType": "Observation", "effectiveDateTime": "2013-04-03T15:30:10"}
    assert rows(resource, "Observation.effective")[0].low == "2013-04-03T15:30:10.000Z"


def test_a_period_runs_from_the_start_to_the_end_of_its_bounds() -> None:
    period = {"start": "2024-01-01", "end": "2024-01-31"}
    resource = {"resourceType": "Encounter", "period": period}
    assert rows(resource, "Encounter.period") == [
        DateRow("p", "2024-01-01T00:00:00.000Z", "2024-02-01T00:00:00.000Z")
    ]


def test_a_period_without_end_is_ongoing() -> None:
    resource = {"resourceType": "Encounter", "period": {"start": "2024-01-01"}}
    assert rows(resource, "Encounter.period") == [
        DateRow("p", "2024-01-01T00:00:00.000Z", MAX_INSTANT)
    ]


def test_a_period_without_start_is_open_before() -> None:
    resource = {"resourceType": "Encounter", "period": {"end": "2024-01-01"}}
    assert rows(resource, "Encounter.period") == [
        DateRow("p", MIN_INSTANT, "2024-01-02T00:00:00.000Z")
    ]


def test_a_timing_covers_its_outer_limits() -> None:
    timing = {
        "event": ["2024-03-05T08:00:00Z", "2024-01-02"],
        "repeat": {"boundsPeriod": {"start": "2024-02-01", "end": "2024-04-30"}},
    }
    resource = {"resourceType": "CarePlan", "activity": [{"detail": {"scheduledTiming": timing}}]}
    assert rows(resource, "CarePlan.activity.detail.scheduled") == [
        DateRow("p", "2024-01-02T00:00:00.000Z", "2024-05-01T00:00:00.000Z")
    ]


def test_a_timing_without_dates_is_not_indexed() -> None:
    timing = {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}}
    resource = {"resourceType": "CarePlan", "activity": [{"detail": {"scheduledTiming": timing}}]}
    assert rows(resource, "CarePlan.activity.detail.scheduled") == []


def test_a_string_choice_is_not_a_date() -> None:
    resource = {"resourceType": "CarePlan", "activity": [{"detail": {"scheduledString": "daily"}}]}
    assert rows(resource, "CarePlan.activity.detail.scheduled") == []


def test_an_invalid_date_is_skipped() -> None:
    resource = {"resourceType": "Observation", "effectiveDateTime": "2024-13-45"}
    assert rows(resource, "Observation.effective") == []


def test_a_string_that_looks_like_a_date_is_not_a_date() -> None:
    """Date parameters take date, dateTime, instant, Period and Timing only
    (https://hl7.org/fhir/R4/search.html#date): ``scheduledString`` is free text."""
    from resources.search.extract import indexer_for

    care_plan = {
        "resourceType": "CarePlan",
        "id": "x",
        "status": "active",
        "intent": "plan",
        "subject": {"reference": "Patient/a"},
        "activity": [
            {"detail": {"status": "scheduled", "scheduledString": "2020-01-01"}},
            {"detail": {"status": "scheduled", "scheduledPeriod": {"start": "2021-02-03"}}},
        ],
    }
    rows, _ = indexer_for("CarePlan").index(care_plan)
    dates = [r for r in rows if r.code == "activity-date"]
    assert [(r.low[:10]) for r in dates] == ["2021-02-03"]
