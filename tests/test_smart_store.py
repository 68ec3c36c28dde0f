"""The auth store (smart_auth.store): the same behaviour over a SQLite file (the FHIR
data's file) and MongoDB (mongomock, plus a real server when MONGODB_URI is set).

Single use of codes and invitations (RFC 6749 section 4.1.2), refresh-token rotation
with reuse detection (RFC 9700 section 4.14.2), revocation (RFC 7009) and assertion
replay (RFC 7523 section 3) are checked under concurrency with threads and two store
instances on the same data (two processes)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest

from fhir_server.storage.sqlite import SQLiteStore
from smart_auth.store import (
    AuthorizationCode,
    AuthStore,
    Client,
    DuplicateError,
    Invitation,
    LaunchContext,
    RefreshToken,
    User,
    open_auth_store,
)
from tests.conftest import STORES, storage_url

NOW = 1_800_000_000
T = TypeVar("T")


@pytest.fixture(params=STORES)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return storage_url(request.param, tmp_path)


@pytest.fixture
def store(url: str) -> Iterator[AuthStore]:
    opened = open_auth_store(url)
    yield opened
    opened.close()


@pytest.fixture
def second(url: str) -> Iterator[AuthStore]:
    """Another store on the same data, as another process would open it."""
    opened = open_auth_store(url)
    yield opened
    opened.close()


def race(calls: list[Callable[[], T]]) -> list[T]:
    """Run the calls at the same time on threads; their results in order."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], T]) -> T:
        barrier.wait()
        return call()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(run, calls))


def refresh(token_hash: str, **kwargs: Any) -> RefreshToken:
    defaults: dict[str, Any] = {
        "client_id": "app",
        "user_id": "u1",
        "scope": "openid offline_access patient/*.rs",
        "patient": "123",
        "expires_at": NOW + 3600,
    }
    return RefreshToken(token_hash, **{**defaults, **kwargs})


def code(code_hash: str, **kwargs: Any) -> AuthorizationCode:
    defaults: dict[str, Any] = {
        "client_id": "app",
        "redirect_uri": "https://app.example/cb",
        "scope": "openid patient/*.rs",
        "user_id": "u1",
        "patient": "123",
        "code_challenge": "x" * 43,
        "code_challenge_method": "S256",
        "expires_at": NOW + 60,
    }
    return AuthorizationCode(code_hash, **{**defaults, **kwargs})


# -- opening ---------------------------------------------------------------------------


async def test_sqlite_tables_live_in_the_fhir_data_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'data' / 'fhir.sqlite3'}"
    fhir = SQLiteStore.from_url(url)
    await fhir.open()
    auth = open_auth_store(url)
    auth.add_client(Client("app", name="An app"))
    auth.close()
    await fhir.close()

    conn = sqlite3.connect(tmp_path / "data" / "fhir.sqlite3")
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "auth_clients" in tables and "auth_users" in tables
    assert any(not t.startswith("auth_") for t in tables)  # the FHIR store's own tables
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] != 0  # left to the FHIR store
    conn.close()

    reopened = open_auth_store(url)
    client = reopened.get_client("app")
    assert client is not None and client.name == "An app"
    reopened.close()


def test_records_survive_reopening(url: str) -> None:
    first = open_auth_store(url)
    first.add_user(User("u1", "alice", "hash"))
    first.close()
    again = open_auth_store(url)
    user = again.get_user("u1")
    assert user is not None and user.username == "alice"
    again.close()


@pytest.mark.parametrize("bad", ["postgres://x/y", "sqlite://relative", "sqlite:///", ""])
def test_unsupported_urls(bad: str) -> None:
    with pytest.raises(ValueError):
        open_auth_store(bad)


# -- keys ------------------------------------------------------------------------------


def test_keys_are_listed_oldest_first_and_retired(store: AuthStore) -> None:
    store.add_key({"kid": "b", "kty": "oct", "k": "secret-b", "created": NOW})
    store.add_key({"kid": "a", "kty": "oct", "k": "secret-a", "created": NOW + 5})
    with pytest.raises(DuplicateError):
        store.add_key({"kid": "a", "kty": "oct", "k": "other", "created": NOW})
    store.retire_key("b", NOW + 5)
    assert store.list_keys() == [
        {"kid": "b", "kty": "oct", "k": "secret-b", "created": NOW, "retired": NOW + 5},
        {"kid": "a", "kty": "oct", "k": "secret-a", "created": NOW + 5},
    ]
    store.delete_key("b")
    assert [k["kid"] for k in store.list_keys()] == ["a"]


def test_retiring_keeps_the_first_retirement_time(store: AuthStore) -> None:
    store.add_key({"kid": "a", "kty": "oct", "k": "s", "created": NOW})
    store.retire_key("a", NOW + 1)
    store.retire_key("a", NOW + 100)
    assert store.list_keys()[0]["retired"] == NOW + 1


# -- clients ---------------------------------------------------------------------------


def test_client_round_trip(store: AuthStore) -> None:
    client = Client(
        "app",
        name="Growth chart",
        token_endpoint_auth_method="private_key_jwt",
        redirect_uris=["https://app.example/cb", "https://app.example/cb2"],
        scope="launch/patient patient/*.rs",
        grant_types=["authorization_code", "refresh_token"],
        jwks={"keys": [{"kty": "EC", "crv": "P-384", "x": "x", "y": "y", "kid": "1"}]},
        created_at=NOW,
        metadata={"client_uri": "https://app.example", "contacts": ["a@b.example"]},
    )
    store.add_client(client)
    assert store.get_client("app") == client
    assert store.get_client("nobody") is None
    with pytest.raises(DuplicateError):
        store.add_client(Client("app"))


def test_client_update_list_delete(store: AuthStore) -> None:
    store.add_client(Client("b", created_at=NOW + 1))
    store.add_client(Client("a", created_at=NOW))
    assert store.update_client(Client("a", name="renamed", created_at=NOW))
    assert not store.update_client(Client("missing"))
    assert [(c.client_id, c.name) for c in store.list_clients()] == [("a", "renamed"), ("b", "")]
    assert store.delete_client("a") and not store.delete_client("a")
    assert [c.client_id for c in store.list_clients()] == ["b"]


# -- users -----------------------------------------------------------------------------


def test_usernames_are_unique_case_insensitively(store: AuthStore) -> None:
    store.add_user(User("u1", "Alice", "h1", fhir_user="Patient/123", created_at=NOW))
    with pytest.raises(DuplicateError):
        store.add_user(User("u2", "aLICE", "h2"))
    with pytest.raises(DuplicateError):
        store.add_user(User("u1", "bob", "h3"))
    found = store.find_user("ALICE")
    assert found is not None and found.user_id == "u1" and found.username == "Alice"
    assert found.fhir_user == "Patient/123"
    assert store.find_user("alicia") is None
    assert [u.user_id for u in store.list_users()] == ["u1"]


def test_update_password(store: AuthStore) -> None:
    store.add_user(User("u1", "alice", "old"))
    assert store.update_password("u1", "new")
    assert not store.update_password("nobody", "new")
    user = store.get_user("u1")
    assert user is not None and user.password_hash == "new"


# -- invitations -----------------------------------------------------------------------


def test_invitation_is_used_once(store: AuthStore) -> None:
    store.add_invitation(Invitation("h", "Patient/123", expires_at=NOW + 60, created_at=NOW))
    used = store.use_invitation("h", now=NOW)
    assert used is not None and used.fhir_user == "Patient/123" and used.used_at == NOW
    assert store.use_invitation("h", now=NOW + 1) is None
    shown = store.get_invitation("h")
    assert shown is not None and shown.used_at == NOW and not shown.usable(NOW)


def test_a_released_invitation_can_be_used_again(store: AuthStore) -> None:
    store.add_invitation(Invitation("h", "Patient/123", expires_at=NOW + 60))
    assert not store.release_invitation("h")  # not used yet
    assert store.use_invitation("h", now=NOW) is not None
    assert store.release_invitation("h")
    assert store.use_invitation("h", now=NOW) is not None
    assert not store.release_invitation("unknown")


def test_expired_or_unknown_invitation_is_refused(store: AuthStore) -> None:
    store.add_invitation(Invitation("h", "Patient/123", expires_at=NOW))
    assert store.use_invitation("h", now=NOW) is None
    assert store.use_invitation("other", now=NOW - 10) is None
    shown = store.get_invitation("h")
    assert shown is not None and shown.used_at is None


def test_invitation_single_use_under_concurrency(store: AuthStore, second: AuthStore) -> None:
    for n in range(5):
        store.add_invitation(Invitation(f"h{n}", "Patient/123", expires_at=NOW + 60))
        calls = [lambda s=s, n=n: s.use_invitation(f"h{n}", now=NOW) for s in [store, second] * 5]
        assert sum(r is not None for r in race(calls)) == 1


# -- launch contexts -------------------------------------------------------------------


def test_launch_context_until_it_expires(store: AuthStore) -> None:
    launch = LaunchContext("l1", patient="123", encounter="e9", created_by="Practitioner/9")
    launch.expires_at = NOW + 300
    store.add_launch(launch)
    assert store.get_launch("l1", now=NOW) == launch
    assert store.get_launch("l1", now=NOW + 300) is None
    assert store.get_launch("unknown", now=NOW) is None


# -- authorization codes ---------------------------------------------------------------


def test_code_is_taken_once(store: AuthStore) -> None:
    store.add_code(code("c1", nonce="n", audience="https://x/fhir", auth_time=NOW))
    taken = store.take_code("c1", now=NOW)
    assert taken is not None and taken.used_at == NOW
    assert (taken.patient, taken.nonce, taken.audience) == ("123", "n", "https://x/fhir")
    assert store.take_code("c1", now=NOW) is None
    replayed = store.get_code("c1")
    assert replayed is not None and replayed.used_at == NOW


def test_expired_code_is_refused(store: AuthStore) -> None:
    store.add_code(code("c1", expires_at=NOW))
    assert store.take_code("c1", now=NOW) is None
    assert store.take_code("unknown", now=NOW) is None


def test_code_single_use_under_concurrency(store: AuthStore, second: AuthStore) -> None:
    for n in range(5):
        store.add_code(code(f"c{n}"))
        calls = [lambda s=s, n=n: s.take_code(f"c{n}", now=NOW) for s in [store, second] * 5]
        assert sum(r is not None for r in race(calls)) == 1


# -- refresh tokens --------------------------------------------------------------------


def test_a_new_refresh_token_starts_a_family(store: AuthStore) -> None:
    store.add_refresh(refresh("r1"))
    token = store.get_refresh("r1")
    assert token is not None and token.family_id == "r1" and token.usable(NOW)


def test_rotation_replaces_the_token(store: AuthStore) -> None:
    store.add_refresh(refresh("r1"))
    assert store.rotate_refresh("r1", refresh("r2", family_id="ignored"), now=NOW)
    old, new = store.get_refresh("r1"), store.get_refresh("r2")
    assert old is not None and old.replaced_by == "r2" and not old.usable(NOW)
    assert new is not None and new.family_id == "r1" and new.usable(NOW)
    assert store.rotate_refresh("r2", refresh("r3"), now=NOW)


def test_reusing_a_rotated_token_revokes_the_family(store: AuthStore) -> None:
    store.add_refresh(refresh("r1"))
    assert store.rotate_refresh("r1", refresh("r2"), now=NOW)
    assert store.rotate_refresh("r2", refresh("r3"), now=NOW)
    assert not store.rotate_refresh("r1", refresh("stolen"), now=NOW)
    assert store.get_refresh("stolen") is None
    for token_hash in ("r1", "r2", "r3"):
        token = store.get_refresh(token_hash)
        assert token is not None and token.revoked
    assert not store.rotate_refresh("r3", refresh("r4"), now=NOW)


def test_rotation_refused_for_revoked_expired_or_unknown(store: AuthStore) -> None:
    store.add_refresh(refresh("revoked"))
    assert store.revoke_refresh("revoked") and not store.revoke_refresh("revoked")
    store.add_refresh(refresh("old", expires_at=NOW))
    assert not store.rotate_refresh("revoked", refresh("n1"), now=NOW)
    assert not store.rotate_refresh("old", refresh("n2"), now=NOW)
    assert not store.rotate_refresh("unknown", refresh("n3"), now=NOW)
    assert all(store.get_refresh(h) is None for h in ("n1", "n2", "n3"))


def test_offline_token_without_expiry_rotates(store: AuthStore) -> None:
    store.add_refresh(refresh("r1", expires_at=None))
    assert store.rotate_refresh("r1", refresh("r2", expires_at=None), now=NOW)


def test_revoke_family_counts_live_tokens(store: AuthStore) -> None:
    store.add_refresh(refresh("r1"))
    store.add_refresh(refresh("other"))
    store.rotate_refresh("r1", refresh("r2"), now=NOW)
    assert store.revoke_family("r1") == 2
    assert store.revoke_family("r1") == 0
    other = store.get_refresh("other")
    assert other is not None and not other.revoked


def test_concurrent_rotation_lets_one_through(store: AuthStore, second: AuthStore) -> None:
    store.add_refresh(refresh("r1"))
    stores = [store, second] * 3
    results = race(
        [
            lambda s=s, i=i: s.rotate_refresh("r1", refresh(f"n{i}"), now=NOW)
            for i, s in enumerate(stores)
        ]
    )
    assert results.count(True) == 1
    # the losers presented a token already rotated: the whole family is revoked
    assert [h for h in ["r1", *(f"n{i}" for i in range(6))] if _usable(store, h)] == []


def _usable(store: AuthStore, token_hash: str) -> bool:
    token = store.get_refresh(token_hash)
    return token is not None and token.usable(NOW)


# -- access-token revocation and assertion replay --------------------------------------


def test_revoked_since(store: AuthStore) -> None:
    far = 4_000_000_000
    store.revoke_jti("a", far, now=NOW)
    store.revoke_jti("b", far, now=NOW + 10)
    store.revoke_jti("gone", 1_000, now=NOW + 10)  # already expired: never listed
    assert [r.jti for r in store.revoked_since(0)] == ["a", "b"]
    assert store.revoked_since(NOW + 1) == [("b", far, NOW + 10)]


def test_remember_jti_refuses_a_replay_until_it_expires(store: AuthStore) -> None:
    assert store.remember_jti("j1", NOW + 300, now=NOW)
    assert not store.remember_jti("j1", NOW + 300, now=NOW + 1)
    assert store.remember_jti("j2", NOW + 300, now=NOW + 1)
    assert store.remember_jti("j1", NOW + 900, now=NOW + 301)


def test_remember_jti_under_concurrency(store: AuthStore, second: AuthStore) -> None:
    results = race(
        [lambda s=s: s.remember_jti("j", NOW + 300, now=NOW) for s in [store, second] * 4]
    )
    assert results.count(True) == 1


def test_purge_expired(store: AuthStore) -> None:
    store.add_code(code("c-old", expires_at=NOW - 1))
    store.add_code(code("c-new", expires_at=NOW + 60))
    store.add_refresh(refresh("r-old", expires_at=NOW - 1))
    store.add_refresh(refresh("r-forever", expires_at=None))
    store.add_launch(LaunchContext("l-old", expires_at=NOW - 1))
    store.revoke_jti("j-old", NOW - 1, now=NOW - 100)
    store.purge_expired(now=NOW)
    assert store.get_code("c-old") is None and store.get_code("c-new") is not None
    assert store.get_refresh("r-old") is None and store.get_refresh("r-forever") is not None
    assert store.get_launch("l-old", now=0) is None
    assert store.revoked_since(0) == []


def test_grant_families_of_a_user_or_a_client(store: AuthStore) -> None:
    """Every grant of a user (or a client): refresh token families and codes, any state."""
    store.add_code(code("c-1", user_id="u1", client_id="app"))
    store.add_refresh(refresh("r-1", user_id="u1", family_id="c-1"))
    store.add_refresh(refresh("r-2", user_id="u1", client_id="other", revoked=True))
    store.add_code(code("c-3", user_id="u2", client_id="app"))
    store.add_refresh(refresh("r-4", user_id="u2", client_id="other", family_id="f-4"))
    assert store.grant_families(user_id="u1") == ["c-1", "r-2"]
    assert store.grant_families(user_id="u2") == ["c-3", "f-4"]
    assert store.grant_families(client_id="app") == ["c-1", "c-3"]
    assert store.grant_families(client_id="other") == ["f-4", "r-2"]
    assert store.grant_families(user_id="nobody") == []
    with pytest.raises(ValueError):
        store.grant_families()


def test_users_can_be_disabled_and_enabled(store: AuthStore, second: AuthStore) -> None:
    store.add_user(User("u1", "alice", "hash"))
    assert store.get_user("u1").disabled is False  # type: ignore[union-attr]
    assert store.set_disabled("u1", True)
    for seen in (store.get_user("u1"), second.find_user("ALICE"), second.list_users()[0]):
        assert seen is not None and seen.disabled is True
    assert store.set_disabled("u1", False)
    assert second.get_user("u1").disabled is False  # type: ignore[union-attr]
    assert not store.set_disabled("nobody", True)


def test_users_of_an_earlier_release_are_enabled(url: str, tmp_path: Path) -> None:
    """A store written before accounts could be disabled (no column / no field) keeps
    working: its users are enabled, and can be disabled."""
    if url.startswith("sqlite:"):
        path = tmp_path / "old.sqlite3"
        url = f"sqlite:///{path}"
        with sqlite3.connect(path) as conn:
            conn.execute(
                "CREATE TABLE auth_users (user_id, username, password_hash, fhir_user,"
                " failed_logins, locked_until, created_at, username_key, PRIMARY KEY (user_id))"
            )
            conn.execute(
                "INSERT INTO auth_users VALUES ('u1', 'alice', 'hash', 'Patient/1', 0, 0, 1,"
                " 'alice')"
            )
        conn.close()
        opened = open_auth_store(url)
    else:
        opened = open_auth_store(url)
        opened.db.auth_users.insert_one(  # type: ignore[attr-defined]
            {
                "_id": "u1",
                "user_id": "u1",
                "username": "alice",
                "password_hash": "hash",
                "fhir_user": "Patient/1",
                "created_at": 1,
                "username_key": "alice",
            }
        )
    try:
        user = opened.find_user("alice")
        assert user is not None and user.disabled is False
        assert opened.set_disabled("u1", True)
        assert opened.get_user("u1").disabled is True  # type: ignore[union-attr]
        opened.add_user(User("u2", "bob", "hash"))
        assert opened.get_user("u2").disabled is False  # type: ignore[union-attr]
    finally:
        opened.close()
