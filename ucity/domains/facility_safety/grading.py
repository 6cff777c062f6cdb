"""Gathers each sensor's evidence from history, grades a facility (grade.py) and records the result.

The result is written on the facility's `Building` entity with the computation time as
`observedAt`, so the temporal API keeps its history: `dataSafetyGrade`, `dataSafetyScore`,
`emergencyInspectionRecommended` and the whole explanation as the JsonProperty
`dataSafetyGradeExplanation`; a computation without a grade (no scored sensor) removes the current
`dataSafetyGrade` and `dataSafetyScore` (their history stays). The write goes through
`Registry.write`, so the facility lists, summary and exports read the committed result at once. The
legal grade (`legalSafetyGrade`) is never written here.

The same pass writes SHM-R2's crack growth rate (`crackOpeningRate`, mm per 30 days, the Theil–Sen
slope of the compensated crack) on each crack sensor that has a thermal model; the rule
`shm-crack-rate` raises caution on it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ucity.core.bus import Context
from ucity.core.clock import to_iso, to_micros
from ucity.domains.facility_safety import evidence
from ucity.domains.facility_safety.assess import write_op
from ucity.domains.facility_safety.config import FacilitySafetyConfig, Ladder
from ucity.domains.facility_safety.grade import ChannelEvidence, GradePolicy, SensorEvidence, grade_facility, theil_sen
from ucity.domains.facility_safety.models import Facility, Sensor, iri
from ucity.domains.facility_safety.registry import Registry
from ucity.domains.facility_safety.rules import ASSESSED, CRACK, CRACK_RATE_ATTR, TILT
from ucity.rules import level_rank
from ucity.store.base import Mutation, Store

ACTOR = "facility-safety"
LadderOf = Callable[[Sensor, str], Ladder]


@dataclass(frozen=True, slots=True)
class Graded:
    result: dict[str, Any]
    crack_rates: dict[str, dict[str, Any]]  # sensor -> the rate written


class Grader:
    def __init__(self, store: Store, registry: Registry, cfg: FacilitySafetyConfig, ladder_of: LadderOf) -> None:
        self.store = store
        self.registry = registry
        self.cfg = cfg
        self.ladder_of = ladder_of
        g = cfg.grade
        self.policy = GradePolicy(tuple(tuple(x) for x in g.event_scores), dict(g.member_weights),  # type: ignore[misc]
                                  g.main_cap_offset, g.grade_bounds, g.trend_horizon_days, g.trend_min_buckets)

    # -- one facility ------------------------------------------------------------------------------------------
    async def grade(self, facility: Facility, now: datetime) -> Graded:
        g = self.cfg.grade
        start = now - timedelta(days=g.window_days)
        sensors = [s for s in self.registry.sensors_of(facility.tenant, facility.id) if s.kind]
        gathered = [await self.sensor_evidence(s, start, now) for s in sensors]
        result = grade_facility([e for e, _ in gathered], self.policy, facility.legal_grade, g.emergency_grades,
                                g.emergency_steps_worse)
        result.update(facility=facility.id, name=facility.name, computedAt=to_iso(now),
                      window={"from": to_iso(start), "to": to_iso(now), "days": g.window_days},
                      method="domain-rules §2.5 [D]: max(level, trend, events) per sensor; member-weighted mean, "
                             "at least the worst main member − 1")
        rates = {s.id: rate for s, (_, rate) in zip(sensors, gathered, strict=True) if rate is not None}
        await self._record(facility, result, rates, now)
        return Graded(result, rates)

    async def _record(self, facility: Facility, result: dict[str, Any], rates: dict[str, dict[str, Any]],
                      now: datetime) -> None:
        """Write the result on the facility's entity; the registry's record of it follows from the committed
        document (Registry.write), so the API's lists, summary and exports show what the entity says."""
        at = to_iso(now)
        items: list[tuple[str, dict[str, Any]]] = []
        drops: list[tuple[str, str | None]] = []
        if result["grade"] is not None:
            items += [(iri("dataSafetyGrade"), {"type": "Property", "value": result["grade"], "observedAt": at}),
                      (iri("dataSafetyScore"), {"type": "Property", "value": result["score"], "observedAt": at})]
        else:  # no grade now (no scored sensor): an older grade must not stand for the current one
            drops += [(iri("dataSafetyGrade"), None), (iri("dataSafetyScore"), None)]
        items += [(iri("dataSafetyGradeExplanation"), {"type": "JsonProperty", "json": result, "observedAt": at}),
                  (iri("emergencyInspectionRecommended"),
                   {"type": "Property", "value": result["emergency"]["recommended"], "observedAt": at})]
        mutations = [Mutation(facility.id, write_op(items, drops))]
        for sensor_id, rate in rates.items():
            mutations.append(Mutation(sensor_id, write_op([(iri(CRACK_RATE_ATTR), _rate_instance(rate, at))])))
        outcomes = await self.registry.write(self.store, facility.tenant, mutations, Context(actor=ACTOR))
        for outcome in outcomes:
            if isinstance(outcome, Exception):
                raise outcome

    # -- one sensor --------------------------------------------------------------------------------------------
    async def sensor_evidence(self, sensor: Sensor, start: datetime, now: datetime
                              ) -> tuple[SensorEvidence, dict[str, Any] | None]:
        """What the sensor showed in the window, and its crack rate (crack sensors with a model)."""
        g = self.cfg.grade
        assert sensor.kind is not None
        raw = self._raw_attrs(sensor.kind)
        expected = int(g.window_days * 86400 / self.cfg.health.expected_interval_s)
        counted = await evidence.counts(self.store, sensor.tenant, [sensor.id], [raw[0]], start, now)
        received = int(counted.get(sensor.id, {}).get(raw[0], {}).get("totalCount") or 0)
        completeness = min(1.0, received / expected) if expected else None
        recent = await evidence.newest(self.store, sensor.tenant, sensor.id, ASSESSED[sensor.kind], g.level_samples,
                                       start, now)
        fresh = bool(recent) and now - recent[-1][0] <= timedelta(hours=g.level_max_age_hours)
        points, status = await self._trend(sensor, raw, start, now, completeness)
        ladder = self.ladder_of(sensor, sensor.kind)
        compensated = sensor.kind in (TILT, CRACK) and any(a in sensor.models for a in raw)
        channel = ChannelEvidence(sensor.kind, ladder.edges(), tuple(v for _, v in recent),
                                  to_iso(recent[-1][0]) if recent else None, fresh,
                                  "thermal" if compensated else "none", tuple(points), status)
        counted_events, by_level, spikes = await self._events(sensor, start, now)
        ev = SensorEvidence(sensor.id, sensor.member, sensor.kind, (channel,), counted_events, by_level, spikes,
                            completeness, received, expected, sensor.stuck, sensor.name)
        return ev, self._crack_rate(sensor, points, status) if sensor.kind == CRACK else None

    def _raw_attrs(self, kind: str) -> list[str]:
        a = self.cfg.attributes
        return {TILT: [a.tilt_x, a.tilt_y], CRACK: [a.crack]}.get(kind, [a.vibration])

    async def _trend(self, sensor: Sensor, raw: list[str], start: datetime, now: datetime,
                     completeness: float | None) -> tuple[list[tuple[float, float]], str]:
        """Bucket means of the compensated value: raw bucket mean minus the model at the bucket's mean T."""
        if sensor.kind not in (TILT, CRACK):
            return [], "not-applicable"
        modelled = [(a, m) for a in raw if (m := sensor.models.get(a)) is not None]
        if not modelled:  # a raw trend is mostly the season: no trend before compensation
            return [], "no-thermal-model"
        if completeness is None or completeness < self.cfg.grade.completeness:
            return [], "incomplete"
        temp = self.cfg.attributes.temperature
        period = self.cfg.grade.trend_bucket_hours * 3600
        means = await evidence.bucket_means(self.store, sensor.tenant, sensor.id, [a for a, _ in modelled] + [temp],
                                            start, now, period)
        temps = dict(means.get(temp, []))
        series = [(dict(means.get(a, [])), m) for a, m in modelled]
        origin = to_micros(start)
        points: list[tuple[float, float]] = []
        for bucket, t in sorted(temps.items()):
            residuals = [s[bucket] - m.predict(t) for s, m in series if bucket in s]
            if len(residuals) == len(series):
                value = math.hypot(*residuals) if sensor.kind == TILT else residuals[0]
                points.append(((bucket - origin) / 86_400e6, value))
        return points, "ok"

    async def _events(self, sensor: Sensor, start: datetime, now: datetime) -> tuple[int, dict[str, int], int]:
        g = self.cfg.grade
        floor = level_rank(g.event_min_level)
        counted, spikes = 0, 0
        by_level: dict[str, int] = {}
        for record in await evidence.events(self.store, sensor.tenant, sensor.id, start, now):
            level = record.get("level")
            if record.get("kind") == "safety" and level in ("interest", "caution", "warning", "serious"):
                if record.get("event") == "spike":
                    spikes += 1
                    if not g.count_spikes:
                        continue
                elif record.get("event") != "matched":
                    continue
                if level_rank(level) >= floor:
                    counted += 1
                    by_level[level] = by_level.get(level, 0) + 1
        return counted, by_level, spikes

    def _crack_rate(self, sensor: Sensor, points: list[tuple[float, float]], status: str) -> dict[str, Any] | None:
        g = self.cfg.grade
        if status != "ok" or len(points) < g.trend_min_buckets:
            return None
        per_day = theil_sen(points)
        return {"value": per_day * g.crack_rate_days, "perDays": g.crack_rate_days, "slopePerDay": per_day,
                "buckets": len(points)}


def _rate_instance(rate: dict[str, Any], at: str) -> dict[str, Any]:
    return {"type": "Property", "value": round(rate["value"], 9), "observedAt": at, "unitCode": "MMT",
            iri("perDays"): {"type": "Property", "value": rate["perDays"]},
            iri("buckets"): {"type": "Property", "value": rate["buckets"]}}
