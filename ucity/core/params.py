"""Reading a request's JSON body and query parameters, with bilingual 400s (RFC 7807 via the server).

The platform's own APIs (alarms, operations centre) and every domain's API (ucity/domains/*/api.py)
read the same kinds of parameters: a JSON object body, an integer in a range, an ISO 8601 time, a
comma-separated list of allowed values, a bounding box. One implementation here keeps their
errors the same for every API (Korean / English detail, `BadRequest` → 400, malformed JSON →
`InvalidRequest` → 400 of that type), so a new domain does not write them again.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from urllib.parse import quote, unquote

import orjson

from ucity.core.clock import parse_iso, require_offset, to_micros
from ucity.core.errors import BadRequest, InvalidRequest, UnsupportedMediaType
from ucity.core.http import Req

_INTEGER = re.compile(r"[+-]?[0-9]{1,18}")


def bad(ko: str, en: str) -> BadRequest:
    """A 400 whose detail is given in Korean and in English."""
    return BadRequest(f"{ko} / {en}")


def json_body(req: Req, *, json_only: bool = True) -> Any:
    """The body as JSON ({} when empty). A declared media type other than JSON (`application/json` or a
    `+json` type) is a 415, as the NGSI-LD and IoT Agent endpoints answer; no Content-Type is taken as
    JSON. `json_only=False` skips that check (a handler that reads other media types itself)."""
    if not req.body:
        return {}
    if json_only:
        declared = (req.header("content-type") or "").split(";")[0].strip().lower()
        if declared and declared != "application/json" and not declared.endswith("+json"):
            raise UnsupportedMediaType(f"JSON 본문이 필요합니다 / the body must be application/json, not {declared}")
    try:
        body = orjson.loads(req.body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"JSON 형식 오류 / malformed JSON: {exc}") from exc
    refuse_nul(req.body, body)
    return body


def holds_nul(value: Any) -> bool:
    """Whether a parsed JSON value holds a NUL character (U+0000) in any text or key. PostgreSQL's jsonb and
    text cannot hold one: its write would fail on that backend every time (SQLite would take it)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any("\x00" in key or holds_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(holds_nul(item) for item in value)
    return False


def refuse_nul(raw: bytes, parsed: Any) -> None:
    """400 for a JSON body with a NUL character in any text or key (`holds_nul`), alike on both backends. Only a
    body holding the escape `\\u0000` (the only way JSON carries one) is walked."""
    if b"\\u0000" in raw and holds_nul(parsed):
        raise BadRequest("텍스트에 NUL 문자(U+0000)는 쓸 수 없습니다 / text may not hold a NUL character (U+0000)")


def json_object(req: Req) -> dict[str, Any]:
    """The body as a JSON object ({} when empty)."""
    body = json_body(req)
    if not isinstance(body, dict):
        raise bad("JSON 객체가 필요합니다", "the body must be a JSON object")
    return body


def values_param(req: Req, name: str, allowed: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """Every value of a repeatable, comma-separated parameter, once each, in order; each among `allowed`."""
    raw = [v for value in req.params.get(name, []) for v in value.split(",") if v.strip()]
    values = tuple(dict.fromkeys(v.strip() for v in raw))
    if allowed is not None:
        wrong = [v for v in values if v not in allowed]
        if wrong:
            raise bad(f"{name} 값이 잘못되었습니다: {', '.join(wrong)}",
                      f"{name} must be among {', '.join(allowed)}; got {', '.join(wrong)}")
    return values


def int_param(req: Req, name: str, default: int, low: int, high: int) -> int:
    """An integer parameter in `low..high` (`default` when absent)."""
    text = req.param(name)
    if text is None:
        return default
    if not _INTEGER.fullmatch(text):  # not int(): it also takes "1_000" and surrounding blanks
        raise bad(f"{name} 값은 정수여야 합니다", f"{name} must be an integer")
    value = int(text)
    if not low <= value <= high:
        raise bad(f"{name} 범위 오류: {low}..{high}", f"{name} must be between {low} and {high}")
    return value


def time_param(req: Req, name: str) -> datetime | None:
    """An ISO 8601 date-time parameter with its UTC offset (None when absent). Without one it is a 400, not read as
    UTC (QA17 F4: a Korea time sent without `+09:00` would select 9 hours off; `+` is `%2B` in a URL)."""
    text = req.param(name)
    if text is None:
        return None
    try:
        require_offset(text, name)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    try:
        return parse_iso(text)
    except ValueError:
        raise bad(f"{name} 값은 ISO 8601 시각이어야 합니다", f"{name} must be an ISO 8601 date-time") from None


def micros_param(req: Req, name: str) -> int | None:
    """`time_param` as microseconds since the epoch (the stores' time columns)."""
    at = time_param(req, name)
    return None if at is None else to_micros(at)


def bbox_param(text: str | None) -> tuple[float, float, float, float] | None:
    """`minLon,minLat,maxLon,maxLat` (WGS 84), None when absent."""
    if text is None:
        return None
    try:
        minx, miny, maxx, maxy = (float(v) for v in text.split(","))
    except ValueError:
        raise bad("bbox는 minLon,minLat,maxLon,maxLat 입니다", "bbox is minLon,minLat,maxLon,maxLat") from None
    if not (-180 <= minx <= maxx <= 180 and -90 <= miny <= maxy <= 90):
        raise bad("bbox 범위 오류", "bbox needs min <= max, longitudes in [-180, 180], latitudes in [-90, 90]")
    return minx, miny, maxx, maxy


ACTOR_HEADER = "x-ucity-actor"
ACTOR_MAX = 200


def header_text(value: str) -> str:
    """A header value as the text the client meant. HTTP carries header bytes, and a browser can only
    send ISO-8859-1 ones, so a client sends non-Latin text (a Korean operator's name) percent-encoded
    as UTF-8 (`encodeURIComponent`); curl and other tools send the UTF-8 bytes as they are, which the
    server reads as ISO-8859-1. Both come back as the text here; anything else is kept as it came."""
    if "%" in value:
        try:
            decoded = unquote(value, errors="strict")
        except UnicodeDecodeError:
            decoded = value
        if decoded != value:
            return decoded
    if any(ord(c) > 0x7F for c in value):
        try:
            return value.encode("latin-1").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            return value
    return value


# The actors read, by header value: with the token guard on, every request carries its token's actor (and the
# operator's display name) percent-encoded, and reading it back cost 7-20 µs per request (unquote, the UTF-8 and
# control-character checks). A few hundred distinct values (tokens × display names); clients choose them, so the
# table is bounded and starts again when full.
ACTORS_REMEMBERED = 1024
_ACTORS: dict[str, str] = {}


def actor_header(req: Req, required: bool = True, default: str = "") -> str:
    """Who acts: the one place every API reads its actor (Context.actor, audit lines, alarm actions).

    With `server.require_auth` on, the access guard (ucity/access.py) has replaced the header by the bearer
    token's actor (`principal_actor`), so this is the authenticated principal; with it off, it is what the
    client sent (`X-Ucity-Actor`, percent-encoded UTF-8 or raw UTF-8; at most 200 characters).
    `required`: a 400 when it is missing."""
    raw = req.header(ACTOR_HEADER) or ""
    actor = _ACTORS.get(raw)
    if actor is None:  # (a refused value raises here every time: it is never remembered)
        actor = actor_text(raw)
        if len(_ACTORS) >= ACTORS_REMEMBERED:
            _ACTORS.clear()
        _ACTORS[raw] = actor
    if not actor:
        if required:
            raise bad("X-Ucity-Actor 헤더가 필요합니다", "the X-Ucity-Actor header names who acts (required)")
        return default
    return actor


BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def actor_text(raw: str) -> str:
    """An `X-Ucity-Actor` value as text ("" when blank); 400 beyond 200 characters, or with control characters or
    bidirectional-text controls (which make an audit line read other than it is stored, e.g. U+202E)."""
    actor = header_text(raw.strip()).strip()
    if len(actor) > ACTOR_MAX or any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 or c in BIDI_CONTROLS for c in actor):
        raise bad("X-Ucity-Actor 값이 잘못되었습니다", f"X-Ucity-Actor must be at most {ACTOR_MAX} printable characters")
    return actor


def principal_actor(actor: str, display: str | None) -> str:
    """The actor of an authenticated request: the token's (`operator:tok-1`), and the `X-Ucity-Actor` the client
    sent, if any, only as a display name in parentheses (`operator:tok-1 (김민수)`), shortened to fit 200."""
    name = actor_text(display or "").replace("(", "").replace(")", "").strip()  # no `x) admin:admin (y` in it
    room = ACTOR_MAX - len(actor) - 3
    return f"{actor} ({name[:room]})" if name and room > 0 else actor


def actor_header_value(actor: str) -> bytes:
    """`actor` as an `X-Ucity-Actor` header value that `actor_header` reads back exactly (percent-encoded UTF-8)."""
    return quote(actor, safe="").encode("ascii")
