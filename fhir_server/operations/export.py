"""``$export``: FHIR Bulk Data Access 2.0 (https://hl7.org/fhir/uv/bulkdata/export.html)
with the asynchronous request pattern (https://hl7.org/fhir/R4/async.html).

- Kick-off: ``GET|POST [base]/$export``, ``[base]/Patient/$export``,
  ``[base]/Group/[id]/$export`` with ``Prefer: respond-async``: ``202`` and the status
  URL in ``Content-Location``. Parameters ``_outputFormat``, ``_since``, ``_type``,
  ``_typeFilter``, ``_elements``, ``patient``; others are refused (400) under
  ``Prefer: handling=strict`` and reported in the manifest's ``error`` otherwise.
- Status (``[base]/$export-status/[job]``): ``202`` with ``X-Progress`` and
  ``Retry-After`` while it runs, ``200`` with the manifest when complete, ``500`` with
  the OperationOutcome of a failed job; ``DELETE`` cancels and removes the files.
- Files (``[base]/$export-file/[job]/[name]``): NDJSON, with the same access token.

Only the caller that started a job (the same client, and the same user) sees its status
and files; anyone else gets ``404``. What is exported is what the caller's token may
search: ``system/`` scopes at every level; a patient-context token is refused at system
level, and its Patient and Group exports hold only its own compartment (the guarded
store applies the compartment rules to every page read).
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from starlette.responses import FileResponse

from capability.support import OperationDefinition, OperationParameter
from fhir_server.access import compile_access
from fhir_server.headers import prefer_handling
from fhir_server.interactions.context import check_id, query_string
from fhir_server.operations.base import (
    Context,
    ExtraRoute,
    FhirResponse,
    Invocation,
    Operation,
    policy_of,
)
from fhir_server.operations.export_jobs import Job, Jobs, export_dir
from fhir_server.operations.export_run import (
    Plan,
    build_query,
    patient_compartment_types,
    start,
)
from fhir_server.storage.base import now_instant
from resources import fhir_json
from resources.errors import FhirError, Issue, invalid, operation_outcome
from resources.fhir_datetime import format_instant

BULK = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition"
NDJSON = "application/fhir+ndjson"
_FORMATS = frozenset({NDJSON, "application/ndjson", "ndjson"})
_SCOPES = ("system/*.rs", "system/*.read", "user/*.rs", "patient/*.rs")
_PARAMETERS = (
    OperationParameter("_outputFormat", "string", documentation="application/fhir+ndjson"),
    OperationParameter("_since", "instant"),
    OperationParameter("_type", "string", max="*"),
    OperationParameter("_typeFilter", "string", max="*"),
    OperationParameter("_elements", "string", max="*"),
)
_PATIENT = OperationParameter("patient", "Reference", max="*")
_KNOWN = frozenset(p.name for p in (*_PARAMETERS, _PATIENT)) | {"_format", "_pretty"}
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
RETRY_AFTER = 2


def _definition(level: str, canonical: str, types: tuple[str, ...]) -> OperationDefinition:
    return OperationDefinition(
        "export",
        f"{BULK}/{canonical}",
        level,  # type: ignore[arg-type]
        resource_types=types,
        parameters=_PARAMETERS if level == "system" else (*_PARAMETERS, _PATIENT),
        scopes=_SCOPES[:2] if level == "system" else _SCOPES,
        documentation="Bulk Data export (asynchronous: Prefer: respond-async); NDJSON files"
        " served with the same access token",
        instantiates=("http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data",),
    )


# -- kick-off ---------------------------------------------------------------------------


async def kick_off(ctx: Context, call: Invocation) -> FhirResponse:
    if "respond-async" not in _prefer_tokens(ctx.header("prefer")):
        raise invalid("$export is asynchronous: send the header Prefer: respond-async")
    strict = prefer_handling(ctx.header("prefer")) == "strict"
    warnings = _unsupported(call, strict)
    output_format = call.value("_outputFormat")
    if output_format is not None:  # a '+' sent unescaped in a query reads as a space
        output_format = output_format.strip().replace(" ", "+")
    if output_format is not None and output_format not in _FORMATS:
        raise invalid(
            f"_outputFormat {output_format!r} is not supported; use {NDJSON}", "_outputFormat"
        )
    since = _since(call.value("_since"))
    policy = policy_of(ctx)
    if call.definition.level == "system" and policy is not None:
        grants = compile_access(policy, "s").grants
        if not grants or any(g.compartments is not None for g in grants):
            raise FhirError(
                403,
                "forbidden",
                "A system-level $export needs a token with system/ scopes (or a staff"
                " user's); a patient's token may export at Patient or Group level",
            )
    patients = await _patients(ctx, call)
    plan = _plan(ctx, call, since, patients, warnings)
    jobs = Jobs(export_dir(ctx.settings), ctx.settings)
    job = jobs.create(
        _owner(ctx), _request_url(ctx, call), now_instant(), ctx.settings.export_max_jobs
    )
    if job is None:
        error = FhirError(
            429,
            "throttled",
            f"{ctx.settings.export_max_jobs} exports are running; try again later",
        )
        error.headers["Retry-After"] = "30"
        raise error
    if warnings:
        _write_warnings(jobs, job, warnings)
    inner = getattr(ctx.store, "inner", ctx.store)
    start(jobs, job, plan, ctx.store, inner, ctx.settings.export_file_max_bytes)
    outcome = operation_outcome(
        [
            Issue(
                "informational", "The export started; poll Content-Location", severity="information"
            )
        ]
    )
    return FhirResponse(202, outcome, {"Content-Location": _status_url(ctx, job.id)})


def _prefer_tokens(header: str | None) -> list[str]:
    if not header:
        return []
    return [t.strip() for part in header.split(",") for t in part.split(";") if t.strip()]


def _unsupported(call: Invocation, strict: bool) -> list[str]:
    names = sorted({name for name, _ in call.params if name not in _KNOWN})
    if call.definition.level == "system" and call.values("patient"):
        names.append("patient")
    if names and strict:
        raise invalid(f"$export does not support these parameters: {', '.join(names)}", names[0])
    return [f"The parameter {name} is not supported and was ignored" for name in names]


def _since(value: str | None) -> str | None:
    """``_since`` as the stores write ``lastUpdated``: UTC, milliseconds."""
    if value is None:
        return None
    text = value.strip().replace(" ", "+")  # a '+' offset sent unescaped in a query
    if not _INSTANT.fullmatch(text):
        raise invalid(
            f"_since must be an instant with a time zone, e.g. 2024-01-31T12:00:00Z"
            f" (got {value!r})",
            "_since",
        )
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise invalid(f"_since {value!r} is not a valid instant", "_since") from None
    moment = moment.astimezone(UTC)
    return format_instant(moment.replace(microsecond=moment.microsecond // 1000 * 1000))


async def _patients(ctx: Context, call: Invocation) -> list[str] | None:
    """The patients a Group or ``patient`` export is limited to (None: not limited)."""
    if call.definition.level == "system":
        return None
    named: list[str] | None = None
    if call.values("patient"):
        named = []
        for value in call.values("patient"):
            for reference in value.split(","):
                parts = reference.strip().split("/")
                if len(parts) != 2 or parts[0] != "Patient":
                    raise invalid(
                        f"patient must be a Patient reference (got {reference!r})", "patient"
                    )
                named.append(check_id(parts[1], "patient"))
    if call.definition.level != "instance":
        return named
    assert call.id is not None
    group = await ctx.store.read("Group", call.id)
    if group is None or group.deleted or group.content is None:
        raise FhirError(404, "not-found", f"Group/{call.id} is not known")
    members = _members(fhir_json.loads(group.content))
    if named is not None:
        members = [m for m in members if m in set(named)]
    return members


def _members(group: dict[str, Any]) -> list[str]:
    found: list[str] = []
    for member in group.get("member") or []:
        if not isinstance(member, dict) or member.get("inactive") is True:
            continue
        reference = (member.get("entity") or {}).get("reference")
        if isinstance(reference, str) and reference.startswith("Patient/"):
            id_ = reference.split("/", 1)[1]
            if id_ not in found:
                found.append(id_)
    return found


def _plan(
    ctx: Context,
    call: Invocation,
    since: str | None,
    patients: list[str] | None,
    warnings: list[str],
) -> Plan:
    from fhir_server.operations import support_table

    supported = set(support_table().types)
    policy = policy_of(ctx)

    def readable(type_: str) -> bool:
        return policy is None or (policy.allows(type_, "r") and policy.allows(type_, "s"))

    requested = [t.strip() for v in call.values("_type") for t in v.split(",") if t.strip()]
    unknown = [t for t in requested if t not in supported]
    if unknown:
        raise invalid(f"_type names unknown resource types: {', '.join(unknown)}", "_type")
    refused = [t for t in requested if not readable(t)]
    if refused:
        raise FhirError(
            403, "forbidden", f"The access token does not allow exporting {', '.join(refused)}"
        )
    wanted = sorted(set(requested)) if requested else sorted(t for t in supported if readable(t))
    referenced: frozenset[str] = frozenset()
    if call.definition.level != "system":
        compartment = patient_compartment_types()
        if patients is not None:  # the patients' records, and what they refer to
            referenced = frozenset(t for t in wanted if t not in compartment)
        else:
            outside = [t for t in requested if t not in compartment]
            if outside:
                raise invalid(
                    f"A Patient-level $export without patients exports the Patient"
                    f" compartment; not in it: {', '.join(outside)}",
                    "_type",
                )
            wanted = [t for t in wanted if t in compartment]
    if not wanted:
        raise FhirError(403, "forbidden", "The access token allows exporting none of these types")
    filters = _type_filters(call, set(wanted), warnings)
    elements = _elements(call, wanted)
    return Plan(wanted, since, filters, elements, patients, referenced)


def _type_filters(
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


def _elements(call: Invocation, types: list[str]) -> dict[str, list[str]]:
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


def _owner(ctx: Context) -> str:
    policy = policy_of(ctx)
    if policy is None:
        return "-"
    return f"{policy.client_id}|{policy.subject or ''}"


def _request_url(ctx: Context, call: Invocation) -> str:
    if call.definition.level == "system":
        path = ctx.url("$export")
    elif call.definition.level == "type":
        path = ctx.url(str(call.type), "$export")
    else:
        path = ctx.url(str(call.type), str(call.id), "$export")
    params = [(k, v) for k, v in call.params if k not in ("_format", "_pretty")]
    return f"{path}?{query_string(params)}" if params else path


def _status_url(ctx: Context, job_id: str) -> str:
    return ctx.url("$export-status", job_id)


def _write_warnings(jobs: Jobs, job: Job, warnings: list[str]) -> None:
    name = "OperationOutcome.000.ndjson"
    lines = b"".join(
        fhir_json.dumps(operation_outcome([Issue("not-supported", w, severity="warning")])) + b"\n"
        for w in warnings
    )
    (jobs.files(job.id) / name).write_bytes(lines)
    job.error.append({"type": "OperationOutcome", "file": name, "count": len(warnings)})
    jobs.save(job)


# -- status and files -------------------------------------------------------------------


def _job_of(ctx: Context, job_id: str) -> tuple[Jobs, Job]:
    jobs = Jobs(export_dir(ctx.settings), ctx.settings)
    jobs.sweep()  # expired jobs go, also when nobody starts a new one
    job = jobs.load(job_id)
    if job is None or job.owner != _owner(ctx):
        raise FhirError(404, "not-found", "No such export job")
    return jobs, job


async def status(ctx: Context, method: str, job: str) -> FhirResponse:
    jobs, found = _job_of(ctx, job)
    if method == "DELETE":
        jobs.remove(found.id)
        outcome = operation_outcome(
            [Issue("informational", "The export was cancelled", severity="information")]
        )
        return FhirResponse(202, outcome)
    if found.state == "in-progress":
        return FhirResponse(
            202, None, {"X-Progress": found.progress, "Retry-After": str(RETRY_AFTER)}
        )
    if found.state == "failed":
        return FhirResponse(500, found.outcome)
    return FhirResponse(200, _manifest(ctx, found), _expires(jobs, found))


def _manifest(ctx: Context, job: Job) -> dict[str, Any]:
    def files(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            {
                "type": e["type"],
                "url": ctx.url("$export-file", job.id, e["file"]),
                "count": e["count"],
            }
            for e in entries
        ]

    manifest: dict[str, Any] = {
        "transactionTime": job.transaction_time,
        "request": job.request,
        "requiresAccessToken": ctx.auth is not None,  # with authorization off: none
        "output": files(job.output),
        "error": files(job.error),
    }
    if job.deleted:
        manifest["deleted"] = files(job.deleted)
    return manifest


def _expires(jobs: Jobs, job: Job) -> dict[str, str]:
    from email.utils import formatdate

    ends = (job.finished or time.time()) + jobs.ttl
    return {"Expires": formatdate(ends, usegmt=True), "Content-Type": "application/json"}


async def file(ctx: Context, method: str, job: str, name: str) -> FileResponse:
    jobs, found = _job_of(ctx, job)
    if found.state != "complete":
        raise FhirError(404, "not-found", "The export is not complete")
    listed = {e["file"] for e in (*found.output, *found.deleted, *found.error)}
    if name not in listed:
        raise FhirError(404, "not-found", f"The export has no file {name!r}")
    return FileResponse(
        jobs.files(found.id) / name,
        media_type=NDJSON,
        headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
    )


OPERATION = Operation(
    definitions=(
        _definition("system", "export", ()),
        _definition("type", "patient-export", ("Patient",)),
        _definition("instance", "group-export", ("Group",)),
    ),
    handler=kick_off,
    routes=(
        ExtraRoute(("GET", "DELETE"), "/$export-status/{job}", status),
        ExtraRoute(("GET",), "/$export-file/{job}/{name}", file),
    ),
)
