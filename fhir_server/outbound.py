"""Outbound HTTP requests to URLs that others give the server, guarded against server-side
request forgery (SSRF, https://owasp.org/Top10/A10_2021-Server-Side_Request_Forgery_%28SSRF%29/
and the OWASP prevention cheat sheet,
https://cheatsheetseries.owasp.org/cheatsheets/Server_Side_Request_Forgery_Prevention_Cheat_Sheet.html).

Every request the server makes to a URL it did not choose itself goes through one
:class:`OutboundGuard`: a SMART client's ``jwks_uri`` (RFC 7523 client authentication,
handed to ``smart_auth`` at assembly), and later subscription rest-hooks and webhooks.
The rules:

- ``https`` only; ``http`` only to a host that the allow list names (by name, or an
  address literal inside one of its networks). No user name or password in the URL.
- The host name is resolved once and every address it resolves to must be public: not
  loopback, private (RFC 1918, IPv6 ULA ``fc00::/7``), link-local (``169.254.0.0/16``,
  where cloud metadata services answer, ``fe80::/10``), shared (``100.64.0.0/10``),
  multicast, reserved, unspecified or documentation space; IPv6 addresses that carry an
  IPv4 address (IPv4-mapped ``::ffff:0:0/96``, 6to4 ``2002::/16``, NAT64
  ``64:ff9b::/96``) are judged by that IPv4 address, and ``localhost`` / ``*.localhost``
  (RFC 6761) are refused without a lookup. The allow list (``FHIR_SERVER_OUTBOUND_ALLOW``:
  host names, addresses or CIDR networks, comma separated) lifts this for what it names:
  a named host may resolve anywhere, a listed network's addresses are reachable.
- The connection goes to an address that was checked (no second lookup, so no DNS
  rebinding between the check and the connection), with the URL's host in the ``Host``
  header and as the TLS server name (SNI), against which the certificate is verified.
- No redirects, no proxy from the environment, no compressed bodies; one time limit for
  the whole exchange (connection, TLS, request and the complete response) and a limit on
  the response size.
- Every failure, refused or not, raises :class:`OutboundError` with the same text, so
  that neither the caller nor whoever reads its error can tell a refused address from a
  closed port, a TLS failure, an HTTP error status or a bad body (no port scanning
  through the server). The reason is logged (logger ``fhir_server.outbound``) for the
  operator.

The guard is synchronous (the SMART grant code that needs it runs in a thread pool);
async callers run it with ``asyncio.to_thread``.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpcore

log = logging.getLogger("fhir_server.outbound")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Sequence[str]]
"""``(host, port)`` -> the addresses (text) the host name resolves to."""

GENERIC_ERROR = "The outbound request failed"
"""The one text of every :class:`OutboundError`."""
DEFAULT_TIMEOUT = 5.0
"""Seconds for a whole exchange, from the first connection attempt to the last byte."""
DEFAULT_MAX_BYTES = 64 * 1024
"""Largest response body read (a JWKS of a few keys is 1-3 KB)."""
USER_AGENT = "fhir-server (outbound)"

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_SHARED = ipaddress.ip_network("100.64.0.0/10")


class OutboundError(Exception):
    """An outbound request that was refused or failed; ``str()`` is always
    :data:`GENERIC_ERROR`, ``reason`` (for logs only) says what happened."""

    def __init__(self, reason: str) -> None:
        super().__init__(GENERIC_ERROR)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class OutboundResponse:
    """A complete response (the body within the size limit)."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


@dataclass(frozen=True, slots=True)
class AllowList:
    """What ``FHIR_SERVER_OUTBOUND_ALLOW`` names: host names (any address they resolve
    to is reachable) and networks (their addresses are reachable)."""

    names: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, text: str | Iterable[str]) -> AllowList:
        """From ``"keys.internal.example, 127.0.0.1, 10.1.0.0/16, ::1"``; raises
        ValueError naming an entry that is neither a host name nor an address/network."""
        entries = text.split(",") if isinstance(text, str) else list(text)
        names: set[str] = set()
        networks: list[IPNetwork] = []
        for raw in entries:
            entry = raw.strip().lower()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
                continue
            except ValueError:
                pass
            if not _is_host_name(entry):
                raise ValueError(f"outbound allow list: {raw.strip()!r} is not a host or network")
            names.add(entry.rstrip("."))
        return cls(frozenset(names), tuple(networks))

    def names_host(self, host: str) -> bool:
        return host.rstrip(".") in self.names

    def holds(self, address: IPAddress) -> bool:
        return any(address in network for network in self.networks)


class OutboundGuard:
    """Makes outbound HTTP requests under the rules of this module."""

    def __init__(
        self,
        allow: str | Iterable[str] | AllowList = "",
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_bytes: int = DEFAULT_MAX_BYTES,
        resolve: Resolver | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """``allow``: the allow list (see :class:`AllowList`). ``resolve`` and
        ``ssl_context`` (default: the system resolver and certifi's trust store) are for
        tests."""
        self.allow = allow if isinstance(allow, AllowList) else AllowList.parse(allow)
        self.timeout = timeout
        self.max_bytes = max_bytes
        self._resolve = resolve or _system_resolve
        self._ssl_context = ssl_context

    # -- checks --------------------------------------------------------------------------
    def refusal(self, url: str) -> str | None:
        """Why ``url`` is refused before any network activity (None: it may be tried;
        the addresses its host resolves to are checked when it is fetched). For early
        answers (a client registering a ``jwks_uri``): no DNS lookup, no connection."""
        try:
            target = _Target.of(url)
        except ValueError as error:
            return str(error)
        return self._static_refusal(target)

    def check_addresses(self, url: str) -> list[IPAddress]:
        """Resolve ``url``'s host and check its addresses as a request would, without
        connecting (a subscription endpoint before it is activated, or before a kept-alive
        connection is opened to it); the addresses one may connect to. Raises
        :class:`OutboundError` (its ``reason`` says why)."""
        try:
            target = _Target.of(url)
        except ValueError as error:
            raise OutboundError(str(error)) from None
        return self._addresses(target)

    def _static_refusal(self, target: _Target) -> str | None:
        named = self.allow.names_host(target.host)
        literal = target.literal
        listed = named or (literal is not None and self.allow.holds(literal))
        if target.scheme != "https" and not listed:
            return "only https (http only to a host on the allow list)"
        if listed:
            return None
        if literal is not None and not is_public(literal):
            return f"{literal} is not a public address"
        if target.host == "localhost" or target.host.endswith(".localhost"):
            return "localhost is not a public host"
        return None

    def _addresses(self, target: _Target) -> list[IPAddress]:
        """The checked addresses to connect to (raises OutboundError)."""
        problem = self._static_refusal(target)
        if problem:
            raise OutboundError(problem)
        if target.literal is not None:
            return [target.literal]
        try:
            found = [_address(text) for text in self._resolve(target.host, target.port)]
        except (OSError, ValueError, UnicodeError) as error:
            raise OutboundError(f"{target.host} does not resolve: {error}") from None
        addresses = list(dict.fromkeys(found))
        if not addresses:
            raise OutboundError(f"{target.host} resolves to no address")
        if self.allow.names_host(target.host):
            return addresses
        for address in addresses:
            if not (is_public(address) or self.allow.holds(address)):
                raise OutboundError(f"{target.host} resolves to {address}, not a public address")
        return addresses

    # -- requests ------------------------------------------------------------------------
    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Sequence[tuple[str, str]] = (),
        content: bytes = b"",
        max_bytes: int | None = None,
    ) -> OutboundResponse:
        """Send one request and read the whole response (any status; redirects are not
        followed). Raises :class:`OutboundError` for a refused URL, a connection, TLS or
        protocol failure, the time limit or a body over ``max_bytes``."""
        limit = self.max_bytes if max_bytes is None else max_bytes
        deadline = time.monotonic() + self.timeout
        try:
            target = _Target.of(url)
            addresses = self._addresses(target)
            return self._exchange(method, target, addresses, headers, content, limit, deadline)
        except OutboundError as error:
            _log_failure(method, url, error.reason)
            raise
        except Exception as error:  # every failure looks the same to the caller
            reason = f"{type(error).__name__}: {error}"
            _log_failure(method, url, reason)
            raise OutboundError(reason) from None

    def get_json(self, url: str, *, max_bytes: int | None = None) -> Any:
        """GET a JSON document: a ``200`` whose body parses as JSON, else
        :class:`OutboundError` (with the same text as any other failure)."""
        response = self.request(
            "GET", url, headers=[("Accept", "application/json")], max_bytes=max_bytes
        )
        if response.status != 200:
            _log_failure("GET", url, f"HTTP status {response.status}")
            raise OutboundError(f"HTTP status {response.status}")
        try:
            return json.loads(response.body)
        except (ValueError, UnicodeDecodeError) as error:
            _log_failure("GET", url, f"not JSON: {error}")
            raise OutboundError(f"not JSON: {error}") from None

    def _exchange(
        self,
        method: str,
        target: _Target,
        addresses: list[IPAddress],
        headers: Sequence[tuple[str, str]],
        content: bytes,
        limit: int,
        deadline: float,
    ) -> OutboundResponse:
        backend = _PinnedBackend(addresses, deadline)
        sent = [
            ("Host", target.host_header),
            ("User-Agent", USER_AGENT),
            ("Accept-Encoding", "identity"),
            ("Connection", "close"),
            *headers,
        ]
        if content or method in ("POST", "PUT", "PATCH"):
            sent.append(("Content-Length", str(len(content))))
        left = max(deadline - time.monotonic(), 0.001)
        timeouts = {"connect": left, "read": left, "write": left, "pool": left}
        with (
            httpcore.ConnectionPool(
                ssl_context=self._ssl_context,
                max_connections=1,
                retries=0,
                network_backend=backend,
            ) as pool,
            pool.stream(
                method, target.url, headers=sent, content=content, extensions={"timeout": timeouts}
            ) as response,
        ):
            pairs = tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in response.headers)
            _check_headers(pairs, limit)
            body = _read(response.iter_stream(), limit)
            return OutboundResponse(response.status, pairs, body)


def is_public(address: IPAddress) -> bool:
    """Whether ``address`` is a globally reachable unicast address (the IPv4 address an
    IPv6 address carries, for the IPv4-mapped, 6to4 and NAT64 forms)."""
    if isinstance(address, ipaddress.IPv6Address):
        if address in _NAT64_LOCAL:
            return False
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return is_public(embedded)
        if address.teredo is not None or address.is_site_local:
            return False
    elif address in _SHARED:
        return False
    return address.is_global and not (
        address.is_multicast
        or address.is_private
        or address.is_reserved
        or address.is_loopback
        or address.is_link_local
        or address.is_unspecified
    )


# -- internals -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Target:
    """A URL taken apart: scheme, host (lower case, no brackets), port, and the host as
    an address when it is one."""

    url: str
    scheme: str
    host: str
    port: int
    literal: IPAddress | None
    host_header: str

    @classmethod
    def of(cls, url: str) -> _Target:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("https", "http"):
            raise ValueError("only https URLs")
        if parts.username is not None or parts.password is not None:
            raise ValueError("no user information in the URL")
        host = (parts.hostname or "").rstrip(".")
        if not host:
            raise ValueError("no host in the URL")
        port = parts.port or (443 if scheme == "https" else 80)  # ValueError if bad
        try:
            literal: IPAddress | None = _address(host)
        except ValueError:
            literal = None
            if not _is_host_name(host):
                raise ValueError("not a host name") from None
        shown = f"[{host}]" if isinstance(literal, ipaddress.IPv6Address) else host
        default = 443 if scheme == "https" else 80
        host_header = shown if port == default else f"{shown}:{port}"
        return cls(url, scheme, host, port, literal, host_header)


def _is_host_name(text: str) -> bool:
    labels = text.rstrip(".").split(".")
    return 0 < len(text) <= 253 and all(
        0 < len(label) <= 63
        and label.isascii()
        and all(c.isalnum() or c in "-_" for c in label)
        and not label.startswith("-")
        for label in labels
    )


def _address(text: str) -> IPAddress:
    """An address from text (an IPv6 zone, ``%eth0``, is dropped)."""
    return ipaddress.ip_address(text.split("%", 1)[0])


def _system_resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def _check_headers(headers: tuple[tuple[str, str], ...], limit: int) -> None:
    for name, value in headers:
        lowered = name.lower()
        if lowered == "content-encoding" and value.strip().lower() not in ("", "identity"):
            raise OutboundError(f"compressed body ({value})")
        if lowered == "content-length" and value.strip().isdigit() and int(value) > limit:
            raise OutboundError(f"body of {value} bytes, over the limit of {limit}")


def _read(chunks: Iterator[bytes], limit: int) -> bytes:
    body = bytearray()
    for chunk in chunks:
        body += chunk
        if len(body) > limit:
            raise OutboundError(f"body over the limit of {limit} bytes")
    return bytes(body)


def _log_failure(method: str, url: str, reason: str) -> None:
    parts = urlsplit(url)
    where = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"
    log.warning("outbound %s %s refused or failed: %s", method, where[:300], reason[:300])


def _left(deadline: float, timeout: float | None, kind: type[Exception]) -> float:
    """The time an operation may take: its own timeout, cut to what is left overall."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise kind("the time limit of the outbound request ran out")
    return remaining if timeout is None else min(timeout, remaining)


class _PinnedBackend(httpcore.NetworkBackend):
    """Connects to the checked addresses (whatever host httpcore asks for: the pool
    serves one URL) and holds every read and write to the overall deadline."""

    def __init__(self, addresses: list[IPAddress], deadline: float) -> None:
        self._addresses = addresses
        self._deadline = deadline
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        failure: Exception = httpcore.ConnectError("no address")
        for address in self._addresses:
            wait = _left(self._deadline, timeout, httpcore.ConnectTimeout)
            try:
                stream = self._inner.connect_tcp(
                    str(address), port, timeout=wait, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                failure = error
                continue
            return _DeadlineStream(stream, self._deadline)
        raise failure

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("no unix sockets")

    def sleep(self, seconds: float) -> None:
        time.sleep(min(seconds, max(self._deadline - time.monotonic(), 0)))


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, stream: httpcore.NetworkStream, deadline: float) -> None:
        self._stream = stream
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _left(self._deadline, timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        wait = _left(self._deadline, timeout, httpcore.WriteTimeout)
        self._stream.write(buffer, wait)

    def close(self) -> None:
        with suppress(OSError):
            self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        wait = _left(self._deadline, timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(
            self._stream.start_tls(ssl_context, server_hostname, wait), self._deadline
        )

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)
