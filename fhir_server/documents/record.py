"""What a patient's documents are built from: the patient, the organisation and the
parts of the record, read through the caller's store (``ctx.store``: the guarded store
of the token under SMART), so a document holds only what the token may read
(issue 20: "a document is built from what the token may read").

A type the token has no scope for is left out of the document, as a search leaves it
out; the patient itself must be readable (else ``404``, deleted ``410``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from fhir_server.interactions.context import Context, check_id
from resources import fhir_json
from resources.errors import FhirError, gone, not_found
from resources.search.parameters import search_params
from resources.search.parse import parse_search
from resources.terminology import value_set_codes

MAX_ENTRIES = 1000
"""The most resources of one kind a document lists (the newest first where sorted)."""


async def read(ctx: Context, type_: str, id_: str) -> dict[str, Any] | None:
    """``type_/id_`` as the caller may read it (None: absent, deleted or not theirs)."""
    try:
        stored = await ctx.store.read(type_, id_)
    except FhirError as error:
        if error.status in (403, 404):
            return None
        raise
    if stored is None or stored.deleted or stored.content is None:
        return None
    return fhir_json.loads(stored.content)


async def read_required(ctx: Context, type_: str, id_: str) -> dict[str, Any]:
    """``type_/id_``, or the ``404``/``410`` of a read."""
    check_id(id_)
    stored = await ctx.store.read(type_, id_)
    if stored is None:
        raise not_found(f"{type_}/{id_} is not known")
    if stored.deleted or stored.content is None:
        raise gone(f"{type_}/{id_} was deleted")
    return fhir_json.loads(stored.content)


async def search(
    ctx: Context, type_: str, items: Sequence[tuple[str, str]], count: int = MAX_ENTRIES
) -> list[dict[str, Any]]:
    """The resources of ``type_`` matching ``items`` that the caller may read (none when
    the token has no scope for the type)."""
    query = parse_search(
        (type_,),
        items,
        strict=True,
        params_for=search_params,
        max_count=MAX_ENTRIES,
        default_count=count,
        value_set=value_set_codes,
    )
    try:
        page = await ctx.store.search(query, None, count, False)
    except FhirError as error:
        if error.status == 403:
            return []
        raise
    return [fhir_json.loads(s.content) for s in page.entries if s.content is not None]


async def organization_name(ctx: Context, patient: dict[str, Any]) -> str:
    """The patient's ``managingOrganization`` (its name, or the reference's display),
    else ``FHIR_SERVER_ORGANIZATION_NAME``."""
    managing = patient.get("managingOrganization")
    if isinstance(managing, dict):
        reference = managing.get("reference")
        if isinstance(reference, str) and reference.startswith("Organization/"):
            organization = await read(ctx, "Organization", reference.split("/", 1)[1])
            if organization is not None and isinstance(organization.get("name"), str):
                return str(organization["name"])
        if isinstance(managing.get("display"), str):
            return str(managing["display"])
    return str(getattr(ctx.settings, "organization_name", "") or "FHIR Server")


def human_name(resource: dict[str, Any] | None) -> str:
    """``Alice Smith`` (the first name's text, or its given and family names)."""
    names = (resource or {}).get("name")
    if isinstance(names, str):
        return names
    if not isinstance(names, list) or not names:
        return ""
    name = next((n for n in names if isinstance(n, dict) and n.get("use") == "official"), names[0])
    if not isinstance(name, dict):
        return ""
    if isinstance(name.get("text"), str):
        return str(name["text"])
    parts = [*name.get("prefix", []), *name.get("given", []), name.get("family", "")]
    return " ".join(str(p) for p in parts if p)


def concept_text(concept: Any) -> str:
    """The text of a CodeableConcept: its ``text``, else a coding's display or code."""
    if not isinstance(concept, dict):
        return ""
    if isinstance(concept.get("text"), str):
        return str(concept["text"])
    for coding in concept.get("coding", []):
        if isinstance(coding, dict) and (coding.get("display") or coding.get("code")):
            return str(coding.get("display") or coding.get("code"))
    return ""


def reference_text(reference: Any) -> str:
    """A Reference as text: its ``display``, else the reference itself."""
    if not isinstance(reference, dict):
        return ""
    return str(reference.get("display") or reference.get("reference") or "")


def when(resource: dict[str, Any], *keys: str) -> str:
    """The first of the date elements ``keys`` (a Period's start), as written."""
    for key in keys:
        value = resource.get(key)
        if isinstance(value, str):
            return value
        if isinstance(value, dict) and isinstance(value.get("start"), str):
            return str(value["start"])
    return ""


def day(value: str) -> str:
    """``2024-03-05T09:00:00Z`` -> ``2024-03-05``."""
    return value[:10]


def newest_first(resources: Iterable[dict[str, Any]], *keys: str) -> list[dict[str, Any]]:
    return sorted(resources, key=lambda r: when(r, *keys), reverse=True)


def quantity_text(resource: dict[str, Any]) -> str:
    """An Observation's value as text (a quantity with its unit, a code, a string, or
    its components)."""
    value = resource.get("valueQuantity")
    if isinstance(value, dict) and "value" in value:
        unit = value.get("unit") or value.get("code") or ""
        return f"{value['value']} {unit}".strip()
    if "valueCodeableConcept" in resource:
        return concept_text(resource["valueCodeableConcept"])
    for key in ("valueString", "valueBoolean", "valueInteger"):
        if key in resource:
            return str(resource[key])
    parts = [
        f"{concept_text(c.get('code'))} {quantity_text(c)}"
        for c in resource.get("component", [])
        if isinstance(c, dict)
    ]
    return "; ".join(parts)


def now_text() -> str:
    """The generation time, ``2026-12-06 08:40 UTC``."""
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
