"""Search benchmark on any store (numbers, not pass/fail).

Generates a population of patients with observations directly through the store's
``write_batch`` (with the same validation-free index extraction and content building the
API runs on every write), then measures:

- write cost: resources/s stored with and without index extraction, on a sample
  (``--write-sample``, default 5,000) of observations each, of a patient no search asks
  for, written after the size is taken;
- size of the population: on SQLite, bytes of index tables per resource (``dbstat``),
  rows per resource, file bytes per resource; on MongoDB, index entries per resource
  (elements under the ``i`` field of the resource documents, by kind), sort keys, BSON
  bytes per resource and history document, and on a real server ``$collStats`` (data,
  storage and index sizes);
- selective search ``Observation?patient=X&code=Y&_sort=-date`` through the HTTP app
  in-process: latency p50/p99 and searches/s (one client, sequential), and the query plan
  (SQLite ``EXPLAIN QUERY PLAN``; a real MongoDB's ``explain``), which must not scan.

The store is any storage URL (``--storage``; default: a SQLite file in a temporary
folder). On ``mongomock://`` the figures mean little: mongomock is an in-memory emulation
of MongoDB in Python, without indexes, so its search times grow with the whole collection.
Measure MongoDB on a real server (``--storage 'mongodb://localhost:27017/bench?replicaSet=rs0'``;
see ``bench/README.md``). A store that already holds resources is not populated again.

Usage: ``python bench/search_bench.py --resources 100000 [--storage URL] [--searches 2000]``
Prints the results and writes ``bench/results/search-<store>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from fhir_server.app import create_app
from fhir_server.config import Settings
from fhir_server.interactions.write import content_builder, index_entries
from fhir_server.storage.base import Store, TransactionsUnavailable, WriteRequest
from fhir_server.storage.open import open_store
from resources.search.parameters import search_params
from resources.search.parse import parse_search
from resources.search.query import SearchQuery

MONGOMOCK_NOTE = (
    "mongomock is an in-memory emulation of MongoDB in Python (no indexes, no storage"
    " engine, no network): these figures mean little about MongoDB; measure a real"
    " server with --storage mongodb://..."
)
SEARCH = [("patient", "p1"), ("code", "http://loinc.org|8867-4"), ("_sort", "-date")]
"""The selective search whose plan is shown."""

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
    id_ = resource["id"]
    index = index_entries(resource, id_) if indexed else None
    return WriteRequest(
        resource["resourceType"], id_, "update", content_builder(resource, id_), index=index
    )


def store_kind(url: str) -> str:
    """``sqlite``, ``mongomock`` or ``mongodb`` (also ``mongodb+srv``)."""
    scheme = urlsplit(url).scheme
    return "mongodb" if scheme.startswith("mongodb") else scheme


def without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.netloc.rsplit('@', 1)[1]}"
    return urlunsplit(parts._replace(netloc=netloc))


class Writer:
    """Writes batches through ``write_batch``; one write at a time on a store that has no
    transactions (a standalone MongoDB refuses batches of several writes)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.one_by_one = False

    async def write(self, batch: Sequence[WriteRequest]) -> None:
        if not self.one_by_one:
            try:
                await self.store.write_batch(batch)
                return
            except TransactionsUnavailable:
                self.one_by_one = True
        for item in batch:
            await self.store.write(item)


async def populate(writer: Writer, total: int, per_patient: int) -> float:
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
            await writer.write(batch)
            written += len(batch)
            batch = []
    if batch:
        await writer.write(batch)
        written += len(batch)
    return written / (time.perf_counter() - started)


async def write_cost(writer: Writer, sample: int) -> dict[str, float]:
    rng = random.Random(7)
    out = {}
    for indexed in (False, True):
        started = time.perf_counter()
        for start in range(0, sample, 1000):
            batch = [
                request(observation(10_000_000 + n + indexed * sample, -1, rng), indexed)
                for n in range(start, min(sample, start + 1000))
            ]
            await writer.write(batch)
        out["indexed" if indexed else "unindexed"] = sample / (time.perf_counter() - started)
    return out


async def resource_count(store: Any, kind: str) -> int:
    if kind == "sqlite":
        conn = sqlite3.connect(store.path)
        try:
            return conn.execute("SELECT count(*) FROM resource").fetchone()[0]
        finally:
            conn.close()
    return await store.db["resources"].count_documents({})


def selective_query(items: list[tuple[str, str]]) -> SearchQuery:
    return parse_search(
        ["Observation"],
        items,
        strict=True,
        params_for=search_params,
        max_count=1000,
        default_count=50,
    )


# -- SQLite: dbstat sizes and EXPLAIN QUERY PLAN ----------------------------------------


def sqlite_size(path: Path) -> dict[str, Any]:
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


def sqlite_plan(path: Path, items: list[tuple[str, str]]) -> list[str]:
    from fhir_server.storage.sqlite_index import ParamIds
    from fhir_server.storage.sqlite_page import build_select
    from fhir_server.storage.sqlite_search import Compiler

    conn = sqlite3.connect(path)
    try:
        sql, params, _ = build_select(Compiler(conn, ParamIds()), selective_query(items), None, 51)
        return [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
    finally:
        conn.close()


# -- MongoDB: index entries, BSON sizes, $collStats, explain ----------------------------


def _index_arrays() -> list[str]:
    """For each index on ``resources``, the array (``i.<kind>``) it covers, or ``""``."""
    from fhir_server.storage.mongo_index import INDEX, INDEXES

    arrays = []
    for model in INDEXES:
        fields = [f for f in model.document["key"] if f.startswith(f"{INDEX}.")]
        arrays.append(".".join(fields[0].split(".")[:2]) if fields else "")
    return arrays


async def mongo_size(db: Any) -> dict[str, Any]:
    """Index entries and BSON bytes per resource, from the documents themselves."""
    import bson

    arrays = [a.split(".", 1)[1] if a else "" for a in _index_arrays()]
    docs = live = doc_bytes = index_bytes = content_bytes = keys = sort_keys = 0
    elements: Counter[str] = Counter()
    async for doc in db["resources"].find({}):
        docs += 1
        doc_bytes += len(bson.encode(doc))
        if doc.get("method") == "delete":
            continue
        live += 1
        index = doc.get("i") or {}
        for kind, items in index.items():
            elements[kind] += len(items)
        sort_keys += len(doc.get("s") or {})
        index_bytes += len(bson.encode({"i": index, "s": doc.get("s") or {}}))
        content_bytes += len(doc.get("content") or b"")
        # a document has at least one key (null when it lacks the field) in every index
        keys += 1 + sum(max(1, len(index.get(a, []))) if a else 1 for a in arrays)
    versions = history_bytes = 0
    async for doc in db["history"].find({}):
        versions += 1
        history_bytes += len(bson.encode(doc))
    per = max(1, live)
    return {
        "resources": docs,
        "live_resources": live,
        "index_entries_per_resource": round(sum(elements.values()) / per, 2),
        "index_entries_per_resource_by_kind": {
            k: round(v / per, 2) for k, v in sorted(elements.items())
        },
        "sort_keys_per_resource": round(sort_keys / per, 2),
        "index_field_bson_bytes_per_resource": round(index_bytes / per, 1),
        "resource_document_bson_bytes": round(doc_bytes / max(1, docs), 1),
        "stored_json_bytes_per_resource": round(content_bytes / per, 1),
        "history_versions": versions,
        "history_document_bson_bytes": round(history_bytes / max(1, versions), 1),
        "btree_keys_per_resource_computed": round(keys / per, 1),
    }


async def collection_stats(db: Any, name: str, resources: int) -> dict[str, Any]:
    """``$collStats`` storage figures of a collection, summed over shards (real server)."""
    cursor = await db[name].aggregate([{"$collStats": {"storageStats": {}}}])
    totals: Counter[str] = Counter()
    index_sizes: Counter[str] = Counter()
    for doc in await cursor.to_list(None):
        stats = doc["storageStats"]
        for key in ("count", "size", "storageSize", "totalIndexSize"):
            totals[key] += int(stats.get(key, 0))
        index_sizes.update({k: int(v) for k, v in stats.get("indexSizes", {}).items()})
    per = max(1, resources)
    return {
        "documents": totals["count"],
        "data_bytes_per_resource": round(totals["size"] / per, 1),
        "storage_bytes_per_resource": round(totals["storageSize"] / per, 1),
        "index_bytes_per_resource": round(totals["totalIndexSize"] / per, 1),
        "index_bytes_per_resource_by_index": {
            k: round(v / per, 1) for k, v in sorted(index_sizes.items())
        },
    }


async def mongo_plan(db: Any, items: list[tuple[str, str]]) -> list[str]:
    """The stages (and index names) of the winning plan of the search's aggregation."""
    from fhir_server.storage import mongo_search
    from fhir_server.storage.mongo_index import STORED_FIELDS

    query = selective_query(items)
    where = await mongo_search.compile_filter(db, query)
    plan = mongo_search.sort_plan(query.sort)
    projection = dict.fromkeys((*STORED_FIELDS, *plan.computed), 1)
    pipeline = mongo_search.page_pipeline(where, plan, None, 51, projection)
    explain = await db.command(
        {
            "explain": {"aggregate": "resources", "pipeline": pipeline, "cursor": {}},
            "verbosity": "queryPlanner",
        }
    )
    steps: list[str] = []
    _winning_steps(explain, steps, inside=False)
    return steps


def _winning_steps(node: Any, steps: list[str], inside: bool) -> None:
    if isinstance(node, dict):
        if inside and isinstance(node.get("stage"), str):
            index = node.get("indexName")
            steps.append(node["stage"] + (f" {index}" if index else ""))
        for key, value in node.items():
            _winning_steps(value, steps, inside or key == "winningPlan")
    elif isinstance(node, list):
        for value in node:
            _winning_steps(value, steps, inside)


# -- the search through the HTTP app ----------------------------------------------------


async def search_latency(url: str, patients: int, count: int, warmup: int) -> dict[str, float]:
    """Over HTTP in-process; on mongomock the app must use the same ``mongomock://NAME``
    in this process to see the data (the stand-in keeps its servers per process)."""
    app = create_app(Settings(storage=url, auth="off"))
    rng = random.Random(3)
    timings: list[float] = []
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://b/fhir/") as client:
            for i in range(count + warmup):
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
                if i >= warmup:
                    timings.append(elapsed)
    timings.sort()
    return {
        "p50_ms": round(statistics.median(timings) * 1000, 2),
        "p99_ms": round(timings[max(0, int(len(timings) * 0.99) - 1)] * 1000, 2),
        "searches_per_s": round(len(timings) / sum(timings), 1),
    }


async def store_figures(store: Any, kind: str) -> dict[str, Any]:
    """Size and query plan, by store."""
    if kind == "sqlite":
        conn = sqlite3.connect(store.path)
        conn.execute("ANALYZE")
        conn.close()
        return {"size": sqlite_size(store.path), "plan": sqlite_plan(store.path, SEARCH)}
    out: dict[str, Any] = {"size": await mongo_size(store.db)}
    if kind == "mongomock":
        out["plan"] = "not available: mongomock has no query planner (it scans in Python)"
        return out
    live = out["size"]["live_resources"]
    try:
        out["collstats"] = {
            name: await collection_stats(store.db, name, live) for name in ("resources", "history")
        }
    except Exception as exc:  # e.g. a user without the clusterMonitor / dbAdmin role
        out["collstats"] = f"unavailable: {exc}"
    try:
        out["plan"] = await mongo_plan(store.db, SEARCH)
    except Exception as exc:
        out["plan"] = f"unavailable: {exc}"
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--resources", type=int, default=100_000)
    parser.add_argument("--per-patient", type=int, default=20)
    parser.add_argument("--searches", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=50, help="searches not timed, first")
    parser.add_argument("--write-sample", type=int, default=5000, help="write-cost sample")
    parser.add_argument(
        "--storage",
        help="storage URL (sqlite:///…, mongodb://…, mongomock://NAME/DB);"
        " default: a SQLite file in a new temporary folder",
    )
    parser.add_argument("--db", type=Path, help="SQLite file (same as --storage sqlite:///PATH)")
    args = parser.parse_args()
    url = args.storage
    if url is None:
        path = args.db or Path(tempfile.mkdtemp()) / "bench.sqlite3"
        url = f"sqlite:///{path.resolve()}"
    kind = store_kind(url)
    results: dict[str, Any] = {
        "storage": without_password(url),
        "store": kind,
        "resources_requested": args.resources,
    }
    if kind == "mongomock":
        results["note"] = MONGOMOCK_NOTE
        print(f"NOTE: {MONGOMOCK_NOTE}", flush=True)
    store: Any = open_store(url)
    await store.open()
    existing = await resource_count(store, kind)
    if existing:
        results["populate"] = f"skipped: the store already holds {existing} resources"
    else:
        rate = await populate(Writer(store), args.resources, args.per_patient)
        results["populate_resources_per_s"] = round(rate, 1)
    # sizes and plan of the population alone, before the write-cost sample is added
    if kind == "sqlite":  # closed first, so the WAL is checkpointed into the file
        await store.close()
        results |= await store_figures(store, kind)
        store = open_store(url)
        await store.open()
    else:
        results |= await store_figures(store, kind)
    writer = Writer(store)
    cost = await write_cost(writer, args.write_sample)
    results["write_cost_resources_per_s"] = {k: round(v, 1) for k, v in cost.items()}
    if writer.one_by_one:
        results["writes"] = "one at a time: the store has no transactions (standalone MongoDB)"
    await store.close()
    patients = max(1, args.resources // (args.per_patient + 1))
    results["selective_search"] = await search_latency(url, patients, args.searches, args.warmup)
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / f"search-{kind}.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    if kind == "mongomock":
        print(f"NOTE: {MONGOMOCK_NOTE}")


if __name__ == "__main__":
    asyncio.run(main())
