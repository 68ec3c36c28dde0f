"""``fhir-server serve`` start-up failures (fhir_server/startup.py): one clear line on
stderr and a non-zero exit status, with one worker and with several; the real command in
a subprocess."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette

from tests.live import ROOT, free_port


def serve(tmp_path: Path, *args: str, timeout: float = 60, **env: str) -> tuple[int, str, float]:
    """Run ``fhir-server serve``; (exit status, stderr and stdout, seconds)."""
    environment = {
        **os.environ,
        "FHIR_SERVER_STORAGE": f"sqlite:///{tmp_path}/fhir.sqlite3",
        "FHIR_SERVER_AUTH": "off",
        "FHIR_SERVER_PORT": str(free_port()),
        **env,
    }
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "fhir_server.cli", "serve", *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return done.returncode, done.stderr + done.stdout, time.monotonic() - started


def one_line(output: str) -> str:
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.startswith("fhir-server serve:")]
    assert len(lines) == 1, output
    return lines[0]


def test_an_unsupported_storage_url_is_one_line_with_two_workers(tmp_path):
    for url in ("postgres://x", "foo"):
        status, output, _ = serve(tmp_path, "--workers", "2", "--storage", url)
        assert status == 1
        line = one_line(output)
        assert f"unsupported storage URL {url!r}" in line
        assert "--storage" in line


def test_an_unsupported_storage_url_never_shows_its_password(tmp_path):
    status, output, _ = serve(tmp_path, FHIR_SERVER_STORAGE="postgres://admin:hunter2@db/x")
    assert status == 1
    assert "hunter2" not in output
    assert "admin:***@db" in one_line(output)


def test_a_bad_setting_names_its_variable(tmp_path):
    status, output, _ = serve(tmp_path, FHIR_SERVER_AUTH="of")
    assert status == 2
    line = one_line(output)
    assert "FHIR_SERVER_AUTH='of'" in line
    assert "'smart' or 'off'" in line


def test_a_bad_flag_value_names_the_flag(tmp_path):
    status, output, _ = serve(tmp_path, "--workers", "0")
    assert status == 2
    assert "--workers=0" in one_line(output)


def test_a_bad_log_level_is_one_line(tmp_path):
    status, output, _ = serve(tmp_path, FHIR_SERVER_LOG_LEVEL="loud")
    assert status == 2
    assert "FHIR_SERVER_LOG_LEVEL='loud'" in one_line(output)


def test_an_unreachable_mongodb_is_named_within_seconds(tmp_path):
    port = free_port()  # nothing listens there
    url = f"mongodb://fhir:secret@127.0.0.1:{port}/fhir"
    status, output, seconds = serve(tmp_path, "--storage", url)
    assert status == 1
    line = one_line(output)
    assert f"cannot reach MongoDB at 127.0.0.1:{port}" in line
    assert "secret" not in output
    assert seconds < 20  # the driver's own timeout is 30 s


def test_an_sqlite_file_that_cannot_be_opened_is_one_line(tmp_path):
    (tmp_path / "not-a-db.sqlite3").write_bytes(b"this is not an SQLite file" * 100)
    status, output, _ = serve(
        tmp_path, "--workers", "2", "--storage", f"sqlite:///{tmp_path}/not-a-db.sqlite3"
    )
    assert status == 1
    assert "cannot open the SQLite store" in one_line(output)


def test_a_port_in_use_is_named_with_the_way_to_choose_another(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        status, output, _ = serve(tmp_path, "--port", str(port))
    assert status == 1
    line = one_line(output)
    assert f"port {port} on 127.0.0.1 is already in use" in line
    assert "--port" in line and "FHIR_SERVER_PORT" in line


@asynccontextmanager
async def _failing_lifespan(app: Starlette) -> AsyncIterator[None]:
    raise RuntimeError("this worker cannot start")
    yield  # pragma: no cover


def failing_app() -> Starlette:
    """An application whose start-up fails (for the supervisor test below)."""
    return Starlette(lifespan=_failing_lifespan)


def test_a_worker_failing_to_start_exits_the_parent_non_zero(tmp_path):
    """uvicorn's supervisor stops when a worker fails before serving; ``uvicorn.run``
    then returns normally (exit 0). ``run_workers`` exits 3, as one process would."""
    code = (
        "import sys, uvicorn\n"
        "from fhir_server.startup import run_workers\n"
        "config = uvicorn.Config('tests.test_startup:failing_app', factory=True,"
        f" workers=2, port={free_port()}, log_level='warning')\n"
        "sys.exit(run_workers(config))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 3, done.stderr
    assert "failed to start" in done.stderr


def _command(tmp_path: Path, *args: str, **env: str) -> tuple[int, str]:
    environment = {**os.environ, "FHIR_SERVER_STORAGE": f"sqlite:///{tmp_path}/x.sqlite3", **env}
    done = subprocess.run(
        [sys.executable, "-m", "fhir_server.cli", *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, done.stderr + done.stdout


def test_the_store_commands_report_a_bad_setting_or_store_in_one_line(tmp_path):
    """``import``, ``demo-data`` and ``compact`` as ``serve`` does: no traceback."""
    source = tmp_path / "one.json"
    source.write_text('{"resourceType": "Patient", "id": "p"}')
    cases = [
        (["import", str(source), "--storage", "postgres://x"], {}, 1, "unsupported storage URL"),
        (["demo-data", "--patients", "10", "--quiet"], {"FHIR_SERVER_AUTH": "of"}, 2, "AUTH"),
        (["import", str(source)], {"FHIR_SERVER_STORAGE": "foo"}, 1, "unsupported storage URL"),
        (["compact"], {"FHIR_SERVER_LOG_LEVEL": "loud"}, 2, "LOG_LEVEL"),
    ]
    for args, env, expected, text in cases:
        status, output = _command(tmp_path, *args, **env)
        assert status == expected, (args, output)
        assert "Traceback" not in output, output
        lines = [line for line in output.splitlines() if line.startswith(f"fhir-server {args[0]}:")]
        assert len(lines) == 1 and text in lines[0], output
