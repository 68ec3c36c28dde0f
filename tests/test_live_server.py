"""End to end on a live uvicorn: durability across ``kill -9``, clean shutdown on SIGTERM,
one log line per request."""

from __future__ import annotations

import os
import re
import signal

import httpx
import pytest

from tests.live import LiveServer

JSON = {"content-type": "application/fhir+json"}


def test_acknowledged_writes_survive_kill_9(tmp_path):
    storage = f"sqlite:///{tmp_path}/fhir.sqlite3"
    server = LiveServer(storage, tmp_path / "server.log")
    ids = []
    try:
        for n in range(20):
            body = f'{{"resourceType":"Patient","birthDate":"19{n + 10}-01-01"}}'
            response = httpx.post(f"{server.base}/Patient", content=body, headers=JSON)
            assert response.status_code == 201
            ids.append((response.json()["id"], response.text))
    finally:
        server.stop(signal.SIGKILL)
    restarted = LiveServer(storage, tmp_path / "server2.log")
    try:
        for id_, text in ids:
            response = httpx.get(f"{restarted.base}/Patient/{id_}")
            assert response.status_code == 200
            assert response.text == text
    finally:
        restarted.stop()


def test_sigterm_shuts_down_cleanly_and_requests_are_logged(tmp_path):
    server = LiveServer(f"sqlite:///{tmp_path}/fhir.sqlite3", tmp_path / "server.log")
    assert httpx.get(f"{server.base}/metadata").status_code == 200
    assert httpx.get(f"{server.base}/Patient/nope").status_code == 404
    code = server.stop(signal.SIGTERM)
    log = server.log()
    # uvicorn finishes its graceful shutdown, then re-raises SIGTERM for its exit status
    assert code in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in log
    assert "GET /fhir/metadata 200" in log
    assert "GET /fhir/Patient/nope 404" in log
    assert "store closed" in log


def test_base_url_setting_is_used_in_links(tmp_path):
    server = LiveServer(
        f"sqlite:///{tmp_path}/fhir.sqlite3",
        tmp_path / "server.log",
        FHIR_SERVER_BASE_URL="https://fhir.example.org/r4/",
    )
    try:
        response = httpx.post(
            f"{server.base}/Patient", content=b'{"resourceType":"Patient"}', headers=JSON
        )
        assert response.headers["location"].startswith("https://fhir.example.org/r4/Patient/")
    finally:
        server.stop()


def test_two_worker_processes_share_one_store_and_stop_on_sigterm(tmp_path):
    server = LiveServer(
        f"sqlite:///{tmp_path}/fhir.sqlite3", tmp_path / "server.log", FHIR_SERVER_WORKERS="2"
    )
    stored = {}
    try:
        # a new connection per request: the kernel hands them to either process
        for n in range(20):
            body = f'{{"resourceType":"Patient","birthDate":"19{n + 10}-01-01"}}'
            response = httpx.post(f"{server.base}/Patient", content=body, headers=JSON)
            assert response.status_code == 201
            stored[response.json()["id"]] = response.text
        for id_, text in stored.items():
            response = httpx.get(f"{server.base}/Patient/{id_}")
            assert response.status_code == 200
            assert response.text == text
        search = httpx.get(f"{server.base}/Patient", params={"_count": "100"})
        assert search.json()["total"] == 20
    finally:
        code = server.stop(signal.SIGTERM)
    log = server.log()
    workers = re.findall(r"Started server process \[(\d+)\]", log)
    assert len(workers) == 2
    assert code in (0, -signal.SIGTERM)
    assert log.count("store closed") == 2
    assert log.count("Application shutdown complete") == 2
    for pid in workers:  # no worker outlives the server
        with pytest.raises(ProcessLookupError):
            os.kill(int(pid), 0)
