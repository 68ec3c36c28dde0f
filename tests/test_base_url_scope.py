"""The FHIR base URL taken from the request (``fhir_server.routes.fhir_base_url``) when
none is configured: the ASGI ``server`` of the scope may be a list (Starlette's test
client, some servers) as well as a tuple; it was a dictionary key, and a list answered
``500`` on every request."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from fhir_server.app import create_app
from fhir_server.config import Settings


def test_a_list_as_the_scopes_server_gives_the_base_url(tmp_path: Path) -> None:
    settings = Settings(storage=f"sqlite:///{tmp_path / 'f.sqlite3'}", auth="off")
    with TestClient(create_app(settings), base_url="http://clinic.example:8080") as client:
        answer = client.get("/fhir/metadata")
        assert answer.status_code == 200
        assert answer.json()["implementation"]["url"] == "http://clinic.example:8080/fhir"
        created = client.post(
            "/fhir/Patient", json={"resourceType": "Patient", "name": [{"family": "Lee"}]}
        )
        assert created.status_code == 201
        assert created.headers["location"].startswith("http://clinic.example:8080/fhir/Patient/")
