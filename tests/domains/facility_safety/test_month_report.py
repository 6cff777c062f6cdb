"""QA14 F8, a month's report: `GET /api/v1/facility-safety/report?month=YYYY-MM` and its CSV.

The pure parts (the month on the Seoul clock, alarm, grade and task figures) with hand-made inputs; then a real
ucity on a fake clock, whose alarms, grades, tasks and audited changes of a month the report must count.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.domains.facility_safety.support import OFFICER, TENANT, Site, domain_settings
from tests.domains.facility_safety.test_qa5c_plausibility import FACILITY, NOW, send
from tests.domains.facility_safety.test_qa14_api import settings, two_tilts
from ucity.core.clock import FakeClock
from ucity.core.errors import BadRequest, NotFound
from ucity.domains.facility_safety.report import alarm_figures, grade_figures, month_of, task_figures
from ucity.domains.facility_safety.tasks import Task
from ucity.server import create_app

SEOUL = "Asia/Seoul"


def test_a_month_runs_from_midnight_to_midnight_in_seoul() -> None:
    now = datetime(2027, 1, 10, 3, 0, tzinfo=UTC)
    month = month_of("2026-11", now, SEOUL)
    assert (month.start, month.end) == (datetime(2026, 10, 31, 15, 0, tzinfo=UTC), datetime(2026, 11, 30, 15, 0, tzinfo=UTC))
    assert not month.partial and month.to_wire()["fromLocal"] == "2026-11-01 00:00:00"
    # 2026-11-30 15:30 UTC is 1 December 00:30 in Seoul: December's
    assert not month.holds("2026-11-30T15:30:00Z") and month.holds("2026-11-30T14:59:59Z")
    assert month.holds("2026-10-31T15:00:00Z") and not month.holds("2026-10-31T14:59:59Z")
    december = month_of("2026-12", now, SEOUL)
    assert december.end == datetime(2026, 12, 31, 15, 0, tzinfo=UTC)


def test_without_a_month_the_last_complete_one_and_the_current_one_ends_now() -> None:
    # 2027-01-01 02:00 in Seoul (still 31 December in UTC): the last complete month is December
    now = datetime(2026, 12, 31, 17, 0, tzinfo=UTC)
    assert month_of(None, now, SEOUL).label == "2026-12"
    current = month_of("2027-01", now, SEOUL)
    assert current.partial and current.end == now
    assert month_of(None, datetime(2026, 1, 15, tzinfo=UTC), SEOUL).label == "2025-12"


@pytest.mark.parametrize("text", ["2026-13", "2026-00", "26-11", "2026/11", "november", "2027-02"])
def test_a_month_that_is_malformed_or_has_not_begun_is_refused(text: str) -> None:
    with pytest.raises(BadRequest) as err:
        month_of(text, datetime(2027, 1, 10, tzinfo=UTC), SEOUL)
    assert " / " in str(err.value)  # Korean and English


def test_alarm_figures() -> None:
    def alarm(level: str | None, raised: str, acked: str | None = None, cleared: str | None = None,
              status: str = "closed", outcome: str | None = None, rule: str = "shm-tilt") -> dict[str, Any]:
        return {"level": level, "raised_at": raised, "acked_at": acked, "cleared_at": cleared, "status": status,
                "outcome": outcome, "rule_id": rule}

    figures = alarm_figures([
        alarm("caution", "2026-11-02T00:00:00Z", "2026-11-02T00:10:00Z", "2026-11-02T02:00:00Z", outcome="real"),
        alarm("caution", "2026-11-03T00:00:00Z", "2026-11-03T00:30:00Z", outcome="false-device"),
        alarm("warning", "2026-11-04T00:00:00Z", "2026-11-04T01:30:00Z", status="active-acknowledged"),
        alarm(None, "2026-11-05T00:00:00Z", status="active-unacknowledged", rule="device-offline")])
    assert figures["raised"] == 4
    assert figures["byLevel"] == {"caution": 2, "fault": 1, "warning": 1}
    assert figures["byRule"] == {"device-offline": 1, "shm-tilt": 3}
    assert figures["acknowledged"] == 3 and figures["minutesToAcknowledge"] == {"median": 30.0, "max": 90.0}
    assert figures["cleared"] == 1 and figures["minutesToClear"] == {"median": 120.0, "max": 120.0}
    assert figures["closedAsFalse"] == 1 and figures["stillActive"] == 2
    empty = alarm_figures([])
    assert empty["raised"] == 0 and empty["minutesToAcknowledge"] == {"median": None, "max": None}


def test_grade_figures_give_the_grade_at_both_ends_and_each_change() -> None:
    month = month_of("2026-11", datetime(2027, 1, 1, tzinfo=UTC), SEOUL)
    rows = [{"at": "2026-10-20T17:00:00Z", "dataSafetyGrade": "B", "dataSafetyGradeStatus": "ok"},
            {"at": "2026-11-01T17:00:00Z", "dataSafetyGrade": "B", "dataSafetyGradeStatus": "ok"},
            {"at": "2026-11-10T17:00:00Z", "dataSafetyGrade": "C", "dataSafetyGradeStatus": "ok",
             "reasons": []},
            {"at": "2026-11-20T17:00:00Z", "dataSafetyGrade": None, "dataSafetyGradeStatus": "insufficient-data",
             "provisionalGrade": "C", "reasons": ["completeness 0.50 < 0.80"]}]
    figures = grade_figures(rows, month)
    assert figures["atStart"]["grade"] == "B" and figures["atStart"]["atLocal"] == "2026-10-21 02:00:00"
    assert figures["atEnd"]["status"] == "insufficient-data" and figures["atEnd"]["provisionalGrade"] == "C"
    assert figures["gradings"] == 3
    assert [(c["from"], c["to"], c["status"]) for c in figures["changes"]] == [
        ("B", "C", "ok"), ("C", None, "insufficient-data")]
    assert figures["changes"][1]["reasons"] == ["completeness 0.50 < 0.80"]
    assert grade_figures([], month) == {"atStart": None, "atEnd": None, "gradings": 0, "changes": []}


def test_task_figures() -> None:
    month = month_of("2026-11", datetime(2027, 1, 1, tzinfo=UTC), SEOUL)

    def task(created: str, status: str, closed: str | None, kind: str = "alarm") -> Task:
        return Task("t", "tenant", "f", kind, {"ko": "", "en": ""}, status, created, None, closed_at=closed)

    figures = task_figures([
        task("2026-10-20T00:00:00Z", "completed", "2026-11-05T00:00:00Z"),  # opened before, completed in
        task("2026-11-02T00:00:00Z", "cancelled", "2026-11-03T00:00:00Z", kind="manual"),
        task("2026-11-20T00:00:00Z", "open", None),  # still open at the month's end
        task("2026-11-25T00:00:00Z", "completed", "2026-12-02T00:00:00Z"),  # open at the end, completed after
        task("2026-12-05T00:00:00Z", "open", None)], month)  # after the month
    assert figures == {"opened": 3, "openedByKind": {"alarm": 2, "manual": 1}, "completed": 1, "cancelled": 1,
                       "openAtEnd": 2}


async def test_the_report_counts_a_months_alarms_grades_tasks_and_changes(tmp_path: Path) -> None:
    async with Site.running(settings(tmp_path), NOW) as site:
        a, b = await two_tilts(site)  # `a` leans 4.76 mrad: a tilt alarm
        await site.api("recompute_grade", "POST", facilityId=FACILITY)
        [raised] = [x for x in await site.alarms() if x["entity_id"] == a and x["rule_id"].startswith("shm-tilt")]
        raised_at = datetime.fromisoformat(raised["raised_at"].replace("Z", "+00:00"))
        await site.at((raised_at + timedelta(minutes=45)).timestamp())
        ack = await site.ucity.alarms_api.acknowledge(site.req("POST", "/", headers=OFFICER, alarmId=raised["id"]))
        assert ack.status == 200, ack.body
        task = (await site.api("create_task", "POST", {"facility": FACILITY, "kind": "manual", "title": "점검"},
                               headers=OFFICER)).body
        assert (await site.api("complete_task", "POST", {"summary": "이상 없음", "condition": "normal",
                                                               "inspector": "김 점검원"},
                               headers=OFFICER, taskId=task["id"])).status == 200
        assert (await site.api("detach_sensor", "DELETE", headers=OFFICER, facilityId=FACILITY,
                               sensorId=b)).status == 204
        await send(site, "q14-a", {"tx": 0.0047, "ty": 0.0, "t": 10}, NOW + timedelta(hours=2))

        resp = await site.api("month_report", params={"month": "2026-12"})
        assert resp.status == 200, resp.body
        made = resp.body
        assert made["period"]["month"] == "2026-12" and made["period"]["partial"] is True
        [section] = made["facilities"]
        assert section["facility"] == FACILITY and section["legalSafetyGrade"] == "C"
        alarms = section["alarms"]
        own = [x for x in await site.alarms() if not x["derived"]]  # a derived alarm restates its children's
        assert len(own) < len(await site.alarms())
        assert alarms["raised"] == len(own) and alarms["raised"] >= 1
        assert alarms["byRule"][raised["rule_id"]] == len([x for x in own if x["rule_id"] == raised["rule_id"]])
        assert alarms["acknowledged"] == 1 and alarms["minutesToAcknowledge"]["median"] == 45.0
        assert section["grade"]["atStart"] is None and section["grade"]["atEnd"]["grade"] is not None
        assert section["grade"]["changes"][0]["from"] is None
        tasks = site.fs.tasks.list(TENANT, facility=FACILITY)
        assert len(tasks) >= 2  # the manual one, and the one the warning opened (SHM-R5)
        assert section["tasks"]["opened"] == len(tasks) and section["tasks"]["openedByKind"]["manual"] == 1
        assert section["tasks"]["completed"] == 1 and section["tasks"]["openAtEnd"] == len(tasks) - 1
        assert [c["action"] for c in section["changes"]] == ["sensor-detached"]
        assert section["changes"][0]["sensor"] == b
        assert "officer" not in str(section["changes"])  # who: the audit log says, with its own permission
        assert made["district"]["alarms"]["raised"] == alarms["raised"]
        assert made["district"]["tasksCompleted"] == 1

        november = (await site.api("month_report", params={"month": "2026-11"})).body
        assert november["facilities"][0]["alarms"]["raised"] == 0
        assert november["facilities"][0]["grade"]["atEnd"] is None

        one = (await site.api("month_report", params={"month": "2026-12", "facility": FACILITY})).body
        assert [s["facility"] for s in one["facilities"]] == [FACILITY]
        with pytest.raises(NotFound):
            await site.api("month_report", params={"month": "2026-12", "facility": "urn:ngsi-ld:Building:x"})
        with pytest.raises(BadRequest):
            await site.api("month_report", params={"month": "2027-01"})

        csv = await site.api("export_report", params={"month": "2026-12"})
        assert csv.status == 200 and csv.media_type.startswith("text/csv")
        assert "facility-safety-report-2026-12.csv" in csv.headers["Content-Disposition"]
        lines = csv.body.decode("utf-8-sig").splitlines()
        assert lines[0].startswith("facility,name,facilityType") and len(lines) == 2
        assert lines[1].startswith(FACILITY) and "sensor-detached" in lines[1]


def test_the_report_over_http(tmp_path: Path) -> None:
    api = "/api/v1/facility-safety"
    with TestClient(create_app(domain_settings(tmp_path), clock=FakeClock(NOW)), base_url="http://127.0.0.1:8000") as c:
        assert c.post(f"{api}/facilities", json={"id": FACILITY, "name": "옹벽", "facilityType": "retainingWall",
                                                 "legalSafetyGrade": "B"}).status_code == 201
        ok = c.get(f"{api}/report")  # 2026-12-07: November, the last complete month
        assert ok.status_code == 200 and ok.json()["period"]["month"] == "2026-11"
        assert ok.json()["period"]["fromLocal"] == "2026-11-01 00:00:00"
        assert ok.json()["district"]["facilities"] == 1
        wrong = c.get(f"{api}/report", params={"month": "2026-13"})
        assert wrong.status_code == 400 and wrong.headers["content-type"].startswith("application/problem+json")
        assert "YYYY-MM" in wrong.json()["detail"] and "형식" in wrong.json()["detail"]
        assert c.get(f"{api}/report", params={"facility": "urn:ngsi-ld:Building:none"}).status_code == 404
        csv = c.get(f"{api}/export/report.csv", params={"month": "2026-12"})
        assert csv.status_code == 200 and csv.content.startswith(b"\xef\xbb\xbf") and FACILITY in csv.text
