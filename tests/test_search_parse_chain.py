"""Chained parameters (https://hl7.org/fhir/R4/search.html#chaining) and reverse chaining
with ``_has`` (https://hl7.org/fhir/R4/search.html#has)."""

from __future__ import annotations

from resources.search.query import (
    AnyOf,
    ChainClause,
    Clause,
    HasClause,
    IdClause,
    ReferenceMatch,
    StringMatch,
    TokenMatch,
)
from tests.test_search_parse_registry import names, parse, parse_error

# -- chaining --------------------------------------------------------------------------


def test_chain_with_a_type_modifier() -> None:
    (chain,) = parse("subject:Patient.name=eve").conditions
    assert isinstance(chain, ChainClause)
    assert (chain.param.code, chain.target_types) == ("subject", ("Patient",))
    assert isinstance(chain.inner, Clause)
    assert chain.inner.param.resource_type == "Patient"
    assert chain.inner.values == (StringMatch("eve"),)


def test_chain_without_a_type_goes_to_every_target_that_has_the_parameter() -> None:
    # subject targets Device, Group, Location, Patient; only Location and Patient have name
    (chain,) = parse("subject.name=eve").conditions
    assert isinstance(chain, ChainClause)
    assert chain.target_types == ("Location", "Patient")
    assert isinstance(chain.inner, Clause)
    assert chain.inner.param.code == "name"


def test_chain_targets_with_the_same_parameter_share_one_clause() -> None:
    # performer targets Organization, Patient, Practitioner: all have a string "name"
    (chain,) = parse("performer.name=x").conditions
    assert isinstance(chain, ChainClause)
    assert chain.target_types == ("Organization", "Patient", "Practitioner")


def test_chain_targets_whose_parameter_types_differ_become_an_or_of_chains() -> None:
    # the registry's (made up) Organization.date is a date, Practitioner.date a string
    (found,) = parse("performer.date=2024").conditions
    assert isinstance(found, AnyOf)
    by_type = {c.target_types: c.inner for c in found.conditions}  # type: ignore[union-attr]
    assert set(by_type) == {("Organization",), ("Practitioner",)}
    assert by_type[("Practitioner",)].values == (StringMatch("2024"),)  # type: ignore[union-attr]
    assert by_type[("Organization",)].param.type == "date"  # type: ignore[union-attr]


def test_chain_of_any_depth() -> None:
    (outer,) = parse("patient.organization.partof.name=acme").conditions
    assert isinstance(outer, ChainClause)
    assert outer.target_types == ("Patient",)
    middle = outer.inner
    assert isinstance(middle, ChainClause)
    assert (middle.param.code, middle.target_types) == ("organization", ("Organization",))
    inner = middle.inner
    assert isinstance(inner, ChainClause)
    assert (inner.param.code, inner.target_types) == ("partof", ("Organization",))
    assert isinstance(inner.inner, Clause)
    assert inner.inner.values == (StringMatch("acme"),)


def test_chain_ends_with_a_modifier() -> None:
    (chain,) = parse("subject:Patient.name:exact=Eve").conditions
    assert isinstance(chain, ChainClause)
    assert isinstance(chain.inner, Clause)
    assert chain.inner.values == (StringMatch("Eve", "exact"),)


def test_chain_to_id() -> None:
    (chain,) = parse("subject:Patient._id=123").conditions
    assert isinstance(chain, ChainClause)
    assert chain.inner == IdClause(("123",))


def test_chain_through_a_reference_to_all_resources() -> None:
    (chain,) = parse("entity.name=x", ("AuditEvent",)).conditions
    assert isinstance(chain, ChainClause)
    assert {"Patient", "Organization", "Location", "Practitioner"} <= set(chain.target_types)


def test_chain_keeps_or_values() -> None:
    (chain,) = parse("subject:Patient.gender=male,female").conditions
    assert isinstance(chain, ChainClause)
    assert isinstance(chain.inner, Clause)
    assert chain.inner.values == (TokenMatch(code="male"), TokenMatch(code="female"))


def test_chain_is_applied_as_written() -> None:
    assert parse("subject:Patient.name=eve").applied == [("subject:Patient.name", "eve")]


def test_chain_to_an_unknown_type_is_400_naming_the_parameter() -> None:
    assert names(parse_error("subject:Nonsense.name=x"), "subject:Nonsense.name")


def test_chain_to_a_type_that_is_not_a_target_is_400() -> None:
    assert names(parse_error("subject:Practitioner.name=x"), "subject:Practitioner.name")


def test_chain_through_a_non_reference_parameter_is_400() -> None:
    assert names(parse_error("code.name=x"), "code.name")


def test_chain_to_a_parameter_no_target_has_is_400() -> None:
    assert names(parse_error("subject.nonsense=x"), "subject.nonsense")


def test_chain_to_a_parameter_the_named_target_lacks_is_400() -> None:
    assert names(parse_error("subject:Group.name=x"), "subject:Group.name")


def test_deep_chain_dead_end_is_400() -> None:
    assert names(parse_error("patient.organization.nonsense=x"), "patient.organization.nonsense")


def test_chain_from_an_unknown_parameter_is_ignored_when_lenient() -> None:
    assert parse("nonsense.name=x").ignored == [("nonsense.name", "x")]


def test_chain_from_an_unknown_parameter_is_400_when_strict() -> None:
    assert names(parse_error("nonsense.name=x", strict=True), "nonsense.name")


def test_chain_with_nothing_after_the_dot_is_400() -> None:
    assert names(parse_error("subject.=x"), "subject.")


def test_malformed_value_at_the_end_of_a_chain_is_400_naming_the_chain() -> None:
    assert names(parse_error("subject:Patient.birthdate=soon"), "subject:Patient.birthdate")


def test_unsupported_modifier_at_the_end_of_a_chain_is_ignored_when_lenient() -> None:
    assert parse("subject:Patient.name:fuzzy=x").ignored == [("subject:Patient.name:fuzzy", "x")]


def test_chain_grouping_ignores_where_parameters_were_defined() -> None:
    (chain,) = parse("subject.name=eve").conditions
    assert not isinstance(chain, AnyOf)


# -- reverse chaining --------------------------------------------------------------------


def test_has_finds_resources_referred_to_by_matching_ones() -> None:
    (has,) = parse("_has:Observation:patient:code=1234", ("Patient",)).conditions
    assert isinstance(has, HasClause)
    assert (has.source_type, has.reference_param.code) == ("Observation", "patient")
    assert isinstance(has.inner, Clause)
    assert has.inner.values == (TokenMatch(code="1234"),)


def test_has_nests() -> None:
    query = parse(
        "_has:Observation:patient:_has:AuditEvent:entity:agent=Practitioner/1", ("Patient",)
    )
    (outer,) = query.conditions
    assert isinstance(outer, HasClause)
    inner = outer.inner
    assert isinstance(inner, HasClause)
    assert (inner.source_type, inner.reference_param.code) == ("AuditEvent", "entity")
    assert isinstance(inner.inner, Clause)
    assert inner.inner.values == (ReferenceMatch(target_type="Practitioner", target_id="1"),)


def test_has_with_a_modifier_on_the_inner_parameter() -> None:
    (has,) = parse("_has:Observation:patient:code:not=1234", ("Patient",)).conditions
    assert isinstance(has, HasClause)
    assert isinstance(has.inner, Clause)
    assert has.inner.negate


def test_has_with_a_chain_inside() -> None:
    (has,) = parse(
        "_has:Observation:patient:performer:Practitioner.name=x", ("Patient",)
    ).conditions
    assert isinstance(has, HasClause)
    assert isinstance(has.inner, ChainClause)


def test_has_is_applied_as_written() -> None:
    query = parse("_has:Observation:patient:code=1234", ("Patient",))
    assert query.applied == [("_has:Observation:patient:code", "1234")]


def test_has_with_an_unknown_type_is_400() -> None:
    name = "_has:Nonsense:patient:code"
    assert names(parse_error([(name, "1")], ("Patient",)), name)


def test_has_with_an_unknown_reference_parameter_is_400() -> None:
    name = "_has:Observation:nonsense:code"
    assert names(parse_error([(name, "1")], ("Patient",)), name)


def test_has_with_a_non_reference_parameter_is_400() -> None:
    name = "_has:Observation:code:code"
    assert names(parse_error([(name, "1")], ("Patient",)), name)


def test_has_through_a_reference_that_cannot_point_here_is_400() -> None:
    name = "_has:Observation:encounter:code"
    assert names(parse_error([(name, "1")], ("Patient",)), name)


def test_has_with_an_unknown_inner_parameter_is_400() -> None:
    name = "_has:Observation:patient:nonsense"
    assert names(parse_error([(name, "1")], ("Patient",)), name)


def test_has_with_missing_parts_is_400() -> None:
    assert names(
        parse_error([("_has:Observation:patient", "1")], ("Patient",)), "_has:Observation:patient"
    )


def test_has_malformed_inner_value_is_400() -> None:
    name = "_has:Observation:patient:date"
    assert names(parse_error([(name, "soon")], ("Patient",)), name)
