"""``Patient/[id]/$everything`` and ``Patient/$everything``: a patient's whole record, paged
(https://hl7.org/fhir/R4/patient-operation-everything.html).

The record of ``Patient/x`` is what the memberships stored with every version say is
hers (``resources.compartments.memberships``): the resources of the R4 Patient
compartment's types that are in her compartment (the Patient itself included), and the
resources of other types (a refill Task, a Device implanted in her) that refer to her
and to no other patient. It is one search over every type, with a
:class:`~resources.search.query.GrantClause` condition that the stores answer from the
membership rows (a patient's few hundred, however large the store), paged with the
stores' keyset cursors like any search: ``_count``, ``next`` links, stable while data
changes. Each page adds, as ``include`` entries, the resources its matches refer to
that are nobody's record (Practitioner, Organization, Location, Medication, ... and
what those refer to in turn), and the Binaries its attachments are (``Attachment.url``
``Binary/id``), each once over the pages of a record: the ``next`` cursor carries a
6-byte digest of each resource included so far, and a later page leaves those out.
Never another patient's data (an Observation of Bob referred to from Alice's
DiagnosticReport is not in Alice's record).

Everything goes through the caller's store (the guarded store under SMART): the access
rules hold for every entry as for a search. A patient-context token reads its own
patient's record (another patient's is "not found"), with directory resources only of
the directory types; staff and backend services read anyone's.

Parameters: ``_count``, ``_since`` (resources changed at or after the instant), ``_type``
(only these types, in the record and among the referenced resources), ``start`` and
``end`` (care dates: a resource whose care date parameter, ``CARE_DATES`` of
:mod:`.everything_params`, has a value that ends before ``start`` or starts after
``end`` is left out; resources without a care date, such as the Patient and Coverage,
are always in). At type level
(``Patient/$everything``) the records of every patient the caller may read follow each
other, patient by patient, on the same pages; each record brings what it refers to
(a Practitioner of two patients' records on two pages is on both). The Bundle has a
``total`` at instance level (the record's matches); at type level none (it would count
every patient's record).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from functools import cache
from typing import Any

import orjson

from capability.support import NOT_IN_RECORDS, support_table
from fhir_server.access import GuardedStore
from fhir_server.interactions.context import bundle_id, check_id, query_string
from fhir_server.operations.base import (
    Context,
    FhirResponse,
    Invocation,
    Operation,
    OperationDefinition,
    OperationParameter,
)
from fhir_server.operations.everything_cursor import Position, digests, not_yet
from fhir_server.operations.everything_params import (
    EverythingRequest,
    parse_request,
)
from fhir_server.storage.base import StoredVersion, now_instant
from fhir_server.storage.search_page import Cursor, SearchPage
from resources.compartments import (
    MEMBERSHIP_COMPARTMENT,
    SECURED_BY_CONTEXT,
    patient_member_types,
)
from resources.definitions import RESOURCE_TYPES
from resources.errors import FhirError, gone, not_found
from resources.search.index.reference import parse_reference
from resources.search.query import (
    Condition,
    Grant,
    GrantClause,
    IdClause,
    LastUpdatedClause,
    SearchQuery,
)

_MAX_PATIENTS_PER_PAGE = 100
"""Patients a type-level page walks through at most (a short page then has a ``next``
link): records left empty by ``_type`` or ``_since`` do not make one request read every
patient."""
_REFERENCE_ROUNDS = 3
"""Referenced resources of referenced resources (PractitionerRole -> Practitioner ->
Organization), this many steps from the page's matches."""


# -- the record of one patient --------------------------------------------------------------


def record_of(patient_id: str) -> GrantClause:
    """The resources that are ``Patient/patient_id``'s record (see the module)."""
    return GrantClause(
        Grant(None, (f"{MEMBERSHIP_COMPARTMENT}/{patient_id}",), patient_member_types())
    )


def nobodys_record(types: Iterable[str]) -> GrantClause:
    """Resources of ``types`` that are in no patient's compartment: directory and
    definitional data (what a page's matches refer to)."""
    listed = frozenset(types)
    return GrantClause(Grant(listed, (), frozenset(), public_types=listed))


@cache
def _all_types() -> tuple[str, ...]:
    """Every type of a record; the access log (AuditEvent) only when ``_type`` asks."""
    return tuple(sorted(t for t in support_table().types if t not in NOT_IN_RECORDS))


def _record_query(patient_id: str, request: EverythingRequest) -> SearchQuery:
    types = request.types or _all_types()
    conditions: list[Condition] = [record_of(patient_id), *request.since, *request.care]
    return SearchQuery(tuple(types), conditions)


async def _record_page(
    ctx: Context,
    patient_id: str,
    request: EverythingRequest,
    cursor: Cursor | None,
    count: int,
    with_total: bool,
) -> SearchPage:
    return await ctx.store.search(_record_query(patient_id, request), cursor, count, with_total)


async def _included(
    ctx: Context, patient_id: str, matches: Sequence[StoredVersion], request: EverythingRequest
) -> list[StoredVersion]:
    """What a page adds to its matches: the resources they refer to and the Binaries
    their attachments are."""
    if not matches:
        return []
    referenced = await _referenced(ctx, matches, request)
    return referenced + await _attachments(ctx, patient_id, matches, request)


async def _referenced(
    ctx: Context, matches: Sequence[StoredVersion], request: EverythingRequest
) -> list[StoredVersion]:
    """The resources the matches refer to that are nobody's record, and those they refer
    to, as the caller may see them (one search a step). Types of the Patient compartment
    are not looked up: the patient's own are among the matches, other patients' are not
    hers."""
    excluded = patient_member_types()
    wanted = set(request.types) if request.types else None
    seen = {(m.type, m.id) for m in matches}
    found: list[StoredVersion] = []
    frontier: Sequence[StoredVersion] = matches
    for _ in range(_REFERENCE_ROUNDS):
        targets: set[tuple[str, str]] = set()
        contents = [stored.content or b"" for stored in frontier]
        for key in _targets(contents, ctx.base_url, _REFERENCE):
            type_ = key[0]
            if key in seen or type_ in excluded or type_ not in RESOURCE_TYPES:
                continue
            if wanted is None or type_ in wanted:
                targets.add(key)
        added = await _lookup(ctx, targets, request)
        if not added:
            break
        seen.update((s.type, s.id) for s in added)
        found += added
        frontier = added
    return found


async def _lookup(
    ctx: Context, targets: set[tuple[str, str]], request: EverythingRequest
) -> list[StoredVersion]:
    """Those of ``targets`` that are nobody's record, in one search: every id asked of
    every type asked (an index lookup each), of which the pairs asked are kept."""
    if not targets:
        return []
    types = tuple(sorted({type_ for type_, _ in targets}))
    ids = tuple(sorted({id_ for _, id_ in targets}))
    conditions: list[Condition] = [IdClause(ids), nobodys_record(types), *request.since]
    try:
        page = await ctx.store.search(
            SearchQuery(types, conditions), None, len(types) * len(ids), False
        )
    except FhirError as error:
        if error.status == 403:
            return []  # no scope for any of the types: left out, as a search leaves them
        raise
    return [s for s in page.entries if (s.type, s.id) in targets]


async def _attachments(
    ctx: Context, patient_id: str, matches: Sequence[StoredVersion], request: EverythingRequest
) -> list[StoredVersion]:
    """The Binaries the matches' attachments are (``Attachment.url`` ``Binary/id``; the
    spec: "including binaries and attachments"): the patient's own (``securityContext``
    her Patient, usually matches already) and those of no patient (secured by another
    resource, such as the DocumentReference whose content they are), never another
    patient's. A patient-context token reads one secured by a resource it may read
    (https://hl7.org/fhir/R4/binary.html#security), through the guarded read."""
    if request.types is not None and SECURED_BY_CONTEXT not in request.types:
        return []
    contents = [stored.content or b"" for stored in matches]
    seen = {(m.type, m.id) for m in matches}
    ids = {
        id_
        for type_, id_ in _targets(contents, ctx.base_url, _ATTACHMENT)
        if type_ == SECURED_BY_CONTEXT and (type_, id_) not in seen
    }
    if not ids:
        return []
    kind = frozenset({SECURED_BY_CONTEXT})
    hers_or_nobodys = GrantClause(
        Grant(kind, (f"{MEMBERSHIP_COMPARTMENT}/{patient_id}",), frozenset(), public_types=kind)
    )
    query = SearchQuery(
        (SECURED_BY_CONTEXT,), [IdClause(tuple(sorted(ids))), hers_or_nobodys, *request.since]
    )
    try:
        found = (await ctx.store.search(query, None, len(ids), False)).entries
    except FhirError as error:
        if error.status == 403:
            return []
        raise
    missing = ids - {stored.id for stored in found}
    if missing and _patient_context(ctx):
        for id_ in sorted(missing):  # secured by a resource: hidden from its searches
            stored = await ctx.store.read(SECURED_BY_CONTEXT, id_)
            if stored is not None and not stored.deleted and _changed_since(stored, request):
                found.append(stored)
    return found


def _patient_context(ctx: Context) -> bool:
    """Whether every grant of the caller is limited to a patient's compartment (its
    reads of Binaries then follow their ``securityContext``)."""
    if not isinstance(ctx.store, GuardedStore):
        return False  # authorization off
    try:
        clause = ctx.store.clause("r", [SECURED_BY_CONTEXT], "reading")
    except FhirError:
        return False  # no scope to read Binaries
    return clause is not None and all(g.compartments is not None for g in clause.grants)


def _changed_since(stored: StoredVersion, request: EverythingRequest) -> bool:
    """``_since`` on one resource (the instants compare as text, as the stores do)."""
    return all(
        stored.last_updated >= value.low
        for condition in request.since
        if isinstance(condition, LastUpdatedClause)
        for value in condition.values
    )


_REFERENCE = re.compile(rb'"reference"\s*:\s*"([^"\\]+)"')
"""``Reference.reference`` in stored JSON (a match inside a string value would have its
quotes escaped); references with escapes in them are not resource references anyway."""
_ATTACHMENT = re.compile(rb'"url"\s*:\s*"([^"\\]+)"')
"""``Attachment.url`` (and other ``url`` elements: only ``Binary/id`` ones are kept)."""


def _targets(
    contents: Sequence[bytes], base: str, pattern: re.Pattern[bytes]
) -> Iterator[tuple[str, str]]:
    """``(type, id)`` of the resources on this server that ``contents`` refer to through
    ``pattern``: relative references, and absolute ones under the server's base URL (a
    scan of the bytes, ~10x cheaper than parsing the JSON and walking it; each distinct
    reference read once)."""
    found = {text for content in contents for text in pattern.findall(content)}
    prefix = base + "/"
    for raw in found:
        text = raw.decode("utf-8", "replace")
        if "://" in text:
            if not text.startswith(prefix):
                continue
            text = text[len(prefix) :]
        type_, id_, _, _ = parse_reference(text)
        if type_ is not None and id_ is not None:
            yield type_, id_


# -- instance level ---------------------------------------------------------------------


async def everything_instance(
    ctx: Context, patient_id: str, request: EverythingRequest
) -> FhirResponse:
    """``GET [base]/Patient/[id]/$everything``."""
    check_id(patient_id)
    patient = await ctx.store.read(MEMBERSHIP_COMPARTMENT, patient_id)
    if patient is None:
        raise not_found(f"Patient/{patient_id} is not known")
    if patient.deleted:
        raise gone(f"Patient/{patient_id} was deleted")
    position = Position.decode(request.cursor)
    cursor = Cursor.decode(position.record) if position.record else None
    page = await _record_page(ctx, patient_id, request, cursor, request.count, True)
    seen = position.included()
    included = not_yet(await _included(ctx, patient_id, page.entries, request), seen)
    path = f"{MEMBERSHIP_COMPARTMENT}/{patient_id}/$everything"
    next_cursor = None
    if page.next_cursor is not None:
        next_cursor = Position(None, page.next_cursor.encode(), digests(seen)).encode()
    bundle = _bundle(ctx, path, request, page.entries, included, next_cursor, page.total)
    return FhirResponse(200, bundle)


# -- type level -----------------------------------------------------------------------------


async def everything_type(ctx: Context, request: EverythingRequest) -> FhirResponse:
    """``GET [base]/Patient/$everything``: the records of every patient the caller may
    read (a patient-context token: its own), one patient after the other."""
    position = Position.decode(request.cursor)
    patients_cursor = Cursor.decode(position.patients) if position.patients else None
    record_cursor = Cursor.decode(position.record) if position.record else None
    seen = position.included()  # of the record the page starts in
    matches: list[StoredVersion] = []
    included: list[StoredVersion] = []
    next_position: Position | None = None
    for _ in range(_MAX_PATIENTS_PER_PAGE if request.count > 0 else 0):
        found = await ctx.store.search(
            SearchQuery((MEMBERSHIP_COMPARTMENT,)), patients_cursor, 1, False
        )
        if not found.entries:
            next_position = None
            break
        patient = found.entries[0]
        room = request.count - len(matches)
        page = await _record_page(ctx, patient.id, request, record_cursor, room, False)
        matches += page.entries
        included += not_yet(await _included(ctx, patient.id, page.entries, request), seen)
        here = patients_cursor.encode() if patients_cursor else None
        if page.next_cursor is not None:
            next_position = Position(here, page.next_cursor.encode(), digests(seen))
            break
        if found.next_cursor is None:
            next_position = None
            break
        patients_cursor, record_cursor, seen = found.next_cursor, None, set()
        next_position = Position(patients_cursor.encode(), None)
        if len(matches) >= request.count:
            break
    included = _unique(included, matches)
    next_cursor = next_position.encode() if next_position is not None else None
    path = f"{MEMBERSHIP_COMPARTMENT}/$everything"
    bundle = _bundle(ctx, path, request, matches, included, next_cursor, None)
    return FhirResponse(200, bundle)


def _unique(included: list[StoredVersion], matches: list[StoredVersion]) -> list[StoredVersion]:
    seen = {(m.type, m.id) for m in matches}
    unique: list[StoredVersion] = []
    for stored in included:
        if (stored.type, stored.id) not in seen:
            seen.add((stored.type, stored.id))
            unique.append(stored)
    return unique


# -- the Bundle -----------------------------------------------------------------------------


def _bundle(
    ctx: Context,
    path: str,
    request: EverythingRequest,
    matches: Sequence[StoredVersion],
    included: Sequence[StoredVersion],
    next_cursor: str | None,
    total: int | None,
) -> dict[str, Any]:
    def url(cursor: str | None) -> str:
        params = [*request.applied, *([("_cursor", cursor)] if cursor else [])]
        return f"{ctx.url(path)}?{query_string(params)}" if params else ctx.url(path)

    links = [{"relation": "self", "url": url(request.cursor)}]
    if request.cursor:
        links.append({"relation": "first", "url": url(None)})
    if next_cursor is not None:
        links.append({"relation": "next", "url": url(next_cursor)})
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": bundle_id(),
        "meta": {"lastUpdated": now_instant()},
        "type": "searchset",
    }
    if total is not None:
        bundle["total"] = total
    bundle["link"] = links
    entries = [_entry(ctx, s, "match") for s in matches]
    entries += [_entry(ctx, s, "include") for s in included]
    if entries:
        bundle["entry"] = entries
    return bundle


def _entry(ctx: Context, stored: StoredVersion, mode: str) -> dict[str, Any]:
    assert stored.content is not None
    return {
        "fullUrl": ctx.url(stored.type, stored.id),
        "resource": orjson.Fragment(stored.content),
        "search": {"mode": mode},
    }


# -- the declaration ------------------------------------------------------------------------


async def handle(ctx: Context, call: Invocation) -> FhirResponse:
    request = parse_request(ctx, call.params)
    if call.id is not None:
        return await everything_instance(ctx, call.id, request)
    return await everything_type(ctx, request)


CANONICAL = "http://hl7.org/fhir/OperationDefinition/Patient-everything"
_PARAMETERS = (
    OperationParameter("start", "date", documentation="Care dates from (see CARE_DATES)"),
    OperationParameter("end", "date", documentation="Care dates to (see CARE_DATES)"),
    OperationParameter(
        "_since", "instant", documentation="Only resources changed at or after this instant"
    ),
    OperationParameter("_type", "code", max="*", documentation="Only resources of these types"),
    OperationParameter("_count", "integer", documentation="Matches per page"),
    OperationParameter("return", "Bundle", min=1, use="out"),
)
_SCOPES = ("patient/*.rs", "user/*.rs", "system/*.rs")
_DOCUMENTATION = (
    "The patient's record (the Patient compartment, and resources of other types that"
    " refer to that patient and no other) with the resources it refers to that are no"
    " patient's (Practitioner, Organization, Location, Medication...) and the Binaries"
    " its attachments are, as a searchset Bundle paged with next links; a patient-context"
    " token gets its own patient's only."
)

OPERATION = Operation(
    definitions=(
        OperationDefinition(
            "everything",
            CANONICAL,
            "instance",
            resource_types=(MEMBERSHIP_COMPARTMENT,),
            parameters=_PARAMETERS,
            scopes=_SCOPES,
            documentation=_DOCUMENTATION,
        ),
        OperationDefinition(
            "everything",
            CANONICAL,
            "type",
            resource_types=(MEMBERSHIP_COMPARTMENT,),
            parameters=_PARAMETERS,
            scopes=_SCOPES,
            documentation=_DOCUMENTATION
            + " At type level: every patient's record the caller may read, one after the other.",
        ),
    ),
    handler=handle,
)
