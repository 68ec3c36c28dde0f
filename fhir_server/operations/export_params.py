"""The parameters of an ``$export`` kick-off (https://hl7.org/fhir/uv/bulkdata/export.html,
and ``_until``/``organizeOutputBy`` of v3, https://build.fhir.org/ig/HL7/bulk-data/export.html):
read and checked before a job starts, so that bad input is a 400 and changes nothing."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from urllib.parse import parse_qsl

from fhir_server.operations.base import Invocation
from fhir_server.operations.export_associated import CODES, least_restrictive
from fhir_server.operations.export_run import build_query
from resources.errors import FhirError, invalid
from resources.fhir_datetime import format_instant

NDJSON = "application/fhir+ndjson"
FORMATS = frozenset({NDJSON, "application/ndjson", "ndjson"})

_RESULT_PARAMS = frozenset(
    {
        "_include",
        "_revinclude",
        "_sort",
        "_count",
        "_elements",
        "_summary",
        "_total",
        "_contained",
        "_containedType",
        "_cursor",
        "_format",
        "_pretty",
    }
)
_INSTANT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")
_ELEMENT = re.compile(r"(?:[A-Z][A-Za-z]*\.)?[a-z][A-Za-z0-9]*(?:\[x\])?")


def prefer_tokens(header: str | None) -> list[str]:
    if not header:
        return []
    return [t.strip() for part in header.split(",") for t in part.split(";") if t.strip()]


def unsupported(call: Invocation, strict: bool, known: frozenset[str]) -> list[str]:
    names = sorted({name for name, _ in call.params if name not in known})
    if call.definition.level == "system" and call.values("patient"):
        names.append("patient")
    if names and strict:
        raise invalid(f"$export does not support these parameters: {', '.join(names)}", names[0])
    return [f"The parameter {name} is not supported and was ignored" for name in names]


def instant(value: str | None, name: str) -> str | None:
    """``_since`` or ``_until`` as the stores write ``lastUpdated``: UTC, milliseconds."""
    if value is None:
        return None
    text = value.strip().replace(" ", "+")  # a '+' offset sent unescaped in a query
    if not _INSTANT.fullmatch(text):
        raise invalid(
            f"{name} must be an instant with a time zone, e.g. 2024-01-31T12:00:00Z"
            f" (got {value!r})",
            name,
        )
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise invalid(f"{name} {value!r} is not a valid instant", name) from None
    moment = moment.astimezone(UTC)
    return format_instant(moment.replace(microsecond=moment.microsecond // 1000 * 1000))


def associated(call: Invocation, strict: bool, warnings: list[str]) -> str | None:
    """``includeAssociatedData``: ``latest``, ``relevant`` (the least restrictive of
    the values given) or None; other values are refused under strict handling and
    reported otherwise."""
    values = [v.strip() for value in call.values("includeAssociatedData") for v in value.split(",")]
    values = [v for v in values if v]
    unknown = [v for v in values if v not in CODES]
    if unknown:
        text = (
            f"includeAssociatedData {', '.join(unknown)} is not supported; the values"
            f" supported are {', '.join(CODES)}"
        )
        if strict:
            raise FhirError(400, "not-supported", text)
        warnings.append(text + " (ignored)")
    return least_restrictive([CODES[v] for v in values if v in CODES])


def organize_by(call: Invocation, strict: bool, warnings: list[str]) -> str | None:
    """``organizeOutputBy``: ``Patient`` is supported; another resource type is refused
    under strict handling and reported (the output then organized by type) otherwise."""
    from fhir_server.operations import support_table

    value = call.value("organizeOutputBy")
    if value is None:
        return None
    value = value.strip()
    if value not in support_table().types:
        raise invalid(f"organizeOutputBy {value!r} is not a resource type", "organizeOutputBy")
    if value == "Patient":
        return value
    text = (
        f"organizeOutputBy {value} is not supported (only Patient); the files hold one"
        " resource type each"
    )
    if strict:
        raise FhirError(400, "not-supported", text)
    warnings.append(text)
    return None


def type_filters(
    call: Invocation, types: set[str], warnings: list[str]
) -> dict[str, list[list[tuple[str, str]]]]:
    filters: dict[str, list[list[tuple[str, str]]]] = {}
    for value in call.values("_typeFilter"):
        for text in _split_filters(value):
            type_, _, query = text.partition("?")
            if not query:
                raise invalid(
                    f"_typeFilter {text!r} must be [type]?[search parameters]", "_typeFilter"
                )
            try:
                items = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
            except ValueError:
                raise invalid(f"_typeFilter {text!r} is not a query", "_typeFilter") from None
            if type_ not in types:
                warnings.append(f"_typeFilter {text!r} names a type that is not exported")
                continue
            results = sorted({name for name, _ in items if name in _RESULT_PARAMS})
            if results:
                raise invalid(
                    f"_typeFilter {text!r}: {', '.join(results)} may not be used here",
                    "_typeFilter",
                )
            build_query(type_, items)  # 400 now rather than a failed job later
            filters.setdefault(type_, []).append(items)
    return filters


def _split_filters(value: str) -> list[str]:
    """``_typeFilter`` values are comma separated; a comma inside a query is escaped."""
    parts, current = [], ""
    for piece in value.split(","):
        if current and "?" not in piece.split("&", 1)[0]:
            current += "," + piece  # a comma inside a search value (OR)
        else:
            if current:
                parts.append(current)
            current = piece
    if current:
        parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def elements(call: Invocation, types: list[str]) -> dict[str, list[str]]:
    names = [e.strip() for v in call.values("_elements") for e in v.split(",") if e.strip()]
    for name in names:
        if not _ELEMENT.fullmatch(name):
            raise invalid(f"_elements: {name!r} is not [type.]element", "_elements")
    elements: dict[str, list[str]] = {}
    for type_ in types:
        chosen = [n for n in names if "." not in n or n.split(".", 1)[0] == type_]
        if chosen:
            elements[type_] = [n.split(".", 1)[1] if "." in n else n for n in chosen]
    return elements
