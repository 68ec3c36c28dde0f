"""Text messages (SMS) through a provider (issue 17): :class:`SmsProvider` is the
interface, :class:`WebhookSms` the one built in: a ``POST`` to
``FHIR_SERVER_SMS_WEBHOOK_URL`` (the administrator's gateway, trusted like the SMTP
server: not put through the outbound guard) with

- ``FHIR_SERVER_SMS_WEBHOOK_FORMAT=json`` (default): ``{"to": "+15550100", "body": "..."}``
  as ``application/json``;
- ``form``: ``To=…&Body=…`` (and ``From=`` ``FHIR_SERVER_SMS_FROM`` when set) as
  ``application/x-www-form-urlencoded``, the shape Twilio's Messages API takes.

User information in the URL (``https://user:secret@gateway/…``) is sent as HTTP Basic
authentication, not in the URL. A 2xx answer is a sent message; anything else raises
:class:`SmsError` (the text never holds the secret).
"""

from __future__ import annotations

from typing import Protocol
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx

TIMEOUT = 10.0


class SmsError(Exception):
    """A text message the provider did not accept."""


class SmsProvider(Protocol):
    async def send(self, to: str, body: str) -> None:
        """Send one text message; raises :class:`SmsError`."""
        ...


class WebhookSms:
    """The built-in provider (see the module)."""

    def __init__(self, url: str, form: str = "json", sender: str = "") -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("FHIR_SERVER_SMS_WEBHOOK_URL must be an http(s) URL")
        self._auth = (
            (unquote(parts.username), unquote(parts.password or "")) if parts.username else None
        )
        netloc = parts.netloc.rpartition("@")[2]
        self.url = urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
        self.form = form
        self.sender = sender

    async def send(self, to: str, body: str) -> None:
        try:
            async with httpx.AsyncClient(timeout=TIMEOUT, trust_env=False) as client:
                if self.form == "form":
                    data = {
                        "To": to,
                        "Body": body,
                        **({"From": self.sender} if self.sender else {}),
                    }
                    response = await client.post(self.url, data=data, auth=self._auth)
                else:
                    payload = {"to": to, "body": body}
                    response = await client.post(self.url, json=payload, auth=self._auth)
        except httpx.HTTPError as error:
            raise SmsError(f"{type(error).__name__}: {error}") from None
        if not response.is_success:
            raise SmsError(f"the SMS gateway answered HTTP {response.status_code}")


def provider(url: str, form: str = "json", sender: str = "") -> SmsProvider | None:
    return WebhookSms(url, form, sender) if url else None
