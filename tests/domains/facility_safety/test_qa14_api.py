"""QA14, the facility API's leftovers (and the dashboard's asks), on a real ucity with a fake clock:

* F9: the grade sentence gives tilt in mrad, crack in mm, PPV in mm/s with 2 decimals (never "0.00475835 rad");
  `sensors[].ladder` has a `display` ladder in those units, free of float noise (its `edges` stay exact);
* the dashboard: `sensors[].ladder.datasetId` is the instance of the assessed attribute the ladder watches;
* F11: without `from`, the detail's `series` buckets start on clock hours; each attribute of `series` has its unit;
* F12: a grade after a sensor was detached names that sensor (it no longer counts: the grade may move).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.domains.facility_safety.support import OFFICER, Site, domain_settings, iri
from tests.domains.facility_safety.test_qa5c_plausibility import FACILITY, NOW, device, prepare, send
from ucity.core.clock import parse_iso
from ucity.domains.facility_safety.grade import shown

# a few readings are enough here: completeness (QA14 F3) is not what these tests are about
THIN = {"min_completeness": 0.0}
MRAD_C25 = [{"object_id": "tx", "name": "tiltX", "type": "Number",
             "metadata": {"unitCode": {"type": "Text", "value": "C25"}}}]


def settings(tmp_path: Path) -> Any:
    return domain_settings(tmp_path, grade=THIN)


async def two_tilts(site: Site, lean: float = 0.00475835) -> tuple[str, str]:
    """Two main tilt sensors with 3 readings each: `a` leaning `lean` rad (level d), `b` still."""
    await prepare(site)
    a = await device(site, "q14-a", "tilt")
    b = await device(site, "q14-b", "tilt")
    for k in range(3):
        at = NOW + timedelta(minutes=10 * (k + 1))
        await send(site, "q14-a", {"tx": lean, "ty": 0.0, "t": 10}, at)
        await send(site, "q14-b", {"tx": 0.0, "ty": 0.0, "t": 10}, at)
    return a, b


def test_values_are_shown_in_the_dashboard_units() -> None:
    assert shown("tilt", 0.00475835) == "4.76 mrad"
    assert shown("crack", 0.41) == "0.41 mm"
    assert shown("vibration", 2.0100000000000002) == "2.01 mm/s"
    assert shown("tilt", 0.000365, sign=True) == "+0.36 mrad"


async def test_the_grade_sentence_gives_tilt_in_mrad_with_two_decimals(tmp_path: Path) -> None:
    async with Site.running(settings(tmp_path), NOW) as site:
        a, _ = await two_tilts(site)
        grade = (await site.api("recompute_grade", "POST", facilityId=FACILITY)).body
        row = next(r for r in grade["sensors"] if r["sensor"] == a)
        assert row["channels"][0]["unit"] == "rad"  # the numbers stay in the channel's unit
        assert row["channels"][0]["level"]["value"] == pytest.approx(0.00475835)
        assert "tilt 4.76 mrad -> level d" in grade["summary"]["en"], grade["summary"]["en"]
        assert "기울기 4.76 mrad → 수준 d" in grade["summary"]["ko"], grade["summary"]["ko"]
        assert " rad " not in grade["summary"]["en"] and "0.00475835" not in grade["summary"]["en"]


async def test_the_sensor_ladder_is_tidy_has_a_display_ladder_and_names_its_dataset(tmp_path: Path) -> None:
    async with Site.running(settings(tmp_path), NOW) as site:
        a, _ = await two_tilts(site)
        detail = (await site.api("get_facility", facilityId=FACILITY)).body
        ladder = next(s for s in detail["sensors"] if s["id"] == a)["ladder"]
        assert ladder["rule"] == "shm-tilt" and ladder["unit"] == "rad" and ladder["datasetId"] is None
        assert ladder["edges"]["interest"] == 1 / 750 and ladder["edges"]["caution"] == 0.002  # what the rule compares
        assert ladder["display"]["unit"] == "mrad"
        assert ladder["display"]["edges"] == {"interest": 1.33, "caution": 2.0, "warning": 3.33, "serious": 6.67}
        # the facility's own ladder: its instance of tiltAssessed is the one named
        ok = await site.api("put_thresholds", "PUT", {"tilt": {"interest": 0.0015, "caution": 0.0025,
                                                               "warning": 0.004, "serious": 0.008}},
                            headers=OFFICER, facilityId=FACILITY)
        assert ok.status == 200, ok.body
        await send(site, "q14-a", {"tx": 0.003, "ty": 0.0, "t": 10}, NOW + timedelta(minutes=50))
        ladder = next(s for s in (await site.api("get_facility", facilityId=FACILITY)).body["sensors"]
                      if s["id"] == a)["ladder"]
        written = [i.get("datasetId") for i in (await site.entity(a))["attrs"][iri("tiltAssessed")]]
        assert ladder["datasetId"] is not None and written == [ladder["datasetId"]], (ladder, written)
        assert ladder["edges"]["interest"] == 0.0015 and ladder["display"]["edges"]["serious"] == 8.0


async def test_series_without_from_start_on_clock_hours_and_name_their_units(tmp_path: Path) -> None:
    async with Site.running(settings(tmp_path), NOW) as site:
        await prepare(site)
        dev = await device(site, "q14-mrad", "tilt", MRAD_C25)
        for k in range(3):
            await send(site, "q14-mrad", {"tx": 2.5, "t": 10}, NOW + timedelta(minutes=7 + 20 * k))
        await site.at((NOW + timedelta(hours=2, minutes=20, seconds=25.3)).timestamp())
        series = (await site.api("get_facility", facilityId=FACILITY)).body["series"]
        assert parse_iso(series["from"]) == parse_iso("2026-11-30T03:00:00Z"), series["from"]  # 7 d before 03:20:25
        mine = series["sensors"][dev]
        # the readings at 01:07, 01:27 and 01:47 are one bucket of the clock hour 01:00 (not 00:20:25 .. 01:20:25)
        assert [parse_iso(b["at"]) for b in mine["attributes"]["tiltX"]] == [NOW]
        assert mine["units"]["tiltX"] == {"unit": "mrad", "unitCode": "C25", "source": "unitCode"}
        assert mine["units"]["tiltAssessed"]["unit"] == "rad"
        assert mine["units"]["temperature"] == {"unit": "°C", "unitCode": None, "source": "default"}
        # a day period starts at Seoul midnight
        daily = (await site.api("get_facility", params={"period": "P1D"}, facilityId=FACILITY)).body["series"]
        assert parse_iso(daily["from"]) == parse_iso("2026-11-29T15:00:00Z"), daily["from"]
        # a given `from` is kept as given
        given = (await site.api("get_facility", params={"from": "2026-12-07T01:05:00Z"}, facilityId=FACILITY))
        assert parse_iso(given.body["series"]["from"]) == parse_iso("2026-12-07T01:05:00Z")


async def test_a_grade_after_a_detachment_names_the_sensor_that_left(tmp_path: Path) -> None:
    async with Site.running(settings(tmp_path), NOW) as site:
        a, b = await two_tilts(site)
        before = (await site.api("recompute_grade", "POST", facilityId=FACILITY)).body
        assert "detached" not in before and "detached" not in before["summary"]["en"]
        await site.at((NOW + timedelta(hours=1)).timestamp())
        assert (await site.api("detach_sensor", "DELETE", headers=OFFICER, facilityId=FACILITY,
                               sensorId=a)).status == 204
        after = (await site.api("recompute_grade", "POST", facilityId=FACILITY)).body
        assert [r["sensor"] for r in after["sensors"]] == [b]
        assert [d["sensor"] for d in after["detached"]["sensors"]] == [a]
        assert after["detached"]["sensors"][0]["atLocal"] == "2026-12-07 11:00 (Asia/Seoul)"
        assert "Sensors detached since" in after["summary"]["en"] and a in after["summary"]["en"]
        assert "분리된 센서" in after["summary"]["ko"] and a in after["summary"]["ko"]
        assert "officer-kim" not in str(after)  # who did it is in the audit log, not in the explanation
        # stored on the facility as the explanation, so the dashboard's grade panel shows it too
        detail = (await site.api("get_facility", facilityId=FACILITY)).body
        assert detail["grade"]["detached"]["sensors"][0]["sensor"] == a
