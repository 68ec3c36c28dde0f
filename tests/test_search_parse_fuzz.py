"""Any input gives a query or a 400, never a crash (https://hl7.org/fhir/R4/search.html#errors:
bad input is a 4xx). Random strings go to every parameter type, modifier and result
parameter, and random names go everywhere."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resources.errors import FhirError
from resources.search.query import SearchQuery
from tests.test_search_parse_registry import parse

NAMES = [
    # one per type, with every modifier the type takes and some it does not
    "probability",
    "probability:missing",
    "date",
    "date:missing",
    "name",
    "name:exact",
    "name:contains",
    "code",
    "code:text",
    "code:not",
    "code:in",
    "code:not-in",
    "code:of-type",
    "identifier:of-type",
    "subject",
    "subject:Patient",
    "subject:identifier",
    "questionnaire",
    "value-quantity",
    "url",
    "url:above",
    "url:below",
    "code-value-quantity",
    "code-value-date",
    "code:above",
    "date:exact",
    # specials, chains, reverse chains
    "_id",
    "_id:not",
    "_lastUpdated",
    "_tag",
    "_profile",
    "_security",
    "_source",
    "_type",
    "subject.name",
    "subject:Patient.birthdate",
    "patient.organization.name",
    "_has:Observation:patient:code",
    "_has:Observation:patient:_has:AuditEvent:entity:agent",
    # result parameters
    "_sort",
    "_count",
    "_include",
    "_include:iterate",
    "_revinclude",
    "_total",
    "_summary",
    "_elements",
    "_cursor",
]
TYPES = ["Observation", "Patient", "RiskAssessment", "ValueSet", "QuestionnaireResponse"]

_SPECIAL = st.sampled_from(list(",|$\\:.-+ _/eETZ0123456789") + ["ge", "ap", "http://", "%"])
_STRUCTURED = st.lists(st.one_of(_SPECIAL, st.text(max_size=3)), max_size=12).map("".join)
VALUES = st.one_of(st.text(max_size=40), _STRUCTURED)
ANY_NAME = st.one_of(st.sampled_from(NAMES), st.text(max_size=30), _STRUCTURED)


def _query_or_400(types: list[str], items: list[tuple[str, str]], strict: bool) -> None:
    for type_ in types:
        try:
            query = parse(items, (type_,), strict=strict)
        except FhirError as error:
            assert error.status == 400
            assert error.expression, "a 400 names the parameter"
        else:
            assert isinstance(query, SearchQuery)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(NAMES), value=VALUES, strict=st.booleans())
def test_any_value_of_any_parameter_is_a_query_or_a_400(
    name: str, value: str, strict: bool
) -> None:
    _query_or_400(TYPES, [(name, value)], strict)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=st.lists(st.tuples(ANY_NAME, VALUES), max_size=6), strict=st.booleans())
def test_any_query_is_a_query_or_a_400(items: list[tuple[str, str]], strict: bool) -> None:
    _query_or_400(["Observation", "Patient"], items, strict)


@settings(max_examples=200, deadline=None)
@given(name=ANY_NAME, value=VALUES)
def test_an_item_is_never_both_applied_and_ignored(name: str, value: str) -> None:
    try:
        query = parse([(name, value)], ("Observation",))
    except FhirError:
        return
    assert not ((name, value) in query.applied and (name, value) in query.ignored)
