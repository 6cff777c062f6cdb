"""QA16 (a night shift on the dashboard), in Debian's Chromium (Playwright), with `server.require_auth` on.

* F1: a serious care alarm followed by 110 newer minor ones: it is still in the alarm list (first, under "미확인
  경계·심각"), the count says how many of how many are shown, and "더 보기" brings the rest.
* F2: an operation-centre event about a care household (its alarm closed, the event open) is drawn at the care
  grid cell's centre, never at the home; a 112 report stays where it was reported.
* F4: the operator name typed in the top bar goes with sign-out: the next operator's actions are not audited under
  it, and with the field empty no made-up "operator" is sent.
* F5: chips that are not known say "—" with the reason (a reader's 403 on dead letters, the server away), not 0 or
  the last numbers.
* F6: "사건 취소" asks first, with a required reason that goes into the event's notes.
* F8 / F11: a situation of 10 alarms says "외 2건" (and shows them all on request); the assignee field keeps at most
  200 characters, refuses an empty name, and unassigning is its own button.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer
from ucity.core.config import load_settings

playwright_api = pytest.importorskip("playwright.async_api")

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
ADMIN = "uct_qa16-dashboard-admin-token-0123456789abcdef"
KIM = "uct_qa16-dashboard-kim-token-0123456789abcdefgh"
LEE = "uct_qa16-dashboard-lee-token-0123456789abcdefgh"
READER = "uct_qa16-dashboard-reader-token-0123456789abcde"
WAIT_MS = 30_000
HOME = [126.8303759, 37.4913842]  # the QA's care household

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data = tmp_path_factory.mktemp("dashboard-qa16") / "data"
    tokens = [{"id": "admin", "token": ADMIN, "role": "admin", "name": "관리자"},
              {"id": "op-kim", "token": KIM, "role": "operator", "name": "운영자 김"},
              {"id": "op-lee", "token": LEE, "role": "operator", "name": "운영자 이"},
              {"id": "viewer", "token": READER, "role": "reader", "name": "조회 전용"}]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("UCITY_WEB__TILE_URL", "none")
        patch.setenv("UCITY_WEB__REFRESH_S", "2")
        patch.delenv("UCITY_STORE__URL", raising=False)
        patch.delenv("UCITY_SERVER__REQUIRE_AUTH", raising=False)
        settings = load_settings(environment="test", data_dir=str(data), store={"group_commit_ms": 1.0},
                                 server={"require_auth": True},
                                 ops={"grant_secret": "qa16-dashboard-grant-secret-0123456789",
                                      "pseudonym_secret": "qa16-dashboard-pseudonyms-0123", "tokens": tokens})
        with LiveServer(settings) as live:
            yield live


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """Sign-in off (development): the alarm actions take the operator name typed in the top bar as the actor."""
    data = tmp_path_factory.mktemp("dashboard-qa16-open") / "data"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("UCITY_WEB__TILE_URL", "none")
        patch.delenv("UCITY_STORE__URL", raising=False)
        patch.delenv("UCITY_SERVER__REQUIRE_AUTH", raising=False)
        settings = load_settings(environment="test", data_dir=str(data), store={"group_commit_ms": 1.0},
                                 ops={"grant_secret": "qa16-dashboard-grant-secret-0123456789",
                                      "pseudonym_secret": "qa16-dashboard-pseudonyms-0123", "tokens": []})
        with LiveServer(settings) as live:
            yield live


@pytest.fixture(autouse=True)
def one_backend(store_backend: str) -> None:
    """The page reads only through the HTTP APIs (their backend parity is the API tests' concern)."""
    if store_backend != "sqlite":
        pytest.skip("browser tests run once, on the embedded store")


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


def api(tenant: str = "") -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN}", **({"NGSILD-Tenant": tenant} if tenant else {})}


async def open_page(browser: Any, url: str, token: str, path: str = "/") -> Any:
    """A signed-in dashboard (the top bar's sign-in), in Berlin's zone and Korean."""
    page = await browser.new_page(viewport={"width": 1366, "height": 768}, locale="ko-KR", timezone_id="Europe/Berlin")
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.errors = errors
    await page.goto(url + path)
    await page.wait_for_selector("body[data-ready='true']", timeout=20_000)
    await sign_in(page, token)
    return page


async def sign_in(page: Any, token: str) -> None:
    if await page.is_visible("#auth-open"):
        await page.click("#auth-open")
    await page.fill("#auth-token", token)
    await page.click("#auth-form button[type='submit']")
    await page.wait_for_selector("#auth[data-state='signed-in'] #auth-user:not([hidden])", timeout=WAIT_MS)


def rule(rule_id: str, entity_type: str, attribute: str, level: str, at: float) -> dict[str, Any]:
    return {"id": rule_id, "name": {"ko": f"{rule_id} 규칙", "en": f"{rule_id} rule"}, "kind": "safety",
            "entityTypes": [entity_type], "enabled": True, "persistence": {"samples": 1},
            "condition": {"type": "threshold", "attribute": attribute, "direction": "above",
                          "edges": [{"level": level, "at": at}]}}


def make(url: str, tenant: str, rules: list[dict[str, Any]], entities: list[dict[str, Any]], alarms: int) -> None:
    """Rules, then entities that break them; waits until the tenant has `alarms` alarms."""
    for r in rules:
        made = httpx.post(f"{url}/api/v1/rules", json=r, headers=api(tenant))
        assert made.status_code == 201, made.text
    for start in range(0, len(entities), 500):
        answer = httpx.post(f"{url}/ngsi-ld/v1/entityOperations/create", json=entities[start:start + 500],
                            headers={**api(tenant), "Content-Type": "application/json"}, timeout=30)
        assert answer.status_code == 201, answer.text
    wait_total(url, tenant, alarms)


def wait_total(url: str, tenant: str, alarms: int) -> None:
    deadline = time.monotonic() + 60
    while (total := httpx.get(f"{url}/api/v1/alarms", params={"limit": 1}, headers=api(tenant)).json()["total"]) < alarms:
        assert time.monotonic() < deadline, f"{total} alarms of {alarms}"
        time.sleep(0.1)


def point(lon: float, lat: float) -> dict[str, Any]:
    return {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}}


async def test_a_serious_care_alarm_stays_in_the_list_under_a_storm_of_minor_ones(server: LiveServer,
                                                                                   browser: Any) -> None:
    tenant = "storm"
    care = {"id": "urn:ngsi-ld:CareDevice:home-002-button", "type": "CareDevice",
            "inactivityH": {"type": "Property", "value": 30}, "location": point(*HOME)}
    make(server.url, tenant, [rule("care-inactive", "CareDevice", "inactivityH", "serious", 24)], [care], 1)
    poles = [{"id": f"urn:ngsi-ld:QaPole:pole-{n:04d}", "type": "QaPole", "tilt": {"type": "Property", "value": 2.0},
              "location": point(126.85 + n * 1e-4, 37.49)} for n in range(110)]
    make(server.url, tenant, [rule("pole-tilt", "QaPole", "tilt", "caution", 1.0)], poles, 111)
    care_alarm = httpx.get(f"{server.url}/api/v1/alarms", params={"rule": "care-inactive"}, headers=api(tenant)).json()
    care_id = care_alarm["alarms"][0]["id"]

    page = await open_page(browser, server.url, KIM, f"/?tenant={tenant}")
    row = f"#alarm-list [data-alarm-id='{care_id}']"
    await page.wait_for_selector(row, timeout=WAIT_MS)
    # first, under its own heading, though 110 alarms are newer: nothing to act on is pushed out of sight
    assert await page.locator("#alarm-list [data-alarm-id]").first.get_attribute("data-alarm-id") == care_id
    assert await page.get_attribute(row, "data-pinned") == "true"
    assert "미확인 경계·심각 알람 1건" in (await page.text_content("[data-role='urgent-head']") or "")
    count = page.locator("#alarm-count")
    assert await count.text_content() == "알람 111건 · 101건 표시 (전체 111건)"
    assert await page.locator("#alarm-list [data-alarm-id]").count() == 101
    assert await page.text_content("#alarm-list [data-action='more']") == "더 보기 (10건)"
    await page.click("#alarm-list [data-action='more']")
    await page.wait_for_selector("#alarm-count[data-shown='111']", timeout=WAIT_MS)
    assert await page.text_content("#alarm-count") == "알람 111건"
    assert await page.locator("#alarm-list [data-action='more']").count() == 0
    assert await page.locator(f"#alarm-list [data-alarm-id='{care_id}']").count() == 1  # once, not twice
    # acknowledged, it is no longer pinned: it takes its place among the newest (here: past the first 100)
    await page.click(f"{row} [data-action='acknowledge']")
    await page.wait_for_selector("#alarm-list:not(:has([data-role='urgent-head']))", timeout=WAIT_MS)
    assert await page.get_attribute(row, "data-pinned") == "false"
    # a filter that leaves no urgent alarm (level "caution") lists newest first, 100 at a time
    await page.select_option("#alarm-filters select[name='level']", "caution")
    await page.wait_for_selector("#alarm-count[data-shown='100'][data-total='110']", timeout=WAIT_MS)
    assert await page.locator(f"#alarm-list [data-alarm-id='{care_id}']").count() == 0
    # in English too
    await page.click("[data-lang='en']")
    assert await page.text_content("#alarm-count") == "110 alarms · showing 100 of 110"
    assert page.errors == []


async def test_a_care_event_is_drawn_at_its_cell_not_at_the_home(server: LiveServer, browser: Any) -> None:
    page = await open_page(browser, server.url, KIM)
    drawn = await page.evaluate("""(home) => {
      const map = window.ucity.map;
      const event = (id, entityId) => ({ id, entityId, level: 'serious', status: 'dispatched', service: 'IOT',
        typeCode: 'care', location: { type: 'Point', coordinates: home } });
      map.setOpsEvents([event('care-event', 'urn:ngsi-ld:CareDevice:home-002-button'),
                        event('home-event', 'urn:ngsi-ld:ElderlyHome:home-002'),
                        event('report', 'urn:ngsi-ld:CityEvent:abc')]);
      const out = {};
      const walk = (l) => { // the events layer holds groups (serious icons; the others' cluster layer)
        if (l.eachLayer) l.eachLayer(walk); else if (l.group) l.group.eachLayer(walk);
        const id = l.getElement?.()?.dataset.event; if (id) out[id] = l.getLatLng();
      };
      walk(map.layers.events);
      const flown = map.situationPoint({ key: 'urn:ngsi-ld:CareDevice:home-002-button', alarms: [],
        location: { type: 'Point', coordinates: home } });
      return { out, flown, cell: map.careCell };
    }""", HOME)
    cell = drawn["cell"]
    centre = [(int(HOME[0] // cell[0]) + 0.5) * cell[0], (int(HOME[1] // cell[1]) + 0.5) * cell[1]]
    for key in ("care-event", "home-event"):
        spot = drawn["out"][key]
        assert (spot["lng"], spot["lat"]) != (HOME[0], HOME[1])
        assert spot["lng"] == pytest.approx(centre[0], abs=1e-12) and spot["lat"] == pytest.approx(centre[1], abs=1e-12)
    assert drawn["flown"] == pytest.approx(centre, abs=1e-12)  # "위치" in its panel flies to the cell too
    assert (drawn["out"]["report"]["lng"], drawn["out"]["report"]["lat"]) == (HOME[0], HOME[1])  # not a person's home
    assert page.errors == []


async def test_the_operator_name_goes_with_sign_out(server: LiveServer, browser: Any) -> None:
    tenant = "handover"
    sensors = [{"id": f"urn:ngsi-ld:QaPole:h-{n}", "type": "QaPole", "tilt": {"type": "Property", "value": 2.0}}
               for n in range(2)]
    make(server.url, tenant, [rule("handover-tilt", "QaPole", "tilt", "caution", 1.0)], sensors, 2)
    first, second = (a["id"] for a in httpx.get(f"{server.url}/api/v1/alarms", headers=api(tenant)).json()["alarms"])
    page = await open_page(browser, server.url, KIM, f"/?tenant={tenant}")
    await page.fill("#actor", "김철수")
    await page.dispatch_event("#actor", "change")
    sent: list[dict[str, str]] = []
    page.on("request", lambda r: sent.append(r.headers) if r.method == "POST" and "/acknowledge" in r.url else None)
    await page.click(f"#alarm-list [data-alarm-id='{first}'] [data-action='acknowledge']")
    await page.wait_for_selector(f"#alarm-list [data-alarm-id='{first}'][data-status='active-acknowledged']",
                                 timeout=WAIT_MS)
    history = httpx.get(f"{server.url}/api/v1/alarms/{first}", headers=api(tenant)).json()["history"]
    assert history[-1]["actor"] == "operator:op-kim (김철수)"
    # handover: kim signs out, lee signs in at the same browser
    async with page.expect_navigation():
        await page.click("#auth-signout")
    await page.wait_for_selector("body[data-ready='true']", timeout=20_000)
    assert await page.input_value("#actor") == ""
    assert await page.evaluate("() => localStorage.getItem('ucity.actor')") is None
    await sign_in(page, LEE)
    await page.wait_for_selector(f"#alarm-list [data-alarm-id='{second}'] [data-action='acknowledge']", timeout=WAIT_MS)
    await page.click(f"#alarm-list [data-alarm-id='{second}'] [data-action='acknowledge']")
    await page.wait_for_selector(f"#alarm-list [data-alarm-id='{second}'][data-status='active-acknowledged']",
                                 timeout=WAIT_MS)
    history = httpx.get(f"{server.url}/api/v1/alarms/{second}", headers=api(tenant)).json()["history"]
    assert history[-1]["actor"] == "operator:op-lee"  # not kim's name, not a made-up "(operator)"
    assert "x-ucity-actor" in sent[0] and "x-ucity-actor" not in sent[-1]
    # a name typed under kim and left in storage is not lee's at the next sign-in either
    await page.evaluate("""() => { localStorage.setItem('ucity.actor', '김철수');
      localStorage.setItem('ucity.actor.owner', 'op-kim'); }""")
    await page.reload()
    await page.wait_for_selector("#auth[data-state='signed-in']", timeout=WAIT_MS)
    assert await page.input_value("#actor") == ""
    assert page.errors == []


async def test_health_chips_say_unknown_instead_of_a_number(server: LiveServer, browser: Any) -> None:
    page = await open_page(browser, server.url, READER)
    await page.wait_for_selector("#chip-offline[data-state='known']", timeout=WAIT_MS)
    # a reader may not read the dead letters (403): the failures are not known, not 0
    failures = page.locator("#chip-failures")
    assert await failures.get_attribute("data-state") == "unknown"
    assert await failures.locator("[data-value]").text_content() == "—"
    assert await failures.get_attribute("title") == "이 역할로는 볼 수 없음"
    assert "—" in (await page.text_content("#health-body") or "")
    # the server away: every chip says "—", why, and since when (not the last numbers as if current)
    await page.route("**/health", lambda route: route.abort())
    await page.route("**/api/v1/devices/health*", lambda route: route.abort())
    await page.evaluate("() => window.ucity.health.poll().catch((e) => window.ucity.health.fail(e))")
    for chip in ("chip-offline", "chip-ingest", "chip-failures"):
        assert await page.get_attribute(f"#{chip}", "data-state") == "unknown"
        assert await page.text_content(f"#{chip} [data-value]") == "—"
        title = await page.get_attribute(f"#{chip}", "title") or ""
        assert title.startswith("서버에 연결할 수 없습니다") and "마지막 갱신" in title, title
    await page.unroute("**/health")
    await page.unroute("**/api/v1/devices/health*")
    await page.evaluate("() => window.ucity.health.poll().catch((e) => window.ucity.health.fail(e))")
    assert await page.get_attribute("#chip-offline", "data-state") == "known"
    assert await page.get_attribute("#chip-offline", "title") is None
    assert page.errors == []


async def ask(page: Any, button: str, question: str) -> None:
    """Click `button` once and the question shows. The panel is drawn again at every refresh (2 s here), in place and
    never between a press and its click (tests/web/test_dashboard_redraw.py), so one click is enough."""
    await page.click(button)
    await page.wait_for_selector(question, state="visible", timeout=WAIT_MS)


async def test_cancelling_an_event_asks_first_with_a_reason(server: LiveServer, browser: Any) -> None:
    report = {"service": "112_DISPATCH", "typeCode": "assault", "level": "caution",
              "location": {"lon": 126.86, "lat": 37.49}, "details": "폭행 신고"}
    created = httpx.post(f"{server.url}/api/v1/events", json=report, headers=api())
    assert created.status_code == 201, created.text
    event_id = created.json()["id"]
    page = await open_page(browser, server.url, KIM)
    await page.click(f".evt-icon[data-event='{event_id}']", timeout=WAIT_MS)
    ops = "#detail [data-role='ops']"
    cancel = f"{ops} [data-role='event-status'] button[data-status='cancelled']"
    await page.wait_for_selector(cancel, timeout=WAIT_MS)
    confirm = f"{ops} [data-role='cancel-confirm']"

    def status() -> str:
        return str(httpx.get(f"{server.url}/api/v1/events/{event_id}", headers=api()).json()["status"])

    await ask(page, cancel, confirm)  # one click: only the question
    assert await page.get_attribute(cancel, "aria-expanded") == "true"
    assert "되돌릴 수 없습니다" in (await page.text_content(confirm) or "")
    await page.click(f"{confirm} [data-action='keep-event']")
    await page.wait_for_selector(confirm, state="hidden", timeout=WAIT_MS)
    await ask(page, cancel, confirm)
    await page.click(f"{confirm} [data-action='confirm-cancel']")  # no reason: refused by the form
    await asyncio.sleep(0.5)  # nothing is sent: what there is to see is the absence of a change
    assert status() == "received"
    await page.fill(f"{confirm} input[name='reason']", "중복 신고")
    await page.click(f"{confirm} [data-action='confirm-cancel']")
    deadline = time.monotonic() + 10
    while status() != "cancelled":
        assert time.monotonic() < deadline, "not cancelled"
        await asyncio.sleep(0.1)
    event = httpx.get(f"{server.url}/api/v1/events/{event_id}", headers=api()).json()
    assert [n.get("text") for n in event.get("notes", [])][-1:] == ["중복 신고"]
    assert page.errors == []


async def test_a_situation_of_ten_alarms_says_how_many_more_and_the_assignee_is_checked(server: LiveServer,
                                                                                         browser: Any) -> None:
    tenant = "many"
    rules = [rule(f"many-{n}", "ManyProbe", f"a{n}", "caution", 1.0) for n in range(10)]
    probe = {"id": "urn:ngsi-ld:ManyProbe:m1", "type": "ManyProbe", "location": point(126.86, 37.49),
             **{f"a{n}": {"type": "Property", "value": 2.0} for n in range(10)}}
    make(server.url, tenant, rules, [probe], 10)
    page = await open_page(browser, server.url, KIM, f"/?tenant={tenant}")
    await page.wait_for_function("() => window.ucity.store.openAlarms().length === 10", timeout=WAIT_MS)
    await page.evaluate("() => window.ucity.detail.showSituation('urn:ngsi-ld:ManyProbe:m1')")
    await page.wait_for_selector("#detail [data-role='more-alarms']", timeout=WAIT_MS)
    assert await page.locator("#detail .alarm-detail").count() == 8
    assert (await page.text_content("#detail [data-role='more-alarms']") or "").startswith("외 2건")
    await page.click("#detail [data-action='all-alarms']")
    await page.wait_for_function("() => document.querySelectorAll('#detail .alarm-detail').length === 10", timeout=WAIT_MS)
    assert await page.locator("#detail [data-role='more-alarms']").count() == 0

    block = "#detail .alarm-detail >> nth=0"
    alarm_id = await page.get_attribute(block, "data-alarm-id")

    def assignee() -> Any:
        return httpx.get(f"{server.url}/api/v1/alarms/{alarm_id}", headers=api(tenant)).json()["assignee"]

    field = page.locator(f"#detail .alarm-detail[data-alarm-id='{alarm_id}'] [data-role='assign'] input[name='assignee']")
    await field.fill("가" * 600)
    assert len(await field.input_value()) == 200  # as the API keeps
    await field.fill("박담당")
    await page.click(f"#detail .alarm-detail[data-alarm-id='{alarm_id}'] [data-action='assign']")
    unassign = f"#detail .alarm-detail[data-alarm-id='{alarm_id}'] [data-action='unassign']"
    await page.wait_for_selector(unassign, timeout=WAIT_MS)
    assert assignee() == "박담당"
    await field.fill("   ")  # an empty name does not unassign
    await page.click(f"#detail .alarm-detail[data-alarm-id='{alarm_id}'] [data-action='assign']")
    await asyncio.sleep(0.5)  # nothing is sent: what there is to see is the absence of a change
    assert assignee() == "박담당"
    await page.click(unassign)  # taking it off is its own, explicit action
    await page.wait_for_selector(f"{unassign}", state="detached", timeout=WAIT_MS)
    assert assignee() is None
    assert page.errors == []


async def test_with_sign_in_off_an_empty_operator_name_is_asked_for_not_made_up(open_server: LiveServer,
                                                                                  browser: Any) -> None:
    url = open_server.url
    make(url, "", [rule("open-tilt", "QaPole", "tilt", "caution", 1.0)],
         [{"id": "urn:ngsi-ld:QaPole:open-1", "type": "QaPole", "tilt": {"type": "Property", "value": 2.0}}], 1)
    alarm_id = httpx.get(f"{url}/api/v1/alarms").json()["alarms"][0]["id"]
    page = await browser.new_page(viewport={"width": 1366, "height": 768}, locale="ko-KR")
    await page.goto(url + "/")
    await page.wait_for_selector(f"#alarm-list [data-alarm-id='{alarm_id}'] [data-action='acknowledge']", timeout=WAIT_MS)
    assert await page.input_value("#actor") == ""
    await page.click(f"#alarm-list [data-alarm-id='{alarm_id}'] [data-action='acknowledge']")
    toast = await page.wait_for_selector(".toast", timeout=WAIT_MS)
    assert await toast.text_content() == "운영자 이름을 입력하세요 (이력에 남습니다)"
    assert await page.evaluate("() => document.activeElement.id") == "actor"
    assert httpx.get(f"{url}/api/v1/alarms/{alarm_id}").json()["status"] == "active-unacknowledged"  # nothing sent
    await page.fill("#actor", "김운영")
    await page.dispatch_event("#actor", "change")
    await page.click(f"#alarm-list [data-alarm-id='{alarm_id}'] [data-action='acknowledge']")
    await page.wait_for_selector(f"#alarm-list [data-alarm-id='{alarm_id}'][data-status='active-acknowledged']",
                                 timeout=WAIT_MS)
    assert httpx.get(f"{url}/api/v1/alarms/{alarm_id}").json()["history"][-1]["actor"] == "김운영"
