"""Write FHIRPath Patch values into a resource's JSON tree.

https://hl7.org/fhir/R4/fhirpatch.html: a value is ``value[x]`` (any datatype),
``resource``, or for elements without a type name (backbone elements) a set of ``part``s
named after the child elements. They are checked against the R4 element they are written
to (a choice takes one of its types; a backbone element takes parts) and written as FHIR
JSON (https://hl7.org/fhir/R4/json.html): a choice as ``valueQuantity``, a primitive with
its ``_name`` twin, and arrays of primitives edited together with their ``_name`` arrays
so that extensions on primitives stay aligned.

Whether an absent element repeats (``add`` makes a list or a single value) cannot be
read from the JSON; the caller's ``repeats`` lookup answers it. Without one, only
``extension``, ``modifierExtension`` and ``contained`` are taken to repeat; the caller's
validation catches a wrong guess.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from resources.fhirpath_elements import (
    Definition,
    is_a,
    is_primitive_type,
    lookup,
    suffix_type,
)
from resources.fhirpath_locations import Loc, Target, list_size, member_keys
from resources.fhirpath_patch_parameters import Value

__all__ = [
    "add_member",
    "edit_list",
    "element_repeats",
    "materialize",
    "remove",
    "resolve_name",
    "write_slot",
    "writable_container",
]

_ALWAYS_REPEATING = frozenset({"extension", "modifierExtension", "contained"})

_Pairs = list[tuple[Any, Any]]


# --- Writing JSON: arrays of primitives move together with their ``_name`` twins --------


def edit_list(container: dict[str, Any], key: str, edit: Callable[[_Pairs], Any]) -> None:
    """Edit ``container[key]`` and its ``_key`` twin as one list of (value, twin) pairs.

    A list left with no values (or no twins) is removed, so deleting the last item
    removes the element, and twins appear only while some item has one.
    """
    values, shadows = container.get(key), container.get("_" + key)
    size = list_size(container, key)
    pairs = list(zip(_padded(values, size), _padded(shadows, size), strict=True))
    edit(pairs)
    for position, name in enumerate((key, "_" + key)):
        items = [pair[position] for pair in pairs]
        if any(item is not None for item in items):
            container[name] = items
        else:
            container.pop(name, None)


def _padded(items: Any, size: int) -> list[Any]:
    items = list(items) if isinstance(items, list) else []
    return items + [None] * (size - len(items))


def write_slot(parent: dict[str, Any], key: str, index: int | None, data: Any, shadow: Any) -> None:
    """Set ``parent[key]`` (or its item ``index``) and the ``_key`` twin; None removes."""
    if index is not None:
        edit_list(parent, key, lambda pairs: pairs.__setitem__(index, (data, shadow)))
        return
    for name, item in ((key, data), ("_" + key, shadow)):
        if item is None:
            parent.pop(name, None)
        else:
            parent[name] = item


def remove(loc: Loc) -> None:
    """Remove an element (with its ``_name`` twin), and what that leaves empty.

    An element with no content is not allowed in FHIR (https://hl7.org/fhir/R4/json.html:
    "empty objects are not allowed"), so an emptied twin, and each parent element left
    empty, goes too, up to (not including) the resource: deleting
    ``Patient.contact[0].name.text`` from a name holding only that text removes the name.
    """
    if loc.index is None:
        loc.parent.pop(loc.key, None)
        loc.parent.pop("_" + loc.key, None)
    else:
        index = loc.index
        edit_list(loc.parent, loc.key, lambda pairs: pairs.pop(index))
    if loc.host is not None:
        _prune_shadow(loc.host)
    else:
        _prune_owner(loc)


def _prune_owner(loc: Loc) -> None:
    """Remove the element holding ``loc`` once it has nothing left."""
    if loc.owner is not None and not loc.parent:
        remove(loc.owner)


def _prune_shadow(host: Loc) -> None:
    """Drop a primitive's ``_name`` object once it is empty (and the element if valueless)."""
    if host.shadow():
        return
    if host.index is None:
        host.parent.pop("_" + host.key, None)
        _prune_owner(host)
    elif host.value() is None:
        remove(host)
    else:
        write_slot(host.parent, host.key, host.index, host.value(), None)


def writable_container(target: Target, loc: Loc, name: str) -> dict[str, Any]:
    """The object to write ``loc``'s child ``name`` into (a primitive's ``_name`` twin)."""
    value = loc.value()
    if isinstance(value, dict):
        return value
    if name not in ("extension", "id") or (value is not None and not _is_scalar(value)):
        raise target.fail(f"Cannot put {name!r} inside {loc.name!r}: it is not a complex element")
    shadow = loc.shadow()
    if not isinstance(shadow, dict):
        shadow = {}
        write_slot(loc.parent, loc.key, loc.index, value, shadow)
    return shadow


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool | Decimal)


# --- Values: from patch parts to JSON ---------------------------------------------------


def resolve_name(
    target: Target, type_name: str | None, name: str
) -> tuple[Definition | None, str, str | None]:
    """Like ``lookup``, failing for a name that the (known) type does not define."""
    found = lookup(type_name, name)
    if found[0] is None and type_name is not None:
        raise target.fail(f"{type_name} has no element {name!r}")
    return found


def materialize(
    target: Target, value: Value, definition: Definition | None, name: str
) -> tuple[str, Any, Any]:
    """The JSON key, data and ``_key`` twin that write ``value`` as element ``name``."""
    if value.parts is not None:
        return name, _build_parts(target, value.parts, definition), None
    data = copy.deepcopy(value.data)
    shadow = copy.deepcopy(value.shadow)
    if value.is_resource:
        if definition is not None and definition.type != "Resource":
            raise target.fail(f"{definition.path} does not hold a resource")
        return name, data, None
    assert value.suffix is not None
    if definition is not None and definition.choices:
        if value.suffix not in definition.choices:
            raise target.fail(f"{definition.path}[x] cannot be a {suffix_type(value.suffix)}")
        return name + value.suffix, data, shadow
    _check_type(target, definition, value.suffix)
    return name, data, shadow


def _check_type(target: Target, definition: Definition | None, suffix: str) -> None:
    if definition is None:
        return
    given = suffix_type(suffix)
    if definition.backbone:
        raise target.fail(f"{definition.path} is a backbone element: give its content as parts")
    declared = definition.type
    if is_primitive_type(given) and is_primitive_type(declared):
        return  # same JSON shape; the lexical form is checked when the result is validated
    if declared == "Resource":
        raise target.fail(f"{definition.path} holds resources: give the value as a resource")
    if not is_a(given, declared or ""):
        raise target.fail(f"{definition.path} is a {declared}, not a {given}")


def _build_parts(
    target: Target, parts: tuple[tuple[str, Value], ...], definition: Definition | None
) -> dict[str, Any]:
    if definition is not None and (definition.choices or is_primitive_type(definition.type)):
        raise target.fail(f"{definition.path} needs a typed value, not parts")
    type_name = None if definition is None else definition.backbone or definition.type
    built: dict[str, Any] = {}
    for name, value in parts:
        add_member(target, built, type_name, name, value)
    return built


def add_member(
    target: Target, container: dict[str, Any], type_name: str | None, name: str, value: Value
) -> None:
    """Add ``value`` as child ``name`` of an object of type ``type_name``: appended when
    the element repeats, else set (failing when it already has a value)."""
    definition, name, suffix = resolve_name(target, type_name, name)
    if suffix is not None and value.suffix != suffix:
        raise target.fail(f"Element {name + suffix!r} needs a value{suffix}")
    key, data, shadow = materialize(target, value, definition, name)
    existing = container.get(key) if key in container else container.get("_" + key)
    repeats = element_repeats(target, definition, existing)
    if repeats is None:
        repeats = name in _ALWAYS_REPEATING
    if repeats:
        edit_list(container, key, lambda pairs: pairs.append((data, shadow)))
    elif member_keys(container, name, definition, None):
        raise target.fail(f"{name!r} already has a value: use replace, or delete it first")
    else:
        write_slot(container, key, None, data, shadow)


def element_repeats(target: Target, definition: Definition | None, existing: Any) -> bool | None:
    """Whether an element repeats: from the JSON, the definition, else None (unknown)."""
    if existing is not None:
        return isinstance(existing, list)
    if definition is not None and definition.choices:
        return False
    if definition is not None and target.repeats is not None:
        return target.repeats(definition.path)
    return None
