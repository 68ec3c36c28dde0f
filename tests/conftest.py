"""Shared fixtures: the app over real stores, driven in-process through httpx.

The backend-parametrized tests run on every kind of store in :data:`STORES`: SQLite (a
file per test) and MongoDB through the in-process stand-in (mongomock), plus a real
MongoDB when the environment variable ``MONGODB_URI`` names one (a replica set, for
transactions). Each test then gets a database of its own on that server
(``fhir_test_<hex>``), and the databases this session made are dropped when it ends.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit, urlunsplit

import httpx
import pytest

from fhir_server.app import create_app
from fhir_server.config import Settings

TEST_DATABASE_PREFIX = "fhir_test_"
"""Every database the tests make on a real MongoDB starts with this."""
_CREATED_DATABASES: dict[str, set[str]] = {}
"""MONGODB_URI -> the databases :func:`storage_url` named on that server in this session."""


def store_kinds(environ: Mapping[str, str] = os.environ) -> list[str]:
    """The stores to test on: always SQLite and the MongoDB stand-in; a real MongoDB too
    when ``MONGODB_URI`` is set."""
    return ["sqlite", "mongomock", *(["mongodb"] if environ.get("MONGODB_URI") else [])]


STORES = store_kinds()
"""Every store the backend-parametrized tests run on (``tests/test_mongo_store/`` also
runs on a real server when MONGODB_URI is set)."""

BASE = "http://testserver/fhir"
JSON = {"content-type": "application/fhir+json"}


def mongodb_url(uri: str, database: str) -> str:
    """The server of ``uri`` (hosts, credentials and options kept) with ``database`` as its
    path. A URI's path is also its authentication database when it sets no
    ``authSource``, so with credentials that one is kept as ``authSource``."""
    parts = urlsplit(uri)
    query = parts.query
    option_names = {name.lower() for name, _ in parse_qsl(query, keep_blank_values=True)}
    if parts.username is not None and "authsource" not in option_names:
        auth_source = f"authSource={quote(unquote(parts.path.strip('/')) or 'admin', safe='')}"
        query = f"{query}&{auth_source}" if query else auth_source
    return urlunsplit(parts._replace(path=f"/{database}", query=query))


def storage_url(kind: str, tmp_path: Path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'fhir.sqlite3'}"
    if kind == "mongomock":  # a fresh in-memory server per test
        return f"mongomock://{tmp_path.name}-{id(tmp_path):x}/fhir"
    if kind == "mongodb":  # a fresh database per test, dropped at the end of the session
        uri = os.environ.get("MONGODB_URI")
        if not uri:
            raise ValueError("the 'mongodb' store needs MONGODB_URI")
        database = f"{TEST_DATABASE_PREFIX}{uuid.uuid4().hex[:16]}"
        _CREATED_DATABASES.setdefault(uri, set()).add(database)
        return mongodb_url(uri, database)
    raise ValueError(kind)


def drop_created_databases(uri: str, connect: Callable[[str], Any]) -> list[str]:
    """Drop the databases :func:`storage_url` made on ``uri`` in this session (only names
    with :data:`TEST_DATABASE_PREFIX`); ``connect(uri)`` gives a ``MongoClient``."""
    names = sorted(n for n in _CREATED_DATABASES.pop(uri, ()) if n.startswith(TEST_DATABASE_PREFIX))
    if names:
        with connect(uri) as client:
            for name in names:
                client.drop_database(name)
    return names


@pytest.fixture(scope="session", autouse=True)
def _drop_test_databases() -> Iterator[None]:
    """At the end of the session, drop the real MongoDB's test databases (if any)."""
    uri = os.environ.get("MONGODB_URI")
    yield
    if uri and _CREATED_DATABASES.get(uri):
        from pymongo import MongoClient

        drop_created_databases(uri, MongoClient)


@pytest.fixture(params=STORES)
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    return Settings(storage=storage_url(request.param, tmp_path), auth="off")


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Any]:
    """The application of ``settings``, started (its lifespan: the store, the subscription
    dispatcher, the audit trail); test folders give their own ``settings``."""
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE + "/") as http:
            yield http
