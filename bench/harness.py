"""The moving parts of ``bench/run.py``: server processes, their memory, wrk, tokens.

- :class:`ServerProcess`: a command serving HTTP on 127.0.0.1 (``fhir-server serve`` or
  uvicorn on the raw app), started in its own process group, stopped with SIGTERM; its
  peak resident memory per scenario is read from ``/proc/PID/status`` (``VmHWM``) of the
  process and its descendants (the uvicorn workers), reset before each scenario through
  ``/proc/PID/clear_refs``.
- :func:`run_wrk`: one wrk run of ``bench/wrk/fhir.lua``; returns what its ``done()``
  printed (counts, latency percentiles, statuses).
- :class:`BackendClient`: a SMART backend-services client (``private_key_jwt``, RS384)
  registered with ``fhir-server clients create`` that gets its access tokens from the
  server's token endpoint with a signed client assertion (client_credentials grant).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
LUA = ROOT / "bench" / "wrk" / "fhir.lua"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ensure_wrk() -> str:
    """The wrk binary; installed from Debian (``apt-get install -y wrk``) when missing."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0:
        raise SystemExit("wrk is not installed: run `sudo apt-get install -y wrk`")
    print("installing wrk (apt-get install -y wrk) ...", flush=True)
    install = ["apt-get", "install", "-y", "-q", "wrk"]
    if subprocess.run(install, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, check=True)
        subprocess.run(install, capture_output=True, check=True)
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk could not be installed")
    return found


# -- processes ----------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return found
    for task in tasks:
        try:
            text = Path(f"/proc/{pid}/task/{task}/children").read_text()
        except FileNotFoundError:
            continue
        found += [int(p) for p in text.split()]
    return found


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo += _children(current)
    return tree


def _peak_rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) each thread of ``pid`` has used so far: the main
    thread, and the others summed by name (``/proc/PID/task/TID/stat``; Linux only)."""
    tick = os.sysconf("SC_CLK_TCK")
    used: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:  # the thread ended meanwhile
            continue
        name = "main thread" if task.name == str(pid) else "other threads"
        fields = stat[stat.rindex(")") + 2 :].split()
        seconds = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        used[name] = used.get(name, 0.0) + seconds
    return used


@dataclass
class ServerProcess:
    """An HTTP server process (and its worker processes) on 127.0.0.1:``port``."""

    command: list[str]
    port: int
    ready_path: str
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 180.0) -> ServerProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps it
        self.process = subprocess.Popen(
            self.command,
            cwd=ROOT,
            env={**os.environ, **self.env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"server exited:\n{self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + self.ready_path, timeout=2.0).status_code < 500:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise SystemExit(f"server did not start in {timeout:.0f} s: {self.command}")

    def pids(self) -> list[int]:
        assert self.process is not None
        return process_tree(self.process.pid)

    def reset_peak_memory(self) -> None:
        """Start a new peak-RSS measurement (Linux: ``echo 5 > /proc/PID/clear_refs``)."""
        for pid in self.pids():
            with contextlib.suppress(OSError):
                Path(f"/proc/{pid}/clear_refs").write_text("5")

    def peak_memory(self) -> dict[str, float]:
        """Peak RSS since the last reset: of all the processes together and of the
        largest one, in MB."""
        peaks = [_peak_rss_kb(pid) for pid in self.pids()]
        return {
            "peak_rss_mb": round(sum(peaks) / 1024, 1),
            "peak_rss_largest_mb": round(max(peaks, default=0) / 1024, 1),
            "processes": len(peaks),
        }

    def stop(self) -> int | None:
        """SIGTERM (uvicorn's graceful shutdown, workers included), SIGKILL after 30 s."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return self.process.returncode


# -- wrk ------------------------------------------------------------------------------------


@dataclass
class Load:
    """How hard wrk drives the server."""

    connections: int
    duration: float
    threads: int = 1
    max_requests: int = 0
    """Stop after about this many requests (0: only the duration bounds the run)."""


def run_wrk(
    wrk: str,
    url: str,
    mode: str,
    datafile: Path,
    load: Load,
    *,
    token: str | None = None,
    prefix: str = "b",
    seed: int = 1,
) -> dict[str, Any]:
    """One wrk run; the dict its Lua ``done()`` printed, plus derived rates and errors."""
    threads = max(1, min(load.threads, load.connections))
    per_thread = -(-load.max_requests // threads) if load.max_requests else 0
    command = [
        wrk,
        f"-t{threads}",
        f"-c{load.connections}",
        f"-d{load.duration:g}s",
        "--timeout",
        "30s",
        "-s",
        str(LUA),
        url,
        "--",
        mode,
        str(datafile),
        token or "-",
        prefix,
        str(seed),
        str(per_thread),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=load.duration + 120)
    line = next((x for x in done.stdout.splitlines() if x.startswith("WRK_RESULT ")), None)
    if done.returncode != 0 or line is None:
        raise SystemExit(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    result = json.loads(line[len("WRK_RESULT ") :])
    seconds = result["duration_us"] / 1e6
    statuses = {int(k): v for k, v in result["statuses"].items()}
    errors = result["errors"]
    socket_errors = errors["connect"] + errors["read"] + errors["write"] + errors["timeout"]
    if statuses:
        bad_status = sum(n for status, n in statuses.items() if not 200 <= status < 300)
    else:
        bad_status = errors["status"]  # wrk counts statuses > 399 when it reads no bodies
    return {
        "mode": mode,
        "connections": load.connections,
        "wrk_threads": threads,
        "seconds": round(seconds, 2),
        "requests": result["requests"],
        "requests_per_s": round(result["requests"] / seconds, 1) if seconds else 0.0,
        "p50_ms": round(result["latency_us"]["p50"] / 1000, 2),
        "p90_ms": round(result["latency_us"]["p90"] / 1000, 2),
        "p99_ms": round(result["latency_us"]["p99"] / 1000, 2),
        "max_ms": round(result["latency_us"]["max"] / 1000, 2),
        "errors": socket_errors + bad_status,
        "socket_errors": socket_errors,
        "non_2xx": bad_status,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
    }


# -- tokens -----------------------------------------------------------------------------------


class BackendClient:
    """A SMART backend service (``private_key_jwt``) registered in the store."""

    def __init__(self, storage: str, workdir: Path, scope: str = "system/*.cruds") -> None:
        from joserfc.jwk import RSAKey

        self.key = RSAKey.generate_key(
            2048, parameters={"alg": "RS384", "use": "sig", "kid": "bench-1"}
        )
        jwks = workdir / "bench-client-jwks.json"
        jwks.write_text(json.dumps({"keys": [self.key.as_dict(private=False)]}))
        command = [sys.executable, "-m", "fhir_server.cli", "clients", "create"]
        command += ["--name", "benchmark", "--auth", "private_key_jwt", "--jwks", str(jwks)]
        command += ["--scope", scope, "--storage", storage]
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"fhir-server clients create failed:\n{done.stderr}")
        self.client_id: str = json.loads(done.stdout)["client_id"]

    def token(self, base_url: str, scope: str) -> str:
        """An access token from ``base_url``/auth/token (client_credentials grant)."""
        from joserfc import jwt

        token_url = f"{base_url}/auth/token"
        now = int(time.time())
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": token_url,
            "exp": now + 240,
            "jti": uuid.uuid4().hex,
        }
        header = {"alg": "RS384", "kid": "bench-1", "typ": "JWT"}
        assertion = jwt.encode(header, claims, self.key, algorithms=["RS384"])
        form = {
            "grant_type": "client_credentials",
            "scope": scope,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion,
        }
        response = httpx.post(token_url, data=form, timeout=30.0)
        if response.status_code != 200:
            raise SystemExit(f"token request failed: {response.status_code} {response.text}")
        return str(response.json()["access_token"])


def read_into_page_cache(storage: str | Path) -> None:
    """Read a SQLite store's file (and its WAL) once, so that what follows finds it in the
    OS page cache, as on a server with memory for its data (this machine's kernel hands
    cold file pages back to the host: a run on a half-evicted file measures the disk)."""
    text = str(storage)
    path = Path(text[len("sqlite:///") :] if text.startswith("sqlite:///") else text)
    if not path.exists():
        return
    started = time.perf_counter()
    size = 0
    for name in (path, path.with_name(path.name + "-wal")):
        if name.exists():
            with name.open("rb", buffering=0) as file:
                while chunk := file.read(1 << 24):
                    size += len(chunk)
    seconds = time.perf_counter() - started
    print(f"page cache: read {size / 1e9:.1f} GB of {path.name} in {seconds:.1f} s", flush=True)
