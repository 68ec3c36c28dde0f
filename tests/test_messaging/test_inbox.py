"""The staff inbox (issue 19): ``Communication?_query=inbox`` collects what is addressed
to the signed-in practitioner, their roles, their care teams (directly or through a
role) and their roles' organizations, unread first, then the newest first, paged."""

from __future__ import annotations

import httpx

from tests.patient_data.support import JSON_PATCH
from tests.test_messaging.support import People, message, send


async def _pages(http: httpx.AsyncClient, url: str, headers: dict[str, str]) -> list[list[str]]:
    pages = []
    while url:
        response = await http.get(url, headers=headers)
        assert response.status_code == 200, response.text
        bundle = response.json()
        pages.append([e["resource"]["payload"][0]["contentString"] for e in bundle["entry"]])
        url = next((link["url"] for link in bundle["link"] if link["relation"] == "next"), "")
    return pages


async def test_the_inbox_of_a_practitioner(http: httpx.AsyncClient, people: People) -> None:
    sent = {}
    for text, to in (
        ("to dr", "Practitioner/dr"),
        ("to the role", "PractitionerRole/dr-role"),
        ("to the team", "CareTeam/alice-team"),
        ("to the clinic", "Organization/clinic"),
        ("to the surgeon", "Practitioner/surgeon"),
        ("to billing", "Organization/billing"),
    ):
        sent[text] = await send(http, people.alice, message("Patient/alice", [to], text))
    to_bob = message("Practitioner/bobs-dr", ["Patient/bob"], "to bob", subject="Patient/bob")
    await send(http, people.bobs_dr, to_bob)
    # the dr reads the oldest of his: it goes last
    mark = [{"op": "add", "path": "/status", "value": "completed"}]
    path = f"Communication/{sent['to dr']['id']}"
    assert (await http.patch(path, json=mark, headers={**people.dr, **JSON_PATCH})).is_success
    response = await http.get("Communication?_query=inbox", headers=people.dr)
    assert response.status_code == 200, response.text
    bundle = response.json()
    assert bundle["total"] == 4
    texts = [e["resource"]["payload"][0]["contentString"] for e in bundle["entry"]]
    assert texts == ["to the clinic", "to the team", "to the role", "to dr"]
    # paged: two at a time, the unread then the read ones
    pages = await _pages(http, "Communication?_query=inbox&_count=2", people.dr)
    assert pages == [["to the clinic", "to the team"], ["to the role", "to dr"]]
    pages = await _pages(http, "Communication?_query=inbox&_count=3", people.dr)
    assert pages == [["to the clinic", "to the team", "to the role"], ["to dr"]]
    # the nurse is in the care team; the surgeon only gets his own
    nurse = await _pages(http, "Communication?_query=inbox", people.nurse)
    assert nurse == [["to the team"]]
    # one address, and the unread count of a badge
    one = await http.get("Communication?recipient=Organization/clinic", headers=people.dr)
    assert one.json()["total"] == 1
    badge = await http.get(
        "Communication?_query=inbox&received:missing=true&_summary=count", headers=people.dr
    )
    assert badge.json()["total"] == 3


async def test_a_patients_inbox_and_unknown_queries(
    http: httpx.AsyncClient, people: People
) -> None:
    await send(http, people.dr, message("Practitioner/dr", ["Patient/alice"], "results"))
    await send(
        http,
        people.bobs_dr,
        message("Practitioner/bobs-dr", ["Patient/bob"], "bob's", subject="Patient/bob"),
    )
    assert await _pages(http, "Communication?_query=inbox", people.alice) == [["results"]]
    assert await _pages(http, "Communication?_query=inbox", people.mum) == [["results"]]
    assert await _pages(http, "Communication?_query=inbox", people.bob) == [["bob's"]]
    unknown = await http.get("Communication?_query=outbox", headers=people.dr)
    assert unknown.status_code == 400
    nobody = await http.get("Communication?_query=inbox", headers=people.admin)
    assert nobody.status_code == 400
    named = await http.get(
        "Communication?_query=inbox&recipient=Patient/alice", headers=people.admin
    )
    assert named.json()["total"] == 1
