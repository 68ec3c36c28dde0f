"""The MongoDB auth store: collections ``auth_*`` in the FHIR data's database.

Records and their semantics: :mod:`smart_auth.store.base`. Uses only the synchronous
pymongo ``Collection`` API (which mongomock also provides). Single-use operations are
single-document atomic updates (``find_one_and_update`` with the condition in the filter,
https://www.mongodb.com/docs/manual/core/write-operations-atomicity/), so they hold across
processes without transactions. mongomock is not thread-safe for read-then-write, so its
calls are serialised by a lock (in-memory stand-in for tests only).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, fields, replace
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from pymongo import ASCENDING, ReturnDocument
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

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

_COLLECTIONS = RECORDS
_AFTER = ReturnDocument.AFTER
_MOCK_SERVERS: dict[str, tuple[Any, threading.RLock]] = {}
_MOCK_LOCK = threading.Lock()


def _now(now: int | None) -> int:
    return int(time.time()) if now is None else now


class MongoAuthStore:
    """:class:`~smart_auth.store.base.AuthStore` over a MongoDB database."""

    def __init__(self, client: Any, database: str, *, guard: threading.RLock | None = None) -> None:
        """``guard``: a lock serialising every call (for mongomock, shared by every
        store on the same in-memory server)."""
        self.client = client
        self.db: Database[Any] = client[database]
        self._guard = guard
        self._create_indexes()

    @classmethod
    def from_url(cls, url: str, *, database: str | None = None) -> MongoAuthStore:
        """``mongodb://``/``mongodb+srv://`` (the URL's path names the database, default
        ``fhir``, as for the FHIR data) or ``mongomock://NAME/DB`` (a named in-memory
        server that lives as long as the process)."""
        if url.startswith("mongomock:"):
            import mongomock

            parts = urlsplit(url)
            with _MOCK_LOCK:
                server = (mongomock.MongoClient(), threading.RLock())
                client, guard = _MOCK_SERVERS.setdefault(parts.netloc, server)
            return cls(client, database or parts.path.strip("/") or "fhir", guard=guard)
        from pymongo import MongoClient

        client: Any = MongoClient(url, appname="fhir-server-auth", **_durable_defaults(url))
        return cls(client, database or client.get_default_database("fhir").name)

    def close(self) -> None:
        if self._guard is None:
            self.client.close()

    # -- plumbing ------------------------------------------------------------------------

    @contextlib.contextmanager
    def _serial(self) -> Iterator[None]:
        if self._guard is None:
            yield
        else:
            with self._guard:
                yield

    def _create_indexes(self) -> None:
        self.db.auth_users.create_index([("username_key", ASCENDING)], unique=True)
        self.db.auth_refresh_tokens.create_index([("family_id", ASCENDING)])
        self.db.auth_refresh_tokens.create_index([("user_id", ASCENDING)])
        self.db.auth_codes.create_index([("user_id", ASCENDING)])
        self.db.auth_revoked_tokens.create_index([("revoked_at", ASCENDING)])
        self.db.auth_assertion_jtis.create_index([("expires_at", ASCENDING)])
        self.db.auth_users.create_index([("fhir_user", ASCENDING)])
        self.db.auth_invitations.create_index([("fhir_user", ASCENDING)])
        self.db.auth_login_throttle.create_index([("expires_at", ASCENDING)])

    def _coll(self, cls: type) -> Collection[Any]:
        return self.db[_COLLECTIONS[cls][0]]

    def _insert(self, record: Any) -> None:
        document = _to_doc(record)
        if isinstance(record, User):
            document["username_key"] = username_key(record.username)
            document["email_key"] = record.email.lower() if record.email else None
        try:
            with self._serial():
                self._coll(type(record)).insert_one(document)
        except DuplicateKeyError as exc:
            raise DuplicateError(str(exc)) from None

    def _get(self, cls: type[R], key: str) -> R | None:
        with self._serial():
            document = self._coll(cls).find_one({"_id": key})
        return _from_doc(cls, document)

    def _update(self, cls: type[R], query: dict[str, Any], update: dict[str, Any]) -> R | None:
        """Atomically update one matching record; the record after, or None."""
        with self._serial():
            document = self._coll(cls).find_one_and_update(query, update, return_document=_AFTER)
        return _from_doc(cls, document)

    def _list(self, cls: type[R], order: str) -> list[R]:
        with self._serial():
            documents = list(self._coll(cls).find().sort([(order, 1), ("_id", 1)]))
        return [r for d in documents if (r := _from_doc(cls, d)) is not None]

    def _count(self, collection: str, query: dict[str, Any], update: dict[str, Any]) -> int:
        with self._serial():
            return self.db[collection].update_many(query, update).modified_count

    # -- keys ----------------------------------------------------------------------------

    def list_keys(self) -> list[dict[str, Any]]:
        with self._serial():
            documents = list(self.db.auth_keys.find().sort([("created", 1), ("_id", 1)]))
        return [_key_record(d) for d in documents]

    def add_key(self, jwk: dict[str, Any]) -> None:
        body = {k: v for k, v in jwk.items() if k not in ("created", "retired")}
        document = {"_id": jwk["kid"], "created": int(jwk["created"]), "jwk": body}
        document["retired"] = jwk.get("retired")
        try:
            with self._serial():
                self.db.auth_keys.insert_one(document)
        except DuplicateKeyError as exc:
            raise DuplicateError(str(exc)) from None

    def retire_key(self, kid: str, at: int) -> None:
        with self._serial():
            self.db.auth_keys.update_one({"_id": kid, "retired": None}, {"$set": {"retired": at}})

    def delete_key(self, kid: str) -> None:
        with self._serial():
            self.db.auth_keys.delete_one({"_id": kid})

    # -- clients -------------------------------------------------------------------------

    def add_client(self, client: Client) -> None:
        self._insert(client)

    def get_client(self, client_id: str) -> Client | None:
        return self._get(Client, client_id)

    def list_clients(self) -> list[Client]:
        return self._list(Client, "created_at")

    def update_client(self, client: Client) -> bool:
        with self._serial():
            result = self.db.auth_clients.replace_one({"_id": client.client_id}, _to_doc(client))
        return result.matched_count == 1

    def delete_client(self, client_id: str) -> bool:
        with self._serial():
            return self.db.auth_clients.delete_one({"_id": client_id}).deleted_count == 1

    # -- users ---------------------------------------------------------------------------

    def add_user(self, user: User) -> None:
        self._insert(user)

    def get_user(self, user_id: str) -> User | None:
        return self._get(User, user_id)

    def find_user(self, username: str) -> User | None:
        with self._serial():
            document = self.db.auth_users.find_one({"username_key": username_key(username)})
        return _from_doc(User, document)

    def list_users(self) -> list[User]:
        return self._list(User, "created_at")

    def update_password(self, user_id: str, password_hash: str) -> bool:
        update = {"$set": {"password_hash": password_hash}}
        return self._update(User, {"_id": user_id}, update) is not None

    def set_disabled(self, user_id: str, disabled: bool) -> bool:
        update = {"$set": {"disabled": disabled}}
        return self._update(User, {"_id": user_id}, update) is not None

    def users_for(self, fhir_user: str) -> list[User]:
        with self._serial():
            found = self.db.auth_users.find({"fhir_user": fhir_user})
            documents = list(found.sort([("created_at", 1), ("_id", 1)]))
        return [u for d in documents if (u := _from_doc(User, d)) is not None]

    # -- sign-in throttling --------------------------------------------------------------

    def get_throttle(self, key: str) -> Throttle | None:
        with self._serial():
            document = self.db.auth_login_throttle.find_one({"_id": key})
        return _throttle(document)

    def swap_throttle(self, key: str, old: Throttle | None, new: Throttle | None) -> bool:
        """A single-document compare-and-set: the filter holds the values of ``old``."""
        collection = self.db.auth_login_throttle
        with self._serial():
            if old is None:
                if new is None:
                    return collection.find_one({"_id": key}) is None
                try:
                    collection.insert_one({"_id": key, **_throttle_doc(new)})
                except DuplicateKeyError:
                    return False
                return True
            current = {"_id": key, **old._asdict()}
            if new is None:
                return collection.delete_one(current).deleted_count == 1
            result = collection.update_one(current, {"$set": _throttle_doc(new)})
            return result.matched_count == 1

    # -- invitations ---------------------------------------------------------------------

    def add_invitation(self, invitation: Invitation) -> None:
        self._insert(invitation)

    def get_invitation(self, code_hash: str) -> Invitation | None:
        return self._get(Invitation, code_hash)

    def use_invitation(self, code_hash: str, now: int | None = None) -> Invitation | None:
        now = _now(now)
        query = {"_id": code_hash, "used_at": None, "expires_at": {"$gt": now}}
        return self._update(Invitation, query, {"$set": {"used_at": now}})

    def release_invitation(self, code_hash: str) -> bool:
        query = {"_id": code_hash, "used_at": {"$ne": None}}
        return self._update(Invitation, query, {"$set": {"used_at": None}}) is not None

    def retire_invitations(self, fhir_user: str, now: int | None = None) -> int:
        now = _now(now)
        query = {"fhir_user": fhir_user, "used_at": None, "expires_at": {"$gt": now}}
        return self._count("auth_invitations", query, {"$set": {"expires_at": now}})

    # -- launch contexts -----------------------------------------------------------------

    def add_launch(self, launch: LaunchContext) -> None:
        self._insert(launch)

    def get_launch(self, launch_id: str, now: int | None = None) -> LaunchContext | None:
        launch = self._get(LaunchContext, launch_id)
        return launch if launch is not None and launch.expires_at > _now(now) else None

    # -- authorization codes -------------------------------------------------------------

    def add_code(self, code: AuthorizationCode) -> None:
        self._insert(code)

    def get_code(self, code_hash: str) -> AuthorizationCode | None:
        return self._get(AuthorizationCode, code_hash)

    def take_code(self, code_hash: str, now: int | None = None) -> AuthorizationCode | None:
        now = _now(now)
        query = {"_id": code_hash, "used_at": None, "expires_at": {"$gt": now}}
        return self._update(AuthorizationCode, query, {"$set": {"used_at": now}})

    # -- refresh tokens ------------------------------------------------------------------

    def add_refresh(self, token: RefreshToken) -> None:
        self._insert(replace(token, family_id=token.family_id or token.token_hash))

    def get_refresh(self, token_hash: str) -> RefreshToken | None:
        return self._get(RefreshToken, token_hash)

    def rotate_refresh(self, old_hash: str, new: RefreshToken, now: int | None = None) -> bool:
        """The new token is stored first, then the old one is marked rotated if it is
        still live; a reuse racing with this rotation revokes the new token too."""
        now = _now(now)
        old = self.get_refresh(old_hash)
        if old is None:
            return False
        if old.replaced_by is not None:
            self.revoke_family(old.family_id)
            return False
        if not old.usable(now):
            return False
        self._insert(replace(new, family_id=old.family_id, revoked=False))
        live = {
            "_id": old_hash,
            "revoked": False,
            "replaced_by": None,
            "$or": [{"expires_at": None}, {"expires_at": {"$gt": now}}],
        }
        if self._update(RefreshToken, live, {"$set": {"replaced_by": new.token_hash}}):
            return True
        with self._serial():
            self.db.auth_refresh_tokens.delete_one({"_id": new.token_hash})
        current = self.get_refresh(old_hash)
        if current is not None and current.replaced_by is not None:
            self.revoke_family(old.family_id)
        return False

    def revoke_refresh(self, token_hash: str) -> bool:
        update = {"$set": {"revoked": True}}
        return (
            self._count("auth_refresh_tokens", {"_id": token_hash, "revoked": False}, update) == 1
        )

    def revoke_family(self, family_id: str) -> int:
        query = {"family_id": family_id, "revoked": False}
        return self._count("auth_refresh_tokens", query, {"$set": {"revoked": True}})

    def user_refresh_tokens(self, user_id: str) -> list[RefreshToken]:
        with self._serial():
            documents = list(
                self.db.auth_refresh_tokens.find({"user_id": user_id}).sort(
                    [("created_at", 1), ("_id", 1)]
                )
            )
        return [t for t in (_from_doc(RefreshToken, d) for d in documents) if t is not None]

    def grant_families(
        self, *, user_id: str | None = None, client_id: str | None = None
    ) -> list[str]:
        if (user_id is None) == (client_id is None):
            raise ValueError("give user_id or client_id")
        query = {"user_id": user_id} if user_id is not None else {"client_id": client_id}
        with self._serial():
            families = set(self.db.auth_refresh_tokens.distinct("family_id", query))
            families.update(self.db.auth_codes.distinct("_id", query))
        return sorted(f for f in families if f)

    # -- password resets ------------------------------------------------------------------

    def add_reset(self, reset: PasswordReset) -> None:
        self._insert(reset)

    def get_reset(self, token_hash: str) -> PasswordReset | None:
        return self._get(PasswordReset, token_hash)

    def take_reset(self, token_hash: str, now: int | None = None) -> PasswordReset | None:
        query = {"_id": token_hash, "used": False, "expires_at": {"$gt": _now(now)}}
        return self._update(PasswordReset, query, {"$set": {"used": True}})

    def users_with_email(self, email: str) -> list[User]:
        with self._serial():
            documents = list(self.db.auth_users.find({"email_key": email.lower()}))
        found = [_from_doc(User, d) for d in documents]
        return sorted((u for u in found if u is not None), key=lambda u: u.created_at)

    # -- second factors -------------------------------------------------------------------

    def put_second_factor(self, factor: SecondFactor) -> None:
        with self._serial():
            self._coll(SecondFactor).replace_one(
                {"_id": factor.user_id}, _to_doc(factor), upsert=True
            )

    def get_second_factor(self, user_id: str) -> SecondFactor | None:
        return self._get(SecondFactor, user_id)

    def delete_second_factor(self, user_id: str) -> bool:
        with self._serial():
            return self._coll(SecondFactor).delete_one({"_id": user_id}).deleted_count == 1

    def use_totp_step(self, user_id: str, step: int) -> bool:
        query = {"_id": user_id, "last_step": {"$lt": step}}
        return self._update(SecondFactor, query, {"$set": {"last_step": step}}) is not None

    def use_recovery_code(self, user_id: str, code_hash: str) -> bool:
        query = {"_id": user_id, "recovery_hashes": code_hash}
        update = {"$pull": {"recovery_hashes": code_hash}}
        return self._update(SecondFactor, query, update) is not None

    # -- access-token revocation ---------------------------------------------------------

    def revoke_jti(self, jti: str, expires_at: int, now: int | None = None) -> None:
        document = {"expires_at": expires_at, "revoked_at": _now(now)}
        with self._serial():
            self.db.auth_revoked_tokens.update_one({"_id": jti}, {"$set": document}, upsert=True)

    def revoked_since(self, ts: int, now: int | None = None) -> list[Revocation]:
        query = {"revoked_at": {"$gte": ts}, "expires_at": {"$gte": _now(now)}}
        with self._serial():
            documents = list(self.db.auth_revoked_tokens.find(query).sort("revoked_at", 1))
        return [Revocation(d["_id"], d["expires_at"], d["revoked_at"]) for d in documents]

    # -- client assertion replay ---------------------------------------------------------

    def remember_jti(self, jti: str, expires_at: int, now: int | None = None) -> bool:
        with self._serial():
            self.db.auth_assertion_jtis.delete_many({"expires_at": {"$lt": _now(now)}})
            try:
                self.db.auth_assertion_jtis.insert_one({"_id": jti, "expires_at": expires_at})
            except DuplicateKeyError:
                return False
        return True

    # -- housekeeping --------------------------------------------------------------------

    def purge_expired(self, now: int | None = None) -> None:
        expired = {"expires_at": {"$ne": None, "$lt": _now(now)}}
        names = ("auth_codes", "auth_launches", "auth_refresh_tokens")
        with self._serial():
            for name in (*names, "auth_revoked_tokens", "auth_assertion_jtis"):
                self.db[name].delete_many(expired)
            self.db.auth_login_throttle.delete_many(expired)


def _to_doc(record: Any) -> dict[str, Any]:
    document = asdict(record)
    document["_id"] = document[_COLLECTIONS[type(record)][1]]
    return document


def _from_doc(cls: type[R], document: dict[str, Any] | None) -> R | None:
    if document is None:
        return None
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in document.items() if k in names})


def _throttle(document: dict[str, Any] | None) -> Throttle | None:
    if document is None:
        return None
    return Throttle(document["failures"], document["blocked_until"], document["window_end"])


def _throttle_doc(throttle: Throttle) -> dict[str, Any]:
    return {**throttle._asdict(), "expires_at": max(throttle.blocked_until, throttle.window_end)}


def _key_record(document: dict[str, Any]) -> dict[str, Any]:
    record = dict(document["jwk"])
    record["kid"], record["created"] = document["_id"], document["created"]
    if document.get("retired") is not None:
        record["retired"] = document["retired"]
    return record


def _durable_defaults(url: str) -> dict[str, Any]:
    """Majority, journaled writes unless the URL says otherwise (as the FHIR store)."""
    options = {k.lower() for k in parse_qs(urlsplit(url).query)}
    defaults: dict[str, Any] = {}
    if "w" not in options:
        defaults["w"] = "majority"
    if "journal" not in options:
        defaults["journal"] = True
    return defaults
