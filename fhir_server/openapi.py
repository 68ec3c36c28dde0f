"""The OpenAPI 3.1 description the server publishes at ``/openapi.json``
(https://spec.openapis.org/oas/v3.1.0), made from what the server really serves: the
FHIR RESTful API of https://hl7.org/fhir/R4/http.html (the resource types and
interactions of the support table, the operations with their parameters), the SMART
authorization server's endpoints (https://hl7.org/fhir/smart-app-launch/ and the OAuth
RFCs they follow), the account API, the payment webhook and the probes.

FHIR's paths are generic (``/fhir/{type}/{id}``, the type an enumeration of the types
served) rather than one per type, so the document stays small; search takes any
parameter (``additionalProperties``) besides the common ones. Bodies are described by
media type and shape (a resource with its ``resourceType``; a JSON Patch array; a form).
API clients and fuzzers (the tests run Schemathesis over it) read it; it is no FHIR
conformance statement (that is ``/fhir/metadata``).
"""

from __future__ import annotations

from typing import Any

from capability.support import OperationDefinition, SupportTable

ID = {"type": "string", "pattern": "^[A-Za-z0-9\\-\\.]{1,64}$"}
_FHIR_JSON = "application/fhir+json"
_COMMON_SEARCH = (
    ("_id", "string"),
    ("_lastUpdated", "string"),
    ("_count", "integer"),
    ("_sort", "string"),
    ("_elements", "string"),
    ("_summary", "string"),
    ("_total", "string"),
    ("_include", "string"),
    ("_revinclude", "string"),
    ("_format", "string"),
)


def build_openapi(table: SupportTable, version: str, smart: bool) -> dict[str, Any]:
    """The OpenAPI document of a server serving ``table`` (``smart``: with the
    authorization server's endpoints and bearer security)."""
    types = sorted(table.types)
    paths: dict[str, Any] = {}
    paths.update(_fhir_paths(types))
    for definition in table.operations:
        path, item = _operation_path(definition)
        paths.setdefault(path, {}).update(item)
    paths.update(_probe_paths())
    paths["/payments/webhook"] = {
        "post": {
            "summary": "The payment processor's signed webhook (Stripe)",
            "tags": ["payments"],
            "security": [],
            "requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}},
            "responses": _responses("200", "400"),
        }
    }
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "fhir-server",
            "version": version,
            "description": "FHIR R4 (4.0.1) RESTful API with a SMART App Launch 2.x"
            " authorization server. The FHIR capability statement: GET /fhir/metadata.",
        },
        "paths": paths,
        "components": {"schemas": _schemas(types)},
    }
    if smart:
        paths.update(_auth_paths())
        document["components"]["securitySchemes"] = {
            "smart": {
                "type": "oauth2",
                "flows": {
                    "authorizationCode": {
                        "authorizationUrl": "/auth/authorize",
                        "tokenUrl": "/auth/token",
                        "scopes": {},
                    },
                    "clientCredentials": {"tokenUrl": "/auth/token", "scopes": {}},
                },
            }
        }
        document["security"] = [{"smart": []}]
    return document


# -- FHIR ----------------------------------------------------------------------------------


def _schemas(types: list[str]) -> dict[str, Any]:
    resource = {
        "type": "object",
        "required": ["resourceType"],
        "properties": {"resourceType": {"enum": types}, "id": ID},
    }
    return {
        "Resource": resource,
        "Bundle": {
            "type": "object",
            "required": ["resourceType", "type"],
            "properties": {
                "resourceType": {"const": "Bundle"},
                "type": {"enum": ["batch", "transaction"]},
                "entry": {"type": "array", "items": {"type": "object"}},
            },
        },
        "Parameters": {
            "type": "object",
            "required": ["resourceType"],
            "properties": {
                "resourceType": {"const": "Parameters"},
                "parameter": {"type": "array", "items": {"type": "object"}},
            },
        },
        "JsonPatch": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["op", "path"],
                "properties": {
                    "op": {"enum": ["add", "remove", "replace", "move", "copy", "test"]},
                    "path": {"type": "string"},
                },
            },
        },
        "OperationOutcome": {
            "type": "object",
            "required": ["resourceType", "issue"],
            "properties": {"resourceType": {"const": "OperationOutcome"}},
        },
    }


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _responses(*codes: str) -> dict[str, Any]:
    described = {
        "200": "OK",
        "201": "Created",
        "202": "Accepted (an asynchronous request)",
        "204": "No content",
        "302": "Redirect",
        "303": "See other",
        "304": "Not modified",
        "400": "Bad request (an OperationOutcome or an OAuth error)",
        "401": "No or a bad access token",
        "403": "Not allowed for this token",
        "404": "Not found",
        "409": "Conflict",
        "410": "Gone (deleted)",
        "412": "Precondition failed (If-Match)",
        "422": "Unprocessable (a business rule)",
        "429": "Too many requests (Retry-After)",
        "503": "Not ready (Retry-After)",
    }
    return {code: {"description": described[code]} for code in codes}


_ERRORS = ("400", "401", "403", "404", "429")


def _path_params(*names: str, types: list[str] | None = None) -> list[dict[str, Any]]:
    out = []
    for name in names:
        schema: dict[str, Any] = {"enum": types} if name in ("type", "compartment") else ID
        if name == "compartment":
            schema = {"enum": ["Patient", "Encounter", "Practitioner", "RelatedPerson", "Device"]}
        out.append({"name": name, "in": "path", "required": True, "schema": schema})
    return out


def _search_params() -> list[dict[str, Any]]:
    common = [
        {"name": name, "in": "query", "required": False, "schema": {"type": kind}}
        for name, kind in _COMMON_SEARCH
    ]
    any_other = {
        "name": "criteria",
        "in": "query",
        "required": False,
        "description": "Any search parameter of the type (https://hl7.org/fhir/R4/search.html)",
        "style": "form",
        "explode": True,
        "schema": {"type": "object", "additionalProperties": {"type": "string"}},
    }
    return [*common, any_other]


def _body(schema: dict[str, Any], media: str = _FHIR_JSON) -> dict[str, Any]:
    return {"required": True, "content": {media: {"schema": schema}}}


def _fhir_paths(types: list[str]) -> dict[str, Any]:
    t = _path_params("type", types=types)
    ti = _path_params("type", "id", types=types)
    tiv = _path_params("type", "id", "vid", types=types)
    tags = ["FHIR"]
    return {
        "/fhir/metadata": {
            "get": {
                "summary": "The CapabilityStatement",
                "tags": tags,
                "security": [],
                "responses": _responses("200"),
            }
        },
        "/fhir": {
            "post": {
                "summary": "Batch or transaction",
                "tags": tags,
                "requestBody": _body(_ref("Bundle")),
                "responses": _responses("200", *_ERRORS, "409", "412", "422"),
            },
            "get": {
                "summary": "Search every type",
                "tags": tags,
                "parameters": [*_search_params(), _types_param()],
                "responses": _responses("200", *_ERRORS),
            },
        },
        "/fhir/_history": {
            "get": {
                "summary": "History of the server",
                "tags": tags,
                "parameters": _history_params(),
                "responses": _responses("200", *_ERRORS),
            }
        },
        "/fhir/{type}": {
            "get": {
                "summary": "Search a type",
                "tags": tags,
                "parameters": [*t, *_search_params()],
                "responses": _responses("200", *_ERRORS),
            },
            "post": {
                "summary": "Create (conditional with If-None-Exist)",
                "tags": tags,
                "parameters": t,
                "requestBody": _body(_ref("Resource")),
                "responses": _responses("200", "201", *_ERRORS, "409", "412", "422"),
            },
            "put": {
                "summary": "Conditional update",
                "tags": tags,
                "parameters": [*t, *_search_params()],
                "requestBody": _body(_ref("Resource")),
                "responses": _responses("200", "201", *_ERRORS, "412", "422"),
            },
            "delete": {
                "summary": "Conditional delete",
                "tags": tags,
                "parameters": [*t, *_search_params()],
                "responses": _responses("200", "204", *_ERRORS, "412"),
            },
        },
        "/fhir/{type}/_search": {
            "post": {
                "summary": "Search a type by form",
                "tags": tags,
                "parameters": t,
                "requestBody": _body(
                    {"type": "object", "additionalProperties": {"type": "string"}},
                    "application/x-www-form-urlencoded",
                ),
                "responses": _responses("200", *_ERRORS),
            }
        },
        "/fhir/{type}/_history": {
            "get": {
                "summary": "History of a type",
                "tags": tags,
                "parameters": [*t, *_history_params()],
                "responses": _responses("200", *_ERRORS),
            }
        },
        "/fhir/{type}/{id}": {
            "get": {
                "summary": "Read",
                "tags": tags,
                "parameters": ti,
                "responses": _responses("200", "304", *_ERRORS, "410"),
            },
            "put": {
                "summary": "Update (or create with this id)",
                "tags": tags,
                "parameters": ti,
                "requestBody": _body(_ref("Resource")),
                "responses": _responses("200", "201", *_ERRORS, "409", "412", "422"),
            },
            "patch": {
                "summary": "Patch (JSON Patch, FHIRPath Patch or JSON Merge Patch)",
                "tags": tags,
                "parameters": ti,
                "requestBody": _body(_ref("JsonPatch"), "application/json-patch+json"),
                "responses": _responses("200", *_ERRORS, "409", "412", "422"),
            },
            "delete": {
                "summary": "Delete",
                "tags": tags,
                "parameters": ti,
                "responses": _responses("200", "204", *_ERRORS, "409", "412"),
            },
        },
        "/fhir/{type}/{id}/_history": {
            "get": {
                "summary": "History of a resource",
                "tags": tags,
                "parameters": [*ti, *_history_params()],
                "responses": _responses("200", *_ERRORS),
            }
        },
        "/fhir/{type}/{id}/_history/{vid}": {
            "get": {
                "summary": "Read a version",
                "tags": tags,
                "parameters": tiv,
                "responses": _responses("200", *_ERRORS, "410"),
            }
        },
        "/fhir/{compartment}/{id}/{type}": {
            "get": {
                "summary": "Search a compartment",
                "tags": tags,
                "parameters": [
                    *_path_params("compartment", "id", "type", types=types),
                    *_search_params(),
                ],
                "responses": _responses("200", *_ERRORS),
            }
        },
    }


def _types_param() -> dict[str, Any]:
    return {"name": "_type", "in": "query", "required": False, "schema": {"type": "string"}}


def _history_params() -> list[dict[str, Any]]:
    return [
        {"name": name, "in": "query", "required": False, "schema": {"type": kind}}
        for name, kind in (("_count", "integer"), ("_since", "string"), ("_at", "string"))
    ]


_OPERATION_TYPES = {
    "string": {"type": "string"},
    "code": {"type": "string"},
    "uri": {"type": "string"},
    "url": {"type": "string"},
    "id": ID,
    "boolean": {"type": "boolean"},
    "integer": {"type": "integer"},
    "positiveInt": {"type": "integer", "minimum": 1},
    "unsignedInt": {"type": "integer", "minimum": 0},
    "decimal": {"type": "number"},
    "date": {"type": "string"},
    "dateTime": {"type": "string"},
    "instant": {"type": "string"},
}


def _operation_path(definition: OperationDefinition) -> tuple[str, dict[str, Any]]:
    name = f"${definition.name}"
    if definition.level == "system":
        path, params = f"/fhir/{name}", []
    else:
        types = list(definition.resource_types)
        type_segment = types[0] if len(types) == 1 else "{type}"
        params = [] if len(types) == 1 else _path_params("type", types=types)
        if definition.level == "type":
            path = f"/fhir/{type_segment}/{name}"
        else:
            path = f"/fhir/{type_segment}/{{id}}/{name}"
            params = [*params, *_path_params("id")]
    query = [
        {
            "name": p.name,
            "in": "query",
            "required": p.min > 0,
            "description": p.documentation,
            "schema": _OPERATION_TYPES.get(p.type, {"type": "string"}),
        }
        for p in definition.parameters
        if p.use == "in" and p.type in _OPERATION_TYPES
    ]
    item: dict[str, Any] = {}
    summary = definition.documentation.split(". ")[0][:120] or name
    for method in definition.methods:
        operation: dict[str, Any] = {
            "summary": summary,
            "tags": ["FHIR operations"],
            "parameters": params + (query if method == "GET" else []),
            "responses": _responses("200", "202", *_ERRORS, "409", "422"),
        }
        if method == "POST":
            operation["requestBody"] = {
                "required": False,
                "content": {_FHIR_JSON: {"schema": _ref("Parameters")}},
            }
        item[method.lower()] = operation
    return path, item


# -- the authorization server --------------------------------------------------------------


def _form(properties: dict[str, str], required: tuple[str, ...] = ()) -> dict[str, Any]:
    schema = {
        "type": "object",
        "properties": {
            name: {"type": "string", "description": d} for name, d in properties.items()
        },
        "required": list(required),
    }
    return {
        "required": True,
        "content": {"application/x-www-form-urlencoded": {"schema": schema}},
    }


def _auth_paths() -> dict[str, Any]:
    tags = ["SMART authorization"]
    bearer = [{"smart": []}]
    client_id = _path_params("client_id")
    return {
        "/fhir/.well-known/smart-configuration": {
            "get": {
                "summary": "SMART configuration",
                "tags": tags,
                "security": [],
                "responses": _responses("200"),
            },
        },
        "/fhir/.well-known/openid-configuration": {
            "get": {
                "summary": "OpenID provider metadata",
                "tags": tags,
                "security": [],
                "responses": _responses("200"),
            },
        },
        "/auth/jwks": {
            "get": {
                "summary": "The server's public keys (RFC 7517)",
                "tags": tags,
                "security": [],
                "responses": _responses("200"),
            },
        },
        "/auth/token": {
            "post": {
                "summary": "Token endpoint (RFC 6749 3.2; code with PKCE, refresh,"
                " client credentials with a JWT assertion)",
                "tags": tags,
                "security": [],
                "requestBody": _form(
                    {
                        "grant_type": "authorization_code, refresh_token or client_credentials",
                        "code": "the authorization code",
                        "redirect_uri": "as in the authorization request",
                        "code_verifier": "PKCE (RFC 7636)",
                        "client_id": "a public client's id",
                        "refresh_token": "a refresh token",
                        "scope": "scopes asked for",
                        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:"
                        "jwt-bearer",
                        "client_assertion": "a signed JWT (RFC 7523)",
                    },
                    ("grant_type",),
                ),
                "responses": _responses("200", "400", "401", "429"),
            }
        },
        "/auth/introspect": {
            "post": {
                "summary": "Token introspection (RFC 7662)",
                "tags": tags,
                "security": [],
                "requestBody": _form({"token": "a token", "token_type_hint": "hint"}, ("token",)),
                "responses": _responses("200", "400", "401"),
            }
        },
        "/auth/revoke": {
            "post": {
                "summary": "Token revocation (RFC 7009)",
                "tags": tags,
                "security": [],
                "requestBody": _form({"token": "a token", "token_type_hint": "hint"}, ("token",)),
                "responses": _responses("200", "400", "401"),
            }
        },
        "/auth/register": {
            "post": {
                "summary": "Dynamic client registration (RFC 7591)",
                "tags": tags,
                "requestBody": _body({"type": "object"}, "application/json"),
                "responses": _responses("201", "400", "401", "403", "404"),
            }
        },
        "/auth/register/{client_id}": {
            method: {
                "summary": f"Client registration management (RFC 7592): {method}",
                "tags": tags,
                "parameters": client_id,
                **(
                    {"requestBody": _body({"type": "object"}, "application/json")}
                    if method == "put"
                    else {}
                ),
                "responses": _responses("200", "204", "400", "401"),
            }
            for method in ("get", "put", "delete")
        },
        "/auth/userinfo": {
            method: {
                "summary": "OpenID Connect UserInfo",
                "tags": tags,
                "security": bearer,
                "responses": _responses("200", "401", "403"),
            }
            for method in ("get", "post")
        },
        "/auth/account/apps": {
            "get": {
                "summary": "The apps connected to the signed-in user's account",
                "tags": ["account"],
                "security": bearer,
                "responses": _responses("200", "401", "403"),
            }
        },
        "/auth/account/apps/{client_id}": {
            "delete": {
                "summary": "End an app's access to the account",
                "tags": ["account"],
                "security": bearer,
                "parameters": client_id,
                "responses": _responses("204", "401", "403", "404"),
            }
        },
        "/auth/launch": {
            "post": {
                "summary": "Create an EHR launch context (staff or backend token)",
                "tags": tags,
                "security": bearer,
                "requestBody": _body({"type": "object"}, "application/json"),
                "responses": _responses("201", "400", "401", "403"),
            }
        },
    }


def _probe_paths() -> dict[str, Any]:
    tags = ["operations"]
    return {
        path: {
            "get": {
                "summary": summary,
                "tags": tags,
                "security": [],
                "responses": _responses("200"),
            }
        }
        for path, summary in (
            ("/healthz", "Liveness"),
            ("/readyz", "Readiness (the store answers; else 503)"),
        )
    }
