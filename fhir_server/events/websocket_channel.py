"""The R4 ``websocket`` channel as a Subscription declares it
(https://hl7.org/fhir/R4/subscription.html#channels, "websocket"): the client opens the
server's websocket (``[base]/websocket``, advertised in the CapabilityStatement) and
binds it to the Subscription; each notification is the text ``ping [id]``.

There is nothing to deliver to and nothing to check before notifying: a websocket
Subscription is stored ``active`` at once (``off`` stays ``off``). Its ``endpoint`` and
``header`` mean nothing and are ignored; a ``payload`` is refused, the notification
being a ping. The binding and the pings are :mod:`fhir_server.events.websocket`'s.
"""

from __future__ import annotations

from typing import Any

from resources.errors import invalid

TYPE = "websocket"


def is_websocket(subscription: dict[str, Any]) -> bool:
    """Whether the Subscription's channel is a websocket."""
    channel = subscription.get("channel")
    return isinstance(channel, dict) and channel.get("type") == TYPE


def check_channel(channel: dict[str, Any], topic_based: bool = False) -> None:
    """A websocket channel a client may write (400 naming what is wrong); ``topic_based``:
    the Subscription names a SubscriptionTopic (Backport IG), whose notifications are
    Bundles: this channel only pings criteria Subscriptions."""
    if topic_based:
        raise invalid(
            "Subscription.channel.type websocket: topic-based Subscriptions are notified"
            " over rest-hook here; the websocket channel serves R4 criteria Subscriptions",
            "Subscription.channel.type",
        )
    if channel.get("payload") is not None:
        raise invalid(
            "Subscription.channel.payload: websocket notifications are pings ('ping [id]');"
            " leave the payload out (use a rest-hook channel to receive resources)",
            "Subscription.channel.payload",
        )


PATH = "/websocket"
"""Below the FHIR base: ``[base]/websocket``."""


def websocket_url(fhir_base: str) -> str:
    """The websocket address of a FHIR base: ``ws://`` for ``http://``, ``wss://`` for
    ``https://`` (the configured public base URL when there is one)."""
    scheme, sep, rest = fhir_base.rstrip("/").partition("://")
    ws = {"http": "ws", "https": "wss"}.get(scheme.lower(), scheme)
    return f"{ws}{sep}{rest}{PATH}"


EXTENSION = "http://hl7.org/fhir/StructureDefinition/capabilitystatement-websocket"


def websocket_extension(fhir_base: str) -> dict[str, str]:
    """``CapabilityStatement.rest.extension`` naming the websocket
    (https://hl7.org/fhir/R4/extension-capabilitystatement-websocket.html: a ``uri``)."""
    return {"url": EXTENSION, "valueUri": websocket_url(fhir_base)}
