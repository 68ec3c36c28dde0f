"""The SMART administration commands (``fhir-server invite``, ``users create``,
``clients create|list``) against a real SQLite store, through ``main``."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest

from fhir_server.cli import main
from smart_auth.admin import normalize_code
from smart_auth.passwords import hash_secret, verify_password
from smart_auth.store import open_auth_store


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def storage(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'fhir.sqlite3'}"


def test_invite_needs_an_existing_patient(capsys: pytest.CaptureFixture[str], storage: str) -> None:
    code, out, err = _run(capsys, "invite", "Patient/ghost", "--storage", storage)
    assert code == 2 and out == ""
    assert "Patient/ghost" in err


def test_invite_prints_a_one_time_code_stored_hashed(
    capsys: pytest.CaptureFixture[str], storage: str, tmp_path: Path
) -> None:
    patient = tmp_path / "p.ndjson"
    patient.write_text('{"resourceType": "Patient", "id": "p1", "active": true}\n')
    assert _run(capsys, "import", str(patient), "--storage", storage, "--quiet")[0] == 0
    code, out, _ = _run(
        capsys, "invite", "Patient/p1", "--storage", storage, "--base-url", "https://x/fhir"
    )
    assert code == 0
    invitation = json.loads(out)
    assert invitation["fhir_user"] == "Patient/p1"
    assert invitation["link"].startswith("https://x/auth/activate?code=")
    store = open_auth_store(storage)
    try:
        used = store.use_invitation(hash_secret(normalize_code(invitation["code"])), 0)
        assert used is not None and used.fhir_user == "Patient/p1"
        again = store.use_invitation(hash_secret(normalize_code(invitation["code"])), 0)
        assert again is None
    finally:
        store.close()


def test_users_create_reads_the_password_from_stdin(
    capsys: pytest.CaptureFixture[str], storage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("correct horse battery\n"))
    code, out, _ = _run(
        capsys,
        "users",
        "create",
        "--username",
        "alice",
        "--fhir-user",
        "Patient/p1",
        "--storage",
        storage,
    )
    assert code == 0 and json.loads(out)["username"] == "alice"
    store = open_auth_store(storage)
    try:
        user = store.find_user("alice")
        assert user is not None and user.fhir_user == "Patient/p1"
        assert verify_password(user.password_hash, "correct horse battery")
        assert "correct horse" not in user.password_hash
    finally:
        store.close()
    monkeypatch.setattr("sys.stdin", io.StringIO("another password\n"))
    taken = _run(
        capsys,
        *("users", "create", "--username", "alice", "--fhir-user", "Patient/p2"),
        *("--storage", storage),
    )
    assert taken[0] == 2 and "taken" in taken[2]


def test_clients_create_and_list(capsys: pytest.CaptureFixture[str], storage: str) -> None:
    code, out, _ = _run(
        capsys,
        "clients",
        "create",
        "--name",
        "Portal",
        "--auth",
        "client_secret_basic",
        "--redirect-uri",
        "https://portal.example/cb",
        "--scope",
        "openid patient/*.rs",
        "--storage",
        storage,
    )
    assert code == 0
    client = json.loads(out)
    assert client["client_id"] and client["client_secret"]
    code, out, _ = _run(capsys, "clients", "list", "--storage", storage)
    listed = json.loads(out)
    assert [c["client_id"] for c in listed] == [client["client_id"]]
    assert "client_secret" not in listed[0]
    bad = _run(capsys, "clients", "create", "--name", "x", "--auth", "none", "--storage", storage)
    assert bad[0] == 2


def test_keys_rotate_keeps_the_old_key_verifying(
    capsys: pytest.CaptureFixture[str], storage: str
) -> None:
    from smart_auth.keys import KeyManager
    from smart_auth.tokens import TokenService

    store = open_auth_store(storage)
    try:
        service = TokenService(KeyManager(store), store)
        before, _ = service.issue_access_token(
            issuer="https://x/fhir", audience="https://x/fhir", client_id="c", scope="system/*.rs"
        )
    finally:
        store.close()
    code, out, _ = _run(capsys, "keys", "rotate", "--storage", storage)
    assert code == 0
    new_kid = json.loads(out)["kid"]
    listed = json.loads(_run(capsys, "keys", "list", "--storage", storage)[1])
    assert len(listed) == 2
    assert [k["kid"] for k in listed if k["retired"] is None] == [new_kid]
    store = open_auth_store(storage)
    try:
        fresh = TokenService(KeyManager(store), store)
        after, _ = fresh.issue_access_token(
            issuer="https://x/fhir", audience="https://x/fhir", client_id="c", scope="system/*.rs"
        )
        for token in (before, after):
            claims = fresh.verify_access_token(
                token, issuer="https://x/fhir", audience="https://x/fhir"
            )
            assert claims["client_id"] == "c"
        header = json.loads(base64.urlsafe_b64decode(after.split(".")[0] + "=="))
        assert header["kid"] == new_kid
    finally:
        store.close()
