"""The SQLite auth store: tables ``auth_*`` in the same file as the FHIR data.

Records and their semantics: :mod:`smart_auth.store.base`. The file is opened the way
the FHIR store opens it (https://www.sqlite.org/wal.html, WAL journal, ``busy_timeout``)
on a connection of its own, shared by this store's threads under a lock. Operations that
read then write (single use of codes and invitations, refresh-token rotation, sign-in
throttle counts, assertion replay) run in ``BEGIN IMMEDIATE`` transactions
(https://www.sqlite.org/lang_transaction.html), so they are atomic across processes too.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, TypeVar

from smart_auth.store.base import (
    RECORDS,
    AuthorizationCode,
    Client,
    DuplicateError,
    Invitation,
    LaunchContext,
    PasswordReset,
    RefreshToken,
    Revocation,
    SecondFactor,
    Throttle,
    User,
    username_key,
)

R = TypeVar(
    "R",
    Client,
    User,
    Invitation,
    LaunchContext,
    AuthorizationCode,
    RefreshToken,
    SecondFactor,
    PasswordReset,
)

_TABLES = RECORDS
_JSON_FIELDS = frozenset({"redirect_uris", "grant_types", "jwks", "metadata", "recovery_hashes"})
_BOOL_FIELDS = frozenset({"revoked", "disabled", "confirmed", "used"})
_COLUMN_DEFAULTS = {"disabled": "DEFAULT 0"}
"""Defaults of the columns added to the tables of an earlier release."""
_EXTRA_COLUMNS = {"auth_users": ("username_key",)}

_FIXED_SCHEMA = """
CREATE TABLE IF NOT EXISTS auth_keys (
    kid TEXT PRIMARY KEY, created INTEGER NOT NULL, retired INTEGER, jwk TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS auth_revoked_tokens (
    jti TEXT PRIMARY KEY, expires_at INTEGER NOT NULL, revoked_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS auth_revoked_tokens_at ON auth_revoked_tokens (revoked_at);
CREATE TABLE IF NOT EXISTS auth_assertion_jtis (jti TEXT PRIMARY KEY, expires_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS auth_assertion_jtis_exp ON auth_assertion_jtis (expires_at);
CREATE TABLE IF NOT EXISTS auth_login_throttle (
    key TEXT PRIMARY KEY, failures INTEGER NOT NULL, blocked_until INTEGER NOT NULL,
    window_end INTEGER NOT NULL, expires_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS auth_login_throttle_exp ON auth_login_throttle (expires_at);
"""
_INDEXES = """
CREATE UNIQUE INDEX IF NOT EXISTS auth_users_username ON auth_users (username_key);
CREATE INDEX IF NOT EXISTS auth_refresh_tokens_family ON auth_refresh_tokens (family_id);
CREATE INDEX IF NOT EXISTS auth_refresh_tokens_user ON auth_refresh_tokens (user_id);
CREATE INDEX IF NOT EXISTS auth_codes_user ON auth_codes (user_id);
CREATE INDEX IF NOT EXISTS auth_users_fhir_user ON auth_users (fhir_user);
CREATE INDEX IF NOT EXISTS auth_invitations_fhir_user ON auth_invitations (fhir_user);
"""


def path_from_url(url: str) -> Path:
    """``sqlite:///relative/path`` or ``sqlite:////absolute/path`` to a Path (the forms
    the FHIR store accepts)."""
    if not url.startswith("sqlite:///"):
        raise ValueError(f"SQLite storage URL must start with sqlite:/// (got {url!r})")
    rest = url[len("sqlite:///") :]
    if not rest or rest == "/":
        raise ValueError("SQLite storage URL needs a file path")
    return Path(rest)


def _now(now: int | None) -> int:
    return int(time.time()) if now is None else now


class SQLiteAuthStore:
    """:class:`~smart_auth.store.base.AuthStore` over a SQLite file."""

    def __init__(self, path: Path | str, *, synchronous: str = "NORMAL") -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(
            str(path), isolation_level=None, check_same_thread=False, timeout=30.0
        )
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute(f"PRAGMA synchronous={synchronous}")
        self._conn.execute("PRAGMA busy_timeout=30000")
        self._create_schema()

    @classmethod
    def from_url(cls, url: str, *, synchronous: str = "NORMAL") -> SQLiteAuthStore:
        return cls(path_from_url(url), synchronous=synchronous)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # -- plumbing --------------------------------------------------------------------------

    def _create_schema(self) -> None:
        with self._transaction() as conn:
            for statement in _statements(_FIXED_SCHEMA):
                conn.execute(statement)
            for cls, (table, key) in _TABLES.items():
                columns = [f.name for f in fields(cls)] + list(_EXTRA_COLUMNS.get(table, ()))
                body = ", ".join([*columns, f"PRIMARY KEY ({key})"])
                conn.execute(f"CREATE TABLE IF NOT EXISTS {table} ({body})")
                _add_missing_columns(conn, table, columns)
            for statement in _statements(_INDEXES):
                conn.execute(statement)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException:
                # SQLite may have rolled back already (SQLITE_FULL, SQLITE_IOERR, ...), and
                # a failed COMMIT must not leave the transaction open for the next writer
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def _run(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        with self._lock:
            return self._conn.execute(sql, params).rowcount

    def _insert(self, record: Any, conn: sqlite3.Connection | None = None) -> None:
        table, _ = _TABLES[type(record)]
        row = _to_row(record)
        if isinstance(record, User):
            row["username_key"] = username_key(record.username)
        sql = f"INSERT INTO {table} ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})"
        try:
            if conn is not None:
                conn.execute(sql, tuple(row.values()))
            else:
                self._run(sql, tuple(row.values()))
        except sqlite3.IntegrityError as exc:
            raise DuplicateError(str(exc)) from None

    def _get(self, cls: type[R], key: str, conn: sqlite3.Connection | None = None) -> R | None:
        table, column = _TABLES[cls]
        sql = f"SELECT * FROM {table} WHERE {column} = ?"
        rows = conn.execute(sql, (key,)).fetchall() if conn is not None else self._rows(sql, (key,))
        return _from_row(cls, rows[0]) if rows else None

    # -- keys ------------------------------------------------------------------------------

    def list_keys(self) -> list[dict[str, Any]]:
        rows = self._rows("SELECT * FROM auth_keys ORDER BY created, kid")
        return [_key_record(row) for row in rows]

    def add_key(self, jwk: dict[str, Any]) -> None:
        body = {k: v for k, v in jwk.items() if k not in ("created", "retired")}
        params = (jwk["kid"], int(jwk["created"]), jwk.get("retired"), json.dumps(body))
        try:
            self._run("INSERT INTO auth_keys (kid, created, retired, jwk) VALUES (?,?,?,?)", params)
        except sqlite3.IntegrityError as exc:
            raise DuplicateError(str(exc)) from None

    def retire_key(self, kid: str, at: int) -> None:
        self._run("UPDATE auth_keys SET retired = ? WHERE kid = ? AND retired IS NULL", (at, kid))

    def delete_key(self, kid: str) -> None:
        self._run("DELETE FROM auth_keys WHERE kid = ?", (kid,))

    # -- clients ---------------------------------------------------------------------------

    def add_client(self, client: Client) -> None:
        self._insert(client)

    def get_client(self, client_id: str) -> Client | None:
        return self._get(Client, client_id)

    def list_clients(self) -> list[Client]:
        rows = self._rows("SELECT * FROM auth_clients ORDER BY created_at, client_id")
        return [_from_row(Client, row) for row in rows]

    def update_client(self, client: Client) -> bool:
        row = _to_row(client)
        assignments = ", ".join(f"{name} = ?" for name in row)
        sql = f"UPDATE auth_clients SET {assignments} WHERE client_id = ?"
        return self._run(sql, (*row.values(), client.client_id)) == 1

    def delete_client(self, client_id: str) -> bool:
        return self._run("DELETE FROM auth_clients WHERE client_id = ?", (client_id,)) == 1

    # -- users -----------------------------------------------------------------------------

    def add_user(self, user: User) -> None:
        self._insert(user)

    def get_user(self, user_id: str) -> User | None:
        return self._get(User, user_id)

    def find_user(self, username: str) -> User | None:
        rows = self._rows(
            "SELECT * FROM auth_users WHERE username_key = ?", (username_key(username),)
        )
        return _from_row(User, rows[0]) if rows else None

    def list_users(self) -> list[User]:
        rows = self._rows("SELECT * FROM auth_users ORDER BY created_at, user_id")
        return [_from_row(User, row) for row in rows]

    def update_password(self, user_id: str, password_hash: str) -> bool:
        sql = "UPDATE auth_users SET password_hash = ? WHERE user_id = ?"
        return self._run(sql, (password_hash, user_id)) == 1

    def set_disabled(self, user_id: str, disabled: bool) -> bool:
        sql = "UPDATE auth_users SET disabled = ? WHERE user_id = ?"
        return self._run(sql, (int(disabled), user_id)) == 1

    def users_for(self, fhir_user: str) -> list[User]:
        sql = "SELECT * FROM auth_users WHERE fhir_user = ? ORDER BY created_at, user_id"
        return [_from_row(User, row) for row in self._rows(sql, (fhir_user,))]

    # -- sign-in throttling ----------------------------------------------------------------

    def get_throttle(self, key: str) -> Throttle | None:
        return _throttle(self._rows(_THROTTLE_ROW, (key,)))

    def swap_throttle(self, key: str, old: Throttle | None, new: Throttle | None) -> bool:
        with self._transaction() as conn:
            if _throttle(conn.execute(_THROTTLE_ROW, (key,)).fetchall()) != old:
                return False
            if new is None:
                conn.execute("DELETE FROM auth_login_throttle WHERE key = ?", (key,))
            else:
                conn.execute(
                    "INSERT OR REPLACE INTO auth_login_throttle"
                    " (key, failures, blocked_until, window_end, expires_at) VALUES (?,?,?,?,?)",
                    (key, *new, max(new.blocked_until, new.window_end)),
                )
            return True

    # -- invitations -----------------------------------------------------------------------

    def add_invitation(self, invitation: Invitation) -> None:
        self._insert(invitation)

    def get_invitation(self, code_hash: str) -> Invitation | None:
        return self._get(Invitation, code_hash)

    def use_invitation(self, code_hash: str, now: int | None = None) -> Invitation | None:
        now = _now(now)
        with self._transaction() as conn:
            invitation = self._get(Invitation, code_hash, conn)
            if invitation is None or not invitation.usable(now):
                return None
            sql = "UPDATE auth_invitations SET used_at = ? WHERE code_hash = ?"
            conn.execute(sql, (now, code_hash))
            return replace(invitation, used_at=now)

    def release_invitation(self, code_hash: str) -> bool:
        sql = (
            "UPDATE auth_invitations SET used_at = NULL WHERE code_hash = ? AND used_at IS NOT NULL"
        )
        return self._run(sql, (code_hash,)) == 1

    def retire_invitations(self, fhir_user: str, now: int | None = None) -> int:
        now = _now(now)
        sql = (
            "UPDATE auth_invitations SET expires_at = ?"
            " WHERE fhir_user = ? AND used_at IS NULL AND expires_at > ?"
        )
        return self._run(sql, (now, fhir_user, now))

    # -- launch contexts -------------------------------------------------------------------

    def add_launch(self, launch: LaunchContext) -> None:
        self._insert(launch)

    def get_launch(self, launch_id: str, now: int | None = None) -> LaunchContext | None:
        launch = self._get(LaunchContext, launch_id)
        return launch if launch is not None and launch.expires_at > _now(now) else None

    # -- authorization codes ---------------------------------------------------------------

    def add_code(self, code: AuthorizationCode) -> None:
        self._insert(code)

    def get_code(self, code_hash: str) -> AuthorizationCode | None:
        return self._get(AuthorizationCode, code_hash)

    def take_code(self, code_hash: str, now: int | None = None) -> AuthorizationCode | None:
        now = _now(now)
        with self._transaction() as conn:
            code = self._get(AuthorizationCode, code_hash, conn)
            if code is None or code.used_at is not None or code.expires_at <= now:
                return None
            conn.execute("UPDATE auth_codes SET used_at = ? WHERE code_hash = ?", (now, code_hash))
            return replace(code, used_at=now)

    # -- refresh tokens --------------------------------------------------------------------

    def add_refresh(self, token: RefreshToken) -> None:
        self._insert(replace(token, family_id=token.family_id or token.token_hash))

    def get_refresh(self, token_hash: str) -> RefreshToken | None:
        return self._get(RefreshToken, token_hash)

    def rotate_refresh(self, old_hash: str, new: RefreshToken, now: int | None = None) -> bool:
        now = _now(now)
        with self._transaction() as conn:
            old = self._get(RefreshToken, old_hash, conn)
            if old is None:
                return False
            if old.replaced_by is not None:
                _revoke_family(conn, old.family_id)
                return False
            if not old.usable(now):
                return False
            self._insert(replace(new, family_id=old.family_id), conn)
            sql = "UPDATE auth_refresh_tokens SET replaced_by = ? WHERE token_hash = ?"
            conn.execute(sql, (new.token_hash, old_hash))
            return True

    def revoke_refresh(self, token_hash: str) -> bool:
        sql = "UPDATE auth_refresh_tokens SET revoked = 1 WHERE token_hash = ? AND revoked = 0"
        return self._run(sql, (token_hash,)) == 1

    def revoke_family(self, family_id: str) -> int:
        with self._transaction() as conn:
            return _revoke_family(conn, family_id)

    def user_refresh_tokens(self, user_id: str) -> list[RefreshToken]:
        rows = self._rows(
            "SELECT * FROM auth_refresh_tokens WHERE user_id = ? ORDER BY created_at, token_hash",
            (user_id,),
        )
        return [_from_row(RefreshToken, row) for row in rows]

    def grant_families(
        self, *, user_id: str | None = None, client_id: str | None = None
    ) -> list[str]:
        column, value = _grant_owner(user_id, client_id)
        sql = (
            f"SELECT family_id FROM auth_refresh_tokens WHERE {column} = ?"
            f" UNION SELECT code_hash FROM auth_codes WHERE {column} = ? ORDER BY 1"
        )
        return [row[0] for row in self._rows(sql, (value, value))]

    # -- password resets ----------------------------------------------------------------------

    def add_reset(self, reset: PasswordReset) -> None:
        self._insert(reset)

    def get_reset(self, token_hash: str) -> PasswordReset | None:
        return self._get(PasswordReset, token_hash)

    def take_reset(self, token_hash: str, now: int | None = None) -> PasswordReset | None:
        with self._transaction() as conn:
            found = conn.execute(
                "UPDATE auth_password_resets SET used = 1"
                " WHERE token_hash = ? AND used = 0 AND expires_at > ?",
                (token_hash, _now(now)),
            ).rowcount
            return self._get(PasswordReset, token_hash, conn) if found == 1 else None

    def users_with_email(self, email: str) -> list[User]:
        rows = self._rows(
            "SELECT * FROM auth_users WHERE lower(email) = lower(?) ORDER BY created_at", (email,)
        )
        return [_from_row(User, row) for row in rows]

    # -- second factors -----------------------------------------------------------------------

    def put_second_factor(self, factor: SecondFactor) -> None:
        with self._transaction() as conn:
            conn.execute("DELETE FROM auth_second_factors WHERE user_id = ?", (factor.user_id,))
            self._insert(factor, conn)

    def get_second_factor(self, user_id: str) -> SecondFactor | None:
        return self._get(SecondFactor, user_id)

    def delete_second_factor(self, user_id: str) -> bool:
        return self._run("DELETE FROM auth_second_factors WHERE user_id = ?", (user_id,)) == 1

    def use_totp_step(self, user_id: str, step: int) -> bool:
        sql = "UPDATE auth_second_factors SET last_step = ? WHERE user_id = ? AND last_step < ?"
        return self._run(sql, (step, user_id, step)) == 1

    def use_recovery_code(self, user_id: str, code_hash: str) -> bool:
        with self._transaction() as conn:
            factor = self._get(SecondFactor, user_id, conn)
            if factor is None or code_hash not in factor.recovery_hashes:
                return False
            left = [h for h in factor.recovery_hashes if h != code_hash]
            conn.execute(
                "UPDATE auth_second_factors SET recovery_hashes = ? WHERE user_id = ?",
                (json.dumps(left), user_id),
            )
            return True

    # -- access-token revocation -----------------------------------------------------------

    def revoke_jti(self, jti: str, expires_at: int, now: int | None = None) -> None:
        self._run(
            "INSERT OR REPLACE INTO auth_revoked_tokens (jti, expires_at, revoked_at)"
            " VALUES (?, ?, ?)",
            (jti, expires_at, _now(now)),
        )

    def revoked_since(self, ts: int, now: int | None = None) -> list[Revocation]:
        rows = self._rows(
            "SELECT jti, expires_at, revoked_at FROM auth_revoked_tokens"
            " WHERE revoked_at >= ? AND expires_at >= ? ORDER BY revoked_at",
            (ts, _now(now)),
        )
        return [Revocation(row["jti"], row["expires_at"], row["revoked_at"]) for row in rows]

    # -- client assertion replay -----------------------------------------------------------

    def remember_jti(self, jti: str, expires_at: int, now: int | None = None) -> bool:
        with self._transaction() as conn:
            conn.execute("DELETE FROM auth_assertion_jtis WHERE expires_at < ?", (_now(now),))
            sql = "INSERT OR IGNORE INTO auth_assertion_jtis (jti, expires_at) VALUES (?, ?)"
            return conn.execute(sql, (jti, expires_at)).rowcount == 1

    # -- housekeeping ----------------------------------------------------------------------

    def purge_expired(self, now: int | None = None) -> None:
        now = _now(now)
        with self._transaction() as conn:
            for table in ("auth_codes", "auth_launches", "auth_refresh_tokens"):
                conn.execute(f"DELETE FROM {table} WHERE expires_at < ?", (now,))
            for table in ("auth_revoked_tokens", "auth_assertion_jtis", "auth_login_throttle"):
                conn.execute(f"DELETE FROM {table} WHERE expires_at < ?", (now,))


_THROTTLE_ROW = "SELECT failures, blocked_until, window_end FROM auth_login_throttle WHERE key = ?"


def _throttle(rows: list[sqlite3.Row]) -> Throttle | None:
    return Throttle(*rows[0]) if rows else None


def _revoke_family(conn: sqlite3.Connection, family_id: str) -> int:
    sql = "UPDATE auth_refresh_tokens SET revoked = 1 WHERE family_id = ? AND revoked = 0"
    return conn.execute(sql, (family_id,)).rowcount


def _grant_owner(user_id: str | None, client_id: str | None) -> tuple[str, str]:
    if (user_id is None) == (client_id is None):
        raise ValueError("give user_id or client_id")
    return ("user_id", user_id) if user_id is not None else ("client_id", str(client_id))


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def _add_missing_columns(conn: sqlite3.Connection, table: str, columns: list[str]) -> None:
    """Columns added to a record after a database was created (a newer version)."""
    present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
    for column in columns:
        if column not in present:
            default = _COLUMN_DEFAULTS.get(column, "")
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {default}".rstrip())


def _to_row(record: Any) -> dict[str, Any]:
    row = {}
    for f in fields(record):
        value = getattr(record, f.name)
        if f.name in _JSON_FIELDS:
            value = None if value is None else json.dumps(value)
        elif f.name in _BOOL_FIELDS:
            value = int(value)
        row[f.name] = value
    return row


def _from_row(cls: type[R], row: sqlite3.Row) -> R:
    values = {}
    for f in fields(cls):
        value = row[f.name]
        if f.name in _JSON_FIELDS:
            value = None if value is None else json.loads(value)
        elif f.name in _BOOL_FIELDS:
            value = bool(value)  # NULL: a row an earlier release wrote
        values[f.name] = value
    return cls(**values)


def _key_record(row: sqlite3.Row) -> dict[str, Any]:
    record: dict[str, Any] = json.loads(row["jwk"])
    record["kid"], record["created"] = row["kid"], row["created"]
    if row["retired"] is not None:
        record["retired"] = row["retired"]
    return record
