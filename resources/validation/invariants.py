"""The invariants of the R4 resources and datatypes, checked on every write
(https://hl7.org/fhir/R4/conformance-rules.html#constraints,
https://hl7.org/fhir/R4/validation.html).

The constraints come from ``resources/data/r4_constraints.json``, generated from the R4
StructureDefinitions (``scripts/constraint_definitions.py``). Which are checked: **every
constraint of severity error** of every resource and complex datatype (and of the core
profile ``SimpleQuantity`` on the elements typed with it: ``sqty-1``), compiled once per
definition path into Python closures (``fhirpath_eval``), minus :data:`SKIPPED` (with
each one's reason) and the ones the compiler refuses (:func:`not_compiled`, empty for
R4 4.0.1; a test keeps it so). Warnings (``dom-6``, the ``*-0`` name rules ...) are not
checked: they never refuse a write.

Where a constraint applies (https://hl7.org/fhir/R4/elementdefinition.html): one on a
type (``per-1`` on Period) is checked on every object of that type and of the types that
specialize it (``qty-3`` on Age), one on a backbone element on each of its objects, and
one on any other element (``org-2`` on ``Organization.address``) on each of its values,
with the value as ``$this``. ``%resource`` is the resource the element is in,
``%rootResource`` the resource that contains it (for contained resources; else the same).

A constraint holds unless its expression gives ``false``: an empty result passes, as does
an evaluation error (several items where one is expected), which is logged.
"""

from __future__ import annotations

import binascii
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import orjson

from resources import definitions
from resources.validation.fhirpath_env import Env, EvaluationError, Fn, truth
from resources.validation.fhirpath_eval import child_path, compile_expression
from resources.validation.fhirpath_operators import compare_dates
from resources.validation.fhirpath_parse import Unsupported

_log = logging.getLogger(__name__)
_DATA = Path(__file__).resolve().parent.parent / "data" / "r4_constraints.json"
_BACKBONES = frozenset({"BackboneElement", "Element"})

SKIPPED: dict[str, str] = {
    "ele-1@Element": "checked by the structure walk itself (an element has a value or "
    "children besides 'id'), for every element",
    "txt-1@Narrative.div": "htmlChecks(): the XHTML rules are checked by resources.validation."
    "narrative on every Narrative.div",
    "txt-2@Narrative.div": "htmlChecks(), some non-whitespace content: not checked; four "
    "official examples (ActivityDefinition-blood-tubes-supply ...) have an empty generated "
    "div, which is harmless",
    "dom-3@DomainResource": "checked by a native function (contained_unreferenced): "
    "contained resources are referred to from the resource or refer to it; the expression "
    "needs the types of descendants (as(canonical), as(uri))",
    "sdf-4@StructureDefinition": "a spec bug: the core's own logical models (Definition, "
    "Event, FiveWs, Request: official R4 examples) are neither abstract nor derived from a "
    "baseDefinition; a logical model need not specialize another type",
    "ctm-1@CareTeam.participant": "needs resolve(): the member's resource, which a write "
    "cannot fetch",
}
"""Error constraints not evaluated from their expression, by ``key@path``, with why."""


@dataclass(frozen=True, slots=True)
class Invariant:
    """One compiled constraint, as it applies at one definition path."""

    key: str
    human: str
    run: Callable[[Any, Env], bool]
    child: tuple[str, ...] | None = None
    """None: checked on the object itself; else the JSON names of the element whose
    values it is checked on (``address``; the types of a choice: ``valueQuantity`` ...)."""


@cache
def _data() -> dict[str, Any]:
    return orjson.loads(_DATA.read_bytes())


def _types() -> dict[str, Any]:
    return _data()["types"]


def profile_constraints() -> dict[str, list[list[Any]]]:
    """The constraints of the core's datatype profiles that R4's elements name
    (``SimpleQuantity``: ``sqty-1``), by profile."""
    return {name: p["constraints"] for name, p in _data()["profiles"].items()}


def constraints(type_: str) -> list[list[Any]]:
    """The constraints a type defines: [path, key, severity, expression, human]."""
    return _types().get(type_, {}).get("constraints", [])


def _lineage(type_: str) -> list[str]:
    """The type and the types it specializes (Age, Quantity, Element)."""
    out = []
    current: str | None = type_
    while current and current not in out:
        out.append(current)
        current = _types().get(current, {}).get("parent")
    return out


@cache
def compiled(expression: str, at: str | None = None, resource: str | None = None) -> Fn | None:
    """An expression compiled once per context (None when the compiler refuses it)."""
    try:
        return compile_expression(expression, at, resource)
    except Unsupported:
        return None


def _context(type_: str, path: str) -> tuple[str | None, str | None]:
    """(definition path of the context, type of %resource) of a constraint."""
    resource = type_ if type_ in _types() and _is_resource(type_) else None
    if not path:
        return type_, resource
    if _is_backbone(type_, path):
        return f"{type_}.{path}", resource
    parent, _, element = path.rpartition(".")
    return child_path(f"{type_}.{parent}" if parent else type_, element), resource


def _is_resource(type_: str) -> bool:
    return "Resource" in _lineage(type_)


def _all_error_constraints() -> list[tuple[str, str, tuple[str | None, str | None]]]:
    """(``key@path``, expression, compile context) of every error constraint, the
    profiles' included."""
    out = []
    for type_ in _types():
        for path, key, severity, expression, _human in constraints(type_):
            if severity == "error":
                name = f"{key}@{type_}{'.' + path if path else ''}"
                out.append((name, expression, _context(type_, path)))
    for profile, rules in profile_constraints().items():
        base = _data()["profiles"][profile]["type"]
        for _path, key, severity, expression, _human in rules:
            if severity == "error":
                out.append((f"{key}@{profile}", expression, (base, None)))
    return out


def not_compiled() -> dict[str, str]:
    """Error constraints neither skipped nor compiled, by ``key@path``, with the reason."""
    out = {}
    for name, expression, context in _all_error_constraints():
        if name in SKIPPED:
            continue
        try:
            compile_expression(expression, *context)
        except Unsupported as exc:
            out[name] = str(exc)
    return out


def checked() -> list[str]:
    """Every constraint checked from its expression, as ``key@path``."""
    return sorted(
        name
        for name, expression, context in _all_error_constraints()
        if name not in SKIPPED and compiled(expression, *context)
    )


def for_shape(path: str, json_names: Callable[[str], tuple[str, ...]]) -> tuple[Invariant, ...]:
    """The invariants checked on the objects at a definition path (``Observation``,
    ``Observation.referenceRange``, ``Age``); ``json_names(element)`` gives the JSON names
    of one of the shape's elements (several for a choice)."""
    type_, _, below = path.partition(".")
    if type_ not in _types():
        return ()
    out: list[Invariant] = list(EXTRA.get(path, ()))
    own = [(type_, rule) for rule in constraints(type_)]
    inherited = (
        [(base, rule) for base in _lineage(type_)[1:] for rule in constraints(base)]
        if not below
        else []
    )
    for where, (rule_path, key, severity, expression, human) in own + inherited:
        if severity != "error":
            continue
        name = f"{key}@{where}{'.' + rule_path if rule_path else ''}"
        if name in SKIPPED:
            continue
        fn = compiled(expression, *_context(where, rule_path))
        if fn is None:
            continue
        native = NATIVE.get(name)
        if where != type_ and rule_path:
            continue  # a base type's element constraint: none in R4 but ext-1 (skipped)
        run = native or _runner(fn, name)
        if rule_path == below:
            out.append(Invariant(key, human, run))
            continue
        parent, _, element = rule_path.rpartition(".")
        if parent == below and not _is_backbone(type_, rule_path):
            names = json_names(element)
            if names:
                out.append(Invariant(key, human, run, names))
    out.extend(_profiled(type_, below, json_names))
    return tuple(out)


def _profiled(
    type_: str, below: str, json_names: Callable[[str], tuple[str, ...]]
) -> list[Invariant]:
    """The constraints of the profiles the shape's elements are typed with (sqty-1 on the
    SimpleQuantity ``Immunization.doseQuantity``), on each of their values."""
    out = []
    for path, code, profile in _data()["profiledElements"].get(type_, []):
        parent, _, element = path.rpartition(".")
        if parent != below:
            continue
        if element.endswith("[x]"):
            names: tuple[str, ...] = (element[:-3] + code[0].upper() + code[1:],)
        else:
            names = json_names(element)
        base = _data()["profiles"][profile]["type"]
        for _rule_path, key, severity, expression, human in profile_constraints()[profile]:
            fn = compiled(expression, base, None) if severity == "error" else None
            if fn is not None and names:
                out.append(Invariant(key, human, _runner(fn, f"{key}@{profile}"), names))
    return out


def _is_backbone(type_: str, path: str) -> bool:
    entry = definitions.element_definitions()[type_]["elements"].get(path)
    if entry is None:
        return False
    extra = entry[3] if len(entry) > 3 else {}
    return bool(extra.get("contentReference")) or any(code in _BACKBONES for code in entry[2])


def _runner(fn: Fn, name: str) -> Callable[[Any, Env], bool]:
    """``run(value, env)``: False only when the constraint gives false."""

    def run(value: Any, env: Env) -> bool:
        try:
            return truth(fn([value], env)) is not False
        except EvaluationError:
            _log.debug("invariant %s could not be evaluated", name, exc_info=True)
            return True
        except Exception:  # an evaluator bug must not refuse a write; the tests keep it at zero
            _log.warning("invariant %s failed unexpectedly", name, exc_info=True)
            return True

    return run


# --------------------------------------------------------------------------- natives


def _ref_1(reference: Any, env: Env) -> bool:
    """ref-1, ``reference.startsWith('#').not() or (reference.substring(1) in
    %rootResource.contained.id)``."""
    target = reference.get("reference") if isinstance(reference, dict) else None
    if target.__class__ is not str or not target.startswith("#") or target == "#":
        return True  # ('#'.substring(1) is empty: so is the 'in', which passes)
    contained = env.root.get("contained") if isinstance(env.root, dict) else None
    if not isinstance(contained, list):
        return False
    wanted = target[1:]
    return any(isinstance(c, dict) and c.get("id") == wanted for c in contained)


def _no_contained(check: Callable[[list[Any]], bool]) -> Callable[[Any, Env], bool]:
    def run(resource: Any, env: Env) -> bool:
        contained = resource.get("contained")
        if contained is None:
            return True
        items = contained if isinstance(contained, list) else [contained]
        return check([c for c in items if isinstance(c, dict)])

    return run


def _meta(items: list[Any], name: str) -> bool:
    return any(isinstance(c.get("meta"), dict) and name in c["meta"] for c in items)


def _qty_3(quantity: Any, env: Env) -> bool:
    """qty-3, ``code.empty() or system.exists()``."""
    has_code = "code" in quantity or "_code" in quantity
    return not has_code or "system" in quantity or "_system" in quantity


def _per_1(period: Any, env: Env) -> bool:
    """per-1, ``start.hasValue().not() or end.hasValue().not() or (start <= end)``."""
    start, end = period.get("start"), period.get("end")
    if start.__class__ is not str or end.__class__ is not str:
        return True
    order = compare_dates(start, end)
    return order is None or order <= 0


def _has_value_x(node: dict[str, Any]) -> bool:
    """Whether an Observation (or a component) has a value[x] (its only elements named
    value...)."""
    return any(key.startswith(("value", "_value")) for key in node)


def _obs_6(observation: Any, env: Env) -> bool:
    """obs-6, ``dataAbsentReason.empty() or value.empty()``."""
    return "dataAbsentReason" not in observation or not _has_value_x(observation)


def _obs_7(observation: Any, env: Env) -> bool:
    """obs-7, ``value.empty() or component.code.where(coding.intersect(%resource.code
    .coding).exists()).empty()``: no component has a coding of the observation's code."""
    components = observation.get("component")
    if not components or not _has_value_x(observation):
        return True
    resource = env.resource if isinstance(env.resource, dict) else {}
    code = resource.get("code")
    codings = code.get("coding") if isinstance(code, dict) else None
    if not isinstance(codings, list) or not codings:
        return True
    for component in components if isinstance(components, list) else [components]:
        own = component.get("code") if isinstance(component, dict) else None
        for coding in own.get("coding") or () if isinstance(own, dict) else ():
            if coding is not None and any(coding == other for other in codings):
                return False
    return True


def _obs_3(reference_range: Any, env: Env) -> bool:
    """obs-3, ``low.exists() or high.exists() or text.exists()``."""
    return any(key in reference_range for key in ("low", "high", "text", "_text"))


NATIVE: dict[str, Callable[[Any, Env], bool]] = {
    "obs-6@Observation": _obs_6,
    "obs-7@Observation": _obs_7,
    "obs-3@Observation.referenceRange": _obs_3,
    "ref-1@Reference": _ref_1,
    "qty-3@Quantity": _qty_3,
    "per-1@Period": _per_1,
    # contained.contained.empty()
    "dom-2@DomainResource": _no_contained(lambda items: not any("contained" in c for c in items)),
    # contained.meta.versionId.empty() and contained.meta.lastUpdated.empty()
    "dom-4@DomainResource": _no_contained(
        lambda items: not _meta(items, "versionId") and not _meta(items, "lastUpdated")
    ),
    # contained.meta.security.empty()
    "dom-5@DomainResource": _no_contained(lambda items: not _meta(items, "security")),
}
"""Constraints run by a Python function of the same meaning (they run on nearly every
write), by ``key@path``; a test compares each with its compiled expression."""


# --------------------------------------------------------------------------- server rules


def _absolute_system(coding: Any, env: Env) -> bool:
    system = coding.get("system") if isinstance(coding, dict) else None
    return not isinstance(system, str) or _ABSOLUTE_URI.match(system) is not None


def _attachment_size(attachment: Any, env: Env) -> bool:
    data, size = attachment.get("data"), attachment.get("size")
    if not isinstance(data, str) or not isinstance(size, int) or isinstance(size, bool):
        return True
    try:
        return len(binascii.a2b_base64(data)) == size
    except (binascii.Error, ValueError):
        return True  # reported as a bad base64Binary value


_ABSOLUTE_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")

EXTRA: dict[str, tuple[Invariant, ...]] = {
    "Coding": (
        Invariant(
            "Coding.system",
            "A code system is identified by an absolute URI "
            "(https://hl7.org/fhir/R4/terminologies.html#system)",
            _absolute_system,
        ),
    ),
    "Attachment": (
        Invariant(
            "Attachment.size",
            "size is the number of bytes of data (https://hl7.org/fhir/R4/datatypes.html#Attachment)",
            _attachment_size,
        ),
    ),
}
"""Rules of the R4 text that no constraint expresses, checked like the constraints, by
definition path (their "key" names the element)."""


# --------------------------------------------------------------------------- dom-3


def contained_unreferenced(resource: dict[str, Any]) -> list[int]:
    """dom-3 (https://hl7.org/fhir/R4/domainresource.html#invs): the indexes of the
    contained resources that nothing in the resource refers to (``#id`` in a reference,
    canonical or uri, anywhere in the resource, contained ones included) and that do not
    refer to the resource (``#``) themselves."""
    contained = resource.get("contained")
    if not isinstance(contained, list):
        return []
    local: set[str] = set()
    _local_references(resource, local)
    out = []
    for index, item in enumerate(contained):
        if not isinstance(item, dict):
            continue
        id_ = item.get("id")
        if isinstance(id_, str) and "#" + id_ in local:
            continue
        inside: set[str] = set()
        _local_references(item, inside)
        if "#" not in inside:
            out.append(index)
    return out


def _local_references(value: Any, out: set[str]) -> None:
    """Every string value starting with '#' below ``value``."""
    if isinstance(value, dict):
        for key, child in value.items():
            if key != "div":
                _local_references(child, out)
    elif isinstance(value, list):
        for child in value:
            _local_references(child, out)
    elif isinstance(value, str) and value.startswith("#"):
        out.add(value)
