"""The OpenAPI description of every ucity HTTP API, served at /docs and /openapi.json (server.document).

server.py hands over what it mounted: (path, method, handler of the running ucity, tag) for every route
of its route tables (`TableRoute`), and its plain routes (the alarm stream, the dashboard's page). Each
API keeps its documentation as data next to its handlers (an `ApiDocs` named `OPENAPI`: ngsild/openapi.py,
ingest/http.py, rules/api.py, alarms/api.py, ops/openapi.py, a domain's `openapi` module if it has one);
ucity/core/openapi.py writes the document. A table route without such data is still documented (path,
method, its handler's docstring); a plain route only with it, so the dashboard's page and static files,
which are no API, stay out.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import Any

from ucity.core.openapi import ApiDocs, Doc, Operation, fragment, openapi_path

# (path as mounted, method, handler of the running ucity or None for a plain route, tag or "")
Mounted = tuple[str, str, Callable[[Any], Any] | None, str]
NGSI = "/ngsi-ld/v1"
DOMAINS = "ucity.domains."

DASHBOARD = ApiDocs(
    routes={("GET", "/api/v1/dashboard/care-areas"): Doc(
        summary="Care households as masked counts per grid cell",
        description="The dashboard's only data route of its own: homes (`ElderlyHome` entities) counted per "
                    "`web.care_cell_m` grid cell, cells with fewer than `web.care_min_count` homes left out, so "
                    "that no household can be located (ucity/web/care.py).")},
    tags={"dashboard": "The dashboard's own data (the page at `/` reads everything else through the APIs "
                       "documented here)."},
)


def api_docs(domains: Iterable[str] = ()) -> list[ApiDocs]:
    """The documentation data of every API, with that of the named domains that have an `openapi` module."""
    from ucity.alarms.api import OPENAPI as alarms
    from ucity.ingest.http import OPENAPI as ingest
    from ucity.ngsild.openapi import OPENAPI as ngsild
    from ucity.ops.openapi import OPENAPI as ops
    from ucity.rules.api import OPENAPI as rules

    out = [ngsild, ingest, rules, alarms, ops, DASHBOARD]
    for name in domains:
        try:
            module = importlib.import_module(f"{DOMAINS}{name}.openapi")
        except ModuleNotFoundError as exc:
            if exc.name != f"{DOMAINS}{name}.openapi":
                raise
            continue
        out.append(module.OPENAPI)
    return out


def running_handler(handler_of: Callable[[Any], Any] | None, ucity: Any) -> Callable[..., Any] | None:
    """The handler a table route runs (its docstring documents it); None before the platform runs."""
    if handler_of is None or ucity is None:
        return None
    handler: Callable[..., Any] = getattr(handler_of, "__wrapped__", handler_of)(ucity)
    return handler


def domain_of(handler: Callable[..., Any] | None) -> str:
    """The domain whose module defines the handler (`ucity.domains.<name>...`), or ""."""
    module = getattr(handler, "__module__", "") or ""
    return module[len(DOMAINS):].split(".")[0] if module.startswith(DOMAINS) else ""


def api_fragment(mounted: Iterable[Mounted], ucity: Any) -> dict[str, Any]:
    """`paths`, `components` and `tags` documenting the mounted routes (ucity: the running platform)."""
    routes = [(path, method, running_handler(handler_of, ucity), tag, handler_of is not None)
              for path, method, handler_of, tag in mounted]
    domains = sorted({domain_of(handler) for _, _, handler, _, _ in routes} - {""})
    apis = api_docs(domains)
    docs = {(method, openapi_path(path)): (doc, api) for api in apis for (method, path), doc in api.routes.items()}
    tags = {name: description for api in apis for name, description in api.tags.items()}
    for name in domains:  # a domain's package docstring describes it unless its documentation data does
        tags.setdefault(name, _first_paragraph(importlib.import_module(f"{DOMAINS}{name}").__doc__ or ""))
    operations = []
    for path, method, handler, tag, from_table in routes:
        found = docs.get((method, openapi_path(path)))
        if found is None and not from_table:
            continue  # a plain route without documentation: the dashboard's page, its static files
        doc, api = found or (Doc(), None)
        operations.append(Operation(
            method, path, tag or domain_of(handler) or "ucity", doc, handler, api.params if api else {},
            "application/json" if path.startswith(NGSI) else "application/problem+json"))
    return fragment(operations, tags)


def _first_paragraph(text: str) -> str:
    return " ".join(text.split("\n\n")[0].split())
