"""QA14, the facility-safety engineer's findings on thresholds, grades and sensor health:

* F1: a ladder edge at or above the channel's plausible limit can never fire (a reading that high is a suspect
  value): refused in the configuration, in class ladders and on `PUT /facilities/{id}/thresholds` (400, ko / en);
* F10: ladder validation errors are in Korean and English, pydantic's own messages too;
* F3: a grade from too little data (completeness below `grade.min_completeness`) is `insufficient-data`: a grade
  as good as the legal grade or better is withheld as provisional; a worse one stands;
* F6: the grade history and grades.csv keep a withheld grade's status, reasons, provisional letter and coverage;
* F2: a battery reported in percent (`P1`) is converted before SHM-R6's battery rule; a value above 1 without a
  unit is a suspect reading;
* F7: stuck = zero variance over `stuck_hours` with `stuck_min_samples` samples, whatever their spacing.
"""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.domains.facility_safety.support import OFFICER, Site, domain_settings
from tests.domains.facility_safety.test_qa5c_plausibility import FACILITY, NOW, by_rule, change, device, one, prepare, send
from ucity.core.errors import BadRequest
from ucity.domains.facility_safety.assess import battery
from ucity.domains.facility_safety.config import AttributeNames, ConfigError, load_config
from ucity.domains.facility_safety.grade import ChannelEvidence, GradePolicy, SensorEvidence, grade_facility

NAMES = AttributeNames()
MRAD_LADDER = {"interest": 1.333, "caution": 2.0, "warning": 3.333, "serious": 6.667}  # mrad typed as rad


# -- F1 / F10: ladders --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("raw", [
    {"tilt": MRAD_LADDER},
    {"crack": {"interest": 100, "caution": 200, "warning": 300, "serious": 400}},  # limit 50 mm
    {"classes": {"residential": {}, "quarry": {"vibration_factor": 100.0}}},  # 500 mm/s > 250
    {"classes": {"residential": {}, "heavy": {"tilt": {"interest": 0.05, "caution": 0.07, "warning": 0.09,
                                                       "serious": 0.1}}}},  # at the limit: never reached either
])
def test_a_configured_ladder_that_can_never_fire_is_refused(raw: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(raw)
    text = str(caught.value)
    assert "타당 범위 상한" in text and "plausible limit" in text, text


def test_a_ladder_below_the_limit_or_without_plausibility_checks_is_accepted() -> None:
    assert load_config({"tilt": {"interest": 0.01, "caution": 0.02, "warning": 0.03, "serious": 0.099}})
    off = load_config({"plausibility": {"enabled": False}, "tilt": MRAD_LADDER})  # every reading assessed as sent
    assert off.tilt.serious == pytest.approx(6.667)
    wider = load_config({"plausibility": {"crack": [-0.25, 500.0]},
                         "crack": {"interest": 100, "caution": 200, "warning": 300, "serious": 400}})
    assert wider.crack.serious == 400


def test_configuration_errors_are_in_both_languages() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config({"crack": {"interest": 0, "caution": 0.1, "warning": 0.5, "serious": 1.0}})
    assert "crack.interest: 0보다 커야 함" in str(caught.value)
    assert "crack.interest: Input should be greater than 0" in str(caught.value)


async def test_facility_thresholds_that_can_never_fire_are_a_bilingual_400(tmp_path: Path) -> None:
    async with Site.running(domain_settings(tmp_path), NOW) as site:
        await prepare(site)
        for body in ({"tilt": MRAD_LADDER}, {"crack": {"interest": 100, "caution": 200, "warning": 300, "serious": 400}}):
            with pytest.raises(BadRequest) as caught:
                await site.api("put_thresholds", "PUT", body, headers=OFFICER, facilityId=FACILITY)
            text = str(caught.value)
            assert "타당 범위 상한" in text and "could never fire" in text, text
        assert FACILITY not in {f for _, f in site.fs.overrides}  # nothing stored
        # F10: the rising rule and pydantic's own messages in both languages
        with pytest.raises(BadRequest) as caught:
            await site.api("put_thresholds", "PUT", {"tilt": {"interest": 0.003, "caution": 0.002, "warning": 0.004,
                                                              "serious": 0.006}}, headers=OFFICER, facilityId=FACILITY)
        assert "경계값은 엄격히 커져야 함" in str(caught.value) and "must rise strictly" in str(caught.value)
        assert "Value error" not in str(caught.value)
        with pytest.raises(BadRequest) as caught:
            await site.api("put_thresholds", "PUT", {"crack": {"interest": 0, "caution": 0.1, "warning": 0.5,
                                                               "serious": 1.0}}, headers=OFFICER, facilityId=FACILITY)
        assert "crack.interest: 0보다 커야 함" in str(caught.value), str(caught.value)
        assert "crack.interest: Input should be greater than 0" in str(caught.value)
        ok = await site.api("put_thresholds", "PUT", {"tilt": {"interest": 0.0015, "caution": 0.0025, "warning": 0.004,
                                                               "serious": 0.008}}, headers=OFFICER, facilityId=FACILITY)
        assert ok.status == 200, ok.body


# -- F3: completeness ---------------------------------------------------------------------------------------------
TILT_EDGES = (("interest", 1 / 750), ("caution", 1 / 500), ("warning", 1 / 300), ("serious", 1 / 150))
POLICY = GradePolicy(((0, 1), (1, 3), (3, 5)), {"main": 1.0, "auxiliary": 0.5}, 1.0, (1.5, 2.5, 3.5, 4.5), 365.0, 20,
                     0.8, 0.8)


def sensor(name: str, value: float, completeness: float) -> SensorEvidence:
    channel = ChannelEvidence("tilt", TILT_EDGES, (value,) * 3, "2026-12-07T01:00:00Z", True, "none")
    return SensorEvidence(name, "main", "tilt", (channel,), 0, completeness=completeness,
                          received=int(4320 * completeness), expected=4320)


def test_a_good_grade_from_too_little_data_is_withheld_as_provisional() -> None:
    thin = [sensor("s1", 0.0001, 0.0009), sensor("s2", 0.0001, 0.0009)]  # 40 minutes of data, level a
    result = grade_facility(thin, POLICY, None, ("D", "E"), 2)
    assert (result["status"], result["grade"], result["provisionalGrade"]) == ("insufficient-data", None, "A")
    assert result["gradeWithheld"] and result["insufficient"] == ["completeness"]
    assert result["completeness"]["share"] == pytest.approx(0.0009) and result["completeness"]["minimum"] == 0.8
    assert "Completeness: 0.1% of the expected samples" in result["summary"]["en"]
    assert "수집률" in result["summary"]["ko"]
    assert grade_facility(thin, POLICY, "B", ("D", "E"), 2)["provisionalGrade"] == "A"  # better than the legal B
    assert grade_facility(thin, POLICY, "A", ("D", "E"), 2)["grade"] is None  # as good as the legal A: not shown
    complete = [sensor("s1", 0.0001, 0.95), sensor("s2", 0.0001, 0.9)]
    assert grade_facility(complete, POLICY, None, ("D", "E"), 2)["status"] == "ok"
    no_minimum = GradePolicy(POLICY.event_scores, POLICY.member_weights, 1.0, POLICY.bounds, 365.0, 20, 0.8, 0.0)
    assert grade_facility(thin, no_minimum, None, ("D", "E"), 2)["grade"] == "A"


def test_a_worse_grade_from_too_little_data_stands_flagged() -> None:
    caution = [sensor("s1", 0.0025, 0.001), sensor("s2", 0.0025, 0.001)]  # level c: a new sensor's bad news
    worse = grade_facility(caution, POLICY, "A", ("D", "E"), 2)  # C vs legal A: 2 steps worse
    assert (worse["status"], worse["grade"], worse["gradeWithheld"]) == ("insufficient-data", "C", False)
    one_step = grade_facility(caution, POLICY, "B", ("D", "E"), 2)  # C vs B: worse than the record, no emergency
    assert one_step["grade"] == "C" and not one_step["emergency"]["recommended"]
    assert "worse than the legal grade B" in one_step["summary"]["en"]
    assert grade_facility(caution, POLICY, None, ("D", "E"), 2)["grade"] == "C"  # no good grade without a record
    assert grade_facility(caution, POLICY, "C", ("D", "E"), 2)["grade"] is None  # as the record: needs the data


# -- F3 + F6 on a real ucity ----------------------------------------------------------------------------------------
async def test_a_new_facility_is_not_graded_a_and_the_history_and_csv_say_why(tmp_path: Path) -> None:
    async with Site.running(domain_settings(tmp_path), NOW) as site:
        await prepare(site)  # legal grade C
        for dev in ("n-crack-1", "n-crack-2"):
            await device(site, dev, "crack")
        for k in range(4):  # 40 minutes of data
            for dev in ("n-crack-1", "n-crack-2"):
                await send(site, dev, {"cr": 0.01, "t": 10}, NOW + timedelta(minutes=10 * k + 1))
        resp = await site.api("recompute_grade", "POST", facilityId=FACILITY, headers=OFFICER)
        body = resp.body
        assert (body["status"], body["grade"], body["provisionalGrade"]) == ("insufficient-data", None, "A"), body
        assert await site.value(FACILITY, "dataSafetyGrade") is None
        history = (await site.api("grade_history", facilityId=FACILITY)).body["grades"]
        [row] = history
        assert row["dataSafetyGradeStatus"] == "insufficient-data" and row["provisionalGrade"] == "A"
        assert row["reasons"] == ["completeness"] and row["completeness"] < 0.01
        assert row["dataSafetyCoverage"] == {"share": 1.0, "scored": 2, "attached": 2, "basis": "main"}
        assert "dataSafetyGrade" not in row
        text = (await site.api("export_grades")).body.decode("utf-8-sig")
        [header, line] = list(csv.reader(io.StringIO(text)))
        cells = dict(zip(header, line, strict=True))
        assert cells["dataSafetyGradeStatus"] == "insufficient-data" and cells["provisionalGrade"] == "A"
        assert cells["insufficientBecause"] == "completeness" and cells["dataSafetyCoverage"] == "1.0000"
        assert cells["dataSafetyGrade"] == ""


# -- F2: battery units ----------------------------------------------------------------------------------------------
def test_a_battery_in_percent_is_converted_and_one_above_1_without_a_unit_is_suspect() -> None:
    reading = one(change(batteryLevel=(15.0, "P1")))
    assert reading.suspects == ()
    charge = battery(reading, NAMES)
    assert charge is not None and charge["value"] == pytest.approx(0.15) and charge["unitCode"] == "C62"
    assert battery(one(change(batteryLevel=0.15)), NAMES)["value"] == pytest.approx(0.15)  # type: ignore[index]
    raw = one(change(batteryLevel=15.0))
    [suspect] = raw.suspects
    assert (suspect.attribute, suspect.reason) == ("batteryLevel", "out-of-range")
    assert battery(raw, NAMES) is None


async def test_a_battery_reported_in_percent_raises_the_battery_fault(tmp_path: Path) -> None:
    percent = [{"object_id": "bat", "name": "batteryLevel", "type": "Number",
                "metadata": {"unitCode": {"type": "Text", "value": "P1"}}}]
    async with Site.running(domain_settings(tmp_path), NOW) as site:
        await prepare(site)
        entity = await device(site, "p-crack", "crack", percent)
        for k, level in enumerate((15, 12, 10, 9)):
            await send(site, "p-crack", {"cr": 0.01, "t": 10, "bat": level}, NOW + timedelta(minutes=10 * k + 1))
        faults = by_rule(await site.alarms(), entity)
        assert "shm-battery-low" in faults, faults
        assert faults["shm-battery-low"]["evidence"]["value"] == pytest.approx(0.10)  # the third low sample (SHM-R6)
        assert "shm-reading-suspect" not in faults
        assert await site.value(entity, "batteryLevelAssessed") == pytest.approx(0.09)
        health = (await site.api("get_sensor", sensorId=entity)).body["health"]
        assert (health["batteryLevel"], health["batteryUnitCode"]) == (9, "P1")
        assert health["batteryFraction"] == pytest.approx(0.09)


# -- F7: stuck whatever the spacing -------------------------------------------------------------------------------
async def test_a_frozen_sensor_reporting_every_two_hours_is_stuck(tmp_path: Path) -> None:
    async with Site.running(domain_settings(tmp_path), NOW) as site:
        await prepare(site)
        entity = await device(site, "f-tilt", "tilt")
        for k in range(12):  # 12 identical readings 2 h apart: 22 h, no reading before the last 24 h window yet
            await send(site, "f-tilt", {"tx": 0.0025, "ty": 0.0, "t": 10}, NOW + timedelta(hours=2 * k))
        await site.fs.check_stuck()
        assert await site.value(entity, "sensorStuck") is not True  # not yet 24 h of one value
        for k in range(12, 14):  # 14 readings over 26 h
            await send(site, "f-tilt", {"tx": 0.0025, "ty": 0.0, "t": 10}, NOW + timedelta(hours=2 * k))
        await site.at((NOW + timedelta(hours=26, minutes=30)).timestamp())
        await site.fs.check_stuck()
        assert await site.value(entity, "sensorStuck") is True
        assert "shm-sensor-stuck" in by_rule(await site.alarms(), entity)
