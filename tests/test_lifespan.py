"""The application's lifespan through its whole ASGI stack, as uvicorn runs it
(https://asgi.readthedocs.io/en/latest/specs/lifespan.html): start-up opens the store and
completes; shutdown closes it. A middleware that expects an HTTP scope's ``path`` on the
lifespan scope makes uvicorn ("lifespan protocol appears unsupported") serve without a
store: every request a 500."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from fhir_server.app import create_app
from fhir_server.config import Settings


async def test_the_lifespan_runs_through_the_middleware_stack(tmp_path: Path) -> None:
    app = create_app(Settings(storage=f"sqlite:///{tmp_path}/fhir.sqlite3", auth="off"))
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}
    task = asyncio.create_task(app(scope, inbox.get, send))
    await inbox.put({"type": "lifespan.startup"})
    for _ in range(200):
        if sent:
            break
        await asyncio.sleep(0.05)
    assert sent == [{"type": "lifespan.startup.complete"}]
    assert app.state.store is not None
    await inbox.put({"type": "lifespan.shutdown"})
    await asyncio.wait_for(task, 30)
    assert sent[-1] == {"type": "lifespan.shutdown.complete"}
