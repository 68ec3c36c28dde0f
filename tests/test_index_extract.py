"""The per-type indexer: which parameters it indexes, and sort keys
(https://hl7.org/fhir/R4/search.html#all, https://hl7.org/fhir/R4/search.html#sort)."""

from __future__ import annotations

from typing import Any

from resources.definitions import resource_types
from resources.search.extract import Indexer, indexer_for
from resources.search.model import DateRow, ParamType, SearchParam, SortKey, TokenRow
from resources.search.parameters import search_params


def param(code: str, type_: ParamType, expression: str | None) -> SearchParam:
    return SearchParam("Patient", code, type_, expression)


def indexer(*params: SearchParam) -> Indexer:
    return Indexer({p.code: p for p in params}, "Patient")


PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "id": "p1",
    "meta": {"lastUpdated": "2024-05-01T10:00:00.000Z"},
    "name": [{"family": "Zeta", "given": ["Anna"]}, {"family": "Alpha"}],
    "birthDate": "1970-06",
    "identifier": [{"system": "s", "value": "9"}, {"system": "s", "value": "10"}],
    "generalPractitioner": [{"reference": "Practitioner/b"}, {"reference": "Practitioner/a"}],
}


def sort_keys(*params: SearchParam) -> dict[str, SortKey]:
    return {key.code: key for key in indexer(*params).sort_keys(PATIENT)}


def test_id_and_last_updated_are_always_indexed() -> None:
    assert set(indexer().extract(PATIENT)) == {
        TokenRow("_id", None, "p1"),
        DateRow("_lastUpdated", "2024-05-01T10:00:00.000Z", "2024-05-01T10:00:00.001Z"),
    }


def test_parameters_without_expression_are_skipped() -> None:
    assert "age" not in indexer(param("age", "number", None)).codes


def test_special_parameters_are_skipped() -> None:
    assert "near" not in indexer(param("near", "special", "Patient.address")).codes


def test_index_returns_rows_and_sort_keys_together() -> None:
    built = indexer(param("family", "string", "Patient.name.family"))
    rows, keys = built.index(PATIENT)
    assert rows == built.extract(PATIENT)
    assert keys == built.sort_keys(PATIENT)


def test_string_sort_key_is_the_lowest_and_highest_normalized_value() -> None:
    keys = sort_keys(param("family", "string", "Patient.name.family"))
    assert keys["family"] == SortKey("family", "alpha", "zeta")


def test_token_sort_key_is_by_code() -> None:
    keys = sort_keys(param("identifier", "token", "Patient.identifier"))
    assert keys["identifier"] == SortKey("identifier", "10", "9")


def test_date_sort_key_is_the_earliest_start_and_latest_end() -> None:
    keys = sort_keys(param("birthdate", "date", "Patient.birthDate"))
    assert keys["birthdate"] == SortKey(
        "birthdate", "1970-06-01T00:00:00.000Z", "1970-07-01T00:00:00.000Z"
    )


def test_reference_sort_key_is_type_and_id() -> None:
    keys = sort_keys(param("general-practitioner", "reference", "Patient.generalPractitioner"))
    assert keys["general-practitioner"] == SortKey(
        "general-practitioner", "Practitioner/a", "Practitioner/b"
    )


def test_number_sort_key_is_by_value() -> None:
    resource = {"resourceType": "RiskAssessment", "prediction": [{"probabilityDecimal": 0.5}]}
    resource["prediction"].append({"probabilityDecimal": 0.125})
    p = SearchParam(
        "RiskAssessment", "probability", "number", "RiskAssessment.prediction.probability"
    )
    keys = {k.code: k for k in Indexer({"probability": p}).sort_keys(resource)}
    assert keys["probability"] == SortKey("probability", 0.125, 0.5)


def test_parameters_without_values_have_no_sort_key() -> None:
    keys = sort_keys(param("phone", "token", "Patient.telecom.where(system='phone')"))
    assert "phone" not in keys


def test_indexer_for_uses_the_r4_definitions() -> None:
    built = indexer_for("Patient")
    assert {"name", "birthdate", "identifier", "general-practitioner", "_id"} <= set(built.codes)
    assert indexer_for("Patient") is built


def test_every_r4_search_parameter_compiles_natively() -> None:
    slow = {
        type_: indexer_for(type_).fallbacks
        for type_ in sorted(resource_types())
        if indexer_for(type_).fallbacks
    }
    assert slow == {}


def test_every_r4_parameter_with_an_expression_is_indexed() -> None:
    for type_ in sorted(resource_types()):
        expected = {c for c, p in search_params(type_).items() if p.type != "special"}
        assert expected <= set(indexer_for(type_).codes), type_


def test_malformed_values_are_skipped_not_raised() -> None:
    odd: list[Any] = [None, 1, "x", [], {}, [None, 2], {"coding": 3}, True, {"reference": 5}]
    for value in odd:
        resource = {"resourceType": "Patient", "id": "p1"}
        for key in ("name", "telecom", "identifier", "birthDate", "address", "link", "meta"):
            resource[key] = value
        resource["generalPractitioner"] = [value]
        rows = indexer_for("Patient").extract(resource)
        assert TokenRow("_id", None, "p1") in rows
