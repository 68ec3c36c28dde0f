"""Notification latency of topic-based Subscriptions (Subscriptions R5 Backport IG;
numbers, not pass/fail; issue 17's "Performance").

The app runs in this process on a new SQLite file (authorization off, the outbound allow
list naming 127.0.0.1) with ``--subscriptions`` active topic-based Subscriptions, each
on ``--topic`` filtered on a patient of its own (``patient=Patient/<id>``), payload
content ``--content``, sending their notification Bundles (``POST``) to a local
``http.server`` receiver in a process of its own (arrival times by the wall clock, by
the focus of each notification). An open loop offers ``--rate`` single writes a second
(a final laboratory Observation of a random one of those patients) for ``--seconds``
seconds; each write is one notification. Prints the writes a second achieved, their
response times, and the latency from each write's response to the arrival of its
notification (p50, p99, max).

Usage: ``python bench/backport_bench.py --subscriptions 100 --rate 200 --seconds 10``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import random
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from fhir_server.app import create_app
from fhir_server.config import Settings
from fhir_server.events.topics import CANONICAL_BASE

JSON = {"Content-Type": "application/fhir+json"}
IG = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
LAB = "http://terminology.hl7.org/CodeSystem/observation-category"


def _serve_receiver(port_out: Any) -> None:
    """Records the arrival time of each event notification by the id of its focus;
    ``GET /dump`` answers them (JSON)."""
    arrivals: dict[str, float] = {}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            now = time.time()
            for parameter in body["entry"][0]["resource"]["parameter"]:
                if parameter["name"] == "notification-event":
                    for part in parameter["part"]:
                        if part["name"] == "focus":
                            focus = part["valueReference"]["reference"].split("/_history")[0]
                            with lock:
                                arrivals.setdefault(focus.rsplit("/", 1)[1], now)
            self._answer(b"")

        def do_GET(self) -> None:  # noqa: N802
            with lock:
                self._answer(json.dumps(arrivals).encode())

        def _answer(self, body: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        request_queue_size = 1024

    server = Server(("127.0.0.1", 0), Handler)
    port_out.send(server.server_address[1])
    server.serve_forever()


def _subscription(endpoint: str, topic: str, patient: str, content: str) -> dict[str, Any]:
    return {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "bench",
        "criteria": CANONICAL_BASE + topic,
        "_criteria": {
            "extension": [
                {
                    "url": IG + "backport-filter-criteria",
                    "valueString": f"patient=Patient/{patient}",
                }
            ]
        },
        "channel": {
            "type": "rest-hook",
            "endpoint": endpoint,
            "payload": "application/fhir+json",
            "_payload": {
                "extension": [{"url": IG + "backport-payload-content", "valueCode": content}]
            },
        },
    }


def _observation(patient: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": LAB, "code": "laboratory"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "1234-5"}]},
        "subject": {"reference": f"Patient/{patient}"},
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    spawn = multiprocessing.get_context("spawn")
    ours, theirs = spawn.Pipe()
    receiver = spawn.Process(target=_serve_receiver, args=(theirs,), daemon=True)
    receiver.start()
    base = f"http://127.0.0.1:{ours.recv()}"
    rng = random.Random(1)
    written: dict[str, float] = {}
    took: list[float] = []
    with tempfile.TemporaryDirectory(prefix="backport-bench-") as tmp:
        settings = Settings(
            storage=f"sqlite:///{Path(tmp) / 'bench.sqlite3'}",
            auth="off",
            outbound_allow="127.0.0.1",
        )
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
                patients, ids = [], []
                for n in range(args.subscriptions):
                    body = {"resourceType": "Patient", "name": [{"family": f"Bench{n}"}]}
                    patients.append(
                        (await http.post("/fhir/Patient", json=body, headers=JSON)).json()["id"]
                    )
                    sub = _subscription(f"{base}/hook", args.topic, patients[-1], args.content)
                    ids.append(
                        (await http.post("/fhir/Subscription", json=sub, headers=JSON)).json()["id"]
                    )
                for sid in ids:
                    while (await http.get(f"/fhir/Subscription/{sid}")).json()[
                        "status"
                    ] != "active":
                        await asyncio.sleep(0.05)

                async def one() -> None:
                    started = time.perf_counter()
                    answer = await http.post(
                        "/fhir/Observation", json=_observation(rng.choice(patients)), headers=JSON
                    )
                    took.append(time.perf_counter() - started)
                    written[answer.json()["id"]] = time.time()

                began = time.perf_counter()
                tasks = []
                for n in range(int(args.rate * args.seconds)):
                    delay = began + n / args.rate - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    tasks.append(asyncio.create_task(one()))
                await asyncio.gather(*tasks)
                elapsed = time.perf_counter() - began
                deadline = time.monotonic() + 120
                while True:
                    arrivals = httpx.get(f"{base}/dump").json()
                    if len(arrivals) >= len(written) or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.2)
    receiver.terminate()
    latencies = sorted(arrivals[i] - t for i, t in written.items() if i in arrivals)
    took.sort()

    def pct(values: list[float], p: float) -> float | None:
        return (
            round(values[min(len(values) - 1, int(p * len(values)))] * 1000, 1) if values else None
        )

    return {
        "subscriptions": args.subscriptions,
        "topic": args.topic,
        "content": args.content,
        "writes_per_s": round(len(written) / elapsed, 1),
        "write_ms_p50": pct(took, 0.5),
        "write_ms_p99": pct(took, 0.99),
        "notified": f"{len(latencies)}/{len(written)}",
        "latency_ms_p50": pct(latencies, 0.5),
        "latency_ms_p99": pct(latencies, 0.99),
        "latency_ms_max": pct(latencies, 1.0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subscriptions", type=int, default=100)
    parser.add_argument("--topic", default="new-lab-result")
    parser.add_argument(
        "--content", default="id-only", choices=["empty", "id-only", "full-resource"]
    )
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=10)
    print(json.dumps(asyncio.run(run(parser.parse_args()))))


if __name__ == "__main__":
    main()
