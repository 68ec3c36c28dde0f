"""``fhir-server schedule create``: a practitioner's (or a location's...) Schedule and its
free Slots, for staff (issue 18; R4 Schedule https://hl7.org/fhir/R4/schedule.html and
Slot https://hl7.org/fhir/R4/slot.html).

``fhir-server schedule create --actor Practitioner/x --from 2027-01-04 --to 2027-01-29
--days mon-fri --hours 09:00-12:00,13:00-17:00 --slot 20m [--service-type SYSTEM|CODE]
[--virtual] [--tz Europe/Berlin]`` makes one Schedule per actor and service type (found
again by its actor and service type, else created) and a free Slot every ``--slot`` within
``--hours`` on the ``--days`` from ``--from`` to ``--to`` (inclusive), the hours being
local times of ``--tz`` (default ``FHIR_SERVER_TIMEZONE``, default UTC). ``--virtual``
gives the Slots the ``serviceType`` v3-ActCode ``VR`` (telehealth: a booking gets a join
link). Slots that would overlap a Slot the Schedule already has are not made, so running
it again adds nothing. It writes through the store like any client (the workflow rules
apply), so it works while the server runs.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fhir_server.config import parse_duration

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_NAMESPACE = uuid.UUID("0b7c8a52-67a1-4a57-8f43-4f2b8f3f9e31")
VIRTUAL = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "VR"}
_BATCH = 500


class UsageError(ValueError):
    """A bad option value (exit status 2, one line)."""


def parse_days(text: str) -> frozenset[int]:
    """``mon-fri``, ``mon,wed,fri`` or a mix (``mon-wed,sat``) as weekday numbers."""
    found: set[int] = set()
    for part in text.lower().split(","):
        ends = [p.strip()[:3] for p in part.split("-")]
        if not all(e in _DAYS for e in ends) or len(ends) > 2:
            raise UsageError(f"--days: expected e.g. mon-fri or mon,wed,fri (got {text!r})")
        first, last = _DAYS.index(ends[0]), _DAYS.index(ends[-1])
        day = first
        while True:
            found.add(day)
            if day == last:
                break
            day = (day + 1) % 7
    return frozenset(found)


def parse_hours(text: str) -> list[tuple[time, time]]:
    """``09:00-12:00,13:00-17:00`` as (start, end) local times."""
    ranges: list[tuple[time, time]] = []
    for part in text.split(","):
        try:
            start, end = (time.fromisoformat(p.strip()) for p in part.split("-"))
        except ValueError:
            raise UsageError(
                f"--hours: expected e.g. 09:00-12:00,13:00-17:00 (got {text!r})"
            ) from None
        if end <= start:
            raise UsageError(f"--hours: {part!r} ends before it starts")
        ranges.append((start, end))
    return ranges


def plan(
    first: date,
    last: date,
    days: frozenset[int],
    hours: Sequence[tuple[time, time]],
    length: timedelta,
    zone: ZoneInfo,
) -> list[tuple[datetime, datetime]]:
    """The (start, end) in UTC of every slot."""
    slots: list[tuple[datetime, datetime]] = []
    day = first
    while day <= last:
        if day.weekday() in days:
            for start, end in hours:
                moment = datetime.combine(day, start, zone)
                stop = datetime.combine(day, end, zone)
                while moment + length <= stop:
                    slots.append((moment.astimezone(UTC), (moment + length).astimezone(UTC)))
                    moment += length
        day += timedelta(days=1)
    return slots


def _instant(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Request:
    actor: str
    service_type: tuple[str, str] | None
    virtual: bool
    slots: list[tuple[datetime, datetime]]


async def create(store: Any, request: Request) -> tuple[str, int, int]:
    """Write the Schedule (if new) and the Slots that are not there yet; returns
    (``Schedule/id``, slots created, slots already there)."""
    from fhir_server.storage.base import AlreadyExists

    for _ in range(3):  # a concurrent run made some of them: plan again
        try:
            return await _create(store, request)
        except AlreadyExists:
            continue
    raise UsageError("the Schedule is being written by another run; try again")


async def _create(store: Any, request: Request) -> tuple[str, int, int]:
    from fhir_server.interactions.write import check_valid
    from fhir_server.storage.base import WriteRequest
    from fhir_server.workflows import Caller, WorkflowStore

    ruled = WorkflowStore(store, Caller.system())
    schedule_id = await _schedule(store, request)
    writes: list[WriteRequest] = []
    if schedule_id is None:
        key = f"{request.actor}|{'|'.join(request.service_type or ())}"
        schedule_id = str(uuid.uuid5(_NAMESPACE, key))
        schedule: dict[str, Any] = {
            "resourceType": "Schedule",
            "active": True,
            "actor": [{"reference": request.actor}],
        }
        if request.service_type:
            system, code = request.service_type
            schedule["serviceType"] = [{"coding": [{"system": system, "code": code}]}]
        check_valid(schedule)
        writes.append(_create_request(schedule, schedule_id))
    taken = await _existing(store, schedule_id, request.slots)
    service = []
    if request.service_type:
        service.append(
            {"coding": [{"system": request.service_type[0], "code": request.service_type[1]}]}
        )
    if request.virtual:
        service.append({"coding": [VIRTUAL], "text": "Virtual visit"})
    made = 0
    for start, end in request.slots:
        if any(s < end and start < e for s, e in taken):
            continue
        slot: dict[str, Any] = {
            "resourceType": "Slot",
            "schedule": {"reference": f"Schedule/{schedule_id}"},
            "status": "free",
            "start": _instant(start),
            "end": _instant(end),
        }
        if service:
            slot["serviceType"] = service
        if made == 0:
            check_valid(slot)
        slot_id = str(uuid.uuid5(_NAMESPACE, f"{schedule_id}|{slot['start']}|{slot['end']}"))
        writes.append(_create_request(slot, slot_id))
        made += 1
    for offset in range(0, len(writes), _BATCH):
        await ruled.write_batch(writes[offset : offset + _BATCH])
    return f"Schedule/{schedule_id}", made, len(request.slots) - made


def _create_request(resource: dict[str, Any], id_: str) -> Any:
    from fhir_server.interactions.write import content_builder, index_entries
    from fhir_server.storage.base import WriteRequest

    return WriteRequest(
        resource["resourceType"],
        id_,
        "create",
        content_builder(resource, id_),
        must_not_exist=True,
        index=index_entries(resource, id_),
    )


async def _search(store: Any, type_: str, items: list[tuple[str, str]]) -> list[dict[str, Any]]:
    from fhir_server.workflows.base import Transaction
    from resources import fhir_json

    query = Transaction.query(type_, items)
    found: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = await store.search(query, cursor, 1000, False)
        found += [fhir_json.loads(s.content) for s in page.entries if s.content is not None]
        if page.next_cursor is None:
            return found
        cursor = page.next_cursor


async def _schedule(store: Any, request: Request) -> str | None:
    """The id of the actor's Schedule for the service type (None: none yet)."""
    wanted = (
        [{"coding": [{"system": request.service_type[0], "code": request.service_type[1]}]}]
        if request.service_type
        else None
    )
    for schedule in await _search(store, "Schedule", [("actor", request.actor)]):
        types = schedule.get("serviceType") or None
        if wanted is None and types is None:
            return schedule["id"]
        if wanted is not None and types is not None and _codes(types) == _codes(wanted):
            return schedule["id"]
    return None


def _codes(concepts: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {
        (c.get("system", ""), c.get("code", ""))
        for concept in concepts
        for c in concept.get("coding") or []
    }


async def _existing(
    store: Any, schedule_id: str, slots: list[tuple[datetime, datetime]]
) -> list[tuple[datetime, datetime]]:
    if not slots:
        return []
    first = min(s for s, _ in slots) - timedelta(days=1)
    last = max(e for _, e in slots)
    items = [
        ("schedule", f"Schedule/{schedule_id}"),
        ("start", f"ge{_instant(first)}"),
        ("start", f"lt{_instant(last)}"),
    ]
    found = []
    for slot in await _search(store, "Slot", items):
        start = datetime.fromisoformat(slot["start"].replace("Z", "+00:00"))
        end = datetime.fromisoformat(slot["end"].replace("Z", "+00:00"))
        found.append((start, end))
    return found


# -- the command line ------------------------------------------------------------------------


def add_schedule_commands(commands: Any, storage_help: str) -> None:
    schedule = commands.add_parser(
        "schedule", help="staff tools for appointment schedules (schedule create)"
    )
    actions = schedule.add_subparsers(dest="schedule_command", required=True, metavar="ACTION")
    cmd = actions.add_parser(
        "create",
        help="make an actor's Schedule and its free Slots (again: adds nothing)",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    cmd.add_argument("--actor", required=True, help="Practitioner/x, Location/y, ...")
    cmd.add_argument(
        "--from", dest="first", required=True, type=date.fromisoformat, help="first day"
    )
    cmd.add_argument(
        "--to", dest="last", required=True, type=date.fromisoformat, help="last day (inclusive)"
    )
    cmd.add_argument("--days", default="mon-fri", help="mon-fri or mon,wed,fri (default: mon-fri)")
    cmd.add_argument("--hours", required=True, help="local hours, e.g. 09:00-12:00,13:00-17:00")
    cmd.add_argument("--slot", required=True, help="slot length: 20m, 1h, 90m")
    cmd.add_argument(
        "--service-type", help="SYSTEM|CODE of the Schedule and its Slots (default: none)"
    )
    cmd.add_argument("--virtual", action="store_true", help="telehealth slots (v3-ActCode VR)")
    cmd.add_argument("--tz", help="time zone of --hours (default: FHIR_SERVER_TIMEZONE or UTC)")
    cmd.add_argument("--storage", help=storage_help)


def request_of(args: argparse.Namespace, default_tz: str) -> tuple[Request, ZoneInfo]:
    from resources.definitions import RESOURCE_TYPES

    actor = args.actor.strip()
    parts = actor.split("/")
    if len(parts) != 2 or parts[0] not in RESOURCE_TYPES or not parts[1]:
        raise UsageError(f"--actor: expected e.g. Practitioner/123 (got {actor!r})")
    service_type = None
    if args.service_type:
        system, _, code = args.service_type.rpartition("|")
        if not system or not code:
            raise UsageError("--service-type: expected SYSTEM|CODE")
        service_type = (system, code)
    try:
        zone = ZoneInfo(args.tz or default_tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(f"--tz: unknown time zone {args.tz!r}") from None
    if args.last < args.first:
        raise UsageError("--to is before --from")
    try:
        seconds = parse_duration(args.slot)
    except ValueError as problem:
        raise UsageError(f"--slot: {problem}") from None
    slots = plan(
        args.first,
        args.last,
        parse_days(args.days),
        parse_hours(args.hours),
        timedelta(seconds=seconds),
        zone,
    )
    return Request(actor, service_type, args.virtual, slots), zone


def run_schedule(args: argparse.Namespace) -> int:
    from fhir_server import startup
    from fhir_server.storage.open import open_store

    try:
        settings = startup.load_settings({"storage": args.storage} if args.storage else {})
        request, zone = request_of(args, settings.timezone)
        startup.check_store(settings)
    except UsageError as problem:
        print(f"fhir-server schedule create: {problem}", file=sys.stderr)
        return 2
    except startup.StartupError as problem:
        print(f"fhir-server schedule create: {problem}", file=sys.stderr)
        return problem.exit_status

    async def work() -> tuple[str, int, int] | None:
        store = open_store(settings.storage, sqlite_synchronous=settings.sqlite_synchronous)
        await store.open()
        try:
            type_, id_ = request.actor.split("/")
            found = await store.read(type_, id_)
            if found is None or found.deleted:
                return None
            return await create(store, request)
        finally:
            await store.close()

    try:
        result = asyncio.run(work())
    except (UsageError, ValueError) as problem:
        print(f"fhir-server schedule create: {problem}", file=sys.stderr)
        return 1
    if result is None:
        print(f"fhir-server schedule create: {request.actor} does not exist", file=sys.stderr)
        return 1
    schedule, made, there = result
    print(
        f"{schedule} of {request.actor}: {made} slots created, {there} already there"
        f" (hours in {zone.key})"
    )
    return 0
