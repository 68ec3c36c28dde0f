"""Helpers of the FHIRPath Patch tests (https://hl7.org/fhir/R4/fhirpatch.html)."""

from __future__ import annotations

from typing import Any

import pytest

from resources.errors import FhirError
from resources.fhir_json import loads
from resources.fhirpath_patch import apply_fhirpath_patch

# The few cardinalities these tests need; the server passes its own full lookup.
REPEATS = {
    "Patient.identifier": True,
    "Patient.name": True,
    "Patient.telecom": True,
    "Patient.contact": True,
    "Patient.contact.telecom": True,
    "HumanName.given": True,
    "Observation.component": True,
    "Patient.birthDate": False,
    "Patient.gender": False,
    "Patient.contact.name": False,
}.get


def operation(op_type: str, path: str, **parts: Any) -> dict[str, Any]:
    """One ``operation`` parameter; ``value`` is a part body, indexes are integers."""
    out = [{"name": "type", "valueCode": op_type}, {"name": "path", "valueString": path}]
    for name, given in parts.items():
        if name == "value":
            out.append({"name": "value", **given})
        elif name in ("index", "source", "destination"):
            out.append({"name": name, "valueInteger": given})
        else:
            out.append({"name": name, "valueString": given})
    return {"name": "operation", "part": out}


def patch(resource: dict[str, Any], *operations: dict[str, Any]) -> dict[str, Any]:
    parameters = {"resourceType": "Parameters", "parameter": list(operations)}
    return apply_fhirpath_patch(resource, parameters, repeats=REPEATS)


def patch_error(resource: dict[str, Any], *operations: dict[str, Any]) -> FhirError:
    with pytest.raises(FhirError) as caught:
        patch(resource, *operations)
    return caught.value


def patient() -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": "p1",
        "identifier": [
            {"system": "http://a", "value": "1"},
            {"system": "http://b", "value": "2"},
        ],
        "name": [{"family": "Doe", "given": ["Jane", "Q", "Ann"]}],
        "gender": "female",
        "birthDate": "1970-01-01",
    }


def observation() -> dict[str, Any]:
    return loads(
        b'{"resourceType": "Observation", "status": "final", "code": {"text": "weight"},'
        b' "valueQuantity": {"value": 72.50, "unit": "kg"},'
        b' "component": [{"code": {"text": "a"}, "valueQuantity": {"value": 1.50}},'
        b' {"code": {"text": "b"}, "valueString": "x"}]}'
    )
