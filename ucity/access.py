"""Bearer-token authentication and coarse permissions for every API (`server.require_auth`).

The operations API (/api/v1/events, cameras, agencies, grants, audit, auth) checks its tokens itself
(ucity/ops/api.py). Every other API is guarded here, with the same tokens (`ops.tokens`, `ops.admin_token`,
tokens issued through /api/v1/auth/tokens), the same registry and the same errors: 401 ProblemDetails with
`WWW-Authenticate: Bearer realm="ucity"` without a known token, 403 with a `permission` member for a token
without the permission, 403 for a token of another tenant or of an agency that may not act now.

`UcityApp.__call__` (server.py) asks the `Guard` before anything else, fast routes included; with
`server.require_auth` off there is no guard and the request costs one test of `None`. With it on a request
costs a walk of `ACCESS` below and, where a token is needed, one SHA-256 and a dict lookup (TokenRegistry).

`ACCESS` is the one table of what each API needs: GET and HEAD read, any other method writes (the NGSI-LD
query operations `POST .../entityOperations/query` read). tests/test_access.py fails when a mounted route is
in none of its rows. A domain's `ApiRoute` may name its permission; by default domain routes are data.

The principal admitted is the scope's `ucity.principal` and the handler's `Req.principal` (server.py `adapt`): the
NGSI-LD handlers ask it for `personal:read` on entities of a personal type (`privacy.personal_entity_types`), which
this table cannot see from the path, and audit those reads (ucity/ngsild/personal.py, QA10 F5); for `personal:write`
on writes and deletions of such entities, audited too (`operator` and `admin` hold it, the `ingest` role does not).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from ucity.core.errors import BadRequest
from ucity.core.http import ApiRoute, Req
from ucity.core.params import ACTOR_HEADER, actor_header_value, principal_actor
from ucity.ngsild.request import tenant_of
from ucity.ops.auth import AgencyRefused, Forbidden, Permission, Principal, Unauthorized

log = logging.getLogger(__name__)
Scope = MutableMapping[str, Any]
P = Permission


@dataclass(frozen=True, slots=True)
class Rule:
    """What a request needs: nothing (`exempt`), the operations API's own check (`self`), or a token with
    `read` (GET, HEAD) / `write` (other methods); `unmapped`: a known token, then the router's 404 or 405."""

    kind: str
    read: Permission | None = None
    write: Permission | None = None

    def permission(self, method: str, path: str) -> Permission | None:
        return self.read if method in ("GET", "HEAD") or ngsi_path(path) in READ_POSTS else self.write


EXEMPT = Rule("exempt")
SELF = Rule("self")
UNMAPPED = Rule("unmapped")
DATA = Rule("data", P.DATA_READ, P.DATA_WRITE)
CONFIG = Rule("config", P.CONFIG_READ, P.CONFIG_ADMIN)

# Open to anyone: liveness, the dashboard's page and static files, the API documentation (no data in them).
EXEMPT_PATHS = frozenset({"/health", "/health/live", "/health/ready", "/", "/favicon.ico", "/openapi.json"})
# Device measures carry the device's API key, as FIWARE's IoT Agent does.
EXEMPT_ROUTES = frozenset({("POST", "/iot/json"),
                           ("GET", "/iot/about"), ("HEAD", "/iot/about")})  # the agent's version, open as FIWARE's
NGSI_PREFIX = "/ngsi-ld/v1"
REFUSAL_AUDIT_S = 60.0  # one audit line per token, reason and permission per minute (the others are counted)
# One hosted @context document (not the list): notifications and entities name it in their Link header, so their
# receivers, outside ucity and without a token, must be able to fetch it; it is vocabulary, never data.
HOSTED_CONTEXT = "/ngsi-ld/v1/jsonldContexts/"
# The request headers the guard reads (as bytes, lower-case): the token, the tenant, the actor's display name.
WANTED = frozenset({b"authorization", b"ngsild-tenant", b"fiware-service", b"x-ucity-actor"})
# NGSI-LD queries sent as a POST body: reads.
READ_POSTS = frozenset({"/ngsi-ld/v1/entityOperations/query", "/ngsi-ld/v1/temporal/entityOperations/query"})


def ngsi_path(path: str) -> str:
    """An NGSI-LD path without its trailing slashes (`/ngsi-ld/v1/entities/` is `/ngsi-ld/v1/entities`): some
    clients add one, and server.py's `TrailingSlash` routes them as without."""
    if path.startswith(NGSI_PREFIX) and len(path) > len(NGSI_PREFIX) + 1 and path.endswith("/"):
        return path.rstrip("/")
    return path


def ops_prefixes() -> tuple[str, ...]:
    """The paths under which the operations API's routes are mounted (ucity/ops/api.py ROUTES); they check their
    tokens themselves, and the footage links (`/api/v1/cameras/{id}/stream|still`) their signed grant."""
    from ucity.ops.api import ROUTES

    return tuple(sorted({"/".join(route.path.split("/")[:4]) for route in ROUTES}))


# (path, or the start of a path followed by "/") -> rule; the first that applies wins.
ACCESS: tuple[tuple[str, Rule], ...] = (
    ("/ngsi-ld/v1", DATA),  # entities, batch, temporal, subscriptions, types, attributes, jsonldContexts
    ("/static", EXEMPT),  # the dashboard's files
    ("/docs", EXEMPT),  # the API documentation's page and its files
    ("/api/v1/alarms", DATA),  # operators act with data:write: acknowledge ... and resend an alarm's dead letter
    ("/api/v1/stream", DATA),
    # Device health and ingest stats: data:read; their handlers (ucity/ingest/http.py) show apikeys only with
    # config:read (QA17 F1) and the devices of a personal type only with personal:read (QA17 F3), counted otherwise.
    ("/api/v1/devices/health", DATA),
    ("/api/v1/ingest/stats", DATA),
    ("/api/v1/dashboard/care-areas", DATA),
    ("/api/v1/rules", CONFIG),
    ("/api/v1/escalations", CONFIG),
    ("/api/v1/notifiers", CONFIG),
    ("/api/v1/recipients", CONFIG),
    ("/api/v1/notifications/dead-letters", CONFIG),  # list and replay
    ("/iot/devices", CONFIG),
    ("/iot/services", CONFIG),
    *((prefix, SELF) for prefix in ops_prefixes()),
)


def _template(path: str) -> re.Pattern[str]:
    """A route path template (`/x/{id}`, `/x/{rest:path}`) as a regular expression."""
    parts = re.split(r"(\{[^}]+\})", path)
    return re.compile("^" + "".join(
        (".*" if p.endswith(":path}") else "[^/]+") if p.startswith("{") else re.escape(p) for p in parts) + "$")


class AccessTable:
    """`ACCESS`, and the routes the enabled domains declare (by method, with the permission they name)."""

    def __init__(self, domain_routes: Iterable[ApiRoute] = ()) -> None:
        by_path: dict[str, dict[str, Rule]] = {}
        for route in domain_routes:
            rule = DATA if route.permission is None else Rule("domain", P(route.permission), P(route.permission))
            by_path.setdefault(route.path, {})[route.method] = rule
        self.domains = [(_template(path), rules) for path, rules in by_path.items()]

    def rule(self, method: str, path: str) -> Rule:
        """The rule of a request, its path read as the router will route it (`ngsi_path`: the trailing slash of
        an NGSI-LD path goes, server.py `TrailingSlash`)."""
        path = ngsi_path(path)
        if path in EXEMPT_PATHS or (method, path) in EXEMPT_ROUTES:
            return EXEMPT
        if method in ("GET", "HEAD") and path.startswith(HOSTED_CONTEXT) and "/" not in path[len(HOSTED_CONTEXT):]:
            return EXEMPT  # one document, never the list
        for prefix, rule in ACCESS:
            if path.startswith(prefix) and (len(path) == len(prefix) or path[len(prefix)] == "/"):
                return rule
        for pattern, rules in self.domains:
            if pattern.match(path):
                return rules.get(method, DATA)
        return UNMAPPED


# Paths outside /iot whose handlers read the tenant as the IoT Agent does (ucity/ingest/http.py `tenant`): the guard
# must read it the same way, or a token bound to one tenant could name it in `NGSILD-Tenant` and read another's
# device health and ingest statistics (apikeys included, for config:read) through `fiware-service`.
FIWARE_TENANT_PATHS = frozenset({"/api/v1/devices/health", "/api/v1/ingest/stats"})


def requested_tenant(path: str, headers: dict[str, str], query: bytes) -> str | None:
    """The tenant a request is for, read as its API reads it: `NGSILD-Tenant`; on /iot and on ingest's own reads
    (device health, ingest stats: the IoT Agent handlers' `tenant()`) `fiware-service` first; on the alarm stream
    the `tenant` query parameter when the header is absent (EventSource cannot send one)."""
    if path.startswith("/iot/") or path in FIWARE_TENANT_PATHS:
        return headers.get("fiware-service") or headers.get("ngsild-tenant")
    if path == "/api/v1/stream" and "ngsild-tenant" not in headers and query:
        # Blank values kept, and a blank tenant is no tenant, as the stream's handler reads it (Starlette's
        # query_params): `?tenant=a&tenant=` is the default tenant there, so it must not be `a` here.
        return dict(parse_qsl(query.decode("latin-1"), keep_blank_values=True)).get("tenant") or None
    return headers.get("ngsild-tenant")


class Guard:
    """Admits a request to every API but the operations API (which checks itself), or refuses it."""

    def __init__(self, table: AccessTable, default_tenant: str, now: Callable[[], float] = time.monotonic) -> None:
        self.table = table
        self.default_tenant = default_tenant
        self._actors: dict[tuple[str, str | None], bytes] = {}
        self.now = now  # seconds, for the pacing of refusal audit lines
        # (token, reason, permission) -> (when its last audit line was written, refusals not audited since)
        self._refused: dict[tuple[str, str, str | None], tuple[float, int]] = {}

    async def admit(self, ucity: Any, scope: Scope) -> Scope:
        """The request's scope, its `X-Ucity-Actor` replaced by the bearer token's actor (`principal_actor`) and
        `ucity.principal` set; Unauthorized (401) or Forbidden (403) otherwise."""
        method, path = scope["method"], scope["path"]
        root = scope.get("root_path") or ""
        if root and path.startswith(root):
            path = path[len(root):] or "/"
        rule = self.table.rule(method, path)
        if rule is EXEMPT or rule is SELF:
            return scope
        headers = {name.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]
                   if (name := k.lower()) in WANTED}
        auth = ucity.ops.auth
        req = Req(method=method, path=path, headers=headers)
        try:
            principal = auth.bearer(req)
        except Unauthorized:
            log.debug("401 %s %s: no known bearer token", method, path)  # never the token
            raise
        tenant = requested_tenant(path, headers, scope.get("query_string", b"")) or self.default_tenant
        try:
            auth.admit(principal, tenant)
            permission = rule.permission(method, path)
            if permission is not None:
                principal.require(permission)
        except Forbidden as refused:
            await self._audit(ucity, principal, tenant, method, path, refused, rule.permission(method, path))
            raise
        raw = [(k, v) for k, v in scope["headers"] if k.lower() != b"x-ucity-actor"]
        raw.append((b"x-ucity-actor", self._actor(principal, headers.get(ACTOR_HEADER))))
        return {**scope, "headers": raw, "ucity.principal": principal}

    def _actor(self, principal: Principal, display: str | None) -> bytes:
        """The `X-Ucity-Actor` value of an authenticated request (`principal_actor`), remembered per token and
        display name (a few hundred: clients choose the names)."""
        key = (principal.actor, display)
        found = self._actors.get(key)
        if found is None:
            found = actor_header_value(principal_actor(principal.actor, display))
            if len(self._actors) >= 512:
                self._actors.clear()
            self._actors[key] = found
        return found

    async def _audit(self, ucity: Any, principal: Principal, tenant: str, method: str, path: str,
                     refused: Forbidden, permission: Permission | None) -> None:
        """A 403 for a known token is audited (`auth` / `refused`) as the operations API does: in the tenant asked
        for, or, for a token bound to another tenant, in the token's own (its administrators look there)."""
        if isinstance(refused, AgencyRefused):
            reason = refused.reason
        elif principal.tenant is not None and principal.tenant != tenant:
            reason = "tenant"
        else:
            reason = "permission"
        try:
            where = principal.tenant or tenant_of(Req(method=method, path=path, headers={"ngsild-tenant": tenant}),
                                                  self.default_tenant)[0]
        except BadRequest:
            where = self.default_tenant
        detail: dict[str, Any] = {"token": principal.id, "method": method, "path": path[:500]}
        if reason == "tenant":
            detail["requestedTenant"] = tenant[:255]
        if reason == "permission" and permission is not None:
            detail["permission"] = str(permission)
        # One line per token, reason and permission per REFUSAL_AUDIT_S, counting the refusals in between: a
        # token can no longer fill the audit log with 403s (QA3: 360 lines/s from one client).
        key, now = (principal.id, reason, str(permission) if permission is not None else None), self.now()
        last = self._refused.get(key)
        if last is not None and now - last[0] < REFUSAL_AUDIT_S:
            self._refused[key] = (last[0], last[1] + 1)
            return
        if len(self._refused) >= 4096:
            self._refused.clear()
        self._refused[key] = (now, 0)
        if last is not None and last[1]:
            detail["alsoRefused"] = last[1]  # refusals of the same kind since the previous line, not audited
        audit = ucity.ops.audit
        await audit.append(audit.row(where, "auth", "refused", principal.actor, agency=principal.agency,
                                     outcome="denied", reason=reason, **detail))


def access_table(settings: Any) -> AccessTable:
    """The table of this configuration: `ACCESS` and the enabled domains' routes."""
    from ucity.domains import domain_routes

    return AccessTable(domain_routes(settings))
