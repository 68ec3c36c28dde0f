"""Socket-level limits of the served HTTP protocol (fhir_server/http_limits.py) and of
request bodies, on a live ``fhir-server serve``: slow clients are dropped within a
bounded time (header fields trickled, a body trickled, a connection that sends nothing),
header fields and connections are capped, a huge auth body is not buffered, and a full
disk is a 507 that stores nothing (security review, issue 14)."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.live import ROOT, LiveServer, free_port

JSON = {"content-type": "application/fhir+json"}
LIMITS = {
    "FHIR_SERVER_HEADER_TIMEOUT": "1",
    "FHIR_SERVER_BODY_TIMEOUT": "1",
    "FHIR_SERVER_BODY_MIN_RATE": "1000",
    "FHIR_SERVER_MAX_HEADER_BYTES": "8192",
    "FHIR_SERVER_MAX_CONNECTIONS": "6",
    "FHIR_SERVER_KEEP_ALIVE_TIMEOUT": "1",
}
BOUND = 3.0
"""Seconds within which a 1-second limit must have acted (the sweep runs every 0.25 s)."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    folder = tmp_path_factory.mktemp("limits")
    live = LiveServer(f"sqlite:///{folder}/fhir.sqlite3", folder / "server.log", **LIMITS)
    try:
        yield live
    finally:
        live.stop()


def connect(server: LiveServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    return sock


def read_until_closed(sock: socket.socket, timeout: float = 10) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and when it closed."""
    sock.settimeout(timeout)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data, time.monotonic()


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def outcome_of(response: bytes) -> dict:
    head, _, body = response.partition(b"\r\n\r\n")
    assert b"content-type: application/fhir+json" in head.lower()
    assert b"connection: close" in head.lower()
    assert b"x-content-type-options: nosniff" in head.lower()
    return json.loads(body)["issue"][0]


def trickle(sock: socket.socket, pieces: Iterator[bytes], every: float, until: float) -> float:
    """Send a piece every ``every`` seconds until the server closes (or ``until`` s);
    the time the server stopped taking them."""
    started = time.monotonic()
    for piece in pieces:
        if time.monotonic() - started > until:
            break
        try:
            sock.sendall(piece)
        except OSError:
            break
        time.sleep(every)
    return time.monotonic()


def test_a_client_trickling_its_header_fields_is_dropped_with_408(server):
    sock = connect(server)
    started = time.monotonic()
    sock.sendall(b"GET /fhir/metadata HTTP/1.1\r\nHost: x\r\n")
    lines = (b"X-Slow-%d: y\r\n" % n for n in range(1000))
    trickle(sock, lines, every=0.2, until=BOUND + 2)
    response, closed = read_until_closed(sock)
    assert status_of(response) == 408
    assert outcome_of(response)["code"] == "timeout"
    assert closed - started < BOUND


def test_a_connection_that_sends_nothing_is_closed(server):
    sock = connect(server)
    started = time.monotonic()
    response, closed = read_until_closed(sock)
    assert response == b""
    assert closed - started < BOUND


def test_a_client_trickling_its_body_is_dropped_with_408_and_nothing_stored(server):
    before = httpx.get(f"{server.base}/Patient/_history").json()["total"]
    sock = connect(server)
    started = time.monotonic()
    sock.sendall(
        b"POST /fhir/Patient HTTP/1.1\r\nHost: x\r\nContent-Type: application/fhir+json\r\n"
        b"Content-Length: 5000\r\n\r\n"
    )
    trickle(sock, (b" " * 10 for _ in range(500)), every=0.2, until=BOUND + 2)
    response, closed = read_until_closed(sock)
    assert status_of(response) == 408
    assert "slower than 1000 bytes/s" in outcome_of(response)["diagnostics"]
    assert closed - started < BOUND
    assert httpx.get(f"{server.base}/Patient/_history").json()["total"] == before
    log = server.log()
    assert "Exception" not in log and " 500 " not in log


def test_a_body_sent_steadily_above_the_rate_may_take_longer_than_the_timeout(server):
    """A 20 kB body at 4 kB/s takes 5 s: past the 1 s timeout, within the rate."""
    resource_ = {"resourceType": "Patient", "name": [{"text": "x" * 20_000}]}
    body = json.dumps(resource_).encode()
    sock = connect(server)
    sock.sendall(
        b"POST /fhir/Patient HTTP/1.1\r\nHost: x\r\nContent-Type: application/fhir+json\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
    )
    started = time.monotonic()
    pieces = (body[i : i + 2000] for i in range(0, len(body), 2000))
    trickle(sock, pieces, every=0.5, until=30)
    response, _ = read_until_closed(sock)
    assert time.monotonic() - started > 4
    assert status_of(response) == 201, response[:300]


def test_header_fields_past_the_limit_are_431(server):
    sock = connect(server)
    sock.sendall(b"GET /fhir/metadata HTTP/1.1\r\nHost: x\r\n")
    try:
        for n in range(40):
            sock.sendall(b"X-Big-%d: %s\r\n" % (n, b"a" * 1000))
    except OSError:
        pass
    response, _ = read_until_closed(sock)
    assert status_of(response) == 431
    assert outcome_of(response)["code"] == "too-long"


def test_a_malformed_request_is_a_400_operation_outcome(server):
    sock = connect(server)
    sock.sendall(b"GET /fhir/metadata HTTP/1.1\r\nHost x\r\n\r\n")
    response, _ = read_until_closed(sock)
    assert status_of(response) == 400
    assert outcome_of(response)["code"] == "structure"


def test_connections_past_the_cap_get_503_and_the_server_recovers(server):
    held = [connect(server) for _ in range(6)]
    try:
        time.sleep(0.2)
        extra = connect(server)
        response, _ = read_until_closed(extra)
        assert status_of(response) == 503
        assert b"retry-after: 1" in response.lower()
        assert outcome_of(response)["code"] == "throttled"
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.5)
    assert httpx.get(f"{server.base}/metadata").status_code == 200


@pytest.fixture(scope="module")
def large_patient(server: LiveServer) -> str:
    """A 9 MB Patient: more than the socket buffers of both ends hold (a string may have
    1 MB at most)."""
    names = [{"text": "x" * 1_000_000} for _ in range(9)]
    created = httpx.post(
        f"{server.base}/Patient",
        content=json.dumps({"resourceType": "Patient", "name": names}),
        headers=JSON,
        timeout=60,
    )
    assert created.status_code == 201, created.text[:300]
    return str(created.json()["id"])


def get_slowly(server: LiveServer, id_: str) -> socket.socket:
    """A GET of the Patient from a socket with a small receive buffer."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    sock.sendall(b"GET /fhir/Patient/%s HTTP/1.1\r\nHost: x\r\n\r\n" % id_.encode())
    return sock


def test_a_client_that_reads_none_of_its_response_is_dropped(server, large_patient):
    sock = get_slowly(server, large_patient)
    time.sleep(BOUND + 1)  # reads nothing
    received, _ = read_until_closed(sock)
    assert status_of(received) == 200
    assert len(received) < 9_000_000
    assert "took its response slower than 1000 bytes/s" in server.log()
    assert httpx.get(f"{server.base}/metadata").status_code == 200


def test_a_client_reading_steadily_gets_all_of_a_long_response(server, large_patient):
    """~3 MB/s: the 9 MB take longer than the 1 s grace, at far more than the rate."""
    sock = get_slowly(server, large_patient)
    started = time.monotonic()
    received = b""
    sock.settimeout(10)
    while not received.endswith(b"}]}"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        received += chunk
        time.sleep(0.002)
    assert time.monotonic() - started > 1.5
    assert status_of(received) == 200
    assert len(received) > 9_000_000


def test_a_kept_alive_connection_is_closed_when_idle(server):
    sock = connect(server)
    sock.sendall(b"GET /fhir/metadata HTTP/1.1\r\nHost: x\r\n\r\n")
    started = time.monotonic()
    response, closed = read_until_closed(sock)
    assert status_of(response) == 200
    assert closed - started < BOUND


def _rss_mb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
    return 0


@pytest.mark.parametrize("path", ["/auth/token", "/auth/revoke", "/auth/register"])
def test_a_huge_chunked_auth_body_is_refused_without_being_buffered(tmp_path, path):
    server = LiveServer(f"sqlite:///{tmp_path}/fhir.sqlite3", tmp_path / "s.log", auth="smart")
    try:
        before = _rss_mb(server.process.pid)
        sock = connect(server)
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n\r\n".encode()
        )
        chunk = b"a" * (1 << 20)
        framed = b"%x\r\n%s\r\n" % (len(chunk), chunk)
        sent = 0
        try:
            for _ in range(100):  # 100 MB, if the server read them all
                sock.sendall(framed)
                sent += 1
        except OSError:
            pass
        response, _ = read_until_closed(sock)
        assert status_of(response) == 413
        assert json.loads(response.partition(b"\r\n\r\n")[2])["error"] == "invalid_request"
        assert sent < 100
        assert _rss_mb(server.process.pid) - before < 20
    finally:
        server.stop()


def _can_mount_tmpfs() -> bool:
    try:
        done = subprocess.run(
            ["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=1m probe /mnt"],
            capture_output=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


class SmallDiskServer(LiveServer):
    """``fhir-server serve`` whose data folder is a tmpfs of ``size`` in a mount namespace
    of its own (``unshare -m``): a real file system that runs out of space, seen from
    outside through ``/proc/<pid>/root``."""

    def __init__(self, folder: Path, size: str) -> None:
        self.port = free_port()
        self.origin = f"http://127.0.0.1:{self.port}"
        self.base = f"{self.origin}/fhir"
        self.log_path = folder / "server.log"
        self.data = folder / "data"
        self.data.mkdir()
        environment = {
            **os.environ,
            "FHIR_SERVER_STORAGE": f"sqlite:///{self.data}/fhir.sqlite3",
            "FHIR_SERVER_AUTH": "off",
            "FHIR_SERVER_WORKERS": "1",
        }
        serve = f"{sys.executable} -m fhir_server.cli serve --port {self.port}"
        script = f"mount -t tmpfs -o size={size} fhir-test {self.data} && exec {serve}"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            ["unshare", "-m", "sh", "-c", script],
            cwd=ROOT,
            env=environment,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._wait_ready()

    def inside(self, name: str) -> Path:
        """A path in the server's data folder, as the server sees it."""
        return Path(f"/proc/{self.process.pid}/root{self.data}/{name}")


def _fill(path: Path) -> None:
    """Write ``path`` until the file system is full."""
    block = b"\0" * 65536
    with open(path, "wb") as filler:
        try:
            while True:
                filler.write(block)
                filler.flush()
        except OSError as error:
            assert error.errno == errno.ENOSPC


@pytest.mark.skipif(not _can_mount_tmpfs(), reason="needs unshare -m and tmpfs mounts")
def test_a_full_disk_is_507_and_stores_nothing_until_space_is_freed(tmp_path):
    server = SmallDiskServer(tmp_path, "16m")
    big = {"resourceType": "Patient", "name": [{"text": "x" * 500_000}]}
    try:
        small = httpx.post(
            f"{server.base}/Patient", content=b'{"resourceType":"Patient"}', headers=JSON
        )
        assert small.status_code == 201
        _fill(server.inside("filler"))
        for _ in range(3):  # and the store keeps answering
            full = httpx.post(f"{server.base}/Patient", content=json.dumps(big), headers=JSON)
            assert full.status_code == 507, full.text
            assert full.json()["issue"][0]["code"] == "no-store"
        assert httpx.get(f"{server.base}/Patient/_history").json()["total"] == 1
        server.inside("filler").unlink()
        again = httpx.post(f"{server.base}/Patient", content=json.dumps(big), headers=JSON)
        assert again.status_code == 201, again.text
        assert httpx.get(f"{server.base}/Patient/_history").json()["total"] == 2
    finally:
        server.stop()
    assert "storage full" in server.log()
