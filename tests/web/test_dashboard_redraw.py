"""The dashboard's redraws and what stop 26 left (FIX-C), in Debian's Chromium, with `server.require_auth` on.

* A click is never lost to a redraw: the detail panel and the alarm list are drawn again on every change (the
  stream, the `web.refresh_s` poll, an action); a redraw with nothing new keeps every node, and one with something
  new waits while a button is pressed, so the press still becomes its click (here a redraw forced between
  pointerdown and pointerup).
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


def alarm_of(url: str, tenant: str, entity: str) -> dict[str, Any]:
    alarms = httpx.get(f"{url}/api/v1/alarms", params={"entity": entity}, headers=api(tenant)).json()["alarms"]
    assert alarms, entity
    return dict(alarms[0])


def wait_status(url: str, tenant: str, alarm_id: str, status: str) -> None:
    deadline = time.monotonic() + 10
    while (now := httpx.get(f"{url}/api/v1/alarms/{alarm_id}", headers=api(tenant)).json()["status"]) != status:
        assert time.monotonic() < deadline, f"{alarm_id}: {now}, not {status} (the click was lost)"
        time.sleep(0.1)


async def press_during_redraw(page: Any, button: str, redraw: str, change: Any) -> None:
    """Press `button` (pointerdown), change the data (`change()`), start the redraw `redraw` (JS, not awaited) and let
    it reach the point where it would swap the nodes (done, or waiting for the release), then release."""
    await page.evaluate("(sel) => { window.pressed = document.querySelector(sel); }", button)
    box = await page.locator(button).bounding_box()
    assert box
    await page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    await page.mouse.down()
    change()
    await page.evaluate(f"() => {{ window.redrawn = ({redraw}); }}")
    # the old page swapped the pressed node here (it is detached); this one waits for the release (data-draw-held)
    await page.wait_for_function("() => !window.pressed.isConnected || document.querySelector('[data-draw-held]')",
                                 timeout=WAIT_MS)
    await page.mouse.up()


async def test_a_click_is_not_lost_when_the_panel_or_the_list_is_redrawn(server: Any, browser: Any) -> None:
    tenant = "redraw"
    poles = [{"id": f"urn:ngsi-ld:RdPole:p{n}", "type": "RdPole", "tilt": {"type": "Property", "value": 2.0},
              "location": point(126.86 + n / 100, 37.49)} for n in (1, 2)]
    make(server.url, tenant, [rule("rd-tilt", "RdPole", "tilt", "warning", 1.0)], poles, 2)
    first, second = (alarm_of(server.url, tenant, f"urn:ngsi-ld:RdPole:p{n}") for n in (1, 2))
    page = await open_page(browser, server.url, KIM, f"/?tenant={tenant}")
    await page.evaluate("() => window.ucity.detail.showSituation('urn:ngsi-ld:RdPole:p1')")
    ack = f"#detail .alarm-detail[data-alarm-id='{first['id']}'] [data-action='acknowledge']"
    await page.wait_for_selector(ack, timeout=WAIT_MS)

    # a redraw with nothing new (the refresh poll, a stream event of another alarm) keeps every node
    await page.evaluate("(sel) => { document.querySelector(sel).kept = true; }", ack)  # not in the markup
    await page.evaluate("() => window.ucity.detail.draw(window.ucity.detail.view)")
    assert await page.evaluate("(sel) => document.querySelector(sel).kept === true", ack)

    # a redraw with something new (a colleague's comment) between the press and the release: the click still counts
    def comment() -> None:
        made = httpx.post(f"{server.url}/api/v1/alarms/{first['id']}/comments", json={"text": "동료 메모"},
                          headers=api(tenant))
        assert made.status_code in (200, 201), made.text
    await press_during_redraw(page, ack, "window.ucity.detail.draw(window.ucity.detail.view)", comment)
    wait_status(server.url, tenant, first["id"], "active-acknowledged")
    await page.wait_for_selector(f"#detail .alarm-detail[data-alarm-id='{first['id']}'][data-status='active-acknowledged']",
                                 timeout=WAIT_MS)
    assert "동료 메모" in (await page.text_content("#detail .alarm-detail") or "")  # the redraw was made after all

    # the same in the alarm list (reloaded on every stream event)
    await page.evaluate("() => window.ucity.detail.close()")
    row_ack = f"#alarm-list [data-alarm-id='{second['id']}'] [data-action='acknowledge']"
    await page.wait_for_selector(row_ack, timeout=WAIT_MS)
    await page.evaluate("(sel) => { document.querySelector(sel).kept = true; }", row_ack)
    await page.evaluate("() => window.ucity.alarms.load()")
    assert await page.evaluate("(sel) => document.querySelector(sel).kept === true", row_ack)

    def assign() -> None:
        made = httpx.post(f"{server.url}/api/v1/alarms/{second['id']}/assign", json={"assignee": "박 주무관"},
                          headers=api(tenant))
        assert made.status_code == 200, made.text
    await press_during_redraw(page, row_ack, "window.ucity.alarms.load()", assign)
    wait_status(server.url, tenant, second["id"], "active-acknowledged")
    await page.wait_for_function(f"() => (document.querySelector(\"#alarm-list [data-alarm-id='{second['id']}']\")"
                                 "?.textContent || '').includes('박 주무관')", timeout=WAIT_MS)
    assert page.errors == []
