"""What makes writes and imports fast changes nothing that is stored or indexed:

- the indexer skips the parameters whose entry keys a resource lacks (plans per resource
  shape, composite parameters included): the same rows and sort keys, in the same order,
  as evaluating every parameter, on every official R4 example (all types, Bundles'
  entries included) and on the demo population;
- index rows packed into tuples (between import processes) are the same rows, and the
  SQLite store writes packed and unpacked rows alike;
- content templates give the bytes ``fhir_json.dumps(with_meta(...))`` gives.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from fhir_server.demo_data import Population
from fhir_server.interactions.write import content_builder, index_entries, with_meta
from fhir_server.storage.sqlite_index import SCHEMA, IndexWriter, ParamIds
from resources import fhir_json
from resources.search.extract import Indexer
from resources.search.index.packed import (
    PackedRows,
    PackedSortKeys,
    pack_rows,
    pack_sort_keys,
)
from resources.search.parameters import search_params
from tests.test_r4_examples import _ensure_examples


def _resources(value: Any) -> Iterator[dict[str, Any]]:
    """A resource and those inside it (Bundle entries, contained resources)."""
    if isinstance(value, dict):
        if isinstance(value.get("resourceType"), str):
            yield value
        for item in value.values():
            yield from _resources(item)
    elif isinstance(value, list):
        for item in value:
            yield from _resources(item)


@cache
def official_examples() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for path in sorted(_ensure_examples().glob("*.json")):
        try:
            data = fhir_json.loads(path.read_bytes())
        except Exception:  # noqa: BLE001 - package files that are not resources
            continue
        found.extend(r for r in _resources(data) if isinstance(r.get("resourceType"), str))
    return found


@cache
def demo_population() -> list[dict[str, Any]]:
    return list(Population(12, 3, date(2025, 3, 12)))


@cache
def indexers(type_: str) -> tuple[Indexer, Indexer]:
    params = search_params(type_)
    return Indexer(params, type_), Indexer(params, type_, skip_absent=False)


def _check_same_index(resources: list[dict[str, Any]]) -> int:
    checked = 0
    for resource in resources:
        type_ = resource["resourceType"]
        try:
            fast, full = indexers(type_)
        except KeyError:  # not an R4 resource type
            continue
        assert fast.index(resource) == full.index(resource), (type_, resource.get("id"))
        checked += 1
    return checked


def test_skipping_absent_parameters_changes_no_row_of_the_official_examples() -> None:
    assert _check_same_index(official_examples()) > 4000


def test_skipping_absent_parameters_changes_no_row_of_the_demo_population() -> None:
    assert _check_same_index(demo_population()) > 300


def test_a_composite_on_the_resource_is_skipped_only_without_one_of_its_components() -> None:
    fast, _full = indexers("Observation")
    base = {"resourceType": "Observation", "id": "o", "status": "final"}
    code = {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}
    quantity = {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org"}
    with_both = {**base, "code": code, "valueQuantity": quantity}
    rows, _keys = fast.index(with_both)
    assert {"code-value-quantity", "combo-code-value-quantity"} <= {r.code for r in rows}
    rows, _keys = fast.index({**base, "code": code})
    assert not {r.code for r in rows} & {"code-value-quantity", "combo-code-value-quantity"}
    component = {**base, "code": code, "component": [{"code": code, "valueQuantity": quantity}]}
    rows, _keys = fast.index(component)
    assert {"component-code-value-quantity", "combo-code-value-quantity"} <= {r.code for r in rows}


def test_packed_rows_are_the_same_rows() -> None:
    for resource in demo_population():
        entries = index_entries(resource, resource["id"])
        rows = PackedRows(pack_rows(entries.rows))
        keys = PackedSortKeys(pack_sort_keys(entries.sort_keys))
        assert list(rows) == list(entries.rows)
        assert list(keys) == list(entries.sort_keys)
        assert len(rows) == len(entries.rows)


def _written(packed: bool) -> list[tuple[str, list[tuple[Any, ...]]]]:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.executescript(SCHEMA)
    writer = IndexWriter(conn, ParamIds())
    for pk, resource in enumerate(demo_population(), start=1):
        entries = index_entries(resource, resource["id"])
        rows, keys = entries.rows, entries.sort_keys
        if packed:
            rows = PackedRows(pack_rows(rows))
            keys = PackedSortKeys(pack_sort_keys(keys))
        writer.replace(resource["resourceType"], pk, rows, keys, fresh=True)
    writer.flush()
    tables = [t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    return [(t, conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall()) for t in tables]


def test_sqlite_writes_packed_rows_as_it_writes_rows() -> None:
    assert _written(packed=True) == _written(packed=False)


def test_the_index_writer_replaces_rows_written_in_the_same_transaction() -> None:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.executescript(SCHEMA)
    writer = IndexWriter(conn, ParamIds())
    first, second = demo_population()[0], demo_population()[1]
    for resource in (first, second):
        entries = index_entries(resource, resource["id"])
        writer.replace(resource["resourceType"], 1, entries.rows, entries.sort_keys, fresh=True)
    writer.flush()
    expected = index_entries(second, second["id"])
    count = conn.execute("SELECT count(*) FROM idx_sort WHERE res_pk=1").fetchone()[0]
    assert count == len(expected.sort_keys)


@pytest.mark.parametrize("source", ["official", "demo"])
def test_content_templates_give_the_bytes_of_the_resource_with_its_meta(source: str) -> None:
    resources = official_examples() if source == "official" else demo_population()
    stamp = "2025-03-12T10:11:12.345+00:00"
    for resource in resources:
        id_ = resource.get("id") if isinstance(resource.get("id"), str) else "x"
        expected = fhir_json.dumps(with_meta(resource, id_, 12, stamp))
        assert content_builder(resource, id_)(12, stamp) == expected


def test_content_template_with_client_meta_and_odd_ids() -> None:
    resource = {
        "resourceType": "Patient",
        "meta": {"versionId": "9", "lastUpdated": "2000-01-01T00:00:00Z", "tag": [{"code": "x"}]},
        "name": [{"text": '"meta":{"versionId":"0","lastUpdated":""'}],
    }
    for id_ in ("a", 'we"ird', "é"):
        expected = fhir_json.dumps(with_meta(resource, id_, 3, "2025-01-01T00:00:00Z"))
        assert content_builder(resource, id_)(3, "2025-01-01T00:00:00Z") == expected


def test_examples_folder_is_there() -> None:
    assert isinstance(_ensure_examples(), Path)
