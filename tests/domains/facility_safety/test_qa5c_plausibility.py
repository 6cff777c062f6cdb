"""QA5 F3: readings get a plausibility and unit check; an implausible one is a fault, never a safety level.

Pure parts (ranges, units, the crack tolerance, settings) and a real ucity fed over ingest's IoT Agent
handlers: tilt 1e300 rad, 0.5 "rad" (degrees sent), PPV 4500 (µm/s sent), PPV −25, crack −80, two axes of
1.5e308, a string value, an unknown unitCode: each a `shm-reading-suspect` fault naming why, no safety alarm,
nothing assessed, left out of the grade; a provisioned `unitCode` (DD, µm/s) is converted.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.domains.facility_safety.support import OFFICER, TENANT, Site, domain_settings, iri
from ucity.core.bus import Context, EntityChange
from ucity.core.clock import to_iso
from ucity.domains.facility_safety.assess import Checks, Reading, assess, observe, readings_of
from ucity.domains.facility_safety.config import AttributeNames, ConfigError, PlausibilityConfig, load_config
from ucity.domains.facility_safety.models import Sensor
from ucity.ngsild.ops import merge_op
from ucity.sim.iota import RESOURCE
from ucity.store.base import Mutation

NAMES = AttributeNames()
NOW = datetime(2026, 12, 7, 1, 0, tzinfo=UTC)
MEASURED = frozenset({"tiltX", "tiltY", "crackOpening", "vibrationPPV", "dominantFrequency", "temperature",
                      "batteryLevel"})
SENSOR = "urn:ngsi-ld:StructuralSensor:qa5c"


def change(**attrs: Any) -> EntityChange:
    """A committed change carrying one instance per attribute (value, or (value, unitCode))."""
    instances = []
    for name, raw in attrs.items():
        value, unit = raw if isinstance(raw, tuple) else (raw, None)
        inst: dict[str, Any] = {"type": "Property", "value": value, "observedAt": to_iso(NOW)}
        if unit is not None:
            inst["unitCode"] = unit
        instances.append((iri(name), inst))
    return EntityChange(TENANT, SENSOR, "update", None, {"id": SENSOR, "type": [iri("StructuralSensor")]},
                        frozenset(a for a, _ in instances), tuple(instances))


def one(ch: EntityChange, cfg: PlausibilityConfig | None = None) -> Reading:
    [reading] = readings_of(ch, MEASURED, NOW, Checks(cfg or PlausibilityConfig(), NAMES))
    return reading


def assessed(reading: Reading, kind: str = "tilt") -> dict[str, float]:
    out, _ = assess(Sensor(TENANT, SENSOR, [], kind=kind), reading, 10.0, NAMES)
    return {a.channel: a.value for a in out}


# -- pure ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("attrs", "attribute", "reason"), [
    ({"tiltX": 1e300}, "tiltX", "out-of-range"),
    ({"tiltX": 0.5}, "tiltX", "out-of-range"),  # degrees sent as rad
    ({"tiltX": 1.5e308, "tiltY": 1.5e308}, "tiltX", "out-of-range"),
    ({"vibrationPPV": 4500.0}, "vibrationPPV", "out-of-range"),  # µm/s sent as mm/s
    ({"vibrationPPV": -25.0}, "vibrationPPV", "out-of-range"),
    ({"crackOpening": -80.0}, "crackOpening", "out-of-range"),
    ({"crackOpening": -0.3}, "crackOpening", "out-of-range"),  # beyond the tolerance: reversed meter?
    ({"tiltX": "0.009"}, "tiltX", "not-a-number"),
    ({"tiltX": (0.001, "XYZ")}, "tiltX", "unknown-unit"),
    ({"temperature": 500.0, "crackOpening": 0.05}, "temperature", "out-of-range"),
])
def test_an_implausible_value_is_a_suspect_and_is_not_assessed(attrs: dict[str, Any], attribute: str,
                                                                reason: str) -> None:
    reading = one(change(**attrs))
    assert attribute in {s.attribute for s in reading.suspects}
    assert next(s for s in reading.suspects if s.attribute == attribute).reason == reason
    assert attribute not in reading.values and reading.checked
    kind = "crack" if "crackOpening" in attrs else "vibration" if "vibrationPPV" in attrs else "tilt"
    result = assessed(reading, kind)
    assert kind not in result or attribute == "temperature"
    text = observe(Sensor(TENANT, SENSOR, []), reading)
    assert text is not None and attribute in text["value"] and reason in text["value"]
    [item] = [r for r in text[iri("reasons")]["value"] if r["attribute"] == attribute]
    assert item["reason"] == reason and item["ko"] and item["en"]


def test_one_suspect_tilt_axis_leaves_the_whole_tilt_out() -> None:
    """The other axis alone would understate the lean (a single-axis reading counts the missing axis as 0)."""
    reading = one(change(tiltX=0.9, tiltY=0.004))
    assert reading.values == {"tiltY": 0.004}
    out, skipped = assess(Sensor(TENANT, SENSOR, [], kind="tilt"), reading, 10.0, NAMES)
    assert out == [] and skipped == ["tilt: suspect axis, not assessed"]


def test_plausible_values_and_a_closing_crack_within_the_tolerance_are_assessed() -> None:
    assert assessed(one(change(tiltX=0.003, tiltY=-0.004))) == {"tilt": pytest.approx(0.005)}
    assert assessed(one(change(crackOpening=-0.1)), "crack") == {"crack": pytest.approx(-0.1)}  # thermal swing
    assert assessed(one(change(vibrationPPV=2.5, dominantFrequency=12.0)), "vibration") == {"vibration": 2.5}
    sensor = Sensor(TENANT, SENSOR, [], suspect=True)
    cleared = observe(sensor, one(change(tiltX=0.001)))
    assert cleared is not None and cleared["value"] == "ok" and not sensor.suspect
    assert observe(sensor, one(change(tiltX=0.001))) is None  # nothing to change


@pytest.mark.parametrize(("raw", "unit", "kind", "expected"), [
    (0.3, "DD", "tilt", math.radians(0.3)),
    (5.0, "C25", "tilt", 0.005),  # mrad
    (2500.0, "um/s", "vibration", 2.5),
    (0.05, "CMT", "crack", 0.5),
    (0.004, "C81", "tilt", 0.004),
])
def test_a_unit_code_is_converted_to_the_channel_unit(raw: float, unit: str, kind: str, expected: float) -> None:
    name = {"tilt": "tiltX", "vibration": "vibrationPPV", "crack": "crackOpening"}[kind]
    reading = one(change(**{name: (raw, unit)}))
    assert reading.suspects == ()
    assert assessed(reading, kind) == {kind: pytest.approx(expected)}


def test_the_ranges_and_units_are_settings() -> None:
    cfg = load_config({"plausibility": {"vibration": [0.0, 10000.0], "units": {"vibration": {"X-UMS": [0.001, 0.0]}}}})
    assert one(change(vibrationPPV=4500.0), cfg.plausibility).suspects == ()  # a wider range, as configured
    assert assessed(one(change(vibrationPPV=(2000.0, "X-UMS")), cfg.plausibility), "vibration") == \
        {"vibration": pytest.approx(2.0)}
    assert load_config({}).plausibility.tilt == (-0.1, 0.1)
    with pytest.raises(ConfigError):
        load_config({"plausibility": {"crack": [1.0, -1.0]}})
    with pytest.raises(ConfigError):
        load_config({"plausibility": {"units": {"pressure": {"PAL": [1.0, 0.0]}}}})
    off = load_config({"plausibility": {"enabled": False}}).plausibility
    assert one(change(tiltX=1e300), off).values == {"tiltX": 1e300}  # the old behaviour, on request


# -- a real ucity ---------------------------------------------------------------------------------------------
FACILITY = "urn:ngsi-ld:Building:qa5c-wall"
KEY = "qa5ckey"
ATTRS = [{"object_id": o, "name": n, "type": "Number"} for o, n in (
    ("tx", "tiltX"), ("ty", "tiltY"), ("cr", "crackOpening"), ("v", "vibrationPPV"), ("f", "dominantFrequency"),
    ("t", "temperature"))]


async def prepare(site: Site) -> None:
    resp = await site.api("put_facility", "POST", {"id": FACILITY, "name": "QA5c 옹벽", "facilityType": "retainingWall",
                                                   "legalSafetyGrade": "C"}, headers=OFFICER)
    assert resp.status in (200, 201), resp.body
    groups = {"services": [{"apikey": KEY, "resource": RESOURCE, "entity_type": "StructuralSensor",
                            "autoprovision": False, "expected_interval_s": 600, "attributes": ATTRS}]}
    assert (await site.ucity.ingest.http.create_groups(site.req("POST", "/iot/services", groups))).status == 201


async def device(site: Site, dev: str, kind: str, attributes: list[dict[str, Any]] | None = None) -> str:
    body: dict[str, Any] = {"device_id": dev, "entity_type": "StructuralSensor", "apikey": KEY,
                            "static_attributes": [{"name": "controlledAsset", "type": "Relationship", "value": FACILITY},
                                                  {"name": "sensorKind", "type": "Text", "value": kind},
                                                  {"name": "structuralMember", "type": "Text", "value": "main"}]}
    if attributes:
        body["attributes"] = attributes
    resp = await site.ucity.ingest.http.create_devices(site.req("POST", "/iot/devices", {"devices": [body]}))
    assert resp.status == 201, resp.body
    await site.settle()
    return f"urn:ngsi-ld:StructuralSensor:{dev}"


async def send(site: Site, dev: str, payload: dict[str, Any], at: datetime, clock: datetime | None = None) -> None:
    """A measure dated `at`, sent with the clock at `clock` (default: `at`)."""
    await site.at((clock or at).timestamp())
    resp = await site.ucity.ingest.http.measure(site.req("POST", RESOURCE, {**payload, "TimeInstant": to_iso(at)},
                                                         {"k": KEY, "i": dev}))
    assert resp.status == 200, resp.body
    await site.settle()


def by_rule(alarms: list[dict[str, Any]], entity: str) -> dict[str, dict[str, Any]]:
    return {a["rule_id"]: a for a in alarms if a["entity_id"] == entity}


async def test_implausible_readings_raise_a_suspect_fault_and_no_safety_level(tmp_path: Path) -> None:
    bad = {"b-tilt-big": ("tilt", {"tx": 1e300, "t": 10}), "b-tilt-deg": ("tilt", {"tx": 0.5, "t": 10}),
           "b-vib-um": ("vibration", {"v": 4500.0, "f": 12}), "b-vib-neg": ("vibration", {"v": -25.0, "f": 12}),
           "b-crack-neg": ("crack", {"cr": -80.0, "t": 10}),
           "b-tilt-inf": ("tilt", {"tx": 1.5e308, "ty": 1.5e308, "t": 10})}
    async with Site.running(domain_settings(tmp_path), NOW) as site:
        await prepare(site)
        ids = {dev: await device(site, dev, kind) for dev, (kind, _) in bad.items()}
        for dev, (kind, _payload) in bad.items():  # a plausible reading first: the grade has a level
            good = {"tilt": {"tx": 0.0002, "t": 10}, "vibration": {"v": 0.2, "f": 12}, "crack": {"cr": 0.01, "t": 10}}
            await send(site, dev, good[kind], NOW + timedelta(minutes=1))
        for k in range(3):  # three samples: SHM-R4's persistence would be met
            for dev, (_, payload) in bad.items():
                await send(site, dev, payload, NOW + timedelta(minutes=2 + k))
        alarms = await site.alarms()
        assert [a for a in alarms if a["kind"] == "safety"] == []  # no level from an implausible value
        for entity in ids.values():
            fault = by_rule(alarms, entity)["shm-reading-suspect"]
            assert (fault["kind"], fault["level"], fault["status"]) == ("fault", None, "active-unacknowledged")
            assert "out-of-range" in fault["evidence"]["value"], fault["evidence"]
            assert "shm-maintenance-vendor" in fault["notified_groups"]
            doc = await site.entity(entity)
            reasons = doc["attrs"][iri("readingSuspect")][0][iri("reasons")]["value"]
            assert reasons and all(r["reason"] == "out-of-range" for r in reasons)
        assert site.fs.stats["implausible"] >= 18
        assert await site.value(ids["b-tilt-inf"], "tiltAssessed") == pytest.approx(0.0002)  # never null
        # the grade rests on the plausible values only, and says the sensor is suspect
        resp = await site.api("recompute_grade", "POST", facilityId=FACILITY, headers=OFFICER)
        rows = {r["sensor"]: r for r in resp.body["sensors"]}
        for entity in ids.values():
            assert rows[entity]["channels"][0]["level"]["band"] == "a" and rows[entity]["suspect"] is True
        assert "suspect sensor" in resp.body["summary"]["en"] and "센서 의심" in resp.body["summary"]["ko"]
        # a plausible reading clears the fault
        await send(site, "b-crack-neg", {"cr": 0.02, "t": 10}, NOW + timedelta(minutes=10))
        fault = by_rule(await site.alarms(), ids["b-crack-neg"])["shm-reading-suspect"]
        assert fault["status"] != "active-unacknowledged"
        assert await site.value(ids["b-crack-neg"], "readingSuspect") == "ok"


async def test_a_provisioned_unit_code_is_honoured_and_an_unknown_one_is_a_fault(tmp_path: Path) -> None:
    async with Site.running(domain_settings(tmp_path), NOW) as site:
        await prepare(site)
        deg = await device(site, "u-tilt-deg", "tilt", [
            {"object_id": "tx", "name": "tiltX", "type": "Number", "metadata": {"unitCode": {"type": "Text", "value": "DD"}}}])
        odd = await device(site, "u-tilt-odd", "tilt", [
            {"object_id": "tx", "name": "tiltX", "type": "Number", "metadata": {"unitCode": {"type": "Text", "value": "XYZ"}}}])
        for k in range(3):
            await send(site, "u-tilt-deg", {"tx": 0.3, "t": 10}, NOW + timedelta(minutes=1 + k))
            await send(site, "u-tilt-odd", {"tx": 0.001, "t": 10}, NOW + timedelta(minutes=1 + k))
        assert await site.value(deg, "tiltAssessed") == pytest.approx(math.radians(0.3))
        alarms = await site.alarms()
        assert by_rule(alarms, deg)["shm-tilt"]["level"] == "warning"  # 0.3° = 5.2 mrad, not 0.3 rad (serious)
        assert "shm-reading-suspect" not in by_rule(alarms, deg)
        fault = by_rule(alarms, odd)["shm-reading-suspect"]
        assert "unknown-unit" in fault["evidence"]["value"] and "XYZ" in fault["evidence"]["value"]
        assert "shm-tilt" not in by_rule(alarms, odd)


async def test_a_string_value_of_an_ngsi_ld_client_is_a_fault_not_silence(tmp_path: Path) -> None:
    async with Site.running(domain_settings(tmp_path), NOW) as site:
        await prepare(site)
        entity = await device(site, "s-tilt", "tilt")
        attrs = {iri("tiltX"): [{"type": "Property", "value": "0.009", "observedAt": to_iso(NOW)}]}
        [outcome] = await site.ucity.store.mutate(TENANT, [Mutation(entity, merge_op({"attrs": attrs}))],
                                                  Context(actor="gateway"))
        assert not isinstance(outcome, Exception)
        await site.settle()
        fault = by_rule(await site.alarms(), entity)["shm-reading-suspect"]
        assert "not-a-number" in fault["evidence"]["value"]
