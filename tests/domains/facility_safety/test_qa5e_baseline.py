"""QA5 F9 (zero offset) and the facility-safety items left after QA5:

* each tilt / crack sensor has an installation baseline the ladders measure the change from: provisioned (static
  attribute), given at attach or by a reset, else the median of its first `baseline.capture_samples` readings
  (readings before it are stored, not laddered, and the sensor's health says so);
* after a baseline reset (a replaced device) the grade counts the sensor's level and events from the reset only;
* `GET /rules` lists `grade.min_main_coverage` with its source; a detached sensor that keeps reporting is not
  laddered; a sensor declared `tilt` that sends crack readings is a suspect (kind mismatch), not "no data".
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.domains.facility_safety.support import OFFICER, TENANT, Site, domain_settings, iri
from tests.domains.facility_safety.test_qa5c_plausibility import FACILITY, KEY, NOW, by_rule, prepare, send
from ucity.core.bus import Context
from ucity.core.clock import to_iso
from ucity.core.errors import BadRequest
from ucity.domains.facility_safety.assess import Checks, Reading, assess, kind_mismatch
from ucity.domains.facility_safety.config import AttributeNames, ConfigError, PlausibilityConfig, load_config
from ucity.domains.facility_safety.models import Baseline, Sensor, ThermalModel
from ucity.domains.facility_safety.registry import Registry
from ucity.ngsild.ops import merge_op
from ucity.store.base import AuditQuery, Mutation

NAMES = AttributeNames()
SENSOR = "urn:ngsi-ld:StructuralSensor:qa5e"
SHIPPED = {"baseline": {}}  # the shipped baseline settings (support.domain_settings sets mode "zero" otherwise)


# -- pure -----------------------------------------------------------------------------------------------------
def test_the_ladders_see_the_change_from_the_installation_baseline() -> None:
    tilt = Sensor(TENANT, SENSOR, [], kind="tilt", baseline=Baseline({"tiltX": 0.02, "tiltY": -0.01}, "explicit"))
    reading = Reading(NOW, {"tiltX": 0.023, "tiltY": -0.006})
    [a], _ = assess(tilt, reading, 10.0, NAMES)
    assert a.value == pytest.approx(0.005) and a.method == "none"  # hypot(3, 4) mrad, not the absolute 23 mrad
    crack = Sensor(TENANT, SENSOR, [], kind="crack", baseline=Baseline({"crackOpening": 12.0}, "captured"))
    [c], _ = assess(crack, Reading(NOW, {"crackOpening": 12.35}), 10.0, NAMES)
    assert c.value == pytest.approx(0.35)
    # with a thermal model the offset lives in its intercept: the residual is the same with or without a baseline
    model = ThermalModel(0.02, 0.0, 1.0, 1e-5, 800, "", "", "", 0.0, 20.0)
    for baseline in (None, Baseline({"tiltX": 0.02}, "explicit")):
        s = Sensor(TENANT, SENSOR, [], kind="tilt", models={"tiltX": model}, baseline=baseline)
        [r], _ = assess(s, Reading(NOW, {"tiltX": 0.021}), 10.0, NAMES)
        assert r.value == pytest.approx(0.001) and r.method == "thermal"


def test_the_plausible_range_is_checked_on_the_change_from_the_baseline() -> None:
    checks = Checks(PlausibilityConfig(), NAMES)
    assert checks.check("tiltX", 0.15, None, 0.14) == (0.15, 1.0)  # mounted at 8°: a change of 10 mrad
    assert checks.check("tiltX", 0.15, None).reason == "out-of-range"  # type: ignore[union-attr]


def test_a_measure_of_another_kind_than_declared_is_a_suspect() -> None:
    declared = Sensor(TENANT, SENSOR, [], kind="tilt", declared_kind=True)
    reading = kind_mismatch(declared, Reading(NOW, {"crackOpening": 0.2, "temperature": 9.0}, checked=True), NAMES)
    assert reading.values == {"temperature": 9.0}
    [suspect] = reading.suspects
    assert (suspect.attribute, suspect.reason) == ("crackOpening", "kind-mismatch")
    assert "sensorKind" in suspect.to_json()["en"] and suspect.to_json()["ko"]
    assert assess(declared, reading, 9.0, NAMES)[0] == []
    guessed = Sensor(TENANT, SENSOR, [], kind="tilt")  # kind guessed from its measures: nothing to contradict
    assert kind_mismatch(guessed, Reading(NOW, {"crackOpening": 0.2}), NAMES).suspects == ()


def test_the_baseline_settings() -> None:
    cfg = load_config({})
    assert (cfg.baseline.mode, cfg.baseline.capture_samples) == ("capture", 6)
    assert load_config({"baseline": {"mode": "zero", "capture_samples": 3}}).baseline.capture_samples == 3
    with pytest.raises(ConfigError):
        load_config({"baseline": {"mode": "guess"}})
    with pytest.raises(ConfigError):
        load_config({"baseline": {"capture_samples": 0}})


# -- a real ucity ---------------------------------------------------------------------------------------------
async def device(site: Site, dev: str, kind: str, baseline: dict[str, float] | None = None) -> str:
    statics: list[dict[str, Any]] = [{"name": "controlledAsset", "type": "Relationship", "value": FACILITY},
                                     {"name": "sensorKind", "type": "Text", "value": kind},
                                     {"name": "structuralMember", "type": "Text", "value": "main"}]
    if baseline is not None:  # set at provisioning
        statics.append({"name": "installationBaseline", "type": "StructuredValue", "value": baseline})
    body = {"device_id": dev, "entity_type": "StructuralSensor", "apikey": KEY, "static_attributes": statics}
    resp = await site.ucity.ingest.http.create_devices(site.req("POST", "/iot/devices", {"devices": [body]}))
    assert resp.status == 201, resp.body
    await site.settle()
    return f"urn:ngsi-ld:StructuralSensor:{dev}"


async def write(site: Site, sensor: str, at: datetime, **values: float) -> None:
    """One reading written by an NGSI-LD client, with the clock at its time."""
    await site.at(at.timestamp())
    attrs = {iri(n): [{"type": "Property", "value": v, "observedAt": to_iso(at)}] for n, v in values.items()}
    [outcome] = await site.ucity.store.mutate(TENANT, [Mutation(sensor, merge_op({"attrs": attrs}))],
                                              Context(actor="gateway"))
    assert not isinstance(outcome, Exception), outcome
    await site.settle()


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


async def test_an_absolute_angle_is_captured_as_the_baseline_and_never_laddered_as_a_lean(tmp_path: Path) -> None:
    async with Site.running(domain_settings(tmp_path, **SHIPPED), NOW) as site:
        await prepare(site)
        entity = await device(site, "abs-tilt", "tilt")
        for k in range(5):  # mounted at 20 mrad: three times the serious edge if read as a change
            await send(site, "abs-tilt", {"tx": 0.02, "ty": 0.001, "t": 10}, NOW + minutes(1 + k))
        assert by_rule(await site.alarms(), entity) == {}
        assert await site.value(entity, "tiltAssessed") is None  # stored, not laddered
        assert site.fs.stats["unbaselined"] == 5
        wire = (await site.api("get_sensor", sensorId=entity)).body
        health = wire["health"]
        assert health["laddered"] is False and health["notLadderedBecause"]["reason"] == "no-baseline"
        assert "6" in health["notLadderedBecause"]["en"] and "설치 기준값" in health["notLadderedBecause"]["ko"]
        assert health["installationBaseline"]["source"] == "capturing"
        assert health["lastReportedAt"] is not None  # the readings are stored

        await send(site, "abs-tilt", {"tx": 0.0202, "ty": 0.001, "t": 10}, NOW + minutes(6))  # the 6th: captured
        stored = (await site.entity(entity))["attrs"][iri("installationBaseline")][0]
        assert stored["value"] == {"tiltX": pytest.approx(0.02), "tiltY": pytest.approx(0.001)}
        assert stored[iri("source")]["value"] == "captured" and stored[iri("samples")]["value"] == 6
        assert await site.value(entity, "tiltAssessed") == pytest.approx(0.0002)
        for k in range(3):  # 4.5 mrad of change: warning (the absolute 24.5 mrad would be serious)
            await send(site, "abs-tilt", {"tx": 0.0245, "ty": 0.001, "t": 10}, NOW + minutes(7 + k))
        alarm = by_rule(await site.alarms(), entity)["shm-tilt"]
        assert alarm["level"] == "warning", alarm
        wire = (await site.api("get_sensor", sensorId=entity)).body
        assert wire["health"]["laddered"] is True and wire["health"]["notLadderedBecause"] is None
        assert wire["installationBaseline"]["source"] == "captured"
        fresh = Registry(site.fs.cfg)  # after a restart the baseline comes from the entity
        await fresh.load(site.ucity.store, TENANT)
        held = fresh.sensor(TENANT, entity)
        assert held is not None and held.baseline is not None and held.baseline.source == "captured"


async def test_a_provisioned_baseline_is_used_from_the_first_reading(tmp_path: Path) -> None:
    async with Site.running(domain_settings(tmp_path, **SHIPPED), NOW) as site:
        await prepare(site)
        entity = await device(site, "prov-tilt", "tilt", {"tiltX": 0.02, "tiltY": 0.0})
        for k in range(3):
            await send(site, "prov-tilt", {"tx": 0.0245, "ty": 0.0, "t": 10}, NOW + minutes(1 + k))
        assert by_rule(await site.alarms(), entity)["shm-tilt"]["level"] == "warning"
        wire = (await site.api("get_sensor", sensorId=entity)).body
        assert wire["installationBaseline"] == {"offsets": {"tiltX": 0.02, "tiltY": 0.0}, "source": "provisioned",
                                                "at": None}


async def test_a_baseline_given_at_attach_and_set_again_by_a_reset(tmp_path: Path) -> None:
    async with Site.running(domain_settings(tmp_path, **SHIPPED), NOW) as site:
        await prepare(site)
        with pytest.raises(BadRequest, match="allowed: tiltX, tiltY, crackOpening"):
            await site.api("attach_sensor", "POST", {"sensor": SENSOR, "kind": "crack", "create": True,
                                                     "baseline": {"vibrationPPV": 1.0}}, facilityId=FACILITY)
        attached = await site.api("attach_sensor", "POST", {"sensor": SENSOR, "kind": "crack", "create": True,
                                                            "baseline": {"crackOpening": 12.0}}, facilityId=FACILITY)
        assert attached.body["installationBaseline"]["offsets"] == {"crackOpening": 12.0}
        assert attached.body["installationBaseline"]["source"] == "explicit"
        for k in range(3):  # a gauge reading its absolute position: 0.35 mm of opening is caution
            await write(site, SENSOR, NOW + minutes(1 + k), crackOpening=12.35, temperature=10.0)
        assert await site.value(SENSOR, "crackOpeningAssessed") == pytest.approx(0.35)
        assert by_rule(await site.alarms(), SENSOR)["shm-crack"]["level"] == "caution"

        reset_at = NOW + minutes(30)
        await site.at(reset_at.timestamp())
        reset = await site.api("reset_baseline", "POST", {"reason": "gauge replaced"}, headers=OFFICER,
                               sensorId=SENSOR)
        assert reset.body["installationBaseline"] == {"offsets": {}, "source": "capturing", "at": to_iso(reset_at),
                                                      "since": to_iso(reset_at)}
        assert reset.body["health"]["laddered"] is False
        for k in range(5):  # the new gauge reads 3.0 mm: captured from its own readings, not the old 12.35
            await write(site, SENSOR, reset_at + minutes(1 + k), crackOpening=3.0, temperature=10.0)
        assert site.fs.registry.sensor(TENANT, SENSOR).baseline.source == "capturing"  # type: ignore[union-attr]
        await write(site, SENSOR, reset_at + minutes(6), crackOpening=3.01, temperature=10.0)
        assert (await site.api("get_sensor", sensorId=SENSOR)).body["installationBaseline"]["offsets"] == {
            "crackOpening": pytest.approx(3.0)}
        assert await site.value(SENSOR, "crackOpeningAssessed") == pytest.approx(0.01)

        explicit = await site.api("reset_baseline", "POST", {"reason": "re-zeroed", "baseline": {"crackOpening": 2.5}},
                                  sensorId=SENSOR)
        assert explicit.body["installationBaseline"]["offsets"] == {"crackOpening": 2.5}
        lines, _ = await site.ucity.ops.audit.query(TENANT, AuditQuery(kinds=("facility-safety",)))
        resets = [x for x in lines if x["action"] == "sensor-baseline-reset"]
        assert {x["installationBaseline"]["source"] for x in resets} == {"capturing", "explicit"}


async def test_after_a_reset_the_grade_counts_the_new_device_only(tmp_path: Path) -> None:
    # minutes of data: the completeness minimum (QA14 F3) is off, what is tested is what the grade counts
    async with Site.running(domain_settings(tmp_path, grade={"min_completeness": 0.0}), NOW) as site:
        await prepare(site)
        assert (await site.api("attach_sensor", "POST", {"sensor": SENSOR, "kind": "tilt", "create": True},
                               facilityId=FACILITY)).status == 200
        for k in range(3):  # the old device: a warning excursion
            await write(site, SENSOR, NOW + minutes(1 + k), tiltX=0.004, tiltY=0.0)
        before = (await site.api("recompute_grade", "POST", facilityId=FACILITY)).body
        [row] = before["sensors"]
        assert row["events"]["count"] == 1 and row["countedSince"] is None
        reset_at = NOW + timedelta(hours=2)
        await site.at(reset_at.timestamp())
        await site.api("reset_baseline", "POST", {"reason": "device replaced", "baseline": {"tiltX": 0.0, "tiltY": 0.0}},
                       sensorId=SENSOR)
        for k in range(3):  # the new device stands still
            await write(site, SENSOR, reset_at + minutes(10 * (1 + k)), tiltX=0.0001, tiltY=0.0)
        after = (await site.api("recompute_grade", "POST", facilityId=FACILITY)).body
        [row] = after["sensors"]
        assert row["countedSince"] == to_iso(reset_at)
        assert row["events"]["count"] == 0 and row["events"]["matchedSteps"] == 0  # the old device's excursion
        assert row["channels"][0]["level"]["band"] == "a" and row["score"] == 1
        assert after["grade"] == "A"


async def test_the_rules_list_the_coverage_setting_with_its_source(tmp_path: Path) -> None:
    async with Site.running(domain_settings(tmp_path), NOW) as site:
        body = (await site.api("rules")).body
        coverage = body["settings"]["grade.min_main_coverage"]
        assert coverage["value"] == 0.8 and coverage["source"] == "QA5-F4" and coverage["confidence"] == "D"
        assert "80 %" in coverage["text"] and body["sources"]["QA5-F4"]["confidence"] == "D"
        assert body["settings"]["baseline.capture_samples"]["value"] == 6


async def test_a_detached_sensor_that_keeps_reporting_is_not_laddered(tmp_path: Path) -> None:
    async with Site.running(domain_settings(tmp_path), NOW) as site:
        await prepare(site)
        assert (await site.api("attach_sensor", "POST", {"sensor": SENSOR, "kind": "tilt", "create": True},
                               facilityId=FACILITY)).status == 200
        assert (await site.api("detach_sensor", "DELETE", facilityId=FACILITY, sensorId=SENSOR)).status == 204
        for k in range(3):  # warning on any ladder, were it laddered
            await write(site, SENSOR, NOW + minutes(1 + k), tiltX=0.004, tiltY=0.0)
        assert [a for a in await site.alarms(entity=SENSOR) if a["kind"] == "safety"] == []
        assert iri("tiltAssessed") not in (await site.entity(SENSOR))["attrs"]
        assert site.fs.stats["detached"] == 3
        health = (await site.api("get_sensor", sensorId=SENSOR)).body["health"]
        assert health["laddered"] is False and health["notLadderedBecause"]["reason"] == "detached"
        assert FACILITY in health["notLadderedBecause"]["en"] and "분리" in health["notLadderedBecause"]["ko"]
        # attached again, it is laddered again
        again = await site.api("attach_sensor", "POST", {"sensor": SENSOR}, facilityId=FACILITY)
        assert again.body["detachedFrom"] is None and again.body["health"]["laddered"] is True
        assert iri("detachedFrom") not in (await site.entity(SENSOR))["attrs"]
        for k in range(3):
            await write(site, SENSOR, NOW + minutes(10 + k), tiltX=0.004, tiltY=0.0)
        assert by_rule(await site.alarms(), SENSOR)["shm-tilt"]["level"] == "warning"


async def test_a_tilt_sensor_sending_crack_is_a_suspect_not_no_data(tmp_path: Path) -> None:
    async with Site.running(domain_settings(tmp_path), NOW) as site:
        await prepare(site)
        assert (await site.api("attach_sensor", "POST", {"sensor": SENSOR, "kind": "tilt", "create": True},
                               facilityId=FACILITY)).status == 200
        await write(site, SENSOR, NOW + minutes(1), crackOpening=0.2, temperature=9.0)
        fault = by_rule(await site.alarms(), SENSOR)["shm-reading-suspect"]
        assert fault["kind"] == "fault" and "kind-mismatch" in fault["evidence"]["value"]
        reasons = (await site.entity(SENSOR))["attrs"][iri("readingSuspect")][0][iri("reasons")]["value"]
        assert [(r["attribute"], r["reason"]) for r in reasons] == [("crackOpening", "kind-mismatch")]
        assert iri("crackOpeningAssessed") not in (await site.entity(SENSOR))["attrs"]
        graded = (await site.api("recompute_grade", "POST", facilityId=FACILITY)).body
        [row] = graded["sensors"]
        assert row["suspect"] is True  # the grade's row says why it has no data
        health = (await site.api("get_sensor", sensorId=SENSOR)).body["health"]
        assert [r["reason"] for r in health["readingSuspect"]["reasons"]] == ["kind-mismatch"]
        assert "sensorKind tilt" in health["readingSuspect"]["value"]
        assert site.fs.stats["implausible"] == 1
