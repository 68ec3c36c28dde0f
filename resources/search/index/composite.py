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
the values of a component are extracted once per resource and element, and shared by
every composite with a component of the same expression there (``code`` in the
``code-value-*`` and ``combo-code-value-*`` parameters), under each one's code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import product
from typing import Any

from resources.search.index.packed import FIELDS, KIND, ROW_CLASSES
from resources.search.model import CompositeRow, IndexRow, TokenRow

Item = tuple[Any, str]
Items = list[Item]
RowsFn = Callable[[str, Iterable[Item]], Sequence[IndexRow]]
RunFn = Callable[[Items, dict[str, Any]], Items]
PartsCache = dict[tuple[str, RowsFn, int], tuple[str, list[IndexRow]]]
"""(expression, rows function, id(element)) -> the code and rows of the first component
with them, per resource: another composite's component with the same expression on the
same element (``code`` of ``code-value-quantity`` and ``combo-code-value-quantity``)
takes the same values under its own code."""


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
    key = (component.expression, component.rows, id(element[0]))
    cached = cache.get(key)
    if cached is None:
        parts = [
            row
            for row in component.rows(component.code, values)
            if not (isinstance(row, TokenRow) and row.value is None and row.system is None)
        ]
        cache[key] = (component.code, parts)
        return parts
    code, parts = cached
    if code == component.code:
        return parts
    return [_recoded(row, component.code) for row in parts]


def _recoded(row: IndexRow, code: str) -> IndexRow:
    """The same values under another parameter code (a component of another composite)."""
    kind = KIND[type(row)]
    return ROW_CLASSES[kind](code, *FIELDS[kind](row)[1:])  # type: ignore[no-any-return]
