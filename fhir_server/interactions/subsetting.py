"""``_summary`` and ``_elements``: https://hl7.org/fhir/R4/search.html#summary and
https://hl7.org/fhir/R4/search.html#elements

A subsetted resource carries the ``SUBSETTED`` tag
(https://terminology.hl7.org/CodeSystem-v3-ObservationValue.html) in ``meta.tag`` so a
client cannot mistake it for the whole resource. Mandatory elements are always kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from resources import fhir_json
from resources.definitions import mandatory_elements, summary_elements

SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
    "display": "Resource encoded in summary mode",
}
_ALWAYS = ("resourceType", "id", "meta")


def subset(content: bytes, type_: str, summary: str | None, elements: Sequence[str]) -> bytes:
    resource = fhir_json.loads_resource(content)
    if summary == "data":
        kept = {k: v for k, v in resource.items() if k != "text"}
    elif summary == "text":
        kept = _keep(resource, {*_ALWAYS, "text", *mandatory_elements(type_)})
    elif summary == "true":
        kept = _keep(resource, {*_ALWAYS, *summary_elements(type_), *mandatory_elements(type_)})
    elif elements:
        wanted = {e.split(".", 1)[1] if "." in e else e for e in elements}
        kept = _keep(resource, {*_ALWAYS, *wanted, *mandatory_elements(type_)})
    else:
        return content
    return fhir_json.dumps(_tagged(kept))


def _keep(resource: dict[str, Any], names: set[str]) -> dict[str, Any]:
    """The entries whose element is named: ``_birthDate`` goes with ``birthDate``, and
    ``valueQuantity`` with ``value[x]`` (or ``value``, as ``_elements`` may say)."""
    stems = {n.removesuffix("[x]") for n in names}

    def wanted(key: str) -> bool:
        name = key.removeprefix("_")
        if name in names:
            return True
        return any(
            name.startswith(stem) and name[len(stem) : len(stem) + 1].isupper() for stem in stems
        )

    return {k: v for k, v in resource.items() if wanted(k)}


def _tagged(resource: dict[str, Any]) -> dict[str, Any]:
    meta = dict(resource.get("meta") or {})
    tags = [t for t in meta.get("tag", []) if t.get("code") != "SUBSETTED"]
    meta["tag"] = [*tags, SUBSETTED]
    out = {"resourceType": resource["resourceType"]}
    if "id" in resource:
        out["id"] = resource["id"]
    out["meta"] = meta
    out.update((k, v) for k, v in resource.items() if k not in out)
    return out
