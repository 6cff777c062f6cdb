"""The OpenAPI documentation of the operations API, from its route table (api.ROUTES) and input models.

Each route's summary, tag, permission, query parameters, body model and statuses become a `Doc`
(ucity/core/openapi.py), keyed by (method, path); server.py documents every route it mounts with
them, so the operations API appears at /docs exactly as mounted. Every operation needs a bearer token.
"""

from __future__ import annotations

from ucity.core.openapi import ApiDocs, Doc
from ucity.ops.api import ROUTES, Route

PARAMS: dict[str, str] = {
    "service": "linkage service(s), comma-separated", "status": "status(es), comma-separated",
    "level": "crisis level(s): interest, caution, warning, serious", "type": "event type code(s)",
    "bbox": "minLon,minLat,maxLon,maxLat", "from": "from this instant (ISO 8601, inclusive)",
    "to": "before this instant (ISO 8601)", "limit": "page size", "offset": "page start",
    "n": "how many cameras (default ops.nearest.count = 5)", "radius": "search radius in metres (default 500)",
    "near": "lon,lat of the point", "prefix": "prefix of the ids given to imported cameras",
    "grant": "the grant token of the link", "agency": "agency id(s)", "event": "event id(s)", "kind": "kind(s)",
    "action": "action(s)", "camera": "camera id(s)", "outcome": "ok, denied, held, failed ...",
    "order": "asc (default) or desc",
}
TAGS: dict[str, str] = {
    "operations: events": "Situations of the operation centre: status machine, attachments, nearest cameras, "
                          "linkage with agencies (docs/operations-center.md).",
    "operations: cameras": "CCTV registry, import of the national dataset, footage links (a grant and the "
                           "agency's token).",
    "operations: agencies": "Linked agencies (112, 119 ...).",
    "operations: grants": "Time-limited footage grants to agencies.",
    "operations: audit": "The append-only audit log.",
    "operations: auth": "Bearer tokens and roles.",
    "operations: privacy": "Requests of data subjects (PIPA §35-36): find a person's events and where "
                           "else their NGSI-LD entity is, erase their data (an event's, the entity with its history).",
}


def doc(route: Route) -> Doc:
    """The documentation of one operations route."""
    who = f"Needs the permission `{route.permission}`." if route.permission else \
        "Needs a bearer token; footage links also need a valid `grant` of the caller's agency."
    body = route.body if route.body is not None else (
        {"type": "string"} if route.media != "application/json" else None)
    return Doc(summary=route.summary, description=who, params=route.params, required=("grant",), body=body,
               media=(route.media,), statuses=route.statuses, problems=("400", "401", "403", "404", "409", "5XX"),
               tag=f"operations: {route.tag}", bearer=True, operation_id=f"ops_{route.handler}")


DOCS: dict[tuple[str, str], Doc] = {(r.method, r.path): doc(r) for r in ROUTES}
OPENAPI = ApiDocs(routes=DOCS, params=PARAMS, tags=TAGS)
