"""Transaction Bundles in-process (numbers, not pass/fail): the server's own cost of
``POST /fhir`` with a transaction of 1 Patient + 20 Observations (``urn:uuid``
placeholders), the Bundle ``bench/wrk/fhir.lua`` sends in ``bench/run.py``'s ``ingest``.

The app runs in this process on a new SQLite file, authorization off, driven through
``httpx.ASGITransport`` by ``--clients`` concurrent clients (no sockets, no wrk: what
remains is the FastAPI route, the bundle processing and the store). Prints resources/s
after ``--warmup`` untimed Bundles. Profile it from outside (``py-spy record -- python
bench/transaction_bench.py``): ``bench/profile.py`` shadows the standard ``profile``
module for scripts in this folder, so cProfile cannot be imported here.

Usage: ``python bench/transaction_bench.py [--bundles 300] [--clients 4]``
Target (issue 5, over HTTP on a 2-core machine): at least 1,000 resources/s.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from fhir_server.app import create_app
from fhir_server.config import Settings


def bundle(serial: int, rng: random.Random) -> bytes:
    patient_url = f"urn:uuid:00000000-0000-4000-8000-{serial:012x}"
    entries: list[dict[str, Any]] = [
        {
            "fullUrl": patient_url,
            "resource": {
                "resourceType": "Patient",
                "identifier": [{"system": "urn:bench:ingest", "value": f"tx-{serial}"}],
                "name": [{"family": "Ingest", "given": [f"Bench{serial}"]}],
                "gender": "female",
                "birthDate": "1980-01-01",
            },
            "request": {"method": "POST", "url": "Patient"},
        }
    ]
    for n in range(1, 21):
        observation = {
            "resourceType": "Observation",
            "status": "final",
            "category": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                            "code": "vital-signs",
                        }
                    ]
                }
            ],
            "code": {
                "coding": [
                    {"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}
                ]
            },
            "subject": {"reference": patient_url},
            "effectiveDateTime": f"2025-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}T10:00:00Z",
            "valueQuantity": {
                "value": 60 + n,
                "unit": "/min",
                "system": "http://unitsofmeasure.org",
                "code": "/min",
            },
        }
        entries.append(
            {
                "fullUrl": f"urn:uuid:00000000-{n:04x}-4000-8000-{serial:012x}",
                "resource": observation,
                "request": {"method": "POST", "url": "Observation"},
            }
        )
    return json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries}).encode()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(1)
    bodies = [bundle(i, rng) for i in range(args.warmup + args.bundles)]
    with tempfile.TemporaryDirectory(prefix="tx-bench-") as tmp:
        settings = Settings(storage=f"sqlite:///{Path(tmp) / 'tx.sqlite3'}", auth="off")
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
                headers = {"Content-Type": "application/fhir+json"}

                async def post(body: bytes) -> None:
                    answer = await http.post("/fhir", content=body, headers=headers)
                    if answer.status_code != 200:
                        raise SystemExit(f"{answer.status_code}: {answer.text[:500]}")

                for body in bodies[: args.warmup]:
                    await post(body)
                queue = list(reversed(bodies[args.warmup :]))
                if args.freeze:
                    gc.collect()
                    gc.freeze()

                async def client() -> None:
                    while queue:
                        await post(queue.pop())

                start, cpu = time.perf_counter(), time.process_time()
                await asyncio.gather(*(client() for _ in range(args.clients)))
                seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    resources = args.bundles * 21
    return {
        "bundles": args.bundles,
        "clients": args.clients,
        "seconds": round(seconds, 2),
        "cpu_seconds": round(cpu, 2),
        "resources_per_second": round(resources / seconds),
        "ms_per_bundle": round(seconds / args.bundles * 1000, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bundles", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument(
        "--freeze", action="store_true", help="gc.freeze() after the warm-up (an experiment)"
    )
    result = asyncio.run(run(parser.parse_args()))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
