"""Rules as data: JSON both ways, validation on construction, and the schedule arithmetic."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from ucity.rules.model import (
    Circle,
    Compare,
    Composite,
    EventMatch,
    Geofence,
    Persistence,
    Polygon,
    RateOfChange,
    Rule,
    RuleError,
    Schedule,
    Suppression,
    Term,
    Text,
    Window,
    rule_from_json,
    rule_to_json,
)
from ucity.rules.schedule import counted_seconds, excluded, reach

from .support import SEOUL, TILT_EDGES, inactivity_rule, kst, tilt_rule

EVERY_KIND = [
    tilt_rule(samples=3, duration=900),
    Rule(id="rate", name=Text(en="Rate"), condition=RateOfChange(attribute="crackOpening", edges=TILT_EDGES[:2],
                                                                 window_seconds=86400 * 30)),
    inactivity_rule(suppression=Suppression(attribute="away", predicate="hospital", attributes=("careStatus",))),
    Rule(id="fence", name=Text(ko="이탈", en="Exit"), condition=Geofence(
        area=Circle(center=(126.88, 37.49), radius_metres=100), trigger="exit", level="warning", margin_metres=20)),
    Rule(id="zone", name=Text(en="Zone"), condition=Geofence(area=Polygon(coordinates=(
        ((126.0, 37.0), (127.0, 37.0), (127.0, 38.0), (126.0, 37.0)),)), trigger="dwell", dwell_seconds=60,
        level="caution")),
    Rule(id="button", name=Text(en="Button"), kind="safety", condition=EventMatch(
        attribute="buttonPressCount", when=Compare(op=">", value=0), level="serious", latch=False)),
    Rule(id="door", name=Text(en="Door"), condition=EventMatch(
        attribute="doorState", when=Compare(op="in", value=("forced", "open")), level="caution")),
    Rule(id="both", name=Text(en="Both"), kind="fault", condition=Composite(mode="and", level="interest", terms=(
        Term(attribute="a", op="<", value=1), Term(attribute="b", op="==", value="x")))),
]


@pytest.mark.parametrize("rule", EVERY_KIND, ids=lambda r: r.id)
def test_every_kind_round_trips_through_json(rule: Rule) -> None:
    data = rule_to_json(rule)
    assert rule_from_json(data) == rule
    assert data["condition"]["type"] == rule.condition.type
    hash(rule)  # frozen all the way down: usable as a cache key


def test_json_is_camel_case() -> None:
    data = rule_to_json(inactivity_rule())
    assert data["entityTypes"] == ["CareDevice"]
    assert data["condition"]["steps"][0] == {"level": "interest", "afterSeconds": 28800.0}
    assert data["condition"]["schedule"] == {"exclude": [{"start": "23:00", "end": "06:00", "days": []}],
                                             "mode": "pause"}


@pytest.mark.parametrize(("build", "message"), [
    (lambda: Persistence(), "persistence needs samples or durationSeconds"),
    (lambda: Window(start="24:00", end="06:00"), "a local time is HH:MM"),
    (lambda: Schedule(timezone="Asia/Nowhere"), "unknown time zone"),
    (lambda: Compare(op=">", value="x"), "needs a number"),
    (lambda: Compare(op="in", value=3), "a list operand goes with 'in'"),
    (lambda: Circle(center=(200.0, 37.0), radius_metres=1), "center is [lon, lat]"),
    (lambda: Geofence(area=Circle(center=(1.0, 1.0), radius_metres=1), trigger="dwell", level="caution"),
     "dwell needs dwellSeconds"),
    (lambda: Composite(mode="or", level="caution", terms=(Term(attribute="a"),)), "at least two terms"),
    (lambda: Rule(id="x", name=Text(), condition=EventMatch(attribute="a", level="serious"), id_pattern="("),
     "idPattern is not a regular expression"),
])
def test_invalid_parts_are_refused_in_python_too(build: Any, message: str) -> None:
    with pytest.raises(RuleError, match=message.replace("[", r"\[")):
        build()


def test_from_json_names_the_wrong_member() -> None:
    with pytest.raises(RuleError, match=r"condition.steps.0.level: Input should be 'interest'"):
        rule_from_json({"id": "x", "name": {}, "condition": {
            "type": "inactivity", "attributes": ["m"], "steps": [{"level": "danger", "afterSeconds": 1}]}})


# -- schedule windows ---------------------------------------------------------------------------
SLEEP = (Window(start="23:00", end="06:00"),)


def test_windows_are_local_time_across_midnight() -> None:
    spans = excluded(SLEEP, SEOUL, kst(2026, 3, 2, 12), kst(2026, 3, 3, 12))
    assert spans == [(kst(2026, 3, 2, 23), kst(2026, 3, 3, 6))]
    assert counted_seconds(SLEEP, SEOUL, kst(2026, 3, 2, 12), kst(2026, 3, 3, 12)) == 17 * 3600


def test_reach_skips_windows() -> None:
    assert reach(SLEEP, SEOUL, kst(2026, 3, 2, 22), 2 * 3600) == kst(2026, 3, 3, 7)
    assert reach(SLEEP, SEOUL, kst(2026, 3, 3, 1), 60) == kst(2026, 3, 3, 6, 1)  # starting asleep
    # 17 awake hours a day: 72 h from Monday 08:00 is 15 + 17 + 17 + 17 + 6 -> Friday 12:00
    assert reach(SLEEP, SEOUL, kst(2026, 3, 2, 8), 72 * 3600) == kst(2026, 3, 6, 12)
    # across the 7-day blocks of the search: 170 h = 15 + 9 x 17 + 2 -> Thursday after next, 08:00
    assert reach(SLEEP, SEOUL, kst(2026, 3, 2, 8), 170 * 3600) == kst(2026, 3, 12, 8)


def test_window_days_and_a_whole_day_window() -> None:
    weekend_nights = (Window(start="22:00", end="08:00", days=(6, 7)),)  # Saturday and Sunday nights
    saturday = kst(2026, 3, 7, 20)  # 2026-03-07 is a Saturday
    assert counted_seconds(weekend_nights, SEOUL, saturday, saturday + timedelta(days=1)) == 14 * 3600
    monday = kst(2026, 3, 9, 20)
    assert counted_seconds(weekend_nights, SEOUL, monday, monday + timedelta(days=1)) == 24 * 3600
    always = (Window(start="00:00", end="12:00"), Window(start="12:00", end="00:00"))
    assert reach(always, SEOUL, monday, 60) is None
