"""Value set expansion from the R4 core package alone, for the definitions generator:
``compose.include``/``exclude`` of whole code systems, concept lists, ``is-a`` and
``descendent-of`` filters and other value sets
(https://hl7.org/fhir/R4/valueset.html#compositions); abstract and not-selectable
concepts are left out."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from r4_package import Package

_HIERARCHY_FILTERS = {"is-a", "descendent-of"}
_ABSTRACT_PROPERTIES = {"notSelectable", "abstract"}


class Unexpandable(Exception):
    """A value set that cannot be expanded from the package alone."""


def _canonical(url: str) -> str:
    return url.split("|", 1)[0]


def _concepts(concepts: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for concept in concepts:
        yield concept
        yield from _concepts(concept.get("concept", []))


def _selectable(concept: dict[str, Any]) -> bool:
    """False for abstract concepts, which group others and cannot be used in data."""
    for prop in concept.get("property", []):
        if prop.get("code") in _ABSTRACT_PROPERTIES and prop.get("valueBoolean") is True:
            return False
    return True


def _codes(concepts: list[dict[str, Any]]) -> set[str]:
    return {c["code"] for c in _concepts(concepts) if _selectable(c)}


def _descendants(concepts: list[dict[str, Any]], code: str, include_self: bool) -> set[str]:
    for concept in _concepts(concepts):
        if concept.get("code") == code:
            below = _codes(concept.get("concept", []))
            return below | {code} if include_self and _selectable(concept) else below
    raise Unexpandable(f"filter code {code!r} is not in the code system")


def _complete_code_system(package: Package, system: str) -> dict[str, Any]:
    code_system = package.code_systems.get(system)
    if code_system is None:
        raise Unexpandable(f"code system {system} is not in the package")
    if code_system.get("content") != "complete":
        content = code_system.get("content")
        raise Unexpandable(f"code system {system} has content {content!r}, not 'complete'")
    return code_system


def _filtered_codes(package: Package, system: str, filters: list[dict[str, Any]]) -> set[str]:
    concepts = _complete_code_system(package, system).get("concept", [])
    codes: set[str] | None = None
    for rule in filters:
        op, prop = rule.get("op"), rule.get("property")
        if op not in _HIERARCHY_FILTERS or prop != "concept":
            raise Unexpandable(f"filter {prop} {op} on {system} cannot be evaluated")
        found = _descendants(concepts, rule.get("value", ""), include_self=op == "is-a")
        codes = found if codes is None else codes & found
    return codes or set()


def _system_codes(package: Package, include: dict[str, Any]) -> set[str]:
    system = include["system"]
    if "concept" in include:
        return {c["code"] for c in include["concept"]}
    if "filter" in include:
        return _filtered_codes(package, system, include["filter"])
    return _codes(_complete_code_system(package, system).get("concept", []))


Expansion = dict[str, set[str]]


def _intersect(left: Expansion, right: Expansion) -> Expansion:
    return {s: left[s] & right[s] for s in left.keys() & right.keys() if left[s] & right[s]}


def _merge(into: Expansion, more: Expansion) -> None:
    for system, codes in more.items():
        into.setdefault(system, set()).update(codes)


def _include(package: Package, include: dict[str, Any], seen: frozenset[str]) -> Expansion:
    """Expand one compose.include (or exclude) entry."""
    parts: list[Expansion] = []
    if "system" in include:
        parts.append({include["system"]: _system_codes(package, include)})
    elif "concept" in include or "filter" in include:
        raise Unexpandable("include lists concepts without a system")
    parts.extend(expand(package, vs, seen) for vs in include.get("valueSet", []))
    if not parts:
        raise Unexpandable("include names neither a system nor a value set")
    result = parts[0]
    for part in parts[1:]:
        result = _intersect(result, part)
    return result


def expand(package: Package, url: str, seen: frozenset[str] = frozenset()) -> Expansion:
    """Expand a value set to {system: codes}; raise Unexpandable when it needs more."""
    url = _canonical(url)
    if url in seen:
        raise Unexpandable(f"value set {url} imports itself")
    value_set = package.value_sets.get(url)
    if value_set is None:
        raise Unexpandable(f"value set {url} is not in the package")
    compose = value_set.get("compose")
    if not compose or not compose.get("include"):
        raise Unexpandable(f"value set {url} has no compose.include")
    result: Expansion = {}
    for include in compose["include"]:
        _merge(result, _include(package, include, seen | {url}))
    for exclude in compose.get("exclude", []):
        for system, codes in _include(package, exclude, seen | {url}).items():
            result.get(system, set()).difference_update(codes)
    return {system: codes for system, codes in result.items() if codes}
