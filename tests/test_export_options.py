"""``$export`` options over HTTP on every store (the app and data of ``test_export``):
a Patient-level export holds only patients' records; ``_until`` (Bulk Data v3);
``includeAssociatedData`` (https://hl7.org/fhir/uv/bulkdata/export.html, v2);
``organizeOutputBy=Patient`` (v3,
https://build.fhir.org/ig/HL7/bulk-data/export.html#bulk-data-output-file-organization)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from fhir_server.app import create_app
from fhir_server.config import Settings
from fhir_server.operations import export_run
from tests import test_export
from tests.conftest import BASE, storage_url
from tests.test_export import ASYNC, Env, _obs, contents, export, ids

env = test_export.env
"""The fixture of ``test_export``: the app on every store, with its data."""

STRICT = {**ASYNC, "Prefer": "respond-async, handling=strict"}


async def put(env: Env, resource: dict[str, Any]) -> None:
    path = f"{resource['resourceType']}/{resource['id']}"
    response = await env.http.put(path, json=resource, headers=env.token("system/*.cruds"))
    assert response.status_code in (200, 201), response.text


async def lines(env: Env, url: str, headers: Any = None) -> list[dict[str, Any]]:
    response = await env.http.get(url, headers=headers or env.token())
    assert response.status_code == 200, response.text
    return [orjson.loads(line) for line in response.content.splitlines()]


async def warnings(env: Env, manifest: dict[str, Any]) -> list[str]:
    return [
        issue["diagnostics"]
        for entry in manifest["error"]
        for outcome in await lines(env, entry["url"])
        for issue in outcome["issue"]
    ]


async def test_patient_level_exports_only_patients_records(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without ``patient``: resources in some Patient compartment, each once, even when
    in two patients' records read in different batches."""
    monkeypatch.setattr(export_run, "PATIENT_BATCH", 1)  # alice and bob apart
    orphan = _obs("orphan", "alice", "laboratory")
    del orphan["subject"]  # in no patient's compartment
    await put(env, orphan)
    await put(env, _obs("both", "alice", "laboratory", performer=[{"reference": "Patient/bob"}]))
    manifest = await export(env, "Patient/$export")
    found = await contents(env, manifest)
    observations = [r["id"] for r in found["Observation"]]
    assert sorted(observations) == ["a-lab", "a-vital", "b-lab", "both"]
    assert ids(found, "Patient") == {"alice", "bob"}
    assert "Practitioner" not in found and ids(found, "Group") == {"g-alice"}
    # with two filters: still once each
    query = "_typeFilter=Observation%3Fcategory%3Dlaboratory,Observation%3Fsubject%3DPatient/bob"
    found = await contents(env, await export(env, f"Patient/$export?{query}"))
    assert sorted(r["id"] for r in found["Observation"]) == ["a-lab", "b-lab", "both"]
    # a deleted orphan is no patient's either
    since = manifest["transactionTime"]
    writer = env.token("system/*.cruds")
    for path in ("Observation/orphan", "Observation/b-lab"):
        assert (await env.http.delete(path, headers=writer)).status_code in (200, 204)
    later = await export(env, f"Patient/$export?_type=Observation&_since={since}")
    [deleted] = later["deleted"]
    bundles = await lines(env, deleted["url"])
    assert [b["entry"][0]["request"]["url"] for b in bundles] == ["Observation/b-lab"]


async def test_until(env: Env) -> None:
    first = await export(env, "$export?_type=Observation")
    until = first["transactionTime"]
    await asyncio.sleep(0.01)
    await put(env, _obs("late", "bob", "survey"))
    await put(env, _obs("a-vital", "alice", "survey"))  # changed again after _until
    manifest = await export(env, f"$export?_type=Observation&_until={until}")
    assert manifest["transactionTime"] == until
    found = await contents(env, manifest)
    assert ids(found, "Observation") == {"a-lab", "b-lab"}
    # the next export goes on from there: nothing missed, nothing twice
    found = await contents(env, await export(env, f"$export?_type=Observation&_since={until}"))
    assert ids(found, "Observation") == {"late", "a-vital"}
    # an _until in the future is the kick-off's time
    manifest = await export(env, "$export?_type=Patient&_until=2999-01-01T00:00:00Z")
    assert manifest["transactionTime"] < "2999"
    for query in (f"_since={until}&_until={until}", "_until=tomorrow"):
        response = await env.http.get(f"$export?{query}", headers={**ASYNC, **env.token()})
        assert response.status_code == 400
        assert response.json()["resourceType"] == "OperationOutcome"


def _provenance(id_: str, target: str, recorded: str) -> dict[str, Any]:
    return {
        "resourceType": "Provenance",
        "id": id_,
        "target": [{"reference": target}],
        "recorded": recorded,
        "agent": [{"who": {"reference": "Practitioner/dr"}}],
    }


async def test_include_associated_data(env: Env) -> None:
    await put(env, _provenance("p-old", "Observation/a-lab", "2024-01-01T00:00:00Z"))
    await put(env, _provenance("p-new", "Observation/a-lab", "2024-06-01T00:00:00+02:00"))
    await put(env, _provenance("p-vital", "Observation/a-vital", "2024-02-01T00:00:00Z"))
    await put(env, _provenance("p-dr", "Practitioner/dr", "2024-02-01T00:00:00Z"))
    base = "$export?_type=Observation&includeAssociatedData="
    found = await contents(env, await export(env, base + "LatestProvenanceResources"))
    assert ids(found, "Provenance") == {"p-new", "p-vital"}
    assert ids(found, "Observation") == {"a-lab", "a-vital", "b-lab"}
    for value in (
        "RelevantProvenanceResources",
        "LatestProvenanceResources,RelevantProvenanceResources",
    ):
        found = await contents(env, await export(env, base + value))
        assert [r["id"] for r in found["Provenance"]] and ids(found, "Provenance") == {
            "p-old",
            "p-new",
            "p-vital",
        }
        assert len(found["Provenance"]) == 3
    # Provenance is then associated data only; without the parameter, a type like any
    found = await contents(
        env, await export(env, "$export?includeAssociatedData=LatestProvenanceResources")
    )
    assert ids(found, "Provenance") == {"p-new", "p-vital", "p-dr"}
    found = await contents(env, await export(env, "$export?_type=Observation"))
    assert "Provenance" not in found
    # values not supported: 400 under strict handling, a warning otherwise
    response = await env.http.get(base + "_custom", headers={**STRICT, **env.token()})
    assert response.status_code == 400
    assert "RelevantProvenanceResources" in response.json()["issue"][0]["diagnostics"]
    manifest = await export(env, base + "_custom")
    assert any("_custom" in text for text in await warnings(env, manifest))
    # more resources than one search of their Provenance takes (100 targets)
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {
                "resource": _obs(f"many-{n}", "bob", "survey"),
                "request": {"method": "PUT", "url": f"Observation/many-{n}"},
            }
            for n in range(150)
        ],
    }
    response = await env.http.post("", json=bundle, headers=env.token("system/*.cruds"))
    assert response.status_code == 200, response.text
    await put(env, _provenance("p-many", "Observation/many-149", "2024-02-01T00:00:00Z"))
    found = await contents(env, await export(env, base + "LatestProvenanceResources"))
    assert ids(found, "Provenance") == {"p-new", "p-vital", "p-many"}
    # a token that may not read Provenance
    narrow = env.token("system/Observation.rs")
    response = await env.http.get(base + "LatestProvenanceResources", headers={**ASYNC, **narrow})
    assert response.status_code == 403


async def blocks_of(env: Env, manifest: dict[str, Any], headers: Any) -> dict[str, list[str]]:
    """``Patient/x`` -> the resources of its block, in order."""
    blocks: dict[str, list[str]] = {}
    current = None
    for entry in manifest["output"]:
        found = await lines(env, entry["url"], headers)
        assert len(found) == entry["count"]
        for resource in found:
            if resource["resourceType"] == "Parameters":
                [parameter] = resource["parameter"]
                assert parameter["name"] == "header"
                current = parameter["valueReference"]["reference"]
                blocks[current] = []
            else:
                assert current is not None
                blocks[current].append(f"{resource['resourceType']}/{resource['id']}")
    return blocks


async def test_organize_output_by_patient(env: Env) -> None:
    staff = env.staff()
    query = "organizeOutputBy=Patient&_type=Patient,Observation"
    manifest = await export(env, f"Patient/$export?{query}", staff)
    assert manifest["outputOrganizedBy"] == "Patient"
    assert manifest["output"] and all("type" not in e for e in manifest["output"])
    blocks = await blocks_of(env, manifest, staff)
    assert blocks == {
        "Patient/alice": ["Patient/alice", "Observation/a-lab", "Observation/a-vital"],
        "Patient/bob": ["Patient/bob", "Observation/b-lab"],
    }
    # a Group's: its patients' blocks, with what they refer to outside any compartment
    query += ",Practitioner,Organization"
    manifest = await export(env, f"Group/g-alice/$export?{query}", staff)
    blocks = await blocks_of(env, manifest, staff)
    assert blocks == {
        "Patient/alice": [
            "Patient/alice",
            "Observation/a-lab",
            "Observation/a-vital",
            "Practitioner/dr",  # referred to by a-lab (the Organization by nothing)
        ]
    }
    # at system level: every patient's
    manifest = await export(env, f"$export?{query}")
    blocks = await blocks_of(env, manifest, env.token())
    assert sorted(blocks) == ["Patient/alice", "Patient/bob"]
    assert "Practitioner/dr" in blocks["Patient/alice"]
    # other types: 400 under strict handling, type-organized files with a warning otherwise
    query = "$export?organizeOutputBy=Observation"
    assert (await env.http.get(query, headers={**STRICT, **env.token()})).status_code == 400
    manifest = await export(env, query)
    assert "outputOrganizedBy" not in manifest and all("type" in e for e in manifest["output"])
    assert any("organizeOutputBy" in text for text in await warnings(env, manifest))
    bad = await env.http.get("$export?organizeOutputBy=Nope", headers={**ASYNC, **env.token()})
    assert bad.status_code == 400


@pytest.mark.parametrize("store", ["sqlite"])
async def test_blocks_are_not_split_unless_larger_than_a_file(store: str, tmp_path: Path) -> None:
    settings = Settings(
        storage=storage_url(store, tmp_path),
        auth="off",
        export_dir=str(tmp_path / "exports"),
        export_file_max_bytes=1500,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE + "/") as http:
            sizes = {"p0": 2, "p1": 2, "p2": 30}  # p2's block is larger than a file
            for patient, count in sizes.items():
                assert (
                    await http.put(
                        f"Patient/{patient}", json={"resourceType": "Patient", "id": patient}
                    )
                ).status_code == 201
                for n in range(count):
                    body = _obs(f"{patient}-{n}", patient, "laboratory")
                    assert (
                        await http.put(f"Observation/{patient}-{n}", json=body)
                    ).status_code == 201
            kick = await http.get("Patient/$export?organizeOutputBy=Patient", headers=ASYNC)
            status_url = kick.headers["Content-Location"]
            for _ in range(300):
                status = await http.get(status_url)
                if status.status_code == 200:
                    break
                await asyncio.sleep(0.05)
            output = status.json()["output"]
            files = {e["url"]: (await http.get(e["url"])).content.splitlines() for e in output}
    headers = {
        url: [orjson.loads(line) for line in body if b'"Parameters"' in line]
        for url, body in files.items()
    }
    owners = {
        url: [h["parameter"][0]["valueReference"]["reference"] for h in found]
        for url, found in headers.items()
    }
    for entry in output:
        body = files[entry["url"]]
        assert sum(len(line) + 1 for line in body) <= 1500 or len(owners[entry["url"]]) == 1
        assert orjson.loads(body[0])["resourceType"] == "Parameters"  # each file starts a block
        if "continuesInFile" in entry:  # p2's, its header repeated in the next file
            assert owners[entry["url"]][-1] == "Patient/p2"
            assert owners[entry["continuesInFile"]][0] == "Patient/p2"
    continued = [e for e in output if "continuesInFile" in e]
    assert continued
    # the small blocks are whole in one file each
    for patient in ("Patient/p0", "Patient/p1"):
        assert sum(patient in found for found in owners.values()) == 1
    observations = [
        orjson.loads(line)["id"]
        for body in files.values()
        for line in body
        if b'"Observation"' in line
    ]
    assert sorted(observations) == sorted(f"{p}-{n}" for p, c in sizes.items() for n in range(c))
