"""Notification Bundles of topic-based Subscriptions in R4 (Subscriptions R5 Backport IG,
STU 1.1, https://hl7.org/fhir/uv/subscriptions-backport/STU1.1/notifications.html and the
profiles ``backport-subscription-notification-r4`` and
``backport-subscription-status-r4``).

A notification is a ``history`` Bundle whose first entry is the SubscriptionStatus as a
``Parameters`` resource: ``subscription`` (a Reference), ``topic`` (the canonical),
``status``, ``type`` (``handshake``, ``heartbeat``, ``event-notification``,
``query-status``, ``query-event``), ``events-since-subscription-start`` and one
``notification-event`` per event (``event-number``, ``timestamp``, ``focus``). The
entries after it depend on the payload content: none for ``empty`` (nor a ``focus``),
the resource's ``fullUrl`` with its ``request``/``response`` for ``id-only``, and the
resource too for ``full-resource``. ``$status`` answers ``searchset`` Bundles of the
same Parameters (``status_parameters``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from fhir_server.storage.base import now_instant
from resources import fhir_json

STATUS_PROFILE = (
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
    "backport-subscription-status-r4"
)
NOTIFICATION_PROFILE = (
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
    "backport-subscription-notification-r4"
)


@dataclass(frozen=True)
class Occurrence:
    """One event of a notification: its number and what it was about."""

    number: int
    type: str
    id: str
    version: int
    method: str
    """``create``, ``update`` or ``delete``."""
    timestamp: str = ""
    content: bytes | None = None
    """The version (for ``full-resource``), None otherwise or when not readable."""


def status_parameters(
    base_url: str,
    subscription: dict[str, Any],
    topic: str,
    kind: str,
    since_start: int,
    events: list[Occurrence] = (),  # type: ignore[assignment]
    content: str = "id-only",
    status: str | None = None,
) -> dict[str, Any]:
    """The SubscriptionStatus (``backport-subscription-status-r4``)."""
    sid = str(subscription.get("id"))
    parameters: list[dict[str, Any]] = [
        {"name": "subscription", "valueReference": {"reference": f"{base_url}/Subscription/{sid}"}},
        *([{"name": "topic", "valueCanonical": topic}] if topic else []),
        {"name": "status", "valueCode": status or str(subscription.get("status") or "active")},
        {"name": "type", "valueCode": kind},
        {"name": "events-since-subscription-start", "valueString": str(since_start)},
    ]
    for event in events:
        parts: list[dict[str, Any]] = [
            {"name": "event-number", "valueString": str(event.number)},
            {"name": "timestamp", "valueInstant": event.timestamp or now_instant()},
        ]
        if content != "empty":
            focus = f"{base_url}/{event.type}/{event.id}/_history/{event.version}"
            parts.append({"name": "focus", "valueReference": {"reference": focus}})
        parameters.append({"name": "notification-event", "part": parts})
    error = subscription.get("error")
    if kind == "query-status" and isinstance(error, str) and error:
        parameters.append({"name": "error", "valueCodeableConcept": {"text": error}})
    return {
        "resourceType": "Parameters",
        "id": str(uuid.uuid4()),
        "meta": {"profile": [STATUS_PROFILE]},
        "parameter": parameters,
    }


def notification_bundle(
    base_url: str,
    subscription: dict[str, Any],
    status_resource: dict[str, Any],
    events: list[Occurrence] = (),  # type: ignore[assignment]
    content: str = "id-only",
) -> dict[str, Any]:
    """A notification (``history`` Bundle): the status (``status_parameters``) first,
    then per ``content`` the resources of ``events``."""
    sid = str(subscription.get("id"))
    entries: list[dict[str, Any]] = [
        {
            "fullUrl": f"urn:uuid:{status_resource['id']}",
            "resource": status_resource,
            "request": {"method": "GET", "url": f"{base_url}/Subscription/{sid}/$status"},
            "response": {"status": "200"},
        }
    ]
    if content != "empty":
        entries += [_entry(base_url, event, content) for event in events]
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"profile": [NOTIFICATION_PROFILE]},
        "type": "history",
        "timestamp": now_instant(),
        "entry": entries,
    }


_REQUEST = {"create": "POST", "update": "PUT", "delete": "DELETE"}
_RESPONSE = {"create": "201", "update": "200", "delete": "204"}


def _entry(base_url: str, event: Occurrence, content: str) -> dict[str, Any]:
    url = f"{event.type}/{event.id}"
    method = _REQUEST.get(event.method, "PUT")
    entry: dict[str, Any] = {
        "fullUrl": f"{base_url}/{url}",
        "request": {"method": method, "url": event.type if method == "POST" else url},
        "response": {"status": _RESPONSE.get(event.method, "200")},
    }
    if event.method != "delete":
        entry["response"]["etag"] = f'W/"{event.version}"'
    if content == "full-resource" and event.content is not None:
        entry["resource"] = fhir_json.loads(event.content)
    return entry
