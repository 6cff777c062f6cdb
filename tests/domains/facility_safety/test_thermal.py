"""Acceptance: temperature cycling alone raises no alarm once compensation has its 30 days (SHM-R7).

Two sensors of one facility follow temperature strongly and nothing else: a crack meter opening
0.006 mm per °C of cooling and an inclinometer leaning 0.12 mrad per °C, both installed at 22 °C.
In a Seoul January their raw change sits above the first edges (crack ≥ 0.1 mm, tilt ≥ 1/500 rad)
all day. With 35 days of history the fitted a + b·T takes the cycle out and nothing is raised;
with 10 days the raw ladder applies and says so.
"""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from tests.domains.facility_safety.support import TENANT, Site, domain_settings, posix
from ucity.sim.city import CityConfig, build_city
from ucity.sim.devices import SimDevice, shm_device
from ucity.sim.model import City, StructuralSensor

LIVE = posix(2026, 1, 20)  # midnight KST, mid-winter
DAY = 86_400.0
CRACK_COEF, TILT_COEF = -0.006, 1.2e-4  # mm/°C, rad/°C
RAW = {"crack": {"cw": "crackOpening", "t": "temperature"},
       "tilt": {"tx": "tiltX", "ty": "tiltY", "t": "temperature"}}


@pytest.fixture(scope="module")
def city() -> City:
    return build_city(CityConfig(seed=7, reference_date=date(2026, 1, 1)))


def thermal_pair(city: City) -> tuple[StructuralSensor, StructuralSensor]:
    """A crack and a tilt sensor of one facility, made to follow temperature strongly."""
    facility = next(f for f in city.facilities
                    if {"crack", "tilt"} <= {s.kind for s in city.sensors if s.facility_id == f.id})
    crack = next(s for s in city.sensors if s.facility_id == facility.id and s.kind == "crack")
    tilt = next(s for s in city.sensors if s.facility_id == facility.id and s.kind == "tilt")
    return (dataclasses.replace(crack, thermal_coef=CRACK_COEF, offset=0.0, ref_temp_c=22.0),
            dataclasses.replace(tilt, thermal_coef=TILT_COEF, offset=0.0, ref_temp_c=22.0))


async def prepare(site: Site, city: City, days_of_history: float) -> tuple[SimDevice, SimDevice]:
    crack, tilt = thermal_pair(city)
    devices = shm_device(crack), shm_device(tilt)
    await site.facility(city.facility(crack.facility_id))
    await site.provision(list(devices))
    for device, kind in zip(devices, ("crack", "tilt"), strict=True):
        assert await site.backfill(device, LIVE - days_of_history * DAY, LIVE, RAW[kind]) > 0
    return devices


def raw_extremes(crack: SimDevice, tilt: SimDevice, t0: float, t1: float) -> tuple[float, float]:
    cracks = [r["cw"] for t in crack.schedule(t0, t1) if (r := crack.read(t))]
    tilts = [math.hypot(r["tx"], r["ty"]) for t in tilt.schedule(t0, t1) if (r := tilt.read(t))]
    return min(cracks), min(tilts)


async def test_thirty_days_of_compensation_silence_the_daily_cycle(tmp_path: Path, city: City) -> None:
    async with Site.running(domain_settings(tmp_path), datetime.fromtimestamp(LIVE, UTC)) as site:
        crack, tilt = await prepare(site, city, days_of_history=35)
        # the raw change is above the first edges the whole day: the raw ladder would alarm
        low_crack, low_tilt = raw_extremes(crack, tilt, LIVE, LIVE + DAY)
        assert low_crack >= 0.1 and low_tilt >= 1 / 500
        await site.run(LIVE, LIVE + DAY)

        assert [a for a in await site.alarms() if a["kind"] == "safety"] == []
        sensor = (await site.api("get_sensor", sensorId=crack.entity_id)).body
        model = sensor["thermalCompensation"]["crackOpening"]
        assert model["b"] == pytest.approx(CRACK_COEF, rel=0.02) and model["r2"] > 0.99
        assert model["hours"] >= 30 * 24
        tilt_models = (await site.api("get_sensor", sensorId=tilt.entity_id)).body["thermalCompensation"]
        assert tilt_models["tiltX"]["b"] == pytest.approx(TILT_COEF, rel=0.02)
        assert tilt_models["tiltY"]["b"] == pytest.approx(0.4 * TILT_COEF, rel=0.02)
        # what the ladders saw: residuals of the order of the sensor noise, marked as compensated
        doc = await site.entity(crack.entity_id)
        [assessed] = doc["attrs"]["https://uri.etsi.org/ngsi-ld/default-context/crackOpeningAssessed"]
        assert abs(assessed["value"]) < 0.02
        assert assessed["https://uri.etsi.org/ngsi-ld/default-context/compensation"]["value"] == "thermal"

        # the daily grade (02:00 KST) ran on the platform clock: flat compensated trend, no events -> A
        facility = f"urn:ngsi-ld:Building:guro-{thermal_pair(city)[0].facility_id}"
        assert await site.value(facility, "dataSafetyGrade") == "A"
        explanation = (await site.api("get_grade", facilityId=facility)).body
        assert explanation["computedAt"].startswith("2026-01-19T17:00")  # 02:00 KST
        crack_row = next(r for r in explanation["sensors"] if r["sensor"] == crack.entity_id)
        trend = crack_row["channels"][0]["trend"]
        assert trend["score"] == 1 and abs(trend["slopePerYear"]) < 0.05
        rate = await site.value(crack.entity_id, "crackOpeningRate")
        assert rate is not None and abs(rate) < 0.05  # SHM-R2's rate edge is 0.05 mm / 30 days


async def test_before_thirty_days_the_raw_ladder_applies_and_says_why(tmp_path: Path, city: City) -> None:
    async with Site.running(domain_settings(tmp_path), datetime.fromtimestamp(LIVE, UTC)) as site:
        crack, _ = await prepare(site, city, days_of_history=10)
        await site.run(LIVE, LIVE + 3 * 3600)
        alarms = {a["rule_id"]: a for a in await site.alarms(derived="false")}
        assert alarms["shm-crack"]["level"] == "interest"  # 0.1 mm <= raw crack < 0.3 mm
        assert alarms["shm-tilt"]["level"] in ("caution", "warning")  # raw tilt >= 1/500 all night
        status = (await site.api("get_sensor", sensorId=crack.entity_id)).body["thermalCompensationStatus"]
        assert status["crackOpening"].startswith("10.") and status["crackOpening"].endswith("days of history, 30 needed")
        doc = await site.entity(crack.entity_id)
        [assessed] = doc["attrs"]["https://uri.etsi.org/ngsi-ld/default-context/crackOpeningAssessed"]
        assert assessed["https://uri.etsi.org/ngsi-ld/default-context/compensation"]["value"] == "none"
        assert site.fs.registry.sensor(TENANT, crack.entity_id) is not None
