"""QA5 findings on the data safety grade, end to end (devices through ingest, a fake clock, SQLite).

F1: completeness uses the device's own reporting interval: an hourly crack meter with 35 days of history
    gets its trend score and its SHM-R2 crack rate (`crackOpeningRate`, `shm-crack-rate`).
F4: 4 of 5 main tilt sensors silent -> no grade A: `insufficient-data`, coverage 1/5 on the entity.
F11: one excursion caution -> warning -> serious -> warning -> caution is one event at its peak.
F7: the thresholds API refuses a band at or above the first edge (400, Korean and English) and gives an
    override of the edges alone the domain band.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.domains.facility_safety.support import Site, domain_settings, posix, with_read
from ucity.core.clock import FakeClock
from ucity.server import create_app
from ucity.sim.city import CityConfig, build_city
from ucity.sim.devices import SimDevice, periodic, shm_device
from ucity.sim.model import City, StructuralSensor

LIVE = posix(2026, 1, 20)  # midnight KST
DAY = 86_400.0
HOUR = 3600.0
CREEP_MM_PER_DAY = 0.01  # 0.3 mm / 30 days after compensation: SHM-R2's rate edge is 0.05 mm / 30 days

# two hours of data: the completeness minimum (QA14 F3) is off where coverage is what is tested
THIN = {"min_completeness": 0.0}


@pytest.fixture(scope="module")
def city() -> City:
    return build_city(CityConfig(seed=7, reference_date=date(2026, 1, 1)))


def of_kind(city: City, kind: str) -> StructuralSensor:
    return next(s for s in city.sensors if s.kind == kind)


def hourly(device: SimDevice) -> SimDevice:
    """The device reporting once an hour, provisioned with `expected_interval_s` 3600 (a LoRa SHM sensor)."""
    return dataclasses.replace(device, profile=dataclasses.replace(device.profile, interval_s=3600),
                               schedule=periodic(3600, 0.0))


# -- F1 ------------------------------------------------------------------------------------------------------------
async def test_an_hourly_crack_meter_is_complete_and_its_creep_raises_the_rate_alarm(tmp_path: Path,
                                                                                     city: City) -> None:
    sensor = dataclasses.replace(of_kind(city, "crack"), thermal_coef=-0.006, offset=0.0, ref_temp_c=22.0)
    start = LIVE - 35 * DAY

    def creeping(t: float, reading: dict[str, Any]) -> dict[str, Any]:
        return {**reading, "cw": round(reading["cw"] + CREEP_MM_PER_DAY * (t - start) / DAY, 4)}

    device = hourly(with_read(shm_device(sensor), creeping))
    facility_id = f"urn:ngsi-ld:Building:guro-{sensor.facility_id}"
    async with Site.running(domain_settings(tmp_path), datetime.fromtimestamp(LIVE, UTC)) as site:
        await site.facility(city.facility(sensor.facility_id))
        await site.provision([device])
        assert await site.backfill(device, start, LIVE, {"cw": "crackOpening", "t": "temperature"}) == 35 * 24 * 2
        await site.run(LIVE, LIVE + 3 * HOUR)
        result = (await site.api("recompute_grade", "POST", facilityId=facility_id)).body
        [row] = result["sensors"]
        assert row["samplesExpected"] == 720 and row["completeness"] >= 0.99  # was 720 / 4320 = 0.17: incomplete
        trend = row["channels"][0]["trend"]
        assert trend["score"] is not None, trend
        assert trend["slopePerDay"] == pytest.approx(CREEP_MM_PER_DAY, rel=0.3)
        rate = await site.value(device.entity_id, "crackOpeningRate")
        assert rate is not None and rate >= 0.05
        await site.settle()
        alarms = {a["rule_id"]: a["level"] for a in await site.alarms(entity=device.entity_id, status="active")}
        assert alarms.get("shm-crack-rate") == "caution"
        assert row["expectedIntervalS"] == 3600 and row["intervalSource"] == "device"


# -- F4 ------------------------------------------------------------------------------------------------------------
async def test_one_reporting_main_sensor_of_five_gives_no_grade_but_insufficient_data(tmp_path: Path,
                                                                                      city: City) -> None:
    base = of_kind(city, "tilt")
    sensors = [dataclasses.replace(base, id=f"{base.id}-m{n}", key=base.key * 10 + n, member="main")
               for n in range(5)]
    devices = [shm_device(s) for s in sensors]
    facility_id = f"urn:ngsi-ld:Building:guro-{base.facility_id}"
    async with Site.running(domain_settings(tmp_path, grade=THIN), datetime.fromtimestamp(LIVE, UTC)) as site:
        await site.facility(city.facility(base.facility_id))
        await site.provision(devices)
        await site.run(LIVE, LIVE + HOUR, devices[:1])  # only one reports
        result = (await site.api("recompute_grade", "POST", facilityId=facility_id)).body
        assert result["coverage"]["scored"] == 1 and result["coverage"]["attached"] == 5
        assert result["status"] == "insufficient-data" and result["grade"] is None
        assert result["provisionalGrade"] is not None
        assert "1 of 5 main members scored" in result["summary"]["en"]
        assert "주부재 5개 중 1개" in result["summary"]["ko"]
        assert await site.value(facility_id, "dataSafetyGrade") is None
        assert await site.value(facility_id, "dataSafetyGradeStatus") == "insufficient-data"
        assert await site.value(facility_id, "dataSafetyCoverage") == 0.2
        wire = (await site.api("get_facility", facilityId=facility_id)).body
        assert wire["dataSafetyGrade"] is None and wire["dataSafetyGradeStatus"] == "insufficient-data"
        assert wire["dataSafetyCoverage"] == 0.2
        # where the office looks: the list's filter, the summary's count, the CSV's columns
        listed = (await site.api("list_facilities", params={"dataGradeStatus": "insufficient-data"})).body
        assert [f["id"] for f in listed["facilities"]] == [facility_id]
        assert (await site.api("list_facilities", params={"dataGradeStatus": "ok"})).body["total"] == 0
        assert (await site.api("summary")).body["byDataGradeStatus"] == {"insufficient-data": 1}
        export = await site.api("export_facilities")
        text = export.body.decode("utf-8-sig") if isinstance(export.body, bytes) else str(export.body)
        header, row = list(csv.reader(io.StringIO(text)))[:2]
        assert row[header.index("dataSafetyGradeStatus")] == "insufficient-data"
        assert row[header.index("dataSafetyCoverage")] == "0.2000"

        await site.run(LIVE + HOUR, LIVE + 2 * HOUR)  # all five report: graded
        result = (await site.api("recompute_grade", "POST", facilityId=facility_id)).body
        assert result["status"] == "ok" and result["grade"] is not None and result["coverage"]["share"] == 1.0
        assert await site.value(facility_id, "dataSafetyGrade") == result["grade"]
        assert await site.value(facility_id, "dataSafetyGradeStatus") == "ok"


# -- F11 -----------------------------------------------------------------------------------------------------------
EXCURSION = ((40, 0.0025), (80, 0.004), (120, 0.007), (160, 0.004), (200, 0.0025))  # (until minute, tilt rad)


async def test_one_excursion_through_the_ladder_is_one_event_at_its_peak(tmp_path: Path, city: City) -> None:
    sensor = of_kind(city, "tilt")

    def excursion(t: float, reading: dict[str, Any]) -> dict[str, Any]:
        minute = (t - LIVE) / 60
        value = next((v for until, v in EXCURSION if minute <= until), 0.0)
        return {**reading, "tx": value, "ty": 0.0}

    device = with_read(shm_device(sensor), excursion)
    facility_id = f"urn:ngsi-ld:Building:guro-{sensor.facility_id}"
    async with Site.running(domain_settings(tmp_path), datetime.fromtimestamp(LIVE, UTC)) as site:
        await site.facility(city.facility(sensor.facility_id))
        await site.provision([device])
        await site.run(LIVE, LIVE + 5 * HOUR)
        result = (await site.api("recompute_grade", "POST", facilityId=facility_id)).body
        [row] = result["sensors"]
        events = row["events"]
        assert events["matchedSteps"] == 5  # caution, warning, serious, warning, caution: all confirmed
        assert events["count"] == 1 and events["byLevel"] == {"serious": 1}
        assert events["score"] == 3  # 1-2 events -> 3 (five steps counted as five events gave 5)
        assert "1 caution+ event(s) (3), 5 level step(s)" in result["summary"]["en"]


# -- F7 ------------------------------------------------------------------------------------------------------------
API = "/api/v1/facility-safety"
FACILITY = "urn:ngsi-ld:Building:guro-qa5-wall"
ACTOR = {"X-Ucity-Actor": "officer-kim"}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = domain_settings(tmp_path)
    clock = FakeClock(datetime(2026, 3, 2, 1, 0, tzinfo=UTC))
    with TestClient(create_app(settings, clock=clock), base_url="http://127.0.0.1:8000") as c:
        yield c


def test_the_thresholds_api_refuses_a_latching_band_and_defaults_the_band(client: TestClient) -> None:
    body = {"id": FACILITY, "name": "QA5 옹벽", "facilityType": "retainingWall", "facilityClass": 3}
    assert client.post(f"{API}/facilities", json=body, headers=ACTOR).status_code == 201
    latching = {"crack": {"interest": 0.1, "caution": 0.3, "warning": 0.5, "serious": 1.0, "hysteresis": 0.5}}
    refused = client.put(f"{API}/facilities/{FACILITY}/thresholds", json=latching, headers=ACTOR)
    assert refused.status_code == 400 and refused.headers["content-type"].startswith("application/")
    problem = refused.json()
    assert problem["status"] == 400
    assert "해제되지 않음" in problem["detail"] and "else the alarm could never clear" in problem["detail"]
    tight = {"crack": {"interest": 0.01, "caution": 0.3, "warning": 0.5, "serious": 1.0}}  # inherited 0.02 >= 0.01
    inherited = client.put(f"{API}/facilities/{FACILITY}/thresholds", json=tight, headers=ACTOR)
    assert inherited.status_code == 400 and "inherited clearing band" in inherited.json()["detail"]

    edges = {"crack": {"interest": 0.2, "caution": 0.4, "warning": 0.6, "serious": 1.2}}
    put = client.put(f"{API}/facilities/{FACILITY}/thresholds", json=edges, headers=ACTOR)
    assert put.status_code == 200, put.text
    assert put.json()["override"]["crack"]["hysteresis"] == 0.02  # the domain band, not 0.0
    stored = client.get(f"{API}/facilities/{FACILITY}/thresholds").json()["override"]
    assert stored["crack"]["hysteresis"] == 0.02
    rules = {r["id"]: r for r in client.get(f"{API}/rules").json()["rules"]}
    assert rules["shm-crack.facility-guro-qa5-wall"]["condition"]["hysteresis"] == 0.02
