"""Search benchmark on the embedded SQLite store (numbers, not pass/fail).

Generates a population of patients with observations directly through the store (with
the same validation-free index extraction the API runs on every write), then measures:

- write cost: resources/s stored with and without index extraction, on a sample;
- index size: bytes of index tables per resource (SQLite ``dbstat``), rows per resource;
- selective search ``Observation?patient=X&code=Y&_sort=-date`` through the HTTP app
  in-process: latency p50/p99 and searches/s (one client, sequential), and the SQLite
  query plan (which must not scan the resource table).

Usage: ``python bench/search_bench.py --resources 100000 [--db PATH] [--searches 2000]``
Prints a table and writes ``bench/results/search.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from fhir_server.app import create_app
from fhir_server.config import Settings
from fhir_server.interactions.write import index_entries
from fhir_server.storage.base import WriteRequest
from fhir_server.storage.sqlite import SQLiteStore
from fhir_server.storage.sqlite_search import Compiler, build_select
from resources import fhir_json
from resources.search.parameters import search_params
from resources.search.parse import parse_search

CODES = [
    ("8867-4", "Heart rate", "/min", 50, 120),
    ("8480-6", "Systolic blood pressure", "mm[Hg]", 95, 170),
    ("8462-4", "Diastolic blood pressure", "mm[Hg]", 55, 105),
    ("8310-5", "Body temperature", "Cel", 35.5, 39.5),
    ("29463-7", "Body weight", "kg", 3, 140),
    ("8302-2", "Body height", "cm", 45, 200),
    ("2339-0", "Glucose", "mg/dL", 60, 250),
    ("718-7", "Hemoglobin", "g/dL", 9, 18),
    ("2093-3", "Cholesterol", "mg/dL", 120, 300),
    ("4548-4", "Hemoglobin A1c", "%", 4, 12),
]


def patient(n: int) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": f"p{n}",
        "identifier": [{"system": "urn:bench:mrn", "value": f"MRN{n:07d}"}],
        "name": [{"family": f"Family{n % 997}", "given": [f"Given{n % 101}"]}],
        "gender": ("male", "female")[n % 2],
        "birthDate": f"{1930 + n % 90}-{1 + n % 12:02d}-{1 + n % 28:02d}",
    }


def observation(n: int, patient_n: int, rng: random.Random) -> dict[str, Any]:
    code, display, unit, low, high = CODES[n % len(CODES)]
    day = rng.randrange(0, 3650)
    return {
        "resourceType": "Observation",
        "id": f"o{n}",
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
        "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": display}]},
        "subject": {"reference": f"Patient/p{patient_n}"},
        "effectiveDateTime": f"{2015 + day // 365}-{1 + day % 12:02d}-{1 + day % 28:02d}T10:00:00Z",
        "valueQuantity": {
            "value": round(rng.uniform(low, high), 1),
            "unit": unit,
            "system": "http://unitsofmeasure.org",
            "code": unit,
        },
    }


def request(resource: dict[str, Any], indexed: bool) -> WriteRequest:
    body = fhir_json.dumps(resource)
    index = None
    if indexed:
        index = index_entries(resource, resource["id"])
    return WriteRequest(
        resource["resourceType"], resource["id"], "update", lambda v, lu: body, index=index
    )


async def populate(store: SQLiteStore, total: int, per_patient: int) -> float:
    rng = random.Random(42)
    patients = max(1, total // (per_patient + 1))
    batch: list[WriteRequest] = []
    started = time.perf_counter()
    written = 0
    obs_n = 0
    for p in range(patients):
        batch.append(request(patient(p), True))
        for _ in range(per_patient):
            batch.append(request(observation(obs_n, p, rng), True))
            obs_n += 1
        if len(batch) >= 2000:
            await store.write_batch(batch)
            written += len(batch)
            batch = []
    if batch:
        await store.write_batch(batch)
        written += len(batch)
    return written / (time.perf_counter() - started)


async def write_cost(store: SQLiteStore, sample: int) -> dict[str, float]:
    rng = random.Random(7)
    out = {}
    for indexed in (False, True):
        started = time.perf_counter()
        for start in range(0, sample, 1000):
            batch = [
                request(observation(10_000_000 + n + indexed * sample, 0, rng), indexed)
                for n in range(start, min(sample, start + 1000))
            ]
            await store.write_batch(batch)
        out["indexed" if indexed else "unindexed"] = sample / (time.perf_counter() - started)
    return out


def index_size(path: Path) -> dict[str, Any]:
    conn = sqlite3.connect(path)
    try:
        resources = conn.execute("SELECT count(*) FROM resource").fetchone()[0]
        try:
            rows = conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name").fetchall()
        except sqlite3.OperationalError:
            rows = []
        sizes = dict(rows)
        index_bytes = sum(v for k, v in sizes.items() if k.startswith("idx_"))
        row_counts = {
            t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in (
                "idx_string",
                "idx_token",
                "idx_date",
                "idx_quantity",
                "idx_reference",
                "idx_uri",
                "idx_number",
                "idx_composite",
                "idx_sort",
            )
        }
    finally:
        conn.close()
    return {
        "resources": resources,
        "index_bytes_per_resource": round(index_bytes / max(1, resources), 1),
        "index_rows_per_resource": round(sum(row_counts.values()) / max(1, resources), 1),
        "file_bytes_per_resource": round(path.stat().st_size / max(1, resources), 1),
    }


def plan(store_path: Path, items: list[tuple[str, str]]) -> list[str]:
    query = parse_search(
        ["Observation"],
        items,
        strict=True,
        params_for=search_params,
        max_count=1000,
        default_count=50,
    )
    conn = sqlite3.connect(store_path)
    try:
        from fhir_server.storage.sqlite_index import ParamIds

        sql, params, _ = build_select(Compiler(conn, ParamIds()), query, None, 51)
        return [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
    finally:
        conn.close()


async def search_latency(path: Path, patients: int, count: int) -> dict[str, float]:
    app = create_app(Settings(storage=f"sqlite:///{path}"))
    rng = random.Random(3)
    timings: list[float] = []
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://b/fhir/") as client:
            for i in range(count + 50):
                code = CODES[rng.randrange(len(CODES))][0]
                params = {
                    "patient": f"p{rng.randrange(patients)}",
                    "code": f"http://loinc.org|{code}",
                    "_sort": "-date",
                }
                started = time.perf_counter()
                response = await client.get("Observation", params=params)
                elapsed = time.perf_counter() - started
                assert response.status_code == 200, response.text
                if i >= 50:
                    timings.append(elapsed)
    timings.sort()
    return {
        "p50_ms": round(statistics.median(timings) * 1000, 2),
        "p99_ms": round(timings[int(len(timings) * 0.99) - 1] * 1000, 2),
        "searches_per_s": round(len(timings) / sum(timings), 1),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--resources", type=int, default=100_000)
    parser.add_argument("--per-patient", type=int, default=20)
    parser.add_argument("--searches", type=int, default=2000)
    parser.add_argument("--db", type=Path)
    args = parser.parse_args()
    path = args.db or Path(tempfile.mkdtemp()) / "bench.sqlite3"
    store = SQLiteStore(path)
    await store.open()
    results: dict[str, Any] = {"resources_requested": args.resources}
    if not path.exists() or os.path.getsize(path) < 1_000_000:
        results["populate_resources_per_s"] = round(
            await populate(store, args.resources, args.per_patient), 1
        )
    results["write_cost_resources_per_s"] = {
        k: round(v, 1) for k, v in (await write_cost(store, 5000)).items()
    }
    await store.close()
    conn = sqlite3.connect(path)
    conn.execute("ANALYZE")
    conn.close()
    results["size"] = index_size(path)
    patients = max(1, args.resources // (args.per_patient + 1))
    results["plan"] = plan(
        path, [("patient", "p1"), ("code", "http://loinc.org|8867-4"), ("_sort", "-date")]
    )
    results["selective_search"] = await search_latency(path, patients, args.searches)
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "search.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
