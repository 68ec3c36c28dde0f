"""The served HTTP protocol: a response's header block and body leave in one write, and
nothing the client waits for is held back (fhir_server/http_protocol.py)."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import httpx

from fhir_server.http_protocol import CoalescingTransport
from tests.live import LiveServer

HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: application/fhir+json\r\n\r\n"


class RecordingTransport:
    """What reaches the socket: each ``write`` as one item, ``close`` as ``None``."""

    def __init__(self) -> None:
        self.sent: list[bytes | None] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.sent.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.sent.append(None)
        self.closing = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5000)}.get(name, default)


def _wrapped() -> tuple[CoalescingTransport, RecordingTransport]:
    inner = RecordingTransport()
    return CoalescingTransport(inner), inner  # type: ignore[arg-type]


def test_header_block_and_small_body_are_one_write() -> None:
    transport, inner = _wrapped()
    transport.write(HEAD)
    assert inner.sent == []
    transport.write(b"{}")
    assert inner.sent == [HEAD + b"{}"]
    transport.write(HEAD)
    transport.write(b"[]")
    assert inner.sent == [HEAD + b"{}", HEAD + b"[]"]


def test_large_body_follows_the_header_block_uncopied() -> None:
    transport, inner = _wrapped()
    body = b"x" * 200_000
    transport.write(HEAD)
    transport.write(body)
    assert inner.sent == [HEAD, body]


def test_interim_responses_and_body_chunks_are_not_held() -> None:
    transport, inner = _wrapped()
    transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    transport.write(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n")
    transport.write(b"5\r\nhello\r\n")
    transport.write(b"0\r\n\r\n")
    assert inner.sent == [
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n",
        b"5\r\nhello\r\n",
        b"0\r\n\r\n",
    ]


def test_a_held_header_block_is_sent_on_flush_and_before_close() -> None:
    transport, inner = _wrapped()
    transport.write(HEAD)
    transport.flush()
    assert inner.sent == [HEAD]
    transport.flush()
    assert inner.sent == [HEAD]
    transport.write(HEAD)
    transport.close()
    assert inner.sent == [HEAD, HEAD, None]
    assert transport.get_extra_info("peername") == ("127.0.0.1", 5000)


def _exchange(sock: socket.socket, request: bytes) -> bytes:
    """Send ``request`` and read one response with a Content-Length body."""
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk
        body += chunk
    assert len(body) == length
    return head + b"\r\n\r\n" + body


def test_live_server_responses_on_one_connection(tmp_path: Path) -> None:
    """Over a real ``fhir-server serve``: small and large bodies, a body-less HEAD answer
    and ``Expect: 100-continue`` (the interim answer must come before the body is sent),
    one after the other on a keep-alive connection."""
    server = LiveServer(f"sqlite:///{tmp_path / 'fhir.sqlite3'}", tmp_path / "server.log")
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            host = f"host: 127.0.0.1:{server.port}\r\n".encode()
            missing = _exchange(sock, b"GET /fhir/Patient/nobody HTTP/1.1\r\n" + host + b"\r\n")
            assert missing.startswith(b"HTTP/1.1 404 ")
            assert json.loads(missing.partition(b"\r\n\r\n")[2])["resourceType"] == (
                "OperationOutcome"
            )

            body = json.dumps({"resourceType": "Patient", "id": "p1", "active": True}).encode()
            sock.sendall(
                b"PUT /fhir/Patient/p1 HTTP/1.1\r\n"
                + host
                + b"content-type: application/fhir+json\r\nexpect: 100-continue\r\n"
                + f"content-length: {len(body)}\r\n\r\n".encode()
            )
            interim = sock.recv(65536)  # no body sent yet: only the 100 can come
            assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
            created = _exchange(sock, body)
            assert created.startswith(b"HTTP/1.1 201 ")

            read = _exchange(sock, b"GET /fhir/Patient/p1 HTTP/1.1\r\n" + host + b"\r\n")
            assert read.startswith(b"HTTP/1.1 200 ")
            assert json.loads(read.partition(b"\r\n\r\n")[2])["active"] is True

            sock.sendall(b"HEAD /fhir/Patient/p1 HTTP/1.1\r\n" + host + b"\r\n")
            head = b""
            while not head.endswith(b"\r\n\r\n"):
                chunk = sock.recv(65536)
                assert chunk
                head += chunk
            assert head.startswith(b"HTTP/1.1 ")

            metadata = _exchange(sock, b"GET /fhir/metadata HTTP/1.1\r\n" + host + b"\r\n")
            capability = json.loads(metadata.partition(b"\r\n\r\n")[2])
            assert capability["resourceType"] == "CapabilityStatement"
            assert len(metadata) > 65536  # written after its header block, not joined

        with httpx.Client(base_url=server.base) as client:
            for _ in range(20):
                assert client.get("/Patient/p1").json()["id"] == "p1"
    finally:
        server.stop()
    log = server.log()
    assert "Application shutdown complete" in log
    assert "Traceback" not in log
