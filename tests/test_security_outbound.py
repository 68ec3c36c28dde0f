"""Outbound requests (``fhir_server.outbound``) against server-side request forgery: a
client's ``jwks_uri`` (RFC 7523 client authentication, SMART Backend Services) is fetched
only from public addresses over https unless ``FHIR_SERVER_OUTBOUND_ALLOW`` names the
host, through the address that was checked, within time and size limits, and every
failure answers with one text (OWASP SSRF prevention cheat sheet,
https://cheatsheetseries.owasp.org/cheatsheets/Server_Side_Request_Forgery_Prevention_Cheat_Sheet.html).

The guard is driven against real servers on 127.0.0.1 (plain and TLS), and the token and
registration endpoints of the real application over HTTP on every store."""

from __future__ import annotations

import datetime
import ipaddress
import json
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi import FastAPI
from pydantic import ValidationError

from fhir_server.app import create_app
from fhir_server.config import Settings
from fhir_server.outbound import GENERIC_ERROR, OutboundError, OutboundGuard, is_public
from smart_auth.admin import create_client
from smart_auth.client_auth import JWKS_URI_FAILED
from tests.conftest import STORES, storage_url
from tests.smart_support import (
    ASSERTION_TYPE,
    ORIGIN,
    assertion,
    ec_key,
    public_jwks,
    static_server,
)

# -- servers on 127.0.0.1 --------------------------------------------------------------


class _Site:
    """A server on a free port of 127.0.0.1 whose handler is a function of the request
    handler (the test writes the response); it records each request's Host header."""

    def __init__(
        self, respond: Callable[[BaseHTTPRequestHandler], None], tls: ssl.SSLContext | None
    ) -> None:
        self.hosts: list[str | None] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                owner.hosts.append(self.headers.get("Host"))
                respond(self)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> _Site:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@contextmanager
def site(
    respond: Callable[[BaseHTTPRequestHandler], None], tls: ssl.SSLContext | None = None
) -> Iterator[_Site]:
    with _Site(respond, tls) as server:
        yield server


def _send(handler: BaseHTTPRequestHandler, status: int, body: bytes, **headers: str) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    for name, value in headers.items():
        handler.send_header(name.replace("_", "-"), value)
    handler.end_headers()
    handler.wfile.write(body)


JWKS = json.dumps({"keys": []}).encode()


def _jwks(handler: BaseHTTPRequestHandler) -> None:
    _send(handler, 200, JWKS)


def closed_port() -> int:
    """A port of 127.0.0.1 nothing listens on (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def resolver(table: dict[str, list[str]], calls: list[str] | None = None) -> Any:
    """A resolver answering from ``table`` (the tests' DNS), recording each lookup."""

    def resolve(host: str, port: int) -> list[str]:
        if calls is not None:
            calls.append(host)
        if host not in table:
            raise OSError("no such host")
        return table[host]

    return resolve


def failure(guard: OutboundGuard, url: str) -> OutboundError:
    with pytest.raises(OutboundError) as caught:
        guard.get_json(url)
    assert str(caught.value) == GENERIC_ERROR
    return caught.value


# -- the guard ---------------------------------------------------------------------------

NOT_PUBLIC = [
    "https://127.0.0.1/keys",
    "https://127.8.9.10/keys",
    "https://10.0.0.1/keys",
    "https://172.16.5.4/keys",
    "https://192.168.1.1/keys",
    "https://100.64.0.1/keys",  # shared address space (carrier-grade NAT)
    "https://169.254.169.254/latest/meta-data/",  # cloud metadata (link-local)
    "https://0.0.0.0/keys",
    "https://224.0.0.1/keys",
    "https://[::1]/keys",
    "https://[::]/keys",
    "https://[fc00::1]/keys",
    "https://[fd00:ec2::254]/keys",  # a ULA metadata address
    "https://[fe80::1]/keys",
    "https://[::ffff:127.0.0.1]/keys",  # IPv4-mapped
    "https://[::ffff:169.254.169.254]/keys",
    "https://[2002:7f00:1::1]/keys",  # 6to4 of 127.0.0.1
    "https://[64:ff9b::a9fe:a9fe]/keys",  # NAT64 of 169.254.169.254
    "https://localhost/keys",
    "https://LOCALHOST./keys",
    "https://keys.localhost/keys",
]


@pytest.mark.parametrize("url", NOT_PUBLIC)
def test_loopback_private_link_local_and_metadata_addresses_are_refused(url: str) -> None:
    lookups: list[str] = []
    guard = OutboundGuard(resolve=resolver({}, lookups))
    assert guard.refusal(url) is not None
    failure(guard, url)
    assert lookups == []  # refused before any lookup or connection


@pytest.mark.parametrize(
    "addresses", [["127.0.0.1"], ["10.1.2.3"], ["93.184.215.14", "169.254.169.254"], ["::1"]]
)
def test_a_host_name_resolving_to_a_non_public_address_is_refused(addresses: list[str]) -> None:
    guard = OutboundGuard(resolve=resolver({"keys.example.org": addresses}))
    url = "https://keys.example.org/jwks"
    assert guard.refusal(url) is None  # nothing to tell before the lookup
    assert "not a public address" in failure(guard, url).reason


def test_localhost_resolves_to_loopback_and_is_refused_by_the_system_resolver_too() -> None:
    with site(_jwks) as server:
        guard = OutboundGuard("127.0.0.1")  # the address is allowed, the name over http not
        failure(guard, f"http://localhost:{server.port}/jwks")
        assert server.hosts == []


@pytest.mark.parametrize(
    "address",
    ["8.8.8.8", "2001:4860:4860::8888", "64:ff9b::808:808", "::ffff:8.8.8.8", "1.1.1.1"],
)
def test_public_addresses_are_public(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))


def test_loopback_http_is_refused_by_default_and_never_contacted() -> None:
    with site(_jwks) as server:
        failure(OutboundGuard(), f"http://127.0.0.1:{server.port}/jwks")
        assert server.hosts == []


def test_the_allow_list_opens_an_address_or_network() -> None:
    with site(_jwks) as server:
        for allow in ("127.0.0.1", "127.0.0.0/8", " 10.0.0.0/8 , 127.0.0.1/32 "):
            assert OutboundGuard(allow).get_json(f"http://127.0.0.1:{server.port}/j") == {
                "keys": []
            }
        # an IPv6 network does not hold an IPv4 address
        failure(OutboundGuard("::1"), f"http://127.0.0.1:{server.port}/j")


def test_a_named_host_connects_to_the_address_checked_once_with_its_own_host_header() -> None:
    lookups: list[str] = []
    answers = iter([["127.0.0.1"], ["10.9.9.9"]])  # a second lookup would get another one

    def rebinding(host: str, port: int) -> list[str]:
        lookups.append(host)
        return next(answers)

    with site(_jwks) as server:
        guard = OutboundGuard("keys.internal.example", resolve=rebinding)
        url = f"http://keys.internal.example:{server.port}/jwks"
        assert guard.get_json(url) == {"keys": []}
        assert lookups == ["keys.internal.example"]
        assert server.hosts == [f"keys.internal.example:{server.port}"]


def test_an_allowed_network_admits_a_name_resolving_into_it_over_https_only() -> None:
    with site(_jwks) as server:
        guard = OutboundGuard("127.0.0.1", resolve=resolver({"keys.example.org": ["127.0.0.1"]}))
        # http to a name: only names on the list may use http
        failure(guard, f"http://keys.example.org:{server.port}/jwks")
        assert server.hosts == []


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA and a server certificate for ``jwks.example.test`` signed by it."""
    folder = tmp_path_factory.mktemp("tls")
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "jwks.example.test")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("jwks.example.test")]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = {"ca": folder / "ca.pem", "cert": folder / "cert.pem", "key": folder / "key.pem"}
    files["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files["key"].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


def test_tls_goes_to_the_checked_address_with_the_name_as_sni_and_verified(
    tls_files: dict[str, Path],
) -> None:
    names: list[str | None] = []
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(tls_files["cert"], tls_files["key"])
    server_tls.sni_callback = lambda sock, name, ctx: names.append(name)  # type: ignore[assignment]
    client_tls = ssl.create_default_context(cafile=str(tls_files["ca"]))
    table = {"jwks.example.test": ["127.0.0.1"], "other.example.test": ["127.0.0.1"]}
    with site(_jwks, tls=server_tls) as server:
        guard = OutboundGuard("127.0.0.1", resolve=resolver(table), ssl_context=client_tls)
        assert guard.get_json(f"https://jwks.example.test:{server.port}/jwks") == {"keys": []}
        assert names == ["jwks.example.test"]
        assert server.hosts == [f"jwks.example.test:{server.port}"]
        # the certificate is checked against the URL's name, not the address connected to
        reason = failure(guard, f"https://other.example.test:{server.port}/jwks").reason
        assert "CERTIFICATE" in reason.upper()
        untrusted = OutboundGuard("127.0.0.1", resolve=resolver(table))  # the default CAs
        failure(untrusted, f"https://jwks.example.test:{server.port}/jwks")


def test_a_response_over_the_size_limit_is_refused() -> None:
    big = json.dumps({"keys": [{"n": "x" * 200_000}]}).encode()

    def declared(handler: BaseHTTPRequestHandler) -> None:
        _send(handler, 200, big)

    def streamed(handler: BaseHTTPRequestHandler) -> None:  # no Content-Length
        handler.send_response(200)
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        for start in range(0, len(big), 8192):
            piece = big[start : start + 8192]
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        handler.wfile.write(b"0\r\n\r\n")

    for respond in (declared, streamed):
        with site(respond) as server:
            url = f"http://127.0.0.1:{server.port}/jwks"
            assert "limit" in failure(OutboundGuard("127.0.0.1"), url).reason
            assert OutboundGuard("127.0.0.1", max_bytes=300_000).get_json(url)["keys"]


def test_a_compressed_response_is_refused() -> None:
    def gzipped(handler: BaseHTTPRequestHandler) -> None:
        _send(handler, 200, b"\x1f\x8b", Content_Encoding="gzip")

    with site(gzipped) as server:
        failure(OutboundGuard("127.0.0.1"), f"http://127.0.0.1:{server.port}/jwks")


@pytest.mark.parametrize("stall", ["before the headers", "within the body"])
def test_a_slow_server_runs_into_the_time_limit(stall: str) -> None:
    release = threading.Event()

    def slow(handler: BaseHTTPRequestHandler) -> None:
        if stall == "before the headers":
            release.wait(10)
            return
        handler.send_response(200)
        handler.send_header("Content-Length", "1000")
        handler.end_headers()
        for _ in range(1000):  # a byte every 0.1 s: no single read waits long
            if release.wait(0.1):
                return
            handler.wfile.write(b" ")
            handler.wfile.flush()

    with site(slow) as server:
        guard = OutboundGuard("127.0.0.1", timeout=1.0)
        started = time.monotonic()
        failure(guard, f"http://127.0.0.1:{server.port}/jwks")
        took = time.monotonic() - started
        release.set()
    assert 0.9 <= took < 3.0  # the limit, plus scheduling on a busy machine


def test_one_error_text_whatever_went_wrong() -> None:
    def status(handler: BaseHTTPRequestHandler) -> None:
        _send(handler, 500, b'{"error": "boom"}')

    def not_json(handler: BaseHTTPRequestHandler) -> None:
        _send(handler, 200, b"<html>keys</html>")

    guard = OutboundGuard("127.0.0.1")
    with site(status) as failing, site(not_json) as html:
        errors = [
            failure(guard, "https://169.254.169.254/latest/meta-data/"),  # refused
            failure(guard, f"http://127.0.0.1:{closed_port()}/jwks"),  # connection refused
            failure(guard, f"http://127.0.0.1:{failing.port}/jwks"),  # HTTP error status
            failure(guard, f"http://127.0.0.1:{html.port}/jwks"),  # not JSON
            failure(guard, "ftp://keys.example.org/jwks"),  # not http
            failure(guard, "https://user:pw@keys.example.org/jwks"),  # user information
        ]
    assert {str(e) for e in errors} == {GENERIC_ERROR}
    assert len({e.reason for e in errors}) == len(errors)  # the log tells them apart


def test_a_bad_allow_list_stops_the_start_up() -> None:
    with pytest.raises(ValidationError, match="not a host or network"):
        Settings(outbound_allow="127.0.0.1, not a host!")


# -- the token and registration endpoints, on every store ----------------------------------


@asynccontextmanager
async def smart_app(kind: str, tmp_path: Path, **settings: Any) -> AsyncIterator[Any]:
    """The real application with SMART on over a store of ``kind``, driven in-process."""
    app: FastAPI = create_app(
        Settings(storage=storage_url(kind, tmp_path), auth="smart", **settings)
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as http:
            yield app.state.auth, http


async def client_credentials(http: httpx.AsyncClient, signed: str) -> httpx.Response:
    return await http.post(
        "/auth/token",
        data={
            "grant_type": "client_credentials",
            "scope": "system/*.rs",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": signed,
        },
    )


def backend_with_jwks_uri(auth: Any, jwks_uri: str) -> str:
    """A backend service registered by the operator (no check at registration)."""
    client = create_client(
        auth.store, "Bulk", auth="private_key_jwt", jwks_uri=jwks_uri, scope="system/*.rs"
    )
    return str(client["client_id"])


@pytest.mark.parametrize("kind", STORES)
async def test_a_jwks_uri_on_loopback_is_refused_by_default(kind: str, tmp_path: Path) -> None:
    key = ec_key()
    with static_server() as keys:
        keys.documents["/jwks.json"] = ("application/json", json.dumps(public_jwks(key)).encode())
        async with smart_app(kind, tmp_path) as (auth, http):
            client_id = backend_with_jwks_uri(auth, f"{keys.origin}/jwks.json")
            response = await client_credentials(http, assertion(key, client_id, alg="ES384"))
        assert keys.requests == []  # never contacted
    assert response.status_code in (400, 401)
    assert response.json() == {"error": "invalid_client", "error_description": JWKS_URI_FAILED}


@pytest.mark.parametrize("kind", STORES)
async def test_the_allow_list_lets_private_key_jwt_fetch_a_loopback_jwks_uri(
    kind: str, tmp_path: Path
) -> None:
    key = ec_key()
    with static_server() as keys:
        keys.documents["/jwks.json"] = ("application/json", json.dumps(public_jwks(key)).encode())
        async with smart_app(kind, tmp_path, outbound_allow="127.0.0.1") as (auth, http):
            client_id = backend_with_jwks_uri(auth, f"{keys.origin}/jwks.json")
            response = await client_credentials(http, assertion(key, client_id, alg="ES384"))
            assert response.status_code == 200, response.text
            token = response.json()["access_token"]
            found = await http.get("/fhir/Patient", headers={"Authorization": f"Bearer {token}"})
        assert keys.requests == ["/jwks.json"]
    assert found.status_code == 200, found.text
    assert found.json()["resourceType"] == "Bundle"


@pytest.mark.parametrize("kind", STORES)
async def test_the_token_endpoint_tells_no_failure_from_another(kind: str, tmp_path: Path) -> None:
    key = ec_key()

    def status(handler: BaseHTTPRequestHandler) -> None:
        _send(handler, 503, b"{}")

    def not_json(handler: BaseHTTPRequestHandler) -> None:
        _send(handler, 200, b"keys: none")

    def not_jwks(handler: BaseHTTPRequestHandler) -> None:
        _send(handler, 200, b'{"keys": "none"}')

    with site(status) as failing, site(not_json) as text, site(not_jwks) as other:
        uris = [
            "https://169.254.169.254/latest/meta-data/",  # refused: metadata
            "https://10.0.0.7:8443/jwks",  # refused: private
            f"http://127.0.0.1:{closed_port()}/jwks",  # connection refused
            f"http://127.0.0.1:{failing.port}/jwks",  # HTTP error status
            f"http://127.0.0.1:{text.port}/jwks",  # not JSON
            f"http://127.0.0.1:{other.port}/jwks",  # JSON, not a JWKS
        ]
        async with smart_app(kind, tmp_path, outbound_allow="127.0.0.1") as (auth, http):
            answers = []
            for uri in uris:
                client_id = backend_with_jwks_uri(auth, uri)
                response = await client_credentials(http, assertion(key, client_id, alg="ES384"))
                answers.append((response.status_code, response.json()))
    assert len(set(json.dumps(a) for a in answers)) == 1, answers
    status_code, body = answers[0]
    assert status_code in (400, 401)
    assert body == {"error": "invalid_client", "error_description": JWKS_URI_FAILED}


REGISTRATION = {
    "client_name": "Backend",
    "token_endpoint_auth_method": "private_key_jwt",
    "redirect_uris": ["https://app.example/callback"],
    "scope": "patient/*.rs",
}


@pytest.mark.parametrize("kind", STORES)
@pytest.mark.parametrize(
    "jwks_uri",
    [
        "https://10.0.0.1/jwks",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::1]:8443/jwks",
        "https://[::ffff:127.0.0.1]/jwks",
        "https://localhost:8443/jwks",
        "http://127.0.0.1:8080/jwks",
    ],
)
async def test_registration_refuses_a_jwks_uri_the_guard_would_refuse(
    kind: str, jwks_uri: str, tmp_path: Path
) -> None:
    async with smart_app(kind, tmp_path, registration="open") as (_, http):
        response = await http.post("/auth/register", json={**REGISTRATION, "jwks_uri": jwks_uri})
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_client_metadata"


@pytest.mark.parametrize("kind", STORES)
async def test_registration_accepts_a_public_or_allowed_jwks_uri(kind: str, tmp_path: Path) -> None:
    settings = {"registration": "open", "outbound_allow": "127.0.0.1"}
    async with smart_app(kind, tmp_path, **settings) as (_, http):
        for jwks_uri in ("https://keys.example.org/jwks", "http://127.0.0.1:8080/jwks"):
            body = {**REGISTRATION, "jwks_uri": jwks_uri}
            response = await http.post("/auth/register", json=body)
            assert response.status_code == 201, response.text
            assert response.json()["jwks_uri"] == jwks_uri
