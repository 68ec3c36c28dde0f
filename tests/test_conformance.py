"""Run every conformance case against the server: in-process and live over real HTTP.

One test per case and target, parametrized by case name, so a failure reads as the case
that broke and the step, request and expected-versus-actual the kit reports. The cases
come from ``conformance/cases/`` and follow https://hl7.org/fhir/R4/http.html.

- in-process: ``create_app`` on a fresh store of every kind (SQLite file, MongoDB
  stand-in), driven by ``httpx.ASGITransport``;
- live: ``fhir-server serve`` started once as a subprocess on a free port.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from conformance import load_cases, run
from fhir_server.app import create_app
from fhir_server.config import Settings
from tests.conftest import STORES, storage_url

CASES = {case.name: case for case in load_cases()}
IN_PROCESS_BASE = "http://testserver/fhir"
STARTUP_SECONDS = 60.0

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(scope="session", loop_scope="session", params=STORES)
async def in_process_client(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Any]:
    """The app on a fresh store of each kind, lifespan entered, behind an ASGI transport."""
    folder = tmp_path_factory.mktemp(f"conformance-{request.param}")
    settings = Settings(storage=storage_url(request.param, folder), auth="off")
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", timeout=60.0
        ) as client:
            yield client


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _server_command() -> list[str]:
    script = Path(sys.executable).with_name("fhir-server")
    if script.exists():
        return [str(script)]
    found = shutil.which("fhir-server")
    if found:
        return [found]
    return [sys.executable, "-m", "fhir_server.cli"]


def _wait_until_up(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"fhir-server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{base}/metadata", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail(f"fhir-server did not answer {base}/metadata:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="session")
def live_base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``fhir-server serve`` on a free port and a fresh SQLite file, for the whole session."""
    command = _server_command()
    workdir = tmp_path_factory.mktemp("conformance-live")
    port = _free_port()
    env = {
        **os.environ,
        "FHIR_SERVER_STORAGE": f"sqlite:///{workdir / 'db.sqlite3'}",
        "FHIR_SERVER_AUTH": "off",
    }
    env.pop("FHIR_SERVER_BASE_URL", None)
    log = workdir / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*command, "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=workdir,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}/fhir"
    try:
        _wait_until_up(base, process, log)
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _assert_passed(report: Any) -> None:
    failures = "\n\n".join(f"{r.name} ({r.spec})\n{r.message}" for r in report.failed)
    assert report.results, "no case ran"
    assert report.ok, failures


@pytest.mark.parametrize("case_name", list(CASES))
async def test_in_process(case_name: str, in_process_client: httpx.AsyncClient) -> None:
    report = await run(IN_PROCESS_BASE, client=in_process_client, cases=[CASES[case_name]])
    _assert_passed(report)


@pytest.mark.parametrize("case_name", list(CASES))
async def test_live(case_name: str, live_base_url: str) -> None:
    async with httpx.AsyncClient(timeout=60.0) as client:
        report = await run(live_base_url, client=client, cases=[CASES[case_name]])
    _assert_passed(report)
