"""The API's documentation pages, served whole by the application (issue 20): no CDN, no internet.

``/docs`` (Swagger UI) and ``/redoc`` (ReDoc) load their scripts, styles and favicon from
``/static/docs/``: the files of the ``fastapi-offline`` wheel (MIT; swagger-ui-dist and the ReDoc
standalone bundle, pinned in deploy/requirements.lock), plus Swagger UI's start-up script, which is
served as a file too so that no page runs an inline script. Each page sends a Content-Security-Policy
that allows only this origin (ReDoc also needs inline styles and a blob: worker for its search) and
forbids framing (docs/security.md). The pages and their files are outside the OpenAPI document.
"""

from __future__ import annotations

from html import escape
from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from starlette.exceptions import HTTPException

STATIC = "/static/docs"
_VENDOR = Path(str(files("fastapi_offline") / "static"))
_JS = "text/javascript; charset=utf-8"
ASSETS: dict[str, tuple[Path, str]] = {
    "swagger-ui-bundle.js": (_VENDOR / "swagger-ui-bundle.js", _JS),
    "swagger-ui.css": (_VENDOR / "swagger-ui.css", "text/css; charset=utf-8"),
    "redoc.standalone.js": (_VENDOR / "redoc.standalone.js", _JS),
    "favicon.png": (_VENDOR / "favicon.png", "image/png"),
}

# Swagger UI's start: the document's address comes from the page (data-openapi-url), so this file
# is the same for every deployment. validatorUrl null: no badge fetched from swagger.io.
SWAGGER_INIT_JS = """\
"use strict";
(function () {
  var node = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: node.dataset.openapiUrl,
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
  });
})();
"""

_COMMON = ("default-src 'none'; script-src 'self'; img-src 'self' data:; font-src 'self' data:; "
           "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SWAGGER_CSP = f"{_COMMON}; style-src 'self'"
# ReDoc styles itself with generated <style> elements and runs its search in a worker from a blob.
REDOC_CSP = f"{_COMMON}; style-src 'self' 'unsafe-inline'; worker-src 'self' blob:"
_HEADERS = {"X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-cache"}


def _page(title: str, head: str, body: str, csp: str) -> HTMLResponse:
    html = (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{escape(title)}</title>\n{head}</head>\n<body>\n{body}</body>\n</html>\n")
    return HTMLResponse(html, headers={**_HEADERS, "Content-Security-Policy": csp})


def router(app: FastAPI) -> APIRouter:
    api = APIRouter(include_in_schema=False)

    def urls(request: Request) -> tuple[str, str]:
        root = escape(request.scope.get("root_path", "").rstrip("/"))
        return f"{root}{escape(app.openapi_url or '/openapi.json')}", f"{root}{STATIC}"

    @api.get("/docs")
    async def swagger_ui(request: Request) -> HTMLResponse:
        openapi, static = urls(request)
        head = (f'<link rel="icon" type="image/png" href="{static}/favicon.png">\n'
                f'<link rel="stylesheet" type="text/css" href="{static}/swagger-ui.css">\n')
        body = (f'<div id="swagger-ui" data-openapi-url="{openapi}"></div>\n'
                f'<script src="{static}/swagger-ui-bundle.js"></script>\n'
                f'<script src="{static}/swagger-init.js"></script>\n')
        return _page(f"{app.title} - Swagger UI", head, body, SWAGGER_CSP)

    @api.get("/redoc")
    async def redoc(request: Request) -> HTMLResponse:
        openapi, static = urls(request)
        head = (f'<link rel="icon" type="image/png" href="{static}/favicon.png">\n'
                '<style>body { margin: 0; padding: 0; }</style>\n')
        body = (f'<noscript>ReDoc needs JavaScript.</noscript>\n<redoc spec-url="{openapi}"></redoc>\n'
                f'<script src="{static}/redoc.standalone.js"></script>\n')
        return _page(f"{app.title} - ReDoc", head, body, REDOC_CSP)

    @api.get(STATIC + "/swagger-init.js")
    async def swagger_init() -> Response:
        return Response(SWAGGER_INIT_JS, media_type=_JS, headers=_HEADERS)

    @api.get(STATIC + "/{name}")
    async def asset(name: str) -> FileResponse:
        if name not in ASSETS:  # a fixed list: no path from the request reaches the file system
            raise HTTPException(404, "Not Found")
        path, media_type = ASSETS[name]
        return FileResponse(path, media_type=media_type, headers={**_HEADERS, "Cache-Control": "public, max-age=3600"})

    return api
