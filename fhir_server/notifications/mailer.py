"""Email through the SMTP server the administrator configures (``FHIR_SERVER_SMTP_URL``,
``FHIR_SERVER_SMTP_FROM``): RFC 5321 SMTP with the standard library's ``smtplib``, run in a
thread.

- ``smtp://[user:pass@]host[:port]`` (port 25 by default): STARTTLS (RFC 3207) when the
  server offers it, and required when a password is given (never sent in clear);
- ``smtps://[user:pass@]host[:port]`` (port 465 by default): TLS from the start
  (RFC 8314), the certificate checked against the system's trust store.

The server is trusted (the administrator names it): it is not put through the outbound
guard of client-supplied URLs. Every failure raises :class:`MailError`; its text never
holds the password.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from urllib.parse import unquote, urlsplit

TIMEOUT = 20.0
"""Seconds for one SMTP exchange step."""


class MailError(Exception):
    """An email that was not accepted by the SMTP server."""


@dataclass(frozen=True, slots=True)
class SmtpServer:
    """A parsed ``FHIR_SERVER_SMTP_URL``."""

    host: str
    port: int
    tls: bool
    """TLS from the start (smtps)."""
    user: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> SmtpServer:
        parts = urlsplit(url.strip())
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError(
                "expected smtp://[user:pass@]host:port or smtps://[user:pass@]host:port"
            )
        try:
            port = parts.port or (465 if parts.scheme == "smtps" else 25)
        except ValueError:
            raise ValueError("the SMTP URL's port is not a number") from None
        return cls(
            host=parts.hostname,
            port=port,
            tls=parts.scheme == "smtps",
            user=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )


class Mailer:
    """Sends plain-text emails from ``sender`` through ``server``."""

    def __init__(self, server: SmtpServer, sender: str) -> None:
        self.server = server
        self.sender = sender
        self._domain = sender.rpartition("@")[2] or "localhost"

    @classmethod
    def from_settings(cls, smtp_url: str, smtp_from: str) -> Mailer | None:
        if not smtp_url:
            return None
        server = SmtpServer.parse(smtp_url)
        return cls(server, smtp_from or f"fhir-server@{server.host}")

    async def send(self, to: str, subject: str, body: str) -> str:
        """Send one email; its Message-ID. Raises :class:`MailError`."""
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = to
        message["Subject"] = subject
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = make_msgid(domain=self._domain)
        message.set_content(body)
        await asyncio.to_thread(self._send, message)
        return str(message["Message-ID"])

    def _send(self, message: EmailMessage) -> None:
        server = self.server
        try:
            if server.tls:
                context = ssl.create_default_context()
                client: smtplib.SMTP = smtplib.SMTP_SSL(
                    server.host, server.port, timeout=TIMEOUT, context=context
                )
            else:
                client = smtplib.SMTP(server.host, server.port, timeout=TIMEOUT)
            with client:
                client.ehlo()
                if not server.tls and client.has_extn("starttls"):
                    client.starttls(context=ssl.create_default_context())
                    client.ehlo()
                elif not server.tls and server.password:
                    raise MailError(
                        "the SMTP server does not offer STARTTLS: the password is not sent"
                        " in clear (use smtps://)"
                    )
                if server.user:
                    client.login(server.user, server.password or "")
                client.send_message(message)
        except MailError:
            raise
        except (smtplib.SMTPException, OSError, ssl.SSLError) as error:
            raise MailError(f"{type(error).__name__}: {error}") from None
