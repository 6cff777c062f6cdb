"""Declarative defaults of facility safety: ladders, persistence, sensor health, escalation, intervals.

Every number here is a default of a setting (config.py) and carries its source and confidence tag
(domain-rules §0: [V] verified, [P] partly, [U] unverified, [D] ucity's engineering default, never
an official Korean value). README.md states each rule; `SOURCES` is the same list in code, used
for each Rule's `source` field.

The functions at the end turn the settings into data for the kernel: `Rule`s for the rules engine
(`default_rules`, `variant_rules`) and escalation chains and recipient groups for the alarms
service (`contact_documents`). A *variant* is a ladder other than the default one for some
sensors (a building class of SHM-R3, or one facility's own thresholds): its rule watches the same
assessed attribute but only the instances written with the variant's datasetId, and the domain
writes each sensor's assessed values with the datasetId of the ladder that applies to it. So the
set of rules changes only with the configuration, never with the sensors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from ucity.rules import Compare, Edge, EventMatch, Inactivity, Persistence, Rule, Step, Text, Threshold

if TYPE_CHECKING:
    from ucity.domains.facility_safety.config import FacilitySafetyConfig, Ladder, LadderSet, PersistenceConfig

CATEGORY = "facility-safety"

# -- SHM-R1 / R2 / R3 ladders (values per domain-rules §2.3, §2.4) ------------------------------------------
TILT_LADDER: dict[str, float] = {"interest": 1 / 750, "caution": 1 / 500, "warning": 1 / 300, "serious": 1 / 150,
                                 "hysteresis": 1.0e-4}  # rad; band 0.1 mrad [D], ten times the sensor noise
CRACK_LADDER: dict[str, float] = {"interest": 0.1, "caution": 0.3, "warning": 0.5, "serious": 1.0,
                                  "hysteresis": 0.02}  # mm; band [D]
VIBRATION_LADDER: dict[str, float] = {"interest": 1.0, "caution": 2.0, "warning": 3.0, "serious": 5.0,
                                      "hysteresis": 0.2}  # mm/s PPV; band [D]
CLASSES: dict[str, dict[str, Any]] = {
    "residential": {"vibration_factor": 1.0, "description": "residential / aging buildings (SHM-R3 default)"},
    "industrial": {"vibration_factor": 4.0, "description": "industrial buildings, PPV ladder x4 (SHM-R3)"},
    "heritage": {"vibration_factor": 0.67, "description": "heritage / sensitive structures, PPV ladder x0.67 (SHM-R3)"},
}
# -- SHM-R4 persistence -------------------------------------------------------------------------------------
PERSISTENCE_SAMPLES = 3
PERSISTENCE_DURATION_S = 900.0
# -- SHM-R6 sensor health -----------------------------------------------------------------------------------
BATTERY_LOW_BELOW = 0.2  # 20 % as a fraction (the simulator's batteryLevel is 0..1, UN/CEFACT C62)
BATTERY_HYSTERESIS = 0.02
BATTERY_SAMPLES = 3
STUCK_HOURS = 24.0
STUCK_MIN_SAMPLES = 12
HEALTH_CHECK_INTERVAL_S = 3600.0
EXPECTED_INTERVAL_S = 600.0  # 10-minute reports (§8.6 [D]); ingest's device health uses the device's own
OFFLINE_AFTER_INTERVALS = 3
# -- plausibility of readings (QA5 F3), all [D]: a value outside is a suspect sensor (fault), never a level ----
# Ranges in the channel's unit (tilt per axis, rad; crack mm; PPV mm/s; dominant frequency Hz; temperature °C).
# tilt ±0.1 rad (5.7°, 15 × the serious edge 1/150): a change from the installation baseline beyond it is a unit
# error (0.5 = degrees sent as rad) or a broken sensor; a real lean that large is visible without sensors. crack
# −0.25 mm (a closing crack and the thermal swing stay above it; a meter mounted reversed reports an opening as a
# negative value and is flagged before the caution edge 0.3 mm) to 50 mm (the range of common crack meters). PPV
# 0 (a peak velocity is a magnitude) to 250 mm/s (the range of common blast-monitoring geophones, ≈ 10 in/s: 4500
# is µm/s sent as mm/s). Frequency 0 to 1000 Hz, temperature −50 to 80 °C (structural surfaces in Korea).
PLAUSIBLE_RANGES: dict[str, tuple[float, float]] = {
    "tilt": (-0.1, 0.1), "crack": (-0.25, 50.0), "vibration": (0.0, 250.0), "frequency": (0.0, 1000.0),
    "temperature": (-50.0, 80.0), "battery": (0.0, 1.0)}
# battery (QA14 F2): SHM-R6's 20 % is a fraction 0..1 (UN/CEFACT C62, as the simulator sends it); percent (`P1`)
# is converted, and a value above 1 without a unit (or with C62) is a suspect reading, never "battery fine".
# unitCode (UN/CEFACT common code, or a plain symbol) -> (scale, offset) to the channel's unit: value·scale + offset.
# A reading without a unitCode is taken in the channel's unit; any other code is not guessed (a fault).
UNITS: dict[str, dict[str, tuple[float, float]]] = {
    "tilt": {"C81": (1.0, 0.0), "rad": (1.0, 0.0), "C25": (1e-3, 0.0), "mrad": (1e-3, 0.0), "urad": (1e-6, 0.0),
             "µrad": (1e-6, 0.0), "DD": (math.pi / 180, 0.0), "deg": (math.pi / 180, 0.0), "°": (math.pi / 180, 0.0)},
    "crack": {"MMT": (1.0, 0.0), "mm": (1.0, 0.0), "4H": (1e-3, 0.0), "um": (1e-3, 0.0), "µm": (1e-3, 0.0),
              "CMT": (10.0, 0.0), "cm": (10.0, 0.0), "MTR": (1000.0, 0.0), "m": (1000.0, 0.0)},
    "vibration": {"C16": (1.0, 0.0), "mm/s": (1.0, 0.0), "um/s": (1e-3, 0.0), "µm/s": (1e-3, 0.0),
                  "2M": (10.0, 0.0), "cm/s": (10.0, 0.0), "MTS": (1000.0, 0.0), "m/s": (1000.0, 0.0)},
    "frequency": {"HTZ": (1.0, 0.0), "Hz": (1.0, 0.0), "KHZ": (1000.0, 0.0), "kHz": (1000.0, 0.0)},
    "battery": {"C62": (1.0, 0.0), "P1": (0.01, 0.0), "%": (0.01, 0.0)},
    "temperature": {"CEL": (1.0, 0.0), "°C": (1.0, 0.0), "KEL": (1.0, -273.15), "K": (1.0, -273.15),
                    "FAH": (5 / 9, -32 * 5 / 9), "°F": (5 / 9, -32 * 5 / 9)},
}
# -- installation baseline (QA5 F9), [D]: the ladders of SHM-R1 / R2 measure the change from it --------------------
# A sensor with no baseline set at provisioning (static attribute `installationBaseline`), at attach or by a reset
# takes the median of its first N plausible readings per axis: one hour of 10-minute reports (§8.6 [D]); the median,
# so one knock does not set the zero. Readings before that are stored but not laddered. "zero": the devices report
# the change themselves (zeroed at installation), the baseline is 0 from the first reading.
BASELINE_MODE: Literal["capture", "zero"] = "capture"
BASELINE_CAPTURE_SAMPLES = 6
# -- SHM-R7 thermal compensation ----------------------------------------------------------------------------
THERMAL_MIN_DAYS = 30.0
THERMAL_MIN_HOURS = 360  # hourly buckets with data: half of 30 days [D]
THERMAL_WINDOW_DAYS = 365.0  # "ideally 12 months" [P]
THERMAL_MIN_RANGE_C = 3.0
THERMAL_REFIT_HOURS = 24.0
THERMAL_RETRY_HOURS = 6.0
THERMAL_CLIP_SIGMAS = 4.0
TEMPERATURE_MAX_AGE_S = 1800.0
# -- §2.5 data safety grade ---------------------------------------------------------------------------------
GRADE_WINDOW_DAYS = 30.0
GRADE_COMPLETENESS = 0.8
GRADE_LEVEL_SAMPLES = 3  # the same three samples SHM-R4 asks of an alarm
GRADE_LEVEL_MAX_AGE_H = 24.0
GRADE_TREND_BUCKET_H = 6.0
GRADE_TREND_HORIZON_DAYS = 365.0
GRADE_TREND_MIN_BUCKETS = 20
EVENT_SCORES: tuple[tuple[int, int], ...] = ((0, 1), (1, 3), (3, 5))  # 0 -> 1, 1–2 -> 3, >= 3 -> 5
MEMBER_WEIGHTS: dict[str, float] = {"main": 1.0, "auxiliary": 0.5}
MAIN_CAP_OFFSET = 1.0
GRADE_BOUNDS: tuple[float, float, float, float] = (1.5, 2.5, 3.5, 4.5)
RECOMPUTE_AT = "02:00"
TIMEZONE = "Asia/Seoul"
EMERGENCY_GRADES: tuple[str, ...] = ("D", "E")
EMERGENCY_STEPS_WORSE = 2
CRACK_RATE_CAUTION_MM = 0.05
CRACK_RATE_DAYS = 30.0
# -- SHM-R5 recipients and escalation -----------------------------------------------------------------------
RECIPIENT_GROUPS: dict[str, dict[str, str]] = {
    "shm-facility-officer": {"ko": "시설 안전 담당 공무원", "en": "Facility safety officer"},
    "shm-building-owner": {"ko": "건축물 소유자·관리주체", "en": "Building owner / manager"},
    "shm-maintenance-vendor": {"ko": "센서 유지보수 업체", "en": "Sensor maintenance vendor"},
    "shm-advisory-engineer": {"ko": "자문 기술사", "en": "Advisory professional engineer"},
    "shm-situation-room": {"ko": "통합관제센터·119 연계", "en": "Situation room and 119 link"},
    "shm-residents": {"ko": "인근 주민 경보", "en": "Nearby residents' alarm"},
}
_WARNING_GROUPS = ("shm-facility-officer", "shm-building-owner", "shm-maintenance-vendor", "shm-advisory-engineer")
ESCALATION: dict[str, tuple[str, ...]] = {
    "caution": ("shm-facility-officer",),
    "warning": _WARNING_GROUPS,
    "serious": (*_WARNING_GROUPS, "shm-situation-room", "shm-residents"),
    "fault": ("shm-facility-officer", "shm-maintenance-vendor"),
}
EMERGENCY_REPEAT_DAYS = 30.0
TASK_DUE_HOURS: dict[str, float] = {"field-check": 24.0, "emergency-inspection": 72.0, "evacuation-decision": 1.0,
                                    "manual": 168.0}
# -- §2.2 legal inspection intervals, months ([V] MOLIT policy Q&A idx=636; easylaw) ------------------------
PERIODIC_MONTHS = {"A": 6, "B": 6, "C": 6, "D": 4, "E": 4}  # "≥ 1 per half-year", "≥ 3 per year"
PRECISE_BUILDING_MONTHS = {"A": 48, "B": 36, "C": 36, "D": 24, "E": 24}
PRECISE_OTHER_MONTHS = {"A": 36, "B": 24, "C": 24, "D": 12, "E": 12}
DIAGNOSIS_MONTHS = {"A": 72, "B": 60, "C": 60, "D": 48, "E": 48}
BUILDING_TYPES = ("school", "daycareCenter", "apartment", "communityCenter", "building")
PHOTO_MAX_BYTES = 10 * 1024 * 1024

# Where each rule comes from (README.md states them in full).
SOURCES: dict[str, tuple[str, str]] = {
    "SHM-R1": ("tilt edges 1/750, 1/500, 1/300, 1/150 rad on the change from the installation baseline: "
               "values [V] Bjerrum / Skempton (GEO5 help), 1/750 [U], mapping to the four levels [D]", "D"),
    "SHM-R2": ("crack opening 0.1 / 0.3 / 0.5 / 1.0 mm: widths from the bridge-deck bands [P], 0.1 [U], "
               "rate >= 0.05 mm / 30 days after compensation -> caution [D]", "D"),
    "SHM-R3": ("PPV 1 / 2 / 3 / 5 mm/s, industrial x4, heritage x0.67: Korean 2-3 mm/s practice [P], ladder [D]", "D"),
    "SHM-R4": ("persistence: 3 consecutive samples or 15 minutes; shorter excursions are spike events [D]", "D"),
    "SHM-R5": ("recipients officer / owner / vendor / advisory engineer / centre and residents [V] (Guro, Mapo, "
               "Gwanak), mapping to levels [D]", "D"),
    "SHM-R6": ("sensor health: silent > 3 intervals, battery < 20 %, zero variance 24 h -> fault [D]", "D"),
    "QA5-F3": ("plausible range per channel and the attribute's unitCode: a reading outside, in an unknown unit "
               "or not a number is a suspect sensor (fault), not a safety level [D]", "D"),
    "SHM-R7": ("thermal compensation a + b*T over >= 30 days (ideally 12 months) [P], method [D]", "D"),
    "QA5-F4": ("grade.min_main_coverage 0.8: scored / attached main-member sensors; section 2.5's '>= 80 % "
               "completeness' applied to members, below it the grade is insufficient-data (withheld) [D]", "D"),
    "QA14-F3": ("grade.min_completeness 0.8: section 2.5.1's '>= 80 % completeness' of the expected samples "
                "(member-weighted over the scored sensors); below it a grade as good as the legal grade or better (A/B "
                "without one) is insufficient-data (withheld, provisional), a worse one stands [D]", "D"),
    "QA5-F9": ("installation baseline (zero offset) of tilt and crack sensors: set at provisioning or attach, else "
               "the median of the first 6 plausible readings (baseline.capture_samples); readings before it are "
               "stored, not laddered [D]", "D"),
}
# The settings of the domain that are no rule of the rules engine, with the SOURCES entry they come from
# (`GET /api/v1/facility-safety/rules` lists them with their values).
SETTING_SOURCES: dict[str, str] = {"grade.min_main_coverage": "QA5-F4", "grade.completeness": "QA5-F4",
                                   "grade.min_completeness": "QA14-F3",
                                   "baseline.mode": "QA5-F9", "baseline.capture_samples": "QA5-F9"}

# -- rule ids and the attributes the domain writes ------------------------------------------------------------
TILT, CRACK, VIBRATION = "tilt", "crack", "vibration"
CHANNELS = (TILT, CRACK, VIBRATION)
RULE_IDS = {TILT: "shm-tilt", CRACK: "shm-crack", VIBRATION: "shm-vibration"}
CRACK_RATE_RULE = "shm-crack-rate"
BATTERY_RULE = "shm-battery-low"
STUCK_RULE = "shm-sensor-stuck"
SILENT_RULE = "shm-sensor-silent"
SUSPECT_RULE = "shm-reading-suspect"  # QA5 F3: an implausible reading
OFFLINE_RULE = "shm-sensor-offline"  # QA5 F12: ingest's deviceState offline, on the domain's maintenance chain
FAULT_RULES = (BATTERY_RULE, STUCK_RULE, SILENT_RULE, SUSPECT_RULE, OFFLINE_RULE)
ASSESSED = {TILT: "tiltAssessed", CRACK: "crackOpeningAssessed", VIBRATION: "vibrationPPVAssessed"}
BATTERY_ATTR = "batteryLevelAssessed"  # QA14 F2: batteryLevel as a fraction (P1 percent converted), SHM-R6's rule
CRACK_RATE_ATTR = "crackOpeningRate"
STUCK_ATTR = "sensorStuck"
SUSPECT_ATTR = "readingSuspect"  # "ok", or why the newest reading was not assessed (QA5 F3)
SUSPECT_OK = "ok"
INSTALL_BASELINE_ATTR = "installationBaseline"  # zero offsets per measured attribute (QA5 F9)
DETACHED_ATTR = "detachedFrom"  # the facility a detached sensor left: its readings are stored, not laddered
DEVICE_STATE_ATTR = "deviceState"  # written by ingest's device health (online / offline)
OFFLINE_ATTR = "sensorOffline"  # "ok", or the offline text with the last report in Asia/Seoul (QA5 F13a)
DATASET_PREFIX = "urn:ngsi-ld:Dataset:facility-safety:"
NAMES: dict[str, Text] = {
    TILT: Text(ko="기울기 변화(설치 기준)", en="Tilt change from the installation baseline"),
    CRACK: Text(ko="균열·이격 변화(설치 기준)", en="Crack opening change from the baseline"),
    VIBRATION: Text(ko="진동 최대입자속도(PPV)", en="Vibration peak particle velocity"),
}
_SOURCE_OF = {TILT: ("SHM-R1", "SHM-R4", "SHM-R7"), CRACK: ("SHM-R2", "SHM-R4", "SHM-R7"),
              VIBRATION: ("SHM-R3", "SHM-R4")}


def source(*rule_ids: str) -> str:
    return "domain-rules " + "; ".join(f"{r}: {SOURCES[r][0]}" for r in rule_ids)


# -- ladders that apply to a sensor -----------------------------------------------------------------------------
def effective(cfg: FacilitySafetyConfig, channel: str, class_name: str,
              override: LadderSet | None = None) -> tuple[Ladder, PersistenceConfig]:
    """The ladder and persistence of a channel for a building class and an optional facility override."""
    profile = cfg.classes[class_name]
    base: Ladder = getattr(cfg, channel)
    ladder = getattr(profile, channel) or (base.scaled(profile.vibration_factor)
                                           if channel == VIBRATION and profile.vibration_factor != 1.0 else base)
    if override is not None and getattr(override, channel) is not None:
        ladder = getattr(override, channel)
    persistence = (override.persistence if override is not None and override.persistence else None) \
        or profile.persistence or cfg.persistence
    return ladder, persistence


@dataclass(frozen=True, slots=True)
class Variant:
    """A non-default ladder of one channel: its rule id, datasetId, ladder and persistence."""

    channel: str
    rule_id: str
    dataset_id: str
    ladder: Ladder
    persistence: PersistenceConfig
    label: str  # "class industrial" / "facility <id>"


def class_variant(cfg: FacilitySafetyConfig, channel: str, class_name: str) -> Variant | None:
    """The class's variant of a channel, or None when the class uses the default ladder."""
    ladder, persistence = effective(cfg, channel, class_name)
    if (ladder, persistence) == (getattr(cfg, channel), cfg.persistence):
        return None
    return Variant(channel, f"{RULE_IDS[channel]}.class-{class_name}", f"{DATASET_PREFIX}class:{class_name}",
                   ladder, persistence, f"class {class_name}")


def facility_variant(cfg: FacilitySafetyConfig, channel: str, class_name: str, facility_id: str,
                     override: LadderSet) -> Variant | None:
    """A facility's own variant of a channel, or None when its override leaves the channel alone."""
    ladder, persistence = effective(cfg, channel, class_name, override)
    if (ladder, persistence) == effective(cfg, channel, class_name):
        return None
    slug = facility_slug(facility_id)
    return Variant(channel, f"{RULE_IDS[channel]}.facility-{slug}", f"{DATASET_PREFIX}facility:{slug}", ladder,
                   persistence, f"facility {facility_id}")


def facility_slug(facility_id: str) -> str:
    """A short, rule-id-safe name of a facility: the part after `urn:ngsi-ld:<Type>:`."""
    local = facility_id.split(":", 3)[3] if facility_id.startswith("urn:ngsi-ld:") and facility_id.count(":") >= 3 \
        else facility_id
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in local)
    return safe[:80] or "facility"


# -- rules --------------------------------------------------------------------------------------------------
def _persistence(p: PersistenceConfig) -> Persistence:
    return Persistence(samples=p.samples, duration_seconds=p.duration_s)


def safety_rule(cfg: FacilitySafetyConfig, channel: str, ladder: Ladder, persistence: PersistenceConfig,
                variant: Variant | None = None) -> Rule:
    """The SHM-R1/R2/R3 ladder of a channel on its assessed attribute (SHM-R7 compensated), with SHM-R4."""
    name = NAMES[channel]
    if variant is not None:
        name = Text(ko=f"{name.ko} ({variant.label})", en=f"{name.en} ({variant.label})")
    return Rule(
        id=variant.rule_id if variant else RULE_IDS[channel], name=name, entity_types=tuple(cfg.sensor_types),
        kind="safety", category=CATEGORY, dataset_id=variant.dataset_id if variant else None,
        condition=Threshold(attribute=ASSESSED[channel], direction="above", hysteresis=ladder.hysteresis,
                            edges=tuple(Edge(level=level, at=at) for level, at in ladder.edges())),  # type: ignore[arg-type]
        persistence=_persistence(persistence), source=source(*_SOURCE_OF[channel]), confidence="D",
        description=Text(ko="열 보정된 변화량(30일 이력 전에는 원시 변화량)에 적용",
                         en="applied to the thermally compensated change (the raw change before 30 days of history)"),
    )


def crack_rate_rule(cfg: FacilitySafetyConfig) -> Rule:
    """SHM-R2's rate: the domain writes the compensated crack's Theil–Sen rate once a day."""
    g = cfg.grade
    return Rule(
        id=CRACK_RATE_RULE, name=Text(ko="균열 진행 속도", en="Crack growth rate"), entity_types=tuple(cfg.sensor_types),
        kind="safety", category=CATEGORY, source=source("SHM-R2", "SHM-R7"), confidence="D",
        condition=Threshold(attribute=CRACK_RATE_ATTR, direction="above", hysteresis=g.crack_rate_caution_mm * 0.2,
                            edges=(Edge(level="caution", at=g.crack_rate_caution_mm),)),
        description=Text(ko=f"열 보정 후 {g.crack_rate_days:g}일당 mm", en=f"mm per {g.crack_rate_days:g} days, compensated"),
    )


def fault_rules(cfg: FacilitySafetyConfig) -> tuple[Rule, ...]:
    """SHM-R6: faults (kind `fault`, never a safety level). Silence is ingest's `device-offline` by default."""
    h, a, types = cfg.health, cfg.attributes, tuple(cfg.sensor_types)
    battery = Rule(
        id=BATTERY_RULE, name=Text(ko="센서 배터리 부족", en="Sensor battery low"), entity_types=types, kind="fault",
        category=CATEGORY, source=source("SHM-R6"), confidence="D", persistence=Persistence(samples=h.battery_samples),
        condition=Threshold(attribute=BATTERY_ATTR, direction="below", hysteresis=h.battery_hysteresis,
                            edges=(Edge(level="interest", at=h.battery_low_below),)),
        description=Text(ko=f"배터리 값({a.battery}, 비율 0..1: 퍼센트 P1은 환산해 {BATTERY_ATTR}에 기록)이 "
                            f"{h.battery_low_below:g} 이하로 {h.battery_samples}회 연속: 고장(안전 단계 아님)",
                         en=f"{a.battery} (as a fraction 0..1: percent, unitCode P1, converted, written as "
                            f"{BATTERY_ATTR}) at or below {h.battery_low_below:g} on {h.battery_samples} consecutive "
                            f"samples: a fault, never a safety level"))
    stuck = Rule(
        id=STUCK_RULE, name=Text(ko="센서 값 고정(의심)", en="Sensor value stuck (suspect)"), entity_types=types,
        kind="fault", category=CATEGORY, source=source("SHM-R6"), confidence="D",
        condition=EventMatch(attribute=STUCK_ATTR, when=Compare(op="==", value=True), level="interest", latch=True))
    measured = (a.tilt_x, a.tilt_y, a.crack, a.vibration, a.temperature)
    silent = Rule(
        id=SILENT_RULE, name=Text(ko="센서 무응답", en="Sensor silent"), entity_types=types, kind="fault",
        category=CATEGORY, source=source("SHM-R6"), confidence="D", enabled=h.silent_rule_enabled,
        condition=Inactivity(attributes=measured, steps=(
            Step(level="interest", after_seconds=h.expected_interval_s * h.offline_after_intervals),)))
    suspect = Rule(
        id=SUSPECT_RULE, name=Text(ko="센서 측정값 이상(의심)", en="Implausible reading (suspect sensor)"),
        entity_types=types, kind="fault", category=CATEGORY, source=source("SHM-R6", "QA5-F3"), confidence="D",
        enabled=cfg.plausibility.enabled,
        condition=EventMatch(attribute=SUSPECT_ATTR, when=Compare(op="!=", value=SUSPECT_OK), level="interest",
                             latch=True),
        description=Text(ko="범위를 벗어났거나 단위를 알 수 없거나 숫자가 아닌 측정값: 평가·등급에서 제외 (값은 이유)",
                         en="a reading out of its plausible range, in an unknown unit or not a number: left out of "
                            "the ladders and the grade (the value says why)"))
    offline = Rule(
        id=OFFLINE_RULE, name=Text(ko="센서 통신 두절(유지보수)", en="Sensor offline (maintenance)"), entity_types=types,
        kind="fault", category=CATEGORY, source=source("SHM-R6"), confidence="D", enabled=h.offline_rule_enabled,
        condition=EventMatch(attribute=OFFLINE_ATTR, when=Compare(op="!=", value=SUSPECT_OK), level="interest",
                             latch=True),
        description=Text(ko="수집(ingest)의 장치 상태가 offline: 유지보수 그룹에 통보 (값은 마지막 보고 시각, 한국 시간). "
                            "구조 센서에는 커널의 device-offline 경보를 따로 올리지 않음",
                         en="ingest's device state is offline: the domain's maintenance groups are told (the value "
                            "gives the last report in Asia/Seoul). The kernel's device-offline alarm is not raised "
                            "for a structural sensor as well"))
    return battery, stuck, silent, suspect, offline


def default_rules(cfg: FacilitySafetyConfig) -> tuple[Rule, ...]:
    """The base ladders of every channel, the crack rate and the fault rules."""
    base = tuple(safety_rule(cfg, ch, getattr(cfg, ch), cfg.persistence) for ch in CHANNELS)
    return (*base, crack_rate_rule(cfg), *fault_rules(cfg))


def variant_rules(cfg: FacilitySafetyConfig, variants: list[Variant]) -> tuple[Rule, ...]:
    return tuple(safety_rule(cfg, v.channel, v.ladder, v.persistence, v) for v in variants)


# -- contact data for the alarms service (SHM-R5) ----------------------------------------------------------------
def contact_documents(cfg: FacilitySafetyConfig, rule_ids: list[str]) -> tuple[list[dict[str, Any]],
                                                                             list[dict[str, Any]]]:
    """(recipient groups, escalation chains): one chain per safety rule and level, one per fault rule.

    Interest has no chain: SHM-R5 shows it on the dashboard only. Each group of a level is told at
    once (delay 0); members and channels are the city's data, added through the API.
    """
    esc = cfg.escalation
    groups = [{"id": gid, "name": name, "members": [], "notifiers": []} for gid, name in esc.groups.items()]
    chains: list[dict[str, Any]] = []
    for rule_id in rule_ids:
        levels = ("fault",) if rule_id in FAULT_RULES else ("caution", "warning", "serious")
        for level in levels:
            members = esc.levels.get(level, [])
            if members:
                chains.append({"id": f"{rule_id}.{level}", "rule": rule_id, "level": level,
                               "steps": [{"delay_s": 0.0, "group": g} for g in members]})
    return groups, chains
