"""QA9 F1 (a rule edit, disable or enable cleared alarms whose latest value still breached, and never raised them
again) and F9 (a late reading worse than the active level was dropped without a trace), on the engine with the
controllable clock."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from ucity.core.clock import FakeClock, to_iso
from ucity.rules.events import RuleCleared, RuleMatched
from ucity.rules.model import Edge, EventMatch, Inactivity, Rule, Step, Text, Threshold

from .support import hours, inactivity_rule, tilt_rule
from .test_engine import HOME_DEVICE, SENSOR, START, TENANT, City, open_city

ADMIN = "admin:admin (김민수)"


def ladder(*edges: tuple[str, float]) -> Threshold:
    return Threshold(attribute="tiltX", edges=tuple(Edge(level=lv, at=at) for lv, at in edges), direction="abs",
                     hysteresis=0.0005)


def tilt(samples: int | None = 1, duration: float | None = None, **condition: float) -> Rule:
    base = tilt_rule(samples=samples, duration=duration)
    if condition:
        base = replace(base, condition=ladder(*condition.items()))
    return base


@pytest.fixture
async def shm(tmp_path: Path) -> AsyncIterator[City]:
    city = await open_city(tmp_path, FakeClock(START), [tilt(samples=1)])
    try:
        await city.write(SENSOR, "StructuralSensor", tiltX=0.0)
        yield city
    finally:
        await city.app.stop()


def level(city: City, rule_id: str = "shm-tilt-x", entity: str = SENSOR) -> str | None:
    state = city.app.rules.state(TENANT, rule_id, entity)
    return None if state is None else state.level


# -- F1: edits ------------------------------------------------------------------------------------------------------
async def test_an_edit_keeps_a_match_whose_latest_value_still_breaches(shm: City) -> None:
    await shm.tilt(0.0035)  # warning (1/300 = 0.00333)
    assert [m.level for m in shm.of(RuleMatched)] == ["warning"]
    shm.clock.advance(hours(3))  # an hourly sensor: no new reading for a while
    await shm.app.rules.replace_rule(TENANT, tilt(interest=0.0015, caution=0.0025, warning=0.0034, serious=0.007),
                                     actor=ADMIN)
    await shm.app.rules.drain()
    assert shm.of(RuleCleared) == [] and [m.level for m in shm.of(RuleMatched)] == ["warning"]  # no clear, no repeat
    assert level(shm) == "warning"
    state = shm.app.rules.state(TENANT, "shm-tilt-x", SENSOR)
    assert state is not None and state.since == START + timedelta(minutes=10)  # still the same match


async def test_an_edit_moves_the_level_as_the_new_ladder_says_and_clears_with_the_actor(shm: City) -> None:
    await shm.tilt(0.0035)
    await shm.app.rules.replace_rule(TENANT, tilt(interest=0.001, caution=0.003, warning=0.005, serious=0.009),
                                     actor=ADMIN)
    lower = shm.of(RuleMatched)[-1]
    assert (lower.level, lower.evidence["previous"], lower.evidence["reason"], lower.evidence["changedBy"]) == (
        "caution", "warning", "rule-changed", ADMIN)
    assert lower.context.actor == ADMIN and shm.of(RuleCleared) == []
    await shm.app.rules.replace_rule(TENANT, tilt(caution=0.01), actor=ADMIN)
    [cleared] = shm.of(RuleCleared)
    assert (cleared.evidence["reason"], cleared.evidence["changedBy"], cleared.evidence["previous"]) == (
        "rule-changed", ADMIN, "caution")
    assert cleared.context.actor == ADMIN and level(shm) is None
    await shm.tilt(0.012)  # the new rule runs as usual
    assert shm.of(RuleMatched)[-1].level == "caution"


async def test_an_edit_that_raises_a_level_needs_the_new_persistence(shm: City) -> None:
    await shm.tilt(0.0035)  # warning
    await shm.app.rules.replace_rule(TENANT, tilt(samples=None, duration=600, caution=0.002, serious=0.003),
                                     actor=ADMIN)
    await shm.app.rules.drain()
    assert [m.level for m in shm.of(RuleMatched)] == ["warning"]  # held: serious is only pending
    await shm.advance(timedelta(seconds=599))
    assert level(shm) == "warning"
    await shm.advance(timedelta(seconds=1))
    assert [m.level for m in shm.of(RuleMatched)] == ["warning", "serious"] and shm.of(RuleCleared) == []


async def test_a_reading_that_arrives_while_the_rule_changes_wins(shm: City) -> None:
    """The re-evaluation reads the entity after the change; a write evaluated in between is newer, and is kept."""
    await shm.tilt(0.0035)
    engine = shm.app.rules
    todo = engine._rebase(lambda key: key[1] == "shm-tilt-x", tilt(samples=1), tilt(samples=1), "rule-changed", ADMIN)
    await shm.write(SENSOR, "StructuralSensor", tiltX=0.0)  # cleared by a reading
    await engine._reevaluate(todo, "rule-changed", ADMIN)
    await engine.drain()
    [cleared] = shm.of(RuleCleared)
    assert "changedBy" not in cleared.evidence and level(shm) is None


async def test_an_entity_without_a_usable_value_is_cleared(shm: City) -> None:
    await shm.tilt(0.0035)
    other = replace(tilt(), condition=replace(ladder(("warning", 0.003)), attribute="tiltY"))
    await shm.app.rules.replace_rule(TENANT, other, actor=ADMIN)
    [cleared] = shm.of(RuleCleared)
    assert cleared.evidence["reason"] == "rule-changed" and level(shm) is None


# -- F1: disable and enable -----------------------------------------------------------------------------------------
async def test_disable_clears_with_the_actor_and_enable_raises_again_where_it_breaches(shm: City) -> None:
    await shm.write("urn:ngsi-ld:StructuralSensor:ok", "StructuralSensor", tiltX=0.0001)
    await shm.tilt(0.0035)
    await shm.app.rules.set_enabled(TENANT, "shm-tilt-x", False, actor=ADMIN)
    [cleared] = shm.of(RuleCleared)
    assert (cleared.evidence["reason"], cleared.evidence["changedBy"], cleared.context.actor) == (
        "rule-disabled", ADMIN, ADMIN)
    shm.clock.advance(hours(1))
    await shm.app.rules.set_enabled(TENANT, "shm-tilt-x", True, actor=ADMIN)
    again = shm.of(RuleMatched)[-1]
    assert (again.entity_id, again.level, again.evidence["reason"], again.evidence["changedBy"]) == (
        SENSOR, "warning", "rule-enabled", ADMIN)
    assert len(shm.of(RuleMatched)) == 2  # the sensor at normal raised nothing
    assert again.observed_at == to_iso(START + timedelta(minutes=10))  # the reading's own time
    await shm.tilt(0.0035)  # and then it runs on: a repeat at the same level is no new match
    assert len(shm.of(RuleMatched)) == 2


async def test_enable_of_a_latched_event_raises_while_the_value_still_matches(tmp_path: Path) -> None:
    fire = Rule(id="qa-ev", name=Text(ko="화재", en="Fire"), entity_types=("CareDevice",),
                condition=EventMatch(attribute="fire", level="serious"))
    press = Rule(id="qa-button", name=Text(ko="비상벨", en="Button"), entity_types=("CareDevice",),
                 condition=EventMatch(attribute="button", level="warning", latch=False))
    city = await open_city(tmp_path, FakeClock(START), [fire, press])
    try:
        await city.write(HOME_DEVICE, "CareDevice", fire=True, button=True)
        assert sorted(m.rule_id for m in city.of(RuleMatched)) == ["qa-button", "qa-ev"]
        for rule_id in ("qa-ev", "qa-button"):
            await city.app.rules.set_enabled(TENANT, rule_id, False, actor=ADMIN)
            await city.app.rules.set_enabled(TENANT, rule_id, True, actor=ADMIN)
        assert [c.rule_id for c in city.of(RuleCleared)] == ["qa-ev"]
        assert sorted(m.rule_id for m in city.of(RuleMatched)) == ["qa-button", "qa-ev", "qa-ev"]  # no new press
        assert level(city, "qa-ev", HOME_DEVICE) == "serious"
    finally:
        await city.app.stop()


async def test_enable_with_a_duration_raises_after_it_if_nothing_contradicts(tmp_path: Path) -> None:
    city = await open_city(tmp_path, FakeClock(START), [tilt(samples=None, duration=900)])
    try:
        await city.tilt(0.0035)
        await city.advance(timedelta(seconds=900))
        assert [m.level for m in city.of(RuleMatched)] == ["warning"]
        await city.app.rules.set_enabled(TENANT, "shm-tilt-x", False, actor=ADMIN)
        await city.advance(hours(2))
        await city.app.rules.set_enabled(TENANT, "shm-tilt-x", True, actor=ADMIN)
        await city.advance(timedelta(seconds=899))
        assert len(city.of(RuleMatched)) == 1
        await city.advance(timedelta(seconds=1))
        assert [m.level for m in city.of(RuleMatched)] == ["warning", "warning"]
    finally:
        await city.app.stop()


# -- F1: inactivity -------------------------------------------------------------------------------------------------
async def test_an_inactivity_edit_reassesses_the_time_counted(tmp_path: Path) -> None:
    city = await open_city(tmp_path, FakeClock(START), [inactivity_rule(sleep=False)])
    try:
        await city.write(HOME_DEVICE, "CareDevice", motionCount=1)
        await city.advance(hours(13))
        assert [m.level for m in city.of(RuleMatched)] == ["interest", "warning"]
        rule = inactivity_rule(sleep=False)
        cond = rule.condition
        assert isinstance(cond, Inactivity)

        def steps(*pairs: tuple[str, float]) -> Rule:
            return replace(rule, condition=replace(cond, steps=tuple(Step(level=lv, after_seconds=h * 3600)
                                                                     for lv, h in pairs)))

        await city.app.rules.replace_rule(TENANT, steps(("interest", 8), ("warning", 12), ("serious", 30)), actor=ADMIN)
        assert len(city.of(RuleMatched)) == 2 and city.of(RuleCleared) == []  # still warning
        await city.app.rules.replace_rule(TENANT, steps(("interest", 8), ("warning", 14)), actor=ADMIN)
        assert city.of(RuleMatched)[-1].level == "interest" and city.of(RuleMatched)[-1].evidence["previous"] == "warning"
        await city.app.rules.replace_rule(TENANT, steps(("warning", 20)), actor=ADMIN)
        [cleared] = city.of(RuleCleared)
        assert (cleared.evidence["reason"], cleared.evidence["changedBy"]) == ("rule-changed", ADMIN)
        await city.advance(hours(7))  # 20 h since the last motion: the new step, on its timer
        assert city.of(RuleMatched)[-1].level == "warning"
    finally:
        await city.app.stop()


# -- F9: late readings ----------------------------------------------------------------------------------------------
async def test_a_late_worse_reading_levels_up_an_active_match_and_is_counted_and_logged(
        shm: City, caplog: pytest.LogCaptureFixture) -> None:
    shm.clock.advance(hours(1))
    now = shm.clock.now()
    await shm.write(SENSOR, "StructuralSensor", observed=now - timedelta(seconds=100), tiltX=0.0035)  # warning
    stats = dict(shm.app.rules.stats)
    with caplog.at_level(logging.INFO, logger="ucity.rules.engine"):
        await shm.write(SENSOR, "StructuralSensor", observed=now - timedelta(seconds=200), tiltX=0.0001)  # late, better
        await shm.write(SENSOR, "StructuralSensor", observed=now - timedelta(seconds=150), tiltX=0.007)  # late, worse
    assert [m.level for m in shm.of(RuleMatched)] == ["warning", "serious"] and shm.of(RuleCleared) == []
    serious = shm.of(RuleMatched)[-1]
    assert serious.evidence["late"] is True and serious.observed_at == to_iso(now - timedelta(seconds=150))
    delta = {k: shm.app.rules.stats[k] - stats[k] for k in ("late", "lateWorse", "lateRaised")}
    assert delta == {"late": 2, "lateWorse": 1, "lateRaised": 1}
    assert shm.app.rules.health()["lateRaised"] == 1
    [line] = [r for r in caplog.records if "late reading" in r.getMessage()]
    assert line.levelno == logging.INFO and "level raised" in line.getMessage()
    await shm.write(SENSOR, "StructuralSensor", observed=now - timedelta(seconds=50), tiltX=0.0035)
    assert shm.of(RuleMatched)[-1].level == "warning"  # the next live reading falls back as usual


async def test_a_late_worse_reading_beyond_the_window_or_without_a_match_is_only_counted(
        shm: City, caplog: pytest.LogCaptureFixture) -> None:
    shm.clock.advance(hours(3))
    now = shm.clock.now()
    await shm.write(SENSOR, "StructuralSensor", observed=now - timedelta(seconds=10), tiltX=0.0035)
    await shm.write(SENSOR, "StructuralSensor", observed=now, tiltX=0.0001)  # cleared: no active match
    with caplog.at_level(logging.INFO, logger="ucity.rules.engine"):
        await shm.write(SENSOR, "StructuralSensor", observed=now - timedelta(seconds=60), tiltX=0.007)  # no match
        shm.clock.advance(timedelta(seconds=1))
        await shm.write(SENSOR, "StructuralSensor", observed=now + timedelta(seconds=1), tiltX=0.0035)  # warning
        await shm.write(SENSOR, "StructuralSensor", observed=now - timedelta(hours=2), tiltX=0.007)  # too late
    assert [m.level for m in shm.of(RuleMatched)] == ["warning", "warning"] and len(shm.of(RuleCleared)) == 1
    assert (shm.app.rules.stats["lateWorse"], shm.app.rules.stats["lateRaised"]) == (2, 0)
    assert [r.getMessage().endswith("ignored") for r in caplog.records if "late reading" in r.getMessage()] == [
        True, True]


async def test_a_late_reading_never_raises_past_a_persistence_of_several_samples(tmp_path: Path) -> None:
    city = await open_city(tmp_path, FakeClock(START), [tilt(samples=2)])
    try:
        now = city.clock.now() + hours(1)
        city.clock.advance(hours(1))
        for seconds in (300, 200):
            await city.write(SENSOR, "StructuralSensor", observed=now - timedelta(seconds=seconds), tiltX=0.0035)
        await city.write(SENSOR, "StructuralSensor", observed=now - timedelta(seconds=250), tiltX=0.007)
        assert [m.level for m in city.of(RuleMatched)] == ["warning"] and city.app.rules.stats["lateWorse"] == 1
    finally:
        await city.app.stop()
