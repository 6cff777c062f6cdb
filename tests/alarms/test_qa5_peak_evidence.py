"""QA5 F10: an alarm that keeps its peak level keeps the peak's description and evidence.

A ladder falling back publishes lower-level matches; the alarm stays at its highest level (no downgrade
while active) and used to take the lower match's description and evidence: a cleared serious alarm read
"기울기 변화: 관심" with value 0.00125. The lower match is now `evidence.latest`, beside the peak's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.alarms.support import T0, City, alarm_settings, cleared, matched

NAME = {"ko": "기울기 변화", "en": "Tilt change"}


def tilt(level: str, value: float, minute: int, **extra: Any) -> Any:
    names = {"serious": ("심각", "Serious"), "warning": ("경계", "Warning"), "caution": ("주의", "Caution"),
             "interest": ("관심", "Interest")}[level]
    evidence = {"attribute": "tiltX", "value": value, "observedAt": f"2026-03-02T00:{minute:02d}:00.000000Z",
                "edges": {"serious": 0.006667}, "ruleName": NAME, **extra}
    return matched(level=level, evidence=evidence,
                   description={"ko": f"기울기 변화: {names[0]}", "en": f"Tilt change: {names[1]}"})


async def test_a_fall_back_keeps_the_peak_evidence_and_shows_the_latest_beside_it(city: City) -> None:
    await city.publish(tilt("caution", 0.0021, 1), tilt("serious", 0.0070, 2, peak=0.0071, samples=3))
    await city.publish(tilt("warning", 0.0034, 3, previous="serious"), tilt("interest", 0.00125, 4, previous="caution"))
    alarm = city.active()
    assert alarm.level == "serious" and alarm.count == 4
    assert alarm.description == {"ko": "기울기 변화: 심각", "en": "Tilt change: Serious"}
    assert (alarm.evidence["value"], alarm.evidence["peak"], alarm.evidence["observedAt"]) == \
        (0.0070, 0.0071, "2026-03-02T00:02:00.000000Z")
    latest = alarm.evidence["latest"]
    assert (latest["level"], latest["value"], latest["observedAt"]) == ("interest", 0.00125, "2026-03-02T00:04:00.000000Z")
    assert latest["description"]["ko"] == "기울기 변화: 관심" and "edges" not in latest and "ruleName" not in latest

    await city.publish(cleared(evidence={"previous": "interest"}))
    [shown] = await city.all_alarms()  # what an operator reads: stored, through the API
    assert shown["status"] == "cleared-unacknowledged" and shown["level"] == "serious"
    assert shown["description"]["ko"] == "기울기 변화: 심각" and shown["evidence"]["value"] == 0.0070
    assert shown["evidence"]["latest"]["level"] == "interest"


async def test_a_higher_or_equal_match_replaces_the_evidence(city: City) -> None:
    await city.publish(tilt("warning", 0.0034, 1), tilt("caution", 0.0021, 2))
    assert city.active().evidence["latest"]["value"] == 0.0021
    await city.publish(tilt("serious", 0.0070, 3))
    alarm = city.active()
    assert alarm.level == "serious" and alarm.evidence["value"] == 0.0070 and "latest" not in alarm.evidence
    assert alarm.description["en"] == "Tilt change: Serious"


async def test_a_lower_match_reopening_a_cleared_alarm_keeps_its_level_and_evidence(city: City) -> None:
    await city.publish(tilt("serious", 0.0070, 1), cleared())
    await city.advance(60)  # within the de-duplication window
    await city.publish(tilt("caution", 0.0021, 3))
    alarm = city.active()
    assert alarm.level == "serious" and alarm.evidence["value"] == 0.0070
    assert alarm.description["ko"] == "기울기 변화: 심각" and alarm.evidence["latest"]["level"] == "caution"


async def test_with_downgrade_while_active_the_evidence_follows_the_level(tmp_path: Path) -> None:
    async with City.running(alarm_settings(tmp_path, downgrade_while_active=True), T0) as city:
        await city.publish(tilt("serious", 0.0070, 1), tilt("caution", 0.0021, 2))
        alarm = city.active()
        assert alarm.level == "caution" and alarm.evidence["value"] == 0.0021 and "latest" not in alarm.evidence
        assert alarm.description["en"] == "Tilt change: Caution"
