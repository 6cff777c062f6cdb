"""From an alarm event to queued notifications: who, through which endpoint, with what text.

A recipient group names people (each with contacts: a notifier and an address) and group
endpoints (webhooks). Each (tenant, notifier) gets its own `Outbox`, so one receiver that is
down delays nothing else. Texts are Korean and English; times are shown in Korea time (KST,
UTC+9, no daylight saving) while the JSON keeps UTC.

The queues are durable (ucity/alarms/journal.py): the alarms service writes an alarm change's notifications
(`prepare`, `entries`) in the change's own commit, then queues them (`enqueue`); `resume` queues again, at
start, what the store holds and this process does not. When an alarm notification settles (delivered, taken by a
recording notifier, or a dead letter), `on_settled` tells the alarms service, which records it in the alarm's
history (QA9 F6); /health counts the recent dead letters (`recent_dead_letters`).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx

from ucity.alarms.contacts import Contacts, RecipientGroup
from ucity.alarms.journal import AGENCY, ALARM, KIND, Journal, Pending, notification_fields
from ucity.alarms.model import FAULT_NAME, OUTCOME_NAMES, STATUS_NAMES, SYSTEM, Alarm, geometry_bbox
from ucity.alarms.notifiers import Notifier, NotifierDeps, build_notifier
from ucity.alarms.notifiers.base import DeliveryResult, Notification, Outbox, Recipient
from ucity.core.clock import Clock, parse_iso, to_iso
from ucity.core.config import WEBHOOK_SECRET_PLACEHOLDER, AlarmSettings
from ucity.core.errors import NotFound, UcityError
from ucity.core.logsetup import mask_request_urls
from ucity.core.netguard import AddressGuard
from ucity.rules.events import LEVEL_NAMES
from ucity.store.base import Doc, Store

log = logging.getLogger(__name__)
DEAD_LETTERS = "alarm-dead-letter"
KST = timezone(timedelta(hours=9), "KST")
EVENT_NAMES: dict[str, dict[str, str]] = {
    "raised": {"ko": "경보 발생", "en": "Alarm raised"},
    "escalated": {"ko": "경보 격상", "en": "Alarm escalated"},
    "step": {"ko": "경보 통보", "en": "Alarm notice"},
    "reactivated": {"ko": "경보 재발생", "en": "Alarm active again"},
    "acknowledged": {"ko": "경보 확인됨", "en": "Alarm acknowledged"},
    "cleared": {"ko": "경보 해제", "en": "Alarm cleared"},
    "closed": {"ko": "경보 종결", "en": "Alarm closed"},
}


# What each event's message says happened, when (Asia/Seoul) and by whom: (label of its time, the alarm field with
# the time, the alarm field with the actor, label of the actor), per language. None: the raise itself.
_WHEN: dict[str, tuple[dict[str, str], str, str | None, dict[str, str]]] = {
    "escalated": ({"ko": "격상 시각", "en": "Escalated at"}, "updated_at", None, {"ko": "처리", "en": "By"}),
    "step": ({"ko": "통보 시각", "en": "Notified at"}, "updated_at", None, {"ko": "처리", "en": "By"}),
    "reactivated": ({"ko": "재발생 시각", "en": "Active again at"}, "updated_at", None, {"ko": "처리", "en": "By"}),
    "acknowledged": ({"ko": "확인 시각", "en": "Acknowledged at"}, "acked_at", "acked_by",
                     {"ko": "확인자", "en": "Acknowledged by"}),
    "cleared": ({"ko": "해제 시각", "en": "Cleared at"}, "cleared_at", "cleared_by", {"ko": "해제자", "en": "Cleared by"}),
    "closed": ({"ko": "종결 시각", "en": "Closed at"}, "closed_at", "closed_by", {"ko": "종결자", "en": "Closed by"}),
}
_SYSTEM_NAME = {"ko": "시스템(자동)", "en": "system (automatic)"}
_DIRECTION = {"above": "≥ {}", "below": "≤ {}", "abs": "|x| ≥ {}"}
_LABELS = {"ko": {"entity": "대상", "name": "이름", "location": "위치", "rule": "규칙", "level": "단계", "status": "상태",
                  "raised": "발생 시각", "measured": "측정값", "threshold": "기준", "rate": "변화율",
                  "last": "마지막 보고", "description": "설명", "outcome": "결과", "alarm": "경보",
                  "lat": "위도", "lon": "경도", "centre": "중심"},
           "en": {"entity": "Entity", "name": "Name", "location": "Location", "rule": "Rule", "level": "Level",
                  "status": "Status", "raised": "Raised at", "measured": "Measured", "threshold": "Threshold",
                  "rate": "Rate", "last": "Last reported", "description": "Description",
                  "outcome": "Outcome", "alarm": "Alarm", "lat": "lat", "lon": "lon", "centre": "centre"}}


class LetterTaken(NotFound):
    """A dead letter was taken while a replay or resend claimed it (another one, or retention, deleted it first)."""


class NothingToResend(UcityError):
    """An alarm's notification cannot be sent again now (409): its dead letter is gone (sent again already, or
    purged), or its notifier no longer exists or is disabled."""

    status = 409
    type_uri = "urn:ucity:errors:NothingToResend"
    title = "Nothing to resend"


def kst(text: str | None) -> str:
    """A stored UTC time as Korea time for people (`2026-03-02 09:00:00 KST`); '-' when absent or unreadable."""
    if not text:
        return "-"
    try:
        return parse_iso(text).astimezone(KST).strftime("%Y-%m-%d %H:%M:%S KST")
    except (TypeError, ValueError):
        return str(text)


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _measured(evidence: dict[str, Any], level: str | None, lang: str) -> list[str]:
    """The lines saying what was measured and against which threshold (from the rule's evidence, when it has it)."""
    labels, lines = _LABELS[lang], []
    attribute = evidence.get("attribute")
    prefix = f"{attribute} = " if isinstance(attribute, str) else ""
    value = evidence.get("value")
    at = f" ({kst(evidence['observedAt'])})" if isinstance(evidence.get("observedAt"), str) else ""
    if isinstance(value, (bool, int, float, str)):
        lines.append(f"{labels['measured']}: {prefix}{_number(value)}{at}")
    elif isinstance(evidence.get("values"), dict):  # a composite condition: each term's value
        values = ", ".join(f"{k} = {_number(v)}" for k, v in evidence["values"].items())
        lines.append(f"{labels['measured']}: {values}{at}")
    rate = evidence.get("rate")
    if isinstance(rate, (int, float)) and not isinstance(rate, bool):
        per = evidence.get("perSeconds")
        unit = "" if not per else f" ({_number(per)}초당)" if lang == "ko" else f" (per {_number(per)} s)"
        lines.append(f"{labels['rate']}: {_number(rate)}{unit}")
    edges = evidence.get("edges")
    direction = evidence.get("direction")
    if isinstance(edges, dict) and level in edges:
        form = _DIRECTION.get(direction if isinstance(direction, str) else "", "{}")
        lines.append(f"{labels['threshold']}: {form.format(_number(edges[level]))}")
    if "lastReported" in evidence:  # an inactivity rule: when the entity last reported
        lines.append(f"{labels['last']}: {kst(evidence.get('lastReported'))}")
    return lines


def _place(location: Any, lang: str) -> str | None:
    """A GeoJSON location as text (a point's latitude and longitude; another geometry's centre), None without one."""
    box = geometry_bbox(location) if isinstance(location, dict) else None
    if box is None:
        return None
    labels = _LABELS[lang]
    lon, lat = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    centre = "" if box[0] == box[2] and box[1] == box[3] else f" ({labels['centre']})"
    return f"{labels['lat']} {lat:.6f}, {labels['lon']} {lon:.6f}{centre}"


def _actor(actor: Any, lang: str) -> str:
    return _SYSTEM_NAME[lang] if not actor or actor == SYSTEM else str(actor)


def compose(alarm: Alarm, event: str) -> tuple[dict[str, str], dict[str, str]]:
    """(subject, text), each {"ko": ..., "en": ...}: what happened, to what (name, place), the measured value and
    the threshold of the level when the rule gave them, and for a change after the raise when (Asia/Seoul) and
    by whom (QA9 F12)."""
    level = LEVEL_NAMES[alarm.level] if alarm.level else FAULT_NAME
    names = EVENT_NAMES.get(event, EVENT_NAMES["step"])
    # The entity's name when known (never a person's: the alarm has none then), besides its id.
    target = f"{alarm.entity_name} ({alarm.entity_id})" if alarm.entity_name else alarm.entity_id
    subject = {lang: f"[{level[lang]}] {names[lang]}: {alarm.rule_id} @ {target}" for lang in ("ko", "en")}
    found = alarm.evidence.get("ruleName")
    rule_name: dict[str, Any] = found if isinstance(found, dict) else {}
    when = _WHEN.get(event)
    text = {}
    for lang, labels in _LABELS.items():
        lines = [f"{names[lang]} — {level[lang]}", f"{labels['entity']}: {alarm.entity_id}"]
        if alarm.entity_name:
            lines.append(f"{labels['name']}: {alarm.entity_name}")
        place = _place(alarm.location, lang)
        if place:
            lines.append(f"{labels['location']}: {place}")
        shown = rule_name.get(lang) if isinstance(rule_name.get(lang), str) else None
        lines += [f"{labels['rule']}: {f'{shown} ({alarm.rule_id})' if shown else alarm.rule_id}",
                  f"{labels['level']}: {level[lang]}"]
        lines += _measured(alarm.evidence, alarm.level, lang)
        lines += [f"{labels['status']}: {STATUS_NAMES[alarm.status][lang]}", f"{labels['raised']}: {kst(alarm.raised_at)}"]
        if when is not None:
            label, at_field, by_field, by_label = when
            at = getattr(alarm, at_field)
            if event == "escalated" and alarm.escalation and alarm.escalation.get("level") == alarm.level:
                at = alarm.escalation.get("started_at") or at  # when it reached this level
            lines.append(f"{label[lang]}: {kst(at)}")
            lines.append(f"{by_label[lang]}: {_actor(getattr(alarm, by_field) if by_field else None, lang)}")
        if event == "closed" and alarm.outcome in OUTCOME_NAMES:
            lines.append(f"{labels['outcome']}: {OUTCOME_NAMES[alarm.outcome][lang]}")
        if alarm.description.get(lang):
            lines.append(f"{labels['description']}: {alarm.description[lang]}")
        lines.append(f"{labels['alarm']}: {alarm.id}")
        text[lang] = "\n".join(lines)
    return subject, text


class Dispatcher:
    """Builds notifier instances from the contact data and queues notifications per endpoint."""

    def __init__(self, clock: Clock, store: Store, settings: AlarmSettings, contacts: Contacts, development: bool) -> None:
        self.clock = clock
        self.store = store
        self.settings = settings
        self.contacts = contacts
        self._secret = _secret(settings, development)
        self._http: httpx.AsyncClient | None = None
        self._instances: dict[tuple[str, str], Notifier] = {}
        self._outboxes: dict[tuple[str, str], Outbox] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.journal = Journal(store, clock)
        self.owns: Callable[[str, str], bool] = lambda tenant, entity_id: True  # set through AlarmService.owns
        # The SSRF guard webhook notifiers check their receiver's address with before each POST (set by AlarmApi
        # from `subscriptions.block_private_networks`; None: no check, as outside production).
        self.guard: AddressGuard | None = None
        # Scale-out, in an API process: (tenant, entity, notification id, send it here instead) -> hand a stored
        # notification to the worker owning its entity (ucity/cluster/producer.py); None: send everything here.
        self.hand_over: Callable[[str, str, str, Callable[[], None]], None] | None = None
        # How the other senders of ucity queue again what they journaled (channel -> resume one entry).
        self.resumers: dict[str, Callable[[Pending], None]] = {ALARM: self._resume_alarm}
        contacts.notifiers.on_change = self._forget
        # An alarm notification settled, as (notification, notifier id, action, detail): delivered, not-sent (a
        # recording notifier) or delivery-failed (a dead letter); the alarms service records it in the alarm's history.
        self.on_settled: Callable[[Notification, str, str, dict[str, Any]], None] | None = None
        # When the dead letters (of every sender) of the last `alarms.dead_letters_recent_s` failed, oldest first:
        # the stored ones at start, then this process's (/health).
        self._dead_times: deque[datetime] = deque()

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        mask_request_urls()  # httpx logs each request's URL: a webhook's path is often its credential
        # No pool limit: a slow endpoint must not wait behind another's connections.
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(self.settings.webhook_timeout_s),
                                       limits=httpx.Limits(max_connections=None, max_keepalive_connections=50))

    async def stop(self) -> None:
        for outbox in self._outboxes.values():
            await outbox.close()
        self._outboxes.clear()
        for notifier in self._instances.values():
            await notifier.close()
        self._instances.clear()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    # -- notifiers ---------------------------------------------------------------------------------
    def notifier(self, tenant: str, notifier_id: str) -> Notifier | None:
        """The live instance of a notifier document (built on first use, rebuilt after a change)."""
        key = (tenant, notifier_id)
        instance = self._instances.get(key)
        if instance is None:
            config = self.contacts.notifiers.get(tenant, notifier_id)
            if config is None or not config.enabled or self._http is None:
                return None
            deps = NotifierDeps(self.settings, self.clock, self._http, self._secret, self.guard)
            instance = self._instances[key] = build_notifier(config, deps)
        return instance

    def notifier_deps(self) -> NotifierDeps | None:
        """What another sender of ucity (the operations centre's agency links) needs to build notifiers that
        sign and time out like these and share their connections; None while stopped. Without the webhook guard:
        agency endpoints are the operations centre's configuration (often on the city's private network)."""
        return None if self._http is None else NotifierDeps(self.settings, self.clock, self._http, self._secret)

    def _forget(self, tenant: str, notifier_id: str) -> None:
        """A notifier document changed: the next delivery builds the instance again."""
        instance = self._instances.pop((tenant, notifier_id), None)
        if instance is not None:
            self._spawn(instance.close())

    def outbox(self, tenant: str, notifier_id: str) -> Outbox:
        key = (tenant, notifier_id)
        box = self._outboxes.get(key)
        if box is None:
            async def dead(notification: Notification, name: str, attempts: int, error: str) -> None:
                await self.dead_letter(notification, notifier_id, attempts, error)
                self._tell(notification, notifier_id, "delivery-failed",
                           {"deadLetter": notification.id, "attempts": attempts, "error": error[:200]})

            def delivered(notification: Notification, notifier: Notifier, result: DeliveryResult) -> None:
                self._tell(notification, notifier_id, "delivered" if notifier.sends else "not-sent",
                           {"result": result.detail[:200]} if result.detail else {})

            box = self._outboxes[key] = Outbox(f"{tenant}/{notifier_id}", lambda: self.notifier(tenant, notifier_id),
                                               self.clock, self.settings.retry, self.settings.queue_size, dead,
                                               self.journal, delivered)
        return box

    def _tell(self, notification: Notification, notifier_id: str, action: str, detail: dict[str, Any]) -> None:
        if self.on_settled is None:
            return
        try:
            self.on_settled(notification, notifier_id, action, detail)
        except Exception:  # its record is behind; the delivery went as it went
            log.exception("notification %s: its %s could not be recorded", notification.id, action)

    def describe(self, tenant: str, notifier_id: str) -> dict[str, Any]:
        """What the API shows of a notifier beyond its document: delivery counters, recordings."""
        instance = self.notifier(tenant, notifier_id)
        box = self._outboxes.get((tenant, notifier_id))
        return {**(instance.describe() if instance else {"sends": False}),
                "delivery": box.stats.to_wire(box.queued) if box else None}

    # -- fan-out -----------------------------------------------------------------------------------
    def prepare(self, alarm: Alarm, group_id: str, event: str, step: int | None = None) -> list[tuple[str, Notification]]:
        """The notifications of one alarm event for one group, as (notifier id, notification); nothing queued."""
        group = self.contacts.recipients.get(alarm.tenant, group_id)
        if group is None:
            log.warning("alarm %s: recipient group %s does not exist; nobody notified", alarm.id, group_id)
            return []
        subject, text = compose(alarm, event)
        wire = alarm.to_wire()
        prepared = []
        for notifier_id, recipient in _targets(group):
            if self.contacts.notifiers.get(alarm.tenant, notifier_id) is None:
                log.warning("group %s names notifier %s, which does not exist", group_id, notifier_id)
                continue
            prepared.append((notifier_id, Notification(
                f"urn:ucity:notification:{uuid.uuid4().hex}", alarm.tenant, event, to_iso(self.clock.now()), wire,
                subject, text, group_id, step, recipient)))
        return prepared

    def entries(self, alarm: Alarm, prepared: list[tuple[str, Notification]]) -> list[tuple[str, str, str, Doc]]:
        """The stored outbox entries of prepared notifications, as (kind, tenant, key, doc), for the alarm's save."""
        return self.journal_entries(ALARM, alarm.entity_id, prepared)

    def journal_entries(self, channel: str, entity: str,
                        prepared: list[tuple[str, Notification]]) -> list[tuple[str, str, str, Doc]]:
        """The stored outbox entries of (endpoint, notification) pairs of a channel, as (kind, tenant, key, doc), for
        a sender to write in the commit that decides them (then `enqueue`)."""
        return [(KIND, *self.journal.entry(channel, endpoint, entity, notification))
                for endpoint, notification in prepared]

    def enqueue(self, prepared: list[tuple[str, Notification]], entries: list[tuple[str, str, str, Doc]],
                box: Callable[[str, str], Outbox] | None = None, stored: bool = True) -> int:
        """Queue prepared notifications whose `entries` are stored (each its own, in order), each in the outbox
        `box(tenant, endpoint)` (default: the alarm notifier's). In scale-out, an API process hands stored ones of
        entities it does not own to their owner (`hand_over`): the worker that would send them again after a
        crash sends them in the first place, so no API process holds work nobody resumes."""
        box = box or self.outbox
        for (endpoint, notification), (_, _, _, entry) in zip(prepared, entries, strict=True):
            def local(notification: Notification = notification, endpoint: str = endpoint,
                      entry: Doc = entry) -> None:
                self.journal.held.add(notification.id)
                box(notification.tenant, endpoint).put(notification, entry=entry)

            entity = str(entry.get("entity", ""))
            if self.hand_over is not None and stored and not self.owns(notification.tenant, entity):
                self.hand_over(notification.tenant, entity, notification.id, local)
            else:
                local()
        return len(prepared)

    def notify_group(self, alarm: Alarm, group_id: str, event: str, step: int | None = None) -> int:
        """Store and queue the notifications of one alarm event for one group, outside an alarm's save (the
        alarms service stores them with the change); returns how many there are."""
        prepared = self.prepare(alarm, group_id, event, step)
        self.store_and_enqueue(ALARM, alarm.entity_id, prepared, self.outbox)
        return len(prepared)

    def store_and_enqueue(self, channel: str, entity: str, prepared: list[tuple[str, Notification]],
                          box: Callable[[str, str], Outbox]) -> None:
        """Store the outbox entries of (endpoint, notification) pairs, then queue them in `box(tenant, endpoint)`
        (other senders of ucity: the agencies' packages). If the store fails they go all the same (logged,
        counted): nothing is dropped, but a restart before they are sent would not send them."""
        if prepared:
            self._spawn(self._store_and_enqueue(channel, entity, prepared, box))

    async def _store_and_enqueue(self, channel: str, entity: str, prepared: list[tuple[str, Notification]],
                                 box: Callable[[str, str], Outbox]) -> None:
        entries = self.journal_entries(channel, entity, prepared)
        try:
            await self.journal.add([(tenant, key, doc) for _, tenant, key, doc in entries])
        except Exception as exc:
            self.journal.failures += 1
            log.warning("%d notifications could not be stored, sent from memory: %s", len(prepared), exc)
            self.enqueue(prepared, entries, box, stored=False)
            return
        self.enqueue(prepared, entries, box)

    # -- after a restart -----------------------------------------------------------------------------
    async def resume(self, owns: Callable[[str, str], bool], channels: set[str] | None = None,
                     ids: set[str] | None = None) -> int:
        """Queue again the stored entries (of `channels`, default all; of `ids`, default all) of the entities this
        process owns that it does not hold: at start, when a worker's partitions changed, and when an API process
        hands some over; returns how many. Each keeps its id and its attempts so far. Each channel's sender
        resumes its own once what it needs is loaded."""
        resumed = 0
        # Held when the read starts, or since: one held then and settled (delivered, its entry deleted) while the
        # read ran may still be in what it returns, and must not be sent again.
        holding = set(self.journal.held)
        for pending in await self.journal.pending():
            if channels is not None and pending.channel not in channels:
                continue
            if ids is not None and pending.id not in ids:
                continue
            if pending.id in holding or pending.id in self.journal.held or not owns(pending.tenant, pending.entity):
                continue
            resume = self.resumers.get(pending.channel)
            if resume is None:
                log.error("outbox entry %s: unknown channel %s; left in the store", pending.id, pending.channel)
                continue
            self.journal.held.add(pending.id)
            resume(pending)
            resumed += 1
        if resumed:
            log.info("%d queued notifications read back from the store; sending them", resumed)
        return resumed

    def _resume_alarm(self, pending: Pending) -> None:
        self.outbox(pending.tenant, pending.endpoint).put(pending.notification(), pending.attempts, pending.entry)

    # -- dead letters ------------------------------------------------------------------------------
    async def dead_letter(self, notification: Notification, notifier_id: str, attempts: int, error: str) -> None:
        """Keep a notification given up on (listed by the API); other senders of ucity use it too."""
        log.warning("notification %s to %s is a dead letter after %d attempts: %s", notification.id, notifier_id,
                    attempts, error)
        doc = {"id": notification.id, "notifier": notifier_id, "attempts": attempts, "error": error,
               "failedAt": to_iso(self.clock.now()), "notification": notification.payload()}
        linkage = getattr(notification, "linkage", None)
        if linkage is not None:  # a package's linkage: a replayed package marks it delivered
            doc["linkage"] = linkage
        await self.store.put_doc(DEAD_LETTERS, notification.tenant, notification.id, doc)
        self._dead_times.append(self.clock.now())

    async def count_dead_letters(self, window_s: float) -> None:
        """At start: the stored dead letters that failed within the last `window_s` count as recent (/health)."""
        since = self.clock.now() - timedelta(seconds=window_s)
        times = []
        for _, _, doc in await self.store.list_docs(DEAD_LETTERS):
            try:
                at = parse_iso(str(doc["failedAt"]))
            except (KeyError, TypeError, ValueError):
                continue
            if at >= since:
                times.append(at)
        self._dead_times = deque(sorted(times))

    def recent_dead_letters(self, window_s: float) -> tuple[int, str | None]:
        """How many dead letters failed within the last `window_s`, and when the latest did (None: none)."""
        since = self.clock.now() - timedelta(seconds=window_s)
        while self._dead_times and self._dead_times[0] < since:
            self._dead_times.popleft()
        return len(self._dead_times), to_iso(self._dead_times[-1]) if self._dead_times else None

    async def replay(self, tenant: str, letter_id: str) -> Doc:
        """Queue a dead letter again (an operator, once its receiver is back): the same notification, id and
        endpoint, attempts from zero. Its outbox entry is stored before the dead letter is deleted, so a crash in
        between sends it and keeps the letter, never loses both. 404 for an unknown letter."""
        letter = next((doc for t, key, doc in await self.store.list_docs(DEAD_LETTERS)
                       if t == tenant and key == letter_id), None)
        if letter is None:
            raise NotFound(f"실패 알림 {letter_id} 없음 / dead letter {letter_id} does not exist")
        notifier = str(letter["notifier"])
        channel, endpoint = (AGENCY, notifier.removeprefix("agency:")) if notifier.startswith("agency:") \
            else (ALARM, notifier)
        stored = dict(letter["notification"])
        if letter.get("linkage") is not None:
            stored["linkage"] = letter["linkage"]
        if channel == AGENCY:
            event = stored.get("package", {}).get("event")
            entity = str(event.get("id", "")) if isinstance(event, dict) else ""
        else:
            entity = str((stored.get("alarm") or {}).get("entity_id", ""))
        resume = self.resumers.get(channel)
        if resume is None:  # the operations centre is not running here
            raise NotFound(f"실패 알림 {letter_id}의 채널 없음 / no sender of dead letter {letter_id} runs here")
        notification = Notification(**{k: v for k, v in notification_fields(stored).items()
                                       if k not in ("package", "linkage")})
        _, key, entry = self.journal.entry(channel, endpoint, entity, notification)
        entry["notification"] = stored  # as the letter kept it (a package's own fields too)
        await self.journal.add([(tenant, key, entry)])
        if not await self.store.delete_doc(DEAD_LETTERS, tenant, letter_id):
            # Taken meanwhile: an operator's resend of the same package (ucity/ops, which claims the letter by
            # deleting it) or retention. That one goes, this one does not: the letter is sent once. The entry just
            # written has the same key as a resend's; it is removed only if nothing here queued it.
            if notification.id not in self.journal.held:
                await self.store.delete_doc(KIND, tenant, key)
            raise LetterTaken(f"실패 알림 {letter_id} 없음 / dead letter {letter_id} does not exist")
        self.journal.held.add(notification.id)
        resume(Pending(channel, endpoint, entity, 0, stored, entry))
        log.info("dead letter %s to %s queued again", letter_id, notifier)
        return {"id": letter_id, "notifier": notifier, "queued": True}

    async def dead_letters(self, tenant: str, alarm_id: str | None = None) -> list[Doc]:
        """The tenant's dead letters, newest first; with `alarm_id`, only that alarm's notifications'."""
        docs = [doc for t, _, doc in await self.store.list_docs(DEAD_LETTERS)
                if t == tenant and (alarm_id is None or letter_alarm(doc) == alarm_id)]
        return sorted(docs, key=lambda d: (d["failedAt"], d["id"]), reverse=True)

    async def dead_letter_of(self, tenant: str, letter_id: str) -> Doc | None:
        """One dead letter of the tenant, None if there is none by that id."""
        return await self.store.get_doc(DEAD_LETTERS, tenant, letter_id)

    # -- for tests and shutdown --------------------------------------------------------------------
    def busy(self) -> bool:
        return any(box.busy for box in self._outboxes.values()) or bool(self._tasks)

    def storing(self) -> bool:
        """Whether notifications wait for their outbox entries to be stored before they are queued."""
        return bool(self._tasks)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _targets(group: RecipientGroup) -> list[tuple[str, Recipient | None]]:
    """(notifier id, recipient) pairs: each member at each contact, then the group endpoints once."""
    pairs: list[tuple[str, Recipient | None]] = [
        (contact.notifier, Recipient(member.name, contact.address, member.language))
        for member in group.members for contact in member.contacts]
    name = group.name.get("ko") or group.name.get("en") or group.id
    pairs.extend((notifier_id, Recipient(name)) for notifier_id in group.notifiers)
    return pairs


def _secret(settings: AlarmSettings, development: bool) -> bytes | None:
    """The webhook key; in development an unset one is the placeholder (outside, webhooks refuse)."""
    if settings.webhook_secret is not None:
        return settings.webhook_secret.get_secret_value().encode()
    if development:
        log.warning("alarms.webhook_secret is not set: webhooks are signed with the development placeholder")
        return WEBHOOK_SECRET_PLACEHOLDER.encode()
    return None


def letter_alarm(letter: Doc) -> str | None:
    """The id of the alarm a dead letter's notification was about; None for another sender's (an agency package)."""
    if str(letter.get("notifier", "")).startswith("agency:"):
        return None
    notification = letter.get("notification")
    alarm = notification.get("alarm") if isinstance(notification, dict) else None
    found = alarm.get("id") if isinstance(alarm, dict) else None
    return found if isinstance(found, str) else None
