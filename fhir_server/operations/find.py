"""``Appointment/$find``: proposed appointments from free slots (Argonaut Scheduling IG,
http://fhir.org/guides/argonaut/scheduling/OperationDefinition-appointment-find.html;
issue 18).

``GET|POST [base]/Appointment/$find?start=…&end=…`` with ``practitioner`` (alias
``provider``) and ``location`` (references: the Slots' Schedule has that actor),
``specialty`` and ``visit-type`` (tokens matched against the Slot's and its Schedule's
``specialty``, and ``serviceType``/``appointmentType``), ``patient`` (the patient
participant; a patient-context token's own patient by default) answers a ``searchset``
Bundle of ``proposed`` Appointments, one per free Slot that starts in ``[start, end)``
and in the future, of an active Schedule whose ``planningHorizon`` holds it: its
``slot``, ``start``, ``end``, service and the participants (the patient and the
Schedule's actors, ``needs-action``), sorted by start, paged with ``_count`` and
``next`` links (a page may hold fewer than ``_count``: Slots ``$book`` would refuse are
left out). A POST takes the same names in a ``Parameters`` body.

It is one search of Slots through the caller's store, so the access rules hold: a token
needs ``Slot`` search scopes (Slots are directory data a patient-context token reads).
Their Schedules are read as ``$book`` reads them (no Schedule scope needed): a Slot of
another patient's own Schedule is not proposed to a patient or caregiver. Nothing is
written: book one with ``$book`` (:mod:`.book`).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from fhir_server.interactions.context import bundle_id, query_string
from fhir_server.operations.base import (
    Context,
    FhirResponse,
    Invocation,
    Operation,
    OperationDefinition,
    OperationParameter,
    policy_of,
)
from fhir_server.storage.base import StoredVersion, now_instant
from fhir_server.storage.search_page import Cursor
from fhir_server.workflows._scheduling_access import readable
from fhir_server.workflows._scheduling_values import bookable_in
from fhir_server.workflows.base import Caller
from resources import fhir_json
from resources.errors import FhirError, invalid
from resources.fhir_datetime import format_instant, parse_range
from resources.search.index.reference import parse_reference
from resources.search.parameters import search_params
from resources.search.parse import parse_search
from resources.search.query import AnyOf, Condition
from resources.terminology import value_set_codes

_NAMESPACE = uuid.UUID("6f0a3d5e-3b43-4c59-9a53-0e9c5b1f6a10")


def _when(call: Invocation, name: str) -> datetime:
    text = call.value(name)
    if not text:
        raise invalid(f"$find needs the parameter {name!r} (a date or dateTime)", name)
    return parse_range(text, name)[0]


def _reference(call: Invocation, *names: str) -> str | None:
    for name in names:
        text = call.value(name)
        if text:
            type_, id_, _, _ = parse_reference(text)
            if not type_ or not id_:
                raise invalid(f"{name} must be a reference such as Practitioner/123", name)
            return f"{type_}/{id_}"
    return None


def _parse(items: list[tuple[str, str]], max_count: int, default_count: int) -> Any:
    return parse_search(
        ("Slot",),
        items,
        strict=True,
        params_for=search_params,
        max_count=max_count,
        default_count=default_count,
        value_set=value_set_codes,
    )


def _any_of(token: str, names: tuple[str, ...], ctx: Context) -> Condition:
    """The Slot has ``token`` under one of ``names`` (chains allowed)."""
    conditions: list[Condition] = []
    for name in names:
        query = _parse([(name, token)], ctx.settings.max_page_size, 1)
        conditions.extend(query.conditions)
    return AnyOf(tuple(conditions))


def _patient(ctx: Context, call: Invocation) -> str | None:
    named = _reference(call, "patient")
    if named is not None and not named.startswith("Patient/"):
        raise invalid("patient must be a reference to a Patient", "patient")
    policy = policy_of(ctx)
    if policy is None:
        return named
    caller = Caller.from_policy(policy)
    if caller.staff:
        return named
    if named is None:
        return next(iter(sorted(caller.patients)), None)
    if named not in caller.patients:
        raise FhirError(
            403, "forbidden", f"The access token does not act for {named}", ("patient",)
        )
    return named


async def handle(ctx: Context, call: Invocation) -> FhirResponse:
    start, end = _when(call, "start"), _when(call, "end")
    if end <= start:
        raise invalid("end must be after start", "end")
    start = max(start, datetime.now(UTC))
    patient = _patient(ctx, call)
    items = [
        ("status", "free"),
        ("start", f"ge{format_instant(start)}"),
        ("start", f"lt{format_instant(end)}"),
    ]
    applied = [("start", call.value("start") or ""), ("end", call.value("end") or "")]
    for names in (("practitioner", "provider"), ("location",)):
        reference = _reference(call, *names)
        if reference is not None:  # a Slot of a Schedule of that actor
            items.append(("schedule.actor", reference))
            applied.append((names[0], reference))
    extra: list[Condition] = []
    for name, params in (
        ("specialty", ("specialty", "schedule.specialty")),
        ("visit-type", ("service-type", "appointment-type", "schedule.service-type")),
    ):
        for token in call.values(name):
            extra.append(_any_of(token, params, ctx))
            applied.append((name, token))
    if patient is not None:
        applied.append(("patient", patient))
    count_text = call.value("_count")
    if count_text is not None:
        items.append(("_count", count_text))
    items.append(("_sort", "start"))
    query = _parse(items, ctx.settings.max_page_size, ctx.settings.default_page_size)
    query.conditions.extend(extra)
    count = query.count if query.count is not None else ctx.settings.default_page_size
    if query.count is not None:
        applied.append(("_count", str(count)))
    cursor_text = call.value("_cursor")
    cursor = Cursor.decode(cursor_text) if cursor_text else None
    page = await ctx.store.search(query, cursor, count, False)
    schedules = await _schedules(ctx, page.entries)
    entries = [
        entry for slot in page.entries if (entry := _entry(slot, schedules, patient)) is not None
    ]
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": bundle_id(),
        "meta": {"lastUpdated": now_instant()},
        "type": "searchset",
        "link": _links(ctx, applied, cursor, page.next_cursor),
    }
    if entries:
        bundle["entry"] = entries
    return FhirResponse(200, bundle)


def _links(
    ctx: Context, applied: list[tuple[str, str]], cursor: Cursor | None, after: Cursor | None
) -> list[dict[str, str]]:
    def url(c: Cursor | None) -> str:
        params = [*applied, *([("_cursor", c.encode())] if c is not None else [])]
        return f"{ctx.url('Appointment', '$find')}?{query_string(params)}"

    links = [{"relation": "self", "url": url(cursor)}]
    if after is not None:
        links.append({"relation": "next", "url": url(after)})
    return links


def _schedule_id(slot: dict[str, Any]) -> str | None:
    reference = (slot.get("schedule") or {}).get("reference")
    type_, id_, _, _ = parse_reference(reference) if isinstance(reference, str) else (None,) * 4
    return id_ if type_ == "Schedule" else None


async def _schedules(ctx: Context, slots: list[StoredVersion]) -> dict[str, dict[str, Any]]:
    """The Schedules of ``slots`` that the caller may book in, by id, read as ``$book``
    reads them (a caller needs no Schedule scope to book): for a patient-side caller, not
    one of another patient (a patient's own Schedule is theirs)."""
    policy = policy_of(ctx)
    caller = Caller.from_policy(policy) if policy is not None else Caller.system()
    store = ctx.store
    while hasattr(store, "inner"):
        store = store.inner
    found: dict[str, dict[str, Any]] = {}
    seen: set[str] = set()
    for stored in slots:
        assert stored.content is not None
        id_ = _schedule_id(fhir_json.loads(stored.content))
        if id_ is None or id_ in seen:
            continue
        seen.add(id_)
        schedule = await store.read("Schedule", id_)
        if schedule is None or schedule.deleted or schedule.content is None:
            continue
        content = fhir_json.loads(schedule.content)
        if caller.staff or readable(content, caller.patients):
            found[id_] = content
    return found


def _entry(
    stored: StoredVersion, schedules: dict[str, dict[str, Any]], patient: str | None
) -> dict[str, Any] | None:
    """The proposal of a free Slot (None: ``$book`` would refuse it: its Schedule is
    unknown, not the caller's to book in, inactive, or its planning horizon leaves the
    Slot out)."""
    assert stored.content is not None
    slot = fhir_json.loads(stored.content)
    id_ = _schedule_id(slot)
    schedule = schedules.get(id_) if id_ is not None else None
    if schedule is None:
        return None
    start, end = parse_range(slot["start"], "Slot.start"), parse_range(slot["end"], "Slot.end")
    if not bookable_in(schedule, start[0], end[0]):
        return None
    actors = [a for a in schedule.get("actor") or [] if a]
    people = [{"actor": {"reference": patient}}] if patient else []
    people += [{"actor": actor} for actor in actors if actor.get("reference") != patient]
    appointment: dict[str, Any] = {"resourceType": "Appointment", "status": "proposed"}
    for name in ("serviceCategory", "serviceType", "specialty", "appointmentType"):
        if slot.get(name):
            appointment[name] = slot[name]
    appointment.update(
        {
            "start": slot["start"],
            "end": slot["end"],
            "slot": [{"reference": f"Slot/{stored.id}"}],
            "participant": [
                {**p, "required": "required", "status": "needs-action"} for p in people
            ],
        }
    )
    key = uuid.uuid5(_NAMESPACE, f"{stored.id}/{stored.version}")
    return {
        "fullUrl": f"urn:uuid:{key}",
        "resource": appointment,
        "search": {"mode": "match"},
    }


OPERATION = Operation(
    definitions=(
        OperationDefinition(
            "find",
            "http://fhir.org/guides/argonaut/scheduling/OperationDefinition/appointment-find",
            "type",
            resource_types=("Appointment",),
            parameters=(
                OperationParameter("start", "dateTime", min=1),
                OperationParameter("end", "dateTime", min=1),
                OperationParameter("practitioner", "Reference"),
                OperationParameter("provider", "Reference"),
                OperationParameter("location", "Reference"),
                OperationParameter("specialty", "token", max="*"),
                OperationParameter("visit-type", "token", max="*"),
                OperationParameter("patient", "Reference"),
                OperationParameter("_count", "integer"),
                OperationParameter("return", "Bundle", min=1, use="out"),
            ),
            scopes=("patient/Slot.rs", "user/Slot.rs", "system/Slot.rs"),
            documentation="Proposed appointments (one per free Slot in [start, end)), sorted"
            " by start and paged",
        ),
    ),
    handler=handle,
)
