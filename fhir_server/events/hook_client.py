"""Kept-alive HTTP connections for notifications, under the outbound guard's rules
(``fhir_server.outbound``, https://cheatsheetseries.owasp.org/cheatsheets/Server_Side_Request_Forgery_Prevention_Cheat_Sheet.html).

One :class:`HookClient` per dispatcher holds the asynchronous connections
(``httpcore``, HTTP/1.1 keep-alive), a small pool per subscription, so a subscription's
notifications after the first reuse its connection instead of paying a DNS lookup, a
TCP (and TLS) handshake and a thread each. The guard's rules hold:

- the URL is checked first without network activity (``OutboundGuard.refusal``: https
  only, http only to an allowed host, no user information, no non-public literal);
- every new connection resolves the host once and connects only to an address the guard
  checked (``OutboundGuard.check_addresses``), with the URL's host as TLS server name;
  a kept-alive connection stays on the address it was opened to (no DNS rebinding);
- no redirects (the pool follows none), no proxy, no compressed bodies, the guard's time
  limit for the whole exchange and its limit on the response size;
- every failure raises :class:`OutboundError` (one text; the reason is logged).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

import httpcore

from fhir_server.outbound import USER_AGENT, OutboundError, OutboundGuard, OutboundResponse

log = logging.getLogger("fhir_server.outbound")

KEEPALIVE = 30.0
"""Seconds an idle connection is kept."""


class HookClient:
    """Sends notification requests over kept-alive connections (see the module): one
    small pool per lane (a subscription: it sends one notification at a time), since
    httpcore's pool looks at all its connections for every request."""

    def __init__(self, guard: OutboundGuard) -> None:
        self.guard = guard
        self._backend = _CheckedBackend(guard)
        self._pools: dict[str, httpcore.AsyncConnectionPool] = {}

    def _pool(self, lane: str) -> httpcore.AsyncConnectionPool:
        pool = self._pools.get(lane)
        if pool is None:
            pool = self._pools[lane] = httpcore.AsyncConnectionPool(
                ssl_context=getattr(self.guard, "_ssl_context", None),
                max_connections=2,
                keepalive_expiry=KEEPALIVE,
                retries=0,
                network_backend=self._backend,
            )
        return pool

    async def close_lane(self, lane: str) -> None:
        pool = self._pools.pop(lane, None)
        if pool is not None:
            await pool.aclose()

    async def close(self) -> None:
        for lane in list(self._pools):
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
        """One request and its whole response (any status), on ``lane``'s connections;
        raises OutboundError."""
        refusal = self.guard.refusal(url)
        if refusal is not None:
            _log_failure(method, url, refusal)
            raise OutboundError(refusal)
        parts = urlsplit(url)
        sent = [
            ("Host", parts.netloc.rpartition("@")[2]),
            ("User-Agent", USER_AGENT),
            ("Accept-Encoding", "identity"),
            *headers,
        ]
        if content or method in ("POST", "PUT", "PATCH"):
            sent.append(("Content-Length", str(len(content))))
        limit = self.guard.max_bytes
        wait = self.guard.timeout
        timeouts = {"connect": wait, "read": wait, "write": wait, "pool": wait}
        try:
            async with (
                asyncio.timeout(wait),
                self._pool(lane).stream(
                    method, url, headers=sent, content=content, extensions={"timeout": timeouts}
                ) as response,
            ):
                pairs = tuple(
                    (k.decode("latin-1"), v.decode("latin-1")) for k, v in response.headers
                )
                body = bytearray()
                for name, value in pairs:
                    if name.lower() == "content-encoding" and value.strip().lower() not in (
                        "",
                        "identity",
                    ):
                        raise OutboundError(f"compressed body ({value})")
                async for chunk in response.aiter_stream():
                    body += chunk
                    if len(body) > limit:
                        raise OutboundError(f"body over the limit of {limit} bytes")
                return OutboundResponse(response.status, pairs, bytes(body))
        except OutboundError as error:
            _log_failure(method, url, error.reason)
            raise
        except Exception as error:  # every failure looks the same to the caller
            reason = f"{type(error).__name__}: {error}"
            _log_failure(method, url, reason)
            raise OutboundError(reason) from None


class _CheckedBackend(httpcore.AsyncNetworkBackend):
    """Opens each new connection to an address the guard checked for its host."""

    def __init__(self, guard: OutboundGuard) -> None:
        self._guard = guard
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        shown = f"[{host}]" if _is_v6(host) else host
        # the https form: the scheme rule was applied to the URL before; this resolves
        # the host (in a thread: getaddrinfo blocks) and checks every address
        try:
            addresses = await asyncio.to_thread(
                self._guard.check_addresses, f"https://{shown}:{port}/"
            )
        except OutboundError as error:
            raise httpcore.ConnectError(error.reason) from None
        failure: Exception = httpcore.ConnectError("no address")
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    str(address), port, timeout=timeout, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                failure = error
        raise failure

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("no unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def _is_v6(host: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(host.split("%", 1)[0]), ipaddress.IPv6Address)
    except ValueError:
        return False


def _log_failure(method: str, url: str, reason: str) -> None:
    parts = urlsplit(url)
    where = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"
    log.warning("outbound %s %s refused or failed: %s", method, where[:300], reason[:300])
