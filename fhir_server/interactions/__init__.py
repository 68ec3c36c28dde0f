"""The RESTful interactions of https://hl7.org/fhir/R4/http.html, free of any web framework.

Each interaction takes a :class:`Context` and returns a :class:`FhirResponse`; the routes
translate HTTP to and from these.
"""

from fhir_server.interactions.context import Context, FhirResponse

__all__ = ["Context", "FhirResponse"]
