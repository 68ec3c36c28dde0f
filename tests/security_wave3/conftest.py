"""Fixtures of the wave-3 attack tests (this session's new paths: the websocket channel,
topic-based Subscriptions, caregivers' own preferences, scheduling, quiet hours): the
real application with SMART on, on every store (``tests.conftest.STORES``: SQLite file,
the MongoDB stand-in), tokens of its own authorization server. Modules that need other
settings (a hook receiver allowed as an outbound endpoint, uvicorn for real websockets)
take the ``settings`` of the module whose behaviour they attack."""

from __future__ import annotations

from pathlib import Path

import pytest

from fhir_server.config import Settings
from tests.app_client import system_admin
from tests.conftest import STORES, storage_url
from tests.patient_data.support import issuer


@pytest.fixture(params=STORES)
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    return Settings(storage=storage_url(request.param, tmp_path), auth="smart")


token = pytest.fixture(issuer, name="token")
"""Tokens of the app's own authorization server (the app: ``tests.conftest``'s)."""
admin = pytest.fixture(system_admin, name="admin")
