"""What every write shares: parsing and validating the body, setting ``id`` and ``meta``,
and the response that ``Prefer: return=`` asks for.

https://hl7.org/fhir/R4/http.html#create, https://hl7.org/fhir/R4/http.html#update,
https://hl7.org/fhir/R4/resource.html#Meta (versionId and lastUpdated are set by the
server), https://hl7.org/fhir/R4/http.html#ops (Prefer).
"""

from __future__ import annotations

import uuid
from typing import Any

from fhir_server.headers import prefer_return
from fhir_server.interactions.context import Context, FhirResponse, version_headers
from fhir_server.storage.base import (
    BuildContent,
    IndexEntries,
    StoredVersion,
    WriteRequest,
    WriteResult,
)
from resources import fhir_json
from resources.compartments import memberships
from resources.errors import FhirError, Issue, invalid, operation_outcome
from resources.search.extract import indexer_for
from resources.search.query import SearchQuery
from resources.validation import validate

_SERVER_META = ("versionId", "lastUpdated")
_COLUMN_PARAMS = frozenset({"_id", "_lastUpdated"})


def parse_body(body: bytes, type_: str) -> dict[str, Any]:
    """Parse a resource body and check its ``resourceType`` against the URL."""
    resource = fhir_json.loads_resource(body)
    found = resource.get("resourceType")
    if found is None:
        raise invalid("The resource has no resourceType", "resourceType")
    if found != type_:
        raise invalid(
            f"resourceType {found!r} does not match the type in the URL ({type_})",
            "resourceType",
        )
    return resource


def check_valid(resource: dict[str, Any]) -> None:
    """Validate a resource; 400 with one issue per problem."""
    issues = validate(resource)
    errors = [i for i in issues if i.severity in ("error", "fatal")]
    if errors:
        raise FhirError.from_issues(400, errors)


def index_entries(resource: dict[str, Any], id_: str) -> IndexEntries:
    """The search index rows and sort keys of a resource about to be stored."""
    type_ = resource["resourceType"]
    rows, sort_keys = indexer_for(type_).index({**resource, "id": id_})
    # _id and _lastUpdated are columns of the stored resource, not index rows
    return IndexEntries(
        [r for r in rows if r.code not in _COLUMN_PARAMS],
        [k for k in sort_keys if k.code not in _COLUMN_PARAMS],
        memberships(type_, id_, rows, resource),
    )


def create_request(
    resource: dict[str, Any], unless_exists: SearchQuery | None = None
) -> WriteRequest:
    """A create of ``resource`` under a new server-assigned id (a UUID)."""
    id_ = str(uuid.uuid4())
    return WriteRequest(
        resource["resourceType"],
        id_,
        "create",
        content_builder(resource, id_),
        must_not_exist=True,
        index=index_entries(resource, id_),
        unless_exists=unless_exists,
    )


def content_builder(resource: dict[str, Any], id_: str) -> BuildContent:
    """A ``build(version, last_updated)`` that serialises the resource with its meta."""
    return template_builder(*content_template(resource, id_))


_META_MARK = b'"meta":{"versionId":"0","lastUpdated":""'


def content_template(resource: dict[str, Any], id_: str) -> tuple[bytes, bytes]:
    """The stored bytes of the resource cut where its ``versionId`` and ``lastUpdated``
    go, serialised once: ``template_builder(*content_template(r, i))(v, t)`` equals
    ``fhir_json.dumps(with_meta(r, i, v, t))``. Plain bytes, so a worker process can
    make them and send them to the writer cheaply."""
    data = fhir_json.dumps(with_meta(resource, id_, 0, ""))
    # resourceType and id come first and are JSON strings, in which a quote is escaped:
    # the first unescaped mark is the server's meta
    at = data.index(_META_MARK)
    return data[:at] + b'"meta":{"versionId":"', data[at + len(_META_MARK) :]


def template_builder(head: bytes, tail: bytes) -> BuildContent:
    """The ``build(version, last_updated)`` of a :func:`content_template`."""

    def build(version: int, last_updated: str) -> bytes:
        stamp = fhir_json.dumps(last_updated)
        return b"".join((head, str(version).encode(), b'","lastUpdated":', stamp, tail))

    return build


def with_meta(resource: dict[str, Any], id_: str, version: int, last_updated: str) -> dict:
    """The resource with ``id`` and server-set ``meta`` first, the rest as sent."""
    meta: dict[str, Any] = {"versionId": str(version), "lastUpdated": last_updated}
    client_meta = resource.get("meta")
    if isinstance(client_meta, dict):
        meta.update((k, v) for k, v in client_meta.items() if k not in _SERVER_META)
    out: dict[str, Any] = {"resourceType": resource["resourceType"], "id": id_, "meta": meta}
    out.update((k, v) for k, v in resource.items() if k not in out)
    return out


def write_response(ctx: Context, result: WriteResult, status: int, message: str) -> FhirResponse:
    """The response to a successful write, shaped by ``Prefer: return=``."""
    stored = result.stored
    assert stored is not None
    headers = version_headers(ctx, stored)
    prefer = prefer_return(ctx.header("prefer"))
    if prefer == "minimal":
        return FhirResponse(status, None, headers)
    if prefer == "OperationOutcome":
        outcome = operation_outcome([Issue("informational", message, severity="information")])
        return FhirResponse(status, outcome, headers)
    return FhirResponse(status, stored.content, headers)


def describe(stored: StoredVersion) -> str:
    return f"{stored.type}/{stored.id} version {stored.version}"
