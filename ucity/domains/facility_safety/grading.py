"""Gathers each sensor's evidence from history, grades a facility (grade.py) and records the result.

The result is written on the facility's `Building` entity with the computation time as
`observedAt`, so the temporal API keeps its history: `dataSafetyGrade`, `dataSafetyScore`,
`emergencyInspectionRecommended` and the whole explanation as the JsonProperty
`dataSafetyGradeExplanation`, with `dataSafetyGradeStatus` (ok / insufficient-data / no-data) and
`dataSafetyCoverage` (scored / attached main members, QA5 F4); a computation without a grade (no scored
sensor, or a grade withheld for insufficient data) removes the current `dataSafetyGrade` and
`dataSafetyScore` (their history stays). The write goes through
`Registry.write`, so the facility lists, summary and exports read the committed result at once. The
legal grade (`legalSafetyGrade`) is never written here.

The same pass writes SHM-R2's crack growth rate (`crackOpeningRate`, mm per 30 days, the Theil–Sen
slope of the compensated crack) on each crack sensor that has a thermal model; the rule
`shm-crack-rate` raises caution on it.

Completeness (received / expected samples in the window) uses each sensor's **own** reporting interval
(QA5 F1): the `expected_interval_s` provisioned for its device (or the device's service group) in ingest's
device registry, else `ingest.intervals_by_type[<entity type>]`, else the domain's
`health.expected_interval_s` (600 s). An hourly LoRa sensor is complete with 720 readings in 30 days.

The level reads the newest assessed values whatever their time (QA5 F8): up to `ingest.max_future_s` (the bound
ingest accepts, 24 h by default) ahead of the platform clock, so a device whose clock runs ahead (KST sent without
an offset is 9 h ahead) is not graded "no data"; the level says how far ahead (`aheadS`). Events in that time count.

A sensor reporting in another unit than its channel's (a provisioned `unitCode`, QA5 F3) has its trend converted
with the unit table of `plausibility` (the thermal model works in the device's unit); a unit not in the table gives
no trend (`unknown-unit`).

Events are counted per **excursion** (QA5 F11): the steps of one excursion of a rule (caution → warning →
serious → warning → caution → cleared) are one event at its peak level; a spike is one excursion.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from ucity.core.bus import Context
from ucity.core.clock import parse_iso, to_iso, to_micros
from ucity.domains.facility_safety import evidence
from ucity.domains.facility_safety.assess import Checks, write_op
from ucity.domains.facility_safety.config import FacilitySafetyConfig, Ladder
from ucity.domains.facility_safety.grade import ChannelEvidence, GradePolicy, SensorEvidence, grade_facility, theil_sen
from ucity.domains.facility_safety.models import Facility, Sensor, iri
from ucity.domains.facility_safety.registry import Registry
from ucity.domains.facility_safety.rules import ASSESSED, CRACK, CRACK_RATE_ATTR, TILT
from ucity.rules import level_rank
from ucity.store.base import AuditQuery, Mutation, Store, TemporalQuery

if TYPE_CHECKING:
    from ucity.core.platform import Platform

ACTOR = "facility-safety"
AUDIT_KIND = "facility-safety"  # the domain's lines in the operations audit log (`sensor-detached`: QA14 F12)
LadderOf = Callable[[Sensor, str], Ladder]
IntervalOf = Callable[[Sensor], "tuple[float, str] | None"]  # a sensor's own interval (s) and where it comes from
DEVICE_INTERVAL = "device"  # provisioned expected_interval_s of the device or its service group (ingest)
TYPE_INTERVAL = "ingest.intervals_by_type"
DOMAIN_INTERVAL = "health.expected_interval_s"
LEVELS = ("interest", "caution", "warning", "serious")


def ingest_interval(platform: Platform) -> IntervalOf:
    """A sensor's expected reporting interval as ingest's device registry knows it (QA5 F1).

    The provisioned `expected_interval_s` of the device whose entity the sensor is (or of its service group),
    else `ingest.intervals_by_type` for its entity type; None when ingest does not know the entity (a sensor
    written by an NGSI-LD client), so the domain's `health.expected_interval_s` applies. Ingest is looked up
    at each call: it is registered after the domains.
    """
    def interval_of(sensor: Sensor) -> tuple[float, str] | None:
        registry = getattr(platform.services.get("ingest"), "registry", None)
        profile = registry.profile_by_entity(sensor.tenant, sensor.id) if registry is not None else None
        if profile is None:
            return None
        if profile.expected_interval_s:
            return float(profile.expected_interval_s), DEVICE_INTERVAL
        by_type = platform.settings.ingest.intervals_by_type.get(profile.entity_type)
        return (float(by_type), TYPE_INTERVAL) if by_type else None

    return interval_of


@dataclass(frozen=True, slots=True)
class Graded:
    result: dict[str, Any]
    crack_rates: dict[str, dict[str, Any]]  # sensor -> the rate written


class Grader:
    def __init__(self, store: Store, registry: Registry, cfg: FacilitySafetyConfig, ladder_of: LadderOf,
                 interval_of: IntervalOf | None = None, future_s: float = 86400.0) -> None:
        self.store = store
        self.future = timedelta(seconds=future_s)  # ingest.max_future_s: newer readings were refused (QA5 F8)
        self.checks = Checks(cfg.plausibility, cfg.attributes)
        self.registry = registry
        self.cfg = cfg
        self.ladder_of = ladder_of
        self.interval_of = interval_of
        g = cfg.grade
        self.policy = GradePolicy(tuple(tuple(x) for x in g.event_scores), dict(g.member_weights),  # type: ignore[misc]
                                  g.main_cap_offset, g.grade_bounds, g.trend_horizon_days, g.trend_min_buckets,
                                  g.min_main_coverage, g.min_completeness)

    def expected_interval(self, sensor: Sensor) -> tuple[float, str]:
        """The sensor's own reporting interval (s) and its source; the domain setting when nothing else says."""
        own = self.interval_of(sensor) if self.interval_of is not None else None
        return own if own is not None else (self.cfg.health.expected_interval_s, DOMAIN_INTERVAL)

    # -- one facility ------------------------------------------------------------------------------------------
    async def grade(self, facility: Facility, now: datetime) -> Graded:
        g = self.cfg.grade
        start = now - timedelta(days=g.window_days)
        attached = self.registry.sensors_of(facility.tenant, facility.id)
        sensors = [s for s in attached if s.kind]
        gathered = [await self.sensor_evidence(s, start, now) for s in sensors]
        # a sensor of unknown kind (no sensorKind, never reported a measure) is attached but cannot be scored:
        # it counts against the coverage (QA5 F4)
        unknown = [SensorEvidence(s.id, s.member, None, (), 0, name=s.name) for s in attached if not s.kind]
        detached = await self.detached(facility, start, now)
        result = grade_facility([e for e, _ in gathered] + unknown, self.policy, facility.legal_grade,
                                g.emergency_grades, g.emergency_steps_worse, detached)
        result.update(facility=facility.id, name=facility.name, computedAt=to_iso(now),
                      window={"from": to_iso(start), "to": to_iso(now), "days": g.window_days},
                      method="domain-rules §2.5 [D]: max(level, trend, events) per sensor; member-weighted mean, "
                             "at least the worst main member − 1")
        rates = {s.id: rate for s, (_, rate) in zip(sensors, gathered, strict=True) if rate is not None}
        await self._record(facility, result, rates, now)
        return Graded(result, rates)

    async def detached(self, facility: Facility, start: datetime, now: datetime) -> dict[str, Any]:
        """The sensors detached from the facility (audit `sensor-detached`) since the window's start, or since the
        previous grade when that is older (QA14 F12), and not attached to it now; newest detachment per sensor."""
        since = start
        doc = await self.store.get_entity(facility.tenant, facility.id)
        for inst in (doc or {}).get("attrs", {}).get(iri("dataSafetyGradeExplanation"), []):
            previous = (inst.get("json") or {}).get("computedAt") if "datasetId" not in inst else None
            if previous:
                since = min(since, parse_iso(previous))
        attached = {s.id for s in self.registry.sensors_of(facility.tenant, facility.id)}
        found: dict[str, str] = {}
        offset = 0
        while True:  # a facility has few such lines; pages of 500 all the same
            rows, _ = await self.store.query_audit(facility.tenant, AuditQuery(
                kinds=(AUDIT_KIND,), actions=("sensor-detached",), at_from=to_micros(since),
                at_to=to_micros(now) + 1, limit=500, offset=offset))
            for row in rows:
                if row.get("facility") == facility.id and row.get("sensor") not in attached:
                    found[str(row["sensor"])] = max(found.get(str(row["sensor"]), ""), str(row["at"]))
            if len(rows) < 500:
                break
            offset += 500
        zone = ZoneInfo(self.cfg.grade.timezone)

        def local(at: datetime) -> str:
            return f"{at.astimezone(zone):%Y-%m-%d %H:%M} ({self.cfg.grade.timezone})"

        return {"since": to_iso(since), "sinceLocal": local(since),
                "sensors": [{"sensor": sensor, "at": at, "atLocal": local(parse_iso(at))}
                            for sensor, at in sorted(found.items(), key=lambda item: (item[1], item[0]))]}

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
        else:  # no grade now (no scored sensor, or withheld for insufficient data): an older grade must not stand
            drops += [(iri("dataSafetyGrade"), None), (iri("dataSafetyScore"), None)]
        cov = result["coverage"]
        status: dict[str, Any] = {"type": "Property", "value": result["status"], "observedAt": at}
        if result.get("insufficient"):  # QA14 F6: why, and the letter kept, in the grade history too
            status[iri("reasons")] = {"type": "Property", "value": list(result["insufficient"])}
        if result.get("provisionalGrade"):
            status[iri("provisionalGrade")] = {"type": "Property", "value": result["provisionalGrade"]}
            status[iri("provisionalScore")] = {"type": "Property", "value": result["provisionalScore"]}
        comp = result.get("completeness") or {}
        if comp.get("share") is not None:
            status[iri("completeness")] = {"type": "Property", "value": comp["share"]}
        items.append((iri("dataSafetyGradeStatus"), status))
        if cov["share"] is not None:
            items.append((iri("dataSafetyCoverage"), {
                "type": "Property", "value": round(cov["share"], 4), "observedAt": at,
                iri("scored"): {"type": "Property", "value": cov["scored"]},
                iri("attached"): {"type": "Property", "value": cov["attached"]},
                iri("basis"): {"type": "Property", "value": cov["basis"]}}))
        else:  # no sensor attached: no share to state
            drops.append((iri("dataSafetyCoverage"), None))
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
        # a sensor whose baseline was reset (a replaced device, QA5 F9) is judged on its own readings and events:
        # the old device's last level and excursions are not the new one's
        reset = self.registry.baseline_at(sensor.tenant, sensor.id)
        own = max(start, reset) if reset is not None else start
        interval, interval_source = self.expected_interval(sensor)
        expected = int(g.window_days * 86400 / interval)
        counted = await evidence.counts(self.store, sensor.tenant, [sensor.id], [raw[0]], own, now)
        received = int(counted.get(sensor.id, {}).get(raw[0], {}).get("totalCount") or 0)
        completeness = min(1.0, received / expected) if expected else None
        # the newest values whatever their time (QA5 F8): a device clock ahead of ours is not "no data"
        recent = await evidence.newest(self.store, sensor.tenant, sensor.id, ASSESSED[sensor.kind], g.level_samples,
                                       own, now + self.future)
        fresh = bool(recent) and now - recent[-1][0] <= timedelta(hours=g.level_max_age_hours)
        ahead = (recent[-1][0] - now).total_seconds() if recent and recent[-1][0] > now else None
        points, status = await self._trend(sensor, raw, start, now, completeness)
        ladder = self.ladder_of(sensor, sensor.kind)
        compensated = sensor.kind in (TILT, CRACK) and any(a in sensor.models for a in raw)
        channel = ChannelEvidence(sensor.kind, ladder.edges(), tuple(v for _, v in recent),
                                  to_iso(recent[-1][0]) if recent else None, fresh,
                                  "thermal" if compensated else "none", tuple(points), status, ahead)
        counted_events, by_level, spikes, matches = await self._events(sensor, own, now + self.future)
        ev = SensorEvidence(sensor.id, sensor.member, sensor.kind, (channel,), counted_events, by_level, spikes,
                            completeness, received, expected, sensor.stuck, sensor.name, matches=matches,
                            interval_s=interval, interval_source=interval_source, suspect=sensor.suspect,
                            counted_since=to_iso(own) if own > start else None)
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
        scales = {a: self.checks.scale(a, sensor.units.get(a)) for a, _ in modelled}  # QA5 F3: device unit -> channel's
        if any(k is None for k in scales.values()):
            return [], "unknown-unit"
        series = [(dict(means.get(a, [])), m, scales[a] or 1.0) for a, m in modelled]
        origin = to_micros(start)
        points: list[tuple[float, float]] = []
        for bucket, t in sorted(temps.items()):
            residuals = [(s[bucket] - m.predict(t)) * k for s, m, k in series if bucket in s]
            if len(residuals) == len(series):
                value = math.hypot(*residuals) if sensor.kind == TILT else residuals[0]
                points.append(((bucket - origin) / 86_400e6, value))
        return points, "ok"

    async def _events(self, sensor: Sensor, start: datetime, now: datetime
                      ) -> tuple[int, dict[str, int], int, int]:
        """(events, events by peak level, spikes, matched steps at or above the event level) in the window.

        One excursion of a rule is one event at its peak level (QA5 F11; §2.5 counts 주의+ *events*): a
        `matched` without a previous level opens an excursion, later `matched` steps of that rule (up or down)
        raise its peak, `cleared` closes it. An excursion already running when the window starts counts once,
        at the highest level its steps in the window name (their `previous` included). A spike is one excursion
        (scored only with `count_spikes`).
        """
        g = self.cfg.grade
        floor = level_rank(g.event_min_level)
        spikes, matches = 0, 0
        peaks: list[str] = []  # the peak level of each excursion
        open_: dict[str, int] = {}  # rule -> index in peaks of its running excursion
        for _, record in await _timed_events(self.store, sensor.tenant, sensor.id, start, now):
            rule, event, level = str(record.get("rule")), record.get("event"), record.get("level")
            if event == "cleared":
                open_.pop(rule, None)
                continue
            if record.get("kind") != "safety" or level not in LEVELS:
                continue
            if event == "spike":
                spikes += 1
                if g.count_spikes:
                    peaks.append(level)
                continue
            if event != "matched":
                continue
            matches += level_rank(level) >= floor
            previous = record.get("previous")
            index = open_.get(rule)
            if index is None or previous is None:  # a new excursion (or one running since before the window)
                open_[rule] = index = len(peaks)
                peaks.append(level)
            for candidate in (level, previous):
                if candidate in LEVELS and level_rank(candidate) > level_rank(peaks[index]):
                    peaks[index] = candidate
        counted = [p for p in peaks if level_rank(p) >= floor]
        by_level: dict[str, int] = {}
        for level in counted:
            by_level[level] = by_level.get(level, 0) + 1
        return len(counted), by_level, spikes, matches

    def _crack_rate(self, sensor: Sensor, points: list[tuple[float, float]], status: str) -> dict[str, Any] | None:
        g = self.cfg.grade
        if status != "ok" or len(points) < g.trend_min_buckets:
            return None
        per_day = theil_sen(points)
        return {"value": per_day * g.crack_rate_days, "perDays": g.crack_rate_days, "slopePerDay": per_day,
                "buckets": len(points)}


async def _timed_events(store: Store, tenant: str, entity_id: str, start: datetime, end: datetime
                        ) -> list[tuple[int, dict[str, Any]]]:
    """The sensor's logged rule events (`safetyEvent`) in the window with their times, oldest first; at one
    instant a clearing goes before a match (a clear and a new raise at once are two excursions)."""
    query = TemporalQuery(ids=(entity_id,), attrs=(iri(evidence.EVENT_ATTR),), time_from=to_micros(start),
                          time_to=to_micros(end), limit_instances=evidence.MAX_PERIODS)
    entities, _ = await store.temporal_query(tenant, query)
    rows = [(micros, inst["value"]) for entity in entities for series in entity.attrs.values()
            for micros, inst in zip(series.times, series.instances, strict=True) if isinstance(inst.get("value"), dict)]
    return sorted(rows, key=lambda row: (row[0], row[1].get("event") != "cleared"))


def _rate_instance(rate: dict[str, Any], at: str) -> dict[str, Any]:
    return {"type": "Property", "value": round(rate["value"], 9), "observedAt": at, "unitCode": "MMT",
            iri("perDays"): {"type": "Property", "value": rate["perDays"]},
            iri("buckets"): {"type": "Property", "value": rate["buckets"]}}
