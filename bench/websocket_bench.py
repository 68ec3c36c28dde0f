"""Ping latency of the websocket channel of Subscriptions (numbers, not pass/fail;
issue 17).

Starts ``fhir-server serve`` (authorization off, a new SQLite file, ``--workers``
processes), creates ``--sockets`` websocket Subscriptions, each watching its own patient's
Observations (``Observation?subject=Patient/p<i>``), opens one websocket per Subscription
(with two workers the sockets spread over both processes) and binds it. Then it offers
``--rate`` Observation writes a second for ``--seconds`` seconds, an open loop, each for
a random one of the patients (new connections: the writes spread over the workers too).
Prints the writes a second achieved, their response times, and the ping latency: from
sending each write to the arrival of its ping on its patient's socket (p50, p99, max),
once every ping arrived, and from the write's response.

Usage: ``python bench/websocket_bench.py --sockets 100 --rate 200 --seconds 10 --workers 2``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import websockets

JSON = {"content-type": "application/fhir+json"}
ROOT = Path(__file__).resolve().parent.parent


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000


async def _run(args: argparse.Namespace, base: str) -> None:
    ws_url = base.replace("http://", "ws://") + "/websocket"
    async with httpx.AsyncClient(base_url=base + "/", timeout=30) as http:
        sids = []
        for i in range(args.sockets):
            body = {
                "resourceType": "Subscription",
                "status": "requested",
                "reason": "bench",
                "criteria": f"Observation?subject=Patient/p{i}",
                "channel": {"type": "websocket"},
            }
            sids.append((await http.post("Subscription", json=body, headers=JSON)).json()["id"])
        arrivals: dict[str, list[float]] = {sid: [] for sid in sids}
        sockets = []
        for sid in sids:
            ws = await websockets.connect(ws_url)
            await ws.send(f"bind {sid}")
            assert await ws.recv() == f"bound {sid}"
            sockets.append(ws)

        async def listen(ws: websockets.ClientConnection, sid: str) -> None:
            async for message in ws:
                assert message == f"ping {sid}", message
                arrivals[sid].append(time.perf_counter())

        listeners = [
            asyncio.create_task(listen(ws, sid)) for ws, sid in zip(sockets, sids, strict=True)
        ]
        sent: dict[str, list[float]] = {sid: [] for sid in sids}
        done: dict[str, list[float]] = {sid: [] for sid in sids}
        responses: list[float] = []
        limits = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=base + "/", limits=limits, timeout=30) as writer:

            async def write(i: int) -> None:
                body = {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": "bench"},
                    "subject": {"reference": f"Patient/p{i}"},
                }
                started = time.perf_counter()
                sent[sids[i]].append(started)
                answer = await writer.post("Observation", json=body, headers=JSON)
                assert answer.status_code == 201, answer.text
                responses.append(time.perf_counter() - started)
                done[sids[i]].append(time.perf_counter())

            total = args.rate * args.seconds
            began = time.perf_counter()
            tasks = []
            for n in range(total):
                await asyncio.sleep(max(0.0, began + n / args.rate - time.perf_counter()))
                tasks.append(asyncio.create_task(write(random.randrange(args.sockets))))
            await asyncio.gather(*tasks)
            elapsed = time.perf_counter() - began
        deadline = time.perf_counter() + 60
        while sum(map(len, arrivals.values())) < total and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)
        for task in listeners:
            task.cancel()
        for ws in sockets:
            await ws.close()
    got = sum(map(len, arrivals.values()))
    # writes of one patient may commit out of the order they were sent in: pair the
    # k-th ping with the k-th write sent (a slight over- or under-estimate each)
    latencies = [
        arrived - started
        for sid in sids
        for started, arrived in zip(sorted(sent[sid]), arrivals[sid], strict=False)
    ]
    after = [
        max(0.0, arrived - answered)
        for sid in sids
        for answered, arrived in zip(sorted(done[sid]), arrivals[sid], strict=False)
    ]
    print(
        f"writes: {total / elapsed:.0f}/s offered {args.rate}/s; response p50"
        f" {_pct(responses, 50):.1f} ms p99 {_pct(responses, 99):.1f} ms"
    )
    print(
        f"pings: {got}/{total} arrived; latency from the write sent p50"
        f" {_pct(latencies, 50):.1f} ms p99 {_pct(latencies, 99):.1f} ms"
        f" max {max(latencies) * 1000:.1f} ms; after the write's response (0 when the ping"
        f" came first) p50 {_pct(after, 50):.1f} ms p99 {_pct(after, 99):.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=100)
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="ws-bench-"))
    port = _port()
    env = {
        **os.environ,
        "FHIR_SERVER_STORAGE": f"sqlite:///{folder / 'fhir.sqlite3'}",
        "FHIR_SERVER_AUTH": "off",
        "FHIR_SERVER_WORKERS": str(args.workers),
    }
    with open(folder / "server.log", "ab") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "fhir_server.cli", "serve", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}/fhir"
        try:
            for _ in range(600):
                try:
                    if httpx.get(f"{base}/metadata", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            time.sleep(3)  # the second worker
            asyncio.run(_run(args, base))
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
