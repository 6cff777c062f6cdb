"""The dashboard's routes: the page at `/`, its static files, and the one data route it adds.

The page reads everything else through ucity's public APIs from the browser (`/api/v1/...`,
`/ngsi-ld/v1/...`). The only server-side route of its own is the privacy-masked view of care
households (care.py), which reads through the NGSI-LD API handler, never the store.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from ucity import __version__
from ucity.core.http import Req, Resp
from ucity.web import i18n
from ucity.web.care import CareAreas
from ucity.web.settings import WebSettings

HERE = Path(__file__).parent
STATIC = HERE / "static"
CARE_AREAS = "/api/v1/dashboard/care-areas"
Handler = Callable[[Req], Awaitable[Resp]]
# (path, method, handler of the running ucity) -> routes; server.py passes its own `routes_from`.
RouteTable = list[tuple[str, str, Callable[[Any], Handler]]]
RoutesFrom = Callable[[RouteTable], list[Route]]


def leaflet_dir() -> Path:
    """Leaflet's files as shipped by the `xstatic-leaflet` package (no CDN)."""
    import xstatic.pkg.leaflet as leaflet

    return Path(leaflet.BASE_DIR)


def _environment() -> Environment:
    return Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]),
                       trim_blocks=True, lstrip_blocks=True)


def page_config(web: WebSettings, lang: str) -> dict[str, Any]:
    """What the browser needs to start: map settings, the chosen language and both catalogues."""
    return {"lang": lang, "tileUrl": web.tile_url, "tileAttribution": web.tile_attribution,
            "tileMaxZoom": web.tile_max_zoom, "refreshSeconds": web.refresh_s, "careAreas": CARE_AREAS,
            "version": __version__, "messages": {code: i18n.catalogue(code) for code in i18n.LANGUAGES}}


def content_security_policy(tile_url: str) -> str:
    """Scripts, styles and data only from this server; images also from the tile server."""
    parts = urlsplit(tile_url) if tile_url else None
    tiles = f" {parts.scheme}://{parts.netloc.replace('{s}', '*')}" if parts and parts.netloc else ""
    return ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
            f"img-src 'self' data:{tiles}; connect-src 'self'; media-src 'self' data:; "
            "object-src 'none'; base-uri 'self'; frame-ancestors 'self'")


def index_endpoint(web: WebSettings) -> Callable[[Request], Awaitable[Response]]:
    template = _environment().get_template("index.html")

    async def index(request: Request) -> Response:
        lang = i18n.choose(request.query_params.get("lang"), request.cookies.get(i18n.COOKIE), web.default_language)
        config = orjson.dumps(page_config(web, lang)).decode()
        body = template.render(lang=lang, t=lambda key: i18n.translate(lang, key), version=__version__,
                               config_json=config.replace("<", "\\u003c"))
        return HTMLResponse(body, headers={"Content-Security-Policy": content_security_policy(web.tile_url),
                                           "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})

    return index


async def favicon(request: Request) -> Response:
    return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")


def dashboard_routes(routes_from: RoutesFrom, web: WebSettings | None = None) -> list[BaseRoute]:
    """Every route of the dashboard; `routes_from` turns framework-free handlers into routes."""
    settings = web or WebSettings()

    def care(ucity: Any) -> Handler:
        return CareAreas(ucity.ngsild.query_entities, settings.care_cell_m, settings.care_min_count).handle

    return [
        Route("/", index_endpoint(settings), methods=["GET", "HEAD"], name="dashboard"),
        Route("/favicon.ico", favicon, methods=["GET", "HEAD"]),
        *routes_from([(CARE_AREAS, "GET", care)]),
        # The more specific mount first: /static would otherwise answer for the vendor path.
        Mount("/static/vendor/leaflet", app=StaticFiles(directory=leaflet_dir()), name="leaflet"),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ]
