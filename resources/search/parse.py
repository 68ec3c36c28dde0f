"""FHIR search parameters parsed into the query IR: https://hl7.org/fhir/R4/search.html

``parse_search`` takes the query (or form body) pairs in order. A comma is OR within one
parameter, a repeated parameter is AND (https://hl7.org/fhir/R4/search.html#combining).
Names resolve to parameters here: ``_id`` and ``_lastUpdated`` (#all), modifiers
(#modifiers), chains ``subject:Patient.name`` / ``subject.name`` to any depth (#chaining)
and reverse chains ``_has:Observation:patient:code`` (#has); ``resources.search.values``
parses each type's values and the result parameters.

Bad input (https://hl7.org/fhir/R4/search.html#errors): a malformed value is a 400 that
names the parameter; an unknown parameter or an unsupported modifier is a 400 under
``Prefer: handling=strict`` and is otherwise ignored, kept out of ``applied`` (the
``self`` link) and listed in ``ignored``.

Several resource types (system search with ``_type``): a parameter applies when every
type defines it with the same parameter type — the spec's "parameters defined for each
of the types"; the clause carries the first type's definition, with the reference
targets of all of them.

A search asking more than :mod:`resources.search.limits` allows (parameters, values per
parameter, chain depth, ``_has`` links, values in all) is a 400 ``too-costly`` naming the
limit, before any store sees it. A chain through a reference that may point at any type
(``Resource``) parses each (target type, rest of the chain) once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass, replace
from datetime import UTC, datetime
from typing import Any

from resources.definitions import is_resource_type, resource_types
from resources.errors import FhirError
from resources.search.limits import (
    MAX_CHAIN_DEPTH,
    MAX_CODES,
    MAX_HAS,
    MAX_PARAMETERS,
    MAX_TERMS,
    MAX_VALUES,
    too_costly,
)
from resources.search.model import ParamType, SearchParam
from resources.search.query import (
    AnyOf,
    ChainClause,
    Clause,
    CompositeMatch,
    Condition,
    HasClause,
    IdClause,
    LastUpdatedClause,
    Match,
    SearchQuery,
    TokenMatch,
)
from resources.search.values.clause import parse_clause
from resources.search.values.common import (
    ID,
    Context,
    UnknownParameter,
    Unsupported,
    ValueSetLookup,
    bad,
    split,
    unescape,
)
from resources.search.values.date import parse_date
from resources.search.values.reference import accepts
from resources.search.values.results import ResultParser, is_result_parameter

_NOT_SEARCH_PARAMETERS = frozenset({"_format", "_pretty"})
"""Parameters of the HTTP interaction, not of the search (never in ``applied``)."""

_RESOURCE_PARAMETERS: dict[str, tuple[ParamType, str]] = {
    "_tag": ("token", "meta.tag"),
    "_profile": ("uri", "meta.profile"),
    "_security": ("token", "meta.security"),
    "_source": ("uri", "meta.source"),
}
"""Parameters of every resource (https://hl7.org/fhir/R4/resource.html#search), used when
``params_for`` does not list them."""


class _DeadEnd(Exception):
    """A chain none of whose targets has the chained parameter."""


@dataclass
class _Seen:
    """What one parameter's chain has parsed already: a chain through ``Resource``
    reaches the same link from many types, so each is parsed (and its shape taken) once."""

    links: dict[tuple[str, str], Condition | Exception] = field(default_factory=dict)
    """The condition (or the exception) by (target type, rest of the name)."""
    shapes: dict[int, tuple[Any, Condition]] = field(default_factory=dict)
    """:func:`_shape` of a condition by its ``id`` (the condition kept alive with it)."""


@dataclass
class _Budget:
    """What a search has used of :mod:`resources.search.limits` so far."""

    parameters: int = 0
    has: int = 0
    terms: int = 0
    codes: int = 0

    def parameter(self, name: str) -> None:
        """Count a search parameter (before its value is parsed)."""
        self.parameters += 1
        if self.parameters > MAX_PARAMETERS:
            raise too_costly(name, f"more than {MAX_PARAMETERS} search parameters")
        links = name.count("_has:")
        depth = links + name.count(".")
        if depth > MAX_CHAIN_DEPTH:
            raise too_costly(
                name, f"a chain of {depth} links; at most {MAX_CHAIN_DEPTH} (each '.' and _has)"
            )
        self.has += links
        if self.has > MAX_HAS:
            raise too_costly(name, f"more than {MAX_HAS} _has in one search")

    def add(self, name: str, terms: int, codes: int) -> None:
        """Count a parameter's terms and value-set codes (see :func:`_terms`)."""
        self.terms += terms
        if self.terms > MAX_TERMS:
            raise too_costly(
                name,
                f"more than {MAX_TERMS} values in all (a chain counts its values once per"
                " group of target types)",
            )
        self.codes += codes
        if self.codes > MAX_CODES:
            raise too_costly(name, f"more than {MAX_CODES} value set codes for :in / :not-in")


def parse_search(
    resource_types: Sequence[str],
    items: Sequence[tuple[str, str]],
    *,
    strict: bool,
    params_for: Callable[[str], Mapping[str, SearchParam]],
    max_count: int,
    default_count: int,
    value_set: ValueSetLookup | None = None,
    now: datetime | None = None,
) -> SearchQuery:
    """The query IR of a search over ``resource_types`` (several for system search).

    Raises :class:`FhirError` (400) for malformed values, and under ``strict`` for unknown
    parameters and modifiers. ``now`` (default: the current time) anchors ``ap`` on dates.
    """
    moment = now or datetime.now(UTC)
    ctx = Context(
        _safe(params_for),
        value_set,
        moment.replace(tzinfo=moment.tzinfo or UTC),
        (params_for, value_set),
    )
    query = SearchQuery(types=tuple(resource_types))
    results = ResultParser(query, lambda types, code: _lookup(types, code, ctx), strict, max_count)
    budget = _Budget()
    for name, value in items:
        if name in _NOT_SEARCH_PARAMETERS:
            continue
        try:
            _add(query, results, name, value, ctx, budget)
        except Unsupported as exc:
            if strict:
                message = str(exc) if f"'{name}'" in str(exc) else f"'{name}': {exc}"
                raise FhirError(400, "not-supported", message, (name,)) from None
            query.ignored.append((name, value))
    results.finish(default_count)
    return query


def _add(
    query: SearchQuery,
    results: ResultParser,
    name: str,
    value: str,
    ctx: Context,
    budget: _Budget,
) -> None:
    code = name.partition(":")[0]
    if is_result_parameter(code):
        if value:
            results.add(name, value)
        return
    if code == "_type":
        _check_type(query.types, name, value)
        return
    budget.parameter(name)
    # "ap" (approximately) is the one prefix whose meaning depends on the time of the
    # search; long values (a client's to choose) are not kept
    memo = len(name) + len(value) <= _MEMO_TEXT and "ap" not in value
    key = (*ctx.memo, query.types, name, value) if memo else None
    found = _CONDITIONS.get(key) if key is not None else None
    if found is None:
        alternatives = [part for part in split(value, ",") if part]
        if len(alternatives) > MAX_VALUES:
            raise too_costly(
                name, f"{len(alternatives)} values in one parameter; at most {MAX_VALUES}"
            )
        try:
            condition = _condition(query.types, name, name, alternatives, ctx, _Seen())
        except _DeadEnd as exc:
            raise bad(name, str(exc)) from None
        if alternatives:
            codes: list[int] = [0]
            terms = _terms(condition, MAX_TERMS + 1, codes)
            found = (condition, ",".join(alternatives), terms, codes[0])
        else:
            found = (None, "", 0, 0)
        if key is not None:
            _remember(_CONDITIONS, key, found)
    budget.add(name, found[2], found[3])
    if found[0] is not None:
        query.conditions.append(found[0])
        query.applied.append((name, found[1]))


_MEMO_SIZE = 4096
_MEMO_TEXT = 256
"""The longest parameter (name and value) whose condition is memoized: the memo holds at
most ``_MEMO_SIZE`` short texts, whatever clients send."""
_CONDITIONS: dict[tuple[object, ...], tuple[Condition | None, str, int, int]] = {}
"""The conditions of recent (parameter, value) pairs per resource types, with their
values as applied, their :func:`_terms` and value-set codes: a condition is immutable
and depends only on them and the lookups (``Context.memo``), so the codes, sort keys and
ids that searches repeat are parsed once."""
_PARAMS: dict[tuple[object, ...], SearchParam] = {}
"""The parameter of recent codes per resource types (see :func:`_lookup`)."""


def _remember(memo: dict[tuple[object, ...], Any], key: tuple[object, ...], value: Any) -> None:
    """Keep ``value`` under ``key``; a full memo starts again (evicting one entry at a
    time would cost a walk over the dict's deleted slots on every search that adds one)."""
    if len(memo) >= _MEMO_SIZE:
        memo.clear()
    memo[key] = value


def _check_type(types: Sequence[str], name: str, value: str) -> None:
    """``_type`` is resolved by the caller into ``resource_types``; check it agrees."""
    if name != "_type":
        raise Unsupported(f"'{name}' takes no modifier")
    for type_ in (t.strip() for t in value.split(",")):
        if type_ and (not is_resource_type(type_) or (types and type_ not in types)):
            raise bad("_type", f"{type_!r} is not one of the searched resource types")


def _condition(
    types: Sequence[str], name: str, label: str, values: list[str], ctx: Context, seen: _Seen
) -> Condition:
    """``name`` (what is left of ``label``, the parameter as written) on ``types``."""
    if name.startswith("_has:"):
        return _has(types, name, label, values, ctx, seen)
    head, dot, rest = name.partition(".")
    if dot:
        return _chain(types, head, rest, label, values, ctx, seen)
    code, colon, modifier = name.partition(":")
    mod = modifier if colon else None
    if code == "_id":
        return _id(mod, label, values)
    if code == "_lastUpdated":
        if mod is not None:
            raise Unsupported(f"The modifier :{mod} is not supported for '{label}'")
        return LastUpdatedClause(tuple(parse_date(unescape(v), label, ctx.now) for v in values))
    return parse_clause(_lookup(types, code, ctx), mod, values, label, ctx)


def _id(modifier: str | None, label: str, values: list[str]) -> IdClause:
    if modifier not in (None, "not"):
        raise Unsupported(f"The modifier :{modifier} is not supported for '{label}'")
    ids = tuple(unescape(v) for v in values)
    for id_ in ids:
        if ID.fullmatch(id_) is None:
            raise bad(label, f"{id_!r} is not a resource id")
    return IdClause(ids, negate=modifier == "not")


def _chain(
    types: Sequence[str],
    head: str,
    rest: str,
    label: str,
    values: list[str],
    ctx: Context,
    seen: _Seen,
) -> Condition:
    """``head.rest``: ``head`` is ``reference[:Type]``, ``rest`` any parameter name."""
    code, colon, type_ = head.partition(":")
    param = _lookup(types, code, ctx)
    if param.type != "reference":
        raise bad(label, f"'{code}' is not a reference parameter, so it cannot be chained")
    if not rest:
        raise bad(label, "nothing is chained after '.'")
    if colon:
        if not (is_resource_type(type_) and accepts(type_, param.targets)):
            raise bad(label, f"{type_!r} is not a target type of '{code}'")
        candidates: tuple[str, ...] = (type_,)
    elif "Resource" in param.targets:
        candidates = tuple(sorted(resource_types()))
    else:
        candidates = tuple(t for t in param.targets if is_resource_type(t))
    inner: dict[str, Condition] = {}
    for target in candidates:
        found = seen.links.get((target, rest))
        if found is None:
            try:
                found = _condition((target,), rest, label, values, ctx, seen)
            except (UnknownParameter, _DeadEnd) as exc:
                found = exc
            seen.links[(target, rest)] = found
        if not isinstance(found, Exception):
            inner[target] = found
    if not inner:
        raise _DeadEnd(f"no target type of '{code}' has the search parameter '{rest}'")
    return _grouped(param, inner, seen)


def _grouped(param: SearchParam, inner: dict[str, Condition], seen: _Seen) -> Condition:
    """One chain per group of targets whose inner condition is the same but for the
    resource type its parameters were defined on."""
    groups: dict[Any, tuple[list[str], Condition]] = {}
    for target, condition in inner.items():
        groups.setdefault(_shape_of(condition, seen), ([], condition))[0].append(target)
    chains = [ChainClause(param, tuple(ts), cond) for ts, cond in groups.values()]
    return chains[0] if len(chains) == 1 else AnyOf(tuple(chains))


def _shape_of(condition: Condition, seen: _Seen) -> Any:
    """:func:`_shape` of ``condition``, taken once per object."""
    known = seen.shapes.get(id(condition))
    if known is None:
        known = seen.shapes[id(condition)] = (_shape(condition), condition)
    return known[0]


def _shape(value: Any) -> Any:
    """A hashable form of a condition that ignores where its parameters were defined."""
    if isinstance(value, SearchParam):
        return (value.code, value.type, tuple((c.code, c.type) for c in value.components))
    if is_dataclass(value) and not isinstance(value, type):
        return (type(value).__name__, *(_shape(getattr(value, f.name)) for f in fields(value)))
    if isinstance(value, tuple | list):
        return tuple(_shape(v) for v in value)
    return value


def _has(
    types: Sequence[str], name: str, label: str, values: list[str], ctx: Context, seen: _Seen
) -> HasClause:
    """``_has:Source:reference:rest`` (https://hl7.org/fhir/R4/search.html#has)."""
    parts = name.split(":", 3)
    if len(parts) != 4 or not all(parts):
        raise bad(label, "expected _has:[type]:[reference parameter]:[parameter]")
    _, source, code, rest = parts
    if not is_resource_type(source):
        raise bad(label, f"{source!r} is not a resource type")
    reference = _param_of(source, code, ctx)
    if reference is None or reference.type != "reference":
        raise bad(label, f"'{code}' is not a reference parameter of {source}")
    if types and not any(accepts(t, reference.targets) for t in types):
        raise bad(label, f"{source}:{code} does not refer to {' or '.join(types)}")
    try:
        inner = _condition((source,), rest, label, values, ctx, seen)
    except (UnknownParameter, _DeadEnd) as exc:
        raise bad(label, f"{source} has no search parameter '{rest}' ({exc})") from None
    return HasClause(source, reference, inner)


def _terms(cond: Condition, cap: int, codes: list[int]) -> int:
    """The values of a condition as a store compiles it (``MAX_TERMS``): each node counts
    at least one, and the count stops past ``cap``, so its cost is bounded too. The codes
    of ``:in`` value sets are added to ``codes[0]`` (``MAX_CODES``)."""
    if isinstance(cond, Clause):
        return sum(_match_terms(match, codes) for match in cond.values)
    if isinstance(cond, IdClause):
        return len(cond.ids)
    if isinstance(cond, LastUpdatedClause):
        return len(cond.values)
    if isinstance(cond, ChainClause | HasClause):
        return 1 + _terms(cond.inner, cap, codes)
    total = 1
    for part in cond.conditions:
        total += _terms(part, cap - total, codes)
        if total > cap:
            break
    return total


def _match_terms(match: Match, codes: list[int]) -> int:
    if isinstance(match, TokenMatch) and match.mode == "in":
        codes[0] += len(match.codes)
    elif isinstance(match, CompositeMatch):
        return sum(_match_terms(part, codes) for part in match.parts)
    return 1


def _lookup(types: Sequence[str], code: str, ctx: Context) -> SearchParam:
    """The parameter ``code`` as it applies to all of ``types``."""
    key = (*ctx.memo, tuple(types), code)
    param = _PARAMS.get(key)
    if param is None:
        param = _lookup_types(types, code, ctx)
        _remember(_PARAMS, key, param)
    return param


def _lookup_types(types: Sequence[str], code: str, ctx: Context) -> SearchParam:
    found: list[SearchParam] = []
    for type_ in types or ("Resource",):
        param = _param_of(type_, code, ctx)
        if param is None:
            raise UnknownParameter(f"Unknown search parameter '{code}' for {type_}")
        found.append(param)
    first = found[0]
    if any(p.type != first.type for p in found):
        raise UnknownParameter(f"The search parameter '{code}' differs between the types")
    if len(found) == 1:
        return first
    targets = tuple(dict.fromkeys(t for p in found for t in p.targets))
    return replace(first, targets=targets)


def _param_of(type_: str, code: str, ctx: Context) -> SearchParam | None:
    param = ctx.params_for(type_).get(code)
    if param is None and code in _RESOURCE_PARAMETERS:
        kind, path = _RESOURCE_PARAMETERS[code]
        param = SearchParam(type_, code, kind, f"{type_}.{path}")
    return param


def _safe(
    params_for: Callable[[str], Mapping[str, SearchParam]],
) -> Callable[[str], Mapping[str, SearchParam]]:
    """``params_for`` with an unknown type giving no parameters rather than an error."""

    def lookup(type_: str) -> Mapping[str, SearchParam]:
        try:
            return params_for(type_)
        except (KeyError, ValueError):
            return {}

    return lookup
