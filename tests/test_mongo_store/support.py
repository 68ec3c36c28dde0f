"""Helpers of the MongoDB store tests: write requests as the store gets them."""

from __future__ import annotations

import os

from fhir_server.storage.base import (
    IndexEntries,
    WriteRequest,
)
from resources.search.model import SearchParam, TokenRow
from resources.search.query import Clause, SearchQuery, TokenMatch

MONGODB_URI = os.environ.get("MONGODB_URI")


def body(text: str):
    return lambda version, last_updated: (
        f'{{"resourceType":"Basic","v":{version},"lu":"{last_updated}",{text}}}'.encode()
    )


def put(type_: str, id_: str, text: str = '"x":1', **kwargs) -> WriteRequest:
    return WriteRequest(type_, id_, "update", body(text), **kwargs)


CODE = SearchParam("Basic", "code", "token", "Basic.code")
TAGGED = IndexEntries([TokenRow("code", "http://x", "tag")])
IF_NONE_EXIST = SearchQuery(
    types=("Basic",), conditions=[Clause(CODE, (TokenMatch(system="http://x", code="tag"),))]
)


def conditional_create(id_: str) -> WriteRequest:
    return WriteRequest(
        "Basic",
        id_,
        "create",
        body('"code":"tag"'),
        must_not_exist=True,
        index=TAGGED,
        unless_exists=IF_NONE_EXIST,
    )


def delete(type_: str, id_: str, **kwargs) -> WriteRequest:
    return WriteRequest(type_, id_, "delete", **kwargs)
