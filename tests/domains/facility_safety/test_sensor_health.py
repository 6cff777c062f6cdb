"""Acceptance: a silent or stuck sensor raises a `fault`, never a safety level (SHM-R6); so does a low battery."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.domains.facility_safety.support import TENANT, Site, domain_settings, posix, with_read
from ucity.sim import scenarios
from ucity.sim.city import CityConfig, build_city
from ucity.sim.devices import shm_device
from ucity.sim.model import City

START = posix(2026, 11, 18, 10)
HOUR = 3600.0


@pytest.fixture(scope="module")
def city() -> City:
    return build_city(CityConfig(seed=7, reference_date=date(2026, 11, 1)))


def safety(alarms: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [a for a in alarms if a["kind"] == "safety" or a["level"] is not None]


async def test_a_silent_sensor_is_a_fault(tmp_path: Path, city: City) -> None:
    devices = {s.id: shm_device(s) for s in city.sensors}
    [binding] = scenarios.apply(city, devices, scenarios.select(["sensor-silent@0"]), START)
    [(sensor_id, device)] = binding.devices.items()
    sensor = next(s for s in city.sensors if s.id == sensor_id)
    async with Site.running(domain_settings(tmp_path), datetime.fromtimestamp(START - HOUR, UTC)) as site:
        await site.facility(city.facility(sensor.facility_id))
        await site.provision([device])
        await site.run(START - HOUR, START + 2 * HOUR)
        faults = {a["rule_id"]: a for a in await site.alarms(entity=device.entity_id)}
        # one fault: the domain's, with its maintenance chain; the kernel's device-offline is not raised for a
        # structural sensor as well (QA5 F13a)
        assert set(faults) == {"shm-sensor-offline"}
        fault = faults["shm-sensor-offline"]
        assert (fault["rule_id"], fault["kind"], fault["level"]) == ("shm-sensor-offline", "fault", None)
        assert fault["status"] == "active-unacknowledged"
        # silent since the start: offline after 3 intervals of 10 minutes (SHM-R6, ingest's device health)
        last = max(t for t in device.schedule(START - HOUR, START + 2 * HOUR))
        assert datetime.fromisoformat(fault["raised_at"].replace("Z", "+00:00")).timestamp() == last + 3 * 600
        assert safety(await site.alarms()) == []
        for rule in ("shm-tilt", "shm-crack", "shm-vibration"):
            state = site.ucity.rules.state(TENANT, rule, device.entity_id)
            assert state is None or state.level is None


async def test_a_stuck_sensor_is_a_fault_and_is_trusted_again_when_it_moves(tmp_path: Path, city: City) -> None:
    sensor = next(s for s in city.sensors if s.kind == "tilt")
    frozen = {"tx": 0.0004, "ty": 0.0001, "t": 8.5, "h": 61.0}

    def stuck(t: float, reading: dict[str, Any]) -> dict[str, Any]:
        return {**reading, **frozen} if t < START + 30 * HOUR else reading

    device = with_read(shm_device(sensor), stuck)
    async with Site.running(domain_settings(tmp_path), datetime.fromtimestamp(START, UTC)) as site:
        await site.facility(city.facility(sensor.facility_id))
        await site.provision([device])
        await site.run(START, START + 20 * HOUR)
        assert await site.alarms() == []  # 20 hours of one value: not yet 24
        await site.run(START + 20 * HOUR, START + 26 * HOUR)
        [fault] = await site.alarms(entity=device.entity_id)
        assert (fault["rule_id"], fault["kind"], fault["level"]) == ("shm-sensor-stuck", "fault", None)
        assert await site.value(device.entity_id, "sensorStuck") is True
        doc = await site.entity(device.entity_id)
        [flag] = doc["attrs"]["https://uri.etsi.org/ngsi-ld/default-context/sensorStuck"]
        assert flag["https://uri.etsi.org/ngsi-ld/default-context/channels"]["value"] == ["temperature", "tiltX",
                                                                                         "tiltY"]
        skipped = site.fs.stats["skipped"]
        await site.run(START + 26 * HOUR, START + 29 * HOUR)
        assert site.fs.stats["skipped"] > skipped  # a stuck sensor's readings are not assessed
        await site.run(START + 29 * HOUR, START + 31 * HOUR)  # it moves again
        assert await site.value(device.entity_id, "sensorStuck") is False
        [cleared] = await site.alarms(entity=device.entity_id)
        assert cleared["status"] == "cleared-unacknowledged"
        assert safety(await site.alarms()) == []


async def test_a_low_battery_is_a_fault(tmp_path: Path, city: City) -> None:
    sensor = next(s for s in city.sensors if s.kind == "crack")

    def draining(t: float, reading: dict[str, Any]) -> dict[str, Any]:
        return {**reading, "bat": 0.15} if t >= START + HOUR else reading

    device = with_read(shm_device(sensor), draining)
    low = [t for t in device.schedule(START, START + 3 * HOUR) if t >= START + HOUR]
    facility = f"urn:ngsi-ld:Building:guro-{sensor.facility_id}"
    async with Site.running(domain_settings(tmp_path), datetime.fromtimestamp(START, UTC)) as site:
        await site.facility(city.facility(sensor.facility_id))
        await site.provision([device])
        await site.run(START, low[1] + 1)
        assert await site.alarms() == []  # two low samples: SHM-R6's battery fault needs three
        await site.run(low[1] + 1, low[2] + 1)
        [fault] = await site.alarms(entity=device.entity_id)
        assert (fault["rule_id"], fault["kind"], fault["level"]) == ("shm-battery-low", "fault", None)
        assert fault["evidence"]["value"] == 0.15 and fault["parent_id"] == facility
        [parent] = await site.alarms(entity=facility)
        assert (parent["rule_id"], parent["kind"], parent["level"]) == ("derived:fault", "fault", None)
        assert safety(await site.alarms()) == []
