"""Whether the authorization a Subscription was written under is still alive (issue 17:
"Revoking the token's refresh family or the app stops its subscriptions").

A Subscription records its creator's token context (``fhir_server.events.subscriptions``,
extension ``urn:fhir-server:subscription-creator``): the client, the user account
(``subject``) and the grant (``family``, the access token's claim naming its refresh
family, https://datatracker.ietf.org/doc/html/rfc9700#section-4.14.2). The dispatcher asks
:meth:`GrantCheck.revoked` when it lists the Subscriptions and before each notification
(answers are kept :data:`TTL` seconds); a revoked creator's Subscription gets status
``error`` with the reason, and nothing more is sent. Revoked means:

- the grant's family was revoked (``POST /auth/revoke`` of its refresh token, a replayed
  code or refresh token, ``fhir-server users disable``...);
- the user account is disabled or removed;
- the client (the app) was deleted (``fhir-server clients delete``).

Without authorization (``FHIR_SERVER_AUTH=off``) or without a recorded creator (bulk
import) nothing is checked.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from fhir_server.events.subscriptions import creator_fields

log = logging.getLogger("fhir_server.events")

TTL = 1.0
"""Seconds an answer is kept for one creator."""

GRANT_REVOKED = "The authorization (grant) of the app that created this Subscription was revoked"
USER_DISABLED = "The user account that created this Subscription is disabled or removed"
CLIENT_DELETED = "The app (client) that created this Subscription was deleted"


class GrantCheck:
    """Answers for the authorization server ``auth()`` returns (None: authorization off)."""

    def __init__(self, auth: Callable[[], Any]) -> None:
        self._auth = auth
        self._answers: dict[tuple[tuple[str, str], ...], tuple[float, str | None]] = {}

    def revoked(self, subscription: dict[str, Any]) -> str | None:
        """Why the creator's authorization is no longer alive (None: it is, or there is
        nothing to check)."""
        fields = creator_fields(subscription)
        auth = self._auth()
        if not fields or auth is None:
            return None
        key = tuple(sorted((k, v) for k, v in fields.items() if k in _CHECKED))
        now = time.monotonic()
        cached = self._answers.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            answer = _verdict(auth, fields)
        except Exception:  # the auth store did not answer: ask again next time
            log.exception("checking a subscription creator's grant failed")
            return None
        if len(self._answers) > 10_000:
            self._answers.clear()
        self._answers[key] = (now + TTL, answer)
        return answer


_CHECKED = frozenset({"client", "subject", "family"})


def _verdict(auth: Any, fields: dict[str, str]) -> str | None:
    family = fields.get("family")
    if family and auth.token_service().is_revoked("", family):
        return GRANT_REVOKED
    store = auth.store
    subject = fields.get("subject")
    if subject:
        user = store.get_user(subject)
        if user is None or user.disabled:
            return USER_DISABLED
    client = fields.get("client")
    if client and store.get_client(client) is None:
        return CLIENT_DELETED
    return None
