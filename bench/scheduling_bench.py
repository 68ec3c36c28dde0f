"""Appointment scheduling under load (issue 18): ``$book`` under contention and ``$find``
latency, on the real ``fhir-server serve`` (uvicorn, ``--workers``), then a count of
double bookings by search.

    .venv/bin/python bench/scheduling_bench.py [--patients 200] [--practitioners 20]
        [--clients 32] [--workers 2] [--duration 20] [--finds 300] [--storage URL]
        [--window 64] [--rate 0] [--py-spy DIR]

1. fills a SQLite store (a temporary file) with the demo population (``fhir-server
   demo-data --patients N``: about 50 resources a patient; 20,000 patients is the
   issue's 1M-resource scale), or takes an existing one (``--storage``), and gives each of
   ``--practitioners`` practitioners that has no Schedule yet four weeks of 20-minute
   slots with ``fhir-server schedule create``;
2. serves it with ``--workers`` processes, authorization off (the bench measures the
   workflow, not token checks), reads a patient per client and the free Slots, and waits
   until the AuditEvents of those reads are written (a listing of the 20,000 patients was
   20,000 AuditEvents, written during the bookings);
3. ``--clients`` concurrent clients book for ``--duration`` seconds, each picking a
   random Slot among the free ones of a few practitioners (so clients collide: a taken
   Slot is a 409): bookings/s, latency p50/p99 of every ``$book``, statuses, the server
   processes' CPU per request (a figure that does not depend on what else runs on the
   machine) and the bench's own CPU (``client_cpu_s``). Each client has one keep-alive
   connection written by hand (``_Connection``: httpx cost ~4 ms of CPU a request, so on
   a 2-core machine the earlier figures, 34-43 bookings/s, measured the client), and the
   connections are spread evenly over the worker processes (``connections_per_worker``;
   opened at once, one worker may accept them all). By default each client books again
   as soon as it is answered (a closed loop: the server saturated, every latency is the
   32 clients' share of its throughput); ``--rate R`` offers R requests a second
   instead, spread over the clients, each timed from when it was due (a late answer
   counts against the requests it held up). ``--py-spy DIR`` samples each
   server process meanwhile (``py-spy record --format raw``, ``.venv/bin/py-spy``);
4. once the bookings' AuditEvents are written, ``$find`` of one practitioner over four
   weeks, ``--finds`` times, one after another: p50/p99;
5. counts, by search, the booked Appointments per Slot (any Slot with two is a double
   booking) and the booked Appointments whose Slot is not busy.

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import ROOT, ServerProcess, free_port  # noqa: E402


def _cli(*args: str) -> str:
    command = [sys.executable, "-m", "fhir_server.cli", *args]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args[:2])}: {done.stderr[-2000:]}")
    return done.stdout


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of the processes so far (``/proc/PID/stat``)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


async def _all(http: httpx.AsyncClient, url: str, params: dict[str, str]) -> list[dict]:
    found: list[dict] = []
    answer = (await http.get(url, params=params)).json()
    while True:
        found += [e["resource"] for e in answer.get("entry", [])]
        after = [link["url"] for link in answer.get("link", []) if link["relation"] == "next"]
        if not after:
            return found
        answer = (await http.get(after[0])).json()


def _body(slot: dict[str, Any], patient: str, actors: list[str]) -> dict[str, Any]:
    people = [{"actor": {"reference": patient}, "status": "needs-action"}]
    people += [{"actor": {"reference": a}, "status": "needs-action"} for a in actors]
    appointment = {
        "resourceType": "Appointment",
        "status": "proposed",
        "start": slot["start"],
        "end": slot["end"],
        "slot": [{"reference": f"Slot/{slot['id']}"}],
        "participant": people,
    }
    return {
        "resourceType": "Parameters",
        "parameter": [{"name": "appt-resource", "resource": appointment}],
    }


class _Connection:
    """One keep-alive HTTP/1.1 connection that POSTs JSON and reads the status (the
    bench's clients: httpx costs ~4 ms of CPU a request, which on a 2-core machine
    measures the client rather than the server)."""

    def __init__(self, base: str) -> None:
        url = httpx.URL(base)
        self.host, self.port, self.prefix = url.host, url.port or 80, url.raw_path.decode()
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._streams is None:
            self._streams = await asyncio.open_connection(self.host, self.port)
        return self._streams

    async def post(self, path: str, body: bytes) -> int:
        reader, writer = await self.open()
        head = (
            f"POST {self.prefix}{path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/fhir+json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        writer.write(head.encode() + body)
        header = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        status = int(header.split(" ", 2)[1])
        fields = dict(
            (name.strip().lower(), value.strip())
            for name, _, value in (line.partition(":") for line in header.split("\r\n")[1:])
        )
        if fields.get("transfer-encoding", "").lower() == "chunked":
            while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
                await reader.readexactly(size + 2)
            await reader.readuntil(b"\r\n")
        else:
            await reader.readexactly(int(fields.get("content-length", "0")))
        if fields.get("connection", "").lower() == "close":
            await self.close()
        return status

    async def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None


def _socket_owners(pids: list[int]) -> dict[int, int]:
    """Socket inode -> the process (of ``pids``) that has it open."""
    owners: dict[int, int] = {}
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                owners[int(link[8:-1])] = pid
    return owners


def _accepted_by(pids: list[int], server_port: int, client_port: int) -> int | None:
    """The server process that accepted the connection from ``client_port`` (Linux:
    ``/proc/net/tcp``), or None while it is not accepted yet."""
    wanted = (f"{server_port:04X}", f"{client_port:04X}")
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                ports = (fields[1].rsplit(":", 1)[1], fields[2].rsplit(":", 1)[1])
                if ports == wanted:
                    return _socket_owners(pids).get(int(fields[9]))
    return None


async def _spread(
    base: str, clients: int, workers: int, pids: list[int]
) -> tuple[list[_Connection], dict]:
    """``clients`` connections spread evenly over the server's worker processes (each
    accepts what it can when several connect at once, so one worker may get all of them):
    a connection accepted by a worker that has its share already is made again."""
    connections: list[_Connection] = []
    per_worker: Counter[int] = Counter()
    share = -(-clients // workers)
    for _ in range(clients * 20):
        if len(connections) == clients:
            break
        connection = _Connection(base)
        reader, writer = await connection.open()
        port = writer.get_extra_info("sockname")[1]
        owner = None
        for _ in range(200):
            owner = _accepted_by(pids, connection.port, port)
            if owner is not None:
                break
            await asyncio.sleep(0.005)
        if owner is not None and per_worker[owner] >= share:
            await connection.close()
            continue
        per_worker[owner or 0] += 1
        connections.append(connection)
    return connections, {str(pid): n for pid, n in sorted(per_worker.items())}


def _taken(free: list[dict], slot: dict, window: int) -> None:
    """Drop a taken ``slot`` from ``free``. It was picked among the first ``window``
    entries and only entries are removed since, so it is among them still (or gone): a
    search by identity there, not ``free.remove`` (dict comparisons along tens of
    thousands of slots cost the bench milliseconds of CPU a request, taken from the
    server on a small machine)."""
    for at in range(min(window, len(free))):
        if free[at] is slot:
            del free[at]
            return


async def _book(
    base: str,
    args: argparse.Namespace,
    slots: list[dict],
    patients: list[str],
    actors: dict,
    pids: list[int],
) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    free = list(slots)
    rng = random.Random(1)
    connections, per_worker = await _spread(base, args.clients, args.workers, pids)
    deadline = time.monotonic() + args.duration

    start = time.perf_counter()
    # --rate: each client's requests are due every `interval` seconds, the clients
    # staggered; a request is timed from when it was due, so a late answer also counts
    # against the requests it held up (no coordinated omission)
    interval = args.clients / args.rate if args.rate else 0.0

    async def client(n: int, connection: _Connection) -> None:
        due = start + interval * n / args.clients
        try:
            while time.monotonic() < deadline and free:
                slot = free[rng.randrange(min(len(free), args.window))]
                body = _body(slot, patients[n % len(patients)], actors[slot["id"]])
                began = time.perf_counter()
                if interval:
                    if due > began:
                        await asyncio.sleep(due - began)
                    began = due
                    due += interval
                status = await connection.post("/Appointment/$book", json.dumps(body).encode())
                latencies.append(time.perf_counter() - began)
                statuses[status] += 1
                if status in (201, 409):
                    _taken(free, slot, args.window)  # by this client or another
        finally:
            await connection.close()

    await asyncio.gather(*(client(n, c) for n, c in enumerate(connections)))
    seconds = time.perf_counter() - start
    return {
        "offered_requests_per_s": args.rate or "as fast as answered",
        "seconds": round(seconds, 1),
        "bookings": statuses[201],
        "bookings_per_s": round(statuses[201] / seconds, 1),
        "requests_per_s": round(sum(statuses.values()) / seconds, 1),
        "p50_ms": round(_percentile(latencies, 50) * 1000, 1),
        "p99_ms": round(_percentile(latencies, 99) * 1000, 1),
        "statuses": dict(sorted(statuses.items())),
        "connections_per_worker": per_worker,
    }


async def _find(base: str, practitioner: str, first: date, finds: int) -> dict[str, Any]:
    params = {
        "start": first.isoformat(),
        "end": (first + timedelta(days=28)).isoformat(),
        "practitioner": practitioner,
    }
    latencies: list[float] = []
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        proposals = 0
        for _ in range(finds):
            began = time.perf_counter()
            answer = await http.get("/Appointment/$find", params=params)
            latencies.append(time.perf_counter() - began)
            assert answer.status_code == 200, answer.text
            proposals = len(answer.json().get("entry", []))
    return {
        "requests": finds,
        "proposals_on_first_page": proposals,
        "p50_ms": round(statistics.median(latencies) * 1000, 1),
        "p99_ms": round(_percentile(latencies, 99) * 1000, 1),
    }


async def _audit(base: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base, timeout=120) as http:
        booked = await _all(
            http, "/Appointment", {"status": "booked", "_count": "1000", "_elements": "slot"}
        )
        holders = Counter(s["reference"] for a in booked for s in a.get("slot", []))
        busy = await _all(http, "/Slot", {"status": "busy", "_count": "1000", "_elements": "id"})
        busy_ids = {f"Slot/{s['id']}" for s in busy}
        total = (await http.get("/", params={"_summary": "count"})).json().get("total")
    return {
        "booked_appointments": len(booked),
        "double_booked_slots": sum(1 for n in holders.values() if n > 1),
        "booked_on_a_slot_not_busy": sum(1 for s in holders if s not in busy_ids),
        "resources_in_store": total,
    }


async def _prepare(base: str, practitioners: list[str], clients: int) -> tuple[list, list, dict]:
    async with httpx.AsyncClient(base_url=base, timeout=120) as http:
        # a patient per client, no more: a search returning the 20,000 patients of the 1M
        # store is 20,000 AuditEvents (one per patient), written during the bookings
        listed = await http.get("/Patient", params={"_count": str(clients), "_elements": "id"})
        patients = [f"Patient/{e['resource']['id']}" for e in listed.json().get("entry", [])]
        slots: list[dict] = []
        actors: dict[str, list[str]] = {}
        for practitioner in practitioners:
            schedules = (await http.get("/Schedule", params={"actor": practitioner})).json()
            for entry in schedules.get("entry", []):
                schedule = entry["resource"]
                people = [a["reference"] for a in schedule["actor"]]
                found = await _all(
                    http,
                    "/Slot",
                    {"schedule": f"Schedule/{schedule['id']}", "status": "free", "_count": "1000"},
                )
                for slot in found:
                    actors[slot["id"]] = [p for p in people if p.startswith("Practitioner/")]
                slots += found
    return slots, patients, actors


async def _settle(base: str, seconds: float = 60.0) -> None:
    """Wait until the AuditEvents of the requests so far are written (their count stays
    the same over two polls, a second and a half apart; the trail writes every second),
    so that what comes next is measured without them."""
    async with httpx.AsyncClient(base_url=base, timeout=120) as http:
        deadline, last = time.monotonic() + seconds, None
        while time.monotonic() < deadline:
            answer = await http.get("/AuditEvent", params={"_summary": "count"})
            total = answer.json().get("total")
            if total == last:
                return
            last = total
            await asyncio.sleep(1.5)


def _spy(pids: list[int], args: argparse.Namespace) -> list[subprocess.Popen[bytes]]:
    """``py-spy record`` of each server process during the bookings (``--py-spy DIR``)."""
    if not args.py_spy:
        return []
    Path(args.py_spy).mkdir(parents=True, exist_ok=True)
    spy = str(Path(sys.executable).parent / "py-spy")
    folder = Path(args.py_spy)
    options = f"--duration {int(args.duration)} --rate 200 --format raw --idle --threads".split()
    return [
        subprocess.Popen(
            [spy, "record", "--pid", str(pid), *options, "--output", str(folder / f"{pid}.txt")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for pid in pids
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=200)
    parser.add_argument("--practitioners", type=int, default=20)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--window", type=int, default=64, help="free slots clients pick from")
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="$book requests a second offered by all clients together, each timed from"
        " when it was due (default 0: each client books again as soon as answered)",
    )
    parser.add_argument("--finds", type=int, default=300)
    parser.add_argument("--storage", help="an existing store to use (default: a new file)")
    parser.add_argument("--py-spy", help="a folder: py-spy samples of each server process")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sched-bench-") as tmp:
        storage = args.storage or f"sqlite:///{Path(tmp) / 'fhir.sqlite3'}"
        began = time.perf_counter()
        if not args.storage:
            _cli("demo-data", "--patients", str(args.patients), "--storage", storage, "--quiet")
        first = date.today() + timedelta(days=7)
        practitioners = [f"Practitioner/bench-dr-{n}" for n in range(args.practitioners)]
        port = free_port()
        server = ServerProcess(
            [sys.executable, "-m", "fhir_server.cli", "serve", "--port", str(port)],
            port,
            "/fhir/metadata",
            Path(tmp) / "server.log",
            env={
                "FHIR_SERVER_STORAGE": storage,
                "FHIR_SERVER_AUTH": "off",
                "FHIR_SERVER_WORKERS": str(args.workers),
                "FHIR_SERVER_LOG_LEVEL": "warning",
            },
        )
        server.start()
        try:
            base = f"{server.url}/fhir"
            for practitioner in practitioners:
                scheduled = httpx.get(
                    f"{base}/Schedule", params={"actor": practitioner, "_summary": "count"}
                )
                if scheduled.json().get("total"):
                    continue  # an earlier run's store (--storage): its slots are there
                body = {
                    "resourceType": "Practitioner",
                    "id": practitioner.removeprefix("Practitioner/"),
                    "name": [{"family": "Bench"}],
                }
                answer = httpx.put(f"{base}/{practitioner}", json=body, timeout=60)
                assert answer.status_code in (200, 201), answer.text
                _cli(
                    "schedule", "create", "--storage", storage, "--actor", practitioner,
                    "--from", first.isoformat(), "--to", (first + timedelta(days=27)).isoformat(),
                    "--days", "mon-fri", "--hours", "09:00-12:00,13:00-17:00", "--slot", "20m",
                )  # fmt: skip
            setup = round(time.perf_counter() - began, 1)
            slots, patients, actors = asyncio.run(_prepare(base, practitioners, args.clients))
            asyncio.run(_settle(base))
            cpu = _cpu_seconds(server.pids())
            client_cpu = time.process_time()
            spies = _spy(server.pids(), args)
            booking = asyncio.run(_book(base, args, slots, patients, actors, server.pids()))
            spent = _cpu_seconds(server.pids()) - cpu
            booking["client_cpu_s"] = round(time.process_time() - client_cpu, 2)
            for spy in spies:
                spy.wait()
            booking["server_cpu_ms_per_request"] = round(
                spent * 1000 / max(1, sum(booking["statuses"].values())), 2
            )
            asyncio.run(_settle(base))  # $find alone: the bookings' AuditEvents written
            finding = asyncio.run(_find(base, practitioners[-1], first, args.finds))
            audit = asyncio.run(_audit(base))
        finally:
            server.stop()
    print(
        json.dumps(
            {
                "workers": args.workers,
                "clients": args.clients,
                "patients": args.patients,
                "free_slots": len(slots),
                "setup_s": setup,
                "book": booking,
                "find_4_weeks": finding,
                "audit": audit,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
