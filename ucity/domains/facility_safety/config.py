"""The validated settings of facility safety: the `[domains.facility_safety]` table.

Every threshold, window and interval of the domain is here, with the default shipped in rules.py
and its source there. A default tagged [D] or [U] is an engineering default of ucity, never an
official Korean value (domain-rules §0). Unknown keys are an error, so a misspelt threshold is
refused at start instead of silently falling back to a default.
"""

from __future__ import annotations

import re
from itertools import pairwise
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ucity.domains.facility_safety import rules as d

_STRICT = ConfigDict(extra="forbid", frozen=True)
Level = Literal["interest", "caution", "warning", "serious"]
CLASS_NAME = re.compile(r"^[a-z][a-z0-9-]{0,31}$")


class ConfigError(ValueError):
    """The facility-safety settings are not valid (raised by `setup`, so the app does not start)."""


class Bilingual(ValueError):
    """A validation problem said in Korean and in English (QA14 F10): `str()` is "한국어 / English"."""

    def __init__(self, ko: str, en: str) -> None:
        super().__init__(f"{ko} / {en}")
        self.ko, self.en = ko, en


CHANNEL_WORDS = {"tilt": ("기울기", "tilt", "rad"), "crack": ("균열", "crack", "mm"),
                 "vibration": ("진동(PPV)", "vibration (PPV)", "mm/s")}


def limit_problem(channel: str, ladder: Ladder, plausibility: PlausibilityConfig, where: str = "") -> Bilingual | None:
    """Why a ladder can never fire (QA14 F1), or None: an edge at or above the channel's plausible limit
    (`plausibility`, QA5 F3) is never reached, since a reading that high is a suspect value and is not assessed
    (e.g. a tilt ladder typed in mrad into the rad ladder). Not checked with `plausibility.enabled = false`."""
    if not plausibility.enabled or channel not in CHANNEL_WORDS:
        return None
    limit = plausibility.range_of(channel)[1]
    above = [(level, at) for level, at in ladder.edges() if at >= limit]
    if not above:
        return None
    ko_name, en_name, unit = CHANNEL_WORDS[channel]
    edges = ", ".join(f"{level} {at:g}" for level, at in above)
    prefix = f"{where}: " if where else ""
    hint_ko, hint_en = (" (단위 확인: 기울기는 mrad가 아니라 rad)", " (check the unit: tilt is in rad, not mrad)") \
        if channel == "tilt" else ("", "")
    return Bilingual(f"{prefix}{ko_name} 경계값({edges} {unit})이 타당 범위 상한 {limit:g} {unit} 이상: 그 값의 측정은 "
                     f"이상값(readingSuspect)으로 평가되지 않으므로 경보가 울릴 수 없음{hint_ko}",
                     f"{prefix}{en_name} edge(s) {edges} {unit} at or above the plausible limit {limit:g} {unit}: a "
                     f"reading that high is a suspect value and never assessed, so this ladder could never fire"
                     f"{hint_en}")


def band_problem(edges: tuple[tuple[str, float], ...], band: float, inherited: bool = False) -> str | None:
    """Why a clearing band does not fit a ladder (Korean / English), or None.

    A raised level clears only below edge − band, so a band at or above the first edge can never clear
    (the value cannot go below 0 on a change ladder) and a band at or above a gap between two edges keeps
    the lower level from ever being reported on the way down (QA5 F7). The band must be below the smallest
    gap: 0 to the first edge, and between neighbouring edges.
    """
    gaps = [(f"0–{edges[0][0]}", edges[0][1])] + [(f"{lo}–{hi}", b - a) for (lo, a), (hi, b) in pairwise(edges)]
    where, smallest = min(gaps, key=lambda g: g[1])
    if band < smallest:
        return None
    if inherited:
        return (f"상속된 해제 폭(hysteresis) {band:g}이(가) 가장 작은 간격 {smallest:g}({where}) 이상: hysteresis를 "
                f"직접 지정해야 함 / the inherited clearing band (hysteresis) {band:g} is not below the smallest gap "
                f"{smallest:g} ({where}) of these edges: give a hysteresis below it")
    return (f"해제 폭(hysteresis) {band:g}은(는) 가장 작은 간격 {smallest:g}({where})보다 작아야 함: 그렇지 않으면 경보가 "
            f"해제되지 않음 / hysteresis {band:g} must be below the smallest gap {smallest:g} ({where}), "
            f"else the alarm could never clear")


class Ladder(BaseModel):
    """Four raise edges on the crisis ladder (value ≥ edge), plus the clearing band below each."""

    model_config = _STRICT
    interest: float = Field(gt=0)
    caution: float = Field(gt=0)
    warning: float = Field(gt=0)
    serious: float = Field(gt=0)
    hysteresis: float = Field(0.0, ge=0, description="a raised level holds until the value is below edge − hysteresis; "
                              "must be below the smallest gap (0 to interest, and between edges); a ladder given "
                              "without it keeps the band of the ladder it replaces")

    @model_validator(mode="after")
    def _rising(self) -> Ladder:
        edges = [self.interest, self.caution, self.warning, self.serious]
        if edges != sorted(set(edges)):
            raise Bilingual("경계값은 엄격히 커져야 함: 관심(interest) < 주의(caution) < 경계(warning) < 심각(serious)",
                            "ladder edges must rise strictly: interest < caution < warning < serious")
        problem = band_problem(self.edges(), self.hysteresis)
        if problem is not None:
            raise Bilingual(*problem.split(" / ", 1))
        return self

    def with_band(self, band: float) -> Ladder:
        """This ladder with `band` as its hysteresis when none was given (QA5 F7), checked against its gaps."""
        if "hysteresis" in self.model_fields_set:
            return self
        problem = band_problem(self.edges(), band, inherited=True)
        if problem is not None:
            raise Bilingual(*problem.split(" / ", 1))
        return Ladder(interest=self.interest, caution=self.caution, warning=self.warning, serious=self.serious,
                      hysteresis=band)

    def edges(self) -> tuple[tuple[str, float], ...]:
        return (("interest", self.interest), ("caution", self.caution), ("warning", self.warning),
                ("serious", self.serious))

    def scaled(self, factor: float) -> Ladder:
        """Every edge and the band multiplied by `factor` (SHM-R3 building classes)."""
        return Ladder(interest=self.interest * factor, caution=self.caution * factor, warning=self.warning * factor,
                      serious=self.serious * factor, hysteresis=self.hysteresis * factor)


class PersistenceConfig(BaseModel):
    """SHM-R4: a level must hold for `samples` consecutive samples or `duration_s`, whichever first."""

    model_config = _STRICT
    samples: int | None = Field(d.PERSISTENCE_SAMPLES, ge=1)
    duration_s: float | None = Field(d.PERSISTENCE_DURATION_S, gt=0)

    @model_validator(mode="after")
    def _one(self) -> PersistenceConfig:
        if self.samples is None and self.duration_s is None:
            raise ValueError("persistence needs samples or duration_s")
        return self


class LadderSet(BaseModel):
    """Ladders of the three assessed channels and their persistence; a class or facility may replace any."""

    model_config = _STRICT
    tilt: Ladder | None = None
    crack: Ladder | None = None
    vibration: Ladder | None = None
    persistence: PersistenceConfig | None = None

    def with_bands(self, bands: dict[str, float]) -> LadderSet:
        """Each ladder given without `hysteresis` takes `bands[channel]` (QA5 F7: not 0.0); ValueError (ko / en) when
        that band does not fit the ladder's edges."""
        updates: dict[str, Ladder] = {}
        for channel, band in bands.items():
            ladder: Ladder | None = getattr(self, channel, None)
            if ladder is not None and "hysteresis" not in ladder.model_fields_set:
                try:
                    updates[channel] = ladder.with_band(band)
                except ValueError as exc:
                    raise _where(channel, exc) from exc
        return self.model_copy(update=updates) if updates else self


CHANNELS = ("tilt", "crack", "vibration")
SHIPPED_LADDERS = {"tilt": d.TILT_LADDER, "crack": d.CRACK_LADDER, "vibration": d.VIBRATION_LADDER}


def with_domain_bands(cfg: FacilitySafetyConfig, class_name: str, override: LadderSet) -> LadderSet:
    """A facility's thresholds with each ladder given without `hysteresis` taking the band of the ladder it replaces
    (its class's, which is the domain default unless the class sets its own): an override of the edges alone must
    not get a band of 0 (QA5 F7). ValueError (ko / en) when that band does not fit the override's edges."""
    bands = {channel: d.effective(cfg, channel, class_name)[0].hysteresis for channel in CHANNELS}
    return override.with_bands(bands)


class ClassProfile(LadderSet):
    """A building class of SHM-R3: its PPV factor, and optionally its own ladders."""

    vibration_factor: float = Field(1.0, gt=0, description="multiplies the default PPV ladder (SHM-R3)")
    description: str = ""


class AttributeNames(BaseModel):
    """Names of the measured attributes on a sensor entity (the device profile's; core context)."""

    model_config = _STRICT
    tilt_x: str = "tiltX"
    tilt_y: str = "tiltY"
    crack: str = "crackOpening"
    vibration: str = "vibrationPPV"
    frequency: str = "dominantFrequency"
    temperature: str = "temperature"
    humidity: str = "relativeHumidity"
    battery: str = "batteryLevel"


class HealthConfig(BaseModel):
    """SHM-R6 sensor health (all [D])."""

    model_config = _STRICT
    battery_low_below: float = Field(d.BATTERY_LOW_BELOW, gt=0, le=1, description="batteryLevel as a fraction at "
                                     "or below -> fault; a device reporting percent (unitCode P1) is converted "
                                     "first (QA14 F2)")
    battery_hysteresis: float = Field(d.BATTERY_HYSTERESIS, ge=0)
    battery_samples: int = Field(d.BATTERY_SAMPLES, ge=1, description="consecutive low samples before the fault")
    stuck_hours: float = Field(d.STUCK_HOURS, gt=0, description="zero variance over this long -> stuck (suspect)")
    stuck_min_samples: int = Field(d.STUCK_MIN_SAMPLES, ge=2, description="samples needed in that time to call it stuck")
    stuck_channels: list[Literal["tilt", "crack", "vibration", "temperature"]] = Field(
        ["tilt", "crack", "vibration", "temperature"], description="channels checked for a stuck value")
    check_interval_s: float = Field(d.HEALTH_CHECK_INTERVAL_S, gt=0, description="how often the stuck check runs")
    silent_rule_enabled: bool = Field(False, description="the rules-engine silence fault (shm-sensor-silent); off by "
                                      "default because ingest's device health already raises `device-offline`")
    expected_interval_s: float = Field(d.EXPECTED_INTERVAL_S, gt=0, description="a sensor's reporting interval when "
                                       "ingest knows none for its device (provisioned expected_interval_s, then "
                                       "ingest.intervals_by_type): the grade's completeness uses the device's own")
    offline_after_intervals: int = Field(d.OFFLINE_AFTER_INTERVALS, ge=1)
    offline_rule_enabled: bool = Field(True, description="shm-sensor-offline (QA5 F12): ingest's `deviceState` "
                                       "offline on a structural sensor is a fault of the domain, told to the "
                                       "`escalation.levels.fault` groups (the maintenance vendor), with the last "
                                       "report shown in Asia/Seoul; the kernel's `device-offline` is then not raised "
                                       "for a structural sensor (one alarm, QA5 F13a)")


PlausibleRange = tuple[float, float]


class PlausibilityConfig(BaseModel):
    """QA5 F3: plausible ranges per channel and the units understood, all [D] (rules.py says why each).

    A reading outside its range, in a unitCode not listed, or not a number is not assessed: the sensor is
    suspect (`readingSuspect`, fault rule `shm-reading-suspect`), and the value stays out of the grade.
    """

    model_config = _STRICT
    enabled: bool = Field(True, description="off: every numeric reading is assessed as sent (the old behaviour)")
    tilt: PlausibleRange = Field(d.PLAUSIBLE_RANGES["tilt"], description="rad, each axis, change from the baseline")
    crack: PlausibleRange = Field(d.PLAUSIBLE_RANGES["crack"], description="mm from the baseline; the lower end is the "
                                  "tolerance for a negative (closing) value: beyond it the meter is suspect "
                                  "(mounted reversed?), never assessed as abs()")
    vibration: PlausibleRange = Field(d.PLAUSIBLE_RANGES["vibration"], description="PPV, mm/s")
    frequency: PlausibleRange = Field(d.PLAUSIBLE_RANGES["frequency"], description="dominant frequency, Hz")
    temperature: PlausibleRange = Field(d.PLAUSIBLE_RANGES["temperature"], description="°C")
    battery: PlausibleRange = Field(d.PLAUSIBLE_RANGES["battery"], description="batteryLevel as a fraction (C62); "
                                    "percent (P1) is converted, so 15 without a unit is suspect (QA14 F2)")
    units: dict[str, dict[str, tuple[float, float]]] = Field(
        {}, description="extra unitCodes per channel (tilt, crack, vibration, frequency, temperature): code -> "
        "(scale, offset) to the channel's unit, added to the shipped table (rules.UNITS)")

    @field_validator("tilt", "crack", "vibration", "frequency", "temperature", "battery")
    @classmethod
    def _rising(cls, value: PlausibleRange) -> PlausibleRange:
        if not value[0] < value[1]:
            raise ValueError("a plausible range is [low, high] with low < high")
        return value

    @field_validator("units")
    @classmethod
    def _channels(cls, value: dict[str, dict[str, tuple[float, float]]]) -> dict[str, dict[str, tuple[float, float]]]:
        unknown = sorted(set(value) - set(d.PLAUSIBLE_RANGES))
        if unknown:
            raise ValueError(f"units: unknown channels {', '.join(unknown)} (tilt, crack, vibration, frequency, "
                             f"temperature, battery)")
        if any(scale == 0 for codes in value.values() for scale, _ in codes.values()):
            raise ValueError("units: a scale of 0 is not a conversion")
        return value

    def range_of(self, channel: str) -> PlausibleRange:
        found: PlausibleRange = getattr(self, channel)
        return found

    def unit_table(self, channel: str) -> dict[str, tuple[float, float]]:
        return {**d.UNITS[channel], **self.units.get(channel, {})}


class BaselineConfig(BaseModel):
    """QA5 F9: the installation baseline (zero offset) that the tilt and crack ladders measure the change from [D]."""

    model_config = _STRICT
    mode: Literal["capture", "zero"] = Field(d.BASELINE_MODE, description="a sensor whose baseline was not set at "
                                             "provisioning (static attribute `installationBaseline`), at attach or "
                                             "by a reset: `capture` takes it from its first readings (they are "
                                             "stored, not laddered, until then); `zero`: the devices report the "
                                             "change themselves, the baseline is 0")
    capture_samples: int = Field(d.BASELINE_CAPTURE_SAMPLES, ge=1, le=1000, description="plausible readings per "
                                 "axis whose median is the captured baseline (6: an hour of 10-minute reports)")


class ThermalConfig(BaseModel):
    """SHM-R7 thermal compensation: reading = a + b·T fitted on hourly means of the history."""

    model_config = _STRICT
    enabled: bool = True
    min_days: float = Field(d.THERMAL_MIN_DAYS, gt=0, description="history span needed before a model is used")
    min_hours: int = Field(d.THERMAL_MIN_HOURS, ge=10, description="hourly buckets with data needed")
    window_days: float = Field(d.THERMAL_WINDOW_DAYS, gt=0, description="trailing history the fit uses")
    min_temperature_range_c: float = Field(d.THERMAL_MIN_RANGE_C, ge=0, description="temperature spread needed for b")
    refit_hours: float = Field(d.THERMAL_REFIT_HOURS, gt=0, description="a model older than this is fitted again")
    retry_hours: float = Field(d.THERMAL_RETRY_HOURS, gt=0, description="wait after a failed fit of a sensor")
    clip_sigmas: float = Field(d.THERMAL_CLIP_SIGMAS, gt=0, description="hours further than this from the first fit "
                               "are dropped and the fit is repeated (spikes, works)")
    temperature_max_age_s: float = Field(d.TEMPERATURE_MAX_AGE_S, gt=0, description="a reading without its own "
                                         "temperature uses the sensor's last one if no older than this")


class GradeConfig(BaseModel):
    """§2.5 data safety grade (method [D])."""

    model_config = _STRICT
    window_days: float = Field(d.GRADE_WINDOW_DAYS, gt=0)
    completeness: float = Field(d.GRADE_COMPLETENESS, gt=0, le=1, description="share of expected samples needed for a "
                                "trend score")
    level_samples: int = Field(d.GRADE_LEVEL_SAMPLES, ge=1, description="the level score takes the median of the "
                               "newest N assessed values")
    level_max_age_hours: float = Field(d.GRADE_LEVEL_MAX_AGE_H, gt=0, description="older newest values give no level "
                                       "score")
    trend_bucket_hours: float = Field(d.GRADE_TREND_BUCKET_H, gt=0)
    trend_horizon_days: float = Field(d.GRADE_TREND_HORIZON_DAYS, gt=0)
    trend_min_buckets: int = Field(d.GRADE_TREND_MIN_BUCKETS, ge=3)
    event_min_level: Level = Field("caution", description="matches at this level or above count as events")
    event_scores: list[tuple[int, int]] = Field(list(d.EVENT_SCORES), description="(at least this many events, score), "
                                                "checked from the last")
    count_spikes: bool = Field(False, description="spikes (SHM-R4) count as events too")
    min_main_coverage: float = Field(d.GRADE_COMPLETENESS, ge=0, le=1, description="share of the facility's attached "
                                     "main-member sensors that must be scored (QA5 F4); below it the grade is "
                                     "'insufficient-data': withheld unless it recommends an emergency inspection. "
                                     "Default 0.8 = §2.5's '≥ 80 % completeness' applied to members [D]; 0 turns "
                                     "the check off")
    min_completeness: float = Field(d.GRADE_COMPLETENESS, ge=0, le=1, description="share of the expected samples the "
                                    "scored sensors must have received (member-weighted; QA14 F3); below it a grade "
                                    "as good as the legal grade or better (A or B without one) is 'insufficient-data'"
                                    ", withheld as provisional; worse grades stand. Default 0.8 = §2.5.1's '≥ 80 % "
                                    "completeness' [D]; 0 turns the check off")
    member_weights: dict[str, float] = Field(dict(d.MEMBER_WEIGHTS))
    main_cap_offset: float = Field(d.MAIN_CAP_OFFSET, ge=0, description="facility score >= worst main sensor − this")
    grade_bounds: tuple[float, float, float, float] = Field(d.GRADE_BOUNDS, description="upper scores of A, B, C, D")
    recompute_at: str = Field(d.RECOMPUTE_AT, description="local time of the daily recomputation, HH:MM")
    timezone: str = Field(d.TIMEZONE)
    emergency_grades: list[str] = Field(list(d.EMERGENCY_GRADES), description="data grades that recommend an "
                                        "emergency inspection")
    emergency_steps_worse: int = Field(d.EMERGENCY_STEPS_WORSE, ge=1, description="data grade this many steps worse "
                                       "than the legal grade -> emergency inspection recommended")
    crack_rate_caution_mm: float = Field(d.CRACK_RATE_CAUTION_MM, gt=0, description="SHM-R2 rate edge, mm per "
                                         "crack_rate_days, on the compensated crack")
    crack_rate_days: float = Field(d.CRACK_RATE_DAYS, gt=0)

    @field_validator("recompute_at")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value):
            raise ValueError("recompute_at is HH:MM")
        return value

    @field_validator("emergency_grades")
    @classmethod
    def _grades(cls, value: list[str]) -> list[str]:
        wrong = [g for g in value if g not in ("A", "B", "C", "D", "E")]
        if wrong:
            raise ValueError(f"emergency_grades are letters A..E, not {', '.join(wrong)}")
        return value

    @field_validator("grade_bounds")
    @classmethod
    def _bounds(cls, value: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        if list(value) != sorted(set(value)):
            raise ValueError("grade_bounds must rise strictly")
        return value


class EscalationConfig(BaseModel):
    """SHM-R5: the recipient groups told at each level (and for faults), seeded as alarm contact data."""

    model_config = _STRICT
    seed: bool = Field(True, description="create the groups and chains below in each tenant (once; edit them "
                       "through /api/v1/recipients and /api/v1/escalations)")
    groups: dict[str, dict[str, str]] = Field(dict(d.RECIPIENT_GROUPS), description="group id -> name {ko, en}")
    levels: dict[str, list[str]] = Field({k: list(v) for k, v in d.ESCALATION.items()},
                                         description="level (caution, warning, serious, fault) -> groups, at once")


class TaskConfig(BaseModel):
    """Field-inspection tasks: which alarm levels create them, and their due times ([D])."""

    model_config = _STRICT
    field_check_level: Level = Field("caution", description="SHM-R5: an alarm at this level or above creates a "
                                     "field-check task")
    evacuation_level: Level | None = Field("serious", description="SHM-R5: an alarm at this level creates an "
                                           "evacuation-decision task (None: never)")
    due_hours: dict[str, float] = Field(dict(d.TASK_DUE_HOURS))
    emergency_repeat_days: float = Field(d.EMERGENCY_REPEAT_DAYS, ge=0, description="after a completed emergency "
                                         "inspection, the same or a better data grade does not recommend another for "
                                         "this long")


class InspectionConfig(BaseModel):
    """§2.2 legal inspection intervals in months, by legal grade group ([V] MOLIT Q&A, easylaw)."""

    model_config = _STRICT
    periodic: dict[str, int] = Field(dict(d.PERIODIC_MONTHS))
    precise_building: dict[str, int] = Field(dict(d.PRECISE_BUILDING_MONTHS))
    precise_other: dict[str, int] = Field(dict(d.PRECISE_OTHER_MONTHS))
    diagnosis: dict[str, int] = Field(dict(d.DIAGNOSIS_MONTHS))
    building_types: list[str] = Field(list(d.BUILDING_TYPES), description="facility types counted as buildings")
    precise_classes: list[int] = Field([1, 2], description="facility classes with precise inspections [U]")
    diagnosis_classes: list[int] = Field([1], description="facility classes with precise diagnoses [U]")
    due_soon_days: int = Field(30, ge=0)


class PhotoConfig(BaseModel):
    """Photo uploads of field inspections, stored under the data dir."""

    model_config = _STRICT
    max_bytes: int = Field(d.PHOTO_MAX_BYTES, ge=1024)
    max_per_task: int = Field(20, ge=1)
    types: list[str] = Field(["image/jpeg", "image/png", "image/webp"])
    directory: str = Field("facility_safety/photos", description="under data_dir")


class FacilitySafetyConfig(BaseModel):
    """Everything configurable in facility safety (README.md has each rule and its source)."""

    model_config = _STRICT
    sensor_types: list[str] = Field(["StructuralSensor"], min_length=1)
    facility_type: str = "Building"
    facility_relationships: list[str] = Field(["controlledAsset", "refBuilding", "refParent", "isPartOf"])
    attributes: AttributeNames = AttributeNames()
    tilt: Ladder = Ladder(**d.TILT_LADDER)
    crack: Ladder = Ladder(**d.CRACK_LADDER)
    vibration: Ladder = Ladder(**d.VIBRATION_LADDER)
    persistence: PersistenceConfig = PersistenceConfig()
    default_class: str = "residential"
    classes: dict[str, ClassProfile] = Field({k: ClassProfile(**v) for k, v in d.CLASSES.items()})
    class_by_type: dict[str, str] = Field({}, description="facility type -> building class when the facility "
                                          "names none")
    health: HealthConfig = HealthConfig()
    plausibility: PlausibilityConfig = PlausibilityConfig()
    baseline: BaselineConfig = BaselineConfig()
    thermal: ThermalConfig = ThermalConfig()
    grade: GradeConfig = GradeConfig()
    escalation: EscalationConfig = EscalationConfig()
    tasks: TaskConfig = TaskConfig()
    inspections: InspectionConfig = InspectionConfig()
    photos: PhotoConfig = PhotoConfig()
    csv_bom: bool = Field(True, description="start CSV exports with a UTF-8 BOM (Korean Excel needs it)")

    @model_validator(mode="before")
    @classmethod
    def _bands(cls, data: Any) -> Any:
        """A ladder table given without `hysteresis` keeps the band of the ladder it replaces (QA5 F7): a top-level
        ladder the shipped default band of its channel (rules.py), a class's ladder the band of the class's default
        ladder (× `vibration_factor` for vibration). A band that does not fit the edges is refused."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        bands: dict[str, float] = {}
        for channel in CHANNELS:
            band = SHIPPED_LADDERS[channel]["hysteresis"]
            data[channel] = _inherit(data.get(channel), band, channel)
            bands[channel] = _band_of(data.get(channel), band)
        classes = data.get("classes")
        if isinstance(classes, dict):
            resolved: dict[str, Any] = {}
            for name, profile in classes.items():
                if isinstance(profile, dict):
                    profile = dict(profile)
                    factor = profile.get("vibration_factor", 1.0)
                    for channel in CHANNELS:
                        scale = factor if channel == "vibration" and isinstance(factor, int | float) else 1.0
                        profile[channel] = _inherit(profile.get(channel), bands[channel] * scale,
                                                    f"classes.{name}.{channel}")
                resolved[name] = profile
            data["classes"] = resolved
        return {k: v for k, v in data.items() if v is not None or k not in CHANNELS}

    @model_validator(mode="after")
    def _classes(self) -> FacilitySafetyConfig:
        for name in self.classes:
            if not CLASS_NAME.match(name):
                raise ValueError(f"class name {name!r}: lower-case letters, digits and '-'")
        if self.default_class not in self.classes:
            raise ValueError(f"default_class {self.default_class!r} is not in classes")
        unknown = sorted(set(self.class_by_type.values()) - set(self.classes))
        if unknown:
            raise ValueError(f"class_by_type names unknown classes: {', '.join(unknown)}")
        # QA14 F1: a ladder whose edges a plausible reading cannot reach would never fire
        for channel in CHANNELS:
            problem = limit_problem(channel, getattr(self, channel), self.plausibility, channel)
            if problem is not None:
                raise problem
            for name in self.classes:
                ladder = d.effective(self, channel, name)[0]
                problem = limit_problem(channel, ladder, self.plausibility, f"classes.{name}.{channel}")
                if problem is not None:
                    raise problem
        return self

    def limit_problem(self, override: LadderSet) -> Bilingual | None:
        """Why a facility's thresholds could never fire (QA14 F1), or None."""
        for channel in CHANNELS:
            ladder = getattr(override, channel)
            if ladder is not None and (problem := limit_problem(channel, ladder, self.plausibility, channel)):
                return problem
        return None


def _inherit(raw: Any, band: float, where: str) -> Any:
    """A raw ladder table without `hysteresis` validated with `band` as its band; anything else as given."""
    if not isinstance(raw, dict) or "hysteresis" in raw:
        return raw
    try:
        ladder = Ladder.model_validate(raw)
    except ValidationError:
        return raw  # the normal validation says what is wrong with it
    try:
        return ladder.with_band(band)
    except ValueError as exc:
        raise _where(where, exc) from exc


def _where(where: str, exc: ValueError) -> Bilingual:
    if isinstance(exc, Bilingual):
        return Bilingual(f"{where}: {exc.ko}", f"{where}: {exc.en}")
    return Bilingual(f"{where}: {exc}", f"{where}: {exc}")


# Korean for pydantic's own messages (QA14 F10); anything else keeps its English text after "잘못된 값".
_KO = {"greater_than": "{gt}보다 커야 함", "greater_than_equal": "{ge} 이상이어야 함", "less_than": "{lt}보다 작아야 함",
       "less_than_equal": "{le} 이하여야 함", "missing": "필수 값 없음", "extra_forbidden": "알 수 없는 키",
       "float_type": "숫자여야 함", "float_parsing": "숫자여야 함", "int_type": "정수여야 함", "int_parsing": "정수여야 함",
       "finite_number": "유한한 숫자여야 함", "literal_error": "허용되지 않는 값", "string_type": "문자열이어야 함",
       "bool_type": "true 또는 false", "bool_parsing": "true 또는 false", "dict_type": "객체여야 함",
       "model_type": "객체여야 함", "too_short": "항목이 너무 적음", "too_long": "항목이 너무 많음"}


def problems(exc: ValidationError, root: str = "") -> tuple[str, str]:
    """Every problem of a validation error in Korean and in English (QA14 F10), each as `where: what` (`root` where
    the error is the whole document's)."""
    ko: list[str] = []
    en: list[str] = []
    for e in exc.errors():
        where = ".".join(str(p) for p in e["loc"]) or root
        error = (e.get("ctx") or {}).get("error")
        if isinstance(error, Bilingual):
            ko.append(f"{where}: {error.ko}".removeprefix(": "))
            en.append(f"{where}: {error.en}".removeprefix(": "))
            continue
        msg = e["msg"].removeprefix("Value error, ")
        template = _KO.get(e["type"])
        try:
            ctx = {k: f"{v:g}" if isinstance(v, float) else v for k, v in (e.get("ctx") or {}).items()}
            said = template.format(**ctx) if template else msg
        except (KeyError, IndexError):
            said = msg
        ko.append(f"{where}: {said}".removeprefix(": "))
        en.append(f"{where}: {msg}".removeprefix(": "))
    return "; ".join(ko), "; ".join(en)


def _band_of(raw: Any, default: float) -> float:
    if isinstance(raw, Ladder):
        return raw.hysteresis
    if isinstance(raw, dict) and isinstance(raw.get("hysteresis"), int | float):
        return float(raw["hysteresis"])
    return default


def load_config(raw: dict[str, Any]) -> FacilitySafetyConfig:
    """The validated settings; ConfigError says which key is wrong (in Korean and English, QA14 F10)."""
    try:
        return FacilitySafetyConfig.model_validate(raw)
    except ValidationError as exc:
        ko, en = problems(exc)
        raise ConfigError(f"domains.facility_safety: {ko} / {en}") from exc
