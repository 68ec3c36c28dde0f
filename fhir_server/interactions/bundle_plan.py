"""The plan of one transaction entry, and what is built from it: the patched resource,
the write requests (tracked, to name the entry whose precondition failed) and the
response entry. https://hl7.org/fhir/R4/http.html#transaction
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fhir_server.headers import parse_etag_version, prefer_return
from fhir_server.interactions.bundle_entries import (
    BundleEntry,
    from_stored,
    informational,
    patch_body,
    status_line,
)
from fhir_server.interactions.context import Context
from fhir_server.interactions.patch import (
    check_identity,
    current_version,
    patcher,
)
from fhir_server.storage.base import (
    AlreadyExists,
    ConditionMatched,
    StoredVersion,
    VersionConflict,
    WriteRequest,
    WriteResult,
)
from resources import fhir_json
from resources.errors import invalid, precondition_failed
from resources.search.query import SearchQuery


@dataclass
class Plan:
    """What one entry will do."""

    entry: BundleEntry
    kind: str = ""  # create, existing, update, patch, delete, read
    type: str = ""
    id: str = ""
    existing: StoredVersion | None = None
    same_as: Plan | None = None
    unless: SearchQuery | None = None
    targets: list[str] = field(default_factory=list)
    requests: list[WriteRequest] = field(default_factory=list)
    results: list[WriteResult] = field(default_factory=list)
    user_if_match: bool = False


def user_if_match(plan: Plan) -> int | None:
    header = plan.entry.request_field("ifMatch")
    if header is None:
        return None
    plan.user_if_match = True
    return parse_etag_version(header, f"{plan.entry.where}.request.ifMatch")


async def patched(ctx: Context, plan: Plan) -> dict[str, Any]:
    current = await current_version(ctx, plan.type, plan.id)
    if_match = user_if_match(plan)
    if if_match is not None and current.version != if_match:
        raise precondition_failed(
            f"ifMatch {plan.entry.request_field('ifMatch')} does not match the current"
            f" version of {plan.type}/{plan.id} ({current.version})"
        )
    content_type, body = patch_body(plan.entry)
    apply = patcher(content_type, body)
    assert current.content is not None
    patched: dict[str, Any] = apply(fhir_json.loads_resource(current.content))
    check_identity(patched, plan.type, plan.id)
    plan.existing = current
    return patched


def written_entry(ctx: Context, plan: Plan) -> dict[str, Any]:
    if plan.kind == "existing":
        stored = plan.existing or (plan.same_as.results[0].stored if plan.same_as else None)
        assert stored is not None
        message = f"{plan.type}/{plan.id} matches ifNoneExist; nothing created"
        return from_stored(ctx, stored, 200, message)
    if plan.kind == "delete":
        return _deleted(ctx, plan)
    result = plan.results[0]
    assert result.stored is not None
    described = f"{plan.type}/{plan.id} version {result.stored.version}"
    if result.created:
        return from_stored(ctx, result.stored, 201, f"Created {described}")
    verb = "Patched" if plan.kind == "patch" else "Updated"
    return from_stored(ctx, result.stored, 200, f"{verb} {described}")


def check_full_urls(entries: list[BundleEntry]) -> set[str]:
    """The fullUrls of the bundle's writes; a fullUrl used twice is an error."""
    seen: dict[str, BundleEntry] = {}
    for entry in entries:
        if entry.full_url is None or entry.method in ("GET", "HEAD", "DELETE"):
            continue
        other = seen.setdefault(entry.full_url, entry)
        if other is not entry:
            raise invalid(
                f"{entry.label}: fullUrl {entry.full_url!r} is already the fullUrl of"
                f" {other.where}; each entry of a transaction needs its own",
                f"{entry.where}.fullUrl",
            )
    return set(seen)


def tracked_request(request: WriteRequest, position: int, progress: list[int]) -> WriteRequest:
    build = request.build
    if build is None:
        return request

    def tracked(version: int, last_updated: str) -> bytes:
        progress[0] = position
        assert build is not None
        return build(version, last_updated)

    return WriteRequest(
        request.type,
        request.id,
        request.method,
        tracked,
        request.if_match,
        request.must_not_exist,
        request.index,
        request.unless_exists,
    )


def culprit(pairs: list[tuple[Plan, WriteRequest]], progress: int, exc: Exception) -> Plan:
    """The entry whose write failed: the first at or after the last one built that has
    the precondition that failed."""
    wanted: Callable[[WriteRequest], bool] = {
        VersionConflict: lambda r: r.if_match is not None,
        ConditionMatched: lambda r: r.unless_exists is not None,
        AlreadyExists: lambda r: r.must_not_exist,
    }[type(exc)]
    for plan, request in pairs[progress:]:
        if wanted(request):
            return plan
    return pairs[min(progress, len(pairs) - 1)][0]


def _deleted(ctx: Context, plan: Plan) -> dict[str, Any]:
    changed = [r for r in plan.results if r.changed]
    if len(plan.entry.segments) == 2:
        message = (
            f"Deleted {plan.type}/{plan.id}"
            if changed
            else (f"{plan.type}/{plan.id} does not exist or was already deleted; nothing to delete")
        )
    else:
        message = f"Deleted {len(changed)} {plan.type} resource(s)"
    response: dict[str, Any] = {"status": status_line(200)}
    if len(plan.results) == 1 and plan.results[0].stored is not None:
        response["etag"] = f'W/"{plan.results[0].stored.version}"'
    if prefer_return(ctx.header("prefer")) == "minimal":
        response["status"] = status_line(204)
    else:
        response["outcome"] = informational(message)
    return {"response": response}
