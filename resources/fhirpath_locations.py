"""Evaluate a FHIRPath Patch path to locations in a resource's JSON tree.

https://hl7.org/fhir/R4/fhirpatch.html: operations act on the elements a path selects,
so evaluation keeps where each value lives (its parent object, key and index), not just
the value. Member names follow the R4 model (choice names such as
``Observation.value`` find ``valueQuantity``); ``where`` predicates are full FHIRPath,
evaluated by fhirpathpy on each candidate. A primitive's ``_name`` twin (``birthDate``
with ``_birthDate``, ``given`` with ``_given``) belongs to the same location, and its
``id`` and ``extension`` are children of the primitive
(https://hl7.org/fhir/R4/json.html#primitive).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fhirpathpy import apply_parsed_path
from fhirpathpy.engine.nodes import ResourceNode

from resources.errors import FhirError, invalid
from resources.fhirpath_elements import (
    R4,
    Definition,
    RepeatsLookup,
    element_type,
    is_a,
    lookup,
    resource_type,
)
from resources.fhirpath_paths import Path, Step

__all__ = ["Loc", "Target", "list_size", "member_keys"]

_ROOT_KEY = "$root"


@dataclass(eq=False)
class Loc:
    """One element: ``parent[key]`` or ``parent[key][index]``, with its ``_key`` twin."""

    parent: dict[str, Any]
    key: str
    index: int | None
    name: str
    type: str | None
    definition: Definition | None = None
    host: Loc | None = None  # the primitive whose ``_key`` object is ``parent``
    owner: Loc | None = None  # the element whose value is ``parent`` (None: the root's)

    def value(self) -> Any:
        return _slot(self.parent, self.key, self.index)

    def shadow(self) -> Any:
        return _slot(self.parent, "_" + self.key, self.index)


@dataclass
class Target:
    """The resource being patched, and the path of one operation with its place in the
    patch document (``expr``, for errors) and what writing values needs (``repeats``)."""

    resource: dict[str, Any]
    path: Path
    expr: str
    repeats: RepeatsLookup | None
    root: Loc = field(init=False)

    def __post_init__(self) -> None:
        holder = {_ROOT_KEY: self.resource}
        self.root = Loc(holder, _ROOT_KEY, None, _ROOT_KEY, resource_type(self.resource))

    def fail(self, message: str) -> FhirError:
        """422: the patch does not fit this resource."""
        return FhirError(422, "processing", message, (self.expr,))

    def bad_path(self, message: str) -> FhirError:
        """400: the path is wrong whatever the resource holds."""
        return invalid(message, self.expr)

    def evaluate(self, steps: tuple[Step, ...]) -> list[Loc]:
        current = [self.root]
        for position, step in enumerate(steps):
            if position == 0 and step.kind == "member" and self._is_type_prefix(step.name):
                continue
            current = _STEPS[step.kind](self, current, step)
        return current

    def single(self, steps: tuple[Step, ...], what: str) -> Loc:
        found = self.evaluate(steps)
        if len(found) != 1:
            text = self.path.text
            raise self.fail(f"Path {text!r} must match exactly one {what}, matched {len(found)}")
        return found[0]

    def names_resource(self, name: str) -> bool:
        """Whether ``name`` is the resource's type (or a base type like DomainResource)."""
        return name == self.resource.get("resourceType") or is_a(self.root.type, name)

    def _is_type_prefix(self, name: str) -> bool:
        if self.names_resource(name):
            return True
        if name[:1].isupper():
            raise self.bad_path(
                f"Path {self.path.text!r} does not apply to"
                f" a {self.resource.get('resourceType')} resource"
            )
        return False


def list_size(container: dict[str, Any], key: str) -> int:
    """The length of the list ``container[key]`` with its ``_key`` twin (0 when absent)."""
    return max(_len(container.get(key)), _len(container.get("_" + key)))


def member_keys(
    container: dict[str, Any], name: str, definition: Definition | None, suffix: str | None
) -> list[str]:
    """The JSON keys present in ``container`` for element ``name`` (its choice types)."""
    if suffix is not None:
        keys = [name + suffix]
    elif definition is not None and definition.choices:
        keys = [name + choice for choice in definition.choices]
    elif definition is None and name not in container and "_" + name not in container:
        keys = [k for k in container if k.startswith(name) and k[len(name) :][:1].isupper()]
    else:
        keys = [name]
    return [k for k in keys if k in container or "_" + k in container]


def _slot(parent: dict[str, Any], key: str, index: int | None) -> Any:
    found = parent.get(key)
    if index is None:
        return None if isinstance(found, list) else found
    return found[index] if isinstance(found, list) and index < len(found) else None


def _len(value: Any) -> int:
    return len(value) if isinstance(value, list) else 0


def _container(loc: Loc, name: str) -> tuple[dict[str, Any] | None, Loc | None]:
    """The JSON object holding ``loc``'s child ``name``, and the primitive that owns it."""
    value = loc.value()
    if isinstance(value, dict):
        return value, None
    shadow = loc.shadow()
    if name in ("extension", "id") and isinstance(shadow, dict):
        return shadow, loc
    return None, None


def _children(loc: Loc, name: str) -> list[Loc]:
    container, host = _container(loc, name)
    if container is None:
        return []
    definition, name, suffix = lookup(loc.type, name)
    if definition is None and loc.type is not None:
        return []
    out = []
    for key in member_keys(container, name, definition, suffix):
        values, shadows = container.get(key), container.get("_" + key)
        if isinstance(values, list) or isinstance(shadows, list):
            indexes: list[int | None] = list(range(list_size(container, key)))
        else:
            indexes = [None]
        for index in indexes:
            data, twin = _slot(container, key, index), _slot(container, "_" + key, index)
            if data is not None or twin is not None:
                kind = element_type(definition, key, name, data)
                owner = None if host is not None or loc.key == _ROOT_KEY else loc
                out.append(Loc(container, key, index, name, kind, definition, host, owner))
    return out


# --- Steps ------------------------------------------------------------------------------


def _step_member(target: Target, current: list[Loc], step: Step) -> list[Loc]:
    found = [child for loc in current for child in _children(loc, step.name)]
    if not found and current and all(lookup(loc.type, step.name)[0] is None for loc in current):
        known = {loc.type for loc in current}
        if None not in known:
            raise target.bad_path(
                f"Path {target.path.text!r}: {' or '.join(sorted(map(str, known)))}"
                f" has no element {step.name!r}"
            )
    return found


def _step_index(target: Target, current: list[Loc], step: Step) -> list[Loc]:
    return current[step.number : step.number + 1]


def _step_first(target: Target, current: list[Loc], step: Step) -> list[Loc]:
    return current[:1]


def _step_last(target: Target, current: list[Loc], step: Step) -> list[Loc]:
    return current[-1:]


def _step_of_type(target: Target, current: list[Loc], step: Step) -> list[Loc]:
    return [loc for loc in current if is_a(loc.type, step.name)]


def _step_extension(target: Target, current: list[Loc], step: Step) -> list[Loc]:
    found = _step_member(target, current, Step("member", name="extension"))
    return [loc for loc in found if _url(loc.value()) == step.name]


def _url(value: Any) -> Any:
    return value.get("url") if isinstance(value, dict) else None


def _step_where(target: Target, current: list[Loc], step: Step) -> list[Loc]:
    return [loc for loc in current if _matches(target, loc, step)]


def _matches(target: Target, loc: Loc, step: Step) -> bool:
    node = ResourceNode.create_node(loc.value(), loc.type, loc.shadow())
    variables = {"resource": target.resource, "rootResource": target.resource}
    try:
        result = apply_parsed_path(node, {"children": [step.predicate]}, variables, R4)
    except Exception as exc:  # fhirpathpy raises many kinds on bad predicates
        raise target.bad_path(
            f"where() in path {target.path.text!r} could not be evaluated: {exc}"
        ) from None
    if len(result) > 1:
        raise target.bad_path(f"where() in path {target.path.text!r} must give one boolean")
    return bool(result) and (result[0] is True or not isinstance(result[0], bool))


_STEPS: dict[str, Callable[[Target, list[Loc], Step], list[Loc]]] = {
    "member": _step_member,
    "index": _step_index,
    "first": _step_first,
    "last": _step_last,
    "where": _step_where,
    "ofType": _step_of_type,
    "extension": _step_extension,
}
