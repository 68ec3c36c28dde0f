"""The parser over the generated R4 search parameters (``resources.search.parameters``):
the spec's own examples (https://hl7.org/fhir/R4/search.html) parse against the real
definitions."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from resources.definitions import resource_types
from resources.search.parameters import search_params
from resources.search.parse import parse_search
from resources.search.query import (
    AnyOf,
    ChainClause,
    Clause,
    CompositeMatch,
    HasClause,
    LastUpdatedClause,
    SearchQuery,
)
from resources.terminology import value_set_codes


def parse(types: Sequence[str], query: str, strict: bool = True) -> SearchQuery:
    items = [(k, v) for k, _, v in (part.partition("=") for part in query.split("&"))]
    return parse_search(
        types,
        items,
        strict=strict,
        params_for=search_params,
        max_count=100,
        default_count=20,
        value_set=value_set_codes,
        now=datetime(2025, 1, 1, tzinfo=UTC),
    )


@pytest.mark.parametrize(
    ("type_", "query"),
    [
        ("Observation", "patient=123&code=http://loinc.org|1234-5&_sort=-date"),
        ("Observation", "code-value-quantity=http://loinc.org|8480-6$gt100"),
        ("Observation", "component-code-value-quantity=http://loinc.org|8480-6$lt60"),
        ("Observation", "value-quantity=5.4|http://unitsofmeasure.org|mg"),
        ("Observation", "subject:Patient.name=peter&_include=Observation:subject"),
        ("Patient", "identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|446"),
        ("Patient", "_has:Observation:patient:code=1234-5"),
        ("Patient", "general-practitioner.name=smith&birthdate=ge1970&gender:not=male"),
        ("Patient", "_revinclude=Provenance:target&_elements=name,birthDate&_total=none"),
        ("Condition", "code:in=http://hl7.org/fhir/ValueSet/condition-clinical"),
        ("Encounter", "patient.organization.name=acme&date=ap2024-06"),
        ("RiskAssessment", "probability=gt0.8"),
        ("ValueSet", "url:below=http://hl7.org/fhir/ValueSet/"),
        ("QuestionnaireResponse", "questionnaire=http://example.org/q|2.0"),
        ("MedicationRequest", "_tag=a|b&_profile=http://p&_security=s|c&_source=http://s"),
    ],
)
def test_spec_style_searches_parse_strictly(type_: str, query: str) -> None:
    parsed = parse([type_], query)
    assert parsed.ignored == []
    assert parsed.applied


def test_composite_components_take_their_types() -> None:
    (found,) = parse(["Observation"], "code-value-quantity=8480-6$gt100").conditions
    assert isinstance(found, Clause)
    assert isinstance(found.values[0], CompositeMatch)


def test_reverse_chain_through_real_definitions() -> None:
    (found,) = parse(["Patient"], "_has:Observation:patient:code=1234").conditions
    assert isinstance(found, HasClause)


def test_chain_over_targets_with_different_parameter_types() -> None:
    # Observation.focus targets every type; "type" is a token on most, a uri on some
    (found,) = parse(["Observation"], "focus.type=x").conditions
    assert isinstance(found, AnyOf)
    assert all(isinstance(c, ChainClause) for c in found.conditions)


def test_system_search_over_every_type_takes_the_resource_parameters() -> None:
    types = sorted(resource_types())
    parsed = parse(types, "_lastUpdated=ge2024&_tag=x&_id=1")
    assert isinstance(parsed.conditions[0], LastUpdatedClause)
    assert len(parsed.conditions) == 3


def test_system_search_drops_a_parameter_not_on_every_type() -> None:
    parsed = parse(["Patient", "Observation"], "code=1", strict=False)
    assert parsed.ignored == [("code", "1")]


@pytest.mark.parametrize("code", ["_text", "_content", "_query", "_filter", "_list", "near"])
def test_parameters_the_server_cannot_index_are_unsupported(code: str) -> None:
    parsed = parse(["Location"], f"{code}=x", strict=False)
    assert parsed.ignored == [(code, "x")]
