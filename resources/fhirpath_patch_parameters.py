"""Read a FHIRPath Patch document: a ``Parameters`` resource into operations.

https://hl7.org/fhir/R4/fhirpatch.html

Each ``parameter`` named ``operation`` carries parts ``type`` (add | insert | delete |
replace | move), ``path`` (a FHIRPath expression), and as the type needs ``name``,
``value``, ``index``, ``source`` and ``destination``. Values are ``value[x]`` (any
datatype), ``resource``, or for elements without a type name (backbone elements) a set
of ``part``s named after the child elements. A malformed document is a 400 ``invalid``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from resources.errors import invalid
from resources.fhirpath_paths import Path, compile_path

__all__ = ["Operation", "Value", "read_operations"]

_OPERATION_PARTS = {
    "add": frozenset({"type", "path", "name", "value"}),
    "insert": frozenset({"type", "path", "value", "index"}),
    "delete": frozenset({"type", "path"}),
    "replace": frozenset({"type", "path", "value"}),
    "move": frozenset({"type", "path", "source", "destination"}),
}
_INTEGER_KEYS = ("valueInteger", "valueUnsignedInt", "valuePositiveInt")


@dataclass(frozen=True)
class Value:
    """A value to write: ``value[x]`` (suffix set), ``resource``, or backbone parts."""

    data: Any = None
    suffix: str | None = None
    shadow: Any = None
    is_resource: bool = False
    parts: tuple[tuple[str, Value], ...] | None = None


@dataclass(frozen=True)
class Operation:
    expr: str
    type: str
    path: Path
    name: str | None = None
    value: Value | None = None
    index: int | None = None
    source: int | None = None
    destination: int | None = None


def read_operations(parameters: Any) -> list[Operation]:
    """The operations of a FHIRPath Patch ``Parameters``, in order."""
    if not isinstance(parameters, dict) or parameters.get("resourceType") != "Parameters":
        raise invalid("A FHIRPath Patch must be a Parameters resource", "Parameters")
    entries = parameters.get("parameter", [])
    if not isinstance(entries, list):
        raise invalid("Parameters.parameter must be an array", "Parameters.parameter")
    return [_read_operation(entry, f"Parameters.parameter[{i}]") for i, entry in enumerate(entries)]


def _read_operation(entry: Any, expr: str) -> Operation:
    if not isinstance(entry, dict) or entry.get("name") != "operation":
        raise invalid("Each patch parameter must be named 'operation'", expr)
    parts = _read_parts(entry, expr)
    op_type = _read_primitive(parts, "type", ("valueCode",), str, expr)
    if op_type not in _OPERATION_PARTS:
        raise invalid(f"Unknown patch operation type {op_type!r}", expr)
    required = _OPERATION_PARTS[op_type]
    missing = sorted(required - parts.keys())
    extra = sorted(parts.keys() - required)
    if missing:
        raise invalid(f"Operation {op_type!r} needs part(s) {', '.join(missing)}", expr)
    if extra:
        raise invalid(f"Operation {op_type!r} does not take part(s) {', '.join(extra)}", expr)
    path_text = _read_primitive(parts, "path", ("valueString",), str, expr)
    name = _read_primitive(parts, "name", ("valueString",), str, expr) if "name" in parts else None
    return Operation(
        expr=expr,
        type=op_type,
        path=compile_path(path_text, expr),
        name=name,
        value=_read_value(parts["value"], expr) if "value" in parts else None,
        index=_read_index(parts, "index", expr),
        source=_read_index(parts, "source", expr),
        destination=_read_index(parts, "destination", expr),
    )


def _read_parts(entry: dict[str, Any], expr: str) -> dict[str, dict[str, Any]]:
    parts = entry.get("part")
    if not isinstance(parts, list) or not parts:
        raise invalid("A patch operation needs its parts (type, path, ...)", expr)
    named: dict[str, dict[str, Any]] = {}
    for part in parts:
        name = part.get("name") if isinstance(part, dict) else None
        if not isinstance(name, str):
            raise invalid("Every part of a patch operation needs a name", expr)
        if name in named:
            raise invalid(f"Part {name!r} is given more than once", expr)
        named[name] = part
    return named


def _read_primitive(
    parts: dict[str, dict[str, Any]], name: str, keys: tuple[str, ...], kind: type, expr: str
) -> Any:
    part = parts[name]
    found = [key for key in keys if key in part]
    value = part[found[0]] if len(found) == 1 else None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise invalid(f"Part {name!r} needs a {' or '.join(keys)}", expr)
    if isinstance(value, str) and not value.strip():
        raise invalid(f"Part {name!r} is empty", expr)
    return value


def _read_index(parts: dict[str, dict[str, Any]], name: str, expr: str) -> int | None:
    if name not in parts:
        return None
    value = _read_primitive(parts, name, _INTEGER_KEYS, int, expr)
    if value < 0:
        raise invalid(f"Part {name!r} must not be negative", expr)
    return value


def _read_value(part: dict[str, Any], expr: str) -> Value:
    keys = [k for k in part if k.startswith("value") and k[5:6].isupper()]
    sources = len(keys) + ("resource" in part) + ("part" in part)
    if sources != 1:
        raise invalid(
            f"Part {part['name']!r} needs exactly one of value[x], resource or part", expr
        )
    if keys:
        key = keys[0]
        return Value(part[key], key[5:], part.get("_" + key))
    if "resource" in part:
        resource = part["resource"]
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            raise invalid(f"Part {part['name']!r} has an invalid resource", expr)
        return Value(resource, is_resource=True)
    return Value(parts=_read_value_parts(part, expr))


def _read_value_parts(part: dict[str, Any], expr: str) -> tuple[tuple[str, Value], ...]:
    children = part["part"]
    if not isinstance(children, list) or not children:
        raise invalid(f"Part {part['name']!r} has no content", expr)
    out = []
    for child in children:
        name = child.get("name") if isinstance(child, dict) else None
        if not isinstance(name, str) or not name:
            raise invalid(f"Every part inside {part['name']!r} needs a name", expr)
        out.append((name, _read_value(child, expr)))
    return tuple(out)
