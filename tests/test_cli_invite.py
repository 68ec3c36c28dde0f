"""``fhir-server invite``: the activation link is on the server's public FHIR base URL,
``--base-url`` or ``FHIR_SERVER_BASE_URL`` (issue 15, item 13); without either it assumes
``http://FHIR_SERVER_HOST:FHIR_SERVER_PORT/fhir`` (``127.0.0.1:8080``) and says so on
standard error, with how to set it. The link opens the activation page of the server."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from fhir_server.cli import main
from tests.conftest import STORES, storage_url
from tests.security_support import app_on

_VARIABLES = ("FHIR_SERVER_BASE_URL", "FHIR_SERVER_HOST", "FHIR_SERVER_PORT")


@pytest.fixture(autouse=True)
def _no_address_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _VARIABLES:
        monkeypatch.delenv(name, raising=False)


async def invite(capsys: pytest.CaptureFixture[str], storage: str, *extra: str) -> tuple[dict, str]:
    """The command, run as from a shell (it runs its own event loop: off this one)."""
    code = await asyncio.to_thread(main, ["invite", "Patient/p1", "--storage", storage, *extra])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out), err


@pytest.mark.parametrize("kind", STORES)
async def test_the_link_is_on_fhir_server_base_url_and_opens_the_activation_page(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = storage_url(kind, tmp_path)
    async with app_on(storage) as env:  # seeds Patient/p1
        monkeypatch.setenv("FHIR_SERVER_BASE_URL", "https://portal.example:8443/fhir")
        invitation, err = await invite(capsys, storage)
        assert invitation["link"].startswith("https://portal.example:8443/auth/activate?code=")
        assert "note" not in err
        link = urlsplit(invitation["link"])
        page = await env.http.get(f"{link.path}?{link.query}")
        assert page.status_code == 200
        assert "<form" in page.text


@pytest.mark.parametrize("kind", STORES)
async def test_the_base_url_option_wins_over_the_variable(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = storage_url(kind, tmp_path)
    async with app_on(storage):
        monkeypatch.setenv("FHIR_SERVER_BASE_URL", "https://variable.example/fhir")
        invitation, err = await invite(capsys, storage, "--base-url", "http://localhost:9000/fhir")
        assert invitation["link"].startswith("http://localhost:9000/auth/activate?code=")
        assert err == ""


@pytest.mark.parametrize("kind", STORES)
async def test_without_a_base_url_the_default_address_is_noted_on_stderr(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    storage = storage_url(kind, tmp_path)
    async with app_on(storage):
        invitation, err = await invite(capsys, storage)
    assert invitation["link"].startswith("http://127.0.0.1:8080/auth/activate?code=")
    assert "assumes the server is at http://127.0.0.1:8080/fhir" in err
    assert "--base-url" in err and "FHIR_SERVER_BASE_URL" in err


@pytest.mark.parametrize("kind", STORES)
async def test_without_a_base_url_the_configured_port_is_assumed_and_noted(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = storage_url(kind, tmp_path)
    async with app_on(storage):
        monkeypatch.setenv("FHIR_SERVER_PORT", "9090")
        invitation, err = await invite(capsys, storage)
    assert invitation["link"].startswith("http://127.0.0.1:9090/auth/activate?code=")
    assert "http://127.0.0.1:9090/fhir" in err
