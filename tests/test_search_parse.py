"""Parsing a search into the query IR: combining values, the parameters of all resources,
bad input, and what goes into the ``self`` link (https://hl7.org/fhir/R4/search.html)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from resources.search.parameters import search_params
from resources.search.parse import parse_search
from resources.search.query import (
    Clause,
    DateMatch,
    IdClause,
    LastUpdatedClause,
    SearchQuery,
    StringMatch,
    TokenMatch,
    UriMatch,
)
from tests.test_search_parse_registry import NOW, names, parse, parse_error

# -- combining: https://hl7.org/fhir/R4/search.html#combining --------------------------


def test_comma_is_or_within_one_clause() -> None:
    (found,) = parse("code=a,b,c").conditions
    assert isinstance(found, Clause)
    assert found.values == (TokenMatch(code="a"), TokenMatch(code="b"), TokenMatch(code="c"))


def test_repeated_parameter_is_and_of_clauses() -> None:
    conditions = parse("date=ge2024&date=lt2025").conditions
    assert len(conditions) == 2
    assert [c.values[0].prefix for c in conditions] == ["ge", "lt"]  # type: ignore[union-attr]


def test_escaped_comma_is_not_a_separator() -> None:
    (found,) = parse(r"code=a\,b").conditions
    assert isinstance(found, Clause)
    assert found.values == (TokenMatch(code="a,b"),)


def test_escaped_backslash_before_comma_leaves_the_comma_a_separator() -> None:
    (found,) = parse(r"code=a\\,b").conditions
    assert isinstance(found, Clause)
    assert found.values == (TokenMatch(code="a\\"), TokenMatch(code="b"))


def test_conditions_keep_the_order_of_the_query() -> None:
    codes = [c.param.code for c in parse("date=2024&code=1&subject=1").conditions]  # type: ignore[union-attr]
    assert codes == ["date", "code", "subject"]


def test_empty_value_is_dropped() -> None:
    query = parse("code=&date=2024")
    assert [c.param.code for c in query.conditions] == ["date"]  # type: ignore[union-attr]
    assert query.applied == [("date", "2024")]


def test_empty_alternatives_are_dropped() -> None:
    query = parse("code=a,,b,")
    assert query.applied == [("code", "a,b")]


# -- parameters of all resources: https://hl7.org/fhir/R4/search.html#all --------------


def test_id_is_an_id_clause() -> None:
    assert parse("_id=a,b").conditions == [IdClause(("a", "b"))]


def test_id_not_is_negated() -> None:
    assert parse("_id:not=a").conditions == [IdClause(("a",), negate=True)]


def test_malformed_id_is_400() -> None:
    assert names(parse_error("_id=no spaces allowed"), "_id")


def test_last_updated_is_its_own_clause_with_prefixes() -> None:
    (found,) = parse("_lastUpdated=gt2024-01-01,lt2023").conditions
    assert found == LastUpdatedClause(
        (
            DateMatch("gt", "2024-01-01T00:00:00.000Z", "2024-01-02T00:00:00.000Z"),
            DateMatch("lt", "2023-01-01T00:00:00.000Z", "2024-01-01T00:00:00.000Z"),
        )
    )


def test_malformed_last_updated_is_400() -> None:
    assert names(parse_error("_lastUpdated=soon"), "_lastUpdated")


def test_tag_is_a_token_parameter() -> None:
    (found,) = parse("_tag=http://example.org/tags|vip").conditions
    assert isinstance(found, Clause)
    assert (found.param.code, found.param.type) == ("_tag", "token")
    assert found.values == (TokenMatch(system="http://example.org/tags", code="vip"),)


def test_security_is_a_token_parameter() -> None:
    (found,) = parse("_security:not=R").conditions
    assert isinstance(found, Clause)
    assert (found.param.type, found.negate) == ("token", True)


@pytest.mark.parametrize("code", ["_profile", "_source"])
def test_profile_and_source_are_uri_parameters(code: str) -> None:
    (found,) = parse(f"{code}=http://example.org/x").conditions
    assert isinstance(found, Clause)
    assert found.values == (UriMatch("http://example.org/x"),)


def test_format_and_pretty_are_not_search_parameters() -> None:
    query = parse("_format=json&_pretty=true&code=1", strict=True)
    assert query.applied == [("code", "1")]
    assert query.ignored == []


# -- unknown and unsupported: https://hl7.org/fhir/R4/search.html#errors --------------


def test_unknown_parameter_is_ignored_when_lenient() -> None:
    query = parse("nonsense=1&code=2")
    assert query.ignored == [("nonsense", "1")]
    assert query.applied == [("code", "2")]
    assert len(query.conditions) == 1


def test_unknown_parameter_is_400_naming_it_when_strict() -> None:
    error = parse_error("nonsense=1", strict=True)
    assert names(error, "nonsense")
    assert error.code == "not-supported"


def test_unknown_modifier_is_ignored_when_lenient() -> None:
    assert parse("code:fuzzy=1").ignored == [("code:fuzzy", "1")]


def test_unknown_modifier_is_400_when_strict() -> None:
    assert names(parse_error("code:fuzzy=1", strict=True), "code:fuzzy")


def test_parameter_without_an_expression_is_unsupported() -> None:
    assert parse("_text=x").ignored == [("_text", "x")]


def test_special_parameter_is_unsupported() -> None:
    assert parse("_list=x").ignored == [("_list", "x")]


@pytest.mark.parametrize("name", ["_contained", "_containedType", "_query", "_filter"])
def test_unimplemented_spec_parameters_are_unsupported(name: str) -> None:
    assert parse([(name, "x")]).ignored == [(name, "x")]


def test_malformed_value_is_400_even_when_lenient() -> None:
    assert names(parse_error("date=someday", strict=False), "date")


def test_applied_keeps_modifiers_and_values_as_written() -> None:
    query = parse(r"code:not=a\,b,c&value-string:exact=Hi")
    assert query.applied == [("code:not", r"a\,b,c"), ("value-string:exact", "Hi")]


def test_repeated_parameters_each_appear_in_applied() -> None:
    assert parse("code=a&code=b").applied == [("code", "a"), ("code", "b")]


# -- several types: system search with _type ---------------------------------------------


def test_parameter_common_to_all_types_applies() -> None:
    (found,) = parse("code=1234", ("Observation", "Condition")).conditions
    assert isinstance(found, Clause)
    assert found.param.code == "code"


def test_reference_common_to_all_types_has_every_target() -> None:
    (found,) = parse("subject=Patient/1", ("Observation", "Condition")).conditions
    assert isinstance(found, Clause)
    assert set(found.param.targets) == {"Device", "Group", "Location", "Patient"}


def test_parameter_missing_from_one_type_is_unknown() -> None:
    query = parse("value-quantity=5", ("Observation", "Condition"))
    assert query.ignored == [("value-quantity", "5")]


def test_same_code_and_type_on_every_type_applies() -> None:
    assert parse("date=2024", ("Observation", "Encounter"), strict=True).conditions


def test_same_code_of_another_parameter_type_is_unknown() -> None:
    # Observation.date is a date; the registry's Practitioner.date is (made up as) a string
    assert parse("date=2024", ("Observation", "Practitioner")).ignored == [("date", "2024")]


def test_resource_parameters_apply_across_all_types() -> None:
    query = parse("_id=1&_tag=x&_lastUpdated=2024", ("Patient", "Observation"), strict=True)
    assert len(query.conditions) == 3


def test_type_parameter_naming_the_searched_types_is_accepted() -> None:
    query = parse("_type=Patient,Observation&_id=1", ("Patient", "Observation"), strict=True)
    assert len(query.conditions) == 1


def test_type_parameter_naming_other_types_is_400() -> None:
    assert names(parse_error("_type=Condition", ("Patient",)), "_type")


def test_query_types_are_the_resource_types() -> None:
    assert parse("", ("Patient", "Observation")).types == ("Patient", "Observation")


# -- string normalization shared with the index ------------------------------------------


def test_string_normalization_is_the_index_one() -> None:
    from resources.search.normalize import normalize_string

    (found,) = parse("name=ÅNGSTRÖM  Zoë", ("Patient",)).conditions
    assert isinstance(found, Clause)
    assert found.values == (StringMatch(normalize_string("ÅNGSTRÖM  Zoë")),)


# -- the memo of parsed conditions (resources.search.parse._CONDITIONS) ----------------


def _parse_with(params, query: str, now: datetime) -> SearchQuery:
    return parse_search(
        ["Observation"],
        [tuple(part.split("=", 1)) for part in query.split("&")],  # type: ignore[misc]
        strict=False,
        params_for=params,
        max_count=100,
        default_count=20,
        now=now,
    )


def test_a_repeated_search_parses_to_the_same_query() -> None:
    first = _parse_with(search_params, "code=http://loinc.org|1234-5&subject=Patient/1", NOW)
    again = _parse_with(search_params, "code=http://loinc.org|1234-5&subject=Patient/1", NOW)
    assert again.conditions == first.conditions
    assert again.applied == first.applied
    assert again.conditions is not first.conditions  # the query's own list


def test_approximate_dates_follow_the_time_of_each_search() -> None:
    """``ap`` widens a date by 10% of its distance from now: never taken from the memo."""
    early = _parse_with(search_params, "date=ap2000-01-01", datetime(2010, 1, 1, tzinfo=UTC))
    late = _parse_with(search_params, "date=ap2000-01-01", datetime(2030, 1, 1, tzinfo=UTC))
    (early_match,) = early.conditions[0].values  # type: ignore[union-attr]
    (late_match,) = late.conditions[0].values  # type: ignore[union-attr]
    assert early_match.prefix == late_match.prefix == "ap"
    assert late_match.low < early_match.low  # further from now: a wider range


def test_the_memo_belongs_to_the_parameter_definitions_given() -> None:
    """The same text under other definitions (another ``params_for``) is parsed again."""
    as_token = _parse_with(search_params, "code=abc", NOW)
    (clause,) = as_token.conditions
    assert clause.param.type == "token"  # type: ignore[union-attr]
    token = search_params("Observation")["code"]
    as_string = dict(search_params("Observation"))
    as_string["code"] = replace(token, type="string")
    (clause,) = _parse_with(lambda t: as_string, "code=abc", NOW).conditions
    assert clause.param.type == "string"  # type: ignore[union-attr]
    assert clause.values == (StringMatch("abc"),)  # type: ignore[union-attr]


def test_long_values_are_not_kept() -> None:
    """The memo's size stays bounded whatever a client sends: long texts are parsed
    every time and never stored."""
    from resources.search import parse as parse_module

    long_id = "a" * 60 + "," + ",".join(f"id-{n:05d}" for n in range(90))
    query = _parse_with(search_params, f"_id={long_id}", NOW)
    assert len(query.conditions[0].ids) == 91  # type: ignore[union-attr]
    assert not any(long_id in key for key in parse_module._CONDITIONS)
