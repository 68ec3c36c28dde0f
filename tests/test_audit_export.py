"""A bulk export in the audit trail (issue 21; BALP's Privacy Disclosure,
https://profiles.ihe.net/ITI/BALP/): once an ``$export`` job completes, each patient whose
data its files hold has one AuditEvent (DICOM 110106 Export) naming her, the app that
asked, the job and the files of hers; she reads it in her access report, and never
another patient's. Over HTTP with SMART tokens, on every store."""

from __future__ import annotations

from typing import Any

from fhir_server.audit.balp import CLIENT_SYSTEM, EXPORT_JOB_SYSTEM
from tests.test_export import Env, env, export  # noqa: F401 - env: the fixture

EXPORTS = "AuditEvent?type=110106&_sort=-date"


async def export_events(e: Env, headers: dict[str, str], query: str = EXPORTS) -> list[dict]:
    await e.app.state.audit.flush()
    found = await e.http.get(query, headers=headers)
    assert found.status_code == 200, found.text
    return [entry["resource"] for entry in found.json().get("entry", [])]


def patients_named(event: dict[str, Any]) -> list[str]:
    return [
        x["what"]["reference"]
        for x in event["entity"]
        if x.get("what", {}).get("reference", "").startswith("Patient/")
    ]


def files_of(event: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (x["detail"][0]["valueString"], x["description"])
        for x in event["entity"]
        if x["role"]["code"] == "3"
    }


def files_in(manifest: dict[str, Any]) -> set[tuple[str, str]]:
    return {(o["type"], o["url"].rsplit("/", 1)[1]) for o in manifest["output"]}


async def test_a_system_export_is_in_the_report_of_each_patient_it_held(env: Env) -> None:  # noqa: F811
    manifest = await export(env, "$export?_type=Patient,Observation,Practitioner")
    job = manifest["output"][0]["url"].split("/$export-file/")[1].split("/")[0]
    for who in ("alice", "bob"):
        mine = env.patient(who)
        report = await export_events(env, mine, f"AuditEvent?patient=Patient/{who}&_sort=-date")
        [event] = [e for e in report if e["type"]["code"] == "110106"]
        assert patients_named(event) == [f"Patient/{who}"]
        assert event["action"] == "R" and event["outcome"] == "0"
        assert [c["code"] for c in event["subtype"]] == ["operation", "$export", "disclose"]
        [app] = [a for a in event["agent"] if "identifier" in a.get("who", {})]
        assert app["who"]["identifier"] == {"system": CLIENT_SYSTEM, "value": "ehr"}
        [query] = [x for x in event["entity"] if x["role"]["code"] == "24"]
        assert query["description"] == "GET $export?_type=Patient,Observation,Practitioner"
        [the_job] = [x for x in event["entity"] if x["role"]["code"] == "20"]
        assert the_job["what"]["identifier"] == {"system": EXPORT_JOB_SYSTEM, "value": job}
        # her files: the Patient and Observation files, not the Practitioners'
        theirs = {f for f in files_in(manifest) if f[0] != "Practitioner"}
        assert files_of(event) == theirs and theirs
        # and nobody else's export events
        for other in await export_events(env, mine):
            assert patients_named(other) == [f"Patient/{who}"]
    staff = await export_events(env, env.staff())
    assert sorted(p for e in staff for p in patients_named(e)) == ["Patient/alice", "Patient/bob"]


async def test_a_patient_whose_data_was_not_exported_finds_no_export(env: Env) -> None:  # noqa: F811
    await export(env, "Group/g-alice/$export?_type=Patient,Observation")
    assert [patients_named(e) for e in await export_events(env, env.staff())] == [["Patient/alice"]]
    assert await export_events(env, env.patient("bob")) == []
    [event] = await export_events(env, env.patient("alice"))
    assert {t for t, _ in files_of(event)} == {"Patient", "Observation"}
