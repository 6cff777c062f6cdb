"""QA16 leftovers (F6 second half, F7, F10, F12), in Debian's Chromium, with `server.require_auth` on.

* F7: a 119 report's address and details are in the operation-centre part of its panel (not the reporter).
* F6: after an event is cancelled its situation's panel says so, not "not an operation-centre event yet", both in the
  panel that cancelled it and in a page opened afterwards (the event is no longer among the open ones).
* F10: the map icon's tooltip names the asset (its name, else its id's last part), the alarm's rule by its name and
  the facility's class, sensor kind and member in words.
* F12: at 1366 px the open detail panel leaves the tab bar reachable; choosing a tab closes the panel.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.web import test_dashboard_qa16 as qa16
from tests.web.test_dashboard_qa16 import CHROMIUM, KIM, WAIT_MS, api, make, open_page, point, rule

# The QA16 module's fixtures (its server with sign-in on, Chromium, the embedded store only), used here by name.
server, browser, one_backend = qa16.server, qa16.browser, qa16.one_backend

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed"),
]


async def test_a_119_report_shows_its_address_and_details(server: Any, browser: Any) -> None:
    report = {"service": "119_DISPATCH", "typeCode": "fire", "level": "warning", "address": "디지털로 300",
              "location": {"lon": 126.8874, "lat": 37.4954}, "details": "3층 연기",
              "reporter": {"name": "홍길동", "phone": "010-1234-5678"}}
    created = httpx.post(f"{server.url}/api/v1/events", json=report, headers=api())
    assert created.status_code == 201, created.text
    event_id = created.json()["id"]
    page = await open_page(browser, server.url, KIM)
    await page.click(f".evt-icon[data-event='{event_id}']", timeout=WAIT_MS)
    facts = "#detail [data-role='ops'] [data-role='event-facts']"
    await page.wait_for_selector(facts, timeout=WAIT_MS)
    text = await page.text_content(facts) or ""
    assert "주소" in text and "디지털로 300" in text and "내용" in text and "3층 연기" in text, text
    body = await page.text_content("#detail-body") or ""
    assert "홍길동" not in body and "010-1234-5678" not in body  # the reporter is not shown
    assert page.errors == []


def event_of(url: str, alarm_id: str, tenant: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        events = httpx.get(f"{url}/api/v1/events", params={"limit": 500}, headers=api(tenant)).json()["events"]
        found = [e for e in events if e.get("alarm") == alarm_id]
        if found:
            return found[0]
        assert time.monotonic() < deadline, "the serious alarm made no event"
        time.sleep(0.1)


async def test_a_cancelled_event_is_said_to_be_cancelled(server: Any, browser: Any) -> None:
    tenant = "cancelled"
    make(server.url, tenant, [rule("gas-leak", "QaValve", "ppm", "serious", 100)],
         [{"id": "urn:ngsi-ld:QaValve:v1", "type": "QaValve", "ppm": {"type": "Property", "value": 500},
           "location": point(126.86, 37.49)}], 1)
    alarm_id = httpx.get(f"{server.url}/api/v1/alarms", headers=api(tenant)).json()["alarms"][0]["id"]
    event = event_of(server.url, alarm_id, tenant)
    page = await open_page(browser, server.url, KIM, f"/?tenant={tenant}")
    await page.evaluate("() => window.ucity.detail.showSituation('urn:ngsi-ld:QaValve:v1')")
    await page.wait_for_selector(f"#detail [data-role='event'][data-event-id='{event['id']}']", timeout=WAIT_MS)
    cancelled = httpx.post(f"{server.url}/api/v1/events/{event['id']}/status", json={"status": "cancelled", "note": "오보"},
                           headers=api(tenant))
    assert cancelled.status_code == 200, cancelled.text
    await page.evaluate("() => window.ucity.detail.refresh()")
    notice = "#detail [data-role='event-cancelled']"
    await page.wait_for_selector(notice, timeout=WAIT_MS)
    assert await page.text_content(notice) == "이 사건은 취소되었습니다: 운영센터에서 더 처리하지 않습니다"
    assert "아직 운영센터 이벤트가 아닙니다" not in (await page.text_content("#detail-body") or "")
    # a page opened afterwards finds it among the ended events
    fresh = await open_page(browser, server.url, KIM, f"/?tenant={tenant}")
    await fresh.wait_for_function("() => window.ucity.store.openAlarms().length === 1", timeout=WAIT_MS)
    await fresh.evaluate("() => window.ucity.detail.showSituation('urn:ngsi-ld:QaValve:v1')")
    await fresh.wait_for_selector(notice, timeout=WAIT_MS)
    assert "아직 운영센터 이벤트가 아닙니다" not in (await fresh.text_content("#detail-body") or "")
    assert page.errors == [] and fresh.errors == []


async def test_names_not_codes_on_the_map_and_in_the_panels(server: Any, browser: Any) -> None:
    tenant = "names"
    poles = [{"id": "urn:ngsi-ld:QaPole:pole-0002", "type": "QaPole", "tilt": {"type": "Property", "value": 2.0},
              "location": point(126.86, 37.49)},
             {"id": "urn:ngsi-ld:QaPole:pole-0003", "type": "QaPole", "tilt": {"type": "Property", "value": 2.0},
              "name": {"type": "Property", "value": "구로 3번 전주"}, "location": point(126.87, 37.49)}]
    make(server.url, tenant, [rule("qa-pole-tilt", "QaPole", "tilt", "warning", 1.0)], poles, 2)
    building = {"id": "urn:ngsi-ld:Building:qa-apt", "type": "Building", "name": {"type": "Property", "value": "QA 아파트"},
                "facilityClass": {"type": "Property", "value": "agingApartment"}, "location": point(126.88, 37.49)}
    made = httpx.post(f"{server.url}/ngsi-ld/v1/entities", json=building,
                      headers={**api(tenant), "Content-Type": "application/json"})
    assert made.status_code == 201, made.text
    page = await open_page(browser, server.url, KIM, f"/?tenant={tenant}")
    icons = ".evt-icon[data-situation^='urn:ngsi-ld:QaPole:']"
    await page.wait_for_function(f"() => document.querySelectorAll(\"{icons}\").length === 2", timeout=WAIT_MS)
    titles = {await page.get_attribute(f".evt-icon[data-situation='urn:ngsi-ld:QaPole:{n}']", "title")
              for n in ("pole-0002", "pole-0003")}
    assert titles == {"경계: pole-0002", "경계: 구로 3번 전주"}, titles
    await page.evaluate("() => window.ucity.detail.showSituation('urn:ngsi-ld:QaPole:pole-0002')")
    await page.wait_for_selector("#detail .alarm-detail", timeout=WAIT_MS)
    rows = await page.text_content("#detail .alarm-detail .kv") or ""
    assert "qa-pole-tilt 규칙" in rows and "qa-pole-tilt" not in rows.replace("qa-pole-tilt 규칙", ""), rows
    await page.evaluate("() => window.ucity.detail.showFacility('urn:ngsi-ld:Building:qa-apt')")
    facts = "() => (document.querySelector('#detail-body .kv')?.textContent || '').includes('노후 공동주택')"
    await page.wait_for_function(facts, timeout=WAIT_MS)
    assert "agingApartment" not in (await page.text_content("#detail-body .kv") or "")
    assert page.errors == []


async def test_the_tabs_stay_reachable_with_the_detail_open(server: Any, browser: Any) -> None:
    page = await open_page(browser, server.url, KIM)
    await page.evaluate("() => window.ucity.detail.showSituation('urn:ngsi-ld:QaPole:nowhere')")
    await page.wait_for_selector("#detail:not([hidden])", timeout=WAIT_MS)
    tabs = await page.locator(".tabs").bounding_box()
    panel = await page.locator("#detail").bounding_box()
    assert tabs and panel and panel["y"] >= tabs["y"] + tabs["height"] - 1, (tabs, panel)
    await page.click("#tab-btn-health", timeout=5_000)  # not covered: no "intercepts pointer events"
    assert await page.get_attribute("#tab-btn-health", "aria-selected") == "true"
    assert await page.is_hidden("#detail")
    assert await page.is_visible("#tab-health")
    assert page.errors == []
