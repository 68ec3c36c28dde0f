"""The websocket channel on a live ``fhir-server serve --workers 2`` over one SQLite file
(issue 17): sockets connected to either worker process, whichever holds the outbox's
leases and whichever took the writes, each get every matching event's ping once and in
commit order. Which process serves a socket is read from ``/proc`` (the server side of
its TCP connection), and sockets are opened until both workers serve some.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from tests.live import LiveServer

JSON = {"content-type": "application/fhir+json"}
pytestmark = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
    return found


def _inode(server_port: int, client_port: int) -> str | None:
    """The inode of the server side of the TCP connection from ``client_port``."""
    local, remote = f"0100007F:{server_port:04X}", f"0100007F:{client_port:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == local and fields[2] == remote:
            return fields[9]
    return None


def _serving(workers: list[int], server_port: int, client_port: int) -> int | None:
    """Which worker process holds the server side of the connection."""
    inode = _inode(server_port, client_port)
    for pid in workers:
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                if os.readlink(fd) == f"socket:[{inode}]":
                    return pid
    return None


def _subscription(code: str) -> dict[str, Any]:
    return {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "live",
        "criteria": f"Observation?code={code}",
        "channel": {"type": "websocket"},
    }


def _observation(code: str) -> dict[str, Any]:
    coding = {"system": "urn:test", "code": code}
    return {"resourceType": "Observation", "status": "final", "code": {"coding": [coding]}}


async def _recv(socket: ClientConnection, timeout: float = 20) -> str:
    async with asyncio.timeout(timeout):
        return str(await socket.recv())


async def test_sockets_on_both_workers_get_every_ping_once_in_order(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'fhir.sqlite3'}"
    server = LiveServer(storage, tmp_path / "server.log", FHIR_SERVER_WORKERS="2")
    try:
        await _exercise(server)
    finally:
        server.stop()
    assert "Traceback" not in server.log()


async def _exercise(server: LiveServer) -> None:
    ws_url = server.base.replace("http://", "ws://") + "/websocket"
    workers: list[int] = []
    for _ in range(100):  # uvicorn starts its worker processes after the first answers
        workers = _children(server.process.pid)
        if len(workers) >= 2:
            break
        await asyncio.sleep(0.1)
    limits = httpx.Limits(max_keepalive_connections=0)  # each write on a new connection
    async with httpx.AsyncClient(base_url=server.base + "/", limits=limits) as http:
        sids = {}
        for code in ("a", "b"):
            created = await http.post("Subscription", json=_subscription(code), headers=JSON)
            assert created.status_code == 201, created.text
            assert created.json()["status"] == "active"
            sids[code] = created.json()["id"]
        async with contextlib.AsyncExitStack() as stack:
            sockets: list[ClientConnection] = []
            served_by: dict[int | None, int] = {}
            deadline = asyncio.get_running_loop().time() + 90
            while len(served_by.keys() - {None}) < 2 or len(sockets) < 4:
                # a worker that is still starting accepts nothing: try again after a while
                assert asyncio.get_running_loop().time() < deadline, f"one worker: {served_by}"
                socket = await websockets.connect(ws_url)
                client_port = socket.transport.get_extra_info("sockname")[1]
                pid = _serving(workers, server.port, client_port)
                if served_by.get(pid, 0) >= 3:
                    await socket.close()
                    await asyncio.sleep(0.2)
                    continue
                served_by[pid] = served_by.get(pid, 0) + 1
                stack.push_async_callback(socket.close)
                for sid in sids.values():
                    await socket.send(f"bind {sid}")
                    assert await _recv(socket) == f"bound {sid}"
                sockets.append(socket)
            codes = ["a", "b", "b", "a", "c", "a", "b", "a", "a", "c", "b", "b"] * 2
            for code in codes:
                written = await http.post("Observation", json=_observation(code), headers=JSON)
                assert written.status_code == 201, written.text
            expected = [f"ping {sids[c]}" for c in codes if c != "c"]
            for socket in sockets:
                assert [await _recv(socket) for _ in expected] == expected
            for socket in sockets:  # and nothing twice
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.3):
                        extra = await socket.recv()
                        raise AssertionError(f"a second ping: {extra!r}")
