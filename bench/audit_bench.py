"""What the audit trail costs the reads (issue 21: "reads stay within 10% of their speed
without audit"): the same server, the same data and the same wrk load, with
``FHIR_SERVER_AUDIT=off`` and ``on``, alternated round after round.

    .venv/bin/python bench/audit_bench.py --patients 200 --duration 10 --rounds 3
    .venv/bin/python bench/audit_bench.py --workdir /tmp/b200   # keep the data, reuse it

The data and the SMART backend client are those of ``bench/run.py`` (``fhir-server
demo-data`` + ``fhir-server import``; ``client_credentials`` tokens with ``system/*.rs``).
Each round starts one server with audit off and one with audit on (``fhir-server serve
--workers W``, log level ``warning``), and runs every scenario (``read``: ``GET
Patient/{id}``; ``search``: ``Observation?patient=X&code=Y&_sort=-date``; ``everything``:
``Patient/{id}/$everything``) for ``--duration`` seconds after a warm-up, then waits 6 s
(the trail writes the reads it grouped over its 5 s window) and reads the CPU seconds the
server's processes used (``/proc/PID/stat``): CPU per request is the cost that the
machine's load does not blur. Shared machines
drift by up to 20% from one minute to the next: alternating off and on and taking the
median of the rounds (``--rounds``) compares like with like. With audit on, every
request of a round is an AuditEvent (or more: one per patient a search returned) written
by the server while it serves the next ones; the figure printed is the rate with audit
on over the rate with audit off, and the AuditEvents written (counted in the store at
the end).

Prints a table and writes ``bench/results/audit-<store>-<patients>p.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import ROOT, Load, ServerProcess, ensure_wrk, free_port, run_wrk  # noqa: E402
from bench.run import READ_SCOPE, _client, _prepare  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    wrk = ensure_wrk()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="audit-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{workdir / 'fhir.sqlite3'}"
    args.seed, args.import_workers = 1, None
    _prepare(args, workdir, storage)
    client = _client(workdir, storage)
    log = workdir / "server.log"
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for round_ in range(args.rounds):
        for audit in ("off", "on") if round_ % 2 == 0 else ("on", "off"):
            server = _server(storage, args.workers, audit, log).start()
            try:
                token = client.token(server.url, READ_SCOPE)
                for scenario in args.scenarios.split(","):
                    load = Load(args.connections, args.duration)
                    warm = Load(args.connections, args.warmup)
                    data = workdir / "data.txt"
                    run_wrk(wrk, server.url, scenario, data, warm, token=token, prefix="w")
                    before = _cpu_seconds(server)
                    result = run_wrk(wrk, server.url, scenario, data, load, token=token)
                    time.sleep(6.0)  # the trail writes what it still holds (a 5 s window)
                    used = _cpu_seconds(server) - before
                    result["cpu_us_per_request"] = round(used / max(result["requests"], 1) * 1e6, 1)
                    runs.setdefault(scenario, {}).setdefault(audit, []).append(result)
                    print(
                        f"round {round_ + 1}, audit {audit:3}, {scenario:10}:"
                        f" {result['requests_per_s']:8.1f} req/s  p50 {result['p50_ms']} ms"
                        f"  p99 {result['p99_ms']} ms"
                        f"  CPU {result['cpu_us_per_request']} us/request"
                        f"  errors {result['errors']}",
                        flush=True,
                    )
            finally:
                server.stop()
    rows = [_row(scenario, by_audit) for scenario, by_audit in runs.items()]
    events = _audit_events(storage)
    _print(rows, events)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"audit-sqlite-{args.patients}p.json"
    settings = {k: v for k, v in vars(args).items() if k != "workdir"}
    out.write_text(json.dumps({"settings": settings, "rows": rows, "audit_events": events}))
    print(f"written to {out}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=200)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--scenarios", default="read,search,everything")
    parser.add_argument("--workdir", help="keep the data here and reuse it")
    return parser


def _server(storage: str, workers: int, audit: str, log: Path) -> ServerProcess:
    port = free_port()
    command = [sys.executable, "-m", "fhir_server.cli", "serve", "--port", str(port)]
    command += ["--workers", str(workers), "--storage", storage]
    env = {"FHIR_SERVER_LOG_LEVEL": "warning", "FHIR_SERVER_AUDIT": audit}
    return ServerProcess(command, port, "/fhir/metadata", log, env)


def _cpu_seconds(server: ServerProcess) -> float:
    """CPU seconds (user + system) the server's processes have used so far."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in server.pids():
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _row(scenario: str, by_audit: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    off = [r["requests_per_s"] for r in by_audit["off"]]
    on = [r["requests_per_s"] for r in by_audit["on"]]
    p50 = {k: statistics.median(r["p50_ms"] for r in v) for k, v in by_audit.items()}
    p99 = {k: statistics.median(r["p99_ms"] for r in v) for k, v in by_audit.items()}
    cpu = {k: statistics.median(r["cpu_us_per_request"] for r in v) for k, v in by_audit.items()}
    return {
        "scenario": scenario,
        "off_per_s": off,
        "on_per_s": on,
        "off_median": statistics.median(off),
        "on_median": statistics.median(on),
        "on_over_off": round(statistics.median(on) / statistics.median(off), 3),
        "cpu_us_per_request": cpu,
        "cpu_on_over_off": round(cpu["on"] / cpu["off"], 3),
        "p50_ms": p50,
        "p99_ms": p99,
        "errors": sum(r["errors"] for v in by_audit.values() for r in v),
    }


def _audit_events(storage: str) -> int:
    with sqlite3.connect(storage[len("sqlite:///") :]) as conn:
        found = conn.execute("SELECT count(*) FROM resource WHERE type = 'AuditEvent'")
        return int(found.fetchone()[0])


def _print(rows: list[dict[str, Any]], events: int) -> None:
    print()
    print(
        f"{'scenario':12} {'off req/s':>10} {'on req/s':>10} {'on/off':>7}"
        "  CPU us/req off/on  on/off  p50 off/on ms  p99 off/on ms"
    )
    for r in rows:
        print(
            f"{r['scenario']:12} {r['off_median']:10.1f} {r['on_median']:10.1f}"
            f" {r['on_over_off']:7.3f}  {r['cpu_us_per_request']['off']:8.0f}/"
            f"{r['cpu_us_per_request']['on']:<8.0f} {r['cpu_on_over_off']:6.3f}"
            f"  {r['p50_ms']['off']:.2f}/{r['p50_ms']['on']:.2f}"
            f"       {r['p99_ms']['off']:.2f}/{r['p99_ms']['on']:.2f}"
        )
    print(f"AuditEvents in the store at the end: {events:,}")
    print(time.strftime("%Y-%m-%dT%H:%M:%S"))


if __name__ == "__main__":
    raise SystemExit(main())
