"""Administration commands in the audit trail (issue 21): ``fhir-server users create``
run against a store is an AuditEvent in it (DICOM 110100, the command as subtype, the
operating-system user, the command line without the password), read by staff."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import pytest

from fhir_server.app import create_app
from fhir_server.audit.balp import ADMIN_SYSTEM
from fhir_server.cli import main
from fhir_server.config import Settings
from tests.conftest import BASE
from tests.patient_data.support import bearer, issuer


async def test_an_admin_command_is_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = f"sqlite:///{tmp_path / 'fhir.sqlite3'}"
    monkeypatch.setattr("sys.stdin", io.StringIO("a long secret phrase\n"))
    argv = ["users", "create", "--username", "ann", "--fhir-user", "Practitioner/dr"]
    argv += ["--storage", storage]
    assert main(argv) == 0
    app = create_app(Settings(storage=storage, auth="smart"))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE + "/") as http:
            staff = bearer(issuer(app)("system/AuditEvent.rs"))
            found = await http.get("AuditEvent?type=110100", headers=staff)
    assert found.status_code == 200, found.text
    [entry] = found.json()["entry"]
    event = entry["resource"]
    assert event["subtype"] == [
        {"system": ADMIN_SYSTEM, "code": "users create", "display": "fhir-server users create"}
    ]
    assert event["outcome"] == "0"
    assert event["agent"][0]["altId"]  # the operating-system user
    assert event["entity"][0]["description"] == " ".join(argv)
    assert "secret phrase" not in found.text
