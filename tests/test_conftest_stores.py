"""The stores the backend-parametrized tests run on (``tests/conftest.py``): a real
MongoDB joins them when ``MONGODB_URI`` is set, each test in a database of its own,
dropped at the end of the session. No server is contacted here: the URIs are fake and the
dropping runs on mongomock."""

from __future__ import annotations

import re
from pathlib import Path

import mongomock
import pytest
from pymongo.uri_parser import parse_uri

from tests import conftest

FAKE_URI = "mongodb://db.example:27017/?replicaSet=rs0"


@pytest.fixture
def created(monkeypatch: pytest.MonkeyPatch) -> dict[str, set[str]]:
    """A registry of made databases of this test's own (the session's stays untouched)."""
    registry: dict[str, set[str]] = {}
    monkeypatch.setattr(conftest, "_CREATED_DATABASES", registry)
    return registry


def test_without_mongodb_uri_the_stores_are_sqlite_and_mongomock(monkeypatch):
    monkeypatch.delenv("MONGODB_URI", raising=False)
    assert conftest.store_kinds() == ["sqlite", "mongomock"]


def test_with_mongodb_uri_a_real_mongodb_joins_the_stores(monkeypatch):
    monkeypatch.setenv("MONGODB_URI", FAKE_URI)
    assert conftest.store_kinds() == ["sqlite", "mongomock", "mongodb"]


def test_the_mongodb_url_keeps_host_and_options_and_names_a_test_database(
    monkeypatch, tmp_path: Path, created
):
    monkeypatch.setenv("MONGODB_URI", FAKE_URI)
    url = conftest.storage_url("mongodb", tmp_path)
    assert re.fullmatch(r"mongodb://db\.example:27017/fhir_test_[0-9a-f]{16}\?replicaSet=rs0", url)
    parsed = parse_uri(url)
    assert parsed["nodelist"] == [("db.example", 27017)]
    assert parsed["database"].startswith(conftest.TEST_DATABASE_PREFIX)
    assert parsed["options"] == {"replicaSet": "rs0"}


def test_each_call_names_another_database_and_records_it_for_dropping(
    monkeypatch, tmp_path: Path, created
):
    monkeypatch.setenv("MONGODB_URI", FAKE_URI)
    first = parse_uri(conftest.storage_url("mongodb", tmp_path))["database"]
    second = parse_uri(conftest.storage_url("mongodb", tmp_path))["database"]
    assert first != second
    assert created == {FAKE_URI: {first, second}}


def test_a_uri_without_a_path_or_options_gets_the_database_path(
    monkeypatch, tmp_path: Path, created
):
    monkeypatch.setenv("MONGODB_URI", "mongodb://localhost")
    url = conftest.storage_url("mongodb", tmp_path)
    assert re.fullmatch(r"mongodb://localhost/fhir_test_[0-9a-f]{16}", url)


def test_credentials_keep_authenticating_against_the_uris_database(
    monkeypatch, tmp_path: Path, created
):
    monkeypatch.setenv("MONGODB_URI", "mongodb://u:p%40ss@h1:27017,h2:27018/admin?replicaSet=rs0")
    parsed = parse_uri(conftest.storage_url("mongodb", tmp_path))
    assert parsed["nodelist"] == [("h1", 27017), ("h2", 27018)]
    assert (parsed["username"], parsed["password"]) == ("u", "p@ss")
    assert parsed["database"].startswith(conftest.TEST_DATABASE_PREFIX)
    assert parsed["options"] == {"replicaSet": "rs0", "authSource": "admin"}


def test_an_explicit_auth_source_is_left_alone(monkeypatch, tmp_path: Path, created):
    monkeypatch.setenv("MONGODB_URI", "mongodb://u:p@h/x?authSource=users&tls=false")
    parsed = parse_uri(conftest.storage_url("mongodb", tmp_path))
    assert parsed["options"] == {"authSource": "users", "tls": False}


def test_srv_uris_keep_their_scheme_and_host(monkeypatch, tmp_path: Path, created):
    monkeypatch.setenv("MONGODB_URI", "mongodb+srv://cluster0.example.net/?retryWrites=true")
    url = conftest.storage_url("mongodb", tmp_path)
    assert re.fullmatch(
        r"mongodb\+srv://cluster0\.example\.net/fhir_test_[0-9a-f]{16}\?retryWrites=true", url
    )


def test_the_mongodb_store_without_mongodb_uri_is_an_error(monkeypatch, tmp_path: Path):
    monkeypatch.delenv("MONGODB_URI", raising=False)
    with pytest.raises(ValueError, match="MONGODB_URI"):
        conftest.storage_url("mongodb", tmp_path)


def test_only_the_databases_this_session_made_are_dropped(monkeypatch, tmp_path: Path, created):
    monkeypatch.setenv("MONGODB_URI", FAKE_URI)
    server = mongomock.MongoClient()
    made = parse_uri(conftest.storage_url("mongodb", tmp_path))["database"]
    for name in (made, "fhir_test_someone_else", "clinic"):
        server[name]["resources"].insert_one({"_id": "Patient/1"})
    connected: list[str] = []

    def connect(uri: str) -> mongomock.MongoClient:
        connected.append(uri)
        return server

    assert conftest.drop_created_databases(FAKE_URI, connect) == [made]
    assert connected == [FAKE_URI]
    assert sorted(server.list_database_names()) == ["clinic", "fhir_test_someone_else"]
    assert created == {}


def test_nothing_to_drop_connects_to_nothing(created):
    def connect(uri: str) -> mongomock.MongoClient:
        raise AssertionError("no database was made, so no server is contacted")

    assert conftest.drop_created_databases(FAKE_URI, connect) == []
