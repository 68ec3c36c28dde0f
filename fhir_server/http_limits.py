"""Limits on what one HTTP connection may take from the server: time to send a request's
headers and body, size of the headers, and how many connections one process keeps open.

uvicorn's httptools protocol times out only idle kept-alive connections: a client that
sends its request line and header fields a byte at a time, or a body that never ends,
holds its connection (a file descriptor, a parser's buffers) for as long as it likes,
and the header fields it sends are buffered without bound. Enough such clients exhaust
the process's file descriptors and nothing is served any more. :class:`LimitedHttpToolsProtocol`
adds, per connection (the rules of Apache's ``mod_reqtimeout``,
https://httpd.apache.org/docs/2.4/mod/mod_reqtimeout.html):

- **header timeout** (``FHIR_SERVER_HEADER_TIMEOUT``): the request line and header fields
  must be complete within this many seconds of the connection opening (or of the first
  byte of a later request on it); else ``408 Request Timeout``
  (https://www.rfc-editor.org/rfc/rfc9110#section-15.5.9) and the connection closes
  (a connection that sent nothing is closed without an answer);
- **body timeout and rate** (``FHIR_SERVER_BODY_TIMEOUT``, ``FHIR_SERVER_BODY_MIN_RATE``):
  the body's first bytes must come within the timeout, and every ``min_rate`` bytes
  received allow one second more: a client sending at least that fast is never cut off,
  one that trickles is (``408``; the application sees the client leave). Time while the
  server itself has stopped reading (the application has not taken what came) does not
  count against the client;
- **header size** (``FHIR_SERVER_MAX_HEADER_BYTES``): ``431 Request Header Fields Too
  Large`` (https://www.rfc-editor.org/rfc/rfc6585#section-5) once the request line and
  header fields pass it (counted per read from the socket, so up to one read more);
- **connections** (``FHIR_SERVER_MAX_CONNECTIONS``): past this many open connections in
  the process, a new one is answered ``503`` with ``Retry-After`` and closed at once, so
  the process keeps file descriptors for its store and its clients; the process's soft
  limit of open files is raised (to its hard limit at most) to make room for them;
- **a client that does not read**: once the response fills the socket's buffers (the
  transport pauses writing), the client must take it at ``FHIR_SERVER_BODY_MIN_RATE``
  after a grace of ``FHIR_SERVER_BODY_TIMEOUT`` seconds, as for bodies; else the
  connection is dropped, the data not yet handed to the kernel with it;
- after a response, an idle connection closes after ``FHIR_SERVER_KEEP_ALIVE_TIMEOUT``
  seconds (uvicorn's ``timeout_keep_alive``; also when the rest of a body the
  application did not read arrives after its response).

Answers are OperationOutcomes (https://hl7.org/fhir/R4/operationoutcome.html) with
``Connection: close``. Deadlines are checked by one sweep per process every second or
less (the time limits are exact to within that): a request costs a few attribute writes,
no timer of its own. Selected by ``fhir-server serve``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import resource
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson

from fhir_server.config import Settings
from fhir_server.http_protocol import CoalescingHttpToolsProtocol

log = logging.getLogger("fhir_server.http")

_RESERVED_FILES = 128
"""Open files kept for the store (SQLite's files per connection), logs and the listener."""

_HEADERS, _BODY, _IDLE = "headers", "body", "idle"


@dataclass(frozen=True)
class ConnectionLimits:
    """The limits of :class:`LimitedHttpToolsProtocol` (see the module docstring)."""

    header_timeout: float = 10.0
    body_timeout: float = 20.0
    body_min_rate: int = 500
    max_header_bytes: int = 65536
    max_connections: int = 1000
    keep_alive_timeout: float = 5.0

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectionLimits:
        return cls(
            header_timeout=settings.header_timeout,
            body_timeout=settings.body_timeout,
            body_min_rate=settings.body_min_rate,
            max_header_bytes=settings.max_header_bytes,
            max_connections=settings.max_connections,
            keep_alive_timeout=settings.keep_alive_timeout,
        )

    @property
    def sweep_interval(self) -> float:
        shortest = min(self.header_timeout, self.body_timeout, self.keep_alive_timeout)
        return max(0.05, min(1.0, shortest / 4))


_process_limits: ConnectionLimits | None = None


def process_limits() -> ConnectionLimits:
    """This process's limits, from the ``FHIR_SERVER_*`` settings (read once; each
    worker process reads them from its environment, as it builds its app), with the
    connection cap fitted to the open-file limit."""
    global _process_limits
    if _process_limits is None:
        limits = ConnectionLimits.from_settings(Settings())
        fitted = fit_open_files(limits.max_connections)
        if fitted < limits.max_connections:
            log.warning(
                "the open-file limit allows %d connections, not FHIR_SERVER_MAX_CONNECTIONS=%d",
                fitted,
                limits.max_connections,
            )
            limits = ConnectionLimits(**{**limits.__dict__, "max_connections": fitted})
        _process_limits = limits
    return _process_limits


def fit_open_files(connections: int) -> int:
    """Raise the soft limit of open files so that ``connections`` fit beside the
    store's files (up to the hard limit); the number of connections that fit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + _RESERVED_FILES
    if soft != resource.RLIM_INFINITY and soft < wanted:
        raised = wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        return connections
    return max(1, min(connections, soft - _RESERVED_FILES))


def refusal(status: int, reason: bytes, code: str, text: str, **headers: str) -> bytes:
    """A complete ``Connection: close`` response with an OperationOutcome."""
    body = orjson.dumps(
        {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": code, "diagnostics": text}],
        }
    )
    fields = {
        "content-type": "application/fhir+json; charset=utf-8",
        "content-length": str(len(body)),
        "connection": "close",
        "cache-control": "no-store",
        "x-content-type-options": "nosniff",
        **headers,
    }
    head = b"HTTP/1.1 %d %s\r\n" % (status, reason)
    head += b"".join(f"{name}: {value}\r\n".encode("latin-1") for name, value in fields.items())
    return head + b"\r\n" + body


class LimitedHttpToolsProtocol(CoalescingHttpToolsProtocol):
    """The server's HTTP/1.1 protocol: uvicorn's httptools protocol writing each response
    in one send (:mod:`fhir_server.http_protocol`), within :class:`ConnectionLimits`."""

    limits: ClassVar[ConnectionLimits | None] = None
    """Set on a subclass to override :func:`process_limits` (tests)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = type(self).limits or process_limits()
        self._phase: str | None = _HEADERS
        self._deadline = math.inf
        self._messages = 0
        self._header_bytes = 0
        self._stalled_since = math.inf
        """When the response filled the socket's buffers (the transport paused writing)."""
        self._stalled_size = 0
        """How much of the response was waiting then."""

    # -- connection ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._deadline = self.loop.time() + self._limits.header_timeout
        if len(self.connections) > self._limits.max_connections:
            _warn_full(self._limits.max_connections)
            self._refuse(
                503,
                b"Service Unavailable",
                "throttled",
                "The server has too many open connections; try again shortly",
                **{"retry-after": "1"},
            )
            return
        _Sweeper.ensure(self)

    def data_received(self, data: bytes) -> None:
        messages = self._messages
        awaiting = self._phase == _HEADERS
        super().data_received(data)
        # still within the header fields of the request it began in (or of the first
        # request): all of it was header bytes
        same = self._messages == messages or messages == 0
        if awaiting and self._phase == _HEADERS and same:
            self._header_bytes += len(data)
            if self._header_bytes > self._limits.max_header_bytes and not self._closing():
                self._refuse(
                    431,
                    b"Request Header Fields Too Large",
                    "too-long",
                    f"The request line and header fields are larger than"
                    f" {self._limits.max_header_bytes} bytes",
                )

    def pause_writing(self) -> None:
        super().pause_writing()
        self._stalled_since = self.loop.time()
        self._stalled_size = self.transport.get_write_buffer_size()

    def resume_writing(self) -> None:
        super().resume_writing()
        self._stalled_since = math.inf

    def send_400_response(self, msg: str) -> None:
        self._refuse(400, b"Bad Request", "structure", msg)

    # -- parser callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._messages:  # a later request on the connection: its own header time
            self._deadline = self.loop.time() + self._limits.header_timeout
        self._messages += 1
        self._phase = _HEADERS
        self._header_bytes = 0

    def on_headers_complete(self) -> None:
        self._phase = _BODY
        self._deadline = self.loop.time() + self._limits.body_timeout
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        self._deadline += len(body) / self._limits.body_min_rate

    def on_message_complete(self) -> None:
        super().on_message_complete()
        cycle = self.cycle
        if cycle is not None and cycle.response_complete:  # answered before its body came
            self._phase = _IDLE
            self._deadline = self.loop.time() + self._limits.keep_alive_timeout
        else:
            self._phase = None
            self._deadline = math.inf

    # -- deadlines ------------------------------------------------------------------------

    def check_deadline(self, now: float) -> None:
        """Called by the sweep: act on a passed deadline."""
        if now - self._stalled_since > self._limits.body_timeout and self._not_reading(now):
            # also when closing: a graceful close (keep-alive timeout, Connection: close)
            # waits for the client to take the whole buffer first
            self._stalled_since = math.inf
            log.info(
                "%s: dropped, it took its response slower than %d bytes/s",
                self._peer(),
                self._limits.body_min_rate,
            )
            self.transport.abort()
            return
        if now <= self._deadline or self._closing():
            return
        phase = self._phase
        if phase == _BODY and self.flow is not None and self.flow.read_paused:
            # the server is not reading (the application has not taken what came)
            self._deadline = now + self._limits.body_timeout
        elif phase == _HEADERS:
            if self._messages == 0:
                log.info("%s: closed, no request within %ss", self._peer(), self._seconds())
                self.transport.close()
            else:
                self._refuse(
                    408,
                    b"Request Timeout",
                    "timeout",
                    f"The request's header fields did not arrive within {self._seconds()} s",
                )
        elif phase == _BODY:
            self._refuse(
                408,
                b"Request Timeout",
                "timeout",
                f"The request body came slower than {self._limits.body_min_rate} bytes/s"
                f" (after {self._limits.body_timeout:g} s)",
            )
        elif phase == _IDLE:
            self.transport.close()

    def _not_reading(self, now: float) -> bool:
        """Whether the client took less of the waiting response than the minimum rate
        allows since the grace time (:data:`body_timeout`) after writing paused."""
        taken = self._stalled_size - self.transport.get_write_buffer_size()
        allowed = self._stalled_since + self._limits.body_timeout
        return now > allowed + taken / self._limits.body_min_rate

    def _refuse(self, status: int, reason: bytes, code: str, text: str, **headers: str) -> None:
        """Answer ``status`` (unless a response is under way) and close the connection;
        a request the application is reading sees the client leave."""
        cycle = self.cycle
        if cycle is None or not cycle.response_started:
            self.transport.write(refusal(status, reason, code, text, **headers))
            if status != 503:
                log.info("%s: %d %s", self._peer(), status, text)
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True
            cycle.message_event.set()
        self._phase = None
        self._deadline = math.inf
        self.transport.close()

    def _closing(self) -> bool:
        return self.transport is None or self.transport.is_closing()

    def _seconds(self) -> str:
        return f"{self._limits.header_timeout:g}"

    def _peer(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else "client"


_last_full_warning = 0.0


def _warn_full(limit: int) -> None:
    """A warning when the connection cap refuses connections, at most every 10 s."""
    global _last_full_warning
    now = time.monotonic()
    if now - _last_full_warning > 10:
        _last_full_warning = now
        log.warning("%d connections open: new connections get 503", limit)


class _Sweeper:
    """The process's one periodic check of every connection's deadline; runs while
    there are connections."""

    def __init__(self, protocol: LimitedHttpToolsProtocol) -> None:
        self.loop = protocol.loop
        self.connections = protocol.connections
        self.interval = protocol._limits.sweep_interval

    @staticmethod
    def ensure(protocol: LimitedHttpToolsProtocol) -> None:
        state = protocol.server_state
        if getattr(state, "fhir_sweeper", None) is None:
            sweeper = _Sweeper(protocol)
            state.fhir_sweeper = sweeper  # type: ignore[attr-defined]
            sweeper.loop.call_later(sweeper.interval, sweeper.sweep, state)

    def sweep(self, state: Any) -> None:
        if not self.connections:
            state.fhir_sweeper = None
            return
        now = self.loop.time()
        for connection in list(self.connections):
            if isinstance(connection, LimitedHttpToolsProtocol):
                connection.check_deadline(now)
        self.loop.call_later(self.interval, self.sweep, state)
