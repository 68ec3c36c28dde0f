"""A test double of Stripe: a local HTTP server (a thread, on 127.0.0.1) that speaks the
part of Stripe's API the server uses, and signs webhook events as Stripe does.

- ``POST /v1/checkout/sessions`` (form-encoded, Stripe's ``a[b][0][c]=`` nesting; bearer
  secret key; https://docs.stripe.com/api/checkout/sessions/create) opens a session and
  answers its JSON (``id``, ``url``, ``amount_total``, ``currency``, ``metadata``...).
- ``GET /v1/checkout/sessions/{id}`` answers it again.
- :meth:`FakeStripe.pay` plays the payer finishing the checkout: the session becomes
  ``paid`` and the method returns the ``checkout.session.completed`` event as Stripe
  would POST it to the webhook endpoint: the JSON body and a ``Stripe-Signature`` header
  ``t=<unix time>,v1=<HMAC-SHA256 of "t.body" with the endpoint secret>``
  (https://docs.stripe.com/webhooks#verify-manually). The signature is computed here,
  independently of the ``stripe`` library the server verifies it with.
  :meth:`SignedEvent.send` POSTs it to a live server's webhook URL.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

SECRET_KEY = "sk_test_fake_0123456789"
WEBHOOK_SECRET = "whsec_fake_0123456789abcdef"


@dataclass(frozen=True)
class SignedEvent:
    """A webhook request as Stripe sends it."""

    event: dict[str, Any]
    body: bytes
    headers: dict[str, str]

    def send(self, url: str) -> int:
        """POST it to ``url`` (a live server); the answer's status."""
        request = urllib.request.Request(url, self.body, self.headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return int(response.status)
        except urllib.error.HTTPError as error:
            return int(error.code)


@dataclass
class FakeStripe:
    """The double's state: the sessions it opened and the API requests it got."""

    api_base: str = ""
    secret_key: str = SECRET_KEY
    webhook_secret: str = WEBHOOK_SECRET
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def open_session(self, form: dict[str, Any]) -> dict[str, Any]:
        session_id = "cs_test_" + secrets.token_hex(12)
        item = form["line_items"][0]
        price = item["price_data"]
        amount = int(price["unit_amount"]) * int(item.get("quantity", 1))
        session = {
            "id": session_id,
            "object": "checkout.session",
            "mode": form.get("mode", "payment"),
            "status": "open",
            "payment_status": "unpaid",
            "amount_total": amount,
            "currency": price["currency"],
            "client_reference_id": form.get("client_reference_id"),
            "metadata": form.get("metadata", {}),
            "success_url": form.get("success_url"),
            "cancel_url": form.get("cancel_url"),
            "payment_intent": None,
            "url": f"{self.api_base}/pay/{session_id}",
            "line_items_name": price.get("product_data", {}).get("name"),
            "created": int(time.time()),
            "livemode": False,
        }
        with self.lock:
            self.sessions[session_id] = session
        return session

    def pay(
        self,
        session_id: str,
        *,
        event_type: str = "checkout.session.completed",
        signed_at: float | None = None,
        secret: str | None = None,
    ) -> SignedEvent:
        """The payer completes the checkout: the signed event Stripe would send."""
        with self.lock:
            session = self.sessions[session_id]
            session.update(status="complete", payment_status="paid")
            if session["payment_intent"] is None:
                session["payment_intent"] = "pi_test_" + secrets.token_hex(12)
            snapshot = json.loads(json.dumps(session))
        event = {
            "id": "evt_test_" + secrets.token_hex(12),
            "object": "event",
            "api_version": "2024-06-20",
            "created": int(time.time()),
            "livemode": False,
            "pending_webhooks": 1,
            "type": event_type,
            "data": {"object": snapshot},
        }
        return self.sign(event, signed_at=signed_at, secret=secret)

    def sign(
        self, event: dict[str, Any], *, signed_at: float | None = None, secret: str | None = None
    ) -> SignedEvent:
        body = json.dumps(event, indent=2).encode()
        return SignedEvent(event, body, self.signature_headers(body, signed_at, secret))

    def signature_headers(
        self, body: bytes, signed_at: float | None = None, secret: str | None = None
    ) -> dict[str, str]:
        stamp = int(time.time() if signed_at is None else signed_at)
        key = (secret or self.webhook_secret).encode()
        mac = hmac.new(key, f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
        return {"Stripe-Signature": f"t={stamp},v1={mac}", "Content-Type": "application/json"}


def parse_form(body: str) -> dict[str, Any]:
    """Stripe's form encoding (``line_items[0][price_data][currency]=usd``) as nested
    dicts and lists."""
    root: dict[str, Any] = {}
    for key, value in parse_qsl(body, keep_blank_values=True):
        path = key.replace("]", "").split("[")
        node: Any = root
        for part, following in zip(path, path[1:], strict=False):
            container: Any = [] if following.isdigit() else {}
            if isinstance(node, list):
                index = int(part)
                while len(node) <= index:
                    node.append(container)
                node = node[index]
            else:
                node = node.setdefault(part, container)
        last = path[-1]
        if isinstance(node, list):
            node.append(value)
        else:
            node[last] = value
    return root


def _handler(fake: FakeStripe) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Request-Id", "req_" + secrets.token_hex(8))
            self.end_headers()
            self.wfile.write(data)

        def _authorised(self) -> bool:
            if self.headers.get("Authorization") == f"Bearer {fake.secret_key}":
                return True
            self._answer(
                401,
                {"error": {"type": "invalid_request_error", "message": "Invalid API Key"}},
            )
            return False

        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode()
            with fake.lock:
                fake.requests.append(("POST", self.path))
            if not self._authorised():
                return
            if self.path != "/v1/checkout/sessions":
                self._answer(404, {"error": {"type": "invalid_request_error"}})
                return
            self._answer(200, fake.open_session(parse_form(body)))

        def do_GET(self) -> None:  # noqa: N802
            with fake.lock:
                fake.requests.append(("GET", self.path))
            if not self._authorised():
                return
            session = fake.sessions.get(self.path.rsplit("/", 1)[-1])
            if not self.path.startswith("/v1/checkout/sessions/") or session is None:
                self._answer(404, {"error": {"type": "invalid_request_error"}})
                return
            self._answer(200, session)

    return Handler


@contextmanager
def fake_stripe() -> Iterator[FakeStripe]:
    """The double, listening on a free port of 127.0.0.1 for the ``with`` block."""
    fake = FakeStripe()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    fake.api_base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="fake-stripe", daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
