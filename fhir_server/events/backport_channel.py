"""Sending the notifications of topic-based Subscriptions over ``rest-hook`` (Subscriptions
R5 Backport IG, STU 1.1,
https://hl7.org/fhir/uv/subscriptions-backport/STU1.1/channels.html#rest-hook): each one
is ``POST [endpoint]`` with a notification Bundle (``notification_bundle``) as
``application/fhir+json``, every ``channel.header`` (``Name: value``), and
``X-Subscription-Id``. A 2xx answer is a delivery; anything else an ``OutboundError``
(the dispatcher retries event notifications as it does classic ones).

- :func:`handshake` when the Subscription is activated (status ``requested`` in the
  Bundle): refused, the Subscription becomes ``error``;
- :func:`heartbeat` every ``backport-heartbeat-period`` seconds in which nothing was sent;
- :func:`send_event`: one event per notification (so ``backport-max-count`` is met), its
  number in ``notification-event.event-number`` and ``events-since-subscription-start``;
  recorded for ``$status`` and ``$events`` (``notification_log``) once delivered.

``backport-timeout`` (seconds) bounds each exchange below the outbound guard's own limit.
Other channels (a websocket) build the same Bundles with :func:`event_bundle` and
:func:`status_bundle`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fhir_server.events import notification_log
from fhir_server.events.backport import Plan, TopicNotification
from fhir_server.events.hook_client import HookClient
from fhir_server.events.notification_bundle import (
    Occurrence,
    notification_bundle,
    status_parameters,
)
from fhir_server.events.rest_hook import _headers
from fhir_server.outbound import OutboundError
from fhir_server.storage.base import now_instant
from resources import fhir_json

log = logging.getLogger("fhir_server.events")

HANDSHAKE_FAILED = (
    "The handshake was not accepted (the endpoint could not be reached or did not answer"
    " 2xx; the server's log has the reason); write the Subscription with status requested"
    " to try again"
)


def occurrence(number: int, notification: TopicNotification, content: str) -> Occurrence:
    return Occurrence(
        number,
        notification.type,
        notification.id,
        notification.version,
        notification.method,
        notification.timestamp or now_instant(),
        notification.content if content == "full-resource" else None,
    )


def event_bundle(
    base_url: str,
    subscription: dict[str, Any],
    plan: Plan,
    number: int,
    notification: TopicNotification,
) -> dict[str, Any]:
    """The ``event-notification`` Bundle of event ``number``."""
    return status_bundle(
        base_url,
        subscription,
        plan,
        "event-notification",
        number,
        events=[occurrence(number, notification, plan.content)],
    )


def status_bundle(
    base_url: str,
    subscription: dict[str, Any],
    plan: Plan,
    kind: str,
    number: int,
    status: str | None = None,
    events: list[Occurrence] = (),  # type: ignore[assignment]
) -> dict[str, Any]:
    """A notification Bundle: a ``handshake`` or ``heartbeat`` (no events), or an
    ``event-notification``."""
    topic = plan.topic.canonical
    parameters = status_parameters(
        base_url, subscription, topic, kind, number, events, plan.content, status
    )
    return notification_bundle(base_url, subscription, parameters, events, plan.content)


async def handshake(
    client: HookClient, base_url: str, subscription: dict[str, Any], plan: Plan
) -> bool:
    """Send the handshake; whether the endpoint accepted it."""
    bundle = status_bundle(base_url, subscription, plan, "handshake", 0, "requested")
    try:
        await _post(client, subscription, plan, bundle)
    except OutboundError as error:
        log.warning("Subscription/%s: handshake refused: %s", subscription.get("id"), error)
        return False
    return True


async def heartbeat(
    client: HookClient, base_url: str, subscription: dict[str, Any], plan: Plan, number: int
) -> None:
    """Send a heartbeat (raises OutboundError)."""
    await _post(
        client, subscription, plan, status_bundle(base_url, subscription, plan, "heartbeat", number)
    )


async def send_event(
    client: HookClient,
    store: Any,
    base_url: str,
    subscription: dict[str, Any],
    plan: Plan,
    number: int,
    seq: int,
    notification: TopicNotification,
) -> None:
    """Send event ``number`` and record it (raises OutboundError)."""
    await _post(
        client, subscription, plan, event_bundle(base_url, subscription, plan, number, notification)
    )
    record = notification_log.Record(
        number,
        seq,
        notification.type,
        notification.id,
        notification.version,
        notification.method,
        notification.timestamp or now_instant(),
    )
    await notification_log.record(store, str(subscription.get("id")), record)


async def _post(
    client: HookClient, subscription: dict[str, Any], plan: Plan, bundle: dict[str, Any]
) -> None:
    channel = subscription.get("channel") or {}
    endpoint = str(channel.get("endpoint") or "")
    headers = [
        *_headers(channel),
        ("X-Subscription-Id", str(subscription.get("id"))),
        ("Content-Type", "application/fhir+json"),
    ]
    lane = str(subscription.get("id"))
    body = fhir_json.dumps(bundle)
    try:
        async with asyncio.timeout(plan.timeout or client.guard.timeout):
            response = await client.request(
                "POST", endpoint, headers=headers, content=body, lane=lane
            )
    except TimeoutError:
        await client.close_lane(lane)
        raise OutboundError(f"no answer within {plan.timeout} s (backport-timeout)") from None
    if not 200 <= response.status < 300:
        raise OutboundError(f"HTTP status {response.status}")
