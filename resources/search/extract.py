"""Search index extraction at write time (https://hl7.org/fhir/R4/search.html,
https://hl7.org/fhir/R4/searchparameter.html).

An :class:`Indexer` holds one resource type's search parameters with their expressions
compiled once (:mod:`resources.search.fhirpath`). For each written resource it returns
the index rows the store persists with the version, and the sort keys:

>>> rows, keys = indexer_for("Observation").index(resource)

``extract(resource)`` and ``sort_keys(resource)`` return either half; call ``index`` when
both are needed (one evaluation). What each parameter type indexes is documented in its
module under :mod:`resources.search.index`.

- Parameters without an expression, and ``special`` parameters (``_text``, ``near``...),
  are not indexed here. ``_id`` (token, ``Resource.id``) and ``_lastUpdated`` (date,
  ``Resource.meta.lastUpdated``) apply to every resource and are always indexed, from
  the definitions when given or from those expressions otherwise.
- An expression selecting an ``Extension`` (``Patient.extension('...mothersMaidenName')``)
  indexes the extension's ``value[x]``.
- Sort keys (https://hl7.org/fhir/R4/search.html#sort): "when sorting on a repeating
  element, the lowest value is used for ascending and the highest for descending", so
  each parameter with values gets a :class:`SortKey` with its lowest and highest sortable
  value: strings normalized, tokens by code, dates ``min(low)``/``max(high)``, numbers and
  quantities by value, references as ``Type/id`` (else URL), URIs as written. Composite
  parameters have no sort key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from resources.search.fhirpath import Items, compile_path
from resources.search.index import elements
from resources.search.index.composite import CompiledComponent, PartsCache, composite_rows
from resources.search.index.date import date_rows
from resources.search.index.entry_keys import entry_keys
from resources.search.index.number import number_rows
from resources.search.index.path_parser import Binary, Ident, Node, Unsupported, parse
from resources.search.index.quantity import quantity_rows
from resources.search.index.reference import reference_rows, reference_sort_value
from resources.search.index.string import string_rows
from resources.search.index.token import code_systems, token_rows, token_rows_with_systems
from resources.search.index.uri import uri_rows
from resources.search.model import Component, IndexRow, ParamType, SearchParam, SortKey

RowsFn = Callable[[str, Iterable[tuple[Any, str]]], Sequence[IndexRow]]
SortFn = Callable[[str, Sequence[Any]], SortKey | None]
_Step = tuple[
    str,
    Callable[[Items, dict[str, Any]], Items],
    RowsFn,
    tuple[CompiledComponent, ...],
    SortFn | None,
]
"""One parameter's evaluation: code, expression, rows, composite components, sort key."""

ROWS: dict[str, RowsFn] = {
    "string": string_rows,
    "token": token_rows,
    "date": date_rows,
    "number": number_rows,
    "quantity": quantity_rows,
    "reference": reference_rows,
    "uri": uri_rows,
}
"""Row extractor per parameter type (composite is assembled from these)."""

_ALWAYS: dict[str, tuple[ParamType, str]] = {
    "_id": ("token", "Resource.id"),
    "_lastUpdated": ("date", "Resource.meta.lastUpdated"),
}


Applies = Callable[[frozenset[str]], bool]

_MAX_SHAPES = 1024
"""Resource shapes whose plan an :class:`Indexer` remembers (then it starts again)."""


@dataclass(frozen=True, slots=True)
class _Compiled:
    code: str
    type: ParamType
    run: Callable[[Items, dict[str, Any]], Items]
    applies: Applies | None
    """Whether a resource with these top-level keys can have values (None: it can)."""
    native: bool
    rows: RowsFn
    components: tuple[CompiledComponent, ...] = ()


class Indexer:
    """One resource type's compiled search parameters."""

    def __init__(
        self,
        params: Mapping[str, SearchParam],
        resource_type: str | None = None,
        *,
        native: bool = True,
        skip_absent: bool = True,
    ) -> None:
        """Compile ``params`` (all of ``resource_type``). ``native=False`` evaluates every
        expression with fhirpathpy instead (slow; for checking the native navigators);
        ``skip_absent=False`` evaluates every parameter on every resource, even those
        whose entry keys it lacks (for checking that skipping changes nothing)."""
        if resource_type is None:
            resource_type = next((p.resource_type for p in params.values()), "Resource")
        self.resource_type = resource_type
        compiled = [
            c for p in params.values() if (c := _compile(p, resource_type, native)) is not None
        ]
        present = {c.code for c in compiled}
        for code, (param_type, expression) in _ALWAYS.items():
            if code not in present:
                param = SearchParam(resource_type, code, param_type, expression)
                compiled.append(_compile(param, resource_type, native))  # type: ignore[arg-type]
        self._params: tuple[_Compiled, ...] = tuple(compiled)
        self._plan = tuple(
            (
                c.applies if skip_absent else None,
                (c.code, c.run, c.rows, c.components, SORT.get(c.type)),
            )
            for c in compiled
        )
        self._plans: dict[tuple[str, ...], tuple[_Step, ...]] = {}
        """The parameters that can have values, by the keys of a resource (its shape):
        resources of one type come in few shapes."""

    @property
    def codes(self) -> tuple[str, ...]:
        """The codes of the parameters this indexer extracts."""
        return tuple(c.code for c in self._params)

    @property
    def fallbacks(self) -> tuple[str, ...]:
        """Codes whose expression runs on fhirpathpy rather than native navigation."""
        return tuple(c.code for c in self._params if not c.native)

    def index(self, resource: dict[str, Any]) -> tuple[list[IndexRow], list[SortKey]]:
        """All index rows of ``resource`` and its sort keys."""
        rows: list[IndexRow] = []
        keys: list[SortKey] = []
        root = [(resource, self.resource_type)]
        cache: PartsCache = {}
        shape = tuple(resource)
        plan = self._plans.get(shape)
        if plan is None:
            plan = self._plan_for(shape)
        for code, run, extract, components, sort_key in plan:
            items = run(root, resource)
            if not items:
                continue
            if components:
                found: Sequence[IndexRow] = composite_rows(code, items, components, resource, cache)
            else:
                found = extract(code, items)
            if not found:
                continue
            if len(found) > 1 and len(items) > 1:
                found = list(dict.fromkeys(found))
            rows.extend(found)
            if sort_key is not None:
                key = sort_key(code, found)
                if key is not None:
                    keys.append(key)
        return rows, keys

    def _plan_for(self, shape: tuple[str, ...]) -> tuple[_Step, ...]:
        """The steps of the parameters whose entry keys a resource of this shape has."""
        present = frozenset(shape)
        plan = tuple(step for applies, step in self._plan if applies is None or applies(present))
        if len(self._plans) >= _MAX_SHAPES:
            self._plans.clear()
        self._plans[shape] = plan
        return plan

    def extract(self, resource: dict[str, Any]) -> list[IndexRow]:
        return self.index(resource)[0]

    def sort_keys(self, resource: dict[str, Any]) -> list[SortKey]:
        return self.index(resource)[1]


@cache
def indexer_for(resource_type: str) -> Indexer:
    """The cached :class:`Indexer` of a resource type, from the R4 definitions
    (``resources.search.parameters.search_params``); with only ``_id`` and
    ``_lastUpdated`` when that module is not available."""
    try:
        from resources.search import parameters
    except ImportError:
        return Indexer({}, resource_type)
    return Indexer(parameters.search_params(resource_type), resource_type)


def _compile(param: SearchParam, resource_type: str, native: bool) -> _Compiled | None:
    expression = param.expression
    param_type = param.type
    if expression is None and param.code in _ALWAYS:
        param_type, expression = _ALWAYS[param.code]
    if not expression or param_type == "special":
        return None
    path = compile_path(expression, resource_type, native=native)
    applies = _any_key(path.entry_keys)
    if param_type == "composite":
        if not param.components or any(c.type not in ROWS for c in param.components):
            return None
        paths = [compile_path(c.expression, None, native=native) for c in param.components]
        components = tuple(
            CompiledComponent(
                c.code, c.expression, p.run, _with_extensions(ROWS[c.type], c.expression)
            )
            for c, p in zip(param.components, paths, strict=True)
        )
        all_native = path.native and all(p.native for p in paths)
        if applies is None:
            applies = _composite_applies(expression, param.components, resource_type)
        return _Compiled(
            param.code, param_type, path.run, applies, all_native, _no_rows, components
        )
    rows = _rows_for(param_type, expression)
    if rows is None:
        return None
    extractor = _with_extensions(rows, expression)
    return _Compiled(param.code, param_type, path.run, applies, path.native, extractor)


def _any_key(keys: frozenset[str] | None) -> Applies | None:
    if keys is None:
        return None
    return lambda present: not keys.isdisjoint(present)


def _composite_applies(
    expression: str, components: Sequence[Component], resource_type: str
) -> Applies | None:
    """For a composite whose elements include the resource itself (``Observation``,
    ``Observation | Observation.component``): a row needs a value of every component on
    one element, so on the resource each component's entry keys must be there; other
    elements need their own entry keys."""
    try:
        branches: list[list[frozenset[str]]] = []  # any branch; in a branch, every set
        for branch in _union_branches(parse(expression)):
            keys = entry_keys(branch, resource_type)
            if keys is None and isinstance(branch, Ident) and branch.name == resource_type:
                each = [entry_keys(parse(c.expression), resource_type) for c in components]
                branches.append([k for k in each if k is not None])
            elif keys is None:
                return None
            else:
                branches.append([keys])
    except Unsupported:
        return None
    return lambda present: any(
        all(not keys.isdisjoint(present) for keys in every) for every in branches
    )


def _union_branches(node: Node) -> list[Node]:
    if isinstance(node, Binary) and node.op == "|":
        return [*_union_branches(node.left), *_union_branches(node.right)]
    return [node]


def _rows_for(param_type: str, expression: str) -> RowsFn | None:
    if param_type == "token":
        systems = code_systems(expression)
        if systems:
            return token_rows_with_systems(systems)
    return ROWS.get(param_type)


def _no_rows(_code: str, _items: Iterable[tuple[Any, str]]) -> Sequence[IndexRow]:
    return ()


def _with_extensions(rows: RowsFn, expression: str) -> RowsFn:
    """Index an Extension's ``value[x]`` (only for expressions that select extensions)."""
    if "extension" not in expression:
        return rows
    slots = elements.child_slots("Extension", "value")

    def unwrapped(code: str, items: Iterable[tuple[Any, str]]) -> Sequence[IndexRow]:
        values: Items = []
        for value, type_name in items:
            if type_name != "Extension" or not isinstance(value, dict):
                values.append((value, type_name))
                continue
            for key, value_type in slots:
                if key in value:
                    values.append((value[key], value_type))
                    break
        return rows(code, values)

    return unwrapped


def _date_sort(code: str, rows: Sequence[Any]) -> SortKey | None:
    if len(rows) == 1:
        return SortKey(code, rows[0].low, rows[0].high)
    return SortKey(code, min(r.low for r in rows), max(r.high for r in rows))


def _values_sort(value: Callable[[Any], Any]) -> SortFn:
    def sort_key(code: str, rows: Sequence[Any]) -> SortKey | None:
        if len(rows) == 1:
            one = value(rows[0])
            return None if one is None else SortKey(code, one, one)
        values = [v for r in rows if (v := value(r)) is not None]
        if not values:
            return None
        return SortKey(code, min(values), max(values))

    return sort_key


SORT: dict[str, SortFn] = {
    "date": _date_sort,
    "string": _values_sort(lambda r: r.normalized),
    "token": _values_sort(lambda r: r.value),
    "number": _values_sort(lambda r: r.value),
    "quantity": _values_sort(lambda r: r.value),
    "reference": _values_sort(reference_sort_value),
    "uri": _values_sort(lambda r: r.value),
}
"""Sort key per parameter type, from that type's rows."""
