"""The dashboard in a real browser: Debian's Chromium driven by Playwright, against a live ucity.

A small simulated city (ucity.sim at scale 0.05) is provisioned through the public APIs of a ucity
with the facility-safety domain (its SHM-R1 ladder) and a configured operator token and 119 agency; the
`wall-tilt` scenario then streams in fake time (the runner's clock advances instantly) while two
pages are open, so the alarms reach the browsers through the SSE stream exactly as in `ucity demo`.
The tests check what an operator sees and does: the map with its layers, a live `serious` alarm
within 2 s of being raised, acknowledging it in one page and seeing it change in the other, the
facility's charts with the ladder edges, the language switch. Screenshots go to test-artifacts/.

Chromium is Debian's (`apt-get install chromium`, scripts/test does it as root); Playwright's own
browser download is never used (the machines have no network for it).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.conftest import LiveServer
from ucity.core.clock import FakeClock
from ucity.core.config import load_settings
from ucity.sim.city import CityConfig, build_city
from ucity.sim.runner import RunConfig, Runner

playwright_api = pytest.importorskip("playwright.async_api")

SEOUL = ZoneInfo("Asia/Seoul")
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
OPERATOR = "상황실 김운영"  # Korean, as operators type it: sent percent-encoded (a header carries only Latin-1)
OPS_TOKEN = "uct_dashboard-test-operator-token-0123456789"  # a configured operator token (ops.tokens)
AUTH = {"Authorization": f"Bearer {OPS_TOKEN}"}
ADMIN_TOKEN = "uct_dashboard-test-admin-token-0123456789"  # the simulator's, as `ucity demo` has one
FACILITIES = "/api/v1/facility-safety/facilities"
# Issue 8: a serious alarm is on the map without reloading (the page is never reloaded here). How soon
# (2 s is the target) is printed, not asserted: a stopwatch in a test fails on a loaded CI machine though
# nothing is wrong. A live update that never comes still fails, after this generous wait.
LIVE_WAIT_MS = 30_000

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One live ucity for the module; no map tiles (no network): the plain background with the outline."""
    data = tmp_path_factory.mktemp("dashboard") / "data"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("UCITY_WEB__TILE_URL", "none")
        patch.setenv("UCITY_WEB__REFRESH_S", "2")  # layers and operation-center events, polled
        patch.delenv("UCITY_STORE__URL", raising=False)
        settings = load_settings(environment="test", data_dir=str(data), store={"group_commit_ms": 1.0},
                                 domains={"enabled": ["facility_safety"]}, ops={
            "grant_secret": "dashboard-test-grant-secret-0123456789", "pseudonym_secret": "dashboard-test-pseudonyms-0123",
            "tokens": [{"id": "op-kim", "token": OPS_TOKEN, "role": "operator", "name": OPERATOR}],
            "admin_token": ADMIN_TOKEN,
            "agencies": [{"id": "guro-119", "kind": "fire", "name": {"ko": "구로소방서", "en": "Guro fire station"},
                          "services": ["119_DISPATCH", "DISASTER"]}]})
        live = LiveServer(settings)  # the app (and its web settings) is built here
    with live:
        yield live


@pytest.fixture(autouse=True)
def one_backend(store_backend: str) -> None:
    """The dashboard reads only through the HTTP APIs, whose backend parity the API tests cover;
    one module-wide server on the embedded store keeps these browser tests short."""
    if store_backend != "sqlite":
        pytest.skip("browser tests run once, on the embedded store")


@pytest.fixture(scope="module")
def city() -> Any:
    return build_city(CityConfig(seed=7, scale=0.05, reference_date=date(2026, 11, 1)))


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


async def open_dashboard(browser: Any, url: str, width: int = 1366, height: int = 768, path: str = "/") -> Any:
    page = await browser.new_page(viewport={"width": width, "height": height}, locale="ko-KR",
                                  timezone_id="Europe/Berlin")  # not Seoul: the page must convert itself
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.errors = errors
    await page.goto(url + path)
    await page.wait_for_selector("body[data-ready='true']", timeout=20_000)
    await page.wait_for_selector("#live-state[data-state='open']", timeout=10_000)
    return page


async def shot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path))
    return path


def start_time() -> datetime:
    """Three hours ago on the 10-minute grid: measures in the past, charts in a sensible window."""
    now = datetime.now(UTC) - timedelta(hours=3)
    return now.replace(minute=now.minute - now.minute % 10, second=0, microsecond=0)


async def provision(server: LiveServer, city: Any) -> None:
    # with a token, as `ucity demo`: the simulator registers its cameras' stream URLs (events choose only cameras
    # that can give footage)
    async with Runner(city, RunConfig(url=server.url, stream=False, token=ADMIN_TOKEN)) as runner:
        await runner.run()


def tilt_ladder(url: str) -> list[dict[str, Any]]:
    """The facility-safety domain's SHM-R1 rule(s) on the tilt change, as the rules API lists them."""
    rules: list[dict[str, Any]] = httpx.get(f"{url}/api/v1/rules", params={
        "type": "StructuralSensor", "conditionType": "threshold", "category": "facility-safety"}).json()
    return [r for r in rules if "tilt" in r["condition"]["attribute"]]


async def stream_wall_tilt(server: LiveServer, city: Any, start: datetime) -> Any:
    """140 simulated minutes with the wall tilting from the start, in fake time (as fast as ucity takes it)."""
    clock = FakeClock(start)

    async def sleep(seconds: float) -> None:
        clock.advance(seconds)

    config = RunConfig(url=server.url, speed=60, duration_s=140, start=start, flush_s=10.0, provision=False,
                       scenarios=("wall-tilt@0",))
    async with Runner(city, config, clock=clock, sleep=sleep) as runner:
        # Only the structural sensors and parking spaces report: the wall's alarms need nothing else,
        # and 140 minutes of every market board would only make the test slow.
        runner.devices = {k: d for k, d in runner.devices.items() if d.profile.group in ("shm", "parking")}
        report = await runner.stream()
    assert report.stats.failed_measures == 0
    [binding] = report.bindings
    return binding


def serious_alarm(url: str, sensors: set[str]) -> dict[str, Any] | None:
    body = httpx.get(f"{url}/api/v1/alarms", params={"level": "serious", "derived": "false", "limit": 100}).json()
    found = [a for a in body["alarms"] if a["entity_id"].split("guro-")[-1] in sensors]
    return found[0] if found else None


async def wait_for(check: Any, what: str, timeout: float = 20.0) -> Any:
    """Poll `check` (the API) until it answers something true; the browsers keep running meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def alarm_of(url: str, alarm_id: str) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"{url}/api/v1/alarms/{alarm_id}").json()
    return body


def serious_since(alarm: dict[str, Any]) -> datetime:
    """When the alarm reached `serious` (raised at it, or escalated to it), from its audit trail."""
    entries = [h for h in alarm["history"] if h["action"] in ("raised", "escalated", "reactivated")
               and h.get("level") == "serious"]
    assert entries, alarm["history"]
    return datetime.fromisoformat(entries[0]["at"].replace("Z", "+00:00"))


# The page records when each alarm row and map icon first shows a level (Date.now(), UTC ms).
WATCH = """() => {
  window.__firstSeen = {};
  const note = () => {
    for (const el of document.querySelectorAll('[data-alarm-id][data-level="serious"], .evt-icon[data-level="serious"]')) {
      const key = (el.dataset.alarmId ? 'row:' + el.dataset.alarmId : 'icon:' + el.dataset.situation);
      if (!(key in window.__firstSeen)) window.__firstSeen[key] = Date.now();
    }
  };
  new MutationObserver(note).observe(document.body, {subtree: true, childList: true, attributes: true});
}"""


async def test_live_alarm_acknowledge_facility_chart_and_language(server: LiveServer, city: Any, browser: Any) -> None:
    started = time.monotonic()
    await provision(server, city)
    print(f"provisioned in {time.monotonic() - started:.1f} s")
    assert tilt_ladder(server.url), "the facility-safety domain ships the SHM-R1 tilt ladder"
    page = await open_dashboard(browser, server.url)
    other = await open_dashboard(browser, server.url)

    # -- the map: the district outline on a plain background and the layers, with their counts ------------
    assert await page.locator("#map.no-tiles").count() == 1 and await page.is_visible("#no-tiles")
    counts = {key: await page.text_content(f"[data-layer-count='{key}']") for key in ("cameras", "facilities", "parking", "care")}
    assert counts == {"cameras": str(len(city.cameras)), "facilities": str(len(city.facilities)),
                      "parking": str(len(city.parking_sites)), "care": str(len(city.homes))}
    assert await page.locator(".cluster-icon").count() > 0  # cameras clustered at district zoom
    outline = await page.evaluate("() => window.ucity.map.outlineLayer.getLatLngs()[0].length")
    assert outline >= 3
    await shot(page, "dashboard-map-ko")

    # -- a live alarm from the simulator: on the page once serious, without reloading ------------------------
    await page.evaluate(WATCH)
    await page.fill("#actor", OPERATOR)
    await page.dispatch_event("#actor", "change")
    started = time.monotonic()
    binding = await stream_wall_tilt(server, city, start_time())
    print(f"streamed 140 simulated minutes in {time.monotonic() - started:.1f} s")
    sensors = set(binding.devices)
    alarm = await wait_for(lambda: serious_alarm(server.url, sensors), "a serious alarm on the tilting wall")
    row = f"#alarm-list [data-alarm-id='{alarm['id']}']"
    await page.wait_for_selector(f"{row}[data-level='serious']", timeout=LIVE_WAIT_MS)
    icon = ".evt-icon[data-level='serious']"
    await page.wait_for_selector(icon, timeout=LIVE_WAIT_MS)
    full = alarm_of(server.url, alarm["id"])
    seen = await page.evaluate("() => window.__firstSeen")
    reached = serious_since(full).timestamp() * 1000
    row_delay = (seen[f"row:{alarm['id']}"] - reached) / 1000
    icon_delay = (min(v for k, v in seen.items() if k.startswith("icon:")) - reached) / 1000
    print(f"serious -> alarm row {row_delay * 1000:.0f} ms, map icon {icon_delay * 1000:.0f} ms (target: 2 s)")
    assert await page.is_visible("#cue") and "심각" in (await page.text_content("#cue-text") or "")
    await shot(page, "dashboard-live-alarm")

    # -- acknowledge in one page: the API has it, the other page sees it live ----------------------------------
    await page.click(f"{row} [data-action='acknowledge']")
    acked = await wait_for(lambda: (a := alarm_of(server.url, alarm["id"]))["status"] == "active-acknowledged" and a,
                           "the acknowledgement through the API")
    assert acked["acked_by"] == OPERATOR and acked["history"][-1]["action"] == "acknowledged"
    await other.wait_for_selector(f"#alarm-list [data-alarm-id='{alarm['id']}'][data-status='active-acknowledged']",
                                  timeout=LIVE_WAIT_MS)
    assert await other.text_content(f"#alarm-list [data-alarm-id='{alarm['id']}'] [data-role='status']") == "발생(확인)"
    assert await other.locator(f"#alarm-list [data-alarm-id='{alarm['id']}'] [data-action='acknowledge']").count() == 0

    # -- the situation and its audit trail, then the facility's charts with the ladder edges --------------------
    await page.click(f"{row} [data-action='details']")
    await page.wait_for_selector(f"#detail .alarm-detail[data-alarm-id='{alarm['id']}']")
    trail = await page.locator(f"#detail .alarm-detail[data-alarm-id='{alarm['id']}'] table.history tr").all_text_contents()
    assert any("확인" in line and OPERATOR in line for line in trail) and any("발생" in line for line in trail)
    # -- the operation centre: the alarm's event, its nearest cameras with distance, sharing with 119 -------------
    ops = "#detail [data-role='ops']"
    # No token yet: the section says so and the top bar's sign-in opens (the one place to enter a token).
    await page.wait_for_selector(f"{ops} [data-role='sign-in-needed']")
    assert await page.locator(f"{ops} input").count() == 0
    await page.wait_for_selector("#auth[data-state='signing-in'] #auth-form:not([hidden])")
    assert await page.get_attribute("#auth-token", "type") == "password"
    assert await page.get_attribute("#auth-token", "autocomplete") == "off"
    await page.fill("#auth-token", OPS_TOKEN)
    await page.click("#auth-form button[type='submit']")
    await page.wait_for_selector("#auth[data-state='signed-in'] #auth-user:not([hidden])")
    assert await page.text_content("#auth-user") == f"{OPERATOR} · 운영자"
    assert await page.evaluate("() => sessionStorage.getItem('ucity.token')") == OPS_TOKEN
    assert await page.evaluate("() => localStorage.getItem('ucity.token')") is None
    await page.wait_for_selector(f"{ops} [data-role='cameras'] tr[data-camera]")
    event_id = await page.get_attribute(f"{ops} [data-role='event']", "data-event-id")
    event = httpx.get(f"{server.url}/api/v1/events/{event_id}", headers=AUTH).json()
    assert event["level"] in ("warning", "serious") and event["status"] == "received"  # made at warning (PLAT-R9)
    nearest = httpx.get(f"{server.url}/api/v1/events/{event_id}/cameras", headers=AUTH).json()["cameras"]
    shown = await page.locator(f"{ops} [data-role='cameras'] tr[data-camera]").evaluate_all(
        "rows => rows.map(r => [r.dataset.camera, Number(r.dataset.distance)])")
    assert shown == [[c["id"], c["distanceM"]] for c in nearest] and len(shown) >= 1
    assert [d for _, d in shown] == sorted(d for _, d in shown)  # nearest first (PLAT-R3)
    await page.select_option(f"{ops} select[name='agency']", "guro-119")
    await page.fill(f"{ops} input[name='purpose']", "현장 확인")
    await page.click(f"{ops} [data-action='share']")
    grants = await wait_for(lambda: httpx.get(f"{server.url}/api/v1/grants", params={"event": event_id},
                                              headers=AUTH).json()["grants"], "the grant through the API", 5)
    [grant] = grants
    assert grant["agency"] == "guro-119" and grant["status"] == "active" and grant["issuedBy"] == "operator:op-kim"
    assert grant["cameras"] == [c for c, _ in shown[:3]] and grant["purpose"] == "현장 확인"
    await page.wait_for_selector(f"{ops} [data-role='audit'] tr[data-kind='grant'][data-action='issued']")
    # the trail in words, not codes (QA7): the share, and the status change it made with its from -> to
    audit = f"{ops} [data-role='audit']"
    assert await page.text_content(f"{audit} tr[data-kind='grant'][data-action='issued'] td:nth-child(2)") == "영상 공유"
    moved = f"{audit} tr[data-kind='event'][data-action='status']"
    assert await page.text_content(f"{moved} td:nth-child(2)") == "상태 변경"
    assert (await page.text_content(f"{moved} td:nth-child(4)")).startswith("접수 → 영상 공유 중")
    await shot(page, "dashboard-event")
    # An event that no alarm stands for (a 112 report) gets its own icon once the page has the token.
    report = {"service": "112_DISPATCH", "typeCode": "assault", "level": "caution", "location": {"lon": 126.86, "lat": 37.49},
              "details": "폭행 신고"}
    created = httpx.post(f"{server.url}/api/v1/events", json=report, headers=AUTH)
    assert created.status_code == 201, created.text
    report_id = created.json()["id"]
    await page.wait_for_selector(f".evt-icon[data-event='{report_id}'][data-level='caution']", timeout=LIVE_WAIT_MS)
    facility = alarm["parent_id"]
    graded = httpx.post(f"{server.url}{FACILITIES}/{facility}/grade", headers={"X-Ucity-Actor": quote(OPERATOR)})
    assert graded.status_code == 200, graded.text  # the data grade now, with its explanation
    grade = graded.json()["grade"]
    await page.click(f"#detail .alarm-detail[data-alarm-id='{alarm['id']}'] [data-action='facility']")
    await page.wait_for_selector("#detail[data-kind='facility'] figure[data-sensor] svg path.series")
    figure = page.locator(f"figure[data-sensor='{alarm['entity_id']}']")  # the sensor that tilted
    edge_levels = set(await figure.locator("line.edge").evaluate_all("els => els.map(e => e.dataset.level)"))
    assert {"warning", "serious"} <= edge_levels  # the data crossed them: both edges are drawn
    path = await figure.locator("path[data-series='tiltX']").get_attribute("d") or ""
    assert len(re.findall(r"[ML]", path)) >= 12  # 140 minutes at one sample per 10 minutes
    assert await page.locator("figure[data-sensor='temperature'] path.series").count() >= 1
    await shot(page, "dashboard-facility")
    # The facility-safety API's part: data grade, its explanation naming the sensor, inspections.
    detail = httpx.get(f"{server.url}{FACILITIES}/{facility}").json()
    assert detail["grade"]["grade"] == grade  # the explanation of the grade just computed
    assert await page.text_content("[data-role='data-grade'] .grade") == (grade or "–")
    assert await page.text_content("[data-role='explanation'] p") == detail["grade"]["summary"]["ko"]
    assert await page.locator(f"[data-role='explanation'] tr[data-sensor='{alarm['entity_id']}']").count() == 1
    # the grade's state and coverage (QA5 F4), so that a withheld grade is not read as "no data"
    state = page.locator("[data-role='data-grade'] + [data-role='grade-status']")
    assert await state.get_attribute("data-status") == detail["grade"]["status"]
    cov = detail["grade"]["coverage"]
    assert f"{cov['attached']}개 중 {cov['scored']}개 ({int(cov['share'] * 100 + 0.5)}%" in (await state.text_content() or "")
    rows = await page.locator("[data-role='inspections'] tr").all_text_contents()
    assert len(rows) == len(detail["inspections"]) >= 1
    assert all(f"{i['due'] or '–'}" in row for i, row in zip(detail["inspections"], rows, strict=True)), rows
    await page.eval_on_selector("#detail-body", "el => { el.scrollTop = el.scrollHeight; }")
    await shot(page, "dashboard-facility-grade")

    # the operator is told of the new report (QA7 F11) and works it from its panel: acknowledges it, shares footage
    # with 119, and revokes the share from the event's grants table
    arrival = await page.wait_for_selector("[data-role='ops-arrival']")
    assert "새 신고" in (await arrival.text_content() or "")
    # the icon and the panel name the event in words (QA7): service and type, not "assault" or "CityEvent:<hex>"
    assert await page.get_attribute(f".evt-icon[data-event='{report_id}']", "title") == "주의: 112 긴급출동 지원 · 폭행"
    await page.click(f".evt-icon[data-event='{report_id}']")
    await page.wait_for_selector(f"{ops} [data-role='event'][data-event-id='{report_id}']")
    assert await page.text_content("#detail-title") == "상황 상세 · 112 긴급출동 지원 · 폭행"
    assert await page.locator("#detail h3", has_text="이 상황의 알람").count() == 0  # no alarm made it: no empty heading
    await page.fill(f"{ops} [data-role='event-status'] input[name='note']", "현장 확인 요청 010-2345-6789")
    await page.click(f"{ops} [data-role='event-status'] button[data-status='acknowledged']")
    await wait_for(lambda: httpx.get(f"{server.url}/api/v1/events/{report_id}", headers=AUTH).json()["status"]
                   == "acknowledged" or None, "the report acknowledged from the dashboard", 5)
    await page.wait_for_selector(f"{ops} [data-role='event'][data-event-id='{report_id}']")
    # the operator's note is kept on the event, not in the audit line (QA10 F3); the trail still shows it
    noted = f"{ops} [data-role='audit'] tr[data-kind='event'][data-action='status']"
    await page.wait_for_selector(f"{noted}:has-text('현장 확인 요청')")
    await page.select_option(f"{ops} select[name='agency']", "guro-119")
    await page.click(f"{ops} [data-action='share']")
    grant_row = await page.wait_for_selector(f"{ops} [data-role='grants'] tr[data-status='active']")
    # the share moved the event to `sharing`: the panel says so (it read the event again), not the icon's "received"
    status = f"{ops} [data-role='event'][data-event-id='{report_id}'] [data-role='event-status-name']"
    await page.wait_for_selector(f"{status}[data-status='sharing']")
    assert await page.text_content(status) == "영상 공유 중"
    assert await page.locator(f"{ops} [data-role='event-status'] button[data-status='acknowledged']").count() == 0
    shared = await grant_row.get_attribute("data-grant")
    await page.click(f"{ops} [data-role='grants'] tr[data-grant='{shared}'] [data-action='revoke']")
    await wait_for(lambda: httpx.get(f"{server.url}/api/v1/grants/{shared}", headers=AUTH).json()["status"]
                   == "revoked" or None, "the share revoked from the dashboard", 5)
    await page.wait_for_selector(f"{ops} [data-role='grants'] tr[data-grant='{shared}'][data-status='revoked']")

    # -- English, live, and kept after a reload; times still in KST -------------------------------------------
    await page.click("#detail-close")
    await page.click("button[data-lang='en']")
    assert await page.get_attribute("html", "lang") == "en"
    assert await page.text_content("#tab-btn-alarms") == "Alarms"
    assert await page.text_content(f"{row} [data-role='status']") == "Active, acknowledged"
    assert (await page.text_content("#layers legend")) == "Map layers"
    assert (await page.text_content("#cue-text") or "").startswith("New Serious alarm: ")
    meta = await page.text_content(f"{row} .alarm-meta") or ""
    raised = datetime.fromisoformat(alarm["raised_at"].replace("Z", "+00:00")).astimezone(SEOUL)
    assert f"{raised:%H:%M:%S} KST" in meta  # the browser is in Berlin; the page shows Seoul time
    await shot(page, "dashboard-en")
    await page.reload()
    await page.wait_for_selector("body[data-ready='true']")
    assert await page.get_attribute("html", "lang") == "en" and await page.text_content("#tab-btn-health") == "System health"
    assert page.errors == [] and other.errors == []


CUE_SEQUENCE = """async () => {
  const { Cue } = await import('/static/js/cue.js');
  const el = (tag) => document.createElement(tag);
  const [banner, text, open, dismiss, toggle] = [el('div'), el('span'), el('button'), el('button'), el('button')];
  banner.hidden = true;
  const opened = [];
  const cue = new Cue({ banner, text, open, dismiss, toggle, onOpen: (a) => opened.push(a.id) });
  const alarm = (id, level) => ({ id, level, rule_id: 'rule-' + id, description: { ko: '알람 ' + id, en: 'alarm ' + id } });
  const states = [];
  const note = () => states.push({ shown: banner.hidden ? null : banner.dataset.alarmId, level: banner.className, more: cue.more,
                                   text: text.textContent });
  cue.show(alarm('a', 'warning')); note();   // 0: first one up
  cue.show(alarm('b', 'serious')); note();   // 1: more severe replaces, a counted
  cue.show(alarm('c', 'warning')); note();   // 2: less severe does not hide the serious one
  cue.show(alarm('a', 'serious')); note();   // 3: a escalated: equal level replaces
  open.click(); note();                      // 4: opening hides and resets the count
  cue.show(alarm('d', 'warning')); note();   // 5: after dismissal the next one is shown alone
  return { states, opened };
}"""


async def test_cue_keeps_the_most_severe_alarm_until_dismissed(server: LiveServer, browser: Any) -> None:
    page = await open_dashboard(browser, server.url)
    result = await page.evaluate(CUE_SEQUENCE)
    states = result["states"]
    assert [(s["shown"], s["level"], s["more"]) for s in states] == [
        ("a", "cue lvl-warning", 0), ("b", "cue lvl-serious", 1), ("b", "cue lvl-serious", 2),
        ("a", "cue lvl-serious", 3), (None, "cue lvl-serious", 0), ("d", "cue lvl-warning", 0)]
    assert states[2]["text"] == "새 심각 알람: 알람 b (외 2건)"
    assert states[5]["text"] == "새 경계 알람: 알람 d"
    assert result["opened"] == ["a"]
    assert page.errors == []


async def test_health_panel_tablet_width_and_labelled_controls(server: LiveServer, city: Any, browser: Any) -> None:
    if not httpx.get(f"{server.url}/ngsi-ld/v1/entities", params={"type": "Camera", "limit": 1}).json():
        await provision(server, city)
    page = await open_dashboard(browser, server.url, width=820, height=1180)
    await page.click("#tab-btn-health")
    await page.wait_for_selector("#health-body .health-block")
    devices = httpx.get(f"{server.url}/api/v1/devices/health").json()
    shown = await page.text_content("#health-body") or ""
    assert f"{devices['counts']['online']}" in shown
    assert await page.text_content("#chip-offline [data-value]") == str(devices["counts"]["offline"])
    # Every control has a name a screen reader can say (its text, aria-label, title or its label).
    unnamed = await page.evaluate("""() => [...document.querySelectorAll('button, input, select, [role=tab]')]
      .filter((el) => el.offsetParent !== null)
      .filter((el) => !((el.innerText || '').trim() || el.getAttribute('aria-label') || el.title || el.labels?.length
        || el.getAttribute('placeholder')))
      .map((el) => el.outerHTML.slice(0, 80))""")
    assert unnamed == []
    # Keyboard: the tabs move with the arrow keys.
    await page.focus("#tab-btn-health")
    await page.keyboard.press("ArrowRight")
    assert await page.evaluate("() => document.activeElement.id") == "tab-btn-alarms"
    assert await page.get_attribute("#tab-btn-alarms", "aria-selected") == "true"
    width = await page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 820  # no horizontal scrolling at tablet width
    await shot(page, "dashboard-tablet")
    assert page.errors == []


async def test_the_map_shows_every_open_alarm_past_the_first_thousand(server: LiveServer, browser: Any) -> None:
    """QA12: with 1,467 open alarms the map said "Situations 1000": it read one page of the alarms API (at most
    1,000) and the rest were not on it. 1,005 alarms raised by a rule in a tenant of their own are all shown."""
    tenant = {"NGSILD-Tenant": "paging"}
    rule = {"id": "paging-level", "name": {"ko": "수위 초과", "en": "Level over"}, "kind": "safety",
            "entityTypes": ["PagingProbe"], "enabled": True, "persistence": {"samples": 1},
            "condition": {"type": "threshold", "attribute": "waterLevel", "direction": "above",
                          "edges": [{"level": "caution", "at": 1.0}]}}
    assert httpx.post(f"{server.url}/api/v1/rules", json=rule, headers=tenant).status_code == 201
    count = 1005
    probes = [{"id": f"urn:ngsi-ld:PagingProbe:p{n:04d}", "type": "PagingProbe",
               "waterLevel": {"type": "Property", "value": 2.0},
               "location": {"type": "GeoProperty", "value": {"type": "Point",
                                                             "coordinates": [126.85 + n * 1e-5, 37.49]}}}
              for n in range(count)]
    for start in range(0, count, 500):
        answer = httpx.post(f"{server.url}/ngsi-ld/v1/entityOperations/create", json=probes[start:start + 500],
                            headers={**tenant, "Content-Type": "application/json"}, timeout=30)
        assert answer.status_code == 201, answer.text
    deadline = time.monotonic() + 60
    while (total := httpx.get(f"{server.url}/api/v1/alarms", params={"rule": "paging-level", "limit": 1},
                              headers=tenant).json()["total"]) < count and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert total == count
    page = await open_dashboard(browser, server.url, path="/?tenant=paging")
    await page.wait_for_function(f"() => document.querySelector('[data-layer-count=\"events\"]')?.textContent === "
                                 f"'{count}'", timeout=20_000)
    assert page.errors == []


async def test_facility_chart_draws_the_sensors_own_ladder_on_the_assessed_change(server: LiveServer,
                                                                                   browser: Any) -> None:
    """QA14 F4, F5, F9, F11: a tilt sensor reporting in mrad (unitCode C25) with a 21.3 mrad installation offset, on
    a facility with the default ladder, next to another facility with thresholds of its own. Its chart draws only its
    own ladder (not the other facility's rule), on the assessed change (3.78 mrad, not the raw 25.08 and never
    25080 "mrad"); the raw readings are on a chart of their own in mrad; numbers in mrad with 2 decimals; the
    next inspection is the domain's schedule, labelled; the detail's hourly series are asked for on clock hours."""
    tenant = {"NGSILD-Tenant": "charts"}
    actor = {**tenant, "X-Ucity-Actor": "qa14"}
    base = f"{server.url}{FACILITIES}"
    today = datetime.now(SEOUL).date()
    ids = {}
    for key, name in (("a", "옹벽 A"), ("b", "옹벽 B")):
        ids[key] = f"urn:ngsi-ld:Building:charts-{key}"
        body = {"id": ids[key], "name": name, "facilityType": "retainingWall", "facilityClass": 3,
                "legalSafetyGrade": "B", "legalSafetyGradeDate": str(today - timedelta(days=40)),
                "lastInspections": {"periodic": str(today - timedelta(days=40))},
                "location": {"type": "Point", "coordinates": [126.88, 37.5]}}
        assert httpx.post(base, json=body, headers=actor).status_code in (200, 201)
        sensor = {"sensor": f"urn:ngsi-ld:StructuralSensor:charts-{key}1", "member": "main", "kind": "tilt",
                  "create": True, "baseline": {"tiltX": 21.3, "tiltY": 0.0}}
        attached = httpx.post(f"{base}/{ids[key]}/sensors", json=sensor, headers=actor)
        assert attached.status_code in (200, 201), attached.text
    # the other facility's own ladder: a rule of the same attribute that must not reach facility A's chart
    other = {"tilt": {"interest": 0.0008, "caution": 0.0012, "warning": 0.0025, "serious": 0.005}}
    assert httpx.put(f"{base}/{ids['b']}/thresholds", json=other, headers=actor).status_code == 200
    # the simulator's kind of due date on the record, which the panel must not show as the due date
    ngsi = {**tenant, "Content-Type": "application/json"}
    record = {"nextInspectionDate": {"type": "Property", "value": "2031-01-01"}}
    assert httpx.post(f"{server.url}/ngsi-ld/v1/entities/{ids['a']}/attrs", json=record, headers=ngsi).status_code == 204
    sensor_a = "urn:ngsi-ld:StructuralSensor:charts-a1"
    now = datetime.now(UTC).replace(microsecond=0)
    for n in range(6):
        at = (now - timedelta(minutes=10 * (6 - n))).isoformat().replace("+00:00", "Z")
        reading = {name: {"type": "Property", "value": value, "unitCode": "C25", "observedAt": at}
                   for name, value in (("tiltX", 25.0758), ("tiltY", 0.0))}
        wrote = httpx.post(f"{server.url}/ngsi-ld/v1/entities/{sensor_a}/attrs", json=reading, headers=ngsi)
        assert wrote.status_code == 204, wrote.text

    def assessed() -> Any:
        history = httpx.get(f"{server.url}/ngsi-ld/v1/temporal/entities/{sensor_a}",
                            params={"attrs": "tiltAssessed"}, headers=tenant).json()
        return len(history.get("tiltAssessed", [])) >= 6

    await wait_for(assessed, "the domain's assessed tilt")
    graded = httpx.post(f"{base}/{ids['a']}/grade", headers=actor)
    assert graded.status_code == 200, graded.text
    detail = httpx.get(f"{base}/{ids['a']}", headers=tenant).json()
    [wire] = detail["sensors"]
    own = {round(v * 1000, 4) for v in wire["ladder"]["edges"].values()}  # rad -> mrad
    foreign = {round(v * 1000, 4) for v in other["tilt"].values()}

    page = await open_dashboard(browser, server.url, path="/?tenant=charts")
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url) if FACILITIES in request.url else None)
    await page.evaluate(f"() => window.ucity.detail.showFacility('{ids['a']}')")
    figure = page.locator(f"figure[data-sensor='{sensor_a}']")
    await figure.locator("svg[data-role='assessed'] path.series").wait_for(state="attached")  # flat: no height
    assert await figure.get_attribute("data-ladder-rule") == wire["ladder"]["rule"]
    drawn = {round(float(v), 4) for v in await figure.locator("svg[data-role='assessed'] line.edge").evaluate_all(
        "els => els.map(e => e.dataset.at)")}
    assert drawn and drawn <= own and not drawn & foreign, (drawn, own)
    assert {3.3333, 6.6667} <= drawn  # the edges around the data: warning below it, serious above
    assert await figure.locator("svg[data-role='assessed']").get_attribute("data-unit") == "mrad"
    assert await figure.locator("svg[data-role='raw']").get_attribute("data-unit") == "mrad"
    assert await figure.locator("svg[data-role='raw'] line.edge").count() == 0  # raw readings: no ladder
    points = await figure.locator("svg[data-role='assessed'] path[data-series='tiltAssessed']").get_attribute("d") or ""
    assert len(re.findall(r"[ML]", points)) >= 6
    latest = await figure.locator("[data-role='latest']").text_content() or ""
    assert "tiltAssessed 3.78 mrad" in latest and "tiltX 25.08 mrad" in latest, latest
    labels = await figure.locator("svg[data-role='assessed'] text.edge-label").all_text_contents()
    assert "심각 6.67" in labels, labels
    # F9: the explanation's numbers as the charts show them, not 0.0037758 rad
    row = await page.locator(f"[data-role='explanation'] tr[data-sensor='{sensor_a}']").text_content() or ""
    assert re.search(r"tilt \d+\.\d\d mrad", row) and not re.search(r"\d\.\d{4,} ?rad", row), row
    # F11: the domain's schedule, labelled as such; the record's 2031-01-01 is not shown as the due date
    due = min(i["due"] for i in detail["inspections"] if i["due"])
    nxt = page.locator("#detail-body dl.kv [data-role='next-inspection']")
    assert await nxt.get_attribute("data-source") == "schedule" and due in (await nxt.text_content() or "")
    assert "2031-01-01" not in (await page.text_content("#detail-body dl.kv") or "")
    assert "다음 법정 점검 (점검 일정)" in (await page.text_content("#detail-body dl.kv") or "")
    [url] = [u for u in asked if u.split("?")[0].endswith(quote(ids["a"], safe=""))]
    query = dict(p.split("=", 1) for p in url.split("?", 1)[1].split("&"))
    assert query["period"] == "PT1H" and query["to"].endswith("%3A00%3A00Z") and query["from"].endswith("%3A00%3A00Z")
    # each instance in its own unit: degrees converted; a code the domain does not know is plotted as sent, named
    units = await page.evaluate("""async () => {
      const f = await import('/static/js/facility.js');
      const at = '2026-12-07T00:00:00Z';
      const history = { tiltX: [{ value: 0.5, unitCode: 'DD', observedAt: at }, { value: 7, unitCode: 'XYZ', observedAt: at }],
                        tiltY: { value: 0.001, observedAt: at } };
      return { raw: f.rawSeries('tilt', history).map((s) => [s.name, s.points.map((p) => +p[1].toFixed(3))]),
               crack: f.shown('crack', f.toDisplay('crack', 1500, '4H')) };
    }""")
    assert units == {"raw": [["tiltX", [8.727]], ["tiltX [XYZ]", [7]], ["tiltY", [1]]], "crack": "1.50 mm"}
    assert page.errors == []
