"""Rules used across the rules tests: the SHM tilt ladder (domain-rules SHM-R1/R4) and the
care inactivity ladder (ELD-R3, Seongdong 8/12/24 h)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from ucity.rules.model import (
    Edge,
    Inactivity,
    Persistence,
    Rule,
    Schedule,
    Step,
    Suppression,
    Text,
    Threshold,
    Window,
)

SEOUL = ZoneInfo("Asia/Seoul")
# SHM-R1 edges in radians: 1/750, 1/500, 1/300, 1/150 (Bjerrum values [V], level mapping [D]).
TILT_EDGES = (
    Edge(level="interest", at=1 / 750),
    Edge(level="caution", at=1 / 500),
    Edge(level="warning", at=1 / 300),
    Edge(level="serious", at=1 / 150),
)
HYSTERESIS = 0.0005  # rad, a test value


def kst(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    """A Seoul wall-clock time as an aware datetime in UTC."""
    return datetime(year, month, day, hour, minute, tzinfo=SEOUL).astimezone(UTC)


def tilt_rule(samples: int | None = 3, duration: float | None = None, rule_id: str = "shm-tilt-x") -> Rule:
    persistence = Persistence(samples=samples, duration_seconds=duration) if samples or duration else None
    return Rule(
        id=rule_id, name=Text(ko="기울기 변화", en="Tilt change"), entity_types=("StructuralSensor",),
        condition=Threshold(attribute="tiltX", edges=TILT_EDGES, direction="abs", hysteresis=HYSTERESIS),
        persistence=persistence, category="facility-safety", source="domain-rules SHM-R1, SHM-R4",
    )


def inactivity_rule(sleep: bool = True, mode: str = "pause", suppression: Suppression | None = None,
                    rule_id: str = "care-inactivity") -> Rule:
    schedule = Schedule(exclude=(Window(start="23:00", end="06:00"),), mode=mode) if sleep else None  # type: ignore[arg-type]
    return Rule(
        id=rule_id, name=Text(ko="무활동", en="Inactivity"), entity_types=("CareDevice",),
        condition=Inactivity(
            attributes=("motionCount", "doorOpened"),
            steps=(Step(level="interest", after_seconds=8 * 3600), Step(level="warning", after_seconds=12 * 3600),
                   Step(level="serious", after_seconds=24 * 3600)),
            schedule=schedule, suppression=suppression,
        ),
        category="care", source="domain-rules ELD-R3 (8/12/24 h [V] Seongdong; sleep window [D])",
    )


def hours(n: float) -> timedelta:
    return timedelta(hours=n)
