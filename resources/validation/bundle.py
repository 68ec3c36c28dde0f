"""Rules of Bundles kept as resources (documents, messages, collections, search sets,
histories), beyond the invariants ``bdl-*``: https://hl7.org/fhir/R4/bundle.html.

- ``fullUrl`` is an absolute URI (https://hl7.org/fhir/R4/bundle.html#bundle-unique;
  ``urn:uuid:`` and ``urn:oid:`` are absolute), and when it looks like a RESTful URL
  (``[base]/Patient/123``) its type and id are the resource's ("fullUrl SHALL NOT
  disagree with the id in the resource");
- no two entries are the same resource: the same ``fullUrl`` (or, without one, the same
  type and id) and the same ``meta.versionId`` (not in a ``history``, which holds versions);
- a ``document`` (https://hl7.org/fhir/R4/documents.html#content) starts with its
  Composition (also ``bdl-11``), and every reference of the Composition resolves to one
  entry of the Bundle (https://hl7.org/fhir/R4/bundle.html#references: an absolute
  reference by ``fullUrl``, a relative one against the base of the Composition's
  RESTful ``fullUrl`` or by type and id; a version-specific one to the entry with that
  ``meta.versionId``);
- in a ``searchset`` (https://hl7.org/fhir/R4/bundle.html#searchset) an entry whose
  ``search.mode`` is ``outcome`` is an OperationOutcome, and the search results (``match``,
  ``include``, and entries without a mode that are not an OperationOutcome) have ids.

Bundles of type ``transaction`` and ``batch`` (and their responses) are requests to
process (https://hl7.org/fhir/R4/http.html#transaction), checked by the interactions that
process them: these rules do not apply to them.
"""

from __future__ import annotations

import re
from typing import Any

from resources import definitions
from resources.errors import Issue

_PROCESSED = frozenset({"transaction", "batch", "transaction-response", "batch-response"})
_ABSOLUTE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:\S")
_RESTFUL = re.compile(
    r"(?:(?P<base>https?://\S*?)/)?(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})"
    r"(?:/_history/(?P<version>[A-Za-z0-9\-.]{1,64}))?"
)


def problems(bundle: dict[str, Any], expr: str) -> list[Issue]:
    """The problems of a Bundle (``expr`` is its path: ``Bundle`` or where it is nested)."""
    kind = bundle.get("type")
    entries = bundle.get("entry")
    if kind in _PROCESSED or not isinstance(entries, list):
        return []
    out: list[Issue] = []
    seen: dict[tuple[Any, ...], int] = {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            continue
        where = f"{expr}.entry[{index}]"
        _full_url(entry, where, out)
        identity = _identity(entry)
        if identity is not None and kind != "history":
            if identity in seen:
                out.append(
                    _issue(
                        where,
                        f"Entry {index} is the same resource as entry {seen[identity]} "
                        f"({_describe(identity)}): a resource is in a Bundle once",
                    )
                )
            else:
                seen[identity] = index
    if kind == "document":
        _document(entries, expr, out)
    elif kind == "searchset":
        _searchset(entries, expr, out)
    return out


def _issue(where: str, message: str) -> Issue:
    return Issue("invalid", message, expression=(where,))


def _resource(entry: dict[str, Any]) -> dict[str, Any] | None:
    resource = entry.get("resource")
    return resource if isinstance(resource, dict) else None


def _version(resource: dict[str, Any] | None) -> Any:
    meta = resource.get("meta") if resource else None
    return meta.get("versionId") if isinstance(meta, dict) else None


def _full_url(entry: dict[str, Any], where: str, out: list[Issue]) -> None:
    full_url = entry.get("fullUrl")
    if not isinstance(full_url, str):
        return
    if not _ABSOLUTE.match(full_url):
        out.append(
            _issue(f"{where}.fullUrl", f"The fullUrl must be an absolute URI, not {full_url!r}")
        )
        return
    resource = _resource(entry)
    match = _RESTFUL.fullmatch(full_url)
    if resource is None or match is None or not match.group("base"):
        return
    if not definitions.is_resource_type(match.group("type")):
        return
    type_, id_ = resource.get("resourceType"), resource.get("id")
    if match.group("type") != type_ or (isinstance(id_, str) and match.group("id") != id_):
        out.append(
            _issue(
                f"{where}.fullUrl",
                f"The fullUrl {full_url!r} is a RESTful URL of {match.group('type')}/"
                f"{match.group('id')}, not of the entry's resource ({type_}/{id_})",
            )
        )


def _identity(entry: dict[str, Any]) -> tuple[Any, ...] | None:
    resource = _resource(entry)
    full_url = entry.get("fullUrl")
    if isinstance(full_url, str):
        return ("fullUrl", full_url, _version(resource))
    if resource is not None and isinstance(resource.get("id"), str):
        return ("id", resource.get("resourceType"), resource["id"], _version(resource))
    return None


def _describe(identity: tuple[Any, ...]) -> str:
    by_url = identity[0] == "fullUrl"
    text = f"fullUrl {identity[1]}" if by_url else f"{identity[1]}/{identity[2]}"
    return text + (f", version {identity[-1]}" if identity[-1] is not None else "")


# --------------------------------------------------------------------------- documents


def _document(entries: list[Any], expr: str, out: list[Issue]) -> None:
    first = entries[0] if entries and isinstance(entries[0], dict) else {}
    composition = _resource(first)
    if composition is None or composition.get("resourceType") != "Composition":
        out.append(_issue(f"{expr}.entry[0]", "A document Bundle starts with its Composition"))
        return
    base = _base(first.get("fullUrl"))
    where = f"{expr}.entry[0].resource"
    for path, reference in _references(composition, where):
        found = _resolve(reference, base, entries)
        if len(found) == 1:
            continue
        if found:
            message = (
                f"{reference!r} matches {len(found)} entries of the document "
                f"(entries {', '.join(map(str, found))}): it must resolve to one"
            )
        else:
            message = f"{reference!r} does not resolve to an entry of the document Bundle"
        out.append(_issue(path, message))


def _base(full_url: Any) -> str | None:
    """The service base of a RESTful fullUrl (``http://x/fhir`` of ``http://x/fhir/A/1``)."""
    if not isinstance(full_url, str):
        return None
    match = _RESTFUL.fullmatch(full_url)
    return match.group("base") if match and match.group("base") else None


def _references(value: Any, path: str) -> list[tuple[str, str]]:
    """(path, reference) of the References below a value, extensions and contained
    resources left out; local (``#``) references too."""
    out: list[tuple[str, str]] = []
    if isinstance(value, dict):
        reference = value.get("reference")
        if isinstance(reference, str) and not reference.startswith("#"):
            out.append((path, reference))
        for key, child in value.items():
            if key in ("extension", "modifierExtension", "contained", "text"):
                continue
            if isinstance(child, list):
                for index, item in enumerate(child):
                    out.extend(_references(item, f"{path}.{key}[{index}]"))
            elif isinstance(child, dict):
                out.extend(_references(child, f"{path}.{key}"))
    return out


def _resolve(reference: str, base: str | None, entries: list[Any]) -> list[int]:
    """The indexes of the entries a reference of the document resolves to."""
    version = None
    target = reference
    match = _RESTFUL.fullmatch(reference)
    if match is not None and match.group("version"):
        version = match.group("version")
        target = reference[: reference.index("/_history/")]
    candidates = {target}
    typed = None
    if match is not None and not match.group("base"):  # relative: Type/id
        typed = (match.group("type"), match.group("id"))
        if base is not None:
            candidates.add(f"{base}/{target}")
    found = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            continue
        resource = _resource(entry)
        same = entry.get("fullUrl") in candidates or (
            typed is not None
            and resource is not None
            and (resource.get("resourceType"), resource.get("id")) == typed
        )
        if same and (version is None or _version(resource) == version):
            found.append(index)
    return found


# --------------------------------------------------------------------------- search sets


def _searchset(entries: list[Any], expr: str, out: list[Issue]) -> None:
    for index, entry in enumerate(entries):
        resource = _resource(entry) if isinstance(entry, dict) else None
        if resource is None:
            continue
        search = entry.get("search")
        mode = search.get("mode") if isinstance(search, dict) else None
        is_outcome = resource.get("resourceType") == "OperationOutcome"
        where = f"{expr}.entry[{index}]"
        if mode == "outcome" and not is_outcome:
            message = (
                f"An entry whose search mode is 'outcome' is an OperationOutcome, "
                f"not a {resource.get('resourceType')}"
            )
            out.append(_issue(f"{where}.resource", message))
        elif (mode in ("match", "include") or (mode is None and not is_outcome)) and not (
            resource.get("id")
        ):
            out.append(_issue(f"{where}.resource", "A search result (match or include) has an id"))
