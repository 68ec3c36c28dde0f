"""Value set expansions for ``:in`` (https://hl7.org/fhir/R4/search.html#modifiers)."""

from __future__ import annotations

from resources.terminology import value_set_codes

GENDER = "http://hl7.org/fhir/ValueSet/administrative-gender"


def test_a_required_binding_value_set_expands() -> None:
    codes = value_set_codes(GENDER)
    assert codes is not None
    assert ("http://hl7.org/fhir/administrative-gender", "female") in codes
    assert len(codes) == 4


def test_a_value_set_beyond_required_bindings_expands() -> None:
    codes = value_set_codes("http://hl7.org/fhir/ValueSet/observation-category")
    assert codes is not None
    system = "http://terminology.hl7.org/CodeSystem/observation-category"
    assert (system, "vital-signs") in codes and (system, "laboratory") in codes


def test_version_suffix_is_accepted_and_unknown_is_none() -> None:
    assert value_set_codes(GENDER + "|4.0.1") == value_set_codes(GENDER)
    assert value_set_codes("http://example.org/ValueSet/nope") is None
