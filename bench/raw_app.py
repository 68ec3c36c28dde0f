"""The raw limit of a read: FastAPI + uvicorn returning a Patient's stored bytes.

``GET /fhir/Patient/{id}`` looks the current version up in the server's own SQLite file
(the ``resource`` table, read-only, on the event loop: one indexed row) and sends its
stored bytes with the headers a FHIR read sends (``ETag``, ``Last-Modified``,
``application/fhir+json``). No token check, no routing table, no access filter, no
logging: what is left is the cost of HTTP parsing, FastAPI's request handling and one
SQLite lookup, which is what a FHIR read cannot go below on this stack.
``bench/run.py`` serves it with the same uvicorn options as the server and drives it
with the same wrk script, so every figure can be read as a ratio to it.

Run: ``BENCH_RAW_DB=/path/fhir.sqlite3 uvicorn bench.raw_app:app --workers N``.
"""

from __future__ import annotations

import os
import sqlite3
from datetime import datetime
from email.utils import format_datetime

from fastapi import FastAPI
from fastapi.responses import Response

app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
_connection: sqlite3.Connection | None = None


def _db() -> sqlite3.Connection:
    global _connection
    if _connection is None:
        path = os.environ["BENCH_RAW_DB"]
        _connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    return _connection


@app.get("/fhir/Patient/{id_}")
async def read(id_: str) -> Response:
    row = (
        _db()
        .execute(
            "SELECT content, version, last_updated FROM resource"
            " WHERE type='Patient' AND id=? AND method!='delete'",
            (id_,),
        )
        .fetchone()
    )
    if row is None:
        return Response(status_code=404)
    content, version, last_updated = row
    modified = datetime.fromisoformat(last_updated.replace("Z", "+00:00"))
    return Response(
        content=content,
        media_type="application/fhir+json; charset=utf-8",
        headers={"ETag": f'W/"{version}"', "Last-Modified": format_datetime(modified, True)},
    )
