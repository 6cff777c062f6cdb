"""QA13 F4: `RuleCleared` and `RuleSpike` carry the entity's parent (`parent_id`) as `RuleMatched` does, also after a
restart (the parent is in the rule state's snapshot), so a domain that keeps state per parent (a household of care
devices) needs no entity -> parent map of its own. F5: what a domain needs is exported by `ucity.rules`."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from ucity.core.clock import FakeClock
from ucity.rules.events import RuleCleared, RuleMatched, RuleSpike

from .support import tilt_rule
from .test_engine import BUILDING, SENSOR, START, open_city

LOCATION = {"type": "Point", "coordinates": [126.88, 37.49]}


async def test_cleared_and_spike_name_the_parent_as_the_match_does(tmp_path: Path) -> None:
    city = await open_city(tmp_path, FakeClock(START), [tilt_rule(samples=3)])
    try:
        await city.write(SENSOR, "StructuralSensor", tiltX=0.0, location=LOCATION, controlledAsset=BUILDING)
        for value in (0.007, 0.0075, 0.0):  # two samples: a spike
            await city.tilt(value)
        for value in (0.007, 0.0071, 0.0072, 0.0002):  # three: a match, then cleared
            await city.tilt(value)
        [spike], [matched], [cleared] = city.of(RuleSpike), city.of(RuleMatched), city.of(RuleCleared)
        assert matched.parent_id == spike.parent_id == cleared.parent_id == BUILDING
    finally:
        await city.app.stop()


async def test_cleared_after_a_restart_names_the_parent(tmp_path: Path) -> None:
    rule = tilt_rule(samples=3)
    first = await open_city(tmp_path, FakeClock(START), [rule])
    await first.write(SENSOR, "StructuralSensor", tiltX=0.0, location=LOCATION, controlledAsset=BUILDING)
    for value in (0.007, 0.0071, 0.0072):
        await first.tilt(value)
    assert [m.parent_id for m in first.of(RuleMatched)] == [BUILDING]
    await first.app.stop()
    second = await open_city(tmp_path, FakeClock(START + timedelta(minutes=40)), [rule])
    try:
        await second.tilt(0.0002)
        [cleared] = second.of(RuleCleared)
        assert (cleared.entity_id, cleared.parent_id) == (SENSOR, BUILDING)
    finally:
        await second.app.stop()


def test_the_public_surface_a_domain_needs() -> None:
    import ucity.rules as rules
    from ucity.rules.engine import RulesEngine
    from ucity.rules.evaluate import RuleState
    from ucity.rules.events import RuleStatesRestored

    assert (rules.RulesEngine, rules.RuleState, rules.RuleStatesRestored) == (RulesEngine, RuleState,
                                                                              RuleStatesRestored)
    assert set(rules.Level.__args__) == set(rules.LEVELS)  # the Literal of level names
    assert {"RulesEngine", "RuleState", "Level", "RuleStatesRestored"} <= set(rules.__all__)
