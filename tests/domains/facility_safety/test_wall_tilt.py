"""Acceptance: the tilting retaining wall (simulator scenario `wall-tilt`).

The wall's sensors report through ingest every 10 minutes; from the scenario's start its tilt
grows 4 mrad/h and its cracks open 0.3 mm/h. The alarm climbs interest -> caution -> warning ->
serious, each level raised 15 minutes (SHM-R4) after the first reading at or above its edge
(SHM-R1); the data grade falls to D or E with an explanation naming the sensors and numbers; the
tasks of SHM-R5 and §2.5 appear; a warning or worse becomes an operation-centre event; the legal
grade stays what the last official inspection said.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from tests.domains.facility_safety.support import TENANT, Site, domain_settings, posix
from ucity.core.clock import parse_iso
from ucity.domains.facility_safety import rules as defaults
from ucity.sim import scenarios
from ucity.sim.city import CityConfig, build_city
from ucity.sim.devices import SimDevice, shm_device
from ucity.sim.model import City, StructuralSensor

START = posix(2026, 11, 18, 10)  # the scenario starts at 10:00 KST
LEVELS = ("interest", "caution", "warning", "serious")


@pytest.fixture(scope="module")
def city() -> City:
    return build_city(CityConfig(seed=7, reference_date=date(2026, 11, 1)))


def wall_devices(city: City) -> tuple[str, list[StructuralSensor], dict[str, SimDevice], scenarios.Binding]:
    devices = {s.id: shm_device(s) for s in city.sensors}
    [binding] = scenarios.apply(city, devices, scenarios.select(["wall-tilt@0"]), START)
    wall_id = next(s.facility_id for s in city.sensors if s.id in binding.devices)
    return wall_id, [s for s in city.sensors if s.facility_id == wall_id], devices, binding


def first_at_or_above(device: SimDevice, edge: float, t0: float, t1: float) -> float:
    """The first report whose tilt change (resultant of both axes, raw: no thermal model yet) reaches `edge`."""
    for t in device.schedule(t0, t1):
        reading = device.read(t)
        assert reading is not None
        if math.hypot(reading["tx"], reading["ty"]) >= edge:
            return t
    raise AssertionError(f"never reached {edge}")


def seconds(iso: str) -> float:
    return parse_iso(iso).timestamp()


async def test_the_tilting_wall_climbs_the_ladder_falls_to_d_or_e_and_calls_for_inspection(
        tmp_path: Path, city: City) -> None:
    wall_id, sensors, devices, binding = wall_devices(city)
    wall = city.facility(wall_id)
    assert wall.facility_class == "retainingWall" and wall.grade == "C"
    facility = f"urn:ngsi-ld:Building:guro-{wall_id}"
    tilt = next(s for s in sensors if s.kind == "tilt" and s.id in binding.devices)
    tilt_entity = devices[tilt.id].entity_id
    async with Site.running(domain_settings(tmp_path), datetime.fromtimestamp(START - 7200, UTC)) as site:
        assert await site.facility(wall) == facility
        await site.provision([devices[s.id] for s in sensors])
        await site.run(START - 7200, START + 150 * 60)  # two quiet hours, then 2.5 hours of creep

        # -- SHM-R1 + SHM-R4: each level 15 minutes after the first reading at or above its edge ---------
        [alarm] = await site.alarms(entity=tilt_entity, rule="shm-tilt")
        assert (alarm["kind"], alarm["level"]) == ("safety", "serious")
        steps = [(h["action"], h["level"], seconds(h["at"])) for h in await site.history(alarm["id"])
                 if h["action"] in ("raised", "escalated")]
        assert [(a, lv) for a, lv, _ in steps] == [("raised", "interest"), ("escalated", "caution"),
                                                  ("escalated", "warning"), ("escalated", "serious")]
        for (_, level, at), edge in zip(steps, (defaults.TILT_LADDER[lv] for lv in LEVELS), strict=True):
            crossed = first_at_or_above(devices[tilt.id], edge, START - 7200, START + 150 * 60)
            assert at == crossed + defaults.PERSISTENCE_DURATION_S, level
        assert steps[0][2] > START + 20 * 60  # 1/750 is crossed after 20 minutes of creep, never before
        # every alarm of the wall's sensors is a safety alarm; the vibration sensor stays quiet
        mine = [a for a in await site.alarms(derived="false") if a["parent_id"] == facility]
        assert {a["rule_id"] for a in mine} == {"shm-tilt", "shm-crack"}
        assert all(a["kind"] == "safety" for a in mine)
        [parent] = await site.alarms(entity=facility)
        assert (parent["rule_id"], parent["level"]) == ("derived:safety", "serious")

        # -- SHM-R5: a field check at caution, an evacuation decision at serious ------------------------
        tasks = {t.kind: t for t in site.fs.tasks.list(TENANT, facility=facility)}
        assert tasks["field-check"].reason["level"] == "caution" and tasks["field-check"].status == "open"
        assert tasks["evacuation-decision"].reason["level"] == "serious"

        # -- §2.5: the data grade falls to D or E, explained, and an emergency inspection is recommended ---
        resp = await site.api("recompute_grade", "POST", facilityId=facility)
        grade = resp.body
        assert grade["grade"] in ("D", "E") and grade["score"] >= 3.5
        rows = {row["sensor"]: row for row in grade["sensors"]}
        row = rows[tilt_entity]
        assert row["member"] == tilt.member and row["score"] == 5
        level = row["channels"][0]["level"]
        assert level["band"] == "e" and level["value"] >= 1 / 150
        # one excursion climbing interest -> caution -> warning -> serious is one event at its peak (QA5 F11)
        assert row["events"]["count"] == 1 and row["events"]["byLevel"] == {"serious": 1}
        assert row["events"]["matchedSteps"] == 3  # caution, warning, serious (interest is below the event level)
        for sensor in sensors:  # the explanation names every sensor and its number
            assert devices[sensor.id].entity_id in grade["summary"]["en"]
            assert devices[sensor.id].entity_id in grade["summary"]["ko"]
        assert f"{level['value'] * 1000:.2f} mrad" in grade["summary"]["en"]  # QA14 F9: the dashboard's unit
        assert "Legal grade C (not changed by the data grade)" in grade["summary"]["en"]
        assert grade["emergency"]["recommended"] is True
        [emergency] = site.fs.tasks.list(TENANT, facility=facility, kind="emergency-inspection")
        assert emergency.reason["grade"] == grade["grade"] and emergency.status == "open"

        # the grade is history of the Building; the legal grade is untouched
        assert await site.value(facility, "dataSafetyGrade") == grade["grade"]
        assert await site.value(facility, "legalSafetyGrade") == "C"
        history = (await site.api("grade_history", facilityId=facility)).body["grades"]
        assert history[-1]["dataSafetyGrade"] == grade["grade"]
        assert history[-1]["emergencyInspectionRecommended"] is True

        # -- PLAT-R9: warning and serious became operation-centre events (ucity/ops) ---------------------
        ops = site.ucity.platform.services.get("ops")
        assert ops is not None
        events = {a["rule_id"]: await ops.events.by_source(TENANT, "ucity-alarms", a["id"]) for a in mine}
        assert events["shm-tilt"] is not None and events["shm-tilt"].level == "serious"
        assert events["shm-crack"] is not None and events["shm-crack"].level == "warning"


async def test_a_knock_is_a_spike_event_not_an_alarm(tmp_path: Path, city: City) -> None:
    """SHM-R4: one reading far up the PPV ladder, then normal readings: logged, never an alarm."""
    sensor = next(s for s in city.sensors if s.kind == "vibration")
    device = shm_device(sensor)
    knock = START + 3600
    async with Site.running(domain_settings(tmp_path), datetime.fromtimestamp(START, UTC)) as site:
        await site.facility(city.facility(sensor.facility_id))
        await site.provision([device])
        for t in device.schedule(START, START + 3 * 3600):
            await site.at(t)
            reading = device.read(t)
            assert reading is not None
            if knock <= t < knock + 600:
                reading["ppv"] = 4.2  # warning on the residential ladder, for one sample
            await site.send(device, t, reading)
        assert [a for a in await site.alarms() if a["kind"] == "safety"] == []
        events = await site.fs.grader.sensor_evidence(site.fs.registry.sensor(TENANT, device.entity_id),  # type: ignore[arg-type]
                                                      site.clock.now() - timedelta(days=1), site.clock.now())
        assert events[0].spikes == 1 and events[0].events == 0
        logged = (await site.api("get_sensor", sensorId=device.entity_id)).body
        assert logged["ladder"]["rule"] == "shm-vibration" and logged["ladder"]["edges"]["warning"] == 3.0
