"""Where a server process spends its time under load: py-spy on one scenario.

    .venv/bin/pip install py-spy
    .venv/bin/python bench/profile.py --workdir /tmp/bench-200 --mode read
    .venv/bin/python bench/profile.py --workdir /tmp/bench-200 --mode search --auth off

Serves the store ``bench/run.py --workdir DIR`` prepared with one ``fhir-server serve``
process, drives it with wrk (``bench/wrk/fhir.lua``, the given mode) and samples it with
``py-spy record`` meanwhile. Prints the share of samples in each function (inclusive:
the function or anything it calls; self: the function itself) and keeps py-spy's raw
collapsed stacks (``DIR/profile-MODE.txt``, for flame-graph tools).
"""

from __future__ import annotations

import argparse
import re
import resource
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (  # noqa: E402
    BackendClient,
    Load,
    ServerProcess,
    ensure_wrk,
    free_port,
    read_into_page_cache,
    run_wrk,
    thread_cpu,
)

_SITE = re.compile(r" \(/.*?/site-packages/")
_LINE = re.compile(r":\d+\)$")


def summarize(stacks: Path, top: int, all_threads: bool = False) -> str:
    """Inclusive and self shares per function of py-spy's raw (collapsed) output, over the
    samples of the event-loop thread (the thread pools are counted apart: py-spy cannot
    always tell their idle waits from work)."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = other = 0
    for line in stacks.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        if "Thread._bootstrap" in stack and not all_threads:
            other += n
            continue
        total += n
        frames = [_LINE.sub(")", _SITE.sub(" (", f)) for f in stack.split(";")]
        for frame in set(frames):
            inclusive[frame] += n
        own[frames[-1]] += n
    sampled = "every thread holding the GIL" if all_threads else "the event-loop thread"
    lines = [f"{total} samples of {sampled} ({other} of other threads)", ""]
    lines += ["inclusive:"]
    lines += [f"{100 * n / total:5.1f}%  {f}" for f, n in inclusive.most_common(top)]
    lines += ["", "self:"]
    lines += [f"{100 * n / total:5.1f}%  {f}" for f, n in own.most_common(top // 2)]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", required=True, help="a folder bench/run.py prepared")
    parser.add_argument("--mode", default="read", help="a mode of bench/wrk/fhir.lua")
    parser.add_argument("--auth", choices=["smart", "off"], default="smart")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=50)
    parser.add_argument("--log-level", default="info", help="the server's log level")
    parser.add_argument("--gil", action="store_true", help="sample only the thread holding the GIL")
    parser.add_argument(
        "--cpu",
        action="store_true",
        help="no py-spy: CPU time per request of each server thread and of wrk",
    )
    parser.add_argument(
        "--no-page-cache",
        action="store_true",
        help="do not read the SQLite file into the OS page cache first",
    )
    args = parser.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not args.cpu and not Path(spy).exists():
        raise SystemExit("py-spy is not installed: .venv/bin/pip install py-spy")
    wrk = ensure_wrk()
    workdir = Path(args.workdir).resolve()
    storage = f"sqlite:///{workdir / 'fhir.sqlite3'}"
    port = free_port()
    command = [sys.executable, "-m", "fhir_server.cli", "serve", "--port", str(port)]
    command += ["--workers", "1", "--storage", storage, "--auth", args.auth]
    env = {"FHIR_SERVER_LOG_LEVEL": args.log_level}
    server = ServerProcess(command, port, "/fhir/metadata", workdir / "profile.log", env)
    if not args.no_page_cache:
        read_into_page_cache(storage)
    server.start()
    try:
        token = None
        if args.auth == "smart":
            client = BackendClient(storage, workdir)
            token = client.token(server.url, "system/*.cruds")
        assert server.process is not None
        stacks = workdir / f"profile-{args.mode}.txt"
        record = [spy, "record", "-p", str(server.process.pid), "-f", "raw", "-o", str(stacks)]
        record += ["-r", str(args.rate), "-d", str(int(args.seconds)), "--nonblocking"]
        record += ["--gil"] if args.gil else []
        load = Load(args.connections, args.seconds + 2)
        datafile = workdir / "data.txt"
        run_wrk(wrk, server.url, args.mode, datafile, Load(args.connections, 2), token=token)
        if args.cpu:
            return _cpu(server.process.pid, wrk, server.url, args, datafile, token)
        spying = subprocess.Popen(record, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        result = run_wrk(wrk, server.url, args.mode, datafile, load, token=token)
        spying.wait()
    finally:
        server.stop()
    print(
        f"{args.mode}, auth {args.auth}: {result['requests_per_s']:,.0f} req/s under py-spy,"
        f" p50 {result['p50_ms']} ms, {result['errors']} errors\n"
    )
    print(summarize(stacks, args.top, all_threads=args.gil))
    return 0


def _cpu(
    pid: int, wrk: str, url: str, args: argparse.Namespace, datafile: Path, token: str | None
) -> int:
    """Where the CPU of a request goes: each server thread's and wrk's, per request."""
    before = thread_cpu(pid)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = run_wrk(
        wrk, url, args.mode, datafile, Load(args.connections, args.seconds), token=token
    )
    elapsed = time.perf_counter() - started
    after = thread_cpu(pid)
    done = resource.getrusage(resource.RUSAGE_CHILDREN)
    requests = max(1, round(result["requests_per_s"] * args.seconds))
    print(
        f"{args.mode}, auth {args.auth}: {result['requests_per_s']:,.0f} req/s,"
        f" p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, {result['errors']} errors\n"
    )
    print(f"{'CPU of':<22}{'us/request':>12}{'cores':>8}")
    rows = {name: after[name] - before.get(name, 0.0) for name in after}
    wrk_seconds = (done.ru_utime + done.ru_stime) - (children.ru_utime + children.ru_stime)
    rows["wrk (load generator)"] = wrk_seconds
    for name, seconds in sorted(rows.items(), key=lambda item: -item[1]):
        if seconds > 0:
            print(f"{name:<22}{seconds / requests * 1e6:>12,.0f}{seconds / elapsed:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
