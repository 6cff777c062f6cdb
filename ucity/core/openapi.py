"""OpenAPI 3.1 `paths`, `components` and `tags` of framework-free routes, from data.

ucity's handlers are plain functions mounted from route tables (server.py), so FastAPI knows nothing
about them. This module turns one `Operation` per mounted (method, path) into the OpenAPI document's
parts: path parameters from the path itself, summary and description from the handler's docstring
(first line / the rest), and what the table does not say (query parameters, request body model,
statuses, tag, bearer auth) from a `Doc` kept as data next to the handlers. server.py builds the
operations from the routes it actually mounted, so the document cannot drift from what is served.

Every API answers errors as ProblemDetails (RFC 7807): `application/problem+json` under /api/v1, and
`application/json` under /ngsi-ld/v1, whose specification (ETSI GS CIM 009) says so.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

PROBLEM_JSON = "application/problem+json"
PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object", "description": "RFC 7807; ucity adds members such as `reason` or `rejected` where they help",
    "properties": {"type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
                   "detail": {"type": "string"}, "instance": {"type": "string"}},
    "required": ["type", "title", "status"]}
# Query parameters and headers many APIs share; an API's own `param_docs` add to and override these.
COMMON_PARAMS: dict[str, str] = {
    "limit": "page size", "offset": "page start (0-based)", "from": "from this instant (ISO 8601, inclusive)",
    "to": "before this instant (ISO 8601)", "bbox": "minLon,minLat,maxLon,maxLat",
    "NGSILD-Tenant": "tenant (the default tenant when absent)",
    "X-Ucity-Actor": "who acts (recorded in the audit trail)",
}
# The ProblemDetails response by media type, one shared definition each (components/responses).
PROBLEM_RESPONSES = {PROBLEM_JSON: "Problem", "application/json": "ProblemAsJson"}
STATUS_TEXT = {200: "OK", 201: "Created", 202: "Accepted", 204: "No content", 207: "Multi-status (partial success)",
               302: "Found", 307: "Temporary redirect"}
Schema = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Doc:
    """What a route table does not say about one operation; every field has a default, so an operation
    without a `Doc` is still documented (path, method, docstring)."""

    summary: str = ""  # default: the first line of the handler's docstring
    description: str = ""  # put before the rest of the docstring
    params: tuple[str, ...] = ()  # query parameters
    headers: tuple[str, ...] = ("NGSILD-Tenant",)  # request headers the operation reads
    required: tuple[str, ...] = ()  # the required ones among params and headers
    body: type[BaseModel] | Schema | None = None  # the request body: a pydantic model or a JSON schema
    media: tuple[str, ...] = ("application/json",)  # media types of the request body
    statuses: tuple[int, ...] = (200,)  # success statuses
    problems: tuple[str, ...] = ("4XX", "5XX")  # statuses answered with ProblemDetails
    tag: str = ""  # default: the API's tag (the route table's)
    bearer: bool = False  # needs `Authorization: Bearer <token>`
    operation_id: str = ""  # default: from method and path
    response_media: str = "application/json"  # of the 200 and 207 responses


@dataclass(frozen=True, slots=True)
class ApiDocs:
    """The documentation one API keeps next to its handlers: a `Doc` per (method, path as mounted), the
    descriptions of its query parameters and headers, and its tags' descriptions."""

    routes: Mapping[tuple[str, str], Doc]
    params: Mapping[str, str] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Operation:
    """One mounted (method, path) with its handler (for the docstring) and documentation."""

    method: str
    path: str  # as mounted; Starlette's `{name:path}` is written `{name}`
    tag: str
    doc: Doc = Doc()
    handler: Callable[..., Any] | None = None
    param_docs: Mapping[str, str] = field(default_factory=dict)
    problem_media: str = PROBLEM_JSON


def openapi_path(path: str) -> str:
    """`/entities/{entityId:path}` -> `/entities/{entityId}` (OpenAPI has no path converters)."""
    return re.sub(r"{(\w+):\w+}", r"{\1}", path)


def docstring(handler: Callable[..., Any] | None) -> tuple[str, str]:
    """(summary, description) of a handler: the first line of its docstring and the rest. A first line
    that restates the route (`POST /temporal/entities: create ...`) is given without it."""
    doc = inspect.getdoc(handler) if handler is not None else None
    if not doc:
        return "", ""
    first, _, rest = doc.partition("\n\n")
    first = " ".join(first.split())
    found = re.match(r"^(?:GET|POST|PUT|PATCH|DELETE)\s+\S+?:\s+(.+)$", first)
    if found:
        first = found.group(1)[:1].upper() + found.group(1)[1:]
    return first, rest.strip()


def operation_id(method: str, path: str) -> str:
    return re.sub(r"_+", "_", re.sub(r"\W", "_", f"{method.lower()}{path}")).strip("_")


def schema_ref(model: type[BaseModel], schemas: dict[str, Any]) -> dict[str, str]:
    """A `$ref` to the model's schema, which (with the models it uses) goes into `schemas`."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(schema.pop("$defs", {}))
    schemas[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _param(name: str, where: str, required: bool, docs: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "in": where, "required": required, "schema": {"type": "string"}}
    description = docs.get(name, COMMON_PARAMS.get(name, ""))
    if description:
        out["description"] = description
    return out


def operation(op: Operation, schemas: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI Operation object of `op`; the schemas of its body models go into `schemas`."""
    doc, path = op.doc, openapi_path(op.path)
    summary, rest = docstring(op.handler)
    params = [_param(name, "path", True, op.param_docs) for name in re.findall(r"{(\w+)}", path)]
    params += [_param(name, "query", name in doc.required, op.param_docs) for name in doc.params]
    params += [_param(name, "header", name in doc.required, op.param_docs) for name in doc.headers]
    problem = {"$ref": f"#/components/responses/{PROBLEM_RESPONSES[op.problem_media]}"}
    responses: dict[str, Any] = {str(s): {"description": STATUS_TEXT.get(s, "OK")} for s in doc.statuses}
    for status in {"200", "207"} & set(responses):
        responses[status]["content"] = {doc.response_media: {"schema": {}}}
    responses.update({str(s): problem for s in doc.problems})
    out: dict[str, Any] = {
        "tags": [doc.tag or op.tag], "summary": doc.summary or summary or _from_name(op.handler, op.method, path),
        "operationId": doc.operation_id or operation_id(op.method, path), "parameters": params,
        "responses": responses,
    }
    description = "\n\n".join(part for part in (doc.description, rest) if part)
    if description:
        out["description"] = description
    if doc.body is not None:
        body = schema_ref(doc.body, schemas) if isinstance(doc.body, type) else dict(doc.body)
        out["requestBody"] = {"required": True, "content": {media: {"schema": body} for media in doc.media}}
    if doc.bearer:
        out["security"] = [{"bearer": []}]
    return out


def _from_name(handler: Callable[..., Any] | None, method: str, path: str) -> str:
    """A summary for a handler without a docstring: its name as words (`list_tasks` -> `List tasks`)."""
    name = getattr(handler, "__name__", "") if handler is not None else ""
    return name.replace("_", " ").capitalize() if name and name != "<lambda>" else f"{method} {path}"


def fragment(operations: Iterable[Operation], tags: Mapping[str, str] | None = None) -> dict[str, Any]:
    """`paths`, `components` and `tags` (name, description) of the operations, to merge into a document."""
    schemas: dict[str, Any] = {"ProblemDetails": PROBLEM_SCHEMA}
    paths: dict[str, dict[str, Any]] = {}
    used: dict[str, None] = {}
    for op in operations:
        built = operation(op, schemas)
        paths.setdefault(openapi_path(op.path), {})[op.method.lower()] = built
        used.update(dict.fromkeys(built["tags"]))
    described = tags or {}
    return {"paths": paths, "tags": [{"name": t, **({"description": described[t]} if described.get(t) else {})}
                                     for t in used],
            "components": {"schemas": schemas, "responses": {name: {
                "description": "ProblemDetails (RFC 7807)",
                "content": {media: {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}}}
                for media, name in PROBLEM_RESPONSES.items()}, "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "ucity operations token (ucity/ops/auth.py)"}}}}
