"""A small hand-built table of R4 search parameters for the parser tests.

The parser only needs each parameter's code, type, reference targets and composite
components (https://hl7.org/fhir/R4/searchparameter-registry.html); building them by hand
keeps these tests independent of the generated definitions. Also the ``parse`` helper the
tests call, with the spec's defaults filled in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from resources.errors import FhirError
from resources.search.model import Component, ParamType, SearchParam
from resources.search.parse import parse_search
from resources.search.query import SearchQuery

NOW = datetime(2025, 1, 1, tzinfo=UTC)
LOINC = "http://loinc.org"
VITALS = "http://hl7.org/fhir/ValueSet/observation-vitalsignresult"
VITAL_CODES = frozenset({(LOINC, "8480-6"), (LOINC, "8462-4")})

_AGENTS = ("Practitioner", "Organization", "Device", "Patient", "PractitionerRole")
_TABLE: list[tuple[str, str, ParamType, tuple[str, ...]]] = [
    ("Patient", "name", "string", ()),
    ("Patient", "family", "string", ()),
    ("Patient", "birthdate", "date", ()),
    ("Patient", "gender", "token", ()),
    ("Patient", "identifier", "token", ()),
    ("Patient", "active", "token", ()),
    ("Patient", "organization", "reference", ("Organization",)),
    ("Patient", "general-practitioner", "reference", ("Organization", "Practitioner")),
    ("Patient", "link", "reference", ("Patient", "RelatedPerson")),
    ("Observation", "code", "token", ()),
    ("Observation", "date", "date", ()),
    ("Observation", "value-quantity", "quantity", ()),
    ("Observation", "value-string", "string", ()),
    ("Observation", "subject", "reference", ("Device", "Group", "Location", "Patient")),
    ("Observation", "patient", "reference", ("Patient",)),
    ("Observation", "performer", "reference", ("Organization", "Patient", "Practitioner")),
    ("Observation", "encounter", "reference", ("Encounter",)),
    ("Condition", "code", "token", ()),
    ("Condition", "patient", "reference", ("Patient",)),
    ("Condition", "subject", "reference", ("Group", "Patient")),
    ("Condition", "onset-date", "date", ()),
    ("Encounter", "date", "date", ()),
    ("Encounter", "subject", "reference", ("Group", "Patient")),
    ("Organization", "name", "string", ()),
    ("Organization", "partof", "reference", ("Organization",)),
    ("Organization", "date", "date", ()),  # made up: see Practitioner.date
    ("Practitioner", "name", "string", ()),
    ("Practitioner", "date", "string", ()),  # made up: a code of two parameter types
    ("Location", "name", "string", ()),
    ("Group", "code", "token", ()),
    ("Device", "device-name", "string", ()),
    ("RiskAssessment", "probability", "number", ()),
    ("ValueSet", "url", "uri", ()),
    ("QuestionnaireResponse", "questionnaire", "reference", ("Questionnaire",)),
    ("AuditEvent", "entity", "reference", ("Resource",)),
    ("AuditEvent", "agent", "reference", _AGENTS),
]


def _params() -> dict[str, dict[str, SearchParam]]:
    out: dict[str, dict[str, SearchParam]] = {}
    for type_, code, kind, targets in _TABLE:
        path = f"{type_}.{code}"
        out.setdefault(type_, {})[code] = SearchParam(type_, code, kind, path, targets=targets)
    components = (
        Component("code", "token", "code"),
        Component("value-quantity", "quantity", "value.as(Quantity)"),
    )
    out["Observation"]["code-value-quantity"] = SearchParam(
        "Observation", "code-value-quantity", "composite", "Observation", components=components
    )
    out["Observation"]["code-value-date"] = SearchParam(
        "Observation",
        "code-value-date",
        "composite",
        "Observation",
        components=(Component("code", "token", "code"), Component("value-date", "date", "value")),
    )
    for type_ in out:
        out[type_]["_text"] = SearchParam(type_, "_text", "string", None)
        out[type_]["_list"] = SearchParam(type_, "_list", "special", None)
    return out


PARAMS = _params()


def params_for(type_: str) -> Mapping[str, SearchParam]:
    return PARAMS.get(type_, {})


def value_set(url: str) -> frozenset[tuple[str | None, str]] | None:
    return VITAL_CODES if url == VITALS else None


def parse(
    query: str | Sequence[tuple[str, str]],
    types: Sequence[str] = ("Observation",),
    *,
    strict: bool = False,
    max_count: int = 100,
    default_count: int = 20,
) -> SearchQuery:
    """Parse ``a=1&b=2`` (split on ``&`` and the first ``=``, no URL decoding) or pairs."""
    if isinstance(query, str):
        items = [tuple(part.split("=", 1)) for part in query.split("&") if part]
        pairs = [(name, value) for name, value in items]
    else:
        pairs = list(query)
    return parse_search(
        types,
        pairs,
        strict=strict,
        params_for=params_for,
        max_count=max_count,
        default_count=default_count,
        value_set=value_set,
        now=NOW,
    )


def parse_error(
    query: str | Sequence[tuple[str, str]], types: Sequence[str] = ("Observation",), **kw: Any
) -> FhirError:
    """The 400 a query gives (fails the test if it parses)."""
    with pytest.raises(FhirError) as info:
        parse(query, types, **kw)
    assert info.value.status == 400
    return info.value


def names(error: FhirError, name: str) -> bool:
    """Whether the error's diagnostics and expression both name the parameter."""
    return error.expression == (name,) and name in error.diagnostics
