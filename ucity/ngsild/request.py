"""Reading NGSI-LD requests: tenant, media types, body, @context, query parameters, options and paging.

Shared by every NGSI-LD handler so that each rule of the spec (415, 406, Link header versus body
@context, NGSILD-Tenant, unknown query parameters, pagination links) is enforced in one place.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeVar
from urllib.parse import quote

import orjson

from ucity.core.errors import (
    BadRequest,
    InvalidRequest,
    NotAcceptable,
    OperationNotSupported,
    UnsupportedMediaType,
)
from ucity.core.http import Req, Resp
from ucity.core.params import refuse_nul
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
    value = req.headers.get("ngsild-tenant")  # Req.headers' names are lower-case (no .lower() per lookup)
    if value is None or value == "":
        return default, False
    if not _TENANT.match(value):
        raise BadRequest(f"잘못된 NGSILD-Tenant {value!r} / invalid NGSILD-Tenant {value!r}")
    return value, True


def media_type(req: Req) -> str:
    raw = req.headers.get("content-type") or ""
    found = _MEDIA_TYPES.get(raw)
    if found is None:
        found = raw.split(";")[0].strip().lower()
        if len(_MEDIA_TYPES) < 64:  # the header comes from clients: a few distinct values are kept
            _MEDIA_TYPES[raw] = found
    return found


# Content-Type header -> its media type. A write reads it twice (the body's type, then the @context rule),
# and clients send a handful of distinct values: looked up, not split and lower-cased again each time.
_MEDIA_TYPES: dict[str, str] = {}


def read_body(req: Req, allowed: tuple[str, ...] = (JSON, JSONLD)) -> Any:
    """The JSON body, after checking its media type (415) and syntax (400)."""
    kind = media_type(req)
    if kind not in allowed:
        kinds = ", ".join(allowed)
        raise UnsupportedMediaType(f"여기서는 Content-Type {kind or '(없음)'}을(를) 받지 않음({kinds} 중 하나를 쓰세요) / "
                                   f"Content-Type {kind or '(none)'} is not supported here; use one of {kinds}")
    if not req.body:
        raise InvalidRequest("요청 본문이 비어 있음 / the request body is empty")
    try:
        body = orjson.loads(req.body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"본문이 올바른 JSON이 아님({exc}) / the body is not valid JSON: {exc}") from exc
    if _LONG_RUN in req.body.translate(_DIGITS):  # rare: only then is the body read again to look at its integers
        _refuse_wide_integers(req.body)
    refuse_nul(req.body, body)
    return body


# orjson reads an integer beyond 64 bits as a float, silently: 123456789012345678901234567890 would be stored
# and returned as 1.2345678901234568e+29. A run of 19 digits (where 64-bit integers end) makes `read_body` look
# at the body's integers exactly, and refuse one that does not fit.
# Found by mapping every digit to b"0" and every other byte to b" ", then looking for 19 b"0"s: 14 times faster than
# the regex `[0-9]{19}` over a batch upsert's body, whose coordinates hold runs of 15-17 digits that the regex
# started to match at each of their digits (3.7 ms of 1,000 entities, 300 KB, against 0.27).
_DIGITS = bytes(48 if 48 <= byte <= 57 else 32 for byte in range(256))
_LONG_RUN = b"0" * 19
_INT64 = range(-(2**63), 2**63)


def _refuse_wide_integers(raw: bytes) -> None:
    def integer(text: str) -> int:
        value = int(text)
        if value not in _INT64:
            shown = f"{text[:40]}{'…' if len(text) > 40 else ''}"
            raise BadRequest(f"정수 {shown}은(는) 64비트에 들어가지 않음: 문자열로, 또는 소수부나 지수가 있는 수로 보내세요 / "
                             f"the integer {shown} does not fit in 64 bits; "
                             "send it as a string, or as a number with a fraction or exponent")
        return value

    with contextlib.suppress(RecursionError):  # nested deeper than the standard library reads (orjson took it)
        json.loads(raw, parse_int=integer)


def link_context(req: Req) -> str | None:
    """The @context URL of a JSON-LD `Link` header, if any."""
    header = req.headers.get("link")
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
            raise BadRequest("Content-Type이 application/ld+json이면 @context는 Link 헤더가 아니라 본문에 넣음 / "
                             "with Content-Type application/ld+json the @context goes in the body, not in a Link header")
        if body_ctx is None:
            raise BadRequest("application/ld+json으로 보낸 본문에는 @context가 있어야 함 / "
                             "a body sent as application/ld+json must carry an @context")
        return body_ctx
    if body_ctx is not None and kind in (JSON, MERGE_PATCH):
        raise BadRequest("Content-Type이 application/json이면 @context는 본문이 아니라 Link 헤더로 보내야 함 / "
                         "with Content-Type application/json the @context must come in a Link header, not in the body")
    return link


def negotiate(req: Req, allow_geojson: bool = False) -> str:
    """The response media type from Accept (406 when none is acceptable).

    §6.3.4: of json, ld+json and geo+json (in that order of preference) the one with the highest
    weight; equal weights go to the earlier one of that list, not to the client's order. A type's
    weight comes from its own media range, else `application/*`, else `*/*` (RFC 9110 §12.5.1).
    """
    accept = req.header("accept")
    if not accept:
        return JSON
    offered = [JSON, JSONLD] + ([GEOJSON] if allow_geojson else [])
    ranges = [_media_range(part) for part in accept.split(",")]
    quality, _, best = max((_weight(media, ranges), -n, media) for n, media in enumerate(offered))
    if quality <= 0:
        kinds = ", ".join(offered)
        raise NotAcceptable(f"{accept!r} 중 어느 것도 만들 수 없음({kinds} 중 하나를 쓰세요) / "
                            f"none of {accept!r} can be produced; use {kinds}")
    return best


def _media_range(part: str) -> tuple[str, float]:
    """(media range, q) of one member of an Accept header."""
    pieces = [p.strip() for p in part.split(";")]
    quality = 1.0
    for piece in pieces[1:]:
        if piece.startswith("q="):
            try:
                quality = float(piece[2:])
            except ValueError:
                quality = 0.0
    return pieces[0].lower(), quality


def _weight(media: str, ranges: list[tuple[str, float]]) -> float:
    for candidate in (media, media.split("/")[0] + "/*", "*/*"):
        weights = [quality for kind, quality in ranges if kind == candidate]
        if weights:
            return max(weights)
    return 0.0


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
    """The @context of a JSON-LD response: exactly the one the request named, else the core context.

    A Link header URL comes back as that string, a body @context as it was sent (string, array or
    object). The core context applies to every NGSI-LD document anyway (§4.4, §5.5.7), so it is
    not added beside the client's own; that is also what the ETSI conformance suite compares.
    """
    return CORE_CONTEXT_URL if ctx_input is None else ctx_input


def csv_param(req: Req, name: str) -> list[str]:
    raw = req.param(name)
    if raw is None:
        return []
    items = [item.strip() for item in raw.split(",")]
    if any(not item for item in items):
        raise BadRequest(f"매개변수 {name}에 빈 항목이 있음: {raw!r} / parameter {name} has an empty item: {raw!r}")
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
        raise BadRequest(f"매개변수 {name}은(는) 정수여야 함({raw!r}) / "
                         f"parameter {name} must be an integer, got {raw!r}") from exc
    if value < minimum or (maximum is not None and value > maximum):
        bound = f" and at most {maximum}" if maximum is not None else ""
        bound_ko = f" {maximum} 이하" if maximum is not None else ""
        raise BadRequest(f"매개변수 {name}은(는) {minimum} 이상{bound_ko}이어야 함({value}) / "
                         f"parameter {name} must be at least {minimum}{bound}, got {value}")
    return value


def bool_param(req: Req, name: str) -> bool:
    raw = req.param(name)
    if raw is None:
        return False
    if raw.lower() not in ("true", "false"):
        raise BadRequest(f"매개변수 {name}은(는) true 또는 false여야 함({raw!r}) / "
                         f"parameter {name} must be true or false, got {raw!r}")
    return raw.lower() == "true"


@dataclass(frozen=True)
class Paging:
    limit: int
    offset: int
    count: bool


# -- query parameters of each route ------------------------------------------------------------
# The parameters each NGSI-LD operation defines (CIM 009 §6, the tables of each resource); any other
# is a 400 InvalidRequest, so a misspelt parameter is reported instead of being silently ignored.
_PAGING: Final = frozenset({"limit", "offset", "count"})
_SHOW: Final = frozenset({"options", "format", "pick", "omit", "lang", "datasetId", "local"})
_SELECT: Final = frozenset({"id", "idPattern", "type", "attrs", "q", "georel", "geometry", "coordinates",
                            "geoproperty", "scopeQ"})
_TEMPORAL: Final = frozenset({"timerel", "timeAt", "endTimeAt", "timeproperty", "lastN", "aggrMethods",
                              "aggrPeriodDuration"})
_NONE: Final = frozenset[str]()
ROUTE_PARAMS: Final[Mapping[tuple[str, str], frozenset[str]]] = {
    ("POST", "/entities"): _NONE,
    ("GET", "/entities"): _SELECT | _SHOW | _PAGING | {"geometryProperty"},
    ("DELETE", "/entities"): frozenset({"id", "idPattern", "type", "q"}),
    ("PATCH", "/entities/{entityId:path}/attrs/{attrId}"): _NONE,
    ("PUT", "/entities/{entityId:path}/attrs/{attrId}"): _NONE,
    ("DELETE", "/entities/{entityId:path}/attrs/{attrId}"): frozenset({"datasetId", "deleteAll"}),
    ("POST", "/entities/{entityId:path}/attrs"): frozenset({"options", "type"}),
    ("PATCH", "/entities/{entityId:path}/attrs"): frozenset({"type"}),
    ("GET", "/entities/{entityId:path}"): _SHOW | {"attrs", "geometryProperty"},
    ("DELETE", "/entities/{entityId:path}"): _NONE,
    ("PATCH", "/entities/{entityId:path}"): _NONE,
    ("PUT", "/entities/{entityId:path}"): _NONE,
    ("POST", "/entityOperations/query"): _SHOW | _PAGING | {"geometryProperty"},
    ("POST", "/entityOperations/{op}"): frozenset({"options"}),
    ("GET", "/types"): frozenset({"details", "local"}),
    ("GET", "/types/{type:path}"): frozenset({"local"}),
    ("GET", "/attributes"): frozenset({"details", "local"}),
    ("GET", "/attributes/{attrId:path}"): frozenset({"local"}),
    ("POST", "/temporal/entities"): _NONE,
    ("GET", "/temporal/entities"): _SELECT | _TEMPORAL | _SHOW | _PAGING,
    ("PATCH", "/temporal/entities/{entityId:path}/attrs/{attrId}/{instanceId:path}"): _NONE,
    ("DELETE", "/temporal/entities/{entityId:path}/attrs/{attrId}/{instanceId:path}"): _NONE,
    ("DELETE", "/temporal/entities/{entityId:path}/attrs/{attrId}"): frozenset({"datasetId", "deleteAll"}),
    ("POST", "/temporal/entities/{entityId:path}/attrs"): _NONE,
    ("GET", "/temporal/entities/{entityId:path}"): _TEMPORAL | _SHOW | {"attrs"},
    ("DELETE", "/temporal/entities/{entityId:path}"): _NONE,
    ("POST", "/temporal/entityOperations/query"): _TEMPORAL | _SHOW | _PAGING,
    ("POST", "/subscriptions"): _NONE,
    ("GET", "/subscriptions"): _PAGING | {"options"},
    ("GET", "/subscriptions/{subscriptionId:path}"): frozenset({"options"}),
    ("PATCH", "/subscriptions/{subscriptionId:path}"): _NONE,
    ("DELETE", "/subscriptions/{subscriptionId:path}"): _NONE,
    ("POST", "/jsonldContexts"): _NONE,
    ("GET", "/jsonldContexts"): frozenset({"details", "kind"}),
    ("GET", "/jsonldContexts/{contextId:path}"): frozenset({"details"}),
    ("DELETE", "/jsonldContexts/{contextId:path}"): frozenset({"reload"}),
}
# Parameters CIM 009 v1.9.1 defines (Table 6.4.3.2-1 ...) that ucity does not implement: refused with
# 422 OperationNotSupported rather than ignored, so a client never takes an unfiltered or unordered
# answer for what it asked.
UNSUPPORTED_PARAMS: Final = frozenset({
    "join", "joinLevel", "containedBy", "entityMap", "entityMapLifetime", "csf", "collation", "orderBy",
    "orderFrom", "orderGeometry", "expandValues", "jsonKeys", "splitEntities",
})

Handler = Callable[[Req], Awaitable[Resp]]
Owner = TypeVar("Owner")


def check_params(req: Req, allowed: frozenset[str]) -> None:
    """400 InvalidRequest for a query parameter the operation does not define (422 if unsupported)."""
    for name in req.params:
        if name in allowed:
            continue
        if name in UNSUPPORTED_PARAMS:
            raise OperationNotSupported(f"이 브로커는 쿼리 매개변수 {name}을(를) 지원하지 않음 / "
                                        f"the query parameter {name} is not supported by this broker")
        known = ", ".join(sorted(allowed))
        raise InvalidRequest(f"알 수 없는 쿼리 매개변수 {name!r}(이 작업이 받는 것: {known or '없음'}) / "
                             f"unknown query parameter {name!r}; this operation takes: {known or 'none'}")


def with_route_params(method: str, path: str, handler_of: Callable[[Owner], Handler]) -> Callable[[Owner], Handler]:
    """`handler_of` with the query parameters of route (method, path) checked first (ROUTE_PARAMS)."""
    allowed = ROUTE_PARAMS[(method, path)]

    def bind(owner: Owner) -> Handler:
        handler = handler_of(owner)

        async def checked(req: Req) -> Resp:
            check_params(req, allowed)
            return await handler(req)

        return checked

    bind.__wrapped__ = handler_of  # type: ignore[attr-defined]  # the handler itself, for /docs (server.document)
    return bind


# -- pagination links (§5.5.9, §6.3.13) ---------------------------------------------------------
# Values keep the characters NGSI-LD parameters use (URIs, type and scope expressions) readable.
_LINK_SAFE: Final = ":/,;*()!$'@~"


def page_links(req: Req, offset: int, limit: int, more: bool, media_type: str) -> list[str]:
    """The `prev` / `next` Link values of a page: this request's path and parameters with another
    offset, as a relative URL (`</ngsi-ld/v1/entities?limit=2&offset=2&type=A>;rel="next";type=...`).

    `more` says whether elements follow this page; `prev` is given on every page but the first.
    Parameters are sorted by name so that the same page always has the same URL.
    """
    links = []
    if offset > 0 and limit > 0:
        links.append(_page_link(req, max(0, offset - limit), limit, "prev", media_type))
    if more and limit > 0:
        links.append(_page_link(req, offset + limit, limit, "next", media_type))
    return links


def _page_link(req: Req, offset: int, limit: int, rel: str, media_type: str) -> str:
    params = {name: values[-1] for name, values in req.params.items()}
    params.update(limit=str(limit), offset=str(offset))
    query = "&".join(f"{quote(k, safe='')}={quote(v, safe=_LINK_SAFE)}" for k, v in sorted(params.items()))
    return f'<{req.path}?{query}>;rel="{rel}";type="{media_type}"'


def add_links(resp: Resp, links: list[str]) -> Resp:
    """`resp` with `links` added to its Link header (after the @context link of a JSON reply)."""
    if links:
        resp.headers["Link"] = ", ".join(filter(None, [resp.headers.get("Link"), *links]))
    return resp
