"""The HTTP side of operations: the routes of every declared operation
(https://hl7.org/fhir/R4/operations.html#executing), built like the interactions'
(``fhir_server.routes``): the caller's token becomes the guarded store of the
``Context``, errors become OperationOutcomes, results are rendered the same way."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from capability.support import OperationDefinition, SupportTable
from fhir_server import operations
from fhir_server.failures import unexpected_failure
from fhir_server.formats import FHIR_JSON, request_body_kind, response_media_type
from fhir_server.interactions.context import check_id
from fhir_server.operations.base import (
    ExtraRoute,
    Invocation,
    OperationHandler,
    OperationResult,
)
from fhir_server.routes import (
    _bounded_body,
    _context,
    _last,
    error_response,
    query_items,
    render,
)
from resources import fhir_json
from resources.errors import FhirError, invalid

Endpoint = Callable[[Request], Awaitable[Response]]


def operation_routes(table: SupportTable) -> Iterator[tuple[str, str, str, Endpoint]]:
    """(code, method, path below ``/fhir``, endpoint) of every operation in ``table``
    and of the extra routes of :data:`fhir_server.operations.OPERATIONS`."""
    handlers = {d: op.handler for op in operations.OPERATIONS for d in op.definitions}
    media = {d: op.media for op in operations.OPERATIONS for d in op.definitions}
    for definition in table.operations:
        for type_, path in _paths(definition):
            endpoint = _invocation_endpoint(
                definition, type_, handlers[definition], media.get(definition, ())
            )
            for method in definition.methods:
                yield definition.code, method, path, endpoint
    for op in operations.OPERATIONS:
        for route in op.routes:
            endpoint = _route_endpoint(route)
            for method in route.methods:
                yield route.path.split("/")[1], method, route.path, endpoint


def _paths(definition: OperationDefinition) -> list[tuple[str | None, str]]:
    """(resource type, path) of each route of ``definition``."""
    name = definition.code
    if definition.level == "system":
        return [(None, f"/{name}")]
    if definition.level == "type":
        return [(type_, f"/{type_}/{name}") for type_ in definition.resource_types]
    return [(type_, f"/{type_}/{{id}}/{name}") for type_ in definition.resource_types]


def _invocation_endpoint(
    definition: OperationDefinition,
    type_: str | None,
    handler: OperationHandler,
    own_media: tuple[str, ...] = (),
) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        params = query_items(request.scope)
        pretty = _last(params, "_pretty").lower() == "true"
        try:
            media = _media(request, params, own_media)
            ctx = _context(request, definition.code, params)
            id_ = request.path_params.get("id")
            if id_ is not None:
                check_id(id_)
            body = None
            if request.method == "POST":
                body = await _parameters_body(request, ctx.settings)
            call = Invocation(
                definition,
                request.method,
                type_,
                id_,
                [*params, *_parameter_items(body)],
                body,
            )
            result = await handler(ctx, call)
        except FhirError as error:
            return error_response(error, pretty)
        except Exception as failure:
            where = f"{request.method} {request.url.path}"
            return error_response(unexpected_failure(failure, where), pretty)
        return result if isinstance(result, Response) else render(result, media, pretty)

    endpoint.__name__ = f"operation_{definition.name}_{type_ or 'system'}_{definition.level}"
    return endpoint


def _media(request: Request, params: list[tuple[str, str]], own: tuple[str, ...]) -> str:
    """The FHIR media type of the answer; when ``Accept`` or ``_format`` asks for one of
    the ``own`` media types of the operation (its handler renders them), FHIR JSON for
    its errors."""
    accept, format_param = request.headers.get("accept"), _last(params, "_format")
    try:
        return response_media_type(accept, format_param)
    except FhirError:
        asked = format_param or accept or ""
        if not any(media in asked or media.split("/")[-1] == asked for media in own):
            raise
        return FHIR_JSON


def _route_endpoint(route: ExtraRoute) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        params = query_items(request.scope)
        pretty = _last(params, "_pretty").lower() == "true"
        media = _lenient_media(request, params)
        try:
            ctx = _context(request, route.path, params)
            result: OperationResult = await route.handler(
                ctx, request.method, **request.path_params
            )
        except FhirError as error:
            return error_response(error, pretty)
        except Exception as failure:
            where = f"{request.method} {request.url.path}"
            return error_response(unexpected_failure(failure, where), pretty)
        return result if isinstance(result, Response) else render(result, media, pretty)

    endpoint.__name__ = "operation_route_" + route.path.split("/")[1].strip("$").replace("-", "_")
    return endpoint


def _lenient_media(request: Request, params: list[tuple[str, str]]) -> str:
    """What an extra route's FHIR answers are sent as: it may serve other media (NDJSON
    files), so an ``Accept`` of those is no 406."""
    try:
        return response_media_type(request.headers.get("accept"), _last(params, "_format"))
    except FhirError:
        return "application/fhir+json"


async def _parameters_body(request: Request, settings: Any) -> dict[str, Any] | None:
    """A POSTed ``Parameters`` resource (None for an empty body)."""
    raw = await _bounded_body(request, settings.max_body_bytes)
    if not raw.strip():
        return None
    request_body_kind(request.headers.get("content-type"), allow_json_patch=False)
    fhir_json.check_depth(raw, settings.max_json_depth)
    body = fhir_json.loads(raw)
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise invalid("An operation's body must be a Parameters resource", "Parameters")
    if not isinstance(body.get("parameter", []), list):
        raise invalid("Parameters.parameter must be an array", "Parameters.parameter")
    return body


def _parameter_items(body: dict[str, Any] | None) -> list[tuple[str, str]]:
    """``(name, value)`` of the body's parameters with a primitive or Reference value."""
    items: list[tuple[str, str]] = []
    for index, parameter in enumerate((body or {}).get("parameter", [])):
        where = f"Parameters.parameter[{index}]"
        if not isinstance(parameter, dict) or not isinstance(parameter.get("name"), str):
            raise invalid("A parameter needs a name", where)
        for key, value in parameter.items():
            if not key.startswith("value"):
                continue
            if isinstance(value, bool):
                items.append((parameter["name"], "true" if value else "false"))
            elif isinstance(value, str | int | float):
                items.append((parameter["name"], str(value)))
            elif key == "valueReference" and isinstance(value, dict):
                reference = value.get("reference")
                if not isinstance(reference, str):
                    raise invalid("valueReference needs a reference", f"{where}.valueReference")
                items.append((parameter["name"], reference))
    return items
