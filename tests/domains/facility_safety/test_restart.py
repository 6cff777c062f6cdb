"""What the domain knows survives a restart: thermal models, a facility's own ladder, tasks, seeded contact data."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

from tests.domains.facility_safety.support import OFFICER, TENANT, Site, domain_settings, iri, posix
from ucity.core.bus import Context
from ucity.core.clock import to_iso
from ucity.ngsild.ops import merge_op
from ucity.sim.city import CityConfig, build_city
from ucity.sim.devices import shm_device
from ucity.store.base import Mutation

START = posix(2026, 11, 18, 10)
MODEL = {"a": 0.04, "b": -0.005, "r2": 0.99, "sigma": 0.001, "hours": 900, "from": "2026-10-01T00:00:00.000000Z",
         "to": "2026-11-18T00:00:00.000000Z", "temperatureRange": [2.0, 24.0]}


async def test_models_ladders_tasks_and_contacts_come_back(tmp_path: Path) -> None:
    city = build_city(CityConfig(seed=7, reference_date=date(2026, 11, 1)))
    sensor = next(s for s in city.sensors if s.kind == "crack")
    device = shm_device(sensor)
    facility = f"urn:ngsi-ld:Building:guro-{sensor.facility_id}"
    settings = domain_settings(tmp_path)
    started = datetime.fromtimestamp(START, UTC)
    async with Site.running(settings, started) as site:
        await site.facility(city.facility(sensor.facility_id))
        await site.provision([device])
        model = {**MODEL, "fittedAt": to_iso(started)}
        await site.ucity.store.mutate(TENANT, [Mutation(device.entity_id, merge_op(
            {"attrs": {iri("thermalCompensation"): [{"type": "Property", "value": {"crackOpening": model}}]}}))],
            Context(actor="test"))
        own = {"crack": {"interest": 0.2, "caution": 0.4, "warning": 0.6, "serious": 1.2, "hysteresis": 0.02}}
        assert (await site.api("put_thresholds", "PUT", own, facilityId=facility)).status == 200
        task = (await site.api("create_task", "POST", {"facility": facility, "kind": "manual", "title": "점검"},
                               headers=OFFICER)).body
        chains = len(site.ucity.alarms.contacts.escalations.all(TENANT))

    async with Site.running(settings, datetime.fromtimestamp(START + 3600, UTC)) as site:
        rule = f"shm-crack.facility-guro-{sensor.facility_id}"
        assert site.ucity.rules.effective(TENANT, rule) is not None
        assert [t.id for t in site.fs.tasks.list(TENANT, facility=facility)] == [task["id"]]
        assert len(site.ucity.alarms.contacts.escalations.all(TENANT)) == chains  # seeded once, not again
        t = START + 3600 + 60
        reading = device.read(t)
        assert reading is not None
        await site.at(t)
        await site.send(device, t, reading)
        assert site.fs.stats["fits"] == 0  # the stored model is a day younger than refit_hours
        doc = await site.entity(device.entity_id)
        [assessed] = doc["attrs"][iri("crackOpeningAssessed")]
        expected = reading["cw"] - (MODEL["a"] + MODEL["b"] * reading["t"])
        assert abs(assessed["value"] - expected) < 1e-9
        assert assessed[iri("compensation")]["value"] == "thermal"
        assert assessed["datasetId"] == f"urn:ngsi-ld:Dataset:facility-safety:facility:guro-{sensor.facility_id}"
