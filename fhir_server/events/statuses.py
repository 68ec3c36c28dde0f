"""The statuses of R4 Subscriptions (https://hl7.org/fhir/R4/subscription.html#status) as
the dispatcher changes them: it lists the ``requested`` and ``active`` ones, checks a
``requested`` one's endpoint before making it ``active`` (a rest-hook's host must resolve
to addresses the outbound guard allows, R4 having no handshake; an email one needs an SMTP
server, and a patient's or caregiver's may only mail their own addresses), and sets
``error`` with a reason. Every change is a compare-and-set write of the
Subscription (``If-Match`` on the version read), so one process makes it."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fhir_server.events.email_channel import address_of
from fhir_server.events.subscriptions import TYPE, creator_fields
from fhir_server.interactions.write import content_builder, index_entries
from fhir_server.outbound import OutboundError, OutboundGuard
from fhir_server.storage.base import StoredVersion, VersionConflict, WriteRequest, WriteResult
from resources import fhir_json
from resources.search.parameters import search_params
from resources.search.parse import parse_search

log = logging.getLogger("fhir_server.events")

ACTIVATION_TIMEOUT = 5.0
"""Seconds the endpoint's host name has to resolve when a Subscription is activated."""
ENDPOINT_REFUSED = (
    "The endpoint was refused: its host does not resolve, or not to an address the"
    " server may reach (see the server's log)"
)
NO_SMTP = "No SMTP server is configured (FHIR_SERVER_SMTP_URL): email notifications cannot be sent"
NOT_THEIRS = (
    "The email address is not one of yours: a patient's or caregiver's Subscription may"
    " only mail an address of their own record (its email telecom)"
)


async def list_subscriptions(store: Any) -> list[tuple[StoredVersion, dict[str, Any]]]:
    """The ``requested`` and ``active`` Subscriptions."""
    query = parse_search(
        [TYPE],
        [("status", "requested,active")],
        strict=True,
        params_for=search_params,
        max_count=1000,
        default_count=1000,
    )
    out = []
    cursor = None
    while True:
        page = await store.search(query, cursor, 1000, False)
        for stored in page.entries:
            if stored.content is not None:
                out.append((stored, fhir_json.loads(stored.content)))
        cursor = page.next_cursor
        if cursor is None:
            return out


async def endpoint_refusal(
    guard: OutboundGuard, mailer: Any, id_: str, resource: dict[str, Any], store: Any = None
) -> str | None:
    """Why the Subscription cannot be made active (None: it can). A rest-hook's reason
    stays in the log: like every outbound failure, it is not told to the client."""
    channel = resource.get("channel") or {}
    if channel.get("type") == "email":
        if mailer is None:
            return NO_SMTP
        return await _not_theirs(store, resource, str(channel.get("endpoint") or ""))
    endpoint = str(channel.get("endpoint") or "")
    try:
        # not wait_for: on Python 3.11 it can swallow a cancellation (the dispatcher
        # stopping) that comes as the lookup ends, and the stop then waits forever
        async with asyncio.timeout(ACTIVATION_TIMEOUT):
            await asyncio.to_thread(guard.check_addresses, endpoint)
    except (OutboundError, TimeoutError) as error:
        reason = getattr(error, "reason", "the host name did not resolve in time")
        log.warning("Subscription/%s: endpoint refused: %s", id_, reason)
        return ENDPOINT_REFUSED
    return None


async def _not_theirs(store: Any, resource: dict[str, Any], endpoint: str) -> str | None:
    """An email Subscription of a patient or a caregiver (a patient-context token, or a
    user who is a Patient, RelatedPerson or Person) may only mail their own addresses:
    the ``email`` telecom of that patient or of that user's resource; else the clinic's
    mail server would send to strangers for an app. Staff and backend services (and
    Subscriptions without a recorded creator) may name any address."""
    fields = creator_fields(resource) or {}
    people = [
        ref
        for ref in (fields.get("patient"), fields.get("user"))
        if ref and ref.startswith(("Patient/", "RelatedPerson/", "Person/"))
    ]
    if not people or store is None:
        return None
    address = (address_of(endpoint) or "").lower()
    for ref in people:
        type_, _, rid = ref.partition("/")
        stored = await store.read(type_, rid)
        if stored is None or stored.content is None:
            continue
        for point in fhir_json.loads(stored.content).get("telecom") or []:
            value = point.get("value") if isinstance(point, dict) else None
            if point.get("system") == "email" and str(value).strip().lower() == address:
                return None
    return NOT_THEIRS


async def set_status(
    store: Any, stored: StoredVersion, resource: dict[str, Any], status: str, error: str = ""
) -> WriteResult | None:
    """A compare-and-set of the Subscription's status (None: it changed meanwhile)."""
    changed = {**resource, "status": status}
    if error:
        changed["error"] = error
    else:
        changed.pop("error", None)
    request = WriteRequest(
        TYPE,
        stored.id,
        "update",
        content_builder(changed, stored.id),
        if_match=stored.version,
        index=index_entries(changed, stored.id),
    )
    try:
        result = await store.write(request)
    except VersionConflict:
        return None
    log.info("Subscription/%s is %s%s", stored.id, status, f": {error}" if error else "")
    return result


async def set_error(store: Any, key: str, text: str) -> None:
    """The Subscription's status ``error`` with ``text``, if it is still active."""
    stored = await store.read(TYPE, key.split("/", 1)[1])
    if stored is None or stored.content is None:
        return
    current = fhir_json.loads(stored.content)
    if current.get("status") == "active":
        await set_status(store, stored, current, "error", text)
