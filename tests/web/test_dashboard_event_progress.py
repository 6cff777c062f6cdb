"""What stop 26 left on the dashboard (FIX-C), in Debian's Chromium, with `server.require_auth` on.

* The agencies' progress on an event (`agencyStatus` / `agencyReports` of the events API: acknowledged → dispatched
  → arrived → on-scene → completed) is in the event's panel, in its map icon's tooltip and in its alarm's row, in
  the page's language, times in KST (the browser in Berlin).
* An event an alarm made is named by its rule's name, not the code made of the rule's id (`type_name()`'s fallback).
* The alarm's entity row and the alarm list mask the id of a person's entity (a care household's id can be a name),
  the types being those the server says are personal (`/health`'s privacy component).
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.web import test_dashboard_qa16 as qa16
from tests.web.test_dashboard_qa16 import CHROMIUM, KIM, WAIT_MS, api, make, open_page, point, rule

server, browser, one_backend = qa16.server, qa16.browser, qa16.one_backend

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed"),
]


def kst(at: str) -> str:
    """HH:MM:SS KST of a UTC time of the API, as the page writes the time of day."""
    return datetime.fromisoformat(at.replace("Z", "+00:00")).astimezone(ZoneInfo("Asia/Seoul")).strftime("%H:%M:%S KST")


def event_of(url: str, tenant: str, alarm_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        events = httpx.get(f"{url}/api/v1/events", params={"limit": 500}, headers=api(tenant)).json()["events"]
        found = [e for e in events if e.get("alarm") == alarm_id]
        if found:
            return dict(found[0])
        assert time.monotonic() < deadline, "the alarm made no event"
        time.sleep(0.1)


async def test_the_agencies_progress_is_shown_in_the_panel_the_tooltip_and_the_list(server: Any, browser: Any) -> None:
    tenant = "progress"
    headers = api(tenant)
    agency = {"id": "fx-fire", "name": {"ko": "구로 소방서", "en": "Guro fire station"}, "kind": "fire",
              "services": ["119_DISPATCH", "IOT"]}
    made = httpx.put(f"{server.url}/api/v1/agencies/fx-fire", json=agency, headers=headers)
    assert made.status_code in (200, 201), made.text
    issued = httpx.post(f"{server.url}/api/v1/auth/tokens", json={"id": "fx-fire-room", "role": "agency",
                                                                   "agency": "fx-fire", "tenant": tenant},
                        headers=headers)
    assert issued.status_code == 201, issued.text
    room = {"Authorization": f"Bearer {issued.json()['token']}", "NGSILD-Tenant": tenant}
    # a 119 report of the fire station itself, and an alarm's event shared with it
    report = {"service": "119_DISPATCH", "typeCode": "fire", "level": "warning", "address": "디지털로 300",
              "location": {"lon": 126.8874, "lat": 37.4954}}
    created = httpx.post(f"{server.url}/api/v1/events", json=report, headers=room)
    assert created.status_code == 201, created.text
    fire = created.json()["id"]
    make(server.url, tenant, [rule("fx-gas", "FxValve", "ppm", "serious", 100)],
         [{"id": "urn:ngsi-ld:FxValve:v1", "type": "FxValve", "ppm": {"type": "Property", "value": 500},
           "location": point(126.86, 37.49)}], 1)
    alarm = httpx.get(f"{server.url}/api/v1/alarms", headers=headers).json()["alarms"][0]
    gas = event_of(server.url, tenant, alarm["id"])["id"]
    shared = httpx.post(f"{server.url}/api/v1/events/{gas}/linkages", json={"agency": "fx-fire"}, headers=headers)
    assert shared.status_code in (201, 202), shared.text
    for event_id, steps in ((fire, ("acknowledged", "dispatched", "arrived")), (gas, ("acknowledged", "dispatched"))):
        for step in steps:
            answer = httpx.post(f"{server.url}/api/v1/events/{event_id}/agency-reports", json={"status": step},
                                headers=room)
            assert answer.status_code == 201, answer.text
    fire_reports = httpx.get(f"{server.url}/api/v1/events/{fire}", headers=headers).json()["agencyReports"]
    gas_status = httpx.get(f"{server.url}/api/v1/events/{gas}", headers=headers).json()["agencyStatus"]["fx-fire"]

    page = await open_page(browser, server.url, KIM, f"/?tenant={tenant}")
    icon = f".evt-icon[data-event='{fire}']"
    await page.wait_for_selector(icon, timeout=WAIT_MS)
    title = await page.get_attribute(icon, "title") or ""
    assert title.endswith(f"· 구로 소방서: 현장 도착 {kst(fire_reports[-1]['at'])}"), title
    # the alarm's row in the list: the progress of its event
    row = f"#alarm-list [data-alarm-id='{alarm['id']}'] [data-role='agency-status']"
    await page.wait_for_selector(row, timeout=WAIT_MS)
    assert await page.text_content(row) == f"구로 소방서: 출동 {kst(gas_status['at'])}"
    # the panel: each agency's latest report and its steps, in order, with their times
    await page.click(icon)
    table = "#detail [data-role='ops'] [data-role='agency-status']"
    await page.wait_for_selector(table, timeout=WAIT_MS)
    steps = await page.text_content(f"{table} tr[data-agency='fx-fire'] .agency-steps")
    assert steps == " → ".join(f"{name} {kst(r['at'])}" for name, r in zip(("접수 확인", "출동", "현장 도착"),
                                                                          fire_reports, strict=True)), steps
    assert await page.get_attribute(f"{table} tr[data-agency='fx-fire']", "data-status") == "arrived"
    await page.click("[data-lang='en']")
    await page.wait_for_function(f"() => (document.querySelector(\"{table} .agency-steps\")?.textContent || '')"
                                 ".startsWith('Acknowledged')", timeout=WAIT_MS)
    assert "Arrived" in (await page.text_content(f"{table} .agency-latest") or "")
    assert "구로" not in (await page.text_content(f"{table} tr[data-agency='fx-fire'] td") or "")  # "Guro fire station"
    assert page.errors == []


async def test_rule_made_event_types_are_named_by_their_rule(server: Any, browser: Any) -> None:
    tenant = "typenames"
    make(server.url, tenant, [rule("qa-care-inactive", "TnProbe", "inactivityH", "serious", 24)],
         [{"id": "urn:ngsi-ld:TnProbe:t1", "type": "TnProbe", "inactivityH": {"type": "Property", "value": 30},
           "location": point(126.86, 37.49)}], 1)
    alarm = httpx.get(f"{server.url}/api/v1/alarms", headers=api(tenant)).json()["alarms"][0]
    event = event_of(server.url, tenant, alarm["id"])
    assert event["typeName"]["ko"] == "qa-care-inactive 규칙"  # the API names it by its rule too (ops/events.py type_name)
    page = await open_page(browser, server.url, KIM, f"/?tenant={tenant}")
    await page.evaluate("() => window.ucity.detail.showSituation('urn:ngsi-ld:TnProbe:t1')")
    line = f"#detail [data-role='event'][data-event-id='{event['id']}']"
    await page.wait_for_selector(line, timeout=WAIT_MS)
    text = await page.text_content(line) or ""
    assert "qa-care-inactive 규칙" in text and "qa_care_inactive" not in text, text
    # the alarm closed, the event open: the event's own icon (★) is named the same way
    closed = httpx.post(f"{server.url}/api/v1/alarms/{alarm['id']}/acknowledge", headers=api(tenant))
    assert closed.status_code == 200, closed.text
    httpx.post(f"{server.url}/api/v1/events/{event['id']}/status", json={"status": "acknowledged"}, headers=api(tenant))
    closed = httpx.post(f"{server.url}/api/v1/alarms/{alarm['id']}/close", json={"outcome": "real"}, headers=api(tenant))
    assert closed.status_code == 200, closed.text
    icon = f".evt-icon[data-event='{event['id']}']"
    await page.wait_for_selector(icon, timeout=WAIT_MS)
    title = await page.get_attribute(icon, "title") or ""
    assert title.endswith("IoT 서비스 경보 · qa-care-inactive 규칙"), title
    assert page.errors == []


async def test_a_care_households_id_is_masked_in_the_alarm_rows(server: Any, browser: Any) -> None:
    tenant = "masked"
    care = {"id": "urn:ngsi-ld:CareDevice:kim-younghee-home", "type": "CareDevice",
            "inactivityH": {"type": "Property", "value": 30}, "location": point(126.8303759, 37.4913842)}
    make(server.url, tenant, [rule("care-inactive", "CareDevice", "inactivityH", "serious", 24)], [care], 1)
    alarm = httpx.get(f"{server.url}/api/v1/alarms", headers=api(tenant)).json()["alarms"][0]
    page = await open_page(browser, server.url, KIM, f"/?tenant={tenant}")
    # the types the server says are personal reach the page (the privacy component of /health)
    await page.wait_for_function("() => window.ucity.health.state?.health?.components?.privacy", timeout=WAIT_MS)
    personal = await page.evaluate("() => window.ucity.health.state.health.components.privacy.personalEntityTypes")
    assert "CareDevice" in personal
    row = f"#alarm-list [data-alarm-id='{alarm['id']}']"
    await page.wait_for_selector(row, timeout=WAIT_MS)
    meta = await page.text_content(f"{row} .alarm-meta") or ""
    assert meta.startswith("CareDevice:k**-y*******-h***"), meta
    await page.click(f"{row} [data-action='details']")
    await page.wait_for_selector("#detail .alarm-detail .kv", timeout=WAIT_MS)
    assert "CareDevice:k**-y*******-h***" in (await page.text_content("#detail .alarm-detail .kv") or "")
    assert "younghee" not in (await page.text_content("#detail") or "")
    assert "younghee" not in (await page.text_content("#alarm-list") or "")
    assert page.errors == []


async def test_situation_icons_are_clustered_at_low_zoom_and_serious_ones_stay_visible(server: Any,
                                                                                       browser: Any) -> None:
    tenant = "storm"
    poles = [{"id": f"urn:ngsi-ld:StPole:p{n:02d}", "type": "StPole", "tilt": {"type": "Property", "value": 2.0},
              "location": point(126.8700 + (n % 6) * 0.0003, 37.4950 + (n // 6) * 0.0003)} for n in range(30)]
    valve = {"id": "urn:ngsi-ld:StValve:v1", "type": "StValve", "ppm": {"type": "Property", "value": 500},
             "location": point(126.8760, 37.4953)}  # beside the poles, not over them
    rules = [rule("st-tilt", "StPole", "tilt", "warning", 1.0), rule("st-gas", "StValve", "ppm", "serious", 100)]
    make(server.url, tenant, rules, [*poles, valve], 31)
    page = await open_page(browser, server.url, KIM, f"/?tenant={tenant}")
    await page.evaluate("() => window.ucity.map.map.setView([37.4956, 126.8708], 14, { animate: false })")
    clusters = ".evt-cluster[data-count]"
    counts = f"[...document.querySelectorAll('{clusters}')].map((el) => Number(el.dataset.count))"
    await page.wait_for_function(f"() => {counts}.reduce((a, b) => a + b, 0)"
                                 " + document.querySelectorAll(\".evt-icon[data-level='warning']\").length === 30",
                                 timeout=WAIT_MS)
    counted = await page.evaluate(f"() => {counts}")
    assert counted and max(counted) >= 10 and len(counted) <= 4, counted  # 30 icons: a few counts, not 30 on top
    assert all(level == "warning" for level in await page.evaluate(
        f"() => [...document.querySelectorAll('{clusters}')].map((el) => el.dataset.level)"))
    assert "상황" in (await page.get_attribute(clusters, "title") or "")
    # the serious one is never inside a count
    serious = ".evt-icon[data-situation='urn:ngsi-ld:StValve:v1'][data-level='serious']"
    assert await page.locator(serious).count() == 1
    # a click on a count zooms in until every situation has its own icon
    await page.locator(clusters).nth(counted.index(max(counted))).click()
    await page.wait_for_function("() => window.ucity.map.map.getZoom() >= 16", timeout=WAIT_MS)
    await page.evaluate("() => window.ucity.map.map.setView([37.4956, 126.8708], 16, { animate: false })")
    await page.wait_for_function("() => document.querySelectorAll(\".evt-icon[data-level='warning']\").length === 30",
                                 timeout=WAIT_MS)
    assert await page.locator(clusters).count() == 0
    assert await page.locator(serious).count() == 1
    assert page.errors == []
