"""QA finding 9: a facility's own thresholds take a sensor off the default ladder, and the default rule's alarm
is handed over (cleared), even when the first readings after the override are older than the default ladder's
last one (a device sending its buffer), and even when an earlier handover was lost (the alarm left behind by
the bug, across a restart).

The rules engine ignores an observation older than the newest one a rule evaluated for the entity; the zero that
ends the old ladder was written at the buffered reading's time, so the default rule never saw it, and the
instance that could have cleared it was removed in the same write.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.domains.facility_safety.support import TENANT, Site, domain_settings, iri, posix
from ucity.core.bus import Context
from ucity.core.clock import from_micros, to_iso
from ucity.domains.facility_safety.assess import Reading, write_op
from ucity.domains.facility_safety.rules import DATASET_PREFIX as DATASET
from ucity.domains.facility_safety.service import DROP
from ucity.sim.city import CityConfig, build_city
from ucity.sim.devices import SimDevice, shm_device
from ucity.store.base import Mutation, TemporalQuery

START = posix(2026, 11, 18, 10)
MINUTE = 60.0
OWN = {"tilt": {"interest": 0.0005, "caution": 0.001, "warning": 0.002, "serious": 0.004, "hysteresis": 0.0001}}


def tilt_sensor() -> tuple[SimDevice, str]:
    city = build_city(CityConfig(seed=7, reference_date=date(2026, 11, 1)))
    sensor = next(s for s in city.sensors if s.kind == "tilt")
    return shm_device(sensor), sensor.facility_id


async def active(site: Site, entity: str) -> dict[str, str]:
    return {a["rule_id"]: a["level"] for a in await site.alarms(entity=entity, status="active")}


async def send(site: Site, device: SimDevice, at: float, tilt: float) -> None:
    """One reading observed at `at`, sent at the clock's current time (later: a buffered one)."""
    reading: dict[str, Any] = {"tx": tilt, "ty": 0.0, "t": 10.0, "h": 60.0, "bat": 0.9}
    await site.send(device, at, reading)


async def default_caution(site: Site, device: SimDevice, facility_id: str) -> None:
    """The facility (no own thresholds yet) and its tilt sensor at caution on the default ladder, -20..-16 min."""
    city = build_city(CityConfig(seed=7, reference_date=date(2026, 11, 1)))
    await site.facility(city.facility(facility_id))
    await site.provision([device])
    now = START + 30 * MINUTE
    await site.at(now)
    for m in range(5):  # 2.5 mrad: caution on the default ladder (1/500 .. 1/300)
        await send(site, device, now - (20 - m) * MINUTE, 0.0025)
    assert await active(site, device.entity_id) == {"shm-tilt": "caution"}


async def test_buffered_readings_after_an_override_hand_the_default_alarm_over(tmp_path: Path) -> None:
    device, facility = tilt_sensor()
    facility_id = f"urn:ngsi-ld:Building:guro-{facility}"
    own_rule = f"shm-tilt.facility-guro-{facility}"
    async with Site.running(domain_settings(tmp_path), datetime.fromtimestamp(START, UTC)) as site:
        await default_caution(site, device, facility)
        put = await site.api("put_thresholds", "PUT", OWN, facilityId=facility_id)
        assert put.status == 200 and put.body["rules"] == [own_rule]

        now = START + 30 * MINUTE
        for m in range(5):  # the device's buffer: observed -22..-18 min, before the default ladder's last reading
            await send(site, device, now - (22 - m) * MINUTE, 0.0025)
        # the facility's ladder judges from the override on; the default rule's alarm is cleared at once
        assert await active(site, device.entity_id) == {own_rule: "warning"}
        [old] = await site.alarms(entity=device.entity_id, rule="shm-tilt")
        assert old["status"] == "cleared-unacknowledged"
        state = site.ucity.rules.state(TENANT, "shm-tilt", device.entity_id)
        assert state is None or (state.level is None and not state.pending)
        # the default ladder's history: its readings, then one zero at the handover's time (the clock), not at the
        # buffered reading's (older than the ladder's last reading, so the rules engine ignored it as late)
        ended = await default_history(site, device.entity_id)
        assert ended == [*((datetime.fromtimestamp(now - (20 - m) * MINUTE, UTC), 0.0025) for m in range(5)),
                         (datetime.fromtimestamp(now, UTC), 0.0)]
        assert await site.value(device.entity_id, "tiltAssessed") is None  # no default-ladder instance left

        for m in range(5):  # the wall is back: the facility's rule clears too, nothing is left active
            await send(site, device, now + m * MINUTE, 0.0)
        assert await active(site, device.entity_id) == {}
        facility_wire = (await site.api("get_facility", facilityId=facility_id)).body
        assert facility_wire["activeAlarms"] == []


async def test_a_default_alarm_left_without_its_instance_is_cleared_by_the_next_reading(tmp_path: Path) -> None:
    """The state the bug left behind (alarm active, its ladder's instance removed) is repaired after a restart."""
    device, facility = tilt_sensor()
    facility_id = f"urn:ngsi-ld:Building:guro-{facility}"
    own_rule = f"shm-tilt.facility-guro-{facility}"
    settings = domain_settings(tmp_path)
    async with Site.running(settings, datetime.fromtimestamp(START, UTC)) as site:
        await default_caution(site, device, facility)
        assert (await site.api("put_thresholds", "PUT", OWN, facilityId=facility_id)).status == 200
        # what the lost handover left: the default instance removed with no zero the rule evaluated
        [outcome] = await site.ucity.store.mutate(
            TENANT, [Mutation(device.entity_id, write_op([], [(iri("tiltAssessed"), None)]))], Context(actor="test"))
        assert not isinstance(outcome, Exception), outcome
        await site.settle()
        assert await active(site, device.entity_id) == {"shm-tilt": "caution"}

    async with Site.running(settings, datetime.fromtimestamp(START + 40 * MINUTE, UTC)) as site:
        assert await active(site, device.entity_id) == {"shm-tilt": "caution"}  # survived the restart
        await send(site, device, START + 39 * MINUTE, 0.0)
        assert await active(site, device.entity_id) == {}
        [old] = await site.alarms(entity=device.entity_id, rule="shm-tilt")
        assert old["status"] == "cleared-unacknowledged"
        assert site.ucity.rules.state(TENANT, own_rule, device.entity_id) is None  # normal on its own ladder


async def test_a_batch_of_buffered_readings_ends_the_old_ladder_once(tmp_path: Path) -> None:
    """Readings that come together are assessed before the rules engine has seen the first zero: the default
    rule is still active for the later ones, but one zero ends it, at the handover's time."""
    device, facility = tilt_sensor()
    facility_id = f"urn:ngsi-ld:Building:guro-{facility}"
    async with Site.running(domain_settings(tmp_path), datetime.fromtimestamp(START, UTC)) as site:
        await default_caution(site, device, facility)
        assert (await site.api("put_thresholds", "PUT", OWN, facilityId=facility_id)).status == 200
        registered = site.fs.registry.sensor(TENANT, device.entity_id)
        assert registered is not None
        sensor = dataclasses.replace(registered, written_datasets=dict(registered.written_datasets))
        now = site.clock.now()
        buffered = [Reading(now - timedelta(minutes=22 - m), {"tiltX": 0.0025, "tiltY": 0.0}) for m in range(3)]
        writes = site.fs._sensor_writes(sensor, buffered, now)
        zeros = [w for w in writes if w[0] == iri("tiltAssessed") and "datasetId" not in w[1]]
        assert [(z[1]["value"], z[1]["observedAt"]) for z in zeros] == [(0.0, to_iso(now))]
        assert [w[1] for w in writes if w[0] == DROP] == [(iri("tiltAssessed"), None)]
        assert len([w for w in writes if w[0] != DROP and w[1].get("datasetId") == f"{DATASET}facility:guro-{facility}"]) == 3


async def default_history(site: Site, entity_id: str) -> list[tuple[datetime, float]]:
    """The history of the sensor's default-ladder tiltAssessed, oldest first."""
    query = TemporalQuery(ids=(entity_id,), attrs=(iri("tiltAssessed"),), dataset_ids=("@none",),
                          limit_instances=1000, entity_limit=1)
    entities, _ = await site.ucity.store.temporal_query(TENANT, query)
    return sorted((from_micros(t), inst["value"]) for e in entities for series in e.attrs.values()
                  for t, inst in zip(series.times, series.instances, strict=True))
