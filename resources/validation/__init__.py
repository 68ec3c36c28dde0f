"""Validate a resource a client sent, before it is stored (FHIR R4 4.0.1).

https://hl7.org/fhir/R4/validation.html: the JSON representation
(https://hl7.org/fhir/R4/json.html), the element structure of each resource and datatype
(https://hl7.org/fhir/R4/elementdefinition.html), primitive value formats
(https://hl7.org/fhir/R4/datatypes.html#primitive), required bindings
(https://hl7.org/fhir/R4/terminologies.html#required) and rule ele-1
(https://hl7.org/fhir/R4/element.html#invs).

- ``r4_models``: the element structure, from the fhir.resources R4B models corrected to
  R4 (the only module that imports fhir.resources);
- ``primitives``: JSON types and formats of primitive values, binding messages;
- ``json_walk``: one pass over the JSON for what the models do not check;
- ``validator``: ``validate()``, the walk and then the model, as one list of issues.
"""

from resources.validation.r4_models import validator_covers
from resources.validation.validator import validate

__all__ = ["validate", "validator_covers"]
