"""The server's signing keys (JSON Web Keys, RFC 7517: https://www.rfc-editor.org/rfc/rfc7517).

An RSA 2048 key (alg RS256, kid = its RFC 7638 thumbprint) is created on first use and
saved in the :class:`~smart_auth.store.base.AuthStore`, so a restart or another process
signs with the same key. Rotation (:meth:`KeyManager.rotate`) adds a new current key and
retires the others: a retired key keeps verifying tokens, and stays in the published JWKS,
for ``max_token_lifetime`` seconds after it was retired, so tokens signed before the
rotation stay valid until they expire. A kid this process does not know makes it reload
the keys from the store (at most once every ``reload_interval`` seconds): another process
may have rotated; and every ``current_ttl`` seconds this process reads the keys again, so
a rotation made elsewhere is signed with here within that time. The current key is the
oldest key not retired: processes that race to create the first key agree on one within
``current_ttl`` (keep it well under ``max_token_lifetime``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from joserfc.jwk import RSAKey

from smart_auth.store.base import AuthStore

ALGORITHM = "RS256"
_BOOKKEEPING = ("created", "retired")


class KeyManager:
    """Signing keys kept in the store, cached in this process."""

    def __init__(
        self,
        store: AuthStore,
        *,
        max_token_lifetime: int = 3600,
        reload_interval: float = 5.0,
        current_ttl: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``max_token_lifetime``: the longest lifetime of a token these keys sign (how
        long a retired key must still verify). ``reload_interval``: at most one reload per
        this many seconds for an unknown kid. ``current_ttl``: how long this process keeps
        signing with the current key before it checks the store for a rotation made by
        another process."""
        self._store = store
        self.max_token_lifetime = max_token_lifetime
        self._reload_interval = reload_interval
        self._current_ttl = current_ttl
        self._clock = clock
        self._lock = threading.RLock()
        self._records: list[dict[str, Any]] = []
        self._keys: dict[str, RSAKey] = {}
        self._loaded_at: float | None = None

    def current_key(self) -> RSAKey:
        """The key to sign with (created and saved on first use)."""
        with self._lock:
            self._refresh()
            current = self._current_record()
            if current is None:
                self._add_new_key()
                self.reload()
                current = self._current_record()
            assert current is not None
            return self._keys[current["kid"]]

    def key_for(self, kid: str) -> RSAKey | None:
        """The key with this kid if it may verify tokens (not retired longer than
        ``max_token_lifetime`` ago); reloads the store once per ``reload_interval`` for
        an unknown kid."""
        with self._lock:
            if kid not in self._keys and self._may_reload():
                self.reload()
            record = next((r for r in self._records if r["kid"] == kid), None)
            if record is None or not self._verifies(record):
                return None
            return self._keys[kid]

    def jwks(self) -> dict[str, Any]:
        """The public JWKS (``{"keys": [...]}``) of every key that may verify tokens."""
        with self._lock:
            self.current_key()
            keys = [self._keys[r["kid"]] for r in self._records if self._verifies(r)]
            return {"keys": [_public(key) for key in keys]}

    def rotate(self) -> RSAKey:
        """Create a new current key and retire every other one; returns the new key."""
        with self._lock:
            self.reload()
            now = int(self._clock())
            new_kid = self._add_new_key()
            for record in self._records:
                if record.get("retired") is None:
                    self._store.retire_key(record["kid"], now)
            self.reload()
            return self._keys[new_kid]

    def reload(self) -> None:
        """Read the keys from the store again."""
        with self._lock:
            records = self._store.list_keys()
            keys = {r["kid"]: self._keys.get(r["kid"]) or _import(r) for r in records}
            self._records, self._keys = records, keys
            self._loaded_at = self._clock()

    def _refresh(self) -> None:
        if self._loaded_at is None or self._clock() - self._loaded_at >= self._current_ttl:
            self.reload()

    def _may_reload(self) -> bool:
        return self._loaded_at is None or self._clock() - self._loaded_at >= self._reload_interval

    def _current_record(self) -> dict[str, Any] | None:
        live = [r for r in self._records if r.get("retired") is None]
        return live[0] if live else None

    def _verifies(self, record: dict[str, Any]) -> bool:
        retired = record.get("retired")
        return retired is None or self._clock() - retired <= self.max_token_lifetime

    def _add_new_key(self) -> str:
        key = RSAKey.generate_key(2048, parameters={"alg": ALGORITHM, "use": "sig"})
        record = dict(key.as_dict(private=True))
        record["kid"] = key.thumbprint()
        record["created"] = int(self._clock())
        self._store.add_key(record)
        return record["kid"]


def _import(record: dict[str, Any]) -> RSAKey:
    jwk = {k: v for k, v in record.items() if k not in _BOOKKEEPING}
    return RSAKey.import_key(jwk)


def _public(key: RSAKey) -> dict[str, Any]:
    public = dict(key.as_dict(private=False))
    public.setdefault("alg", ALGORITHM)
    public.setdefault("use", "sig")
    return public
