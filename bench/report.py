"""The table ``bench/run.py`` prints, and its figures checked against the targets of the
benchmarks issue (on a 2-core machine, one worker unless said)."""

from __future__ import annotations

from typing import Any

_COLUMNS = (
    ("scenario", "<", 11),
    ("workers", ">", 7),
    ("auth", "<", 6),
    ("req/s", ">", 9),
    ("res/s", ">", 8),
    ("p50 ms", ">", 8),
    ("p99 ms", ">", 8),
    ("errors", ">", 7),
    ("RSS MB", ">", 7),
    ("x raw", ">", 7),
)


def _cells(row: dict[str, Any]) -> list[str]:
    def number(value: Any, digits: int = 0) -> str:
        return "" if value is None else f"{value:,.{digits}f}"

    return [
        row["scenario"],
        str(row["workers"]),
        row["auth"],
        number(row.get("requests_per_s")),
        number(row.get("resources_per_s")),
        number(row.get("p50_ms"), 2),
        number(row.get("p99_ms"), 2),
        str(row.get("errors", "")),
        number(row.get("peak_rss_mb")),
        number(row.get("x_raw"), 2),
    ]


def print_table(result: dict[str, Any]) -> None:
    print(
        f"\n{result['command']}\n{result['resources']:,} resources ({result['patients']:,}"
        f" patients), {result['storage']}, {result['machine']['cpus']} CPUs,"
        f" Python {result['machine']['python']}\n"
    )
    header = [f"{name:{align}{width}}" for name, align, width in _COLUMNS]
    print(" ".join(header))
    for row in result["rows"]:
        cells = _cells(row)
        print(" ".join(f"{c:{a}{w}}" for c, (_, a, w) in zip(cells, _COLUMNS, strict=True)))
    print(
        "\nreq/s: requests per second (ingest: Bundles); res/s: resources written per second;"
        "\nerrors: socket errors + non-2xx answers; RSS MB: peak resident memory of the"
        " server's processes\nduring the scenario, summed; x raw: the rate over the raw read"
        " limit with as many processes."
    )
    print("\ntargets:")
    for target in result["targets"]:
        mark = {True: "met", False: "NOT met", None: "not measured"}[target["met"]]
        print(f"  {target['target']}: {target['measured']} ({mark})")


def _row(rows: list[dict[str, Any]], scenario: str, workers: int, auth: str = "smart") -> Any:
    return next(
        (
            r
            for r in rows
            if r["scenario"] == scenario and r["workers"] == workers and r["auth"] == auth
        ),
        None,
    )


def targets(rows: list[dict[str, Any]], resources: int) -> list[dict[str, Any]]:
    """The issue's targets, each with what this run measured and whether it was met."""
    out: list[dict[str, Any]] = []

    def add(target: str, measured: str, met: bool | None) -> None:
        out.append({"target": target, "measured": measured, "met": met})

    read1, raw1 = _row(rows, "read", 1), _row(rows, "raw read", 1, "-")
    if read1 and raw1:
        ratio = read1["requests_per_s"] / raw1["requests_per_s"]
        add("reads >= 0.5x the raw limit (1 worker, auth on)", f"{ratio:.2f}x", ratio >= 0.5)
    off1 = _row(rows, "read", 1, "off")
    if off1 and raw1:
        ratio = off1["requests_per_s"] / raw1["requests_per_s"]
        add("  the same with auth off", f"{ratio:.2f}x", ratio >= 0.5)
    read2 = _row(rows, "read", 2)
    if read1 and read2:
        ratio = read2["requests_per_s"] / read1["requests_per_s"]
        add("reads, 2 workers >= 1.6x 1 worker", f"{ratio:.2f}x", ratio >= 1.6)
    search = _row(rows, "search", 1)
    if search:
        met = search["requests_per_s"] >= 1500 and search["p99_ms"] < 50
        add(
            f"selective search >= 1,500 req/s, p99 < 50 ms (on 1M resources; this run:"
            f" {resources:,})",
            f"{search['requests_per_s']:,.0f} req/s, p99 {search['p99_ms']} ms",
            met,
        )
    everything = _row(rows, "everything", 1)
    if everything:
        add(
            f"Patient/[id]/$everything of a demo patient: p99 < 50 ms"
            f" ({everything['connections']} connections)",
            f"p99 {everything['p99_ms']} ms, {everything['requests_per_s']:,.0f} req/s",
            everything["p99_ms"] < 50,
        )
    ingest = _row(rows, "ingest", 1)
    if ingest:
        rate = ingest["resources_per_s"]
        add("transaction ingest >= 1,000 resources/s", f"{rate:,.0f}/s", rate >= 1000)
    imported = next((r for r in rows if r["scenario"] == "import"), None)
    if imported:
        rate = imported["resources_per_s"]
        add(
            f"import >= 2,000 resources/s ({imported['workers']} validating workers)",
            f"{rate:,.0f}/s",
            rate >= 2000,
        )
    soak = next((r for r in rows if r["scenario"].startswith("soak")), None)
    if soak:
        add(
            f"no errors, {soak['connections']} connections for {soak['seconds']:.0f} s",
            f"{soak['errors']} errors in {soak['requests']:,} requests",
            soak["errors"] == 0,
        )
    return out
