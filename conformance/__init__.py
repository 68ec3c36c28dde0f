"""Black-box HTTP conformance kit for FHIR R4 servers.

Cases are data (``conformance/cases/*.json``, checked against ``case.schema.json``); the
runner sends them to any FHIR base URL and reports each case's pass or failure. The cases
are worked out from the RESTful API spec, https://hl7.org/fhir/R4/http.html. The kit talks
HTTP only: it never imports the server.

    python -m conformance --base-url http://127.0.0.1:8080/fhir [--case NAME] [--token T]
"""

from conformance.loader import Case, CaseFileError, load_cases, select_cases
from conformance.runner import CaseResult, Report, run

__all__ = ["Case", "CaseFileError", "CaseResult", "Report", "load_cases", "run", "select_cases"]
