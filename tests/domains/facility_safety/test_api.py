"""The facility-safety API over HTTP: registration, sensors, inspections, tasks with photos closing the loop,
the district summary, CSV exports, per-facility thresholds; and the domain hooks of the kernel."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.domains.facility_safety.support import domain_settings
from ucity.app import Ucity
from ucity.core.clock import FakeClock
from ucity.core.config import load_settings
from ucity.domains import DomainError
from ucity.domains.facility_safety.config import ConfigError
from ucity.server import create_app

API = "/api/v1/facility-safety"
FACILITY = "urn:ngsi-ld:Building:guro-footbridge-7"
SENSOR = "urn:ngsi-ld:StructuralSensor:guro-fb7-tilt"
ACTOR = {"X-Ucity-Actor": "officer-kim"}
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
MB = 1024 * 1024
NOW = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # 10:00 KST


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = domain_settings(tmp_path, photos={"max_bytes": 3 * MB})
    with TestClient(create_app(settings, clock=FakeClock(NOW)), base_url="http://127.0.0.1:8000") as c:
        yield c


def facility_body(**extra: Any) -> dict[str, Any]:
    return {"id": FACILITY, "name": "구로동 육교 7", "facilityType": "footbridge", "facilityClass": 2,
            "legalSafetyGrade": "B", "legalSafetyGradeDate": "2023-01-10", "district": "구로동", "yearBuilt": 1988,
            "location": {"type": "Point", "coordinates": [126.8874, 37.4954]},
            "lastInspections": {"periodic": "2025-06-20", "precise": "2023-01-10"}, **extra}


def register(client: TestClient) -> None:
    assert client.post(f"{API}/facilities", json=facility_body()).status_code == 201
    attached = client.post(f"{API}/facilities/{FACILITY}/sensors", json={"sensor": SENSOR, "member": "main",
                                                                         "kind": "tilt", "create": True})
    assert attached.status_code == 200, attached.text
    assert attached.json()["ladder"]["rule"] == "shm-tilt"


def test_a_facility_is_registered_as_a_building_with_its_legal_grade_and_schedule(client: TestClient) -> None:
    assert client.post(f"{API}/facilities", json={**facility_body(), "facilityClass": 4}).status_code == 400
    register(client)
    again = client.post(f"{API}/facilities", json=facility_body(name="구로동 보도육교 7"))
    assert again.status_code == 200 and again.json()["name"] == "구로동 보도육교 7"
    entity = client.get(f"/ngsi-ld/v1/entities/{FACILITY}", params={"options": "keyValues"}).json()
    assert (entity["type"], entity["facilityType"], entity["facilityClass"], entity["legalSafetyGrade"],
            entity["category"]) == ("Building", "footbridge", 2, "B", ["bridge"])
    detail = client.get(f"{API}/facilities/{FACILITY}").json()
    assert [s["id"] for s in detail["sensors"]] == [SENSOR]
    assert detail["grade"] is None and detail["activeAlarms"] == [] and detail["series"]["periodSeconds"] == 3600
    schedule = {i["kind"]: i for i in detail["inspections"]}
    assert set(schedule) == {"periodic", "precise"}  # class 2: no precise diagnosis [U]
    assert (schedule["periodic"]["due"], schedule["periodic"]["status"]) == ("2025-12-20", "overdue")
    assert (schedule["precise"]["intervalMonths"], schedule["precise"]["due"]) == (24, "2025-01-10")
    late = client.get(f"{API}/inspections/overdue").json()
    assert [(i["facility"], i["kind"]) for i in late["items"]] == [(FACILITY, "precise"), (FACILITY, "periodic")]
    assert late["items"][0]["facilityName"] == "구로동 보도육교 7" and late["today"] == "2026-03-02"
    grade = client.post(f"{API}/facilities/{FACILITY}/grade").json()
    assert grade["grade"] is None and grade["sensors"][0]["scored"] is False  # no data yet: no grade, said so
    assert client.get(f"{API}/facilities/urn:ngsi-ld:Building:nowhere").status_code == 404


def test_a_field_task_closes_the_loop_with_photos_and_an_official_inspection(client: TestClient) -> None:
    register(client)
    assert client.post(f"{API}/tasks", json={"facility": FACILITY, "kind": "field-check"}).status_code == 400
    created = client.post(f"{API}/tasks", json={"facility": FACILITY, "kind": "field-check"}, headers=ACTOR)
    assert created.status_code == 201
    task = created.json()
    assert client.post(f"{API}/tasks", json={"facility": FACILITY, "kind": "field-check"},
                       headers=ACTOR).status_code == 409
    started = client.post(f"{API}/tasks/{task['id']}/start", json={"assignee": "inspector-lee"},
                          headers={"X-Ucity-Actor": "%EA%B9%80%EC%A0%90%EA%B2%80"})  # 김점검, percent-encoded
    assert started.json()["status"] == "in-progress" and started.json()["assignee"] == "inspector-lee"
    assert started.json()["history"][-1]["actor"] == "김점검"  # stored as typed, not as the escapes
    assert client.post(f"{API}/tasks/{task['id']}/start", headers=ACTOR).status_code == 409

    photos = f"{API}/tasks/{task['id']}/photos"
    big = PNG + b"\x00" * int(2.5 * MB)  # above the server's 2 MiB body limit, within the route's own
    up = client.post(photos, files={"photo": ("joint-3.png", big, "image/png")}, headers=ACTOR)
    assert up.status_code == 201, up.text
    [photo] = up.json()["photos"]
    assert (photo["contentType"], photo["size"], photo["filename"]) == ("image/png", len(big), "joint-3.png")
    got = client.get(photo["url"])
    assert got.status_code == 200 and got.headers["content-type"] == "image/png" and got.content == big
    gif = client.post(photos, files={"photo": ("x.png", b"GIF89a" + b"\x00" * 20, "image/png")}, headers=ACTOR)
    assert gif.status_code == 415  # the type comes from the bytes, not from the name
    huge = client.post(photos, files={"photo": ("x.png", PNG + b"\x00" * (3 * MB + 100), "image/png")},
                       headers=ACTOR)
    assert huge.status_code == 413
    assert client.post(photos, files={"note": (None, "no file")}, headers=ACTOR).status_code == 400
    assert client.post(photos, data={"note": "not multipart"}, headers=ACTOR).status_code == 415

    result = {"summary": "이음부 균열 폭 0.3 mm, 진행 없음", "condition": "minor-defects", "inspector": "inspector-lee",
              "measurements": {"crackWidthMm": 0.3},
              "inspection": {"kind": "precise", "completedOn": "2026-02-27", "grade": "C", "inspector": "㈜안전진단"}}
    done = client.post(f"{API}/tasks/{task['id']}/complete", json=result, headers=ACTOR)
    assert done.status_code == 200, done.text
    body = done.json()
    assert body["status"] == "completed" and body["result"]["condition"] == "minor-defects"
    assert [h["action"] for h in body["history"]] == ["created", "started", "photos-added", "completed"]
    assert client.post(photos, files={"photo": ("late.png", PNG, "image/png")}, headers=ACTOR).status_code == 409
    # the official inspection set the legal grade and restarted the precise-inspection interval
    facility = client.get(f"{API}/facilities/{FACILITY}").json()
    assert (facility["legalSafetyGrade"], facility["legalSafetyGradeDate"]) == ("C", "2026-02-27")
    precise = next(i for i in facility["inspections"] if i["kind"] == "precise")
    assert (precise["lastCompleted"], precise["due"], precise["status"]) == ("2026-02-27", "2028-02-27", "ok")
    records = client.get(f"{API}/facilities/{FACILITY}/inspections").json()["records"]
    assert [(r["kind"], r["grade"], r["task"]) for r in records] == [("precise", "C", task["id"])]


def test_summary_csv_thresholds_and_rules(client: TestClient) -> None:
    register(client)
    summary = client.get(f"{API}/summary").json()
    assert summary["facilities"] == 1 and summary["byLegalGrade"]["B"] == 1 and summary["byDataGrade"]["none"] == 1
    assert summary["legalByData"] == {"B": {"none": 1}} and summary["overdueInspections"]["total"] == 2
    assert summary["activeAlarms"] == {"total": 0, "byLevel": {}}
    csv = client.get(f"{API}/export/facilities.csv")
    assert csv.headers["content-type"] == "text/csv; charset=utf-8" and csv.content.startswith(b"\xef\xbb\xbf")
    lines = csv.content.decode("utf-8-sig").splitlines()
    assert lines[0].startswith("id,name,facilityType,facilityClass,structureClass,district,legalSafetyGrade")
    assert lines[1].split(",")[:7] == [FACILITY, "구로동 육교 7", "footbridge", "2", "", "구로동", "B"]
    header, row = lines[0].split(","), lines[1].split(",")
    assert row[header.index("overdueInspections")] == "periodic;precise"  # by name: columns get added

    ladder = {"interest": 0.5, "caution": 1.0, "warning": 1.5, "serious": 2.5, "hysteresis": 0.1}
    put = client.put(f"{API}/facilities/{FACILITY}/thresholds", json={"vibration": ladder})
    assert put.status_code == 200 and put.json()["rules"] == ["shm-vibration.facility-guro-footbridge-7"]
    assert client.put(f"{API}/facilities/{FACILITY}/thresholds", json={"vibration": {**ladder, "serious": 1.2}}
                      ).status_code == 400
    rules = {r["id"]: r for r in client.get(f"{API}/rules").json()["rules"]}
    own = rules["shm-vibration.facility-guro-footbridge-7"]
    assert own["datasetId"] == "urn:ngsi-ld:Dataset:facility-safety:facility:guro-footbridge-7"
    assert [e["at"] for e in own["condition"]["edges"]] == [0.5, 1.0, 1.5, 2.5]
    chains = {c["id"] for c in client.get("/api/v1/escalations").json()}
    assert "shm-vibration.facility-guro-footbridge-7.serious" in chains  # SHM-R5 for the new rule too
    assert client.delete(f"{API}/facilities/{FACILITY}/thresholds").status_code == 204
    assert client.get(f"{API}/facilities/{FACILITY}/thresholds").json()["override"] is None


def test_csv_exports_write_booleans_as_a_spreadsheet_expects(client: TestClient) -> None:
    """QA finding C3: grades.csv wrote Python's `False`; every CSV of the domain writes `true` / `false`."""
    register(client)
    graded = client.post(f"{API}/facilities/{FACILITY}/grade")
    assert graded.status_code == 200 and graded.json()["emergency"]["recommended"] is False
    grades = client.get(f"{API}/export/grades.csv").content.decode("utf-8-sig").splitlines()
    column = grades[0].split(",").index("emergencyInspectionRecommended")
    assert [line.split(",")[column] for line in grades[1:]] == ["false"]
    facilities = client.get(f"{API}/export/facilities.csv").content.decode("utf-8-sig").splitlines()
    column = facilities[0].split(",").index("emergencyInspectionRecommended")
    assert [line.split(",")[column] for line in facilities[1:]] == ["false"]


def test_domains_are_loaded_by_name_and_only_when_enabled(tmp_path: Path) -> None:
    plain = load_settings(environment="test", data_dir=str(tmp_path / "plain"), store={"group_commit_ms": 1.0})
    with TestClient(create_app(plain)) as bare:
        assert bare.get(f"{API}/summary").status_code == 404
        assert "facility_safety" not in bare.get("/health").json()["components"]
    with pytest.raises(DomainError, match=r"no package ucity\.domains\.parkingg"):
        Ucity(load_settings(environment="test", data_dir=str(tmp_path / "x"), domains={"enabled": ["parkingg"]}))
    with pytest.raises(ConfigError, match=r"grade\.window_days"):
        Ucity(domain_settings(tmp_path / "y", grade={"window_days": -1}))
    with pytest.raises(ValueError, match="not a package name"):
        load_settings(domains={"enabled": ["../etc"]})


def test_dates_of_completed_inspections_and_the_year_built_cannot_lie_in_the_future(client: TestClient) -> None:
    """QA finding 11: a typo such as 2099 must not set the legal grade nor make an overdue facility look fine."""
    for wrong in ({"legalSafetyGradeDate": "2099-01-01"}, {"lastInspections": {"periodic": "2026-03-03"}},
                  {"yearBuilt": 2027}):
        refused = client.post(f"{API}/facilities", json=facility_body(**wrong))
        assert refused.status_code == 400, wrong
        detail = refused.json()["detail"]
        assert " / " in detail and re.search("[가-힣]", detail.split(" / ")[0]), detail  # Korean / English
    register(client)
    inspections = f"{API}/facilities/{FACILITY}/inspections"
    future = {"kind": "periodic", "completedOn": "2099-01-01", "grade": "A", "inspector": "x"}
    refused = client.post(inspections, json=future, headers=ACTOR)
    assert refused.status_code == 400
    assert refused.json()["detail"] == ("오늘(2026-03-02, 한국 시간) 이후의 날짜는 받을 수 없음: completedOn 2099-01-01 / "
                                        "a date after today (2026-03-02, Asia/Seoul) is refused: completedOn 2099-01-01")
    assert client.post(inspections, json={**future, "completedOn": "2026-03-03"}, headers=ACTOR).status_code == 400
    facility = client.get(f"{API}/facilities/{FACILITY}").json()
    assert (facility["legalSafetyGrade"], facility["legalSafetyGradeDate"]) == ("B", "2023-01-10")
    periodic = next(i for i in facility["inspections"] if i["kind"] == "periodic")
    assert periodic["status"] == "overdue"
    assert client.get(f"{API}/facilities/{FACILITY}/inspections").json()["records"] == []
    # today (Asia/Seoul) is a valid completion date
    assert client.post(inspections, json={**future, "completedOn": "2026-03-02"}, headers=ACTOR).status_code == 201

    # a task completed with a future official inspection is refused as a whole: the task stays in progress
    task = client.post(f"{API}/tasks", json={"facility": FACILITY, "kind": "manual"}, headers=ACTOR).json()
    client.post(f"{API}/tasks/{task['id']}/start", headers=ACTOR)
    result = {"summary": "점검 완료", "condition": "normal", "inspector": "inspector-lee",
              "inspection": {"kind": "precise", "completedOn": "2099-02-27", "grade": "A"}}
    assert client.post(f"{API}/tasks/{task['id']}/complete", json=result, headers=ACTOR).status_code == 400
    assert client.get(f"{API}/tasks/{task['id']}").json()["status"] == "in-progress"
    result["inspection"]["completedOn"] = "2026-02-27"
    assert client.post(f"{API}/tasks/{task['id']}/complete", json=result, headers=ACTOR).status_code == 200


def test_today_is_the_date_in_seoul(tmp_path: Path) -> None:
    late_evening_utc = datetime(2026, 3, 1, 20, 0, tzinfo=UTC)  # 2026-03-02 05:00 KST
    with TestClient(create_app(domain_settings(tmp_path), clock=FakeClock(late_evening_utc)),
                    base_url="http://127.0.0.1:8000") as c:
        register(c)
        body = {"kind": "periodic", "completedOn": "2026-03-02", "grade": "B", "inspector": "x"}
        assert c.post(f"{API}/facilities/{FACILITY}/inspections", json=body, headers=ACTOR).status_code == 201
        body["completedOn"] = "2026-03-03"
        assert c.post(f"{API}/facilities/{FACILITY}/inspections", json=body, headers=ACTOR).status_code == 400


def test_a_refused_task_move_says_what_was_refused(client: TestClient) -> None:
    """QA finding C2: the 409 names the move in both languages."""
    register(client)
    task = client.post(f"{API}/tasks", json={"facility": FACILITY, "kind": "manual"}, headers=ACTOR).json()
    client.post(f"{API}/tasks/{task['id']}/start", headers=ACTOR)
    again = client.post(f"{API}/tasks/{task['id']}/start", headers=ACTOR)
    assert again.status_code == 409
    assert again.json()["detail"] == "진행 중인 작업은 시작할 수 없음 / cannot start a task that is in-progress"
    done = {"summary": "이상 없음", "condition": "normal", "inspector": "inspector-lee"}
    assert client.post(f"{API}/tasks/{task['id']}/complete", json=done, headers=ACTOR).status_code == 200
    twice = client.post(f"{API}/tasks/{task['id']}/complete", json=done, headers=ACTOR)
    assert twice.json()["detail"] == "완료된 작업은 완료할 수 없음 / cannot complete a task that is completed"
    cancel = client.post(f"{API}/tasks/{task['id']}/cancel", headers=ACTOR)
    assert cancel.json()["detail"] == "완료된 작업은 취소할 수 없음 / cannot cancel a task that is completed"
