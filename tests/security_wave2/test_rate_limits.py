"""Rate limits (issue 21: per client, ``FHIR_SERVER_RATE_LIMIT``) as a malicious patient
sees them: every patient signs in through the same app (the portal's public client), so
one patient's flood must not lock the app's other users out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhir_server.app import create_app
from fhir_server.config import Settings
from tests.conftest import BASE, STORES, storage_url
from tests.patient_data.support import bearer, issuer


@pytest.fixture(params=STORES)
async def limited(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    settings = Settings(
        storage=storage_url(request.param, tmp_path), auth="smart", rate_limit="10/minute"
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE + "/") as http:
            yield app, http


async def test_one_patient_cannot_throttle_the_apps_other_patients(limited: Any) -> None:
    app, http = limited
    token = issuer(app)  # the same app (client_id), two patients
    alice = bearer(token("patient/*.rs", patient="alice", subject="u-alice"))
    bob = bearer(token("patient/*.rs", patient="bob", subject="u-bob"))
    statuses = [(await http.get("Observation", headers=alice)).status_code for _ in range(15)]
    assert 429 in statuses  # the flood itself is limited
    answer = await http.get("Observation", headers=bob)
    assert answer.status_code == 200, answer.text
