"""Composite search values (https://hl7.org/fhir/R4/search.html#composite).

A composite parameter "combines values from the same element": its expression selects
elements (``Observation``, ``Observation.component``, ``Group.characteristic``), each
component's expression is evaluated relative to one such element, and every combination
of the component values found there is one :class:`CompositeRow` (the cartesian product:
a component code with two codings and one quantity gives two rows). Values from different
elements are never combined, so ``component-code-value-quantity`` matches a code and a
value of the *same* component. An element missing any component gives no row.

Token parts with neither a system nor a code (CodeableConcept.text only) cannot be
matched by a composite value (``system|code$...``) and are left out.

Speed: all components are navigated before any row is built, so an Observation without
a ``valueCodeableConcept`` costs ``code-value-concept`` two navigations and no rows; and
the rows of a component are shared, within one resource, by every composite that has the
same component on the same element (``code`` in the four ``code-value-*`` parameters).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import product
from typing import Any

from resources.search.model import CompositeRow, IndexRow, TokenRow

Item = tuple[Any, str]
Items = list[Item]
RowsFn = Callable[[str, Iterable[Item]], Sequence[IndexRow]]
RunFn = Callable[[Items, dict[str, Any]], Items]
PartsCache = dict[tuple[str, str, int], list[IndexRow]]
"""(component code, expression, id(element)) -> that component's rows, per resource."""


@dataclass(frozen=True, slots=True)
class CompiledComponent:
    code: str
    expression: str
    run: RunFn
    """The compiled expression, relative to the composite's elements."""
    rows: RowsFn


def composite_rows(
    code: str,
    elements: Iterable[Item],
    components: Sequence[CompiledComponent],
    resource: dict[str, Any],
    cache: PartsCache,
) -> list[CompositeRow]:
    rows: list[CompositeRow] = []
    for element in elements:
        context = [element]
        found = [component.run(context, resource) for component in components]
        if not all(found):
            continue
        parts = [
            _parts(component, values, element, cache)
            for component, values in zip(components, found, strict=True)
        ]
        if all(parts):
            rows.extend(CompositeRow(code, combo) for combo in product(*parts))
    return rows


def _parts(
    component: CompiledComponent, values: Items, element: Item, cache: PartsCache
) -> list[IndexRow]:
    key = (component.code, component.expression, id(element[0]))
    parts = cache.get(key)
    if parts is None:
        parts = [
            row
            for row in component.rows(component.code, values)
            if not (isinstance(row, TokenRow) and row.value is None and row.system is None)
        ]
        cache[key] = parts
    return parts
