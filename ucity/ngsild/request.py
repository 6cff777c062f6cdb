"""Reading NGSI-LD requests: tenant, media types, body, @context, options and paging.

Shared by every NGSI-LD handler so that each rule of the spec (415, 406, Link header versus body
@context, NGSILD-Tenant) is enforced in one place.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from ucity.core.errors import BadRequest, InvalidRequest, NotAcceptable, UnsupportedMediaType
from ucity.core.http import Req
from ucity.ngsild.context import CORE_CONTEXT_URLS

CORE_CONTEXT_URL = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.9.jsonld"
JSON = "application/json"
JSONLD = "application/ld+json"
GEOJSON = "application/geo+json"
MERGE_PATCH = "application/merge-patch+json"
_LINK = re.compile(r'<([^>]*)>\s*((?:;\s*[^;,]+)*)')
_TENANT = re.compile(r"^[A-Za-z0-9_:\-./]{1,255}$")
CONTEXT_REL = "http://www.w3.org/ns/json-ld#context"


def tenant_of(req: Req, default: str) -> tuple[str, bool]:
    """(tenant, explicitly given). A malformed tenant name is a 400."""
    value = req.header("ngsild-tenant")
    if value is None or value == "":
        return default, False
    if not _TENANT.match(value):
        raise BadRequest(f"invalid NGSILD-Tenant {value!r}")
    return value, True


def media_type(req: Req) -> str:
    return (req.header("content-type") or "").split(";")[0].strip().lower()


def read_body(req: Req, allowed: tuple[str, ...] = (JSON, JSONLD)) -> Any:
    """The JSON body, after checking its media type (415) and syntax (400)."""
    kind = media_type(req)
    if kind not in allowed:
        raise UnsupportedMediaType(f"Content-Type {kind or '(none)'} is not supported here; use one of {', '.join(allowed)}")
    if not req.body:
        raise InvalidRequest("the request body is empty")
    try:
        return orjson.loads(req.body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"the body is not valid JSON: {exc}") from exc


def link_context(req: Req) -> str | None:
    """The @context URL of a JSON-LD `Link` header, if any."""
    header = req.header("link")
    if not header:
        return None
    for match in _LINK.finditer(header):
        url, params = match.group(1), match.group(2)
        if CONTEXT_REL in params or 'rel="http://www.w3.org/ns/json-ld#context"' in params:
            return url
    return None


def request_context(req: Req, body: Any = None) -> Any:
    """What the client sent as @context: a Link header URL or the body's @context (or None)."""
    kind = media_type(req)
    link = link_context(req)
    body_ctx = body.get("@context") if isinstance(body, dict) else None
    if isinstance(body, list):
        contexts = [b.get("@context") for b in body if isinstance(b, dict) and "@context" in b]
        body_ctx = contexts[0] if contexts else None
    if kind == JSONLD and req.body:
        if link is not None:
            raise BadRequest("with Content-Type application/ld+json the @context goes in the body, not in a Link header")
        if body_ctx is None:
            raise BadRequest("a body sent as application/ld+json must carry an @context")
        return body_ctx
    if body_ctx is not None and kind in (JSON, MERGE_PATCH):
        raise BadRequest("with Content-Type application/json the @context must come in a Link header, not in the body")
    return link


def negotiate(req: Req, allow_geojson: bool = False) -> str:
    """The response media type from Accept (406 when none is acceptable)."""
    accept = req.header("accept")
    if not accept:
        return JSON
    offered = [JSON, JSONLD] + ([GEOJSON] if allow_geojson else [])
    best: tuple[float, str] | None = None
    for part in accept.split(","):
        pieces = [p.strip() for p in part.split(";")]
        kind = pieces[0].lower()
        quality = 1.0
        for piece in pieces[1:]:
            if piece.startswith("q="):
                try:
                    quality = float(piece[2:])
                except ValueError:
                    quality = 0.0
        candidates = [o for o in offered if kind in (o, "*/*", "application/*")]
        if kind in ("*/*", "application/*"):
            candidates = [JSON]
        if candidates and quality > 0 and (best is None or quality > best[0]):
            best = (quality, candidates[0])
    if best is None:
        raise NotAcceptable(f"none of {accept!r} can be produced; use {', '.join(offered)}")
    return best[1]


def response_context_header(ctx_input: Any) -> str:
    """The Link header of an application/json response: the one URL that names the request's @context.

    A body @context `[url, core]` (what JSON-LD clients send) is named by `url`, since the core
    context always applies. An inline context object has no URL: the core context is named.
    """
    url = ctx_input if isinstance(ctx_input, str) else CORE_CONTEXT_URL
    if isinstance(ctx_input, list):
        user = [c for c in ctx_input if not (isinstance(c, str) and c in CORE_CONTEXT_URLS)]
        if len(user) == 1 and isinstance(user[0], str):
            url = user[0]
    return f'<{url}>; rel="{CONTEXT_REL}"; type="application/ld+json"'


def response_context_value(ctx_input: Any) -> Any:
    """The @context of a JSON-LD response: the client's own, with the core context added once.

    A client that already named a core context (any version, e.g. FiLiP's v1.6 Link header) gets
    it back as it sent it, not with a second core context beside it.
    """
    if ctx_input is None:
        return CORE_CONTEXT_URL
    if isinstance(ctx_input, list):
        names_core = any(isinstance(c, str) and c in CORE_CONTEXT_URLS for c in ctx_input)
        return ctx_input if names_core else [*ctx_input, CORE_CONTEXT_URL]
    if isinstance(ctx_input, str) and ctx_input in CORE_CONTEXT_URLS:
        return ctx_input
    return [ctx_input, CORE_CONTEXT_URL]


def csv_param(req: Req, name: str) -> list[str]:
    raw = req.param(name)
    if raw is None:
        return []
    items = [item.strip() for item in raw.split(",")]
    if any(not item for item in items):
        raise BadRequest(f"parameter {name} has an empty item: {raw!r}")
    return items


def options(req: Req) -> set[str]:
    return {o for value in (req.params.get("options") or []) for o in value.split(",") if o} | set(
        f for value in (req.params.get("format") or []) for f in value.split(",") if f)


def int_param(req: Req, name: str, default: int, minimum: int = 0, maximum: int | None = None) -> int:
    raw = req.param(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise BadRequest(f"parameter {name} must be an integer, got {raw!r}") from exc
    if value < minimum or (maximum is not None and value > maximum):
        bound = f" and at most {maximum}" if maximum is not None else ""
        raise BadRequest(f"parameter {name} must be at least {minimum}{bound}, got {value}")
    return value


def bool_param(req: Req, name: str) -> bool:
    raw = req.param(name)
    if raw is None:
        return False
    if raw.lower() not in ("true", "false"):
        raise BadRequest(f"parameter {name} must be true or false, got {raw!r}")
    return raw.lower() == "true"


@dataclass(frozen=True)
class Paging:
    limit: int
    offset: int
    count: bool
