"""Framework-free request and response types for ucity's handlers.

Handlers take a `Req` and return a `Resp`; only server.py knows the web framework and converts
to and from it. Tests can call handlers directly with a `Req`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass(slots=True)
class Req:
    method: str
    path: str
    params: dict[str, list[str]] = field(default_factory=dict)  # query string, multi-valued
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes = b""
    path_params: dict[str, str] = field(default_factory=dict)
    base_url: str = "http://127.0.0.1:8000"
    # The bearer token's principal (ucity.ops.auth.Principal) the token guard admitted (`ucity.principal` in the
    # ASGI scope, ucity/access.py); None with `server.require_auth` off.
    principal: Any = None

    def param(self, name: str, default: str | None = None) -> str | None:
        values = self.params.get(name)
        return values[-1] if values else default

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)


@dataclass(slots=True)
class Resp:
    status: int = 200
    body: Any = None  # JSON-serialisable, or bytes for a pre-encoded body
    headers: dict[str, str] = field(default_factory=dict)
    media_type: str = "application/json"

    def encode(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        return orjson.dumps(self.body)


Handler = Callable[[Req], Awaitable[Resp]]


@dataclass(frozen=True, slots=True)
class ApiRoute:
    """An HTTP endpoint a domain contributes (ucity/domains/README.md), without the web framework.

    `handler` receives the running platform and returns the handler for this request, so routes can
    be declared before the platform exists (server.py mounts them when it builds the app) and the
    handler is found on a component the domain registered in its `setup`. `max_body_bytes` replaces
    `server.max_body_bytes` for this route (e.g. photo uploads); None keeps the server's limit.
    `permission`: what a bearer token needs here when `server.require_auth` is on (a `Permission` of
    ucity/ops/auth.py, e.g. "config:admin"); None: `data:read` for GET and HEAD, `data:write` otherwise.
    """

    method: str
    path: str
    handler: Callable[[Any], Handler]
    max_body_bytes: int | None = None
    permission: str | None = None
