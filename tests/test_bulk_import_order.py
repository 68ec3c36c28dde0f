"""``fhir-server import FOLDER`` of a bulk export as it comes (fhir_server/bulk_import):
conditional references (https://hl7.org/fhir/R4/http.html#trules) to resources in files
that sort later are resolved once those are written, whatever the file order; only what
is unresolvable after the whole import is reported; a bulk-data client's ``log.ndjson``
and ``manifest.json`` and other files that are not FHIR resources are skipped with a
notice (https://hl7.org/fhir/uv/bulkdata/export.html).

The folder made here has the shape of SMART's sample bulk data (Synthea,
``sample-bulk-fhir-datasets``): one file per type in name order, Encounters and
MedicationRequests pointing at ``Practitioner?identifier=…us-npi|…``,
``Location?identifier=…`` and ``Organization?identifier=…`` in later files, and a
Location that itself waits for its Organization (a chain: three passes).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from fhir_server.bulk_import import import_paths
from fhir_server.bulk_import.sources import Item
from fhir_server.cli import main
from fhir_server.storage.base import HistoryQuery, Store
from fhir_server.storage.open import open_store
from tests.conftest import STORES, storage_url

NPI = "http://hl7.org/fhir/sid/us-npi"
SYNTHEA = "https://github.com/synthetichealth/synthea"
LOG_LINES = [
    {"exportId": "e1", "eventId": "kickoff", "eventDetail": {"exportUrl": "https://x/$export"}},
    {"exportId": "e1", "eventId": "export_complete", "eventDetail": {"files": 6}},
]
MANIFEST = {"transactionTime": "2024-08-06T18:12:57Z", "request": "https://x/$export"}


@pytest.fixture(params=STORES)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    opened = open_store(storage_url(request.param, tmp_path))
    await opened.open()
    yield opened
    await opened.close()


def write_ndjson(path: Path, lines: list[Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    return path


def practitioner(n: int) -> dict[str, Any]:
    return {
        "resourceType": "Practitioner",
        "id": f"pr{n}",
        "identifier": [{"system": NPI, "value": f"99999{n:05}"}],
        "name": [{"family": f"Doc{n}"}],
    }


def organization(n: int) -> dict[str, Any]:
    return {
        "resourceType": "Organization",
        "id": f"org{n}",
        "identifier": [{"system": SYNTHEA, "value": f"org-{n}"}],
        "name": f"Clinic {n}",
    }


def location(n: int) -> dict[str, Any]:
    return {
        "resourceType": "Location",
        "id": f"loc{n}",
        "identifier": [{"system": SYNTHEA, "value": f"loc-{n}"}],
        "name": f"Site {n}",
        "managingOrganization": {"reference": f"Organization?identifier={SYNTHEA}|org-{n}"},
    }


def encounter(n: int, npi: str | None = None) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "id": f"enc{n}",
        "status": "finished",
        "class": {"code": "AMB"},
        "subject": {"reference": "Patient/pat1"},
        "participant": [
            {"individual": {"reference": f"Practitioner?identifier={NPI}|{npi or f'99999{n:05}'}"}}
        ],
        "location": [{"location": {"reference": f"Location?identifier={SYNTHEA}|loc-{n % 2}"}}],
        "serviceProvider": {"reference": f"Organization?identifier={SYNTHEA}|org-{n % 2}"},
    }


def medication_request(n: int) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": f"mr{n}",
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": {"text": "aspirin"},
        "subject": {"reference": "Patient/pat1"},
        "requester": {"reference": f"Practitioner?identifier={NPI}|99999{n:05}"},
    }


def export_folder(tmp_path: Path, encounters: int = 6) -> Path:
    """A bulk export whose conditional references all point at files that sort later."""
    folder = tmp_path / "export"
    write_ndjson(folder / "Encounter.000.ndjson", [encounter(n) for n in range(encounters)])
    write_ndjson(folder / "Location.000.ndjson", [location(n) for n in range(2)])
    write_ndjson(folder / "MedicationRequest.000.ndjson", [medication_request(1)])
    write_ndjson(folder / "Organization.000.ndjson", [organization(n) for n in range(2)])
    write_ndjson(folder / "Patient.000.ndjson", [{"resourceType": "Patient", "id": "pat1"}])
    write_ndjson(folder / "Practitioner.000.ndjson", [practitioner(n) for n in range(encounters)])
    write_ndjson(folder / "log.ndjson", LOG_LINES)
    (folder / "manifest.json").write_text(json.dumps(MANIFEST), encoding="utf-8")
    (folder / "README.md").write_text("# a sample export\n", encoding="utf-8")
    return folder


async def stored_json(store: Store, type_: str, id_: str) -> dict[str, Any]:
    stored = await store.read(type_, id_)
    assert stored is not None and stored.content is not None, f"{type_}/{id_} not stored"
    return json.loads(stored.content)


async def test_references_to_later_files_are_resolved(store: Store, tmp_path: Path) -> None:
    report = await import_paths(store, [export_folder(tmp_path)])
    assert report.problem_count == 0, report.problems
    assert report.total("created") == 6 + 2 + 1 + 2 + 1 + 6
    enc = await stored_json(store, "Encounter", "enc3")
    assert enc["participant"][0]["individual"]["reference"] == "Practitioner/pr3"
    assert enc["location"][0]["location"]["reference"] == "Location/loc1"
    assert enc["serviceProvider"]["reference"] == "Organization/org1"
    mr = await stored_json(store, "MedicationRequest", "mr1")
    assert mr["requester"]["reference"] == "Practitioner/pr1"
    loc = await stored_json(store, "Location", "loc0")
    assert loc["managingOrganization"]["reference"] == "Organization/org0"


@pytest.mark.parametrize("workers", [0, 1])
async def test_small_batches_give_the_same_result(
    store: Store, tmp_path: Path, workers: int
) -> None:
    """Batches of two: targets are found in the store, in the batch being written, or in
    a later pass; references already resolved are rewritten by the workers."""
    folder = export_folder(tmp_path, encounters=9)
    report = await import_paths(store, [folder], batch_size=2, workers=workers)
    assert report.problem_count == 0, report.problems
    assert report.written == 9 + 2 + 1 + 2 + 1 + 9
    for n in range(9):
        enc = await stored_json(store, "Encounter", f"enc{n}")
        assert enc["participant"][0]["individual"]["reference"] == f"Practitioner/pr{n}"
        assert enc["location"][0]["location"]["reference"] == f"Location/loc{n % 2}"
    again = await import_paths(store, [folder], workers=workers)
    assert again.written == 0 and again.waited == 0


async def test_a_chain_of_waiting_resources_takes_one_pass_per_link(
    store: Store, tmp_path: Path
) -> None:
    """Encounters wait for a Location that waits for its Organization."""
    report = await import_paths(store, [export_folder(tmp_path)], workers=0)
    assert report.waited == 6 + 2 + 1  # encounters, locations, the medication request
    assert report.passes == 3
    assert report.processed == 18


async def test_second_import_of_the_folder_changes_nothing(store: Store, tmp_path: Path) -> None:
    folder = export_folder(tmp_path)
    await import_paths(store, [folder])
    again = await import_paths(store, [folder])
    assert again.written == 0 and again.total("unchanged") == 18 and again.problem_count == 0
    assert again.waited == 0  # every target is in the store by now
    history = await store.history(HistoryQuery(type="Encounter", id="enc0"))
    assert history.total == 1


async def test_only_references_unresolvable_after_the_import_are_reported(
    store: Store, tmp_path: Path
) -> None:
    folder = export_folder(tmp_path)
    path = write_ndjson(folder / "Encounter.001.ndjson", [encounter(90, npi="1234567890")])
    report = await import_paths(store, [folder])
    assert [where for where, _ in report.problems] == [f"{path}:1"]
    assert (
        f"'Practitioner?identifier={NPI}|1234567890' matches no resource" in (report.problems[0][1])
    )
    assert report.counts["Encounter"] == {"created": 6, "invalid": 1}
    assert await store.read("Encounter", "enc90") is None


async def test_a_later_copy_of_a_waiting_resource_wins(store: Store, tmp_path: Path) -> None:
    """The same resource twice in one import: the copy that comes last is stored, even
    when the first one waited for a conditional reference."""
    folder = export_folder(tmp_path)
    later = {**encounter(2), "status": "cancelled"}
    del later["participant"]
    later["location"] = [{"location": {"reference": "Location/loc0"}}]
    later["serviceProvider"] = {"reference": "Organization/org0"}
    write_ndjson(folder / "Zz-corrections.ndjson", [later])
    report = await import_paths(store, [folder])
    assert report.problem_count == 0, report.problems
    assert report.counts["Encounter"] == {"created": 6, "unchanged": 1}
    assert (await stored_json(store, "Encounter", "enc2"))["status"] == "cancelled"
    history = await store.history(HistoryQuery(type="Encounter", id="enc2"))
    assert history.total == 1


async def test_files_and_lines_that_are_not_resources_are_skipped(
    store: Store, tmp_path: Path
) -> None:
    folder = export_folder(tmp_path)
    patients = folder / "Patient.000.ndjson"
    write_ndjson(patients, [{"resourceType": "Patient", "id": "pat1"}, {"note": "not FHIR"}])
    report = await import_paths(store, [folder])
    assert report.problem_count == 0, report.problems
    assert report.not_resources == {
        str(folder / "log.ndjson"): 2,
        str(folder / "manifest.json"): 1,
        str(patients): 1,
    }
    assert report.ignored_files == [str(folder / "README.md")]
    notices = "\n".join(report.notices())
    assert f"{folder / 'log.ndjson'}: 2 line(s) without resourceType" in notices
    assert "README.md" in notices


def test_cli_imports_a_bulk_export_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = storage_url("sqlite", tmp_path)
    folder = export_folder(tmp_path)
    assert main(["import", str(folder), "--storage", url, "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "18 resources" in out and "0 problem(s)" in out
    assert "notice:" in out and "log.ndjson" in out


def test_spool_keeps_waiting_resources_on_disk_in_order() -> None:
    from fhir_server.bulk_import.deferred import Spool

    with Spool() as spool:
        for n in range(3):
            data = json.dumps(encounter(n)).encode()
            spool.put(Item(f"f.ndjson:{n + 1}", data), "Encounter", f"enc{n}", "why", ["ref"])
        spool.written("Encounter", "enc1")  # a later copy of enc1 was written
        dropped: list[str] = []
        waiting = list(spool.items(dropped.append))
    assert [w.item.where for w in waiting] == ["f.ndjson:1", "f.ndjson:3"]
    assert json.loads(waiting[1].item.data or b"")["id"] == "enc2"
    assert dropped == ["Encounter"]
    assert spool.references == {"ref"}
