"""Data of facility safety: facilities, sensors, thermal models, tasks; read from and written to NGSI-LD.

Three kinds of model, kept apart (DESIGN §5.11):

* input models (pydantic, `*In`): what the API accepts, validated member by member;
* records (dataclasses): what the domain keeps in memory, read from the stored entities
  (`facility_from_doc`, `sensor_from_doc`) so that a facility written by any NGSI-LD client or by
  the simulator is understood;
* wire forms (`to_wire`): what the API returns.

Entities (names in the NGSI-LD core context; docs in README.md):

* a facility is a Smart Data Models `Building` with `facilityType` (bridge, footbridge,
  retainingWall, school, daycareCenter, pumpStation, apartment, communityCenter, building, other),
  `facilityClass` 1/2/3 (시설물 종별), `legalSafetyGrade` A–E with `legalSafetyGradeDate`, the last
  official inspections (`lastPeriodicInspectionDate`, `lastPreciseInspectionDate`,
  `lastPreciseDiagnosisDate`, or `lastInspectionDate` with `inspectionType`), `structureClass`
  (residential / industrial / heritage, SHM-R3), and what the domain writes: `dataSafetyGrade`,
  `dataSafetyScore`, `dataSafetyGradeExplanation`, `dataSafetyGradeStatus`, `dataSafetyCoverage`,
  `emergencyInspectionRecommended`;
* a sensor is a `StructuralSensor` (the device's entity) with `controlledAsset` -> its facility,
  `structuralMember` main / auxiliary, `sensorKind` tilt / crack / vibration, its measures, and
  what the domain writes: the assessed values, `thermalCompensation`, `sensorStuck`,
  `crackOpeningRate`, and the history-only `safetyEvent`.

The simulator of issue 5 writes `facilityClass` with the facility *type* (e.g. `retainingWall`);
a non-numeric `facilityClass` is therefore read as the type when `facilityType` is absent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ucity.ngsild.context import core_context
from ucity.store.base import Doc

GRADES = ("A", "B", "C", "D", "E")
MEMBERS = ("main", "auxiliary")
FACILITY_TYPES = ("bridge", "footbridge", "retainingWall", "school", "daycareCenter", "pumpStation", "apartment",
                  "communityCenter", "building", "other")
TYPE_ALIASES = {"agingApartment": "apartment", "agingBuilding": "building", "apartments": "apartment",
                "kindergarten": "daycareCenter", "daycare": "daycareCenter", "retaining_wall": "retainingWall",
                "pump_station": "pumpStation", "residential": "building", "civic": "building"}
INSPECTION_KINDS = ("periodic", "precise", "diagnosis")
LAST_INSPECTION_ATTR = {"periodic": "lastPeriodicInspectionDate", "precise": "lastPreciseInspectionDate",
                        "diagnosis": "lastPreciseDiagnosisDate"}
Grade = Literal["A", "B", "C", "D", "E"]
_STRICT = ConfigDict(extra="forbid")


def iri(name: str) -> str:
    """The stored (expanded) name of an attribute or type, through the core context."""
    return core_context().expand_term(name)


def short(expanded: str) -> str:
    return core_context().compact_iri(expanded)


def default_instance(doc: Doc | None, name: str) -> dict[str, Any] | None:
    for instance in (doc or {}).get("attrs", {}).get(iri(name), ()):
        if "datasetId" not in instance:
            found: dict[str, Any] = instance
            return found
    return None


def value(doc: Doc | None, name: str) -> Any:
    """The value (or object) of an attribute's default instance; None if absent."""
    instance = default_instance(doc, name)
    if instance is None:
        return None
    for member in ("value", "object", "json", "vocab", "valueList", "languageMap"):
        if member in instance:
            return instance[member]
    return None


def prop(value: Any, **extra: Any) -> dict[str, Any]:
    """A stored Property instance."""
    return {"type": "Property", "value": value, **extra}


def as_date(raw: Any) -> date | None:
    if isinstance(raw, dict) and "@value" in raw:  # an NGSI-LD typed date value
        raw = raw["@value"]
    if not isinstance(raw, str):
        return None
    try:
        return date.fromisoformat(raw[:10])
    except ValueError:
        return None


def grade_of(raw: Any) -> str | None:
    text = str(raw).strip().upper()[:1] if raw is not None else ""
    return text if text in GRADES else None


def grade_steps(better: str, worse: str) -> int:
    """How many steps `worse` is below `better` (negative when it is better)."""
    return GRADES.index(worse) - GRADES.index(better)


# -- facilities ---------------------------------------------------------------------------------------------
@dataclass(slots=True)
class Facility:
    """A monitored facility as the domain sees it."""

    tenant: str
    id: str
    name: str = ""
    facility_type: str = "other"
    facility_class: int | None = None
    structure_class: str | None = None
    legal_grade: str | None = None
    legal_grade_date: date | None = None
    last_inspections: dict[str, date] = field(default_factory=dict)
    year_built: int | None = None
    district: str | None = None
    location: dict[str, Any] | None = None
    data_grade: str | None = None
    data_score: float | None = None
    data_grade_at: str | None = None
    emergency_recommended: bool = False
    data_grade_status: str | None = None  # ok | insufficient-data | no-data (QA5 F4)
    data_coverage: float | None = None  # scored / attached main-member sensors

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "facilityType": self.facility_type, "facilityClass": self.facility_class,
            "structureClass": self.structure_class, "district": self.district, "yearBuilt": self.year_built,
            "location": self.location,
            "legalSafetyGrade": self.legal_grade,
            "legalSafetyGradeDate": self.legal_grade_date.isoformat() if self.legal_grade_date else None,
            "lastInspections": {k: v.isoformat() for k, v in sorted(self.last_inspections.items())},
            "dataSafetyGrade": self.data_grade, "dataSafetyScore": self.data_score,
            "dataSafetyGradeAt": self.data_grade_at, "emergencyInspectionRecommended": self.emergency_recommended,
            "dataSafetyGradeStatus": self.data_grade_status, "dataSafetyCoverage": self.data_coverage,
        }


def facility_type_of(doc: Doc) -> str:
    raw = value(doc, "facilityType")
    if raw is None:
        legacy = value(doc, "facilityClass")
        raw = legacy if isinstance(legacy, str) and not legacy.strip().isdigit() else None
    if raw is None:
        return "other"
    text = str(raw)
    text = TYPE_ALIASES.get(text, text)
    return text if text in FACILITY_TYPES else "other"


def facility_class_of(doc: Doc) -> int | None:
    raw = value(doc, "facilityClass")
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int | float) and int(raw) in (1, 2, 3):
        return int(raw)
    match = re.fullmatch(r"\s*(?:제)?([123])\s*(?:종|class)?\s*", str(raw)) if isinstance(raw, str) else None
    return int(match.group(1)) if match else None


def is_facility(doc: Doc) -> bool:
    """A Building the domain monitors: it carries a legal grade, a facility type or class."""
    return any(value(doc, n) is not None for n in ("legalSafetyGrade", "facilityType", "facilityClass"))


def last_inspections_of(doc: Doc) -> dict[str, date]:
    out = {kind: d for kind, name in LAST_INSPECTION_ATTR.items() if (d := as_date(value(doc, name))) is not None}
    generic = as_date(value(doc, "lastInspectionDate"))
    kind = str(value(doc, "inspectionType") or "periodic")
    if generic is not None and kind in INSPECTION_KINDS and kind not in out:
        out[kind] = generic
    return out


def facility_from_doc(tenant: str, doc: Doc) -> Facility:
    address = value(doc, "address")
    year = value(doc, "yearBuilt")
    score = value(doc, "dataSafetyScore")
    # when it was last computed: a computation without a grade (no scored sensor) writes only the explanation
    grade_instance = default_instance(doc, "dataSafetyGrade") or default_instance(doc, "dataSafetyGradeExplanation")
    return Facility(
        tenant=tenant, id=doc["id"], name=str(value(doc, "name") or ""), facility_type=facility_type_of(doc),
        facility_class=facility_class_of(doc), structure_class=_text(value(doc, "structureClass")),
        legal_grade=grade_of(value(doc, "legalSafetyGrade")),
        legal_grade_date=as_date(value(doc, "legalSafetyGradeDate")) or as_date(value(doc, "lastInspectionDate")),
        last_inspections=last_inspections_of(doc), year_built=int(year) if isinstance(year, int | float) else None,
        district=address.get("district") if isinstance(address, dict) else None, location=value(doc, "location"),
        data_grade=grade_of(value(doc, "dataSafetyGrade")),
        data_score=float(score) if isinstance(score, int | float) else None,
        data_grade_at=grade_instance.get("observedAt") if grade_instance else None,
        emergency_recommended=value(doc, "emergencyInspectionRecommended") is True,
        data_grade_status=_text(value(doc, "dataSafetyGradeStatus")),
        data_coverage=float(cov) if isinstance(cov := value(doc, "dataSafetyCoverage"), int | float) else None,
    )


def _text(raw: Any) -> str | None:
    return str(raw) if isinstance(raw, str) and raw else None


# -- sensors ------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ThermalModel:
    """reading = a + b·T for one channel (SHM-R7), fitted on hourly means."""

    a: float
    b: float
    r2: float
    sigma: float  # residual standard deviation of the hourly means
    hours: int  # hourly buckets used
    first: str  # ISO times of the first and last bucket
    last: str
    fitted_at: str
    temp_min: float
    temp_max: float

    def predict(self, temperature: float) -> float:
        return self.a + self.b * temperature

    def to_json(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "r2": round(self.r2, 6), "sigma": self.sigma, "hours": self.hours,
                "from": self.first, "to": self.last, "fittedAt": self.fitted_at,
                "temperatureRange": [round(self.temp_min, 3), round(self.temp_max, 3)]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ThermalModel:
        low, high = data.get("temperatureRange") or (0.0, 0.0)
        return cls(float(data["a"]), float(data["b"]), float(data.get("r2", 0.0)), float(data.get("sigma", 0.0)),
                   int(data.get("hours", 0)), str(data["from"]), str(data["to"]), str(data["fittedAt"]),
                   float(low), float(high))


@dataclass(slots=True)
class Sensor:
    """A structural sensor as the domain sees it, plus what it remembers between readings."""

    tenant: str
    id: str
    types: list[str]
    facility_id: str | None = None
    member: str = "main"
    kind: str | None = None  # tilt | crack | vibration
    name: str = ""
    models: dict[str, ThermalModel] = field(default_factory=dict)  # measured attribute -> model
    model_status: dict[str, str] = field(default_factory=dict)  # measured attribute -> why there is none
    stuck: bool = False
    stuck_values: dict[str, float] = field(default_factory=dict)
    written_datasets: dict[str, set[str | None]] = field(default_factory=dict)  # channel -> datasetIds it has
    last_temperature: tuple[datetime, float] | None = None
    fit_attempted: dict[str, datetime] = field(default_factory=dict)
    suspect: bool = False  # its newest checked reading was implausible (`readingSuspect` not "ok", QA5 F3)
    units: dict[str, str | None] = field(default_factory=dict)  # measured attribute -> unitCode of its readings
    # QA5 F9: the installation baseline (zero offset, device's unit) per measured attribute; None: not yet known
    # (captured from the first readings, which are stored but not laddered)
    baseline: Baseline | None = None
    declared_kind: bool = False  # `sensorKind` says the kind (not guessed from the measures)
    detached_from: str | None = None  # the facility it was detached from (its readings are not laddered)

    def to_wire(self) -> dict[str, Any]:
        return {"id": self.id, "facility": self.facility_id, "member": self.member, "kind": self.kind,
                "name": self.name, "stuck": self.stuck,
                "installationBaseline": self.baseline.to_json() if self.baseline else None,
                "detachedFrom": self.detached_from,
                "thermalCompensation": {a: m.to_json() for a, m in sorted(self.models.items())},
                "thermalCompensationStatus": dict(sorted(self.model_status.items()))}


BASELINE_SOURCES = ("provisioned", "explicit", "captured", "zero", "capturing")


@dataclass(frozen=True, slots=True)
class Baseline:
    """A sensor's installation baseline (QA5 F9): zero offsets in the device's unit, where they come from and when.

    `source`: provisioned (a static attribute), explicit (attach or reset), captured (median of the first readings),
    zero (`baseline.mode = "zero"`), capturing (not known yet: `offsets` is empty and readings are not laddered)."""

    offsets: dict[str, float]
    source: str
    at: str | None = None  # observedAt of the stored instance (None: a provisioned static attribute)
    samples: int = 0
    since: str | None = None  # capturing: readings from this time on

    @property
    def known(self) -> bool:
        return self.source != "capturing"

    def offset(self, name: str) -> float:
        return self.offsets.get(name, 0.0)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"offsets": dict(sorted(self.offsets.items())), "source": self.source, "at": self.at}
        if self.samples:
            out["samples"] = self.samples
        if self.since:
            out["since"] = self.since
        return out


def baseline_of(doc: Doc | None) -> Baseline | None:
    """The `installationBaseline` of a sensor entity: a Property whose value maps measured attributes to their zero
    offset (numbers), with the sub-properties `source`, `samples`, `since` the domain writes; None when absent or
    unreadable (a value that is not such a map)."""
    instance = default_instance(doc, "installationBaseline")
    if instance is None or not isinstance(instance.get("value"), dict):
        return None
    offsets = {str(k): float(v) for k, v in instance["value"].items()
               if isinstance(v, int | float) and not isinstance(v, bool) and v == v and abs(v) != float("inf")}
    if len(offsets) != len(instance["value"]):
        return None
    source = _sub(instance, "source")
    samples = _sub(instance, "samples")
    since = _sub(instance, "since")
    return Baseline(offsets, str(source) if source in BASELINE_SOURCES else "provisioned",
                    instance.get("observedAt") if isinstance(instance.get("observedAt"), str) else None,
                    int(samples) if isinstance(samples, int) else 0, since if isinstance(since, str) else None)


def _sub(instance: dict[str, Any], name: str) -> Any:
    sub = instance.get(iri(name))
    if isinstance(sub, list):
        sub = sub[0] if sub else None
    return sub.get("value") if isinstance(sub, dict) else None


def kind_of(doc: Doc, names: dict[str, str]) -> str | None:
    """tilt / crack / vibration from `sensorKind`, else from the measures the sensor has."""
    raw = value(doc, "sensorKind")
    if raw in ("tilt", "crack", "vibration"):
        return str(raw)
    attrs = doc.get("attrs", {})
    for kind, attr in (("tilt", names["tilt_x"]), ("crack", names["crack"]), ("vibration", names["vibration"])):
        if iri(attr) in attrs:
            return kind
    return None


def facility_of(doc: Doc, relationships: list[str]) -> str | None:
    for name in relationships:
        target = value(doc, name)
        if isinstance(target, list):
            target = target[0] if target else None
        if isinstance(target, str) and target:
            return target
    return None


def sensor_from_doc(tenant: str, doc: Doc, relationships: list[str], names: dict[str, str]) -> Sensor:
    member = str(value(doc, "structuralMember") or "main")
    models, status = models_of(value(doc, "thermalCompensation"))
    detached = value(doc, "detachedFrom")
    return Sensor(tenant=tenant, id=doc["id"], types=list(doc.get("type", [])),
                  facility_id=facility_of(doc, relationships), member=member if member in MEMBERS else "main",
                  kind=kind_of(doc, names), name=str(value(doc, "name") or ""), models=models, model_status=status,
                  stuck=value(doc, "sensorStuck") is True,
                  suspect=value(doc, "readingSuspect") not in (None, "ok"), units=_units(doc, names),
                  baseline=baseline_of(doc), declared_kind=value(doc, "sensorKind") in ("tilt", "crack", "vibration"),
                  detached_from=str(detached) if isinstance(detached, str) and detached else None)


def _units(doc: Doc, names: dict[str, str]) -> dict[str, str | None]:
    """The unitCode of each measured attribute's current value (QA5 F3: the grade's trend converts with it)."""
    out: dict[str, str | None] = {}
    for key in ("tilt_x", "tilt_y", "crack", "vibration"):
        instance = default_instance(doc, names[key]) if key in names else None
        if instance is not None:
            unit = instance.get("unitCode")
            out[names[key]] = unit if isinstance(unit, str) else None
    return out


def models_of(raw: Any) -> tuple[dict[str, ThermalModel], dict[str, str]]:
    models: dict[str, ThermalModel] = {}
    status: dict[str, str] = {}
    if not isinstance(raw, dict):
        return models, status
    for attr, data in raw.items():
        if isinstance(data, dict) and "a" in data:
            try:
                models[attr] = ThermalModel.from_json(data)
            except (KeyError, TypeError, ValueError):
                status[attr] = "stored model unreadable"
        elif isinstance(data, dict) and "status" in data:
            status[attr] = str(data["status"])
    return models, status


# -- input models ---------------------------------------------------------------------------------------------
class FacilityIn(BaseModel):
    """A facility registered or updated through the API (written as a Building entity)."""

    model_config = _STRICT
    id: str = Field(min_length=1, max_length=256)
    name: str = Field(min_length=1, max_length=200)
    facility_type: Literal["bridge", "footbridge", "retainingWall", "school", "daycareCenter", "pumpStation",
                           "apartment", "communityCenter", "building", "other"] = Field(alias="facilityType")
    facility_class: Literal[1, 2, 3] | None = Field(None, alias="facilityClass")
    structure_class: str | None = Field(None, alias="structureClass")
    legal_grade: Grade | None = Field(None, alias="legalSafetyGrade")
    legal_grade_date: date | None = Field(None, alias="legalSafetyGradeDate")
    last_inspections: dict[Literal["periodic", "precise", "diagnosis"], date] = Field({}, alias="lastInspections")
    location: dict[str, Any] | None = None
    district: str | None = None
    year_built: int | None = Field(None, alias="yearBuilt", ge=1800, le=2200)
    category: list[str] = []

    @field_validator("id")
    @classmethod
    def _urn(cls, raw: str) -> str:
        if not re.fullmatch(r"urn:ngsi-ld:[A-Za-z0-9_.-]+:\S+", raw):
            raise ValueError("a facility id is an NGSI-LD URN, urn:ngsi-ld:Building:<id>")
        return raw


class SensorAttachIn(BaseModel):
    model_config = _STRICT
    sensor: str = Field(min_length=1, max_length=256)
    member: Literal["main", "auxiliary"] = "main"
    kind: Literal["tilt", "crack", "vibration"] | None = None
    baseline: dict[str, float] | None = Field(
        None, description="the installation baseline (zero offset) per axis, in the device's unit (QA5 F9); "
        "(tiltX, tiltY, crackOpening: the configured names); without it the sensor keeps the one it has, else "
        "captures it from its first readings")

    @field_validator("baseline")
    @classmethod
    def _finite(cls, raw: dict[str, float] | None) -> dict[str, float] | None:
        if raw is not None and any(v != v or abs(v) == float("inf") for v in raw.values()):
            raise ValueError("a baseline offset is a finite number")
        return raw


class InspectionIn(BaseModel):
    """An official inspection recorded after it was completed (§2.2)."""

    model_config = _STRICT
    kind: Literal["periodic", "precise", "diagnosis", "emergency"]
    completed_on: date = Field(alias="completedOn")
    grade: Grade | None = None
    inspector: str = Field("", max_length=200)
    note: str = Field("", max_length=4000)


class TaskIn(BaseModel):
    model_config = _STRICT
    facility: str = Field(min_length=1, max_length=256)
    kind: Literal["field-check", "emergency-inspection", "evacuation-decision", "manual"] = "manual"
    title: str = Field("", max_length=300)
    assignee: str | None = Field(None, max_length=200)
    due: datetime | None = None


class TaskResultIn(BaseModel):
    """What the field officer reports when completing a task."""

    model_config = _STRICT
    summary: str = Field(min_length=1, max_length=8000)
    condition: Literal["normal", "minor-defects", "repair-needed", "use-restriction", "danger"]
    inspector: str = Field(min_length=1, max_length=200)
    measurements: dict[str, float] = {}
    recommended_action: str = Field("", alias="recommendedAction", max_length=4000)
    inspection: InspectionIn | None = Field(None, description="an official inspection this visit was")

