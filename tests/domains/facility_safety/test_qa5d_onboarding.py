"""QA5 F9 (rest) and F13 b/c/e/h on the facility-safety API: a sensor moved silently between facilities, no list of
orphan sensors, a replacement device inheriting the old thermal model; unknown filter values answered with an empty
list, `from > to` accepted, no pagination, "to은", an empty battery rule description, a spike's value, and a task
completed without being started."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.domains.facility_safety.support import TENANT, Site, domain_settings, iri
from ucity.core.bus import Context
from ucity.core.clock import FakeClock, to_iso
from ucity.core.errors import BadRequest
from ucity.domains.facility_safety import evidence
from ucity.domains.facility_safety.api import SensorOnOtherFacility
from ucity.domains.facility_safety.registry import Registry
from ucity.domains.facility_safety.rules import BATTERY_RULE
from ucity.ngsild.ops import create_op
from ucity.rules import RuleSpike
from ucity.server import create_app
from ucity.store.base import AuditQuery, Mutation

API = "/api/v1/facility-safety"
WALL = "urn:ngsi-ld:Building:qa5d-wall-1"
OTHER = "urn:ngsi-ld:Building:qa5d-wall-2"
SENSOR = "urn:ngsi-ld:StructuralSensor:qa5d-tilt-1"
NOW = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # 10:00 KST


def facility(fid: str = WALL, **extra: Any) -> dict[str, Any]:
    return {"id": fid, "name": "구로 옹벽", "facilityType": "retainingWall", "legalSafetyGrade": "B", **extra}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(domain_settings(tmp_path), clock=FakeClock(NOW)), base_url="http://127.0.0.1:8000") as c:
        yield c


async def audit(site: Site, action: str) -> list[dict[str, Any]]:
    lines, _ = await site.ucity.ops.audit.query(TENANT, AuditQuery(kinds=("facility-safety",)))
    return [x for x in lines if x["action"] == action]


async def sensor_entity(site: Site, sensor_id: str, facility_id: str | None) -> None:
    attrs: dict[str, Any] = {iri("sensorKind"): [{"type": "Property", "value": "crack"}]}
    if facility_id is not None:
        attrs[iri("controlledAsset")] = [{"type": "Relationship", "object": facility_id}]
    doc = {"id": sensor_id, "type": [iri("StructuralSensor")], "attrs": attrs}
    [outcome] = await site.ucity.store.mutate(TENANT, [Mutation(sensor_id, create_op(doc))], Context(actor="test"))
    assert not isinstance(outcome, Exception), outcome
    await site.settle()


# -- F9: moving, orphans, replacement -------------------------------------------------------------------------------
async def test_a_sensor_on_another_facility_moves_only_when_asked_and_the_move_is_audited(tmp_path: Path) -> None:
    async with Site.running(domain_settings(tmp_path), NOW) as site:
        for fid in (WALL, OTHER):
            assert (await site.api("put_facility", "POST", facility(fid))).status == 201
        attach = {"sensor": SENSOR, "kind": "tilt", "create": True}
        assert (await site.api("attach_sensor", "POST", attach, facilityId=WALL)).status == 200
        with pytest.raises(SensorOnOtherFacility) as refused:
            await site.api("attach_sensor", "POST", {"sensor": SENSOR}, facilityId=OTHER)
        text = str(refused.value)
        assert refused.value.status == 409 and WALL in text and '"move": true' in text and "연결되어 있음" in text
        assert site.fs.registry.sensor(TENANT, SENSOR).facility_id == WALL  # nothing moved
        moved = await site.api("attach_sensor", "POST", {"sensor": SENSOR, "move": True},
                               headers={"x-ucity-actor": "officer-kim"}, facilityId=OTHER)
        assert moved.status == 200 and moved.body["facility"] == OTHER
        assert [(x["actor"], x["from"], x["to"], x["fromMonitored"]) for x in await audit(site, "sensor-moved")] == [
            ("officer-kim", WALL, OTHER, True)]
        # attaching again to the facility it is on is no move
        assert (await site.api("attach_sensor", "POST", {"sensor": SENSOR, "member": "auxiliary"},
                               facilityId=OTHER)).status == 200
        assert len(await audit(site, "sensor-moved")) == 1


async def test_orphan_sensors_are_listed_and_one_with_a_typo_is_attached_without_move(tmp_path: Path) -> None:
    typo, bare = "urn:ngsi-ld:StructuralSensor:ob-typo", "urn:ngsi-ld:StructuralSensor:ob-bare"
    async with Site.running(domain_settings(tmp_path), NOW) as site:
        assert (await site.api("put_facility", "POST", facility())).status == 201
        await sensor_entity(site, typo, WALL + "4")  # controlledAsset typo: no such facility
        await sensor_entity(site, bare, None)
        await sensor_entity(site, SENSOR, WALL)
        orphans = (await site.api("list_sensors", params={"orphan": "true"})).body
        assert orphans["total"] == 2
        assert {(s["id"], s["orphan"], s["facility"]) for s in orphans["sensors"]} == {
            (typo, "unknown-facility", WALL + "4"), (bare, "no-facility", None)}
        attached = (await site.api("list_sensors", params={"orphan": "false"})).body
        assert [(s["id"], s["orphan"]) for s in attached["sensors"]] == [(SENSOR, None)]
        everything = (await site.api("list_sensors", params={"limit": "1", "offset": "1"})).body
        assert everything["total"] == 3 and len(everything["sensors"]) == 1
        with pytest.raises(BadRequest, match="allowed: true, false"):
            await site.api("list_sensors", params={"orphan": "yes"})
        # the typo is corrected by attaching it where it belongs: no `move` needed, the correction is audited
        fixed = await site.api("attach_sensor", "POST", {"sensor": typo}, facilityId=WALL)
        assert fixed.status == 200 and fixed.body["facility"] == WALL
        assert [(x["from"], x["fromMonitored"]) for x in await audit(site, "sensor-moved")] == [(WALL + "4", False)]
        assert (await site.api("list_sensors", params={"orphan": "true"})).body["total"] == 1


async def backfill_tilt(site: Site, days: int) -> None:
    """`days` of hourly tilt with a thermal swing (0.1 mrad per °C) before NOW: enough for a model."""
    rows = []
    for hour in range(days * 24):
        at = to_iso(site.clock.now() - timedelta(hours=days * 24 - hour))
        temp = 5.0 + 8.0 * math.sin(hour * 2 * math.pi / 24) + hour / 100
        for name, value in (("tiltX", 1e-4 * temp), ("tiltY", 0.0), ("temperature", temp)):
            rows.append((iri(name), {"type": "Property", "value": value, "observedAt": at}))
    await site.ucity.store.append_history(TENANT, SENSOR, [iri("StructuralSensor")], rows)


async def test_a_replaced_sensor_starts_its_thermal_model_afresh(tmp_path: Path) -> None:
    async with Site.running(domain_settings(tmp_path), NOW) as site:
        assert (await site.api("put_facility", "POST", facility())).status == 201
        assert (await site.api("attach_sensor", "POST", {"sensor": SENSOR, "kind": "tilt", "create": True},
                               facilityId=WALL)).status == 200
        await backfill_tilt(site, 40)
        fitted = (await site.api("fit_sensor", "POST", sensorId=SENSOR)).body
        assert fitted["thermalCompensation"]["tiltX"]["b"] == pytest.approx(1e-4, rel=0.01)  # the old device's model

        reset = await site.api("reset_baseline", "POST", {"reason": "device replaced"},
                               headers={"x-ucity-actor": "officer-kim"}, sensorId=SENSOR)
        assert reset.status == 200 and reset.body["thermalCompensation"] == {}
        assert reset.body["thermalBaselineAt"] == to_iso(NOW)
        assert "baseline reset" in reset.body["thermalCompensationStatus"]["tiltX"]
        assert await site.value(SENSOR, "thermalBaselineAt") == to_iso(NOW)
        [line] = await audit(site, "sensor-baseline-reset")
        assert (line["actor"], line["reason"], line["facility"]) == ("officer-kim", "device replaced", WALL)
        assert line["droppedModels"]["tiltX"]["b"] == pytest.approx(1e-4, rel=0.01)
        # a fit now uses only the history since the reset: none, so no model (the old 40 days are not its own)
        refit = (await site.api("fit_sensor", "POST", sensorId=SENSOR)).body
        assert refit["thermalCompensation"] == {} and refit["thermalCompensationStatus"]["tiltX"] == "no history"

        # after a restart the baseline comes from the entity
        fresh = Registry(site.fs.cfg)
        await fresh.load(site.ucity.store, TENANT)
        assert fresh.baseline_at(TENANT, SENSOR) == NOW


async def test_attach_with_replaced_resets_the_model(tmp_path: Path) -> None:
    async with Site.running(domain_settings(tmp_path), NOW) as site:
        assert (await site.api("put_facility", "POST", facility())).status == 201
        assert (await site.api("attach_sensor", "POST", {"sensor": SENSOR, "kind": "tilt", "create": True},
                               facilityId=WALL)).status == 200
        await backfill_tilt(site, 40)
        assert (await site.api("fit_sensor", "POST", sensorId=SENSOR)).body["thermalCompensation"]
        again = await site.api("attach_sensor", "POST", {"sensor": SENSOR, "replaced": True}, facilityId=WALL)
        assert again.status == 200 and again.body["thermalCompensation"] == {}
        assert site.fs.registry.baseline_at(TENANT, SENSOR) == NOW
        assert [x["reason"] for x in await audit(site, "sensor-baseline-reset")] == ["replaced (attach)"]


# -- F13 b: filters and windows; c: pagination --------------------------------------------------------------------
def test_unknown_filter_values_and_a_reversed_window_are_400_with_the_allowed_values(client: TestClient) -> None:
    assert client.post(f"{API}/facilities", json=facility()).status_code == 201
    for path, params, allowed in [
        ("/facilities", {"dataGrade": "Z"}, "A, B, C, D, E, none"),
        ("/facilities", {"legalGrade": "F"}, "A, B, C, D, E, none"),
        ("/facilities", {"facilityType": "zzz"}, "retainingWall"),
        ("/facilities", {"dataGradeStatus": "meh"}, "insufficient-data"),
        ("/inspections/schedule", {"status": "bogus"}, "due-soon"),
        ("/tasks", {"status": "bogus"}, "in-progress"),
        ("/tasks", {"kind": "bogus"}, "field-check"),
    ]:
        r = client.get(API + path, params=params)
        assert r.status_code == 400, (path, params, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert allowed in r.json()["detail"] and "허용" in r.json()["detail"], r.json()
    # known values still filter
    assert client.get(f"{API}/facilities", params={"legalGrade": "B"}).json()["total"] == 1
    assert client.get(f"{API}/facilities", params={"dataGrade": "none"}).json()["total"] == 1
    assert client.get(f"{API}/inspections/schedule", params={"status": "no-record"}).status_code == 200
    window = {"from": "2026-03-02T00:00:00Z", "to": "2026-03-01T00:00:00Z"}
    for path in (f"/facilities/{WALL}/grades", f"/facilities/{WALL}", "/export/grades.csv"):
        r = client.get(API + path, params=window)
        assert r.status_code == 400 and "from is after to" in r.json()["detail"], (path, r.text)
    bad_to = client.get(f"{API}/export/grades.csv", params={"to": "yesterday"}).json()["detail"]
    assert bad_to.startswith("to 값은 ISO 8601") and "to은" not in bad_to


def test_facilities_and_tasks_are_paged_with_a_total(client: TestClient) -> None:
    for n in range(5):
        assert client.post(f"{API}/facilities", json=facility(f"{WALL}-{n}")).status_code == 201
        made = client.post(f"{API}/tasks", json={"facility": f"{WALL}-{n}", "kind": "manual"},
                           headers={"x-ucity-actor": "kim"})
        assert made.status_code == 201, made.text
    page = client.get(f"{API}/facilities", params={"limit": 2, "offset": 1}).json()
    assert (page["total"], page["limit"], page["offset"]) == (5, 2, 1)
    assert [f["id"] for f in page["facilities"]] == [f"{WALL}-1", f"{WALL}-2"]
    assert "sensors" in page["facilities"][0]
    tasks = client.get(f"{API}/tasks", params={"limit": 3}).json()
    assert tasks["total"] == 5 and len(tasks["tasks"]) == 3
    rest = client.get(f"{API}/tasks", params={"limit": 3, "offset": 3}).json()
    assert len(rest["tasks"]) == 2 and not {t["id"] for t in rest["tasks"]} & {t["id"] for t in tasks["tasks"]}
    assert client.get(f"{API}/tasks", params={"limit": 0}).status_code == 400


# -- F13 h: open -> completed --------------------------------------------------------------------------------------
def test_an_open_task_may_be_completed_at_once_and_the_history_says_so(client: TestClient) -> None:
    assert client.post(f"{API}/facilities", json=facility()).status_code == 201
    who = {"x-ucity-actor": "kim"}
    quick = client.post(f"{API}/tasks", json={"facility": WALL, "kind": "manual"}, headers=who).json()
    done = client.post(f"{API}/tasks/{quick['id']}/complete", json={"summary": "이상 없음", "condition": "normal",
                                                                      "inspector": "kim"}, headers=who)
    assert done.status_code == 200, done.text
    assert done.json()["history"][-1]["action"] == "completed" and done.json()["history"][-1]["withoutStart"] is True
    slow = client.post(f"{API}/tasks", json={"facility": WALL, "kind": "manual"}, headers=who).json()
    assert client.post(f"{API}/tasks/{slow['id']}/start", headers=who).status_code == 200
    done = client.post(f"{API}/tasks/{slow['id']}/complete", json={"summary": "보수", "condition": "minor-defects",
                                                                     "inspector": "kim"}, headers=who)
    assert "withoutStart" not in done.json()["history"][-1]
    assert client.post(f"{API}/tasks/{slow['id']}/complete", json={"summary": "x", "condition": "normal",
                                                                     "inspector": "kim"}, headers=who).status_code == 409


# -- F13 e: battery rule description, a spike's value ---------------------------------------------------------------
def test_the_battery_rule_has_a_description_in_both_languages(client: TestClient) -> None:
    rule = client.get(f"/api/v1/rules/{BATTERY_RULE}").json()
    text = rule.get("description") or {}
    assert "20" in str(text) or "0.2" in str(text), rule
    assert text.get("ko") and text.get("en") and "batteryLevel" in text["en"]


async def test_a_spike_event_keeps_its_peak_as_value(tmp_path: Path) -> None:
    async with Site.running(domain_settings(tmp_path), NOW) as site:
        assert (await site.api("put_facility", "POST", facility())).status == 201
        assert (await site.api("attach_sensor", "POST", {"sensor": SENSOR, "kind": "tilt", "create": True},
                               facilityId=WALL)).status == 200
        spike = RuleSpike(context=Context(actor="test"), tenant=TENANT, rule_id="shm-tilt", entity_id=SENSOR,
                          level="warning", category="facility-safety", observed_at=to_iso(NOW),
                          evidence={"value": 0.0, "peak": 0.0045, "samples": 2})
        await site.fs._record_event(spike)
        found = await evidence.history(site.ucity.store, TENANT, SENSOR, [evidence.EVENT_ATTR], None, None, 10)
        [record] = [i["value"] for i in found[evidence.EVENT_ATTR]]
        assert (record["event"], record["value"], record["endValue"]) == ("spike", 0.0045, 0.0)
