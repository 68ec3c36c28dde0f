"""The search query IR: what a FHIR search asks, parsed and typed, before any store sees it.

https://hl7.org/fhir/R4/search.html

A :class:`SearchQuery` is an AND of conditions; each :class:`Clause` is an OR of typed
values of one parameter (a comma is OR, a repeated parameter is AND). Chains and ``_has``
nest conditions on other resource types. Authorization adds conditions to the same IR
(e.g. patient-compartment membership), so every store compiles one structure into its own
query language, and no user text is ever spliced into a query.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from resources.search.model import SearchParam

Prefix = Literal["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"]


@dataclass(frozen=True, slots=True)
class StringMatch:
    """``name=Eve`` (prefix of normalized), ``:exact`` (whole, as written), ``:contains``."""

    value: str
    """Normalized (see ``resources.search.normalize``) except for ``exact``."""
    mode: Literal["prefix", "exact", "contains"] = "prefix"


@dataclass(frozen=True, slots=True)
class TokenMatch:
    """``code``, ``system|code``, ``|code``, ``system|``; ``:text``, ``:of-type``,
    ``:in`` / ``:not-in`` (expanded to ``codes``), and ``:not`` (see :class:`Clause`)."""

    system: str | None = None
    """None: any system. ``""``: the value must have no system (``|code``)."""
    code: str | None = None
    """None: any code (``system|``)."""
    mode: Literal["eq", "text", "of-type", "in"] = "eq"
    text: str | None = None
    """Normalized text for ``:text``; for ``:of-type`` (``system|code|value``) the
    Identifier.value as written, with ``system``/``code`` the Identifier.type coding."""
    codes: frozenset[tuple[str | None, str]] = frozenset()
    """``(system, code)`` pairs of an expanded value set for ``:in`` / ``:not-in``."""


@dataclass(frozen=True, slots=True)
class DateMatch:
    """A date value with its prefix, as the half-open UTC range its precision covers.

    For ``ap`` the range is already widened by the approximation (10% of the gap between
    now and the date, https://hl7.org/fhir/R4/search.html#prefix): match by overlap.
    """

    prefix: Prefix
    low: str
    high: str


@dataclass(frozen=True, slots=True)
class NumberMatch:
    """A number with its prefix; ``low``/``high`` are the range its precision implies.

    For ``ap`` the range is already widened to ``value`` ± 10% (and at least the
    precision range): match by overlap.
    """

    prefix: Prefix
    value: float
    low: float
    high: float


@dataclass(frozen=True, slots=True)
class QuantityMatch:
    """``[prefix]number|system|code`` or ``number||code`` (code or unit, any system).

    ``low``/``high`` as in :class:`NumberMatch` (widened for ``ap``)."""

    prefix: Prefix
    value: float
    low: float
    high: float
    system: str | None = None
    code: str | None = None


@dataclass(frozen=True, slots=True)
class ReferenceMatch:
    """``id``, ``Type/id``, an absolute URL, a canonical (``url|version``), or
    ``:identifier`` (``system|value``).

    A relative reference sets ``target_id`` (and ``target_type`` when written, given as
    the ``:[type]`` modifier, or when the parameter has a single target); ``version``
    comes from ``Type/id/_history/v``. An absolute URL or canonical sets ``url`` (and
    ``version`` from ``url|version``) and nothing else: whether it names a resource on
    this server is for the store to decide. ``identifier_system`` follows the token
    rule (None: any system, ``""``: no system).
    """

    target_type: str | None = None
    target_id: str | None = None
    url: str | None = None
    version: str | None = None
    identifier_system: str | None = None
    identifier_value: str | None = None
    below: bool = False
    """``:below``: ``url`` is a prefix (any version of the canonical, or URLs under it)."""


@dataclass(frozen=True, slots=True)
class UriMatch:
    value: str
    mode: Literal["eq", "above", "below"] = "eq"


@dataclass(frozen=True, slots=True)
class CompositeMatch:
    """``code-value-quantity=http://loinc.org|8480-6$gt100``: one match per component."""

    parts: tuple[Match, ...]


@dataclass(frozen=True, slots=True)
class MissingMatch:
    """``:missing=true`` (no value for the parameter) / ``false`` (some value)."""

    missing: bool


Match = (
    StringMatch
    | TokenMatch
    | DateMatch
    | NumberMatch
    | QuantityMatch
    | ReferenceMatch
    | UriMatch
    | CompositeMatch
    | MissingMatch
)


@dataclass(frozen=True, slots=True)
class Clause:
    """One parameter: the resource matches if any of ``values`` matches (OR).

    With ``negate`` (``:not``, ``:not-in``) the resource matches if NONE of its values
    matches the OR — which includes resources that have no value at all.
    """

    param: SearchParam
    values: tuple[Match, ...]
    negate: bool = False


@dataclass(frozen=True, slots=True)
class IdClause:
    """``_id`` (one of ``ids``)."""

    ids: tuple[str, ...]
    negate: bool = False


@dataclass(frozen=True, slots=True)
class LastUpdatedClause:
    """``_lastUpdated`` with prefixes (OR of values)."""

    values: tuple[DateMatch, ...]


@dataclass(frozen=True, slots=True)
class ChainClause:
    """``subject:Patient.name=Eve``: a reference ``param`` whose target, of one of
    ``target_types``, satisfies ``inner`` (itself possibly a chain)."""

    param: SearchParam
    target_types: tuple[str, ...]
    inner: Condition


@dataclass(frozen=True, slots=True)
class HasClause:
    """``_has:Observation:patient:code=1234``: some ``source_type`` resource refers to
    this one through ``reference_param`` and satisfies ``inner`` (possibly nested)."""

    source_type: str
    reference_param: SearchParam
    inner: Condition


@dataclass(frozen=True, slots=True)
class GrantClause:
    """The resource is one that ``grant`` allows, as the access policy would (see
    :class:`Grant`); used as a search condition to select a patient's records by the
    memberships stored with each version (``Patient/1/$everything``: its compartment's
    types when a member of it, other types when a member of it and of no other patient),
    whatever the caller's own grants add. ``grant.where`` must be empty."""

    grant: Grant


@dataclass(frozen=True, slots=True)
class AnyOf:
    """An OR of conditions (used by authorization, e.g. several compartments)."""

    conditions: tuple[Condition, ...]


Condition = Clause | IdClause | LastUpdatedClause | ChainClause | HasClause | AnyOf | GrantClause


@dataclass(frozen=True, slots=True)
class Grant:
    """What one access scope lets a caller see (SMART App Launch,
    https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html).

    A resource is granted when its type is one of ``types`` (None: any type), it meets
    every condition of ``where`` (a v2 granular scope's parameters; only with a single
    type) and, when ``compartments`` is not None (a patient-context grant), it belongs
    to those patients (memberships are recorded with each stored version, see
    ``resources.compartments.memberships``):

    - a version of one of ``member_types`` (the Patient compartment's types) is a member
      of one of ``compartments``;
    - a version of any other type is a member of no other compartment, and is a member of
      one of ``compartments`` or is of one of ``public_types`` (directory data).

    ``compartments`` None means no compartment restriction.
    """

    types: frozenset[str] | None
    compartments: tuple[str, ...] | None = None
    member_types: frozenset[str] = frozenset()
    where: tuple[Condition, ...] = ()
    public_types: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class AccessClause:
    """The access policy as a query condition: a resource is visible when some grant
    allows it (OR). No grants: nothing is visible. Stores apply it to every resource a
    search touches: the matches, chained and ``_has`` targets, and included resources."""

    grants: tuple[Grant, ...]

    @property
    def unrestricted(self) -> bool:
        return any(g.types is None and g.compartments is None and not g.where for g in self.grants)


@dataclass(frozen=True, slots=True)
class Sort:
    param: SearchParam | None
    """None for ``_id`` / ``_lastUpdated`` (see ``special``)."""
    descending: bool = False
    special: Literal["_id", "_lastUpdated"] | None = None


@dataclass(frozen=True, slots=True)
class Include:
    """``_include=Observation:subject[:Patient]`` / ``_revinclude`` (``*`` = every
    reference parameter of ``source_type``), with ``:iterate``. ``_revinclude=*`` is
    ``source_type`` ``"*"``: referring resources of any type."""

    source_type: str
    param: SearchParam | None
    target_type: str | None = None
    reverse: bool = False
    iterate: bool = False


@dataclass
class SearchQuery:
    """A whole search: conditions (AND) over ``types``, and how to shape the result."""

    types: tuple[str, ...]
    conditions: list[Condition] = field(default_factory=list)
    sort: tuple[Sort, ...] = ()
    count: int | None = None
    includes: tuple[Include, ...] = ()
    total: Literal["none", "estimate", "accurate"] | None = None
    summary: Literal["true", "text", "data", "count", "false"] | None = None
    elements: tuple[str, ...] = ()
    applied: list[tuple[str, str]] = field(default_factory=list)
    """The parameters that were applied, as they go into the ``self`` link."""
    ignored: list[tuple[str, str]] = field(default_factory=list)
    """Unknown/unsupported parameters dropped under ``handling=lenient``."""
    cursor: str | None = None
    """The paging cursor (``_cursor``), opaque to the parser and not in ``applied``."""
    access: AccessClause | None = None
    """What the caller may see (None: everything); stores apply it to matches, chain and
    ``_has`` targets and included resources alike."""
