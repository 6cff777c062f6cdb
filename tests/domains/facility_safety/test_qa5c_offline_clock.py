"""QA5 F12: an offline structural sensor is a maintenance fault of the domain (SHM-R6), told to its groups.
QA5 F8 (rest): the grade's level takes the newest reading even when the device clock runs ahead (KST sent
without an offset is 9 h in the future), within ingest's accepted bound, and says so.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from tests.domains.facility_safety.support import OFFICER, Site, domain_settings, iri
from tests.domains.facility_safety.test_qa5c_plausibility import FACILITY, NOW, by_rule, device, prepare, send
from ucity.domains.facility_safety.config import load_config
from ucity.domains.facility_safety.rules import OFFLINE_RULE, contact_documents, default_rules


def test_the_offline_rule_and_its_maintenance_chain_are_settings() -> None:
    cfg = load_config({})
    rules = {r.id: r for r in default_rules(cfg)}
    assert rules[OFFLINE_RULE].kind == "fault" and rules[OFFLINE_RULE].enabled
    _, chains = contact_documents(cfg, [OFFLINE_RULE])
    assert chains == [{"id": f"{OFFLINE_RULE}.fault", "rule": OFFLINE_RULE, "level": "fault",
                       "steps": [{"delay_s": 0.0, "group": "shm-facility-officer"},
                                 {"delay_s": 0.0, "group": "shm-maintenance-vendor"}]}]
    off = load_config({"health": {"offline_rule_enabled": False},
                       "escalation": {"levels": {"fault": ["shm-maintenance-vendor"]}}})
    assert not {r.id: r for r in default_rules(off)}[OFFLINE_RULE].enabled
    assert [s["group"] for s in contact_documents(off, [OFFLINE_RULE])[1][0]["steps"]] == ["shm-maintenance-vendor"]


async def test_an_offline_sensor_is_a_fault_told_to_the_maintenance_groups(tmp_path: Path) -> None:
    async with Site.running(domain_settings(tmp_path), NOW) as site:
        await prepare(site)
        entity = await device(site, "o-tilt", "tilt")
        await send(site, "o-tilt", {"tx": 0.0002, "t": 10}, NOW + timedelta(minutes=1))
        await site.at((NOW + timedelta(minutes=45)).timestamp())  # 3 intervals of 10 minutes silent
        faults = by_rule(await site.alarms(), entity)
        assert "device-offline" not in faults  # one alarm per offline sensor: the domain's (QA5 F13a)
        fault = faults[OFFLINE_RULE]
        assert (fault["kind"], fault["level"], fault["status"]) == ("fault", None, "active-unacknowledged")
        assert fault["notified_groups"] == ["shm-facility-officer", "shm-maintenance-vendor"]
        # its text shows the last report in Asia/Seoul (NOW + 1 min = 01:01 UTC, 10:01 in Seoul); stored in UTC
        shown = (NOW + timedelta(minutes=1, hours=9)).strftime("%Y-%m-%d %H:%M:%S")
        text = fault["evidence"]["value"]
        assert f"마지막 보고 {shown}, 한국 시간" in text and f"last reported {shown} Asia/Seoul" in text, text
        assert "Z)" not in text and "T0" not in text
        doc = await site.entity(entity)
        assert doc["attrs"][iri("sensorOffline")][0][iri("lastReported")]["value"].endswith("Z")  # stored UTC
        await send(site, "o-tilt", {"tx": 0.0002, "t": 10}, NOW + timedelta(minutes=50))  # back online
        assert by_rule(await site.alarms(), entity)[OFFLINE_RULE]["status"] != "active-unacknowledged"


async def test_the_grade_takes_a_reading_from_a_clock_ahead(tmp_path: Path) -> None:
    async with Site.running(domain_settings(tmp_path), NOW) as site:
        await prepare(site)
        entity = await device(site, "k-tilt", "tilt")
        ahead = timedelta(hours=9)  # KST sent without an offset
        for k in range(3):
            await send(site, "k-tilt", {"tx": 0.004, "t": 10}, NOW + ahead + timedelta(minutes=k),
                       clock=NOW + timedelta(minutes=k + 1))
        assert by_rule(await site.alarms(), entity)["shm-tilt"]["level"] == "warning"
        resp = await site.api("recompute_grade", "POST", facilityId=FACILITY, headers=OFFICER)
        [row] = resp.body["sensors"]
        level = row["channels"][0]["level"]
        assert level["band"] == "d" and level["score"] == 4, level  # warning, not "no data"
        assert 8 * 3600 < level["aheadS"] <= 9 * 3600, level
        assert row["events"]["count"] == 1  # the warning's excursion, dated ahead, counts
        assert "ahead of the platform clock" in resp.body["summary"]["en"]
        assert "장치 시계 확인" in resp.body["summary"]["ko"]
