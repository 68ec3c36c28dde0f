"""Serving the portal's built files at ``/portal/`` (the app's own ``config.json`` names
the FHIR server it talks to and its client id).

The page gets a Content-Security-Policy that lets it run only its own script and style
and talk only to its own origin and the FHIR server's; the hashed assets are cached for
good, the page and its settings are revalidated on every load.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException

from fhir_server.config import Settings
from fhir_server.portal.client import APP_SCOPE

STATIC = Path(__file__).parent / "static"
_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".webmanifest": "application/manifest+json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".txt": "text/plain; charset=utf-8",
}


def portal_router(settings: Settings) -> APIRouter:
    router = APIRouter()

    def fhir_base(request: Request) -> str:
        if settings.portal_fhir_base_url:
            return settings.portal_fhir_base_url.rstrip("/")
        if settings.base_url:
            return settings.base_url
        return str(request.base_url).rstrip("/") + "/fhir"

    def policy(request: Request) -> str:
        connect = {"'self'"}
        base = urlsplit(fhir_base(request))
        if base.scheme and base.netloc:
            connect.add(f"{base.scheme}://{base.netloc}")
        return (
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
            f" connect-src {' '.join(sorted(connect))}; manifest-src 'self';"
            " frame-ancestors 'none'; base-uri 'none'; form-action 'none'; object-src 'none'"
        )

    async def to_page(request: Request) -> Response:
        return RedirectResponse(str(request.url.replace(path=request.url.path + "/")), 308)

    async def page(request: Request) -> Response:
        return _file(STATIC / "index.html", "no-cache", policy(request))

    async def config(request: Request) -> Response:
        body = {
            "fhirBaseUrl": fhir_base(request),
            "clientId": settings.portal_client_id,
            "scope": APP_SCOPE,
            # FHIR_SERVER_AUTH=off: no sign-in to be had here (the welcome page says so)
            "signIn": settings.auth == "smart" or bool(settings.portal_fhir_base_url),
        }
        return JSONResponse(body, headers={"Cache-Control": "no-cache"})

    async def asset(request: Request, path: str) -> Response:
        target = (STATIC / path).resolve()
        if not target.is_relative_to(STATIC.resolve()) or not target.is_file():
            raise HTTPException(404)
        immutable = path.startswith("assets/")
        cache = "public, max-age=31536000, immutable" if immutable else "no-cache"
        return _file(target, cache, policy(request))

    router.add_api_route("/portal", to_page, methods=["GET"], include_in_schema=False)
    router.add_api_route("/portal/", page, methods=["GET", "HEAD"], include_in_schema=False)
    router.add_api_route("/portal/config.json", config, methods=["GET"], include_in_schema=False)
    router.add_api_route(
        "/portal/{path:path}", asset, methods=["GET", "HEAD"], include_in_schema=False
    )
    return router


def _file(path: Path, cache: str, csp: str) -> Response:
    headers = {
        "Cache-Control": cache,
        "Content-Security-Policy": csp,
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
    }
    media_type = _TYPES.get(path.suffix, "application/octet-stream")
    return FileResponse(path, media_type=media_type, headers=headers)
