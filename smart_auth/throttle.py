"""Sign-in throttling: guessing passwords gets slower and slower, and nobody can lock an
account's owner out (OWASP Authentication Cheat Sheet, "Login Throttling" and "Account
Lockout": https://cheatsheetseries.owasp.org/cheatsheets/Authentication_Cheat_Sheet.html).

Failed sign-ins are counted under three keys, in the auth store (so every server process
sees the same counts):

- **one address, one username**: ``free`` failures (``FHIR_SERVER_LOCKOUT_AFTER``) in a
  day, then each further attempt from that address for that username waits 2 s, 4 s,
  8 s... up to ``longest`` (``FHIR_SERVER_LOCKOUT_SECONDS``) after the previous one;
- **one address, any username**: ``20 x free`` failures in an hour, then the same waits
  for every attempt from that address (guessing one password for many usernames);
- **one username, any address**: past ``20 x free`` failures in a day (guessing spread
  over many addresses), each address gets one free failure on that username instead of
  ``free``. This only slows down: an address that has not failed is always admitted.

An attempt is counted before the password is checked (so parallel attempts cannot slip
through before the first failure is recorded) and given back when it succeeds; a success
also clears its address's count for that username. Usernames that do not exist are
counted exactly like those that do, so the answers (``401``, or ``429`` with
``Retry-After``) never tell which usernames exist. Keys are SHA-256 hashes: the store
holds no usernames or addresses in clear. Addresses are the client's IP address (an IPv6
address by its /64 network, what one customer usually gets); behind a reverse proxy,
uvicorn takes it from ``X-Forwarded-For`` when the proxy is trusted
(``--forwarded-allow-ips`` / ``FORWARDED_ALLOW_IPS``).
"""

from __future__ import annotations

import hashlib
import ipaddress
import time
from collections.abc import Callable

from smart_auth.store.base import AuthStore, Throttle, username_key

DAY = 24 * 3600
HOUR = 3600
ADDRESS_FACTOR = 20
"""An address may fail this many times ``free`` in an hour, over all usernames."""
ACCOUNT_FACTOR = 20
"""A username may fail this many times ``free`` in a day, over all addresses, before each
address gets only one free failure on it."""
_NEVER = 1 << 62
_TRIES = 8
"""Compare-and-set attempts on one key before an attempt is refused as contended."""

Change = Callable[[Throttle | None, int], Throttle | None]
"""What becomes of a key's count: ``change(old, now) -> new`` (None: forget the key)."""


def _clock() -> int:
    return int(time.time())


def client_address(host: str | None) -> str:
    """The address a client is counted under: its IP address, an IPv6 one by its /64."""
    if not host:
        return "unknown"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host[:100]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{ip}/64", strict=False))
    return str(ip)


def _key(*parts: str) -> str:
    return hashlib.sha256("\x00".join(("sign-in", *parts)).encode()).hexdigest()


class LoginThrottle:
    """The three counts of a sign-in, over an auth store.

    ``free``: failures from one address on one username before the waits start;
    ``longest``: the longest wait (seconds).
    """

    def __init__(self, store: AuthStore, free: int, longest: int) -> None:
        self.store = store
        self.free = max(1, free)
        self.longest = max(1, longest)

    # -- the sign-in steps --------------------------------------------------------------------
    def admit(self, username: str, address: str) -> int:
        """0 if this attempt may check a password (it is counted); otherwise how many
        seconds to wait (nothing counted)."""
        name = username_key(username)
        pair, anywhere = _key("pair", name, address), _key("address", address)
        attacked = self.failures(_key("account", name)) >= ACCOUNT_FACTOR * self.free
        wait = self._charge(pair, 1 if attacked else self.free, DAY)
        if wait:
            return wait
        wait = self._charge(anywhere, ADDRESS_FACTOR * self.free, HOUR)
        if wait:
            self._refund(pair, self.free)
        return wait

    def failed(self, username: str, address: str) -> None:
        """The password was wrong (or the username unknown): count it for the username."""
        self._charge(_key("account", username_key(username)), _NEVER, DAY)

    def succeeded(self, username: str, address: str) -> None:
        """The right password: forget this address's failures on the username and give
        the attempt back to the address."""
        name = username_key(username)
        self._update(_key("pair", name, address), lambda old, now: None)
        self._refund(_key("address", address), ADDRESS_FACTOR * self.free)

    def failures(self, key: str) -> int:
        """The failures counted under a key in its current window."""
        current = self.store.get_throttle(key)
        return current.failures if current and current.window_end > _clock() else 0

    # -- counting -------------------------------------------------------------------------
    def delay(self, failures: int, free: int) -> int:
        """The wait after the ``failures``-th failure: none before ``free``, then 2 s,
        4 s, 8 s... at most ``longest``."""
        if failures < free:
            return 0
        return min(self.longest, 2 ** min(failures - free + 1, 40))

    def _charge(self, key: str, free: int, window: int) -> int:
        waited = 0

        def charge(old: Throttle | None, now: int) -> Throttle | None:
            nonlocal waited
            if old is not None and old.blocked_until > now:
                waited = old.blocked_until - now
                return old
            waited = 0
            if old is None or old.window_end <= now:
                failures, window_end = 1, now + window
            else:
                failures, window_end = old.failures + 1, old.window_end
            wait = self.delay(failures, free)
            return Throttle(failures, now + wait if wait else 0, window_end)

        if not self._update(key, charge):
            return 1  # contended: many attempts at once under one key
        return waited

    def _refund(self, key: str, free: int) -> None:
        def refund(old: Throttle | None, now: int) -> Throttle | None:
            if old is None:
                return None
            failures = max(0, old.failures - 1)
            blocked = old.blocked_until if failures >= free else 0
            return Throttle(failures, blocked, old.window_end)

        self._update(key, refund)

    def _update(self, key: str, change: Change) -> bool:
        """Apply ``change(old, now) -> new`` to a key with compare-and-set, retrying when
        another attempt changed it meanwhile; False if it stayed contended."""
        for _ in range(_TRIES):
            now = _clock()
            old = self.store.get_throttle(key)
            new = change(old, now)
            if new == old or self.store.swap_throttle(key, old, new):
                return True
        return False
