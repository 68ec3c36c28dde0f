"""Kept-alive HTTP connections for notifications, under the outbound guard's rules
(``fhir_server.outbound``, https://cheatsheetseries.owasp.org/cheatsheets/Server_Side_Request_Forgery_Prevention_Cheat_Sheet.html).

One :class:`HookClient` per dispatcher holds one HTTP/1.1 connection per lane (a
subscription, which sends one notification at a time), kept alive between its
notifications, so each one after the first costs no DNS lookup, TCP (and TLS) handshake
or thread. The protocol is ``h11`` (RFC 9112, sans-IO) over asyncio streams: a
notification is a small request with a small answer, and a general client's pool
bookkeeping cost more than the rest of the delivery. The guard's rules hold:

- the URL is checked first without network activity (``OutboundGuard.refusal``: https
  only, http only to an allowed host, no user information, no non-public literal);
- every new connection resolves the host once and connects only to an address the guard
  checked (``OutboundGuard.check_addresses``), with the URL's host as TLS server name,
  the certificate verified; a kept-alive connection stays on the address it was opened to
  (no DNS rebinding);
- no redirects, no proxy, no compressed bodies, the guard's time limit for the whole
  exchange and its limit on the response size;
- every failure raises :class:`OutboundError` (one text; the reason is logged). A request
  on a kept-alive connection that the server had closed meanwhile is sent again once on a
  new connection (nothing of an answer was read).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import h11

from fhir_server.outbound import USER_AGENT, OutboundError, OutboundGuard, OutboundResponse

log = logging.getLogger("fhir_server.outbound")

KEEPALIVE = 30.0
"""Seconds an idle connection is kept."""
READ = 65536


class _Stale(Exception):
    """A kept-alive connection that the server closed before answering."""


@dataclass
class _Connection:
    origin: tuple[str, str, int]
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    protocol: h11.Connection
    used_at: float

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class HookClient:
    """Sends notification requests over kept-alive connections (see the module)."""

    def __init__(self, guard: OutboundGuard) -> None:
        self.guard = guard
        self._connections: dict[str, _Connection] = {}
        self._ssl: ssl.SSLContext | None = getattr(guard, "_ssl_context", None)

    async def close_lane(self, lane: str) -> None:
        connection = self._connections.pop(lane, None)
        if connection is not None:
            connection.close()

    async def close(self) -> None:
        for lane in list(self._connections):
            await self.close_lane(lane)

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Sequence[tuple[str, str]] = (),
        content: bytes = b"",
        lane: str = "",
    ) -> OutboundResponse:
        """One request and its whole response (any status), on ``lane``'s connection;
        raises OutboundError."""
        refusal = self.guard.refusal(url)
        if refusal is not None:
            _log_failure(method, url, refusal)
            raise OutboundError(refusal)
        try:
            async with asyncio.timeout(self.guard.timeout):
                try:
                    return await self._exchange(method, url, headers, content, lane)
                except _Stale:
                    return await self._exchange(method, url, headers, content, lane)
        except OutboundError as error:
            await self.close_lane(lane)
            _log_failure(method, url, error.reason)
            raise
        except Exception as error:  # every failure looks the same to the caller
            await self.close_lane(lane)
            reason = f"{type(error).__name__}: {error}"
            _log_failure(method, url, reason)
            raise OutboundError(reason) from None

    async def _exchange(
        self,
        method: str,
        url: str,
        headers: Sequence[tuple[str, str]],
        content: bytes,
        lane: str,
    ) -> OutboundResponse:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        host = (parts.hostname or "").rstrip(".")
        port = parts.port or (443 if scheme == "https" else 80)
        origin = (scheme, host, port)
        connection = self._connections.get(lane)
        reused = (
            connection is not None
            and connection.origin == origin
            and time.monotonic() - connection.used_at < KEEPALIVE
            and connection.protocol.our_state is h11.IDLE
        )
        if not reused:
            await self.close_lane(lane)
            connection = self._connections[lane] = await self._connect(origin)
        assert connection is not None
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        sent = [
            ("Host", parts.netloc.rpartition("@")[2]),
            ("User-Agent", USER_AGENT),
            ("Accept-Encoding", "identity"),
            *headers,
            ("Content-Length", str(len(content))),
        ]
        protocol = connection.protocol
        data = protocol.send(h11.Request(method=method, target=target, headers=sent))
        if content:
            data = (data or b"") + (protocol.send(h11.Data(data=content)) or b"")
        data = (data or b"") + (protocol.send(h11.EndOfMessage()) or b"")
        connection.writer.write(data)
        await connection.writer.drain()
        status, answer_headers, body = await self._answer(connection, reused)
        connection.used_at = time.monotonic()
        if protocol.our_state is h11.DONE and protocol.their_state is h11.DONE:
            protocol.start_next_cycle()
        else:
            await self.close_lane(lane)
        return OutboundResponse(status, answer_headers, body)

    async def _answer(
        self, connection: _Connection, reused: bool
    ) -> tuple[int, tuple[tuple[str, str], ...], bytes]:
        protocol = connection.protocol
        status = 0
        pairs: tuple[tuple[str, str], ...] = ()
        body = bytearray()
        limit = self.guard.max_bytes
        while True:
            event = protocol.next_event()
            if event is h11.NEED_DATA:
                chunk = await connection.reader.read(READ)
                if not chunk and reused and not status:
                    raise _Stale
                protocol.receive_data(chunk)
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
                pairs = tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in event.headers)
                for name, value in pairs:
                    if name.lower() == "content-encoding" and value.strip().lower() not in (
                        "",
                        "identity",
                    ):
                        raise OutboundError(f"compressed body ({value})")
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > limit:
                    raise OutboundError(f"body over the limit of {limit} bytes")
            elif isinstance(event, h11.EndOfMessage):
                return status, pairs, bytes(body)
            elif isinstance(event, h11.ConnectionClosed):
                if reused and not status:
                    raise _Stale
                raise OutboundError("the connection closed before the answer ended")

    async def _connect(self, origin: tuple[str, str, int]) -> _Connection:
        scheme, host, port = origin
        shown = f"[{host}]" if _is_v6(host) else host
        # the https form: the scheme rule was applied to the URL; this resolves the host
        # (in a thread: getaddrinfo blocks) and checks every address
        addresses = await asyncio.to_thread(self.guard.check_addresses, f"https://{shown}:{port}/")
        context = None
        if scheme == "https":
            context = self._ssl or ssl.create_default_context()
        failure: Exception = OutboundError("no address")
        for address in addresses:
            try:
                reader, writer = await asyncio.open_connection(
                    str(address),
                    port,
                    ssl=context,
                    server_hostname=host if context is not None else None,
                )
            except OSError as error:
                failure = error
                continue
            return _Connection(origin, reader, writer, h11.Connection(h11.CLIENT), 0.0)
        raise failure


def _is_v6(host: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(host.split("%", 1)[0]), ipaddress.IPv6Address)
    except ValueError:
        return False


def _log_failure(method: str, url: str, reason: str) -> None:
    parts = urlsplit(url)
    where = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"
    log.warning("outbound %s %s refused or failed: %s", method, where[:300], reason[:300])
