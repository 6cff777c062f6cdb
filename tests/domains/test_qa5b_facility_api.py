"""QA5 findings on the facility-safety API: F5 (the legal grade and inspection dates changed by a re-registration,
without an inspection, by an unrecorded actor), F6 (facility thresholds replace alarm rules with `data:write` and
no audit line), F9 part (attaching an unknown sensor id created a phantom main member; no way to detach), F12 part
(no online / offline state, last report or battery per sensor in the facility detail), F13a (CSV exports for
people in UTC)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.domains.facility_safety.support import TENANT, Site, domain_settings, iri, posix, with_read
from ucity.core.bus import EntitiesChanged
from ucity.core.clock import FakeClock, to_iso
from ucity.core.config import Settings, load_settings
from ucity.core.errors import NotFound
from ucity.server import create_app
from ucity.sim.city import CityConfig, build_city
from ucity.sim.devices import shm_device
from ucity.sim.model import City
from ucity.store.base import AuditQuery

API = "/api/v1/facility-safety"
FACILITY = "urn:ngsi-ld:Building:qa5-wall-1"
SENSOR = "urn:ngsi-ld:StructuralSensor:qa5-wall-1-tilt"
NOW = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # 10:00 KST
ADMIN, OPERATOR = "a" * 32, "o" * 32
LADDER = {"interest": 0.5, "caution": 1.0, "warning": 1.5, "serious": 2.5, "hysteresis": 0.1}


def body(**extra: Any) -> dict[str, Any]:
    return {"id": FACILITY, "name": "구로 옹벽 1", "facilityType": "retainingWall", "facilityClass": 2,
            "legalSafetyGrade": "B", "legalSafetyGradeDate": "2025-11-10",
            "lastInspections": {"periodic": "2025-06-20", "precise": "2023-01-10"}, **extra}


def bearer(token: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **extra}


def auth_settings(tmp_path: Path) -> Settings:
    return load_settings(environment="test", data_dir=str(tmp_path / "data"), store={"group_commit_ms": 1.0},
                         server={"require_auth": True}, domains={"enabled": ["facility_safety"]},
                         ops={"admin_token": ADMIN, "tokens": [{"id": "op-1", "role": "operator", "token": OPERATOR}]})


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(domain_settings(tmp_path), clock=FakeClock(NOW)), base_url="http://127.0.0.1:8000") as c:
        yield c


@pytest.fixture
def authed(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(auth_settings(tmp_path), clock=FakeClock(NOW)), base_url="http://127.0.0.1:8000") as c:
        yield c


def actors_of(http: TestClient, entity_id: str) -> list[str | None]:
    """The actors of the committed changes of an entity from now on (the bus's EntitiesChanged contexts)."""
    seen: list[str | None] = []

    async def on_changes(event: EntitiesChanged) -> None:
        if any(c.entity_id == entity_id for c in event.changes):
            seen.append(event.context.actor)

    http.app.state.ucity.platform.bus.subscribe(EntitiesChanged, on_changes)  # type: ignore[attr-defined]
    return seen


# -- F5 -----------------------------------------------------------------------------------------------------------
def test_a_re_registration_cannot_change_the_legal_grade_or_inspection_dates(client: TestClient) -> None:
    actors = actors_of(client, FACILITY)
    assert client.post(f"{API}/facilities", json=body(), headers={"X-Ucity-Actor": "officer-kim"}).status_code == 201
    for changed in ({"legalSafetyGrade": "A"}, {"legalSafetyGradeDate": "2026-02-01"},
                    {"lastInspections": {"periodic": "2026-02-01"}}):
        refused = client.post(f"{API}/facilities", json=body(**changed))
        assert refused.status_code == 409, refused.text
        problem = refused.json()
        assert (problem["status"], problem["type"]) == (409, "urn:ucity:errors:OfficialRecordOnly")
        assert "공식 점검" in problem["detail"] and "official inspection" in problem["detail"]
        assert problem["inspectionsApi"] == f"POST {API}/facilities/{FACILITY}/inspections" and problem["fields"]
    # the same official values (or none) with another name: an update, 200
    assert client.post(f"{API}/facilities", json=body(name="구로 옹벽 1호")).status_code == 200
    kept = {k: v for k, v in body(name="옹벽").items() if k not in ("legalSafetyGrade", "lastInspections")}
    assert client.post(f"{API}/facilities", json=kept).status_code == 200
    detail = client.get(f"{API}/facilities/{FACILITY}").json()
    assert (detail["legalSafetyGrade"], detail["legalSafetyGradeDate"], detail["lastInspections"]) == (
        "B", "2025-11-10", {"periodic": "2025-06-20", "precise": "2023-01-10"})
    # the way that changes them: an official inspection, recorded with its actor
    done = client.post(f"{API}/facilities/{FACILITY}/inspections", headers={"X-Ucity-Actor": "officer-kim"},
                       json={"kind": "periodic", "completedOn": "2026-02-20", "grade": "A", "inspector": "㈜안전"})
    assert done.status_code == 201 and done.json()["legalSafetyGrade"] == "A"
    client.portal.call(client.app.state.ucity.publisher.drain)  # type: ignore[attr-defined]
    assert actors[0] == "officer-kim" and "facility-safety-api" not in actors
    assert "anonymous" in actors  # the writes that named nobody


def test_with_auth_the_facility_write_is_the_tokens_and_an_operator_cannot_set_the_grade(authed: TestClient) -> None:
    actors = actors_of(authed, FACILITY)
    created = authed.post(f"{API}/facilities", json=body(), headers=bearer(OPERATOR, **{"X-Ucity-Actor": "kim"}))
    assert created.status_code == 201, created.text
    assert authed.post(f"{API}/facilities", json=body(legalSafetyGrade="A"),
                       headers=bearer(OPERATOR)).status_code == 409
    authed.portal.call(authed.app.state.ucity.publisher.drain)  # type: ignore[attr-defined]
    assert actors == ["operator:op-1 (kim)"]


# -- F6 -----------------------------------------------------------------------------------------------------------
def test_facility_thresholds_need_config_admin_and_are_audited(authed: TestClient) -> None:
    assert authed.post(f"{API}/facilities", json=body(), headers=bearer(ADMIN)).status_code == 201
    path = f"{API}/facilities/{FACILITY}/thresholds"
    refused = authed.put(path, json={"tilt": {**LADDER, "serious": 4.0}}, headers=bearer(OPERATOR))
    assert refused.status_code == 403 and refused.json()["permission"] == "config:admin"
    assert authed.delete(path, headers=bearer(OPERATOR)).status_code == 403
    assert authed.get(path, headers=bearer(OPERATOR)).json()["override"] is None  # reading stays data:read
    named = bearer(ADMIN, **{"X-Ucity-Actor": "%EC%9D%B4"})  # 이, percent-encoded
    assert authed.put(path, json={"vibration": LADDER}, headers=named).status_code == 200
    assert authed.delete(path, headers=bearer(ADMIN)).status_code == 204
    lines = authed.get("/api/v1/audit", params={"kind": "facility-safety"}, headers=bearer(ADMIN)).json()["entries"]
    assert [(x["action"], x["actor"], x["facility"]) for x in lines] == [
        ("thresholds-set", "admin:admin (이)", FACILITY), ("thresholds-removed", "admin:admin", FACILITY)]
    assert lines[0]["old"] is None and lines[0]["new"]["vibration"]["serious"] == 2.5
    assert lines[1]["old"]["vibration"]["serious"] == 2.5 and lines[1]["new"] is None
    assert lines[0]["rules"] == ["shm-vibration.facility-qa5-wall-1"]


# -- F9 (part) ----------------------------------------------------------------------------------------------------
def test_an_unknown_sensor_is_not_attached_unless_created(client: TestClient) -> None:
    assert client.post(f"{API}/facilities", json=body()).status_code == 201
    typo = client.post(f"{API}/facilities/{FACILITY}/sensors", json={"sensor": SENSOR + "x", "kind": "tilt"})
    assert typo.status_code == 404, typo.text
    assert typo.json()["status"] == 404 and "does not exist" in typo.json()["detail"] and "없음" in typo.json()["detail"]
    assert client.get(f"/ngsi-ld/v1/entities/{SENSOR}x").status_code == 404  # no phantom entity
    assert client.get(f"{API}/facilities/{FACILITY}").json()["sensors"] == []
    made = client.post(f"{API}/facilities/{FACILITY}/sensors", json={"sensor": SENSOR, "kind": "tilt", "create": True})
    assert made.status_code == 200 and made.json()["facility"] == FACILITY
    # an existing entity attaches without `create`
    again = client.post(f"{API}/facilities/{FACILITY}/sensors", json={"sensor": SENSOR, "member": "auxiliary"})
    assert again.status_code == 200 and again.json()["member"] == "auxiliary"


async def test_a_detached_sensor_leaves_the_facility_its_alarm_and_its_grade(tmp_path: Path) -> None:
    async with Site.running(domain_settings(tmp_path), NOW) as site:
        assert (await site.api("put_facility", "POST", body())).status == 201
        attached = await site.api("attach_sensor", "POST", {"sensor": SENSOR, "kind": "tilt", "create": True},
                                  facilityId=FACILITY)
        assert attached.status == 200
        await site.write_tilt(SENSOR, NOW, (20, 10, 0), 0.004)  # 4 mrad on three samples: warning
        [alarm] = [a for a in await site.alarms(entity=SENSOR) if a["rule_id"] == "shm-tilt"]
        assert alarm["status"].startswith("active")
        other = "urn:ngsi-ld:Building:qa5-other"
        assert (await site.api("put_facility", "POST", {"id": other, "name": "옆 옹벽",
                                                        "facilityType": "retainingWall"})).status == 201
        with pytest.raises(NotFound, match="not attached to facility"):
            await site.api("detach_sensor", "DELETE", facilityId=other, sensorId=SENSOR)
        gone = await site.api("detach_sensor", "DELETE", headers={"x-ucity-actor": "officer-kim"},
                              facilityId=FACILITY, sensorId=SENSOR)
        assert gone.status == 204
        with pytest.raises(NotFound):
            await site.api("detach_sensor", "DELETE", facilityId=FACILITY, sensorId=SENSOR)
        detail = (await site.api("get_facility", facilityId=FACILITY)).body
        assert detail["sensors"] == [] and site.fs.registry.sensor(TENANT, SENSOR).facility_id is None
        entity = await site.entity(SENSOR)
        assert iri("controlledAsset") not in entity["attrs"] and iri("tiltAssessed") not in entity["attrs"]
        [alarm] = [a for a in await site.alarms(entity=SENSOR) if a["rule_id"] == "shm-tilt"]
        assert alarm["status"] == "cleared-unacknowledged"  # its rule cleared; the history stays
        graded = (await site.api("recompute_grade", "POST", facilityId=FACILITY)).body
        assert graded["grade"] is None and graded["sensors"] == []  # the grade no longer counts it
        lines, _ = await site.ucity.ops.audit.query(TENANT, AuditQuery(kinds=("facility-safety",)))
        assert [(x["action"], x["actor"], x["sensor"]) for x in lines] == [("sensor-detached", "officer-kim", SENSOR)]


# -- F12 (part) ---------------------------------------------------------------------------------------------------
START = posix(2026, 11, 18, 10)


@pytest.fixture(scope="module")
def city() -> City:
    return build_city(CityConfig(seed=7, reference_date=date(2026, 11, 1)))


async def test_the_facility_detail_shows_each_sensors_state_last_report_and_battery(tmp_path: Path,
                                                                                   city: City) -> None:
    sensor = next(s for s in city.sensors if s.kind == "crack")
    device = with_read(shm_device(sensor), lambda t, reading: {**reading, "bat": 0.64})
    facility = f"urn:ngsi-ld:Building:guro-{sensor.facility_id}"
    async with Site.running(domain_settings(tmp_path), datetime.fromtimestamp(START, UTC)) as site:
        await site.facility(city.facility(sensor.facility_id))
        await site.provision([device])
        await site.run(START, START + 3600)
        last = max(device.schedule(START, START + 3600))
        [wire] = [s for s in (await site.api("get_facility", facilityId=facility)).body["sensors"]
                  if s["id"] == device.entity_id]
        health = wire["health"]
        assert (health["status"], health["batteryLevel"]) == ("online", 0.64)
        assert health["lastReportedAt"] == to_iso(datetime.fromtimestamp(last, UTC))  # received then, UTC
        assert health["batteryAt"].endswith("Z")
        await site.at(last + 4 * 600)  # silent for more than 3 intervals of 10 minutes
        [wire] = [s for s in (await site.api("get_facility", facilityId=facility)).body["sensors"]
                  if s["id"] == device.entity_id]
        assert wire["health"]["status"] == "offline"
        assert wire["health"]["since"] == to_iso(datetime.fromtimestamp(last + 3 * 600, UTC))
        assert wire["health"]["lastReportedAt"] == health["lastReportedAt"]
        alone = (await site.api("get_sensor", sensorId=device.entity_id)).body
        assert alone["health"]["status"] == "offline"


# -- F13a ---------------------------------------------------------------------------------------------------------
def test_csv_exports_show_times_in_seoul_and_the_json_keeps_utc(client: TestClient) -> None:
    assert client.post(f"{API}/facilities", json=body()).status_code == 201
    at = "2026-03-01T15:30:00Z"  # 2026-03-02 00:30 in Seoul: another day
    written = client.post(f"/ngsi-ld/v1/entities/{FACILITY}/attrs", json={
        "dataSafetyGrade": {"type": "Property", "value": "B", "observedAt": at},
        "dataSafetyScore": {"type": "Property", "value": 2.0, "observedAt": at}})
    assert written.status_code == 204, written.text
    ucity = client.app.state.ucity  # type: ignore[attr-defined]
    client.portal.call(ucity.publisher.drain)  # the registry takes the change in when it is published
    detail = client.get(f"{API}/facilities/{FACILITY}").json()
    assert detail["gradeHistory"][0]["at"] == "2026-03-01T15:30:00.000000Z"  # JSON: UTC
    facilities = list(csv.DictReader(io.StringIO(
        client.get(f"{API}/export/facilities.csv").content.decode("utf-8-sig"))))
    assert facilities[0]["dataSafetyGradeAt (Asia/Seoul)"] == "2026-03-02 00:30:00"
    grades = list(csv.DictReader(io.StringIO(client.get(f"{API}/export/grades.csv").content.decode("utf-8-sig"))))
    assert [(g["at (Asia/Seoul)"], g["dataSafetyGrade"]) for g in grades] == [("2026-03-02 00:30:00", "B")]
