"""The pure evaluators, kind by kind: explicit times in, decisions out (no clock, no I/O)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ucity.rules.evaluate import (
    DEFAULT_ENV,
    Cleared,
    Decision,
    Env,
    Matched,
    Observation,
    RuleState,
    Spiked,
    evaluate,
    ladder_level,
    outside_metres,
    theil_sen,
    tick,
)
from ucity.rules.model import (
    Circle,
    Compare,
    Composite,
    Edge,
    EventMatch,
    Geofence,
    Persistence,
    Polygon,
    RateOfChange,
    Rule,
    Suppression,
    Term,
    Text,
    Threshold,
)

from .support import HYSTERESIS, TILT_EDGES, hours, inactivity_rule, kst, tilt_rule

T0 = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
FAR = datetime(2030, 1, 1, tzinfo=UTC)  # `now` far ahead: evaluation must use the observation times


def feed(rule: Rule, readings: list[tuple[datetime, Any]], state: RuleState | None = None,
         attribute: str | None = None, values: Mapping[str, Any] | None = None,
         ) -> tuple[RuleState, list[list[Decision]]]:
    """Evaluate readings in order; the decisions of each reading."""
    state = state or RuleState()
    name = attribute or rule.attributes[0]
    out: list[list[Decision]] = []
    for at, value in readings:
        state, decisions = evaluate(rule, state, Observation(name, value, at, values or {}), FAR)
        out.append(decisions)
    return state, out


def levels(steps: list[list[Decision]]) -> list[str | None]:
    """One entry per reading: the new level, 'clear', 'spike:<level>' or None."""
    out: list[str | None] = []
    for decisions in steps:
        names = [d.level if isinstance(d, Matched) else "clear" if isinstance(d, Cleared) else f"spike:{d.level}"
                 for d in decisions]
        out.append(",".join(names) if names else None)
    return out


def every(minutes: int, values: list[Any], start: datetime = T0) -> list[tuple[datetime, Any]]:
    return [(start + timedelta(minutes=minutes * k), v) for k, v in enumerate(values)]


# -- threshold ladder ---------------------------------------------------------------------------
def test_ladder_goes_up_each_level_and_down_through_the_hysteresis_band() -> None:
    rule = tilt_rule(samples=None)
    readings = [0.001, 0.0015, 0.0025, 0.004, 0.007, 0.0063, 0.006, 0.0030, 0.0009, 0.0008]
    state, steps = feed(rule, every(10, readings))
    # serious holds at 0.0063 (clear edge 1/150 - 0.0005 = 0.006167); 0.006 falls back to warning;
    # 0.0030 still warning (clear 1/300 - 0.0005 = 0.002833); 0.0009 is interest (clear 0.000833).
    assert levels(steps) == [None, "interest", "caution", "warning", "serious", None, "warning", None,
                             "interest", "clear"]
    assert state.level is None
    first = steps[1][0]
    assert isinstance(first, Matched) and first.previous is None and first.evidence["value"] == 0.0015
    down = steps[6][0]
    assert isinstance(down, Matched) and (down.level, down.previous) == ("warning", "serious")


def test_abs_direction_counts_negative_tilt() -> None:
    _, steps = feed(tilt_rule(samples=None), every(10, [-0.007, 0.0]))
    assert levels(steps) == ["serious", "clear"]


def test_below_ladder_and_per_level_clear_edges() -> None:
    rule = Rule(id="cold", name=Text(en="Cold room"), condition=Threshold(
        attribute="temperature", direction="below",
        edges=(Edge(level="caution", at=10.0, clear_at=12.0), Edge(level="serious", at=5.0, clear_at=6.0))))
    _, steps = feed(rule, every(10, [15.0, 9.0, 11.5, 4.0, 5.5, 6.5, 12.5]))
    assert levels(steps) == [None, "caution", None, "serious", None, "caution", "clear"]


def test_ladder_level_is_pure_arithmetic() -> None:
    assert ladder_level(TILT_EDGES, "above", HYSTERESIS, 1 / 150, None) == "serious"  # edges are inclusive
    assert ladder_level(TILT_EDGES, "above", HYSTERESIS, 1 / 150 - 0.0001, "serious") == "serious"
    assert ladder_level(TILT_EDGES, "above", HYSTERESIS, 1 / 150 - 0.0001, None) == "warning"


# -- persistence --------------------------------------------------------------------------------
def test_three_consecutive_samples_raise_once() -> None:
    state, steps = feed(tilt_rule(samples=3), every(10, [0.007, 0.007, 0.0071, 0.0072, 0.007]))
    assert levels(steps) == [None, None, "serious", None, None]
    raised = steps[2][0]
    assert isinstance(raised, Matched)
    assert raised.evidence["samples"] == 3 and raised.evidence["heldSince"] == "2026-03-02T00:00:00.000000Z"
    assert raised.evidence["peak"] == 0.0071
    assert state.level == "serious" and not state.pending


def test_two_sample_spike_is_a_spike_not_an_alarm() -> None:
    state, steps = feed(tilt_rule(samples=3), every(10, [0.007, 0.0075, 0.0001, 0.0001]))
    assert levels(steps) == [None, None, "spike:serious", None]
    spike = steps[2][0]
    assert isinstance(spike, Spiked)
    assert (spike.evidence["samples"], spike.evidence["peak"], spike.evidence["durationSeconds"]) == (2, 0.0075, 600.0)
    assert state.level is None and not state.pending


def test_persistence_counts_samples_per_level() -> None:
    # warning, serious, serious: three samples at warning or worse -> warning; serious needs a third.
    _, steps = feed(tilt_rule(samples=3), every(10, [0.004, 0.007, 0.007, 0.007]))
    assert levels(steps) == [None, None, "warning", "serious"]


def test_ending_excursion_above_a_confirmed_level_is_a_spike_of_that_level() -> None:
    _, steps = feed(tilt_rule(samples=3), every(10, [0.004, 0.004, 0.004, 0.007, 0.004]))
    assert levels(steps) == [None, None, "warning", None, "spike:serious"]


def test_duration_persistence_raises_on_the_timer_at_the_due_instant() -> None:
    rule = tilt_rule(samples=None, duration=900)
    state, decisions = evaluate(rule, RuleState(), Observation("tiltX", 0.007, T0), T0)  # live: now = observedAt
    assert decisions == []
    assert state.wake_at == T0 + timedelta(seconds=900)
    state, decisions = tick(rule, state, T0 + timedelta(seconds=899))
    assert decisions == [] and state.wake_at == T0 + timedelta(seconds=900)
    state, decisions = tick(rule, state, T0 + timedelta(seconds=1000))
    assert [(d.level, d.at) for d in decisions if isinstance(d, Matched)] == [("serious", T0 + timedelta(seconds=900))]
    assert state.level == "serious" and state.wake_at is None


def test_duration_persistence_also_met_by_a_later_sample() -> None:
    _, steps = feed(tilt_rule(samples=None, duration=900), every(10, [0.007, 0.007, 0.007]))
    assert levels(steps) == [None, None, "serious"]  # 20 min >= 15 min at the third sample


def test_samples_or_duration_whichever_first() -> None:
    rule = tilt_rule(samples=3, duration=900)
    _, steps = feed(rule, every(1, [0.007, 0.007, 0.007]))
    assert levels(steps) == [None, None, "serious"]  # three samples in 2 minutes
    state, _ = evaluate(rule, RuleState(), Observation("tiltX", 0.007, T0), T0)  # live: now = observedAt
    _, decisions = tick(rule, state, T0 + timedelta(minutes=15))
    assert [d.level for d in decisions if isinstance(d, Matched)] == ["serious"]  # one sample, 15 minutes


def test_observations_older_than_the_newest_are_ignored_and_future_ones_count_as_now() -> None:
    rule = tilt_rule(samples=None)
    state, _ = feed(rule, [(T0, 0.007)])
    state, decisions = evaluate(rule, state, Observation("tiltX", 0.0, T0 - timedelta(minutes=1)), FAR)
    assert decisions == [] and state.level == "serious"
    now = T0 + timedelta(minutes=5)
    state, decisions = evaluate(rule, state, Observation("tiltX", 0.0, T0 + hours(5)), now)
    assert [d.at for d in decisions] == [now] and state.last_at == now


def test_non_numeric_values_are_ignored() -> None:
    state, steps = feed(tilt_rule(samples=None), every(10, ["n/a", True, None]))
    assert levels(steps) == [None, None, None] and state == RuleState()


# -- rate of change -----------------------------------------------------------------------------
def test_theil_sen_slope_is_robust_to_an_outlier() -> None:
    points = [(float(d), 0.1 + 0.002 * d) for d in range(11)]
    points[9] = (9.0, 5.0)  # one wild reading, late in the window
    slope = theil_sen(points)
    assert slope == pytest.approx(0.002, rel=1e-9)
    # least squares would be dragged far off by that one point
    n = len(points)
    mt, mv = sum(t for t, _ in points) / n, sum(v for _, v in points) / n
    ols = sum((t - mt) * (v - mv) for t, v in points) / sum((t - mt) ** 2 for t, _ in points)
    assert abs(ols - 0.002) > 0.0001


def crack_rate_rule() -> Rule:
    # SHM-R2 rate part: >= 0.05 mm per 30 days -> at least caution ([D]).
    return Rule(id="shm-crack-rate", name=Text(en="Crack opening rate"), condition=RateOfChange(
        attribute="crackOpening", window_seconds=30 * 86400, per_seconds=30 * 86400,
        edges=(Edge(level="caution", at=0.05), Edge(level="serious", at=0.5)), min_samples=5))


def test_rate_of_change_raises_on_a_steady_trend_despite_an_outlier() -> None:
    daily = [0.10 + 0.002 * d for d in range(10)]  # 0.06 mm per 30 days
    daily[3] = 2.0  # a knock on the crack meter
    state, steps = feed(crack_rate_rule(), every(24 * 60, daily))
    assert levels(steps)[:4] == [None, None, None, None]  # fewer than 5 samples: no slope yet
    raised = [d for step in steps for d in step if isinstance(d, Matched)]
    assert [d.level for d in raised] == ["caution"]
    assert raised[0].evidence["rate"] == pytest.approx(0.06, abs=0.006)
    assert state.level == "caution"


def test_rate_of_change_ignores_a_single_outlier_on_a_flat_series() -> None:
    flat = [0.1] * 10
    flat[6] = 3.0
    state, steps = feed(crack_rate_rule(), every(24 * 60, flat))
    assert all(step == [] for step in steps) and state.level is None


def test_rate_window_drops_old_samples() -> None:
    rule = crack_rate_rule()
    state, _ = feed(rule, every(24 * 60, [0.1] * 40))
    assert len(state.data["samples"]) == 31  # 30 days back, both ends included


# -- inactivity ---------------------------------------------------------------------------------
def report(rule: Rule, state: RuleState, at: datetime, attribute: str = "motionCount", value: Any = 3,
           env: Env = DEFAULT_ENV) -> tuple[RuleState, list[Decision]]:
    return evaluate(rule, state, Observation(attribute, value, at), at, env)


def run_until(rule: Rule, state: RuleState, until: datetime, env: Env = DEFAULT_ENV,
              ) -> tuple[RuleState, list[tuple[str, datetime]]]:
    """Tick at every wake_at up to `until`, as the engine's timers would."""
    fired: list[tuple[str, datetime]] = []
    while state.wake_at is not None and state.wake_at <= until:
        state, decisions = tick(rule, state, state.wake_at, env)
        fired += [(d.level, d.at) for d in decisions if isinstance(d, Matched)]
    return state, fired


def test_inactivity_ladder_8_12_24_hours_without_schedule() -> None:
    rule = inactivity_rule(sleep=False)
    start = kst(2026, 3, 2, 8)
    state, decisions = report(rule, RuleState(), start)
    assert decisions == [] and state.wake_at == start + hours(8)
    state, fired = run_until(rule, state, start + hours(30))
    assert fired == [("interest", start + hours(8)), ("warning", start + hours(12)), ("serious", start + hours(24))]
    state, decisions = report(rule, state, start + hours(30))
    assert [type(d) for d in decisions] == [Cleared] and state.level is None
    assert state.wake_at == start + hours(38)


def test_inactivity_sleep_window_does_not_count() -> None:
    rule = inactivity_rule(sleep=True)
    start = kst(2026, 3, 2, 8)  # last motion at 08:00 KST
    state, _ = report(rule, RuleState(), start)
    state, fired = run_until(rule, state, start + hours(40))
    # 8 h -> 16:00, 12 h -> 20:00, then 15 h counted by 23:00; 23:00-06:00 paused; 9 h more -> 15:00.
    assert fired == [("interest", kst(2026, 3, 2, 16)), ("warning", kst(2026, 3, 2, 20)),
                     ("serious", kst(2026, 3, 3, 15))]


def test_inactivity_step_that_would_fall_in_the_sleep_window_waits_for_the_morning() -> None:
    rule = inactivity_rule(sleep=True)
    start = kst(2026, 3, 2, 14)
    state, _ = report(rule, RuleState(), start)
    state, fired = run_until(rule, state, kst(2026, 3, 3, 5, 59))
    assert fired == [("interest", kst(2026, 3, 2, 22))]
    assert state.wake_at == kst(2026, 3, 3, 9)  # 9 h by 23:00, 3 h more after 06:00
    quiet, decisions = tick(rule, state, kst(2026, 3, 3, 2))  # a stray tick at 02:00: still nothing
    assert decisions == [] and quiet.level == "interest"
    _, fired = run_until(rule, state, kst(2026, 3, 3, 9))
    assert fired == [("warning", kst(2026, 3, 3, 9))]


def test_inactivity_defer_mode_counts_the_night_but_raises_after_it() -> None:
    rule = inactivity_rule(sleep=True, mode="defer")
    start = kst(2026, 3, 2, 14)
    state, _ = report(rule, RuleState(), start)
    _, fired = run_until(rule, state, kst(2026, 3, 3, 14))
    assert fired == [("interest", kst(2026, 3, 2, 22)), ("warning", kst(2026, 3, 3, 6)),
                     ("serious", kst(2026, 3, 3, 14))]


def test_inactivity_counts_only_activity_when_told() -> None:
    base = inactivity_rule(sleep=False)
    cond = base.condition
    rule = Rule(id=base.id, name=base.name, condition=type(cond)(  # type: ignore[call-arg]
        attributes=cond.attributes, steps=cond.steps, counts_if=Compare(op=">", value=0)))  # type: ignore[union-attr]
    start = kst(2026, 3, 2, 8)
    state, _ = report(rule, RuleState(), start, value=2)
    state, _ = report(rule, state, start + hours(4), value=0)  # a periodic report of no motion
    assert state.wake_at == start + hours(8)
    state, _ = report(rule, state, start + hours(5), value=1)
    assert state.wake_at == start + hours(13)


def test_inactivity_suppressed_while_away() -> None:
    rule = inactivity_rule(sleep=False, suppression=Suppression(attribute="away"))
    start = kst(2026, 3, 2, 8)
    state, _ = report(rule, RuleState(), start)
    state, _ = report(rule, state, start + hours(2), attribute="away", value=True)
    assert state.wake_at is None and state.data["banked"] == 7200.0
    state, fired = run_until(rule, state, start + hours(40))
    assert fired == []
    state, _ = report(rule, state, start + hours(40), attribute="away", value=False)
    # 2 h counted before leaving; interest 6 h after coming back
    assert state.wake_at == start + hours(46)
    _, fired = run_until(rule, state, start + hours(47))
    assert fired == [("interest", start + hours(46))]


def test_inactivity_suppressed_by_a_registered_predicate() -> None:
    rule = inactivity_rule(sleep=False, suppression=Suppression(predicate="hospital", attributes=("careStatus",)))
    env = Env(predicates={"hospital": lambda values, now: values.get("careStatus") == "hospitalised"})
    start = kst(2026, 3, 2, 8)
    state, _ = evaluate(rule, RuleState(), Observation("motionCount", 1, start, {"careStatus": "hospitalised"}), start, env)
    assert state.wake_at is None
    _, fired = run_until(rule, state, start + hours(30), env)
    assert fired == []
    state, _ = evaluate(rule, state, Observation("careStatus", "home", start + hours(30)), start + hours(30), env)
    assert state.wake_at == start + hours(38)


def test_inactivity_counts_from_the_first_report_heard() -> None:
    rule = inactivity_rule(sleep=False)
    start = kst(2026, 3, 2, 8)
    state, _ = report(rule, RuleState(), start, attribute="someOther", value=1)  # not an activity attribute
    assert state.wake_at == start + hours(8) and state.data["last"] is None


# -- geofence -----------------------------------------------------------------------------------
HOME = (126.8874, 37.4954)  # lon, lat near Guro-gu office
SQUARE = (((126.886, 37.494), (126.889, 37.494), (126.889, 37.497), (126.886, 37.497), (126.886, 37.494)),)


def point(lon: float, lat: float) -> dict[str, Any]:
    return {"type": "Point", "coordinates": [lon, lat]}


def metres_east(metres: float) -> dict[str, Any]:
    # metres per degree of longitude at 37.4954° N (WGS84): about 88,520
    return point(HOME[0] + metres / 88_520.0, HOME[1])


def fence(trigger: str, area: Circle | Polygon, **kw: Any) -> Rule:
    return Rule(id=f"fence-{trigger}", name=Text(en="Fence"), entity_types=("Person",),
                condition=Geofence(area=area, trigger=trigger, level="warning", **kw))  # type: ignore[arg-type]


CIRCLE = Circle(center=HOME, radius_metres=100.0)


def test_circle_distances_are_metres() -> None:
    assert outside_metres(CIRCLE, metres_east(150)) == pytest.approx(50.0, abs=0.5)
    assert outside_metres(CIRCLE, metres_east(20)) == pytest.approx(-80.0, abs=0.5)


def test_circle_exit_and_return_with_margin() -> None:
    rule = fence("exit", CIRCLE, margin_metres=20.0)
    readings = [metres_east(d) for d in (10, 110, 130, 90, 150)]
    _, steps = feed(rule, every(1, readings))
    # 110 m is within the 20 m margin: still inside; 130 m is out; 90 m is back in; 150 m out again.
    assert levels(steps) == [None, None, "warning", "clear", "warning"]
    left = steps[2][0]
    assert isinstance(left, Matched) and left.evidence["outsideMetres"] == pytest.approx(30.0, abs=0.5)


def test_exit_needs_a_known_inside_unless_initial() -> None:
    _, steps = feed(fence("exit", CIRCLE), every(1, [metres_east(300), metres_east(400)]))
    assert levels(steps) == [None, None]
    _, steps = feed(fence("exit", CIRCLE, initial=True), every(1, [metres_east(300)]))
    assert levels(steps) == ["warning"]


def test_circle_enter() -> None:
    _, steps = feed(fence("enter", CIRCLE), every(1, [metres_east(300), metres_east(50), metres_east(60),
                                                      metres_east(300)]))
    assert levels(steps) == [None, "warning", None, "clear"]


def test_polygon_enter_and_exit() -> None:
    area = Polygon(coordinates=SQUARE)
    inside, outside = point(126.8875, 37.4955), point(126.8920, 37.4955)
    _, steps = feed(fence("enter", area), every(1, [outside, inside, inside, outside]))
    assert levels(steps) == [None, "warning", None, "clear"]
    _, steps = feed(fence("exit", area), every(1, [inside, outside, inside]))
    assert levels(steps) == [None, "warning", "clear"]
    assert outside_metres(area, outside) == pytest.approx((126.8920 - 126.889) * 88_520, rel=0.01)


def test_dwell_in_a_polygon_raises_after_the_time_on_the_timer() -> None:
    rule = fence("dwell", Polygon(coordinates=SQUARE), dwell_seconds=600)
    inside, outside = point(126.8875, 37.4955), point(126.8920, 37.4955)
    state, steps = feed(rule, [(T0, outside), (T0 + timedelta(minutes=1), inside)])
    assert levels(steps) == [None, None] and state.wake_at == T0 + timedelta(minutes=11)
    state, decisions = tick(rule, state, T0 + timedelta(minutes=11))
    assert [(d.level, d.at) for d in decisions if isinstance(d, Matched)] == [("warning", T0 + timedelta(minutes=11))]
    state, decisions = evaluate(rule, state, Observation("location", outside, T0 + timedelta(minutes=12)), FAR)
    assert [type(d) for d in decisions] == [Cleared]


def test_dwell_in_a_circle_met_by_a_sample() -> None:
    rule = fence("dwell", CIRCLE, dwell_seconds=300, initial=True)
    _, steps = feed(rule, every(3, [metres_east(10), metres_east(20), metres_east(30)]))
    assert levels(steps) == [None, None, "warning"]


# -- event rules --------------------------------------------------------------------------------
def test_latched_event_raises_at_once_and_clears_when_it_stops() -> None:
    rule = Rule(id="care-fire", name=Text(ko="화재 감지", en="Fire detected"),
                condition=EventMatch(attribute="smokeDetected", level="serious"))
    _, steps = feed(rule, every(1, [False, True, True, False, 1]))
    assert levels(steps) == [None, "serious", None, "clear", None]  # the number 1 is not `true`


def test_momentary_event_matches_every_press() -> None:
    rule = Rule(id="care-button", name=Text(ko="응급 버튼", en="Emergency button"),
                condition=EventMatch(attribute="buttonPressCount", when=Compare(op=">", value=0),
                                     level="serious", latch=False))
    state, steps = feed(rule, every(1, [0, 1, 2, 0]))
    assert levels(steps) == [None, "serious", "serious", None]
    assert state.level is None


def test_event_in_a_list_of_values() -> None:
    rule = Rule(id="door", name=Text(en="Door"), condition=EventMatch(
        attribute="doorState", when=Compare(op="in", value=("forced", "alarm")), level="caution"))
    _, steps = feed(rule, every(1, ["closed", "forced", "alarm", "closed"]))
    assert levels(steps) == [None, "caution", None, "clear"]


# -- composite ----------------------------------------------------------------------------------
def composite(mode: str) -> Rule:
    # Electric fire style: leakage current AND temperature (values are test values).
    return Rule(id=f"efire-{mode}", name=Text(en="Leak and heat"), condition=Composite(
        mode=mode, level="warning",  # type: ignore[arg-type]
        terms=(Term(attribute="leakageCurrent", op=">=", value=30), Term(attribute="temperature", op=">=", value=60))))


def test_composite_and_needs_every_term() -> None:
    rule = composite("and")
    steps = []
    state = RuleState()
    for k, values in enumerate([{"leakageCurrent": 35, "temperature": 40}, {"leakageCurrent": 35, "temperature": 65},
                                {"leakageCurrent": 10, "temperature": 65}]):
        state, decisions = evaluate(rule, state, Observation("temperature", values["temperature"],
                                                             T0 + timedelta(minutes=k), values), FAR)
        steps.append(decisions)
    assert levels(steps) == [None, "warning", "clear"]
    matched = steps[1][0]
    assert isinstance(matched, Matched)
    assert matched.evidence["values"] == {"leakageCurrent": 35, "temperature": 65}


def test_composite_or_needs_one_term_and_missing_values_do_not_match() -> None:
    rule = composite("or")
    state, d1 = evaluate(rule, RuleState(), Observation("temperature", 20, T0, {"temperature": 20}), FAR)
    state, d2 = evaluate(rule, state, Observation("leakageCurrent", 31, T0 + timedelta(minutes=1),
                                                  {"leakageCurrent": 31, "temperature": 20}), FAR)
    state, d3 = evaluate(rule, state, Observation("leakageCurrent", 1, T0 + timedelta(minutes=2),
                                                  {"leakageCurrent": 1, "temperature": 20}), FAR)
    assert levels([d1, d2, d3]) == [None, "warning", "clear"]


def test_composite_with_persistence() -> None:
    base = composite("and")
    rule = Rule(id=base.id, name=base.name, condition=base.condition, persistence=Persistence(samples=2))
    hot = {"leakageCurrent": 40, "temperature": 70}
    _, steps = feed(rule, every(1, [70, 70]), attribute="temperature", values=hot)
    assert levels(steps) == [None, "warning"]


# -- state snapshots ----------------------------------------------------------------------------
def test_state_round_trips_through_json() -> None:
    rule = tilt_rule(samples=3, duration=900)
    state, _ = feed(rule, every(10, [0.004, 0.007]))
    assert state.pending and state.wake_at is not None
    assert RuleState.from_json(state.to_json()) == state
    inactive, _ = report(inactivity_rule(), RuleState(), T0)
    assert RuleState.from_json(inactive.to_json()) == inactive
