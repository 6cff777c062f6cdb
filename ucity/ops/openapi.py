"""The OpenAPI description of the operations API, built from the route table (api.ROUTES) and the input
models, and merged into /docs by server.py. Framework-free: a dict, so the handlers stay plain functions
and the documentation cannot drift from the routes that are mounted.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel

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
PROBLEM = {"description": "ProblemDetails (RFC 7807)",
           "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}}}
PROBLEM_SCHEMA = {"type": "object", "properties": {"type": {"type": "string"}, "title": {"type": "string"},
                                                  "status": {"type": "integer"}, "detail": {"type": "string"}}}


def _schema(model: type[BaseModel], schemas: dict[str, Any]) -> dict[str, str]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(schema.pop("$defs", {}))
    schemas[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _operation(route: Route, schemas: dict[str, Any]) -> dict[str, Any]:
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"{(\w+)}", route.path)]
    params += [{"name": name, "in": "query", "required": name == "grant", "schema": {"type": "string"},
                "description": PARAMS.get(name, "")} for name in route.params]
    params.append({"name": "NGSILD-Tenant", "in": "header", "required": False, "schema": {"type": "string"},
                   "description": "tenant (default tenant when absent)"})
    who = f"Needs the permission `{route.permission}`." if route.permission else \
        "Needs a bearer token; footage links also need a valid `grant` of the caller's agency."
    operation: dict[str, Any] = {
        "tags": [f"operations: {route.tag}"], "summary": route.summary, "operationId": f"ops_{route.handler}",
        "description": who, "parameters": params, "security": [{"bearer": []}],
        "responses": {**{str(s): {"description": "OK"} for s in route.statuses},
                      **{str(s): PROBLEM for s in (400, 401, 403, 404, 409)}},
    }
    if route.body is not None:
        operation["requestBody"] = {"required": True, "content": {route.media: {"schema": _schema(route.body, schemas)}}}
    elif route.media != "application/json":
        operation["requestBody"] = {"required": True, "content": {route.media: {"schema": {"type": "string"}}}}
    return operation


def fragment() -> dict[str, Any]:
    """`paths` and `components` to merge into the app's OpenAPI document."""
    schemas: dict[str, Any] = {"ProblemDetails": PROBLEM_SCHEMA}
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, schemas)
    return {"paths": paths, "components": {"schemas": schemas, "securitySchemes": {
        "bearer": {"type": "http", "scheme": "bearer", "description": "ucity operations token (auth.py)"}}}}
