"""FHIR knowledge without I/O: definitions, lossless JSON, validation, errors.

Nothing in this package imports a web framework or a database driver.
"""
