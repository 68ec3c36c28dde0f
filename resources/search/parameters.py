"""The R4 search parameters of each resource type, from the generated core data.

SearchParameter: https://hl7.org/fhir/R4/searchparameter.html
Parameters for all resources: https://hl7.org/fhir/R4/search.html#all
Special parameters: https://hl7.org/fhir/R4/search.html#special

``scripts/generate_definitions.py`` turns the 1,400 SearchParameters of hl7.fhir.r4.core
4.0.1 into a table per resource type (``searchParameters`` in ``resources/data``), with
each definition's FHIRPath ``expression`` cut down to the parts of its union that apply
to the type, each led by the type's own name. This module reads that table once.

What is where:

- :func:`search_params` / :func:`search_param`: the parameters of a type that have an
  expression, i.e. those values can be extracted for (the indexer) and searched on (the
  parser): the type's own, the clinical/conformance/individual ones shared with other
  types, and ``_id``, ``_lastUpdated``, ``_profile``, ``_security``, ``_source``,
  ``_tag``. ``near`` (Location) is here too, with type ``special``.
- :func:`params_without_expression`: the package's parameters of a type that have no
  expression: ``_text`` (DomainResource types), ``_content``, ``_query``, ``_filter``,
  and Patient's extension parameters ``age`` and ``birthOrderBoolean``. Nothing can be
  indexed for them, so they are left out of :func:`search_params`; a parser that meets
  one treats it as unknown unless it implements it by other means.
- :data:`SPECIAL_PARAMS` / :func:`is_special`: the codes a parser must handle itself
  rather than as a plain indexed value: ``_has``, ``_type`` and ``_list`` (defined by
  search.html, absent from the package), ``_query``, ``_filter``, ``_text``,
  ``_content`` (in the package without an expression) and ``near`` (an expression, but
  a distance search).
- :func:`common_params`: the parameters whose base is Resource, with ``Resource.``
  expressions and ``resource_type`` "Resource" (those with an expression).

Expressions keep the package's text otherwise (``.as(X)``, ``(X as Y)``,
``.where(resolve() is X)``, ``.extension('url')``, ``%resource``); evaluating them is the
indexer's business.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from types import MappingProxyType
from typing import Any, cast

from resources.definitions import core_data
from resources.search.model import Component, ParamType, SearchParam

RESOURCE = "Resource"

SPECIAL_PARAMS: frozenset[str] = frozenset(
    {"_has", "_type", "_list", "_query", "_filter", "_text", "_content", "near"}
)
"""Codes that are not a plain indexed value: the parser decides which it implements."""

_EMPTY: Mapping[str, SearchParam] = MappingProxyType({})


def is_special(code: str) -> bool:
    """Whether ``code`` needs handling of its own (see :data:`SPECIAL_PARAMS`)."""
    return code in SPECIAL_PARAMS


def search_params(resource_type: str) -> Mapping[str, SearchParam]:
    """Code -> parameter, for every parameter of the type that has an expression.

    Empty for a name that is not an R4 resource type.
    """
    return _indexed().get(resource_type, _EMPTY)


def search_param(resource_type: str, code: str) -> SearchParam | None:
    """The parameter ``code`` of a resource type, if it has an expression."""
    return search_params(resource_type).get(code)


def params_without_expression(resource_type: str) -> Mapping[str, SearchParam]:
    """Code -> parameter, for the package's parameters of the type with no expression."""
    return _unindexed().get(resource_type, _EMPTY)


def common_params() -> Mapping[str, SearchParam]:
    """The Resource-level parameters that have an expression (``_id``, ``_lastUpdated``,
    ``_profile``, ``_security``, ``_source``, ``_tag``), as defined for Resource."""
    return _common()


# --------------------------------------------------------------------------- loading


def _param(resource_type: str, code: str, entry: Mapping[str, Any]) -> SearchParam:
    components = tuple(
        Component(c["code"], cast(ParamType, c["type"]), c["expression"])
        for c in entry.get("components", ())
    )
    return SearchParam(
        resource_type=resource_type,
        code=code,
        type=cast(ParamType, entry["type"]),
        expression=entry.get("expression"),
        url=entry["url"],
        targets=tuple(entry.get("targets", ())),
        components=components,
    )


def _table(resource_type: str, entries: Mapping[str, Any]) -> dict[str, SearchParam]:
    return {code: _param(resource_type, code, entry) for code, entry in entries.items()}


@cache
def _all() -> Mapping[str, Mapping[str, SearchParam]]:
    tables = core_data()["searchParameters"].items()
    return MappingProxyType({t: _table(t, entries) for t, entries in tables})


def _split(with_expression: bool) -> Mapping[str, Mapping[str, SearchParam]]:
    return MappingProxyType(
        {
            type_: MappingProxyType(
                {c: p for c, p in params.items() if (p.expression is not None) is with_expression}
            )
            for type_, params in _all().items()
        }
    )


@cache
def _indexed() -> Mapping[str, Mapping[str, SearchParam]]:
    return _split(with_expression=True)


@cache
def _unindexed() -> Mapping[str, Mapping[str, SearchParam]]:
    return _split(with_expression=False)


@cache
def _common() -> Mapping[str, SearchParam]:
    table = _table(RESOURCE, core_data()["commonSearchParameters"])
    return MappingProxyType({c: p for c, p in table.items() if p.expression is not None})
