"""Validate a resource a client sent, before it is stored.

Implements, for FHIR R4 (4.0.1):

- the JSON representation rules, https://hl7.org/fhir/R4/json.html (no empty values,
  ``null`` only in primitive arrays aligned with their ``_name`` array, shape of ``_name``
  objects, JSON types of primitives, arrays exactly where elements repeat, ``resourceType``);
- the element structure of each resource and datatype (unknown elements, cardinality,
  required elements, one choice ``[x]`` type at most),
  https://hl7.org/fhir/R4/elementdefinition.html;
- the primitive value formats, https://hl7.org/fhir/R4/datatypes.html#primitive
  (the R4 regexes from the generated definitions, plus fhir.resources' calendar checks);
- required bindings, https://hl7.org/fhir/R4/terminologies.html#required;
- rule ele-1, https://hl7.org/fhir/R4/element.html#invs (no element without value or children).

This is the only module that imports fhir.resources. Its R4B models (identical to R4 for
the resources the server is built for) give the element structure and the calendar
checks; R4 knowledge comes from ``resources.definitions``. The differences between R4 and
R4B, found by comparing the R4 StructureDefinitions with the R4B models and by running the
official R4 examples, are handled explicitly below: elements R4B added (``_R4B_ONLY``),
the Meta choice types R4 has and R4B dropped (``_R4_ONLY_META``: ``Extension.valueMeta``
...), the ``_valueX`` extensions of ``Extension`` values that the R4B model lacks
(``_with_extension``), elements R4 requires and R4B does not (``_R4_REQUIRED``), and R4
types R4B redesigned (``_REDESIGNED_IN_R4B``). The R4 parts the R4B model lacks are set
aside before it runs and validated on their own.
"""

from __future__ import annotations

import logging
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from functools import cache
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import BaseModel, ValidationError

from resources import definitions
from resources.definitions import ValueSetCodes
from resources.errors import Issue

log = logging.getLogger(__name__)

# --- R4 versus R4B ----------------------------------------------------------------------

# R4 types whose R4B model is a different design (so the R4B model cannot validate them).
_REDESIGNED_IN_R4B = frozenset({"Evidence", "EvidenceVariable"})
# Elements of R4B models that R4 does not have, by model class name.
_R4B_ONLY: dict[str, frozenset[str]] = {
    "ActivityDefinition": frozenset({"subjectCanonical"}),
    "PlanDefinition": frozenset({"subjectCanonical"}),
    "PlanDefinitionAction": frozenset({"subjectCanonical"}),
    "Extension": frozenset({"valueCodeableReference", "valueRatioRange"}),
    "ElementDefinitionExample": frozenset({"valueCodeableReference", "valueRatioRange"}),
    "ElementDefinition": frozenset(
        f"{prefix}{type_}"
        for prefix in ("defaultValue", "fixed", "pattern")
        for type_ in ("CodeableReference", "RatioRange")
    ),
}
# Choice types of R4 that take a Meta, which R4B dropped: {model: {json name: choice}}.
_R4_ONLY_META: dict[str, dict[str, str]] = {
    "Extension": {"valueMeta": "value"},
    "ElementDefinitionExample": {"valueMeta": "value"},
    "ElementDefinition": {
        "defaultValueMeta": "defaultValue",
        "fixedMeta": "fixed",
        "patternMeta": "pattern",
    },
}
# Elements that are required (min 1) in R4 but optional in R4B.
_R4_REQUIRED: dict[str, frozenset[str]] = {"MarketingStatus": frozenset({"country", "dateRange"})}
_NOT_JSON_ELEMENTS = frozenset({"fhir_comments"})

# --- Model metadata --------------------------------------------------------------------

_BOOLEAN, _INTEGER, _DECIMAL, _STRING, _COMPLEX, _RESOURCE = range(6)
_KIND_OF_PRIMITIVE = {
    "boolean": _BOOLEAN,
    "integer": _INTEGER,
    "positiveInt": _INTEGER,
    "unsignedInt": _INTEGER,
    "decimal": _DECIMAL,
}
# fhir.resources annotation marker class -> R4 primitive type.
_PRIMITIVE_OF_MARKER = {
    "String": "string", "Code": "code", "Id": "id", "Uri": "uri", "Url": "url",
    "Canonical": "canonical", "Oid": "oid", "UuidVersion": "uuid", "Uuid": "uuid",
    "Markdown": "markdown", "EncodedBytes": "base64Binary", "Base64Binary": "base64Binary",
    "Date": "date", "DateTime": "dateTime", "Instant": "instant", "Time": "time",
    "Integer": "integer", "PositiveInt": "positiveInt", "UnsignedInt": "unsignedInt",
    "Decimal": "decimal", "Xhtml": "xhtml", "Boolean": "boolean",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Field:
    """One JSON property of a model: a FHIR element (one type of it, for a choice)."""

    name: str
    element: str  # the element's name in its definition path: "value[x]" for choices
    many: bool
    kind: int
    type: str  # R4 primitive type, or the model class name
    model: type[BaseModel] | None = None
    choice: str | None = None
    required: bool = False
    r4_only: bool = False  # an R4 element the R4B model lacks (validated on its own)
    extensible: bool = False  # a primitive that may have a `_name` companion in R4
    ext_aside: bool = False  # ... which the R4B model lacks (validated on its own)


@dataclass(frozen=True)
class _Model:
    name: str
    fields: dict[str, _Field]
    choices: dict[str, tuple[str, ...]]
    required: tuple[_Field, ...]
    required_choices: tuple[str, ...]


def _unwrap(annotation: Any) -> tuple[bool, Any]:
    """(repeats, inner type) of a field annotation such as Optional[List[X]]."""
    many = False
    while True:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        origin = typing.get_origin(annotation)
        if origin is list:
            many, annotation = True, args[0]
        elif origin is not None and origin is not typing.Annotated and len(args) == 1:
            annotation = args[0]
        else:
            return many, annotation


def _describe(inner: Any) -> tuple[int, str, type[BaseModel] | None]:
    """(kind, type name, model) of an unwrapped annotation."""
    if typing.get_origin(inner) is typing.Annotated:
        marker = type(typing.get_args(inner)[1]).__name__
        primitive = _PRIMITIVE_OF_MARKER.get(marker, "string")
        return _KIND_OF_PRIMITIVE.get(primitive, _STRING), primitive, None
    if inner is bool:
        return _BOOLEAN, "boolean", None
    model = inner.get_model_klass()
    if inner.__name__ == "ResourceType":
        return _RESOURCE, "Resource", model
    return _COMPLEX, model.__name__, model


def _field(name: str, info: Any, model_name: str) -> _Field:
    many, inner = _unwrap(info.annotation)
    kind, type_name, model = _describe(inner)
    extra = info.json_schema_extra or {}
    choice = extra.get("one_of_many")
    required = bool(extra.get("element_required") or info.is_required())
    required = required or name in _R4_REQUIRED.get(model_name, ())
    element = f"{choice}[x]" if choice else name
    return _Field(name, element, many, kind, type_name, model, choice, required and not choice)


def _with_extension(f: _Field, in_library: bool, model_name: str) -> _Field:
    """Whether a primitive may have a `_name` companion: every R4 primitive but the
    ``id`` of elements and resources and ``Extension.url``; R4B lacks it on extension
    values (``Extension._valueString``)."""
    if f.kind >= _COMPLEX:
        return f
    r4 = in_library or (model_name == "Extension" and f.choice == "value")
    return replace(f, extensible=r4, ext_aside=r4 and not in_library)


def _library_fields(cls: type[BaseModel]) -> dict[str, _Field]:
    """The JSON properties of an R4B model, without the ones R4 does not have."""
    name = cls.__name__
    dropped = _R4B_ONLY.get(name, frozenset()) | _NOT_JSON_ELEMENTS
    aliases = {info.alias for info in cls.model_fields.values()}
    fields: dict[str, _Field] = {}
    for info in cls.model_fields.values():
        alias = info.alias or ""
        if not alias.startswith("_") and alias not in dropped:
            f = _field(alias, info, name)
            fields[alias] = _with_extension(f, f"_{alias}" in aliases, name)
    return fields


def _r4_only_fields(name: str) -> dict[str, _Field]:
    """The R4 choice types of a model that R4B dropped (``Extension.valueMeta``)."""
    meta = get_fhir_model_class("Meta")
    return {
        alias: _Field(alias, f"{choice}[x]", False, _COMPLEX, "Meta", meta, choice, r4_only=True)
        for alias, choice in _R4_ONLY_META.get(name, {}).items()
    }


def _required_choices(cls: type[BaseModel]) -> tuple[str, ...]:
    groups = set()
    for info in cls.model_fields.values():
        extra = info.json_schema_extra or {}
        if extra.get("one_of_many") and extra.get("one_of_many_required"):
            groups.add(extra["one_of_many"])
    return tuple(sorted(groups))


@cache
def _model(cls: type[BaseModel]) -> _Model:
    """The JSON properties of an R4B model, corrected to R4."""
    fields = _library_fields(cls) | _r4_only_fields(cls.__name__)
    choices: dict[str, tuple[str, ...]] = {}
    for f in fields.values():
        if f.choice:
            choices[f.choice] = (*choices.get(f.choice, ()), f.name)
    required = tuple(f for f in fields.values() if f.required)
    return _Model(cls.__name__, fields, choices, required, _required_choices(cls))


@dataclass(frozen=True, slots=True)
class _Slot:
    """A field as seen from one definition path: where its children are defined, binding."""

    field: _Field
    child_path: str
    binding: ValueSetCodes | None
    extension_key: str  # "_name"


@dataclass(frozen=True)
class _Scope:
    """A model used at a definition path: JSON key -> (slot, is the `_name` key)."""

    model: _Model
    keys: dict[str, tuple[_Slot, bool]]


@cache
def _scope(cls: type[BaseModel], path: str) -> _Scope:
    """The fields of a model used at a definition path (``Patient``, ``Patient.contact``)."""
    data_types = definitions.data_types()
    profiles = definitions.type_profiles()
    references = definitions.content_references()
    model = _model(cls)
    keys: dict[str, tuple[_Slot, bool]] = {}
    for name, f in model.fields.items():
        if f.kind == _COMPLEX and (f.type in data_types or f.type in profiles):
            child = profiles.get(f.type, f.type)
        else:
            child = f"{path}.{f.element}"
            child = references.get(child, child)
        binding = definitions.required_binding(f"{path}.{f.element}")
        slot = _Slot(f, child, binding, f"_{name}")
        keys[name] = (slot, False)
        if f.extensible:
            keys[slot.extension_key] = (slot, True)
    return _Scope(model, keys)


@cache
def _resource_class(resource_type: str) -> type[BaseModel] | None:
    """The R4B model of an R4 resource type, when it validates that type as R4 does."""
    if resource_type not in definitions.resource_types() or resource_type in _REDESIGNED_IN_R4B:
        return None
    try:
        cls = get_fhir_model_class(resource_type)
    except (ValueError, KeyError):
        return None
    get_type = getattr(cls, "get_resource_type", None)
    return cls if get_type is not None and get_type() == resource_type else None


def validator_covers(resource_type: str) -> bool:
    """True when ``resource_type`` is an R4 type and this module can validate it."""
    return isinstance(resource_type, str) and _resource_class(resource_type) is not None


# --- Primitive values ------------------------------------------------------------------

_INT32 = range(-(2**31), 2**31)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_BASE64 = re.compile(r"[A-Za-z0-9+/=]*")
_SPACE = re.compile(r"[ \t\r\n]+")


@cache
def _regex(primitive: str) -> Callable[[str], Any] | None:
    """The R4 regex of a primitive type (XML Schema semantics: ``\\s`` is ASCII)."""
    pattern = definitions.primitive_types().get(primitive)
    return re.compile(pattern, re.ASCII).fullmatch if pattern else None


def _base64_ok(text: str) -> bool:
    """R4's base64Binary regex, without its exponential backtracking on long input."""
    compact = _SPACE.sub("", text)
    return len(compact) % 4 == 0 and _BASE64.fullmatch(compact) is not None


def _string_problem(value: str, primitive: str) -> str | None:
    if value == "":
        return "Empty strings are not allowed; omit the element instead"
    if _CONTROL.search(value):
        return "Strings must not contain control characters other than tab, CR and LF"
    if primitive == "base64Binary":
        return None if _base64_ok(value) else "Not a valid base64Binary value"
    match = _regex(primitive)
    if match is not None and match(value) is None:
        return f"{value[:100]!r} is not a valid {primitive}"
    return None


def _number_problem(value: Any, f: _Field) -> str | None:
    if f.kind == _INTEGER:
        if value not in _INT32:
            return f"{value} is outside the range of a 32-bit {f.type}"
        match = _regex(f.type)
        return None if match is None or match(str(value)) else f"{value} is not a valid {f.type}"
    text = getattr(value, "raw", None) or str(value)
    match = _regex("decimal")
    return None if match is None or match(text) else f"{text} is not a valid decimal"


def _json_type_ok(value: Any, kind: int) -> bool:
    if kind == _BOOLEAN:
        return isinstance(value, bool)
    if kind == _INTEGER:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == _DECIMAL:
        return isinstance(value, int | Decimal | float) and not isinstance(value, bool)
    return isinstance(value, str)


_JSON_TYPE_NAMES = {
    _BOOLEAN: "a JSON boolean",
    _INTEGER: "a JSON integer number",
    _DECIMAL: "a JSON number",
    _STRING: "a JSON string",
}


def _json_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float | Decimal):
        return "a number"
    return {str: "a string", dict: "an object", list: "an array"}.get(type(value), "a value")


# --- The walk ----------------------------------------------------------------------------


@dataclass
class _Walk:
    """One pass over the JSON, collecting issues and the R4-only parts to set aside."""

    issues: list[Issue] = field(default_factory=list)
    set_aside: set[tuple[int, str]] = field(default_factory=set)  # (id(parent), key)
    asides: list[tuple[str, dict[str, Any], type[BaseModel]]] = field(default_factory=list)

    def aside(
        self, parent: dict[str, Any], key: str, value: Any, expr: str, cls: type[BaseModel]
    ) -> None:
        """Keep an R4 property the R4B model lacks away from it; validate it on its own."""
        self.set_aside.add((id(parent), key))
        if isinstance(value, dict):
            self.asides.append((expr, value, cls))

    def add(self, code: str, expression: str, diagnostics: str) -> None:
        where = (expression,) if expression else ()
        self.issues.append(Issue(code, diagnostics, expression=where))

    def resource(self, node: Any, expr: str) -> type[BaseModel] | None:
        """Check a resource object; return its model when it is one this module covers."""
        if not isinstance(node, dict):
            self.add("structure", expr, f"A resource must be a JSON object, not {_json_name(node)}")
            return None
        resource_type = node.get("resourceType")
        where = f"{expr}.resourceType" if expr else "resourceType"
        if resource_type is None:
            self.add("required", where, "The resourceType property is missing")
            return None
        if not isinstance(resource_type, str):
            self.add("structure", where, "resourceType must be a JSON string")
            return None
        if not definitions.is_resource_type(resource_type):
            self.add("structure", where, f"{resource_type!r} is not an R4 resource type")
            return None
        cls = _resource_class(resource_type)
        if cls is None:
            self.add("not-supported", where, f"{resource_type} resources cannot be validated")
            return None
        self.object(node, cls, resource_type, expr or resource_type, role="resource")
        return cls

    def object(
        self,
        node: dict[str, Any],
        cls: type[BaseModel],
        path: str,
        expr: str,
        role: str = "element",
    ) -> None:
        """Check one JSON object against a model at a definition path.

        ``role`` is "resource", "element", or "extensions" (the ``_name`` of a primitive).
        """
        if not node:
            self.add("structure", expr, "Empty objects are not allowed; omit the element")
            return
        scope = _scope(cls, path)
        keys = scope.keys
        present: set[str] = set()
        for key, value in node.items():
            entry = keys.get(key)
            if entry is None:
                if key != "resourceType" or role != "resource":
                    self.add("structure", f"{expr}.{key}", f"Unknown element '{key}'")
                continue
            slot, is_extension = entry
            name = slot.field.name
            present.add(name)
            if not is_extension:
                self.element(node, slot, value, f"{expr}.{key}")
                continue
            if slot.field.ext_aside:
                self.aside(node, key, value, f"{expr}.{name}", _primitive_extension_class())
            self.extensions(node, slot.field, value, f"{expr}.{name}")
        self.completeness(scope.model, present, expr, role == "element")

    def completeness(self, model: _Model, present: set[str], expr: str, ele1: bool) -> None:
        """Required elements, one type per choice, and rule ele-1."""
        for f in model.required:
            if f.name not in present:
                self.add("required", f"{expr}.{f.name}", "Required element is missing (min 1)")
        for group in model.required_choices:
            if not present.intersection(model.choices[group]):
                self.add("required", f"{expr}.{group}[x]", "Required element is missing (min 1)")
        for group, names in model.choices.items():
            used = sorted(present.intersection(names))
            if len(used) > 1:
                self.add(
                    "invalid",
                    f"{expr}.{group}[x]",
                    f"Only one type of {group}[x] is allowed, found {', '.join(used)}",
                )
        if ele1 and present and present <= {"id"}:
            self.add("invalid", expr, "An element needs a value or children besides 'id' (ele-1)")

    def element(self, parent: dict[str, Any], slot: _Slot, value: Any, expr: str) -> None:
        f = slot.field
        if f.r4_only and f.model is not None:
            self.aside(parent, f.name, value, expr, f.model)
        if not f.many:
            if isinstance(value, list):
                self.add("structure", expr, f"'{f.name}' does not repeat: it must not be an array")
            else:
                self.item(slot, value, expr, has_extension=slot.extension_key in parent)
            return
        if not isinstance(value, list):
            self.add("structure", expr, f"'{f.name}' repeats: it must be a JSON array")
            return
        if not value:
            self.add("structure", expr, "Empty arrays are not allowed; omit the element")
        extensions = parent.get(slot.extension_key)
        for index, item in enumerate(value):
            has_extension = (
                isinstance(extensions, list)
                and index < len(extensions)
                and extensions[index] is not None
            )
            self.item(slot, item, f"{expr}[{index}]", has_extension)

    def item(self, slot: _Slot, value: Any, expr: str, has_extension: bool) -> None:
        """One value of an element (an array item or the single value)."""
        f = slot.field
        if value is None:
            if not (f.many and f.kind < _COMPLEX and has_extension):
                self.add(
                    "structure",
                    expr,
                    "null is only allowed in an array of primitives, "
                    "aligned with an extension in the matching '_' array",
                )
            return
        if f.kind == _RESOURCE:
            self.resource(value, expr)
        elif f.kind == _COMPLEX:
            if not isinstance(value, dict):
                self.add(
                    "structure", expr, f"Expected an object ({f.type}), found {_json_name(value)}"
                )
                return
            self.object(value, f.model, slot.child_path, expr)  # type: ignore[arg-type]
            if slot.binding is not None:
                self.coded(value, f.type, slot.binding, expr)
        else:
            self.primitive(slot, value, expr)

    def primitive(self, slot: _Slot, value: Any, expr: str) -> None:
        f = slot.field
        if not _json_type_ok(value, f.kind):
            expected = _JSON_TYPE_NAMES[min(f.kind, _STRING)]
            found = _json_name(value)
            self.add("structure", expr, f"A value of type {f.type} must be {expected}, not {found}")
            return
        if f.kind == _BOOLEAN:
            return
        problem = _number_problem(value, f) if f.kind < _STRING else _string_problem(value, f.type)
        if problem:
            self.add("value", expr, problem)
        elif slot.binding is not None and not slot.binding.has_code(value):
            self.add("code-invalid", expr, _outside(f"{value!r} is not in", slot.binding))

    def extensions(self, parent: dict[str, Any], f: _Field, value: Any, expr: str) -> None:
        """The ``_name`` companion of a primitive: its id and extensions."""
        values = parent.get(f.name)
        if not f.many:
            if isinstance(value, list):
                self.add("structure", expr, f"'_{f.name}' must be an object, not an array")
            else:
                self.extension(value, expr, has_value=values is not None)
            return
        if not isinstance(value, list) or not value:
            self.add("structure", expr, f"'_{f.name}' must be a non-empty array")
            return
        if isinstance(values, list) and len(values) != len(value):
            self.add("structure", expr, f"'_{f.name}' must have as many items as '{f.name}'")
        for index, item in enumerate(value):
            has_value = (
                isinstance(values, list) and index < len(values) and values[index] is not None
            )
            if item is None and not has_value:
                self.add(
                    "structure",
                    f"{expr}[{index}]",
                    f"null in '_{f.name}' needs a value at the same index in '{f.name}'",
                )
            elif item is not None:
                self.extension(item, f"{expr}[{index}]", has_value)

    def extension(self, value: Any, expr: str, has_value: bool) -> None:
        if not isinstance(value, dict):
            self.add(
                "structure",
                expr,
                f"A primitive's extensions must be an object, not {_json_name(value)}",
            )
            return
        self.object(value, _primitive_extension_class(), "Element", expr, role="extensions")
        if value and "extension" not in value and not has_value:
            self.add("invalid", expr, "A primitive needs a value or extensions (ele-1)")

    def coded(self, value: dict[str, Any], type_: str, binding: ValueSetCodes, expr: str) -> None:
        """A Coding or CodeableConcept under a required binding."""
        if type_ == "Coding":
            if not binding.has_coding(value.get("system"), value.get("code")):
                self.add("code-invalid", expr, _outside("The coding is not in", binding))
        elif type_ == "CodeableConcept":
            codings = value.get("coding")
            codings = (
                [c for c in codings if isinstance(c, dict)] if isinstance(codings, list) else []
            )
            if not any(binding.has_coding(c.get("system"), c.get("code")) for c in codings):
                what = "None of the codings is in" if codings else "A coding is needed from"
                self.add("code-invalid", expr, _outside(what, binding))


def _outside(what: str, binding: ValueSetCodes) -> str:
    """E.g. "'bogus' is not in the required value set <url> (allowed: a, b)"."""
    message = f"{what} the required value set {binding.url}"
    if len(binding.codes) <= 12:
        message += f" (allowed: {', '.join(sorted(binding.codes))})"
    return message


@cache
def _primitive_extension_class() -> type[BaseModel]:
    return get_fhir_model_class("FHIRPrimitiveExtension")


# --- fhir.resources ----------------------------------------------------------------------

_PYDANTIC_CODES = {
    "missing": "required",
    "model_field_validation.missing": "required",
    "extra_forbidden": "structure",
}
_ELEMENT_NAME = re.compile(r"_?[A-Za-z][A-Za-z0-9]*")


def _expression(root: str, loc: tuple[Any, ...], keep_underscore: bool) -> str:
    """FHIRPath-like path of a pydantic error location: ``_given`` is ``given``, unless
    the error is about the ``_given`` property itself (``keep_underscore``)."""
    parts = [root]
    last = len(loc) - 1
    for index, item in enumerate(loc):
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif isinstance(item, str) and item != "root" and _ELEMENT_NAME.fullmatch(item):
            name = item if keep_underscore and index == last else item.lstrip("_")
            parts.append("." + name)
    return "".join(parts)


def _issue_code(error_type: str) -> str:
    if error_type in _PYDANTIC_CODES:
        return _PYDANTIC_CODES[error_type]
    return "structure" if error_type.endswith("_type") else "value"


def _model_issues(cls: type[BaseModel], data: dict[str, Any], root: str) -> list[Issue]:
    try:
        cls.model_validate(data)
    except ValidationError as exc:
        return [_pydantic_issue(error, root) for error in exc.errors()]
    return []


def _pydantic_issue(error: Any, root: str) -> Issue:
    error_type = str(error.get("type", ""))
    loc = tuple(error.get("loc", ()))
    expression = _expression(root, loc, keep_underscore=error_type == "extra_forbidden")
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    code = _issue_code(error_type)
    if not loc:
        code = "invalid"
    return Issue(code, message, expression=(expression,))


def _without(node: Any, set_aside: set[tuple[int, str]]) -> Any:
    """A copy of the JSON without the set-aside properties (R4-only Meta values)."""
    if isinstance(node, dict):
        return {
            k: _without(v, set_aside) for k, v in node.items() if (id(node), k) not in set_aside
        }
    if isinstance(node, list):
        return [_without(item, set_aside) for item in node]
    return node


_STEP = re.compile(r"[.\[]")


def _with_ancestors(path: str) -> set[str]:
    """``a.b[0].c`` -> {a, a.b, a.b[0], a.b[0].c}."""
    return {path[: m.start()] for m in _STEP.finditer(path)} | {path}


def _uncovered(issues: list[Issue], walked: list[Issue]) -> list[Issue]:
    """The library's issues about places the walk did not report (nor inside, nor around)."""
    reported = {i.expression[0] for i in walked if i.expression}
    around: set[str] = set()
    for where in reported:
        around |= _with_ancestors(where)
    kept = []
    for issue in issues:
        where = issue.expression[0] if issue.expression else ""
        if where not in around and not _with_ancestors(where) & reported:
            kept.append(issue)
    return kept


def _library_issues(
    walk: _Walk, cls: type[BaseModel], data: dict[str, Any], root: str
) -> list[Issue]:
    body = _without(data, walk.set_aside) if walk.set_aside else data
    issues = _model_issues(cls, body, root)
    for expr, value, model in walk.asides:
        issues.extend(_model_issues(model, value, expr))
    return _uncovered(issues, walk.issues) if walk.issues else issues


# --- Public API --------------------------------------------------------------------------


def validate(resource: dict[str, Any]) -> list[Issue]:
    """All the problems of a resource (as parsed by ``fhir_json.loads``); [] when valid."""
    walk = _Walk()
    try:
        cls = walk.resource(resource, "")
        if cls is None:
            return walk.issues
        root = resource["resourceType"]
        return walk.issues + _library_issues(walk, cls, resource, root)
    except RecursionError:
        return [Issue("structure", "The resource is nested too deeply to be validated")]
    except Exception:  # a validator bug must not become a 500; the tests keep it at zero
        if walk.issues:
            return walk.issues
        log.exception("validation failed unexpectedly")
        return [Issue("exception", "The resource could not be validated")]
