"""A Subscription's ``criteria`` as a search (https://hl7.org/fhir/R4/subscription.html:
"The rules that the server should use to determine when to generate notifications for
this subscription", in the form ``[type]?[search parameters]``).

The criteria is parsed strictly, like a search under ``Prefer: handling=strict``: an
unknown parameter or a malformed value is a ``400`` naming it, and paging, sorting and
include parameters, which mean nothing for a notification, are refused too. A version
matches when its resource is in that search's results: the criteria plus ``_id=<id>``,
under the Subscription creator's access clause.
"""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import parse_qsl

from capability.support import support_table
from resources.errors import invalid
from resources.search.parameters import search_params
from resources.search.parse import parse_search
from resources.search.query import AccessClause, IdClause, SearchQuery
from resources.terminology import value_set_codes

_RESULT_PARAMS = frozenset(
    {
        "_count",
        "_sort",
        "_include",
        "_revinclude",
        "_summary",
        "_elements",
        "_total",
        "_contained",
        "_containedType",
        "_cursor",
        "_format",
        "_pretty",
    }
)
_EXPRESSION = "Subscription.criteria"


def parse_criteria(criteria: str) -> SearchQuery:
    """The search of a criteria (``Observation?code=http://loinc.org|1234-5``); raises
    ``FhirError`` 400 naming what is wrong."""
    type_, _, query = criteria.strip().partition("?")
    if type_ not in support_table().types:
        raise invalid(
            f"Subscription.criteria must start with a resource type this server has"
            f" ({type_!r} is not one)",
            _EXPRESSION,
        )
    items = parse_qsl(query, keep_blank_values=True)
    for name, _ in items:
        if name.split(":")[0] in _RESULT_PARAMS:
            raise invalid(
                f"Subscription.criteria: {name} shapes search results and means nothing"
                " for a subscription",
                _EXPRESSION,
            )
    return parse_search(
        [type_],
        items,
        strict=True,
        params_for=search_params,
        max_count=1,
        default_count=1,
        value_set=value_set_codes,
    )


def matching_query(
    criteria: SearchQuery, ids: tuple[str, ...], access: AccessClause | None
) -> SearchQuery:
    """The search that finds the resources of ``ids`` that meet the criteria and that
    the subscriber may read."""
    conditions = [*criteria.conditions, IdClause(ids)]
    return replace(
        criteria, conditions=conditions, access=access, includes=(), sort=(), count=len(ids)
    )
