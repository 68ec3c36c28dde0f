"""The R4 ``rest-hook`` channel (https://hl7.org/fhir/R4/subscription.html#channels):

- with a ``payload`` (``application/fhir+json``; ``application/json`` is read the same):
  ``PUT [endpoint]/[type]/[id]`` with the resource version as the body;
- without one: ``POST [endpoint]`` with an empty body ("the notification is a ping");
- a deletion, with a payload: ``DELETE [endpoint]/[type]/[id]`` (R4 says nothing of
  deletions; this is what other servers do), without one the same empty ``POST``;
- every ``channel.header`` (``Name: value``) sent with each call.

Every call goes through the outbound guard's rules on kept-alive connections
(``fhir_server.events.hook_client``): the endpoint a client supplied must be public
(https) unless ``FHIR_SERVER_OUTBOUND_ALLOW`` names it.
A 2xx answer is a delivery; anything else (a refused address, a closed port, a timeout,
another status) is a failure the dispatcher retries. The request also carries the event
number of the subscription (``X-Subscription-Event``) and its id
(``X-Subscription-Id``), so a receiver can drop a duplicate (delivery is at least once).
"""

from __future__ import annotations

from typing import Any

from fhir_server.events.hook_client import HookClient
from fhir_server.events.outbox import Notification
from fhir_server.outbound import OutboundError, OutboundGuard
from resources.errors import invalid

PAYLOADS = frozenset({"application/fhir+json", "application/json"})


def check_channel(channel: Any, guard: OutboundGuard) -> None:
    """A rest-hook channel a client may write (400 naming what is wrong; the email
    channel is ``email_channel``'s)."""
    if not isinstance(channel, dict):
        raise invalid("Subscription.channel is required", "Subscription.channel")
    kind = channel.get("type")
    if kind != "rest-hook":
        raise invalid(
            f"Subscription.channel.type {kind!r} is not supported: this server delivers"
            " rest-hook, email and websocket notifications (message is not supported)",
            "Subscription.channel.type",
        )
    endpoint = channel.get("endpoint")
    if not isinstance(endpoint, str) or not endpoint:
        raise invalid(
            "A rest-hook Subscription needs channel.endpoint", "Subscription.channel.endpoint"
        )
    refusal = guard.refusal(endpoint)
    if refusal is not None:
        raise invalid(
            f"Subscription.channel.endpoint is refused: {refusal} (the server's outbound"
            " requests go only to public https addresses unless FHIR_SERVER_OUTBOUND_ALLOW"
            " names the host)",
            "Subscription.channel.endpoint",
        )
    payload = channel.get("payload")
    if payload is not None and payload not in PAYLOADS:
        raise invalid(
            f"Subscription.channel.payload {payload!r} is not supported (application/fhir+json)",
            "Subscription.channel.payload",
        )
    for header in channel.get("header") or []:
        if not isinstance(header, str) or ":" not in header or "\n" in header or "\r" in header:
            raise invalid(
                "Subscription.channel.header values are 'Name: value'",
                "Subscription.channel.header",
            )


def _headers(channel: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for header in channel.get("header") or []:
        name, _, value = str(header).partition(":")
        out.append((name.strip(), value.strip()))
    return out


async def deliver(
    client: HookClient,
    subscription: dict[str, Any],
    number: int,
    notification: Notification,
) -> None:
    """Send one notification; raises :class:`OutboundError` unless the endpoint answered 2xx."""
    channel = subscription.get("channel") or {}
    endpoint = str(channel.get("endpoint") or "")
    headers = [
        *_headers(channel),
        ("X-Subscription-Id", str(subscription.get("id"))),
        ("X-Subscription-Event", str(number)),
    ]
    resource_url = f"{endpoint.rstrip('/')}/{notification.path}"
    if channel.get("payload") and notification.deleted:
        method, url, body = "DELETE", resource_url, b""
    elif channel.get("payload") and notification.content is not None:
        method, url, body = "PUT", resource_url, notification.content
        headers.append(("Content-Type", "application/fhir+json"))
    else:
        method, url, body = "POST", endpoint, b""
    response = await client.request(
        method, url, headers=headers, content=body, lane=str(subscription.get("id"))
    )
    if not 200 <= response.status < 300:
        raise OutboundError(f"HTTP status {response.status}")
