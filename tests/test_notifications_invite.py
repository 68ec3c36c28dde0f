"""``fhir-server invite Patient/p1 --email [ADDRESS]`` (issue 17): the activation link is
emailed (to the address given, else to the patient's email telecom) through a real local
SMTP server, and the message is recorded as a Communication without the link; without
an SMTP server the command fails and still gives the link."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from fhir_server.cli import main
from fhir_server.storage.open import open_store
from resources import fhir_json
from resources.search.parameters import search_params
from resources.search.parse import parse_search
from tests.smtp_receiver import smtp_server, text_of


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _import_patient(capsys: pytest.CaptureFixture[str], storage: str, tmp_path: Path) -> None:
    patient = {
        "resourceType": "Patient",
        "id": "p1",
        "telecom": [{"system": "email", "value": "p1@home.example"}],
    }
    path = tmp_path / "p.ndjson"
    path.write_text(json.dumps(patient) + "\n")
    assert _run(capsys, "import", str(path), "--storage", storage, "--quiet")[0] == 0


async def _communications(storage: str) -> list[dict[str, Any]]:
    store = open_store(storage)
    await store.open()
    try:
        query = parse_search(
            ["Communication"],
            [],
            strict=True,
            params_for=search_params,
            max_count=10,
            default_count=10,
        )
        page = await store.search(query, None, 10, False)
        return [fhir_json.loads(s.content) for s in page.entries if s.content]
    finally:
        await store.close()


def test_invite_email_sends_the_link_and_records_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = f"sqlite:///{tmp_path / 'fhir.sqlite3'}"
    _import_patient(capsys, storage, tmp_path)
    with smtp_server() as box:
        monkeypatch.setenv("FHIR_SERVER_SMTP_URL", box.url)
        monkeypatch.setenv("FHIR_SERVER_SMTP_FROM", "portal@clinic.example")
        argv = ["invite", "Patient/p1", "--storage", storage, "--base-url", "https://x/fhir"]
        code, out, err = _run(capsys, *argv, "--email")
        assert code == 0, err
        invitation = json.loads(out)
        assert invitation["emailed_to"] == "p1@home.example"
        [mail] = box.wait_for(1)
        assert mail["To"] == "p1@home.example"
        assert invitation["link"] in text_of(mail)
        code, out, err = _run(capsys, *argv, "--email", "carer@home.example")
        assert code == 0, err
        assert box.wait_for(2)[1]["To"] == "carer@home.example"
    [first, second] = asyncio.run(_communications(storage))
    for record in (first, second):
        assert record["recipient"] == [{"reference": "Patient/p1"}]
        assert record["subject"] == {"reference": "Patient/p1"}
        assert record["status"] == "completed"
        assert "activate" not in json.dumps(record)  # the link is not in the record


def test_invite_email_without_smtp_fails_and_gives_the_link(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = f"sqlite:///{tmp_path / 'fhir.sqlite3'}"
    _import_patient(capsys, storage, tmp_path)
    monkeypatch.delenv("FHIR_SERVER_SMTP_URL", raising=False)
    code, out, err = _run(
        capsys,
        "invite",
        "Patient/p1",
        "--storage",
        storage,
        "--base-url",
        "https://x/fhir",
        "--email",
    )
    assert code == 2 and out == ""
    assert "FHIR_SERVER_SMTP_URL" in err and "https://x/auth/activate?code=" in err
