"""Pure rule evaluation: `(rule, state, observation, now) -> (new_state, decisions)`.

No I/O and no clock reads: time comes in as the observation's time and `now`. The engine keeps
one `RuleState` per (tenant, rule, entity), feeds it every observation of the rule's attributes
in observation order, and calls `tick(rule, state, now)` when the state's `wake_at` comes (a
running duration, an inactivity step, a dwell time).

Decisions:

* `Matched(level, previous)` the confirmed level changed to `level` (a raise, an escalation or a
  fall back to a lower level while still above normal); also every report of a non-latched
  event rule (a button press).
* `Cleared(previous)` the condition no longer holds (past its hysteresis band).
* `Spiked(level)` an excursion to `level` ended before its persistence was met: logged as a
  spike (an earthquake, a knock), never an alarm.

Observation times: an `observedAt` later than `now` counts as `now` (a device clock running
ahead must not push a duration into the future); an observation older than the newest one
already evaluated for the same state is ignored, so the order of samples is the order of time.

Persistence by duration: met by a sample observed `durationSeconds` after the first one (observation
time only), or by the timer when no sample contradicts the level. The timer runs behind by how late
the newest sample was (`Pending.lag`, see `_due`): a late reading (a replayed or store-and-forward
backlog) waits for the readings observed after it, so the decision is the same whether a backlog comes
in one request or one reading per request (QA5 F2).
"""

from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from ucity.core.clock import parse_iso_clamped, to_iso
from ucity.core.frozen import fast_init
from ucity.ngsild.geo import GeoQuery, parse_geoquery
from ucity.rules import schedule
from ucity.rules.events import LEVELS, level_rank
from ucity.rules.model import (
    DEFAULT_TIMEZONE,
    Area,
    Circle,
    Compare,
    Composite,
    Edge,
    EventMatch,
    Geofence,
    Inactivity,
    Persistence,
    RateOfChange,
    Rule,
    Suppression,
    Threshold,
)

Predicate = Callable[[Mapping[str, Any], datetime], bool]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# -- inputs and outputs -------------------------------------------------------------------------
@fast_init
@dataclass(frozen=True, slots=True)
class Observation:
    """One attribute instance written to an entity, in the rule's own attribute names.

    `values` holds the entity's latest values of the other attributes the rule reads (composite
    terms, suppression attributes), as of this observation.
    """

    attribute: str
    value: Any
    at: datetime
    values: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Env:
    """What evaluation may depend on besides the rule: the default zone and named predicates."""

    timezone: str = DEFAULT_TIMEZONE
    predicates: Mapping[str, Predicate] = field(default_factory=dict)


DEFAULT_ENV = Env()


@dataclass(frozen=True, slots=True)
class Pending:
    """A level indicated but not yet confirmed: since when, how many samples, the worst value.

    `lag` is how late the newest of its samples was when it was evaluated (platform clock minus its
    observation time, seconds): the timer of a duration runs that much behind (see `_due`), so a late
    (replayed, store-and-forward) sample waits for the samples after it instead of meeting the duration
    at once.
    """

    since: datetime
    last: datetime
    samples: int
    peak: float | None
    lag: float = 0.0

    def add(self, at: datetime, value: float | None, lag: float = 0.0) -> Pending:
        return Pending(self.since, at, self.samples + 1, _worse(self.peak, value), lag)

    def to_json(self) -> dict[str, Any]:
        return {"since": to_iso(self.since), "last": to_iso(self.last), "samples": self.samples, "peak": self.peak,
                "lag": self.lag}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Pending:
        return cls(parse_iso_clamped(data["since"]), parse_iso_clamped(data["last"]), int(data["samples"]), data.get("peak"),
                   float(data.get("lag") or 0.0))  # snapshots written before `lag` existed: 0 (live)


def _worse(a: float | None, b: float | None) -> float | None:
    if a is None or b is None:
        return a if b is None else b
    return a if abs(a) >= abs(b) else b


@fast_init
@dataclass(frozen=True, slots=True)
class RuleState:
    """The state of one rule for one entity; JSON round-trips for snapshots."""

    level: str | None = None
    since: datetime | None = None  # when the confirmed level was reached
    pending: Mapping[str, Pending] = field(default_factory=dict)
    last_at: datetime | None = None  # newest observation evaluated
    wake_at: datetime | None = None  # when `tick` must run next
    data: Mapping[str, Any] = field(default_factory=dict)  # kind-specific, JSON-ready

    def to_json(self) -> dict[str, Any]:
        return {
            "level": self.level, "since": _iso(self.since), "lastAt": _iso(self.last_at),
            "wakeAt": _iso(self.wake_at), "pending": {k: p.to_json() for k, p in self.pending.items()},
            "data": dict(self.data),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RuleState:
        return cls(
            level=data.get("level"), since=_time(data.get("since")), last_at=_time(data.get("lastAt")),
            wake_at=_time(data.get("wakeAt")),
            pending={k: Pending.from_json(v) for k, v in (data.get("pending") or {}).items()},
            data=dict(data.get("data") or {}),
        )


def _iso(value: datetime | None) -> str | None:
    return None if value is None else to_iso(value)


def _time(value: Any) -> datetime | None:
    return parse_iso_clamped(value) if isinstance(value, str) else None  # stored state: read back, never refused


@dataclass(frozen=True, slots=True)
class Matched:
    level: str
    at: datetime
    previous: str | None
    evidence: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Cleared:
    at: datetime
    previous: str | None
    evidence: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Spiked:
    level: str
    at: datetime
    evidence: dict[str, Any]


Decision = Matched | Cleared | Spiked
Result = tuple[RuleState, list[Decision]]


# -- entry points -------------------------------------------------------------------------------
def evaluate(rule: Rule, state: RuleState, obs: Observation, now: datetime, env: Env = DEFAULT_ENV) -> Result:
    """Apply one observation to a rule's state for one entity."""
    at = min(obs.at, now)
    if state.last_at is not None and at < state.last_at:
        return state, []
    cond = rule.condition
    lag = (now - at).total_seconds()  # how late the sample is: a duration's timer waits that much longer
    if isinstance(cond, Threshold):
        return _threshold(rule, cond, state, obs, at, lag)
    if isinstance(cond, RateOfChange):
        return _rate(rule, cond, state, obs, at, lag)
    if isinstance(cond, Inactivity):
        return _inactivity(cond, state, obs, at, env)
    if isinstance(cond, Geofence):
        return _geofence(cond, state, obs, at)
    if isinstance(cond, EventMatch):
        return _event(rule, cond, state, obs, at, lag)
    return _composite(rule, cond, state, obs, at, lag)


def tick(rule: Rule, state: RuleState, now: datetime, env: Env = DEFAULT_ENV) -> Result:
    """Let time pass up to `now` without a new observation (the state's `wake_at` has come)."""
    cond = rule.condition
    if isinstance(cond, Inactivity):
        return _inactivity_tick(cond, state, now, env)
    if isinstance(cond, Geofence):
        return _dwell_tick(cond, state, now)
    return _pending_tick(rule, state, now)


# -- late observations (QA9 F9) ------------------------------------------------------------------
def late_level(rule: Rule, state: RuleState, obs: Observation) -> str | None:
    """The level an observation older than the newest evaluated one indicates, when it is above the confirmed level
    (threshold, latched event, composite; the hysteresis of the confirmed level applies), else None. Rates,
    inactivity and geofences depend on the order of their samples: None."""
    cond = rule.condition
    raw: str | None
    if isinstance(cond, Threshold):
        value = number(obs.value)
        if value is None:
            return None
        raw = ladder_level(cond.edges, cond.direction, cond.hysteresis, value, state.level)
    elif isinstance(cond, EventMatch) and cond.latch:
        raw = cond.level if compare(cond.when, obs.value) else None
    elif isinstance(cond, Composite):
        values = {**obs.values, obs.attribute: obs.value}
        results = [compare(t, values.get(t.attribute)) for t in cond.terms]
        raw = cond.level if (all(results) if cond.mode == "and" else any(results)) else None
    else:
        return None
    return raw if _rank(raw) > _rank(state.level) else None


def late(rule: Rule, state: RuleState, obs: Observation, now: datetime) -> Result:
    """A late observation (older than the newest evaluated) that is worse than an active level: the level goes up
    to what it indicates (`Matched`, `evidence.late`), as a live one would have done; nothing is ever lowered or
    cleared by it. Only while a level is confirmed (an alarm to escalate: with none, the newer observations already
    said normal, the excursion is over) and only when one sample confirms a level (no persistence, or `samples: 1`:
    the newer samples, already evaluated, decide a longer persistence). The engine bounds how late (`late_window_s`).
    """
    level = late_level(rule, state, obs)
    persistence = rule.persistence
    if level is None or state.level is None or not (persistence is None or persistence.samples == 1):
        return state, []
    at = min(obs.at, now)
    pending = {lv: p for lv, p in state.pending.items() if level_rank(lv) > level_rank(level)}
    evidence = {"attribute": obs.attribute, "value": obs.value, "observedAt": to_iso(at), "late": True,
                "newestAt": to_iso(state.last_at) if state.last_at else None}
    if persistence is not None:
        evidence["confirmedBy"] = "samples"
    new = replace(state, level=level, since=at, pending=pending, wake_at=_next_wake(persistence, pending))
    return new, [Matched(level, at, state.level, evidence)]


# -- a changed rule -------------------------------------------------------------------------------
def rebase(old: Rule, new: Rule, state: RuleState) -> RuleState:
    """The state from which a changed rule `new` re-evaluates an entity's latest values (engine `_rebase`, QA9 F1).

    The confirmed level stays (an alarm whose latest value still breaches under the new rule stays raised; falling
    back or clearing is immediate, a higher level needs the new rule's persistence), nothing is pending (an
    excursion under way starts again under the new rule), no observation counts as the newest yet. A rate's
    samples and a geofence's inside/since are kept while the new rule reads the same kind of condition on the
    same attributes; other kinds keep no data.
    """
    same = type(old.condition) is type(new.condition) and old.attributes == new.attributes
    data = state.data if same and isinstance(new.condition, RateOfChange | Geofence) else {}
    return RuleState(level=state.level, since=state.since, data=dict(data))


def reassess_inactivity(rule: Rule, state: RuleState, now: datetime, env: Env = DEFAULT_ENV) -> Result:
    """An inactivity rule changed: the level its steps give for the time counted so far (the state's last report,
    suppression and banked time are kept), compared with the confirmed one: the same level stays (no decision), a
    different one is `Matched` (higher or lower), none is `Cleared`."""
    cond = rule.condition
    assert isinstance(cond, Inactivity)
    new, decisions = _inactivity_tick(cond, replace(state, level=None, since=None, wake_at=None), now, env)
    if new.level == state.level:
        return _with_wake(cond, replace(new, since=state.since), env), []
    if new.level is None:
        assert state.level is not None
        return new, [Cleared(now, state.level, {"attributes": list(cond.attributes),
                                                "lastReported": state.data.get("last")})]
    [matched] = [d for d in decisions if isinstance(d, Matched)]
    return new, [Matched(matched.level, matched.at, state.level, matched.evidence)]


# -- comparisons --------------------------------------------------------------------------------
def number(value: Any) -> float | None:
    """A finite number, or None (booleans are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _same(a: Any, b: Any) -> bool:
    # True == 1 in Python; a boolean rule operand must not match a count of 1.
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    return bool(a == b)


def compare(rule_cmp: Compare, value: Any) -> bool:
    """Whether `value <op> operand` holds; never raises (a wrong type simply does not match)."""
    op, operand = rule_cmp.op, rule_cmp.value
    if op == "in":
        return isinstance(operand, tuple) and any(_same(value, o) for o in operand)
    if op == "==":
        return _same(value, operand)
    if op == "!=":
        return not _same(value, operand)
    left, right = number(value), number(operand)
    if left is None or right is None:
        return False
    return {">": left > right, ">=": left >= right, "<": left < right, "<=": left <= right}[op]


# -- ladders and persistence --------------------------------------------------------------------
def ladder_level(edges: tuple[Edge, ...], direction: str, hysteresis: float, value: float,
                 current: str | None) -> str | None:
    """The level a value indicates, given the confirmed level `current` (hysteresis).

    A level at or below the confirmed one holds until the value passes its clear edge; a level
    above it needs its raise edge.
    """
    sign = -1.0 if direction == "below" else 1.0
    x = abs(value) if direction == "abs" else value
    held = _rank(current)
    best: str | None = None
    for edge in edges:
        bound = edge.at if level_rank(edge.level) > held else _clear_edge(edge, sign, hysteresis)
        if sign * x >= sign * bound:
            best = edge.level
    return best


def _clear_edge(edge: Edge, sign: float, hysteresis: float) -> float:
    return edge.clear_at if edge.clear_at is not None else edge.at - sign * hysteresis


def _rank(level: str | None) -> int:
    return -1 if level is None else level_rank(level)


def _persisted(persistence: Persistence | None, pending: Pending, at: datetime) -> bool:
    """Met by the samples: their count, or a sample observed `durationSeconds` or more after the first one."""
    if persistence is None:
        return True
    if persistence.samples is not None and pending.samples >= persistence.samples:
        return True
    return persistence.duration_seconds is not None and at >= _held(pending, persistence.duration_seconds)


def _held(pending: Pending, seconds: float) -> datetime:
    """The observation time at which the level has held `seconds` (the instant a timer match is stamped)."""
    return pending.since + timedelta(seconds=seconds)


def _due(pending: Pending, seconds: float) -> datetime:
    """When, on the platform clock, a duration counts as met without a later sample (the timer).

    The remaining duration is counted from when the newest sample was evaluated, not from when it was
    observed: `since + seconds + lag`, i.e. `evaluated + (seconds - (last - since))`. A live sample
    (lag about 0) is due at `since + seconds`, as before; a late one (a replayed or store-and-forward
    backlog) waits for the samples observed after it, which are on their way too, so a single old
    reading cannot meet the duration at once, and the outcome does not depend on whether the backlog
    came in one request or one reading per request (QA5 F2).
    """
    return pending.since + timedelta(seconds=seconds + pending.lag)


def _next_wake(persistence: Persistence | None, pending: Mapping[str, Pending]) -> datetime | None:
    if persistence is None or persistence.duration_seconds is None or not pending:
        return None
    seconds = persistence.duration_seconds
    return min(_due(p, seconds) for p in pending.values())


def _settle(rule: Rule, state: RuleState, raw: str | None, at: datetime, value: float | None,
            evidence: dict[str, Any], lag: float = 0.0) -> Result:
    """Move a level-producing rule to the level `raw` indicates, honouring its persistence."""
    confirmed = state.level
    indicated = [lv for lv in LEVELS if _rank(confirmed) < level_rank(lv) <= _rank(raw)]
    decisions: list[Decision] = []
    pending = dict(state.pending)
    ended = [lv for lv in pending if lv not in indicated]
    if ended:
        top = max(ended, key=level_rank)
        decisions.append(_spike(top, pending[top], at, evidence))
        for lv in ended:
            del pending[lv]
    for lv in indicated:
        previous = pending.get(lv)
        pending[lv] = Pending(at, at, 1, value, lag) if previous is None else previous.add(at, value, lag)
    level = raw if _rank(raw) < _rank(confirmed) else confirmed
    ready = [lv for lv, p in pending.items() if _persisted(rule.persistence, p, at)]
    if ready:
        level = max(ready, key=level_rank)
        evidence = {**evidence, **_persistence_evidence(pending[level], rule.persistence)}
        if rule.persistence is not None:
            met = rule.persistence.samples is not None and pending[level].samples >= rule.persistence.samples
            evidence["confirmedBy"] = "samples" if met else "duration"
        pending = {lv: p for lv, p in pending.items() if level_rank(lv) > level_rank(level)}
    new = replace(state, pending=pending, last_at=at, wake_at=_next_wake(rule.persistence, pending))
    return _transition(new, confirmed, level, at, evidence, decisions)


def _transition(state: RuleState, previous: str | None, level: str | None, at: datetime,
                evidence: dict[str, Any], decisions: list[Decision]) -> Result:
    if level == previous:
        return state, decisions
    if level is None:
        decisions.append(Cleared(at, previous, evidence))
        return replace(state, level=None, since=None), decisions
    decisions.append(Matched(level, at, previous, evidence))
    return replace(state, level=level, since=at), decisions


def _spike(level: str, pending: Pending, at: datetime, evidence: dict[str, Any]) -> Spiked:
    return Spiked(level, at, {
        **evidence, "level": level, "samples": pending.samples, "peak": pending.peak,
        "since": to_iso(pending.since), "durationSeconds": (pending.last - pending.since).total_seconds(),
        "endedAt": to_iso(at),
    })


def _persistence_evidence(pending: Pending, persistence: Persistence | None) -> dict[str, Any]:
    if persistence is None:
        return {}
    return {"samples": pending.samples, "heldSince": to_iso(pending.since), "peak": pending.peak}


def _pending_tick(rule: Rule, state: RuleState, now: datetime) -> Result:
    persistence = rule.persistence
    if persistence is None or persistence.duration_seconds is None or not state.pending:
        return replace(state, wake_at=None), []
    seconds = persistence.duration_seconds
    ready = [lv for lv, p in state.pending.items() if now >= _due(p, seconds)]
    if not ready:
        return replace(state, wake_at=_next_wake(persistence, state.pending)), []
    level = max(ready, key=level_rank)
    held = state.pending[level]
    at = _held(held, seconds)  # stamped in observation time, like a match by a sample
    pending = {lv: p for lv, p in state.pending.items() if level_rank(lv) > level_rank(level)}
    # No sample contradicted the level for `seconds` (counted as `_due` says); `lastSampleAt` shows what was seen.
    evidence = {"heldSince": to_iso(held.since), "heldSeconds": seconds, "samples": held.samples, "peak": held.peak,
                "lastSampleAt": to_iso(held.last), "confirmedBy": "timer"}
    new = replace(state, pending=pending, wake_at=_next_wake(persistence, pending))
    return _transition(new, state.level, level, at, evidence, [])


# -- threshold ----------------------------------------------------------------------------------
def _threshold(rule: Rule, cond: Threshold, state: RuleState, obs: Observation, at: datetime, lag: float) -> Result:
    value = number(obs.value)
    if value is None:
        return state, []
    raw = ladder_level(cond.edges, cond.direction, cond.hysteresis, value, state.level)
    if raw is None and state.level is None and not state.pending:
        return _quiet(state, at), []  # the common case: normal, and nothing under way
    evidence = {"attribute": cond.attribute, "value": value, "observedAt": to_iso(at), "direction": cond.direction,
                "edges": {e.level: e.at for e in cond.edges}}
    return _settle(rule, state, raw, at, value, evidence, lag)


def _quiet(state: RuleState, at: datetime) -> RuleState:
    """What `_settle` makes of a state with no level and nothing pending when nothing is indicated either:
    only the newest observation time moves (built directly: `replace` costs more than the evaluation)."""
    return RuleState(None, state.since, {}, at, None, state.data)


# -- rate of change -----------------------------------------------------------------------------
def theil_sen(points: list[tuple[float, float]]) -> float | None:
    """The Theil–Sen slope (median of pairwise slopes) of (t, v) points; None if undefined.

    Robust: up to about 29 % of the points may be outliers without moving it much.
    """
    slopes = [(v2 - v1) / (t2 - t1) for i, (t1, v1) in enumerate(points) for t2, v2 in points[i + 1:] if t2 != t1]
    return statistics.median(slopes) if slopes else None


def _rate(rule: Rule, cond: RateOfChange, state: RuleState, obs: Observation, at: datetime, lag: float) -> Result:
    value = number(obs.value)
    if value is None:
        return state, []
    t = (at - _EPOCH).total_seconds()
    kept = [(float(p[0]), float(p[1])) for p in state.data.get("samples", []) if float(p[0]) >= t - cond.window_seconds]
    points = [*kept, (t, value)][-cond.max_samples:]
    state = replace(state, data={**state.data, "samples": [list(p) for p in points]})
    slope = theil_sen(points) if len(points) >= cond.min_samples else None
    if slope is None:
        return replace(state, last_at=at), []
    rate = slope * cond.per_seconds
    raw = ladder_level(cond.edges, cond.direction, cond.hysteresis, rate, state.level)
    evidence = {"attribute": cond.attribute, "value": value, "observedAt": to_iso(at), "rate": rate,
                "perSeconds": cond.per_seconds, "windowSeconds": cond.window_seconds, "samplesInWindow": len(points),
                "edges": {e.level: e.at for e in cond.edges}}
    return _settle(rule, state, raw, at, rate, evidence, lag)


# -- event and composite ------------------------------------------------------------------------
def _event(rule: Rule, cond: EventMatch, state: RuleState, obs: Observation, at: datetime, lag: float) -> Result:
    matches = compare(cond.when, obs.value)
    evidence = {"attribute": cond.attribute, "value": obs.value, "observedAt": to_iso(at)}
    if not cond.latch:
        decisions: list[Decision] = [Matched(cond.level, at, None, evidence)] if matches else []
        return replace(state, last_at=at), decisions
    return _settle(rule, state, cond.level if matches else None, at, number(obs.value), evidence, lag)


def _composite(rule: Rule, cond: Composite, state: RuleState, obs: Observation, at: datetime, lag: float) -> Result:
    values = {**obs.values, obs.attribute: obs.value}
    results = [compare(t, values.get(t.attribute)) for t in cond.terms]
    holds = all(results) if cond.mode == "and" else any(results)
    evidence = {"mode": cond.mode, "values": {t.attribute: values.get(t.attribute) for t in cond.terms},
                "terms": [{"attribute": t.attribute, "op": t.op, "value": _json_operand(t.value), "holds": r}
                          for t, r in zip(cond.terms, results, strict=True)],
                "observedAt": to_iso(at)}
    return _settle(rule, state, cond.level if holds else None, at, None, evidence, lag)


def _json_operand(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


# -- inactivity ---------------------------------------------------------------------------------
def _inactivity(cond: Inactivity, state: RuleState, obs: Observation, at: datetime, env: Env) -> Result:
    data = dict(state.data)
    values = {**data.get("values", {}), **_watched(cond.suppression, obs.values)}
    values[obs.attribute] = obs.value
    data["values"] = _watched(cond.suppression, values)
    was = bool(data.get("suppressed", False))
    now_suppressed = _suppressed(cond.suppression, values, at, env)
    decisions: list[Decision] = []
    level = state.level
    is_report = obs.attribute in cond.attributes and (cond.counts_if is None or compare(cond.counts_if, obs.value))
    if is_report:
        data.update(last=to_iso(at), banked=0.0, anchor=None if now_suppressed else to_iso(at))
        if level is not None:
            decisions.append(Cleared(at, level, {"attribute": obs.attribute, "value": obs.value,
                                                 "observedAt": to_iso(at), "reason": "reported"}))
            level = None
    elif "anchor" not in data:
        # The first thing heard of this entity starts the count: its last activity is unknown.
        data.update(last=None, banked=0.0, anchor=None if now_suppressed else to_iso(at))
    elif now_suppressed != was:
        data.update(_suppression_change(cond, data, now_suppressed, at, env))
    data["suppressed"] = now_suppressed
    new = replace(state, level=level, since=state.since if level else None, last_at=at, data=data)
    return _with_wake(cond, new, env), decisions


def _watched(suppression: Suppression | None, values: Mapping[str, Any]) -> dict[str, Any]:
    names = suppression.watched if suppression else ()
    return {k: values[k] for k in names if k in values}


def _suppressed(suppression: Suppression | None, values: Mapping[str, Any], at: datetime, env: Env) -> bool:
    if suppression is None:
        return False
    if suppression.attribute is not None and compare(suppression.when, values.get(suppression.attribute)):
        return True
    predicate = env.predicates.get(suppression.predicate) if suppression.predicate else None
    return bool(predicate is not None and predicate(values, at))


def _suppression_change(cond: Inactivity, data: Mapping[str, Any], suppressed: bool, at: datetime,
                        env: Env) -> dict[str, Any]:
    """Bank the counted time when suppression starts; restart counting when it ends."""
    if suppressed:
        return {"banked": _counted(cond, data, at, env), "anchor": None}
    return {"anchor": to_iso(at)}


def _zone(cond: Inactivity, env: Env) -> ZoneInfo:
    name = cond.schedule.timezone if cond.schedule and cond.schedule.timezone else env.timezone
    return _zoneinfo(name)


@functools.lru_cache(maxsize=64)
def _zoneinfo(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _counted(cond: Inactivity, data: Mapping[str, Any], at: datetime, env: Env) -> float:
    """Inactive seconds counted so far: banked before a suppression, plus since the anchor."""
    banked = float(data.get("banked", 0.0))
    anchor = _time(data.get("anchor"))
    if anchor is None or at <= anchor:
        return banked
    sched = cond.schedule
    if sched is None or not sched.exclude or sched.mode == "defer":
        return banked + (at - anchor).total_seconds()
    return banked + schedule.counted_seconds(sched.exclude, _zone(cond, env), anchor, at)


def _step_due(cond: Inactivity, data: Mapping[str, Any], seconds: float, env: Env) -> datetime | None:
    """When the counted inactive time reaches `seconds` (None while suppressed or never)."""
    anchor = _time(data.get("anchor"))
    if anchor is None:
        return None
    remaining = seconds - float(data.get("banked", 0.0))
    sched = cond.schedule
    if sched is None or not sched.exclude:
        return anchor + timedelta(seconds=max(0.0, remaining))
    zone = _zone(cond, env)
    if sched.mode == "defer":
        return schedule.defer_past(sched.exclude, zone, anchor + timedelta(seconds=max(0.0, remaining)))
    return schedule.reach(sched.exclude, zone, anchor, remaining)


def _with_wake(cond: Inactivity, state: RuleState, env: Env) -> RuleState:
    later = [s for s in cond.steps if level_rank(s.level) > _rank(state.level)]
    dues = [d for s in later if (d := _step_due(cond, state.data, s.after_seconds, env)) is not None]
    return replace(state, wake_at=min(dues) if dues else None)


def _inactivity_tick(cond: Inactivity, state: RuleState, now: datetime, env: Env) -> Result:
    data = dict(state.data)
    if "anchor" not in data:
        return replace(state, wake_at=None), []
    suppressed = _suppressed(cond.suppression, data.get("values", {}), now, env)
    if suppressed != bool(data.get("suppressed", False)):
        data.update(_suppression_change(cond, data, suppressed, now, env), suppressed=suppressed)
    reached = [(s, d) for s in cond.steps if (d := _step_due(cond, data, s.after_seconds, env)) is not None and d <= now]
    state = replace(state, data=data)
    if not reached or level_rank(reached[-1][0].level) <= _rank(state.level):
        return _with_wake(cond, state, env), []
    step, due = reached[-1]
    evidence = {"attributes": list(cond.attributes), "lastReported": data.get("last"), "afterSeconds": step.after_seconds,
                "countedSeconds": _counted(cond, data, due, env), "observedAt": to_iso(due)}
    new, decisions = _transition(state, state.level, step.level, due, evidence, [])
    return _with_wake(cond, new, env), decisions


# -- geofence -----------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1024)
def _area_query(area: Area) -> GeoQuery:
    """The area as a geo-query whose `distance_m` measures metres on a plane local to it."""
    if isinstance(area, Circle):
        query = parse_geoquery(f"near;maxDistance=={area.radius_metres}", "Point", list(area.center))
    else:
        query = parse_geoquery("within", "Polygon", [[list(p) for p in ring] for ring in area.coordinates])
    assert query is not None
    return query


def outside_metres(area: Area, geometry: Mapping[str, Any]) -> float | None:
    """How far a GeoJSON geometry is outside the area in metres (<= 0 inside); None if invalid."""
    distance = _area_query(area).distance_m(geometry)
    if distance is None:
        return None
    return distance - area.radius_metres if isinstance(area, Circle) else distance


def _geofence(cond: Geofence, state: RuleState, obs: Observation, at: datetime) -> Result:
    if not isinstance(obs.value, Mapping):
        return state, []
    outside = outside_metres(cond.area, obs.value)
    if outside is None:
        return state, []
    was: bool | None = state.data.get("inside")
    inside = outside <= cond.margin_metres if was else outside <= 0
    evidence = {"attribute": cond.attribute, "value": dict(obs.value), "observedAt": to_iso(at), "trigger": cond.trigger,
                "outsideMetres": round(max(0.0, outside), 3)}
    entered = inside and (was is False or (was is None and cond.initial))
    left = not inside and (was is True or (was is None and cond.initial))
    since = _time(state.data.get("since"))
    if cond.trigger == "dwell":
        since = (at if entered else since) if inside else None
    data = {**state.data, "inside": inside, "since": _iso(since)}
    new = replace(state, last_at=at, data=data)
    if cond.trigger == "dwell":
        return _dwell(cond, new, since, at, evidence)
    hit = entered if cond.trigger == "enter" else left
    holds = inside if cond.trigger == "enter" else not inside
    level = cond.level if hit or (holds and new.level) else None
    return _transition(new, state.level, level, at, evidence, [])


def _dwell(cond: Geofence, state: RuleState, since: datetime | None, at: datetime, evidence: dict[str, Any]) -> Result:
    if since is None:
        return _transition(replace(state, wake_at=None), state.level, None, at, evidence, [])
    due = since + timedelta(seconds=cond.dwell_seconds)
    if at >= due and state.level is None:
        evidence = {**evidence, "insideSince": to_iso(since), "dwellSeconds": cond.dwell_seconds}
        return _transition(replace(state, wake_at=None), None, cond.level, at, evidence, [])
    return replace(state, wake_at=None if state.level else due), []


def _dwell_tick(cond: Geofence, state: RuleState, now: datetime) -> Result:
    since = _time(state.data.get("since"))
    if cond.trigger != "dwell" or since is None or state.level is not None:
        return replace(state, wake_at=None), []
    due = since + timedelta(seconds=cond.dwell_seconds)
    if now < due:
        return replace(state, wake_at=due), []
    evidence = {"attribute": cond.attribute, "insideSince": to_iso(since), "dwellSeconds": cond.dwell_seconds,
                "observedAt": to_iso(due), "trigger": "dwell"}
    return _transition(replace(state, wake_at=None), None, cond.level, due, evidence, [])
