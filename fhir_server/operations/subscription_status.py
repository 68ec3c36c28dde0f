"""``$status`` and ``$events`` of topic-based Subscriptions (Subscriptions R5 Backport IG,
STU 1.1: https://hl7.org/fhir/uv/subscriptions-backport/STU1.1/OperationDefinition-backport-subscription-status.html
and https://hl7.org/fhir/uv/subscriptions-backport/STU1.1/OperationDefinition-backport-subscription-events.html).

- ``GET Subscription/[id]/$status``, ``GET Subscription/$status?id=a&id=b`` (or
  ``id=a,b``; without ``id``: the topic-based Subscriptions the caller may read, at most
  :data:`MAX_LISTED`, optionally ``status=active,...``): a ``searchset`` Bundle of
  SubscriptionStatus ``Parameters`` (type ``query-status``: status, topic,
  ``events-since-subscription-start``, the ``error`` text when in error).
- ``GET Subscription/[id]/$events?eventsSinceNumber=&eventsUntilNumber=&content=``: a
  ``history`` Bundle (status type ``query-event``) of the notifications sent that are
  still within the outbox's retention (``events.notification_log``), at most
  :data:`MAX_EVENTS`; ``content`` ``empty``, ``id-only`` or ``full-resource``
  (default: the Subscription's).

The Subscription is read through the caller's store (``ctx.store``, its token's
access): only who may read the Subscription (its creator's patient context, staff or a
``system/`` token with Subscription scopes) gets its status or events; another caller
gets ``404``. The resources of ``full-resource`` are read the same way (a version the
caller may not read is left out, its id only), and the events were matched under the
creator's access in the first place.
"""

from __future__ import annotations

import uuid
from typing import Any

from fhir_server.events import backport, notification_log
from fhir_server.events.notification_bundle import Occurrence, status_parameters
from fhir_server.events.notification_bundle import notification_bundle as history_bundle
from fhir_server.interactions.context import check_id
from fhir_server.operations.base import (
    Context,
    FhirResponse,
    Invocation,
    Operation,
    OperationDefinition,
    OperationParameter,
)
from fhir_server.storage.base import now_instant
from resources import fhir_json
from resources.errors import FhirError, invalid, not_found

STATUS = (
    "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-status"
)
EVENTS = (
    "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-events"
)
MAX_LISTED = 100
MAX_EVENTS = 1000
MAX_NUMBER = 2**53
SCOPES = ("patient/Subscription.rs", "user/Subscription.rs", "system/Subscription.rs")
STATUSES = ("requested", "active", "error", "off")


async def _subscription(ctx: Context, id_: str) -> dict[str, Any]:
    check_id(id_, "id")
    stored = await ctx.store.read("Subscription", id_)
    if stored is None or stored.deleted or stored.content is None:
        raise not_found(f"Subscription/{id_} is not known")
    return fhir_json.loads(stored.content)


def _topic(subscription: dict[str, Any]) -> str:
    criteria = subscription.get("criteria")
    return str(criteria) if backport.is_topic_based(subscription) else ""


async def _status_of(ctx: Context, subscription: dict[str, Any]) -> dict[str, Any]:
    number = await notification_log.last_number(ctx.store, str(subscription.get("id")))
    return status_parameters(
        ctx.base_url, subscription, _topic(subscription), "query-status", number
    )


async def handle_status(ctx: Context, call: Invocation) -> FhirResponse:
    wanted = [s for s in (call.values("status") or []) for s in s.split(",") if s]
    for status in wanted:
        if status not in STATUSES:
            raise invalid(f"status {status!r} is not one of {', '.join(STATUSES)}", "status")
    if call.id is not None:
        found = [await _subscription(ctx, call.id)]
    else:
        ids = [i.strip() for value in call.values("id") for i in value.split(",") if i.strip()]
        if len(ids) > MAX_LISTED:
            raise invalid(f"$status takes at most {MAX_LISTED} ids", "id")
        if ids:
            found = [await _subscription(ctx, i.rsplit("/", 1)[-1]) for i in ids]
        else:
            found = await _listed(ctx)
    if wanted:
        found = [s for s in found if s.get("status") in wanted]
    entries = [
        {
            "fullUrl": f"urn:uuid:{parameters['id']}",
            "resource": parameters,
            "search": {"mode": "match"},
        }
        for parameters in [await _status_of(ctx, s) for s in found]
    ]
    bundle = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "type": "searchset",
        "timestamp": now_instant(),
        "total": len(entries),
        "entry": entries,
    }
    return FhirResponse(200, bundle)


async def _listed(ctx: Context) -> list[dict[str, Any]]:
    from resources.search.parameters import search_params
    from resources.search.parse import parse_search

    query = parse_search(
        ["Subscription"],
        [],
        strict=True,
        params_for=search_params,
        max_count=MAX_LISTED,
        default_count=MAX_LISTED,
    )
    page = await ctx.store.search(query, None, MAX_LISTED, False)
    out = [fhir_json.loads(s.content) for s in page.entries if s.content is not None]
    return [s for s in out if backport.is_topic_based(s)]


def _number(call: Invocation, name: str) -> int | None:
    value = call.value(name)
    if value is None or value == "":
        return None
    try:
        number = int(value)
    except ValueError:
        raise invalid(f"{name} must be an integer (not {value!r})", name) from None
    if not 0 <= number <= MAX_NUMBER:
        raise invalid(f"{name} must be from 0 to {MAX_NUMBER}", name)
    return number


async def handle_events(ctx: Context, call: Invocation) -> FhirResponse:
    assert call.id is not None
    since, until = _number(call, "eventsSinceNumber"), _number(call, "eventsUntilNumber")
    content = call.value("content")
    if content is not None and content not in backport.CONTENTS:
        raise invalid(
            f"content {content!r} is not one of {', '.join(backport.CONTENTS)}", "content"
        )
    subscription = await _subscription(ctx, call.id)
    try:
        plan = backport.plan_of(subscription)
    except FhirError:
        plan = None
    if plan is None:
        raise invalid(
            f"Subscription/{call.id} is not topic-based: $events is for topic-based"
            " Subscriptions (Subscriptions Backport IG)",
            "Subscription.criteria",
        )
    last = await notification_log.last_number(ctx.store, call.id)
    low = max(since or 1, 1)
    high = min(until if until is not None else last, low + MAX_EVENTS - 1)
    records = await notification_log.records(ctx.store, call.id, low, high) if low <= high else []
    shown = content or plan.content
    events = [await _occurrence(ctx, r, shown) for r in records]
    parameters = status_parameters(
        ctx.base_url, subscription, plan.topic.canonical, "query-event", last, events, shown
    )
    bundle = history_bundle(ctx.base_url, subscription, parameters, events, shown)
    return FhirResponse(200, bundle)


async def _occurrence(ctx: Context, record: notification_log.Record, content: str) -> Occurrence:
    body = None
    if content == "full-resource" and record.method != "delete":
        stored = await ctx.store.vread(record.type, record.id, record.version)
        if stored is not None and not stored.deleted:
            body = stored.content
    return Occurrence(
        record.number,
        record.type,
        record.id,
        record.version,
        record.method,
        record.timestamp,
        body,
    )


STATUS_OPERATION = Operation(
    definitions=tuple(
        OperationDefinition(
            "status",
            STATUS,
            level,
            resource_types=("Subscription",),
            methods=("GET", "POST"),
            parameters=(
                OperationParameter("id", "id", max="*", documentation="type level: which ones"),
                OperationParameter("status", "code", max="*"),
                OperationParameter("return", "Bundle", min=1, use="out"),
            ),
            scopes=SCOPES,
            documentation=(
                "The status of topic-based Subscriptions: a searchset Bundle of"
                " SubscriptionStatus Parameters (query-status) with the number of events"
                " notified since the Subscription started."
            ),
        )
        for level in ("instance", "type")
    ),
    handler=handle_status,
)

EVENTS_OPERATION = Operation(
    definitions=(
        OperationDefinition(
            "events",
            EVENTS,
            "instance",
            resource_types=("Subscription",),
            methods=("GET", "POST"),
            parameters=(
                OperationParameter("eventsSinceNumber", "string"),
                OperationParameter("eventsUntilNumber", "string"),
                OperationParameter("content", "code"),
                OperationParameter("return", "Bundle", min=1, use="out"),
            ),
            scopes=SCOPES,
            documentation=(
                "The notifications a topic-based Subscription was sent that are still in"
                " the outbox's retention: a history Bundle (query-event), at most 1000"
                " events; content empty, id-only or full-resource."
            ),
        ),
    ),
    handler=handle_events,
)
