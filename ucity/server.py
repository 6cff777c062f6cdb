"""The ASGI app: routes to framework-free handlers, error mapping, body limits, lifespan.

This is the only module (with web/) that imports the web framework. The APIs are plain Starlette
routes from framework-free route tables (`TableRoute`); `document` describes every one of them at
/docs and /openapi.json (ucity/openapi.py), next to FastAPI's own /health.

Errors are ProblemDetails (RFC 7807 / 9457; NGSI-LD's on /ngsi-ld) whose `detail` says what went wrong in this
request in Korean and English ("한국어 / English"; the dashboard shows the half of its language), the kernel's own
refusals included (a path no route serves 404, a method 405, a body over the limit 413, 500). The `title` stays
English, one fixed text per problem `type` ("Resource not found"): RFC 9457 §3.1.4 makes it a summary of the
problem type that does not change from occurrence to occurrence (localised only through content negotiation,
which ucity does not do); clients tell problems apart by `type` (§3.1.1), and NGSI-LD clients and the ETSI
conformance suite read the NGSI-LD types with their usual titles. What a person reads is `detail`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl

import orjson
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ucity import __version__
from ucity.access import Guard, access_table, ngsi_path
from ucity.app import Ucity
from ucity.core import gc_tuning, logsafe
from ucity.core.clock import Clock
from ucity.core.config import Settings, missing_secret_warnings
from ucity.core.errors import BadRequest, PayloadTooLarge, UcityError, http_problem
from ucity.core.http import ApiRoute, Req, Resp
from ucity.ngsild.request import ROUTE_PARAMS, check_params, with_route_params
from ucity.ops.auth import Permission, known_tenants, unbound_agency_tokens
from ucity.store import display_url

log = logging.getLogger(__name__)
Handler = Callable[[Req], Awaitable[Resp]]
NGSI = "/ngsi-ld/v1"


def problem_response(body: dict[str, Any], headers: dict[str, str] | None = None, path: str = "") -> Response:
    """A ProblemDetails response: `application/json` under the NGSI-LD API, whose specification (ETSI GS CIM
    009) says so; RFC 7807's `application/problem+json` everywhere else."""
    return Response(orjson.dumps(body), status_code=int(body["status"]), headers=headers,
                    media_type="application/json" if path.startswith(NGSI) else "application/problem+json")


def too_large(declared: str | None, limit: int) -> PayloadTooLarge:
    """413 for a body over `limit` bytes (`declared`: its Content-Length, when that already says so)."""
    if declared is not None:
        return PayloadTooLarge(f"본문 {declared} 바이트가 한도 {limit} 바이트를 넘습니다 / "
                               f"the body is {declared} bytes; the limit is {limit}")
    return PayloadTooLarge(f"본문이 한도 {limit} 바이트를 넘습니다 / the body exceeds the limit of {limit} bytes")


def no_route(path: str) -> str:
    """The detail of a 404 for a path no route serves. The dashboard tells a missing route (an API that is not
    mounted) from a missing resource by its English half, "no resource at" (web/static/js/api.js `missingRoute`)."""
    return f"{path} 경로에는 자원이 없습니다 / no resource at {path}"


def not_allowed(method: str, path: str, allowed: str) -> str:
    """The detail of a 405 (`allowed`: the methods the path takes, as in the Allow header)."""
    if not allowed:
        return f"{path}에서는 {method} 메서드를 쓸 수 없습니다 / {method} is not allowed on {path}"
    return (f"{path}에서는 {method} 메서드를 쓸 수 없습니다(허용: {allowed}) / "
            f"{method} is not allowed on {path}; allowed: {allowed}")


INTERNAL_ERROR = "내부 오류가 발생했습니다. 서버 로그를 보세요 / an internal error occurred; see the server log"


async def read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(declared, limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(None, limit)
        chunks.append(chunk)
    return b"".join(chunks)


def adapt(handler_of: Callable[[Ucity], Handler], settings: Settings,
          max_body_bytes: int | None = None) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a framework-free handler as a Starlette endpoint (`max_body_bytes`: this route's own limit)."""
    limit = max_body_bytes or settings.server.max_body_bytes

    async def endpoint(request: Request) -> Response:
        ucity: Ucity = request.app.state.ucity
        try:
            refuse_nul_target(request.scope)
            body = await read_limited(request, limit)
            req = Req(
                method=request.method, path=request.url.path,
                params=_multi(request.query_params.multi_items()),
                headers={k.lower(): v for k, v in request.headers.items()},
                body=body, path_params=dict(request.path_params),
                base_url=settings.server.public_url or str(request.base_url),
                principal=request.scope.get("ucity.principal"),
            )
            resp = await handler_of(ucity)(req)
        except Exception as exc:
            return error_response(exc, request.method, request.url.path, request.headers.get("ngsild-tenant"))
        return to_response(resp)

    return endpoint


def refuse_nul_target(scope: Scope) -> None:
    """400 BadRequestData for a NUL character (U+0000) in the request's path or query string, for every API.

    No identifier, name, expression or value that ucity's APIs take in a URL may hold one: PostgreSQL's text
    cannot (a lookup failed there with 500, SQLite answered), and bodies are refused alike (`refuse_nul`).
    Here, before any handler, so that no handler has to remember it: a NUL reaches the path only as `%00`
    (the server decodes it into `scope["path"]`; HTTP does not carry a raw one) and the query string only as
    the bytes `%00`, so two substring searches, with nothing parsed, suffice (about 0.25 CPU-µs a request).
    """
    if "\x00" in scope["path"] or b"%00" in scope["query_string"]:
        raise BadRequest("경로나 쿼리에 NUL 문자(U+0000)는 쓸 수 없습니다 / "
                         "the path and query parameters may not hold a NUL character (U+0000, %00)")


def error_response(exc: Exception, method: str, path: str, tenant: str | None) -> Response:
    """The ProblemDetails response of a handler's exception (a UcityError says its status; others are 500)."""
    if isinstance(exc, UcityError):
        if exc.status >= 500:
            log.warning("%s %s -> %s: %s", method, path, exc.status, exc.detail)
        headers = {"NGSILD-Tenant": tenant} if tenant else {}
        headers.update(getattr(exc, "headers", {}))  # e.g. WWW-Authenticate of a 401
        return problem_response(exc.to_problem(), headers or None, path)
    log.error("unhandled error on %s %s", method, path, exc_info=exc)
    return problem_response(UcityError(INTERNAL_ERROR).to_problem(), None, path)


def to_response(resp: Resp) -> Response:
    return Response(resp.encode(), status_code=resp.status, headers=resp.headers,
                    media_type=resp.media_type if resp.body is not None else None)


# The hottest endpoints (device measures, single-attribute PATCH) skip FastAPI's and Starlette's
# layers (telemetry checks, middleware, routing: matching a path against every route's regular
# expression in turn, a Request object, the body stream, a Response object), which cost more than
# the handler. They run the same handlers with the same Req, limits and error mapping.
_FAST_ATTR = re.compile("^" + NGSI + "/entities/(?P<entityId>.*)/attrs/(?P<attrId>[^/]+)$")


def _measure_handler(u: Ucity) -> Handler:
    return u.ingest.http.measure  # as in ingest_routes


def _partial_attr_handler(u: Any) -> Handler:
    partial_attr: Handler = u.ngsild.partial_attr  # as in ngsild_routes
    return partial_attr


class FastRoutes:
    """`POST /iot/json` and `PATCH /ngsi-ld/v1/entities/{id}/attrs/{attr}` straight to their
    framework-free handlers (`UcityApp` asks `match` first); everything else goes to the app."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.measure: Callable[[Ucity], Handler] = _measure_handler
        self.patch_attr: Callable[[Ucity], Handler] = _partial_attr_handler
        # The query parameters each fast route takes (None: not checked), as `with_route_params` checks them
        # for the app's routes: here inline, one coroutine less per request than its wrapper.
        self.params: dict[Callable[[Ucity], Handler], frozenset[str] | None] = {
            self.measure: None, self.patch_attr: ROUTE_PARAMS[("PATCH", "/entities/{entityId:path}/attrs/{attrId}")]}
        self._base_urls: dict[tuple[Any, ...], str] = {}

    def match(self, scope: Scope) -> tuple[Callable[[Ucity], Handler], dict[str, str], str] | None:
        """(handler, path parameters, path) of a request for a fast route, or None."""
        if scope["type"] != "http" or scope.get("root_path"):
            return None
        method, path = scope["method"], scope["path"]
        if method == "POST":
            return (self.measure, {}, path) if path == "/iot/json" else None
        if method != "PATCH" or not path.startswith(NGSI) or "?" in path or "#" in path or "\\" in path:
            return None
        path = ngsi_path(path)  # as TrailingSlash does for the other routes
        found = _FAST_ATTR.match(path)
        return (self.patch_attr, found.groupdict(), path) if found is not None else None

    async def serve(self, app: Any, scope: Scope, receive: Receive, send: Send,
                    handler_of: Callable[[Ucity], Handler], path_params: dict[str, str], path: str) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            refuse_nul_target(scope)
            declared = headers.get("content-length")
            limit = self.settings.server.max_body_bytes
            if declared is not None and declared.isdigit() and int(declared) > limit:
                raise too_large(declared, limit)
            # Mostly the whole body in one message (a small JSON document): read here, without `body`'s coroutine.
            message = await receive()
            body = message.get("body", b"") if message["type"] == "http.request" else None
            if body is not None and (message.get("more_body", False) or len(body) > limit):
                body = await self.body(receive, body, message.get("more_body", False))
            if body is None:
                return  # the client went away
            query = scope["query_string"]
            params = _multi(parse_qsl(query.decode("latin-1"), keep_blank_values=True)) if query else {}
            req = Req(method=scope["method"], path=path, params=params, headers=headers, body=body,
                      path_params=path_params, base_url=self.base_url(scope))
            allowed = self.params.get(handler_of)
            if allowed is not None and params:
                check_params(req, allowed)
            resp = await handler_of(app.state.ucity)(req)
        except Exception as exc:
            await error_response(exc, scope["method"], path, headers.get("ngsild-tenant"))(scope, receive, send)
            return
        await send_resp(send, resp)

    async def body(self, receive: Receive, first: bytes, more: bool) -> bytes | None:
        """The request body that begins with `first` (its first message's; `more`: others follow) within the
        limit (PayloadTooLarge beyond it), None on a disconnect."""
        limit = self.settings.server.max_body_bytes
        if len(first) > limit:
            raise too_large(None, limit)
        chunks: list[bytes] = [first]
        size = len(first)
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise too_large(None, limit)
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)

    def base_url(self, scope: Scope) -> str:
        """`Request.base_url` (or server.public_url), cached by what it is made of."""
        if self.settings.server.public_url:
            return self.settings.server.public_url
        host = next((v for k, v in scope["headers"] if k == b"host"), None)
        server = scope.get("server")
        key = (scope.get("scheme"), host, tuple(server) if server else None, scope.get("app_root_path"))
        found = self._base_urls.get(key)
        if found is None:
            if len(self._base_urls) > 256:  # the Host header comes from clients
                self._base_urls.clear()
            found = self._base_urls[key] = str(Request(scope).base_url)
        return found


async def send_resp(send: Send, resp: Resp) -> None:
    """Send a handler's response as `to_response(resp)` would, without the Response object."""
    if resp.body is None and not resp.headers and resp.status == 204:  # a write in the default tenant
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    body = resp.encode()
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in resp.headers.items()]
    if resp.status >= 200 and resp.status not in (204, 304) and not any(k == b"content-length" for k, _ in raw):
        raw.append((b"content-length", str(len(body)).encode("latin-1")))
    media_type = resp.media_type if resp.body is not None else None
    if media_type is not None and not any(k == b"content-type" for k, _ in raw):
        if media_type.startswith("text/") and "charset=" not in media_type.lower():
            media_type += "; charset=utf-8"
        raw.append((b"content-type", media_type.encode("latin-1")))
    await send({"type": "http.response.start", "status": resp.status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class UcityApp(FastAPI):
    """The FastAPI app, with the access guard (`server.require_auth`, ucity/access.py) asked first for every
    HTTP request and the fast routes (`FastRoutes`) answered before any of FastAPI's layers."""

    fast_routes: FastRoutes | None = None
    guard: Guard | None = None  # None: server.require_auth is off, and a request costs this one test

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.guard is not None and scope["type"] == "http":
            try:
                scope = await self.guard.admit(self.state.ucity, scope)
            except Exception as exc:
                tenant = next((v.decode("latin-1") for k, v in scope["headers"] if k.lower() == b"ngsild-tenant"), None)
                await error_response(exc, scope["method"], scope["path"], tenant)(scope, receive, send)
                return
        fast = self.fast_routes
        if fast is not None and not self.root_path and (route := fast.match(scope)) is not None:
            scope["app"] = self
            await fast.serve(self, scope, receive, send, *route)
            return
        await super().__call__(scope, receive, send)


def _multi(items: list[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, value in items:
        out.setdefault(key, []).append(value)
    return out


def ngsild_routes(settings: Settings) -> list[Route]:
    """Every NGSI-LD route; more specific paths first (entity ids may contain '/')."""
    table: list[tuple[str, str, Callable[[Ucity], Handler]]] = [
        ("/entities", "POST", lambda u: u.ngsild.create_entity),
        ("/entities", "GET", lambda u: u.ngsild.query_entities),
        ("/entities", "DELETE", lambda u: u.ngsild.purge_entities),
        ("/entities/{entityId:path}/attrs/{attrId}", "PATCH", lambda u: u.ngsild.partial_attr),
        ("/entities/{entityId:path}/attrs/{attrId}", "PUT", lambda u: u.ngsild.replace_attr),
        ("/entities/{entityId:path}/attrs/{attrId}", "DELETE", lambda u: u.ngsild.delete_attr),
        ("/entities/{entityId:path}/attrs", "POST", lambda u: u.ngsild.append_attrs),
        ("/entities/{entityId:path}/attrs", "PATCH", lambda u: u.ngsild.update_attrs),
        ("/entities/{entityId:path}", "GET", lambda u: u.ngsild.retrieve_entity),
        ("/entities/{entityId:path}", "DELETE", lambda u: u.ngsild.delete_entity),
        ("/entities/{entityId:path}", "PATCH", lambda u: u.ngsild.merge_entity),
        ("/entities/{entityId:path}", "PUT", lambda u: u.ngsild.replace_entity),
        ("/entityOperations/query", "POST", lambda u: u.ngsild.query_post),
        ("/entityOperations/{op}", "POST", lambda u: u.ngsild.batch),
        ("/types", "GET", lambda u: u.ngsild.types),
        ("/types/{type:path}", "GET", lambda u: u.ngsild.type_detail),
        ("/attributes", "GET", lambda u: u.ngsild.attributes),
        ("/attributes/{attrId:path}", "GET", lambda u: u.ngsild.attribute_detail),
        ("/temporal/entities", "POST", lambda u: u.temporal.create),
        ("/temporal/entities", "GET", lambda u: u.temporal.query),
        ("/temporal/entities/{entityId:path}/attrs/{attrId}/{instanceId:path}", "PATCH",
         lambda u: u.temporal.modify_instance),
        ("/temporal/entities/{entityId:path}/attrs/{attrId}/{instanceId:path}", "DELETE",
         lambda u: u.temporal.delete_instance),
        ("/temporal/entities/{entityId:path}/attrs/{attrId}", "DELETE", lambda u: u.temporal.delete_attr),
        ("/temporal/entities/{entityId:path}/attrs", "POST", lambda u: u.temporal.append),
        ("/temporal/entities/{entityId:path}", "GET", lambda u: u.temporal.retrieve),
        ("/temporal/entities/{entityId:path}", "DELETE", lambda u: u.temporal.delete),
        ("/temporal/entityOperations/query", "POST", lambda u: u.temporal.query_post),
        ("/subscriptions", "POST", lambda u: u.subscriptions.create),
        ("/subscriptions", "GET", lambda u: u.subscriptions.list),
        ("/subscriptions/{subscriptionId:path}", "GET", lambda u: u.subscriptions.retrieve),
        ("/subscriptions/{subscriptionId:path}", "PATCH", lambda u: u.subscriptions.update),
        ("/subscriptions/{subscriptionId:path}", "DELETE", lambda u: u.subscriptions.delete),
        ("/jsonldContexts", "POST", lambda u: u.contexts.add),
        ("/jsonldContexts", "GET", lambda u: u.contexts.list),
        ("/jsonldContexts/{contextId:path}", "GET", lambda u: u.contexts.retrieve),
        ("/jsonldContexts/{contextId:path}", "DELETE", lambda u: u.contexts.delete),
    ]
    # Each NGSI-LD operation takes only the query parameters it defines (ngsild/request.py ROUTE_PARAMS).
    checked = [(path, method, with_route_params(method, path, handler)) for path, method, handler in table]
    return routes_from(checked, settings, NGSI, "ngsi-ld")


def ingest_routes(settings: Settings) -> list[Route]:
    """FIWARE IoT Agent provisioning and measures (/iot) and device operations (/api/v1): docs/devices.md."""
    table: list[tuple[str, str, Callable[[Ucity], Handler]]] = [
        ("/iot/services", "POST", lambda u: u.ingest.http.create_groups),
        ("/iot/services", "GET", lambda u: u.ingest.http.list_groups),
        ("/iot/services", "PUT", lambda u: u.ingest.http.update_group),
        ("/iot/services", "DELETE", lambda u: u.ingest.http.delete_group),
        ("/iot/devices", "POST", lambda u: u.ingest.http.create_devices),
        ("/iot/devices", "GET", lambda u: u.ingest.http.list_devices),
        ("/iot/devices/{deviceId}", "GET", lambda u: u.ingest.http.get_device),
        ("/iot/devices/{deviceId}", "PUT", lambda u: u.ingest.http.update_device),
        ("/iot/devices/{deviceId}", "DELETE", lambda u: u.ingest.http.delete_device),
        ("/iot/json", "POST", lambda u: u.ingest.http.measure),
        ("/iot/about", "GET", lambda u: u.ingest.http.about),
        ("/api/v1/devices/health", "GET", lambda u: u.ingest.http.devices_health),
        ("/api/v1/ingest/stats", "GET", lambda u: u.ingest.http.ingest_stats),
    ]
    return routes_from(table, settings, tag="ingest")


def rule_routes(settings: Settings) -> list[Route]:
    """Rules as data (ucity/rules/README.md); more specific paths first."""
    table: list[tuple[str, str, Callable[[Ucity], Handler]]] = [
        ("/api/v1/rules", "GET", lambda u: u.rules_api.list),
        ("/api/v1/rules", "POST", lambda u: u.rules_api.create),
        ("/api/v1/rules/{ruleId}/enable", "POST", lambda u: u.rules_api.enable),
        ("/api/v1/rules/{ruleId}/disable", "POST", lambda u: u.rules_api.disable),
        ("/api/v1/rules/{ruleId}/states", "GET", lambda u: u.rules_api.states),
        ("/api/v1/rules/{ruleId}", "GET", lambda u: u.rules_api.retrieve),
        ("/api/v1/rules/{ruleId}", "PUT", lambda u: u.rules_api.replace),
        ("/api/v1/rules/{ruleId}", "DELETE", lambda u: u.rules_api.delete),
    ]
    return routes_from(table, settings, tag="rules")


def alarm_routes(settings: Settings) -> list[Route]:
    """Alarms, their contact data and dead letters (ucity/alarms/README.md); the stream is `stream_route`."""
    table: list[tuple[str, str, Callable[[Ucity], Handler]]] = [
        ("/api/v1/alarms", "GET", lambda u: u.alarms_api.list_alarms),
        ("/api/v1/alarms/stats", "GET", lambda u: u.alarms_api.stats),
        ("/api/v1/alarms/{alarmId}", "GET", lambda u: u.alarms_api.get_alarm),
        ("/api/v1/alarms/{alarmId}/acknowledge", "POST", lambda u: u.alarms_api.acknowledge),
        ("/api/v1/alarms/{alarmId}/clear", "POST", lambda u: u.alarms_api.clear),
        ("/api/v1/alarms/{alarmId}/close", "POST", lambda u: u.alarms_api.close),
        ("/api/v1/alarms/{alarmId}/assign", "POST", lambda u: u.alarms_api.assign),
        ("/api/v1/alarms/{alarmId}/comments", "POST", lambda u: u.alarms_api.comment),
        ("/api/v1/alarms/{alarmId}/dead-letters", "GET", lambda u: u.alarms_api.alarm_dead_letters),
        ("/api/v1/alarms/{alarmId}/dead-letters/{letterId}/resend", "POST", lambda u: u.alarms_api.resend_dead_letter),
        ("/api/v1/notifications/dead-letters", "GET", lambda u: u.alarms_api.dead_letters),
        ("/api/v1/notifications/dead-letters/{letterId}/replay", "POST", lambda u: u.alarms_api.replay_dead_letter),
    ]
    for name in ("notifiers", "recipients", "escalations"):
        table += [
            (f"/api/v1/{name}", "GET", _collection(name, "list")),
            (f"/api/v1/{name}", "POST", _collection(name, "create")),
            (f"/api/v1/{name}/{{itemId}}", "GET", _collection(name, "get")),
            (f"/api/v1/{name}/{{itemId}}", "PUT", _collection(name, "put")),
            (f"/api/v1/{name}/{{itemId}}", "DELETE", _collection(name, "delete")),
        ]
    return routes_from(table, settings, tag="alarms")


def ops_routes(settings: Settings) -> list[Route]:
    """The operation centre's API (ucity/ops/README.md), from its route table (which also documents it)."""
    from ucity.ops.api import ROUTES, handler_of

    def bound(route: Any) -> Callable[[Ucity], Handler]:
        return lambda u: handler_of(u.ops_api, route)

    return routes_from([(r.path, r.method, bound(r)) for r in ROUTES], settings)


def document(app: FastAPI) -> None:
    """/docs and /openapi.json: FastAPI's own routes (/health) and every API route mounted on the app, from the
    route tables (`TableRoute`) and the documentation each API keeps as data (ucity/openapi.py); not the
    dashboard's page and static files. Built on the first request; summaries come from the handlers of the
    running platform, so a document asked for before it started is not kept."""
    from ucity.openapi import Mounted, api_fragment

    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            mounted: list[Mounted] = []
            for route in app.router.routes:
                if isinstance(route, TableRoute):
                    mounted += [(route.path, method, h, route.tag) for method, h in route.handlers.items()]
                elif type(route) is Route and route.include_in_schema:  # e.g. the alarm stream; not FastAPI's
                    mounted += [(route.path, method, None, "") for method in sorted(route.methods or ()) if
                                method != "HEAD"]
            ucity = getattr(app.state, "ucity", None)
            fragment = api_fragment(mounted, ucity)
            schema.setdefault("paths", {}).update(fragment["paths"])
            schema["tags"] = [*schema.get("tags", []), *fragment["tags"]]
            components = schema.setdefault("components", {})
            for key, values in fragment["components"].items():
                components.setdefault(key, {}).update(values)
            guard: Guard | None = getattr(app, "guard", None)
            if guard is not None:  # server.require_auth: say which operations need the bearer token
                guarded(schema, guard)
            if ucity is None:
                app.openapi_schema = None
                return schema
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]


def guarded(schema: dict[str, Any], guard: Guard) -> None:
    """Mark the operations the token guard checks (ucity/access.py) with the bearer scheme and its 401 / 403, the
    permission they need in their description; the operations API marks its own (ucity/ops/openapi.py)."""
    for path, methods in schema.get("paths", {}).items():
        for method, op in methods.items():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            rule = guard.table.rule(method.upper(), path)
            if rule.kind in ("exempt", "self"):
                continue
            op["security"] = [{"bearer": []}]
            for status in ("401", "403"):
                op["responses"].setdefault(status, {"description": STATUS_TEXT_AUTH[status]})
            permission = rule.permission(method.upper(), path)
            if permission is not None:
                needs = f"Needs a bearer token with `{permission}` (server.require_auth)."
                op["description"] = f"{op['description']}\n\n{needs}" if op.get("description") else needs


STATUS_TEXT_AUTH = {"401": "No known bearer token (server.require_auth)",
                    "403": "The token's role lacks the permission, or its tenant or agency may not act"}


# A 405's type and title: NGSI-LD's OperationNotSupported (its 422 says "Operation not supported"), titled for
# what HTTP calls it. Titles stay English and fixed per problem type (module docstring).
METHOD_NOT_ALLOWED = ("https://uri.etsi.org/ngsi-ld/errors/OperationNotSupported", "Method not allowed")


def _collection(name: str, operation: str) -> Callable[[Ucity], Handler]:
    return lambda u: u.alarms_api.collection_handlers(name)[operation]


def stream_route() -> Route:
    """`GET /api/v1/stream`: the alarm event stream (server-sent events) for dashboards.

    The tenant is the NGSILD-Tenant header or, since browsers' EventSource cannot set headers,
    the `tenant` query parameter; `Last-Event-ID` (header or `lastEventId`) resumes.
    """

    async def stream(request: Request) -> Response:
        ucity: Ucity = request.app.state.ucity
        headers = {k.lower(): v for k, v in request.headers.items()}
        if "ngsild-tenant" not in headers and request.query_params.get("tenant"):
            headers["ngsild-tenant"] = request.query_params["tenant"]
        try:
            tenant = ucity.alarms_api.tenant(Req(method="GET", path=request.url.path, headers=headers))
        except UcityError as exc:
            return problem_response(exc.to_problem(), None, request.url.path)
        last = request.headers.get("last-event-id") or request.query_params.get("lastEventId")
        principal = request.scope.get("ucity.principal")
        # An alarm about a person, to a token without personal:read: coarse, without the entity (alarms/api.py).
        view = None if principal is None or principal.can(Permission.PERSONAL_READ) else ucity.alarms_api.person_view
        chunks = ucity.alarms.sse.stream(tenant, last, view)
        if principal is not None:  # opened with a token (server.require_auth)
            req = Req(method="GET", path=request.url.path, headers={"authorization": headers.get("authorization", "")})
            chunks = while_admitted(chunks, lambda: still_admitted(ucity, req, tenant))
        return StreamingResponse(chunks, media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return Route("/api/v1/stream", stream, methods=["GET"])


def health_detail_allowed(ucity: Ucity, request: Request) -> bool:
    """With the token guard on, `/health` stays open (liveness and readiness probes have no token), but its
    component detail (devices, ingest, configuration warnings) is for a token that reads data or configuration."""
    principal = ucity.ops.auth.identify(Req(method="GET", path="/health",
                                            headers={"authorization": request.headers.get("authorization", "")}))
    return principal is not None and (principal.can(Permission.DATA_READ) or principal.can(Permission.CONFIG_READ))


def still_admitted(ucity: Ucity, req: Req, tenant: str) -> bool:
    """Does the bearer token that opened a stream still admit it (not revoked, its agency not disabled)?"""
    auth = ucity.ops.auth
    principal = auth.identify(req)  # the tenant it was admitted for cannot change while it streams
    return principal is not None and (principal.agency is None or auth.agency_refusal(tenant, principal.agency) is None)


async def while_admitted(chunks: AsyncIterator[bytes], admitted: Callable[[], bool]) -> AsyncIterator[bytes]:
    """A stream opened with a bearer token ends once the token no longer admits it: checked before every write,
    events and heartbeats alike, so a revoked token's stream ends within `alarms.sse_heartbeat_s` (15 s)."""
    try:
        async for chunk in chunks:
            if not admitted():
                log.info("alarm stream ended: its bearer token no longer admits it")
                return
            yield chunk
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]


RouteTable = list[tuple[str, str, Callable[[Ucity], Handler]]]


class TableRoute(Route):
    """A route of a framework-free route table: its handlers by method (`handlers`, each given the running
    ucity) and its API's `tag` stay readable, so /openapi.json documents exactly what is mounted (`document`)."""

    def __init__(self, path: str, endpoint: Callable[[Request], Awaitable[Response]], methods: list[str],
                 handlers: dict[str, Callable[[Ucity], Handler]], tag: str) -> None:
        super().__init__(path, endpoint, methods=methods)
        self.handlers = handlers
        self.tag = tag


def routes_from(table: RouteTable, settings: Settings, prefix: str = "", tag: str = "") -> list[Route]:
    """One Starlette route per path, dispatching on the method; order of first appearance kept. `tag`: the
    API's name in /docs (empty: each route's documentation says it)."""
    routes: dict[str, dict[str, Callable[[Ucity], Handler]]] = {}
    for path, method, handler in table:
        routes.setdefault(path, {})[method] = handler
    return [_method_route(prefix + path, methods, settings, tag=tag) for path, methods in routes.items()]


def _method_route(path: str, methods: dict[str, Callable[[Ucity], Handler]], settings: Settings,
                  limits: dict[str, int] | None = None, tag: str = "") -> Route:
    endpoints = {m: adapt(h, settings, (limits or {}).get(m)) for m, h in methods.items()}

    async def dispatch(request: Request) -> Response:
        endpoint = endpoints.get(request.method)
        if endpoint is None:
            allowed = ", ".join(sorted(endpoints))
            body = http_problem(405, not_allowed(request.method, request.url.path, allowed))
            body["type"], body["title"] = METHOD_NOT_ALLOWED
            return problem_response(body, {"Allow": allowed}, request.url.path)
        return await endpoint(request)

    return TableRoute(path, dispatch, [*methods, "HEAD", "OPTIONS", "PUT", "PATCH", "DELETE", "POST", "GET"], methods,
                      tag)


def domain_routes_mounted(settings: Settings) -> list[Route]:
    """The routes every enabled domain declares (ucity/domains/README.md), one Starlette route per path."""
    from ucity.domains import domain_routes

    by_path: dict[str, dict[str, Callable[[Ucity], Handler]]] = {}
    limits: dict[str, dict[str, int]] = {}
    for route in domain_routes(settings):
        by_path.setdefault(route.path, {})[route.method] = _on_platform(route)
        if route.max_body_bytes is not None:
            limits.setdefault(route.path, {})[route.method] = route.max_body_bytes
    return [_method_route(path, methods, settings, limits.get(path)) for path, methods in by_path.items()]


def dashboard_routes(settings: Settings) -> list[BaseRoute]:
    """The dashboard at `/` with its static files and masked care areas (ucity/web/README.md)."""
    from ucity.web.routes import dashboard_routes as web_routes

    return web_routes(lambda table: routes_from(table, settings, tag="dashboard"))


def _on_platform(route: ApiRoute) -> Callable[[Ucity], Handler]:
    return lambda u: route.handler(u.platform)


class TrailingSlash:
    """Accept `/ngsi-ld/v1/entities/` as `/ngsi-ld/v1/entities` (some clients add the slash)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (path := ngsi_path(scope["path"])) != scope["path"]:
            scope = {**scope, "path": path}
        await self.app(scope, receive, send)




# Said once at every production start with `server.require_auth` off (docs/operations.md §4).
UNAUTHENTICATED_APIS = (
    "production with server.require_auth = false: only the operations API (/api/v1/events, grants, cameras, "
    "agencies, audit, auth) checks tokens; the NGSI-LD API, alarms and their stream, rules, notifiers, recipients, "
    "escalations, device provisioning and the domains' APIs serve personal data (locations, contacts) to whoever "
    "reaches this port: keep it on the operation centre's network behind an authenticating proxy, or turn "
    "server.require_auth on (docs/operations.md, 'What is protected as shipped')")
NO_TOKENS = ("server.require_auth is on but no token is configured (ops.admin_token, ops.tokens) or issued: every API "
             "answers 401 (docs/operations.md §4)")


async def unbound_agency_token_warnings(ucity: Ucity) -> list[str]:
    """The agency tokens (configured and issued) bound to no tenant whose agency exists in more than one of the
    tenants known at start: the store's, the default one, those tokens name and those agencies are registered in
    (auth.py `unbound_agency_tokens`). One read of the store's small tenant table, only when such a token exists.
    A token issued later is not checked until the next start (docs/operations-center.md §1)."""
    ops = ucity.ops
    specs = [*ops.tokens.configured_agency_tokens(), *ops.tokens.issued_agency_tokens()]
    if all(spec.tenant is not None for spec in specs):
        return []
    tenants = await known_tenants(ucity.store, ucity.settings.ngsild.default_tenant, ops.tokens, ops.agencies)
    return unbound_agency_tokens(specs, lambda agency: ops.agencies.reach(agency, tenants))


def start_failure(settings: Settings, exc: BaseException) -> str:
    """Why the platform did not start, as one line for the console: the error's type and first line, and the store
    (its password masked), the usual culprit. `ucity serve` (cli.py) leaves out the traceback uvicorn would print
    again after it."""
    lines = str(exc).strip().splitlines()
    reason = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return (f"시작 실패 / ucity could not start (store {display_url(settings.store_url)}): "
            f"{logsafe.redact(reason)}")


def create_app(settings: Settings, clock: Clock | None = None, tune_gc: bool = False) -> FastAPI:
    """The ucity ASGI app; the platform starts and stops with the app's lifespan.

    `tune_gc`: this process is a server of its own (`ucity serve`): settle the garbage collector
    once started (ucity/core/gc_tuning.py); not for apps embedded in another process, e.g. tests.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ucity = Ucity(settings, clock)
        app.state.ucity = ucity
        try:
            await ucity.start()
        except Exception as exc:  # the database down, the SQLite file in use...: one clear line (QA8 F11)
            app.state.start_failure = start_failure(settings, exc)
            log.error("%s", app.state.start_failure)
            log.debug("the start failed", exc_info=True)  # the traceback, at DEBUG only
            raise
        if settings.environment == "production" and not settings.auth_required:
            log.warning(UNAUTHENTICATED_APIS)
        if settings.auth_required and not ucity.ops.tokens.listing():
            log.warning(NO_TOKENS)
        for warning in missing_secret_warnings(settings):  # production without a secret: what will fail (QA8 F6)
            log.warning("%s", warning)
            ucity.ops.config_warnings.append(warning)  # /health's configWarnings, with the ops centre's own
        for warning in await unbound_agency_token_warnings(ucity):  # an agency token that crosses tenants (QA15 F3)
            log.warning("%s", warning)
            ucity.ops.config_warnings.append(warning)
        previous = gc_tuning.settle() if tune_gc else None
        try:
            yield
        finally:
            if previous is not None:
                gc_tuning.unsettle(previous)
            await ucity.stop()

    app = UcityApp(title="ucity", version=__version__, lifespan=lifespan,
                   description="Smart city integrated operations platform. NGSI-LD API at /ngsi-ld/v1 "
                               "(ETSI GS CIM 009); ucity's own endpoints below.")
    app.router.routes.extend(ngsild_routes(settings))
    app.router.routes.extend(ingest_routes(settings))
    app.router.routes.extend(rule_routes(settings))
    app.router.routes.extend(alarm_routes(settings))
    app.router.routes.append(stream_route())
    app.router.routes.extend(ops_routes(settings))
    app.router.routes.extend(domain_routes_mounted(settings))
    app.router.routes.extend(dashboard_routes(settings))

    document(app)
    from ucity.web.apidocs import serve_docs_offline  # /docs from the package, no CDN (ucity/web/apidocs.py)
    serve_docs_offline(app)

    async def readiness(request: Request) -> Response:
        ucity: Ucity = request.app.state.ucity
        probe = getattr(ucity.store, "probe", None)  # PostgreSQL: can the database be reached now (at most 0.5 s)
        if probe is not None:
            await probe()
        detail = ucity.platform.health()
        ready = all(part.get("ok", False) for part in detail.values())
        body: dict[str, Any] = {"status": "ok" if ready else "degraded", "live": True, "ready": ready,
                                "version": __version__}
        if app.guard is None or health_detail_allowed(ucity, request):
            body["components"] = detail
        return Response(orjson.dumps(body), status_code=200 if ready else 503, media_type="application/json")

    @app.get("/health", tags=["platform"], summary="Liveness and readiness with detail (503 while not ready)")
    async def health(request: Request) -> Response:
        return await readiness(request)

    # Probes for orchestrators (docs/operations.md §4, QA8 F12): a liveness probe on /health, which answers 503
    # while a dependency (the database) is down, would restart a process that is fine and waits for it.
    @app.get("/health/live", tags=["platform"], summary="Liveness: 200 while the process serves requests")
    async def health_live(request: Request) -> Response:
        return Response(orjson.dumps({"status": "ok", "live": True, "version": __version__}),
                        media_type="application/json")  # no dependency asked: they are readiness's business

    @app.get("/health/ready", tags=["platform"], summary="Readiness: /health's checks (503 while not ready)")
    async def health_ready(request: Request) -> Response:
        return await readiness(request)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        """Starlette's own refusals (a path no route serves, a method /health or /docs does not take), as
        ProblemDetails in Korean and English; a 405 keeps its Allow header (RFC 9110 §15.5.6)."""
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        body = http_problem(exc.status_code, detail)
        if exc.status_code == 404:
            body = http_problem(404, no_route(request.url.path))
        elif exc.status_code == 405:
            allowed = (exc.headers or {}).get("Allow", "")
            body = http_problem(405, not_allowed(request.method, request.url.path, allowed))
            body["type"], body["title"] = METHOD_NOT_ALLOWED
        return problem_response(body, dict(exc.headers) if exc.headers else None, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        return problem_response(http_problem(400, f"잘못된 요청 / invalid request: {exc.errors()}"), None,
                                request.url.path)

    @app.exception_handler(UcityError)
    async def ucity_error(request: Request, exc: UcityError) -> Response:
        return problem_response(exc.to_problem(), None, request.url.path)

    app.add_middleware(TrailingSlash)
    app.fast_routes = FastRoutes(settings)
    if settings.auth_required:
        app.guard = Guard(access_table(settings), settings.ngsild.default_tenant)
    return app
