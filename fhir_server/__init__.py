"""FHIR R4 server: HTTP layer and assembly (config, app, routes, interactions, storage)."""
