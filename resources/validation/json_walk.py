"""One pass over a resource's JSON, checking what the fhir.resources models do not.

- the JSON representation, https://hl7.org/fhir/R4/json.html: no empty values, ``null``
  only in primitive arrays aligned with their ``_name`` array, the shape of ``_name``
  objects, JSON types of primitives, arrays exactly where elements repeat, ``resourceType``;
- the element structure, https://hl7.org/fhir/R4/elementdefinition.html: unknown
  elements, required elements, one choice ``[x]`` type at most;
- primitive values, https://hl7.org/fhir/R4/datatypes.html#primitive;
- required bindings, https://hl7.org/fhir/R4/terminologies.html#required;
- rule ele-1, https://hl7.org/fhir/R4/element.html#invs (no element without value or children).

The walk also collects the R4 parts the R4B models lack, to be set aside before the model
runs and validated on their own (see ``resources.validation.r4_models``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from resources import definitions
from resources.definitions import ValueSetCodes
from resources.errors import Issue
from resources.validation.primitives import (
    json_name,
    json_type_problem,
    number_problem,
    outside,
    string_problem,
)
from resources.validation.r4_models import (
    BOOLEAN,
    COMPLEX,
    RESOURCE,
    STRING,
    Field,
    Model,
    Slot,
    _resource_class,
    primitive_extension_class,
    scope,
)


@dataclass
class Walk:
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
            self.add("structure", expr, f"A resource must be a JSON object, not {json_name(node)}")
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
        model_scope = scope(cls, path)
        keys = model_scope.keys
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
                self.aside(node, key, value, f"{expr}.{name}", primitive_extension_class())
            self.extensions(node, slot.field, value, f"{expr}.{name}")
        self.completeness(model_scope.model, present, expr, role == "element")

    def completeness(self, model: Model, present: set[str], expr: str, ele1: bool) -> None:
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

    def element(self, parent: dict[str, Any], slot: Slot, value: Any, expr: str) -> None:
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
            self.item(slot, item, f"{expr}[{index}]", _given_at(extensions, index))

    def item(self, slot: Slot, value: Any, expr: str, has_extension: bool) -> None:
        """One value of an element (an array item or the single value)."""
        f = slot.field
        if value is None:
            if not (f.many and f.kind < COMPLEX and has_extension):
                self.add(
                    "structure",
                    expr,
                    "null is only allowed in an array of primitives, "
                    "aligned with an extension in the matching '_' array",
                )
            return
        if f.kind == RESOURCE:
            self.resource(value, expr)
        elif f.kind == COMPLEX:
            if not isinstance(value, dict):
                self.add(
                    "structure", expr, f"Expected an object ({f.type}), found {json_name(value)}"
                )
                return
            self.object(value, f.model, slot.child_path, expr)  # type: ignore[arg-type]
            if slot.binding is not None:
                self.coded(value, f.type, slot.binding, expr)
        else:
            self.primitive(slot, value, expr)

    def primitive(self, slot: Slot, value: Any, expr: str) -> None:
        f = slot.field
        wrong_type = json_type_problem(value, f)
        if wrong_type:
            self.add("structure", expr, wrong_type)
            return
        if f.kind == BOOLEAN:
            return
        problem = number_problem(value, f) if f.kind < STRING else string_problem(value, f.type)
        if problem:
            self.add("value", expr, problem)
        elif slot.binding is not None and not slot.binding.has_code(value):
            self.add("code-invalid", expr, outside(f"{value!r} is not in", slot.binding))

    def extensions(self, parent: dict[str, Any], f: Field, value: Any, expr: str) -> None:
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
            has_value = _given_at(values, index)
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
                f"A primitive's extensions must be an object, not {json_name(value)}",
            )
            return
        self.object(value, primitive_extension_class(), "Element", expr, role="extensions")
        if value and "extension" not in value and not has_value:
            self.add("invalid", expr, "A primitive needs a value or extensions (ele-1)")

    def coded(self, value: dict[str, Any], type_: str, binding: ValueSetCodes, expr: str) -> None:
        """A Coding or CodeableConcept under a required binding."""
        if type_ == "Coding":
            if not binding.has_coding(value.get("system"), value.get("code")):
                self.add("code-invalid", expr, outside("The coding is not in", binding))
        elif type_ == "CodeableConcept":
            codings = value.get("coding")
            codings = (
                [c for c in codings if isinstance(c, dict)] if isinstance(codings, list) else []
            )
            if not any(binding.has_coding(c.get("system"), c.get("code")) for c in codings):
                what = "None of the codings is in" if codings else "A coding is needed from"
                self.add("code-invalid", expr, outside(what, binding))


def _given_at(items: Any, index: int) -> bool:
    """Whether a JSON array (a primitive's values or its ``_name`` twins) has an item at
    ``index`` that is not null."""
    return isinstance(items, list) and index < len(items) and items[index] is not None
