"""Write throughput and notification latency with active rest-hook Subscriptions
(numbers, not pass/fail; issue 17's "Performance").

The app runs in this process on a new SQLite file (authorization off, the outbound allow
list naming 127.0.0.1) with ``--subscriptions`` active Subscriptions whose criteria is
``--criteria`` (default ``Patient?``: one notification per Bundle per subscription),
each a ``PUT`` with the resource to a local ``http.server`` receiver in a thread of this
process. ``--clients`` concurrent clients post the transaction Bundles of
``bench/transaction_bench.py`` (1 Patient + 20 Observations) through
``httpx.ASGITransport``. Prints resources/s of the writes, and the latency from each
Bundle's response to the arrival of each of its notifications (p50, p99, max) once all
arrived. Run it with ``--subscriptions 0`` for the figure without subscriptions.

Usage: ``python bench/subscription_bench.py [--subscriptions 10] [--bundles 200]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
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


def start_receiver() -> tuple[ThreadingHTTPServer, dict[str, list[float]]]:
    arrivals: dict[str, list[float]] = {}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with lock:
                arrivals.setdefault(self.path.rsplit("/", 1)[-1], []).append(time.perf_counter())
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, arrivals


async def run(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(1)
    bodies = [bundle(i, rng) for i in range(args.warmup + args.bundles)]
    server, arrivals = start_receiver()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}/hook"
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
                for n in range(args.subscriptions):
                    body = {
                        "resourceType": "Subscription",
                        "status": "requested",
                        "reason": f"bench {n}",
                        "criteria": args.criteria,
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
                        now = time.perf_counter()
                        for entry in answer.json()["entry"]:
                            parts = entry["response"]["location"].split("/")
                            written[parts[parts.index("_history") - 1]] = now

                for body in bodies[: args.warmup]:
                    await post(body, False)
                await asyncio.sleep(2.0)  # the warm-up's notifications
                arrivals.clear()
                queue = list(reversed(bodies[args.warmup :]))

                async def client() -> None:
                    while queue:
                        await post(queue.pop(), True)

                start = time.perf_counter()
                await asyncio.gather(*(client() for _ in range(args.clients)))
                seconds = time.perf_counter() - start
                expected = args.subscriptions * args.bundles * args.per_bundle
                deadline = time.perf_counter() + 120
                while sum(map(len, arrivals.values())) < expected:
                    if time.perf_counter() > deadline:
                        break
                    await asyncio.sleep(0.05)
    server.shutdown()
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

    return {
        "subscriptions": args.subscriptions,
        "criteria": args.criteria,
        "bundles": args.bundles,
        "clients": args.clients,
        "resources_per_second": round(args.bundles * 21 / seconds),
        "notifications": len(latencies),
        "latency_ms_p50": pct(0.5),
        "latency_ms_p99": pct(0.99),
        "latency_ms_max": round(latencies[-1], 1) if latencies else None,
    }


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
    print(json.dumps(asyncio.run(run(parser.parse_args()))))


if __name__ == "__main__":
    main()
