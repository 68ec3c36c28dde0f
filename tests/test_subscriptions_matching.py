"""The reference pre-filter of subscription matching (``fhir_server.events.matching``)
never drops a match, on every store: criteria naming references (``subject=Patient/alice``,
``patient=alice``, two references ORed, a reference and a token ANDed) hear of exactly the
writes the search finds, whether the resource refers by a relative or an absolute URL."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.conftest import BASE
from tests.hook_receiver import Receiver, receiver
from tests.test_subscriptions import (  # noqa: F401 (fixtures)
    bearer,
    http,
    seed,
    settings,
    wait_status,
)


def observation(subject: str, code: str = "1234-5") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": subject},
    }


async def test_reference_criteria_hear_exactly_their_matches(
    app: Any,  # noqa: F811
    http: httpx.AsyncClient,  # noqa: F811
) -> None:
    admin = bearer(app, "system/*.cruds")
    await seed(http, admin)
    criteria = {
        "subject": "Observation?subject=Patient/alice",
        "patient-id": "Observation?patient=alice",
        "either": "Observation?subject=Patient/alice,Patient/bob",
        "and-code": "Observation?subject=Patient/alice&code=http://loinc.org|9999-9",
    }
    with receiver() as hook:
        sids = {}
        for name, text in criteria.items():
            body = {
                "resourceType": "Subscription",
                "status": "requested",
                "reason": name,
                "criteria": text,
                "channel": {
                    "type": "rest-hook",
                    "endpoint": hook.url,
                    "header": [f"X-Name: {name}"],
                },
            }
            created = await http.post("Subscription", json=body, headers=admin)
            assert created.status_code == 201, created.text
            sids[name] = created.json()["id"]
        for sid in sids.values():
            await wait_status(http, sid, admin, "active")
        writes = [
            observation("Patient/alice"),
            observation(f"{BASE}/Patient/alice"),
            observation("Patient/bob"),
            observation("Patient/alice", "9999-9"),
        ]
        for body in writes:
            assert (await http.post("Observation", json=body, headers=admin)).status_code == 201
        expected = {"subject": 3, "patient-id": 3, "either": 4, "and-code": 1}
        got = await until(hook, sum(expected.values()))
        counts: dict[str, int] = {}
        for request in got:
            counts[request.headers["X-Name"]] = counts.get(request.headers["X-Name"], 0) + 1
        assert counts == expected


async def until(hook: Receiver, count: int) -> list[Any]:
    await asyncio.to_thread(hook.wait_for, count)
    await asyncio.sleep(0.5)  # and no more
    return hook.snapshot()


async def test_writes_of_this_process_and_of_others_match_alike(
    app: Any,  # noqa: F811
    http: httpx.AsyncClient,  # noqa: F811
) -> None:
    """The pre-filter reads the reference rows of this process's writes from memory
    (``RecentRefs``) and reads the others' resources from the store: both hear the same."""
    from fhir_server.interactions.write import create_request

    admin = bearer(app, "system/*.cruds")
    await seed(http, admin)
    dispatcher = app.state.dispatcher
    with receiver() as hook:
        body = {
            "resourceType": "Subscription",
            "status": "requested",
            "reason": "alice",
            "criteria": "Observation?subject=Patient/alice",
            "channel": {
                "type": "rest-hook",
                "endpoint": hook.url,
                "payload": "application/fhir+json",
            },
        }
        created = await http.post("Subscription", json=body, headers=admin)
        assert created.status_code == 201, created.text
        await wait_status(http, created.json()["id"], admin, "active")
        ours = await http.post("Observation", json=observation("Patient/alice"), headers=admin)
        assert ours.status_code == 201
        version = int(ours.json()["meta"]["versionId"])
        assert dispatcher.recent.get("Observation", ours.json()["id"], version) is not None
        # another process's writes (an import): straight to the store, not noted here
        theirs = create_request(observation("Patient/alice"))
        other = create_request(observation("Patient/bob"))
        for request in (theirs, other):
            await dispatcher.store.write(request)
        assert dispatcher.recent.get("Observation", theirs.id, 1) is None
        dispatcher.wake()
        got = await until(hook, 2)
        ids = sorted(r.path.rsplit("/", 1)[-1] for r in got)
        assert ids == sorted([ours.json()["id"], theirs.id])
