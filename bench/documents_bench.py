"""Generated documents (issue 20): how long a demo patient's International Patient Summary
(``Patient/[id]/$summary``, a document Bundle; target < 100 ms) and a visit summary PDF
(``Encounter/[id]/$visit-summary``; target < 300 ms) take, through the whole app
in-process (httpx ASGITransport: routing, SMART token verification, the guarded store,
rendering) on a SQLite store holding the demo population.

    .venv/bin/python bench/documents_bench.py --patients 100 --runs 50

The demo population (``fhir-server demo-data``: seed 1, today 2025-03-12) is imported
into a new SQLite file, then each document is asked for ``--runs`` times (after 3 warm-up
calls) with a patient-context token of the patient (``patient/*.rs``), patients taken
in turn (each has several past visits). Prints median, p95 and max per document.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

import httpx

from fhir_server.app import create_app
from fhir_server.config import Settings
from fhir_server.demo_data import Population, write_population
from fhir_server.documents.catalogue import load_catalogue
from fhir_server.storage.open import open_store

BASE = "http://testserver/fhir"


async def _load(storage: str, patients: int) -> None:
    store = open_store(storage)
    await store.open()
    try:
        await write_population(store, Population(patients, 1, date(2025, 3, 12)), workers=0)
        await load_catalogue(store)  # as 'fhir-server serve' does at start-up
    finally:
        await store.close()


async def _time(client: httpx.AsyncClient, calls: list[tuple[str, dict[str, str]]]) -> list[float]:
    times = []
    for path, headers in calls:
        start = time.perf_counter()
        response = await client.get(path, headers=headers)
        times.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, response.text[:300]
    return times


def _row(name: str, times: list[float], target: float | None) -> str:
    ordered = sorted(times)
    p95 = ordered[max(0, int(len(ordered) * 0.95) - 1)]
    goal = f"  (target < {target:.0f} ms)" if target else ""
    return (
        f"{name:<34} median {statistics.median(ordered):7.1f} ms   p95 {p95:7.1f} ms"
        f"   max {ordered[-1]:7.1f} ms{goal}"
    )


async def run(patients: int, runs: int, workdir: Path) -> None:
    storage = f"sqlite:///{workdir / 'documents-bench.sqlite3'}"
    started = time.perf_counter()
    await _load(storage, patients)
    took = time.perf_counter() - started
    print(f"demo population of {patients} patients imported in {took:.1f} s")
    app = create_app(Settings(storage=storage, auth="smart", log_level="warning"))
    async with app.router.lifespan_context(app):
        service = app.state.auth.token_service()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE + "/") as client:
            ids = [f"demo-pat-{n:06d}" for n in range(1, min(patients, 20) + 1)]
            headers = {}
            encounters: dict[str, list[str]] = {}
            for pid in ids:
                token, _ = service.issue_access_token(
                    issuer=BASE,
                    audience=BASE,
                    client_id="bench",
                    scope="patient/*.rs",
                    patient=pid,
                )
                headers[pid] = {"authorization": f"Bearer {token}"}
                found = await client.get(
                    "Encounter", params={"patient": pid, "_count": "20"}, headers=headers[pid]
                )
                encounters[pid] = [e["resource"]["id"] for e in found.json().get("entry", [])]
            ids = [pid for pid in ids if encounters[pid]]

            def calls(kind: str) -> list[tuple[str, dict[str, str]]]:
                out = []
                for i in range(runs + 3):
                    pid = ids[i % len(ids)]
                    if kind == "visit":
                        enc = encounters[pid][i % len(encounters[pid])]
                        out.append((f"Encounter/{enc}/$visit-summary", headers[pid]))
                    elif kind == "ips":
                        out.append((f"Patient/{pid}/$summary", headers[pid]))
                    elif kind == "ips-pdf":
                        out.append((f"Patient/{pid}/$summary?_format=pdf", headers[pid]))
                    elif kind == "immunizations":
                        out.append((f"Patient/{pid}/$immunization-record", headers[pid]))
                    else:
                        out.append((f"Patient/{pid}/$education", headers[pid]))
                return out

            for first in ids:  # a patient with problems, to show what a summary holds
                ips = (await client.get(f"Patient/{first}/$summary", headers=headers[first])).json()
                sections = ips["entry"][0]["resource"]["section"]
                listed = ", ".join(f"{s['title']} {len(s.get('entry', []))}" for s in sections)
                education = await client.get(f"Patient/{first}/$education", headers=headers[first])
                matched = len(education.json().get("entry", []))
                if matched:
                    break
            print(f"{first}: {listed}; {matched} education entries")
            print(f"{runs} calls each, {len(ids)} patients in turn, patient/*.rs tokens")
            for name, kind, target in (
                ("IPS document Bundle ($summary)", "ips", 100.0),
                ("visit summary PDF", "visit", 300.0),
                ("IPS as PDF ($summary?_format=pdf)", "ips-pdf", None),
                ("immunization record PDF", "immunizations", None),
                ("$education", "education", None),
            ):
                times = await _time(client, calls(kind))
                print(_row(name, times[3:], target))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=100, help="demo patients (>= 10)")
    parser.add_argument("--runs", type=int, default=50, help="calls per document")
    parser.add_argument("--workdir", type=Path, default=None, help="where the store goes")
    args = parser.parse_args()
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        asyncio.run(run(args.patients, args.runs, args.workdir))
        return
    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(run(args.patients, args.runs, Path(folder)))


if __name__ == "__main__":
    main()
