"""The /docs data of the NGSI-LD API: which query parameters each route takes (request.ROUTE_PARAMS,
the very table that refuses the others), its success statuses and request bodies.

The payloads and their rules are the specification's (ETSI GS CIM 009), whose own OpenAPI description
the tag links; this documents ucity's endpoints, not every NGSI-LD data type again.
"""

from __future__ import annotations

from typing import Any

from ucity.core.openapi import ApiDocs, Doc
from ucity.ngsild.request import JSON, JSONLD, MERGE_PATCH, ROUTE_PARAMS

PREFIX = "/ngsi-ld/v1"
SPEC = "https://forge.etsi.org/rep/cim/NGSI-LD"
PARAMS: dict[str, str] = {
    "id": "entity ids, comma-separated", "idPattern": "regular expression on entity ids",
    "type": "entity type selection (§4.17: `A,B`, `A;B`, `(A|B);C`, `*`)", "attrs": "attribute names, comma-separated",
    "q": "NGSI-LD query (§4.9)", "georel": "geo-relationship (`near;maxDistance==100`, `within`, `intersects` ...)",
    "geometry": "geometry of the geo-query (`Point`, `Polygon` ...)", "coordinates": "its coordinates (GeoJSON)",
    "geoproperty": "the GeoProperty the geo-query applies to (default `location`)", "scopeQ": "scope query (§4.19)",
    "options": "`keyValues` / `concise` / `normalized`, `sysAttrs`, `noOverwrite` ..., comma-separated",
    "format": "`simplified`, `concise` or `normalized`", "pick": "entity members and attributes to keep",
    "omit": "entity members and attributes to leave out", "lang": "language of LanguageProperties",
    "datasetId": "dataset id of the attribute instance", "local": "`true`: this broker only",
    "limit": "page size", "offset": "page start", "count": "`true`: the total in `NGSILD-Results-Count`",
    "geometryProperty": "GeoJSON responses: the GeoProperty used as the feature's geometry",
    "deleteAll": "`true`: every dataset of the attribute", "timerel": "`before`, `after` or `between`",
    "timeAt": "the instant of `timerel` (ISO 8601)", "endTimeAt": "the end of `between` (ISO 8601)",
    "timeproperty": "`observedAt` (default), `createdAt` or `modifiedAt`",
    "lastN": "the last N instances of each attribute", "aggrMethods": "aggregation methods, comma-separated",
    "aggrPeriodDuration": "aggregation period (ISO 8601 duration)", "details": "`true`: with details",
    "kind": "`Hosted`, `Cached` or `ImplicitlyCreated`", "reload": "`true`: fetch the context again, not delete it",
    "Link": "JSON-LD @context of an `application/json` request (`rel=\"http://www.w3.org/ns/json-ld#context\"`)",
}
# Success statuses that differ from the method's usual one (GET 200, POST 201, PATCH / PUT / DELETE 204).
STATUSES: dict[tuple[str, str], tuple[int, ...]] = {
    ("POST", "/entities/{entityId:path}/attrs"): (204, 207),
    ("PATCH", "/entities/{entityId:path}/attrs"): (204, 207),
    ("POST", "/entityOperations/query"): (200,),
    ("POST", "/entityOperations/{op}"): (200, 201, 204, 207),
    ("POST", "/temporal/entities"): (201, 204),
    ("POST", "/temporal/entities/{entityId:path}/attrs"): (204,),
    ("POST", "/temporal/entityOperations/query"): (200,),
}
USUAL = {"GET": (200,), "POST": (201,), "PATCH": (204,), "PUT": (204,), "DELETE": (204,)}
PAYLOAD: dict[str, Any] = {"type": "object", "description": f"an NGSI-LD payload of this operation ({SPEC})"}
BATCH: dict[str, Any] = {"type": "array", "items": {"type": "object"},
                         "description": "entities (create, upsert, update, merge) or entity ids (delete)"}


def doc(method: str, path: str, params: frozenset[str]) -> Doc:
    """The documentation of one NGSI-LD route (`path` as in ROUTE_PARAMS, without the prefix)."""
    body: dict[str, Any] | None = None
    if method in ("POST", "PUT", "PATCH"):
        body = BATCH if path == "/entityOperations/{op}" else PAYLOAD
    media = (JSON, JSONLD, MERGE_PATCH) if method == "PATCH" and path.startswith("/entities/") else (JSON, JSONLD)
    return Doc(params=tuple(sorted(params)), headers=("NGSILD-Tenant", "Link"), body=body, media=media,
               statuses=STATUSES.get((method, path), USUAL[method]))


OPENAPI = ApiDocs(
    routes={(method, PREFIX + path): doc(method, path, params) for (method, path), params in ROUTE_PARAMS.items()},
    params=PARAMS,
    tags={"ngsi-ld": "NGSI-LD context broker (ETSI GS CIM 009 v1.9) at /ngsi-ld/v1: entities, batch operations, "
                     "discovery, temporal evolution, subscriptions, @context management. Listed here: ucity's "
                     "endpoints and the query parameters each takes (any other is a 400). Payloads, media types "
                     f"and behaviour are the specification's; its OpenAPI description: {SPEC}. Errors are "
                     "ProblemDetails as `application/json`, as the specification says."},
)
