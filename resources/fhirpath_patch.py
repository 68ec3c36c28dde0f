"""FHIRPath Patch: apply a ``Parameters`` patch document to a resource.

https://hl7.org/fhir/R4/fhirpatch.html

Each ``parameter`` named ``operation`` carries parts ``type`` (add | insert | delete |
replace | move), ``path`` (a FHIRPath expression), and as the type needs ``name``,
``value``, ``index``, ``source`` and ``destination``. Values are ``value[x]`` (any
datatype), ``resource``, or for elements without a type name (backbone elements) a set
of ``part``s named after the child elements.

Paths must name locations in the JSON tree, not just values, so they are walked here by
a small evaluator for the subset patches use: the leading type name, member names
(choice names such as ``Observation.value`` find ``valueQuantity``), indexers ``[n]``,
``first()``, ``last()``, ``where(<predicate>)``, ``ofType(T)`` and ``extension(url)``.
``where`` predicates are full FHIRPath, evaluated by fhirpathpy on each candidate. Paths
are parsed once (cached). Elements of primitives (``birthDate`` with ``_birthDate``,
``given`` with ``_given``) move together, so extensions on primitives stay aligned.

Whether an absent element repeats (``add`` makes a list or a single value) cannot be
read from the JSON; pass ``repeats`` (ElementDefinition path -> is max ``*``) for exact
answers. Without it, only ``extension``, ``modifierExtension`` and ``contained`` are
taken to repeat; the caller's validation catches a wrong guess.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from typing import Any

from antlr4 import CommonTokenStream, InputStream
from antlr4.error.ErrorListener import ErrorListener
from antlr4.tree.Tree import ParseTreeWalker
from fhirpathpy import apply_parsed_path
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.models import models
from fhirpathpy.parser.ASTPathListener import ASTPathListener
from fhirpathpy.parser.generated.FHIRPathLexer import FHIRPathLexer
from fhirpathpy.parser.generated.FHIRPathParser import FHIRPathParser

from resources.errors import FhirError, invalid

__all__ = ["RepeatsLookup", "apply_fhirpath_patch"]

RepeatsLookup = Callable[[str], bool | None]
"""ElementDefinition path (``Patient.name``, ``HumanName.given``) -> repeats, or None."""

_R4 = models["r4"]
_PATH2TYPE: dict[str, str] = _R4["path2Type"]
_CHOICES: dict[str, list[str]] = _R4["choiceTypePaths"]
_ELSEWHERE: dict[str, str] = _R4["pathsDefinedElsewhere"]
_PARENT: dict[str, str | None] = _R4["type2Parent"]
_BACKBONES = frozenset(
    ".".join(parts[:n])
    for parts in (p.split(".") for p in (*_PATH2TYPE, *_CHOICES))
    for n in range(2, len(parts))
)
_TYPED_CHOICES = {  # "Observation.valueQuantity" -> ("Observation.value", "Quantity")
    path + suffix: (path, suffix) for path, suffixes in _CHOICES.items() for suffix in suffixes
}
_PRIMITIVES = frozenset(name for name in _PARENT if name[:1].islower())  # date, string, ...
_ALWAYS_REPEATING = frozenset({"extension", "modifierExtension", "contained"})
_OPERATION_PARTS = {
    "add": frozenset({"type", "path", "name", "value"}),
    "insert": frozenset({"type", "path", "value", "index"}),
    "delete": frozenset({"type", "path"}),
    "replace": frozenset({"type", "path", "value"}),
    "move": frozenset({"type", "path", "source", "destination"}),
}
_INTEGER_KEYS = ("valueInteger", "valueUnsignedInt", "valuePositiveInt")
_ROOT_KEY = "$root"


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
    operations = _read_operations(parameters)
    result = copy.deepcopy(resource)
    for operation in operations:
        _APPLY[operation.type](_Target(result, operation, repeats))
    return result


# ---------------------------------------------------------------------------------------
# The patch document


@dataclass(frozen=True)
class _Value:
    """A value to write: ``value[x]`` (suffix set), ``resource``, or backbone parts."""

    data: Any = None
    suffix: str | None = None
    shadow: Any = None
    is_resource: bool = False
    parts: tuple[tuple[str, _Value], ...] | None = None


@dataclass(frozen=True)
class _Operation:
    expr: str
    type: str
    path: _Path
    name: str | None = None
    value: _Value | None = None
    index: int | None = None
    source: int | None = None
    destination: int | None = None


def _read_operations(parameters: Any) -> list[_Operation]:
    if not isinstance(parameters, dict) or parameters.get("resourceType") != "Parameters":
        raise invalid("A FHIRPath Patch must be a Parameters resource", "Parameters")
    entries = parameters.get("parameter", [])
    if not isinstance(entries, list):
        raise invalid("Parameters.parameter must be an array", "Parameters.parameter")
    return [_read_operation(entry, f"Parameters.parameter[{i}]") for i, entry in enumerate(entries)]


def _read_operation(entry: Any, expr: str) -> _Operation:
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
    return _Operation(
        expr=expr,
        type=op_type,
        path=_compile_or_raise(path_text, expr),
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


def _read_value(part: dict[str, Any], expr: str) -> _Value:
    keys = [k for k in part if k.startswith("value") and k[5:6].isupper()]
    sources = len(keys) + ("resource" in part) + ("part" in part)
    if sources != 1:
        raise invalid(
            f"Part {part['name']!r} needs exactly one of value[x], resource or part", expr
        )
    if keys:
        key = keys[0]
        return _Value(part[key], key[5:], part.get("_" + key))
    if "resource" in part:
        resource = part["resource"]
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            raise invalid(f"Part {part['name']!r} has an invalid resource", expr)
        return _Value(resource, is_resource=True)
    return _Value(parts=_read_value_parts(part, expr))


def _read_value_parts(part: dict[str, Any], expr: str) -> tuple[tuple[str, _Value], ...]:
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


# ---------------------------------------------------------------------------------------
# Paths: parsing into steps


@dataclass(frozen=True, eq=False)
class _Step:
    kind: str  # member | index | first | last | where | ofType | extension
    name: str = ""
    number: int = 0
    predicate: dict[str, Any] | None = None


@dataclass(frozen=True)
class _Path:
    text: str
    steps: tuple[_Step, ...]


class _RaisingListener(ErrorListener):  # type: ignore[misc]
    def syntaxError(self, recognizer: Any, symbol: Any, line: int, column: int, msg: str, e: Any):  # noqa: N802
        raise ValueError(f"syntax error at column {column + 1}: {msg}")


def _parse_fhirpath(text: str) -> dict[str, Any]:
    listener = _RaisingListener()
    lexer = FHIRPathLexer(InputStream(text))
    lexer.removeErrorListeners()
    lexer.addErrorListener(listener)
    parser = FHIRPathParser(CommonTokenStream(lexer))
    parser.removeErrorListeners()
    parser.addErrorListener(listener)
    tree = parser.entireExpression()
    ast = ASTPathListener()
    ParseTreeWalker().walk(ast, tree)
    entire = ast.parentStack[0]["children"][0]
    return entire["children"][0]


@lru_cache(maxsize=512)
def _compile_path(text: str) -> _Path:
    return _Path(text, tuple(_steps(_parse_fhirpath(text))))


def _compile_or_raise(text: str, expr: str) -> _Path:
    try:
        return _compile_path(text)
    except ValueError as exc:
        raise invalid(f"Patch path {text!r}: {exc}", expr) from None


def _steps(node: dict[str, Any]) -> Iterator[_Step]:
    kind, children = node["type"], node.get("children", [])
    if kind == "TermExpression" and children[0]["type"] == "InvocationTerm":
        yield _invocation(children[0]["children"][0])
    elif kind == "InvocationExpression":
        yield from _steps(children[0])
        yield _invocation(children[1])
    elif kind == "IndexerExpression" and len(children) == 2:
        yield from _steps(children[0])
        yield _Step("index", number=_integer_literal(children[1]))
    else:
        raise ValueError(f"unsupported expression {_describe(node)} in a patch path")


def _invocation(node: dict[str, Any]) -> _Step:
    if node["type"] == "MemberInvocation":
        return _Step("member", name=_identifier(node["children"][0]))
    if node["type"] != "FunctionInvocation":
        raise ValueError(f"unsupported expression {_describe(node)} in a patch path")
    functn = node["children"][0]["children"]
    name = _identifier(functn[0])
    params = functn[1]["children"] if len(functn) > 1 else []
    arity = {"first": 0, "last": 0, "where": 1, "ofType": 1, "extension": 1}.get(name)
    if arity is None:
        raise ValueError(f"function {name}() is not supported in a patch path")
    if len(params) != arity:
        raise ValueError(f"{name}() takes {arity} argument(s)")
    if name == "where":
        return _Step("where", predicate=params[0])
    if name == "ofType":
        return _Step("ofType", name=_type_name(params[0]))
    if name == "extension":
        return _Step("extension", name=_string_literal(params[0]))
    return _Step(name)


def _identifier(node: dict[str, Any]) -> str:
    text: str = node["text"]
    return text[1:-1] if text.startswith("`") else text


def _literal(node: dict[str, Any], kind: str) -> str | None:
    if node["type"] == "TermExpression" and node["children"][0]["type"] == "LiteralTerm":
        literal = node["children"][0]["children"][0]
        if literal["type"] == kind:
            return str(literal["text"])
    return None


def _integer_literal(node: dict[str, Any]) -> int:
    text = _literal(node, "NumberLiteral")
    if text is None or not text.isdigit():
        raise ValueError("an indexer must be a non-negative integer literal")
    return int(text)


def _string_literal(node: dict[str, Any]) -> str:
    text = _literal(node, "StringLiteral")
    if text is None:
        raise ValueError("extension() takes a string literal url")
    return _ESCAPE.sub(_unescape, text[1:-1])


_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|.)")
_ESCAPES = {"f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def _unescape(match: re.Match[str]) -> str:
    code = match.group(1)
    if code.startswith("u") and len(code) == 5:
        return chr(int(code[1:], 16))
    return _ESCAPES.get(code, code)


def _type_name(node: dict[str, Any]) -> str:
    text = str(node.get("text", ""))
    for prefix in ("FHIR.", "System."):
        text = text.removeprefix(prefix)
    if not text.replace("_", "").isalnum():
        raise ValueError("ofType() takes a type name")
    return text


def _describe(node: dict[str, Any]) -> str:
    return str(node.get("text") or node["type"])


# ---------------------------------------------------------------------------------------
# The R4 model (from fhirpathpy's tables): element definitions and types


@dataclass(frozen=True)
class _Definition:
    path: str  # ElementDefinition.path, e.g. "Patient.contact.name"
    type: str | None  # declared type, None for a backbone element or a choice
    backbone: str | None = None  # path holding a backbone element's children
    choices: tuple[str, ...] = ()  # type suffixes of a choice element ("Quantity", ...)


def _lineage(type_name: str) -> Iterator[str]:
    current: str | None = type_name
    while current:
        yield current
        current = _PARENT.get(current) or ("Element" if current == "System.String" else None)


def _lookup(type_name: str | None, name: str) -> tuple[_Definition | None, str, str | None]:
    """Definition, element name and fixed type suffix of child ``name`` of a type.

    A typed choice name (``valueQuantity``) gives the choice's definition, its name
    (``value``) and the suffix (``Quantity``).
    """
    for owner in _lineage(type_name) if type_name else ():
        path = f"{owner}.{name}"
        if path in _TYPED_CHOICES:
            base, suffix = _TYPED_CHOICES[path]
            return _definition_at(base), base.rsplit(".", 1)[1], suffix
        definition = _definition_at(path)
        if definition is not None:
            return definition, name, None
    return None, name, None


def _definition_at(path: str) -> _Definition | None:
    if path in _CHOICES:
        return _Definition(path, None, choices=tuple(_CHOICES[path]))
    if path in _PATH2TYPE:
        return _Definition(path, _PATH2TYPE[path])
    target = _ELSEWHERE.get(path, path)
    return _Definition(path, None, backbone=target) if target in _BACKBONES else None


def _suffix_type(suffix: str) -> str:
    lowered = suffix[:1].lower() + suffix[1:]
    return lowered if lowered in _PRIMITIVES else suffix


def _element_type(definition: _Definition | None, key: str, name: str, data: Any) -> str | None:
    """The FHIR type (or backbone path) of one element, for navigating its children."""
    if definition is None:
        return _resource_type(data)
    if definition.choices:
        return _suffix_type(key[len(name) :])
    if definition.backbone:
        return definition.backbone
    if definition.type == "Resource":
        return _resource_type(data)
    return "string" if definition.type == "System.String" else definition.type


def _is_a(type_name: str | None, wanted: str) -> bool:
    return type_name is not None and wanted in _lineage(type_name)


def _is_primitive_type(type_name: str | None) -> bool:
    return type_name in _PRIMITIVES or type_name == "System.String"


# ---------------------------------------------------------------------------------------
# Locations in the JSON tree


@dataclass(eq=False)
class _Loc:
    """One element: ``parent[key]`` or ``parent[key][index]``, with its ``_key`` twin."""

    parent: dict[str, Any]
    key: str
    index: int | None
    name: str
    type: str | None
    definition: _Definition | None = None
    host: _Loc | None = None  # the primitive whose ``_key`` object is ``parent``

    def value(self) -> Any:
        return _slot(self.parent, self.key, self.index)

    def shadow(self) -> Any:
        return _slot(self.parent, "_" + self.key, self.index)


def _slot(parent: dict[str, Any], key: str, index: int | None) -> Any:
    found = parent.get(key)
    if index is None:
        return None if isinstance(found, list) else found
    return found[index] if isinstance(found, list) and index < len(found) else None


def _root(resource: dict[str, Any]) -> _Loc:
    holder = {_ROOT_KEY: resource}
    return _Loc(holder, _ROOT_KEY, None, _ROOT_KEY, _resource_type(resource))


def _resource_type(data: Any) -> str | None:
    """A resource's type, when the R4 model knows it."""
    name = data.get("resourceType") if isinstance(data, dict) else None
    return name if name in _PARENT else None


def _container(loc: _Loc, name: str) -> tuple[dict[str, Any] | None, _Loc | None]:
    """The JSON object holding ``loc``'s child ``name``, and the primitive that owns it."""
    value = loc.value()
    if isinstance(value, dict):
        return value, None
    shadow = loc.shadow()
    if name in ("extension", "id") and isinstance(shadow, dict):
        return shadow, loc
    return None, None


def _member_keys(
    container: dict[str, Any], name: str, definition: _Definition | None, suffix: str | None
) -> list[str]:
    if suffix is not None:
        keys = [name + suffix]
    elif definition is not None and definition.choices:
        keys = [name + choice for choice in definition.choices]
    elif definition is None and name not in container and "_" + name not in container:
        keys = [k for k in container if k.startswith(name) and k[len(name) :][:1].isupper()]
    else:
        keys = [name]
    return [k for k in keys if k in container or "_" + k in container]


def _children(loc: _Loc, name: str) -> list[_Loc]:
    container, host = _container(loc, name)
    if container is None:
        return []
    definition, name, suffix = _lookup(loc.type, name)
    if definition is None and loc.type is not None:
        return []
    out = []
    for key in _member_keys(container, name, definition, suffix):
        values, shadows = container.get(key), container.get("_" + key)
        if isinstance(values, list) or isinstance(shadows, list):
            indexes: list[int | None] = list(range(max(_len(values), _len(shadows))))
        else:
            indexes = [None]
        for index in indexes:
            data, twin = _slot(container, key, index), _slot(container, "_" + key, index)
            if data is not None or twin is not None:
                kind = _element_type(definition, key, name, data)
                out.append(_Loc(container, key, index, name, kind, definition, host))
    return out


def _len(value: Any) -> int:
    return len(value) if isinstance(value, list) else 0


# ---------------------------------------------------------------------------------------
# Path evaluation


@dataclass
class _Target:
    """The resource being patched, one operation, and what evaluation needs."""

    resource: dict[str, Any]
    operation: _Operation
    repeats: RepeatsLookup | None
    root: _Loc = field(init=False)

    def __post_init__(self) -> None:
        self.root = _root(self.resource)

    def fail(self, message: str) -> FhirError:
        return FhirError(422, "processing", message, (self.operation.expr,))

    def evaluate(self, steps: tuple[_Step, ...]) -> list[_Loc]:
        current = [self.root]
        for position, step in enumerate(steps):
            if position == 0 and step.kind == "member" and self._is_type_prefix(step.name):
                continue
            current = _STEPS[step.kind](self, current, step)
        return current

    def single(self, steps: tuple[_Step, ...], what: str) -> _Loc:
        found = self.evaluate(steps)
        if len(found) != 1:
            text = self.operation.path.text
            raise self.fail(f"Path {text!r} must match exactly one {what}, matched {len(found)}")
        return found[0]

    def names_resource(self, name: str) -> bool:
        """Whether ``name`` is the resource's type (or a base type like DomainResource)."""
        return name == self.resource.get("resourceType") or _is_a(self.root.type, name)

    def _is_type_prefix(self, name: str) -> bool:
        if self.names_resource(name):
            return True
        if name[:1].isupper():
            raise invalid(
                f"Path {self.operation.path.text!r} does not apply to"
                f" a {self.resource.get('resourceType')} resource",
                self.operation.expr,
            )
        return False


def _step_member(target: _Target, current: list[_Loc], step: _Step) -> list[_Loc]:
    found = [child for loc in current for child in _children(loc, step.name)]
    if not found and current and all(_lookup(loc.type, step.name)[0] is None for loc in current):
        known = {loc.type for loc in current}
        if None not in known:
            raise invalid(
                f"Path {target.operation.path.text!r}: {' or '.join(sorted(map(str, known)))}"
                f" has no element {step.name!r}",
                target.operation.expr,
            )
    return found


def _step_index(target: _Target, current: list[_Loc], step: _Step) -> list[_Loc]:
    return current[step.number : step.number + 1]


def _step_first(target: _Target, current: list[_Loc], step: _Step) -> list[_Loc]:
    return current[:1]


def _step_last(target: _Target, current: list[_Loc], step: _Step) -> list[_Loc]:
    return current[-1:]


def _step_of_type(target: _Target, current: list[_Loc], step: _Step) -> list[_Loc]:
    return [loc for loc in current if _is_a(loc.type, step.name)]


def _step_extension(target: _Target, current: list[_Loc], step: _Step) -> list[_Loc]:
    found = _step_member(target, current, _Step("member", name="extension"))
    return [loc for loc in found if _url(loc.value()) == step.name]


def _url(value: Any) -> Any:
    return value.get("url") if isinstance(value, dict) else None


def _step_where(target: _Target, current: list[_Loc], step: _Step) -> list[_Loc]:
    return [loc for loc in current if _matches(target, loc, step)]


def _matches(target: _Target, loc: _Loc, step: _Step) -> bool:
    node = ResourceNode.create_node(loc.value(), loc.type, loc.shadow())
    variables = {"resource": target.resource, "rootResource": target.resource}
    try:
        result = apply_parsed_path(node, {"children": [step.predicate]}, variables, _R4)
    except Exception as exc:  # fhirpathpy raises many kinds on bad predicates
        raise invalid(
            f"where() in path {target.operation.path.text!r} could not be evaluated: {exc}",
            target.operation.expr,
        ) from None
    if len(result) > 1:
        raise invalid(
            f"where() in path {target.operation.path.text!r} must give one boolean",
            target.operation.expr,
        )
    return bool(result) and (result[0] is True or not isinstance(result[0], bool))


_STEPS: dict[str, Callable[[_Target, list[_Loc], _Step], list[_Loc]]] = {
    "member": _step_member,
    "index": _step_index,
    "first": _step_first,
    "last": _step_last,
    "where": _step_where,
    "ofType": _step_of_type,
    "extension": _step_extension,
}


# ---------------------------------------------------------------------------------------
# Writing JSON: arrays of primitives move together with their ``_name`` twins


_Pairs = list[tuple[Any, Any]]


def _edit_list(container: dict[str, Any], key: str, edit: Callable[[_Pairs], Any]) -> None:
    """Edit ``container[key]`` and its ``_key`` twin as one list of (value, twin) pairs.

    A list left with no values (or no twins) is removed, so deleting the last item
    removes the element, and twins appear only while some item has one.
    """
    values, shadows = container.get(key), container.get("_" + key)
    size = max(_len(values), _len(shadows))
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


def _write_slot(
    parent: dict[str, Any], key: str, index: int | None, data: Any, shadow: Any
) -> None:
    if index is not None:
        _edit_list(parent, key, lambda pairs: pairs.__setitem__(index, (data, shadow)))
        return
    for name, item in ((key, data), ("_" + key, shadow)):
        if item is None:
            parent.pop(name, None)
        else:
            parent[name] = item


def _remove(loc: _Loc) -> None:
    if loc.index is None:
        loc.parent.pop(loc.key, None)
        loc.parent.pop("_" + loc.key, None)
    else:
        index = loc.index
        _edit_list(loc.parent, loc.key, lambda pairs: pairs.pop(index))
    if loc.host is not None:
        _prune_shadow(loc.host)


def _prune_shadow(host: _Loc) -> None:
    """Drop a primitive's ``_name`` object once it is empty (and the element if valueless)."""
    if host.shadow():
        return
    if host.index is None:
        host.parent.pop("_" + host.key, None)
    elif host.value() is None:
        _remove(host)
    else:
        _write_slot(host.parent, host.key, host.index, host.value(), None)


def _writable_container(target: _Target, loc: _Loc, name: str) -> dict[str, Any]:
    """The object to write ``loc``'s child ``name`` into (a primitive's ``_name`` twin)."""
    value = loc.value()
    if isinstance(value, dict):
        return value
    if name not in ("extension", "id") or (value is not None and not _is_scalar(value)):
        raise target.fail(f"Cannot put {name!r} inside {loc.name!r}: it is not a complex element")
    shadow = loc.shadow()
    if not isinstance(shadow, dict):
        shadow = {}
        _write_slot(loc.parent, loc.key, loc.index, value, shadow)
    return shadow


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool | Decimal)


# ---------------------------------------------------------------------------------------
# Values: from patch parts to JSON


def _resolve_name(
    target: _Target, type_name: str | None, name: str
) -> tuple[_Definition | None, str, str | None]:
    """Like _lookup, failing for a name that the (known) type does not define."""
    found = _lookup(type_name, name)
    if found[0] is None and type_name is not None:
        raise target.fail(f"{type_name} has no element {name!r}")
    return found


def _materialize(
    target: _Target, value: _Value, definition: _Definition | None, name: str
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
            raise target.fail(f"{definition.path}[x] cannot be a {_suffix_type(value.suffix)}")
        return name + value.suffix, data, shadow
    _check_type(target, definition, value.suffix)
    return name, data, shadow


def _check_type(target: _Target, definition: _Definition | None, suffix: str) -> None:
    if definition is None:
        return
    given = _suffix_type(suffix)
    if definition.backbone:
        raise target.fail(f"{definition.path} is a backbone element: give its content as parts")
    declared = definition.type
    if _is_primitive_type(given) and _is_primitive_type(declared):
        return  # same JSON shape; the lexical form is checked when the result is validated
    if declared == "Resource":
        raise target.fail(f"{definition.path} holds resources: give the value as a resource")
    if not _is_a(given, declared or ""):
        raise target.fail(f"{definition.path} is a {declared}, not a {given}")


def _build_parts(
    target: _Target, parts: tuple[tuple[str, _Value], ...], definition: _Definition | None
) -> dict[str, Any]:
    if definition is not None and (definition.choices or _is_primitive_type(definition.type)):
        raise target.fail(f"{definition.path} needs a typed value, not parts")
    type_name = None if definition is None else definition.backbone or definition.type
    built: dict[str, Any] = {}
    for name, value in parts:
        _add_member(target, built, type_name, name, value)
    return built


def _add_member(
    target: _Target, container: dict[str, Any], type_name: str | None, name: str, value: _Value
) -> None:
    definition, name, suffix = _resolve_name(target, type_name, name)
    if suffix is not None and value.suffix != suffix:
        raise target.fail(f"Element {name + suffix!r} needs a value{suffix}")
    key, data, shadow = _materialize(target, value, definition, name)
    existing = container.get(key) if key in container else container.get("_" + key)
    repeats = _repeats(target, definition, existing)
    if repeats is None:
        repeats = name in _ALWAYS_REPEATING
    if repeats:
        _edit_list(container, key, lambda pairs: pairs.append((data, shadow)))
    elif _member_keys(container, name, definition, None):
        raise target.fail(f"{name!r} already has a value: use replace, or delete it first")
    else:
        _write_slot(container, key, None, data, shadow)


def _repeats(target: _Target, definition: _Definition | None, existing: Any) -> bool | None:
    """Whether an element repeats: from the JSON, the definition, else None (unknown)."""
    if existing is not None:
        return isinstance(existing, list)
    if definition is not None and definition.choices:
        return False
    if definition is not None and target.repeats is not None:
        return target.repeats(definition.path)
    return None


# ---------------------------------------------------------------------------------------
# The five operations


def _add(target: _Target) -> None:
    op = target.operation
    assert op.name is not None and op.value is not None
    loc = target.single(op.path.steps, "element")
    container = _writable_container(target, loc, op.name)
    _add_member(target, container, loc.type, op.name, op.value)


def _delete(target: _Target) -> None:
    found = target.evaluate(target.operation.path.steps)
    if not found:
        return
    if len(found) > 1:
        raise target.fail(
            f"Path {target.operation.path.text!r} matched {len(found)} elements;"
            " delete removes only one"
        )
    if found[0] is target.root:
        raise target.fail("The resource itself cannot be deleted by a patch")
    _remove(found[0])


def _replace(target: _Target) -> None:
    op = target.operation
    assert op.value is not None
    loc = target.single(op.path.steps, "element")
    if loc is target.root:
        raise target.fail("The resource itself cannot be replaced by a patch")
    key, data, shadow = _materialize(target, op.value, loc.definition, loc.name)
    if key != loc.key:  # a choice element changing type
        _write_slot(loc.parent, loc.key, None, None, None)
    _write_slot(loc.parent, key, loc.index, data, shadow)


def _list_location(target: _Target) -> tuple[dict[str, Any], _Definition | None, str]:
    """The object holding the list that an insert or move path names, and its key."""
    steps = target.operation.path.steps
    last = steps[-1]
    if last.kind != "member" or (len(steps) == 1 and target.names_resource(last.name)):
        raise target.fail(f"Path {target.operation.path.text!r} must end with a list's name")
    owner = target.single(steps[:-1], "element holding the list")
    definition, name, suffix = _resolve_name(target, owner.type, last.name)
    container = _writable_container(target, owner, name)
    existing = container.get(name, container.get("_" + name))
    if suffix is not None or _repeats(target, definition, existing) is False:
        raise target.fail(f"{last.name!r} is not a list")
    return container, definition, name


def _insert(target: _Target) -> None:
    op = target.operation
    assert op.value is not None and op.index is not None
    container, definition, name = _list_location(target)
    size = max(_len(container.get(name)), _len(container.get("_" + name)))
    if op.index > size:
        raise target.fail(f"Index {op.index} is out of range: the list has {size} item(s)")
    key, data, shadow = _materialize(target, op.value, definition, name)
    index = op.index
    _edit_list(container, key, lambda pairs: pairs.insert(index, (data, shadow)))


def _move(target: _Target) -> None:
    op = target.operation
    assert op.source is not None and op.destination is not None
    container, _, name = _list_location(target)
    size = max(_len(container.get(name)), _len(container.get("_" + name)))
    for label, index in (("Source", op.source), ("Destination", op.destination)):
        if index >= size:
            raise target.fail(f"{label} {index} is out of range: the list has {size} item(s)")
    source, destination = op.source, op.destination
    _edit_list(container, name, lambda pairs: pairs.insert(destination, pairs.pop(source)))


_APPLY: dict[str, Callable[[_Target], None]] = {
    "add": _add,
    "insert": _insert,
    "delete": _delete,
    "replace": _replace,
    "move": _move,
}
