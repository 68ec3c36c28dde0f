"""A fuzzer over the HTTP API with a bounded budget (issue 21, hardening): Schemathesis
generates requests from the OpenAPI document the server publishes
(``fhir_server.openapi``: FHIR interactions and operations, the authorization server,
the account API, the webhook, the probes) and sends them to a live ``fhir-server serve``
(uvicorn); Hypothesis strategies add FHIR bodies, search strings and token requests.
Every answer must come within 10 s, be below 500, and never show internals (a
traceback, a source path, an exception class) in its body.

The live server runs once for the module (not per store: what is fuzzed is the HTTP
layer and the request handling above the stores, which the other suites cover on
both). The budget: :data:`EXAMPLES` requests per operation and strategy (about 40 s in
all, most of it starting the two servers).
"""

from __future__ import annotations

import json
import os
import re
import string
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.live import LiveServer

EXAMPLES = int(os.environ.get("FHIR_FUZZ_EXAMPLES", "8"))
"""Requests per operation and strategy. In CI the examples are the same every run
(derandomized, so a run fails only for a change of the server); set
``FHIR_FUZZ_EXAMPLES=200`` for a longer, random exploration."""
TIMEOUT = 10.0
_BUDGET = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize="FHIR_FUZZ_EXAMPLES" not in os.environ,
)
_INTERNALS = re.compile(
    r"Traceback \(most recent call last\)|File \"/|\.py\", line \d+|"
    r"(?:KeyError|AttributeError|TypeError|ValueError|AssertionError)\b|/site-packages/"
)


def _live(factory: pytest.TempPathFactory, auth: str) -> LiveServer:
    folder = factory.mktemp(f"fuzz-{auth}")
    return LiveServer(
        f"sqlite:///{folder / 'fhir.sqlite3'}",
        folder / "server.log",
        auth=auth,
        FHIR_SERVER_REGISTRATION="open",
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """Without authorization: the fuzzed FHIR requests reach the handlers."""
    live = _live(tmp_path_factory, "off")
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture(scope="module")
def smart_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """With the authorization server: its endpoints are fuzzed (and every FHIR request
    without a token must be a clean 401)."""
    live = _live(tmp_path_factory, "smart")
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture(scope="module")
def fhir_schema(server: LiveServer) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{server.origin}/openapi.json")


@pytest.fixture(scope="module")
def auth_schema(smart_server: LiveServer) -> schemathesis.BaseSchema:
    loaded = schemathesis.openapi.from_url(f"{smart_server.origin}/openapi.json")
    return loaded.include(path_regex="^/(auth|fhir/\\.well-known)/")


def fuzz(api: schemathesis.BaseSchema, origin: str) -> int:
    """Every operation of ``api``, :data:`EXAMPLES` generated requests each; how many
    operations there were."""
    operations = [result.ok() for result in api.get_all_operations()]
    for operation in operations:

        @given(case=operation.as_strategy())
        @_BUDGET
        def run(case: schemathesis.Case) -> None:
            response = case.call(base_url=origin, timeout=TIMEOUT)
            check(response.status_code, response.text, f"{case.method} {case.formatted_path}")

        run()
    return len(operations)


def check(status: int, body: str, what: str) -> None:
    # 501 (a feature this server is not configured for, e.g. payments) and 503 (not
    # ready) are deliberate answers, OperationOutcomes; every other 5xx is a failure
    deliberate = status in (501, 503) and '"resourceType":"OperationOutcome"' in body
    assert status < 500 or deliberate, f"{what}: {status} {body[:300]}"
    assert not _INTERNALS.search(body), f"{what}: internals in the body: {body[:300]}"


def test_every_fhir_operation_answers_without_5xx(
    fhir_schema: schemathesis.BaseSchema, server: LiveServer
) -> None:
    assert fuzz(fhir_schema, server.origin) >= 30  # interactions and operations


def test_every_auth_endpoint_answers_without_5xx(
    auth_schema: schemathesis.BaseSchema, smart_server: LiveServer
) -> None:
    assert fuzz(auth_schema, smart_server.origin) >= 12


# -- Hypothesis strategies of our own -----------------------------------------------------

_TYPES = ["Patient", "Observation", "Bundle", "Encounter", "Flag", "Nope", ""]
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
_resources = st.fixed_dictionaries(
    {"resourceType": st.sampled_from(_TYPES)},
    optional={
        "id": st.text(max_size=70),
        "meta": _json_values,
        "status": _json_values,
        "subject": _json_values,
        "entry": _json_values,
        "type": _json_values,
        "name": _json_values,
        "valueQuantity": _json_values,
        "contained": st.lists(_json_values, max_size=3),
    },
)
_param_names = st.sampled_from(
    ["_id", "name", "code", "date", "subject", "patient", "value-quantity",
     "_has:Observation:patient:code", "subject:Patient.name", "_include", "_revinclude",
     "_sort", "_count", "_elements", "_summary", "_total", "_lastUpdated", "identifier",
     "birthdate", "_text", "x"]
)  # fmt: skip
_param_values = st.text(alphabet=string.printable + "éß€\u0000", max_size=40) | st.sampled_from(
    ["ge2020", "lt", "http://loinc.org|", "|", "$", ":missing", "-1", "1e309"]
)


@given(resource=_resources, method=st.sampled_from(["POST", "PUT"]))
@_BUDGET
def test_fhir_bodies_never_break_the_server(
    server: LiveServer, resource: dict, method: str
) -> None:
    type_ = resource.get("resourceType") or "Patient"
    path = f"/fhir/{type_}" if method == "POST" else f"/fhir/{type_}/fuzz-1"
    response = httpx.request(
        method,
        f"{server.origin}{path}",
        content=json.dumps(resource),
        headers={"Content-Type": "application/fhir+json"},
        timeout=TIMEOUT,
    )
    check(response.status_code, response.text, f"{method} {path}")


@given(
    type_=st.sampled_from(["Patient", "Observation", "Slot"]),
    params=st.lists(st.tuples(_param_names, _param_values), max_size=5),
)
@_BUDGET
def test_search_strings_never_break_the_server(
    server: LiveServer, type_: str, params: list[tuple[str, str]]
) -> None:
    response = httpx.get(f"{server.origin}/fhir/{type_}", params=params, timeout=TIMEOUT)
    check(response.status_code, response.text, f"GET /fhir/{type_}?{params}")


@given(
    form=st.dictionaries(
        st.sampled_from(
            ["grant_type", "code", "redirect_uri", "code_verifier", "client_id", "refresh_token",
             "scope", "client_assertion_type", "client_assertion", "token", "token_type_hint"]
        ),
        st.text(max_size=60) | st.sampled_from(["authorization_code", "refresh_token",
                                                "client_credentials", "x.y.z", ""]),
        max_size=6,
    ),
    endpoint=st.sampled_from(["/auth/token", "/auth/revoke", "/auth/introspect"]),
)  # fmt: skip
@_BUDGET
def test_token_requests_never_break_the_server(
    smart_server: LiveServer, form: dict[str, str], endpoint: str
) -> None:
    response = httpx.post(f"{smart_server.origin}{endpoint}", data=form, timeout=TIMEOUT)
    check(response.status_code, response.text, f"POST {endpoint} {form}")


def test_the_servers_logged_no_unexpected_failure(
    server: LiveServer, smart_server: LiveServer
) -> None:
    """After the fuzzing above (this test runs last in the module)."""
    for live in (server, smart_server):
        log = Path(live.log_path).read_text(errors="replace")
        assert "unexpected failure" not in log, log[-3000:]
