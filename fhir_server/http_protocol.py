"""uvicorn's httptools protocol, writing a response's header block and body in one send.

An HTTP/1.1 response is a status line and header fields, an empty line, then the body
(https://www.rfc-editor.org/rfc/rfc9112#section-2.1). uvicorn writes the header block
when the application starts the response and the body when it sends it: two ``send``
calls on the socket, each a trip through the kernel's TCP stack (on loopback, the
receiver's wake-up too). :class:`CoalescingHttpToolsProtocol` holds a final response's
header block until the first write after it (the body, or the chunked body's first
chunk) and sends both at once; the held block is also sent when the response completes
without a body (``HEAD``) and before the connection closes. Interim ``1xx`` responses
(``100 Continue``, ``101 Switching Protocols``) are sent at once: the client waits for
them. ``bench/profile.py --mode read`` showed the header write at 12% of a read's samples.

Selected by ``fhir-server serve`` (uvicorn's ``http`` option); the bytes on the wire are
the same as uvicorn's own protocol writes.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_JOIN_LIMIT = 65536
"""A body at least this large is written after the header block, not copied into one
buffer with it (the saved ``send`` is small against the copy)."""


class CoalescingTransport:
    """A transport that holds a final response's header block until the next write."""

    __slots__ = ("_transport", "_held")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._held: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if len(data) < _JOIN_LIMIT:
                self._transport.write(held + bytes(data))
                return
            self._transport.write(held)
        elif _is_final_head(data):
            self._held = bytes(data)
            return
        self._transport.write(data)

    def flush(self) -> None:
        """Send the held header block, if any."""
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held)

    def writelines(self, lines: Any) -> None:
        self.flush()
        self._transport.writelines(lines)

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        if not self._transport.is_closing():
            self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def _is_final_head(data: bytes | bytearray | memoryview) -> bool:
    """A status line of a non-1xx response through the empty line ending its fields."""
    return (
        bytes(data[:9]) == b"HTTP/1.1 " and data[9:10] != b"1" and bytes(data[-4:]) == b"\r\n\r\n"
    )


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol on a :class:`CoalescingTransport`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport))  # type: ignore[arg-type]

    def on_response_complete(self) -> None:
        transport = self.transport
        if isinstance(transport, CoalescingTransport):
            transport.flush()
        super().on_response_complete()
