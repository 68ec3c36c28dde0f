"""Index extraction over the official R4 examples of the portal's resource types and of the
R4 types the R4B models lack (https://hl7.org/fhir/R4/search.html): it never fails, the
native navigators agree with fhirpathpy, and it is fast.

The examples come from ``hl7.fhir.r4.examples`` (``scripts/fetch_r4_examples.sh``).
Measure with ``.venv/bin/pytest tests/test_index_examples.py -k speed -s``.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from functools import cache
from typing import Any

import pytest

from resources import fhir_json
from resources.search.extract import Indexer, indexer_for
from resources.search.model import IndexRow, SearchParam
from resources.search.parameters import search_params
from tests.test_r4_examples import PORTAL_TYPES, R4_ONLY_TYPES, examples_of

TYPES = PORTAL_TYPES + sorted(R4_ONLY_TYPES)
LENIENT = (" as ", ".as(", "hasExtension")
"""Where the native evaluator is deliberately more lenient than fhirpathpy: ``as`` over a
collection of several items filters it (fhirpathpy raises), ``as(DateTime)`` means the
FHIR ``dateTime`` (fhirpathpy selects nothing), and fhirpathpy has no ``hasExtension``."""


@cache
def examples(type_: str) -> list[dict[str, Any]]:
    return [fhir_json.loads(path.read_bytes()) for path in examples_of(type_)]


@cache
def fhirpathpy_indexer(type_: str) -> Indexer:
    return Indexer(search_params(type_), type_, native=False)


def by_code(rows: list[IndexRow]) -> dict[str, Counter[IndexRow]]:
    out: dict[str, Counter[IndexRow]] = {}
    for row in rows:
        out.setdefault(row.code, Counter())[row] += 1
    return out


def expressions(param: SearchParam) -> str:
    return " ".join([param.expression or "", *(c.expression for c in param.components)])


@pytest.mark.parametrize("type_", TYPES)
def test_every_official_example_is_indexed(type_: str) -> None:
    indexer = indexer_for(type_)
    for resource in examples(type_):
        rows, _keys = indexer.index(resource)
        assert any(row.code == "_id" for row in rows), resource.get("id")


@pytest.mark.parametrize("type_", TYPES)
def test_native_navigation_agrees_with_fhirpathpy(type_: str) -> None:
    params = search_params(type_)
    for resource in examples(type_):
        native = by_code(indexer_for(type_).extract(resource))
        reference = by_code(fhirpathpy_indexer(type_).extract(resource))
        for code in set(native) | set(reference):
            mine, theirs = native.get(code, Counter()), reference.get(code, Counter())
            lenient = code in params and any(m in expressions(params[code]) for m in LENIENT)
            if lenient:
                assert set(theirs) <= set(mine), (resource.get("id"), code)
            else:
                assert set(mine) == set(theirs), (resource.get("id"), code)


@pytest.mark.parametrize("type_", ["Observation", "Patient", "Encounter", "MedicationRequest"])
def test_speed(type_: str) -> None:
    resources = examples(type_)
    indexer = indexer_for(type_)
    for resource in resources:
        indexer.index(resource)
    trials = []
    for _ in range(20):
        start = time.perf_counter()
        for resource in resources:
            indexer.index(resource)
        trials.append((time.perf_counter() - start) / len(resources) * 1e6)
    best, median = min(trials), statistics.median(trials)
    print(f"\n{type_}: {len(resources)} examples, best {best:.0f} µs, median {median:.0f} µs")
    assert best < 2_000, "index extraction should cost well under a millisecond"
