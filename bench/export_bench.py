"""``$export`` on a live ``fhir-server serve`` (issue 16): resources written per second,
the server's memory while it exports, and read latency meanwhile.

    .venv/bin/python bench/export_bench.py --storage sqlite:////tmp/b/fhir.sqlite3

Load the store first (``fhir-server demo-data --patients N --storage ...`` or
``bench/run.py --workdir``). The server runs with ``--auth off`` (the export reads
through the same store calls with a token: an unrestricted one adds no condition) and
one worker. The benchmark kicks off a system-level export, and until the manifest is
there reads ``Patient/{id}`` in a loop (one client) and samples the server's RSS from
``/proc`` every 0.1 s. It prints one JSON object: resources, seconds, resources/s, RSS
at the start and its peak growth, read count and p50/p99 in ms, for each of ``--repeat``
exports in a row (the growth against the RSS before the first).

``--path 'Patient/$export'`` (and ``--query organizeOutputBy=Patient``, ...) measures the
other levels and options. The server inherits the environment (``FHIR_SERVER_AUDIT=off``
leaves the reads meanwhile unaudited, as before audit existed).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.live import LiveServer  # noqa: E402


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--storage", required=True)
    parser.add_argument("--workdir", default="/tmp/export-bench")
    parser.add_argument("--type", default="", help="_type (default: every type)")
    parser.add_argument("--path", default="$export", help="the kick-off path")
    parser.add_argument("--query", default="", help="more kick-off parameters (a=b&c=d)")
    parser.add_argument("--repeat", type=int, default=2, help="exports one after the other")
    args = parser.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    live = LiveServer(
        args.storage, work / "server.log", auth="off", FHIR_SERVER_EXPORT_DIR=str(work / "ex")
    )
    try:
        ids = [
            e["resource"]["id"]
            for e in httpx.get(f"{live.base}/Patient?_count=200&_elements=id").json()["entry"]
        ]
        start_rss = rss_mb(live.process.pid)
        for run in range(args.repeat):
            given = (f"_type={args.type}" if args.type else "", args.query)
            query = "&".join(q for q in given if q)
            figures = export_once(live, args.path, query, ids, start_rss)
            print(json.dumps({"run": run + 1, **figures}))
    finally:
        live.stop()


def export_once(live: LiveServer, path: str, query: str, ids: list[str], start_rss: float) -> dict:
    """One export with reads meanwhile; RSS growth is against the server's RSS before
    the first export."""
    pid = live.process.pid
    peak = start_rss
    stop = threading.Event()
    latencies: list[float] = []

    def reads() -> None:
        with httpx.Client() as http:
            n = 0
            while not stop.is_set():
                started = time.perf_counter()
                http.get(f"{live.base}/Patient/{ids[n % len(ids)]}")
                latencies.append((time.perf_counter() - started) * 1000)
                n += 1
                time.sleep(0.01)

    reader = threading.Thread(target=reads)
    started = time.perf_counter()
    url = f"{live.base}/{path}" + (f"?{query}" if query else "")
    kick = httpx.get(url, headers={"Prefer": "respond-async"})
    assert kick.status_code == 202, kick.text
    reader.start()
    status_url = kick.headers["Content-Location"]
    while True:
        peak = max(peak, rss_mb(pid))
        status = httpx.get(status_url)
        if status.status_code != 202:
            break
        time.sleep(0.1)
    seconds = time.perf_counter() - started
    stop.set()
    reader.join()
    manifest = status.json()
    count = sum(e["count"] for e in manifest["output"])  # (organized: headers included)
    latencies.sort()
    httpx.delete(status_url)
    return {
        "resources": count,
        "files": len(manifest["output"]),
        "seconds": round(seconds, 2),
        "resources_per_s": round(count / seconds),
        "rss_start_mb": round(start_rss),
        "rss_peak_growth_mb": round(peak - start_rss, 1),
        "reads": len(latencies),
        "read_p50_ms": round(statistics.median(latencies), 1) if latencies else None,
        "read_p99_ms": round(latencies[int(len(latencies) * 0.99)], 1) if latencies else None,
    }


if __name__ == "__main__":
    main()
