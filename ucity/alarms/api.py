"""Framework-free handlers of `/api/v1/alarms`, contact data and dead letters (routes in server.py).

* `GET /api/v1/alarms`: filters `status` (a status, or `active` / `cleared`), `level`, `kind`,
  `type` (entity type), `entity`, `rule`, `parent`, `derived`, `bbox=minLon,minLat,maxLon,maxLat`,
  `from` / `to` (raised at, ISO 8601), `limit` (1..1000, default 20), `offset`; comma-separated
  values mean any of them. Newest first; `total` counts every match.
* `GET /api/v1/alarms/stats`: the same filters; counts by level, kind, entity type and status,
  mean and median time to acknowledge, false-alarm rate (false-user + false-device among closed
  alarms) by device (the alarm's entity) and by household (its parent entity).
* `GET /api/v1/alarms/{id}`: the alarm with its history (audit trail) and comments.
* `POST /api/v1/alarms/{id}/acknowledge | clear | close {outcome, note} | assign {assignee} |
  comments {text}`: 409 when the state does not allow it.
* `/api/v1/notifiers`, `/api/v1/recipients`, `/api/v1/escalations`: list, create (POST), get,
  create-or-replace (PUT), delete; configured entries are read-only (409).
* `GET /api/v1/notifications/dead-letters`: notifications given up after their retries;
  `POST /api/v1/notifications/dead-letters/{id}/replay`: queue one again (202; administrators, `config:admin`).
* `GET /api/v1/alarms/{id}/dead-letters`: the alarm's own; `POST /api/v1/alarms/{id}/dead-letters/{letter}/resend`:
  the operator on duty (`data:write`) queues one again (202; QA9 F12): audited (`alarm` / `notification-resent`)
  and in the alarm's history (`resent`), 409 when there is nothing to resend, 404 for a letter not of this alarm.

The tenant is the `NGSILD-Tenant` header. The actor of an action is the `X-Ucity-Actor` header
(required): a stand-in until ucity has users and roles, which will then supply it.

With `server.require_auth` on, what a caller sees depends on its token (ucity/ops/auth.py): alarm comments and
close notes are free text that may name people (phone numbers) and are shown to `personal:read` only (others get
them withheld, `withheld: ["text"]`); a webhook's url may hold its receiver's credentials and is shown whole to
`config:admin` only (others get it masked, notifiers/webhook.py `mask_url`); an alarm about a person (its entity's
type in `privacy.personal_entity_types`) is shown to a caller without `personal:read` as its Alert shows it: the
Alert id for the entity id, the place coarse, the identifying evidence withheld (`person_view`, README), and
not in the false-alarm rate by device; an alarm's dead letters, and the global list, without the recipients'
names and addresses (`letter_view`, `dead_letter_view`: one rule, `letter_contact`); a URL in a dead letter never
with its path or query values, whoever asks. Every change of the contact data and every dead-letter replay is a line of
the operations audit log (kind `config`: the actor and the id, never contact data, urls or secrets).
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from pydantic import BaseModel

from ucity.alarms.alert import AlertPrivacy
from ucity.alarms.contacts import (
    SILENT_REFUSAL_EN,
    SILENT_REFUSAL_KO,
    Collection,
    EscalationChain,
    NotifierConfig,
    RecipientGroup,
)
from ucity.alarms.model import ACTIVE_STATUSES, FALSE_OUTCOMES, OUTCOMES, STATUSES, Alarm
from ucity.alarms.notifiers import known_provider, webhook_guard, webhook_refusal
from ucity.alarms.notifiers.webhook import mask_url
from ucity.alarms.service import AlarmService
from ucity.core.errors import AlreadyExists, NotFound
from ucity.core.http import Req, Resp
from ucity.core.masking import MASK, unmasked
from ucity.core.openapi import ApiDocs, Doc
from ucity.core.params import (
    actor_header,
    bad,
    bbox_param,
    int_param,
    json_object,
    micros_param,
    values_param,
)
from ucity.ngsild.request import tenant_of
from ucity.ops.audit import AuditLog
from ucity.ops.auth import Permission
from ucity.rules.events import KINDS, LEVELS
from ucity.store.base import AlarmQuery, AlarmStats

MAX_LIMIT = 1000
# What GET shows of a notifier beyond its document (`source`, the masked url's flag, and what the running notifier
# describes: dispatch.py `describe`, notifiers/*.py): ignored in a PUT body, so that GET's answer can be sent back.
NOTIFIER_READ_ONLY = frozenset({"source", "urlMasked", "kind", "sends", "signed", "smtp", "from", "notice", "recorded",
                                "delivery"})
Handler = Callable[[Req], Awaitable[Resp]]
AUDIT_KIND = "config"  # the lines of configuration changes in the operations audit log (ucity/ops/audit.py)
# The audit action's noun of each collection: `notifier-created`, `recipient-group-deleted`, `escalation-changed`.
AUDIT_NOUN = {"notifiers": "notifier", "recipients": "recipient-group", "escalations": "escalation"}
BUILTIN_RULES = frozenset({"device-offline"})  # rule ids the platform raises without a rule (service.py)
WITHHELD = {"ko": "개인정보가 있을 수 있어 personal:read 권한에만 보입니다",
            "en": "free text may hold personal data: shown to personal:read only"}
WITHHELD_CONTACT = {"ko": "수신자 연락처와 사람에 관한 경보의 알림 내용은 personal:read 권한에만 보입니다",
                    "en": "a recipient's contact data, and the message of an alarm about a person, are shown to "
                          "personal:read only"}
PERSON_WITHHELD = {"ko": "사람에 관한 경보: 정확한 위치, 엔터티 ID와 사람을 식별할 수 있는 값은 personal:read 권한에만 보입니다",
                   "en": "an alarm about a person: its exact place, entity id and identifying values are shown to "
                         "personal:read only"}


def _derived(req: Req) -> bool | None:
    text = req.param("derived")
    if text is None:
        return None
    if text not in ("true", "false"):
        raise bad("derived는 true 또는 false", "derived is true or false")
    return text == "true"


def parse_query(req: Req) -> AlarmQuery:
    """The alarm filters of a request (400 for anything malformed)."""
    statuses: list[str] = []
    for status in values_param(req, "status", (*STATUSES, "active", "cleared")):
        statuses.extend({"active": ACTIVE_STATUSES, "cleared": STATUSES[2:4]}.get(status, (status,)))
    query = AlarmQuery(
        statuses=tuple(dict.fromkeys(statuses)), levels=values_param(req, "level", LEVELS),
        kinds=values_param(req, "kind", KINDS),
        entity_types=values_param(req, "type"), entity_ids=values_param(req, "entity"), rule_ids=values_param(req, "rule"),
        parent_ids=values_param(req, "parent"), derived=_derived(req), bbox=bbox_param(req.param("bbox")),
        raised_from=micros_param(req, "from"), raised_to=micros_param(req, "to"),
        limit=int_param(req, "limit", 20, 1, MAX_LIMIT), offset=int_param(req, "offset", 0, 0, 10**9), count=True,
    )
    if query.raised_from is not None and query.raised_to is not None and query.raised_from >= query.raised_to:
        raise bad("from은 to보다 앞이어야 합니다", "from must be before to")
    return query


def stats_body(stats: AlarmStats) -> dict[str, Any]:
    """The statistics response; fault alarms (no level) are counted under level `fault`."""
    ack = stats.ack_seconds
    by_level = {level: stats.by_level.get(level, 0) for level in LEVELS}
    by_level["fault"] = stats.by_level.get("", 0)
    return {
        "total": stats.total, "byLevel": by_level, "byKind": stats.by_kind,
        "byType": {k or "(unknown)": v for k, v in stats.by_type.items()}, "byStatus": stats.by_status,
        "timeToAcknowledge": {"count": len(ack), "meanSeconds": statistics.fmean(ack) if ack else None,
                              "medianSeconds": statistics.median(ack) if ack else None},
        "falseAlarmRate": {"outcomes": list(FALSE_OUTCOMES), "byDevice": _rates(stats.false_by_entity),
                           "byHousehold": _rates(stats.false_by_parent)},
    }


def _rates(rows: list[tuple[str, int, int]]) -> list[dict[str, Any]]:
    return [{"entity": key, "closed": closed, "false": false, "rate": false / closed if closed else None}
            for key, closed, false in rows]


class AlarmApi:
    """The handlers; `service` does the work, this class reads requests and shapes responses."""

    def __init__(self, service: AlarmService, default_tenant: str) -> None:
        self.service = service
        self.default_tenant = default_tenant
        settings = service.platform.settings
        self.settings = settings
        self.audit = AuditLog(service.store, service.clock)  # the operations audit log (kind `config`)
        self._rules_read = False
        self.guard = webhook_guard(settings)  # SSRF guard of webhook urls: on in production (notifiers/__init__.py)
        service.dispatcher.guard = self.guard  # and of each POST: a name that resolves to a private address later
        # What the contact data's warnings judge by (logged at start, /health alarms.contacts.configWarnings).
        service.contacts.development = settings.environment == "development"
        service.contacts.rule_known = self.rule_known

    def rule_known(self, tenant: str, rule_id: str) -> bool:
        """Whether alarms of `rule_id` can exist in `tenant`: a rule of the rules engine, or one the platform raises
        itself (device-offline, derived alarms)."""
        if rule_id in BUILTIN_RULES or rule_id.startswith("derived:"):
            return True
        rules = self.service.platform.services.get("rules")
        if rules is None:
            return True
        if not self._rules_read:  # before the engine has read the stored rules (it starts after the alarms)
            self._rules_read = bool(rules.health()["ok"])  # nothing is called unknown
            if not self._rules_read:
                return True
        return rules.effective(tenant, rule_id) is not None

    def may(self, req: Req, permission: Permission) -> bool:
        """Whether the caller has `permission`: its bearer token's (server.require_auth on); everyone without the
        token guard (every API but the operations one is open then, docs/operations.md §4)."""
        if not self.settings.auth_required:
            return True
        ops = self.service.platform.services.get("ops")
        principal = ops.auth.identify(req) if ops is not None else None
        return principal is not None and principal.can(permission)

    def person_view(self, wire: dict[str, Any]) -> dict[str, Any]:
        """An alarm as a caller without `personal:read` sees it (the SSE stream's view, server.py): about a person,
        coarse and without the entity (`person_view`); any other as it is (the same object)."""
        return person_view(wire, self.service.privacy)

    async def audit_config(self, req: Req, tenant: str, action: str, **detail: Any) -> None:
        """One `config` line of the operations audit log: who changed which entry (never contact data, urls or
        secrets: the callers pass ids only)."""
        actor = actor_header(req, required=False, default="anonymous")
        await self.audit.append(self.audit.row(tenant, AUDIT_KIND, action, actor, outcome="ok", **detail))

    def tenant(self, req: Req) -> str:
        return tenant_of(req, self.default_tenant)[0]

    @staticmethod
    def actor(req: Req) -> str:
        return actor_header(req)

    def _wire(self, tenant: str, doc: dict[str, Any]) -> dict[str, Any]:
        """An alarm as listed: the in-memory state of an open alarm is the freshest."""
        alarm = self.service.get_open(tenant, doc["id"]) or Alarm.from_doc(doc)
        return alarm.to_wire()

    # -- alarms ------------------------------------------------------------------------------------
    async def list_alarms(self, req: Req) -> Resp:
        """Alarms, newest first, with the filters given; `total` counts every match."""
        tenant, query = self.tenant(req), parse_query(req)
        docs, total = await self.service.store.query_alarms(tenant, query)
        alarms = [self._wire(tenant, d) for d in docs]
        if not self.may(req, Permission.PERSONAL_READ):  # alarms about a person: coarse, without the entity
            privacy = self.service.privacy
            if query.entity_ids or query.bbox is not None:
                # Selected by the person's id or exact place: left out (else `entity=` says whose they are, and
                # narrowing `bbox` finds the exact place), and `total` corrected by counting them.
                alarms = [a for a in alarms if a.get("entity_type") not in privacy.personal_types]
                personal = tuple(t for t in sorted(privacy.personal_types)
                                 if not query.entity_types or t in query.entity_types)
                if personal and total:
                    _, hidden = await self.service.store.query_alarms(tenant, replace(
                        query, entity_types=personal, limit=1, offset=0))
                    total -= hidden or 0
            alarms = [person_view(a, privacy) for a in alarms]
        return Resp(200, {"total": total, "limit": query.limit, "offset": query.offset, "alarms": alarms})

    async def stats(self, req: Req) -> Resp:
        """Alarm statistics for the filters: counts, time to acknowledge, false-alarm rates."""
        tenant, query = self.tenant(req), parse_query(req)
        stats = await self.service.store.alarm_stats(tenant, query, FALSE_OUTCOMES)
        body = stats_body(stats)
        if stats.false_by_entity and not self.may(req, Permission.PERSONAL_READ):
            # The false-alarm rate by device names each alarm's entity: a person's id is not for this caller.
            people = await self._personal_entities(tenant, [row[0] for row in stats.false_by_entity])
            if people:
                rates = body["falseAlarmRate"]
                rates["byDevice"] = [row for row in rates["byDevice"] if row["entity"] not in people]
                rates["withheld"], rates["withheldReason"] = len(people), PERSON_WITHHELD
        return Resp(200, body)

    async def _personal_entities(self, tenant: str, entity_ids: list[str]) -> set[str]:
        """Which of `entity_ids` have an alarm about a person (their entity's type is a personal one)."""
        personal = tuple(sorted(self.service.privacy.personal_types))
        found: set[str] = set()
        for i in range(0, len(entity_ids) if personal else 0, MAX_LIMIT):
            chunk = tuple(entity_ids[i:i + MAX_LIMIT])
            offset = 0
            while True:
                docs, _ = await self.service.store.query_alarms(tenant, AlarmQuery(
                    entity_types=personal, entity_ids=chunk, limit=MAX_LIMIT, offset=offset))
                found.update(str(doc["entity_id"]) for doc in docs)
                if len(docs) < MAX_LIMIT:
                    break
                offset += MAX_LIMIT
        return found

    async def get_alarm(self, req: Req) -> Resp:
        """One alarm with its history (audit trail) and comments."""
        tenant = self.tenant(req)
        alarm = await self.service.load(tenant, req.path_params["alarmId"])
        history = await self.service.store.alarm_history(tenant, alarm.id)
        wire = alarm.to_wire()
        if not self.may(req, Permission.PERSONAL_READ):  # QA10 F3: comments and close notes are free text
            history = [withheld(entry) for entry in history]
            if self.service.privacy.personal(alarm):  # an alarm about a person: coarse, without the entity
                wire = person_view(wire, self.service.privacy)
                history = [person_entry(entry) for entry in history]
        comments = [h for h in history if h["action"] == "commented"]
        return Resp(200, {**wire, "history": history, "comments": comments})

    async def _act(self, req: Req, action: str, **args: Any) -> Resp:
        alarm = await self.service.act(self.tenant(req), req.path_params["alarmId"], action, self.actor(req), **args)
        wire = alarm.to_wire()
        return Resp(200, wire if self.may(req, Permission.PERSONAL_READ) else person_view(wire, self.service.privacy))

    async def acknowledge(self, req: Req) -> Resp:
        """Acknowledge an alarm (409 when its state does not allow it)."""
        return await self._act(req, "acknowledge")

    async def clear(self, req: Req) -> Resp:
        """Clear an alarm (409 when its state does not allow it)."""
        return await self._act(req, "clear")

    async def close(self, req: Req) -> Resp:
        """Close an alarm with its `outcome` and a `note` (409 when its state does not allow it)."""
        body = json_object(req)
        outcome, note = body.get("outcome"), body.get("note", "")
        if not isinstance(outcome, str) or not isinstance(note, str):
            raise bad("outcome(문자열)이 필요합니다", "outcome (a string) is required; note is a string")
        return await self._act(req, "close", outcome=outcome, note=note[:2000])

    async def assign(self, req: Req) -> Resp:
        """Assign an alarm to `assignee` (null: unassign)."""
        body = json_object(req)
        assignee = body.get("assignee")
        if "assignee" not in body or not (assignee is None or (isinstance(assignee, str) and assignee.strip())):
            raise bad("assignee(문자열 또는 null)가 필요합니다", "assignee (a string, or null to unassign) is required")
        return await self._act(req, "assign", assignee=assignee.strip()[:200] if assignee else None)

    async def comment(self, req: Req) -> Resp:
        """Comment on an alarm."""
        text = json_object(req).get("text")
        if not isinstance(text, str) or not text.strip():
            raise bad("text(비어 있지 않은 문자열)가 필요합니다", "text (a non-empty string) is required")
        return await self._act(req, "comment", text=text.strip()[:4000])

    async def dead_letters(self, req: Req) -> Resp:
        """Notifications given up after their retries (every sender's), as they were kept, with what the alarm's own
        list withholds withheld (`dead_letter_view`): the recipient's name and address, an error naming the address,
        and for an alarm about a person its message and identifying values, shown to `personal:read` only; a URL's
        secrets (its path and query values) to nobody."""
        letters = await self.service.dispatcher.dead_letters(self.tenant(req))
        personal = self.may(req, Permission.PERSONAL_READ)
        shown = [dead_letter_view(letter, personal, self.service.privacy) for letter in letters]
        return Resp(200, {"total": len(shown), "deadLetters": shown})

    async def replay_dead_letter(self, req: Req) -> Resp:
        """Queue a dead letter again (its receiver is back): 202, the same notification and id."""
        tenant, letter_id = self.tenant(req), req.path_params["letterId"]
        replayed = await self.service.dispatcher.replay(tenant, letter_id)
        await self.audit_config(req, tenant, "dead-letter-replayed", id=letter_id)
        return Resp(202, replayed)

    async def alarm_dead_letters(self, req: Req) -> Resp:
        """The alarm's notifications given up on (newest first), each with its resend link (QA9 F12). The recipient's
        name and address, and an error that names the address, are shown to `personal:read` only; for an alarm about
        a person also the message (its subject and text name the entity and its exact place)."""
        tenant = self.tenant(req)
        alarm = await self.service.load(tenant, req.path_params["alarmId"])
        letters = await self.service.dispatcher.dead_letters(tenant, alarm.id)
        personal = self.may(req, Permission.PERSONAL_READ)
        about_person = self.service.privacy.personal(alarm)
        shown = [letter_view(letter, alarm.id, personal, about_person) for letter in letters]
        return Resp(200, {"total": len(shown), "deadLetters": shown})

    async def resend_dead_letter(self, req: Req) -> Resp:
        """An operator (who may act on alarms: `data:write`) sends a failed notification of the alarm again: 202,
        queued; audited (`alarm` / `notification-resent`) and in the alarm's history (`resent`). 409 when there is
        nothing to resend (sent again already, purged, or its notifier gone); 404 for a letter not of this alarm."""
        tenant, alarm_id, letter_id = self.tenant(req), req.path_params["alarmId"], req.path_params["letterId"]
        actor = self.actor(req)
        resent = await self.service.resend(tenant, alarm_id, letter_id, actor)
        await self.audit.append(self.audit.row(
            tenant, "alarm", "notification-resent", actor, outcome="ok", alarm=resent["alarm"], deadLetter=letter_id,
            notifier=resent["notifier"], notificationEvent=resent["event"], attempts=resent["attempts"]))
        return Resp(202, resent)

    # -- contact data ------------------------------------------------------------------------------
    def collection_handlers(self, name: str) -> dict[str, Handler]:
        """list, create, get, put, delete handlers of one collection (notifiers, recipients, escalations)."""
        contacts = self.service.contacts
        collection: Collection[Any] = getattr(contacts, name)
        path_key = "itemId"

        noun = AUDIT_NOUN[name]

        def present(req: Req, tenant: str, item: BaseModel, source: str) -> dict[str, Any]:
            body = {**item.model_dump(mode="json"), "source": source}
            if isinstance(item, NotifierConfig):
                # Header values may hold a receiver's credentials: shown masked, like every secret.
                body["headers"] = {name: MASK for name in item.headers}
                # What the running notifier says (kind, delivery, ...), read-only; never over the document's own
                # fields (a recording notifier's `provider` "" stays ""), so that GET's body is a valid PUT body.
                body.update({k: v for k, v in self.service.dispatcher.describe(tenant, item.id).items() if k not in body})
                if item.url and not self.may(req, Permission.CONFIG_ADMIN):  # F10: a token in its query or path
                    body["url"] = mask_url(item.url)
                    body["urlMasked"] = True
            return body

        def validated(tenant: str, body: Any, item_id: str | None) -> Any:
            if name == "notifiers" and isinstance(body, dict):  # an admin's GET, edit, PUT: what GET added is ignored
                body = {k: v for k, v in body.items() if k not in NOTIFIER_READ_ONLY}
                if isinstance(body.get("headers"), dict) and all(isinstance(v, str) for v in body["headers"].values()):
                    found = collection.get(tenant, str(item_id or body.get("id") or ""))
                    body["headers"] = unmasked(body["headers"], found.headers if isinstance(found, NotifierConfig)
                                               else None)
            item = collection.parse(body, item_id)
            if isinstance(item, NotifierConfig):
                if not known_provider(item.type, item.provider):
                    raise bad("등록되지 않은 제공자", f"no {item.type} provider {item.provider!r} is registered")
                if item.type in ("sms", "push") and item.provider == "" and self.settings.environment == "production":
                    raise bad(SILENT_REFUSAL_KO, SILENT_REFUSAL_EN)  # F3: it would tell nobody, silently
                why = webhook_refusal(self.guard, item.url) if item.url else None
                if why:
                    raise bad("웹훅 주소가 내부망(사설·루프백·링크 로컬) 주소입니다", why)
            contacts.check_references(tenant, item)
            if isinstance(item, EscalationChain):
                contacts.check_chain(tenant, item)
            return item

        def warned(tenant: str, item: BaseModel, body: dict[str, Any]) -> dict[str, Any]:
            """F8: a chain for a rule that does not exist (yet) is kept, with a warning (rules may come later)."""
            if isinstance(item, EscalationChain):
                warning = contacts.unknown_rule_warning(item, lambda rule: self.rule_known(tenant, rule))
                if warning is not None:
                    body["warnings"] = [warning]
            return body

        async def list_items(req: Req) -> Resp:
            tenant = self.tenant(req)
            return Resp(200, [present(req, tenant, item, source) for item, source in collection.all(tenant)])

        async def get_item(req: Req) -> Resp:
            tenant, item_id = self.tenant(req), req.path_params[path_key]
            item = collection.get(tenant, item_id)
            if item is None:
                raise NotFound(f"{item_id}: 없음 / not found")
            return Resp(200, present(req, tenant, item, collection.source(tenant, item_id)))

        async def create(req: Req) -> Resp:
            tenant = self.tenant(req)
            item = validated(tenant, json_object(req), None)
            if collection.get(tenant, item.id) is not None:
                raise AlreadyExists(f"{item.id}: 이미 있음 / already exists")
            await collection.put(tenant, item)
            await self.audit_config(req, tenant, f"{noun}-created", id=item.id)
            return Resp(201, warned(tenant, item, present(req, tenant, item, "api")),
                        {"Location": f"/api/v1/{name}/{item.id}"})

        async def put(req: Req) -> Resp:
            tenant = self.tenant(req)
            item = validated(tenant, json_object(req), req.path_params[path_key])
            created = await collection.put(tenant, item)
            await self.audit_config(req, tenant, f"{noun}-{'created' if created else 'changed'}", id=item.id)
            return Resp(201 if created else 200, warned(tenant, item, present(req, tenant, item, "api")))

        async def delete(req: Req) -> Resp:
            tenant, item_id = self.tenant(req), req.path_params[path_key]
            if collection.get(tenant, item_id) is not None and collection.source(tenant, item_id) == "api":
                contacts.check_unused(tenant, name, item_id)  # F5: 409 naming who still points at it
            await collection.delete(tenant, item_id)
            await self.audit_config(req, tenant, f"{noun}-deleted", id=item_id)
            return Resp(204)

        return {"list": list_items, "create": create, "get": get_item, "put": put, "delete": delete}


def letter_view(letter: dict[str, Any], alarm_id: str, personal: bool, about_person: bool) -> dict[str, Any]:
    """A dead letter as an alarm's list shows it: what failed, when and why, and where to resend it; the recipient
    (a group member's name and address), an error naming the address and, for an alarm about a person, the message
    withheld from a caller without `personal:read` (`withheld` names them); URL secrets from everyone."""
    found = letter.get("notification")
    notification: dict[str, Any] = found if isinstance(found, dict) else {}
    recipient, error, hidden = letter_contact(letter, personal)
    out: dict[str, Any] = {
        "id": letter.get("id"), "notifier": letter.get("notifier"), "event": notification.get("event"),
        "group": notification.get("group"), "step": notification.get("step"),
        "createdAt": notification.get("createdAt"), "failedAt": letter.get("failedAt"),
        "attempts": letter.get("attempts"), "error": error, "recipient": recipient,
        "subject": notification.get("subject"), "text": notification.get("text"),
        "resend": f"/api/v1/alarms/{alarm_id}/dead-letters/{letter.get('id')}/resend"}
    if about_person and not personal:
        out.pop("subject"), out.pop("text")
        hidden += ["subject", "text"]
    if hidden:
        out["withheld"], out["withheldReason"] = hidden, WITHHELD_CONTACT
    return out


def dead_letter_view(letter: dict[str, Any], personal: bool, privacy: AlertPrivacy) -> dict[str, Any]:
    """A dead letter as the global list shows it: as it was kept (every sender's, an agency's package too), with what
    `letter_view` withholds withheld by the same rules (`letter_contact`), paths named in the letter's form
    (`notification.recipient.address`); for an alarm about a person, the alarm as `person_view` shows it."""
    recipient, error, hidden = letter_contact(letter, personal)
    out: dict[str, Any] = {**letter, "error": error}
    hidden = [name if name == "error" else f"notification.{name}" for name in hidden]
    found = letter.get("notification")
    if isinstance(found, dict):
        notification = out["notification"] = dict(found)
        if recipient is not None:
            notification["recipient"] = recipient
        alarm = notification.get("alarm")
        if not personal and isinstance(alarm, dict) and alarm.get("entity_type") in privacy.personal_types:
            notification["alarm"] = person_view(alarm, privacy)
            for name in ("subject", "text"):
                if notification.pop(name, None) is not None:
                    hidden.append(f"notification.{name}")
            hidden.append("notification.alarm")
    if hidden:
        out["withheld"], out["withheldReason"] = hidden, WITHHELD_CONTACT
    return out


_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


def without_url_secrets(text: str) -> str:
    """`text` with every URL in it as `mask_url` shows it (scheme, host and port; path and query values `***`)."""
    return _URL.sub(lambda found: mask_url(found.group(0)), text)


def letter_contact(letter: dict[str, Any], personal: bool) -> tuple[dict[str, Any] | None, Any, list[str]]:
    """The recipient and the error of a dead letter as a caller sees them, and the names of what is withheld
    (`recipient.name`, `recipient.address`, `error`): without `personal:read`, a group member's name and address and
    the address in the error are withheld; an address or error that is or holds a URL is shown without its secrets
    (`mask_url`) to everyone, `config:admin` too (a webhook's token in its path or query)."""
    found = letter.get("notification")
    recipient = found.get("recipient") if isinstance(found, dict) else None
    if not isinstance(recipient, dict):
        recipient = None
    error = letter.get("error")
    address = recipient.get("address") if recipient else None
    hidden: list[str] = []
    if not personal and recipient is not None and address:  # a group member: a person's name and contact
        recipient = {"language": recipient.get("language")}
        hidden += ["recipient.name", "recipient.address"]
        if isinstance(error, str) and str(address) in error:
            error = error.replace(str(address), "***")
            hidden.append("error")
    elif recipient is not None and isinstance(address, str) and _URL.search(address):
        recipient = {**recipient, "address": without_url_secrets(address)}
    if isinstance(error, str):
        error = without_url_secrets(error)
    return recipient, error, hidden


def withheld(entry: dict[str, Any]) -> dict[str, Any]:
    """A history entry without its free text (a comment's `text`, a close's `note`), saying so."""
    hidden = [key for key in ("text", "note") if key in entry]
    if not hidden:
        return entry
    return {**{k: v for k, v in entry.items() if k not in hidden}, "withheld": hidden, "withheldReason": WITHHELD}


# -- alarms about a person (privacy.personal_entity_types) for callers without personal:read ----------------------
def identifying(evidence: Any) -> tuple[Any, list[str]]:
    """A rule's evidence without the values that can identify the person (the measured `value` unless it is a
    number: a geofence's is the person's exact place; the composite `values` that are not numbers; `entityName`),
    and the names of what was withheld; the same for the lower match kept in `latest`."""
    if not isinstance(evidence, dict):
        return evidence, []
    out: dict[str, Any] = {}
    hidden: list[str] = []
    for key, value in evidence.items():
        if key == "entityName" or (key == "value" and not _number(value)):
            hidden.append(key)
        elif key == "values" and isinstance(value, dict):
            kept = {k: v for k, v in value.items() if _number(v)}
            hidden.extend(f"values.{k}" for k in value if k not in kept)
            out[key] = kept
        elif key == "latest" and isinstance(value, dict):
            out[key], more = identifying(value)
            hidden.extend(f"latest.{k}" for k in more)
        else:
            out[key] = value
    return out, hidden


def _number(value: Any) -> bool:
    return value is None or isinstance(value, (int, float))


def person_view(wire: dict[str, Any], privacy: AlertPrivacy) -> dict[str, Any]:
    """An alarm (its API form) as a caller without `personal:read` sees it when it is about a person (its entity's
    type is one of `privacy.personal_entity_types`; others are returned as they are): the entity id replaced by the
    alarm's Alert id, the place the centre of its `privacy.location_cell_deg` cell (the Alert's, `locationCellDeg`),
    the evidence without its identifying values; `withheld` names what is not shown."""
    if not wire.get("entity_type") or wire["entity_type"] not in privacy.personal_types:
        return wire
    out = {**wire, "entity_id": wire["alert_id"]}
    hidden = ["entity_id"]
    if wire.get("entity_name"):
        out["entity_name"] = ""
        hidden.append("entity_name")
    if wire.get("location") is not None:
        out["location"] = privacy.coarse(wire["location"])
        out["locationCellDeg"] = privacy.cell_deg
        hidden.append("location")
    out["evidence"], more = identifying(wire.get("evidence"))
    hidden.extend(f"evidence.{k}" for k in more)
    out["withheld"], out["withheldReason"] = hidden, PERSON_WITHHELD
    return out


def person_entry(entry: dict[str, Any]) -> dict[str, Any]:
    """A history entry of an alarm about a person without the identifying values of its evidence."""
    if "evidence" not in entry:
        return entry
    evidence, hidden = identifying(entry["evidence"])
    if not hidden:
        return entry
    previous = entry.get("withheld", [])
    return {**entry, "evidence": evidence, "withheld": [*previous, *(f"evidence.{k}" for k in hidden)],
            "withheldReason": entry.get("withheldReason", PERSON_WITHHELD)}


# -- /docs (ucity/openapi.py): what the route table in server.py does not say ------------------------------------
FILTERS = ("status", "level", "kind", "type", "entity", "rule", "parent", "derived", "bbox", "from", "to", "limit",
           "offset")
_ACT = ("NGSILD-Tenant", "X-Ucity-Actor")
_OBJECT: dict[str, Any] = {"type": "object"}
_COLLECTIONS: dict[str, type[BaseModel]] = {"notifiers": NotifierConfig, "recipients": RecipientGroup,
                                             "escalations": EscalationChain}
OPENAPI = ApiDocs(
    routes={
        ("GET", "/api/v1/alarms"): Doc(params=FILTERS),
        ("GET", "/api/v1/alarms/stats"): Doc(params=FILTERS),
        ("POST", "/api/v1/alarms/{alarmId}/acknowledge"): Doc(headers=_ACT, required=_ACT[1:]),
        ("POST", "/api/v1/alarms/{alarmId}/clear"): Doc(headers=_ACT, required=_ACT[1:]),
        ("POST", "/api/v1/alarms/{alarmId}/close"): Doc(headers=_ACT, required=_ACT[1:], body={
            **_OBJECT, "required": ["outcome"], "properties": {
                "outcome": {"type": "string", "enum": list(OUTCOMES)}, "note": {"type": "string", "maxLength": 2000}}}),
        ("POST", "/api/v1/alarms/{alarmId}/assign"): Doc(headers=_ACT, required=_ACT[1:], body={
            **_OBJECT, "required": ["assignee"], "properties": {"assignee": {"type": ["string", "null"]}}}),
        ("POST", "/api/v1/alarms/{alarmId}/comments"): Doc(headers=_ACT, required=_ACT[1:], body={
            **_OBJECT, "required": ["text"], "properties": {"text": {"type": "string", "maxLength": 4000}}}),
        ("GET", "/api/v1/notifications/dead-letters"): Doc(
            summary="Notifications given up on (every sender's dead letters)",
            description="Newest first, as they were kept. A group member's name and address (and an error naming "
                        "the address), and for an alarm about a person its message and identifying values, are "
                        "shown to `personal:read` only (`withheld`); a URL's path and query values to nobody."),
        ("POST", "/api/v1/notifications/dead-letters/{letterId}/replay"): Doc(
            summary="Queue a dead letter again",
            description="Once its receiver is back: the same notification (same id, so receivers can drop a copy) "
                        "to the same endpoint, its attempts counted from zero; the dead letter goes once the "
                        "notification is queued (and stored: a restart sends it).", statuses=(202,)),
        ("GET", "/api/v1/alarms/{alarmId}/dead-letters"): Doc(
            summary="The alarm's notifications given up on (its dead letters)",
            description="Newest first, each with its `resend` link. A group member's name and address (and an error "
                        "naming the address), and for an alarm about a person the message, are shown to "
                        "`personal:read` only (`withheld`)."),
        ("POST", "/api/v1/alarms/{alarmId}/dead-letters/{letterId}/resend"): Doc(
            summary="Send a failed notification of the alarm again (operators)", headers=_ACT, required=_ACT[1:],
            description="Its dead letter queued again (the same notification and id, attempts from zero), claimed "
                        "once: audited (`alarm` / `notification-resent`) and a `resent` entry in the alarm's "
                        "history. 409 when there is nothing to resend (sent again already, purged, or its notifier "
                        "gone or disabled), 404 for a letter that is not one of this alarm's. `data:write`; "
                        "`POST /api/v1/notifications/dead-letters/{id}/replay` stays the administrators' "
                        "(`config:admin`).", statuses=(202,)),
        ("GET", "/api/v1/stream"): Doc(
            summary="The alarm event stream (server-sent events) for dashboards",
            description="Every alarm change of the tenant as it happens. Browsers' EventSource cannot set "
                        "headers: the tenant may also be the `tenant` query parameter, and `lastEventId` resumes "
                        "like `Last-Event-ID`.",
            params=("tenant", "lastEventId"), headers=("NGSILD-Tenant", "Last-Event-ID"), tag="alarms",
            response_media="text/event-stream"),
        **{key: doc for name, model in _COLLECTIONS.items() for key, doc in (
            (("POST", f"/api/v1/{name}"), Doc(summary=f"Create one of the tenant's {name}", body=model,
                                                 statuses=(201,))),
            (("GET", f"/api/v1/{name}"), Doc(summary=f"The tenant's {name} and the configured ones")),
            (("GET", f"/api/v1/{name}/{{itemId}}"), Doc(summary=f"One of the {name}")),
            (("PUT", f"/api/v1/{name}/{{itemId}}"), Doc(
                summary=f"Create or replace one of the tenant's {name} (configured ones are read-only: 409)",
                body=model, statuses=(200, 201))),
            (("DELETE", f"/api/v1/{name}/{{itemId}}"), Doc(summary=f"Delete one of the tenant's {name}",
                                                           statuses=(204,))))},
    },
    params={
        "status": "alarm status(es), or `active` / `cleared`", "level": "crisis level(s): " + ", ".join(LEVELS),
        "kind": "kind(s): " + ", ".join(KINDS), "type": "entity type(s)", "entity": "entity id(s)",
        "rule": "rule id(s)", "parent": "parent entity id(s) (e.g. the household)",
        "derived": "`true`: only alarms derived from others; `false`: only the others",
        "from": "raised at or after (ISO 8601)", "to": "raised before (ISO 8601)", "limit": "page size (1..1000, default 20)",
        "tenant": "the tenant, when the NGSILD-Tenant header cannot be sent", "lastEventId": "resume after this event",
        "Last-Event-ID": "resume after this event",
        "X-Ucity-Actor": "who acts (required; a stand-in until ucity has users and roles)",
    },
    tags={"alarms": "Alarms raised by the rules and device health: list, statistics, acknowledge / clear / close / "
                    "assign / comment, the live stream (SSE); contact data (notifiers, recipients, escalations) and "
                    "dead letters (ucity/alarms/README.md)."},
)
