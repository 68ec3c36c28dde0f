"""The official R4 examples of the resource types a patient portal uses, and of the R4
types the fhir.resources R4B models lack or redesigned, are accepted by ``PUT`` and read
back unchanged apart from ``meta.versionId`` / ``meta.lastUpdated``
(https://hl7.org/fhir/R4/http.html#update, lossless storage).

The examples come from the npm package ``hl7.fhir.r4.examples@4.0.1``, fetched by
``scripts/fetch_r4_examples.sh`` into ``.cache/r4-examples`` (the test command runs it).
"""

from __future__ import annotations

import json
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from resources import fhir_json
from tests.conftest import JSON
from tests.known_invalid_examples import KNOWN_INVALID

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / ".cache" / "r4-examples" / "package"

PORTAL_TYPES = [
    "Patient",
    "Practitioner",
    "PractitionerRole",
    "Organization",
    "Location",
    "Appointment",
    "Slot",
    "Schedule",
    "Encounter",
    "Observation",
    "DiagnosticReport",
    "Condition",
    "AllergyIntolerance",
    "Immunization",
    "Procedure",
    "CarePlan",
    "MedicationRequest",
    "Medication",
    "Communication",
    "Invoice",
    "Account",
    "Coverage",
    "DocumentReference",
    "RelatedPerson",
    "Consent",
    "Task",
]

R4_ONLY_TYPES = {
    "EffectEvidenceSynthesis": 1,
    "Evidence": 1,
    "EvidenceVariable": 1,
    "MedicinalProduct": 1,
    "MedicinalProductAuthorization": 1,
    "MedicinalProductContraindication": 1,
    "MedicinalProductIndication": 1,
    "MedicinalProductIngredient": 1,
    "MedicinalProductInteraction": 1,
    "MedicinalProductManufactured": 1,
    "MedicinalProductPackaged": 1,
    "MedicinalProductPharmaceutical": 1,
    "MedicinalProductUndesirableEffect": 1,
    "RiskEvidenceSynthesis": 1,
    "SubstanceNucleicAcid": 0,
    "SubstancePolymer": 0,
    "SubstanceProtein": 0,
    "SubstanceReferenceInformation": 0,
    "SubstanceSourceMaterial": 0,
    "SubstanceSpecification": 1,
}
"""The R4 resource types that the fhir.resources R4B models lack (``Evidence`` and
``EvidenceVariable``: redesigned in R4B), which the server refused while it validated with
those models, with the number of official examples of each (none of them invalid)."""


def _ensure_examples() -> Path:
    if not (EXAMPLES / "package.json").exists():
        script = ROOT / "scripts" / "fetch_r4_examples.sh"
        subprocess.run(["bash", str(script)], check=True, capture_output=True, timeout=300)
    return EXAMPLES


def examples_of(type_: str) -> list[Path]:
    folder = _ensure_examples()
    found = []
    for path in sorted(folder.glob(f"{type_}-*.json")):
        data = json.loads(path.read_bytes())
        if data.get("resourceType") == type_:
            found.append(path)
    return found


def comparable(value: Any) -> Any:
    """A form equal for equal JSON, keeping decimal text (``72.50`` != ``72.5``)."""
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [comparable(v) for v in value]
    if isinstance(value, Decimal):
        return ("decimal", getattr(value, "raw", str(value)))
    return value


def without_server_meta(resource: dict[str, Any]) -> dict[str, Any]:
    out = dict(resource)
    meta = {k: v for k, v in out.pop("meta", {}).items() if k not in ("versionId", "lastUpdated")}
    if meta:
        out["meta"] = meta
    return out


async def round_trip(client: httpx.AsyncClient, type_: str) -> tuple[int, dict[str, Any]]:
    """PUT every official example of a type and read it back: (accepted, rejected)."""
    accepted, rejected = 0, {}
    for path in examples_of(type_):
        raw = path.read_bytes()
        original = fhir_json.loads_resource(raw)
        response = await client.put(f"{type_}/{original['id']}", content=raw, headers=JSON)
        if path.name in KNOWN_INVALID:
            assert response.status_code == 400, f"{path.name} should be rejected"
            rejected[path.name] = response.json()["issue"][0].get("diagnostics")
            continue
        assert response.status_code in (200, 201), f"{path.name}: {response.text}"
        read = await client.get(f"{type_}/{original['id']}")
        stored = fhir_json.loads_resource(read.content)
        assert comparable(without_server_meta(stored)) == comparable(
            without_server_meta(original)
        ), path.name
        accepted += 1
    print(f"{type_}: {accepted} accepted, {len(rejected)} rejected as known invalid {rejected}")
    return accepted, rejected


@pytest.mark.parametrize("type_", PORTAL_TYPES)
async def test_official_examples_round_trip(client, type_: str) -> None:
    accepted, _rejected = await round_trip(client, type_)
    assert accepted > 0


@pytest.mark.parametrize("type_", sorted(R4_ONLY_TYPES))
async def test_official_examples_of_the_types_r4b_lacks_round_trip(client, type_: str) -> None:
    assert await round_trip(client, type_) == (R4_ONLY_TYPES[type_], {})
