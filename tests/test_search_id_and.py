"""``_id`` ANDed with other parameters (https://hl7.org/fhir/R4/search.html#combining):
every parameter must match. On SQLite an ``_id`` list drove the query and the index
probes of the other parameters were dropped (``Observation?_id=a&code=s|y`` found
``a`` whatever its code)."""

from __future__ import annotations

import httpx


async def test_id_with_another_parameter_needs_both(client: httpx.AsyncClient) -> None:
    observation = {
        "resourceType": "Observation",
        "id": "a",
        "status": "final",
        "code": {"coding": [{"system": "s", "code": "x"}]},
    }
    assert (await client.put("Observation/a", json=observation)).status_code == 201
    for query, expected in [
        ("Observation?_id=a&code=s|x", 1),
        ("Observation?_id=a&code=s|y", 0),
        ("Observation?_id=a,b&status=final&code=s|y", 0),
        ("Observation?code=s|y&_id=a", 0),
    ]:
        bundle = (await client.get(query)).json()
        assert bundle["total"] == expected, query
        assert len(bundle.get("entry", [])) == expected, query
