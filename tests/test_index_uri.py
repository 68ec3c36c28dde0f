"""URI index values (https://hl7.org/fhir/R4/search.html#uri)."""

from __future__ import annotations

from typing import Any

from resources.search.extract import Indexer
from resources.search.model import SearchParam, UriRow


def rows(resource: dict[str, Any], expression: str) -> list:
    type_name = resource["resourceType"]
    indexer = Indexer({"p": SearchParam(type_name, "p", "uri", expression)}, type_name)
    return [row for row in indexer.extract(resource) if row.code == "p"]


def test_a_uri_is_indexed_as_written() -> None:
    resource = {"resourceType": "ValueSet", "url": "http://hl7.org/fhir/ValueSet/Example"}
    assert rows(resource, "ValueSet.url") == [UriRow("p", "http://hl7.org/fhir/ValueSet/Example")]


def test_each_profile_is_a_row() -> None:
    meta = {"profile": ["http://a.org/p1", "http://a.org/p2|1.0"]}
    resource = {"resourceType": "Patient", "meta": meta}
    assert rows(resource, "Patient.meta.profile") == [
        UriRow("p", "http://a.org/p1"),
        UriRow("p", "http://a.org/p2|1.0"),
    ]
