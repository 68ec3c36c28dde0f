"""Sign-ins, consent and tokens in the audit trail (issue 21): a browser sign-in driven
over HTTP against the app's own authorization server (a wrong password first), the
consent, the code exchanged for tokens, a refresh and a revocation; each is an AuditEvent
(DICOM 110114 User Authentication) that staff read, and the patient reads those about
their own record. Nothing secret is recorded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fhir_server.audit.balp import AUTH_SYSTEM
from tests.smart_support import (
    BASE,
    PASSWORD,
    add_user,
    auth_params,
    exchange,
    get_code,
    login,
    pkce,
    public_app,
    real_app,
    start,
    system_headers,
)

SCOPE = "launch/patient openid fhirUser offline_access patient/*.rs"


def _kinds(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    out = []
    for event in events:
        codes = [c["code"] for c in event["subtype"] if c["system"] == AUTH_SYSTEM]
        out.append((codes[0], event["outcome"]))
    return out


async def test_sign_ins_consent_and_tokens_are_recorded(tmp_path: Path) -> None:
    async with real_app(tmp_path) as env:
        add_user(env.store, "alice", "Patient/p1")
        client_id = public_app(env.store)
        verifier, challenge = pkce()
        await start(env.http, auth_params(client_id, challenge, scope=SCOPE))
        wrong = await login(env.http, "alice", "not the password")
        assert wrong.status_code == 401
        code = await get_code(env, client_id, "alice", (verifier, challenge), scope=SCOPE)
        exchanged = await exchange(env.http, client_id, code, verifier)
        assert exchanged.status_code == 200, exchanged.text
        tokens = exchanged.json()
        refreshed = await env.http.post(
            "/auth/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": tokens["refresh_token"],
                "client_id": client_id,
            },
        )
        assert refreshed.status_code == 200, refreshed.text
        revoked = await env.http.post(
            "/auth/revoke",
            data={"token": refreshed.json()["refresh_token"], "client_id": client_id},
        )
        assert revoked.status_code == 200
        app = env.data["app"]
        await app.state.audit.flush()
        staff = system_headers(env.auth)
        found = await env.http.get(
            "/fhir/AuditEvent?type=110114&_sort=date&_count=50", headers=staff
        )
        events = [e["resource"] for e in found.json()["entry"]]
        kinds = _kinds(events)
        assert kinds == [
            ("login", "4"),
            ("login", "0"),
            ("consent", "0"),
            ("token", "0"),
            ("refresh", "0"),
            ("revoke", "0"),
        ]
        assert events[0]["agent"][0]["altId"] == "alice"  # the username tried
        text = found.text
        for secret in (PASSWORD, tokens["refresh_token"], tokens["access_token"]):
            assert secret not in text
        issued = next(e for e in events if _kinds([e]) == [("token", "0")])
        assert issued["agent"][0]["who"]["reference"] == "Patient/p1"
        app_agent = issued["agent"][1]["who"]
        assert app_agent["identifier"]["value"] == client_id
        assert app_agent["display"] == "Portal"  # the registered client's name
        # the patient reads the sign-ins and tokens about their record
        patient, _ = env.auth.token_service().issue_access_token(
            issuer=BASE, audience=BASE, client_id="portal", scope="patient/*.rs",
            fhir_user="Patient/p1", patient="p1",
        )  # fmt: skip
        report = await env.http.get(
            "/fhir/AuditEvent?patient=Patient/p1&type=110114",
            headers={"Authorization": f"Bearer {patient}"},
        )
        assert report.status_code == 200, report.text
        own = _kinds([e["resource"] for e in report.json()["entry"]])
        assert ("token", "0") in own and ("login", "0") in own
        others = await env.http.get(
            "/fhir/AuditEvent?patient=Patient/p2", headers={"Authorization": f"Bearer {patient}"}
        )
        assert others.json().get("entry", []) == []
