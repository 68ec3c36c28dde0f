"""The contracts of search: search parameter definitions and the index rows extracted
from resources at write time (https://hl7.org/fhir/R4/search.html,
https://hl7.org/fhir/R4/searchparameter.html).

Index rows are what the stores persist next to each resource version (in the same
transaction) and what compiled queries match against. They are plain values: the SQLite
store puts each kind in its own table, the MongoDB store embeds them in the document.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ParamType = Literal[
    "number", "date", "string", "token", "reference", "composite", "quantity", "uri", "special"
]


@dataclass(frozen=True, slots=True)
class Component:
    """One component of a composite parameter."""

    code: str
    """The code of the component's own SearchParameter (e.g. ``code``)."""
    type: ParamType
    expression: str
    """FHIRPath relative to each element the composite's expression selects."""


@dataclass(frozen=True, slots=True)
class SearchParam:
    """A search parameter as it applies to one resource type."""

    resource_type: str
    code: str
    type: ParamType
    expression: str | None
    """FHIRPath restricted to this resource type's part of the definition's union."""
    url: str = ""
    targets: tuple[str, ...] = ()
    """Reference targets (reference parameters)."""
    components: tuple[Component, ...] = ()


# -- index rows ---------------------------------------------------------------------
# Rows are built by the thousand on every import, so they are plain slotted dataclasses
# (about a fifth cheaper to create than frozen ones); treat them as immutable.
# Every row names its parameter by ``code``. Normalised strings are lower-cased with
# accents removed (NFKD, combining marks dropped) and whitespace collapsed.


@dataclass(slots=True, unsafe_hash=True)
class StringRow:
    code: str
    normalized: str
    """For the default (prefix) and ``:contains`` matches."""
    exact: str
    """The value as written, for ``:exact``."""


@dataclass(slots=True, unsafe_hash=True)
class TokenRow:
    code: str
    system: str | None
    """None when the value has no system (a ``code`` element, or a Coding without one)."""
    value: str | None
    """The code / identifier value / boolean as ``true``/``false``; None with only text."""
    text: str | None = None
    """Normalised display / CodeableConcept.text / Identifier.type.text for ``:text``."""
    type_system: str | None = None
    type_code: str | None = None
    """Identifier.type coding, one row per coding, for ``:of-type``."""


@dataclass(slots=True, unsafe_hash=True)
class DateRow:
    """The half-open UTC instant range ``[low, high)`` a date/Period/Timing covers.

    Instants are in the store format ``YYYY-MM-DDThh:mm:ss.sssZ``; an open end of a
    Period is ``0001-01-01T00:00:00.000Z`` / ``9999-12-31T23:59:59.999Z``.
    """

    code: str
    low: str
    high: str


@dataclass(slots=True, unsafe_hash=True)
class NumberRow:
    """A number (or Quantity value) as the range its significant digits imply."""

    code: str
    value: float
    low: float
    high: float


@dataclass(slots=True, unsafe_hash=True)
class QuantityRow:
    code: str
    value: float
    low: float
    high: float
    system: str | None
    unit_code: str | None
    unit: str | None
    """Quantity.unit (human readable), matched by ``number||unit``."""


@dataclass(slots=True, unsafe_hash=True)
class ReferenceRow:
    code: str
    target_type: str | None
    """Resource type of a relative or absolute FHIR reference; None for other URLs."""
    target_id: str | None
    url: str | None
    """The reference as written when it is absolute (or a canonical), else None."""
    version: str | None = None
    """Version of a versioned canonical (``url|1.0``) or ``_history/n`` reference."""
    identifier_system: str | None = None
    identifier_value: str | None = None
    """Reference.identifier, for ``:identifier``."""


@dataclass(slots=True, unsafe_hash=True)
class UriRow:
    code: str
    value: str


@dataclass(slots=True, unsafe_hash=True)
class CompositeRow:
    """One combination of component values taken from the same element."""

    code: str
    parts: tuple[IndexRow, ...]
    """One row per component, in component order (their ``code`` is the component's)."""


@dataclass(slots=True, unsafe_hash=True)
class SortKey:
    """The lowest and highest sortable value of a parameter (``_sort`` on repeats)."""

    code: str
    low: str | float
    high: str | float


IndexRow = (
    StringRow | TokenRow | DateRow | NumberRow | QuantityRow | ReferenceRow | UriRow | CompositeRow
)
