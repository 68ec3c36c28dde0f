"""Result parameters: https://hl7.org/fhir/R4/search.html#return (``_sort``, ``_count``,
``_include`` / ``_revinclude``, ``_total``, ``_summary``, ``_elements``) and the paging
cursor."""

from __future__ import annotations

import pytest

from resources.search.query import Include, Sort
from tests.test_search_parse_registry import PARAMS, names, parse, parse_error

OBS = PARAMS["Observation"]

# -- _sort: https://hl7.org/fhir/R4/search.html#sort ----------------------------------


def test_sort_by_several_keys_with_descending() -> None:
    query = parse("_sort=-date,code,_id,-_lastUpdated")
    assert query.sort == (
        Sort(OBS["date"], descending=True),
        Sort(OBS["code"]),
        Sort(None, special="_id"),
        Sort(None, descending=True, special="_lastUpdated"),
    )
    assert query.applied == [("_sort", "-date,code,_id,-_lastUpdated")]


@pytest.mark.parametrize("code", ["subject", "value-quantity", "value-string"])
def test_sort_by_any_sortable_parameter(code: str) -> None:
    assert parse(f"_sort={code}").sort == (Sort(OBS[code]),)


def test_sort_by_an_unknown_parameter_is_dropped_when_lenient() -> None:
    query = parse("_sort=nonsense,-date")
    assert query.sort == (Sort(OBS["date"], descending=True),)
    assert query.applied == [("_sort", "-date")]
    assert query.ignored == [("_sort", "nonsense")]


def test_sort_by_an_unknown_parameter_is_400_when_strict() -> None:
    assert names(parse_error("_sort=nonsense", strict=True), "_sort")


def test_sort_by_a_composite_is_unsupported() -> None:
    assert parse("_sort=code-value-quantity").ignored == [("_sort", "code-value-quantity")]


def test_sort_with_an_empty_key_is_400() -> None:
    assert names(parse_error("_sort=date,,code"), "_sort")


def test_sort_given_twice_is_400() -> None:
    assert names(parse_error("_sort=date&_sort=code"), "_sort")


def test_sort_with_a_modifier_is_unsupported() -> None:
    assert parse("_sort:desc=date").ignored == [("_sort:desc", "date")]


# -- _count: https://hl7.org/fhir/R4/search.html#count --------------------------------


def test_count_is_applied() -> None:
    query = parse("_count=10")
    assert (query.count, query.applied) == (10, [("_count", "10")])


def test_count_is_capped_at_the_maximum() -> None:
    query = parse("_count=5000", max_count=100)
    assert (query.count, query.applied) == (100, [("_count", "100")])


def test_huge_count_is_capped() -> None:
    assert parse("_count=" + "9" * 5000, max_count=100).count == 100


def test_count_defaults_without_being_applied() -> None:
    query = parse("code=1", default_count=20)
    assert (query.count, query.applied) == (20, [("code", "1")])


def test_count_zero_asks_for_the_count_only() -> None:
    query = parse("_count=0")
    assert (query.count, query.summary) == (0, "count")


def test_count_zero_keeps_an_explicit_summary() -> None:
    assert parse("_count=0&_summary=data").summary == "data"


@pytest.mark.parametrize("text", ["-1", "ten", "1.5", "١٢"])
def test_malformed_count_is_400(text: str) -> None:
    assert names(parse_error(f"_count={text}"), "_count")


# -- _include / _revinclude: https://hl7.org/fhir/R4/search.html#include ----------------


def test_include_source_and_parameter() -> None:
    query = parse("_include=Observation:subject")
    assert query.includes == (Include("Observation", OBS["subject"]),)
    assert query.applied == [("_include", "Observation:subject")]


def test_include_with_a_target_type() -> None:
    query = parse("_include=Observation:subject:Patient")
    assert query.includes == (Include("Observation", OBS["subject"], "Patient"),)


def test_include_wildcard_parameter() -> None:
    assert parse("_include=Observation:*").includes == (Include("Observation", None),)


def test_include_wildcard_alone_means_every_searched_type() -> None:
    query = parse("_include=*", ("Observation", "Condition"))
    assert query.includes == (Include("Observation", None), Include("Condition", None))


def test_include_iterate() -> None:
    query = parse("_include:iterate=Patient:organization")
    (include,) = query.includes
    assert include.iterate
    assert query.applied == [("_include:iterate", "Patient:organization")]


def test_include_recurse_is_the_old_name_of_iterate() -> None:
    query = parse("_include:recurse=Patient:organization")
    assert query.includes[0].iterate
    assert query.applied == [("_include:iterate", "Patient:organization")]


def test_include_error_names_the_parameter_as_written() -> None:
    assert names(parse_error("_include:recurse=Nonsense:x"), "_include:recurse")


def test_revinclude() -> None:
    query = parse("_revinclude=Observation:patient", ("Patient",))
    assert query.includes == (Include("Observation", OBS["patient"], reverse=True),)


def test_revinclude_iterate() -> None:
    (include,) = parse("_revinclude:iterate=Observation:patient", ("Patient",)).includes
    assert (include.reverse, include.iterate) == (True, True)


def test_includes_repeat() -> None:
    query = parse("_include=Observation:subject&_include=Observation:performer")
    assert len(query.includes) == 2


def test_include_of_an_unknown_parameter_is_ignored_when_lenient() -> None:
    query = parse("_include=Observation:nonsense")
    assert (query.includes, query.ignored) == ((), [("_include", "Observation:nonsense")])


def test_include_of_an_unknown_parameter_is_400_when_strict() -> None:
    assert names(parse_error("_include=Observation:nonsense", strict=True), "_include")


@pytest.mark.parametrize(
    "value",
    [
        "Observation",
        "Nonsense:subject",
        "Observation:code",
        "Observation:subject:Nonsense",
        "a:b:c:d",
    ],
)
def test_malformed_include_is_400(value: str) -> None:
    assert names(parse_error(f"_include={value}"), "_include")


def test_include_target_outside_the_parameter_targets_is_400() -> None:
    assert names(parse_error("_include=Observation:subject:Practitioner"), "_include")


def test_revinclude_wildcard_alone_includes_referrers_of_any_type() -> None:
    query = parse("_revinclude=*")
    assert query.ignored == []
    assert [(i.source_type, i.param, i.reverse) for i in query.includes] == [("*", None, True)]


def test_include_with_an_unknown_modifier_is_unsupported() -> None:
    assert parse("_include:deep=Observation:subject").ignored == [
        ("_include:deep", "Observation:subject")
    ]


# -- _total, _summary, _elements ---------------------------------------------------------


@pytest.mark.parametrize("total", ["none", "estimate", "accurate"])
def test_total(total: str) -> None:
    query = parse(f"_total={total}")
    assert (query.total, query.applied) == (total, [("_total", total)])


def test_malformed_total_is_400() -> None:
    assert names(parse_error("_total=some"), "_total")


@pytest.mark.parametrize("summary", ["true", "text", "data", "count", "false"])
def test_summary(summary: str) -> None:
    query = parse(f"_summary={summary}")
    assert (query.summary, query.applied) == (summary, [("_summary", summary)])


def test_malformed_summary_is_400() -> None:
    assert names(parse_error("_summary=short"), "_summary")


def test_elements() -> None:
    query = parse("_elements=status, code,Observation.subject")
    assert query.elements == ("status", "code", "Observation.subject")
    assert query.applied == [("_elements", "status,code,Observation.subject")]


def test_malformed_elements_is_400() -> None:
    assert names(parse_error("_elements=status,<script>"), "_elements")


def test_result_parameter_given_twice_is_400() -> None:
    assert names(parse_error("_total=none&_total=none"), "_total")


# -- the paging cursor -------------------------------------------------------------------


def test_cursor_passes_through_and_is_not_applied() -> None:
    query = parse("code=1&_cursor=opaque.token-123")
    assert query.cursor == "opaque.token-123"
    assert query.applied == [("code", "1")]
