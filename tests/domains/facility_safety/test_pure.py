"""The pure parts with exact numbers: the §2.5 grade and its explanation, the SHM-R7 fit, the §2.2
schedule, multipart parsing, the configuration and the rules built from it."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime

import pytest

from ucity.core.errors import BadRequest, UnsupportedMediaType
from ucity.domains.facility_safety import rules as d
from ucity.domains.facility_safety.config import ConfigError, FacilitySafetyConfig, InspectionConfig, load_config
from ucity.domains.facility_safety.grade import ChannelEvidence, GradePolicy, SensorEvidence, band, grade_facility, theil_sen
from ucity.domains.facility_safety.inspections import add_months, overdue, schedule
from ucity.domains.facility_safety.models import Facility, ThermalModel
from ucity.domains.facility_safety.photos import parse_multipart, sniff
from ucity.domains.facility_safety.thermal import FitPolicy, HourMean, NoModel, fit, residual

POLICY = GradePolicy(d.EVENT_SCORES, d.MEMBER_WEIGHTS, d.MAIN_CAP_OFFSET, d.GRADE_BOUNDS, 365.0, 20)
TILT = tuple((k, v) for k, v in d.TILT_LADDER.items() if k != "hysteresis")
CRACK = tuple((k, v) for k, v in d.CRACK_LADDER.items() if k != "hysteresis")
PPV = tuple((k, v) for k, v in d.VIBRATION_LADDER.items() if k != "hysteresis")
NOW = datetime(2026, 3, 1, tzinfo=UTC)
HOUR_US = 3_600_000_000


def channel(kind: str, edges: tuple[tuple[str, float], ...], recent: tuple[float, ...], points=(),  # type: ignore[no-untyped-def]
            status: str = "not-applicable") -> ChannelEvidence:
    return ChannelEvidence(kind, edges, recent, "2026-03-01T00:00:00.000000Z", True, "thermal", tuple(points), status)


# -- §2.5 ----------------------------------------------------------------------------------------------------
def test_bands_are_inclusive_at_each_edge() -> None:
    assert [band(v, TILT) for v in (0.0, 1 / 750, 1 / 500 - 1e-9, 1 / 300, 1 / 150, 0.1)] == [1, 2, 2, 4, 5, 5]


def test_theil_sen_ignores_a_wild_point() -> None:
    points = [(float(x), 2.0 * x + 1.0) for x in range(20)]
    points[7] = (7.0, 500.0)
    assert theil_sen(points) == pytest.approx(2.0)


def test_the_grade_takes_the_worst_part_weights_members_and_floors_at_the_worst_main_member() -> None:
    tilt = SensorEvidence("urn:s:tilt-main", "main", "tilt", (channel("tilt", TILT, (0.0070, 0.0071, 0.0072)),),
                          events=3, event_levels={"caution": 1, "warning": 1, "serious": 1}, completeness=0.2)
    rising = [(day, 0.21 + 0.01 * (day - 29)) for day in range(30)]
    crack = SensorEvidence("urn:s:crack-aux", "auxiliary", "crack",
                           (channel("crack", CRACK, (0.20, 0.21, 0.22), rising, "ok"),), events=0, completeness=0.95)
    quiet = SensorEvidence("urn:s:ppv-main", "main", "vibration", (channel("vibration", PPV, (0.2, 0.3, 0.25)),),
                           events=0, spikes=2)
    result = grade_facility([tilt, crack, quiet], POLICY, "C", ("D", "E"), 2)
    rows = {r["sensor"]: r for r in result["sensors"]}
    assert rows["urn:s:tilt-main"]["score"] == 5  # level e (0.0071 >= 1/150) and 3 events -> 5
    crack_row = rows["urn:s:crack-aux"]
    assert crack_row["channels"][0]["level"]["score"] == 2  # 0.21 mm is band b
    trend = crack_row["channels"][0]["trend"]
    assert trend["slopePerDay"] == pytest.approx(0.01) and trend["projected"] == pytest.approx(0.21 + 3.65)
    assert trend["score"] == 5 and crack_row["score"] == 5
    assert rows["urn:s:ppv-main"]["score"] == 1 and rows["urn:s:ppv-main"]["events"]["spikes"] == 2
    # weighted mean (5·1 + 5·0.5 + 1·1) / 2.5 = 3.4, floored at the worst main member 5 − 1 = 4 -> D
    assert result["weightedMean"] == pytest.approx(3.4) and result["mainCap"] == 4 and result["capApplied"]
    assert (result["score"], result["grade"]) == (4.0, "D")
    assert result["emergency"] == {"recommended": True, "reasons": [{"ko": "데이터 안전등급 D",
                                                                     "en": "data safety grade D"}]}
    en = result["summary"]["en"]
    assert en.startswith("Data safety grade D (poor), score 4.00: weighted mean 3.40, raised to 4.00 by the worst "
                         "main member.")
    assert "urn:s:tilt-main (main member, weight 1): tilt 7.10 mrad -> level e (5); 3 caution+ event(s) (5); " \
           "score 5." in en
    assert "trend +3.65 mm/year -> 3.86 mm in 365 days (5)" in en
    assert "Legal grade C (not changed by the data grade)." in en
    assert "urn:s:crack-aux(보조부재, 가중치 0.5)" in result["summary"]["ko"]


def test_two_steps_worse_than_the_legal_grade_recommends_an_emergency_inspection() -> None:
    crack = SensorEvidence("urn:s:c", "main", "crack", (channel("crack", CRACK, (0.32, 0.33, 0.31)),), events=0)
    result = grade_facility([crack], POLICY, "A", ("D", "E"), 2)
    assert (result["score"], result["grade"]) == (3.0, "C")
    assert result["emergency"]["recommended"] and "legal grade A" in result["emergency"]["reasons"][0]["en"]
    assert not grade_facility([crack], POLICY, "B", ("D", "E"), 2)["emergency"]["recommended"]


def test_a_stuck_sensor_is_not_scored_and_no_data_gives_no_grade() -> None:
    stuck = SensorEvidence("urn:s:x", "main", "tilt", (channel("tilt", TILT, (0.01, 0.01, 0.01)),), events=0,
                           stuck=True)
    result = grade_facility([stuck], POLICY, None, ("D", "E"), 2)
    assert result["grade"] is None and result["sensors"][0]["scored"] is False
    assert "no sensor could be scored" in result["summary"]["en"]


# -- SHM-R7 --------------------------------------------------------------------------------------------------
def hours(days: float, a: float, b: float, noise: float = 0.001, seed: int = 1) -> list[HourMean]:
    rng = random.Random(seed)
    out = []
    for h in range(int(days * 24)):
        temp = 5.0 + 6.0 * ((h % 24) / 12.0 - 1.0) ** 2 + 0.1 * (h // 24)
        out.append(HourMean(h * HOUR_US, a + b * temp + rng.gauss(0, noise), temp))
    return out


FIT = FitPolicy(min_days=30, min_hours=360, min_temperature_range_c=3.0, clip_sigmas=4.0)


def test_the_fit_recovers_a_and_b_and_refuses_short_or_flat_histories() -> None:
    model = fit(hours(40, 0.05, -0.006), FIT, NOW)
    assert isinstance(model, ThermalModel)
    assert model.b == pytest.approx(-0.006, rel=0.02) and model.a == pytest.approx(0.05, abs=0.003)
    assert model.hours == 960 and model.r2 > 0.95
    short = fit(hours(12.5, 0.05, -0.006), FIT, NOW)
    assert short == NoModel("12.5 days of history, 30 needed")
    flat = [HourMean(h.start_us, h.reading, 10.0 + (h.start_us // HOUR_US) % 2) for h in hours(40, 0.0, 0.0)]
    assert isinstance(fit(flat, FIT, NOW), NoModel) and "spread 1.0 °C" in fit(flat, FIT, NOW).reason  # type: ignore[union-attr]


def test_structural_movement_is_not_learnt_as_temperature() -> None:
    data = hours(40, 0.0, -0.006)
    previous = fit(data, FIT, NOW)
    assert isinstance(previous, ThermalModel)
    crept = data + [HourMean(h.start_us + 40 * 24 * HOUR_US, h.reading + 0.4, h.temperature) for h in data[:48]]
    refit = fit(crept, FIT, NOW, previous, anomaly_at=0.1)
    assert isinstance(refit, ThermalModel)
    assert refit.a == pytest.approx(previous.a, abs=0.002) and refit.hours == 960  # the 48 crept hours left out
    compensated = residual(0.4 + refit.predict(3.0), 3.0, refit)
    assert compensated is not None and compensated[0] == pytest.approx(0.4) and compensated[1] == "thermal"
    assert residual(0.12, None, None) == (0.12, "none") and residual(0.12, None, refit) is None


# -- §2.2 ------------------------------------------------------------------------------------------------------
def test_months_are_added_with_the_month_end_clamped() -> None:
    assert add_months(date(2025, 8, 31), 6) == date(2026, 2, 28)
    assert add_months(date(2023, 8, 31), 6) == date(2024, 2, 29)
    assert add_months(date(2025, 11, 15), 4) == date(2026, 3, 15)


def test_the_schedule_follows_the_legal_grade_class_and_building_kind() -> None:
    cfg = InspectionConfig()
    school = Facility("t", "urn:f:school", facility_type="school", facility_class=1, legal_grade="A",
                      last_inspections={"periodic": date(2025, 10, 1), "precise": date(2022, 5, 2)})
    items = {i.kind: i for i in schedule(school, date(2026, 3, 1), cfg)}
    assert (items["periodic"].due, items["periodic"].status) == (date(2026, 4, 1), "ok")
    assert (items["precise"].interval_months, items["precise"].due, items["precise"].status) == (
        48, date(2026, 5, 2), "ok")
    assert items["diagnosis"].status == "no-record" and items["diagnosis"].interval_months == 72
    wall = Facility("t", "urn:f:wall", facility_type="retainingWall", facility_class=2, legal_grade="D",
                    last_inspections={"periodic": date(2025, 10, 1), "precise": date(2025, 1, 10)})
    items = {i.kind: i for i in schedule(wall, date(2026, 3, 1), cfg)}
    assert set(items) == {"periodic", "precise"}  # class 2: no precise diagnosis [U]
    assert (items["periodic"].due, items["periodic"].status, items["periodic"].days_left) == (
        date(2026, 2, 1), "overdue", -28)  # D: 3 times a year
    assert (items["precise"].interval_months, items["precise"].status) == (12, "overdue")  # other facility, D: yearly
    late = overdue([school, wall], date(2026, 3, 1), cfg)
    assert [(i.facility, i.kind) for i in late] == [("urn:f:wall", "precise"), ("urn:f:wall", "periodic")]
    third = Facility("t", "urn:f:c3", facility_type="building", facility_class=3, legal_grade=None)
    [only] = schedule(third, date(2026, 3, 1), cfg)
    assert (only.kind, only.interval_months, only.grade_used) == ("periodic", 4, "E")
    assert "no legal grade" in only.note


# -- multipart, configuration, rules --------------------------------------------------------------------------------
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


def test_multipart_parts_and_image_types() -> None:
    body = (b"--XyZ\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\ncrack at joint 3\r\n"
            b"--XyZ\r\nContent-Disposition: form-data; name=\"photo\"; filename=\"wall.png\"\r\n"
            b"Content-Type: image/png\r\n\r\n" + PNG + b"\r\n--XyZ--\r\n")
    note, photo = parse_multipart('multipart/form-data; boundary="XyZ"', body)
    assert (note.name, note.filename, note.data) == ("note", None, b"crack at joint 3")
    assert (photo.filename, photo.content_type, photo.data) == ("wall.png", "image/png", PNG)
    assert sniff(PNG) == "image/png" and sniff(b"\xff\xd8\xff\xe0") == "image/jpeg" and sniff(b"GIF89a") is None
    with pytest.raises(UnsupportedMediaType):
        parse_multipart("application/json", body)
    with pytest.raises(BadRequest, match="not terminated"):
        parse_multipart("multipart/form-data; boundary=XyZ", body[:-9])


def test_configuration_is_validated_and_names_the_wrong_key() -> None:
    with pytest.raises(ConfigError, match=r"tilt: 경계값은 엄격히 커져야 함.* / tilt: ladder edges must rise strictly"):
        load_config({"tilt": {"interest": 0.002, "caution": 0.001, "warning": 0.003, "serious": 0.006}})
    with pytest.raises(ConfigError, match=r"grade\.windw_days"):
        load_config({"grade": {"windw_days": 7}})
    with pytest.raises(ConfigError, match="unknown classes"):
        load_config({"class_by_type": {"pumpStation": "factory"}})
    cfg = load_config({"classes": {"residential": {}, "industrial": {"vibration_factor": 4.0}, "bridge-deck": {
        "crack": {"interest": 0.3, "caution": 0.5, "warning": 1.0, "serious": 2.0}}}})
    assert cfg.classes["bridge-deck"].crack is not None


def test_default_rules_cite_their_sources_and_classes_get_variants() -> None:
    cfg = FacilitySafetyConfig()
    rules = {r.id: r for r in d.default_rules(cfg)}
    assert set(rules) == {"shm-tilt", "shm-crack", "shm-vibration", "shm-crack-rate", "shm-battery-low",
                          "shm-sensor-stuck", "shm-sensor-silent", "shm-reading-suspect",
                          "shm-sensor-offline"}  # the last two: QA5 F3, F12
    tilt = rules["shm-tilt"]
    assert [e.at for e in tilt.condition.edges] == [1 / 750, 1 / 500, 1 / 300, 1 / 150]  # type: ignore[union-attr]
    assert tilt.persistence is not None and (tilt.persistence.samples, tilt.persistence.duration_seconds) == (3, 900.0)
    assert "SHM-R1" in tilt.source and "Bjerrum" in tilt.source and tilt.confidence == "D"
    assert rules["shm-battery-low"].kind == "fault" and rules["shm-sensor-silent"].enabled is False
    industrial = d.class_variant(cfg, "vibration", "industrial")
    assert industrial is not None and industrial.rule_id == "shm-vibration.class-industrial"
    assert [at for _, at in industrial.ladder.edges()] == [4.0, 8.0, 12.0, 20.0]
    assert d.class_variant(cfg, "tilt", "industrial") is None  # SHM-R1 does not depend on the class
    groups, chains = d.contact_documents(cfg, ["shm-tilt", "shm-battery-low"])
    assert {c["id"] for c in chains} == {"shm-tilt.caution", "shm-tilt.warning", "shm-tilt.serious",
                                         "shm-battery-low.fault"}
    serious = next(c for c in chains if c["id"] == "shm-tilt.serious")
    assert [s["group"] for s in serious["steps"]] == ["shm-facility-officer", "shm-building-owner",
                                                      "shm-maintenance-vendor", "shm-advisory-engineer",
                                                      "shm-situation-room", "shm-residents"]
    assert len(groups) == 6
