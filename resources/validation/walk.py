"""One pass over a resource's JSON against the compiled R4 structure (``structure``).

https://hl7.org/fhir/R4/validation.html, checking:

- the JSON representation, https://hl7.org/fhir/R4/json.html: no empty values, ``null``
  only in primitive arrays aligned with their ``_name`` array, the shape of ``_name``
  objects, JSON types of primitives, arrays exactly where elements repeat, ``resourceType``;
- the element structure, https://hl7.org/fhir/R4/elementdefinition.html: unknown
  elements, required elements (``min`` >= 1), one choice ``[x]`` type at most, complex
  datatypes, backbone elements, content references, contained and Bundle resources;
- primitive values, https://hl7.org/fhir/R4/datatypes.html#primitive;
- required bindings, https://hl7.org/fhir/R4/terminologies.html#required;
- rule ele-1, https://hl7.org/fhir/R4/element.html#invs (no element without value or children).

Each problem is one issue, whose expression is the FHIRPath of the element
(``Patient.name[1].given[0]``). The checks of ``primitives.late_check`` (calendar dates
...) are second-rank: their issues are kept only about places no other issue is at,
inside or around.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from resources import definitions
from resources.definitions import ValueSetCodes
from resources.errors import Issue
from resources.validation import bundle, narrative
from resources.validation.fhirpath_env import Env
from resources.validation.invariants import Invariant, contained_unreferenced
from resources.validation.primitives import (
    BOOLEAN,
    COMPLEX,
    MAX_STRING,
    RESOURCE,
    STRING,
    json_name,
    json_type_problem,
    outside,
)
from resources.validation.structure import Shape, Slot, shape

log = logging.getLogger(__name__)
_RESOURCE, _ELEMENT, _COMPANION = range(3)  # what an object is, for ele-1 and resourceType
_STEP = re.compile(r"[.\[]")
_NULL = (
    "null is only allowed in an array of primitives, "
    "aligned with an extension in the matching '_' array"
)


class Walk:
    """One pass over the JSON, collecting issues (``issues``, then ``late``: second rank)."""

    __slots__ = ("issues", "late", "failed_invariants", "env")

    def __init__(self) -> None:
        self.issues: list[Issue] = []
        self.late: list[Issue] = []
        self.failed_invariants: list[Issue] = []  # reported when nothing else is
        self.env = Env(None, None, None)  # %resource, %rootResource, %context

    def result(self) -> list[Issue]:
        """The issues, and the second-rank ones about places the others are not near; the
        failed invariants when the structure is valid."""
        if not self.late:
            return self.issues or self.failed_invariants
        if not self.issues:
            return self.late
        return self.issues + _uncovered(self.late, self.issues)

    def add(self, code: str, expression: str, diagnostics: str) -> None:
        where = (expression,) if expression else ()
        self.issues.append(Issue(code, diagnostics, expression=where))

    def resource(self, node: Any, expr: str, contained: bool = False) -> None:
        """Check a resource object (``expr`` is "" for the root, its path when it is in
        another one: ``contained`` when it is a contained resource)."""
        if not isinstance(node, dict):
            self.add("structure", expr, f"A resource must be a JSON object, not {json_name(node)}")
            return
        resource_type = node.get("resourceType")
        where = f"{expr}.resourceType" if expr else "resourceType"
        if resource_type is None:
            self.add("required", where, "The resourceType property is missing")
        elif not isinstance(resource_type, str):
            self.add("structure", where, "resourceType must be a JSON string")
        elif not definitions.is_resource_type(resource_type):
            self.add("structure", where, f"{resource_type!r} is not an R4 resource type")
        else:
            env = self.env
            outer = env.resource, env.root
            env.resource = node
            if not contained:
                env.root = node
            try:
                self.object(node, shape(resource_type), expr or resource_type, _RESOURCE)
                if "contained" in node:
                    self.dom_3(node, expr or resource_type)
                if resource_type == "Bundle":
                    self.failed_invariants.extend(bundle.problems(node, expr or resource_type))
            finally:
                env.resource, env.root = outer

    def object(self, node: dict[Any, Any], at: Shape, expr: str, role: int) -> None:
        """Check one JSON object against a shape."""
        if not node:
            self.add("structure", expr, "Empty objects are not allowed; omit the element")
            return
        values = at.values
        chosen: dict[str, list[str]] | None = None
        for key, value in node.items():
            slot = values.get(key)
            if slot is None:
                slot = at.companions.get(key)
                if slot is None:
                    if key != "resourceType" or role != _RESOURCE:
                        self.add("structure", f"{expr}.{key}", f"Unknown element '{key}'")
                    continue
                self.companion(node, slot, value, f"{expr}.{slot.name}")
            elif slot.many:
                self.array(node, slot, value, f"{expr}.{key}")
            elif (
                slot.kind == STRING
                and value.__class__ is str
                and value
                and len(value) <= MAX_STRING
                and slot.fast(value)  # type: ignore[misc]
                and (slot.codes is None or value in slot.codes)
            ):
                pass  # the common case: a valid string value
            elif slot.kind == COMPLEX and value.__class__ is dict:
                where = f"{expr}.{key}"
                self.object(value, slot.shape, where, _ELEMENT)  # type: ignore[arg-type]
                if slot.binding is not None:
                    self.coded(value, slot.type, slot.binding, where)
            elif isinstance(value, list):
                where = f"{expr}.{key}"
                self.add("structure", where, f"'{key}' does not repeat: it must not be an array")
            else:
                self.item(slot, value, f"{expr}.{key}")
            if slot.choice is not None:
                chosen = {} if chosen is None else chosen
                chosen.setdefault(slot.choice, []).append(slot.name)
        if at.required or at.required_choices or chosen:
            self.completeness(node, at, expr, chosen or {})
        if role == _ELEMENT and "id" in node and _only_id(node, at):
            self.add("invalid", expr, "An element needs a value or children besides 'id' (ele-1)")
        if at.invariants:
            self.invariants(node, at, expr)

    def invariants(self, node: dict[Any, Any], at: Shape, expr: str) -> None:
        """The constraints of the shape (``invariants``), on the object or its values."""
        env = self.env
        for invariant in at.invariants:
            try:
                if invariant.child is None:
                    env.context = node
                    if not invariant.run(node, env):
                        self.failed(invariant.key, invariant.human, expr)
                else:
                    self.on_values(invariant, node, expr, env)
            except Exception:  # an evaluator bug must not refuse a write; the tests keep it at zero
                log.warning("invariant %s failed unexpectedly", invariant.key, exc_info=True)

    def on_values(self, invariant: Invariant, node: dict[Any, Any], expr: str, env: Env) -> None:
        """An invariant of an element, on each of its values."""
        for name in invariant.child or ():
            value = node.get(name)
            if value is None:
                continue
            if isinstance(value, list):
                for index, item in enumerate(value):
                    env.context = item
                    if item is not None and not invariant.run(item, env):
                        self.failed(invariant.key, invariant.human, f"{expr}.{name}[{index}]")
                continue
            env.context = value
            if not invariant.run(value, env):
                self.failed(invariant.key, invariant.human, f"{expr}.{name}")

    def failed(self, key: str, human: str, expr: str) -> None:
        where = (expr,) if expr else ()
        message = f"Constraint failed: {key}: {human}" if "-" in key else human
        self.failed_invariants.append(Issue("invariant", message, expression=where))

    def dom_3(self, node: dict[Any, Any], expr: str) -> None:
        """dom-3: contained resources are referred to (``invariants.contained_unreferenced``)."""
        for index in contained_unreferenced(node):
            self.failed(
                "dom-3",
                "If the resource is contained in another resource, it SHALL be referred to "
                "from elsewhere in the resource or SHALL refer to the containing resource",
                f"{expr}.contained[{index}]",
            )

    def completeness(
        self, node: dict[Any, Any], at: Shape, expr: str, chosen: dict[str, list[str]]
    ) -> None:
        """Required elements and one type per choice."""
        for slot in at.required:
            if slot.name not in node and slot.companion not in node:
                self.add("required", f"{expr}.{slot.name}", "Required element is missing (min 1)")
        for group in at.required_choices:
            if group not in chosen:
                self.add("required", f"{expr}.{group}[x]", "Required element is missing (min 1)")
        for group, names in chosen.items():
            used = sorted(set(names))
            if len(used) > 1:
                self.add(
                    "invalid",
                    f"{expr}.{group}[x]",
                    f"Only one type of {group}[x] is allowed, found {', '.join(used)}",
                )

    def array(self, parent: dict[Any, Any], slot: Slot, value: Any, expr: str) -> None:
        """The JSON array of a repeating element."""
        if not isinstance(value, list):
            self.add("structure", expr, f"'{slot.name}' repeats: it must be a JSON array")
            return
        if not value:
            self.add("structure", expr, "Empty arrays are not allowed; omit the element")
        kind = slot.kind
        if kind == COMPLEX:
            at, binding = slot.shape, slot.binding
            for index, item in enumerate(value):
                if isinstance(item, dict):
                    where = f"{expr}[{index}]"
                    self.object(item, at, where, _ELEMENT)  # type: ignore[arg-type]
                    if binding is not None:
                        self.coded(item, slot.type, binding, where)
                else:
                    self.item(slot, item, f"{expr}[{index}]")
            return
        fast, codes = slot.fast, slot.codes
        for index, item in enumerate(value):
            if (
                kind == STRING
                and item.__class__ is str
                and item
                and len(item) <= MAX_STRING
                and fast(item)  # type: ignore[misc]
                and (codes is None or item in codes)
            ):
                continue  # the common case: a valid string value
            if item is None and kind != RESOURCE:
                companions = parent.get(slot.companion) if slot.companion else None
                if not _given_at(companions, index):
                    self.add("structure", f"{expr}[{index}]", _NULL)
            else:
                self.item(slot, item, f"{expr}[{index}]")

    def item(self, slot: Slot, value: Any, expr: str) -> None:
        """One value of an element (an array item or the single value)."""
        kind = slot.kind
        if kind == STRING and value.__class__ is str:
            self.primitive(slot, value, expr)
        elif kind == COMPLEX:
            if isinstance(value, dict):
                self.object(value, slot.shape, expr, _ELEMENT)  # type: ignore[arg-type]
                if slot.binding is not None:
                    self.coded(value, slot.type, slot.binding, expr)
            elif value is None:
                self.add("structure", expr, _NULL)
            else:
                message = f"Expected an object ({slot.type}), found {json_name(value)}"
                self.add("structure", expr, message)
        elif value is None:
            self.add("structure", expr, _NULL)
        elif kind == RESOURCE:
            self.resource(value, expr, contained=slot.name == "contained")
        else:
            wrong_type = json_type_problem(value, kind, slot.type)
            if wrong_type:
                self.add("structure", expr, wrong_type)
            elif kind != BOOLEAN:
                self.primitive(slot, value, expr)

    def primitive(self, slot: Slot, value: Any, expr: str) -> None:
        """A primitive value of the right JSON type: its format, binding, calendar."""
        problem = slot.check(value)  # type: ignore[misc]
        if problem is not None:
            self.add("value", expr, problem)
        elif slot.type == "xhtml":
            for message in narrative.problems(value):
                self.add("value", expr, message)
        elif slot.codes is not None and value not in slot.codes:
            self.add("code-invalid", expr, outside(f"{value!r} is not in", slot.binding))  # type: ignore[arg-type]
        elif slot.late is not None:
            problem = slot.late(value)
            if problem is not None:
                self.late.append(Issue("value", problem, expression=(expr,)))

    def companion(self, parent: dict[Any, Any], slot: Slot, value: Any, expr: str) -> None:
        """The ``_name`` companion of a primitive: its id and extensions."""
        values = parent.get(slot.name)
        if not slot.many:
            if isinstance(value, list):
                self.add("structure", expr, f"'_{slot.name}' must be an object, not an array")
            else:
                self.extensions(value, expr, has_value=values is not None)
            return
        if not isinstance(value, list) or not value:
            self.add("structure", expr, f"'_{slot.name}' must be a non-empty array")
            return
        if isinstance(values, list) and len(values) != len(value):
            self.add("structure", expr, f"'_{slot.name}' must have as many items as '{slot.name}'")
        for index, item in enumerate(value):
            has_value = _given_at(values, index)
            if item is None and not has_value:
                self.add(
                    "structure",
                    f"{expr}[{index}]",
                    f"null in '_{slot.name}' needs a value at the same index in '{slot.name}'",
                )
            elif item is not None:
                self.extensions(item, f"{expr}[{index}]", has_value)

    def extensions(self, value: Any, expr: str, has_value: bool) -> None:
        if not isinstance(value, dict):
            message = f"A primitive's extensions must be an object, not {json_name(value)}"
            self.add("structure", expr, message)
            return
        self.object(value, shape("Element"), expr, _COMPANION)
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


def _only_id(node: dict[Any, Any], at: Shape) -> bool:
    """Whether ``id`` is the only element of an object (unknown properties aside)."""
    return not any(key != "id" and (key in at.values or key in at.companions) for key in node)


def _given_at(items: Any, index: int) -> bool:
    """Whether a JSON array (a primitive's values or its ``_name`` twins) has an item at
    ``index`` that is not null."""
    return isinstance(items, list) and index < len(items) and items[index] is not None


def _with_ancestors(path: str) -> set[str]:
    """``a.b[0].c`` -> {a, a.b, a.b[0], a.b[0].c}."""
    return {path[: m.start()] for m in _STEP.finditer(path)} | {path}


def _uncovered(issues: list[Issue], walked: list[Issue]) -> list[Issue]:
    """The second-rank issues about places the others are not at, inside or around."""
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
