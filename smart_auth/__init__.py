"""SMART on FHIR authorization server (SMART App Launch 2.x,
https://hl7.org/fhir/smart-app-launch/).

Never imports ``fhir_server``: the FHIR server uses this package, not the other way round.
"""
