"""``fhir-server import``: Bundles, NDJSON files and folders, per-line problems,
idempotence and ``urn:uuid:`` placeholders (fhir_server/bulk_import)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from fhir_server.bulk_import import import_paths
from fhir_server.cli import main
from fhir_server.storage.base import HistoryQuery, Store
from fhir_server.storage.open import open_store
from tests.conftest import STORES, storage_url

PATIENT_UUID = "6d9e8f3a-1b2c-4d5e-8f90-123456789abc"


@pytest.fixture(params=STORES)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    opened = open_store(storage_url(request.param, tmp_path))
    await opened.open()
    yield opened
    await opened.close()


def patient(id_: str, family: str = "Chalmers") -> dict[str, Any]:
    return {"resourceType": "Patient", "id": id_, "name": [{"family": family}]}


def observation(id_: str, patient_id: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": id_,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "valueQuantity": {"value": 72.50, "unit": "/min"},
    }


def write_ndjson(path: Path, lines: list[Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines),
        encoding="utf-8",
    )
    return path


def export_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "export"
    write_ndjson(folder / "Patient.ndjson", [patient("p1"), patient("p2", "Levin")])
    write_ndjson(folder / "Observation.000.ndjson", [observation("o1", "p1")])
    write_ndjson(folder / "Observation.001.ndjson", [observation("o2", "p2")])
    return folder


async def test_ndjson_folder_in_bulk_export_layout(store: Store, tmp_path: Path) -> None:
    report = await import_paths(store, [export_folder(tmp_path)])
    assert report.counts["Patient"]["created"] == 2
    assert report.counts["Observation"]["created"] == 2
    assert report.problem_count == 0
    stored = await store.read("Observation", "o1")
    assert stored is not None and b"72.5" in stored.content


async def test_bad_line_is_reported_with_file_and_line(store: Store, tmp_path: Path) -> None:
    path = write_ndjson(
        tmp_path / "Patient.ndjson",
        [
            patient("ok1"),
            {"resourceType": "Patient", "id": "bad", "gender": "robot"},
            "{not json",
            "",
            patient("ok2"),
        ],
    )
    report = await import_paths(store, [path])
    assert report.counts["Patient"]["created"] == 2
    wheres = [where for where, _ in report.problems]
    assert wheres == [f"{path}:2", f"{path}:3"]
    assert "gender" in report.problems[0][1]
    assert await store.read("Patient", "ok2") is not None
    assert await store.read("Patient", "bad") is None


async def test_second_import_makes_no_new_versions(store: Store, tmp_path: Path) -> None:
    folder = export_folder(tmp_path)
    first = await import_paths(store, [folder])
    second = await import_paths(store, [folder])
    assert second.processed == first.processed == 4
    assert second.total("unchanged") == 4 and second.written == 0
    history = await store.history(HistoryQuery(type="Patient", id="p1"))
    assert history.total == 1


async def test_changed_resource_gets_a_new_version(store: Store, tmp_path: Path) -> None:
    path = write_ndjson(tmp_path / "Patient.ndjson", [patient("p1"), patient("p2")])
    await import_paths(store, [path])
    write_ndjson(path, [patient("p1"), patient("p2", "Changed")])
    report = await import_paths(store, [path])
    assert report.counts["Patient"]["updated"] == 1
    assert report.counts["Patient"]["unchanged"] == 1
    stored = await store.read("Patient", "p2")
    assert stored is not None and stored.version == 2 and b"Changed" in stored.content


def transaction_bundle() -> dict[str, Any]:
    placeholder = f"urn:uuid:{PATIENT_UUID}"
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": placeholder,
                "resource": {"resourceType": "Patient", "name": [{"family": "Placeholder"}]},
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "fullUrl": "urn:uuid:0f5c2a8e-0000-4000-8000-000000000001",
                "resource": {
                    **observation("x", "x"),
                    "id": None,
                    "subject": {"reference": placeholder},
                    "extension": [
                        {
                            "url": "http://example.org/about",
                            "valueReference": {"reference": placeholder},
                        }
                    ],
                },
                "request": {"method": "POST", "url": "Observation"},
            },
            {"request": {"method": "DELETE", "url": "Patient/gone"}},
        ],
    }


async def test_bundle_placeholders_become_ids(store: Store, tmp_path: Path) -> None:
    bundle = transaction_bundle()
    del bundle["entry"][1]["resource"]["id"]
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle), encoding="utf-8")
    report = await import_paths(store, [path])
    assert report.problem_count == 0 and report.skipped == 1
    assert await store.read("Patient", PATIENT_UUID) is not None
    obs = await store.read("Observation", "0f5c2a8e-0000-4000-8000-000000000001")
    assert obs is not None and obs.content is not None
    body = json.loads(obs.content)
    assert body["subject"] == {"reference": f"Patient/{PATIENT_UUID}"}
    assert body["extension"][0]["valueReference"] == {"reference": f"Patient/{PATIENT_UUID}"}
    again = await import_paths(store, [path])
    assert again.total("unchanged") == 2 and again.written == 0


async def test_invalid_bundle_entry_is_reported_by_index(store: Store, tmp_path: Path) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"resource": patient("b1")},
            {"resource": {"resourceType": "Patient", "id": "b2", "birthDate": "yesterday"}},
        ],
    }
    path = tmp_path / "collection.json"
    path.write_text(json.dumps(bundle), encoding="utf-8")
    report = await import_paths(store, [path])
    assert report.counts["Patient"]["created"] == 1
    assert report.problems[0][0] == f"{path}#entry[1]"


NPI = "http://hl7.org/fhir/sid/us-npi"


def _practitioners_bundle() -> dict[str, Any]:
    """Like Synthea's practitionerInformation*.json: conditional creates by NPI."""
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"urn:uuid:0000000{n}-0000-4000-8000-000000000000",
                "resource": {
                    "resourceType": "Practitioner",
                    "identifier": [{"system": NPI, "value": f"99990{n}"}],
                    "name": [{"family": f"Doc{n}"}],
                },
                "request": {
                    "method": "POST",
                    "url": "Practitioner",
                    "ifNoneExist": f"identifier={NPI}|99990{n}",
                },
            }
            for n in (1, 2)
        ],
    }


def _patient_bundle(npi: str) -> dict[str, Any]:
    """Like a Synthea patient bundle: placeholders and a conditional reference."""
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"urn:uuid:{PATIENT_UUID}",
                "resource": {"resourceType": "Patient", "name": [{"family": "Syn"}]},
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "fullUrl": "urn:uuid:0f5c2a8e-0000-4000-8000-0000000000e1",
                "resource": {
                    "resourceType": "Encounter",
                    "status": "finished",
                    "class": {"code": "AMB"},
                    "subject": {"reference": f"urn:uuid:{PATIENT_UUID}"},
                    "participant": [
                        {"individual": {"reference": f"Practitioner?identifier={NPI}|{npi}"}}
                    ],
                },
                "request": {"method": "POST", "url": "Encounter"},
            },
        ],
    }


@pytest.mark.parametrize(
    "order",
    ["practitioners imported before", "one import, same batch", "one import, patients first"],
)
async def test_bundle_conditional_references_are_resolved(
    store: Store, tmp_path: Path, order: str
) -> None:
    practitioners = tmp_path / "practitionerInformation1.json"
    practitioners.write_text(json.dumps(_practitioners_bundle()), encoding="utf-8")
    patients = tmp_path / "Syn_Patient.json"
    patients.write_text(json.dumps(_patient_bundle("999902")), encoding="utf-8")
    if order == "practitioners imported before":
        assert (await import_paths(store, [practitioners])).problem_count == 0
        report = await import_paths(store, [patients])
    elif order == "one import, same batch":  # the practitioners are not written yet
        report = await import_paths(store, [practitioners, patients])
    else:  # as a Synthea folder sorts: Aaron697_….json before practitionerInformation….json
        report = await import_paths(store, [patients, practitioners])
    assert report.problem_count == 0, report.problems
    encounter = await store.read("Encounter", "0f5c2a8e-0000-4000-8000-0000000000e1")
    assert encounter is not None and encounter.content is not None
    individual = json.loads(encounter.content)["participant"][0]["individual"]["reference"]
    doc2 = await store.read("Practitioner", "00000002-0000-4000-8000-000000000000")
    assert doc2 is not None
    assert individual == "Practitioner/00000002-0000-4000-8000-000000000000"


async def test_unresolvable_conditional_reference_is_reported(store: Store, tmp_path: Path) -> None:
    practitioners = tmp_path / "practitionerInformation1.json"
    practitioners.write_text(json.dumps(_practitioners_bundle()), encoding="utf-8")
    patients = tmp_path / "Syn_Patient.json"
    patients.write_text(json.dumps(_patient_bundle("123")), encoding="utf-8")
    report = await import_paths(store, [practitioners, patients])
    assert [where for where, _ in report.problems] == [f"{patients}#entry[1]"]
    assert "matches no resource" in report.problems[0][1]
    assert await store.read("Encounter", "0f5c2a8e-0000-4000-8000-0000000000e1") is None
    assert await store.read("Patient", PATIENT_UUID) is not None


async def test_single_resource_file(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "patient.json"
    path.write_text(json.dumps(patient("single")), encoding="utf-8")
    report = await import_paths(store, [path])
    assert report.counts["Patient"]["created"] == 1


def test_cli_import_prints_summary_and_fails_on_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = storage_url("sqlite", tmp_path)
    folder = export_folder(tmp_path)
    assert main(["import", str(folder), "--storage", url, "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "Observation" in out and "4 resources" in out
    write_ndjson(folder / "Patient.ndjson", [{"resourceType": "Patient", "id": "p1", "x": 1}])
    assert main(["import", str(folder), "--storage", url, "--quiet"]) == 1
    assert "Patient.ndjson:1" in capsys.readouterr().out


def test_cli_import_with_workers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = storage_url("sqlite", tmp_path)
    folder = export_folder(tmp_path)
    write_ndjson(folder / "Bad.ndjson", [{"resourceType": "Patient", "id": "bad", "x": 1}])
    assert main(["import", str(folder), "--storage", url, "--quiet", "--workers", "2"]) == 1
    out = capsys.readouterr().out
    assert "Bad.ndjson:1" in out and "5 resources" in out
