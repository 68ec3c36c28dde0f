"""Bulk import benchmark on the embedded SQLite store (numbers, not pass/fail).

Generates the demo population for N patients (``fhir_server.demo_data``, about 50
resources a patient) into bulk-export NDJSON files in a temporary folder, then times
``fhir-server import`` on them in a child process: once into an empty store for each
``--workers`` value, then a second import of the same files into the last store (every
resource unchanged: nothing is written). For each run it prints resources/s and the peak
resident memory of the child (``os.wait4`` rusage; with workers, the largest process).

Targets (issue 5, on a 2-core machine): at least 2,000 resources/s, peak memory under
500 MB for 100,000 resources.

With ``--workers N`` the import prepares resources (parse, validate, index, serialise)
in N worker processes and the main process only writes; on 2 cores 1 worker is fastest
(the writing process keeps the other core busy; ``default_workers()`` = cores - 1).

Usage: ``python bench/import_bench.py --patients 2000 [--workers 0 1 2]``
Prints a table and writes ``bench/results/import-sqlite.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

from fhir_server.demo_data import Population, write_ndjson

RESULTS = Path(__file__).parent / "results"


def run_import(folder: Path, db: Path, workers: int) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "fhir_server.cli",
        "import",
        str(folder),
        "--storage",
        f"sqlite:///{db}",
        "--quiet",
        "--workers",
        str(workers),
    ]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        child = subprocess.Popen(command, stdout=out, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)  # the child's own rusage (peak RSS)
        seconds = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        output, errors = out.read().decode(), err.read().decode()
    if child.returncode != 0:
        raise SystemExit(f"import failed ({child.returncode}):\n{errors}\n{output}")
    summary = output.strip().splitlines()
    return {
        "workers": workers,
        "seconds": round(seconds, 2),
        "summary": summary[-1] if summary else "",
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--patients", type=int, default=400)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="import-bench-") as tmp:
        folder = Path(tmp) / "ndjson"
        start = time.perf_counter()
        counts = write_ndjson(Population(args.patients, args.seed, date(2025, 3, 12)), folder)
        generate = time.perf_counter() - start
        total = sum(counts.values())
        size = sum(p.stat().st_size for p in folder.iterdir())
        print(
            f"demo data: {args.patients:,} patients, {total:,} resources, {len(counts)} types,"
            f" {size / 1e6:.1f} MB NDJSON, generated in {generate:.1f} s"
        )
        runs = []
        for workers in args.workers:
            db = Path(tmp) / f"w{workers}.sqlite3"
            runs.append({"run": "first import", **run_import(folder, db, workers)})
        runs.append({"run": "same files again", **run_import(folder, db, args.workers[-1])})

    print(
        f"\n{'run':<18}{'workers':>8}{'seconds':>9}{'resources/s':>13}{'peak RSS':>11}{'CPU s':>8}"
    )
    for r in runs:
        rate = total / r["seconds"]
        r["resources_per_second"] = round(rate)
        print(
            f"{r['run']:<18}{r['workers']:>8}{r['seconds']:>9.1f}{rate:>13,.0f}"
            f"{r['peak_rss_mb']:>8.0f} MB{r['cpu_seconds']:>8.1f}"
        )
    RESULTS.mkdir(exist_ok=True)
    result = {
        "patients": args.patients,
        "resources": total,
        "ndjson_bytes": size,
        "cpus": os.cpu_count(),
        "counts": dict(sorted(counts.items())),
        "runs": runs,
    }
    (RESULTS / "import-sqlite.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
