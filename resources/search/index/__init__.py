"""Index extraction per search parameter type (https://hl7.org/fhir/R4/search.html):
one module per type turns evaluated FHIRPath items into index rows."""
