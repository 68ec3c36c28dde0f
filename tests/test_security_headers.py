"""Security headers and TLS without a proxy (issue 21, hardening): every HTML page
cannot be framed (CSP ``frame-ancestors 'none'``), pages keep their own stricter policy,
responses over https carry HSTS (RFC 6797), and ``fhir-server serve --ssl-certfile
--ssl-keyfile`` serves https (a live uvicorn with a certificate made by the test)."""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fhir_server.app import create_app
from fhir_server.config import Settings
from tests.live import ROOT, free_port


def _app(tmp_path: Path, **settings: object) -> httpx.AsyncClient:
    app = create_app(Settings(storage=f"sqlite:///{tmp_path / 'f.sqlite3'}", **settings))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_an_html_page_without_a_policy_gets_one(tmp_path: Path) -> None:
    async with _app(tmp_path, auth="off", docs=True) as http:
        page = await http.get("/docs")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert page.headers["x-frame-options"] == "DENY"
        assert "strict-transport-security" not in page.headers  # plain http


async def test_pages_keep_their_own_stricter_policy(tmp_path: Path) -> None:
    app = create_app(Settings(storage=f"sqlite:///{tmp_path / 'f.sqlite3'}", auth="smart"))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            page = await http.get("/auth/login")
    policy = page.headers["content-security-policy"]
    assert policy.startswith("default-src 'none'")
    assert "frame-ancestors 'none'" in policy


async def test_responses_over_https_get_hsts(tmp_path: Path) -> None:
    app = create_app(Settings(storage=f"sqlite:///{tmp_path / 'f.sqlite3'}", auth="off"))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://t") as http:
            fhir = await http.get("/fhir/metadata")
            cors = await http.get("/fhir/metadata", headers={"Origin": "https://app.example"})
            other = await http.get("/healthz")
    for response in (fhir, cors, other):
        assert response.headers["strict-transport-security"] == "max-age=31536000"


def _certificate(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _serve(tmp_path: Path, *flags: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "FHIR_SERVER_STORAGE": f"sqlite:///{tmp_path / 'live.sqlite3'}",
        "FHIR_SERVER_AUTH": "off",
        "FHIR_SERVER_WORKERS": "1",
    }
    command = [sys.executable, "-m", "fhir_server.cli", "serve", *flags]
    return subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE)


def test_serve_speaks_https_with_a_certificate(tmp_path: Path) -> None:
    cert, key = _certificate(tmp_path)
    port = free_port()
    server = _serve(
        tmp_path, "--port", str(port), "--ssl-certfile", str(cert), "--ssl-keyfile", str(key)
    )
    try:
        deadline = time.monotonic() + 60
        response = None
        problem: Exception | None = None
        while time.monotonic() < deadline and response is None:
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            try:
                response = httpx.get(
                    f"https://127.0.0.1:{port}/fhir/metadata",
                    verify=ssl.create_default_context(cafile=str(cert)),
                )
            except httpx.TransportError as error:
                problem = error
                time.sleep(0.2)
        assert response is not None and response.status_code == 200, problem
        assert response.headers["strict-transport-security"] == "max-age=31536000"
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/fhir/metadata", timeout=5)
    finally:
        server.terminate()
        server.wait(timeout=15)


def test_a_key_that_does_not_match_stops_serve_with_one_line(tmp_path: Path) -> None:
    cert, _ = _certificate(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    _, wrong_key = _certificate(other)
    server = _serve(
        tmp_path, "--port", str(free_port()), "--ssl-certfile", str(cert),
        "--ssl-keyfile", str(wrong_key),
    )  # fmt: skip
    _, err = server.communicate(timeout=60)
    assert server.returncode == 2
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1 and "cannot use the certificate" in lines[0], lines
    alone = _serve(tmp_path, "--port", str(free_port()), "--ssl-certfile", str(cert))
    _, err = alone.communicate(timeout=60)
    assert alone.returncode == 2
    assert "both --ssl-certfile and --ssl-keyfile" in err.decode()
