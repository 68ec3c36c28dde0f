"""The HTTP benchmark, one command: the server against the raw limit, measured side by side.

    .venv/bin/python bench/run.py --patients 2000                # ~100k resources, SQLite
    .venv/bin/python bench/run.py --patients 200 --duration 5    # a quick check
    .venv/bin/python bench/run.py --patients 2000 --soak         # plus 32 connections, 60 s

1. Writes the demo population (``fhir-server demo-data --patients N --ndjson``, fixed
   date and seed: the same data every run) and loads it into a fresh store with
   ``fhir-server import`` in a child process (resources/s, peak RSS).
2. Registers a SMART backend-services client (``fhir-server clients create --auth
   private_key_jwt``); every authorized scenario first gets an access token from the
   server's own token endpoint (client_credentials grant, RS384 client assertion):
   ``system/*.rs`` for the reads and searches, ``system/*.cruds`` for the writes.
3. For each ``--workers`` value, one after the other on 127.0.0.1, each driven by wrk from
   its own process (``bench/wrk/fhir.lua``, ``--duration`` seconds after ``--warmup``):
   the raw limit (``bench/raw_app.py``: FastAPI + uvicorn returning the stored bytes of a
   Patient from the same SQLite file), ``fhir-server serve --auth off`` (reads), then
   ``fhir-server serve`` with SMART authorization on (reads, selective search, _include,
   chained search, history, ``Patient/{id}/$everything`` (``--everything-connections``,
   default 4), a CRUD mix, ingest of transaction Bundles of 1 Patient + 20 Observations).
4. With ``--soak``: 32 connections for 60 s of a mix of every request kind; any error
   (socket error or non-2xx answer) makes the command exit with status 1.

Every figure is printed with its ratio to the raw limit measured in the same run with the
same number of processes (``x raw``): absolute numbers drift on shared machines, ratios
measured side by side hold. The table is written as JSON to ``bench/results/`` (not
committed; the README keeps the reference run).

``--storage mongodb://…/DB``: a real MongoDB (use a database of its own: it is filled and
not dropped); the raw app then reads a side SQLite file holding the same Patients.
``mongomock://`` cannot be benchmarked over HTTP: the stand-in keeps its data inside one
process, and its figures would mean little anyway (every query scans in Python; see
bench/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (  # noqa: E402
    ROOT,
    BackendClient,
    Load,
    ServerProcess,
    ensure_wrk,
    free_port,
    process_tree,
    read_into_page_cache,
    run_wrk,
)
from bench.report import print_table, targets  # noqa: E402

RESULTS = ROOT / "bench" / "results"
TODAY = "2025-03-12"
READ_SCOPE, WRITE_SCOPE = "system/*.rs", "system/*.cruds"
SCENARIOS = ("read", "search", "include", "chain", "history", "everything", "crud", "ingest")
BUNDLE_RESOURCES = 21  # 1 Patient + 20 Observations per transaction


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.storage and args.storage.startswith("mongomock:"):
        raise SystemExit(
            "mongomock:// keeps its data inside one process, so a server in another process"
            " cannot see it (and its figures would mean little: every query scans in"
            " Python). Use bench/search_bench.py --storage mongomock://… for the shape of"
            " its documents, or a real mongodb:// URL here."
        )
    wrk = ensure_wrk()
    if args.workdir:
        workdir = Path(args.workdir).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        return _run(args, wrk, workdir)
    with tempfile.TemporaryDirectory(prefix="fhir-bench-") as tmp:
        return _run(args, wrk, Path(tmp))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--patients", type=int, default=200, help="demo population size")
    parser.add_argument("--storage", help="storage URL (default: a new SQLite file)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per scenario")
    parser.add_argument("--warmup", type=float, default=2.0, help="untimed seconds before")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--ingest-connections", type=int, default=4)
    parser.add_argument(
        "--everything-connections",
        type=int,
        default=4,
        help="connections of the $everything scenario (its target is a latency)",
    )
    parser.add_argument(
        "--ingest-bundles", type=int, default=2000, help="at most this many Bundles per run"
    )
    parser.add_argument("--wrk-threads", type=int, default=1)
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="timed runs per scenario (the median is reported; these machines drift)",
    )
    parser.add_argument(
        "--import-workers", type=int, default=None, help="default: fhir-server import's own"
    )
    parser.add_argument("--scenarios", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument("--no-raw", action="store_true", help="skip the raw limit")
    parser.add_argument(
        "--no-page-cache",
        action="store_true",
        help="do not read the SQLite file into the OS page cache before each server starts",
    )
    parser.add_argument("--no-auth-off", action="store_true", help="skip the auth-off reads")
    parser.add_argument("--soak", action="store_true", help="32 connections for 60 s, no errors")
    parser.add_argument("--soak-duration", type=float, default=60.0)
    parser.add_argument("--soak-connections", type=int, default=32)
    parser.add_argument("--server-log-level", default="info", help="the server's log level")
    parser.add_argument(
        "--analyze",
        action="store_true",
        help="run SQLite's ANALYZE on the store after the import (the server does not)",
    )
    parser.add_argument(
        "--workdir", help="keep the data here; a later run with the same folder reuses it"
    )
    parser.add_argument("--out", help="JSON results file (default: bench/results/…)")
    parser.add_argument("--seed", type=int, default=1)
    return parser


def _run(args: argparse.Namespace, wrk: str, workdir: Path) -> int:
    storage = args.storage or f"sqlite:///{workdir / 'fhir.sqlite3'}"
    data = _prepare(args, workdir, storage)
    client = _client(workdir, storage)
    raw_db = _raw_database(storage, workdir, data["ndjson"])
    if args.analyze:
        _analyze(storage)
    log = workdir / "servers.log"
    rows: list[dict[str, Any]] = [data["import_row"]]
    bench = _Bench(args, wrk, workdir / "data.txt", log)
    for workers in args.workers:
        if not args.no_raw:
            rows.append(bench.raw(raw_db, workers))
        if not args.no_auth_off and "read" in args.scenarios:
            rows += bench.fhir(storage, workers, "off", ["read"], None)
        rows += bench.fhir(storage, workers, "smart", args.scenarios, client)
    soak = None
    if args.soak:
        soak = bench.soak(storage, max(args.workers), client)
        rows.append(soak)
    _ratios(rows)
    result = {
        "command": " ".join([Path(sys.executable).name, "bench/run.py", *sys.argv[1:]]),
        "started": data["started"],
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "storage": (storage if args.storage else "sqlite (new file)")
        + (", ANALYZEd" if args.analyze else ""),
        "patients": args.patients,
        "resources": data["resources"],
        "rows": rows,
    }
    result["targets"] = targets(rows, data["resources"])
    print_table(result)
    out = Path(args.out) if args.out else RESULTS / _result_name(args)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten to {out}")
    return 1 if soak is not None and soak["errors"] else 0


def _result_name(args: argparse.Namespace) -> str:
    kind = (args.storage or "sqlite").split(":", 1)[0]
    return f"run-{kind}-{args.patients}p.json"


# -- data -------------------------------------------------------------------------------------


def _prepare(args: argparse.Namespace, workdir: Path, storage: str) -> dict[str, Any]:
    """The NDJSON, the store loaded by ``fhir-server import`` and the wrk data file;
    reused from ``workdir`` when an earlier run made them for the same size."""
    marker = workdir / "prepared.json"
    if marker.exists():
        prepared = json.loads(marker.read_text())
        if prepared["patients"] == args.patients and prepared["storage"] == storage:
            print(f"reusing the data in {workdir} (import figures from its first run)")
            return {**prepared, "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    ndjson = workdir / "ndjson"
    t0 = time.perf_counter()
    _cli(["demo-data", "--patients", str(args.patients), "--seed", str(args.seed)]
         + ["--today", TODAY, "--ndjson", str(ndjson)])  # fmt: skip
    resources = sum(_count_lines(p) for p in ndjson.glob("*.ndjson"))
    print(f"demo data: {resources:,} resources in {time.perf_counter() - t0:.1f} s", flush=True)
    import_row = _import(ndjson, storage, args.import_workers, resources)
    _write_datafile(ndjson, workdir / "data.txt", args.seed)
    prepared = {
        "patients": args.patients,
        "storage": storage,
        "resources": resources,
        "ndjson": str(ndjson),
        "import_row": import_row,
    }
    marker.write_text(json.dumps(prepared, indent=2))
    return {**prepared, "started": started}


def _count_lines(path: Path) -> int:
    with path.open("rb") as file:
        return sum(1 for _ in file)


def _cli(arguments: list[str]) -> str:
    command = [sys.executable, "-m", "fhir_server.cli", *arguments]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(arguments[:2])} failed:\n{done.stderr}\n{done.stdout}")
    return done.stdout


def _import(ndjson: Path, storage: str, workers: int | None, resources: int) -> dict[str, Any]:
    """``fhir-server import`` in a child process: resources/s and the peak RSS of its
    process tree (sampled from /proc every 0.1 s)."""
    command = [sys.executable, "-m", "fhir_server.cli", "import", str(ndjson)]
    command += ["--storage", storage, "--quiet"]
    if workers is not None:
        command += ["--workers", str(workers)]
    print(f"importing into {storage} ...", flush=True)
    with tempfile.TemporaryFile() as out:
        start = time.perf_counter()
        child = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        peak = 0
        while child.poll() is None:
            peak = max(peak, _tree_rss_kb(child.pid))
            time.sleep(0.1)
        seconds = time.perf_counter() - start
        out.seek(0)
        output = out.read().decode(errors="replace")
    if child.returncode != 0:
        raise SystemExit(f"import failed ({child.returncode}):\n{output[-3000:]}")
    rate = resources / seconds
    print(f"import: {resources:,} resources in {seconds:.1f} s ({rate:,.0f}/s)", flush=True)
    return {
        "scenario": "import",
        "workers": workers if workers is not None else "default",
        "auth": "-",
        "seconds": round(seconds, 2),
        "resources": resources,
        "resources_per_s": round(rate, 1),
        "errors": 0,
        "peak_rss_mb": round(peak / 1024, 1),
        "summary": output.strip().splitlines()[-1] if output.strip() else "",
    }


def _tree_rss_kb(pid: int) -> int:
    total = 0
    for member in process_tree(pid):
        try:
            status = Path(f"/proc/{member}/status").read_text()
        except FileNotFoundError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def _write_datafile(ndjson: Path, datafile: Path, seed: int) -> None:
    """``p PATIENT MRN`` for every Patient; ``s PATIENT LOINC`` for up to 20,000
    (patient, code) pairs that have Observations."""
    lines = []
    with (ndjson / "Patient.ndjson").open("rb") as file:
        for raw in file:
            patient = orjson.loads(raw)
            mrn = next(
                i["value"] for i in patient["identifier"] if i.get("system") == "urn:demo:mrn"
            )
            lines.append(f"p {patient['id']} {mrn}")
    found: set[tuple[str, str]] = set()
    with (ndjson / "Observation.ndjson").open("rb") as file:
        for raw in file:
            observation = orjson.loads(raw)
            subject = observation.get("subject", {}).get("reference", "")
            if not subject.startswith("Patient/"):
                continue
            for coding in observation.get("code", {}).get("coding", []):
                if coding.get("system") == "http://loinc.org":
                    found.add((subject[len("Patient/") :], coding["code"]))
    pairs = sorted(found)
    random.Random(seed).shuffle(pairs)
    lines += [f"s {patient} {code}" for patient, code in pairs[:20_000]]
    datafile.write_text("\n".join(lines) + "\n")


def _client(workdir: Path, storage: str) -> BackendClient:
    return BackendClient(storage, workdir, WRITE_SCOPE)


def _analyze(storage: str) -> None:
    """Planner statistics (``sqlite_stat1``): without them SQLite may drive a search from
    the wrong index (see bench/README.md)."""
    if not storage.startswith("sqlite:///"):
        raise SystemExit("--analyze is for SQLite stores")
    with sqlite3.connect(storage[len("sqlite:///") :]) as conn:
        conn.execute("ANALYZE")
    print("ANALYZE done", flush=True)


def _raw_database(storage: str, workdir: Path, ndjson: str) -> Path:
    """The SQLite file the raw app reads: the store itself, or (another store) a side
    file holding the same Patients."""
    if storage.startswith("sqlite:///"):
        return Path(storage[len("sqlite:///") :])
    side = workdir / "raw.sqlite3"
    if not side.exists():
        _cli(["import", str(Path(ndjson) / "Patient.ndjson"), "--storage", f"sqlite:///{side}"])
    return side


# -- scenarios ----------------------------------------------------------------------------------


class _Bench:
    def __init__(self, args: argparse.Namespace, wrk: str, datafile: Path, log: Path) -> None:
        self.args = args
        self.wrk = wrk
        self.datafile = datafile
        self.log = log
        self.run_id = f"r{int(time.time()) % 1_000_000}"

    def _load(self, scenario: str) -> Load:
        a = self.args
        if scenario == "ingest":
            return Load(a.ingest_connections, a.duration, a.wrk_threads, a.ingest_bundles)
        if scenario == "everything":
            return Load(a.everything_connections, a.duration, a.wrk_threads)
        return Load(a.connections, a.duration, a.wrk_threads)

    def _measure(
        self,
        server: ServerProcess,
        scenario: str,
        mode: str,
        load: Load,
        token: str | None,
        warmup: bool = True,
    ) -> dict[str, Any]:
        prefix = f"{self.run_id}{scenario[:2]}{server.port}"
        if warmup and self.args.warmup > 0:
            short = Load(load.connections, self.args.warmup, load.threads)
            run_wrk(self.wrk, server.url, mode, self.datafile, short, token=token, prefix="w")
        server.reset_peak_memory()
        runs = []
        for _ in range(1 if scenario == "soak" else max(1, self.args.repeat)):
            runs.append(
                run_wrk(
                    self.wrk, server.url, mode, self.datafile, load, token=token,
                    prefix=f"{prefix}{len(runs)}", seed=self.args.seed + len(runs),
                )
            )  # fmt: skip
        # the run with the median rate, its latencies with it; errors of every run
        result = sorted(runs, key=lambda r: r["requests_per_s"])[(len(runs) - 1) // 2]
        if len(runs) > 1:
            result = {**result, "errors": sum(r["errors"] for r in runs)}
            result["runs_per_s"] = [r["requests_per_s"] for r in runs]
        result.update(server.peak_memory())
        return result

    def page_cache(self, storage: str | Path) -> None:
        """Read the SQLite file (and its WAL) once, so that the timed scenarios find it
        in the OS page cache, as on a server with memory for its data: this machine's
        kernel hands cold file pages back to the host, and a scenario that starts on a
        half-evicted file measures the disk."""
        if self.args.no_page_cache:
            return
        read_into_page_cache(storage)

    def raw(self, db: Path, workers: int) -> dict[str, Any]:
        self.page_cache(db)
        port = free_port()
        command = [sys.executable, "-m", "uvicorn", "bench.raw_app:app", "--port", str(port)]
        command += ["--workers", str(workers), "--log-level", "warning", "--no-access-log"]
        first = self.datafile.read_text().split("\n", 1)[0].split()[1]
        server = ServerProcess(
            command, port, f"/fhir/Patient/{first}", self.log, {"BENCH_RAW_DB": str(db)}
        )
        print(f"raw limit, {workers} worker(s) ...", flush=True)
        server.start()
        try:
            result = self._measure(server, "read", "read", self._load("read"), None)
        finally:
            server.stop()
        row = {"scenario": "raw read", "workers": workers, "auth": "-", **result}
        print(f"  raw read: {_brief(row)}", flush=True)
        return row

    def _server(self, storage: str, workers: int, auth: str) -> ServerProcess:
        port = free_port()
        command = [sys.executable, "-m", "fhir_server.cli", "serve", "--port", str(port)]
        command += ["--workers", str(workers), "--storage", storage, "--auth", auth]
        env = {"FHIR_SERVER_LOG_LEVEL": self.args.server_log_level}
        return ServerProcess(command, port, "/fhir/metadata", self.log, env)

    def fhir(
        self,
        storage: str,
        workers: int,
        auth: str,
        scenarios: list[str],
        client: BackendClient | None,
    ) -> list[dict[str, Any]]:
        if storage.startswith("sqlite:///"):
            self.page_cache(storage)
        server = self._server(storage, workers, auth)
        print(f"server, {workers} worker(s), auth {auth} ...", flush=True)
        server.start()
        rows = []
        try:
            for scenario in scenarios:
                write = scenario in ("crud", "ingest")
                token = None
                if client is not None:
                    token = client.token(server.url, WRITE_SCOPE if write else READ_SCOPE)
                result = self._measure(
                    server, scenario, scenario, self._load(scenario), token, warmup=not write
                )
                row = {"scenario": scenario, "workers": workers, "auth": auth, **result}
                if scenario == "ingest":
                    ok = result["statuses"].get("200", 0)
                    row["resources_per_s"] = round(ok * BUNDLE_RESOURCES / result["seconds"], 1)
                rows.append(row)
                print(f"  {scenario}: {_brief(row)}", flush=True)
        finally:
            server.stop()
        return rows

    def soak(self, storage: str, workers: int, client: BackendClient) -> dict[str, Any]:
        if storage.startswith("sqlite:///"):
            self.page_cache(storage)
        server = self._server(storage, workers, "smart")
        a = self.args
        print(f"soak: {a.soak_connections} connections, {a.soak_duration:g} s ...", flush=True)
        server.start()
        try:
            token = client.token(server.url, WRITE_SCOPE)
            load = Load(a.soak_connections, a.soak_duration, a.wrk_threads)
            result = self._measure(server, "soak", "mix", load, token, warmup=False)
        finally:
            code = server.stop()
        row = {"scenario": "soak (mix)", "workers": workers, "auth": "smart", **result}
        row["server_exit"] = code
        print(f"  soak: {_brief(row)}", flush=True)
        return row


def _brief(row: dict[str, Any]) -> str:
    runs = row.get("runs_per_s")
    spread = f" (median of {' / '.join(f'{r:,.0f}' for r in runs)})" if runs else ""
    return (
        f"{row['requests_per_s']:,.0f} req/s{spread}, p50 {row['p50_ms']} ms,"
        f" p99 {row['p99_ms']} ms, {row['errors']} errors"
    )


def _ratios(rows: list[dict[str, Any]]) -> None:
    """``x_raw``: the row's rate (resources/s for ingest and import, else requests/s) over
    the raw read rate with the same number of processes (import: the 1-process one)."""
    raw = {r["workers"]: r["requests_per_s"] for r in rows if r["scenario"] == "raw read"}
    for row in rows:
        limit = raw.get(1 if row["scenario"] == "import" else row["workers"])
        rate = row.get("resources_per_s") or row.get("requests_per_s")
        row["x_raw"] = round(rate / limit, 3) if limit and rate else None


if __name__ == "__main__":
    sys.exit(main())
