"""Search values by parameter type: https://hl7.org/fhir/R4/search.html#ptypes,
#prefix, #modifiers and #escaping."""

from __future__ import annotations

import pytest

from resources.search.query import (
    Clause,
    CompositeMatch,
    DateMatch,
    Match,
    MissingMatch,
    NumberMatch,
    QuantityMatch,
    ReferenceMatch,
    StringMatch,
    TokenMatch,
    UriMatch,
)
from tests.test_search_parse_registry import (
    LOINC,
    VITAL_CODES,
    VITALS,
    names,
    parse,
    parse_error,
)


def clause(query: str, types: tuple[str, ...] = ("Observation",)) -> Clause:
    conditions = parse(query, types, strict=True).conditions
    assert len(conditions) == 1
    assert isinstance(conditions[0], Clause)
    return conditions[0]


def value(query: str, types: tuple[str, ...] = ("Observation",)) -> Match:
    values = clause(query, types).values
    assert len(values) == 1
    return values[0]


RISK = ("RiskAssessment",)
PATIENT = ("Patient",)


# -- number: https://hl7.org/fhir/R4/search.html#number ------------------------------


@pytest.mark.parametrize(
    ("text", "low", "high"),
    [
        ("100", 99.5, 100.5),
        ("100.00", 99.995, 100.005),
        ("2.0", 1.95, 2.05),
        ("1e2", 50.0, 150.0),
        ("1.0e2", 95.0, 105.0),
        ("0.001", 0.0005, 0.0015),
        ("-5", -5.5, -4.5),
    ],
)
def test_number_stands_for_the_range_of_its_significant_digits(
    text: str, low: float, high: float
) -> None:
    match = value(f"probability={text}", RISK)
    assert isinstance(match, NumberMatch)
    assert (match.prefix, match.low, match.high) == ("eq", pytest.approx(low), pytest.approx(high))


@pytest.mark.parametrize("prefix", ["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb"])
def test_number_takes_every_prefix(prefix: str) -> None:
    assert value(f"probability={prefix}100", RISK) == NumberMatch(prefix, 100.0, 99.5, 100.5)  # type: ignore[arg-type]


def test_number_ap_is_ten_percent_either_side() -> None:
    assert value("probability=ap100", RISK) == NumberMatch("ap", 100.0, 90.0, 110.0)


def test_number_ap_keeps_at_least_the_precision_range() -> None:
    assert value("probability=ap0", RISK) == NumberMatch("ap", 0.0, -0.5, 0.5)


@pytest.mark.parametrize("text", ["abc", "1.2.3", "xx100", "ge", "1e99999", "1e999", ".5", "NaN"])
def test_malformed_number_is_400_naming_the_parameter(text: str) -> None:
    assert names(parse_error(f"probability={text}", RISK), "probability")


# -- date: https://hl7.org/fhir/R4/search.html#date -----------------------------------


@pytest.mark.parametrize(
    ("text", "low", "high"),
    [
        ("2024", "2024-01-01T00:00:00.000Z", "2025-01-01T00:00:00.000Z"),
        ("2024-02", "2024-02-01T00:00:00.000Z", "2024-03-01T00:00:00.000Z"),
        ("2024-02-28", "2024-02-28T00:00:00.000Z", "2024-02-29T00:00:00.000Z"),
        ("2024-02-28T10:15", "2024-02-28T10:15:00.000Z", "2024-02-28T10:16:00.000Z"),
        ("2024-02-28T10:15:30Z", "2024-02-28T10:15:30.000Z", "2024-02-28T10:15:31.000Z"),
        ("2024-02-28T10:15:30.250Z", "2024-02-28T10:15:30.250Z", "2024-02-28T10:15:30.251Z"),
    ],
)
def test_date_precision_gives_the_range(text: str, low: str, high: str) -> None:
    assert value(f"date={text}") == DateMatch("eq", low, high)


def test_date_with_a_zone_is_converted_to_utc() -> None:
    match = value("date=2024-03-05T10:00:00+05:00")
    assert match == DateMatch("eq", "2024-03-05T05:00:00.000Z", "2024-03-05T05:00:01.000Z")


def test_date_zone_plus_decoded_to_a_space_is_read_as_plus() -> None:
    assert value("date=2024-03-05T10:00:00 05:00") == value("date=2024-03-05T10:00:00+05:00")


@pytest.mark.parametrize("prefix", ["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb"])
def test_date_takes_every_prefix(prefix: str) -> None:
    match = value(f"date={prefix}2024")
    assert match == DateMatch(prefix, "2024-01-01T00:00:00.000Z", "2025-01-01T00:00:00.000Z")  # type: ignore[arg-type]


def test_date_ap_widens_by_ten_percent_of_the_gap_to_now() -> None:
    # now is 2025-01-01T00:00Z; the middle of 2015-01-01 is 3652.5 days before it, so the
    # day is widened by 365.25 days (365 days 6 hours) on each side
    match = value("date=ap2015-01-01")
    assert match == DateMatch("ap", "2013-12-31T18:00:00.000Z", "2016-01-02T06:00:00.000Z")


@pytest.mark.parametrize(
    "text", ["2024-13", "2024-02-30", "yesterday", "2024-1-1", "24:00", "2024-01-01T25:00", "9999"]
)
def test_malformed_date_is_400_naming_the_parameter(text: str) -> None:
    assert names(parse_error(f"date={text}"), "date")


def test_unknown_date_prefix_is_400() -> None:
    assert names(parse_error("date=xx2024"), "date")


# -- string: https://hl7.org/fhir/R4/search.html#string -------------------------------


def test_string_is_a_normalized_prefix() -> None:
    assert value("name=  José   María ", PATIENT) == StringMatch("jose maria", "prefix")


def test_string_exact_keeps_the_value_as_written() -> None:
    assert value("name:exact=José", PATIENT) == StringMatch("José", "exact")


def test_string_contains_is_normalized() -> None:
    assert value("name:contains=ÉVE", PATIENT) == StringMatch("eve", "contains")


def test_string_unescapes_separators() -> None:
    assert value(r"name:exact=a\,b\|c\$d\\e", PATIENT) == StringMatch("a,b|c$d\\e", "exact")


def test_string_keeps_an_unknown_escape_as_written() -> None:
    assert value(r"name:exact=a\nb", PATIENT) == StringMatch("a\\nb", "exact")


# -- token: https://hl7.org/fhir/R4/search.html#token ---------------------------------


def test_token_code_alone_matches_any_system() -> None:
    assert value("code=1234") == TokenMatch(system=None, code="1234")


def test_token_system_and_code() -> None:
    assert value(f"code={LOINC}|1234") == TokenMatch(system=LOINC, code="1234")


def test_token_bar_code_means_no_system() -> None:
    assert value("code=|1234") == TokenMatch(system="", code="1234")


def test_token_system_bar_means_any_code() -> None:
    assert value(f"code={LOINC}|") == TokenMatch(system=LOINC, code=None)


def test_token_escaped_bar_is_part_of_the_code() -> None:
    assert value(r"code=a\|b") == TokenMatch(code="a|b")


def test_token_with_two_bars_is_400() -> None:
    assert names(parse_error("code=a|b|c"), "code")


def test_token_bar_alone_is_400() -> None:
    assert names(parse_error("code=|"), "code")


def test_token_text_is_normalized() -> None:
    assert value("code:text=Blood  Préssure") == TokenMatch(mode="text", text="blood pressure")


def test_token_not_negates_the_clause() -> None:
    found = clause("code:not=1234,5678")
    assert found.negate
    assert found.values == (TokenMatch(code="1234"), TokenMatch(code="5678"))


def test_token_of_type_takes_system_code_value() -> None:
    match = value(
        "identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|446053", PATIENT
    )
    assert match == TokenMatch(
        system="http://terminology.hl7.org/CodeSystem/v2-0203",
        code="MR",
        mode="of-type",
        text="446053",
    )


@pytest.mark.parametrize("text", ["MR|446053", "sys||446053", "a|b|c|d"])
def test_token_of_type_needs_all_three_parts(text: str) -> None:
    assert names(parse_error(f"identifier:of-type={text}", PATIENT), "identifier:of-type")


def test_token_in_expands_the_value_set() -> None:
    found = clause(f"code:in={VITALS}")
    assert not found.negate
    assert found.values == (TokenMatch(mode="in", codes=VITAL_CODES),)


def test_token_not_in_is_a_negated_in() -> None:
    found = clause(f"code:not-in={VITALS}")
    assert found.negate
    assert found.values == (TokenMatch(mode="in", codes=VITAL_CODES),)


def test_token_in_an_unknown_value_set_is_400_naming_it() -> None:
    error = parse_error("code:in=http://example.org/ValueSet/nope")
    assert names(error, "code:in")
    assert "http://example.org/ValueSet/nope" in error.diagnostics


@pytest.mark.parametrize("modifier", ["above", "below", "exact"])
def test_token_hierarchy_modifiers_are_unsupported(modifier: str) -> None:
    assert parse(f"code:{modifier}=1234").ignored == [(f"code:{modifier}", "1234")]


# -- reference: https://hl7.org/fhir/R4/search.html#reference -------------------------


def test_reference_bare_id_matches_any_target_type() -> None:
    assert value("subject=123") == ReferenceMatch(target_id="123")


def test_reference_bare_id_of_a_single_target_parameter_gets_its_type() -> None:
    assert value("patient=123") == ReferenceMatch(target_type="Patient", target_id="123")


def test_reference_type_and_id() -> None:
    assert value("subject=Patient/123") == ReferenceMatch(target_type="Patient", target_id="123")


def test_reference_type_id_and_version() -> None:
    match = value("subject=Patient/123/_history/2")
    assert match == ReferenceMatch(target_type="Patient", target_id="123", version="2")


def test_reference_type_modifier_names_the_type() -> None:
    assert value("subject:Patient=123") == ReferenceMatch(target_type="Patient", target_id="123")


def test_reference_type_modifier_must_agree_with_the_value() -> None:
    assert names(parse_error("subject:Patient=Group/1"), "subject:Patient")


def test_reference_type_modifier_outside_the_targets_is_unsupported() -> None:
    assert parse("subject:Practitioner=1").ignored == [("subject:Practitioner", "1")]


def test_reference_to_a_type_outside_the_targets_is_400() -> None:
    assert names(parse_error("subject=Practitioner/1"), "subject")


def test_reference_to_an_unknown_type_is_400() -> None:
    assert names(parse_error("subject=Nonsense/1"), "subject")


def test_reference_absolute_url() -> None:
    url = "http://other.example/fhir/Patient/123"
    assert value(f"subject={url}") == ReferenceMatch(url=url)


def test_reference_canonical_with_version() -> None:
    match = value(
        "questionnaire=http://example.org/Questionnaire/phq9|1.0", ("QuestionnaireResponse",)
    )
    assert match == ReferenceMatch(url="http://example.org/Questionnaire/phq9", version="1.0")


def test_reference_identifier() -> None:
    match = value("subject:identifier=http://hospital.example/mrn|12345")
    assert match == ReferenceMatch(
        identifier_system="http://hospital.example/mrn", identifier_value="12345"
    )


def test_reference_identifier_value_alone_matches_any_system() -> None:
    assert value("subject:identifier=12345") == ReferenceMatch(identifier_value="12345")


@pytest.mark.parametrize("text", ["not an id", "a/b/c", "Patient/", "x|y|z"])
def test_malformed_reference_is_400(text: str) -> None:
    assert names(parse_error(f"subject={text}"), "subject")


# -- quantity: https://hl7.org/fhir/R4/search.html#quantity ---------------------------


def test_quantity_with_system_and_code() -> None:
    match = value("value-quantity=5.4|http://unitsofmeasure.org|mg")
    assert match == QuantityMatch("eq", 5.4, 5.35, 5.45, "http://unitsofmeasure.org", "mg")


def test_quantity_code_without_system() -> None:
    assert value("value-quantity=5.4||mg") == QuantityMatch("eq", 5.4, 5.35, 5.45, None, "mg")


def test_quantity_number_alone() -> None:
    assert value("value-quantity=5.4") == QuantityMatch("eq", 5.4, 5.35, 5.45)


def test_quantity_takes_a_prefix() -> None:
    match = value("value-quantity=le5.4|http://unitsofmeasure.org|mg")
    assert match == QuantityMatch("le", 5.4, 5.35, 5.45, "http://unitsofmeasure.org", "mg")


def test_quantity_ap_is_ten_percent() -> None:
    match = value("value-quantity=ap100||mg")
    assert isinstance(match, QuantityMatch)
    assert (match.low, match.high) == (90.0, 110.0)


@pytest.mark.parametrize("text", ["5.4|mg", "abc||mg", "|http://x|mg", "5|a|b|c"])
def test_malformed_quantity_is_400(text: str) -> None:
    assert names(parse_error(f"value-quantity={text}"), "value-quantity")


# -- uri: https://hl7.org/fhir/R4/search.html#uri -------------------------------------


def test_uri_matches_exactly() -> None:
    assert value("url=http://acme.org/fhir/ValueSet/123", ("ValueSet",)) == UriMatch(
        "http://acme.org/fhir/ValueSet/123"
    )


def test_uri_above() -> None:
    match = value("url:above=http://acme.org/fhir/ValueSet/123/_history/5", ("ValueSet",))
    assert match == UriMatch("http://acme.org/fhir/ValueSet/123/_history/5", "above")


def test_uri_below() -> None:
    assert value("url:below=http://acme.org/fhir/", ("ValueSet",)) == UriMatch(
        "http://acme.org/fhir/", "below"
    )


# -- composite: https://hl7.org/fhir/R4/search.html#composite -------------------------


def test_composite_parses_each_component_with_its_type() -> None:
    match = value(f"code-value-quantity={LOINC}|8480-6$gt100")
    assert match == CompositeMatch(
        (TokenMatch(system=LOINC, code="8480-6"), QuantityMatch("gt", 100.0, 99.5, 100.5))
    )


def test_composite_with_a_date_component() -> None:
    match = value("code-value-date=1234$ge2024")
    assert match == CompositeMatch(
        (
            TokenMatch(code="1234"),
            DateMatch("ge", "2024-01-01T00:00:00.000Z", "2025-01-01T00:00:00.000Z"),
        )
    )


def test_composite_escaped_dollar_stays_in_the_component() -> None:
    match = value(r"code-value-quantity=a\$b$5")
    assert isinstance(match, CompositeMatch)
    assert match.parts[0] == TokenMatch(code="a$b")


@pytest.mark.parametrize("text", ["1234", "1234$5$6", "$5", "1234$abc"])
def test_composite_with_wrong_components_is_400(text: str) -> None:
    assert names(parse_error(f"code-value-quantity={text}"), "code-value-quantity")


def test_composite_comma_is_or_of_whole_values() -> None:
    found = clause("code-value-quantity=a$1,b$2")
    assert len(found.values) == 2


# -- :missing, on every type: https://hl7.org/fhir/R4/search.html#modifiers -----------


@pytest.mark.parametrize(
    ("types", "code"),
    [
        (RISK, "probability"),
        (("Observation",), "date"),
        (PATIENT, "name"),
        (("Observation",), "code"),
        (("Observation",), "subject"),
        (("Observation",), "value-quantity"),
        (("ValueSet",), "url"),
        (("Observation",), "code-value-quantity"),
    ],
)
@pytest.mark.parametrize("flag", [True, False])
def test_missing_on_every_type(types: tuple[str, ...], code: str, flag: bool) -> None:
    found = clause(f"{code}:missing={str(flag).lower()}", types)
    assert found.values == (MissingMatch(flag),)


def test_missing_takes_only_true_or_false() -> None:
    assert names(parse_error("code:missing=yes"), "code:missing")


# -- modifiers by type -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("types", "name"),
    [
        (RISK, "probability:exact"),
        (("Observation",), "date:contains"),
        (PATIENT, "name:text"),
        (PATIENT, "name:not"),
        (("Observation",), "value-quantity:below"),
        (("ValueSet",), "url:exact"),
        (("Observation",), "code-value-quantity:not"),
        (("Observation",), "subject:above"),
        (("Observation",), "code:"),
        (("Observation",), "code:not:text"),
    ],
)
def test_modifier_not_valid_for_the_type_is_ignored_when_lenient(
    types: tuple[str, ...], name: str
) -> None:
    query = parse([(name, "1")], types)
    assert (query.conditions, query.applied, query.ignored) == ([], [], [(name, "1")])


def test_modifier_not_valid_for_the_type_is_400_when_strict() -> None:
    error = parse_error("date:contains=2024", strict=True)
    assert names(error, "date:contains")
    assert error.code == "not-supported"
