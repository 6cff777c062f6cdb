"""The rules engine: a platform component that runs rules on committed writes and on timers.

Flow: the store publishes `EntitiesChanged` after each commit; for every attribute instance
written, the engine finds the rules watching (entity type, attribute) in an index (no scan of all
rules), and evaluates each with the pure functions of evaluate.py, in observation order
(`observedAt`, else the commit time). Decisions become bus events, each with a child Context of
the change that caused it: `RuleMatched` on a raise and on every level change (not on repeats at
the same level), `RuleCleared`, `RuleSpike`.

State: one `RuleState` per (tenant, rule, entity) in memory, snapshotted to the store
(`put_doc("rule-state", tenant, "<rule>|<entity>")`; the snapshots written together go in one
`put_docs` and one `delete_docs` call): at once, right after the events are
published, when a transition matters for a restart (a level change, the start or end of a
running duration, a timer set or dropped); otherwise in batches at most every
`rules.snapshot_interval_s`; and all on stop. Publishing before writing means a crash in between
repeats a match rather than losing it (the alarms service keeps one alarm per entity and rule). The
alarm a match raises is saved by another commit, which a crash can lose while the state was written:
`resume` publishes `RuleStatesRestored` with the matches the states hold, and the alarms service raises
the missing ones.

Time: a state that must wake (a duration, an inactivity step, a dwell) has a timer on the platform
clock. On start the snapshots are read back and the timers re-armed; a timer that came due while
the process was down runs in `resume()`, after every component has started, so its events reach
subscribers that start after the engine.

Rules: domain defaults (`register_defaults`) apply to every tenant unless they name one; rules
created through the API (api.py) belong to a tenant, are stored as `put_doc("rule", tenant, id)`
and override a default with the same id in that tenant. Changing what a rule evaluates
(condition, persistence, selection) re-evaluates every entity it has a state for against the
entity's latest values under the new rule (`_changed`, QA9 F1): a match that still breaches stays
(its level may change), one that no longer does is cleared (reason `rule-changed`). Disabling or
deleting it clears its active matches (`rule-disabled` / `rule-deleted`) and forgets its states;
enabling it again evaluates the latest values of the entities it applies to (`rule-enabled`). The
events of a change carry who made it (`evidence.changedBy`, the Context's actor). Changing only its
names or notes keeps everything. In scale-out a rule is changed in an API process, which owns no entity: each
worker sees the stored rules change (cluster/worker.py `_follow_rules`) and applies every change through the same
`_changed` to the states it owns (`follow_stored`), with the actor stored with the rule (`changedBy`).

Late observations (older than the newest evaluated for a state) are counted (`stats`: `late`,
`lateWorse`, `lateRaised`); one worse than an active level is logged at INFO and, within
`rules.late_window_s`, raises that level (evaluate.late; QA9 F9).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from ucity.core.bus import Bus, Context, EntitiesChanged, EntityChange, Event
from ucity.core.clock import Clock, TimerHandle, parse_iso, to_iso
from ucity.core.config import RulesSettings
from ucity.core.errors import AlreadyExists, BadRequest, NotFound, OperationNotSupported
from ucity.ngsild.context import core_context
from ucity.rules.evaluate import (
    _EPOCH,
    Cleared,
    Decision,
    Env,
    Matched,
    Observation,
    Predicate,
    RuleState,
    Spiked,
    evaluate,
    late,
    late_level,
    reassess_inactivity,
    rebase,
    tick,
)
from ucity.rules.events import LEVEL_NAMES, RuleCleared, RuleMatched, RuleSpike, RuleStatesRestored
from ucity.rules.model import (
    Composite,
    EventMatch,
    Inactivity,
    RateOfChange,
    Rule,
    RuleError,
    rule_from_json,
    rule_to_json,
)
from ucity.store.base import Doc, EntityQuery, Store, TypeExpr

log = logging.getLogger(__name__)
STATE_KIND = "rule-state"
RULE_KIND = "rule"
ACTOR = "rules"
SYSTEM = "system"  # the actor of a rule change no request made (a domain's defaults)
CHANGED_BY = "changedBy"  # the stored rule's member naming who saved it last (read by `follow_stored`, not a Rule's)
REEVALUATE_PAGE = 500  # entities read per store call when a changed rule re-evaluates their latest values
ANY = "*"
Key = tuple[str, str, str]  # tenant, rule id, entity id
_NOTHING: frozenset[Key] = frozenset()


# -- compiled rules and the index ---------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Compiled:
    """A rule with its names expanded to IRIs, ready for matching."""

    rule: Rule
    origin: str  # default | user
    types: frozenset[str]  # expanded type IRIs; empty: any type
    attrs: dict[str, str]  # attribute IRI -> the rule's own name for it
    pattern: re.Pattern[str] | None
    per_change: bool  # evaluated once per write with the entity's final values (composites)
    needs_values: bool

    @classmethod
    def of(cls, rule: Rule, origin: str) -> Compiled:
        ctx = core_context()
        cond = rule.condition
        needs = isinstance(cond, Composite) or (isinstance(cond, Inactivity) and cond.suppression is not None)
        return cls(rule, origin, frozenset(ctx.expand_type(t) for t in rule.entity_types),
                   {ctx.expand_term(a): a for a in rule.attributes},
                   re.compile(rule.id_pattern) if rule.id_pattern else None, isinstance(cond, Composite), needs)

    def applies(self, entity_id: str, types: Iterable[str], instance: dict[str, Any]) -> bool:
        if instance.get("datasetId") != self.rule.dataset_id:
            return False
        if self.types and self.types.isdisjoint(types):
            return False
        return self.pattern is None or self.pattern.search(entity_id) is not None


class RuleIndex:
    """Enabled rules by (tenant scope, entity type, attribute IRI); `*` is any tenant / any type."""

    def __init__(self, compiled: Iterable[Compiled], overridden: dict[str, set[str]]) -> None:
        self._map: dict[tuple[str, str, str], list[Compiled]] = {}
        self._overridden = overridden
        # Answers by (tenant, types, attribute): every observation asks, and the index never changes
        # (a rule change builds a new one). Bounded, since types and attributes come from the data.
        self._memo: dict[tuple[str, tuple[str, ...], str], list[Compiled]] = {}
        # The same by (tenant, types): attribute IRI -> its candidates, only the attributes that have
        # some, so that a change's instances are matched with one lookup each and an entity type no
        # rule watches is passed over with one lookup per change.
        self._by_types: dict[tuple[str, tuple[str, ...]], dict[str, list[Compiled]]] = {}
        for comp in compiled:
            if not comp.rule.enabled:
                continue
            scope = comp.rule.tenant or ANY
            for type_iri in comp.types or {ANY}:
                for attr in comp.attrs:
                    self._map.setdefault((scope, type_iri, attr), []).append(comp)

    def candidates(self, tenant: str, types: list[str], attr: str) -> list[Compiled]:
        key = (tenant, tuple(types), attr)
        memo = self._memo.get(key)
        if memo is None:
            if len(self._memo) >= 65536:
                self._memo.clear()
            memo = self._memo[key] = self._candidates(tenant, types, attr)
        return memo

    def watched(self, tenant: str, types: list[str] | tuple[str, ...]) -> dict[str, list[Compiled]]:
        """Attribute IRI -> `candidates(tenant, types, attr)`, for the attributes with any candidate."""
        key = (tenant, tuple(types))
        found = self._by_types.get(key)
        if found is None:
            if len(self._by_types) >= 4096:
                self._by_types.clear()
            scopes, type_keys = (tenant, ANY), (*key[1], ANY)
            attrs = {attr for scope, type_iri, attr in self._map if scope in scopes and type_iri in type_keys}
            found = {attr: comps for attr in attrs if (comps := self._candidates(tenant, list(key[1]), attr))}
            self._by_types[key] = found
        return found

    def _candidates(self, tenant: str, types: list[str], attr: str) -> list[Compiled]:
        found: dict[str, Compiled] = {}
        hidden = self._overridden.get(tenant, set())
        for scope in (tenant, ANY):
            for type_iri in (*types, ANY):
                for comp in self._map.get((scope, type_iri, attr), ()):
                    if scope == ANY and comp.rule.id in hidden:
                        continue
                    found.setdefault(comp.rule.id, comp)
        return list(found.values())


# -- per-entity tracking ------------------------------------------------------------------------
@dataclass(slots=True)
class Track:
    """A rule's state for one entity plus what its events need when a timer (not a write) fires."""

    state: RuleState
    types: list[str]
    location: dict[str, Any] | None = None
    parent: str | None = None
    context_id: str | None = None
    timer: TimerHandle | None = None
    timer_at: datetime | None = None
    stored: bool = False  # a snapshot exists in the store
    # The entity's `name` (alarm messages name it): in memory only, never in the snapshot, so that a person's
    # name is not copied into rule states (the alarms drop it for personal entity types).
    name: str = ""

    def to_doc(self, rule_id: str, entity_id: str) -> Doc:
        return {"rule": rule_id, "entity": entity_id, "state": self.state.to_json(), "types": self.types,
                "location": self.location, "parent": self.parent, "context": self.context_id}

    @classmethod
    def from_doc(cls, doc: Doc) -> Track:
        return cls(RuleState.from_json(doc["state"]), list(doc.get("types") or []), doc.get("location"),
                   doc.get("parent"), doc.get("context"), stored=True)


_NEW_STATE = RuleState()  # the state of an entity a rule has no state for (never changed: evaluation is pure)


def _idle(state: RuleState) -> bool:
    """Nothing worth remembering across a restart (a rule that never left normal)."""
    return state.level is None and not state.pending and state.wake_at is None and not state.data


def _milestone(state: RuleState) -> tuple[Any, ...]:
    """What must reach the store at once when it changes (level, running durations, timers)."""
    pending = tuple(sorted((lv, p.since) for lv, p in state.pending.items()))
    return state.level, pending, state.wake_at is None, state.data.get("since"), state.data.get("inside")


def _evaluation_part(rule: Rule) -> tuple[Any, ...]:
    return (rule.condition, rule.persistence, rule.dataset_id, rule.entity_types, rule.id_pattern, rule.enabled)


# -- the engine ---------------------------------------------------------------------------------
class RulesEngine:
    """Runs the rules of every tenant on the bus and on the platform clock."""

    def __init__(self, store: Store, bus: Bus, clock: Clock, settings: RulesSettings, default_tenant: str) -> None:
        self.store = store
        self.bus = bus
        self.clock = clock
        self.settings = settings
        self.default_tenant = default_tenant
        self._defaults: dict[str, Rule] = {}
        self._user: dict[tuple[str, str], Rule] = {}
        self._predicates: dict[str, Predicate] = {}
        self._compiled: dict[tuple[str, str], Compiled] = {}  # (scope, id)
        self.index = RuleIndex((), {})
        self.env = Env(settings.timezone, self._predicates)
        self._tracks: dict[Key, Track] = {}
        self._by_entity: dict[tuple[str, str], set[str]] = {}
        self._outbox: deque[Event] = deque()
        self._critical: set[Key] = set()
        self._dirty: set[Key] = set()
        self._deleted: set[Key] = set()
        self._overdue: list[Key] = []
        self._snapshot_timer: TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()  # publishing, in decision order
        # Snapshot writes, in order (taken after _lock when both are): a write waits for a commit, and
        # must not hold up the publishing of the next batch's decisions.
        self._write_lock = asyncio.Lock()
        self._unsubscribe: Callable[[], None] | None = None
        # Distributed mode (ucity/cluster): the entities whose rules this process runs, by (tenant, entity
        # id). The others' changes are skipped and their timers left to the process that owns them.
        self.owns: Callable[[str, str], bool] = lambda tenant, entity_id: True
        # `late`: observations older than the newest evaluated; `lateWorse`: of those, worse than the confirmed
        # level (logged); `lateRaised`: of those, that raised it (QA9 F9; README "Late observations").
        self.stats = {"observations": 0, "matched": 0, "cleared": 0, "spikes": 0, "snapshots": 0, "late": 0,
                      "lateWorse": 0, "lateRaised": 0}

    # -- registration (domains) -------------------------------------------------------------------
    def register_defaults(self, rules: Iterable[Rule]) -> None:
        """Add or replace a domain's default rules; user rules with the same id still win."""
        changed: list[tuple[Rule, Rule]] = []
        for rule in rules:
            old = self._defaults.get(rule.id)
            self._defaults[rule.id] = rule
            if old is not None and _evaluation_part(old) != _evaluation_part(rule):
                changed.append((old, rule))
        self._rebuild()
        running = self._unsubscribe is not None
        for old, rule in changed:  # as a tenant's edit (`_changed`), while running; before start nothing is tracked
            selects = self._default_states(rule.id)
            if running and old.enabled and rule.enabled:
                todo = self._rebase(selects, old, rule, "rule-changed", SYSTEM)
                self._spawn(self._reevaluate_and_flush(todo, "rule-changed", SYSTEM))
            else:
                self._reset(selects, "rule-disabled" if old.enabled and running else "rule-changed",
                            SYSTEM if running else None)

    def _default_states(self, rule_id: str) -> Callable[[Key], bool]:
        """Selects the states a default rule owns: not those of tenants that override it."""
        return lambda key: key[1] == rule_id and (key[0], rule_id) not in self._user

    def register_predicate(self, name: str, predicate: Predicate) -> None:
        """A named suppression predicate: fn(values, now) -> bool, pure and fast (no I/O)."""
        self._predicates[name] = predicate

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        await self._load()
        self._unsubscribe = self.bus.subscribe(EntitiesChanged, self._on_changes)
        self._arm_all()

    async def _load(self) -> None:
        """Stored user rules, and the stored states of the owned entities."""
        self._user.update({key: rule for key, (rule, _) in (await self._stored_rules()).items()})
        self._rebuild()
        for tenant, _, doc in await self.store.list_docs(STATE_KIND):
            try:
                key = (tenant, str(doc["rule"]), str(doc["entity"]))
                if self.owns(tenant, key[2]):
                    self._remember(key, Track.from_doc(doc))
            except (KeyError, TypeError, ValueError):
                log.exception("rule state snapshot of tenant %s is unreadable and skipped", tenant)

    def _arm_all(self) -> None:
        now = self.clock.now()
        for key, track in self._tracks.items():
            if track.state.wake_at is not None and track.state.wake_at <= now:
                self._overdue.append(key)
            else:
                self._arm(key, track)

    async def persist(self) -> None:
        """Publish every decision so far and write every changed state now (distributed mode acknowledges
        a message only after this, so a worker that dies loses no state its messages built)."""
        await self.drain()
        async with self._lock, self._write_lock:
            await self._write(set(self._dirty) | set(self._deleted))

    async def reload(self) -> None:
        """After `owns` changed (a worker gained or lost partitions): write what changed, forget every
        state, then read the rules and the owned entities' states again (as their previous owner last
        wrote them) and arm their timers."""
        await self.persist()
        for track in self._tracks.values():
            self._disarm(track)
        self._tracks.clear()
        self._by_entity.clear()
        self._user.clear()
        await self._load()
        self._arm_all()
        await self.resume()

    async def _stored_rules(self) -> dict[tuple[str, str], tuple[Rule, str]]:
        """The stored user rules with who saved each last (`SYSTEM` when the store does not say)."""
        found: dict[tuple[str, str], tuple[Rule, str]] = {}
        for tenant, rule_id, doc in await self.store.list_docs(RULE_KIND):
            data = dict(doc)
            actor = data.pop(CHANGED_BY, None)
            try:
                found[(tenant, rule_id)] = (replace(rule_from_json(data), tenant=tenant),
                                            actor if isinstance(actor, str) and actor else SYSTEM)
            except RuleError as exc:
                log.error("stored rule %s of tenant %s is invalid and skipped: %s", rule_id, tenant, exc)
        return found

    async def follow_stored(self) -> None:
        """Distributed mode: the stored rules changed through another process (an API process's rules API; the
        worker notices it, cluster/worker.py `_follow_rules`). Each user rule created, changed, disabled, enabled
        or deleted there goes through `_changed` here, for the states this process owns, as it did in the process
        that changed it: a match that still breaches stays, one that no longer does is cleared, a disabled or
        deleted rule's active matches are cleared (`rule-disabled` / `rule-deleted`), a rule enabled again
        evaluates the latest values. The actor is the stored rule's `changedBy` (`_save`); a deleted rule's is
        not stored (`SYSTEM`). Before, the worker only read the rules and states again: a disabled rule's alarms
        stayed active and a changed rule's matches were not re-evaluated."""
        await self.drain()
        stored = await self._stored_rules()
        for key in sorted(set(self._user) | set(stored)):
            before, (after, actor) = self._user.get(key), stored.get(key, (None, SYSTEM))
            if before == after:
                continue
            tenant, rule_id = key
            old = self.effective(tenant, rule_id)
            if after is None:
                del self._user[key]
            else:
                self._user[key] = after
            new = self.effective(tenant, rule_id)
            await self._changed(tenant, rule_id, old[0] if old else None, new[0] if new else None, actor,
                                deleted=after is None)

    async def resume(self) -> None:
        """Run the timers that came due while the process was down (call once all components run), then tell
        the alarms which matches the states hold (`RuleStatesRestored`)."""
        overdue, self._overdue = self._overdue, []
        for key in overdue:
            self._fire(key)
        await self._flush()
        matches = []
        for key, track in self._tracks.items():
            comp = self._rule_for(key)
            state = track.state
            if comp is None or state.level is None or not self.owns(key[0], key[2]):
                continue
            tenant, rule_id, entity_id = key
            since = to_iso(state.since) if state.since is not None else ""
            matches.append(RuleMatched(Context(parent_id=track.context_id, actor=ACTOR), tenant, rule_id, entity_id,
                                       state.level, comp.rule.kind, comp.rule.category, tuple(track.types), since,
                                       {"ruleName": comp.rule.name.as_dict(), "restored": True}, track.location,
                                       track.parent, _description(comp.rule, state.level), track.name))
        if matches:
            await self.bus.publish(RuleStatesRestored(Context(actor=ACTOR), tuple(matches)))

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        for track in self._tracks.values():
            self._disarm(track)
        if self._snapshot_timer is not None:
            self._snapshot_timer.cancel()
            self._snapshot_timer = None
        await self.drain()
        await self._write(set(self._dirty) | set(self._deleted))

    async def drain(self) -> None:
        """Wait until every decision so far is published and its urgent snapshot written."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await self._flush()

    def health(self) -> dict[str, Any]:
        return {"ok": self._unsubscribe is not None, "rules": len(self._compiled), "states": len(self._tracks),
                "active": sum(1 for t in self._tracks.values() if t.state.level), **self.stats}

    async def observe(self, event: EntitiesChanged) -> None:
        """Changes committed by another process (distributed mode: the API's NGSI-LD writes, from the event
        stream), evaluated as if they had been committed here."""
        await self._on_changes(event)

    # -- rules (the API's backend) ----------------------------------------------------------------
    def effective(self, tenant: str, rule_id: str) -> tuple[Rule, str] | None:
        """The rule with this id in a tenant and its origin (`user` or `default`)."""
        user = self._user.get((tenant, rule_id))
        if user is not None:
            return user, "user"
        default = self._defaults.get(rule_id)
        if default is not None and default.tenant in (None, tenant):
            return default, "default"
        return None

    def rules(self, tenant: str) -> list[tuple[Rule, str]]:
        ids = sorted({i for t, i in self._user if t == tenant} |
                     {i for i, r in self._defaults.items() if r.tenant in (None, tenant)})
        return [found for i in ids if (found := self.effective(tenant, i)) is not None]

    async def create(self, tenant: str, rule: Rule, actor: str = SYSTEM) -> Rule:
        if (tenant, rule.id) in self._user:
            raise AlreadyExists(f"규칙 {rule.id}이(가) 이미 있습니다 / rule {rule.id} already exists")
        return await self._save(tenant, rule, actor)

    async def replace_rule(self, tenant: str, rule: Rule, actor: str = SYSTEM) -> Rule:
        if self.effective(tenant, rule.id) is None:
            raise NotFound(f"규칙 {rule.id}이(가) 없습니다 / rule {rule.id} does not exist")
        return await self._save(tenant, rule, actor)

    async def set_enabled(self, tenant: str, rule_id: str, enabled: bool, actor: str = SYSTEM) -> Rule:
        found = self.effective(tenant, rule_id)
        if found is None:
            raise NotFound(f"규칙 {rule_id}이(가) 없습니다 / rule {rule_id} does not exist")
        return await self._save(tenant, replace(found[0], enabled=enabled), actor)

    async def delete(self, tenant: str, rule_id: str, actor: str = SYSTEM) -> None:
        if (tenant, rule_id) not in self._user:
            if self.effective(tenant, rule_id) is not None:
                raise OperationNotSupported(f"규칙 {rule_id}은(는) 기본 규칙이므로 삭제할 수 없습니다. 비활성화하십시오 / "
                                            f"rule {rule_id} is a default rule: disable it instead of deleting it")
            raise NotFound(f"규칙 {rule_id}이(가) 없습니다 / rule {rule_id} does not exist")
        old = self.effective(tenant, rule_id)
        await self.store.delete_doc(RULE_KIND, tenant, rule_id)
        del self._user[(tenant, rule_id)]
        new = self.effective(tenant, rule_id)  # a default may show through again
        await self._changed(tenant, rule_id, old[0] if old else None, new[0] if new else None, actor, deleted=True)

    def check(self, rule: Rule) -> None:
        """What the model cannot check alone: the suppression predicate must be registered."""
        cond = rule.condition
        name = cond.suppression.predicate if isinstance(cond, Inactivity) and cond.suppression else None
        if name is not None and name not in self._predicates:
            raise BadRequest(f"등록되지 않은 억제 조건 {name!r} (등록된 것: {sorted(self._predicates)}) / unknown "
                             f"suppression predicate {name!r}; registered: {sorted(self._predicates)}")

    async def _save(self, tenant: str, rule: Rule, actor: str = SYSTEM) -> Rule:
        rule = replace(rule, tenant=tenant)
        self.check(rule)
        old = self.effective(tenant, rule.id)
        # Who saved it goes with the stored rule: a worker applies the change with that actor (`follow_stored`).
        await self.store.put_doc(RULE_KIND, tenant, rule.id, {**rule_to_json(rule), CHANGED_BY: actor})
        self._user[(tenant, rule.id)] = rule
        await self._changed(tenant, rule.id, old[0] if old else None, rule, actor)
        return rule

    async def _changed(self, tenant: str, rule_id: str, old: Rule | None, new: Rule | None, actor: str,
                       deleted: bool = False) -> None:
        """A tenant's effective rule went from `old` to `new` (None: none): what happens to its states (QA9 F1).

        Only names or notes changed: nothing. Disabled or gone: its active matches are cleared (`rule-disabled` /
        `rule-deleted`, with the actor) and its states forgotten. Changed while enabled (an edit, or a deleted
        override whose default shows through): every entity it had a state for is re-evaluated against its latest
        value under the new rule (`_rebase`): still breaching, the match stays (its level may change); no longer,
        it is cleared (`rule-changed`). Enabled again: the latest values of the entities it applies to are
        evaluated, raising where they breach (`rule-enabled`)."""
        selects: Callable[[Key], bool] = lambda key: key[0] == tenant and key[1] == rule_id  # noqa: E731
        if old is None or (new is not None and _evaluation_part(old) == _evaluation_part(new)):
            self._rebuild()  # a new rule: states it may have (stored, dormant) wait for it as before
        elif not old.enabled or new is None or not new.enabled:
            if old.enabled:
                self._reset(selects, "rule-deleted" if deleted else "rule-disabled", actor)
            else:
                self._reset(selects, "rule-changed", actor)  # nothing runs a disabled rule: normally no state
            self._rebuild()
            if not old.enabled and new is not None and new.enabled:
                await self._flush()
                await self._evaluate_current(tenant, rule_id, "rule-enabled", actor)
        else:
            reason = "rule-deleted" if deleted else "rule-changed"
            self._rebuild()
            todo = self._rebase(selects, old, new, reason, actor)
            await self._flush()
            await self._reevaluate(todo, reason, actor)
        await self._flush()

    def _rebuild(self) -> None:
        compiled: dict[tuple[str, str], Compiled] = {}
        for rule in self._defaults.values():
            compiled[(rule.tenant or ANY, rule.id)] = Compiled.of(rule, "default")
        overridden: dict[str, set[str]] = {}
        for (tenant, rule_id), rule in self._user.items():
            compiled[(tenant, rule_id)] = Compiled.of(rule, "user")
            overridden.setdefault(tenant, set()).add(rule_id)
        self._compiled = compiled
        self.index = RuleIndex(compiled.values(), overridden)
        for key, track in self._tracks.items():  # a rule that (re)appeared gets its timers back
            if track.timer is None and track.state.wake_at is not None and key not in self._overdue:
                self._arm(key, track)

    def _rule_for(self, key: Key) -> Compiled | None:
        tenant, rule_id, _ = key
        comp = self._compiled.get((tenant, rule_id)) or self._compiled.get((ANY, rule_id))
        if comp is None or not comp.rule.enabled:
            return None
        return comp

    def _reset(self, selects: Callable[[Key], bool], reason: str, actor: str | None = None) -> None:
        """Forget the states of a changed rule, clearing what was active (`changedBy`: who changed the rule)."""
        for key in [k for k in self._tracks if selects(k)]:
            track = self._tracks[key]
            if track.state.level is not None:
                ctx = Context(parent_id=track.context_id, actor=actor or ACTOR)
                evidence = {"reason": reason, "previous": track.state.level}
                if actor is not None:
                    evidence["changedBy"] = actor
                self._outbox.append(RuleCleared(ctx, key[0], key[1], key[2], to_iso(self.clock.now()), evidence,
                                                track.parent))
                self.stats["cleared"] += 1
            self._forget(key)

    def _rebase(self, selects: Callable[[Key], bool], old: Rule, new: Rule, reason: str,
                actor: str) -> list[tuple[Key, str | None]]:
        """First half of re-evaluating a changed rule (`_changed`), with no wait so that no write comes in between:
        each selected state is put back to what `evaluate.rebase` keeps (its confirmed level) and its timer
        dropped. An inactivity rule is re-assessed here from its state (its "latest value" is the time counted
        since the last report); a button (a non-latched event) has nothing to re-evaluate. Returns the keys whose
        latest values `_reevaluate` reads from the store, with their confirmed level."""
        now = self.clock.now()
        todo: list[tuple[Key, str | None]] = []
        for key in [k for k in self._tracks if selects(k)]:
            track = self._tracks[key]
            comp = self._rule_for(key)
            if comp is None or (isinstance(new.condition, EventMatch) and not new.condition.latch):
                self._reset(frozenset((key,)).__contains__, reason, actor)
                continue
            self._disarm(track)
            if isinstance(new.condition, Inactivity) and isinstance(old.condition, Inactivity):
                state, decisions = reassess_inactivity(comp.rule, track.state, now, self.env)
                self._apply(key, comp, track, state, _annotated(decisions, reason, actor),
                            Context(parent_id=track.context_id, actor=actor))
                continue
            level = track.state.level
            state = rebase(old, new, track.state)
            if _milestone(state) != _milestone(track.state):
                self._critical.add(key)
            track.state = state
            todo.append((key, level))
        return todo

    async def _reevaluate(self, todo: list[tuple[Key, str | None]], reason: str, actor: str) -> None:
        """Second half: each state's entity as it is now in the store, evaluated from the rebased state. A state
        a newer write has evaluated meanwhile (its `last_at` is set) is left as that write made it. An entity
        gone, no longer selected by the rule or without a usable value: its match is cleared."""
        by_tenant: dict[str, list[str]] = {}
        for (tenant, _, entity_id), _ in todo:
            by_tenant.setdefault(tenant, []).append(entity_id)
        docs: dict[tuple[str, str], Doc] = {}
        for tenant, ids in by_tenant.items():
            for i in range(0, len(ids), REEVALUATE_PAGE):
                chunk = tuple(ids[i:i + REEVALUATE_PAGE])
                found, _ = await self.store.query_entities(tenant, EntityQuery(ids=chunk, limit=len(chunk)))
                docs.update({(tenant, str(doc["id"])): doc for doc in found})
        now = self.clock.now()
        for key, _ in todo:
            track, comp = self._tracks.get(key), self._rule_for(key)
            if track is None or comp is None or track.state.last_at is not None:
                continue
            self._evaluate_doc(key, comp, track, docs.get((key[0], key[2])), now, reason, actor)

    async def _reevaluate_and_flush(self, todo: list[tuple[Key, str | None]], reason: str, actor: str) -> None:
        await self._flush()
        await self._reevaluate(todo, reason, actor)
        await self._flush()

    async def _evaluate_current(self, tenant: str, rule_id: str, reason: str, actor: str) -> None:
        """A rule enabled again: the entities of its types that have one of its attributes, as they are now in the
        store, evaluated from scratch (what it was tracking was forgotten when it was disabled). Entities a write
        has meanwhile evaluated are left as they are; a button (a non-latched event) is not pressed again."""
        comp = self._rule_for((tenant, rule_id, ""))
        if comp is None or (isinstance(comp.rule.condition, EventMatch) and not comp.rule.condition.latch):
            return
        types = TypeExpr(tuple((t,) for t in sorted(comp.types))) if comp.types else None
        offset = 0
        while True:
            page, _ = await self.store.query_entities(tenant, EntityQuery(
                types=types, attrs_any=tuple(comp.attrs), limit=REEVALUATE_PAGE, offset=offset))
            now = self.clock.now()
            for doc in page:
                key = (tenant, rule_id, str(doc["id"]))
                comp = self._rule_for(key)
                if comp is None:
                    return  # disabled again meanwhile
                if key in self._tracks or not self.owns(tenant, key[2]):
                    continue
                self._evaluate_doc(key, comp, Track(RuleState(), []), doc, now, reason, actor)
            await self._flush()
            if len(page) < REEVALUATE_PAGE:
                return
            offset += REEVALUATE_PAGE

    def _evaluate_doc(self, key: Key, comp: Compiled, track: Track, doc: Doc | None, now: datetime, reason: str,
                      actor: str) -> None:
        """Evaluate `track`'s state against the latest values of the rule's attributes in `doc` (the entity now),
        in observation order, then its timer if already due; a confirmed level left without any usable value is
        cleared. The decisions say why (`reason`) and who (`changedBy`)."""
        state, decisions = track.state, []
        types = list(doc.get("type", ())) if doc is not None else []
        items: list[tuple[datetime, str, dict[str, Any]]] = []
        for attr in comp.attrs:
            for instance in (doc or {}).get("attrs", {}).get(attr, ()):
                if comp.applies(key[2], types, instance):
                    items.append((_instance_time(instance, now), attr, instance))
        items.sort(key=lambda item: item[0])
        if comp.per_change and items:
            items = items[-1:]
        values = _values(comp, doc) if comp.needs_values else {}
        for at, attr, instance in items:
            if isinstance(comp.rule.condition, RateOfChange):  # a sample kept by the state is not counted twice
                t = (min(at, now) - _EPOCH).total_seconds()
                state = replace(state, data={**state.data, "samples": [
                    p for p in state.data.get("samples", []) if float(p[0]) < t]})
            obs = Observation(comp.attrs[attr], instance_value(instance), at, values)
            state, found = evaluate(comp.rule, state, obs, now, self.env)
            decisions += found
        if state.last_at is None and state.level is not None:  # nothing left to say it still breaches
            decisions.append(Cleared(now, state.level, {}))
            state = RuleState()
        if state.wake_at is not None and state.wake_at <= now:
            state, found = tick(comp.rule, state, now, self.env)
            decisions += found
        if key not in self._tracks and _idle(state) and not decisions:
            return
        self._describe(track, comp.rule, doc)
        self._apply(key, comp, track, state, _annotated(decisions, reason, actor),
                    Context(parent_id=track.context_id, actor=actor))

    # -- observations -----------------------------------------------------------------------------
    async def _on_changes(self, event: EntitiesChanged) -> None:
        if self._overdue:
            await self.resume()
        now = self.clock.now()
        touched: set[Key] = set()
        for change in event.changes:
            try:
                touched |= self._process(change, event.context, now)
            except Exception:  # one bad entity must not stop the rest of the batch
                log.exception("rules failed on %s", change.entity_id)
        for key in touched:  # a timer due by the time the batch arrived (a late sample's runs behind: evaluate._due)
            track = self._tracks.get(key)
            if track is not None and track.state.wake_at is not None and track.state.wake_at <= now:
                self._fire(key, event.context)
        # The events go out now; their snapshots are written by a task right after (in order, under the
        # lock), so that the commit publisher, and every later write's rules, subscriptions and alarms,
        # never wait for a commit of rule state: in an alarm storm that wait capped the publisher at one
        # batch per commit. `drain()` (and the publisher's) still waits for them.
        await self._flush(defer_writes=True)

    def _process(self, change: EntityChange, ctx: Context, now: datetime) -> set[Key] | frozenset[Key]:
        if not self.owns(change.tenant, change.entity_id):
            return _NOTHING
        if change.after is None:
            self._entity_deleted(change, ctx)
            return _NOTHING
        types = change.after.get("type", ())
        watched = self.index.watched(change.tenant, types)
        if not watched:  # no rule watches this type (one lookup, not one per instance)
            return _NOTHING
        work: list[tuple[datetime, int, Compiled, str, dict[str, Any]]] = []
        per_change: dict[str, tuple[datetime, int, Compiled, str, dict[str, Any]]] = {}
        for order, (attr, instance) in enumerate(change.instances):
            candidates = watched.get(attr)
            if candidates is None:
                continue
            for comp in candidates:
                if not comp.applies(change.entity_id, types, instance):
                    continue
                item = (_instance_time(instance, now), order, comp, attr, instance)
                if comp.per_change:
                    if comp.rule.id not in per_change or item[0] >= per_change[comp.rule.id][0]:
                        per_change[comp.rule.id] = item
                else:
                    work.append(item)
        work.extend(per_change.values())
        work.sort(key=lambda item: (item[0], item[1]))
        touched: set[Key] = set()
        for at, _, comp, attr, instance in work:
            touched.add(self._observe(comp, change, ctx, attr, instance, at, now))
        return touched

    def _observe(self, comp: Compiled, change: EntityChange, ctx: Context, attr: str, instance: dict[str, Any],
                 at: datetime, now: datetime) -> Key:
        key = (change.tenant, comp.rule.id, change.entity_id)
        track = self._tracks.get(key)
        values = _values(comp, change.after) if comp.needs_values else {}
        obs = Observation(comp.attrs[attr], instance_value(instance), at, values)
        self.stats["observations"] += 1
        if track is not None and track.state.last_at is not None and min(at, now) < track.state.last_at:
            new, decisions = self._late(key, comp, track.state, obs, now)
        else:
            new, decisions = evaluate(comp.rule, track.state if track is not None else _NEW_STATE, obs, now, self.env)
        if track is None:
            if _idle(new) and not decisions:
                return key  # an entity that stays normal: nothing to remember, describe or publish (see _apply)
            track = Track(RuleState(), [])
        self._describe(track, comp.rule, change.after)
        track.context_id = ctx.id
        self._apply(key, comp, track, new, decisions, ctx)
        return key

    def _late(self, key: Key, comp: Compiled, state: RuleState, obs: Observation,
              now: datetime) -> tuple[RuleState, list[Decision]]:
        """An observation older than the newest evaluated (QA9 F9): counted (`late`); one worse than the confirmed
        level is counted (`lateWorse`) and logged at INFO, and within `rules.late_window_s` of now raises the level
        as `evaluate.late` says (`lateRaised`); otherwise it is ignored, as before."""
        self.stats["late"] += 1
        level = late_level(comp.rule, state, obs)
        if level is None:
            return state, []
        self.stats["lateWorse"] += 1
        age = (now - min(obs.at, now)).total_seconds()
        new, decisions = late(comp.rule, state, obs, now) if age <= self.settings.late_window_s else (state, [])
        if decisions:
            self.stats["lateRaised"] += 1
        log.info("rule %s, entity %s (tenant %s): a late reading observed %s (%.0f s ago, before the newest %s) "
                 "indicates %s above %s: %s", key[1], key[2], key[0], to_iso(obs.at), age,
                 to_iso(state.last_at) if state.last_at else "-", level, state.level or "normal",
                 "level raised" if decisions else "ignored")
        return new, decisions

    def _describe(self, track: Track, rule: Rule, doc: Doc | None) -> None:
        if doc is None:
            return
        ctx = core_context()
        track.types = [ctx.compact_type(t) for t in doc.get("type", [])]
        location = _default_instance(doc, ctx.expand_term("location"))
        track.location = location.get("value") if location else None
        track.name = _name(doc, ctx.expand_term("name"))
        names = [rule.parent_relationship] if rule.parent_relationship else self.settings.parent_relationships
        track.parent = next((p for n in names if (p := _object(doc, ctx.expand_term(n))) is not None), None)

    def _entity_deleted(self, change: EntityChange, ctx: Context) -> None:
        for rule_id in list(self._by_entity.get((change.tenant, change.entity_id), ())):
            key = (change.tenant, rule_id, change.entity_id)
            track = self._tracks[key]
            if track.state.level is not None:
                self._outbox.append(RuleCleared(ctx.child(), key[0], rule_id, key[2], to_iso(self.clock.now()),
                                                {"reason": "entity-deleted", "previous": track.state.level},
                                                track.parent))
                self.stats["cleared"] += 1
            self._forget(key)

    # -- timers -----------------------------------------------------------------------------------
    def _arm(self, key: Key, track: Track) -> None:
        when = track.state.wake_at
        if when is None:
            self._disarm(track)
            return
        if track.timer is not None and track.timer_at == when:
            return
        self._disarm(track)
        if self._rule_for(key) is None or not self.owns(key[0], key[2]):
            return  # dormant until its rule is registered again
        track.timer, track.timer_at = self.clock.call_at(when, lambda: self._on_timer(key)), when

    @staticmethod
    def _disarm(track: Track) -> None:
        if track.timer is not None:
            track.timer.cancel()
        track.timer, track.timer_at = None, None

    def _on_timer(self, key: Key) -> None:
        track = self._tracks.get(key)
        if track is None:
            return
        track.timer, track.timer_at = None, None
        self._fire(key)
        self._spawn(self._flush())

    def _fire(self, key: Key, cause: Context | None = None) -> None:
        track = self._tracks.get(key)
        comp = self._rule_for(key)
        if track is None or comp is None:
            return
        new, decisions = tick(comp.rule, track.state, self.clock.now(), self.env)
        ctx = cause or Context(parent_id=track.context_id, actor=ACTOR)
        self._apply(key, comp, track, new, decisions, ctx)

    # -- decisions -> events, snapshots, timers ---------------------------------------------------
    def _apply(self, key: Key, comp: Compiled, track: Track, new: RuleState, decisions: list[Decision],
               ctx: Context) -> None:
        old = track.state
        track.state = new
        if key not in self._tracks:
            if _idle(new) and not decisions:
                return  # nothing to remember about an entity that stays normal
            self._remember(key, track)
        for decision in decisions:
            self._outbox.append(self._event(key, comp.rule, track, decision, ctx.child()))
        if _milestone(old) != _milestone(new):
            self._critical.add(key)
        elif new != old and not (_idle(new) and not track.stored):
            self._mark_dirty(key)
        self._arm(key, track)

    def _event(self, key: Key, rule: Rule, track: Track, decision: Decision, ctx: Context) -> Event:
        tenant, rule_id, entity_id = key
        evidence = {**decision.evidence, "ruleName": rule.name.as_dict()}
        if isinstance(decision, Matched):
            self.stats["matched"] += 1
            evidence["previous"] = decision.previous
            return RuleMatched(ctx, tenant, rule_id, entity_id, decision.level, rule.kind, rule.category,
                               tuple(track.types), to_iso(decision.at), evidence, track.location, track.parent,
                               _description(rule, decision.level), track.name)
        if isinstance(decision, Cleared):
            self.stats["cleared"] += 1
            evidence["previous"] = decision.previous
            return RuleCleared(ctx, tenant, rule_id, entity_id, to_iso(decision.at), evidence, track.parent)
        assert isinstance(decision, Spiked)
        self.stats["spikes"] += 1
        return RuleSpike(ctx, tenant, rule_id, entity_id, decision.level, rule.kind, rule.category,
                         to_iso(decision.at), evidence, track.parent)

    def _remember(self, key: Key, track: Track) -> None:
        self._tracks[key] = track
        self._by_entity.setdefault((key[0], key[2]), set()).add(key[1])
        self._deleted.discard(key)

    def _forget(self, key: Key) -> None:
        track = self._tracks.pop(key, None)
        if track is None:
            return
        self._disarm(track)
        ids = self._by_entity.get((key[0], key[2]))
        if ids is not None:
            ids.discard(key[1])
            if not ids:
                del self._by_entity[(key[0], key[2])]
        self._dirty.discard(key)
        self._critical.discard(key)
        if track.stored:
            self._deleted.add(key)
            self._critical.add(key)

    # -- publishing and snapshots -----------------------------------------------------------------
    async def _flush(self, defer_writes: bool = False) -> None:
        """Publish queued events in order, then write the urgent snapshots (in a task if `defer_writes`)."""
        async with self._lock:
            while self._outbox:
                await self.bus.publish(self._outbox.popleft())
            urgent, self._critical = self._critical, set()
            if not defer_writes:
                async with self._write_lock:
                    await self._write(urgent)
        if defer_writes and urgent:
            self._spawn(self._write_locked(urgent))

    async def _write_locked(self, keys: set[Key]) -> None:
        async with self._write_lock:  # taken in the order the flushes asked for it
            await self._write(keys)

    def _mark_dirty(self, key: Key) -> None:
        self._dirty.add(key)
        if self._snapshot_timer is None and self._unsubscribe is not None:
            when = self.clock.now() + timedelta(seconds=self.settings.snapshot_interval_s)
            self._snapshot_timer = self.clock.call_at(when, self._on_snapshot_timer)

    def _on_snapshot_timer(self) -> None:
        self._snapshot_timer = None
        self._spawn(self._write_batch())

    async def _write_batch(self) -> None:
        async with self._write_lock:  # one writer at a time keeps each snapshot the latest one
            await self._write(set(self._dirty))

    async def _write(self, keys: set[Key]) -> None:
        """Write the snapshots of `keys` as they are now: the changed ones in one `put_docs`, the idle or
        forgotten ones in one `delete_docs` (an alarm storm changes a state per transition; one store call
        each cost a queued write, a future and a wake-up per state). A failed call keeps its keys for the
        next batch."""
        puts: list[tuple[Key, Track]] = []
        deletes: list[Key] = []
        for key in sorted(keys):
            self._dirty.discard(key)
            track = self._tracks.get(key)
            if track is None or _idle(track.state):
                if key in self._deleted or (track is not None and track.stored):
                    deletes.append(key)
                else:
                    self._deleted.discard(key)
                if track is not None:
                    track.stored = False
            else:
                puts.append((key, track))
        if puts and deletes:
            await asyncio.gather(self._put(puts), self._delete(deletes))
        elif puts:
            await self._put(puts)
        elif deletes:
            await self._delete(deletes)

    async def _put(self, puts: list[tuple[Key, Track]]) -> None:
        if not puts:
            return
        try:
            await self.store.put_docs(STATE_KIND, [(key[0], f"{key[1]}|{key[2]}", track.to_doc(key[1], key[2]))
                                                   for key, track in puts])
        except Exception:  # the store is down: keep them for the next batch
            log.exception("snapshots of %d rule states failed", len(puts))
            for key, _ in puts:
                self._mark_dirty(key)
            return
        for _, track in puts:
            track.stored = True
        self.stats["snapshots"] += len(puts)

    async def _delete(self, keys: list[Key]) -> None:
        if not keys:
            return
        try:
            await self.store.delete_docs(STATE_KIND, [(key[0], f"{key[1]}|{key[2]}") for key in keys])
        except Exception:  # the store is down: keep them for the next batch
            log.exception("removing %d rule state snapshots failed", len(keys))
            for key in keys:
                track = self._tracks.get(key)
                if track is not None:
                    track.stored = True  # still stored: the next write of its key removes it
                self._mark_dirty(key)
            return
        for key in keys:
            self._deleted.discard(key)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- introspection ----------------------------------------------------------------------------
    def state(self, tenant: str, rule_id: str, entity_id: str) -> RuleState | None:
        track = self._tracks.get((tenant, rule_id, entity_id))
        return None if track is None else track.state

    def states(self, tenant: str, rule_id: str) -> list[tuple[str, RuleState]]:
        return sorted((k[2], t.state) for k, t in self._tracks.items() if k[0] == tenant and k[1] == rule_id)


# -- helpers ------------------------------------------------------------------------------------
def _instance_time(instance: dict[str, Any], now: datetime) -> datetime:
    text = instance.get("observedAt") or instance.get("modifiedAt")
    if isinstance(text, str):
        try:
            return parse_iso(text)
        except ValueError:
            pass
    return now


def instance_value(instance: dict[str, Any]) -> Any:
    """The value of a stored attribute instance, whatever its NGSI-LD attribute type."""
    for member in ("value", "object", "languageMap", "json", "valueList", "objectList", "vocab"):
        if member in instance:
            return instance[member]
    return None


def _default_instance(doc: Doc | None, attr: str, dataset_id: str | None = None) -> dict[str, Any] | None:
    for instance in (doc or {}).get("attrs", {}).get(attr, ()):
        if instance.get("datasetId") == dataset_id:
            found: dict[str, Any] = instance
            return found
    return None


def _name(doc: Doc, attr: str) -> str:
    """An entity's `name` (a LanguageProperty's Korean, else English, else any), "" without one."""
    instance = _default_instance(doc, attr)
    if instance is None:
        return ""
    value = instance.get("value", instance.get("languageMap"))
    if isinstance(value, dict):
        value = value.get("ko") or value.get("en") or next(iter(value.values()), None)
    return value[:200] if isinstance(value, str) else ""


def _object(doc: Doc, attr: str) -> str | None:
    instance = _default_instance(doc, attr)
    target = instance.get("object") if instance else None
    return target if isinstance(target, str) else None


def _values(comp: Compiled, doc: Doc | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for iri, name in comp.attrs.items():
        instance = _default_instance(doc, iri, comp.rule.dataset_id)
        if instance is not None:
            out[name] = instance_value(instance)
    return out


def _annotated(decisions: list[Decision], reason: str, actor: str) -> list[Decision]:
    """Decisions of a rule change, saying why (`reason`) and who changed the rule (`changedBy`)."""
    out: list[Decision] = []
    for d in decisions:
        out.append(replace(d, evidence={**d.evidence, "reason": reason, "changedBy": actor}))
    return out


def _description(rule: Rule, level: str) -> dict[str, str]:
    names = LEVEL_NAMES[level]
    out = {}
    for lang in ("ko", "en"):
        title = getattr(rule.name, lang) or rule.id
        extra = getattr(rule.description, lang)
        out[lang] = f"{title}: {names[lang]}" + (f". {extra}" if extra else "")
    return out
