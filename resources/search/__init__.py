"""FHIR search knowledge without I/O: parameters, index extraction, query parsing.

https://hl7.org/fhir/R4/search.html
"""
