"""What the wave-2 attack tests (tests/security_wave2) send and read back: a resource as
staff see it, a transaction Bundle, the JSON Patch content type."""

from __future__ import annotations

from typing import Any

import httpx

JSON_PATCH = {"content-type": "application/json-patch+json"}


async def current(http: httpx.AsyncClient, admin: dict[str, str], path: str) -> dict[str, Any]:
    """The resource at ``path`` as staff read it (it must be there)."""
    response = await http.get(path, headers=admin)
    assert response.status_code == 200, response.text
    return dict(response.json())


def transaction(*entries: dict[str, Any]) -> dict[str, Any]:
    """A transaction Bundle of ``entries``."""
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}
