"""``$export``: FHIR Bulk Data Access 2.0 (https://hl7.org/fhir/uv/bulkdata/export.html)
with the asynchronous request pattern (https://hl7.org/fhir/R4/async.html).

- Kick-off: ``GET|POST [base]/$export``, ``[base]/Patient/$export``,
  ``[base]/Group/[id]/$export`` with ``Prefer: respond-async``: ``202`` and the status
  URL in ``Content-Location``. Parameters ``_outputFormat``, ``_since``, ``_type``,
  ``_typeFilter``, ``_elements``, ``patient``, ``includeAssociatedData``
  (``export_associated``); from the Bulk Data IG's next version (v3,
  https://build.fhir.org/ig/HL7/bulk-data/export.html) ``_until`` and
  ``organizeOutputBy`` (``export_blocks``). Other parameters, and values of these that
  are not supported, are refused (400) under ``Prefer: handling=strict`` and reported
  in the manifest's ``error`` otherwise.
- ``_until``: resources last changed at or before it (and after ``_since``); the
  manifest's ``transactionTime`` is then ``_until`` (or the kick-off's time when that
  is earlier), so an export with ``_since`` = that ``transactionTime`` goes on from
  there with nothing missed or repeated. A resource changed again after ``_until`` is
  left to that next export (the current version of each resource is exported).
- A Patient-level export without ``patient`` exports the records of every Patient the
  caller may read: resources in their compartments (the memberships stored with each
  version), never a resource of a compartment type that is in no patient's.
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

import time
from typing import Any

from starlette.responses import FileResponse

from capability.support import OperationDefinition, OperationParameter
from fhir_server.access import compile_access
from fhir_server.headers import prefer_handling
from fhir_server.interactions.context import check_id, query_string
from fhir_server.operations import export_params as params
from fhir_server.operations.base import (
    Context,
    ExtraRoute,
    FhirResponse,
    Invocation,
    Operation,
    policy_of,
)
from fhir_server.operations.export_associated import PROVENANCE
from fhir_server.operations.export_blocks import DETAIL
from fhir_server.operations.export_jobs import Job, Jobs, export_dir
from fhir_server.operations.export_run import (
    Plan,
    patient_compartment_types,
    start,
)
from fhir_server.storage.base import now_instant
from resources import fhir_json
from resources.errors import FhirError, Issue, invalid, operation_outcome

BULK = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition"
_SCOPES = ("system/*.rs", "system/*.read", "user/*.rs", "patient/*.rs")
_PARAMETERS = (
    OperationParameter("_outputFormat", "string", documentation="application/fhir+ndjson"),
    OperationParameter("_since", "instant"),
    OperationParameter(
        "_until",
        "instant",
        documentation="Resources changed at or before this instant (Bulk Data v3);"
        " the manifest's transactionTime is then this instant",
    ),
    OperationParameter("_type", "string", max="*"),
    OperationParameter("_typeFilter", "string", max="*"),
    OperationParameter("_elements", "string", max="*"),
    OperationParameter(
        "includeAssociatedData",
        "code",
        max="*",
        documentation="LatestProvenanceResources or RelevantProvenanceResources",
    ),
    OperationParameter(
        "organizeOutputBy",
        "string",
        documentation="Patient (Bulk Data v3): files of blocks, one per patient",
    ),
)
_PATIENT = OperationParameter("patient", "Reference", max="*")
_KNOWN = frozenset(p.name for p in (*_PARAMETERS, _PATIENT)) | {"_format", "_pretty"}
"""The parameters understood (a value of one may still be unsupported)."""
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
    if "respond-async" not in params.prefer_tokens(ctx.header("prefer")):
        raise invalid("$export is asynchronous: send the header Prefer: respond-async")
    strict = prefer_handling(ctx.header("prefer")) == "strict"
    warnings = params.unsupported(call, strict, _KNOWN)
    output_format = call.value("_outputFormat")
    if output_format is not None:  # a '+' sent unescaped in a query reads as a space
        output_format = output_format.strip().replace(" ", "+")
    if output_format is not None and output_format not in params.FORMATS:
        raise invalid(
            f"_outputFormat {output_format!r} is not supported; use {params.NDJSON}",
            "_outputFormat",
        )
    since = params.instant(call.value("_since"), "_since")
    until = params.instant(call.value("_until"), "_until")
    if since is not None and until is not None and until <= since:
        raise invalid(f"_until ({until}) must be later than _since ({since})", "_until")
    transaction_time = now_instant()
    if until is not None and until < transaction_time:
        transaction_time = until
    provenance = params.associated(call, strict, warnings)
    organize_by = params.organize_by(call, strict, warnings)
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
    plan.organize_by = organize_by
    if organize_by is not None and patients is None:
        plan.all_patients = True
        plan.referenced_types = frozenset(plan.types) - patient_compartment_types()
    if provenance is not None:
        _provenance_readable(ctx)
        plan.provenance = provenance
        plan.types = [t for t in plan.types if t != PROVENANCE]
    jobs = Jobs(export_dir(ctx.settings), ctx.settings)
    job = jobs.create(
        _owner(ctx), _request_url(ctx, call), transaction_time, ctx.settings.export_max_jobs
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


def _provenance_readable(ctx: Context) -> None:
    policy = policy_of(ctx)
    if policy is not None and not (
        policy.allows(PROVENANCE, "r") and policy.allows(PROVENANCE, "s")
    ):
        raise FhirError(
            403,
            "forbidden",
            "includeAssociatedData exports Provenance, which the access token does not"
            " allow reading",
        )


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
    resource = fhir_json.loads(group.content)
    if resource.get("actual") is not True:
        raise FhirError(
            422,
            "processing",
            f"Group/{call.id} is not a group of actual patients (Group.actual is not true):"
            " it names no members to export",
        )
    members = _members(resource)
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
    from capability.support import NOT_IN_RECORDS
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
    system = call.definition.level == "system"
    wanted = (
        sorted(set(requested))
        if requested
        else sorted(t for t in supported if readable(t) and (system or t not in NOT_IN_RECORDS))
    )
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
    filters = params.type_filters(call, set(wanted), warnings)
    elements = params.elements(call, wanted)
    plan = Plan(wanted, since, filters, elements, patients, referenced)
    plan.all_patients = call.definition.level != "system" and patients is None
    return plan


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
        listed = []
        for e in entries:
            item = {"type": e["type"]} if "type" in e else {}
            item["url"] = ctx.url("$export-file", job.id, e["file"])
            if "continues" in e:
                item["continuesInFile"] = ctx.url("$export-file", job.id, e["continues"])
            item["count"] = e["count"]
            listed.append(item)
        return listed

    manifest: dict[str, Any] = {
        "transactionTime": job.transaction_time,
        "request": job.request,
        "requiresAccessToken": ctx.auth is not None,  # with authorization off: none
    }
    if job.organized_by is not None:
        manifest["outputOrganizedBy"] = job.organized_by
        manifest["outputOrganizedByDetail"] = DETAIL
    manifest["output"] = files(job.output)
    manifest["error"] = files(job.error)
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
        media_type=params.NDJSON,
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
