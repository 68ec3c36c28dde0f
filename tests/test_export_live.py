"""``$export`` end to end on a live ``fhir-server serve`` (SMART on), as an outside
client does it with plain HTTP: a Backend Services token from ``/auth/token``
(client_credentials, RS384 assertion), kick-off, polling that honours ``Retry-After``,
downloads with the token, ``DELETE``. It runs once (SQLite), not per store."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from tests.live import ROOT, LiveServer

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, str, RSAKey]]:
    folder = tmp_path_factory.mktemp("export-live")
    storage = f"sqlite:///{folder}/fhir.sqlite3"
    key = RSAKey.generate_key(2048, parameters={"alg": "RS384", "kid": "sync-1"})
    jwks = folder / "jwks.json"
    jwks.write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    command = [
        sys.executable,
        "-m",
        "fhir_server.cli",
        "clients",
        "create",
        "--name",
        "EHR",
        "--auth",
        "private_key_jwt",
        "--jwks",
        str(jwks),
        "--scope",
        "system/*.cruds",
        "--storage",
        storage,
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
    client_id = json.loads(done.stdout)["client_id"]
    live = LiveServer(
        storage, folder / "server.log", auth="smart", FHIR_SERVER_EXPORT_DIR=str(folder / "exports")
    )
    try:
        yield live, client_id, key
    finally:
        live.stop()


def token(live: LiveServer, client_id: str, key: RSAKey, scope: str) -> dict[str, str]:
    token_url = f"{live.origin}/auth/token"
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": token_url,
        "exp": now + 240,
        "jti": uuid.uuid4().hex,
    }
    assertion = jwt.encode(
        {"alg": "RS384", "kid": "sync-1", "typ": "JWT"}, claims, key, algorithms=["RS384"]
    )
    response = httpx.post(
        token_url,
        data={
            "grant_type": "client_credentials",
            "scope": scope,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion,
        },
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def test_whole_flow_as_an_outside_client(server: tuple[LiveServer, str, RSAKey]) -> None:
    live, client_id, key = server
    config = httpx.get(f"{live.base}/.well-known/smart-configuration").json()
    assert "client_credentials" in config["grant_types_supported"]
    writer = token(live, client_id, key, "system/*.cruds")
    for n in range(30):
        body = {"resourceType": "Patient", "id": f"p{n}", "name": [{"family": f"F{n}"}]}
        response = httpx.put(f"{live.base}/Patient/p{n}", json=body, headers=writer)
        assert response.status_code in (200, 201), response.text
    reader = token(live, client_id, key, "system/*.rs")
    kick = httpx.get(
        f"{live.base}/$export?_type=Patient",
        headers={**reader, "Prefer": "respond-async", "Accept": "application/fhir+json"},
    )
    assert kick.status_code == 202, kick.text
    status_url = kick.headers["Content-Location"]
    deadline = time.monotonic() + 60
    while True:
        status = httpx.get(status_url, headers=reader)
        if status.status_code != 202:
            break
        assert time.monotonic() < deadline
        time.sleep(float(status.headers.get("Retry-After", "1")))
    assert status.status_code == 200, status.text
    manifest = status.json()
    assert manifest["requiresAccessToken"] is True
    lines = []
    for entry in manifest["output"]:
        assert httpx.get(entry["url"]).status_code == 401  # the token is needed
        download = httpx.get(entry["url"], headers={**reader, "Accept": "application/fhir+ndjson"})
        assert download.status_code == 200
        lines += [json.loads(line) for line in download.text.splitlines()]
    assert sorted(r["id"] for r in lines) == sorted(f"p{n}" for n in range(30))
    assert httpx.delete(status_url, headers=reader).status_code == 202
    assert httpx.get(status_url, headers=reader).status_code == 404
    assert httpx.get(manifest["output"][0]["url"], headers=reader).status_code == 404


def test_a_job_cut_off_by_kill_9_is_failed_after_the_restart(
    tmp_path: Path, server: tuple[LiveServer, str, RSAKey]
) -> None:
    """The job is held before it reads (the test holds SQLite's write lock, which the job
    waits for), the server is killed with SIGKILL, and a new one on the same store and
    folder reports the job failed: never complete, no files."""
    _, client_id, key = server
    storage = f"sqlite:///{tmp_path}/fhir.sqlite3"
    command = [
        sys.executable,
        "-m",
        "fhir_server.cli",
        "clients",
        "create",
        "--name",
        "EHR",
        "--auth",
        "private_key_jwt",
        "--jwks",
        str(tmp_path / "jwks.json"),
        "--scope",
        "system/*.rs",
        "--storage",
        storage,
        "--client-id",
        client_id,
    ]
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
    env = {"FHIR_SERVER_EXPORT_DIR": str(tmp_path / "exports")}
    live = LiveServer(storage, tmp_path / "server.log", auth="smart", **env)
    try:
        reader = token(live, client_id, key, "system/*.rs")
        lock = sqlite3.connect(tmp_path / "fhir.sqlite3", isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")
        kick = httpx.get(f"{live.base}/$export", headers={**reader, "Prefer": "respond-async"})
        assert kick.status_code == 202, kick.text
        status_url = kick.headers["Content-Location"]
        assert httpx.get(status_url, headers=reader).status_code == 202  # held, in progress
        live.stop(signal.SIGKILL)
        lock.execute("ROLLBACK")
        lock.close()
    except BaseException:
        live.stop(signal.SIGKILL)
        raise
    again = LiveServer(storage, tmp_path / "server2.log", auth="smart", **env)
    try:
        status_url = status_url.replace(live.base, again.base)
        status = httpx.get(status_url, headers=token(again, client_id, key, "system/*.rs"))
        assert status.status_code == 500, status.text
        assert status.json()["resourceType"] == "OperationOutcome"
        job = status_url.rsplit("/", 1)[1]
        assert not (tmp_path / "exports" / job / "files").exists()
    finally:
        again.stop()
