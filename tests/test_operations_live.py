"""Health, metrics and the JSON log on the real ``fhir-server serve`` (uvicorn in a
subprocess), with SMART on: one worker and two."""

from __future__ import annotations

import json
import time

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.live import LiveServer


def _count(text: str, route: str, status: str = "200") -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (
                sample.name == "fhir_http_requests_total"
                and sample.labels["route"] == route
                and sample.labels["status"] == status
            ):
                return sample.value
    return 0


def test_probes_answer_without_a_token(tmp_path):
    server = LiveServer(f"sqlite:///{tmp_path}/fhir.sqlite3", tmp_path / "server.log", "smart")
    try:
        assert httpx.get(f"{server.base}/Patient/x").status_code == 401
        live = httpx.get(f"{server.origin}/healthz")
        ready = httpx.get(f"{server.origin}/readyz")
        metrics = httpx.get(f"{server.origin}/metrics")
    finally:
        server.stop()
    assert (live.status_code, live.json()) == (200, {"status": "ok"})
    assert (ready.status_code, ready.json()) == (200, {"status": "ok"})
    assert live.headers["x-request-id"] != ready.headers["x-request-id"]
    assert metrics.status_code == 200
    assert _count(metrics.text, "/fhir/{type}/{id}", "401") == 1


def test_metrics_add_up_every_worker(tmp_path):
    """A scrape reaches one of the two workers; it shows the requests of both (each
    worker's figures reach the others through a file within a second)."""
    server = LiveServer(
        f"sqlite:///{tmp_path}/fhir.sqlite3",
        tmp_path / "server.log",
        FHIR_SERVER_WORKERS="2",
        TMPDIR=str(tmp_path),
    )
    try:
        for _ in range(40):  # a new connection each: the workers take turns accepting
            assert httpx.get(f"{server.origin}/healthz").status_code == 200
        assert len(list(tmp_path.glob("fhir-server-metrics-*"))) == 1
        time.sleep(2.5)
        seen = [_count(httpx.get(f"{server.origin}/metrics").text, "/healthz") for _ in range(6)]
    finally:
        assert server.stop() in (0, -15)
    assert seen == [40] * 6
    assert not list(tmp_path.glob("fhir-server-metrics-*"))  # removed at exit


def test_json_log_lines(tmp_path):
    server = LiveServer(
        f"sqlite:///{tmp_path}/fhir.sqlite3",
        tmp_path / "server.log",
        FHIR_SERVER_LOG_FORMAT="json",
    )
    try:
        response = httpx.get(f"{server.base}/metadata?_summary=true&access_token=abc")
    finally:
        server.stop()
    lines = [json.loads(line) for line in server.log().splitlines() if line.strip()]
    assert {"time", "level", "logger", "message"} <= set(lines[0])
    access = [line for line in lines if line.get("request_id") == response.headers["x-request-id"]]
    assert len(access) == 1
    assert access[0]["path"] == "/fhir/metadata?_summary=true&access_token=***"
    assert access[0]["route"] == "/fhir/metadata"
    assert access[0]["client_ip"] == "127.0.0.1"
    assert access[0]["status"] == 200
    assert "abc" not in server.log()
