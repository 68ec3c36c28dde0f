"""The query strings of the links the server writes (``self``, ``next``, …) are exactly
``urllib.parse.urlencode``'s, and Bundle ids are valid, distinct FHIR ids
(https://hl7.org/fhir/R4/search.html#self, https://hl7.org/fhir/R4/datatypes.html#id)."""

from __future__ import annotations

import random
import re
from urllib.parse import urlencode

from fhir_server.interactions.context import bundle_id, query_string


def test_query_string_is_urlencode() -> None:
    rng = random.Random(7)
    alphabet = "".join(chr(c) for c in range(32, 400)) + "~_.-|:/,$"
    cases: list[list[tuple[str, str]]] = [
        [],
        [("", "")],
        [("patient", "demo-pat-1"), ("code", "http://loinc.org|8867-4"), ("_sort", "-date")],
        [("name", "José Ñ"), ("a b", "c+d&e=f"), ("_cursor", "AbC-_.~09")],
    ]
    for _ in range(500):
        cases.append(
            [
                (
                    "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8))),
                    "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))),
                )
                for _ in range(rng.randint(1, 4))
            ]
        )
    for params in cases:
        assert query_string(params) == urlencode(params), params


def test_bundle_ids_are_distinct_fhir_ids() -> None:
    ids = {bundle_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", i) for i in ids)
