"""The R4 ``email`` channel (https://hl7.org/fhir/R4/subscription.html#channels): the
``endpoint`` is a ``mailto:`` URI of one address, and each notification is an email sent
through the SMTP server the administrator configures (``FHIR_SERVER_SMTP_URL``,
``fhir_server.notifications.mailer``).

Like every email the server sends, it holds no clinical detail (issue 17): the text of
the ``subscription`` template (``fhir_server.notifications.templates``) names the type of
the resource that changed (never the client's ``reason`` text) and links to the portal;
the resource itself is never sent, so a ``payload`` other than ``text/plain`` is refused.
``channel.header`` means nothing for email and is ignored. A patient's or caregiver's
Subscription may only mail an address of their own record (checked before it is active,
``statuses``). A Subscription whose email
cannot be sent because no SMTP server is configured gets status ``error`` when the
dispatcher checks it; an email the server does not accept is retried like a failed
rest-hook.
"""

from __future__ import annotations

from email.utils import parseaddr
from typing import Any

from fhir_server.events.outbox import Notification
from fhir_server.notifications.mailer import Mailer, MailError
from fhir_server.notifications.templates import Templates
from fhir_server.outbound import OutboundError
from resources.errors import invalid

PAYLOADS = frozenset({"text/plain"})


def address_of(endpoint: str) -> str | None:
    """The one address of a ``mailto:`` endpoint (None: not one)."""
    if not endpoint.lower().startswith("mailto:"):
        return None
    text = endpoint[len("mailto:") :].split("?", 1)[0].strip()
    name, address = parseaddr(text)
    if (
        not address
        or address != text
        or address.count("@") != 1
        or any(c in address for c in ",;\r\n <>")
        or not all(address.split("@"))
    ):
        return None
    return address


def check_channel(channel: dict[str, Any]) -> None:
    """An email channel a client may write (400 naming what is wrong)."""
    endpoint = channel.get("endpoint")
    if not isinstance(endpoint, str) or address_of(endpoint) is None:
        raise invalid(
            "An email Subscription needs channel.endpoint mailto:<one address>",
            "Subscription.channel.endpoint",
        )
    payload = channel.get("payload")
    if payload is not None and payload not in PAYLOADS:
        raise invalid(
            f"Subscription.channel.payload {payload!r}: email notifications carry no"
            " resource (no clinical detail by email); leave it out or use text/plain",
            "Subscription.channel.payload",
        )


async def deliver(
    mailer: Mailer | None,
    templates: Templates,
    portal_url: str,
    subscription: dict[str, Any],
    notification: Notification,
) -> None:
    """Send one notification email; raises :class:`OutboundError` when it was not
    accepted (the dispatcher retries it)."""
    if mailer is None:
        raise OutboundError("no SMTP server is configured (FHIR_SERVER_SMTP_URL)")
    endpoint = str((subscription.get("channel") or {}).get("endpoint") or "")
    address = address_of(endpoint)
    if address is None:
        raise OutboundError("the endpoint is not a mailto: address")
    text = templates.render("subscription", portal_url=portal_url, type=notification.type)
    try:
        await mailer.send(address, text.subject, text.body)
    except MailError as error:
        raise OutboundError(str(error)) from None
