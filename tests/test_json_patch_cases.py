"""The JSON Patch cases of fhir-test-cases (RFC 6902's own examples), on the server's
JSON Patch code.

https://hl7.org/fhir/R4/http.html#patch, https://www.rfc-editor.org/rfc/rfc6902 (appendix
A); the cases are ``r4/patch/json-patch-tests.json`` of
https://github.com/FHIR/fhir-test-cases (Apache-2.0), see
``tests/data/fhir-test-cases/README.md``. They patch plain JSON documents, not resources,
so they run on ``json_patcher`` (what the PATCH endpoint applies) rather than over HTTP.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from fhir_server.interactions.patch import json_patcher
from resources.errors import FhirError

CASES_FILE = (
    Path(__file__).parent / "data" / "fhir-test-cases" / "r4" / "patch" / "json-patch-tests.json"
)
CASES: list[dict[str, Any]] = json.loads(CASES_FILE.read_text(encoding="utf-8"))


def test_the_file_holds_every_case() -> None:
    assert len(CASES) == 16
    assert all(("expected" in case) != ("error" in case) for case in CASES)


@pytest.mark.parametrize("case", CASES, ids=[case["comment"] for case in CASES])
def test_official_json_patch_case(case: dict[str, Any]) -> None:
    doc = copy.deepcopy(case["doc"])
    if "error" in case:
        with pytest.raises(FhirError) as caught:
            json_patcher(case["patch"])(doc)
        assert 400 <= caught.value.status < 500
    else:
        assert json_patcher(case["patch"])(doc) == case["expected"]
    assert doc == case["doc"]  # the stored version is never edited in place
