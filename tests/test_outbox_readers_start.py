"""The outbox's readers (notifications to people, visit summaries: ``fhir_server.events.reader``)
have their cursors once the server has started, before it serves a request: a write of
the first moments is heard. The cursor was made at the readers' first tick, after the
first requests could have committed (with writes on the event loop, they did)."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from fhir_server.app import create_app
from fhir_server.config import Settings
from fhir_server.events.reader import OutboxReader


def test_the_readers_cursors_are_made_before_the_first_request(tmp_path: Path) -> None:
    settings = Settings(
        storage=f"sqlite:///{tmp_path / 'f.sqlite3'}",
        auth="off",
        smtp_url="smtp://127.0.0.1:9",  # a mail server is only needed when one is sent
        auto_visit_summary="on",
    )
    with TestClient(create_app(settings)) as client:
        dispatcher = client.app.state.dispatcher
        keys = [r.key for r in dispatcher.readers if isinstance(r, OutboxReader)]
        assert len(keys) >= 2  # the visit summaries and the notifications to people
        outbox = dispatcher.store.outbox
        for key in keys:
            assert client.portal.call(outbox.min_position, [key]) is not None, key
