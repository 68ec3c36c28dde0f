"""``$export`` (Bulk Data Access 2.0, https://hl7.org/fhir/uv/bulkdata/export.html) over
HTTP on every store, with SMART on: kick-off at every level, polling, the manifest, the
files with the same token, ``DELETE``; the parameters; and the security rules: another
patient's or another client's token gets nothing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from fhir_server.app import create_app
from fhir_server.config import Settings
from fhir_server.operations.export_jobs import Jobs
from tests.conftest import BASE, STORES, storage_url

ASYNC = {"Prefer": "respond-async", "Accept": "application/fhir+json"}
BACKEND = "system/*.rs"


def _obs(id_: str, patient: str, category: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": id_,
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": category,
                    }
                ]
            }
        ],
        "code": {"text": id_},
        "subject": {"reference": f"Patient/{patient}"},
        **extra,
    }


SEED = [
    {"resourceType": "Patient", "id": "alice"},
    {"resourceType": "Patient", "id": "bob"},
    {"resourceType": "Practitioner", "id": "dr"},
    {"resourceType": "Organization", "id": "org", "name": "Clinic"},
    _obs("a-lab", "alice", "laboratory", performer=[{"reference": "Practitioner/dr"}]),
    _obs("a-vital", "alice", "vital-signs"),
    _obs("b-lab", "bob", "laboratory"),
    {
        "resourceType": "Group",
        "id": "g-alice",
        "type": "person",
        "actual": True,
        "member": [{"entity": {"reference": "Patient/alice"}}],
    },
]


class Env:
    def __init__(self, app: Any, http: httpx.AsyncClient, folder: Path) -> None:
        self.app, self.http, self.folder = app, http, folder

    def token(self, scope: str = BACKEND, client_id: str = "ehr", **claims: Any) -> dict[str, str]:
        token, _ = self.app.state.auth.token_service().issue_access_token(
            issuer=BASE, audience=BASE, scope=scope, client_id=client_id, **claims
        )
        return {"Authorization": f"Bearer {token}"}

    def patient(self, who: str = "alice") -> dict[str, str]:
        return self.token("patient/*.rs", client_id="app", patient=who, subject=f"u-{who}")

    def staff(self) -> dict[str, str]:
        return self.token("user/*.rs", subject="u-dr", fhir_user="Practitioner/dr")


@pytest.fixture(params=STORES)
async def env(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Env]:
    settings = Settings(
        storage=storage_url(request.param, tmp_path),
        auth="smart",
        export_dir=str(tmp_path / "exports"),
        export_max_jobs=2,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE + "/") as http:
            e = Env(app, http, tmp_path / "exports")
            writer = e.token("system/*.cruds")
            for resource in SEED:
                path = f"{resource['resourceType']}/{resource['id']}"
                response = await http.put(path, json=resource, headers=writer)
                assert response.status_code == 201, response.text
            yield e


async def kick_off(env: Env, path: str = "$export", headers: Any = None, **kw: Any) -> str:
    response = await env.http.request(
        kw.pop("method", "GET"), path, headers={**ASYNC, **(headers or env.token())}, **kw
    )
    assert response.status_code == 202, response.text
    return response.headers["Content-Location"]


async def finished(env: Env, status_url: str, headers: Any = None) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        response = await env.http.get(status_url, headers=headers or env.token())
        if response.status_code == 200:
            return response.json()
        assert response.status_code == 202, response.text
        assert "X-Progress" in response.headers and int(response.headers["Retry-After"]) >= 1
        await asyncio.sleep(0.05)
    raise AssertionError("the export did not finish")


async def contents(env: Env, manifest: dict[str, Any], headers: Any = None) -> dict[str, list]:
    found: dict[str, list] = {}
    for entry in manifest["output"]:
        response = await env.http.get(entry["url"], headers=headers or env.token())
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/fhir+ndjson")
        lines = [orjson.loads(line) for line in response.content.splitlines()]
        assert len(lines) == entry["count"]
        found.setdefault(entry["type"], []).extend(lines)
    return found


def ids(found: dict[str, list], type_: str) -> set[str]:
    return {r["id"] for r in found.get(type_, [])}


async def export(env: Env, path: str = "$export", headers: Any = None, **kw: Any) -> dict:
    status_url = await kick_off(env, path, headers, **kw)
    return await finished(env, status_url, headers)


async def test_system_export_whole_flow(env: Env) -> None:
    status_url = await kick_off(env)
    assert status_url.startswith(BASE + "/$export-status/")
    manifest = await finished(env, status_url)
    assert manifest["requiresAccessToken"] is True
    assert manifest["request"] == BASE + "/$export"
    assert manifest["transactionTime"].endswith("Z") and manifest["error"] == []
    found = await contents(env, manifest)
    assert ids(found, "Patient") == {"alice", "bob"}
    assert ids(found, "Observation") == {"a-lab", "a-vital", "b-lab"}
    assert ids(found, "Group") == {"g-alice"} and ids(found, "Practitioner") == {"dr"}
    # the files need the token; DELETE removes the job and its files
    url = manifest["output"][0]["url"]
    assert (await env.http.get(url)).status_code == 401
    assert (await env.http.delete(status_url, headers=env.token())).status_code == 202
    assert (await env.http.get(status_url, headers=env.token())).status_code == 404
    assert (await env.http.get(url, headers=env.token())).status_code == 404
    assert [p.name for p in env.folder.iterdir()] == [".lock"]


async def test_post_kick_off_with_parameters(env: Env) -> None:
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "_type", "valueString": "Observation,Patient"},
            {"name": "_outputFormat", "valueString": "application/fhir+ndjson"},
            {"name": "patient", "valueReference": {"reference": "Patient/bob"}},
        ],
    }
    manifest = await export(env, "Patient/$export", env.staff(), method="POST", json=body)
    found = await contents(env, manifest, env.staff())
    assert ids(found, "Patient") == {"bob"} and ids(found, "Observation") == {"b-lab"}


async def test_type_filter_and_elements(env: Env) -> None:
    manifest = await export(
        env,
        "$export?_type=Observation&_typeFilter=Observation%3Fcategory%3Dlaboratory"
        "&_elements=Observation.status",
    )
    found = await contents(env, manifest)
    assert ids(found, "Observation") == {"a-lab", "b-lab"}
    lab = found["Observation"][0]
    assert "status" in lab and "subject" not in lab
    assert lab["meta"]["tag"][0]["code"] == "SUBSETTED"


async def test_since_is_exact_and_lists_deleted(env: Env) -> None:
    first = await export(env, "$export?_type=Observation")
    since = first["transactionTime"]
    writer = env.token("system/*.cruds")
    await env.http.put(
        "Observation/a-vital", json=_obs("a-vital", "alice", "survey"), headers=writer
    )
    await env.http.delete("Observation/b-lab", headers=writer)
    manifest = await export(env, f"$export?_type=Observation&_since={since}")
    found = await contents(env, manifest)
    assert ids(found, "Observation") == {"a-vital"}
    [deleted] = manifest["deleted"]
    response = await env.http.get(deleted["url"], headers=env.token())
    bundle = orjson.loads(response.content.splitlines()[0])
    assert bundle["type"] == "transaction"
    assert bundle["entry"][0]["request"] == {"method": "DELETE", "url": "Observation/b-lab"}
    # the next incremental export picks up from transactionTime: nothing changed since
    later = await export(env, f"$export?_type=Observation&_since={manifest['transactionTime']}")
    assert later["output"] == [] and "deleted" not in later


async def test_writes_during_the_export_are_in_this_one_or_the_next(env: Env) -> None:
    writer = env.token("system/*.cruds")

    async def write(n: int) -> None:
        body = _obs(f"w{n}", "bob", "survey")
        response = await env.http.put(f"Observation/w{n}", json=body, headers=writer)
        assert response.status_code == 201

    async def writes() -> None:
        for n in range(40):
            await write(n)

    writing = asyncio.ensure_future(writes())  # before, while and after the job starts
    await asyncio.sleep(0)
    status_url = await kick_off(env, "$export?_type=Observation")
    manifest = await finished(env, status_url)
    await writing
    now = ids(await contents(env, manifest), "Observation")
    nxt = await export(env, f"$export?_type=Observation&_since={manifest['transactionTime']}")
    later = ids(await contents(env, nxt), "Observation")
    assert {f"w{n}" for n in range(40)} <= now | later and not (now & later)


async def test_scopes_limit_the_types(env: Env) -> None:
    narrow = env.token("system/Observation.rs")
    manifest = await export(env, headers=narrow)
    assert {e["type"] for e in manifest["output"]} == {"Observation"}
    response = await env.http.get("$export?_type=Patient", headers={**ASYNC, **narrow})
    assert response.status_code == 403
    assert response.json()["resourceType"] == "OperationOutcome"
    # a granular scope: only what it lets the token search
    labs = env.token(
        "system/Observation.rs?category=http://terminology.hl7.org/CodeSystem/"
        "observation-category|laboratory"
    )
    found = await contents(env, await export(env, headers=labs), labs)
    assert ids(found, "Observation") == {"a-lab", "b-lab"}


async def test_patient_token_refused_at_system_level(env: Env) -> None:
    response = await env.http.get("$export", headers={**ASYNC, **env.patient()})
    assert response.status_code == 403


async def test_patient_token_exports_only_its_compartment(env: Env) -> None:
    alice = env.patient()
    found = await contents(env, await export(env, "Patient/$export", alice), alice)
    assert ids(found, "Patient") == {"alice"}
    assert ids(found, "Observation") == {"a-lab", "a-vital"}
    # a Group of hers, and one naming bob: bob's data never shows
    manifest = await export(env, "Group/g-alice/$export", alice)
    found = await contents(env, manifest, alice)
    assert "b-lab" not in ids(found, "Observation")
    body = {
        "resourceType": "Parameters",
        "parameter": [{"name": "patient", "valueReference": {"reference": "Patient/bob"}}],
    }
    manifest = await export(env, "Patient/$export", alice, method="POST", json=body)
    assert manifest["output"] == []


async def test_group_export_with_referenced_resources(env: Env) -> None:
    writer = env.token("system/*.cruds")
    for id_, who in (("t-alice", ["alice"]), ("t-both", ["alice", "bob"])):
        task = {
            "resourceType": "Task",
            "id": id_,
            "status": "requested",
            "intent": "order",
            "for": {"reference": f"Patient/{who[0]}"},
            "owner": {"reference": "Practitioner/dr"},
            "input": [
                {"type": {"text": "who"}, "valueReference": {"reference": f"Patient/{w}"}}
                for w in who
            ],
        }
        assert (await env.http.put(f"Task/{id_}", json=task, headers=writer)).status_code == 201
    manifest = await export(env, "Group/g-alice/$export", env.staff())
    found = await contents(env, manifest, env.staff())
    assert ids(found, "Patient") == {"alice"}
    assert ids(found, "Observation") == {"a-lab", "a-vital"}
    assert ids(found, "Practitioner") == {"dr"}  # referenced by a-lab and t-alice: once
    assert ids(found, "Task") == {"t-alice"}  # hers alone (t-both names bob too)
    assert "Organization" not in found
    response = await env.http.get("Group/nope/$export", headers={**ASYNC, **env.staff()})
    assert response.status_code == 404
    # a Group that describes patients (actual false) has no members to export
    definitional = {"resourceType": "Group", "id": "g-kind", "type": "person", "actual": False}
    assert (
        await env.http.put("Group/g-kind", json=definitional, headers=writer)
    ).status_code == 201
    response = await env.http.get("Group/g-kind/$export", headers={**ASYNC, **env.staff()})
    assert response.status_code == 422
    assert response.json()["resourceType"] == "OperationOutcome"


async def test_another_clients_token_gets_nothing(env: Env) -> None:
    status_url = await kick_off(env)
    manifest = await finished(env, status_url)
    other = env.token(client_id="other-ehr")
    assert (await env.http.get(status_url, headers=other)).status_code == 404
    assert (await env.http.delete(status_url, headers=other)).status_code == 404
    for entry in manifest["output"]:
        assert (await env.http.get(entry["url"], headers=other)).status_code == 404
    # the same app for another patient: nothing either
    alice, bob = env.patient("alice"), env.patient("bob")
    status_url = await kick_off(env, "Patient/$export", alice)
    await finished(env, status_url, alice)
    assert (await env.http.get(status_url, headers=bob)).status_code == 404
    assert (await env.http.get(status_url, headers=alice)).status_code == 200
    # her Group is not his to export; a user without a FHIR record exports nothing
    response = await env.http.get("Group/g-alice/$export", headers={**ASYNC, **bob})
    assert response.status_code == 404
    nobody = env.token("user/*.rs", client_id="app", subject="u-nobody")
    assert (await env.http.get("$export", headers={**ASYNC, **nobody})).status_code == 403


@pytest.mark.parametrize(
    ("query", "headers"),
    [
        ("$export", {"Accept": "application/fhir+json"}),  # no Prefer: respond-async
        ("$export?_outputFormat=text/csv", ASYNC),
        ("$export?_since=yesterday", ASYNC),
        ("$export?_since=2024-01-01", ASYNC),
        ("$export?_type=Nothing", ASYNC),
        ("$export?_typeFilter=Observation%3Fnope%3D1", ASYNC),
        ("$export?_typeFilter=Observation", ASYNC),
        ("$export?_typeFilter=Observation%3F_sort%3Ddate", ASYNC),
        ("$export?_elements=not%20an%20element", ASYNC),
        ("$export?includeAssociatedData=x", {**ASYNC, "Prefer": "respond-async, handling=strict"}),
        ("Patient/$export?patient=Observation/1", ASYNC),
        ("Patient/$export?_type=Practitioner", ASYNC),
        ("$export?_since=2024-13-01T00:00:00Z", ASYNC),
    ],
)
async def test_bad_input_is_a_400(env: Env, query: str, headers: dict[str, str]) -> None:
    response = await env.http.get(query, headers={**headers, **env.staff()})
    assert response.status_code == 400, response.text
    assert response.json()["resourceType"] == "OperationOutcome"


async def test_unsupported_parameters_are_reported_when_lenient(env: Env) -> None:
    manifest = await export(env, "$export?_type=Patient&includeAssociatedData=LatestProvenance")
    [error] = manifest["error"]
    response = await env.http.get(error["url"], headers=env.token())
    outcome = orjson.loads(response.content.splitlines()[0])
    assert "includeAssociatedData" in outcome["issue"][0]["diagnostics"]
    assert outcome["issue"][0]["severity"] == "warning"


async def test_too_many_jobs_is_a_429(env: Env) -> None:
    jobs = Jobs(env.folder, env.app.state.settings)
    for _ in range(2):  # two jobs running (in any process)
        jobs.create("someone|", "x", "2024-01-01T00:00:00.000Z")
    response = await env.http.get("$export", headers={**ASYNC, **env.token()})
    assert response.status_code == 429 and int(response.headers["Retry-After"]) > 0


async def test_an_interrupted_job_is_failed_not_complete(env: Env) -> None:
    jobs = Jobs(env.folder, env.app.state.settings)
    job = jobs.create("ehr|", "x", "2024-01-01T00:00:00.000Z")
    (jobs.files(job.id) / "Patient.000.ndjson.part").write_bytes(b'{"resourceType":')
    job.heartbeat = time.time() - 120  # the process that ran it was killed
    jobs.save(job)
    response = await env.http.get(f"$export-status/{job.id}", headers=env.token())
    assert response.status_code == 500
    assert response.json()["resourceType"] == "OperationOutcome"
    assert not jobs.files(job.id).exists()
    response = await env.http.get(
        f"$export-file/{job.id}/Patient.000.ndjson.part", headers=env.token()
    )
    assert response.status_code == 404


async def test_expired_jobs_are_removed(env: Env) -> None:
    jobs = Jobs(env.folder, env.app.state.settings)
    job = jobs.create("ehr|", "x", "2024-01-01T00:00:00.000Z")
    job.state, job.finished = "complete", time.time() - 2 * 86400
    jobs.save(job)
    assert (await env.http.get(f"$export-status/{job.id}", headers=env.token())).status_code == 404
    assert not jobs.folder(job.id).exists()


async def test_capability_statement_and_smart_configuration(env: Env) -> None:
    statement = (await env.http.get("metadata")).json()
    assert statement["instantiates"] == [
        "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"
    ]
    rest = statement["rest"][0]
    assert {
        "name": "export",
        "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export",
    }.items() <= (rest["operation"][0].items())
    by_type = {r["type"]: r for r in rest["resource"]}
    assert any(o["definition"].endswith("/patient-export") for o in by_type["Patient"]["operation"])
    assert any(o["definition"].endswith("/group-export") for o in by_type["Group"]["operation"])
    config = (await env.http.get(".well-known/smart-configuration")).json()
    assert "client_credentials" in config["grant_types_supported"]
    assert "private_key_jwt" in config["token_endpoint_auth_methods_supported"]
    assert {"RS384", "ES384"} <= set(config["token_endpoint_auth_signing_alg_values_supported"])
    assert "system/*.rs" in config["scopes_supported"]
    assert "client-confidential-asymmetric" in config["capabilities"]


async def test_a_job_whose_process_is_gone_is_failed(env: Env) -> None:
    import subprocess
    import sys

    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    jobs = Jobs(env.folder, env.app.state.settings)
    job = jobs.create("ehr|", "x", "2024-01-01T00:00:00.000Z")
    job.pid = int(gone.stdout)  # killed (kill -9) while it ran: its heartbeat is fresh
    jobs.save(job)
    response = await env.http.get(f"$export-status/{job.id}", headers=env.token())
    assert response.status_code == 500


async def test_a_late_heartbeat_never_overwrites_the_final_state(env: Env) -> None:
    jobs = Jobs(env.folder, env.app.state.settings)
    job = jobs.create("ehr|", "x", "2024-01-01T00:00:00.000Z")
    job.state, job.finished = "complete", time.time()
    jobs.save(job)
    job.progress = "late"
    jobs.save(job, heartbeat=True)  # a heartbeat still on its way when the job ended
    saved = jobs.load(job.id)
    assert saved is not None and saved.state == "complete" and saved.progress != "late"


async def test_output_formats_offsets_and_or_filters(env: Env) -> None:
    for output_format in (
        "ndjson",
        "application/ndjson",
        "application/fhir%2Bndjson",
        "application/fhir+ndjson",
    ):
        manifest = await export(env, f"$export?_type=Patient&_outputFormat={output_format}")
        assert {e["type"] for e in manifest["output"]} == {"Patient"}
    manifest = await export(env, "$export?_type=Patient&_since=2000-01-01T01:00:00%2B01:00")
    assert sum(e["count"] for e in manifest["output"]) == 2
    manifest = await export(
        env,
        "$export?_type=Observation,Patient"
        "&_typeFilter=Observation%3Fcode:text%3Da-lab,a-vital,Patient%3F_id%3Dbob",
    )
    found = await contents(env, manifest)
    assert ids(found, "Observation") == {"a-lab", "a-vital"} and ids(found, "Patient") == {"bob"}


async def test_files_are_split_at_the_configured_size(tmp_path: Path) -> None:
    settings = Settings(
        storage=storage_url("sqlite", tmp_path),
        auth="off",
        export_dir=str(tmp_path / "exports"),
        export_file_max_bytes=1024,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE + "/") as http:
            for n in range(30):
                body = {"resourceType": "Patient", "id": f"p{n}", "name": [{"family": "x" * 50}]}
                assert (await http.put(f"Patient/p{n}", json=body)).status_code == 201
            kick = await http.get("$export", headers=ASYNC)
            status_url = kick.headers["Content-Location"]
            for _ in range(300):
                status = await http.get(status_url)
                if status.status_code == 200:
                    break
                await asyncio.sleep(0.05)
            output = status.json()["output"]
            assert status.json()["requiresAccessToken"] is False  # authorization is off
            assert len(output) > 2 and {e["type"] for e in output} == {"Patient"}
            assert [e["url"].rsplit("/", 1)[1] for e in output][:2] == [
                "Patient.000.ndjson",
                "Patient.001.ndjson",
            ]
            total = 0
            for entry in output:
                body = (await http.get(entry["url"])).content
                assert len(body) <= 1024 and body.endswith(b"\n")
                total += len(body.splitlines())
            assert total == sum(e["count"] for e in output) == 30


async def test_group_since_export_lists_only_its_patients_deleted(env: Env) -> None:
    first = await export(env, "Group/g-alice/$export", env.staff())
    writer = env.token("system/*.cruds")
    for path in ("Observation/a-vital", "Observation/b-lab"):
        assert (await env.http.delete(path, headers=writer)).status_code in (200, 204)
    since = first["transactionTime"]
    query = f"_since={since}&_type=Observation"  # (the deletes may be audited)
    manifest = await export(env, f"Group/g-alice/$export?{query}", env.staff())
    assert manifest["output"] == []
    [deleted] = manifest["deleted"]
    response = await env.http.get(deleted["url"], headers=env.staff())
    urls = [
        orjson.loads(line)["entry"][0]["request"]["url"] for line in response.content.splitlines()
    ]
    assert urls == ["Observation/a-vital"]


async def test_round_trip_through_import(env: Env, tmp_path: Path) -> None:
    """``$export``, ``fhir-server import`` of the files into an empty store, ``$export``
    again: the same resources byte for byte but for meta.versionId and lastUpdated."""
    from fhir_server.bulk_import import import_paths
    from fhir_server.storage.open import open_store

    writer = env.token("system/*.cruds")
    vitals = _obs("a-bp", "alice", "vital-signs", valueQuantity={"value": 72.50, "unit": "mm"})
    body = orjson.dumps(vitals).replace(b"72.5", b"72.50")  # a decimal's precision is kept
    headers = {**writer, "content-type": "application/fhir+json"}
    assert (
        await env.http.put("Observation/a-bp", content=body, headers=headers)
    ).status_code == 201

    async def files(manifest: dict[str, Any], folder: Path) -> dict[str, bytes]:
        folder.mkdir()
        lines: dict[str, bytes] = {}
        for entry in manifest["output"]:
            data = (await env.http.get(entry["url"], headers=env.token())).content
            (folder / entry["url"].rsplit("/", 1)[1]).write_bytes(data)
            for line in data.splitlines():
                resource = orjson.loads(line)
                lines[f"{resource['resourceType']}/{resource['id']}"] = _unversioned(line)
        return lines

    first = await files(await export(env), tmp_path / "first")
    assert b"72.50" in first["Observation/a-bp"]
    store = open_store(f"sqlite:///{tmp_path / 'copy.sqlite3'}")
    await store.open()
    try:
        report = await import_paths(store, [tmp_path / "first"], workers=0)
        assert report is not None
    finally:
        await store.close()
    settings = Settings(
        storage=f"sqlite:///{tmp_path / 'copy.sqlite3'}",
        auth="off",
        audit="off",  # nothing but the imported resources in the copy
        export_dir=str(tmp_path / "exports-copy"),
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE + "/") as http:
            kick = await http.get("$export", headers=ASYNC)
            status_url = kick.headers["Content-Location"]
            for _ in range(300):
                status = await http.get(status_url)
                if status.status_code == 200:
                    break
                await asyncio.sleep(0.05)
            second: dict[str, bytes] = {}
            for entry in status.json()["output"]:
                for line in (await http.get(entry["url"])).content.splitlines():
                    resource = orjson.loads(line)
                    second[f"{resource['resourceType']}/{resource['id']}"] = _unversioned(line)
    assert second == first


def _unversioned(line: bytes) -> bytes:
    """A stored resource without ``meta.versionId`` and ``meta.lastUpdated``."""
    import re

    return re.sub(rb'"(versionId|lastUpdated)":"[^"]*",?', b"", line)


async def test_the_job_limit_holds_for_concurrent_kick_offs(env: Env) -> None:
    """Kick-offs racing for the last places (threads here; processes sharing the folder
    alike): the count and the new job are under one lock, so exactly the limit wins."""
    from concurrent.futures import ThreadPoolExecutor

    jobs = Jobs(env.folder, env.app.state.settings)
    with ThreadPoolExecutor(8) as pool:
        made = list(
            pool.map(lambda _: jobs.create("x|", "x", "2024-01-01T00:00:00.000Z", 3), range(8))
        )
    assert sum(job is not None for job in made) == 3
    responses = await asyncio.gather(
        *(env.http.get("$export", headers={**ASYNC, **env.token()}) for _ in range(3))
    )
    assert [r.status_code for r in responses] == [429, 429, 429]
