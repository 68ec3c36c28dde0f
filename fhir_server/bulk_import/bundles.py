"""The resources of a Bundle file, with ``fullUrl`` placeholders turned into ids.

https://hl7.org/fhir/R4/bundle.html#references: an entry whose ``fullUrl`` is a
``urn:uuid:`` or ``urn:oid:`` placeholder and whose resource has no id gets a
deterministic id derived from the placeholder (the uuid itself, or the oid digits), and
every reference to the placeholder anywhere in the bundle (nested elements, extensions,
contained resources, links in the narrative) becomes ``Type/id``. Entries of any bundle
type (batch, transaction, collection, searchset, …) are imported as updates by id;
``DELETE`` and ``GET`` entries and entries without a resource are skipped. Conditional
references (``Practitioner?identifier=…``, as in Synthea's patient bundles) are resolved
by the importer against the store (see ``pipeline.Importer``).
"""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from fhir_server.interactions.references import rewrite_references

_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_PLACEHOLDER = ("urn:uuid:", "urn:oid:")
_ABSOLUTE_TAIL = re.compile(r"/([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]*)?$")


@dataclass(frozen=True, slots=True)
class Entry:
    """One entry to import: its index in the bundle, or why it is skipped."""

    index: int
    resource: dict[str, Any] | None
    skipped: str | None = None


def bundle_entries(bundle: dict[str, Any]) -> Iterator[Entry]:
    """The bundle's resources, placeholders resolved, in entry order."""
    entries = bundle.get("entry")
    if not isinstance(entries, list):
        return
    mapping = _placeholder_ids(entries)
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            yield Entry(index, None, "the entry is not a JSON object")
            continue
        request = entry.get("request")
        method = request.get("method") if isinstance(request, dict) else None
        resource = entry.get("resource")
        if method in ("DELETE", "GET", "HEAD"):
            yield Entry(index, None, f"{method} entries are not imported")
            continue
        if not isinstance(resource, dict):
            yield Entry(index, None, "the entry has no resource")
            continue
        full_url = entry.get("fullUrl")
        derived = placeholder_id(full_url) if isinstance(full_url, str) else None
        if "id" not in resource and derived is not None:
            resource = {**resource, "id": derived}
        if mapping:
            resource = copy.deepcopy(resource)
            rewrite_references(resource, mapping.get)
        yield Entry(index, resource)


def _placeholder_ids(entries: list[Any]) -> dict[str, str]:
    """``fullUrl`` -> ``Type/id`` for every entry whose fullUrl others may refer to."""
    mapping: dict[str, str] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        full_url, resource = entry.get("fullUrl"), entry.get("resource")
        if not isinstance(full_url, str) or not isinstance(resource, dict):
            continue
        type_ = resource.get("resourceType")
        if not isinstance(type_, str):
            continue
        id_ = resource.get("id")
        if not isinstance(id_, str):
            id_ = placeholder_id(full_url)
        if id_ is not None and full_url.startswith(_PLACEHOLDER):
            mapping[full_url] = f"{type_}/{id_}"
    return mapping


def placeholder_id(full_url: str) -> str | None:
    """The id an entry without one gets from its fullUrl (None: not derivable)."""
    for prefix in _PLACEHOLDER:
        if full_url.startswith(prefix):
            tail = full_url[len(prefix) :]
            if _ID.fullmatch(tail):
                return tail
            return hashlib.sha256(full_url.encode()).hexdigest()[:32]
    match = _ABSOLUTE_TAIL.search(full_url)
    return match.group(2) if match else None
