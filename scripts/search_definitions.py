"""Search parameters and compartments for the definitions generator: the R4 core
package's SearchParameters (https://hl7.org/fhir/R4/searchparameter.html) turned into the
tables the server's search uses (expressions split per type, reference targets, composite
components, with the package's known errors corrected and recorded), and the Patient and
other CompartmentDefinitions (https://hl7.org/fhir/R4/compartmentdefinition.html) checked
against them."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from r4_package import Package, defining_structures, lineage, resource_types, type_parents
from value_set_expansion import _canonical


def split_union(expression: str) -> list[str]:
    """Split a FHIRPath expression at its top-level ``|`` operators.

    Bars inside parentheses, brackets, braces, 'strings' and `delimited identifiers`
    belong to their part, https://hl7.org/fhirpath/N1/#union-collections
    """
    parts: list[str] = []
    depth, quote, start, index = 0, "", 0, 0
    while index < len(expression):
        char = expression[index]
        if quote:
            if char == "\\":
                index += 1
            elif char == quote:
                quote = ""
        elif char in "'`":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "|" and depth == 0:
            parts.append(expression[start:index].strip())
            start = index + 1
        index += 1
    parts.append(expression[start:].strip())
    return [part for part in parts if part]


_LEAD = re.compile(r"\(*([A-Za-z][A-Za-z0-9_]*)(?![A-Za-z0-9_(])")
_RESOLVE_IS = re.compile(r"\.where\(resolve\(\) is ([A-Za-z]+)\)$")
_PATHS = (
    re.compile(r"(?P<path>[A-Za-z]\w*(?:\.[A-Za-z]\w*)*)"),
    re.compile(r"\((?P<path>[A-Za-z]\w*(?:\.[A-Za-z]\w*)*) as (?P<cast>\w+)\)"),
    re.compile(r"(?P<path>[A-Za-z]\w*(?:\.[A-Za-z]\w*)*)\.as\((?P<cast>\w+)\)"),
)
_REFERENCE_TYPES = {"Reference", "canonical"}
_EXAMPLE_ID = re.compile(r"example(-.*)?")
_CORE_COMPARTMENTS = "http://hl7.org/fhir/CompartmentDefinition/"
DEF = "{def}"
RESOURCE = "Resource"

# Errors of the R4 package corrected by this generator, each recorded in the output's
# ``searchParameterFixes`` when applied: composite -> component definition -> (was, now).
# DocumentReference-relationship gives the reference component ``relatesto`` the
# expression ``code`` and the token ``relation`` the expression ``target`` (R5 pairs
# relatesto with target and relation with code).
_SP = "http://hl7.org/fhir/SearchParameter/"
COMPONENT_EXPRESSION_FIXES: dict[str, dict[str, tuple[str, str]]] = {
    _SP + "DocumentReference-relationship": {
        _SP + "DocumentReference-relatesto": ("code", "target"),
        _SP + "DocumentReference-relation": ("target", "code"),
    },
}


def _lead(part: str, type_names: set[str]) -> str | None:
    """The type a union part starts from (``(Observation.value as X)`` -> Observation)."""
    match = _LEAD.match(part)
    return match.group(1) if match and match.group(1) in type_names else None


def _part_for(part: str, lead: str | None, type_: str) -> str:
    """A part as ``type_``'s own: a base type name (``Resource.id``) or none (``name``,
    InsurancePlan's) becomes the concrete type, which is what fhirpathpy matches."""
    match = _LEAD.match(part)
    if match is None or lead == type_:
        return part
    if lead is None:
        return part[: match.start(1)] + type_ + "." + part[match.start(1) :]
    return part[: match.start(1)] + type_ + part[match.end(1) :]


@dataclass
class SearchTables:
    """The search parameter sections of the output, and what could not be placed."""

    by_type: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    common: dict[str, dict[str, Any]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    fixes: dict[str, list[str]] = field(default_factory=dict)
    issues: dict[str, list[str]] = field(default_factory=dict)
    used: int = 0

    def issue(self, url: str, message: str) -> None:
        self.issues.setdefault(url, []).append(message)


@dataclass
class _Model:
    """What assigning parameters to types needs to know about the types."""

    parents: dict[str, str | None]
    concrete: list[str]
    elements: dict[str, dict[str, Any]]

    @classmethod
    def of(cls, package: Package) -> _Model:
        elements = {
            element["path"]: element
            for sd in defining_structures(package)
            for element in sd.get("snapshot", {}).get("element", [])
        }
        return cls(type_parents(package), resource_types(package), elements)

    def types_of(self, bases: list[str]) -> list[str]:
        """The concrete resource types a definition applies to, plus Resource itself."""
        types = [t for t in self.concrete if set(bases) & set(lineage(self.parents, t))]
        return types + [RESOURCE] if RESOURCE in bases else types

    @property
    def resource_names(self) -> set[str]:
        """Names of resource types, abstract ones included (Resource, DomainResource)."""
        return {t for t in self.parents if RESOURCE in lineage(self.parents, t)}

    def element_targets(self, part: str) -> set[str] | None:
        """Targets allowed by the element a plain path part selects; None = any / unknown."""
        match = next((m for p in _PATHS if (m := p.fullmatch(part))), None)
        if match is None:
            return None
        path, cast = match.group("path"), match.groupdict().get("cast")
        element = self.elements.get(path) or self.elements.get(path + "[x]")
        targets: set[str] = set()
        for type_ in (element or {}).get("type", []):
            if type_.get("code") not in _REFERENCE_TYPES or cast not in (None, type_["code"]):
                continue
            profiles = type_.get("targetProfile") or []
            names = {profile.rsplit("/", 1)[-1] for profile in profiles}
            if not names or "Resource" in names:
                return None
            targets |= names
        return targets or None


def _targets(parts: list[str], definition: list[str], model: _Model) -> tuple[list[str], list[str]]:
    """A reference parameter's targets for one type: the definition's, narrowed by what
    each part can point to (``.where(resolve() is Patient)``, the element's targets).

    Returns the targets and the parts that allow none of the definition's targets (the
    definition's list is kept then).
    """
    declared = set(definition) or None
    found: set[str] = set()
    conflicts: list[str] = []
    for part in parts:
        allowed = declared
        resolved = _RESOLVE_IS.search(part)
        narrowing = [{resolved.group(1)} if resolved else None]
        narrowing.append(model.element_targets(_RESOLVE_IS.sub("", part)))
        for names in narrowing:
            if names is not None:
                allowed = names if allowed is None else allowed & names
        if allowed is not None and not allowed:
            conflicts.append(part)
        if not allowed:
            return sorted(definition), conflicts
        found |= allowed
    return (sorted(found) if parts else sorted(definition)), conflicts


def _components(sp: dict[str, Any], by_url: dict[str, Any], out: SearchTables) -> list[dict]:
    components: list[dict[str, Any]] = []
    fixes = COMPONENT_EXPRESSION_FIXES.get(sp["url"], {})
    for component in sp.get("component", []):
        url = _canonical(component.get("definition", ""))
        definition = by_url.get(url)
        if definition is None:
            out.issue(sp["url"], f"component definition {url} is not in the package")
            continue
        expression = component.get("expression", "")
        was, now = fixes.get(url, (None, None))
        if expression == was and now is not None:
            fix = f"component {definition['code']}: expression {was!r} -> {now!r}"
            out.fixes.setdefault(sp["url"], []).append(fix)
            expression = now
        code, type_ = definition["code"], definition["type"]
        components.append({"code": code, "type": type_, "expression": expression})
    return components


def _skip_reason(sp: dict[str, Any]) -> str | None:
    if _EXAMPLE_ID.fullmatch(sp.get("id", "")):
        return "an example of the SearchParameter resource, not a definition"
    if not sp.get("base"):
        return "no base (and no FHIRPath expression, only an XPath)"
    return None


def search_parameters(package: Package) -> SearchTables:
    """Every SearchParameter of the package, as it applies to each concrete resource type,
    https://hl7.org/fhir/R4/searchparameter.html"""
    model = _Model.of(package)
    out = SearchTables(by_type={t: {} for t in [*model.concrete, RESOURCE]})
    by_url = {sp["url"]: sp for sp in package.search_parameters if "url" in sp}
    type_names = model.resource_names
    for sp in sorted(package.search_parameters, key=lambda sp: sp.get("url", "")):
        reason = _skip_reason(sp)
        if reason is not None:
            out.skipped[sp.get("url", sp.get("id", "?"))] = reason
            continue
        out.used += 1
        _assign(sp, model, type_names, _components(sp, by_url, out), out)
    out.common = dict(sorted(out.by_type.pop(RESOURCE).items()))
    out.by_type = {t: dict(sorted(params.items())) for t, params in out.by_type.items()}
    return out


def _assign(
    sp: dict[str, Any], model: _Model, type_names: set[str], components: list, out: SearchTables
) -> None:
    """Put one definition under each type it applies to, with that type's expression."""
    url, types = sp["url"], model.types_of(sp["base"])
    for base in sp["base"]:
        if base not in type_names:
            out.issue(url, f"base {base} is not a resource type")
    parts = [(part, _lead(part, type_names)) for part in split_union(sp.get("expression", ""))]
    assigned: set[str] = set()
    for type_ in types:
        ancestry = lineage(model.parents, type_)
        mine = [(p, lead) for p, lead in parts if lead is None or lead in ancestry]
        assigned.update(p for p, _lead_type in mine)
        if parts and not mine:
            out.issue(url, f"no part of the expression applies to {type_}")
        own = [_part_for(p, lead, type_) for p, lead in mine]
        entry: dict[str, Any] = {"type": sp["type"], "url": url, "expression": None}
        if own:
            entry["expression"] = " | ".join(own)
        if sp["type"] == "reference":
            entry["targets"], conflicts = _targets(own, sp.get("target", []), model)
            for part in conflicts:
                out.issue(url, f"{part!r} can point to none of the targets {sp.get('target')}")
        if components:
            entry["components"] = components
        if sp["code"] in out.by_type[type_]:
            out.issue(url, f"{type_} already has a parameter {sp['code']!r}")
            continue
        out.by_type[type_][sp["code"]] = entry
    for part, _lead_type in parts:
        if part not in assigned:
            out.issue(url, f"expression part {part!r} applies to no base type")


# --------------------------------------------------------------------------- compartments


@dataclass
class Compartments:
    """Compartment type -> member type -> params; the definitions left out."""

    members: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def compartments(package: Package, searches: SearchTables) -> Compartments:
    """Compartment -> resource type -> the params that put it in the compartment, as the
    core CompartmentDefinitions list them (``{def}`` kept verbatim: the resource is in
    the compartment by definition, being its owner),
    https://hl7.org/fhir/R4/compartmentdefinition.html"""
    out = Compartments()
    for definition in sorted(package.compartment_definitions, key=lambda d: d.get("url", "")):
        code, url = definition.get("code", ""), definition.get("url", "")
        core = _CORE_COMPARTMENTS + code[:1].lower() + code[1:]
        if url != core:
            out.skipped[url] = f"not the core {code} compartment ({core})"
            continue
        members: dict[str, list[str]] = {}
        for resource in definition.get("resource", []):
            params = list(resource.get("param", []))
            if params:
                members[resource["code"]] = params
                _check_members(url, resource["code"], params, searches)
        out.members[code] = dict(sorted(members.items()))
    out.members = dict(sorted(out.members.items()))
    return out


def _check_members(url: str, type_: str, params: list[str], searches: SearchTables) -> None:
    known = searches.by_type.get(type_)
    if known is None:
        searches.issue(url, f"{type_} is not a resource type")
        return
    for param in params:
        if param != DEF and known.get(param, {}).get("type") != "reference":
            searches.issue(url, f"{type_}.{param} is not a reference search parameter")
