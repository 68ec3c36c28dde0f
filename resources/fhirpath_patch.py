"""FHIRPath Patch: apply a ``Parameters`` patch document to a resource.

https://hl7.org/fhir/R4/fhirpatch.html

This module holds the five operations (add, insert, delete, replace, move). The pieces
they use:

- ``fhirpath_patch_parameters``: the ``Parameters`` document read into operations;
- ``fhirpath_paths``: the FHIRPath subset of patch paths, parsed into steps;
- ``fhirpath_elements``: the R4 element definitions (from fhirpathpy's tables);
- ``fhirpath_locations``: paths evaluated to locations in the JSON tree;
- ``fhirpath_values``: values checked against the R4 model and written as JSON.

Whether an absent element repeats (``add`` makes a list or a single value) cannot be
read from the JSON; pass ``repeats`` (ElementDefinition path -> is max ``*``) for exact
answers. Without it, only ``extension``, ``modifierExtension`` and ``contained`` are
taken to repeat; the caller's validation catches a wrong guess.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from resources.fhirpath_elements import Definition, RepeatsLookup
from resources.fhirpath_locations import Target, list_size
from resources.fhirpath_patch_parameters import Operation, read_operations
from resources.fhirpath_values import (
    add_member,
    edit_list,
    element_repeats,
    materialize,
    remove,
    resolve_name,
    writable_container,
    write_slot,
)

__all__ = ["RepeatsLookup", "apply_fhirpath_patch"]


def apply_fhirpath_patch(
    resource: dict[str, Any],
    parameters: dict[str, Any],
    *,
    repeats: RepeatsLookup | None = None,
) -> dict[str, Any]:
    """Apply a FHIRPath Patch ``Parameters`` to ``resource``; return a new resource.

    Raises FhirError: 400 ``invalid`` for a malformed patch document, 422 ``processing``
    for a patch that does not fit this resource. Neither input is changed.
    """
    operations = read_operations(parameters)
    result = copy.deepcopy(resource)
    for operation in operations:
        target = Target(result, operation.path, operation.expr, repeats)
        _APPLY[operation.type](target, operation)
    return result


def _add(target: Target, op: Operation) -> None:
    assert op.name is not None and op.value is not None
    loc = target.single(op.path.steps, "element")
    container = writable_container(target, loc, op.name)
    add_member(target, container, loc.type, op.name, op.value)


def _delete(target: Target, op: Operation) -> None:
    found = target.evaluate(op.path.steps)
    if not found:
        return
    if len(found) > 1:
        raise target.fail(
            f"Path {op.path.text!r} matched {len(found)} elements; delete removes only one"
        )
    if found[0] is target.root:
        raise target.fail("The resource itself cannot be deleted by a patch")
    remove(found[0])


def _replace(target: Target, op: Operation) -> None:
    assert op.value is not None
    loc = target.single(op.path.steps, "element")
    if loc is target.root:
        raise target.fail("The resource itself cannot be replaced by a patch")
    key, data, shadow = materialize(target, op.value, loc.definition, loc.name)
    if key != loc.key:  # a choice element changing type
        write_slot(loc.parent, loc.key, None, None, None)
    write_slot(loc.parent, key, loc.index, data, shadow)


def _list_location(target: Target) -> tuple[dict[str, Any], Definition | None, str]:
    """The object holding the list that an insert or move path names, and its key."""
    steps = target.path.steps
    last = steps[-1]
    if last.kind != "member" or (len(steps) == 1 and target.names_resource(last.name)):
        raise target.fail(f"Path {target.path.text!r} must end with a list's name")
    owner = target.single(steps[:-1], "element holding the list")
    definition, name, suffix = resolve_name(target, owner.type, last.name)
    container = writable_container(target, owner, name)
    existing = container.get(name, container.get("_" + name))
    if suffix is not None or element_repeats(target, definition, existing) is False:
        raise target.fail(f"{last.name!r} is not a list")
    return container, definition, name


def _insert(target: Target, op: Operation) -> None:
    assert op.value is not None and op.index is not None
    container, definition, name = _list_location(target)
    size = list_size(container, name)
    if op.index > size:
        raise target.fail(f"Index {op.index} is out of range: the list has {size} item(s)")
    key, data, shadow = materialize(target, op.value, definition, name)
    index = op.index
    edit_list(container, key, lambda pairs: pairs.insert(index, (data, shadow)))


def _move(target: Target, op: Operation) -> None:
    assert op.source is not None and op.destination is not None
    container, _, name = _list_location(target)
    size = list_size(container, name)
    for label, index in (("Source", op.source), ("Destination", op.destination)):
        if index >= size:
            raise target.fail(f"{label} {index} is out of range: the list has {size} item(s)")
    source, destination = op.source, op.destination
    edit_list(container, name, lambda pairs: pairs.insert(destination, pairs.pop(source)))


_APPLY: dict[str, Callable[[Target, Operation], None]] = {
    "add": _add,
    "insert": _insert,
    "delete": _delete,
    "replace": _replace,
    "move": _move,
}
