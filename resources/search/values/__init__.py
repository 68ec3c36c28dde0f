"""Parsers for the values of search parameters, one module per parameter type.

https://hl7.org/fhir/R4/search.html#ptypes: each module turns the text of one value
(already split on the commas that mean OR) into a typed match of the query IR
(``resources.search.query``). ``clause`` dispatches by parameter type and modifier,
``results`` parses the result parameters (``_sort``, ``_count``, ``_include``, ...).
"""
