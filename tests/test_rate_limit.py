"""Rate limits per client on the FHIR API (issue 21, ``fhir_server.rate_limit``): the
bucket's arithmetic with a clock the test moves, then over HTTP against the real
application with SMART on (every store): a client past its limit gets 429 with
Retry-After while another client goes on, a per-client override set by the CLI applies,
and a client cannot lift its operator's limit through RFC 7592."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fhir_server.cli import main
from fhir_server.rate_limit import Limit, RateLimiter, parse_limit
from resources.errors import FhirError
from smart_auth.admin import create_client, update_client
from smart_auth.store import open_auth_store
from tests.conftest import STORES, storage_url
from tests.security_support import app_on, token_for
from tests.smart_support import REDIRECT, Env


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("text", "limit"),
    [
        ("600/minute", Limit(600, 60)),
        ("10/s", Limit(10, 1)),
        ("5 / hours", Limit(5, 3600)),
        ("1/day", Limit(1, 86400)),
        ("off", None),
        ("", None),
    ],
)
def test_limits_are_written_count_per_unit(text: str, limit: Limit | None) -> None:
    assert parse_limit(text) == limit


@pytest.mark.parametrize("text", ["600", "0/minute", "10/fortnight", "-1/s", "ten/minute"])
def test_a_malformed_limit_names_the_accepted_forms(text: str) -> None:
    with pytest.raises(ValueError, match="COUNT/UNIT"):
        parse_limit(text)


def test_a_bucket_bursts_then_refills_evenly() -> None:
    clock = _Clock()
    limiter = RateLimiter(Limit(3, 60), clock=clock)
    for _ in range(3):
        limiter.check("app")
    with pytest.raises(FhirError) as refused:
        limiter.check("app")
    assert refused.value.status == 429
    assert refused.value.code == "throttled"
    assert refused.value.headers["Retry-After"] == "20"
    limiter.check("other")  # a bucket per client
    clock.now += 20
    limiter.check("app")
    with pytest.raises(FhirError):
        limiter.check("app")


def test_each_worker_enforces_its_share() -> None:
    limiter = RateLimiter(Limit(4, 60), workers=2, clock=_Clock())
    limiter.check("app")
    limiter.check("app")
    with pytest.raises(FhirError):
        limiter.check("app")


@pytest.fixture(params=STORES)
async def env(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Env]:
    storage = storage_url(request.param, tmp_path)
    async with app_on(storage, registration="open", workers=1) as env:
        # the limit from now on: the seeding's requests are not counted
        state = env.data["app"].state
        state.settings = state.settings.model_copy(update={"rate_limit": "5/minute"})
        state.rate_limits = None  # made again from the settings on the next request
        yield env


async def _reads(env: Env, client_id: str, n: int) -> list[int]:
    headers = token_for(env, "system/*.rs", client_id=client_id)
    return [(await env.http.get("/fhir/Patient/p1", headers=headers)).status_code for _ in range(n)]


async def test_a_client_past_its_limit_waits_and_others_go_on(env: Env) -> None:
    assert await _reads(env, "bulk-sync", 5) == [200] * 5
    headers = token_for(env, "system/*.rs", client_id="bulk-sync")
    refused = await env.http.get("/fhir/Patient/p1", headers=headers)
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 12
    outcome = refused.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "throttled"
    assert await _reads(env, "portal", 5) == [200] * 5  # not starved by bulk-sync


async def test_a_clients_own_limit_overrides_the_default(env: Env) -> None:
    create_client(env.store, "Slow", auth="none", redirect_uris=[REDIRECT], client_id="slow")
    update_client(env.store, "slow", rate_limit="2/minute")
    assert await _reads(env, "slow", 3) == [200, 200, 429]
    create_client(
        env.store,
        "Fast",
        auth="none",
        redirect_uris=[REDIRECT],
        client_id="fast",
        rate_limit="off",
    )
    assert await _reads(env, "fast", 8) == [200] * 8


async def test_a_client_cannot_lift_its_limit_through_rfc7592(env: Env) -> None:
    app = {"client_name": "Dyn", "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}
    registered = (await env.http.post("/auth/register", json=app)).json()
    update_client(env.store, registered["client_id"], rate_limit="1/minute")
    body = {**app, "client_id": registered["client_id"], "rate_limit": "off"}
    response = await env.http.put(
        f"/auth/register/{registered['client_id']}",
        json=body,
        headers={"Authorization": f"Bearer {registered['registration_access_token']}"},
    )
    assert response.status_code == 200, response.text
    stored = env.store.get_client(registered["client_id"])
    assert stored is not None and stored.metadata["rate_limit"] == "1/minute"


def test_the_cli_sets_and_checks_a_clients_limit(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    storage = f"sqlite:///{tmp_path / 'fhir.sqlite3'}"
    created = main(
        [
            "clients", "create", "--name", "App", "--auth", "none",
            "--redirect-uri", REDIRECT, "--rate-limit", "100/minute", "--storage", storage,
        ]
    )  # fmt: skip
    out, _ = capsys.readouterr()
    assert created == 0
    client_id = json.loads(out)["client_id"]
    assert json.loads(out)["rate_limit"] == "100/minute"
    assert main(["clients", "update", client_id, "--rate-limit", "7/s", "--storage", storage]) == 0
    capsys.readouterr()
    store = open_auth_store(storage)
    try:
        client = store.get_client(client_id)
        assert client is not None and client.metadata["rate_limit"] == "7/s"
    finally:
        store.close()
    with pytest.raises(SystemExit) as bad:
        main(["clients", "update", client_id, "--rate-limit", "lots", "--storage", storage])
    assert bad.value.code == 2
    assert "COUNT/UNIT" in capsys.readouterr().err
