"""What the test folders that drive the app with SMART tokens share (tests/scheduling,
tests/security_wave2): staff's headers as a fixture function, and an httpx client that
talks to the app in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from tests.conftest import BASE
from tests.patient_data.support import Token, bearer


def system_admin(token: Token) -> dict[str, str]:
    """The headers of a backend service that may do everything (``system/*.cruds``); a
    conftest takes it as ``admin = pytest.fixture(system_admin, name="admin")``."""
    return bearer(token("system/*.cruds"))


@asynccontextmanager
async def asgi_client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client of the app (started) at ``tests.conftest.BASE``."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE + "/") as client:
        yield client
