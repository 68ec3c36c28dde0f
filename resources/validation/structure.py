"""The element structure of R4 resources and datatypes, compiled once per definition path
from the R4 StructureDefinitions (the ``elements`` section of the generated data).

Validation against the structure definitions, https://hl7.org/fhir/R4/validation.html:
each element's name, types (choice types ``value[x]`` become one JSON property per type,
``valueQuantity``), cardinality (``min`` >= 1 is required, ``max`` other than "1" is a
JSON array), content references (``Questionnaire.item.item`` is a ``Questionnaire.item``)
and required bindings, https://hl7.org/fhir/R4/elementdefinition.html.

A ``Shape`` is what an object at one definition path (``Patient``, ``Patient.contact``,
``HumanName``) may hold: its JSON properties (``Slot``), and the ``_name`` companions of
its primitives (https://hl7.org/fhir/R4/json.html#primitive). Shapes are compiled on first
use, with every shape they reach, and are immutable afterwards.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import cache
from typing import Any

from resources import definitions
from resources.definitions import ValueSetCodes
from resources.validation import invariants
from resources.validation.primitives import (
    COMPLEX,
    RESOURCE,
    fast_check,
    format_check,
    is_primitive,
    kind_of,
    late_check,
)

__all__ = ["COMPLEX", "RESOURCE", "Shape", "Slot", "shape", "validator_covers"]

_BACKBONES = frozenset({"BackboneElement", "Element"})


class Slot:
    """One JSON property of a shape: an element, or one type of a choice element."""

    __slots__ = (
        "name",  # JSON property: "valueQuantity"
        "element",  # name in the definition: "value[x]"
        "many",  # max is not "1": a JSON array
        "kind",  # BOOLEAN ... STRING (primitives), COMPLEX, RESOURCE
        "type",  # R4 type code: "Quantity", "BackboneElement", "dateTime"
        "choice",  # "value" for value[x], else None
        "required",  # min >= 1 (choice elements: see Shape.required_choices)
        "companion",  # "_name" when the primitive may have one, else None
        "binding",  # the required binding's codes, if any
        "shape",  # COMPLEX: the shape of the values
        "check",  # primitives: the format check
        "fast",  # strings: a quick C-level test of valid values (primitives.fast_check)
        "codes",  # the codes of the required binding, if any
        "late",  # primitives: the second-rank check after the format check
    )

    def __init__(self, name: str, element: str, many: bool, type_code: str) -> None:
        self.name = name
        self.element = element
        self.many = many
        self.type = type_code
        self.kind = COMPLEX
        self.choice: str | None = element[:-3] if element.endswith("[x]") else None
        self.required = False
        self.companion: str | None = None
        self.binding: ValueSetCodes | None = None
        self.shape: Shape | None = None
        self.check: Callable[[Any], str | None] | None = None
        self.fast: Callable[[str], Any] | None = None
        self.codes: frozenset[str] | None = None
        self.late: Callable[[Any], str | None] | None = None

    def __repr__(self) -> str:
        return f"Slot({self.name!r}, {self.type!r}, many={self.many})"


class Shape:
    """The JSON properties allowed in an object at one definition path."""

    __slots__ = ("path", "values", "companions", "required", "required_choices", "invariants")

    def __init__(self, path: str) -> None:
        self.path = path
        self.invariants: tuple[invariants.Invariant, ...] = ()  # checked on each object
        self.values: dict[str, Slot] = {}  # JSON property -> slot
        self.companions: dict[str, Slot] = {}  # "_given" -> the slot of "given"
        self.required: tuple[Slot, ...] = ()
        self.required_choices: tuple[str, ...] = ()  # "value" when value[x] is required

    def __repr__(self) -> str:
        return f"Shape({self.path!r})"


_SHAPES: dict[str, Shape] = {}
_LOCK = threading.Lock()


def shape(path: str) -> Shape:
    """The shape at a definition path (``Patient``, ``Patient.contact``, ``Element``)."""
    found = _SHAPES.get(path)
    return found if found is not None else _compile(path)


def validator_covers(resource_type: Any) -> bool:
    """True when ``resource_type`` is an R4 resource type this validator accepts: every
    one of them, the types whose structure the R4B models lacked or redesigned
    (``MedicinalProduct``, ``Evidence`` ...) included."""
    return definitions.is_resource_type(resource_type)


def _compile(path: str) -> Shape:
    """Compile a shape and every shape it reaches; publish them together."""
    with _LOCK:
        pending: dict[str, Shape] = {}
        root = _build(path, pending)
        _SHAPES.update(pending)
        return root


def _build(path: str, pending: dict[str, Shape]) -> Shape:
    found = _SHAPES.get(path) or pending.get(path)
    if found is not None:
        return found
    new = pending[path] = Shape(path)
    required: list[Slot] = []
    required_choices: list[str] = []
    for name, entry in _children(path):
        for slot in _slots(path, name, entry, pending):
            new.values[slot.name] = slot
            if slot.companion:
                new.companions[slot.companion] = slot
            if slot.required:
                required.append(slot)
        if entry[0] >= 1 and name.endswith("[x]"):
            required_choices.append(name[:-3])
    new.required = tuple(required)
    new.required_choices = tuple(required_choices)
    slots = list(new.values.values())
    new.invariants = invariants.for_shape(
        path, lambda element: tuple(s.name for s in slots if s.element == element)
    )
    return new


def _slots(path: str, name: str, entry: list[Any], pending: dict[str, Shape]) -> list[Slot]:
    """The JSON properties of one element definition (one per type of a choice)."""
    minimum, maximum, types = entry[0], entry[1], entry[2]
    extra = entry[3] if len(entry) > 3 else {}
    many = maximum != "1"
    binding = definitions.required_binding(f"{path}.{name}")
    reference = extra.get("contentReference")
    if reference:
        target = reference.removeprefix("#")
        types = _entry_at(target)[2]
    out = []
    for code in types:
        json_name = name[:-3] + code[0].upper() + code[1:] if name.endswith("[x]") else name
        slot = Slot(json_name, name, many, code)
        slot.required = minimum >= 1 and slot.choice is None
        slot.binding = binding
        slot.codes = binding.codes if binding is not None else None
        if is_primitive(code):
            slot.kind = kind_of(code)
            slot.check = format_check(code)
            slot.late = late_check(code)
            slot.fast = fast_check(code)
            if "systemType" not in extra:
                slot.companion = "_" + json_name
        elif code == "Resource":
            slot.kind = RESOURCE
        else:
            child = reference.removeprefix("#") if reference else None
            if child is None:
                child = f"{path}.{name}" if code in _BACKBONES else code
            slot.shape = _build(child, pending)
        out.append(slot)
    return out


def _children(path: str) -> list[tuple[str, list[Any]]]:
    """The element definitions directly below a definition path, inherited ones included."""
    type_, _, below = path.partition(".")
    own = _by_parent(type_).get(below, [])
    if below:
        codes = _entry_at(path)[2]
        base = codes[0] if codes and codes[0] in _BACKBONES else None
    else:
        base = definitions.element_definitions()[type_]["base"]
    inherited = _by_parent(base).get("", []) if base else []
    return [*inherited, *own]


def _entry_at(path: str) -> list[Any]:
    type_, _, below = path.partition(".")
    return definitions.element_definitions()[type_]["elements"][below]


@cache
def _by_parent(type_: str) -> dict[str, list[tuple[str, list[Any]]]]:
    """Relative parent path -> [(element name, entry)] for one type ("" is the type)."""
    out: dict[str, list[tuple[str, list[Any]]]] = {}
    for rel, entry in definitions.element_definitions()[type_]["elements"].items():
        if entry[1] == "0":
            continue  # prohibited: never in an instance
        parent, _, name = rel.rpartition(".")
        out.setdefault(parent, []).append((name, entry))
    return out
