"""Framework-free handlers of `/api/v1/facility-safety/...` and the route table the server mounts.

Facilities (`/facilities`, detail with sensor series from the temporal store, grade, grade history,
explanation, thresholds, sensors, official inspections), inspections (`/inspections/schedule`,
`/inspections/overdue`), field tasks (`/tasks`, start / complete / cancel, photo upload and
download), `/summary` (the district), CSV exports and `/rules` (the ladders in effect with their
sources). README.md lists every route with its parameters.

The tenant is the `NGSILD-Tenant` header; the actor of a change is `X-Ucity-Actor` (required on
task actions, as for alarms). Errors are ProblemDetails with Korean and English detail.
"""

from __future__ import annotations

import asyncio
import csv
import io
import math
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ValidationError

from ucity.alarms import STATUSES
from ucity.core.bus import Context
from ucity.core.clock import check_instant, from_micros, parse_iso, to_iso, to_micros
from ucity.core.errors import AlreadyExists, NotFound, UcityError
from ucity.core.http import ApiRoute, Req, Resp
from ucity.core.params import actor_header, bad, int_param, json_body, time_param
from ucity.domains.facility_safety import evidence, report
from ucity.domains.facility_safety.assess import write_op
from ucity.domains.facility_safety.config import Bilingual, LadderSet, problems, with_domain_bands
from ucity.domains.facility_safety.grade import DISPLAY_UNITS, UNITS, display_value, shown_score
from ucity.domains.facility_safety.grading import AUDIT_KIND
from ucity.domains.facility_safety.inspections import overdue, schedule
from ucity.domains.facility_safety.models import (
    LAST_INSPECTION_ATTR,
    Facility,
    FacilityIn,
    InspectionIn,
    Sensor,
    SensorAttachIn,
    TaskIn,
    TaskResultIn,
    facility_from_doc,
    facility_of,
    iri,
    is_facility,
    short,
)
from ucity.domains.facility_safety.photos import parse_multipart
from ucity.domains.facility_safety.rules import (
    ASSESSED,
    BATTERY_ATTR,
    CATEGORY,
    DETACHED_ATTR,
    SETTING_SOURCES,
    SOURCES,
    SUSPECT_ATTR,
    SUSPECT_OK,
)
from ucity.domains.facility_safety.tasks import (
    ACTIVE,
    CANCELLED,
    COMPLETED,
    IN_PROGRESS,
    OPEN,
    TITLES,
    InvalidMove,
    Task,
)
from ucity.ngsild.ops import merge_op
from ucity.ngsild.request import tenant_of
from ucity.rules import rule_to_json
from ucity.store.base import Aggregation, AlarmQuery, ApplyFn, AuditQuery, Doc, EntityQuery, Mutation, Outcome, TemporalQuery

if TYPE_CHECKING:
    from ucity.domains.facility_safety.service import FacilitySafety

BASE = "/api/v1/facility-safety"
DETACHED_IRI = iri(DETACHED_ATTR)
ANONYMOUS = "anonymous"
CONFIG_ADMIN = "config:admin"  # what `PUT /api/v1/rules/{id}` needs (ucity/access.py): facility thresholds replace rules
ACTIVE_ALARM_STATUSES = tuple(s for s in STATUSES if s.startswith("active"))
SDM_CATEGORY = {"bridge": "bridge", "footbridge": "bridge", "retainingWall": "civic", "school": "school",
                "daycareCenter": "kindergarten", "pumpStation": "service", "apartment": "apartments",
                "communityCenter": "civic", "building": "residential", "other": "civic"}
GRADE_VALUES = ("A", "B", "C", "D", "E", "none")
GRADE_STATUSES = ("ok", "insufficient-data", "no-data")
SCHEDULE_STATUSES = ("ok", "due-soon", "overdue", "no-record")
PAGE_DEFAULT, PAGE_MAX = 1000, 5000
Handler = Callable[[Req], Awaitable[Resp]]
M = TypeVar("M", bound=BaseModel)


def _model(req: Req, model: type[M]) -> M:
    try:
        return model.model_validate(json_body(req))
    except ValidationError as exc:  # both languages, pydantic's own messages too (QA14 F10)
        ko, en = problems(exc, "body")
        raise bad(f"잘못된 값: {ko}", f"invalid value: {en}") from exc


def _period(req: Req, default_s: int) -> int:
    """`period` in seconds or as an ISO 8601 duration of hours/minutes (PT1H, PT15M, P1D)."""
    text = req.param("period")
    if text is None:
        return default_s
    if text.isdigit():
        seconds = int(text)
    else:
        match = re.fullmatch(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?)?", text)
        if match is None or not any(match.groups()):
            raise bad("period는 초 또는 PT1H 형식", "period is seconds or an ISO 8601 duration like PT1H")
        d, h, m = (int(x) if x else 0 for x in match.groups())
        seconds = d * 86400 + h * 3600 + m * 60
    if not 60 <= seconds <= 31 * 86400:
        raise bad("period 범위 오류", "period must be between 1 minute and 31 days")
    return seconds


def _reversed(start: datetime, end: datetime) -> UcityError:
    return bad(f"from 값이 to 값보다 늦음: {to_iso(start)} > {to_iso(end)}",
               f"from is after to: {to_iso(start)} > {to_iso(end)}")


def _window(req: Req, zone: str) -> tuple[datetime | None, datetime | None]:
    """`from` and `to` (`_bound`); `from` after `to` is a 400 (QA5 F13b), never an empty answer."""
    start, end = _bound(req, "from", zone), _bound(req, "to", zone)
    if start is not None and end is not None and start > end:
        raise _reversed(start, end)
    return start, end


_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def _bound(req: Req, name: str, zone: str) -> datetime | None:
    """`from` or `to` (None when absent): a date-time with its UTC offset (`Z`, `+09:00`), or a date `YYYY-MM-DD`, a
    day in the domain's time zone (`grade.timezone`, Asia/Seoul, as the CSV shows times): `from` at its 00:00 there,
    `to` at the next day's 00:00 (`to` is exclusive, so the day is included). A date-time without an offset is a
    400, not read as UTC, 9 hours before a Seoul analyst meant (QA17 F4)."""
    text = req.param(name)
    if text is None:
        return None
    if _DAY.fullmatch(text):
        try:
            day = date.fromisoformat(text) + timedelta(days=1 if name == "to" else 0)
            return check_instant(datetime.combine(day, datetime.min.time(), ZoneInfo(zone)), text)
        except (ValueError, OverflowError):
            raise bad(f"{name} 값이 올바른 날짜가 아님: {text!r}", f"{name} is not a valid date: {text!r}") from None
    return time_param(req, name)  # (which refuses a date-time without its offset, core/params.py)


def _one_of(req: Req, name: str, allowed: tuple[str, ...] | list[str]) -> str | None:
    """A filter's value, 400 with the allowed values when it is none of them (QA5 F13b); None when absent."""
    value = req.param(name)
    if value is not None and value not in allowed:
        listed = ", ".join(allowed)
        raise bad(f"알 수 없는 {name} 값 {value!r} (허용: {listed})", f"unknown {name} {value!r} (allowed: {listed})")
    return value


def _page(req: Req) -> tuple[int, int]:
    """`limit` (default 1000, at most 5000) and `offset` of a list; its `total` counts every match."""
    return int_param(req, "limit", PAGE_DEFAULT, 1, PAGE_MAX), int_param(req, "offset", 0, 0, 10_000_000)


def _actor(req: Req) -> str:
    return actor_header(req)  # percent-encoded or raw UTF-8 (a Korean engineer's name), at most 200 characters


def _writer(req: Req) -> str:
    """Who writes a facility, a sensor's attachment or thresholds: the bearer token's principal with
    `server.require_auth` on (the access guard puts it in `X-Ucity-Actor`), else the header if sent, else
    `anonymous` (never the domain's own name: a write through the API is the caller's)."""
    return actor_header(req, required=False, default=ANONYMOUS)


def _prop(value: Any, **extra: Any) -> list[dict[str, Any]]:
    return [{"type": "Property", "value": value, **extra}]


class FacilitySafetyApi:
    """Handlers; each takes a `Req` and returns a `Resp` (server.py adapts them)."""

    def __init__(self, service: FacilitySafety) -> None:
        self.s = service

    def tenant(self, req: Req) -> str:
        return tenant_of(req, self.s.default_tenant)[0]

    def _facility(self, req: Req) -> Facility:
        tenant = self.tenant(req)
        facility_id = req.path_params["facilityId"]
        facility = self.s.registry.facility(tenant, facility_id)
        if facility is None:
            raise NotFound(f"시설물 {facility_id} 없음 / facility {facility_id} is not monitored")
        return facility

    def _sensor(self, req: Req) -> tuple[str, Sensor]:
        """(tenant, the sensor of the path's `sensorId`); 404 for a sensor the domain does not know."""
        tenant = self.tenant(req)
        sensor = self.s.registry.sensor(tenant, req.path_params["sensorId"])
        if sensor is None:
            raise NotFound(f"센서 {req.path_params['sensorId']} 없음 / sensor is not known")
        return tenant, sensor

    def _today(self) -> date:
        return self.s.today()

    # -- facilities ---------------------------------------------------------------------------------------------
    async def list_facilities(self, req: Req) -> Resp:
        tenant = self.tenant(req)
        wanted = {k: req.param(k) for k in ("facilityType", "dataGrade", "legalGrade", "district", "dataGradeStatus")}
        facilities = self.s.registry.facilities(tenant)
        # an unknown value is a 400 naming the allowed ones, not an empty list (QA5 F13b); a type some client
        # wrote on its Building is allowed too
        _one_of(req, "facilityType", sorted({*SDM_CATEGORY, *(f.facility_type for f in facilities)}))
        _one_of(req, "dataGrade", GRADE_VALUES)
        _one_of(req, "legalGrade", GRADE_VALUES)
        _one_of(req, "dataGradeStatus", GRADE_STATUSES)
        limit, offset = _page(req)
        rows = []
        for f in facilities:
            wire = f.to_wire()
            if wanted["facilityType"] and f.facility_type != wanted["facilityType"]:
                continue
            if wanted["dataGrade"] and (f.data_grade or "none") != wanted["dataGrade"]:
                continue
            if wanted["legalGrade"] and (f.legal_grade or "none") != wanted["legalGrade"]:
                continue
            if wanted["dataGradeStatus"] and (f.data_grade_status or "no-data") != wanted["dataGradeStatus"]:
                continue
            if wanted["district"] and f.district != wanted["district"]:
                continue
            rows.append((f, wire))
        page = rows[offset:offset + limit]
        for f, wire in page:
            wire["sensors"] = len(self.s.registry.sensors_of(tenant, f.id))
        return Resp(body={"total": len(rows), "limit": limit, "offset": offset, "facilities": [w for _, w in page]})

    async def put_facility(self, req: Req) -> Resp:
        """Register a facility or update it: a Building entity with the domain's attributes (create or merge)."""
        tenant = self.tenant(req)
        body = _model(req, FacilityIn)
        if body.structure_class is not None and body.structure_class not in self.s.cfg.classes:
            raise bad("알 수 없는 구조 등급", f"structureClass must be one of {', '.join(self.s.cfg.classes)}")
        # dates of inspections already done, and the year of construction, cannot lie in the future
        self.s.refuse_future({"legalSafetyGradeDate": body.legal_grade_date,
                              **{f"lastInspections.{k}": d for k, d in body.last_inspections.items()}})
        if body.year_built is not None and body.year_built > self._today().year:
            raise bad(f"준공연도 {body.year_built}년은 올해({self._today().year}년) 이후임",
                      f"yearBuilt {body.year_built} is after the current year ({self._today().year})")
        existed = self.s.registry.facility(tenant, body.id) is not None
        outcome = (await self.s.registry.write(self.s.store, tenant,
                                               [Mutation(body.id, _official_kept(body, merge_op(_building(body), True)))],
                                               Context(actor=_writer(req))))[0]
        if isinstance(outcome, Exception):
            raise outcome
        assert outcome.doc is not None
        facility = facility_from_doc(tenant, outcome.doc)
        return Resp(status=200 if existed else 201, body=facility.to_wire(),
                    headers={} if existed else {"Location": f"{BASE}/facilities/{body.id}"})

    async def get_facility(self, req: Req) -> Resp:
        facility = self._facility(req)
        tenant = facility.tenant
        now = self.s.clock.now()
        sensors = self.s.registry.sensors_of(tenant, facility.id)
        start, end = _window(req, self.s.cfg.grade.timezone)
        series_to = end or now
        period = _period(req, 3600)
        # without `from`, the 7 days before `to` floored to the period on the Seoul clock, so that the buckets start
        # on clock hours (days at Seoul midnight) and stay put on every reload (QA14 F11)
        series_from = start or _floor(series_to - timedelta(days=7), period, self.s.cfg.grade.timezone)
        if series_from > series_to:  # `to` alone, before the default start
            raise _reversed(series_from, series_to)
        body = facility.to_wire()
        body["sensors"] = await self._sensors_wire(tenant, sensors)
        body["series"] = await self._series(tenant, [s.id for s in sensors], series_from, series_to, period)
        body["grade"] = await self._explanation(tenant, facility.id)
        body["gradeHistory"] = await self._grade_history(tenant, facility.id, None, None, 30)
        body["inspections"] = [i.to_wire() for i in schedule(facility, self._today(), self.s.cfg.inspections)]
        body["tasks"] = [t.to_doc() for t in self.s.tasks.list(tenant, facility=facility.id)]
        body["activeAlarms"] = await self._alarms(tenant, [facility.id, *(s.id for s in sensors)])
        return Resp(body=body)

    def _sensor_wire(self, sensor: Sensor) -> dict[str, Any]:
        wire: dict[str, Any] = sensor.to_wire()
        if sensor.kind:
            ladder = self.s.ladder_of(sensor, sensor.kind)
            variant = self.s.variant_for(sensor, sensor.kind)
            edges = dict(ladder.edges())
            unit, _ = DISPLAY_UNITS[sensor.kind]
            # `edges` in the channel's unit, the values the rule compares with (exact); `display` in the dashboard's
            # units with 2 decimals, free of float noise (QA14 F9); `datasetId`: the instance of the assessed
            # attribute this ladder watches (None: the default instance)
            wire["ladder"] = {"channel": sensor.kind, "unit": UNITS[sensor.kind], "rule": self.s.rule_for(sensor, sensor.kind),
                              "datasetId": variant.dataset_id if variant else None,
                              "attribute": ASSESSED[sensor.kind],
                              "edges": edges,
                              "hysteresis": ladder.hysteresis,
                              "display": {"unit": unit, "edges": {k: display_value(sensor.kind, v) for k, v in edges.items()},
                                          "hysteresis": display_value(sensor.kind, ladder.hysteresis)}}
        return wire

    async def _sensors_wire(self, tenant: str, sensors: list[Sensor]) -> list[dict[str, Any]]:
        """The sensors with their `health` read from their entities (one query): what ingest's device health
        wrote (`deviceState` online / offline and since when), when the sensor last reported a measure and its
        newest `batteryLevel`; times in UTC."""
        docs: dict[str, Any] = {}
        ids = [s.id for s in sensors]
        for offset in range(0, len(ids), 500):
            chunk = tuple(ids[offset:offset + 500])
            found, _ = await self.s.store.query_entities(tenant, EntityQuery(ids=chunk, limit=len(chunk)))
            docs.update({d["id"]: d for d in found})
        names = self.s.cfg.attributes
        measured = [iri(n) for n in (*sorted(self.s.measured), names.humidity)]
        return [{**self._sensor_wire(s), "health": {**sensor_health(docs.get(s.id), measured, iri(names.battery)),
                                                     **self.s.ladder_status(s)}}
                for s in sensors]

    async def _series(self, tenant: str, ids: list[str], start: datetime, end: datetime,
                      period_s: int) -> dict[str, Any]:
        """avg/min/max per period of every measured and assessed attribute, from the temporal store."""
        names = sorted({*self.s.measured, *ASSESSED.values(), self.s.cfg.attributes.humidity})
        out: dict[str, Any] = {"from": to_iso(start), "to": to_iso(end), "periodSeconds": period_s, "sensors": {}}
        if not ids:
            return out
        query = TemporalQuery(ids=tuple(ids), attrs=tuple(iri(n) for n in names), time_from=to_micros(start),
                              time_to=to_micros(end), limit_instances=5000, entity_limit=len(ids))
        entities, _ = await self.s.store.temporal_aggregate(tenant, query,
                                                            Aggregation(("avg", "min", "max"), period_s * 1_000_000))
        docs: dict[str, Any] = {}
        for offset in range(0, len(ids), 500):
            chunk = tuple(ids[offset:offset + 500])
            found, _ = await self.s.store.query_entities(tenant, EntityQuery(ids=chunk, limit=len(chunk)))
            docs.update({d["id"]: d for d in found})
        base = self._series_units()
        for entity in entities:
            attrs: dict[str, Any] = {}
            units: dict[str, Any] = {}
            for attr, series_list in entity.attrs.items():
                for series in series_list:
                    key = short(attr) + (f"@{series.dataset_id}" if series.dataset_id else "")
                    attrs[key] = [{"at": to_iso(from_micros(t)), **v} for t, v in
                                  zip(series.times, series.values, strict=True)]
                    units[key] = _series_unit(short(attr), base, docs.get(entity.id), attr)
            out["sensors"][entity.id] = {
                "attributes": attrs,
                "units": units,
                "temporalApi": f"/ngsi-ld/v1/temporal/entities/{entity.id}?timerel=between&timeAt={to_iso(start)}"
                               f"&endTimeAt={to_iso(end)}&aggrMethods=avg,min,max&aggrPeriodDuration=PT{period_s}S"}
        return out

    def _series_units(self) -> dict[str, str]:
        """attribute -> the unit its values are stored in when the device gives no unitCode (QA14 F11)."""
        names = self.s.cfg.attributes
        out = {names.tilt_x: "rad", names.tilt_y: "rad", names.crack: "mm", names.vibration: "mm/s",
               names.frequency: "Hz", names.temperature: "°C", names.humidity: "%", names.battery: "1"}
        out.update({ASSESSED[channel]: unit for channel, unit in UNITS.items()})
        return out

    async def _explanation(self, tenant: str, facility_id: str) -> dict[str, Any] | None:
        doc = await self.s.store.get_entity(tenant, facility_id)
        for inst in (doc or {}).get("attrs", {}).get(iri("dataSafetyGradeExplanation"), []):
            if "datasetId" not in inst:
                found: dict[str, Any] = inst.get("json") or inst.get("value")
                return found
        return None

    async def _grade_history(self, tenant: str, facility_id: str, start: datetime | None, end: datetime | None,
                             limit: int, explain: bool = False) -> list[dict[str, Any]]:
        names = ["dataSafetyGrade", "dataSafetyScore", "emergencyInspectionRecommended", "dataSafetyGradeStatus",
                 "dataSafetyCoverage"]
        if explain:
            names.append("dataSafetyGradeExplanation")
        found = await evidence.history(self.s.store, tenant, facility_id, names, start, end, limit)
        rows: dict[str, dict[str, Any]] = {}
        for name, instances in found.items():
            for inst in instances:
                at = inst.get("observedAt")
                if at:
                    row = rows.setdefault(at, {"at": at})
                    row[name] = _shown(name, inst.get("json", inst.get("value")))
                    # QA14 F6: a withheld grade keeps its reason, its letter (provisional) and its coverage
                    for sub in ("scored", "attached", "basis", "reasons", "provisionalGrade", "provisionalScore",
                                "completeness"):
                        if isinstance(inst.get(iri(sub)), dict):
                            row[f"{name}.{sub}" if name == "dataSafetyCoverage" else sub] = inst[iri(sub)].get("value")
        return [_history_row(rows[k]) for k in sorted(rows)]

    async def _alarms(self, tenant: str, entity_ids: list[str]) -> list[dict[str, Any]]:
        docs, _ = await self.s.store.query_alarms(tenant, AlarmQuery(entity_ids=tuple(entity_ids),
                                                                     statuses=ACTIVE_ALARM_STATUSES, limit=200))
        return [{k: d.get(k) for k in ("id", "entity_id", "rule_id", "kind", "level", "status", "raised_at",
                                       "parent_id")} for d in docs]

    async def get_grade(self, req: Req) -> Resp:
        facility = self._facility(req)
        explanation = await self._explanation(facility.tenant, facility.id)
        if explanation is None:
            raise NotFound(f"{facility.id}: 데이터 안전등급 미산정 / no data safety grade computed yet")
        return Resp(body=explanation)

    async def recompute_grade(self, req: Req) -> Resp:
        facility = self._facility(req)
        result = await self.s.run(lambda: self.s.grade_facility(facility.tenant, facility.id))
        return Resp(body=result)

    async def grade_history(self, req: Req) -> Resp:
        facility = self._facility(req)
        start, end = _window(req, self.s.cfg.grade.timezone)
        rows = await self._grade_history(facility.tenant, facility.id, start, end,
                                         int_param(req, "limit", 365, 1, 5000), req.param("explain") == "true")
        return Resp(body={"facility": facility.id, "grades": rows})

    async def recompute_all(self, req: Req) -> Resp:
        count = await self.s.run(self.s.grade_all)
        return Resp(body={"graded": count})

    # -- sensors, thresholds ---------------------------------------------------------------------------------------
    async def attach_sensor(self, req: Req) -> Resp:
        """Attach an existing sensor entity (a provisioned device's, or one an NGSI-LD client wrote) to a member;
        404 for an unknown id (a typo must not create a phantom main member), unless the body says `create`."""
        facility = self._facility(req)
        body = _model(req, SensorAttachBody)
        offsets = self._offsets(body.baseline)
        attrs: dict[str, Any] = {iri("controlledAsset"): [{"type": "Relationship", "object": facility.id}],
                                 iri("structuralMember"): _prop(body.member)}
        if body.kind:
            attrs[iri("sensorKind")] = _prop(body.kind)
        new = {"id": body.sensor, "type": [iri(self.s.cfg.sensor_types[0])], "attrs": attrs}
        actor, tenant = _writer(req), facility.tenant
        previous: list[str | None] = []
        guarded = _known_sensor(body.sensor, merge_op(new, True), body.create, facility.id, body.move,
                                self.s.cfg.facility_relationships,
                                lambda fid: self.s.registry.facility(tenant, fid) is not None, previous)
        outcome = (await self.s.store.mutate(tenant, [Mutation(body.sensor, guarded)], Context(actor=actor)))[0]
        if isinstance(outcome, Exception):
            raise outcome
        assert outcome.doc is not None
        sensor = self.s.registry.put_sensor_doc(tenant, outcome.doc)
        before = previous[0] if previous else None
        if before is not None and before != facility.id:  # a move (or an orphan's typo corrected): audited
            moved: dict[str, Any] = {"from": before, "to": facility.id,
                                     "fromMonitored": self.s.registry.facility(tenant, before) is not None}
            await self.s.audit.append(self.s.audit.row(tenant, AUDIT_KIND, "sensor-moved", actor, outcome="ok",
                                                       facility=facility.id, sensor=sensor.id, **moved))
        if DETACHED_IRI in outcome.doc.get("attrs", {}):  # attached again: laddered again
            done = (await self.s.store.mutate(tenant, [Mutation(sensor.id, write_op([], [(DETACHED_IRI,
                                                                                          None)]))],
                                              Context(actor=actor)))[0]
            if isinstance(done, Exception):
                raise done
            if done.doc is not None:
                sensor = self.s.registry.put_sensor_doc(tenant, done.doc)
        if body.replaced:  # a new device under the old id: its thermal history and installation baseline start now
            await self.s.run(lambda: self.s.reset_baseline(sensor, actor, "replaced (attach)", offsets))
        elif offsets is not None:  # the installation baseline given at attach (QA5 F9)
            await self.s.run(lambda: self.s.set_baseline(sensor, offsets, actor))
        return Resp(body=(await self._sensors_wire(tenant, [sensor]))[0])

    def _offsets(self, raw: Any) -> dict[str, float] | None:
        """An installation baseline given through the API: finite numbers of the tilt axes and the crack (QA5 F9)."""
        if raw is None:
            return None
        a = self.s.cfg.attributes
        allowed = (a.tilt_x, a.tilt_y, a.crack)
        if not isinstance(raw, dict) or not raw:
            raise bad("baseline은 측정 속성별 영점 값의 객체", f"baseline is an object of zero offsets per attribute "
                      f"({', '.join(allowed)})")
        unknown = sorted(set(raw) - set(allowed))
        if unknown:
            raise bad(f"baseline에 알 수 없는 속성: {', '.join(unknown)} (허용: {', '.join(allowed)})",
                      f"baseline names unknown attributes: {', '.join(unknown)} (allowed: {', '.join(allowed)})")
        if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in raw.values()):
            raise bad("baseline 값은 유한한 숫자", "a baseline offset is a finite number")
        return {str(k): float(v) for k, v in raw.items()}

    async def list_sensors(self, req: Req) -> Resp:
        """`GET /sensors` (`orphan`, `facility`, `limit`, `offset`): the structural sensors; `orphan=true` those in no
        monitored facility (no `controlledAsset`, or one naming no known facility, e.g. a typo; QA5 F9): they
        can alarm but no grade counts them. Each orphan says why (`orphan`: `no-facility` / `unknown-facility`)."""
        tenant = self.tenant(req)
        flag = _one_of(req, "orphan", ("true", "false"))
        wanted = req.param("facility")
        limit, offset = _page(req)
        rows = []
        for sensor in self.s.registry.sensors(tenant):
            why = None if sensor.facility_id is not None and self.s.registry.facility(tenant, sensor.facility_id) \
                else ("no-facility" if sensor.facility_id is None else "unknown-facility")
            if (flag == "true" and why is None) or (flag == "false" and why is not None):
                continue
            if wanted is not None and sensor.facility_id != wanted:
                continue
            rows.append((sensor, why))
        page = rows[offset:offset + limit]
        wires = await self._sensors_wire(tenant, [s for s, _ in page])
        return Resp(body={"total": len(rows), "limit": limit, "offset": offset,
                          "sensors": [{**w, "orphan": why} for w, (_, why) in zip(wires, page, strict=True)]})

    async def reset_baseline(self, req: Req) -> Resp:
        """`POST /sensors/{id}/reset-baseline` `{reason, baseline}`: the sensor's thermal model starts afresh and its
        installation baseline is set again: to `baseline` (offsets per axis) when given, else captured from its
        next readings (service)."""
        tenant, sensor = self._sensor(req)
        body = json_body(req)
        reason = body.get("reason", "") if isinstance(body, dict) else ""
        offsets = self._offsets(body.get("baseline") if isinstance(body, dict) else None)
        actor = _writer(req)
        await self.s.run(lambda: self.s.reset_baseline(sensor, actor, str(reason), offsets))
        wire = (await self._sensors_wire(tenant, [sensor]))[0]
        at = self.s.registry.baseline_at(tenant, sensor.id)
        return Resp(body={**wire, "thermalBaselineAt": to_iso(at) if at else None})

    async def detach_sensor(self, req: Req) -> Resp:
        """Take a sensor off the facility (service.detach_sensor): 404 unless it is attached to this facility."""
        facility = self._facility(req)
        sensor_id = req.path_params["sensorId"]
        sensor = self.s.registry.sensor(facility.tenant, sensor_id)
        if sensor is None or sensor.facility_id != facility.id:
            raise NotFound(f"센서 {sensor_id}는 시설물 {facility.id}에 연결되어 있지 않음 / "
                           f"sensor {sensor_id} is not attached to facility {facility.id}")
        actor = _writer(req)
        await self.s.run(lambda: self.s.detach_sensor(sensor, facility.id, actor))
        return Resp(status=204)

    async def get_sensor(self, req: Req) -> Resp:
        tenant, sensor = self._sensor(req)
        return Resp(body=(await self._sensors_wire(tenant, [sensor]))[0])

    async def fit_sensor(self, req: Req) -> Resp:
        tenant, sensor = self._sensor(req)

        actor = _writer(req)

        async def job() -> None:
            now = self.s.clock.now()
            await self.s.ensure_models(sensor, now, force=True)
            await self.s.store.mutate(tenant, [Mutation(sensor.id, merge_op(
                {"attrs": {iri("thermalCompensation"): [self.s.models_instance(sensor, now)]}}))],
                Context(actor=actor))

        await self.s.run(job)
        return Resp(body=self._sensor_wire(sensor))

    async def get_thresholds(self, req: Req) -> Resp:
        facility = self._facility(req)
        override = self.s.overrides.get((facility.tenant, facility.id))
        return Resp(body={"facility": facility.id, "class": self.s.class_of(facility),
                          "override": override.model_dump(mode="json", exclude_none=True) if override else None})

    async def put_thresholds(self, req: Req) -> Resp:
        facility = self._facility(req)
        try:  # a ladder given without hysteresis keeps the band of the ladder it replaces (QA5 F7, config.py)
            override = with_domain_bands(self.s.cfg, self.s.class_of(facility), _model(req, LadderSet))
        except Bilingual as exc:
            raise bad(f"잘못된 값: {exc.ko}", f"invalid value: {exc.en}") from exc
        except ValueError as exc:
            raise bad(f"잘못된 값: {exc}", f"invalid value: {exc}") from exc
        problem = self.s.cfg.limit_problem(override)  # QA14 F1: edges no plausible reading reaches never fire
        if problem is not None:
            raise bad(f"잘못된 값: {problem.ko}", f"invalid value: {problem.en}")
        actor = _writer(req)
        rules = await self.s.run(lambda: self.s.set_override(facility.tenant, facility.id, override, actor))
        return Resp(body={"facility": facility.id, "override": override.model_dump(mode="json", exclude_none=True),
                          "rules": rules})

    async def delete_thresholds(self, req: Req) -> Resp:
        facility = self._facility(req)
        if (facility.tenant, facility.id) not in self.s.overrides:
            raise NotFound(f"{facility.id}: 시설물별 기준 없음 / the facility has no thresholds of its own")
        actor = _writer(req)
        await self.s.run(lambda: self.s.set_override(facility.tenant, facility.id, None, actor))
        return Resp(status=204)

    # -- inspections ------------------------------------------------------------------------------------------------
    async def record_inspection(self, req: Req) -> Resp:
        facility = self._facility(req)
        body = _model(req, InspectionIn)
        updated = await self.s.record_inspection(facility, body, _actor(req), None)
        return Resp(status=201, body=updated.to_wire())

    async def facility_inspections(self, req: Req) -> Resp:
        facility = self._facility(req)
        records = await evidence.history(self.s.store, facility.tenant, facility.id, ["inspectionRecord"], None, None,
                                         int_param(req, "limit", 100, 1, 1000))
        return Resp(body={"facility": facility.id, "legalSafetyGrade": facility.legal_grade,
                          "schedule": [i.to_wire() for i in schedule(facility, self._today(), self.s.cfg.inspections)],
                          "records": [i.get("value") for i in records["inspectionRecord"]]})

    async def inspection_schedule(self, req: Req) -> Resp:
        tenant = self.tenant(req)
        today = self._today()
        items = [i.to_wire() for f in self.s.registry.facilities(tenant)
                 for i in schedule(f, today, self.s.cfg.inspections)]
        status = _one_of(req, "status", SCHEDULE_STATUSES)
        if status:
            items = [i for i in items if i["status"] == status]
        return Resp(body={"today": today.isoformat(), "total": len(items), "items": items})

    async def inspections_overdue(self, req: Req) -> Resp:
        tenant = self.tenant(req)
        today = self._today()
        items = overdue(self.s.registry.facilities(tenant), today, self.s.cfg.inspections)
        names = {f.id: f.name for f in self.s.registry.facilities(tenant)}
        return Resp(body={"today": today.isoformat(), "total": len(items),
                          "items": [{**i.to_wire(), "facilityName": names.get(i.facility, "")} for i in items]})

    # -- tasks ------------------------------------------------------------------------------------------------------
    def _task(self, req: Req) -> Task:
        return self.s.tasks.get(self.tenant(req), req.path_params["taskId"])

    async def list_tasks(self, req: Req) -> Resp:
        statuses = tuple(v for raw in req.params.get("status", []) for v in raw.split(",") if v)
        allowed = (OPEN, IN_PROGRESS, COMPLETED, CANCELLED, "active")
        unknown = [v for v in statuses if v not in allowed]
        if unknown:
            raise bad(f"알 수 없는 status 값: {', '.join(unknown)} (허용: {', '.join(allowed)})",
                      f"unknown status: {', '.join(unknown)} (allowed: {', '.join(allowed)})")
        _one_of(req, "kind", tuple(TITLES))
        limit, offset = _page(req)
        wanted = tuple(s for v in statuses for s in (ACTIVE if v == "active" else (v,)))
        tasks = self.s.tasks.list(self.tenant(req), wanted, req.param("facility"), req.param("kind"))
        return Resp(body={"total": len(tasks), "limit": limit, "offset": offset,
                          "tasks": [t.to_doc() for t in tasks[offset:offset + limit]]})

    async def create_task(self, req: Req) -> Resp:
        tenant = self.tenant(req)
        actor = _actor(req)
        body = _model(req, TaskIn)
        if self.s.registry.facility(tenant, body.facility) is None:
            raise NotFound(f"시설물 {body.facility} 없음 / facility {body.facility} is not monitored")
        if body.kind != "manual" and self.s.tasks.open_for(tenant, body.facility, body.kind) is not None:
            raise AlreadyExists(f"{body.facility}: 열린 {body.kind} 작업이 이미 있음 / an open {body.kind} task exists")
        now = self.s.clock.now()
        due = body.due or now + timedelta(hours=self.s.cfg.tasks.due_hours.get(body.kind, 168.0))
        title = {"ko": body.title, "en": body.title} if body.title else None
        task = self.s.tasks.new(tenant, body.facility, body.kind, to_iso(now), to_iso(due), actor,
                                {"source": "manual"}, title, body.assignee)
        await self.s.tasks.save(task)
        return Resp(status=201, body=task.to_doc(), headers={"Location": f"{BASE}/tasks/{task.id}"})

    async def get_task(self, req: Req) -> Resp:
        return Resp(body=self._task(req).to_doc())

    async def start_task(self, req: Req) -> Resp:
        task, actor = self._task(req), _actor(req)
        body = json_body(req)
        assignee = body.get("assignee") if isinstance(body, dict) else None
        task.move((OPEN,), IN_PROGRESS, to_iso(self.s.clock.now()), "started", actor, assignee=assignee or actor)
        task.assignee = str(assignee or actor)
        await self.s.tasks.save(task)
        return Resp(body=task.to_doc())

    async def complete_task(self, req: Req) -> Resp:
        task, actor = self._task(req), _actor(req)
        result = _model(req, TaskResultIn)
        facility = self.s.registry.facility(task.tenant, task.facility)
        if result.inspection is not None:  # refused before the task moves, so a 400 leaves it as it was
            self.s.refuse_future({"inspection.completedOn": result.inspection.completed_on})
        now = to_iso(self.s.clock.now())
        # open -> completed is allowed (a trivial task closed at once, QA5 F13h); the history says it was not started
        direct = {"withoutStart": True} if task.status == OPEN else {}
        task.move(ACTIVE, COMPLETED, now, "completed", actor, condition=result.condition, **direct)
        task.result = {**result.model_dump(mode="json", by_alias=True, exclude={"inspection"}), "completedAt": now}
        if result.inspection is not None and facility is not None:
            await self.s.record_inspection(facility, result.inspection, actor, task.id)
            task.result["inspection"] = result.inspection.model_dump(mode="json", by_alias=True)
        await self.s.tasks.save(task)
        return Resp(body=task.to_doc())

    async def cancel_task(self, req: Req) -> Resp:
        task, actor = self._task(req), _actor(req)
        body = json_body(req)
        reason = body.get("reason", "") if isinstance(body, dict) else ""
        task.move(ACTIVE, CANCELLED, to_iso(self.s.clock.now()), "cancelled", actor, reason=str(reason)[:2000])
        await self.s.tasks.save(task)
        return Resp(body=task.to_doc())

    async def upload_photo(self, req: Req) -> Resp:
        task, actor = self._task(req), _actor(req)
        if task.status not in ACTIVE:
            raise _conflict(f"{task.status} 작업에는 사진을 올릴 수 없음", f"a {task.status} task takes no more photos")
        parts = [p for p in parse_multipart(req.header("content-type"), req.body) if p.filename is not None]
        if not parts:
            raise bad("사진 파일 부분이 없습니다", "the body has no file part")
        if len(task.photos) + len(parts) > self.s.cfg.photos.max_per_task:
            raise bad("사진 수 한도 초과", f"at most {self.s.cfg.photos.max_per_task} photos per task")
        for part in parts:
            self.s.photos.check(part)  # every part is valid before any is stored
        added = []
        for part in parts:
            stored = await asyncio.to_thread(self.s.photos.save, task.tenant, task.id, part)
            photo = {"id": stored.id, "contentType": stored.content_type, "size": stored.size, "sha256": stored.sha256,
                     "filename": (part.filename or "")[:200], "uploadedAt": to_iso(self.s.clock.now()),
                     "uploadedBy": actor, "url": f"{BASE}/tasks/{task.id}/photos/{stored.id}"}
            task.photos.append(photo)
            added.append(photo)
        task.note(to_iso(self.s.clock.now()), "photos-added", actor, photos=[p["id"] for p in added])
        await self.s.tasks.save(task)
        return Resp(status=201, body={"task": task.id, "photos": added})

    async def get_photo(self, req: Req) -> Resp:
        task = self._task(req)
        photo = next((p for p in task.photos if p["id"] == req.path_params["photoId"]), None)
        if photo is None:
            raise NotFound(f"사진 {req.path_params['photoId']} 없음 / photo does not exist")
        data = await asyncio.to_thread(self.s.photos.read, task.tenant, task.id, photo["id"], photo["contentType"])
        return Resp(body=data, media_type=photo["contentType"], headers={"Cache-Control": "private, max-age=3600"})

    # -- the district -----------------------------------------------------------------------------------------------
    async def summary(self, req: Req) -> Resp:
        tenant = self.tenant(req)
        facilities = self.s.registry.facilities(tenant)
        by_data: dict[str, int] = {g: 0 for g in (*"ABCDE", "none")}
        by_legal: dict[str, int] = {g: 0 for g in (*"ABCDE", "none")}
        matrix: dict[str, dict[str, int]] = {}
        for f in facilities:
            data, legal = f.data_grade or "none", f.legal_grade or "none"
            by_data[data] += 1
            by_legal[legal] += 1
            matrix.setdefault(legal, {}).setdefault(data, 0)
            matrix[legal][data] += 1
        ids = [f.id for f in facilities] + [s.id for s in self.s.registry.sensors(tenant)]
        stats = await self.s.store.alarm_stats(tenant, AlarmQuery(entity_ids=tuple(ids), statuses=ACTIVE_ALARM_STATUSES,
                                                                  derived=False), ()) if ids else None
        late = overdue(facilities, self._today(), self.s.cfg.inspections)
        open_tasks = self.s.tasks.list(tenant, ACTIVE)
        return Resp(body={
            "facilities": len(facilities), "byDataGrade": by_data, "byLegalGrade": by_legal,
            # how many grades rest on enough of their main members (QA5 F4): withheld ones are `insufficient-data`
            "byDataGradeStatus": _count(f.data_grade_status or "no-data" for f in facilities),
            "legalByData": matrix,
            "activeAlarms": {"total": stats.total if stats else 0,
                             "byLevel": {("fault" if k in ("", None) else k): v
                                         for k, v in (stats.by_level if stats else {}).items()}},
            "overdueInspections": {"total": len(late), "facilities": sorted({i.facility for i in late}),
                                   "items": [i.to_wire() for i in late[:50]]},
            "emergencyInspectionRecommended": sorted(f.id for f in facilities if f.emergency_recommended),
            "openTasks": {"total": len(open_tasks), "byKind": _count(t.kind for t in open_tasks)},
        })

    async def rules(self, req: Req) -> Resp:
        """The domain's rules in effect for the tenant (base, classes, facilities) with their sources."""
        tenant = self.tenant(req)
        found = [(r, o) for r, o in self.s.engine.rules(tenant) if r.id in self.s.rule_ids or r.category == CATEGORY]
        settings = {name: {"value": _setting(self.s.cfg, name), "source": key, "text": SOURCES[key][0],
                           "confidence": SOURCES[key][1]} for name, key in SETTING_SOURCES.items()}
        return Resp(body={"sources": {k: {"text": v[0], "confidence": v[1]} for k, v in SOURCES.items()},
                          "settings": settings,
                          "classes": {k: v.model_dump(mode="json", exclude_none=True)
                                      for k, v in self.s.cfg.classes.items()},
                          "rules": [{**rule_to_json(r), "origin": o} for r, o in found]})

    # -- exports ----------------------------------------------------------------------------------------------------
    async def export_facilities(self, req: Req) -> Resp:
        """One row per facility; times in the domain's time zone (Asia/Seoul), named in the header (QA5 F13a)."""
        tenant, zone = self.tenant(req), self.s.cfg.grade.timezone
        today = self._today()
        rows: list[list[Any]] = [["id", "name", "facilityType", "facilityClass", "structureClass", "district", "legalSafetyGrade",
                 "legalSafetyGradeDate", "dataSafetyGrade", "dataSafetyScore", "dataSafetyGradeStatus",
                 "dataSafetyCoverage", f"dataSafetyGradeAt ({zone})",
                 "emergencyInspectionRecommended", "sensors", "nextInspectionDue", "overdueInspections", "openTasks"]]
        for f in self.s.registry.facilities(tenant):
            items = schedule(f, today, self.s.cfg.inspections)
            dues = sorted(i.due.isoformat() for i in items if i.due)
            rows.append([f.id, f.name, f.facility_type, f.facility_class or "", f.structure_class or "",
                         f.district or "", f.legal_grade or "",
                         f.legal_grade_date.isoformat() if f.legal_grade_date else "", f.data_grade or "",
                         "" if f.data_score is None else f"{f.data_score:.4f}", f.data_grade_status or "",
                         "" if f.data_coverage is None else f"{f.data_coverage:.4f}", local(f.data_grade_at, zone),
                         "true" if f.emergency_recommended else "false",
                         len(self.s.registry.sensors_of(tenant, f.id)), dues[0] if dues else "",
                         ";".join(i.kind for i in items if i.status == "overdue"),
                         len(self.s.tasks.list(tenant, ACTIVE, facility=f.id))])
        return self._csv(rows, f"facility-safety-{today.isoformat()}.csv")

    async def export_grades(self, req: Req) -> Resp:
        """The grade history; `from` / `to` with an offset, or dates (Seoul days), as the JSON API; `at` in
        Asia/Seoul."""
        tenant, zone = self.tenant(req), self.s.cfg.grade.timezone
        start, end = _window(req, self.s.cfg.grade.timezone)
        rows = [["facility", "name", f"at ({zone})", "dataSafetyGrade", "dataSafetyScore", "dataSafetyGradeStatus",
                 "provisionalGrade", "insufficientBecause", "dataSafetyCoverage", "completeness",
                 "emergencyInspectionRecommended", "legalSafetyGrade"]]
        for f in self.s.registry.facilities(tenant):
            for row in await self._grade_history(tenant, f.id, start, end, 5000):
                cov = row.get("dataSafetyCoverage") or {}
                rows.append([f.id, f.name, local(row["at"], zone), row.get("dataSafetyGrade", ""), row.get("dataSafetyScore", ""),
                             row.get("dataSafetyGradeStatus", ""), row.get("provisionalGrade", ""),
                             ";".join(row.get("reasons") or []),
                             "" if cov.get("share") is None else f"{cov['share']:.4f}",
                             "" if row.get("completeness") is None else f"{row['completeness']:.4f}",
                             row.get("emergencyInspectionRecommended", ""), f.legal_grade or ""])
        return self._csv(rows, "facility-safety-grades.csv")

    # -- a month's report (report.py) -----------------------------------------------------------------------------
    async def month_report(self, req: Req) -> Resp:
        return Resp(body=await self._month_report(req))

    async def export_report(self, req: Req) -> Resp:
        made = await self._month_report(req)
        return self._csv(report.csv_rows(made), f"facility-safety-report-{made['period']['month']}.csv")

    async def _month_report(self, req: Req) -> dict[str, Any]:
        tenant, zone = self.tenant(req), self.s.cfg.grade.timezone
        month = report.month_of(req.param("month"), self.s.clock.now(), zone)
        facilities = self.s.registry.facilities(tenant)
        wanted = req.param("facility")
        if wanted:
            facilities = [f for f in facilities if f.id == wanted]
            if not facilities:
                raise NotFound(f"시설물 {wanted} 없음 / facility {wanted} is not monitored")
        owner = {f.id: f.id for f in facilities}
        for f in facilities:
            owner.update((s.id, f.id) for s in self.s.registry.sensors_of(tenant, f.id))
        alarms: dict[str, dict[str, dict[str, Any]]] = {f.id: {} for f in facilities}  # facility -> alarm id -> doc
        start, end = to_micros(month.start), to_micros(month.end)
        async for doc in _pages(lambda offset: self.s.store.query_alarms(tenant, AlarmQuery(
                derived=False, raised_from=start, raised_to=end, limit=PAGE, offset=offset))):
            # a sensor's alarm names its facility as its parent, also once the sensor is detached
            found = owner.get(str(doc.get("entity_id"))) or (doc.get("parent_id") if doc.get("parent_id") in alarms
                                                              else None)
            if found:
                alarms[found][str(doc["id"])] = doc
        changes: dict[str, list[dict[str, Any]]] = {f.id: [] for f in facilities}
        async for row in _pages(lambda offset: self.s.store.query_audit(tenant, AuditQuery(
                kinds=(AUDIT_KIND,), at_from=start, at_to=end, limit=PAGE, offset=offset))):
            if row.get("facility") in changes:
                changes[str(row["facility"])].append(row)
        sections = []
        for f in facilities:
            grades = await self._grade_history(tenant, f.id, None, month.end, 5000)
            records = await evidence.history(self.s.store, tenant, f.id, ["inspectionRecord"], month.start, month.end,
                                             1000)
            sections.append({
                "facility": f.id, "name": f.name, "facilityType": f.facility_type, "legalSafetyGrade": f.legal_grade,
                "grade": report.grade_figures(grades, month),
                "alarms": report.alarm_figures(alarms[f.id].values()),
                "tasks": report.task_figures(self.s.tasks.list(tenant, (), facility=f.id), month),
                "inspections": [i.get("value") for i in records["inspectionRecord"]],
                "changes": report.change_lines(changes[f.id], month)})
        every = [doc for found in alarms.values() for doc in found.values()]
        return {"period": month.to_wire(), "district": report.district(sections, every), "facilities": sections}

    def _csv(self, rows: list[list[Any]], filename: str) -> Resp:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        writer.writerows([[_cell(v) for v in row] for row in rows])
        data = buffer.getvalue().encode("utf-8")
        if self.s.cfg.csv_bom:
            data = b"\xef\xbb\xbf" + data
        return Resp(body=data, media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


PAGE = 500  # rows per store query of the month's report


async def _pages(query: Callable[[int], Awaitable[tuple[list[Doc], int | None]]]) -> AsyncIterator[Doc]:
    """Every row of a paged store query (alarms, audit lines), page by page."""
    offset = 0
    while True:
        rows, _ = await query(offset)
        for row in rows:
            yield row
        if len(rows) < PAGE:
            return
        offset += PAGE


def _floor(at: datetime, period_s: int, zone: str) -> datetime:
    """`at` floored to a whole number of periods on the clock of `zone` (counted from 1970-01-01 00:00 there): with
    Asia/Seoul, an hour period starts on clock hours and a day at Seoul midnight."""
    offset = at.astimezone(ZoneInfo(zone)).utcoffset() or timedelta(0)
    micros = to_micros(at) + int(offset.total_seconds() * 1_000_000)
    step = period_s * 1_000_000
    return from_micros(micros - micros % step - int(offset.total_seconds() * 1_000_000))


# UN/CEFACT codes of the plausibility table (rules.UNITS) -> their symbol; a plain symbol is shown as it is
CODE_SYMBOLS = {"C81": "rad", "C25": "mrad", "DD": "°", "MMT": "mm", "4H": "µm", "CMT": "cm", "MTR": "m",
                "C16": "mm/s", "2M": "cm/s", "MTS": "m/s", "HTZ": "Hz", "KHZ": "kHz", "C62": "1", "P1": "%",
                "CEL": "°C", "KEL": "K", "FAH": "°F"}


def _series_unit(name: str, base: dict[str, str], doc: Doc | None, attr: str) -> dict[str, Any]:
    """The unit of one attribute of `series` (QA14 F11): an assessed attribute is in its channel's unit (rad, mm,
    mm/s: the domain converts); a measured one is as the device sent it: the unitCode of the sensor's current
    value (`unitCode`), else the attribute's stored unit."""
    if name in ASSESSED.values():
        return {"unit": base[name], "unitCode": None, "source": "assessed"}
    current = next((i for i in (doc or {}).get("attrs", {}).get(attr, ()) if "datasetId" not in i), None)
    code = current.get("unitCode") if current else None
    if code:
        return {"unit": CODE_SYMBOLS.get(code, code), "unitCode": code, "source": "unitCode"}
    return {"unit": base.get(name), "unitCode": None, "source": "default"}



def _history_row(row: dict[str, Any]) -> dict[str, Any]:
    """A grade-history row: `dataSafetyCoverage` as `{share, scored, attached, basis}` (QA14 F6)."""
    parts = {k.split(".", 1)[1]: row.pop(k) for k in [k for k in row if k.startswith("dataSafetyCoverage.")]}
    if "dataSafetyCoverage" in row:
        row["dataSafetyCoverage"] = {"share": row["dataSafetyCoverage"], **parts}
    return row


def _setting(cfg: Any, dotted: str) -> Any:
    """A setting's value by its dotted name (`grade.min_main_coverage`)."""
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


def _shown(name: str, value: Any) -> Any:
    """A recorded grade value as the grade itself shows it: a score rounded as `grade.shown_score` does (history
    written by other clients or older versions may hold one unrounded, e.g. 73.33333333333333), both in the grade
    history (JSON) and in grades.csv."""
    if name == "dataSafetyScore" and isinstance(value, int | float) and not isinstance(value, bool):
        return shown_score(value)
    return value


def _cell(value: Any) -> str:
    """One CSV cell as a spreadsheet user reads it: booleans as `true`/`false` (never Python's `True`), the
    convention of every CSV of the domain, whichever export the value comes from."""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = "" if value is None else str(value)
    # A spreadsheet runs a cell that starts with = + - @ as a formula: prefix it (CSV injection).
    return "'" + text if text[:1] in ("=", "+", "-", "@") and not _is_number(text) else text


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _count(values: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


def _conflict(ko: str, en: str) -> UcityError:
    return InvalidMove(f"{ko} / {en}")


class OfficialRecordOnly(UcityError):
    """A registration update that would change the legal grade or an inspection date (QA5 F5)."""

    status = 409
    type_uri = "urn:ucity:errors:OfficialRecordOnly"
    title = "Only an official inspection changes this"


class SensorAttachBody(SensorAttachIn):
    """`POST /facilities/{id}/sensors`: `create` true makes a StructuralSensor entity for an id that does not exist
    (a sensor an NGSI-LD client will write); without it an unknown id is refused (404). A sensor attached to another
    monitored facility is refused (409) unless `move` is true (the move is audited). `replaced` true resets its
    thermal model (a new device under the old id)."""

    create: bool = False
    move: bool = False
    replaced: bool = False


class SensorOnOtherFacility(UcityError):
    """Attaching a sensor that another facility holds, without `"move": true` (QA5 F9)."""

    status = 409
    type_uri = "urn:ucity:errors:SensorOnOtherFacility"
    title = "The sensor is attached to another facility"


def official_changes(before: Facility, body: FacilityIn) -> list[str]:
    """What a registration body would change of the official record of an existing facility: its legal grade,
    the grade's date, the last inspections. A value the body leaves out or repeats changes nothing."""
    out = []
    if body.legal_grade is not None and body.legal_grade != before.legal_grade:
        out.append(f"legalSafetyGrade {before.legal_grade or '-'} -> {body.legal_grade}")
    if body.legal_grade_date is not None and body.legal_grade_date != before.legal_grade_date:
        old = before.legal_grade_date.isoformat() if before.legal_grade_date else "-"
        out.append(f"legalSafetyGradeDate {old} -> {body.legal_grade_date.isoformat()}")
    for kind, day in sorted(body.last_inspections.items()):
        had = before.last_inspections.get(kind)
        if day != had:
            out.append(f"lastInspections.{kind} {had.isoformat() if had else '-'} -> {day.isoformat()}")
    return out


def _official_kept(body: FacilityIn, apply: ApplyFn) -> ApplyFn:
    """The registration write, refused (409) when the facility exists and the body changes its official record:
    only an official inspection does that (`POST /facilities/{id}/inspections`, recorded with its actor). Checked
    on the committed document inside the write, so no other write slips between the check and the merge."""

    def guarded(before: Doc | None, now: str) -> Outcome:
        if before is not None and is_facility(before):
            changes = official_changes(facility_from_doc("", before), body)
            if changes:
                listed = "; ".join(changes)
                use = f"POST {BASE}/facilities/{body.id}/inspections"
                raise OfficialRecordOnly(
                    f"등록된 시설물의 법정 안전등급과 점검일은 공식 점검 기록으로만 바뀝니다({use}): {listed} / the legal "
                    f"safety grade and inspection dates of a registered facility change only with an official "
                    f"inspection record ({use}): {listed}", fields=changes, inspectionsApi=use)
        return apply(before, now)

    return guarded


def _known_sensor(sensor_id: str, apply: ApplyFn, create: bool, facility_id: str, move: bool,
                  relationships: list[str], monitored: Callable[[str], bool], previous: list[str | None]) -> ApplyFn:
    """The attachment write, refused (404) for a sensor entity that does not exist unless `create` says so, and
    (409) for one attached to another monitored facility unless `move` says so. Checked on the committed document
    inside the write; the facility it had is put in `previous`. A sensor whose facility is not monitored (an
    orphan: a typo in `controlledAsset`) is attached without `move`."""

    def guarded(before: Doc | None, now: str) -> Outcome:
        current = facility_of(before, relationships) if before is not None else None
        previous[:] = [current]
        if current is not None and current != facility_id and monitored(current) and not move:
            raise SensorOnOtherFacility(
                f"센서 {sensor_id}는 시설물 {current}에 연결되어 있음: 옮기려면 \"move\": true / sensor {sensor_id} is "
                f'attached to facility {current}: send "move": true to move it', facility=current)
        if before is None and not create:
            raise NotFound(f"센서 {sensor_id} 없음: 기기를 먼저 등록하거나(/iot/devices) 새 센서 개체를 만들려면 "
                           f'"create": true / sensor {sensor_id} does not exist: provision its device first '
                           f'(/iot/devices), or send "create": true to create a new sensor entity')
        return apply(before, now)

    return guarded


def sensor_health(doc: Doc | None, measured: list[str], battery: str) -> dict[str, Any]:
    """A sensor's health from its entity: `status` (ingest's `deviceState`: online / offline; `unknown` without
    one, e.g. a sensor written by an NGSI-LD client), `since` (when that state was set), `lastReportedAt` (when
    its newest measure was received: the newest write time among its measured attributes, as device health
    counts a report), `batteryLevel` (as sent) with its `batteryUnitCode`, `batteryFraction` (0..1, what SHM-R6's
    battery rule sees, QA14 F2) and `batteryAt`. Times ISO 8601 UTC; None when unknown."""
    attrs = (doc or {}).get("attrs", {})

    def default(name: str) -> dict[str, Any] | None:
        return next((i for i in attrs.get(name, ()) if "datasetId" not in i), None)

    state = default(iri("deviceState")) or {}
    times = [t for name in measured for i in attrs.get(name, ()) if "datasetId" not in i
             if isinstance(t := i.get("modifiedAt") or i.get("observedAt"), str)]
    cell = default(battery) or {}
    suspect = default(iri(SUSPECT_ATTR)) or {}
    reasons = suspect.get(iri("reasons"), {})
    return {"readingSuspect": None if suspect.get("value") in (None, SUSPECT_OK) else {  # QA5 F3, F13i: why not assessed
                "value": suspect.get("value"), "at": _utc(suspect.get("observedAt")),
                "reasons": reasons.get("value", []) if isinstance(reasons, dict) else []},
            "status": state.get("value") if state.get("value") in ("online", "offline") else "unknown",
            "since": _utc(state.get("observedAt")), "lastReportedAt": _utc(max(times) if times else None),
            "batteryLevel": cell.get("value"), "batteryAt": _utc(cell.get("observedAt") or cell.get("modifiedAt")),
            # QA14 F2: the unit it came in, and the fraction SHM-R6's battery rule judged (percent converted)
            "batteryUnitCode": cell.get("unitCode"),
            "batteryFraction": (default(iri(BATTERY_ATTR)) or {}).get("value")}


def _utc(text: Any) -> str | None:
    if not isinstance(text, str):
        return None
    try:
        return to_iso(parse_iso(text))
    except (TypeError, ValueError):
        return None


def local(text: Any, zone: str) -> str:
    """A stored UTC time as people read it in a spreadsheet: `2026-03-02 10:00:00` in the domain's time zone
    (`grade.timezone`, Asia/Seoul; the CSV header names it), which Excel takes as a date-time; "" for none, and a
    value that is not a time as it is. The JSON API keeps UTC."""
    if not isinstance(text, str) or not text:
        return ""
    try:
        return parse_iso(text).astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError):
        return text


def _building(body: FacilityIn) -> dict[str, Any]:
    """The stored (expanded) form of the attributes a registered facility has."""
    attrs: dict[str, Any] = {
        iri("name"): _prop(body.name), iri("facilityType"): _prop(body.facility_type),
        iri("category"): _prop(body.category or [SDM_CATEGORY[body.facility_type]]),
    }
    optional = {"facilityClass": body.facility_class, "structureClass": body.structure_class,
                "legalSafetyGrade": body.legal_grade, "yearBuilt": body.year_built,
                "legalSafetyGradeDate": body.legal_grade_date.isoformat() if body.legal_grade_date else None}
    for kind, day in body.last_inspections.items():
        optional[LAST_INSPECTION_ATTR[kind]] = day.isoformat()
    attrs.update({iri(k): _prop(v) for k, v in optional.items() if v is not None})
    if body.location is not None:
        attrs[iri("location")] = [{"type": "GeoProperty", "value": body.location}]
    if body.district is not None:
        attrs[iri("address")] = _prop({"addressCountry": "KR", "district": body.district})
    return {"id": body.id, "type": [iri("Building")], "attrs": attrs}


def routes(photo_limit: int) -> list[ApiRoute]:
    """The route table (more specific paths first); handlers are looked up on the running platform."""

    def h(name: str) -> Callable[[Any], Handler]:
        return lambda platform: getattr(platform.get("facility_safety").api, name)

    f = f"{BASE}/facilities/{{facilityId}}"
    t = f"{BASE}/tasks/{{taskId}}"
    table = [
        ("GET", f"{BASE}/facilities", "list_facilities"), ("POST", f"{BASE}/facilities", "put_facility"),
        ("GET", f"{f}/grade", "get_grade"), ("POST", f"{f}/grade", "recompute_grade"),
        ("GET", f"{f}/grades", "grade_history"), ("POST", f"{f}/sensors", "attach_sensor"),
        ("DELETE", f"{f}/sensors/{{sensorId}}", "detach_sensor"),
        ("GET", f"{f}/thresholds", "get_thresholds"),
        ("GET", f"{f}/inspections", "facility_inspections"), ("POST", f"{f}/inspections", "record_inspection"),
        ("GET", f, "get_facility"),
        ("GET", f"{BASE}/sensors", "list_sensors"),
        ("GET", f"{BASE}/sensors/{{sensorId}}", "get_sensor"),
        ("POST", f"{BASE}/sensors/{{sensorId}}/thermal-fit", "fit_sensor"),
        ("POST", f"{BASE}/sensors/{{sensorId}}/reset-baseline", "reset_baseline"),
        ("POST", f"{BASE}/grades/recompute", "recompute_all"),
        ("GET", f"{BASE}/inspections/schedule", "inspection_schedule"),
        ("GET", f"{BASE}/inspections/overdue", "inspections_overdue"),
        ("GET", f"{BASE}/tasks", "list_tasks"), ("POST", f"{BASE}/tasks", "create_task"),
        ("POST", f"{t}/start", "start_task"), ("POST", f"{t}/complete", "complete_task"),
        ("POST", f"{t}/cancel", "cancel_task"),
        ("GET", f"{t}/photos/{{photoId}}", "get_photo"), ("GET", t, "get_task"),
        ("GET", f"{BASE}/summary", "summary"), ("GET", f"{BASE}/rules", "rules"),
        ("GET", f"{BASE}/export/facilities.csv", "export_facilities"),
        ("GET", f"{BASE}/export/grades.csv", "export_grades"),
        ("GET", f"{BASE}/report", "month_report"), ("GET", f"{BASE}/export/report.csv", "export_report"),
    ]
    out = [ApiRoute(method, path, h(name)) for method, path, name in table]
    # A facility's own thresholds replace its alarm rules: the permission of editing rules (QA5 F6).
    out += [ApiRoute("PUT", f"{f}/thresholds", h("put_thresholds"), permission=CONFIG_ADMIN),
            ApiRoute("DELETE", f"{f}/thresholds", h("delete_thresholds"), permission=CONFIG_ADMIN)]
    out.append(ApiRoute("POST", f"{t}/photos", h("upload_photo"), max_body_bytes=photo_limit))
    return out
