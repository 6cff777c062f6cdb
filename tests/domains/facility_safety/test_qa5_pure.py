"""QA5 findings on the grade and the ladders, without a server: F4 coverage, F7 clearing bands, F11 events.

F4: a grade must say how many of the facility's main members it rests on, and below the minimum coverage
    a good grade is withheld (a bad one stands, flagged).
F7: a clearing band (hysteresis) at or above the smallest gap of a ladder is refused (an alarm could never
    clear); a ladder given without a band keeps the band of the ladder it replaces, not 0.
F1 (the fallback part): without a device interval the domain's `health.expected_interval_s` applies.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ucity.domains.facility_safety import rules as d
from ucity.domains.facility_safety.config import ConfigError, Ladder, LadderSet, load_config, with_domain_bands
from ucity.domains.facility_safety.grade import ChannelEvidence, GradePolicy, SensorEvidence, grade_facility
from ucity.domains.facility_safety.grading import Grader
from ucity.domains.facility_safety.models import Sensor

TILT_EDGES = (("interest", 1 / 750), ("caution", 1 / 500), ("warning", 1 / 300), ("serious", 1 / 150))
POLICY = GradePolicy(d.EVENT_SCORES, d.MEMBER_WEIGHTS, d.MAIN_CAP_OFFSET, d.GRADE_BOUNDS, 365.0, 20, 0.8)
CRACK = {"interest": 0.1, "caution": 0.3, "warning": 0.5, "serious": 1.0}


def tilt_sensor(n: int, recent: tuple[float, ...] = (), member: str = "main") -> SensorEvidence:
    channel = ChannelEvidence("tilt", TILT_EDGES, recent, "2026-03-01T00:00:00Z" if recent else None, bool(recent),
                              "none")
    return SensorEvidence(f"urn:ngsi-ld:StructuralSensor:wall-{n}", member, "tilt", (channel,), events=0)


# -- F4 ------------------------------------------------------------------------------------------------------------
def test_four_silent_main_members_of_five_withhold_a_good_grade() -> None:
    sensors = [tilt_sensor(0, (0.0002, 0.0002, 0.0002))] + [tilt_sensor(n) for n in range(1, 5)]
    result = grade_facility(sensors, POLICY, "B", ("D", "E"), 2)
    assert result["coverage"] == {"basis": "main", "scored": 1, "attached": 5, "share": 0.2, "minimum": 0.8,
                                  "sufficient": False,
                                  "unscored": [f"urn:ngsi-ld:StructuralSensor:wall-{n}" for n in range(1, 5)]}
    assert result["status"] == "insufficient-data" and result["gradeWithheld"] is True
    assert result["grade"] is None and result["score"] is None
    assert result["provisionalGrade"] == "A" and result["provisionalScore"] == 1.0
    assert "Data safety grade withheld (insufficient data); provisional grade A" in result["summary"]["en"]
    assert "Coverage: 1 of 5 main members scored (20%), below the minimum 80%: insufficient data." \
        in result["summary"]["en"]
    assert "데이터 안전등급 보류(데이터 부족)" in result["summary"]["ko"]
    assert "채점 범위: 주부재 5개 중 1개(20%), 최소 80% 미만: 데이터 부족." in result["summary"]["ko"]


def test_a_failing_member_is_not_hidden_by_silent_ones() -> None:
    sensors = [tilt_sensor(0, (0.0070, 0.0071, 0.0072))] + [tilt_sensor(n) for n in range(1, 5)]
    result = grade_facility(sensors, POLICY, "B", ("D", "E"), 2)
    assert result["grade"] == "E" and result["status"] == "insufficient-data" and not result["gradeWithheld"]
    assert result["emergency"]["recommended"]
    assert "the grade stands because it already recommends an emergency inspection" in result["summary"]["en"]
    assert "긴급점검 권고 등급이므로 등급 유지" in result["summary"]["ko"]


def test_enough_coverage_grades_as_before_and_says_how_many() -> None:
    sensors = [tilt_sensor(n, (0.0002, 0.0002, 0.0002)) for n in range(4)] + [tilt_sensor(4),
                                                                                tilt_sensor(5, member="auxiliary")]
    result = grade_facility(sensors, POLICY, "B", ("D", "E"), 2)
    assert result["grade"] == "A" and result["status"] == "ok"  # 4 of 5 = 80 %: enough
    assert result["coverage"]["scored"] == 4 and result["coverage"]["attached"] == 5  # auxiliary not counted
    assert "Coverage: 4 of 5 main members scored (80%)." in result["summary"]["en"]
    # without main members, every sensor counts
    only_aux = grade_facility([tilt_sensor(0, (0.0002,) * 3, "auxiliary")], POLICY, None, ("D", "E"), 2)
    assert only_aux["coverage"]["basis"] == "all" and only_aux["grade"] == "A"


def test_the_minimum_is_a_setting_and_zero_turns_it_off() -> None:
    assert load_config({}).grade.min_main_coverage == 0.8
    off = GradePolicy(d.EVENT_SCORES, d.MEMBER_WEIGHTS, d.MAIN_CAP_OFFSET, d.GRADE_BOUNDS, 365.0, 20, 0.0)
    sensors = [tilt_sensor(0, (0.0002,) * 3)] + [tilt_sensor(n) for n in range(1, 5)]
    assert grade_facility(sensors, off, None, ("D", "E"), 2)["grade"] == "A"
    with pytest.raises(ConfigError):
        load_config({"grade": {"min_main_coverage": 1.5}})


# -- F7 ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("band", "gap"), [(0.5, "0–interest"), (0.1, "0–interest"), (0.2, "0–interest")])
def test_a_band_at_or_above_the_first_edge_is_refused(band: float, gap: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Ladder(**CRACK, hysteresis=band)
    message = str(caught.value)
    assert f"({gap})" in message and "else the alarm could never clear" in message and "해제되지 않음" in message


def test_a_band_at_or_above_a_gap_between_edges_is_refused() -> None:
    with pytest.raises(ValidationError, match="caution–warning"):
        Ladder(interest=0.2, caution=0.3, warning=0.35, serious=1.0, hysteresis=0.05)
    assert Ladder(interest=0.2, caution=0.3, warning=0.35, serious=1.0, hysteresis=0.049).hysteresis == 0.049


def test_the_toml_settings_refuse_such_a_band_and_inherit_the_default_band() -> None:
    with pytest.raises(ConfigError, match=r"crack: .*hysteresis 0\.5 must be below the smallest gap 0\.1"):
        load_config({"crack": {**CRACK, "hysteresis": 0.5}})
    # a ladder table without hysteresis keeps the shipped band, not 0
    assert load_config({"crack": {**CRACK, "interest": 0.15}}).crack.hysteresis == d.CRACK_LADDER["hysteresis"]
    assert load_config({"crack": {**CRACK, "hysteresis": 0.0}}).crack.hysteresis == 0.0  # given: kept
    # a class's own ladder: the band of the class's default ladder (vibration x its factor)
    cfg = load_config({"classes": {"residential": {}, "industrial": {"vibration_factor": 4.0, "vibration": {
        "interest": 4.0, "caution": 8.0, "warning": 12.0, "serious": 20.0}}}})
    vibration = cfg.classes["industrial"].vibration
    assert vibration is not None and vibration.hysteresis == pytest.approx(4 * d.VIBRATION_LADDER["hysteresis"])
    # an inherited band that does not fit the edges is refused with both languages
    with pytest.raises(ConfigError) as caught:
        load_config({"crack": {**CRACK, "interest": 0.01}})
    assert "inherited clearing band" in str(caught.value) and "상속된 해제 폭" in str(caught.value)


def test_a_facility_override_of_the_edges_alone_gets_the_domain_band() -> None:
    cfg = load_config({})
    override = LadderSet.model_validate({"crack": {"interest": 0.2, "caution": 0.4, "warning": 0.6, "serious": 1.2},
                                         "vibration": {"interest": 5, "caution": 9, "warning": 13, "serious": 21}})
    resolved = with_domain_bands(cfg, "residential", override)
    assert resolved.crack is not None and resolved.crack.hysteresis == d.CRACK_LADDER["hysteresis"]
    industrial = with_domain_bands(cfg, "industrial", override)  # replaces the class's x4 ladder: its band
    assert industrial.vibration is not None and industrial.vibration.hysteresis == pytest.approx(0.8)
    # stored and read back (the service keeps the dump), the band stays
    again = LadderSet.model_validate(resolved.model_dump(mode="json"))
    assert again.crack is not None and again.crack.hysteresis == d.CRACK_LADDER["hysteresis"]
    tight = LadderSet.model_validate({"crack": {"interest": 0.01, "caution": 0.4, "warning": 0.6, "serious": 1.2}})
    with pytest.raises(ValueError, match=r"crack: .*inherited clearing band"):
        with_domain_bands(cfg, "residential", tight)


# -- F1 fallback ------------------------------------------------------------------------------------------------
def test_without_a_device_interval_the_domain_setting_applies() -> None:
    cfg = load_config({"health": {"expected_interval_s": 1200}})
    sensor = Sensor("t", "urn:ngsi-ld:StructuralSensor:x", ["StructuralSensor"], kind="crack")
    grader = Grader(None, None, cfg, lambda s, c: cfg.crack)  # type: ignore[arg-type]  # only the interval here
    assert grader.expected_interval(sensor) == (1200.0, "health.expected_interval_s")
    own = Grader(None, None, cfg, lambda s, c: cfg.crack, lambda s: (3600.0, "device"))  # type: ignore[arg-type]
    assert own.expected_interval(sensor) == (3600.0, "device")
    unknown = Grader(None, None, cfg, lambda s, c: cfg.crack, lambda s: None)  # type: ignore[arg-type]
    assert unknown.expected_interval(sensor) == (1200.0, "health.expected_interval_s")
