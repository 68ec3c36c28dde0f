"""The SMART administration commands (``fhir-server invite``, ``users
create|list|reset-password``, ``clients create|list|delete``, ``keys rotate|list``) and
the command line's own help and version, against a real SQLite store, through ``main``."""

from __future__ import annotations

import argparse
import base64
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fhir_server.cli import main
from smart_auth.admin import normalize_code
from smart_auth.passwords import hash_secret, verify_password
from smart_auth.store import AuthorizationCode, RefreshToken, open_auth_store
from smart_auth.tokens import family_tag


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


# -- issue 15, item 14: --version, option help, users list/reset-password, clients delete,
# -- keys list ---------------------------------------------------------------------------


def _options(parser: argparse.ArgumentParser, path: str = "fhir-server") -> Iterator[Any]:
    """(command path, action) for every option of every (sub)command."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, f"{path} {name}")
        elif action.option_strings:
            yield path, action


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == "fhir-server 0.1.0"


def test_every_option_has_help_with_its_default() -> None:
    from fhir_server.cli import build_parser

    seen = set()
    for path, action in _options(build_parser()):
        name = f"{path} {action.option_strings[-1]}"
        seen.add(name)
        if isinstance(action, argparse._HelpAction | argparse._VersionAction):
            continue
        assert action.help, f"{name} has no help"
        flag = isinstance(action, argparse._StoreTrueAction)
        if not action.required and not flag and not action.help.startswith("required:"):
            assert "default" in action.help, f"{name}: the help does not give the default"
        if action.default not in (None, [], False):
            assert str(action.default) in action.help, f"{name}: default {action.default}"
    for expected in (
        "fhir-server serve --storage",
        "fhir-server serve --auth",
        "fhir-server users create --username",
        "fhir-server clients create --name",
        "fhir-server clients create --scope",
        "fhir-server import --batch-size",
        "fhir-server demo-data --batch-size",
        "fhir-server users reset-password --storage",
        "fhir-server clients delete --storage",
    ):
        assert expected in seen


def _user(capsys: pytest.CaptureFixture[str], storage: str, monkeypatch: Any, name: str) -> str:
    monkeypatch.setattr("sys.stdin", io.StringIO("correct horse battery\n"))
    argv = ["users", "create", "--username", name, "--fhir-user", "Practitioner/9"]
    code, out, _ = _run(capsys, *argv, "--storage", storage)
    assert code == 0
    return str(json.loads(out)["user_id"])


def _grant(storage: str, token_hash: str, *, user_id: str, client_id: str = "app") -> None:
    """A grant as a sign-in leaves it: the used code and a refresh token of its family."""
    store = open_auth_store(storage)
    try:
        code_hash = f"code-{token_hash}"
        store.add_code(
            AuthorizationCode(
                code_hash,
                client_id,
                "https://app.example/cb",
                "openid",
                user_id,
                expires_at=int(time.time()) + 60,
            )
        )
        store.add_refresh(
            RefreshToken(
                token_hash,
                client_id,
                user_id,
                "offline_access",
                family_id=code_hash,
                expires_at=int(time.time()) + 3600,
            )
        )
    finally:
        store.close()


def _family_revoked(storage: str, family_id: str) -> bool:
    store = open_auth_store(storage)
    try:
        keys = {revocation.jti for revocation in store.revoked_since(0)}
        refresh = [
            store.get_refresh(h)
            for h in ("r-alice", "r-bob", "r-app", "r-other")
            if store.get_refresh(h) is not None
        ]
    finally:
        store.close()
    revoked = f"family:{family_tag(family_id)}" in keys
    tokens = [r for r in refresh if r is not None and r.family_id == family_id]
    assert all(t.revoked == revoked for t in tokens)
    return revoked


def test_users_list_shows_no_secrets(
    capsys: pytest.CaptureFixture[str], storage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    user_id = _user(capsys, storage, monkeypatch, "alice")
    code, out, _ = _run(capsys, "users", "list", "--storage", storage)
    assert code == 0
    listed = json.loads(out)
    assert [(u["user_id"], u["username"], u["fhir_user"]) for u in listed] == [
        (user_id, "alice", "Practitioner/9")
    ]
    assert listed[0]["created_at"].endswith("Z")
    assert "argon2" not in out and "password" not in out and "correct horse" not in out


def test_users_reset_password_ends_the_users_grants(
    capsys: pytest.CaptureFixture[str], storage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = _user(capsys, storage, monkeypatch, "alice")
    bob = _user(capsys, storage, monkeypatch, "bob")
    _grant(storage, "r-alice", user_id=alice)
    _grant(storage, "r-bob", user_id=bob)
    monkeypatch.setattr("sys.stdin", io.StringIO("a new long password\n"))
    code, out, _ = _run(capsys, "users", "reset-password", "ALICE", "--storage", storage)
    assert code == 0
    assert json.loads(out) == {"username": "alice", "revoked_grants": 1}
    store = open_auth_store(storage)
    try:
        user = store.find_user("alice")
        assert user is not None and verify_password(user.password_hash, "a new long password")
        assert not verify_password(user.password_hash, "correct horse battery")
    finally:
        store.close()
    assert _family_revoked(storage, "code-r-alice")
    assert not _family_revoked(storage, "code-r-bob")

    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert _run(capsys, "users", "reset-password", "alice", "--storage", storage)[0] == 2
    monkeypatch.setattr("sys.stdin", io.StringIO("a new long password\n"))
    code, out, err = _run(capsys, "users", "reset-password", "nobody", "--storage", storage)
    assert code == 2 and out == "" and "nobody" in err


def _public_client(capsys: pytest.CaptureFixture[str], storage: str, name: str) -> str:
    """``clients create`` of a public client; its client_id."""
    code, out, _ = _run(
        capsys,
        "clients",
        "create",
        "--name",
        name,
        "--auth",
        "none",
        "--redirect-uri",
        "https://app.example/cb",
        "--storage",
        storage,
    )
    assert code == 0
    return str(json.loads(out)["client_id"])


def test_clients_delete_ends_the_clients_grants(
    capsys: pytest.CaptureFixture[str], storage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = _user(capsys, storage, monkeypatch, "alice")
    made = []
    for name in ("App", "Other"):
        made.append(_public_client(capsys, storage, name))
    _grant(storage, "r-app", user_id=alice, client_id=made[0])
    _grant(storage, "r-other", user_id=alice, client_id=made[1])
    code, out, _ = _run(capsys, "clients", "delete", made[0], "--storage", storage)
    assert code == 0
    assert json.loads(out) == {"client_id": made[0], "deleted": True, "revoked_grants": 1}
    listed = json.loads(_run(capsys, "clients", "list", "--storage", storage)[1])
    assert [c["client_id"] for c in listed] == [made[1]]
    assert _family_revoked(storage, "code-r-app")
    assert not _family_revoked(storage, "code-r-other")
    code, out, err = _run(capsys, "clients", "delete", made[0], "--storage", storage)
    assert code == 2 and made[0] in err


def test_a_generated_client_id_never_starts_with_a_dash(
    capsys: pytest.CaptureFixture[str], storage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A random client_id that began with ``-`` was read by ``clients delete`` as an
    option; the draw is repeated until it does not."""
    draws = iter(["-leading-dash-id", "plain_id-42"])
    monkeypatch.setattr("smart_auth.passwords.secrets.token_urlsafe", lambda n: next(draws))
    assert _public_client(capsys, storage, "App") == "plain_id-42"
    code, out, _ = _run(capsys, "clients", "delete", "plain_id-42", "--storage", storage)
    assert code == 0 and json.loads(out)["deleted"] is True


def test_keys_list_marks_the_current_key_without_key_material(
    capsys: pytest.CaptureFixture[str], storage: str
) -> None:
    first = json.loads(_run(capsys, "keys", "rotate", "--storage", storage)[1])["kid"]
    second = json.loads(_run(capsys, "keys", "rotate", "--storage", storage)[1])["kid"]
    code, out, _ = _run(capsys, "keys", "list", "--storage", storage)
    assert code == 0
    listed = json.loads(out)
    assert {k["kid"]: k["current"] for k in listed} == {first: False, second: True}
    for key in listed:
        assert set(key) == {"kid", "created", "retired", "current"}  # no key material
        assert isinstance(key["created"], int)
        assert (key["retired"] is None) == key["current"]


def test_users_disable_and_enable(
    capsys: pytest.CaptureFixture[str], storage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = _user(capsys, storage, monkeypatch, "alice")
    bob = _user(capsys, storage, monkeypatch, "bob")
    _grant(storage, "r-alice", user_id=alice)
    _grant(storage, "r-bob", user_id=bob)
    code, out, _ = _run(capsys, "users", "disable", "alice", "--storage", storage)
    assert code == 0
    assert json.loads(out) == {"username": "alice", "disabled": True, "revoked_grants": 1}
    assert _family_revoked(storage, "code-r-alice")
    assert not _family_revoked(storage, "code-r-bob")
    listed = json.loads(_run(capsys, "users", "list", "--storage", storage)[1])
    assert {u["username"]: u["disabled"] for u in listed} == {"alice": True, "bob": False}
    code, out, _ = _run(capsys, "users", "enable", "alice", "--storage", storage)
    assert code == 0 and json.loads(out) == {"username": "alice", "disabled": False}
    store = open_auth_store(storage)
    try:
        user = store.find_user("alice")
        assert user is not None and not user.disabled
    finally:
        store.close()
    for command in ("disable", "enable"):
        code, out, err = _run(capsys, "users", command, "nobody", "--storage", storage)
        assert code == 2 and out == "" and "nobody" in err
