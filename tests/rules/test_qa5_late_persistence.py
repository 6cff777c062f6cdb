"""QA5 F2: SHM-R4 persistence on late (replayed, store-and-forward) readings.

A duration ("held for 15 minutes") is met by a sample observed that long after the first one, or, with
no later sample, by a timer. The timer used to run from the first sample's observedAt on the platform
clock, so one high reading dated 40 minutes ago met it at once when the readings after it came one
request each: a serious alarm with `samples 1`. The timer now counts the remaining duration from when
the newest sample was evaluated, so the outcome no longer depends on how the readings were batched.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ucity.core.bus import Context
from ucity.core.clock import FakeClock, to_iso
from ucity.ngsild.ops import append_op
from ucity.rules.evaluate import Decision, Matched, Observation, RuleState, Spiked, evaluate, tick
from ucity.rules.events import RuleMatched, RuleSpike
from ucity.rules.model import Rule
from ucity.store.base import Mutation

from .support import tilt_rule
from .test_engine import CTX, SENSOR, START, TENANT, City, iri, open_city

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
SHM_R4 = tilt_rule(samples=3, duration=900)  # 3 samples or 15 minutes (domain default)
SPIKE = [0.0, 0.008, 0.0, 0.0]  # 10 minutes apart, only the second is serious (s7b_latespike.py)


def backlog(values: list[float], start: datetime, minutes: float = 10) -> list[tuple[datetime, float]]:
    return [(start + timedelta(minutes=minutes * k), v) for k, v in enumerate(values)]


def one_by_one(rule: Rule, readings: list[tuple[datetime, float]], now: datetime,
               state: RuleState | None = None) -> tuple[RuleState, list[Decision]]:
    """Each reading as its own request: evaluated, then the timer check the engine runs after a batch."""
    state = state or RuleState()
    out: list[Decision] = []
    for at, value in readings:
        state, decisions = evaluate(rule, state, Observation("tiltX", value, at), now)
        out += decisions
        if state.wake_at is not None and state.wake_at <= now:
            state, decisions = tick(rule, state, now)
            out += decisions
    return state, out


# -- pure evaluation ----------------------------------------------------------------------------
def test_a_single_late_high_reading_is_a_spike_not_a_serious_alarm() -> None:
    state, decisions = one_by_one(SHM_R4, backlog(SPIKE, NOW - timedelta(minutes=40)), NOW)
    assert [d for d in decisions if isinstance(d, Matched)] == []
    [spike] = decisions
    assert isinstance(spike, Spiked) and (spike.level, spike.evidence["samples"]) == ("serious", 1)
    assert state.level is None and not state.pending


def test_the_timer_of_a_late_reading_runs_from_when_it_was_heard() -> None:
    first = NOW - timedelta(minutes=40)
    state, decisions = one_by_one(SHM_R4, [(first, 0.008)], NOW)
    assert decisions == [] and state.wake_at == NOW + timedelta(minutes=15)  # not first + 15 min (long past)
    _, decisions = tick(SHM_R4, state, NOW + timedelta(minutes=14, seconds=59))
    assert decisions == []
    _, decisions = tick(SHM_R4, state, NOW + timedelta(minutes=15))
    [matched] = decisions
    assert isinstance(matched, Matched) and matched.level == "serious"
    assert matched.at == first + timedelta(minutes=15)  # stamped in observation time
    assert matched.evidence["confirmedBy"] == "timer" and matched.evidence["lastSampleAt"] == to_iso(first)


def test_the_remaining_duration_counts_from_the_newest_sample_heard() -> None:
    first = NOW - timedelta(minutes=40)
    state, decisions = one_by_one(SHM_R4, backlog([0.008, 0.008], first), NOW)  # held 10 min of the 15
    assert decisions == [] and state.wake_at == NOW + timedelta(minutes=5)


def test_a_late_excursion_held_by_its_samples_is_raised_at_once_and_stamped_by_them() -> None:
    rule = tilt_rule(samples=None, duration=900)
    readings = backlog([0.008, 0.008, 0.008, 0.0], NOW - timedelta(minutes=40))
    _, decisions = one_by_one(rule, readings, NOW)
    matched, cleared = decisions
    assert isinstance(matched, Matched) and matched.at == NOW - timedelta(minutes=20)  # the third sample: 20 >= 15 min
    assert matched.evidence["confirmedBy"] == "duration" and matched.evidence["samples"] == 3
    assert cleared.at == NOW - timedelta(minutes=10)


@pytest.mark.parametrize("lateness", [timedelta(minutes=10), timedelta(minutes=40), timedelta(days=2)])
def test_the_outcome_does_not_depend_on_the_batching(lateness: timedelta) -> None:
    """The same backlog replayed in one array, in pairs, or one reading per request (a second apart)."""
    start = NOW - timedelta(minutes=30) - lateness
    for values in (SPIKE, [0.0, 0.008, 0.008, 0.0], [0.0, 0.008, 0.008, 0.008], [0.004, 0.008, 0.0, 0.008]):
        readings = backlog(values, start)
        outcomes = []
        for size in (4, 2, 1):
            state, seen = RuleState(), []
            for k in range(0, len(readings), size):
                chunk = readings[k:k + size]
                now = NOW + timedelta(seconds=k)
                for at, value in chunk:
                    state, decisions = evaluate(SHM_R4, state, Observation("tiltX", value, at), now)
                    seen += decisions
                if state.wake_at is not None and state.wake_at <= now:  # what the engine does after a batch
                    state, decisions = tick(SHM_R4, state, now)
                    seen += decisions
            outcomes.append([(type(d).__name__, getattr(d, "level", None), d.at) for d in seen])
        assert outcomes[0] == outcomes[1] == outcomes[2], values
        assert not any(kind == "Matched" for kind, _, _ in outcomes[0]) or values[-1] == 0.008, values


def test_a_live_reading_keeps_its_timer_at_the_observed_instant() -> None:
    state, _ = one_by_one(SHM_R4, [(NOW, 0.008)], NOW)
    assert state.wake_at == NOW + timedelta(minutes=15)
    assert RuleState.from_json(state.to_json()) == state  # the lag survives a snapshot


def test_snapshots_written_before_the_lag_existed_read_back_as_live() -> None:
    state, _ = one_by_one(SHM_R4, [(NOW, 0.008)], NOW)
    data = state.to_json()
    for pending in data["pending"].values():
        del pending["lag"]
    assert RuleState.from_json(data) == state


# -- the engine: one request per reading vs one array -------------------------------------------
@pytest.fixture
async def city(tmp_path: Path) -> AsyncIterator[City]:
    city = await open_city(tmp_path, FakeClock(START), [SHM_R4])
    try:
        yield city
    finally:
        await city.app.stop()


def _doc(value: float, observed: datetime) -> dict[str, object]:
    return {"id": SENSOR, "type": [CTX.expand_type("StructuralSensor")],
            "attrs": {iri("tiltX"): [{"type": "Property", "value": value, "observedAt": to_iso(observed)}]}}


@pytest.mark.parametrize("batched", [False, True], ids=["one-request-each", "one-array"])
async def test_engine_late_spike_is_a_spike_however_it_is_batched(city: City, batched: bool) -> None:
    readings = backlog(SPIKE, START - timedelta(minutes=40))
    if batched:
        mutations = [Mutation(SENSOR, append_op(_doc(v, at), create_if_missing=True)) for at, v in readings]
        await city.app.store.mutate(TENANT, mutations, Context(actor="test"))
        await city.app.publisher.drain()
    else:
        for at, value in readings:
            await city.write(SENSOR, "StructuralSensor", observed=at, tiltX=value)
    await city.advance(timedelta(hours=1))
    assert city.of(RuleMatched) == []
    [spike] = city.of(RuleSpike)
    assert (spike.level, spike.evidence["samples"]) == ("serious", 1)


async def test_engine_late_reading_with_nothing_after_it_is_raised_fifteen_minutes_after_arrival(city: City) -> None:
    observed = START - timedelta(minutes=40)
    await city.write(SENSOR, "StructuralSensor", observed=observed, tiltX=0.008)
    await city.advance(timedelta(minutes=14, seconds=59))
    assert city.of(RuleMatched) == []
    await city.advance(timedelta(seconds=1))
    [matched] = city.of(RuleMatched)
    assert matched.level == "serious" and matched.evidence["confirmedBy"] == "timer"
    assert matched.observed_at == to_iso(observed + timedelta(minutes=15))
