"""The element structure of R4 resources and datatypes, read from the fhir.resources models.

``validate()`` no longer uses this module: it walks the structure compiled from the R4
StructureDefinitions (``structure``). The tests compare the two, element by element.

Validation against the structure definitions, https://hl7.org/fhir/R4/validation.html
(elements, cardinality, choice types: https://hl7.org/fhir/R4/elementdefinition.html).

This is the only module that imports fhir.resources. Its R4B models (identical to R4 for
the resources the server is built for) give the element structure; R4 knowledge comes
from ``resources.definitions``. The differences between R4 and R4B, found by comparing
the R4 StructureDefinitions with the R4B models and by running the official R4 examples,
are handled explicitly here: elements R4B added (``_R4B_ONLY``), the Meta choice types R4
has and R4B dropped (``_R4_ONLY_META``: ``Extension.valueMeta`` ...), the ``_valueX``
extensions of ``Extension`` values that the R4B model lacks (``_with_extension``),
elements R4 requires and R4B does not (``_R4_REQUIRED``), and R4 types R4B redesigned
(``_REDESIGNED_IN_R4B``). Fields the R4B model lacks are marked (``r4_only``,
``ext_aside``) so that the walk sets them aside and validates them on their own.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, replace
from functools import cache
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import BaseModel

from resources import definitions
from resources.definitions import ValueSetCodes

__all__ = [
    "BOOLEAN",
    "COMPLEX",
    "DECIMAL",
    "INTEGER",
    "RESOURCE",
    "STRING",
    "Field",
    "Model",
    "Scope",
    "Slot",
    "primitive_extension_class",
    "scope",
    "validator_covers",
]

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

# The kind of a field's values, ordered: the primitives (by JSON type), then the others.
BOOLEAN, INTEGER, DECIMAL, STRING, COMPLEX, RESOURCE = range(6)
_KIND_OF_PRIMITIVE = {
    "boolean": BOOLEAN,
    "integer": INTEGER,
    "positiveInt": INTEGER,
    "unsignedInt": INTEGER,
    "decimal": DECIMAL,
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
class Field:
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
class Model:
    name: str
    fields: dict[str, Field]
    choices: dict[str, tuple[str, ...]]
    required: tuple[Field, ...]
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
        return _KIND_OF_PRIMITIVE.get(primitive, STRING), primitive, None
    if inner is bool:
        return BOOLEAN, "boolean", None
    model = inner.get_model_klass()
    if inner.__name__ == "ResourceType":
        return RESOURCE, "Resource", model
    return COMPLEX, model.__name__, model


def _field(name: str, info: Any, model_name: str) -> Field:
    many, inner = _unwrap(info.annotation)
    kind, type_name, model = _describe(inner)
    extra = info.json_schema_extra or {}
    choice = extra.get("one_of_many")
    required = bool(extra.get("element_required") or info.is_required())
    required = required or name in _R4_REQUIRED.get(model_name, ())
    element = f"{choice}[x]" if choice else name
    return Field(name, element, many, kind, type_name, model, choice, required and not choice)


def _with_extension(f: Field, in_library: bool, model_name: str) -> Field:
    """Whether a primitive may have a `_name` companion: every R4 primitive but the
    ``id`` of elements and resources and ``Extension.url``; R4B lacks it on extension
    values (``Extension._valueString``)."""
    if f.kind >= COMPLEX:
        return f
    r4 = in_library or (model_name == "Extension" and f.choice == "value")
    return replace(f, extensible=r4, ext_aside=r4 and not in_library)


def _library_fields(cls: type[BaseModel]) -> dict[str, Field]:
    """The JSON properties of an R4B model, without the ones R4 does not have."""
    name = cls.__name__
    dropped = _R4B_ONLY.get(name, frozenset()) | _NOT_JSON_ELEMENTS
    aliases = {info.alias for info in cls.model_fields.values()}
    fields: dict[str, Field] = {}
    for info in cls.model_fields.values():
        alias = info.alias or ""
        if not alias.startswith("_") and alias not in dropped:
            f = _field(alias, info, name)
            fields[alias] = _with_extension(f, f"_{alias}" in aliases, name)
    return fields


def _r4_only_fields(name: str) -> dict[str, Field]:
    """The R4 choice types of a model that R4B dropped (``Extension.valueMeta``)."""
    meta = get_fhir_model_class("Meta")
    return {
        alias: Field(alias, f"{choice}[x]", False, COMPLEX, "Meta", meta, choice, r4_only=True)
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
def _model(cls: type[BaseModel]) -> Model:
    """The JSON properties of an R4B model, corrected to R4."""
    fields = _library_fields(cls) | _r4_only_fields(cls.__name__)
    choices: dict[str, tuple[str, ...]] = {}
    for f in fields.values():
        if f.choice:
            choices[f.choice] = (*choices.get(f.choice, ()), f.name)
    required = tuple(f for f in fields.values() if f.required)
    return Model(cls.__name__, fields, choices, required, _required_choices(cls))


# --- Models at definition paths ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Slot:
    """A field as seen from one definition path: where its children are defined, binding."""

    field: Field
    child_path: str
    binding: ValueSetCodes | None
    extension_key: str  # "_name"


@dataclass(frozen=True)
class Scope:
    """A model used at a definition path: JSON key -> (slot, is the `_name` key)."""

    model: Model
    keys: dict[str, tuple[Slot, bool]]


@cache
def scope(cls: type[BaseModel], path: str) -> Scope:
    """The fields of a model used at a definition path (``Patient``, ``Patient.contact``)."""
    data_types = definitions.data_types()
    profiles = definitions.type_profiles()
    references = definitions.content_references()
    model = _model(cls)
    keys: dict[str, tuple[Slot, bool]] = {}
    for name, f in model.fields.items():
        if f.kind == COMPLEX and (f.type in data_types or f.type in profiles):
            child = profiles.get(f.type, f.type)
        else:
            child = f"{path}.{f.element}"
            child = references.get(child, child)
        binding = definitions.required_binding(f"{path}.{f.element}")
        slot = Slot(f, child, binding, f"_{name}")
        keys[name] = (slot, False)
        if f.extensible:
            keys[slot.extension_key] = (slot, True)
    return Scope(model, keys)


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


@cache
def primitive_extension_class() -> type[BaseModel]:
    """The model of a primitive's ``_name`` object (its ``id`` and ``extension``)."""
    return get_fhir_model_class("FHIRPrimitiveExtension")
