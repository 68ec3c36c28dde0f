"""The served app tunes the process's garbage collector once started
(``fhir_server.app.serve_app``, ``tune_gc_for_serving``;
https://docs.python.org/3/library/gc.html): what each server process loads at startup is
frozen, out of the full collections, and the youngest generation is collected less
often. An app built for a test or a library (``create_app``) leaves the collector alone."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from fhir_server.app import YOUNG_THRESHOLD, create_app, serve_app
from fhir_server.config import Settings


def test_the_served_app_tunes_the_garbage_collector(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = f"sqlite:///{tmp_path / 'f.sqlite3'}"
    threshold = gc.get_threshold()
    gc.unfreeze()
    try:
        with TestClient(create_app(Settings(storage=storage, auth="off"))) as client:
            assert client.get("/fhir/metadata").status_code == 200
            assert gc.get_freeze_count() == 0
            assert gc.get_threshold() == threshold
        monkeypatch.setenv("FHIR_SERVER_STORAGE", storage)
        monkeypatch.setenv("FHIR_SERVER_AUTH", "off")
        with TestClient(serve_app()) as client:
            frozen = gc.get_freeze_count()
            assert frozen > 10_000  # the modules, definitions and caches loaded by now
            assert gc.get_threshold() == (YOUNG_THRESHOLD, *threshold[1:])
            assert client.get("/fhir/metadata").status_code == 200
    finally:
        gc.unfreeze()  # the rest of the test session collects as usual
        gc.set_threshold(*threshold)
