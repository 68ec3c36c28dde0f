"""Reference search values (https://hl7.org/fhir/R4/search.html#reference,
https://hl7.org/fhir/R4/references.html).

What one value indexes as a :class:`ReferenceRow`:

- ``Reference.reference`` relative ``Type/id`` -> target type and id; ``Type/id/_history/v``
  also fills ``version``.
- An absolute URL is kept as written in ``url``; when its path ends in ``Type/id`` (or
  ``Type/id/_history/v``) with a known resource type - a RESTful FHIR URL - the target
  type and id are filled too, so the query side can match it by id or by URL.
- ``urn:uuid:``/``urn:oid:`` and other non-FHIR URLs: ``url`` only; so is a relative
  reference that is not ``Type/id`` (validation normally rejects those), to keep it
  matchable by its exact text.
- A contained reference ``#x`` is not indexed (the target lives inside this resource, not
  in the store); the row still carries ``Reference.identifier`` when present.
- ``Reference.identifier`` -> ``identifier_system``/``identifier_value`` (``:identifier``).
- ``canonical``: ``url|version`` splits into ``url`` and ``version`` (versioned canonical
  search); a canonical that is a RESTful FHIR URL also gets its target type and id.
- ``uri``/``url`` (and strings) used as references: like ``Reference.reference``.
- A resource itself (``Bundle.entry[0].resource`` for Bundle ``composition``/``message``):
  its own ``Type/id``.

Sort value: ``Type/id``, else the URL.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from resources.definitions import resource_types
from resources.search.model import ReferenceRow

Item = tuple[Any, str]

_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_STRING_TYPES = frozenset({"uri", "url", "string", "System.String", "oid", "uuid", "id", "code"})


@lru_cache(maxsize=8192)
def parse_reference(text: str) -> tuple[str | None, str | None, str | None, str | None]:
    """``(target_type, target_id, version, url)`` of a reference string; all None for a
    contained reference."""
    if not text or text.startswith("#"):
        return None, None, None, None
    absolute = "://" in text or text.startswith("urn:")
    path = text.split("?", 1)[0].split("#", 1)[0]
    segments = path.rstrip("/").split("/")
    version: str | None = None
    if len(segments) >= 4 and segments[-2] == "_history":
        version = segments[-1]
        segments = segments[:-2]
    fhir_shaped = len(segments) == 2 or (absolute and len(segments) > 2)
    if fhir_shaped and _is_target(segments[-2], segments[-1]):
        return segments[-2], segments[-1], version, text if absolute else None
    return None, None, None, text


def reference_type(reference: dict[str, Any]) -> str | None:
    """The resource type a Reference points at: from ``reference``, else ``type``.

    This is what ``resolve()`` yields for ``where(resolve() is Patient)``: the type of the
    target, known without fetching it. A logical reference (identifier only) with
    ``Reference.type`` set resolves to that type.
    """
    text = reference.get("reference")
    if isinstance(text, str) and not text.startswith("#"):
        target_type = parse_reference(text)[0]
        if target_type is not None:
            return target_type
    declared = reference.get("type")
    if isinstance(declared, str):
        name = declared.rsplit("/", 1)[-1]
        if name in resource_types():
            return name
    return None


def reference_rows(code: str, items: Iterable[Item]) -> list[ReferenceRow]:
    rows: list[ReferenceRow] = []
    for value, type_name in items:
        if isinstance(value, str):
            row = _string_row(code, value, type_name)
        elif isinstance(value, dict):
            row = _dict_row(code, value)
        else:
            row = None
        if row is not None:
            rows.append(row)
    return rows


def reference_sort_value(row: ReferenceRow) -> str | None:
    if row.target_type is not None and row.target_id is not None:
        return f"{row.target_type}/{row.target_id}"
    return row.url


def _is_target(type_name: str, resource_id: str) -> bool:
    return type_name in resource_types() and _ID.match(resource_id) is not None


def _string_row(code: str, value: str, type_name: str) -> ReferenceRow | None:
    if type_name == "canonical":
        url, _bar, version = value.partition("|")
        target_type, target_id, _v, _u = parse_reference(url)
        return ReferenceRow(code, target_type, target_id, url, version or None)
    if type_name not in _STRING_TYPES:
        return None
    target_type, target_id, version, url = parse_reference(value)
    if target_type is None and url is None:
        return None
    return ReferenceRow(code, target_type, target_id, url, version)


def _dict_row(code: str, value: dict[str, Any]) -> ReferenceRow | None:
    resource_type = value.get("resourceType")
    if isinstance(resource_type, str):
        resource_id = value.get("id")
        if not isinstance(resource_id, str):
            return None
        return ReferenceRow(code, resource_type, resource_id, None)
    text = value.get("reference")
    target_type = target_id = version = url = None
    if isinstance(text, str):
        target_type, target_id, version, url = parse_reference(text)
    system = ident_value = None
    identifier = value.get("identifier")
    if isinstance(identifier, dict):
        system, ident_value = identifier.get("system"), identifier.get("value")
        if not isinstance(system, str):
            system = None
        if not isinstance(ident_value, str):
            ident_value = None
    if target_type is None and url is None and system is None and ident_value is None:
        return None
    return ReferenceRow(code, target_type, target_id, url, version, system, ident_value)
