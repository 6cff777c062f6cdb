"""NGSI-LD subscriptions and notifications (ETSI GS CIM 009 §5.8, §5.11, §6.10, §6.11).

What lives here, in order:

* validation: the wire form of a Subscription (§5.2.12, NotificationParams §5.2.14) becomes a
  stored document with attribute names and entity types expanded (`parse_members`), and back
  (`present`): names are compacted with the @context of the request that reads them;
* `Subscription`: a stored document compiled for matching (selectors, q tree, geo-query,
  watched attributes, triggers) plus its run-time state (throttling, timers);
* matching: `classify` says what an `EntityChange` did (entity created/updated/deleted, and per
  attribute), `Subscription.matches` checks one subscription, `SubscriptionIndex` finds the
  candidates by (tenant, entity type) and watched attribute, so that a write is never tested
  against every subscription (DESIGN.md §7);
* delivery: one `Outbox` per subscription, a bounded queue and one worker task, so that the
  notifications of a subscription arrive in order and a slow or dead endpoint delays only its
  own subscription, never a write; failed posts are retried with exponential backoff on the
  platform clock, then counted as failed; the POSTs go through `notify_http.NotifyClient`, a lean
  keep-alive HTTP/1.1 client (httpx cost as much CPU per POST as matching and rendering);
* `SubscriptionService`: the CRUD handlers, the bus consumer, periodic (`timeInterval`)
  notifications and throttling on platform-clock timers, and persistence of the documents (the
  delivery counters at most every `STATS_FLUSH_S` seconds, and only over the definition this process
  holds: `replace_doc_if` on `modifiedAt`). Every process re-reads the stored subscriptions every
  `subscriptions.refresh_s` (`ucity.core.refresh.Refresh`): what other processes on the store created,
  changed or deleted is applied here within that bound (docs/operations.md, scale-out).

Choices where the spec leaves room:

* creating or updating a subscription sends no initial notification (CIM 009 describes none);
* a subscription is stored and shown with the members its client set, plus `status` and the
  default `notificationTrigger` (attributeCreated, attributeUpdated, the spec's default); other
  defaults (isActive true, format normalized, sysAttrs false, accept application/json) apply
  without being shown, and the delivery counters appear once there was a delivery;
* an entity creation counts as the creation of each of its attributes (so `attributeCreated`
  fires); an entity deletion fires only `entityDeleted`; `entityUpdated` is any created,
  updated or deleted attribute of an existing entity (or a change of its type or scope);
* an attribute counts as updated whenever a write touched it, even with the same value;
* with `throttling`, changes inside the window are not dropped: the latest state of each entity
  is sent in one notification when the window ends;
* `timesSent`, `timesFailed`, `status`, `lastSuccess` and `lastFailure` count delivery attempts
  (the spec defines `status` by the last attempt), retries included, so `timesSent - timesFailed`
  is the number of notifications delivered; delivery is at least once (a receiver that answers
  after `notify_timeout_s` gets the same notification `id` again);
* a failed POST is retried after `retry_base_s`, doubling up to `retry_max_s` (about 10 minutes
  in all with the defaults); a notification still failing after `max_retries` retries is
  abandoned, logged and counted (`timesAbandoned` on the subscription, `abandoned` on /health);
  the notifications behind it wait in its queue, and a full queue drops its oldest notification
  (`dropped` on /health); both /health counters keep what deleted subscriptions counted;
* the notifications that queue up while a subscription's POST is in flight go out in its next
  POST as one notification (their entities in order, up to `COALESCE_ENTITIES`), so a busy
  subscription costs one POST per round trip of its endpoint, not one per write;
* queued notifications live in memory while their receiver answers; from a subscription's first failed
  attempt until a delivery succeeds they are written through to the store, and a graceful stop writes what
  is queued and what throttling windows hold (`ucity.ngsild.saved`); the owner of each subscription sends
  them again at its start or next re-read, in order, with their ids and attempts (one log line at shutdown
  says how many). A crash while deliveries succeed can lose what was in memory (docs/clients.md);
* with the token guard on, entities of a personal type are notified only while whoever last created or changed the
  subscription may read them: not when that caller lacked `personal:read` (WITHHOLD), nor once its token is revoked,
  expires or loses the permission (`sub_owner.OWNER`, followed at notification time), nor when that caller is
  unknown (a subscription stored before owners were recorded); docs/operations.md §4.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import re
import uuid
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Final
from urllib.parse import quote, urlsplit

import orjson

from ucity.core.bus import EntitiesChanged, EntityChange
from ucity.core.clock import TimerHandle, parse_iso, parse_iso_clamped, to_iso
from ucity.core.clock import sleep as clock_sleep
from ucity.core.errors import AlreadyExists, BadRequest, NotFound, OperationNotSupported
from ucity.core.http import Req, Resp
from ucity.core.ids import uuid4_texts
from ucity.core.netguard import AddressGuard, RefusedAddress
from ucity.core.platform import Platform
from ucity.core.refresh import Refresh
from ucity.ngsild.geo import GeoQuery, GeoQueryError, parse_geoquery_json
from ucity.ngsild.model import NULL, Ctx, RenderOptions, check_name, is_uri, normalize_time, render_entity
from ucity.ngsild.notify_http import DeliveryError, NotifyClient
from ucity.ngsild.qeval import eval_q, q_terms
from ucity.ngsild.qlang import QExpr, QueryError, parse_q
from ucity.ngsild.request import (
    JSON,
    JSONLD,
    MERGE_PATCH,
    add_links,
    negotiate,
    options,
    page_links,
    read_body,
    response_context_header,
    response_context_value,
)
from ucity.ngsild.saved import STALE_REFRESHES, SavedNotifications
from ucity.ngsild.scope import ScopeTest, parse_scope_query, scope_matcher
from ucity.ngsild.sub_owner import EXPIRED, MARKED, NOT_GRANTED, OWNER, REVOKED, UNKNOWN, OwnerRights, owner_of
from ucity.ngsild.typeq import parse_type_expr
from ucity.ops.auth import Permission
from ucity.store.base import Doc, EntityQuery, QFilter, TypeExpr

log = logging.getLogger(__name__)

KIND: Final = "subscription"
SUBSCRIPTIONS: Final = "/ngsi-ld/v1/subscriptions/"
TRIGGERS: Final = frozenset({
    "entityCreated", "entityUpdated", "entityDeleted", "attributeCreated", "attributeUpdated", "attributeDeleted",
})
DEFAULT_TRIGGERS: Final = ("attributeCreated", "attributeUpdated")
FORMATS: Final = {"normalized": "normalized", "keyValues": "keyValues", "simplified": "keyValues",
                  "concise": "concise"}
STATS_FLUSH_S: Final = 5.0
"""Delivery counters are persisted at most this often (seconds), not per notification."""
COALESCE_ENTITIES: Final = 1000
"""At most this many entities in a notification that joins ones queued behind a slow POST."""

Key = tuple[str, str]  # (tenant, subscription id)
_HEADER_NAME: Final = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_RESERVED_HEADERS: Final = frozenset({"content-type", "content-length", "host", "link", "ngsild-tenant"})
_STATS: Final = ("timesSent", "timesFailed", "timesAbandoned", "lastNotification", "lastSuccess", "lastFailure",
                  "status")
_ANY: Final = ""  # index key for "any entity type" / "any attribute"; never an IRI
_NO_DOC: Final[dict[str, Any]] = {}  # what a change without documents has for types (as EntityChange.types)
_DELETED: Final = "attributeDeleted"
WITHHOLD: Final = "personalWithheld"
"""Stored (never shown) on a subscription last created or changed, with the token guard on, by a caller without
`personal:read`: its notifications never carry an entity of a personal type (`SubscriptionService._withheld`). The
token that set it is recorded too (`sub_owner.OWNER`): a holder's subscription stops notifying personal entities once
that token is revoked, expires or loses `personal:read`."""
_WHY: Final = {
    MARKED: "it was created or last changed by a caller without personal:read",
    UNKNOWN: "who created it is unknown (created before ucity recorded it, or with the token guard off): treated as "
             "without personal:read until a holder of personal:read changes it",
    REVOKED: "the token that last changed it (%s) was revoked",
    EXPIRED: "the token that last changed it (%s) has expired",
    NOT_GRANTED: "the token that last changed it (%s) no longer holds personal:read",
}
"""Why a subscription's personal entities are withheld, for its one log line (`_withheld`)."""


# ================================================================================================
# Validation: wire form -> stored document
# ================================================================================================


def _string(name: str) -> Callable[[Any, Ctx], dict[str, Any]]:
    def parse(value: Any, ctx: Ctx) -> dict[str, Any]:
        if not isinstance(value, str):
            raise BadRequest(f"{name}은(는) 문자열이어야 함 / {name} must be a string")
        return {name: value}

    return parse


def _seconds(name: str) -> Callable[[Any, Ctx], dict[str, Any]]:
    def parse(value: Any, ctx: Ctx) -> dict[str, Any]:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise BadRequest(f"{name}은(는) 양수(초)여야 함({value!r}) / {name} must be a positive number of seconds, "
                             f"got {value!r}")
        return {name: value}

    return parse


def _names(value: Any, member: str, ctx: Ctx) -> list[str]:
    """A non-empty list of attribute names, expanded."""
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise BadRequest(f"{member}은(는) 속성 이름의 비어 있지 않은 배열이어야 함 / {member} must be a non-empty array of "
                         "attribute names")
    return list(dict.fromkeys(ctx.expand_term(check_name(v)) for v in value))


def _selector(value: Any, ctx: Ctx) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadRequest("entities의 각 항목은 type(과 선택적으로 id 또는 idPattern)을 가진 객체여야 함 / each member of "
                         "entities must be an object with type and optionally id or idPattern")
    if not isinstance(value.get("type"), str) or not value["type"].strip():
        raise BadRequest("엔티티 선택자마다 type이 필요함 / each entity selector needs a type")
    selector: dict[str, Any] = {"types": [list(g) for g in parse_type_expr(value["type"], ctx.expand_term).any_of]}
    if "id" in value:
        if not is_uri(value["id"]):
            raise BadRequest(f"엔티티 선택자의 id는 URI여야 함({value['id']!r}) / entity selector id must be a URI, "
                             f"got {value['id']!r}")
        selector["id"] = value["id"]
    if "idPattern" in value:
        selector["idPattern"] = _regex(value["idPattern"])
    return selector


def _regex(value: Any) -> str:
    if not isinstance(value, str):
        raise BadRequest("idPattern은 문자열이어야 함 / idPattern must be a string")
    try:
        re.compile(value)
    except re.error as exc:
        raise BadRequest(f"idPattern이 올바른 정규식이 아님({exc}) / idPattern is not a valid regular expression: "
                         f"{exc}") from exc
    return value


def _entities(value: Any, ctx: Ctx) -> dict[str, Any]:
    if not isinstance(value, list) or not value:
        raise BadRequest("entities는 엔티티 선택자의 비어 있지 않은 배열이어야 함 / entities must be a non-empty array of "
                         "entity selectors")
    return {"entities": [_selector(item, ctx) for item in value]}


def _watched(value: Any, ctx: Ctx) -> dict[str, Any]:
    return {"watchedAttributes": _names(value, "watchedAttributes", ctx)}


def _triggers(value: Any, ctx: Ctx) -> dict[str, Any]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise BadRequest("notificationTrigger는 문자열의 비어 있지 않은 배열이어야 함 / notificationTrigger must be a "
                         "non-empty array of strings")
    unknown = [v for v in value if v not in TRIGGERS]
    if unknown:
        expected = ", ".join(sorted(TRIGGERS))
        raise BadRequest(f"알 수 없는 notificationTrigger {unknown[0]!r}(가능한 값: {expected}) / unknown "
                         f"notificationTrigger {unknown[0]!r}; expected some of {expected}")
    return {"notificationTrigger": list(dict.fromkeys(value))}


def _q(value: Any, ctx: Ctx) -> dict[str, Any]:
    if not isinstance(value, str):
        raise BadRequest("q는 문자열이어야 함 / q must be a string")
    try:
        expr = parse_q(value)
    except QueryError as exc:
        raise BadRequest(exc.bilingual()) from exc  # "잘못된 q: ... / invalid q: ..."
    # Terms are expanded now, with the @context of this request, like every other name.
    return {"q": value, "qTerms": {term: ctx.expand_term(term) for term in sorted(q_terms(expr))}}


def _geoq(value: Any, ctx: Ctx) -> dict[str, Any]:
    try:
        query = parse_geoquery_json(value)
    except GeoQueryError as exc:
        raise BadRequest(exc.bilingual("잘못된 geoQ", "invalid geoQ")) from exc
    return {"geoQ": query.to_json(), "geoPropertyIri": ctx.expand_term(check_name(query.geoproperty))}


def _scopeq(value: Any, ctx: Ctx) -> dict[str, Any]:
    if not isinstance(value, str) or not value.strip():
        raise BadRequest("scopeQ는 비어 있지 않은 문자열이어야 함 / scopeQ must be a non-empty string")
    parse_scope_query(value)
    return {"scopeQ": value}


def _dataset_ids(value: Any, ctx: Ctx) -> dict[str, Any]:
    """datasetId (§5.2.12): the attribute instances notifications show (`@none`: the default one)."""
    if not isinstance(value, list) or not value or not all(v == "@none" or is_uri(v) for v in value):
        raise BadRequest('datasetId는 URI(기본 인스턴스는 "@none")의 비어 있지 않은 배열이어야 함 / datasetId must be a '
                         'non-empty array of URIs (or "@none" for the default instance)')
    return {"datasetId": list(dict.fromkeys(value))}


def _active(value: Any, ctx: Ctx) -> dict[str, Any]:
    if not isinstance(value, bool):
        raise BadRequest("isActive는 true 또는 false여야 함 / isActive must be true or false")
    return {"isActive": value}


def _expires(value: Any, ctx: Ctx) -> dict[str, Any]:
    return {"expiresAt": normalize_time(value, "expiresAt")}


def _jsonld_context(value: Any, ctx: Ctx) -> dict[str, Any]:
    if not is_uri(value):
        raise BadRequest("jsonldContext는 @context의 URI여야 함 / jsonldContext must be the URI of an @context")
    return {"jsonldContext": value}


def _key_values(value: Any, member: str, headers: bool) -> list[dict[str, str]]:
    if not isinstance(value, list):
        raise BadRequest(f"{member}은(는) {{key, value}} 객체의 배열이어야 함 / {member} must be an array of "
                         "{key, value} objects")
    pairs: list[dict[str, str]] = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("key"), str) or not isinstance(item.get("value"), str):
            raise BadRequest(f"{member}의 각 항목은 문자열 key와 value를 가진 객체여야 함 / each {member} item must be an "
                             "object with string key and value")
        key, text = item["key"], item["value"]
        if headers and (not _HEADER_NAME.match(key) or key.lower() in _RESERVED_HEADERS):
            raise BadRequest(f"{member}의 key {key!r}는 쓸 수 있는 HTTP 헤더 이름이 아님 / {member} key {key!r} is not a "
                             "usable HTTP header name")
        if headers and ("\r" in text or "\n" in text):
            raise BadRequest(f"{member}의 {key!r} 값에 줄바꿈이 있으면 안 됨 / {member} value of {key!r} must not contain "
                             "line breaks")
        pairs.append({"key": key, "value": text})
    return pairs


def _endpoint(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadRequest("notification.endpoint는 uri를 가진 객체여야 함 / notification.endpoint must be an object with a uri")
    uri = value.get("uri")
    parts = urlsplit(uri) if isinstance(uri, str) else None
    if parts is not None and parts.scheme.lower() in ("mqtt", "mqtts"):  # the optional MQTT notification binding
        raise OperationNotSupported(f"MQTT 알림 엔드포인트는 지원하지 않음({uri!r}): 알림은 HTTP 또는 HTTPS로만 보냄 / "
                                    f"MQTT notification endpoints are not supported, got {uri!r}; "
                                    "notifications are sent over HTTP or HTTPS only")
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadRequest(f"notification.endpoint.uri는 http 또는 https 절대 URI여야 함({uri!r}) / "
                         f"notification.endpoint.uri must be an absolute http or https URI, got {uri!r}")
    endpoint: dict[str, Any] = {"uri": uri}
    if "accept" in value:
        if value["accept"] not in (JSON, JSONLD):
            raise BadRequest(f"notification.endpoint.accept는 {JSON} 또는 {JSONLD}여야 함({value['accept']!r}) / "
                             f"notification.endpoint.accept must be {JSON} or {JSONLD}, got {value['accept']!r}")
        endpoint["accept"] = value["accept"]
    if "receiverInfo" in value:
        endpoint["receiverInfo"] = _key_values(value["receiverInfo"], "receiverInfo", headers=True)
    if "notifierInfo" in value:  # kept and shown; its keys (MQTT options) do not apply to HTTP
        endpoint["notifierInfo"] = _key_values(value["notifierInfo"], "notifierInfo", headers=False)
    return endpoint


def _notification_members(value: Any, ctx: Ctx) -> dict[str, Any]:
    """The NotificationParams members a client may set, validated (read-only ones are ignored)."""
    if not isinstance(value, dict):
        raise BadRequest("notification은 객체여야 함 / notification must be an object")
    out: dict[str, Any] = {}
    if "attributes" in value:  # null (in a PATCH) removes the projection
        attrs = value["attributes"]
        out["attributes"] = None if attrs is None else _names(attrs, "notification.attributes", ctx)
    if "format" in value:
        if value["format"] not in FORMATS:
            raise BadRequest(f"notification.format은 normalized, concise, keyValues 중 하나여야 함({value['format']!r}) / "
                             f"notification.format must be normalized, concise or keyValues, got {value['format']!r}")
        out["format"] = FORMATS[value["format"]]
    if "sysAttrs" in value:
        if not isinstance(value["sysAttrs"], bool):
            raise BadRequest("notification.sysAttrs는 true 또는 false여야 함 / notification.sysAttrs must be true or false")
        out["sysAttrs"] = value["sysAttrs"]
    if value.get("showChanges") not in (None, False):
        raise OperationNotSupported("notification.showChanges는 지원하지 않음 / notification.showChanges is not supported")
    if "endpoint" in value:
        out["endpoint"] = _endpoint(value["endpoint"])
    return out


def _notification(value: Any, ctx: Ctx) -> dict[str, Any]:
    return {"notification": _notification_members(value, ctx)}


MEMBERS: Final[Mapping[str, Callable[[Any, Ctx], dict[str, Any]]]] = {
    "subscriptionName": _string("subscriptionName"),
    "description": _string("description"),
    "entities": _entities,
    "watchedAttributes": _watched,
    "notificationTrigger": _triggers,
    "q": _q,
    "geoQ": _geoq,
    "scopeQ": _scopeq,
    "lang": _string("lang"),
    "datasetId": _dataset_ids,
    "timeInterval": _seconds("timeInterval"),
    "throttling": _seconds("throttling"),
    "expiresAt": _expires,
    "isActive": _active,
    "jsonldContext": _jsonld_context,
    "notification": _notification,
}
"""Client-settable members and their parsers; other members (status, csf, temporalQ ...) are ignored."""

# Stored helper fields that belong to a member and go away with it.
_COMPANIONS: Final = {"q": ("qTerms",), "geoQ": ("geoPropertyIri",)}
_REQUIRED: Final = frozenset({"notification", "isActive"})


def parse_members(body: Mapping[str, Any], ctx: Ctx, allow_null: bool) -> dict[str, Any]:
    """Validate every settable member of a (fragment of a) Subscription; None marks a removal."""
    out: dict[str, Any] = {}
    for name, parse in MEMBERS.items():
        if name not in body:
            continue
        if body[name] is None and allow_null and name not in _REQUIRED:
            out[name] = None
        else:
            out.update(parse(body[name], ctx))
    return out


def check_whole(doc: Mapping[str, Any]) -> None:
    """The constraints between members (§5.2.12) that a complete subscription must meet."""
    if "entities" not in doc and "watchedAttributes" not in doc:
        raise BadRequest("구독에는 entities나 watchedAttributes(또는 둘 다)가 필요함 / a subscription needs entities or "
                         "watchedAttributes (or both)")
    if "timeInterval" in doc and "watchedAttributes" in doc:
        raise BadRequest("timeInterval과 watchedAttributes는 함께 쓸 수 없음 / timeInterval and watchedAttributes cannot be "
                         "used together")
    if "timeInterval" in doc and "throttling" in doc:
        raise BadRequest("timeInterval과 throttling은 함께 쓸 수 없음 / timeInterval and throttling cannot be used together")
    if "timeInterval" in doc and "entities" not in doc:
        raise BadRequest("주기 구독(timeInterval)에는 entities가 필요함 / a periodic subscription (timeInterval) needs entities")
    if "endpoint" not in doc.get("notification", {}):
        raise BadRequest("notification.endpoint가 필요함 / notification.endpoint is required")


def check_expiry(fields: Mapping[str, Any], now: datetime) -> None:
    expires = fields.get("expiresAt")
    if expires is not None and parse_iso(expires) <= now:
        raise BadRequest(f"expiresAt {expires}이(가) 미래 시각이 아님 / expiresAt {expires} is not in the future")


def new_document(body: Any, ctx: Ctx, ctx_input: Any, now: datetime) -> Doc:
    """The stored document of a subscription created from `body`."""
    if not isinstance(body, dict):
        raise BadRequest("구독은 JSON 객체여야 함 / a subscription must be a JSON object")
    if body.get("type") != "Subscription":
        raise BadRequest('구독에는 "type": "Subscription"이 필요함 / a subscription needs "type": "Subscription"')
    sub_id = body.get("id", f"urn:ngsi-ld:Subscription:{uuid.uuid4()}")
    if not is_uri(sub_id):
        raise BadRequest(f"구독 id는 URI여야 함({sub_id!r}) / subscription id must be a URI, got {sub_id!r}")
    if "notification" not in body:
        raise BadRequest("notification이 필요함 / notification is required")
    fields = parse_members(body, ctx, allow_null=False)
    check_expiry(fields, now)
    stamp = to_iso(now)
    doc: Doc = {"id": sub_id, "type": "Subscription", **fields, "context": ctx_input, "createdAt": stamp,
                "modifiedAt": stamp}
    check_whole(doc)
    return doc


def merged_document(doc: Doc, fragment: Any, ctx: Ctx, now: datetime) -> Doc:
    """`doc` with a PATCH fragment merged in (§5.8.2): members replaced, notification merged."""
    if not isinstance(fragment, dict):
        raise BadRequest("본문은 JSON 객체여야 함 / the body must be a JSON object")
    if "id" in fragment and fragment["id"] != doc["id"]:
        raise BadRequest("본문의 id가 경로의 id와 다름 / the id in the body differs from the id in the path")
    if "type" in fragment and fragment["type"] != "Subscription":
        raise BadRequest('구독의 type은 "Subscription"임 / a subscription has "type": "Subscription"')
    fields = parse_members(fragment, ctx, allow_null=True)
    if not fields:
        raise BadRequest("본문에 클라이언트가 바꿀 수 있는 항목이 없음 / the fragment changes nothing a client may set")
    check_expiry(fields, now)
    out = {**doc, "notification": dict(doc["notification"])}
    for name, value in fields.items():
        if name == "notification":
            out["notification"].update(value)
            out["notification"] = {k: v for k, v in out["notification"].items() if v is not None}
        elif value is None:
            for key in (name, *_COMPANIONS.get(name, ())):
                out.pop(key, None)
        else:
            out[name] = value
    out["modifiedAt"] = to_iso(now)
    check_whole(out)
    return out


# ================================================================================================
# Stored document -> wire form
# ================================================================================================


def status_of(doc: Mapping[str, Any], now: datetime) -> str:
    if "expiresAt" in doc and parse_iso_clamped(doc["expiresAt"]) <= now:  # stored: tolerant of old data
        return "expired"
    return "active" if doc.get("isActive", True) else "paused"


def types_text(groups: Iterable[Iterable[str]], ctx: Ctx) -> str:
    """A type selector as text, compacted: `A`, `A,B`, `(A;B),C`."""
    parts = []
    for group in groups:
        names = [ctx.compact_iri(t) for t in group]
        parts.append(names[0] if len(names) == 1 else "(" + ";".join(names) + ")")
    return ",".join(parts)


def present(doc: Mapping[str, Any], ctx: Ctx, now: datetime, sys_attrs: bool = False) -> dict[str, Any]:
    """A stored subscription in wire form, names compacted with the reader's @context."""
    out: dict[str, Any] = {"id": doc["id"], "type": "Subscription"}
    for name in ("subscriptionName", "description"):
        if name in doc:
            out[name] = doc[name]
    if "entities" in doc:
        out["entities"] = [_present_selector(s, ctx) for s in doc["entities"]]
    if "watchedAttributes" in doc:
        out["watchedAttributes"] = [ctx.compact_iri(a) for a in doc["watchedAttributes"]]
    out["notificationTrigger"] = doc.get("notificationTrigger", list(DEFAULT_TRIGGERS))
    for name in ("timeInterval", "q", "geoQ", "scopeQ", "lang", "datasetId", "throttling", "expiresAt",
                 "jsonldContext", "isActive"):
        if name in doc:
            out[name] = doc[name]
    out["status"] = status_of(doc, now)
    out["notification"] = _present_notification(doc["notification"], ctx)
    if sys_attrs:
        out["createdAt"], out["modifiedAt"] = doc["createdAt"], doc["modifiedAt"]
    return out


def _present_selector(selector: Mapping[str, Any], ctx: Ctx) -> dict[str, Any]:
    out: dict[str, Any] = {"type": types_text(selector["types"], ctx)}
    for name in ("id", "idPattern"):
        if name in selector:
            out[name] = selector[name]
    return out


def _present_notification(params: Mapping[str, Any], ctx: Ctx) -> dict[str, Any]:
    out = dict(params)
    if "attributes" in params:
        out["attributes"] = [ctx.compact_iri(a) for a in params["attributes"]]
    return out


# ================================================================================================
# Matching
# ================================================================================================


@dataclass(frozen=True, slots=True)
class ChangeKinds:
    """What one committed change did: to the entity, and to each attribute (IRI -> trigger)."""

    entity: str
    attrs: Mapping[str, str]


def classify(change: EntityChange) -> ChangeKinds:
    before_attrs = (change.before or {}).get("attrs", {})
    after_attrs = (change.after or {}).get("attrs", {})
    if change.before is None:
        return ChangeKinds("entityCreated", dict.fromkeys(after_attrs, "attributeCreated"))
    if change.after is None:
        return ChangeKinds("entityDeleted", dict.fromkeys(before_attrs, "attributeDeleted"))
    kinds: dict[str, str] = {}
    for attr in change.attrs:
        if attr in after_attrs:
            kinds[attr] = "attributeUpdated" if attr in before_attrs else "attributeCreated"
        elif attr in before_attrs:
            kinds[attr] = "attributeDeleted"
    return ChangeKinds("entityUpdated", kinds)


@dataclass(frozen=True, slots=True)
class Selector:
    """One entity selector: `id` takes precedence over `idPattern`; types as OR of AND-groups."""

    id: str | None
    pattern: re.Pattern[str] | None
    groups: tuple[tuple[str, ...], ...]

    @classmethod
    def from_stored(cls, stored: Mapping[str, Any]) -> Selector:
        pattern = re.compile(stored["idPattern"]) if "idPattern" in stored else None
        return cls(stored.get("id"), pattern, tuple(tuple(g) for g in stored["types"]))

    def matches(self, doc: Mapping[str, Any]) -> bool:
        if self.id is not None:
            if doc.get("id") != self.id:
                return False
        elif self.pattern is not None and not self.pattern.search(str(doc.get("id"))):
            return False
        types = set(doc.get("type", ()))
        return any(all(t in types for t in group) for group in self.groups)


@dataclass(eq=False)
class Subscription:
    """A stored subscription compiled for matching, with its run-time state."""

    tenant: str
    doc: Doc
    ctx: Any  # the compiled @context notifications are compacted with
    selectors: tuple[Selector, ...]
    watched: frozenset[str] | None
    triggers: frozenset[str]
    q: QExpr | None
    geo: GeoQuery | None
    scope: ScopeTest | None
    render: RenderOptions
    expires_at: datetime | None = None
    withhold: bool = False  # entities of a personal type are left out of its notifications (WITHHOLD)
    owner: str | None = None  # the token that last set it (sub_owner.OWNER), followed at notification time
    owner_issued: str | None = None  # when that token was issued (None: a configured token)
    unowned: bool = False  # loaded with neither OWNER nor WITHHOLD while the guard is on: treated as without the right
    notifications: int = 0  # notifications queued since this process started (not persisted)
    last_sent: datetime | None = None
    pending: dict[str, dict[str, Any]] = field(default_factory=dict)
    throttle_timer: TimerHandle | None = None
    periodic_timer: TimerHandle | None = None

    @classmethod
    def compile(cls, tenant: str, doc: Doc, ctx: Any) -> Subscription:
        params = doc["notification"]
        attrs = params.get("attributes")
        return cls(
            tenant=tenant, doc=doc, ctx=ctx,
            selectors=tuple(Selector.from_stored(s) for s in doc.get("entities", ())),
            watched=frozenset(doc["watchedAttributes"]) if "watchedAttributes" in doc else None,
            triggers=frozenset(doc.get("notificationTrigger", DEFAULT_TRIGGERS)),
            q=parse_q(doc["q"], naive_utc=True) if "q" in doc else None,  # stored: loads as it was accepted
            geo=parse_geoquery_json(doc["geoQ"]) if "geoQ" in doc else None,
            scope=scope_matcher(parse_scope_query(doc["scopeQ"])) if "scopeQ" in doc else None,
            render=RenderOptions(fmt=params.get("format", "normalized"), sys_attrs=params.get("sysAttrs", False),
                                 attrs=frozenset(attrs) if attrs else None, lang=doc.get("lang"),
                                 dataset_ids=frozenset(doc["datasetId"]) if "datasetId" in doc else None),
            expires_at=parse_iso_clamped(doc["expiresAt"]) if "expiresAt" in doc else None,  # never refused on load
            withhold=bool(doc.get(WITHHOLD)),
            owner=owner_of(doc)[0], owner_issued=owner_of(doc)[1],
        )

    @property
    def id(self) -> str:
        return str(self.doc["id"])

    @property
    def guarded(self) -> bool:
        """Whether its personal entities depend on who set it (`SubscriptionService._why_withheld` decides)."""
        return self.withhold or self.unowned or self.owner is not None

    @property
    def key(self) -> Key:
        return (self.tenant, self.id)

    @property
    def throttling(self) -> timedelta | None:
        value = self.doc.get("throttling")
        return timedelta(seconds=value) if value else None

    @property
    def interval(self) -> timedelta | None:
        value = self.doc.get("timeInterval")
        return timedelta(seconds=value) if value else None

    @property
    def context_input(self) -> Any:
        """The @context named in notifications: jsonldContext, else the creating request's."""
        return self.doc.get("jsonldContext", self.doc.get("context"))

    def resolve(self, term: str) -> str:
        terms: dict[str, str] = self.doc.get("qTerms", {})
        return terms.get(term) or str(self.ctx.expand_term(term))

    def live(self, now: datetime) -> bool:
        """Active and not expired (the status "active"), without parsing dates per change."""
        return bool(self.doc.get("isActive", True)) and (self.expires_at is None or now < self.expires_at)

    def selects(self, doc: Mapping[str, Any]) -> bool:
        """Entity selectors, q, geoQ and scopeQ: does the subscription cover this entity state?"""
        if self.selectors and not any(s.matches(doc) for s in self.selectors):
            return False
        if self.q is not None and not eval_q(self.q, doc, self.resolve):
            return False
        if self.geo is not None and not self._geo_matches(doc):
            return False
        return self.scope is None or self.scope(doc.get("scope") or ())

    def _geo_matches(self, doc: Mapping[str, Any]) -> bool:
        assert self.geo is not None
        instances = doc.get("attrs", {}).get(self.doc["geoPropertyIri"], [])
        return any(i.get("type") == "GeoProperty" and isinstance(i.get("value"), dict) and self.geo.matches(i["value"])
                   for i in instances)

    def triggered(self, kinds: ChangeKinds) -> bool:
        """Does this kind of change, on the watched attributes, fire one of the triggers?"""
        relevant = kinds.attrs if self.watched is None else {a: k for a, k in kinds.attrs.items() if a in self.watched}
        if self.watched is not None and not relevant:
            return False
        if kinds.entity in self.triggers:
            return True
        return kinds.entity != "entityDeleted" and any(k in self.triggers for k in relevant.values())

    def matches(self, change: EntityChange, kinds: ChangeKinds, now: datetime) -> bool:
        if not self.live(now) or not self.triggered(kinds):
            return False
        doc = change.after if change.after is not None else change.before
        return doc is not None and self.selects(doc)

    def wants(self, attr: str) -> bool:
        return self.render.attrs is None or attr in self.render.attrs


def render_change(sub: Subscription, change: EntityChange, kinds: ChangeKinds, now: str) -> dict[str, Any]:
    """The entity as the subscription's notification shows it after `change`."""
    if change.after is None:
        assert change.before is not None
        return _deleted_entity(sub, change.before, now)
    entity = render_entity(change.after, sub.ctx, sub.render)
    for attr, kind in kinds.attrs.items():
        if kind == "attributeDeleted" and sub.wants(attr):
            entity[sub.ctx.compact_iri(attr)] = _deleted_attribute(sub.render, now)
    return entity


def _deleted_entity(sub: Subscription, before: Mapping[str, Any], now: str) -> dict[str, Any]:
    """A deleted entity is notified by its id, type and deletedAt (§5.2.12; with sysAttrs, also
    its createdAt and modifiedAt)."""
    types = [sub.ctx.compact_iri(t) for t in before.get("type", [])]
    entity: dict[str, Any] = {"id": before["id"], "type": types[0] if len(types) == 1 else types}
    if sub.render.sys_attrs:
        entity.update(createdAt=before.get("createdAt"), modifiedAt=before.get("modifiedAt"))
    entity["deletedAt"] = now
    return entity


def _deleted_attribute(opts: RenderOptions, now: str) -> Any:
    # CIM 009 represents a deleted attribute by the NGSI-LD null, with deletedAt as a system attribute.
    if opts.fmt == "keyValues":
        return NULL
    out: dict[str, Any] = {"value": NULL} if opts.fmt == "concise" else {"type": "Property", "value": NULL}
    if opts.sys_attrs:
        out["deletedAt"] = now
    return out


class SubscriptionIndex:
    """Change-driven subscriptions by (tenant, entity type), then by watched attribute.

    A subscription is filed under the first type of each AND-group of its selectors (`_ANY` when
    it has no entities) and under each watched attribute (`_ANY` when it watches everything). A
    change looks up its entity's types and its changed attributes only.
    """

    def __init__(self) -> None:
        self._by_type: dict[tuple[str, str], dict[str, set[Key]]] = {}
        # The types (and `_ANY`) each tenant's subscriptions are filed under: `may_match` answers from
        # it without building the sets `candidates` does, for the many changes no subscription watches.
        self._types: dict[str, set[str]] = {}

    def may_match(self, tenant: str, types: Iterable[str]) -> bool:
        """False when `candidates` is empty for an entity of `types` whatever attributes changed."""
        filed = self._types.get(tenant)
        return filed is not None and (_ANY in filed or not filed.isdisjoint(types))

    @staticmethod
    def _slots(sub: Subscription) -> list[tuple[tuple[str, str], str]]:
        types = {g[0] for s in sub.selectors for g in s.groups} or {_ANY}
        attrs = sub.watched or {_ANY}
        return [((sub.tenant, t), a) for t in sorted(types) for a in sorted(attrs)]

    def add(self, sub: Subscription) -> None:
        for type_key, attr in self._slots(sub):
            self._by_type.setdefault(type_key, {}).setdefault(attr, set()).add(sub.key)
            self._types.setdefault(type_key[0], set()).add(type_key[1])

    def remove(self, sub: Subscription) -> None:
        for type_key, attr in self._slots(sub):
            inner = self._by_type.get(type_key, {})
            inner.get(attr, set()).discard(sub.key)
            if not inner.get(attr, True):
                del inner[attr]
            if not inner and self._by_type.pop(type_key, None) is not None:
                filed = self._types[type_key[0]]
                filed.discard(type_key[1])
                if not filed:
                    del self._types[type_key[0]]

    def candidates(self, tenant: str, types: Iterable[str], attrs: Iterable[str]) -> set[Key]:
        found: set[Key] = set()
        changed = set(attrs)
        for entity_type in (*types, _ANY):
            inner = self._by_type.get((tenant, entity_type))
            if not inner:
                continue
            found |= inner.get(_ANY, set())
            for attr in inner.keys() & changed:
                found |= inner[attr]
        return found

    def __len__(self) -> int:
        return len({k for inner in self._by_type.values() for keys in inner.values() for k in keys})


# ================================================================================================
# Delivery
# ================================================================================================


@dataclass(frozen=True, slots=True)
class Notification:
    id: str
    notified_at: str
    data: list[dict[str, Any]]
    merged: tuple[str, ...] = ()  # the ids of the notifications merged into this one (their saved copies go with it)
    solo: bool = False  # sent again after a restart: never merged with others (a receiver may have had it already)


_NOTIFICATION_IDS: list[str] = []


def notification_id() -> str:
    """A new `urn:ngsi-ld:Notification:<UUID 4>`, from a pool filled by one read of the system's randomness.

    uuid4() reads it for every id, and that system call hands the GIL to the store's writer thread, which the
    event loop then waits to get back (as for `core.bus.Context` ids).
    """
    if not _NOTIFICATION_IDS:
        _NOTIFICATION_IDS.extend(f"urn:ngsi-ld:Notification:{u}" for u in uuid4_texts(256))
    return _NOTIFICATION_IDS.pop()


os.register_at_fork(after_in_child=_NOTIFICATION_IDS.clear)  # a forked process must not reuse the parent's ids


def merge_notifications(items: list[Notification]) -> Notification:
    """Queued notifications of one subscription as one: their entities in order, the latest time."""
    if len(items) == 1:
        return items[0]
    merged = tuple(i for item in items for i in (*(() if item is items[0] else (item.id,)), *item.merged))
    return Notification(items[0].id, items[-1].notified_at, [entity for item in items for entity in item.data], merged)


_POKE: Final = Notification("", "", [])
"""Queued to an idle Outbox by `poke`: its worker collects the subscription's matches itself."""


class Outbox:
    """One subscription's bounded queue and the worker that delivers it in order.

    With `coalesce`, the worker sends what queued up while the previous POST was in flight as one
    notification (up to `coalesce` entities): a busy subscription then costs one POST per round
    trip of its endpoint instead of one per write, and its queue cannot grow behind that round trip.

    With `collect`, an idle worker can be poked to call it (it queues what the subscription matched)
    and deliver the result in the same step: waking the worker with the notification instead would
    cost one more turn of the event loop, which under load is milliseconds of every notification.
    """

    def __init__(self, size: int, deliver: Callable[[Notification], Coroutine[Any, Any, None]], name: str,
                 coalesce: int = 0, collect: Callable[[], None] | None = None,
                 on_drop: Callable[[Notification], None] | None = None) -> None:
        self.queue: asyncio.Queue[Notification] = asyncio.Queue(maxsize=size)
        self.dropped = 0
        self._on_drop = on_drop
        self._deliver = deliver
        self._current: Notification | None = None  # being delivered (posted or waiting for a retry)
        self._coalesce = coalesce
        self._collect = collect
        self._next: Notification | None = None
        self._idle = False  # the worker waits for an empty queue
        self._poked = False  # _POKE is queued
        self._task = asyncio.create_task(self._run(), name=name)

    def put(self, item: Notification) -> None:
        if self.queue.full():
            # Never block the bus: the oldest pending notification gives way to the newest state.
            oldest = self.queue.get_nowait()
            if oldest is _POKE:
                self._poked = False  # the worker will see what it would have collected in this queue
            else:
                self.dropped += 1
                if self._on_drop is not None:
                    self._on_drop(oldest)
                if self.dropped == 1 or self.dropped % 1000 == 0:
                    log.warning("%s: queue full, %d notifications dropped so far", self._task.get_name(),
                                self.dropped)
        self.queue.put_nowait(item)

    def poke(self) -> bool:
        """Have an idle worker call `collect` when it next runs; False (nothing done) when it is busy."""
        if self._poked:
            return True
        if not self._idle or self._collect is None or not self.queue.empty():
            return False
        self._poked = True
        self.queue.put_nowait(_POKE)  # into an empty queue: never behind or among notifications
        return True

    async def _run(self) -> None:
        while True:
            self._idle = self._next is None and self.queue.empty()
            item, self._next = self._next or await self.queue.get(), None
            self._idle = False
            if item is _POKE:
                self._poked = False
                try:
                    if self._collect is not None:
                        self._collect()  # queues the notification, if any: the next get() does not wait
                except Exception:  # as for a delivery: the worker goes on
                    log.exception("%s: collecting matches failed", self._task.get_name())
                continue
            if self._coalesce and not item.solo and not self.queue.empty():
                item = self._take_more(item)
            self._current = item
            try:
                await self._deliver(item)
            except Exception:  # a bug in one delivery must not stop the subscription's worker
                log.exception("%s: delivering %s failed", self._task.get_name(), item.id)
            finally:
                self._current = None

    def _take_more(self, first: Notification) -> Notification:
        items, size = [first], len(first.data)
        # asyncio.Queue cannot peek: what would overflow this POST waits in `_next`, ahead of the queue.
        while not self.queue.empty() and size < self._coalesce:
            item = self.queue.get_nowait()
            if item.solo or size + len(item.data) > self._coalesce:
                self._next = item
                break
            items.append(item)
            size += len(item.data)
        return merge_notifications(items)

    def pending(self) -> int:
        """Notifications not yet delivered: the one being posted or retried, and those queued behind it."""
        return len(self.items())

    def items(self) -> list[Notification]:
        """The notifications not yet delivered, in order: the one being posted or retried, then those behind it."""
        queued = [item for item in self.queue._queue if item is not _POKE]  # type: ignore[attr-defined]
        return [item for item in (self._current, self._next) if item is not None] + queued

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


# ================================================================================================
# The service
# ================================================================================================


def endpoint_guard(settings: Any) -> AddressGuard | None:
    """The SSRF guard of notification endpoints (`subscriptions.block_private_networks`, on in production
    unless set; `subscriptions.allowed_networks` widens it), or None when it is off."""
    if not settings.endpoints_guarded:
        return None
    return AddressGuard(settings.subscriptions.allowed_networks, "subscriptions.allowed_networks")


class SubscriptionService:
    """NGSI-LD subscriptions: handlers, matching on the bus, delivery, persistence."""

    def __init__(self, api: Any, platform: Platform) -> None:
        self.api = api
        self.platform = platform
        self.clock = platform.clock
        self.settings = platform.settings.subscriptions
        self.guard = endpoint_guard(platform.settings)
        self.subs: dict[Key, Subscription] = {}
        self.index = SubscriptionIndex()
        self._outboxes: dict[Key, Outbox] = {}
        self._dirty: set[Key] = set()
        self._flush_timer: TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._client: NotifyClient | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._failing: set[Key] = set()
        # What could not be delivered yet is kept in the store (ucity/ngsild/saved.py): from the first failed attempt
        # of a subscription until one succeeds (`_outage`), and at a graceful stop.
        self.saved = SavedNotifications(api.store, self.clock)
        self._outage: set[Key] = set()
        # Delivery losses since this process started, for /health; they outlive the subscriptions that counted them.
        self.abandoned = 0  # notifications given up after max_retries retries
        self._dropped_gone = 0  # dropped by the queues of subscriptions deleted since
        # Entities of a personal type left out of the notifications of subscriptions marked WITHHOLD (never their
        # values; one log line per subscription and process says it happens).
        self.personal_withheld = 0
        self._withheld_logged: dict[Key, str] = {}  # the reason last logged for each subscription
        # The token that last set a subscription answers for its personal entities (ucity/ngsild/sub_owner.py): its
        # right now, from the operations centre's token registry, cached until the tokens change.
        self.rights = OwnerRights(getattr(platform.services.get("ops"), "tokens", None))
        self.guard_on = bool(platform.settings.auth_required)
        self.personal_withheld_owner_gone = 0  # of `personal_withheld`: the setter's token revoked or expired
        self._unowned_logged: set[Key] = set()
        # Matches of the batches published since the loop last ran, notified together (see _on_changes).
        self._matched: dict[Key, list[dict[str, Any]]] = {}
        self._notify_soon: asyncio.Handle | None = None
        # Other processes on the store (API processes, workers) create, change and delete subscriptions too: each
        # process re-reads them every `subscriptions.refresh_s`. The lock orders this process's own changes and a
        # re-read, so that a re-read never undoes a change made here while it read.
        self._lock = asyncio.Lock()
        # Whether this process sends a periodic (`timeInterval`) subscription's notifications: always alone; in
        # scale-out one worker, by the partition of (tenant, subscription id); an API process beside workers never.
        self.owns: Callable[[str, str], bool] = lambda tenant, key: True
        self.refresh = Refresh(self.clock, "ucity-subscriptions-refresh", "the NGSI-LD subscriptions", self._reread,
                               lambda: self.settings.refresh_s)

    # -- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        # One connection per subscription in flight at most; no pool wait behind slow endpoints.
        self._client = NotifyClient(self.settings.notify_timeout_s, max_idle=100, guard=self.guard)
        for tenant, _, doc in await self.api.store.list_docs(KIND):
            try:
                self._install(self._loaded(tenant, doc, await self._notify_ctx(doc, strict=False)))
            except Exception:
                log.exception("subscription %s of tenant %s could not be restored", doc.get("id"), tenant)
        await self._resume()  # before any newer notification is queued
        self.refresh.loaded()
        self.refresh.start()
        self._unsubscribe = self.platform.bus.subscribe(EntitiesChanged, self._on_changes)

    async def _reread(self) -> None:
        """What other processes created, changed (a new `modifiedAt`) or deleted since the last read, applied here.
        A changed one keeps this process's delivery counters and throttle, as an update made here does."""
        async with self._lock:
            stored = {(tenant, key): doc for tenant, key, doc in await self.api.store.list_docs(KIND)}
            for key in [key for key in self.subs if key not in stored]:
                await self._uninstall(key)
            for (tenant, _), doc in stored.items():
                sub = self.subs.get((tenant, str(doc.get("id"))))
                if sub is not None and sub.doc.get("modifiedAt") == doc.get("modifiedAt"):
                    continue
                try:
                    fresh = self._loaded(tenant, doc, await self._notify_ctx(doc, strict=False))
                except Exception:
                    log.exception("subscription %s of tenant %s, changed elsewhere, could not be read", doc.get("id"),
                                  tenant)
                    continue
                if sub is None:
                    self._install(fresh)
                else:
                    self._replace(sub, fresh)
            self.saved.alive()
            await self._resume()

    def _loaded(self, tenant: str, doc: Doc, ctx: Any) -> Subscription:
        """A subscription read from the store. With the guard on, one with no owner and no WITHHOLD mark (created
        before ucity recorded who sets a subscription, or with the guard off) has an unknown creator: least privilege
        treats it as set by a caller without personal:read until a holder changes it (one warning per subscription
        and process; `ownerUnknown` on /health)."""
        sub = Subscription.compile(tenant, doc, ctx)
        sub.unowned = self.guard_on and sub.owner is None and not sub.withhold
        if sub.unowned and sub.key not in self._unowned_logged:
            self._unowned_logged.add(sub.key)
            log.warning("subscription %s of tenant %s: %s; entities of a personal type are left out of its "
                        "notifications", sub.id, tenant, _WHY[UNKNOWN])
        return sub

    async def _resume(self) -> None:
        """Queue again the saved notifications of the subscriptions this process owns that no running process holds
        (ucity/ngsild/saved.py), in the order they were queued, each with its id and attempts; those of
        subscriptions that no longer exist are deleted."""
        found = await self.saved.read(self.owns, STALE_REFRESHES * self.settings.refresh_s)
        gone = []
        for saved in found:
            outbox = self._outboxes.get((saved.tenant, saved.subscription))
            if outbox is None:
                gone.append(saved)
                continue
            self.saved.adopt(saved)
            outbox.put(Notification(saved.id, saved.notified_at, saved.data, solo=True))
        await self.saved.drop(gone)
        if len(found) > len(gone):
            log.info("subscriptions: %d saved notifications read back from the store; sending them",
                     len(found) - len(gone))

    async def stop(self) -> None:
        await self.refresh.stop()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self.notify_matched()
        for sub in list(self.subs.values()):
            self._cancel_timers(sub)
        if self._flush_timer is not None:
            self._flush_timer.cancel()
        # What is queued (in order, the one being posted or retried first) is taken before any worker is stopped,
        # with no await in between: a POST that completes meanwhile cannot be delivered and saved both.
        queued = {key: outbox.items() for key, outbox in self._outboxes.items()}
        for outbox in self._outboxes.values():
            await outbox.close()
            self._dropped_gone += outbox.dropped
        self._outboxes.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._save_at_stop(queued)
        await self._flush()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _save_at_stop(self, queued: dict[Key, list[Notification]]) -> None:
        """Write what is queued and what throttling windows hold to the store, released: the owner of each
        subscription sends it at its start (or, in scale-out, at its next re-read). One line says how many."""
        now = to_iso(self.clock.now())
        items: list[tuple[str, str, str, str, list[dict[str, Any]], int]] = []
        for (tenant, sub_id), notifications in queued.items():
            for n in notifications:
                self.saved.done(n.merged)  # a merged one is saved whole: the copies of its parts go
                items.append((tenant, sub_id, n.id, n.notified_at, n.data, self.saved.attempts(n.id)))
        pending = len(items)
        throttled = [sub for sub in self.subs.values() if sub.pending]
        for sub in throttled:  # after every queued one: they were to go when the window ended
            items.append((sub.tenant, sub.id, notification_id(), now, list(sub.pending.values()), 0))
            sub.pending = {}
        try:
            await self.saved.release(items)
        except Exception as exc:
            log.error("subscriptions: %d notifications not yet delivered (queued or being retried) and %d held by "
                      "throttling could not be saved at shutdown and are discarded (%s); their receivers must "
                      "re-read the entities", pending, len(throttled), exc)
            return
        if items:
            log.warning("subscriptions: %d notifications not yet delivered (queued or being retried) and %d held by "
                        "throttling are saved at shutdown; they are sent at the next start", pending, len(throttled))
        else:
            log.info("subscriptions: no notification pending at shutdown")

    def health(self) -> dict[str, Any]:
        return {"ok": self._unsubscribe is not None, "subscriptions": len(self.subs),
                "queued": sum(o.queue.qsize() for o in self._outboxes.values()),
                "dropped": self._dropped_gone + sum(o.dropped for o in self._outboxes.values()),
                "abandoned": self.abandoned, "failing": len(self._failing),
                "saved": self.saved.count(), "savedWriting": self.saved.writing(),
                "savedWriteFailures": self.saved.failures, "personalWithheld": self.personal_withheld,
                "personalWithheldOwnerGone": self.personal_withheld_owner_gone, "ownerGone": self._owners_gone(),
                "ownerUnknown": sum(1 for sub in self.subs.values() if sub.unowned),
                "refresh": self.refresh.health()}

    async def _notify_ctx(self, doc: Doc, strict: bool) -> Any:
        ctx_input = doc.get("jsonldContext", doc.get("context"))
        try:
            return await self.api.resolver.compile(ctx_input)
        except Exception:
            if strict:
                raise
            # Names are stored expanded, so matching still works; only compaction falls back.
            log.warning("@context of subscription %s unavailable; notifying with the core context", doc.get("id"))
            return await self.api.resolver.compile(None)

    # -- handlers ----------------------------------------------------------------------------------
    async def create(self, req: Req) -> Resp:
        """Create a subscription (§5.8.1): notifications over HTTP(S) on matching changes."""
        body = read_body(req)
        ctx_input, ctx = await self.api.compile(req, body)
        tenant = self.api.write_tenant(req)
        doc = new_document(body, ctx, ctx_input, self.clock.now())
        self._check_endpoint(doc)
        if (tenant, doc["id"]) in self.subs:
            raise AlreadyExists(f"구독 {doc['id']}이(가) 이미 있음 / subscription {doc['id']} already exists")
        personal = await self._personal(req, tenant, doc, check=True)
        self._mark_setter(req, doc)
        sub = Subscription.compile(tenant, doc, await self._notify_ctx(doc, strict=True))
        async with self._lock:
            if sub.key in self.subs:  # created meanwhile by a concurrent request
                raise AlreadyExists(f"구독 {doc['id']}이(가) 이미 있음 / subscription {doc['id']} already exists")
            # Created meanwhile through another process (not read here yet): the store decides.
            if not await self.api.store.insert_doc(KIND, tenant, sub.id, doc):
                raise AlreadyExists(f"구독 {doc['id']}이(가) 이미 있음 / subscription {doc['id']} already exists")
            self._install(sub)
        if personal is not None:
            await self._audit(req, tenant, doc, "personal-subscription-created", personal)
        resp: Resp = self.api.no_content(req, 201, {"Location": SUBSCRIPTIONS + quote(sub.id, safe=":")})
        return resp

    async def list_subscriptions(self, req: Req) -> Resp:
        """The tenant's subscriptions (§5.8.4), paged."""
        accept = negotiate(req)
        tenant = await self._read_tenant(req)
        ctx_input, ctx = await self.api.compile(req)
        limit, offset, count = self.api.paging(req)
        mine = sorted((s for s in self.subs.values() if s.tenant == tenant),
                      key=lambda s: (s.doc["createdAt"], s.id))
        now, sys_attrs = self.clock.now(), "sysAttrs" in options(req)
        page = [present(s.doc, ctx, now, sys_attrs) for s in mine[offset:offset + limit]]
        headers = {"NGSILD-Results-Count": str(len(mine))} if count else {}
        links = page_links(req, offset, limit, offset + limit < len(mine), accept)
        return add_links(self.api.reply(req, page, ctx_input, accept, headers=headers), links)

    async def retrieve(self, req: Req) -> Resp:
        """One subscription (§5.8.3) with its notification status."""
        accept = negotiate(req)
        sub = await self._existing(req)
        ctx_input, ctx = await self.api.compile(req)
        body = present(sub.doc, ctx, self.clock.now(), "sysAttrs" in options(req))
        resp: Resp = self.api.reply(req, body, ctx_input, accept)
        return resp

    async def update(self, req: Req) -> Resp:
        """Update a subscription (§5.8.2): the members given replace the current ones."""
        body = read_body(req, (JSON, JSONLD, MERGE_PATCH))
        _, ctx = await self.api.compile(req, body)
        while True:
            sub = await self._existing(req)
            doc = merged_document(sub.doc, body, ctx, self.clock.now())
            self._check_endpoint(doc)
            personal = await self._personal(req, sub.tenant, doc, check=True)
            self._mark_setter(req, doc)
            fresh = Subscription.compile(sub.tenant, doc, await self._notify_ctx(doc, strict=True))
            fresh.unowned = sub.unowned and fresh.owner is None and not fresh.withhold  # the guard off: kept
            async with self._lock:
                if self.subs.get(sub.key) is sub:  # else changed meanwhile (here, or by a re-read): merge again
                    await self.api.store.put_doc(KIND, sub.tenant, sub.id, doc)
                    self._replace(sub, fresh)
                    break
        if personal is not None:
            await self._audit(req, sub.tenant, doc, "personal-subscription-changed", personal)
        resp: Resp = self.api.no_content(req)
        return resp

    async def delete(self, req: Req) -> Resp:
        """Delete a subscription (§5.8.5)."""
        sub = await self._existing(req)
        async with self._lock:
            await self._uninstall(sub.key)
            await self.api.store.delete_doc(KIND, sub.tenant, sub.id)
        personal = await self._personal(req, sub.tenant, sub.doc, check=False)
        if personal is not None:
            await self._audit(req, sub.tenant, sub.doc, "personal-subscription-deleted", personal)
        resp: Resp = self.api.no_content(req)
        return resp

    async def _personal(self, req: Req, tenant: str, doc: Doc, check: bool) -> list[str] | None:
        """With the token guard on, the personal types (short names) a subscription can match: every one without
        an entity selector, else those its selectors name; None when it matches none of them (or the guard is
        off). A caller without `personal:read` may not create or change one (`check`): 403, audited (QA10 F5).
        An entity with several types, one of them personal, matched through another, is not seen here: the
        subscription is marked (`_mark_setter`) and its notifications leave such entities out (`_withheld`)."""
        personal = self.api.personal
        if req.principal is None or not personal.iris:
            return None
        groups = [group for selector in doc.get("entities") or () for group in selector["types"]]
        if doc.get("entities") and not personal.expr_is_personal(groups):
            return None
        types: list[str] = personal.short_types(groups if doc.get("entities") else [personal.iris])
        if check and personal.withheld(req):
            await personal.refuse(req, tenant, types)
        return types

    def _mark_setter(self, req: Req, doc: Doc) -> None:
        """Record in `doc` who answers for its notifications of personal data: the caller who creates or changes it
        with the token guard on (`sub_owner.OWNER`: its token), and whether that caller lacks `personal:read`
        (WITHHOLD). `_personal` refused those whose selectors can match a personal type; the mark covers an entity of
        several types matched through another, a personal type added to an entity later, and a selector by `id` or
        `idPattern`. Whoever last set the subscription answers for it: a change by a holder of `personal:read` lifts
        the mark, and from then on that token's right is followed (`_why_withheld`). With the guard off nothing is
        recorded (a change keeps what it had)."""
        principal = req.principal
        if principal is None:
            return
        doc[OWNER] = self.rights.record(principal)
        if principal.can(Permission.PERSONAL_READ):
            doc.pop(WITHHOLD, None)
        else:
            doc[WITHHOLD] = True

    def _why_withheld(self, sub: Subscription, now: datetime) -> str | None:
        """Why `sub`'s personal entities are left out now (MARKED, UNKNOWN, REVOKED, EXPIRED, NOT_GRANTED), or None.
        Per notified personal entity: a test of flags, else a cached lookup of its setter's token (sub_owner.py)."""
        if sub.withhold:
            return MARKED
        if sub.unowned:
            return UNKNOWN
        if sub.owner is None:
            return None
        return self.rights.lacks(sub.owner, sub.owner_issued, now)

    def _withheld(self, sub: Subscription, types: Iterable[str], now: datetime) -> bool:
        """An entity of these types is left out of `sub`'s notifications: one of them is personal and `sub`'s setter
        lacks `personal:read` (marked, unknown, or its token revoked, expired or no longer granted it), as a query by
        that caller would leave it out. Counted; one log line per subscription (and reason) and process."""
        if not self.api.personal.is_personal(types):
            return False
        why = self._why_withheld(sub, now)
        if why is None:
            return False
        self.personal_withheld += 1
        if why in (REVOKED, EXPIRED):
            self.personal_withheld_owner_gone += 1
        if self._withheld_logged.get(sub.key) != why:
            self._withheld_logged[sub.key] = why
            reason = _WHY[why] % sub.owner if "%s" in _WHY[why] else _WHY[why]
            log.warning("subscription %s of tenant %s: entities of a personal type are left out of its notifications "
                        "(%s)", sub.id, sub.tenant, reason)
        return True

    def _owners_gone(self) -> int:
        """Subscriptions whose setter's token is revoked or expired now (/health `ownerGone`)."""
        now = self.clock.now()
        return sum(1 for sub in self.subs.values() if not sub.withhold and sub.owner is not None
                   and self.rights.lacks(sub.owner, sub.owner_issued, now) in (REVOKED, EXPIRED))

    async def _audit(self, req: Req, tenant: str, doc: Doc, action: str, types: list[str]) -> None:
        """`data` / `personal-subscription-*`: a standing copy of personal data to an endpoint was created, changed
        or deleted; the subscription's id, the types and the endpoint's host (never `q` or the endpoint's path)."""
        host = urlsplit(doc["notification"]["endpoint"]["uri"]).hostname or ""
        await self.api.personal.write(req.principal, tenant, action, subscription=str(doc["id"])[:255], types=types,
                                      endpointHost=host[:255])

    def _check_endpoint(self, doc: Doc) -> None:
        """Refuse, with 400, an endpoint the guard refuses without DNS (an address, `localhost`); names are
        checked when a notification connects (`NotifyClient`), where the address is then used."""
        if self.guard is None:
            return
        host = urlsplit(doc["notification"]["endpoint"]["uri"]).hostname or ""
        try:
            self.guard.check_host(host, "notification.endpoint.uri's host")
        except RefusedAddress as exc:
            raise BadRequest(str(exc)) from None

    async def _read_tenant(self, req: Req) -> str:
        tenant: str = self.api.write_tenant(req)
        if any(key[0] == tenant for key in self.subs):
            return tenant
        checked: str = await self.api.read_tenant(req)  # 404 for a tenant nobody has used
        return checked

    async def _existing(self, req: Req) -> Subscription:
        sub_id = req.path_params["subscriptionId"]
        if not is_uri(sub_id):
            raise BadRequest(f"구독 id는 URI여야 함({sub_id!r}) / subscription id must be a URI, got {sub_id!r}")
        tenant = await self._read_tenant(req)
        sub = self.subs.get((tenant, sub_id))
        if sub is None:
            raise NotFound(f"구독 {sub_id} 없음 / subscription {sub_id} does not exist")
        return sub

    # -- registry ----------------------------------------------------------------------------------
    def _install(self, sub: Subscription) -> None:
        self.subs[sub.key] = sub
        if sub.interval is None:
            self.index.add(sub)
        else:
            self._schedule_periodic(sub, self.clock.now())
        if sub.key not in self._outboxes:
            key = sub.key
            self._outboxes[key] = Outbox(self.settings.queue_size, self._delivery_for(key),
                                         f"ucity-notify:{sub.tenant}:{sub.id}", coalesce=COALESCE_ENTITIES,
                                         collect=lambda: self._notify_key(key), on_drop=self._dropped)

    def _replace(self, old: Subscription, fresh: Subscription) -> None:
        self._cancel_timers(old, keep_throttle=True)
        self.index.remove(old)
        fresh.last_sent, fresh.pending, fresh.throttle_timer = old.last_sent, old.pending, old.throttle_timer
        fresh.notifications = old.notifications
        # Deliveries may have been counted on the old document while the new one was being saved.
        for name in _STATS:
            if name in old.doc["notification"]:
                fresh.doc["notification"][name] = old.doc["notification"][name]
        self._install(fresh)

    async def _uninstall(self, key: Key) -> None:
        sub = self.subs.pop(key, None)
        if sub is None:
            return
        self.index.remove(sub)
        self._cancel_timers(sub)
        self._dirty.discard(key)
        self._failing.discard(key)
        self._outage.discard(key)
        self._withheld_logged.pop(key, None)
        self._unowned_logged.discard(key)
        self.saved.forget(*key)
        outbox = self._outboxes.pop(key, None)
        if outbox is not None:
            await outbox.close()
            self._dropped_gone += outbox.dropped

    @staticmethod
    def _cancel_timers(sub: Subscription, keep_throttle: bool = False) -> None:
        timers = [sub.periodic_timer] if keep_throttle else [sub.periodic_timer, sub.throttle_timer]
        for timer in timers:
            if timer is not None:
                timer.cancel()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- matching ----------------------------------------------------------------------------------
    async def _on_changes(self, event: EntitiesChanged) -> None:
        """Match a committed batch; its notifications are queued once the commit publisher yields.

        A group commit publishes one batch per write it committed (each with its own context), and
        under concurrent writers a notification each would be one POST per request, more than one
        subscription's ordered delivery keeps up with. The batches published back to back (those of
        one commit) make one notification per subscription, in commit order; a write on its own
        still gets its own. An idle subscription's worker is poked to queue its notification itself
        and post it at once; `notify_matched` queues the others' (their workers are busy posting).
        """
        now: datetime | None = None  # read once a change has candidates: most events have none
        stamp = ""  # deletedAt of deleted entities and attributes, formatted only for a change that deletes
        batches = self._matched
        index = self.index
        for change in event.changes:
            # Most writes are of entities no subscription watches: that is settled from the entity's types
            # alone, before building the candidate set (a batch upsert publishes a thousand changes).
            doc = change.after or change.before or _NO_DOC
            if not index.may_match(change.tenant, doc.get("type", ())):
                continue
            # change.attrs holds every attribute classify() can report, so no candidate here means none
            # after it: most writes are matched by no subscription, and skip the classification.
            types = change.types
            keys = index.candidates(change.tenant, types, change.attrs)
            if not keys:
                continue
            kinds = classify(change)
            if len(kinds.attrs) != len(change.attrs):  # fewer attributes (a subset): fewer candidates maybe
                keys = self.index.candidates(change.tenant, types, kinds.attrs)
            if now is None:
                now = self.clock.now()
            if not stamp and (change.after is None or _DELETED in kinds.attrs.values()):
                stamp = to_iso(now)
            for key in keys:
                sub = self.subs[key]
                try:
                    if sub.matches(change, kinds, now) and not (sub.guarded and self._withheld(sub, types, now)):
                        entity = render_change(sub, change, kinds, stamp)
                        if key in batches:
                            batches[key].append(entity)
                        else:
                            batches[key] = [entity]
                            outbox = self._outboxes.get(key)
                            if outbox is not None:
                                outbox.poke()  # an idle worker queues and posts it itself, a loop turn sooner
                except Exception:  # one broken subscription must not starve the others
                    log.exception("matching subscription %s failed", sub.id)
        if batches and self._notify_soon is None:
            # For the busy workers (and the idle ones, should the loop run this first): queue them all.
            self._notify_soon = asyncio.get_running_loop().call_soon(self.notify_matched)

    def notify_matched(self) -> None:
        """Queue the notifications of everything matched so far (also the commit publisher's drain)."""
        if self._notify_soon is not None:
            self._notify_soon.cancel()
            self._notify_soon = None
        matched, self._matched = self._matched, {}
        now = self.clock.now()
        for key, entities in matched.items():
            sub = self.subs.get(key)
            if sub is not None:
                self._notify(sub, entities, now)

    def _notify_key(self, key: Key) -> None:
        """Queue one subscription's matches (its idle Outbox worker calls this when poked)."""
        entities = self._matched.pop(key, None)
        sub = self.subs.get(key)
        if entities and sub is not None:
            self._notify(sub, entities, self.clock.now())

    async def drain(self) -> None:
        self.notify_matched()

    def _notify(self, sub: Subscription, entities: list[dict[str, Any]], now: datetime) -> None:
        window = sub.throttling
        if window is not None and sub.last_sent is not None and now < sub.last_sent + window:
            for entity in entities:  # keep the latest state of each entity, in order of change
                sub.pending.pop(entity["id"], None)
                sub.pending[entity["id"]] = entity
            if sub.throttle_timer is None:
                key = sub.key
                sub.throttle_timer = self.clock.call_at(sub.last_sent + window, lambda: self._release(key))
            return
        self._send(sub, entities, now)

    def _release(self, key: Key) -> None:
        """End of a throttling window: send what changed during it, in one notification."""
        sub = self.subs.get(key)
        if sub is None:
            return
        sub.throttle_timer = None
        entities, sub.pending = list(sub.pending.values()), {}
        now = self.clock.now()
        if entities and sub.live(now):
            self._send(sub, entities, now)

    def _send(self, sub: Subscription, entities: list[dict[str, Any]], now: datetime) -> None:
        sub.last_sent = now
        sub.notifications += 1
        outbox = self._outboxes.get(sub.key)
        if outbox is not None:
            item = Notification(notification_id(), to_iso(now), entities)
            outbox.put(item)
            if self._outage and sub.key in self._outage:  # its deliveries fail: written through to the store
                self.saved.save(sub.tenant, sub.id, item.id, item.notified_at, item.data, 0)

    # -- periodic notifications --------------------------------------------------------------------
    def _schedule_periodic(self, sub: Subscription, after: datetime) -> None:
        interval = sub.interval
        assert interval is not None
        when, key = after + interval, sub.key
        sub.periodic_timer = self.clock.call_at(when, lambda: self._periodic_due(key, when))

    def _periodic_due(self, key: Key, when: datetime) -> None:
        sub = self.subs.get(key)
        if sub is None:
            return
        now = self.clock.now()
        if sub.expires_at is not None and now >= sub.expires_at:
            return  # no more periods; a PATCH of expiresAt installs the subscription again
        # The next one is due one interval after this one was due, so periods do not drift.
        self._schedule_periodic(sub, when)
        if sub.live(now) and self.owns(sub.tenant, sub.id):  # every process holds it: one sends
            self._spawn(self._periodic(sub))

    async def _periodic(self, sub: Subscription) -> None:
        docs = await self._current_entities(sub)
        if sub.guarded:
            now = self.clock.now()
            docs = [d for d in docs if not self._withheld(sub, d.get("type", ()), now)]
        if docs and self.subs.get(sub.key) is sub:
            self._send(sub, [render_entity(d, sub.ctx, sub.render) for d in docs], self.clock.now())

    async def _current_entities(self, sub: Subscription) -> list[Doc]:
        """Every entity the subscription covers now, queried in the store."""
        found: dict[str, Doc] = {}
        for selector in sub.selectors:
            query = self._entity_query(sub, selector)
            while True:
                docs, _ = await self.api.store.query_entities(sub.tenant, query)
                found.update((d["id"], d) for d in docs)
                if len(docs) < query.limit:
                    break
                query.offset += query.limit
        return list(found.values())

    def _entity_query(self, sub: Subscription, selector: Selector) -> EntityQuery:
        query = EntityQuery(ids=(selector.id,) if selector.id else (),
                            id_pattern=selector.pattern.pattern if selector.pattern and not selector.id else None,
                            types=TypeExpr(selector.groups), limit=self.api.settings.max_limit)
        if sub.q is not None:
            query.q = QFilter(sub.q, sub.resolve)
        if sub.geo is not None:
            query.geo, query.geo_attr = sub.geo, sub.doc["geoPropertyIri"]
        if "scopeQ" in sub.doc:
            query.scope = parse_scope_query(sub.doc["scopeQ"])
        return query

    # -- delivery ----------------------------------------------------------------------------------
    def _delivery_for(self, key: Key) -> Callable[[Notification], Coroutine[Any, Any, None]]:
        async def deliver(item: Notification) -> None:
            await self._deliver(key, item)

        return deliver

    def retry_wait(self, retry: int) -> float:
        """Seconds before retry number `retry` (0 for the first): retry_base_s, doubling, at most retry_max_s."""
        return min(self.settings.retry_max_s, self.settings.retry_base_s * 2.0 ** min(retry, 64))

    async def _deliver(self, key: Key, item: Notification) -> None:
        """Post one notification; retry with capped exponential backoff; give up after max_retries."""
        started = self.clock.now()
        first = self.saved.attempts(item.id) if self.saved.held else 0  # a saved one goes on from its attempts
        for attempt in range(first, self.settings.max_retries + 1):
            sub = self.subs.get(key)
            if sub is None:
                return
            if sub.guarded:  # what was queued, saved or throttled before the setter lost the right goes without them
                item = self._without_personal(sub, item)
                if not item.data:
                    if self.saved.held:
                        self.saved.done((item.id, *item.merged))
                    return
            ok = await self._post(sub, item)
            self._record(sub, ok)
            if ok:
                if self.saved.held:  # nothing to do (nothing written) while deliveries succeed
                    self.saved.done((item.id, *item.merged))
                self._outage.discard(key)
                return
            self._failed(sub, item, attempt + 1)
            if attempt < self.settings.max_retries:
                await self._sleep(self.retry_wait(attempt))
        self.saved.done((item.id, *item.merged))
        self.abandoned += 1
        sub = self.subs.get(key)
        if sub is not None:
            stats = sub.doc["notification"]
            stats["timesAbandoned"] = stats.get("timesAbandoned", 0) + 1
            self._touch(sub)
        log.warning("subscription %s: notification %s (%d entities) abandoned after %d attempts over %.0f s; "
                    "its receiver must re-read the entities", key[1], item.id, len(item.data),
                    self.settings.max_retries + 1, (self.clock.now() - started).total_seconds())

    def _without_personal(self, sub: Subscription, item: Notification) -> Notification:
        """`item` without the entities of a personal type (by the types its rendered entities name)."""
        def types(entity: Mapping[str, Any]) -> list[str]:
            names = entity.get("type", ())
            return [sub.ctx.expand_type(n) for n in ([names] if isinstance(names, str) else names)]

        now = self.clock.now()
        data = [entity for entity in item.data if not self._withheld(sub, types(entity), now)]
        return item if len(data) == len(item.data) else replace(item, data=data)

    def _failed(self, sub: Subscription, item: Notification, attempts: int) -> None:
        """A failed attempt: the notification, with its attempts, is written to the store; on the subscription's first
        failure, so is every one queued behind it, and then each new one until a delivery succeeds (`_send`)."""
        self.saved.save(sub.tenant, sub.id, item.id, item.notified_at, item.data, attempts)
        self.saved.done(item.merged)  # their entities are in this one's copy
        if sub.key in self._outage:
            return
        self._outage.add(sub.key)
        outbox = self._outboxes.get(sub.key)
        for queued in outbox.items() if outbox is not None else ():
            if queued is not item and queued.id not in self.saved.held:
                self.saved.save(sub.tenant, sub.id, queued.id, queued.notified_at, queued.data, 0)

    def _dropped(self, item: Notification) -> None:
        """A full queue dropped its oldest notification: its saved copy, if any, goes too."""
        if self.saved.held:
            self.saved.done((item.id, *item.merged))

    async def _sleep(self, seconds: float) -> None:
        """Wait on the platform clock, so that tests drive retries with a fake clock."""
        await clock_sleep(self.clock, seconds)

    def request_of(self, sub: Subscription, item: Notification) -> tuple[bytes, dict[str, str]]:
        """The body and headers of one notification POST (§5.11, §6.3.15 for the HTTP binding)."""
        endpoint = sub.doc["notification"]["endpoint"]
        body: dict[str, Any] = {"id": item.id, "type": "Notification", "subscriptionId": sub.id,
                                "notifiedAt": item.notified_at, "data": item.data}
        accept = endpoint.get("accept", JSON)
        headers = {"Content-Type": accept}
        if accept == JSONLD:
            body["@context"] = response_context_value(sub.context_input)
        else:
            headers["Link"] = response_context_header(sub.context_input)
        if sub.tenant != self.api.settings.default_tenant:
            headers["NGSILD-Tenant"] = sub.tenant
        for pair in endpoint.get("receiverInfo", ()):
            headers[pair["key"]] = pair["value"]
        return orjson.dumps(body), headers

    async def _post(self, sub: Subscription, item: Notification) -> bool:
        assert self._client is not None
        body, headers = self.request_of(sub, item)
        try:
            status = await self._client.post(sub.doc["notification"]["endpoint"]["uri"], body, headers)
        except DeliveryError as exc:
            self._log_outcome(sub, False, str(exc))
            return False
        ok = 200 <= status < 300
        self._log_outcome(sub, ok, f"HTTP {status}")
        return ok

    def _log_outcome(self, sub: Subscription, ok: bool, detail: str) -> None:
        """Log transitions between working and failing endpoints, not every notification."""
        if ok and sub.key in self._failing:
            self._failing.discard(sub.key)
            log.info("subscription %s: endpoint works again", sub.id)
        elif not ok and sub.key not in self._failing:
            self._failing.add(sub.key)
            log.warning("subscription %s: notification to %s failed: %s", sub.id,
                        sub.doc["notification"]["endpoint"]["uri"], detail)

    def _record(self, sub: Subscription, ok: bool) -> None:
        stats = sub.doc["notification"]
        stamp = to_iso(self.clock.now())
        stats["timesSent"] = stats.get("timesSent", 0) + 1
        stats["lastNotification"] = stamp
        if ok:
            stats["lastSuccess"], stats["status"] = stamp, "ok"
        else:
            stats["lastFailure"], stats["status"] = stamp, "failed"
            stats["timesFailed"] = stats.get("timesFailed", 0) + 1
        self._touch(sub)

    def _touch(self, sub: Subscription) -> None:
        """Have the subscription's counters persisted with the next flush (at most STATS_FLUSH_S from now)."""
        self._dirty.add(sub.key)
        if self._flush_timer is None:
            self._flush_timer = self.clock.call_at(self.clock.now() + timedelta(seconds=STATS_FLUSH_S),
                                                   self._flush_due)

    def _flush_due(self) -> None:
        self._flush_timer = None
        self._spawn(self._flush())

    async def _flush(self) -> None:
        """Persist the delivery counters of the subscriptions that notified since the last flush."""
        dirty, self._dirty = self._dirty, set()
        for key in dirty:
            sub = self.subs.get(key)
            # Only over the definition this process holds: a subscription another process changed or deleted
            # since is neither taken back nor revived (the next re-read brings the change here).
            if sub is not None and not await self.api.store.replace_doc_if(KIND, sub.tenant, sub.id, sub.doc,
                                                                         "modifiedAt"):
                log.debug("subscription %s changed elsewhere; its counters here are not written", sub.id)

    # The route table calls the handlers by their operation names; `list` is defined last so that
    # it does not shadow the builtin in the annotations above.
    list = list_subscriptions
