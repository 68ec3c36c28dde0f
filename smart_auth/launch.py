"""EHR launch contexts (SMART App Launch 2.x, EHR launch:
https://hl7.org/fhir/smart-app-launch/app-launch.html#launch-app-ehr-launch).

An EHR (a member of staff's session, or a backend service) creates a launch context with
``POST /auth/launch`` and a bearer token: ``{"patient": "123", "encounter": "456"}`` ->
``201 {"launch": "<opaque id>", "expires_in": 600}``. It then opens the app with
``?iss=<FHIR base>&launch=<id>``; the app sends ``launch`` back in its authorization
request and receives the patient (and encounter) in the token response.

Who may create one: a user token whose ``fhirUser`` is a Practitioner, or a backend
service token carrying a ``system/`` scope. The patient (and encounter) must exist.
"""

from __future__ import annotations

import re
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from smart_auth.bearer import bearer_policy, is_staff_or_system
from smart_auth.core import AuthCore
from smart_auth.passwords import new_secret
from smart_auth.server import json_body, oauth_error
from smart_auth.store.base import LaunchContext

_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def _reference_id(value: Any, resource_type: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{resource_type} must be a string id")
    value = value.removeprefix(f"{resource_type}/")
    if not _ID.fullmatch(value):
        raise ValueError(f"{resource_type} is not a valid id")
    return value


async def create_launch(auth: AuthCore, request: Request) -> Response:
    policy = await bearer_policy(auth, request)
    if isinstance(policy, Response):
        return policy
    if not is_staff_or_system(policy):
        return oauth_error(
            403,
            "insufficient_scope",
            "Only a practitioner or a backend service may create a launch context.",
        )
    try:
        body = json_body(await request.body())
        if not isinstance(body, dict):
            raise ValueError("send a JSON object")
        patient = _reference_id(body.get("patient"), "Patient")
        encounter = _reference_id(body.get("encounter"), "Encounter")
    except (ValueError, UnicodeDecodeError) as error:
        return oauth_error(400, "invalid_request", f"Invalid launch context: {error}")
    if patient is None and encounter is None:
        return oauth_error(400, "invalid_request", "Give a patient and/or an encounter.")
    for kind, value in (("Patient", patient), ("Encounter", encounter)):
        if value is not None and await auth.hooks.display(f"{kind}/{value}") is None:
            return oauth_error(400, "invalid_request", f"{kind}/{value} does not exist.")
    now = int(time.time())
    launch = LaunchContext(
        launch_id=new_secret(18),
        patient=patient,
        encounter=encounter,
        created_by=policy.fhir_user or policy.client_id,
        expires_at=now + auth.config.launch_lifetime,
        created_at=now,
    )
    auth.store.add_launch(launch)
    answer = {"launch": launch.launch_id, "expires_in": auth.config.launch_lifetime}
    if patient:
        answer["patient"] = patient
    if encounter:
        answer["encounter"] = encounter
    return JSONResponse(answer, status_code=201, headers={"Cache-Control": "no-store"})
