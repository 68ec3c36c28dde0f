"""Stores: the `Store` protocol and its implementations (SQLite embedded, MongoDB)."""

from fhir_server.storage.base import Store
from fhir_server.storage.open import open_store

__all__ = ["Store", "open_store"]
