"""``/docs`` (Swagger UI) and ``/redoc`` served from the installed package: they work air-gapped; and the
OpenAPI document's error responses made truthful (:func:`install_openapi`).

FastAPI's own pages load their JavaScript and CSS from a CDN.  The same assets ship in the maintained
``fastapi-offline`` wheel (Swagger UI's bundle and CSS, ReDoc's standalone build); they are served here
from its folder under ``/docs-assets``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_URL = "/docs-assets"
ASSETS_DIR = Path(fastapi_offline.__file__).parent / "static"


def install_docs(app: FastAPI) -> None:
    """Serve ``/docs``, its OAuth2 redirect page and ``/redoc`` with assets from :data:`ASSETS_DIR`.

    The app must be created with ``docs_url=None, redoc_url=None`` (FastAPI's CDN pages)."""
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS_DIR), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"
    oauth2_redirect = app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url, title=f"{app.title} - Swagger UI", oauth2_redirect_url=oauth2_redirect,
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js", swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_URL}/favicon.png")

    @app.get(oauth2_redirect, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url=openapi_url, title=f"{app.title} - ReDoc",
                              redoc_js_url=f"{ASSETS_URL}/redoc.standalone.js", with_google_fonts=False,
                              redoc_favicon_url=f"{ASSETS_URL}/favicon.png")


ERROR_SCHEMA_REF = "#/components/schemas/AnyErrorResponse"
_FASTAPI_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")


def truthful_error_responses(schema: dict[str, Any]) -> dict[str, Any]:
    """Make every documented 4xx/5xx say what the API really sends: ``{detail, code, request_id, timestamp}``
    (``AnyErrorResponse``), never FastAPI's ``HTTPValidationError`` (``detail`` as an array), which the error
    handlers of :mod:`kubetask.api.errors` never produce. 503s also document ``Retry-After``."""
    for path_item in (schema.get("paths") or {}).values():
        for operation in path_item.values():
            if not isinstance(operation, dict):
                continue
            for code, response in (operation.get("responses") or {}).items():
                if str(code)[:1] not in ("4", "5"):
                    continue
                content = response.setdefault("content", {})
                media = content.get("application/json")
                ref = ((media or {}).get("schema") or {}).get("$ref", "")
                if media is None or ref.rsplit("/", 1)[-1] in _FASTAPI_VALIDATION_SCHEMAS:
                    content["application/json"] = {"schema": {"$ref": ERROR_SCHEMA_REF}}
                    if str(code) == "422":
                        response["description"] = "Validation error naming the field (``field``, ``errors``)"
                if str(code) == "503":
                    response.setdefault("headers", {})["Retry-After"] = {
                        "description": "Seconds to wait before retrying (sent while Kubernetes is unavailable)",
                        "schema": {"type": "integer"}}
    components = schema.get("components", {}).get("schemas", {})
    text = json.dumps(schema.get("paths"))
    for name in _FASTAPI_VALIDATION_SCHEMAS:
        if f"#/components/schemas/{name}" not in text:
            components.pop(name, None)
    return schema


def install_openapi(app: FastAPI) -> None:
    """``app.openapi()`` = FastAPI's document passed through :func:`truthful_error_responses` (once)."""
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = truthful_error_responses(FastAPI.openapi(app))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
