"""`/docs` without a CDN: Swagger UI's files come from the `swagger-ui-bundle-v2` package, served here.

FastAPI's own /docs page loads Swagger UI from a CDN, which an operation centre's offline network cannot
reach (a blank page) and which is code from another host. `serve_docs_offline` replaces it with the same
page pointing at `/docs/assets/...` (Swagger UI 5, which reads the OpenAPI 3.1 document), sent with a
Content-Security-Policy that allows scripts, styles and data from this server only. /redoc, which would
also need a CDN, is not served. The OAuth2 redirect page FastAPI adds (`/docs/oauth2-redirect`) is inline.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

DOCS = "/docs"
ASSETS = "/docs/assets"
# Swagger UI would otherwise show a badge image fetched from validator.swagger.io.
PARAMETERS = {"validatorUrl": None}
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.S)


def swagger_ui_dir() -> Path:
    """Swagger UI's dist files as shipped by the `swagger-ui-bundle-v2` package (imported as `swagger_ui_bundle`)."""
    from swagger_ui_bundle import swagger_ui_path

    return Path(str(swagger_ui_path))


def content_security_policy(html: str) -> str:
    """Everything from this server; the page's one inline script (Swagger UI's start) allowed by its hash."""
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'"
                      for s in _INLINE_SCRIPT.findall(html))
    return (f"default-src 'self'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'self'; frame-ancestors 'self'")


def docs_page(app: FastAPI, root: str = "") -> Response:
    """The Swagger UI page of `app`, its files under `root` + ASSETS."""
    page = get_swagger_ui_html(
        openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} API", swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{ASSETS}/swagger-ui.css", swagger_favicon_url=f"{root}{ASSETS}/favicon-32x32.png",
        oauth2_redirect_url=app.swagger_ui_oauth2_redirect_url,
        swagger_ui_parameters={**(app.swagger_ui_parameters or {}), **PARAMETERS})
    html = bytes(page.body).decode()
    return HTMLResponse(html, headers={"Content-Security-Policy": content_security_policy(html),
                                       "X-Content-Type-Options": "nosniff"})


def docs_routes(app: FastAPI) -> list[BaseRoute]:
    """The /docs page and its files (a Mount: no API, so not in /openapi.json)."""

    async def docs(request: Request) -> Response:
        return docs_page(app, request.scope.get("root_path", ""))

    return [Route(DOCS, docs, methods=["GET", "HEAD"], include_in_schema=False),
            Mount(ASSETS, app=StaticFiles(directory=swagger_ui_dir()), name="swagger-ui")]


def serve_docs_offline(app: FastAPI) -> None:
    """Replace FastAPI's CDN-loading /docs with `docs_routes` and drop /redoc (it needs a CDN too)."""
    replaced = {app.docs_url, app.redoc_url} - {None}
    app.router.routes[:] = [r for r in app.router.routes if getattr(r, "path", None) not in replaced]
    app.router.routes[:0] = docs_routes(app)
    app.docs_url, app.redoc_url = DOCS, None
