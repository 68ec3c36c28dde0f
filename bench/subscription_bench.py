"""Write throughput and notification latency with active rest-hook Subscriptions
(numbers, not pass/fail; issue 17's "Performance").

The app runs in this process on a new SQLite file (authorization off, the outbound allow
list naming 127.0.0.1) with ``--subscriptions`` active Subscriptions whose criteria is
``--criteria`` (default ``Patient?``: one notification per Bundle per subscription),
each a ``PUT`` with the resource to a local ``http.server`` receiver in a process of its
own (arrival times by the wall clock). ``--clients`` concurrent clients post the
transaction Bundles of ``bench/transaction_bench.py`` (1 Patient + 20 Observations) through
``httpx.ASGITransport``. Prints resources/s of the writes, and the latency from each
Bundle's response to the arrival of each of its notifications (p50, p99, max) once all
arrived, and the CPU time this process (the server: the receiver has its own) spent per
resource written, its notifications included, which a loaded machine changes less than
the times. Run it with ``--subscriptions 0`` for the figures without subscriptions.

With ``--rate W`` it offers instead W single-resource writes a second (``POST Patient``,
each one notified to every subscription) for ``--seconds`` seconds, an open loop (a write
starts on time whether or not the earlier ones have finished): it prints the writes a
second achieved, their response times, and the notification latency (the issue's
figure: 100 subscriptions at 200 writes/s).

With ``--per-patient`` each subscription watches its own patient's Observations
(``Observation?subject=Patient/<id>``) and the writes are Observations of random ones of
those patients: each write is one notification (a portal whose patients' apps subscribe);
without it every write is sent to every subscription (100 subscriptions at 200 writes/s:
20,000 notifications a second).

Usage: ``python bench/subscription_bench.py [--subscriptions 10] [--bundles 200]``,
``python bench/subscription_bench.py --subscriptions 100 --rate 200 --per-patient``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import random
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from transaction_bench import bundle  # noqa: E402

from fhir_server.app import create_app  # noqa: E402
from fhir_server.config import Settings  # noqa: E402

JSON = {"Content-Type": "application/fhir+json"}


def _serve_receiver(port_out: Any) -> None:
    """The receiver process: records the arrival time of each PUT by resource id;
    ``GET /count``, ``GET /dump`` (JSON) and ``DELETE /`` (forget) for the bench."""
    arrivals: dict[str, list[float]] = {}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # kept-alive connections

        def do_PUT(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with lock:
                arrivals.setdefault(self.path.rsplit("/", 1)[-1], []).append(time.time())
            self._answer(b"")

        def do_GET(self) -> None:  # noqa: N802
            with lock:
                if self.path == "/count":
                    body = str(sum(map(len, arrivals.values()))).encode()
                else:
                    body = json.dumps(arrivals).encode()
            self._answer(body)

        def do_DELETE(self) -> None:  # noqa: N802
            with lock:
                arrivals.clear()
            self._answer(b"")

        def _answer(self, body: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        request_queue_size = 1024  # every subscription opens its connection at once

    server = Server(("127.0.0.1", 0), Handler)
    port_out.send(server.server_address[1])
    server.serve_forever()


def start_receiver() -> tuple[multiprocessing.Process, str]:
    """The receiver in a process of its own (not contending with the server for this
    process's interpreter); its base URL."""
    spawn = multiprocessing.get_context("spawn")  # no fork of a process with threads
    ours, theirs = spawn.Pipe()
    process = spawn.Process(target=_serve_receiver, args=(theirs,), daemon=True)
    process.start()
    return process, f"http://127.0.0.1:{ours.recv()}"


async def run(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(1)
    bodies = [bundle(i, rng) for i in range(args.warmup + args.bundles)]
    receiver, base = start_receiver()
    endpoint = f"{base}/hook"
    written: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="sub-bench-") as tmp:
        settings = Settings(
            storage=f"sqlite:///{Path(tmp) / 'sub.sqlite3'}",
            auth="off",
            outbound_allow="127.0.0.1",
        )
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
                ids = []
                patients = []
                for n in range((args.subscriptions or 100) if args.per_patient else 0):
                    body = {"resourceType": "Patient", "name": [{"family": f"Sub{n}"}]}
                    answer = await http.post("/fhir/Patient", json=body, headers=JSON)
                    patients.append(answer.json()["id"])
                args.patients = patients
                for n in range(args.subscriptions):
                    criteria = (
                        f"Observation?subject=Patient/{patients[n]}"
                        if args.per_patient
                        else args.criteria
                    )
                    body = {
                        "resourceType": "Subscription",
                        "status": "requested",
                        "reason": f"bench {n}",
                        "criteria": criteria,
                        "channel": {
                            "type": "rest-hook",
                            "endpoint": endpoint,
                            "payload": "application/fhir+json",
                        },
                    }
                    answer = await http.post("/fhir/Subscription", json=body, headers=JSON)
                    ids.append(answer.json()["id"])
                for sid in ids:
                    while (await http.get(f"/fhir/Subscription/{sid}")).json()[
                        "status"
                    ] != "active":
                        await asyncio.sleep(0.05)

                async def post(body: bytes, timed: bool) -> None:
                    answer = await http.post("/fhir", content=body, headers=JSON)
                    if answer.status_code != 200:
                        raise SystemExit(f"{answer.status_code}: {answer.text[:500]}")
                    if timed:
                        now = time.time()
                        for entry in answer.json()["entry"]:
                            parts = entry["response"]["location"].split("/")
                            written[parts[parts.index("_history") - 1]] = now

                for body in bodies[: args.warmup]:
                    await post(body, False)
                await asyncio.sleep(2.0)  # the warm-up's notifications
                httpx.delete(f"{base}/")
                cpu = time.process_time()
                if args.rate:
                    seconds, response_ms = await offer(http, args, written)
                    writes = len(written)
                else:
                    queue = list(reversed(bodies[args.warmup :]))

                    async def client() -> None:
                        while queue:
                            await post(queue.pop(), True)

                    start = time.perf_counter()
                    await asyncio.gather(*(client() for _ in range(args.clients)))
                    seconds = time.perf_counter() - start
                    writes = args.bundles * 21
                if args.per_patient:  # the Bundles' new patients are no one's
                    expected = len(written) if args.rate and args.subscriptions else 0
                elif args.rate:
                    expected = args.subscriptions * len(written)
                else:
                    expected = args.subscriptions * args.bundles * args.per_bundle
                deadline = time.perf_counter() + 120
                while int(httpx.get(f"{base}/count").text) < expected:
                    if time.perf_counter() > deadline:
                        break
                    await asyncio.sleep(0.05)
                cpu = time.process_time() - cpu  # writes and their notifications
    arrivals: dict[str, list[float]] = httpx.get(f"{base}/dump").json()
    receiver.terminate()
    latencies = sorted(
        (at - written[rid]) * 1000
        for rid, times in arrivals.items()
        if rid in written
        for at in times
    )

    def pct(p: float) -> float | None:
        return (
            round(latencies[min(len(latencies) - 1, int(p * len(latencies)))], 1)
            if latencies
            else None
        )

    shape = (
        {"offered_writes_per_second": args.rate, "seconds": args.seconds}
        if args.rate
        else {"bundles": args.bundles, "clients": args.clients}
    )
    extra = (
        {
            "response_ms_p50": response_ms[len(response_ms) // 2],
            "response_ms_p99": response_ms[int(0.99 * len(response_ms))],
        }
        if args.rate and response_ms
        else {}
    )
    return {
        "subscriptions": args.subscriptions,
        "criteria": "Observation?subject=Patient/<its own>" if args.per_patient else args.criteria,
        **shape,
        "resources_per_second": round(writes / seconds),
        "server_cpu_ms_per_resource": round(cpu * 1000 / writes, 2),
        **extra,
        "notifications": len(latencies),
        "latency_ms_p50": pct(0.5),
        "latency_ms_p99": pct(0.99),
        "latency_ms_max": round(latencies[-1], 1) if latencies else None,
    }


async def offer(
    http: httpx.AsyncClient, args: argparse.Namespace, written: dict[str, float]
) -> tuple[float, list[float]]:
    """``args.rate`` single-resource writes a second for ``args.seconds`` seconds, each
    started on time (open loop); the seconds until the last one finished and the
    response times (ms, sorted)."""
    response_ms: list[float] = []

    rng = random.Random(2)

    async def one(n: int) -> None:
        if args.per_patient:  # one subscription hears of it
            type_ = "Observation"
            body: dict[str, Any] = {
                "resourceType": "Observation",
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                "subject": {"reference": f"Patient/{rng.choice(args.patients)}"},
                "valueQuantity": {"value": 60 + n % 40, "unit": "/min"},
            }
        else:  # every subscription of Patient? hears of it
            type_ = "Patient"
            body = {"resourceType": "Patient", "name": [{"family": "Rate", "given": [f"P{n}"]}]}
        began = time.time()
        answer = await http.post(f"/fhir/{type_}", json=body, headers=JSON)
        now = time.time()
        if answer.status_code != 201:
            raise SystemExit(f"{answer.status_code}: {answer.text[:500]}")
        written[answer.json()["id"]] = now
        response_ms.append((now - began) * 1000)

    total = int(args.rate * args.seconds)
    start = time.perf_counter()
    tasks = []
    for n in range(total):
        wait = start + n / args.rate - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        tasks.append(asyncio.create_task(one(n)))
    await asyncio.gather(*tasks)
    return time.perf_counter() - start, sorted(round(ms, 1) for ms in response_ms)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subscriptions", type=int, default=10)
    parser.add_argument("--criteria", default="Patient?")
    parser.add_argument(
        "--per-bundle", type=int, default=1, help="notifications a Bundle makes per subscription"
    )
    parser.add_argument("--bundles", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument(
        "--rate", type=float, default=0, help="single-resource writes offered a second"
    )
    parser.add_argument("--seconds", type=float, default=10, help="how long --rate runs")
    parser.add_argument(
        "--per-patient",
        action="store_true",
        help="one Patient per subscription, criteria Observation?subject=that patient; with"
        " --rate the writes are Observations of random ones of them (each notified to one"
        " subscription: a portal's apps), without it the Bundles match none (the cost of"
        " matching alone); default: every write reaches every subscription",
    )
    print(json.dumps(asyncio.run(run(parser.parse_args()))))


if __name__ == "__main__":
    main()
