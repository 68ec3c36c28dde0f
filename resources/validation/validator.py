"""Validate a resource a client sent, before it is stored: one walk over its JSON against
the R4 structure compiled from the StructureDefinitions.

https://hl7.org/fhir/R4/validation.html (structure, cardinality, value domains and
required bindings, https://hl7.org/fhir/R4/elementdefinition.html). See ``walk`` for what
is checked and ``structure`` for where the element structure comes from.
"""

from __future__ import annotations

import logging
from typing import Any

from resources.errors import Issue
from resources.validation.walk import Walk

log = logging.getLogger(__name__)


def validate(resource: dict[str, Any]) -> list[Issue]:
    """All the problems of a resource (as parsed by ``fhir_json.loads``); [] when valid."""
    walk = Walk()
    try:
        walk.resource(resource, "")
        return walk.result()
    except RecursionError:
        return [Issue("structure", "The resource is nested too deeply to be validated")]
    except Exception:  # a validator bug must not become a 500; the tests keep it at zero
        if walk.issues:
            return walk.issues
        log.exception("validation failed unexpectedly")
        return [Issue("exception", "The resource could not be validated")]
