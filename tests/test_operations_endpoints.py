"""Health, readiness, Prometheus metrics, request ids and the JSON access log
(fhir_server/health.py, metrics.py, request_log.py), in-process over HTTP with SMART on,
on both stores."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fhir_server.request_log import JsonFormatter
from tests.conftest import STORES, storage_url
from tests.security_support import app_on, staff

READ = "/fhir/{type}/{id}"


@pytest.fixture(params=STORES)
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return storage_url(request.param, tmp_path)


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """(sample name, labels) -> value of a Prometheus text exposition."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def labels(**values: str) -> frozenset:
    return frozenset(values.items())


async def test_healthz_answers_without_a_token(storage):
    async with app_on(storage) as env:
        response = await env.http.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response.headers["cache-control"] == "no-store"


async def test_readyz_pings_the_store_without_a_token(storage):
    async with app_on(storage) as env:
        response = await env.http.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_is_503_with_the_reason_when_the_sqlite_file_is_gone(tmp_path):
    async with app_on(f"sqlite:///{tmp_path}/fhir.sqlite3") as env:
        (tmp_path / "fhir.sqlite3").rename(tmp_path / "moved.sqlite3")
        response = await env.http.get("/readyz")
        assert (await env.http.get("/healthz")).status_code == 200  # alive, not ready
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert "store failed" in body["reason"]
    assert str(tmp_path) not in response.text
    assert not (tmp_path / "fhir.sqlite3").exists()  # the ping made no new empty file


async def test_readyz_is_503_when_the_store_does_not_answer_in_time(tmp_path, monkeypatch):
    import asyncio

    from fhir_server import health

    async with app_on(f"sqlite:///{tmp_path}/fhir.sqlite3") as env:
        monkeypatch.setattr(health, "READY_TIMEOUT", 0.05)
        store = env.data["app"].state.store

        async def hung() -> None:
            await asyncio.sleep(10)

        monkeypatch.setattr(store, "ping", hung)
        response = await env.http.get("/readyz")
    assert response.status_code == 503
    assert "did not answer within 0.05 s" in response.json()["reason"]


async def test_metrics_count_requests_by_route_template_never_by_path(storage):
    async with app_on(storage) as env:
        headers = staff(env, "user/*.rs")
        for _ in range(3):
            assert (await env.http.get("/fhir/Patient/p1", headers=headers)).status_code == 200
        assert (await env.http.get("/fhir/Patient/gone-42", headers=headers)).status_code == 404
        assert (await env.http.get("/no/such/path/secret-99")).status_code == 404
        assert (await env.http.get("/fhir/Patient/p1")).status_code == 401
        response = await env.http.get("/metrics")  # no token
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    for raw in ("p1", "gone-42", "secret-99"):
        assert raw not in text
    found = samples(text)
    ok = labels(method="GET", route=READ, status="200")
    assert found[("fhir_http_requests_total", ok)] == 3
    assert found[("fhir_http_request_duration_seconds_count", ok)] == 3
    assert found[("fhir_http_request_duration_seconds_bucket", ok | {("le", "+Inf")})] == 3
    assert found[("fhir_http_request_duration_seconds_sum", ok)] > 0
    assert found[("fhir_http_requests_total", labels(method="GET", route=READ, status="404"))]
    assert found[("fhir_http_requests_total", labels(method="GET", route=READ, status="401"))]
    unmatched = labels(method="GET", route="(unmatched)", status="404")
    assert found[("fhir_http_requests_total", unmatched)] == 1
    reads = labels(operation="read", outcome="ok")
    assert found[("fhir_store_operation_duration_seconds_count", reads)] >= 4


async def test_metrics_of_routes_behind_the_middleware(storage):
    """Requests with an Origin (CORS) go through the middleware, not the fast dispatch:
    the same route templates."""
    async with app_on(storage) as env:
        headers = {**staff(env, "user/*.rs"), "Origin": "https://app.example"}
        assert (await env.http.get("/fhir/Patient/p1", headers=headers)).status_code == 200
        await env.http.get("/healthz")
        found = samples((await env.http.get("/metrics")).text)
    assert found[("fhir_http_requests_total", labels(method="GET", route=READ, status="200"))]
    healthz = labels(method="GET", route="/healthz", status="200")
    assert found[("fhir_http_requests_total", healthz)] == 1


async def test_metrics_off_serves_no_metrics(tmp_path):
    async with app_on(f"sqlite:///{tmp_path}/fhir.sqlite3", metrics="off") as env:
        response = await env.http.get("/metrics")
        assert env.data["app"].observer.metrics is None
        # the store's wrappers (audit, the dispatcher's wake-up) but not the timing one
        chain, store = [], env.data["app"].state.store
        while store is not None:
            chain.append(type(store).__name__)
            wrapped = vars(store)
            store = wrapped.get("inner", wrapped.get("_inner", wrapped.get("_store")))
        assert "TimedStore" not in chain and chain[-1] == "SQLiteStore", chain
    assert response.status_code == 404


@pytest.mark.parametrize("origin", [None, "https://app.example"])
async def test_request_ids_are_made_or_taken_and_echoed(tmp_path, origin):
    """On the fast dispatch (no Origin) and through the middleware (with one), on FHIR,
    auth and health routes."""
    extra = {"Origin": origin} if origin else {}
    async with app_on(f"sqlite:///{tmp_path}/fhir.sqlite3") as env:
        headers = {**staff(env, "user/*.rs"), **extra}
        made = set()
        for path in ("/fhir/Patient/p1", "/fhir/metadata", "/healthz", "/auth/jwks.json"):
            response = await env.http.get(path, headers=headers)
            made.add(response.headers["x-request-id"])
        assert len(made) == 4
        assert all(re.fullmatch(r"[0-9a-f]{10}-[0-9a-f]+", rid) for rid in made)
        sane = "0f8fad5b-d9cb-469f-a165-70867728950e"
        response = await env.http.get("/fhir/Patient/p1", headers={**headers, "X-Request-ID": sane})
        assert response.headers["x-request-id"] == sane
        for insane in ("a b", "x" * 129, "<script>", ""):
            response = await env.http.get(
                "/fhir/Patient/p1", headers={**headers, "X-Request-ID": insane}
            )
            assert response.headers["x-request-id"] != insane
            assert response.headers.get_list("x-request-id") == [response.headers["x-request-id"]]


async def test_browser_apps_may_read_the_request_id(tmp_path):
    async with app_on(f"sqlite:///{tmp_path}/fhir.sqlite3") as env:
        headers = {**staff(env, "user/*.rs"), "Origin": "https://app.example"}
        response = await env.http.get("/fhir/Patient/p1", headers=headers)
    exposed = response.headers["access-control-expose-headers"].lower().split(", ")
    assert "x-request-id" in exposed
    assert response.headers["x-request-id"]


@pytest.mark.parametrize("origin", [None, "https://app.example"])
async def test_json_access_log_lines(tmp_path, caplog, origin):
    extra = {"Origin": origin} if origin else {}
    async with app_on(f"sqlite:///{tmp_path}/fhir.sqlite3", log_format="json") as env:
        headers = {**staff(env, "user/*.rs"), **extra, "X-Request-ID": "req-1"}
        with caplog.at_level(logging.INFO, logger="fhir_server.access"):
            await env.http.get("/fhir/Patient/p1?_elements=id&access_token=abc", headers=headers)
            await env.http.post("/auth/token", data={"client_secret": "s3cret"}, headers=extra)
    lines = [
        json.loads(JsonFormatter().format(record))
        for record in caplog.records
        if record.name == "fhir_server.access"
    ]
    read, token = lines[-2], lines[-1]
    assert read["request_id"] == "req-1"
    assert read["method"] == "GET"
    assert read["path"] == "/fhir/Patient/p1?_elements=id&access_token=***"
    assert read["route"] == READ
    assert read["status"] == 200
    assert read["client_ip"] == "127.0.0.1"
    assert read["user"] == "u-dr"
    assert read["client_id"] == "ehr"
    assert read["duration_ms"] >= 0
    assert read["level"] == "info" and read["logger"] == "fhir_server.access"
    assert "abc" not in json.dumps(read)
    assert token["route"] == "/auth/token"
    assert token["user"] is None and token["client_id"] is None  # no token verified
    assert token["request_id"] and token["request_id"] != "req-1"
    assert "s3cret" not in json.dumps(lines)


def test_json_formatter_keeps_a_forged_line_on_one_line():
    record = logging.LogRecord(
        "fhir_server.access", logging.INFO, "", 0, "GET %s 200", ('/x\n{"forged": 1}',), None
    )
    line = JsonFormatter().format(record)
    assert "\n" not in line
    assert json.loads(line)["message"] == 'GET /x\n{"forged": 1} 200'
