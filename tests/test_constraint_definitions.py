"""The constraints section of the generated data (scripts/constraint_definitions.py): each
constraint under the type that defines it, the copies a snapshot makes of its bases' left
out (https://hl7.org/fhir/R4/elementdefinition.html, ElementDefinition.constraint)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _module() -> Any:
    path = ROOT / "scripts" / "constraint_definitions.py"
    spec = importlib.util.spec_from_file_location("constraint_definitions", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sd(type_: str, base: str, elements: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "StructureDefinition",
        "url": f"http://hl7.org/fhir/StructureDefinition/{type_}",
        "type": type_,
        "kind": "complex-type",
        "derivation": "specialization",
        "baseDefinition": f"http://hl7.org/fhir/StructureDefinition/{base}",
        "snapshot": {"element": elements},
    }


def _constraint(key: str, source: str | None = None, severity: str = "error") -> dict[str, Any]:
    out = {"key": key, "severity": severity, "human": key.upper(), "expression": f"{key}()"}
    if source:
        out["source"] = f"http://hl7.org/fhir/StructureDefinition/{source}"
    return out


def test_constraints_are_written_under_the_type_that_defines_them() -> None:
    quantity = _sd("Quantity", "Element", [
        {"path": "Quantity", "constraint": [_constraint("ele-1", "Element"), _constraint("qty-3")]},
        {"path": "Quantity.extension", "constraint": [_constraint("ext-1", "Extension")]},
    ])  # fmt: skip
    age = _sd("Age", "Quantity", [
        {"path": "Age", "constraint": [_constraint("qty-3", "Quantity"), _constraint("age-1"),
                                       _constraint("age-0", severity="warning")]},
        {"path": "Age.value", "constraint": [_constraint("age-2")]},
    ])  # fmt: skip
    profile = {
        **_sd(
            "SimpleQuantity",
            "Quantity",
            [
                {
                    "path": "Quantity",
                    "constraint": [_constraint("qty-3", "Quantity"), _constraint("sqty-1")],
                }
            ],
        ),  # fmt: skip
        "id": "SimpleQuantity",
        "type": "Quantity",
        "derivation": "constraint",
    }
    unused = {**_sd("MoneyQuantity", "Quantity", []), "id": "MoneyQuantity",
              "derivation": "constraint"}  # fmt: skip
    dose = _sd("Dosage", "Element", [
        {"path": "Dosage.dose", "type": [{"code": "Quantity", "profile": [
            "http://hl7.org/fhir/StructureDefinition/SimpleQuantity"]}]},
    ])  # fmt: skip
    out = _module().constraint_definitions([quantity, age, profile, unused, dose])
    assert out["profiles"] == {
        "SimpleQuantity": {
            "type": "Quantity",
            "constraints": [["", "sqty-1", "error", "sqty-1()", "SQTY-1"]],
        }
    }
    assert out["profiledElements"] == {"Dosage": [["dose", "Quantity", "SimpleQuantity"]]}
    assert out["types"] == {
        "Dosage": {"parent": "Element", "constraints": []},
        "Age": {
            "parent": "Quantity",
            "constraints": [
                ["", "age-1", "error", "age-1()", "AGE-1"],
                ["", "age-0", "warning", "age-0()", "AGE-0"],
                ["value", "age-2", "error", "age-2()", "AGE-2"],
            ],
        },
        "Quantity": {
            "parent": "Element",
            "constraints": [["", "qty-3", "error", "qty-3()", "QTY-3"]],
        },
    }
    assert out["stats"] == {"constraints": 4, "error": 3, "warning": 1}


def test_the_committed_data_has_every_r4_error_constraint() -> None:
    data = json.loads((ROOT / "resources" / "data" / "r4_constraints.json").read_text())
    assert data["fhirVersion"] == "4.0.1"
    assert data["stats"] == {"constraints": 241, "error": 207, "warning": 34}
    assert data["types"]["Period"]["constraints"][0][:3] == ["", "per-1", "error"]
    assert data["types"]["Age"]["parent"] == "Quantity"
    assert list(data["profiles"]) == ["SimpleQuantity"]
    assert sum(len(rows) for rows in data["profiledElements"].values()) == 55
