"""Validate a resource a client sent, before it is stored (FHIR R4 4.0.1).

https://hl7.org/fhir/R4/validation.html: the JSON representation
(https://hl7.org/fhir/R4/json.html), the element structure of each resource and datatype
(https://hl7.org/fhir/R4/elementdefinition.html), primitive value formats
(https://hl7.org/fhir/R4/datatypes.html#primitive), required bindings
(https://hl7.org/fhir/R4/terminologies.html#required), rule ele-1
(https://hl7.org/fhir/R4/element.html#invs), the other invariants of the R4 resources and
datatypes (https://hl7.org/fhir/R4/conformance-rules.html#constraints), the narrative's
XHTML (https://hl7.org/fhir/R4/narrative.html#xhtml), the 1 MB limit of strings
(https://hl7.org/fhir/R4/datatypes.html#string) and the rules of Bundles kept as
resources (https://hl7.org/fhir/R4/bundle.html).

- ``structure``: the element structure, compiled once per definition path from the R4
  StructureDefinitions (the ``elements`` section of ``resources/data/r4_core.json``);
- ``primitives``: JSON types and formats of primitive values, binding messages;
- ``walk``: one pass over the JSON against the structure;
- ``invariants``: the constraints, from ``resources/data/r4_constraints.json``, compiled
  once per definition path by ``fhirpath_parse`` and ``fhirpath_eval`` (which are checked,
  which are skipped and why: its docstring, ``SKIPPED``, ``checked()``);
- ``narrative``: the XHTML of ``Narrative.div``, parsed with expat (no DTDs or entities);
- ``bundle``: fullUrls, duplicates, documents and search sets;
- ``validator``: ``validate()``.

Every R4 resource type is covered (``validator_covers``), the R4 types the fhir.resources
R4B models lack (``MedicinalProduct``, ``SubstanceSpecification`` ...) or redesigned
(``Evidence``, ``EvidenceVariable``) included.

``r4_models`` reads the same structure from the fhir.resources R4B models, corrected to R4
(the validator used it before it had its own structure); only the tests use it now, to
compare the two (fhir.resources is a test dependency).
"""

from resources.validation.structure import validator_covers
from resources.validation.validator import validate

__all__ = ["validate", "validator_covers"]
