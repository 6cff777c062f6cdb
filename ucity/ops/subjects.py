"""Requests of a data subject (privacy QA10 F4; 개인정보 보호법 §35 열람, §36 정정·삭제, §21 파기): which events of the
operations centre hold a person's data, and the erasure of that data from one event. Both need `privacy:admin`
(only the admin role) and both are audited (kind `privacy`), never with the values searched for or removed.

* `search`: the events whose subject or reporter is the person, found by exact match of the stored personal fields
  (`name`: spaces collapsed, case folded; `phone`: digits only, `+82` read as `0`; `personId`: case folded) and by
  the subject's pseudonym (`Pseudonymizer.ref` of every combination of the given fields: the HMAC under
  `ops.pseudonym_secret` that events.py computes from `personId`, `name`, `phone`). A role matches when at least one
  given field equals the stored one and none of the given fields differs from a stored one (a namesake with another
  phone is another person), or when its pseudonym matches. Every free text of the event is searched too
  (`Event.free_texts`: details, status notes, attachment names and descriptions, linkage purposes and reasons, the
  agencies' report notes; and its footage grants' purposes and revocation reasons): a text names the person when it
  holds the given name or personId (spaces collapsed, case folded) or the phone among its phone numbers
  (`freetext.phones_in`, compared by digits); such an event has a match of role `freeText` with the fields found and
  the parts (`texts`) that hold them. Free text cannot tell a namesake apart: an administrator reviews these. The
  answer names the events (id, reported, status, service, type) and, per role, which fields matched: never a stored
  value, so it discloses nobody else's data. Cost: a scan of the tenant's events (`query_ops_events`, `SCAN_PAGE` at
  a time, newest first) and one of its grants (`query_grants`): one pass over every event and grant document of the
  tenant per search; the store has no index of personal fields (by design: they are not columns). Events created
  while the scan runs may be missed; the answer says how many events were read.
* `redact`: removes one event's `personal` block of the roles asked (and the subject's pseudonym `subject.ref`, which
  links the person's events), and with `freeText` replaces the texts people typed (`details`, the operators' status
  notes, attachment names and descriptions, linkage purposes and reasons, the agencies' report notes, and the
  purposes and revocation reasons of the event's footage grants, `grantsRedacted` in the audit line) by `REDACTED`:
  operators, the agencies (their reads of the event and of its grants) and a later search see the marker only.
  Allowed on any event, open ones
  included: the administrator decides that the purpose is over, and records why (`reason`, required; its length only
  is audited). The event keeps `redactions` ({at, by, parts}). What was already sent cannot be recalled: agency
  packages (they hold the pseudonym, and `details` masked), delivered webhooks, backups; nor is the audit log
  rewritten: its lines hold no typed text of the event (lengths only), but those of linkages and grants keep their
  purposes and reasons with phone numbers, registration numbers and e-mail addresses masked (names stay).
* `search` with `entityId` (the person's NGSI-LD entity, e.g. a care service's `urn:ngsi-ld:Person:elder-2`) also
  reports, read-only, where else that entity is (`elsewhere`): whether its current state and its history are
  stored, the alarms about it and which of their `Alert` entities exist, the pending notifications of those alarms
  (documents `notification-outbox`, ucity/alarms/journal.py) and their dead letters (`alarm-dead-letter`,
  ucity/alarms/dispatch.py), and the NGSI-LD notifications saved during a receiver's outage whose data holds the
  entity (`ngsild-notification-outbox`, ucity/ngsild/saved.py; with their subscriptions' ids): counts and ids,
  never a value. Cost: one alarm query (at most `MAX_IDS` listed), one entity-id query, and one read of each of the
  three document kinds (every tenant's: the store has no index by entity; they stay small, being drained by
  delivery and retention; the saved notifications exist only while a receiver fails).
* `erase`: a personal entity (its current or recorded type in `privacy.personal_entity_types`) and its whole
  history deleted in one call, audited as one line (`privacy` / `erased`: the entity id, what was deleted, the
  reason's length, and what is left elsewhere in counts). The current state goes through the store's one write
  path (a mutation: subscriptions and the bus see the deletion), then the history; a retry after a failure in
  between deletes what is left. Alarms, their Alerts and notifications are not touched (the alarms own them; the
  answer says what is left). Nor are saved NGSI-LD notifications (`ngsildNotifications`, with a `note`): the process
  that saved one holds it in memory too and delivers it from there (and writes its document again at each retry,
  which would undo a change made here), and one notification may hold other entities its receiver is owed; they go
  once delivered, or with their subscription (deleting it is the way to stop them).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import re
import unicodedata
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ucity.alarms.dispatch import DEAD_LETTERS
from ucity.alarms.journal import KIND as OUTBOX
from ucity.core.bus import Context
from ucity.core.errors import BadRequest, NotFound, Unavailable
from ucity.ngsild.context import core_context
from ucity.ngsild.model import check_entity_id
from ucity.ngsild.ops import EntityNotFound, delete_op
from ucity.ngsild.saved import KIND as NGSILD_SAVED
from ucity.ops.audit import AuditLog
from ucity.ops.auth import Principal
from ucity.ops.events import ATTACHMENT_TEXTS, LINKAGE_TEXTS, Event, EventService, Pseudonymizer
from ucity.ops.freetext import REDACTED, phones_in
from ucity.ops.grants import Grant
from ucity.store.base import (
    AlarmQuery,
    AuditRow,
    Doc,
    EntityQuery,
    GrantQuery,
    Mutation,
    OpsEventQuery,
    Store,
    TemporalQuery,
)

ROLES = ("subject", "reporter")
FIELDS = ("personId", "name", "phone")  # the identifying fields (Pseudonymizer.IDENTIFYING)
SCAN_PAGE = 500
MAX_IDS = 1000  # ids listed per kind in `elsewhere` (the counts are whole)
NO_ATTRIBUTE = "urn:ucity:no-attribute"  # a history query of an entity's head (id, types) without its instances


class SubjectSearchIn(BaseModel):
    """`POST /api/v1/privacy/subject-search`: at least one of the person's identifying fields."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, max_length=100)
    phone: str | None = Field(None, max_length=40, description="any form: 010-1234-5678, 01012345678, +82 10 ...")
    personId: str | None = Field(None, max_length=100, description="the registry id the subject's pseudonym is "
                                                                   "computed from (with name and phone)")
    entityId: str | None = Field(None, max_length=256, description="the person's NGSI-LD entity (of a personal "
                                 "type): where else it is (its state and history, alarms, Alerts, notifications, "
                                 "dead letters, saved NGSI-LD notifications) is reported in `elsewhere`")

    @model_validator(mode="after")
    def _some(self) -> SubjectSearchIn:
        if not any((v or "").strip() for v in (self.name, self.phone, self.personId, self.entityId)):
            raise ValueError("name, phone, personId 또는 entityId 중 하나가 필요합니다 / one of name, phone, personId "
                             "or entityId is needed")
        if self.entityId is not None:
            self.entityId = _entity_id(self.entityId)
        if self.phone is not None and self.phone.strip() and len(normal_phone(self.phone)) < 7:
            raise ValueError("전화번호가 너무 짧습니다 / the phone number is too short (at least 7 digits)")
        return self

    def given(self) -> dict[str, str]:
        return {k: v.strip() for k in FIELDS if (v := getattr(self, k)) is not None and v.strip()}


class EraseIn(BaseModel):
    """`POST /api/v1/privacy/subject-erase`: a personal NGSI-LD entity and its history, with the reason."""

    model_config = ConfigDict(extra="forbid")
    entityId: str = Field(max_length=256, description="the person's NGSI-LD entity (of a personal type)")
    reason: str = Field(min_length=1, max_length=1000, description="why (only its length is audited)")

    @model_validator(mode="after")
    def _valid(self) -> EraseIn:
        self.entityId = _entity_id(self.entityId)
        if not self.reason.strip():
            raise ValueError("reason이 필요합니다 / a reason is needed")
        return self


def _entity_id(value: str) -> str:
    try:
        return check_entity_id(value.strip())
    except BadRequest as exc:
        raise ValueError(f"entityId: NGSI-LD 엔터티 id(URI)가 아닙니다 / not an NGSI-LD entity id (a URI): {exc}") \
            from None


class RedactIn(BaseModel):
    """`POST /api/v1/events/{eventId}/redact`."""

    model_config = ConfigDict(extra="forbid")
    roles: list[str] = Field([], max_length=2, description="subject and/or reporter: their personal data removed")
    freeText: bool = Field(False, description="replace every free text of the event by a redaction marker: details, "
                                              "status notes, attachment names and descriptions, linkage purposes and "
                                              "reasons, the agencies' report notes, and the purposes and revocation "
                                              "reasons of its footage grants")
    reason: str = Field(min_length=1, max_length=1000, description="why (only its length is audited)")

    @model_validator(mode="after")
    def _what(self) -> RedactIn:
        if any(r not in ROLES for r in self.roles):
            raise ValueError("roles는 subject, reporter / roles are subject and/or reporter")
        if not self.roles and not self.freeText:
            raise ValueError("roles 또는 freeText가 필요합니다 / roles or freeText is needed")
        if not self.reason.strip():
            raise ValueError("reason이 필요합니다 / a reason is needed")
        return self


# -- matching ---------------------------------------------------------------------------------------------------
def normal_phone(phone: str) -> str:
    """Digits only, `+82 10 …` / `+82 (0)2 …` as `010 …` / `02 …` (a Korean number never starts with 8)."""
    digits = re.sub(r"\D", "", phone)
    if digits.startswith("820"):
        return "0" + digits[3:]
    if digits.startswith("82"):
        return "0" + digits[2:]
    return digits


def _normal(field: str, value: Any) -> str:
    text = unicodedata.normalize("NFC", str(value))
    if field == "phone":
        return normal_phone(text)
    return " ".join(text.split()).casefold()


def match_person(person: dict[str, Any], wanted: dict[str, str]) -> list[str]:
    """The given fields equal to the stored ones; none when any given field differs from a stored one."""
    matched: list[str] = []
    for key, value in wanted.items():
        stored = person.get(key)
        if stored is None or not str(stored).strip():
            continue
        if _normal(key, stored) != value:
            return []
        matched.append(key)
    return matched


def pseudonyms(pseudonymizer: Pseudonymizer, given: dict[str, str]) -> set[str]:
    """The subject pseudonyms of every combination of the given fields (a subject registered with some of them);
    none without `ops.pseudonym_secret`."""
    refs: set[str] = set()
    keys = list(given)
    try:
        for size in range(1, len(keys) + 1):
            for combo in itertools.combinations(keys, size):
                ref = pseudonymizer.ref({k: given[k] for k in combo})
                if ref:
                    refs.add(ref)
    except Unavailable:
        return set()
    return refs


def query_ref(key: bytes | None, given: dict[str, str]) -> str | None:
    """What the audit line keeps of a search: a keyed hash (HMAC under `ops.pseudonym_secret`) of the normalised
    values, so that two searches for one person can be told apart from others without a phone's brute-forceable
    plain hash in the log; none without the secret."""
    if key is None:
        return None
    text = "\x1f".join(f"{k}={v}" for k, v in sorted(given.items()))
    return "q-" + hmac.new(key, ("subject-search\x1e" + text).encode(), hashlib.sha256).hexdigest()[:20]


def in_text(field: str, value: str, text: str) -> bool:
    """Whether a free text names a given (normalised) field: the phone as one of its phone numbers (`phones_in`,
    compared by `normal_phone`), a name or personId as a part of it (spaces collapsed, case folded)."""
    if field == "phone":
        return any(normal_phone(phone) == value for phone in phones_in(text))
    return value in _normal(field, text)


def text_matches(texts: dict[str, list[str]], wanted: dict[str, str]) -> dict[str, Any] | None:
    """{"role": "freeText", "fields", "texts"}: the given fields named in the free texts (`Event.free_texts`, and
    `grants`), and which parts name them; None when none does. Free text has no fields to tell a namesake by: any
    given field named is a match, for the administrator to review."""
    fields: list[str] = []
    parts: list[str] = []
    for part, found in texts.items():
        named = [k for k, v in wanted.items() if any(in_text(k, v, t) for t in found)]
        if named:
            parts.append(part)
            fields += [k for k in named if k not in fields]
    if not fields:
        return None
    return {"role": "freeText", "fields": [k for k in FIELDS if k in fields], "texts": parts}


def event_matches(event: Event, wanted: dict[str, str], refs: set[str],
                  grant_texts: list[str] | None = None) -> list[dict[str, Any]]:
    """Per role of `event` that is the person: {"role", "fields"} (field names, `pseudonym`); then its free texts
    that name the person (`text_matches`; `grant_texts`: those of its footage grants)."""
    out: list[dict[str, Any]] = []
    for role in ROLES:
        fields = match_person(event.personal.get(role) or {}, wanted)
        if role == "subject" and event.subject and event.subject.get("ref") in refs:
            fields.append("pseudonym")
        if fields:
            out.append({"role": role, "fields": fields})
    texts = {**event.free_texts(), **({"grants": grant_texts} if grant_texts else {})}
    free = text_matches(texts, wanted)
    if free is not None:
        out.append(free)
    return out


def _grant_texts(grant: Grant) -> list[str]:
    return [t for t in (grant.purpose, grant.revoke_reason) if t]


async def grants_texts(store: Store, tenant: str) -> dict[str, list[str]]:
    """The free texts of the tenant's footage grants (purpose, revocation reason) by event: one pass over the
    tenant's grants, `SCAN_PAGE` at a time."""
    out: dict[str, list[str]] = {}
    offset = 0
    while True:
        docs, _ = await store.query_grants(tenant, GrantQuery(limit=SCAN_PAGE, offset=offset))
        for doc in docs:
            grant = Grant.from_doc(doc)
            out.setdefault(grant.event, []).extend(_grant_texts(grant))
        if len(docs) < SCAN_PAGE:
            return out
        offset += SCAN_PAGE


# -- the two requests --------------------------------------------------------------------------------------------
async def search(events: EventService, audit: AuditLog, tenant: str, body: SubjectSearchIn,
                 principal: Principal, store: Store | None = None) -> Doc:
    given = body.given()
    wanted = {k: _normal(k, v) for k, v in given.items()}
    refs = pseudonyms(events.pseudonyms, given)
    found: list[Doc] = []
    seen: set[str] = set()
    offset, scanned = 0, 0
    granted = await grants_texts(events.store, tenant) if given else {}
    while given:  # an `entityId` alone: no event to scan for
        page, _ = await events.query(tenant, OpsEventQuery(limit=SCAN_PAGE, offset=offset))
        for event in page:
            if event.id in seen:
                continue
            seen.add(event.id)
            matches = event_matches(event, wanted, refs, granted.get(event.id))
            if matches:
                found.append({"id": event.id, "reportedAt": event.reported_at, "occurredAt": event.occurred_at,
                              "status": event.status, "service": event.service, "typeCode": event.type_code,
                              "redacted": bool(event.redactions), "matches": matches})
        scanned += len(page)
        if len(page) < SCAN_PAGE:
            break
        offset += SCAN_PAGE
    detail: dict[str, Any] = {"searchedFields": sorted([*given, *(["entityId"] if body.entityId else [])]),
                              "scanned": scanned, "matched": len(found),
                              "freeTextMatched": sum(1 for e in found
                                                     if any(m["role"] == "freeText" for m in e["matches"]))}
    answer: Doc = {"scanned": scanned, "count": len(found), "events": found}
    if body.entityId and store is not None:
        answer["elsewhere"] = where_else = await elsewhere(store, tenant, body.entityId)
        detail["elsewhere"] = counts(where_else)  # counts only: the ids would name the person's alarms
    ref = query_ref(getattr(events.pseudonyms, "_key", None),
                    {**wanted, **({"entityId": body.entityId} if body.entityId else {})})
    if ref is not None:
        detail["queryRef"] = ref
    await audit.append(audit.row(tenant, "privacy", "subject-search", principal.actor, agency=principal.agency,
                                 outcome="ok", **detail))
    return answer


# -- where else a person's NGSI-LD entity is ---------------------------------------------------------------------
async def entity_types(store: Store, tenant: str, entity_id: str) -> tuple[bool, bool, list[str]]:
    """(current state stored, history stored, the type IRIs of both) of an entity."""
    current = await store.get_entity(tenant, entity_id)
    head = TemporalQuery(ids=(entity_id,), attrs=(NO_ATTRIBUTE,), limit_instances=1, entity_limit=1)
    found, _ = await store.temporal_query(tenant, head)
    history = bool(found) or await store.temporal_entity_exists(tenant, entity_id)
    types = [*(current or {}).get("type", ()), *(t for entity in found for t in entity.types)]
    return current is not None, history, list(dict.fromkeys(types))


def _alarm_entity(doc: Doc) -> Any:
    """The entity id of the alarm a stored notification is about (an agency package has none)."""
    alarm = doc.get("alarm")
    return alarm.get("entity_id") if isinstance(alarm, dict) else None


async def elsewhere(store: Store, tenant: str, entity_id: str) -> Doc:
    """Where an entity is besides the operations events: ids and counts, never values (read-only)."""
    current, history, types = await entity_types(store, tenant, entity_id)
    alarms, total = await store.query_alarms(tenant, AlarmQuery(entity_ids=(entity_id,), limit=MAX_IDS, count=True))
    alarm_ids = [str(doc["id"]) for doc in alarms]
    alert_ids = [f"urn:ngsi-ld:Alert:{alarm_id}" for alarm_id in alarm_ids]
    alerts = await store.entity_ids(tenant, EntityQuery(ids=tuple(alert_ids), limit=MAX_IDS)) if alert_ids else []
    pending = sorted(key for t, key, doc in await store.list_docs(OUTBOX)
                     if t == tenant and doc.get("channel") == "alarm" and (
                         doc.get("entity") == entity_id or _alarm_entity(doc.get("notification") or {}) == entity_id))
    dead = sorted(key for t, key, doc in await store.list_docs(DEAD_LETTERS)
                  if t == tenant and _alarm_entity(doc.get("notification") or {}) == entity_id)
    saved = sorted((key, str(doc.get("subscription", ""))) for t, key, doc in await store.list_docs(NGSILD_SAVED)
                   if t == tenant and holds_entity(doc, entity_id))
    core = core_context()
    return {"entityId": entity_id, "current": current, "history": history,
            "types": sorted({core.compact_iri(t) for t in types}),
            "alarms": {"count": total if total is not None else len(alarm_ids), "ids": alarm_ids},
            "alerts": {"count": len(alerts), "ids": sorted(alerts)},
            "notifications": {"count": len(pending), "ids": pending[:MAX_IDS]},
            "deadLetters": {"count": len(dead), "ids": dead[:MAX_IDS]},
            "ngsildNotifications": {"count": len(saved), "ids": [key for key, _ in saved[:MAX_IDS]],
                                    "subscriptions": sorted({sub for _, sub in saved if sub})[:MAX_IDS]}}


def holds_entity(doc: Doc, entity_id: str) -> bool:
    """Whether a saved NGSI-LD notification's data (the entities it sends) holds the entity."""
    data = doc.get("data")
    return isinstance(data, list) and any(
        isinstance(item, dict) and entity_id in (item.get("id"), item.get("@id")) for item in data)


def personal_iris(types: list[str]) -> frozenset[str]:
    """`privacy.personal_entity_types` as expanded IRIs (short names of the core @context, or IRIs)."""
    core = core_context()
    return frozenset(core.expand_type(t) for t in types)


def counts(where: Doc) -> dict[str, Any]:
    """What an audit line keeps of `elsewhere`: booleans and counts."""
    return {"current": where["current"], "history": where["history"],
            **{k: where[k]["count"] for k in ("alarms", "alerts", "notifications", "deadLetters",
                                              "ngsildNotifications")}}


async def erase(store: Store, audit: AuditLog, tenant: str, body: EraseIn, principal: Principal,
                personal_iris: frozenset[str]) -> Doc:
    """Delete a personal entity's current state and history (PIPA §36); one `privacy` / `erased` line."""
    entity_id = body.entityId
    current, history, types = await entity_types(store, tenant, entity_id)
    if not current and not history:
        raise NotFound(f"엔터티 {entity_id} 없음 (현재 상태도 이력도) / entity {entity_id} does not exist (neither its "
                       f"current state nor its history)")
    if personal_iris.isdisjoint(types):
        raise BadRequest(f"엔터티 {entity_id}는 개인정보 엔터티 유형이 아닙니다 (privacy.personal_entity_types) / "
                         f"entity {entity_id} is not of a personal type (privacy.personal_entity_types): delete it "
                         f"with the NGSI-LD API")
    deleted = False
    if current:
        result = (await store.mutate(tenant, [Mutation(entity_id, delete_op(entity_id))],
                                     Context(actor=principal.actor)))[0]
        if isinstance(result, Exception) and not isinstance(result, EntityNotFound):
            raise result
        deleted = not isinstance(result, Exception)
    instances = await store.delete_history(tenant, entity_id) if history else 0
    left = await elsewhere(store, tenant, entity_id)
    core = core_context()
    await audit.append(audit.row(tenant, "privacy", "erased", principal.actor, agency=principal.agency, outcome="ok",
                                 entityId=entity_id, types=sorted({core.compact_iri(t) for t in types
                                                                   if t in personal_iris}),
                                 entityDeleted=deleted, historyDeleted=instances,
                                 reasonChars=len(body.reason.strip()), left=counts(left)))
    answer: Doc = {"entityId": entity_id, "entityDeleted": deleted, "historyDeleted": instances, "elsewhere": left}
    saved = left["ngsildNotifications"]["count"]
    if saved:
        answer["note"] = (f"이 엔터티를 담은 저장된 NGSI-LD 알림 {saved}건은 지우지 않았습니다: 구독 수신자에게 전달되거나 "
                          f"구독이 삭제되면 없어집니다 / {saved} saved NGSI-LD notifications holding the entity are left: "
                          f"they go once delivered to their subscriptions' receivers, or with the subscriptions "
                          f"(ngsildNotifications)")
    return answer


def _redacted(value: Any) -> Any:
    return REDACTED if isinstance(value, str) and value else value


def _with_redacted(item: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {**item, **{k: _redacted(item[k]) for k in keys if k in item}}


def redact_texts(event: Event) -> list[str]:
    """Replace every free text of `event` (`Event.free_texts`) by `REDACTED`; the parts that changed."""
    before = event.free_texts()
    event.details = _redacted(event.details)
    event.notes = [_with_redacted(n, ("text",)) for n in event.notes]
    event.attachments = [_with_redacted(a, ATTACHMENT_TEXTS) for a in event.attachments]
    event.linkages = [{**_with_redacted(link, LINKAGE_TEXTS),
                       **({"purposes": [_with_redacted(p, ("purpose",)) for p in link["purposes"]]}
                          if isinstance(link.get("purposes"), list) else {})} for link in event.linkages]
    event.agency_reports = [_with_redacted(r, ("note",)) for r in event.agency_reports]
    after = event.free_texts()
    return [part for part in before if before[part] != after[part]]


async def redact_grants(store: Store, tenant: str, event_id: str, now: str) -> int:
    """Replace the free text of the event's footage grants (`purpose`, `revoke_reason`) by `REDACTED`; how many
    grants changed. Each write is conditional on the grant's version: a grant renewed or revoked meanwhile (another
    API process) is read again and redacted again."""
    changed = offset = 0
    while True:
        docs, _ = await store.query_grants(tenant, GrantQuery(event_ids=(event_id,), limit=SCAN_PAGE, offset=offset))
        for doc in docs:
            changed += await _redact_grant(store, Grant.from_doc(doc), now)
        if len(docs) < SCAN_PAGE:
            return changed
        offset += SCAN_PAGE


async def _redact_grant(store: Store, grant: Grant, now: str) -> int:
    while any(t != REDACTED for t in _grant_texts(grant)):
        read = grant.version
        grant.purpose, grant.revoke_reason = _redacted(grant.purpose), _redacted(grant.revoke_reason)
        grant.version = read + 1
        if await store.save_grant(grant.to_row(now), [], expected_version=read):
            return 1
        doc = await store.get_grant(grant.tenant, grant.id)
        if doc is None:
            return 0
        grant = Grant.from_doc(doc)
    return 0


def redact_rows(event: Event, body: RedactIn, principal: Principal, audit: AuditLog, now: str,
                grants: int = 0) -> list[AuditRow]:
    """Remove what `body` asks from `event`; its audit line (which parts, never the values; the reason's length).
    `grants`: how many of its footage grants had their free text redacted (`redact_grants`, written before)."""
    parts: dict[str, list[str]] = {}
    for role in body.roles:
        removed = sorted(event.personal.pop(role, {}))
        if role == "subject" and event.subject and event.subject.get("ref"):
            event.subject = {**event.subject, "ref": None}
            removed.append("pseudonym")
        if removed:
            parts[role] = removed
    if body.freeText:
        texts = redact_texts(event) + (["grants"] if grants else [])
        if texts:
            parts["freeText"] = texts
    if parts:
        event.redactions.append({"at": now, "by": principal.actor, "parts": parts})
    detail: dict[str, Any] = {"grantsRedacted": grants} if grants else {}
    # A request that finds nothing left (a retry) is answered all the same (200) and audited as `unchanged`.
    return [audit.row(event.tenant, "privacy", "redacted", principal.actor, event=event.id,
                      outcome="ok" if parts else "unchanged", parts=parts, asked={"roles": sorted(body.roles),
                                                                                  "freeText": body.freeText},
                      eventStatus=event.status, reasonChars=len(body.reason.strip()), **detail)]


async def redact(events: EventService, audit: AuditLog, tenant: str, event_id: str, body: RedactIn,
                 principal: Principal) -> Event:
    await events.load(tenant, event_id)  # 404 first
    grants = await redact_grants(events.store, tenant, event_id, events.now()) if body.freeText else 0
    return await events.change(tenant, event_id,
                               lambda event: redact_rows(event, body, principal, audit, events.now(), grants))
