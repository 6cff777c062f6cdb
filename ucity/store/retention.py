"""Retention limits: the platform component that deletes what is kept no longer (docs/operations.md, "Retention").

Location and care data are personal data: kept only as long as a rule says (e.g. SAFE-R1: a safe-return
session's raw track at most 6 months). What it deletes, each after its own number of days:

* history (attribute instances) per entity type, optionally per attribute: `retention.history` rules and
  the defaults domains declare for their own types (`platform.get("retention").declare(...)`, settings
  override them), and `retention.default_history_days` for every series no rule covers;
* the operations audit log (`audit_days`), closed or cancelled operations events with their footage grants
  (`ops_closed_days`), closed alarms with their history (`alarms_closed_days`);
* the NGSI-LD `Alert` entities of cleared or closed alarms, with their history, once unchanged for
  `alerts_closed_days` (unset by default: kept; `_purge_alerts`): an Alert is a public copy of an alarm (every `data:read`
  holder reads it, with a place), the alarm stays the record. The Alert of an active alarm is never deleted.

Everything else is kept by default. A sweep runs every `sweep_interval_s` on the platform clock (the first one a
minute after the start), one bounded store call at a time (`batch` rows: the single SQLite writer is never
held for long, and other writes go between two calls), and writes one audit line per rule that deleted
something, in each tenant whose data it deleted (with that tenant's counts: a tenant's auditors see their own
deletions): what kind of data, which rule and its source, the cutoff, how many. Never the data itself. A
store error is logged, counted in `health()` and tried again at the next sweep; it never stops the server.

The rules, in short: an instance's age is its observedAt, else the time it was recorded (what history is
keyed and indexed by); a rule with attributes wins over its type's rule without for those attributes; an
entity of several types gets every rule of its types, so the shortest keeps. The audit lines of an event not
closed or cancelled stay, however old: they are its trail and the record of its live footage grants.

What a sweep deletes leaves the store: a series left without instances goes with them, and so does the
temporal entity of an entity left with neither history nor a current state (the store's `purge_history`, QA10
F8); after a sweep that deleted anything, the store's `release_deleted` (SQLite: a WAL checkpoint that
truncates the -wal file, QA10 F7) runs. An observedAt far in the future would escape every rule: NGSI-LD
writes refuse one beyond `ngsild.max_future_s`, device measures beyond `ingest.max_future_s` (QA10 F1).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ucity.core.bus import Context
from ucity.core.clock import from_micros, parse_iso, to_iso, to_micros
from ucity.core.config import HistoryRetentionRule, RetentionSettings
from ucity.core.periodic import Periodic
from ucity.core.platform import Platform
from ucity.store.base import (
    ApplyFn,
    AuditRow,
    Doc,
    EntityQuery,
    HistoryScope,
    Mutation,
    Outcome,
    QFilter,
    Store,
    TenantCounts,
    TypeExpr,
    add_counts,
)

log = logging.getLogger(__name__)
ACTOR = "ucity-retention"
# The first sweep after a start: soon, so that a server restarted more often than the interval still
# sweeps, but not in the middle of the start (restoring rule and alarm states).
FIRST_SWEEP_S = 60.0
MAX_DAYS = 100_000  # as the settings allow: a cutoff further back than that would not fit a datetime


def _expand(name: str) -> str:
    """The stored (expanded) name of a type or attribute, through the core context (an IRI stays as it is)."""
    from ucity.ngsild.context import core_context

    return core_context().expand_term(name)


@dataclass(frozen=True, slots=True)
class HistoryRule:
    """How long the history of an entity type (of some of its attributes only, if `attrs`) is kept."""

    type: str  # expanded IRI
    attrs: tuple[str, ...]  # expanded IRIs, sorted; () = every attribute
    keep_days: float
    source: str  # "settings", or the rule a domain cites ("SAFE-R1 [D]")

    def describe(self) -> str:
        return self.type + (f" ({', '.join(self.attrs)})" if self.attrs else "")


def settings_rules(settings: RetentionSettings) -> list[HistoryRule]:
    """The `retention.history` rules of the settings, names expanded; a ValueError (one line, naming the rules
    as written) for two rules that are the same once expanded (`Vehicle` and its IRI), or one naming an attribute
    twice. The settings model can only compare names as written: core/ imports nothing else of ucity, so it
    cannot expand them. Every command that loads settings runs this (ucity/cli.py: `config validate` refuses
    what `serve` would), and so does the service."""
    made: dict[tuple[str, tuple[str, ...]], tuple[int, HistoryRule]] = {}
    for n, rule in enumerate(settings.history, 1):
        attrs = [_expand(a) for a in rule.attrs]
        if len(set(attrs)) != len(attrs):
            raise ValueError(f"retention.history: rule {n} ({_written(rule)}) names an attribute twice once names "
                             f"are expanded ({', '.join(attrs)})")
        one = HistoryRule(_expand(rule.type), tuple(sorted(attrs)), rule.keep_days, "settings")
        known = made.get((one.type, one.attrs))
        if known is not None:
            first = known[0]
            raise ValueError(f"retention.history: rules {first} ({_written(settings.history[first - 1])}) and {n} "
                             f"({_written(rule)}) are the same once names are expanded ({one.describe()}): keep one")
        made[(one.type, one.attrs)] = (n, one)
    return [rule for _, rule in made.values()]


def _written(rule: HistoryRetentionRule) -> str:
    """A settings rule as the file has it: `type "Vehicle", attrs ["location"]`."""
    attrs = f", attrs [{', '.join(json.dumps(a) for a in rule.attrs)}]" if rule.attrs else ""
    return f"type {json.dumps(rule.type)}{attrs}"


def audit_caveats(settings: RetentionSettings) -> list[str]:
    """What an operator should know about `audit_days` (the server logs it at its start, a CLI dry run prints it):
    the lines of events not closed or cancelled always stay, but a closed event kept longer than its lines loses
    its trail."""
    audit, events = settings.audit_days, settings.ops_closed_days
    if audit is None or (events is not None and audit >= events):
        return []
    kept = "unset: closed events are kept" if events is None else f"{events:g} days"
    return [f"retention.audit_days ({audit:g} days) is shorter than retention.ops_closed_days ({kept}): a closed "
            "event kept longer than its audit lines loses its trail (the lines of events not closed or cancelled "
            "always stay); set audit_days above ops_closed_days plus the longest event (docs/operations.md §8)"]


@dataclass(slots=True)
class PurgeResult:
    """What one rule of a sweep deleted (or, in a dry run, would delete)."""

    data: str  # history | audit | ops-events | alarms | alerts | dead-letters
    rule: str
    source: str
    keep_days: float
    cutoff: str
    deleted: int = 0
    related: int = 0  # footage grants of the events, history entries of the alarms, history rows of the Alerts
    error: str | None = None
    tenants: TenantCounts = field(default_factory=dict)  # what was deleted per tenant: [deleted, related]

    def audit_doc(self, counts: list[int] | None = None) -> dict[str, Any]:
        """The audit line's detail: with `counts` ([deleted, related] of one tenant) that tenant's, else the totals."""
        deleted, related = counts if counts is not None else (self.deleted, self.related)
        doc: dict[str, Any] = {"data": self.data, "rule": self.rule, "source": self.source, "keepDays": self.keep_days,
                               "cutoff": self.cutoff, "deleted": deleted}
        if self.data == "ops-events":
            doc["grantsDeleted"] = related
        elif self.data in ("alarms", "alerts"):
            doc["historyDeleted"] = related
        if self.error is not None:
            doc["error"] = self.error
        return doc


@dataclass(slots=True)
class _Totals:
    sweeps: int = 0
    failures: int = 0
    deleted: dict[str, int] = field(default_factory=dict)
    last: dict[str, int] = field(default_factory=dict)
    last_sweep: str | None = None
    last_error: str | None = None


class RetentionService:
    """The platform component `retention`: rules, sweeps on the platform clock, their audit lines."""

    def __init__(self, platform: Platform, store: Store, scheduled: bool = True) -> None:
        self.platform = platform
        self.clock = platform.clock
        self.store = store
        self.settings = platform.settings.retention
        self.tenant = platform.settings.ngsild.default_tenant  # where a failed rule's line goes (also)
        self.scheduled = scheduled  # False: sweeps only when asked (a scale-out worker, the CLI)
        self._declared: dict[tuple[str, tuple[str, ...]], HistoryRule] = {}
        self._configured = {(rule.type, rule.attrs): rule for rule in settings_rules(self.settings)}
        self._stopping = False
        self._sweeps = Periodic(self.clock, "ucity-retention-sweep", self._scheduled_sweep,
                                lambda: self.settings.sweep_interval_s, lambda: self.scheduled and self.active)
        self._totals = _Totals()

    # -- rules -------------------------------------------------------------------------------------------
    def declare(self, entity_type: str, keep_days: float, *, attrs: Iterable[str] = (), source: str) -> None:
        """A domain's default for its own entity type (its attributes `attrs` only, if given): history older
        than `keep_days` is deleted. `source` cites the rule (e.g. "SAFE-R1 [D]"). A `retention.history` rule
        for the same type and attributes overrides it; of two declarations for the same, the shorter stays."""
        if not 0 < keep_days <= MAX_DAYS:
            raise ValueError(f"retention for {entity_type}: keep_days must be positive (at most {MAX_DAYS}), "
                             f"not {keep_days}")
        if not source:
            raise ValueError(f"retention for {entity_type}: name the rule's source")
        rule = HistoryRule(_expand(entity_type), tuple(sorted({_expand(a) for a in attrs})), float(keep_days), source)
        key = (rule.type, rule.attrs)
        known = self._declared.get(key)
        if known is not None and known.keep_days <= rule.keep_days:
            if known != rule:
                log.warning("retention of %s: %s days (%s) kept, %s days (%s) ignored", rule.describe(),
                            known.keep_days, known.source, rule.keep_days, rule.source)
            return
        self._declared[key] = rule
        self._sweeps.arm(min(FIRST_SWEEP_S, self.settings.sweep_interval_s))

    def rules(self) -> list[HistoryRule]:
        """The history rules in force: the declared defaults, each overridden by a settings rule of the same
        type and attributes (its source then says what it overrides)."""
        merged = dict(self._declared)
        for key, rule in self._configured.items():
            declared = self._declared.get(key)
            merged[key] = rule if declared is None else HistoryRule(
                rule.type, rule.attrs, rule.keep_days,
                f"settings (overrides {declared.source}: {declared.keep_days:g} days)")
        return sorted(merged.values(), key=lambda r: (r.type, r.attrs))

    @property
    def active(self) -> bool:
        """Whether there is anything to delete at all (else no sweep is scheduled)."""
        s = self.settings
        return bool(self._declared or self._configured) or any(
            days is not None for days in (s.default_history_days, s.audit_days, s.ops_closed_days, s.alarms_closed_days,
                                          s.alerts_closed_days, s.dead_letters_days))

    def _history_jobs(self) -> list[tuple[str, str, float, HistoryScope]]:
        """(rule, source, days, scope) per history rule, and for the default. A type's rule without attributes
        leaves the attributes of that type's rules with attributes to them (the more specific rule wins)."""
        rules = self.rules()
        jobs: list[tuple[str, str, float, HistoryScope]] = []
        for rule in rules:
            excluding = () if rule.attrs else tuple((o.type, o.attrs) for o in rules if o.type == rule.type and o.attrs)
            jobs.append((rule.describe(), rule.source, rule.keep_days, HistoryScope((rule.type,), rule.attrs, excluding)))
        if self.settings.default_history_days is not None:
            jobs.append(("every type without a rule", "settings", self.settings.default_history_days,
                         HistoryScope(None, (), tuple((r.type, r.attrs) for r in rules))))
        return jobs

    # -- lifecycle -----------------------------------------------------------------------------------------
    async def start(self) -> None:
        for caveat in audit_caveats(self.settings) if self.scheduled else ():  # workers never sweep
            log.warning("%s", caveat)
        self._stopping = False
        self._sweeps.start(min(FIRST_SWEEP_S, self.settings.sweep_interval_s))

    async def stop(self) -> None:
        self._stopping = True  # a sweep under way ends after its current store call
        await self._sweeps.stop()

    def health(self) -> dict[str, Any]:
        """Always ok (a failed sweep is retried, it does not make the server unready): counts and the last error."""
        t = self._totals
        return {"ok": True, "active": self.active, "scheduled": self.scheduled, "historyRules": len(self.rules()),
                "sweeps": t.sweeps, "running": self._sweeps.busy,
                "lastSweep": t.last_sweep, "nextSweep": to_iso(self._sweeps.next) if self._sweeps.next else None,
                "lastDeleted": dict(t.last), "deleted": dict(t.deleted), "failures": t.failures,
                "lastError": t.last_error}

    async def _scheduled_sweep(self) -> list[PurgeResult]:
        return await self.sweep()  # each rule's failure stays its own; Periodic logs anything else

    async def settle(self) -> None:
        """Until the sweep under way (if any) has finished (tests: after moving the clock past a sweep)."""
        await self._sweeps.settle()

    # -- sweeping ------------------------------------------------------------------------------------------
    async def sweep(self, dry_run: bool = False) -> list[PurgeResult]:
        """One pass over every rule, each deleting in batches until nothing older than its cutoff is left. A
        dry run counts what would go, deletes nothing and writes no audit line. The audit log's own rule runs
        last, so that this sweep's lines are written before it (they are new: it never deletes them)."""
        now = self.clock.now()
        s = self.settings
        results: list[PurgeResult] = []
        jobs: list[tuple[PurgeResult, HistoryScope | None]] = [
            (PurgeResult("history", rule, source, days, _cutoff(now, days)), scope)
            for rule, source, days, scope in self._history_jobs()]
        for data, limit in (("ops-events", s.ops_closed_days), ("alarms", s.alarms_closed_days),
                            ("alerts", s.alerts_closed_days), ("dead-letters", s.dead_letters_days),
                            ("audit", s.audit_days)):
            if limit is not None:
                jobs.append((PurgeResult(data, f"retention.{_SETTING[data]}", "settings", limit, _cutoff(now, limit)), None))
        earlier: list[tuple[HistoryScope, int]] = []  # the history rules run so far, with their cutoffs (µs)
        for result, scope in jobs:
            if self._stopping:
                break
            await self._purge(result, scope, now, dry_run, tuple(earlier))
            if scope is not None:
                earlier.append((scope, _before(now, result.keep_days)))
            results.append(result)
            if not dry_run and (result.deleted or result.related or result.error):
                await self._record(result)
        if not dry_run:
            self._count(results, now)
            if any(r.deleted or r.related for r in results):
                await self._release()
        return results

    async def _release(self) -> None:
        """Make what the sweep deleted leave the store's files now (SQLite: a WAL checkpoint that truncates the
        -wal file, QA10 F7), where the store does such a thing; a failure is logged, the next sweep tries again."""
        release = getattr(self.store, "release_deleted", None)
        if release is None:
            return
        try:
            await release()
        except Exception:
            log.exception("retention: releasing the deleted rows from the store's files failed")

    async def _purge(self, result: PurgeResult, scope: HistoryScope | None, now: datetime, dry_run: bool,
                     earlier: tuple[tuple[HistoryScope, int], ...] = ()) -> None:
        """Run one rule in batches of `retention.batch`, yielding to the loop between them; a failure is logged
        and kept in `result` (the next sweep starts over). `earlier`: the history rules this sweep ran before
        (their scopes and cutoffs), which a dry run must not count again."""
        before = _before(now, result.keep_days)
        batch = self.settings.batch
        try:
            if scope is not None and dry_run:
                result.deleted += await self._dry_history(scope, before, earlier)
                return
            if scope is not None:
                cursor: int | None = 0
                while cursor is not None and not self._stopping:
                    deleted, cursor = await self.store.purge_history(scope, before, batch, cursor, dry_run,
                                                                     tenants=result.tenants)
                    result.deleted += deleted
                    await asyncio.sleep(0)
                return
            while not self._stopping:
                if result.data == "audit":
                    deleted, related = await self.store.purge_audit(before, batch, dry_run, result.tenants), 0
                elif result.data == "ops-events":
                    deleted, related = await self.store.purge_ops_events(before, batch, dry_run, result.tenants)
                elif result.data == "dead-letters":
                    deleted, related = await self._purge_dead_letters(before, batch, dry_run, result.tenants), 0
                elif result.data == "alerts":
                    deleted, related = await self._purge_alerts(before, batch, dry_run, result.tenants)
                else:
                    deleted, related = await self.store.purge_alarms(before, batch, dry_run, result.tenants)
                result.deleted += deleted
                result.related += related
                if dry_run or deleted < batch:
                    return
                await asyncio.sleep(0)
        except Exception as exc:  # the store failed (down, locked, full disk): the next sweep tries again
            log.exception("retention of %s %s failed after %d deletions", result.data, result.rule, result.deleted)
            result.error = f"{type(exc).__name__}: {exc}"[:300]
        finally:
            if result.deleted or result.related:
                log.info("retention: %s %s%s: %s %d%s (older than %s, %s)", result.data, result.rule,
                         " (dry run)" if dry_run else "", "would delete" if dry_run else "deleted", result.deleted,
                         f", {result.related} related" if result.related else "", result.cutoff, result.source)

    async def _purge_dead_letters(self, before: int, limit: int, dry_run: bool, tenants: TenantCounts) -> int:
        """Delete at most `limit` dead letters (every tenant) that failed before `before` (µs); how many (a dry run:
        how many there are). They are documents (kind `DEAD_LETTERS`, failure time `failedAt`): few, read whole."""
        cutoff = to_iso(from_micros(before))
        old = [(tenant, key) for tenant, key, doc in await self.store.list_docs(DEAD_LETTERS)
               if str(doc.get("failedAt") or "") < cutoff]
        if dry_run:  # counts them all, as the other purges' dry runs do
            return len(old)
        old = old[:limit]
        if not old:
            return 0
        await self.store.delete_docs(DEAD_LETTERS, old)
        for tenant, _ in old:
            add_counts(tenants, {tenant: [1, 0]})
        return len(old)

    async def _purge_alerts(self, before: int, limit: int, dry_run: bool, tenants: TenantCounts) -> tuple[int, int]:
        """Delete at most `limit` `Alert` entities (every tenant) of cleared or closed alarms last changed before
        `before` (µs), each with its whole history; (Alerts, history rows: instances, series and the temporal
        entity). An Alert qualifies when it has a `validTo` before the cutoff (the store's query: an active alarm's
        Alert has none) and `_alert_expired`. Each deletion is conditional: an Alert changed since it was read stays. A dry run
        counts every one."""
        query = _expired_alerts_q(before)
        deleted = history = 0
        page_size = min(limit, 1000)
        for tenant in await self.store.tenants():
            offset = 0
            while dry_run or deleted < limit:
                page, _ = await self.store.query_entities(tenant, EntityQuery(
                    types=TypeExpr(((_expand("Alert"),),)), q=query, limit=page_size, offset=offset))
                old = [doc for doc in page if await self._alert_expired(tenant, doc, before)]
                gone: list[str] = []
                if dry_run:
                    deleted += len(old)
                elif old:
                    gone = await self._delete_alerts(tenant, old[:limit - deleted])
                    rows = 0
                    for alert_id in gone:
                        rows += await self.store.delete_history(tenant, alert_id)
                    deleted, history = deleted + len(gone), history + rows
                    add_counts(tenants, {tenant: [len(gone), rows]})
                if len(page) < page_size or self._stopping:
                    break
                offset += len(page) - len(gone)  # the deleted ones no longer count in the next page's offset
                await asyncio.sleep(0)
            if not dry_run and deleted >= limit:
                break
        return deleted, history

    async def _alert_expired(self, tenant: str, doc: Doc, before: int) -> bool:
        """Whether an Alert the query found may go (`_purge_alerts`): an alarm's (a `rule`, an alarm's `status`:
        not an Alert a client wrote through NGSI-LD), cleared or closed, unchanged since the cutoff, and its alarm, if
        still stored, not active (the Alert is written after the alarm: it may lag)."""
        attrs = doc.get("attrs", {})
        status = (attrs.get(_expand("status")) or [{}])[0].get("value")
        modified = doc.get("modifiedAt")
        if status not in _ENDED_ALARM or _expand("rule") not in attrs:  # active, or an Alert a client wrote
            return False
        if not isinstance(modified, str) or to_micros(parse_iso(modified)) >= before:
            return False
        alarm_id = str(doc["id"]).removeprefix(ALERT_PREFIX)
        alarm = await self.store.get_alarm(tenant, alarm_id) if alarm_id != doc["id"] else None
        return alarm is None or alarm.get("status") not in _ACTIVE_ALARM

    async def _delete_alerts(self, tenant: str, docs: list[Doc]) -> list[str]:
        """Delete the Alerts `docs` unless changed since they were read; the ids deleted."""
        mutations = [Mutation(doc["id"], _delete_unchanged(doc)) for doc in docs]
        results = await self.store.mutate(tenant, mutations, Context(actor=ACTOR))
        for result in results:
            if isinstance(result, Exception):
                raise result
        return [doc["id"] for doc, result in zip(docs, results, strict=True)
                if isinstance(result, Outcome) and result.result == "deleted"]

    async def _dry_history(self, scope: HistoryScope, before: int, earlier: tuple[tuple[HistoryScope, int], ...]) -> int:
        """What the sweep would delete under `scope`: its instances older than `before` that the rules it runs
        first have not deleted already. The rules of an entity of several types overlap (a [Vehicle, Car] entity
        has both types' rules), and a series an earlier rule covers keeps only what is younger than that rule's
        cutoff by the time this one runs: counted under each rule, the QA's dry run said 40 where the sweep then
        deleted 31. So: the series no earlier rule emptied past `before` count what is older than `before`, less,
        for those an earlier rule did cover, what is older than the latest such cutoff (one more pass per cutoff
        actually found, none for entities of one type)."""
        share = _Share(scope.types, scope.attrs, scope.excluding, earlier, before)
        counted = await self._count_history(share, before)
        for cutoff in sorted(share.seen):
            exactly = _Share(scope.types, scope.attrs, scope.excluding, earlier, before, cutoff)
            counted -= await self._count_history(exactly, cutoff)
        return counted

    async def _count_history(self, scope: HistoryScope, before: int) -> int:
        """A dry run's count of the instances `scope` covers older than `before`, over every window of series."""
        counted = 0
        cursor: int | None = 0
        while cursor is not None and not self._stopping:
            found, cursor = await self.store.purge_history(scope, before, self.settings.batch, cursor, True)
            counted += found
            await asyncio.sleep(0)
        return counted

    async def _record(self, result: PurgeResult) -> None:
        """The audit lines of one rule's deletions: what, by which rule, the cutoff and the counts, never the data;
        one in each tenant whose data it deleted, with that tenant's counts. A failed rule's line (with the error)
        is also written in the default tenant, where the platform's operators look, with what it deleted there."""
        counts = dict(result.tenants)
        if result.error is not None or not counts:
            counts.setdefault(self.tenant, [0, 0] if counts else [result.deleted, result.related])
        at = to_micros(self.clock.now())
        rows = [AuditRow(tenant, at, "retention", "purged", ACTOR, result.audit_doc(mine),
                         outcome="failed" if result.error else "ok") for tenant, mine in sorted(counts.items())]
        try:
            await self.store.append_audit(rows)
        except Exception:
            log.exception("the audit lines of a retention purge were not written: %s", result.audit_doc())

    def _count(self, results: list[PurgeResult], now: datetime) -> None:
        t = self._totals
        t.sweeps += 1
        t.last_sweep = to_iso(now)
        t.last = {}
        for r in results:
            key = _HEALTH_KEY[r.data]
            t.last[key] = t.last.get(key, 0) + r.deleted
            t.deleted[key] = t.deleted.get(key, 0) + r.deleted
            if r.data in _RELATED_KEY:
                related = _RELATED_KEY[r.data]
                t.last[related] = t.last.get(related, 0) + r.related
                t.deleted[related] = t.deleted.get(related, 0) + r.related
            if r.error is not None:
                t.failures += 1
                t.last_error = f"{r.data} {r.rule}: {r.error}"


_SETTING = {"ops-events": "ops_closed_days", "alarms": "alarms_closed_days", "audit": "audit_days",
            "dead-letters": "dead_letters_days", "alerts": "alerts_closed_days"}
_HEALTH_KEY = {"history": "historyInstances", "audit": "auditLines", "ops-events": "opsEvents", "alarms": "alarms",
               "dead-letters": "deadLetters", "alerts": "alerts"}
# The document kind of the alarms' dead letters (ucity/alarms/dispatch.py `DEAD_LETTERS`; the store layer does not
# import the alarms: a test checks that both say the same).
DEAD_LETTERS = "alarm-dead-letter"
_RELATED_KEY = {"ops-events": "grants", "alarms": "alarmHistory", "alerts": "alertHistory"}
# The Alert entity of an alarm and its active statuses (ucity/alarms/model.py `Alarm.alert_id`, `ACTIVE_STATUSES`;
# the store layer does not import the alarms: a test checks that both say the same).
ALERT_PREFIX = "urn:ngsi-ld:Alert:"
_ACTIVE_ALARM = ("active-unacknowledged", "active-acknowledged")
_ENDED_ALARM = ("cleared-unacknowledged", "cleared-acknowledged", "closed")


def _expired_alerts_q(before: int) -> QFilter:
    """`validTo<cutoff`, as the store compiles it to SQL: the Alerts of alarms cleared before the cutoff."""
    from ucity.ngsild.context import core_context
    from ucity.ngsild.qlang import parse_q

    return QFilter(parse_q(f"validTo<{to_iso(from_micros(before))}"), core_context().expand_term)


def _delete_unchanged(seen: Doc) -> ApplyFn:
    """Delete the entity unless it changed since it was read as `seen` (its alarm changed it again)."""

    def apply(before: Doc | None, now: str) -> Outcome:
        if before is None or before.get("modifiedAt") != seen.get("modifiedAt"):
            return Outcome(before, "update", changed=False, result="changed-meanwhile")
        return Outcome(None, "delete", frozenset(before.get("attrs", {})), (), result="deleted")

    return apply


def _cutoff(now: datetime, days: float) -> str:
    return to_iso(now - timedelta(days=days))


def _before(now: datetime, days: float) -> int:
    """A rule's cutoff in µs, as the store compares it."""
    return to_micros(now - timedelta(days=days))


@dataclass(frozen=True, slots=True)
class _Share(HistoryScope):
    """A dry run's share of one history rule's series (`_dry_history`), told apart by the latest cutoff of the
    `earlier` rules that cover a series too (what they left of it is younger): with `exactly`, the series whose
    latest such cutoff is that one; else those with none or one before `below`, each such cutoff noted in `seen`
    (the store calls `covers` once per series and window, one call at a time)."""

    earlier: tuple[tuple[HistoryScope, int], ...] = ()
    below: int = 0
    exactly: int | None = None
    seen: set[int] = field(default_factory=set, compare=False)

    def covers(self, types: list[str], attr: str) -> bool:
        if not HistoryScope.covers(self, types, attr):  # (no zero-argument super() in a slots dataclass)
            return False
        latest = max((cutoff for scope, cutoff in self.earlier if scope.covers(types, attr)), default=None)
        if self.exactly is not None:
            return latest == self.exactly
        if latest is not None and latest >= self.below:
            return False  # an earlier rule has already deleted everything this one would
        if latest is not None:
            self.seen.add(latest)
        return True
