"""Rules configurable per building class and per facility (SHM-R3 classes, a facility's own thresholds).

A pump station marked industrial sees the PPV ladder x4; giving the facility its own ladder moves
its sensor onto that ladder's rule (the old rule clears), and removing it moves the sensor back.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from tests.domains.facility_safety.support import Site, domain_settings, posix, with_read
from ucity.sim.city import CityConfig, build_city
from ucity.sim.devices import shm_device

START = posix(2026, 11, 18, 10)
HOUR = 3600.0


async def active(site: Site, entity: str) -> dict[str, str]:
    return {a["rule_id"]: a["level"] for a in await site.alarms(entity=entity, status="active")}


async def test_class_and_facility_ladders_follow_the_sensor(tmp_path: Path) -> None:
    city = build_city(CityConfig(seed=7, reference_date=date(2026, 11, 1)))
    sensor = next(s for s in city.sensors if s.kind == "vibration")
    facility = city.facility(sensor.facility_id)
    facility_id = f"urn:ngsi-ld:Building:guro-{facility.id}"

    def pumping(t: float, reading: dict[str, Any]) -> dict[str, Any]:
        return {**reading, "ppv": 5.0, "f": 24.0}  # steady machinery vibration

    device = with_read(shm_device(sensor), pumping)
    async with Site.running(domain_settings(tmp_path), datetime.fromtimestamp(START, UTC)) as site:
        body = {"id": facility_id, "name": facility.name, "facilityType": "pumpStation", "facilityClass": 3,
                "structureClass": "industrial", "legalSafetyGrade": facility.grade}
        assert (await site.api("put_facility", "POST", body)).status == 201
        await site.provision([device])
        await site.run(START, START + HOUR)
        # 5 mm/s: serious on the residential ladder, interest on the industrial one (x4: 4 / 8 / 12 / 20)
        assert await active(site, device.entity_id) == {"shm-vibration.class-industrial": "interest"}
        sensor_wire = (await site.api("get_sensor", sensorId=device.entity_id)).body
        assert sensor_wire["ladder"]["rule"] == "shm-vibration.class-industrial"
        assert await site.value(device.entity_id, "vibrationPPVAssessed",
                                "urn:ngsi-ld:Dataset:facility-safety:class:industrial") == 5.0
        assert await site.value(device.entity_id, "vibrationPPVAssessed") is None  # no default-ladder instance

        own = {"vibration": {"interest": 1.0, "caution": 2.0, "warning": 3.0, "serious": 4.5}}
        put = await site.api("put_thresholds", "PUT", own, facilityId=facility_id)
        rule = "shm-vibration.facility-guro-" + facility.id
        assert put.body["rules"] == [rule]
        await site.run(START + HOUR, START + 2 * HOUR)
        assert await active(site, device.entity_id) == {rule: "serious"}  # the class rule cleared on the move
        cleared = await site.alarms(entity=device.entity_id, rule="shm-vibration.class-industrial")
        assert [a["status"] for a in cleared] == ["cleared-unacknowledged"]

        assert (await site.api("delete_thresholds", "DELETE", facilityId=facility_id)).status == 204
        await site.run(START + 2 * HOUR, START + 3 * HOUR)
        assert await active(site, device.entity_id) == {"shm-vibration.class-industrial": "interest"}
        doc = await site.entity(device.entity_id)
        datasets = [i.get("datasetId") for i in
                    doc["attrs"]["https://uri.etsi.org/ngsi-ld/default-context/vibrationPPVAssessed"]]
        assert datasets == ["urn:ngsi-ld:Dataset:facility-safety:class:industrial"]
