"""The alarm service: rule events in, one alarm per (tenant, entity, rule), persisted and announced.

Inputs (bus): `RuleMatched` raises, repeats or escalates; `RuleCleared` clears; the ingest's
`DeviceStatusChanged` raises (offline) and clears (online) a `fault` alarm of rule
`device-offline`; `DeviceStatusesRestored` (once per health restore, at start) reconciles those
alarms with the restored device states, which a crash may have left without their alarm's change
(`_on_restored`). Operators act through the API (api.py).

How a change flows, and why:

1. The decision is synchronous, on in-memory state (every alarm not closed is in memory,
   restored from the store on start). No await sits between reading the state and changing
   it, so two events for the same key can never both raise an alarm: that is what keeps "one
   active alarm per (tenant, entity, rule)".
2. Persisting runs in rounds (`_save_round`): the changes decided in one step of the event loop
   (an alarm storm: every alarm that one commit's rule events raise) are saved by one store call
   (`save_alarms`: the alarm rows and their new history entries, one commit), then announced in
   decision order: the SSE stream, queued notifications, propagation to the parent. A new alarm
   whose rule event did not describe its entity is enriched first (type, location, parent; the
   alarm's later changes wait behind it; a read that fails leaves them out, never the alarm). Rounds
   overlap: the next one is saved without waiting for this one's commit (the store commits calls in
   the order they came) and announces after it, so one alarm's changes reach the stream in decision
   order. Then the announced changes wait for the
   Alert projection (`_schedule_alerts`): once no round has begun for `_ALERT_QUIET_S` (at most
   `_ALERT_DELAY_S` after the oldest waiting change; at once for an operator's action, and on
   `drain`), one task writes what changed in their alarms' `Alert` entities (each alarm's once, its
   latest state; writes of up to `_ALERT_WRITE`, one after the other, pausing while changes come
   again: `_pace`; real time, `alert_clock`) and publishes `AlarmChanged`
   for each change after its alarm's Alert (one alarm's Alert writes and events stay in its order).
   Nobody hears of an alarm before its row is durable; the stream and the notifiers never wait for
   an Alert (which lags the stream by the quiet time, in a storm by up to the delay; its failure is
   only logged), not even an earlier change's. The bus publisher is never held up by a commit.
   Each change carries the alarm as that change left it (`_seal`: copied when the next decision on
   the alarm begins, else by its save round), and that is what the stream, the notifications and
   `AlarmChanged` tell, also when several changes of one alarm are saved by one round (raised and
   cleared in one step, or while the first waits for its entity); the rows go in decision order, so
   the last write wins with the latest state, and the Alert is written from the alarm as it is (its
   end state). A save call that fails is retried alarm by alarm, so one alarm that cannot be saved
   fails alone (logged, never announced).

Dedupe (domain-rules §9): a repeat of an active alarm only counts (count, last seen); a higher
level escalates it (history, SSE, the new level's escalation chain); a lower level does not lower
it unless `alarms.downgrade_while_active`. A match within `alarms.dedupe_window_s` after the
alarm cleared re-opens that alarm instead of raising a new one.

Propagation: the parent asset is `RuleMatched.parent_id`, else the first Relationship of the
entity named in `alarms.parent_relationships` (default refParent, then isPartOf). The parent
gets a derived alarm (rule `derived:<kind>`) whose level is the highest of its active children,
follows them up and down, and clears when the last one clears; it propagates further up to
`alarms.propagation_depth` levels (sensor -> facility -> district).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ucity.alarms import model as m
from ucity.alarms.alert import AlertPrivacy, write_alerts
from ucity.alarms.contacts import Contacts, EscalationChain, EscalationStep
from ucity.alarms.dispatch import Dispatcher, LetterTaken, NothingToResend, kst, letter_alarm
from ucity.alarms.escalation import Escalator
from ucity.alarms.journal import ALARM
from ucity.alarms.model import (
    ACTIVE_ACK,
    ACTIVE_UNACK,
    CLEARED_ACK,
    CLEARED_UNACK,
    CLOSED,
    DERIVED_PREFIX,
    FAULT,
    SAFETY,
    SYSTEM,
    Alarm,
)
from ucity.alarms.notifiers.base import Notification
from ucity.alarms.notifiers.sse import SseHub
from ucity.core.bus import Context, Event
from ucity.core.clock import Clock, SystemClock, TimerHandle, parse_iso, to_iso
from ucity.core.errors import NotFound, UcityError
from ucity.core.ids import uuid4_texts
from ucity.core.platform import Platform
from ucity.ingest import DeviceStatusChanged
from ucity.ingest.health import DeviceStatusesRestored, RestoredStatus
from ucity.ngsild.context import core_context
from ucity.rules.events import LEVELS, RuleCleared, RuleMatched, RuleStatesRestored, level_rank
from ucity.store.base import AlarmQuery, AlarmRow, Doc, Store

log = logging.getLogger(__name__)
DEVICE_OFFLINE_RULE = "device-offline"
LOCATION = "https://uri.etsi.org/ngsi-ld/location"
# At most this many Alerts per store write: a write's changes reach every bus subscriber (rules,
# subscriptions) in one step of the event loop, and a write of a whole storm's Alerts held it up for tens
# of milliseconds, which every request and stream waited for.
_ALERT_WRITE = 32
# The Alert projection waits (`_schedule_alerts`, `_pace`) until no alarm change has been decided for
# `_ALERT_QUIET_S`, but not longer than `_ALERT_DELAY_S` after the oldest change waiting, before it writes
# what gathered, and pauses between its writes when alarm changes come again. In an alarm storm the Alerts
# (the heaviest write of an alarm: an entity, its types and a history row per attribute; about three times
# an alarm row's CPU) then leave the storm's commits to the readings and the alarm rows, and an alarm that
# is raised and cleared within the delay writes its Alert once. The quiet time is longer than the gaps
# between a storm's rounds on a busy machine (one commit of readings each, up to about 100 ms measured);
# with 50 ms, Alert writes began inside a lagging storm.
_ALERT_QUIET_S = 0.2
_ALERT_DELAY_S = 2.0
# Events after which the parent's derived alarm may change.
_PROPAGATING = frozenset({"raised", "escalated", "deescalated", "reactivated", "cleared", "closed"})


@dataclass(frozen=True, slots=True)
class Signal:
    """A condition holding for an entity: a RuleMatched, a device going offline, or a child alarm."""

    tenant: str
    rule_id: str
    entity_id: str
    level: str | None
    kind: str
    context: Context
    category: str = ""
    entity_types: tuple[str, ...] = ()
    evidence: dict[str, Any] = field(default_factory=dict)
    location: dict[str, Any] | None = None
    parent_id: str | None = None
    description: dict[str, str] = field(default_factory=dict)
    depth: int = 0
    entity_name: str = ""  # the entity's name for people's messages, when the source knows it

    @classmethod
    def of(cls, event: RuleMatched) -> Signal:
        kind = FAULT if event.kind == FAULT else SAFETY
        # The entity's name: the rules engine's (read with the entity's type and place), else the evidence's
        # `entityName`; `AlarmService` drops it for a personal entity type.
        name = event.entity_name or event.evidence.get("entityName")
        return cls(event.tenant, event.rule_id, event.entity_id, event.level if kind == SAFETY else None, kind,
                   event.context, event.category, tuple(event.entity_types), dict(event.evidence), event.location,
                   event.parent_id, dict(event.description), entity_name=name if isinstance(name, str) else "")


@dataclass(frozen=True, slots=True)
class AlarmChanged(Event):
    """An alarm change was saved: what happened (`events`: raised, escalated, cleared, closed ...) and the
    alarm's API form after it. Published after the save, so a consumer (the operations centre turns
    alarms into events, PLAT-R9) reads a stored alarm."""

    tenant: str
    events: tuple[str, ...]
    alarm: dict[str, Any]


@dataclass(slots=True)
class _Change:
    """What one decision asks the persisting task to do besides saving."""

    entries: list[m.HistoryEntry] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    alert: bool = True
    enrich: bool = False
    notify: list[tuple[str, int, str]] = field(default_factory=list)  # (group, step, event)
    follow_up: str | None = None  # tell the groups already notified (acknowledged, cleared, closed)
    urgent: bool = False  # someone waits for it all (an operator's action): its Alert does not wait for quiet


@dataclass(slots=True)
class _Pending:
    """A decided change on its way: saved, announced, then its Alert and `AlarmChanged` (see `_save_round`)."""

    alarm: Alarm
    change: _Change
    done: asyncio.Future[None]  # resolved once all of that is done or has failed
    # The alarm's stored form as this change left it (`_seal`), announced; None until sealed, and again if its
    # save failed.
    doc: Doc | None = None
    wire: dict[str, Any] | None = None  # its API form, announced
    # The notifications the change sends, as (notifier id, notification), and their outbox entries, stored with
    # the alarm's row (ucity/alarms/journal.py) and queued when it is announced.
    outgoing: list[tuple[str, Notification]] = field(default_factory=list)
    entries: list[tuple[str, str, str, Doc]] = field(default_factory=list)

    @property
    def context(self) -> Context:
        return Context(parent_id=self.alarm.cause, actor="ucity-alarms")

    def finish(self) -> None:
        if not self.done.done():
            self.done.set_result(None)


class AlarmService:
    """Alarms of every tenant: lifecycle, persistence, Alert entities, escalation, notification."""

    def __init__(self, platform: Platform, store: Store) -> None:
        self.platform = platform
        self.clock = platform.clock
        self.store = store
        self.settings = platform.settings.alarms
        s = self.settings
        self.contacts = Contacts(store, s.notifiers, s.recipients, s.escalations)
        self.dispatcher = Dispatcher(self.clock, store, s, self.contacts, platform.settings.environment == "development")
        self.escalator = Escalator(self.clock, self.contacts, self._step)
        self.sse = SseHub(s.sse_buffer, s.sse_client_queue, s.sse_heartbeat_s, s.sse_max_stream_s)
        # Alarms about a person: no entity and a coarse place in their Alert, no name in their messages (QA10 F2).
        privacy = platform.settings.privacy
        self.privacy = AlertPrivacy(frozenset(privacy.personal_entity_types), privacy.location_cell_deg,
                                    platform.privacy)  # settings ∪ what domains declare (QA13 F1)
        self.dispatcher.on_settled = self._settled
        # Delivery records of alarms not judged here in memory (closed, or another process's), one at a time under
        # `_closed_lock`; outside `_tasks`, which an operator's action on such an alarm waits for under that lock.
        self._side: set[asyncio.Task[None]] = set()
        self._distributed = False
        self._open: dict[str, Alarm] = {}  # every alarm not closed, by id
        self._active: dict[m.Key, Alarm] = {}
        self._cleared: dict[m.Key, Alarm] = {}  # the latest cleared (not closed) alarm of a key
        self._tasks: set[asyncio.Task[None]] = set()
        # Changes waiting for the next save round (`_save_round`); the last round's announcement and follow-up,
        # which the next round's wait for; the changes of alarms whose first change is being enriched.
        self._save_queue: list[_Pending] = []
        self._round_due = False
        self._announced: asyncio.Future[None] | None = None
        # Announced changes waiting for their Alert write and `AlarmChanged` (`_schedule_alerts`), in order;
        # since when the oldest of them waits; when the last round began; the timer and the task that write them.
        self._alert_queue: list[_Pending] = []
        self._alert_since: datetime | None = None
        self._last_round: datetime | None = None
        self._alert_timer: TimerHandle | None = None
        self._alert_task: asyncio.Task[None] | None = None
        self._alert_urgent = False  # an operator waits: write without waiting for quiet
        self._alert_hurry = 0  # drains under way: write without waiting
        self._alert_wake: asyncio.Future[None] | None = None  # what a pausing writing task waits on (`_pace`)
        self.alert_quiet_s = _ALERT_QUIET_S
        self.alert_delay_s = _ALERT_DELAY_S
        # The wait is a batching window, like the store's group commit, not platform logic: real time, so
        # that a fake platform clock (tests, simulations) does not hold Alerts until it moves. Tests set it.
        self.alert_clock: Clock = SystemClock()
        self._enriching: dict[str, list[_Pending]] = {}
        # The latest change of each alarm whose state is not yet copied (`_seal`): the next decision on the alarm,
        # or the save round, copies it.
        self._unsealed: dict[str, _Pending] = {}
        self._ids: list[str] = []  # alarm ids to give (`_new_id`)
        self._drainers: list[Callable[[], Awaitable[None]]] = []
        self._unsubscribe: list[Callable[[], None]] = []
        self._closed_lock = asyncio.Lock()  # comments on closed alarms (not in memory) one at a time
        # While `_on_restored` reads closed alarms: the entities a `DeviceStatusChanged` came for meanwhile (that
        # event decided their alarm; the reconciliation leaves them alone).
        self._device_news: set[tuple[str, str]] | None = None
        # (tenant, entity id) -> whether a domain raises that device's offline fault itself, with its own chain
        # (facility safety's shm-sensor-offline): `device-offline` is then not raised, one alarm per offline device
        self.offline_owners: list[Callable[[str, str], bool]] = []
        # Distributed mode (ucity/cluster): the entities whose alarms this process escalates, by (tenant,
        # entity id); their signals come from this process's rules. Every process still reads all alarms.
        # A rule event without a parent means "none" only if the rules engine looks for every relationship
        # the alarms would (see _described).
        self._rules_find_parents = set(s.parent_relationships) <= set(platform.settings.rules.parent_relationships)

    # -- lifecycle ---------------------------------------------------------------------------------
    @property
    def owns(self) -> Callable[[str, str], bool]:
        """Whether this process judges an entity's alarms (escalates, sends their queued notifications after a
        restart): always alone; a worker by partition; an API process beside workers never."""
        return self.dispatcher.owns

    @owns.setter
    def owns(self, owns: Callable[[str, str], bool]) -> None:
        self.dispatcher.owns = owns
        self._distributed = True  # other processes change alarms too (scale-out): see `_settled`

    async def start(self) -> None:
        await self.contacts.start(self.clock, self.platform.settings.ops.token_refresh_s)  # re-read every period
        await self.dispatcher.start()
        await self.dispatcher.count_dead_letters(self.settings.dead_letters_recent_s)  # /health: the recent ones
        for _, doc in await self.store.open_alarms():
            self._index(Alarm.from_doc(doc))
        await self.dispatcher.resume(self.owns, {ALARM})  # what a stop or crash left queued (ops: its own)
        bus = self.platform.bus
        self._unsubscribe = [bus.subscribe(RuleMatched, self._on_matched), bus.subscribe(RuleCleared, self._on_cleared),
                             bus.subscribe(DeviceStatusChanged, self._on_device),
                             bus.subscribe(DeviceStatusesRestored, self._on_restored),
                             bus.subscribe(RuleStatesRestored, self._on_rules_restored)]
        self._arm_escalations()

    def _arm_escalations(self) -> None:
        for alarm in list(self._open.values()):  # escalation timers survive a restart
            if alarm.status == ACTIVE_UNACK and self.owns(alarm.tenant, alarm.entity_id):
                self.escalator.arm(alarm)

    async def reload(self) -> None:
        """After `owns` changed (a worker gained or lost partitions): read every open alarm again as the
        store has it (another process may have written it since) and arm the owned ones' escalations."""
        await self.drain()
        self.escalator.stop_all()
        self._open.clear()
        self._active.clear()
        self._cleared.clear()
        for _, doc in await self.store.open_alarms():
            self._index(Alarm.from_doc(doc))
        self._arm_escalations()
        await self.dispatcher.resume(self.owns)  # what the previous owner left queued

    async def stop(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []
        self.escalator.stop_all()
        await self.contacts.stop()
        await self.drain()  # writes the Alerts still waiting, too
        if self._alert_timer is not None:
            self._alert_timer.cancel()
            self._alert_timer = None
        await self.dispatcher.stop()
        await self.drain()  # the delivery records of what settled while the outboxes stopped

    def health(self) -> dict[str, Any]:
        """Ready while subscribed. `deadLetters.recent`: notifications given up on within
        `alarms.dead_letters_recent_s` (stored ones at start, and this process's since): `status` is then
        `degraded` and a warning says where to look, but the component stays ready (`ok`): a receiver that is down
        is no reason to take the process out of service (QA9 F6)."""
        window = self.settings.dead_letters_recent_s
        recent, last = self.dispatcher.recent_dead_letters(window)
        out: dict[str, Any] = {
            "ok": bool(self._unsubscribe), "status": "degraded" if recent else "ok", "open": len(self._open),
            "active": len(self._active), "escalationTimers": self.escalator.pending, "streamClients": self.sse.clients,
            "contacts": self.contacts.health(),
            "alertsWaiting": len(self._alert_queue),  # announced changes whose Alert waits for quiet
            # queued notifications held here (also stored), and failed writes of their stored entries
            "notificationsQueued": len(self.dispatcher.journal.held),
            "outboxStoreFailures": self.dispatcher.journal.failures,
            "deadLetters": {"recent": recent, "windowS": window, "last": last}}
        if recent:
            out["warning"] = (f"최근 {window:g}초 동안 전달 실패 알림 {recent}건: GET /api/v1/notifications/dead-letters / "
                              f"{recent} notification(s) given up on in the last {window:g} s: "
                              "GET /api/v1/notifications/dead-letters")
        return out

    def add_drainer(self, drain: Callable[[], Awaitable[None]]) -> None:
        """Work an `AlarmChanged` consumer does after its handler returned, which `drain` also awaits."""
        self._drainers.append(drain)

    async def drain(self) -> None:
        """Wait until every decided change is persisted and announced, its Alert written (at once, not after
        the quiet the projection waits for) and its consumers are done (tests, shutdown, a worker before it
        acknowledges)."""
        self._alert_hurry += 1
        self._wake_alerts()
        try:
            while True:
                await self._persisted()
                if self._side:  # delivery records of alarms read from the store (`_settled`)
                    await asyncio.gather(*list(self._side), return_exceptions=True)
                    continue
                if self._alert_queue:
                    self._write_alerts_now()
                    continue
                for drain in self._drainers:
                    await drain()
                if not self._tasks and not self._alert_queue and not self._side:
                    return
        finally:
            self._alert_hurry -= 1

    async def _persisted(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def settle(self, timeout: float = 10.0) -> None:
        """`drain`, then until every notifier endpoint is idle or waiting on the clock (tests)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        await self.contacts.settle()
        await self.drain()
        while self.dispatcher.busy() and loop.time() < deadline:
            await asyncio.sleep(0.002)
            await self.drain()

    # -- reading -----------------------------------------------------------------------------------
    def get_open(self, tenant: str, alarm_id: str) -> Alarm | None:
        alarm = self._open.get(alarm_id)
        return alarm if alarm is not None and alarm.tenant == tenant else None

    def active_alarm(self, tenant: str, entity_id: str, rule_id: str) -> Alarm | None:
        return self._active.get((tenant, entity_id, rule_id))

    async def load(self, tenant: str, alarm_id: str) -> Alarm:
        """An alarm, open and judged here (from memory), else from the store (closed, or judged by another
        process: an API process beside workers holds only the copy it read at start); 404 if unknown."""
        alarm = self.get_open(tenant, alarm_id)
        if alarm is not None and self.owns(alarm.tenant, alarm.entity_id):
            return alarm
        doc = await self.store.get_alarm(tenant, alarm_id)
        if doc is None:
            raise NotFound(f"경보 {alarm_id} 없음 / alarm {alarm_id} does not exist")
        return Alarm.from_doc(doc)

    # -- bus ---------------------------------------------------------------------------------------
    async def _on_matched(self, event: RuleMatched) -> None:
        if event.kind != FAULT and event.level not in LEVELS:
            log.warning("rule %s matched %s with unknown level %r; ignored", event.rule_id, event.entity_id, event.level)
            return
        self.raise_signal(Signal.of(event))

    async def _on_rules_restored(self, event: RuleStatesRestored) -> None:
        """Raise the alarm of a restored rule match that has none (a crash between the match's state and its
        alarm's save lost the alarm; QA4 F3). Not when the key has an open alarm, here or in the store (another
        process's), nor when an alarm of it was raised at or after the match's time (someone cleared or closed
        it: not contradicted by a restart). The store is asked only about matches without an active alarm here;
        a query that fails raises the alarm (a duplicate is better than a lost alarm). Idempotent."""
        raised: list[str] = []
        for match in event.matches:
            if not self.owns(match.tenant, match.entity_id):
                continue
            if self._active.get((match.tenant, match.entity_id, match.rule_id)) is not None:
                continue
            try:
                docs, _ = await self.store.query_alarms(match.tenant, AlarmQuery(
                    entity_ids=(match.entity_id,), rule_ids=(match.rule_id,), limit=50))
            except Exception as exc:
                log.warning("start: alarms of %s could not be read (%s); its restored match raises one", match.entity_id,
                            exc)
                docs = []
            if any(d.get("status") in (ACTIVE_UNACK, ACTIVE_ACK) or
                   (match.observed_at and str(d.get("raised_at") or "") >= match.observed_at) for d in docs):
                continue
            await self._on_matched(match)
            raised.append(f"{match.rule_id}@{match.entity_id}")
        if raised:  # one line, not one per alarm
            log.warning("start: %d rule match(es) without their alarm (lost by a crash): raised, e.g. %s", len(raised),
                        ", ".join(raised[:5]))

    async def _on_cleared(self, event: RuleCleared) -> None:
        evidence = dict(event.evidence)  # a rule changed or disabled by someone: they cleared it (rules engine)
        self.clear_by_rule(event.tenant, event.entity_id, event.rule_id, evidence,
                           actor=str(evidence.get("changedBy") or SYSTEM))

    async def _on_device(self, event: DeviceStatusChanged) -> None:
        if self._device_news is not None:
            self._device_news.add((event.tenant, event.entity_id))
        if event.status == "offline":
            self._device_offline(event.tenant, event.device_id, event.entity_id, event.last_reported, event.context)
        elif event.status == "online":
            self.clear_by_rule(event.tenant, event.entity_id, DEVICE_OFFLINE_RULE,
                               {"device_id": event.device_id, "last_reported": event.last_reported})

    def _device_offline(self, tenant: str, device_id: str, entity_id: str, last_reported: str | None,
                        context: Context, at: datetime | None = None) -> Alarm | None:
        if any(owns(tenant, entity_id) for owns in self.offline_owners):
            return None  # a domain raises this entity's offline fault itself, with its own chain: one alarm
        # People read the description (the dashboard, the messages): the last report in Korea time, as every other
        # time shown to them (`kst`); the evidence keeps it in UTC.
        shown = kst(last_reported) if last_reported else None
        return self.raise_signal(Signal(
            tenant, DEVICE_OFFLINE_RULE, entity_id, None, FAULT, context, "deviceFault",
            evidence={"device_id": device_id, "last_reported": last_reported, "subCategory": "deviceOffline"},
            description={"ko": f"장치 {device_id} 통신 두절 ({f'마지막 보고 {shown}' if shown else '보고 없음'})",
                         "en": f"Device {device_id} offline ({f'last reported {shown}' if shown else 'never reported'})"}),
            at=at)

    async def _on_restored(self, event: DeviceStatusesRestored) -> None:
        """Reconcile the device-offline alarms with the device states a start restored (see
        `DeviceStatusesRestored`): a crash between a `deviceState` commit and its alarm's save lost the alarm's
        change, and the restore takes the stored state as announced.

        * An `online` or `unknown` device with an active device-offline alarm: cleared, as a device coming back
          online clears it (its clear was lost).
        * An `offline` device without an active one: raised as its transition would have raised it, at the
          stored `deviceState`'s time. Unless that offline spell was announced already: an alarm of the key
          seen (raised, re-opened) at or after that time that someone cleared (in memory) or closed (in the
          store: one query per tenant and 500 such devices, never a read per device; a query that fails
          raises them, a duplicate being better than a lost alarm). An operator who closes the alarm of a
          device that stays offline is not contradicted by every restart.

        Idempotent: a second start finds the alarms the first one left. Cheap at 100,000 devices: dict look-ups
        in the in-memory open alarms; the store is asked only about offline devices without an open alarm."""
        candidates: list[RestoredStatus] = []
        cleared: list[str] = []
        active = self._active
        for device in event.devices:
            alarm = active.get((device.tenant, device.entity_id, DEVICE_OFFLINE_RULE))
            if device.status == "offline":
                if alarm is None and not self._seen_since(device):
                    candidates.append(device)
            elif alarm is not None:
                last = to_iso(device.last_reported) if device.last_reported is not None else None
                self.clear_by_rule(device.tenant, device.entity_id, DEVICE_OFFLINE_RULE,
                                   {"device_id": device.device_id, "last_reported": last, "reconciled": True})
                cleared.append(device.device_id)
        if cleared:  # one line, not one per device (a lost storm of changes is thousands)
            log.warning("start: %d device(s) online or unknown with an active device-offline alarm (its clear was "
                        "lost): cleared, e.g. %s", len(cleared), ", ".join(cleared[:5]))
        if not candidates:
            return
        self._device_news = news = set[tuple[str, str]]()
        try:
            closed = await self._closed_offline_alarms(candidates)
        finally:
            self._device_news = None
        now = self.clock.now()
        raised: list[str] = []
        for device in candidates:
            key = (device.tenant, device.entity_id)
            seen = closed.get(key)
            if key in news or (seen is not None and device.changed_at is not None and seen >= device.changed_at):
                continue
            if (device.tenant, device.entity_id, DEVICE_OFFLINE_RULE) in self._active:
                continue
            at = _parsed_time(device.changed_at)
            last = to_iso(device.last_reported) if device.last_reported is not None else None
            self._device_offline(device.tenant, device.device_id, device.entity_id, last, event.context,
                                 at=min(at, now) if at is not None else None)
            raised.append(device.device_id)
        if raised:
            log.warning("start: %d device(s) offline without a device-offline alarm (its raise was lost): raised, "
                        "e.g. %s", len(raised), ", ".join(raised[:5]))

    def _seen_since(self, device: RestoredStatus) -> bool:
        """Whether the device's latest cleared (not closed) device-offline alarm was seen at or after its stored
        offline state was set: that spell was announced, and someone cleared the alarm since."""
        cleared = self._cleared.get((device.tenant, device.entity_id, DEVICE_OFFLINE_RULE))
        return cleared is not None and device.changed_at is not None and cleared.last_seen >= device.changed_at

    async def _closed_offline_alarms(self, devices: list[RestoredStatus], chunk: int = 500) -> dict[tuple[str, str], str]:
        """(tenant, entity) -> the latest `last_seen` of its closed device-offline alarms, for these devices."""
        by_tenant: dict[str, list[str]] = {}
        for device in devices:
            by_tenant.setdefault(device.tenant, []).append(device.entity_id)
        seen: dict[tuple[str, str], str] = {}
        for tenant, entity_ids in by_tenant.items():
            for start in range(0, len(entity_ids), chunk):
                query = AlarmQuery(statuses=(CLOSED,), rule_ids=(DEVICE_OFFLINE_RULE,),
                                   entity_ids=tuple(entity_ids[start:start + chunk]), limit=chunk)
                try:
                    while True:
                        docs, _ = await self.store.query_alarms(tenant, query)
                        for doc in docs:
                            key = (tenant, doc["entity_id"])
                            if doc.get("last_seen") and doc["last_seen"] > seen.get(key, ""):
                                seen[key] = doc["last_seen"]
                        if len(docs) < query.limit:
                            break
                        query.offset += query.limit
                except Exception as exc:
                    log.warning("closed device-offline alarms of %s could not be read (%s): the offline devices "
                                "without an open alarm are alarmed", tenant, exc)
        return seen

    # -- decisions (synchronous) -------------------------------------------------------------------
    def raise_signal(self, signal: Signal, follow: bool = False, at: datetime | None = None) -> Alarm:
        """Raise, repeat, escalate or re-open the alarm of (tenant, entity, rule).

        `follow`: a re-opened alarm takes the signal's level even if lower (derived alarms). `at`: when the
        condition began, if earlier than now (a device-offline alarm a crash lost, raised at start).
        """
        now = to_iso(at or self.clock.now())
        key = (signal.tenant, signal.entity_id, signal.rule_id)
        alarm = self._active.get(key)
        if alarm is not None:
            self._seal(alarm)
            self._repeat(alarm, signal, now)
            return alarm
        alarm = self._cleared.get(key)
        if alarm is not None and alarm.kind == signal.kind and self._in_window(alarm, at):
            self._seal(alarm)
            self._reopen(alarm, signal, now, follow)
            return alarm
        return self._new(signal, now)

    def clear_by_rule(self, tenant: str, entity_id: str, rule_id: str, evidence: dict[str, Any],
                      actor: str = SYSTEM) -> Alarm | None:
        alarm = self._active.get((tenant, entity_id, rule_id))
        if alarm is None:
            return None
        self._seal(alarm)
        entry = m.clear(alarm, actor, to_iso(self.clock.now()), reason="rule", evidence=evidence)
        self.escalator.stop(alarm)
        self._index(alarm)
        self._commit(alarm, _Change([entry], ["cleared"], follow_up="cleared"))
        return alarm

    def _in_window(self, alarm: Alarm, at: datetime | None = None) -> bool:
        if alarm.cleared_at is None:
            return False
        age = ((at or self.clock.now()) - parse_iso(alarm.cleared_at)).total_seconds()
        return age <= self.settings.dedupe_window_s

    def _new_id(self) -> str:
        """A random alarm id (32 hex digits, as `uuid4().hex`), from a batch made by one read of the system's
        randomness: `uuid4()` per alarm is a system call that hands the GIL to the store's writer thread, and
        in an alarm storm the event loop waited for it back once per alarm."""
        if not self._ids:
            self._ids = [text.replace("-", "") for text in uuid4_texts(256)]
        return self._ids.pop()

    def _new(self, signal: Signal, now: str) -> Alarm:
        ctx = core_context()
        alarm = Alarm(
            id=self._new_id(), tenant=signal.tenant, entity_id=signal.entity_id, rule_id=signal.rule_id,
            kind=signal.kind, level=signal.level, status=ACTIVE_UNACK, raised_at=now, updated_at=now, last_seen=now,
            entity_type=ctx.compact_iri(signal.entity_types[0]) if signal.entity_types else "",
            category=signal.category, description=signal.description, location=signal.location,
            evidence=signal.evidence, parent_id=signal.parent_id, depth=signal.depth, cause=signal.context.id,
            enriched=self._described(signal),
        )
        if signal.entity_name and not self.privacy.personal(alarm):
            alarm.entity_name = signal.entity_name
        entry = alarm.entry(now, "raised", SYSTEM, level=alarm.level, kind=alarm.kind, evidence=signal.evidence)
        self._index(alarm)
        self._commit(alarm, _Change([entry], ["raised"], enrich=True))
        self.escalator.begin(alarm, "raised")
        return alarm

    def _repeat(self, alarm: Alarm, signal: Signal, now: str) -> None:
        if alarm.kind != signal.kind:
            log.warning("rule %s gave kind %s for alarm %s of kind %s; kinds never mix, ignored",
                        signal.rule_id, signal.kind, alarm.id, alarm.kind)
            return
        self._observe(alarm, signal, now)
        change = _Change(alert=False)
        up = self._level(alarm, signal, now, change)
        self._index(alarm)
        self._commit(alarm, change)
        if up:
            self.escalator.begin(alarm, "escalated")

    def _reopen(self, alarm: Alarm, signal: Signal, now: str, follow: bool) -> None:
        """A match within the dedupe window after the alarm cleared: active again. The groups told before got its
        clearing last, so they are told it is active again (QA9 F2; the history entry names them), whatever its
        escalation then does (resumes, or a higher level's chain begins)."""
        told: dict[str, Any] = {"notified": list(alarm.notified_groups)} if alarm.notified_groups else {}
        change = _Change([m.reactivate(alarm, now, evidence=signal.evidence, **told)], ["reactivated"],
                         follow_up="reactivated")
        self._observe(alarm, signal, now, follow)
        up = self._level(alarm, signal, now, change, follow)
        self._index(alarm)
        self._commit(alarm, change)
        if up:
            self.escalator.begin(alarm, "escalated")
        elif alarm.status == ACTIVE_UNACK:
            self.escalator.resume(alarm)

    def _observe(self, alarm: Alarm, signal: Signal, now: str, follow: bool = False) -> None:
        """A repeat: count it; the evidence and description become the signal's, unless the alarm keeps a
        higher level than the signal's (see `_level`): then they stay those of the level the alarm shows (the
        peak: its value and time), and the lower match is added as `evidence.latest` (QA5 F10)."""
        alarm.count += 1
        alarm.last_seen = now
        alarm.location = signal.location or alarm.location
        if self._keeps_level(alarm, signal, follow):
            alarm.evidence = {**alarm.evidence, "latest": _latest(signal)}  # a new dict: saved copies keep theirs
            return
        alarm.evidence = signal.evidence or alarm.evidence
        alarm.description = signal.description or alarm.description

    def _keeps_level(self, alarm: Alarm, signal: Signal, follow: bool) -> bool:
        """Whether a signal of a lower level leaves the alarm at its level (the default: no downgrade while
        active, and none on re-opening unless `follow`)."""
        return (signal.level is not None and alarm.level is not None
                and level_rank(signal.level) < level_rank(alarm.level)
                and not (follow or self.settings.downgrade_while_active))

    def _level(self, alarm: Alarm, signal: Signal, now: str, change: _Change, follow: bool = False) -> bool:
        """Apply a new level (safety only); True if it went up. `follow`: down too (derived alarms)."""
        if signal.level is None or alarm.level is None or signal.level == alarm.level:
            return False
        up = level_rank(signal.level) > level_rank(alarm.level)
        if not (up or follow or self.settings.downgrade_while_active):
            return False
        change.entries.append(m.change_level(alarm, signal.level, now, evidence=signal.evidence))
        change.events.append("escalated" if up else "deescalated")
        change.alert = True
        return up

    def _index(self, alarm: Alarm) -> None:
        """Keep the in-memory indexes in step with an alarm's status."""
        key = alarm.key
        if alarm.status == CLOSED:
            self._open.pop(alarm.id, None)
        else:
            self._open[alarm.id] = alarm
        if alarm.active:
            self._active[key] = alarm
        elif self._active.get(key) is alarm:
            del self._active[key]
        if alarm.status in (CLEARED_UNACK, CLEARED_ACK):
            latest = self._cleared.get(key)
            if latest is None or (latest.cleared_at or "") <= (alarm.cleared_at or ""):
                self._cleared[key] = alarm
        elif self._cleared.get(key) is alarm:
            del self._cleared[key]

    # -- escalation steps --------------------------------------------------------------------------
    def _step(self, alarm: Alarm, chain: EscalationChain, index: int, step: EscalationStep) -> None:
        self._seal(alarm)  # the escalator moves its next step on after this call: this change's state
        now = to_iso(self.clock.now())
        entry = alarm.entry(now, "notified", SYSTEM, chain=chain.id, step=index, group=step.group,
                            delay_s=step.delay_s)
        if step.group not in alarm.notified_groups:  # a new list: the changes copied before keep theirs
            alarm.notified_groups = [*alarm.notified_groups, step.group]
        reason = (alarm.escalation or {}).get("reason", "raised") if index == 0 else "step"
        self._commit(alarm, _Change([entry], alert=False, notify=[(step.group, index, reason)]))

    # -- delivery records ---------------------------------------------------------------------------
    def _settled(self, notification: Notification, endpoint: str, action: str, detail: dict[str, Any]) -> None:
        """A notification of an alarm settled (the dispatcher's `on_settled`): `delivered`, `not-sent` (a recording
        notifier, which sends nothing) or `delivery-failed` (a dead letter, named): a history entry of its alarm,
        per notification, with the event, group and notifier and never the recipient's name or address (QA9 F6:
        `notified` says a step queued them, this says what became of them)."""
        alarm_id = notification.alarm.get("id") if isinstance(notification.alarm, dict) else None
        if not isinstance(alarm_id, str):
            return
        info = {"event": notification.event, "group": notification.group, "notifier": endpoint,
                "notification": notification.id, **detail}
        alarm = self.get_open(notification.tenant, alarm_id)
        # In scale-out an API process may have changed the alarm since this worker's copy (an operator's action,
        # whose follow-ups this worker sends before it hears of the change): read it again first (`_settled_stored`),
        # or this copy's row would be saved over the operator's.
        if alarm is not None and self.owns(alarm.tenant, alarm.entity_id) and not self._distributed:
            self._seal(alarm)
            self._commit(alarm, _Change([alarm.entry(to_iso(self.clock.now()), action, SYSTEM, **info)], alert=False))
            return
        task = asyncio.get_running_loop().create_task(self._settled_stored(notification.tenant, alarm_id, action, info))
        self._side.add(task)
        task.add_done_callback(self._side.discard)

    async def _settled_stored(self, tenant: str, alarm_id: str, action: str, info: dict[str, Any]) -> None:
        """The delivery record of an alarm read from the store (closed: a `closed` follow-up; or judged by another
        process), as an operator's comment on a closed alarm is written: one at a time. In scale-out a worker first
        reads again the alarm it judges (`adopt`), then records on that copy."""
        try:
            async with self._closed_lock:
                if self._distributed:
                    await self.adopt(tenant, alarm_id)
                alarm = await self.load(tenant, alarm_id)
                self._seal(alarm)
                await self._commit(alarm, _Change([alarm.entry(to_iso(self.clock.now()), action, SYSTEM, **info)],
                                                  alert=False))
        except NotFound:
            log.info("alarm %s is gone (purged?): its notification %s is not recorded", alarm_id, info["notification"])
        except Exception:
            log.exception("alarm %s: the delivery of notification %s could not be recorded", alarm_id,
                          info["notification"])

    # -- operator actions --------------------------------------------------------------------------
    async def act(self, tenant: str, alarm_id: str, action: str, actor: str, **args: Any) -> Alarm:
        """acknowledge | clear | close(outcome, note) | assign(assignee) | comment(text), by `actor`."""
        alarm = self.get_open(tenant, alarm_id)
        # Closed (or unknown): only a comment is possible. Or judged by another process (a worker, in scale-out):
        # the stored alarm, not this process's older copy; the worker reads it again once this is saved
        # (`adopt`, told through the event stream). One writer at a time here.
        if alarm is None or not self.owns(alarm.tenant, alarm.entity_id):
            async with self._closed_lock:
                await self._persisted()  # a close just decided is saved before the alarm is read back
                alarm = await self.load(tenant, alarm_id)
                await self._apply(alarm, action, actor, args)
            return alarm
        await self._apply(alarm, action, actor, args)
        return alarm

    async def resend(self, tenant: str, alarm_id: str, letter_id: str, actor: str) -> Doc:
        """An operator sends a failed notification of an alarm again (QA9 F12): its dead letter is queued again as an
        administrator's replay queues it (`Dispatcher.replay`: the same notification and id, attempts from zero,
        stored before the letter is deleted), and the alarm's history gets a `resent` entry (who; the notification,
        its notifier, event and group, the attempts it failed after; never the recipient or an address).

        The letter is claimed by deleting it, so of two resends (or a resend and a replay) one sends it. 404: an
        unknown alarm, or a letter that is not one of this alarm's (another tenant's, another alarm's, or none ever);
        409 (`NothingToResend`): the alarm's letter is gone (`no-dead-letter`: sent again already, or purged), or its
        notifier no longer exists or is disabled (`notifier-unavailable`: it would only fail again)."""
        alarm = await self.load(tenant, alarm_id)
        letter = await self.dispatcher.dead_letter_of(tenant, letter_id)
        if letter is None or letter_alarm(letter) != alarm.id:
            if letter is None and await self._failed_with(tenant, alarm.id, letter_id):
                raise _gone(alarm.id, letter_id)
            raise NotFound(f"경보 {alarm.id}의 실패 알림 {letter_id} 없음 / alarm {alarm.id} has no dead letter "
                           f"{letter_id}")
        notifier = str(letter.get("notifier", ""))
        config = self.contacts.notifiers.get(tenant, notifier)
        if config is None or not config.enabled:
            raise NothingToResend(
                f"알림 채널 {notifier}이(가) 없거나 꺼져 있어 다시 보내도 실패합니다. 설정 관리자에게 문의하십시오 / notifier "
                f"{notifier} does not exist or is disabled: a resend would fail again; ask a configuration administrator",
                reason="notifier-unavailable", notifier=notifier, deadLetter=letter_id)
        try:
            await self.dispatcher.replay(tenant, letter_id)
        except LetterTaken:  # another resend, an administrator's replay or retention took it meanwhile
            raise _gone(alarm.id, letter_id) from None
        found = letter.get("notification")
        notification: Doc = found if isinstance(found, dict) else {}
        detail = {"notification": letter_id, "notifier": notifier, "event": notification.get("event"),
                  "group": notification.get("group"), "attempts": letter.get("attempts")}
        try:
            await self.act(tenant, alarm.id, "resent", actor, **detail)
        except Exception:  # queued all the same: the history lags, the delivery's own record follows
            log.exception("alarm %s: the resend of notification %s is queued but could not be recorded", alarm.id,
                          letter_id)
        return {"id": letter_id, "alarm": alarm.id, "queued": True, **detail}

    async def _failed_with(self, tenant: str, alarm_id: str, letter_id: str) -> bool:
        """Whether the alarm's history says one of its notifications became dead letter `letter_id`."""
        return any(entry.get("action") == "delivery-failed" and entry.get("deadLetter") == letter_id
                   for entry in await self.store.alarm_history(tenant, alarm_id))

    async def adopt(self, tenant: str, alarm_id: str) -> None:
        """Another process changed an alarm this one judges (an operator's action through an API process, in
        scale-out): the stored alarm replaces the copy in memory, and its escalation follows its status (an
        acknowledged one stops; an active unacknowledged one goes on from its stored chain state)."""
        await self._persisted()  # this process's own changes decided before are saved first
        doc = await self.store.get_alarm(tenant, alarm_id)
        if doc is None:
            return
        fresh = Alarm.from_doc(doc)
        old = self._open.get(alarm_id)
        if old is not None:
            self._seal(old)  # a change of the old copy waiting for its round keeps its state
            self.escalator.stop(old)
            for index in (self._active, self._cleared):
                if index.get(old.key) is old:
                    del index[old.key]
        self._index(fresh)
        if not self.owns(fresh.tenant, fresh.entity_id):
            return
        if fresh.status == ACTIVE_UNACK:
            self.escalator.arm(fresh)
        if old is None or (old.active, old.level) != (fresh.active, fresh.level):
            self._propagate(fresh)  # the parent's derived alarm follows (cleared or closed by the operator)

    async def _apply(self, alarm: Alarm, action: str, actor: str, args: dict[str, Any]) -> None:
        self._seal(alarm)
        now = to_iso(self.clock.now())
        change = _Change(urgent=True)
        if action == "acknowledge":
            change.entries, change.events, change.follow_up = [m.acknowledge(alarm, actor, now)], ["acknowledged"], \
                "acknowledged"
        elif action == "clear":
            change.entries, change.events, change.follow_up = [m.clear(alarm, actor, now, reason="operator")], \
                ["cleared"], "cleared"
        elif action == "close":
            change.entries = [m.close(alarm, actor, now, args["outcome"], args.get("note", ""))]
            change.events, change.follow_up = ["closed"], "closed"
        elif action == "assign":
            change.entries, change.events, change.alert = [m.assign(alarm, actor, now, args["assignee"])], ["updated"], False
        elif action == "comment":
            change.entries, change.events, change.alert = [m.comment(alarm, actor, now, args["text"])], ["updated"], False
        elif action == "resent":  # `resend`: a failed notification queued again, with what it was (never its address)
            change.entries, change.events, change.alert = [alarm.entry(now, "resent", actor, **args)], ["updated"], False
        else:
            raise ValueError(f"unknown action {action}")
        if alarm.status != ACTIVE_UNACK:
            self.escalator.stop(alarm)
        if alarm.id in self._open or alarm.status != CLOSED:
            self._index(alarm)
        await self._commit(alarm, change)

    # -- persisting and announcing -----------------------------------------------------------------
    def _commit(self, alarm: Alarm, change: _Change) -> asyncio.Future[None]:
        """Have the change saved, announced and followed up (see `_save_round`); the future resolves once
        all of that is done (an operator's action answers then).

        The change is the alarm's latest until the next decision on the alarm begins (`_seal`) or the save
        round takes it, whichever comes first: the bookkeeping its decision does after this call (the escalation
        chain it begins, a derived alarm's children) is part of the state it leaves."""
        item = _Pending(alarm, change, asyncio.get_running_loop().create_future())
        unsealed = self._unsealed
        if unsealed.setdefault(alarm.id, item) is not item:  # a decision that did not `_seal` first: the
            self._seal(alarm)  # change before this one shows what this one changed already
            unsealed[alarm.id] = item
        waiting = self._enriching.get(alarm.id)
        if waiting is not None:  # behind its alarm's first change, which is being enriched
            waiting.append(item)
        elif change.enrich and not alarm.enriched:
            self._enriching[alarm.id] = []
            self._spawn(self._enrich_first(item))
        else:
            self._queue(item)
        return item.done

    def _seal(self, alarm: Alarm) -> Doc | None:
        """A decision is about to change `alarm`: its latest change waiting to be saved keeps the alarm's state
        as that change left it (returned), which is what its announcement tells (stream, notifications,
        `AlarmChanged`), however many changes are decided before their round saves them.

        Why copy at the next decision and not at `_commit`: the decision goes on after `_commit` (see there),
        and most changes never see a next decision before their round, which then copies the state once, as
        the save always did (`_save`). Every decision on an alarm that is already committed calls this
        before it changes the alarm: `raise_signal` (repeat, re-open), `clear_by_rule`, `_apply`, `_step`,
        `_refresh_derived`; the entity read of `_enrich_first` fills in what it found afterwards.

        The copy is `to_doc`, shallow: what it shares with the alarm must never change in place. Every field
        is replaced whole when it changes (`_step` makes a new list of notified groups; the escalator gives
        the alarm a new escalation dict for each change of it, escalation.py). Copying those with each change
        instead cost about 1,200 more CPU instructions per change (`_save`), measured."""
        item = self._unsealed.pop(alarm.id, None)
        if item is None:
            return None
        item.doc = item.alarm.to_doc()
        return item.doc

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _queue(self, item: _Pending) -> None:
        self._save_queue.append(item)
        if not self._round_due:
            self._round_due = True
            self._last_round = self.alert_clock.now()  # the Alert projection waits for quiet (`_schedule_alerts`)
            previous, self._announced = self._announced, asyncio.get_running_loop().create_future()
            self._spawn(self._save_round(previous, self._announced))

    async def _enrich_first(self, item: _Pending) -> None:
        """Read the entity of a new alarm that the rule event did not describe, then queue its save and the
        changes of the alarm decided meanwhile, in order.

        A read that fails (the store busy or restarting) does not hold the alarm back: it is saved and
        announced without what the entity would have added (type, location, parent: the event's, if any;
        `enriched` stays false), as the rest of its changes. Dropping the change lost the raise for good:
        the alarm stayed active in memory, never stored nor told, and its later changes were saved without it.
        Not retried: the alarm is what matters, and a retry would hold it and its later changes back."""
        alarm = item.alarm
        found: Doc | None = None
        try:
            found = await self._enrich(alarm)
        except Exception as exc:
            log.warning("alarm %s: its entity %s could not be read (%s); saved without its type, location and "
                        "parent", alarm.id, alarm.entity_id, exc, exc_info=not isinstance(exc, UcityError))
        self._queue(item)
        later = self._enriching.pop(alarm.id, [])
        if found is not None:  # the changes copied meanwhile (`_seal`) show what was read, as the alarm does now
            for waited in (item, *later):
                if waited.doc is not None:
                    _fill(waited.doc, found)
        for waited in later:
            self._queue(waited)

    async def _save_round(self, previous: asyncio.Future[None] | None, announced: asyncio.Future[None]) -> None:
        """Save the changes queued in one turn of the event loop in one store call, then announce them.

        A round starts once the decisions of the step that queued its first change are made, so an alarm
        storm's alarms (decided by one commit's rule events) are saved by one call and one commit, and are
        announced by one callback: a task, a store call and a wake-up per alarm put hundreds of callbacks
        ahead of every event in the loop's queue, the stream's among them. Rounds overlap (the next one
        does not wait for this one's commit); the store commits calls in the order they came, and each
        round announces after the one before it, so one alarm's changes reach the stream in decision
        order. Then the changes wait for their Alerts and `AlarmChanged` (`_schedule_alerts`), which no
        round's announcement ever waits for."""
        self._round_due = False
        items, self._save_queue = self._save_queue, []
        follow: list[_Pending] = []
        try:
            await self._save(items)
            if previous is not None and not previous.done():
                await previous
            for item in items:  # durable: the stream and the notifiers hear of it now, in decision order
                if item.doc is None:
                    continue
                try:
                    item.wire = item.alarm.to_wire(item.doc)
                    self._announce(item)
                except Exception:  # a notifier's or the parent's bug must not silence the round's other alarms
                    log.exception("alarm %s: announcing %s failed", item.alarm.id, item.change.events)
                if item.wire is not None:
                    follow.append(item)
        finally:  # also when cancelled (shutdown): nobody may wait forever
            if not announced.done():
                announced.set_result(None)
            for item in items:
                if item.wire is None:
                    item.finish()
        self._follow(follow)

    async def _save(self, items: list[_Pending]) -> None:
        """Save each item's alarm row (the alarm as its change left it, `_seal`) and new history, in one store
        call; an item whose save failed is left without `doc`. An alarm's latest change is copied now (its
        state now), and its row comes after those of its earlier changes: the last write wins with the latest
        state. A failed call is retried alarm by alarm (in order: the store commits calls in the order they
        came), so that one bad alarm fails alone, as it did when each alarm had a call of its own."""
        saves: list[tuple[AlarmRow, list[Doc]]] = []
        made: list[_Pending] = []
        unsealed = self._unsealed
        for item in items:
            alarm, doc = item.alarm, item.doc
            try:
                if doc is None:  # the alarm's latest change: copied now (`_seal`)
                    unsealed.pop(alarm.id, None)
                    doc = item.doc = alarm.to_doc()
                save = (alarm.to_row(doc), [e.to_doc() for e in item.change.entries])
            except Exception:
                log.exception("alarm %s could not be saved", alarm.id)
                item.doc = None
                continue
            try:
                self._prepare(item, doc)
            except Exception:  # a notifier's or a group's bug must not keep the alarm from being saved
                log.exception("alarm %s: its notifications could not be prepared", alarm.id)
                item.outgoing, item.entries = [], []
            saves.append(save)
            made.append(item)
        if not saves:
            return
        docs = [entry for item in made for entry in item.entries]
        try:
            await self.store.save_alarms(saves, docs)
            return
        except Exception as exc:
            if len(saves) == 1:
                log.error("alarm %s could not be saved: %s", made[0].alarm.id, exc)
                made[0].doc = None
                return
        # Each alarm's row as it is now: a later round may have saved a newer one meanwhile, which these saves,
        # committed after it, must not take back. What is announced stays each change's own state (`doc`).
        for n, item in enumerate(made):
            saves[n] = (item.alarm.to_row(), saves[n][1])
        results = await asyncio.gather(*(self.store.save_alarms([save], item.entries) if item.entries
                                         else self.store.save_alarm(*save) for item, save in zip(made, saves, strict=True)),
                                       return_exceptions=True)
        for item, result in zip(made, results, strict=True):
            if isinstance(result, BaseException):
                log.error("alarm %s could not be saved: %s", item.alarm.id, result)
                item.doc = None

    def _follow(self, items: list[_Pending]) -> None:
        """Queue announced changes for their Alert write and `AlarmChanged` (`_schedule_alerts`); a change
        with neither (a repeat of an active alarm) is done now."""
        urgent = False
        for item in items:
            if item.change.alert or item.change.events:
                self._alert_queue.append(item)
                urgent = urgent or item.change.urgent
            else:
                item.finish()
        if not self._alert_queue:
            return
        if self._alert_since is None:
            self._alert_since = self.alert_clock.now()
        if urgent:
            self._alert_urgent = True
            self._wake_alerts()
        self._schedule_alerts()

    def _schedule_alerts(self) -> None:
        """Write the queued Alerts once no round has begun for `alert_quiet_s`, or `alert_delay_s` after the
        oldest was queued, whichever comes first (`alert_clock`, real time); at once if an operator waits. One
        writing task at a time: what queues meanwhile waits for the next one, so one alarm's Alert writes and
        events keep its order.

        Why wait: an Alert write costs about three times its alarm row (the entity, its types, a history row
        per attribute, its `EntitiesChanged` through rules and subscriptions), and in an alarm storm each one
        written at once sat in the commits that the next rounds' alarm rows and the readings waited for. The
        Alert is a projection nobody waits for before the stream (see `_follow_up`): written after the storm,
        it takes nothing from it, and an alarm raised and cleared meanwhile writes it once (its end state).
        """
        if self._alert_task is not None or not self._alert_queue:
            return  # the running task looks again when it ends
        now = self.alert_clock.now()
        since = self._alert_since or now
        due = since + timedelta(seconds=self.alert_delay_s)
        if self._last_round is not None:
            due = min(due, self._last_round + timedelta(seconds=self.alert_quiet_s))
        if self._alert_urgent or self._alert_hurry or due <= now:
            self._write_alerts_now()
        elif self._alert_timer is None:  # a timer that fires early looks again (`_alert_due`)
            self._alert_timer = self.alert_clock.call_at(due, self._alert_due)

    def _alert_due(self) -> None:
        self._alert_timer = None
        self._schedule_alerts()

    def _wake_alerts(self) -> None:
        """A writing task that pauses (`_pace`) goes on at once."""
        if self._alert_wake is not None and not self._alert_wake.done():
            self._alert_wake.set_result(None)

    async def _pace(self, since: datetime) -> None:
        """Between two Alert writes: wait while alarm changes come again (a storm resumed), until quiet, but
        not past `since` (the oldest change of the task's) + `alert_delay_s`, nor while someone waits."""
        while not (self._alert_urgent or self._alert_hurry):
            due = since + timedelta(seconds=self.alert_delay_s)
            if self._last_round is not None:
                due = min(due, self._last_round + timedelta(seconds=self.alert_quiet_s))
            if due <= self.alert_clock.now():
                return
            waiter = self._alert_wake = asyncio.get_running_loop().create_future()
            timer = self.alert_clock.call_at(due, self._wake_alerts)
            try:
                await waiter
            finally:
                timer.cancel()
                self._alert_wake = None

    def _write_alerts_now(self) -> None:
        if self._alert_timer is not None:
            self._alert_timer.cancel()
            self._alert_timer = None
        if self._alert_task is None and self._alert_queue:
            since = self._alert_since or self.alert_clock.now()
            items, self._alert_queue, self._alert_since, self._alert_urgent = self._alert_queue, [], None, False
            self._alert_task = self._spawn(self._follow_up(items, since))

    async def _follow_up(self, items: list[_Pending], since: datetime) -> None:
        """Write what changed in the `Alert` entities of the queued changes' alarms, then publish `AlarmChanged`
        for each change, in its alarm's order.

        An alarm's Alert is written once (its latest state) however many of its changes queued. The Alerts go
        in store writes of up to `_ALERT_WRITE`, one write after the other: per alarm that spares a store
        round trip's future and queue item and its own `EntitiesChanged`, and a round saved meanwhile queues
        its alarm rows behind one write, not behind all of them; between two writes the task pauses while
        alarm changes come again (`_pace`). After each write, the `AlarmChanged` of its
        alarms' changes follow, in decision order. An Alert that fails is logged, not retried (the alarm's
        next change writes the whole entity); nobody waits for it but `AlarmChanged`, which consumers (the
        operations centre) get once the Alert is written or has failed. The alarms an operator waits for go
        first."""
        try:
            by_alarm: dict[str, list[_Pending]] = {}
            for item in items:
                by_alarm.setdefault(item.alarm.id, []).append(item)
            publish = self.platform.bus.publish
            writes: dict[str, list[list[_Pending]]] = {}  # tenant -> the changes of each alarm with an Alert
            for changes in sorted(by_alarm.values(), key=lambda c: not any(i.change.urgent for i in c)):
                if any(item.change.alert for item in changes):
                    writes.setdefault(changes[0].alarm.tenant, []).append(changes)
                else:  # no Alert to wait for: its earlier changes' Alerts were written by an earlier task
                    for item in changes:
                        await self._changed(publish, item)
            first = True
            for tenant, alarms in writes.items():
                for i in range(0, len(alarms), _ALERT_WRITE):
                    chunk = alarms[i:i + _ALERT_WRITE]
                    if not first:
                        await self._pace(since)
                    first = False
                    await self._write_alerts(tenant, [changes[-1] for changes in chunk])
                    for changes in chunk:
                        for item in changes:
                            await self._changed(publish, item)
        finally:  # also when cancelled (shutdown): nobody may wait forever
            for item in items:
                item.finish()
            self._alert_task = None
        self._schedule_alerts()  # what queued meanwhile

    async def _changed(self, publish: Callable[[Event], Awaitable[None]], item: _Pending) -> None:
        if item.change.events and item.wire is not None:  # each queued change was announced: it has its wire form
            await publish(AlarmChanged(item.context, item.alarm.tenant, tuple(item.change.events), item.wire))
        item.finish()

    async def _write_alerts(self, tenant: str, items: list[_Pending]) -> None:
        # One write has one Context: a lone Alert keeps its change's (the trace to the rule and reading that
        # caused it); a write of many is the alarms service's own.
        context = items[0].context if len(items) == 1 else Context(actor="ucity-alarms")
        try:
            results = await write_alerts(self.store, tenant, [item.alarm for item in items], context, self.privacy)
        except Exception as exc:
            results = [exc] * len(items)
        for item, result in zip(items, results, strict=True):
            if isinstance(result, Exception):
                log.error("Alert entity of alarm %s not written: %s", item.alarm.id, result)

    def _prepare(self, item: _Pending, doc: Doc) -> None:
        """The notifications of a change about to be saved, with the alarm as the change leaves it (`doc`), and
        their outbox entries, which its save stores."""
        change = item.change
        item.outgoing, item.entries = [], []
        if change.notify or (change.follow_up and doc["notified_groups"]):  # most changes tell no group
            state = Alarm.from_doc(doc)
            for group, step, event in change.notify:
                item.outgoing += self.dispatcher.prepare(state, group, event, step)
            if change.follow_up:
                for group in state.notified_groups:  # the groups told before this change
                    item.outgoing += self.dispatcher.prepare(state, group, change.follow_up)
            item.entries = self.dispatcher.entries(state, item.outgoing)

    def _announce(self, item: _Pending) -> None:
        """Tell the stream and the notifiers of a saved change, with the alarm as the change left it (`doc`,
        `wire`), then update the parent's derived alarm from the alarms as they are now."""
        alarm, change, wire = item.alarm, item.change, item.wire
        assert wire is not None  # set by `_save_round` before it announces
        for event in change.events:
            self.sse.publish(alarm.tenant, event, wire)
        if item.outgoing:
            self.dispatcher.enqueue(item.outgoing, item.entries)
        # A process that does not judge the alarm (an API process acting for an operator, in scale-out) leaves the
        # parent's derived alarm to the worker that does (`adopt`).
        if (_PROPAGATING.intersection(change.events) or change.enrich) and self.owns(alarm.tenant, alarm.entity_id):
            self._propagate(alarm)

    def _described(self, signal: Signal) -> bool:
        """Whether the signal already describes its entity, so that `_enrich` need not read it.

        A rule event with entity types was described by the rules engine from the entity as written:
        its types, its location (None: it has none) and its parent by `rules.parent_relationships` (or
        the rule's `parentRelationship`). Reading the entity again cost a store read per new alarm, and
        in an alarm storm those reads queued up ahead of the alarm's save. Without a parent the read is
        still needed when `alarms.parent_relationships` names a relationship the rules engine does not
        look at. Other signals (device offline, derived alarms, events without types) are read.
        """
        if not signal.entity_types:
            return False
        return signal.parent_id is not None or self._rules_find_parents

    async def _enrich(self, alarm: Alarm) -> Doc:
        """Type, location and parent asset of a new alarm, from its entity (when the event lacks them); returns
        what the entity gave, which `_fill` puts in the alarm's changes copied while it was read."""
        doc = await self.store.get_entity(alarm.tenant, alarm.entity_id)
        found: Doc = {}
        if doc is not None:
            if doc.get("type"):
                found["entity_type"] = core_context().compact_iri(doc["type"][0])
            found["location"] = _default_value(doc, LOCATION)
            found["parent_id"] = self._parent_of(doc)
            name = _default_value(doc, core_context().expand_term("name"), "languageMap")
            if isinstance(name, dict):  # a LanguageProperty: Korean, else English, else any
                name = name.get("ko") or name.get("en") or next(iter(name.values()), None)
            personal = (alarm.entity_type or found.get("entity_type")) in self.privacy.personal_types
            if personal:  # a person's name stays out of the alarm, also one its signal gave before its type was known
                found["personal"] = True
                alarm.entity_name = ""
            elif isinstance(name, str) and name:
                found["entity_name"] = name[:200]
        alarm.enriched = True
        if not alarm.entity_type and found.get("entity_type"):
            alarm.entity_type = found["entity_type"]
        if alarm.location is None:
            alarm.location = found.get("location")
        if alarm.parent_id is None:
            alarm.parent_id = found.get("parent_id")
        if not alarm.entity_name and found.get("entity_name"):
            alarm.entity_name = found["entity_name"]
        return found

    def _parent_of(self, doc: Doc) -> str | None:
        ctx = core_context()
        for name in self.settings.parent_relationships:
            for instance in doc.get("attrs", {}).get(ctx.expand_term(name), []):
                target = instance.get("object") if instance.get("type") == "Relationship" else None
                if isinstance(target, list):
                    target = target[0] if target else None
                if isinstance(target, str):
                    return target
        return None

    # -- propagation to the parent asset -----------------------------------------------------------
    def _propagate(self, child: Alarm) -> None:
        if child.parent_id is None or child.parent_id == child.entity_id or child.depth >= self.settings.propagation_depth:
            return
        self._refresh_derived(child.tenant, child.parent_id, child.kind, child.depth + 1, child)

    def _refresh_derived(self, tenant: str, parent_id: str, kind: str, depth: int, child: Alarm) -> None:
        children = sorted((a for a in self._active.values()
                           if a.tenant == tenant and a.parent_id == parent_id and a.kind == kind),
                          key=lambda a: a.raised_at)
        derived = self._active.get((tenant, parent_id, DERIVED_PREFIX + kind))
        if not children:
            if derived is not None:
                self.clear_by_rule(tenant, parent_id, derived.rule_id, {"children": []})
            return
        level = max((a.level for a in children if a.level), key=level_rank, default=None) if kind == SAFETY else None
        ids = [a.id for a in children]
        signal = Signal(tenant, DERIVED_PREFIX + kind, parent_id, level, kind, Context(parent_id=child.cause),
                        child.category, evidence={"children": ids}, depth=depth,
                        description={"ko": f"하위 자산 경보 {len(ids)}건", "en": f"{len(ids)} alarm(s) on parts of this asset"})
        if derived is None:
            alarm = self.raise_signal(signal, follow=True)
            alarm.children = ids  # before its persisting task runs: it saves this too
            return
        if derived.children == ids and derived.level == level:
            return  # nothing the summary shows has changed
        self._seal(derived)
        now = to_iso(self.clock.now())
        change = _Change(alert=False)
        derived.last_seen, derived.evidence, derived.description = now, signal.evidence, signal.description
        derived.children = ids
        up = self._level(derived, signal, now, change, follow=True)
        self._commit(derived, change)
        if up:
            self.escalator.begin(derived, "escalated")


def _gone(alarm_id: str, letter_id: str) -> NothingToResend:
    return NothingToResend(
        f"경보 {alarm_id}의 실패 알림 {letter_id}은(는) 이미 다시 보냈거나(재전송, 관리자 재전송) 보존 기간이 지나 지워졌습니다: "
        f"다시 보낼 것이 없습니다 / dead letter {letter_id} of alarm {alarm_id} was sent again already (a resend, an "
        f"administrator's replay) or purged: nothing to resend", reason="no-dead-letter", deadLetter=letter_id)


def _latest(signal: Signal) -> dict[str, Any]:
    """The newest match of an alarm that keeps a higher level: its level, description and evidence (without
    what the peak's evidence already has: the rule's name and edges)."""
    evidence = {k: v for k, v in (signal.evidence or {}).items() if k not in ("ruleName", "edges", "latest")}
    described = {"description": dict(signal.description)} if signal.description else {}
    return {"level": signal.level, **described, **evidence}


def _fill(doc: Doc, found: Doc) -> None:
    """What `_enrich` read from the entity, in an alarm's stored form copied before it was read (the same rules
    as for the alarm: the event's values first)."""
    doc["enriched"] = True
    if not doc["entity_type"] and found.get("entity_type"):
        doc["entity_type"] = found["entity_type"]
    if doc["location"] is None:
        doc["location"] = found.get("location")
    if doc["parent_id"] is None:
        doc["parent_id"] = found.get("parent_id")
    if found.get("personal"):
        doc["entity_name"] = ""
    elif not doc.get("entity_name") and found.get("entity_name"):
        doc["entity_name"] = found["entity_name"]


def _parsed_time(text: str | None) -> datetime | None:
    """A stored time (to_iso form), None if absent or unreadable (the reconciliation then uses now)."""
    if text is None:
        return None
    try:
        return parse_iso(text)
    except (TypeError, ValueError):
        return None


def _default_value(doc: Doc, iri: str, *members: str) -> Any:
    """The value of the attribute's default instance (or the first of `members` it has instead of `value`)."""
    instances = doc.get("attrs", {}).get(iri) or []
    default = next((i for i in instances if "datasetId" not in i), None)
    if default is None:
        return None
    return next((default[k] for k in ("value", *members) if k in default), None)
