"""Rescheduling as one transaction Bundle (issue 18, the README's recipe), on every store:
the cancellation frees its Slot in the same transaction, so the new appointment may take
that very Slot (whatever the order of the entries); a Slot is still taken once only; a
refused transaction leaves the old appointment booked and its Slot busy."""

from __future__ import annotations

from typing import Any

import httpx

from tests.scheduling.support import appointment, at, count, status_of


def _entry(resource: dict[str, Any], method: str, url: str) -> dict[str, Any]:
    return {"resource": resource, "request": {"method": method, "url": url}}


def _cancel(old: dict[str, Any]) -> dict[str, Any]:
    cancelled = {**old, "status": "cancelled", "cancelationReason": {"text": "rescheduled"}}
    return _entry(cancelled, "PUT", f"Appointment/{old['id']}")


def _transaction(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}


async def _book(http: httpx.AsyncClient, who: dict[str, str], *slots: str) -> dict[str, Any]:
    response = await http.post("Appointment", json=appointment(*slots), headers=who)
    assert response.status_code == 201, response.text
    return response.json()


async def _holders(http: httpx.AsyncClient, slot_id: str, admin: dict[str, str]) -> int:
    return await count(http, f"Appointment?slot=Slot/{slot_id}&status=booked", admin)


async def test_a_new_appointment_takes_the_slot_the_cancelled_one_frees(
    http: httpx.AsyncClient, alice: dict[str, str], admin: dict[str, str]
) -> None:
    old = await _book(http, alice, "s1")
    new = appointment("s1", comment="same time, another reason")
    for cancel_first in (True, False):
        entries = [_cancel(old), _entry(new, "POST", "Appointment")]
        if not cancel_first:
            entries.reverse()
        response = await http.post("", json=_transaction(*entries), headers=alice)
        assert response.status_code == 200, response.text
        assert await status_of(http, "s1", admin) == "busy"
        assert await _holders(http, "s1", admin) == 1
        cancelled = (await http.get(f"Appointment/{old['id']}", headers=alice)).json()
        assert cancelled["status"] == "cancelled"
        [created] = [
            e["response"]["location"]
            for e in response.json()["entry"]
            if e["response"]["status"].startswith("201")
        ]
        old = (await http.get(created.split("/_history")[0], headers=alice)).json()
        assert old["status"] == "booked" and old["slot"] == [{"reference": "Slot/s1"}]


async def test_an_updated_appointment_takes_the_slot_another_one_frees(
    http: httpx.AsyncClient, alice: dict[str, str], admin: dict[str, str]
) -> None:
    """Two PUTs, applied in the Bundle's order: the release comes first, then the
    claim (and the other way round)."""
    first = await _book(http, alice, "s1")
    second = await _book(http, alice, "s3")
    moved = {**second, "slot": [{"reference": "Slot/s1"}], "start": first["start"]}
    moved["end"] = first["end"]
    response = await http.post(
        "",
        json=_transaction(_cancel(first), _entry(moved, "PUT", f"Appointment/{second['id']}")),
        headers=alice,
    )
    assert response.status_code == 200, response.text
    assert [await status_of(http, s, admin) for s in ("s1", "s3")] == ["busy", "free"]
    third = await _book(http, alice, "s2")
    back = {**moved, "slot": [{"reference": "Slot/s2"}], "start": third["start"]}
    back["end"] = third["end"]
    response = await http.post(
        "",
        json=_transaction(_entry(back, "PUT", f"Appointment/{second['id']}"), _cancel(third)),
        headers=alice,
    )
    assert response.status_code == 200, response.text
    assert [await status_of(http, s, admin) for s in ("s1", "s2")] == ["free", "busy"]
    assert await _holders(http, "s2", admin) == 1


async def test_a_freed_slot_is_taken_once_only(
    http: httpx.AsyncClient, alice: dict[str, str], staff: dict[str, str], admin: dict[str, str]
) -> None:
    old = await _book(http, alice, "s1")
    twice = _transaction(
        _cancel(old),
        _entry(appointment("s1"), "POST", "Appointment"),
        _entry(appointment("s1", patient="bob"), "POST", "Appointment"),
    )
    response = await http.post("", json=twice, headers=staff)
    assert response.status_code == 409, response.text
    assert "Slot/s1" in response.text
    still = (await http.get(f"Appointment/{old['id']}", headers=alice)).json()
    assert still["status"] == "booked"
    assert await status_of(http, "s1", admin) == "busy"
    assert await count(http, "Appointment", admin) == 1


async def test_a_refused_reschedule_changes_nothing(
    http: httpx.AsyncClient, alice: dict[str, str], bob: dict[str, str], admin: dict[str, str]
) -> None:
    old = await _book(http, alice, "s1")
    taken = await http.post("Appointment", json=appointment("s2", patient="bob"), headers=bob)
    assert taken.status_code == 201, taken.text
    for new_slot, status in (("s2", 409), ("s-past", 422), ("nope", 422), ("bob-s1", 422)):
        new = appointment(new_slot, start=at(3, 10), end=at(3, 10, 20))
        response = await http.post(
            "",
            json=_transaction(_cancel(old), _entry(new, "POST", "Appointment")),
            headers=alice,
        )
        assert response.status_code == status, (new_slot, response.text)
        still = (await http.get(f"Appointment/{old['id']}", headers=alice)).json()
        assert still["status"] == "booked" and still["meta"] == old["meta"]
        assert await status_of(http, "s1", admin) == "busy"
    assert await count(http, "Appointment", admin) == 2
