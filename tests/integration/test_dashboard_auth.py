"""The dashboard's one sign-in and its alarm stream read with fetch(), in Debian's Chromium (Playwright).

* The stream is read with fetch(), not EventSource: the token goes in the Authorization header, never in a
  URL, and a reconnection sends Last-Event-ID so the server replays what the page missed (auth off: the
  stream takes the header all the same, so this runs today).
* Its `text/event-stream` parser (static/js/sse.js) follows the WHATWG rules: CRLF / CR / LF, a CRLF split
  between two reads, comments, multi-line data, `id` that persists, `retry`, a BOM, a last event that never
  ended.
* With `server.require_auth` (every API needs a bearer token; helper H1's setting) a page without a token
  shows the sign-in in the top bar, loads the alarms and opens the stream once signed in, receives a raised
  alarm through it, signs out, and a `reader` sees the alarms but is told why acknowledging is refused.
  That test is skipped while the setting is not in the tree.
* A token revoked through /api/v1/auth/tokens while the page is signed in with it signs the page out: the
  alarms read with it leave the screen, the stream stops ("중지됨", not "재연결 중") and the top bar says the
  token is no longer valid. The sign-in's messages: an unknown token stays "unknown" when the next poll
  answers 401, a token of another tenant is told so (the server's 403 detail) with the `?tenant=` to use,
  and the tooltip of a refused attempt is gone once signed in.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pytest

from tests.conftest import LiveServer
from ucity.core.config import ServerSettings, load_settings

playwright_api = pytest.importorskip("playwright.async_api")

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
OPERATOR = "상황실 김운영"
ADMIN_TOKEN = "uct_dashboard-auth-admin-token-0123456789abcdef"
OPS_TOKEN = "uct_dashboard-auth-operator-token-0123456789abc"
READER_TOKEN = "uct_dashboard-auth-reader-token-0123456789abcd"
AGENCY_TOKEN = "uct_dashboard-auth-agency-token-0123456789abcd"
WAIT_MS = 30_000  # what happens at once, on a loaded machine
REQUIRE_AUTH = "require_auth" in ServerSettings.model_fields  # helper H1's setting
RULE = {"id": "dash-auth-tilt", "name": {"ko": "기울기 주의", "en": "Tilt caution"}, "entityTypes": ["StructuralSensor"],
        "condition": {"type": "threshold", "attribute": "tilt", "edges": [{"level": "caution", "at": 1.0}],
                      "hysteresis": 0.1}, "persistence": {"samples": 1}}

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed"),
]


def live_server(tmp_path_factory: pytest.TempPathFactory, require_auth: bool) -> LiveServer:
    data = tmp_path_factory.mktemp("dashboard-auth") / "data"
    tokens: list[dict[str, Any]] = [
        {"id": "op-kim", "token": OPS_TOKEN, "role": "operator", "name": OPERATOR},
        {"id": "admin", "token": ADMIN_TOKEN, "role": "admin", "name": "관리자"}]
    server: dict[str, Any] = {}
    if require_auth:
        server = {"require_auth": True}
        tokens.append({"id": "viewer", "token": READER_TOKEN, "role": "reader", "name": "조회 전용"})
        tokens.append({"id": "police-room", "token": AGENCY_TOKEN, "role": "agency", "agency": "guro-112",
                       "name": "구로서 상황실"})
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("UCITY_WEB__TILE_URL", "none")
        patch.delenv("UCITY_STORE__URL", raising=False)
        patch.delenv("UCITY_SERVER__REQUIRE_AUTH", raising=False)
        settings = load_settings(environment="test", data_dir=str(data), store={"group_commit_ms": 1.0}, server=server,
                                 ops={"grant_secret": "dashboard-auth-grant-secret-0123456789",
                                      "pseudonym_secret": "dashboard-auth-pseudonyms-0123", "tokens": tokens,
                                      "agencies": [{"id": "guro-112", "kind": "police", "services": ["112_DISPATCH"],
                                                    "name": {"ko": "구로경찰서", "en": "Guro police station"}}]})
        return LiveServer(settings)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """Auth off (as in development and tests): only the operations API needs a token."""
    with live_server(tmp_path_factory, require_auth=False) as live:
        yield live


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    if not REQUIRE_AUTH:
        pytest.skip("server.require_auth (helper H1) is not in this tree yet")
    with live_server(tmp_path_factory, require_auth=True) as live:
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


async def open_page(browser: Any, url: str, live: bool = True, path: str = "/") -> Any:
    page = await browser.new_page(viewport={"width": 1366, "height": 768}, locale="ko-KR", timezone_id="Europe/Berlin")
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.errors = errors
    page.requests = []
    page.on("request", lambda request: page.requests.append(request))
    await page.goto(url + path)
    await page.wait_for_selector("body[data-ready='true']", timeout=20_000)
    if live:
        await page.wait_for_selector("#live-state[data-state='open']", timeout=10_000)
    # What arrives on the stream, as the page's stream reader dispatched it.
    await page.evaluate("""() => { window.__streamed = [];
      window.ucity.live.onEvent = (e) => window.__streamed.push(
        { id: e.lastEventId, type: e.type, data: JSON.parse(e.data) }); }""")
    return page


async def sign_in(page: Any, token: str) -> None:
    if await page.is_visible("#auth-open"):
        await page.click("#auth-open")
    await page.fill("#auth-token", token)
    await page.click("#auth-form button[type='submit']")
    await page.wait_for_selector("#auth[data-state='signed-in'] #auth-user:not([hidden])", timeout=WAIT_MS)


def auth(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def raise_alarm(url: str, name: str, token: str | None = None) -> str:
    """A `caution` alarm on a new structural sensor (the rule is made once); its id."""
    headers = auth(token)
    if httpx.get(f"{url}/api/v1/rules/{RULE['id']}", headers=headers).status_code == 404:
        made = httpx.post(f"{url}/api/v1/rules", json=RULE, headers=headers)
        assert made.status_code == 201, made.text
    entity = f"urn:ngsi-ld:StructuralSensor:{name}"
    made = httpx.post(f"{url}/ngsi-ld/v1/entities", headers=headers,
                      json={"id": entity, "type": "StructuralSensor", "tilt": {"type": "Property", "value": 0.1}})
    assert made.status_code == 201, made.text
    patched = httpx.patch(f"{url}/ngsi-ld/v1/entities/{entity}/attrs", headers=headers,
                          json={"tilt": {"type": "Property", "value": 1.5}})
    assert patched.status_code == 204, patched.text
    deadline = time.monotonic() + WAIT_MS / 1000
    while time.monotonic() < deadline:
        alarms = httpx.get(f"{url}/api/v1/alarms", params={"entity": entity}, headers=headers).json()["alarms"]
        if alarms:
            return str(alarms[0]["id"])
        time.sleep(0.05)
    raise AssertionError(f"no alarm on {entity}")


async def streamed(page: Any, alarm_id: str, type_: str) -> dict[str, Any]:
    """The first event of `type_` about the alarm that reached the page through its stream."""
    await page.wait_for_function("([id, type]) => window.__streamed.some((e) => e.data.id === id && e.type === type)",
                                 arg=[alarm_id, type_], timeout=WAIT_MS)
    events: list[dict[str, Any]] = await page.evaluate("() => window.__streamed")
    return next(e for e in events if e["data"]["id"] == alarm_id and e["type"] == type_)


def stream_requests(page: Any) -> list[Any]:
    return [r for r in page.requests if urlsplit(r.url).path == "/api/v1/stream"]


async def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


PARSE = """async (chunks) => {
  const { SseParser } = await import('/static/js/sse.js');
  const events = []; const retries = [];
  const parser = new SseParser((e) => events.push(e), (ms) => retries.push(ms));
  for (const chunk of chunks) parser.feed(chunk);
  parser.end();
  return { events, retries, last: parser.lastEventId };
}"""


async def test_the_stream_parser_follows_the_whatwg_rules(server: LiveServer, browser: Any) -> None:
    page = await open_page(browser, server.url)
    result = await page.evaluate(PARSE, [
        "\ufeffretry: 1500\n: ucity alarm stream\n\n",          # BOM, retry, a comment: no event
        "id: 7\nevent: alarm.raised\ndata: {\"a\":\r",           # CR at the end of a read ...
        "\ndata:  1}\r\n\r\n",                                 # ... and its LF at the start of the next; one space goes
        ": heartbeat\r\rdata\rdata: x\r\r",                    # CR line ends; `data` without a colon is an empty line
        "id: 8\nevent: alarm.cleared\n\n",                     # no data: not dispatched, but the id is kept
        "data: after\n\n",
        "id: 9\ndata: never ended",                            # the stream ends mid-event: dropped
    ])
    assert [(e["type"], e["data"], e["lastEventId"]) for e in result["events"]] == [
        ("alarm.raised", '{"a":\n 1}', "7"), ("message", "\nx", "7"), ("message", "after", "8")]
    assert result["retries"] == [1500] and result["last"] == "9"
    assert page.errors == []


BACKOFF = """async () => {
  const { LiveStream } = await import('/static/js/live.js');
  const state = document.createElement('span');
  const sse = 'retry: 1000\\n: hi\\n\\nid: 5\\nevent: alarm.raised\\ndata: {"id": "a"}\\n\\n';
  const script = ['fail', 'fail', 'fail', 'fail', 'fail', 'fail', 'stream', 'fail', 'unauthorized'];
  const out = window.__backoff = { calls: [], waits: [], alarms: [], states: [], done: false };
  const stream = new LiveStream((type, alarm) => out.alarms.push([type, alarm.id]), state, {
    onOpen: () => out.states.push('open'),
    wait: async (ms) => { out.waits.push(ms); out.states.push(state.dataset.state); },
    fetch: async (path, init) => {
      out.calls.push({ path, lastId: init.headers['Last-Event-ID'] ?? null });
      const next = script.shift();
      if (next === 'fail') throw new TypeError('Failed to fetch');
      if (next === 'stream') return new Response(sse, { headers: { 'Content-Type': 'text/event-stream' } });
      out.done = true;
      return new Response(JSON.stringify({ status: 401, title: 'Authentication required', detail: 'no token' }),
                          { status: 401, headers: { 'Content-Type': 'application/problem+json' } });
    },
  });
  window.__backoffStream = stream;
  stream.start();
}"""


async def test_the_stream_backs_off_up_to_a_cap_and_stops_on_401(server: LiveServer, browser: Any) -> None:
    """The reconnection schedule with stand-ins for fetch() and the timer (nothing waits for real)."""
    page = await open_page(browser, server.url)
    await page.evaluate(BACKOFF)
    await page.wait_for_function("() => window.__backoff.done && !window.__backoffStream.running", timeout=WAIT_MS)
    out = await page.evaluate("() => ({ ...window.__backoff, final: window.__backoffStream.stateElement.dataset.state })")
    # 2 s (the default retry) doubled per failed attempt, capped at 30 s; a stream that opened and ended
    # waits its own `retry:` (1 s) and resets the doubling.
    assert out["waits"] == [2000, 4000, 8000, 16000, 30000, 30000, 1000, 1000]
    assert set(out["states"]) == {"reconnecting", "open"} and out["final"] == "closed"  # 401: stopped, not retrying
    assert out["alarms"] == [["raised", "a"]]
    assert [c["lastId"] for c in out["calls"]] == [None] * 7 + ["5", "5"]  # resumes after what it saw
    assert {c["path"] for c in out["calls"]} == {"/api/v1/stream"} and len(out["calls"]) == 9  # 401: no retry
    await page.wait_for_selector("#auth[data-state='signing-in'] #auth-form:not([hidden])")  # and asks for sign-in
    assert page.errors == []


async def test_the_stream_sends_the_token_in_a_header_and_resumes_with_last_event_id(server: LiveServer,
                                                                                         browser: Any) -> None:
    page = await open_page(browser, server.url)
    # Auth off: nothing asked for a token yet, so the top bar offers the sign-in without pressing it.
    assert await page.get_attribute("#auth", "data-state") == "signed-out" and await page.is_visible("#auth-open")
    await sign_in(page, OPS_TOKEN)
    assert await page.text_content("#auth-user") == f"{OPERATOR} · 운영자"
    await page.wait_for_selector("#live-state[data-state='open']", timeout=WAIT_MS)
    alarm = raise_alarm(server.url, "resume-1")
    raised = await streamed(page, alarm, "alarm.raised")
    await page.wait_for_selector(f"#alarm-list [data-alarm-id='{alarm}']", timeout=WAIT_MS)

    # Off the stream while the alarm is acknowledged; back on, the server replays it from Last-Event-ID.
    await page.evaluate("() => window.ucity.live.stop()")
    assert await page.get_attribute("#live-state", "data-state") == "closed"
    acked = httpx.post(f"{server.url}/api/v1/alarms/{alarm}/acknowledge", headers={"X-Ucity-Actor": quote(OPERATOR)})
    assert acked.status_code == 200, acked.text
    before = len(stream_requests(page))
    await page.evaluate("() => window.ucity.live.start()")
    replayed = await streamed(page, alarm, "alarm.acknowledged")
    assert int(replayed["id"]) > int(raised["id"])
    await page.wait_for_selector("#live-state[data-state='open']", timeout=WAIT_MS)
    resumed = stream_requests(page)[before]
    headers = await resumed.all_headers()
    assert headers.get("last-event-id") == raised["id"]
    assert headers.get("authorization") == f"Bearer {OPS_TOKEN}" and headers.get("accept") == "text/event-stream"
    assert all(urlsplit(r.url).query == "" for r in stream_requests(page))  # no tenant, no token, no id in the URL
    assert not [r.url for r in page.requests if OPS_TOKEN in r.url]
    await page.wait_for_selector(f"#alarm-list [data-alarm-id='{alarm}'][data-status='active-acknowledged']",
                                 timeout=WAIT_MS)
    assert page.errors == []


async def test_entity_type_labels_in_korean_and_english(server: LiveServer, browser: Any) -> None:
    page = await open_page(browser, server.url)
    option = "#alarm-filters select[name='type'] option[value='StructuralSensor']"
    assert await page.text_content(option) == "구조물 계측 센서"
    await page.click("button[data-lang='en']")
    assert await page.text_content(option) == "Structural sensor"
    await page.click("button[data-lang='ko']")
    assert await page.text_content(option) == "구조물 계측 센서"
    assert page.errors == []


async def test_sign_in_when_every_api_needs_a_token(auth_server: LiveServer, browser: Any) -> None:
    """Needs helper H1's `server.require_auth`: skipped without it."""
    url = auth_server.url
    assert httpx.get(f"{url}/api/v1/alarms").status_code == 401
    first = raise_alarm(url, "auth-1", ADMIN_TOKEN)
    page = await open_page(browser, url, live=False)
    # No token: the sign-in is open in the top bar, nothing is read, the stream is closed.
    await page.wait_for_selector("#auth[data-state='signing-in'] #auth-form:not([hidden])", timeout=WAIT_MS)
    assert (await page.text_content("#auth-message") or "").startswith("로그인이 필요합니다")
    await page.wait_for_selector("#live-state[data-state='closed']", timeout=WAIT_MS)
    assert await page.locator("#alarm-list [data-alarm-id]").count() == 0
    assert await page.get_attribute("#alarm-count", "data-error") == "401"
    await shot(page, "dashboard-sign-in")

    await sign_in(page, OPS_TOKEN)
    assert await page.text_content("#auth-user") == f"{OPERATOR} · 운영자"
    await page.wait_for_selector(f"#alarm-list [data-alarm-id='{first}']", timeout=WAIT_MS)
    await page.wait_for_selector("#live-state[data-state='open']", timeout=WAIT_MS)
    await page.wait_for_selector("#health-body .health-block", state="attached", timeout=WAIT_MS)  # health reloaded
    second = raise_alarm(url, "auth-2", ADMIN_TOKEN)
    await streamed(page, second, "alarm.raised")  # through the stream, with the token in its header
    await page.wait_for_selector(f"#alarm-list [data-alarm-id='{second}']", timeout=WAIT_MS)
    headers = await stream_requests(page)[-1].all_headers()
    assert headers.get("authorization") == f"Bearer {OPS_TOKEN}"
    assert not [r.url for r in page.requests if OPS_TOKEN in r.url]
    await shot(page, "dashboard-signed-in")

    # Sign out: the token is gone and the page is back at the sign-in, with nothing read on show.
    async with page.expect_navigation():
        await page.click("#auth-signout")
    await page.wait_for_selector("body[data-ready='true']", timeout=20_000)
    await page.wait_for_selector("#auth[data-state='signing-in'] #auth-form:not([hidden])", timeout=WAIT_MS)
    assert await page.evaluate("() => sessionStorage.getItem('ucity.token')") is None
    assert await page.locator("#alarm-list [data-alarm-id]").count() == 0

    # A reader sees the alarms but is offered no action it may not take (QA7: data:write, from /auth/me).
    await sign_in(page, READER_TOKEN)
    assert (await page.text_content("#auth-user") or "").endswith("· 조회자")
    row = f"#alarm-list [data-alarm-id='{second}']"
    await page.wait_for_selector(f"{row} [data-action='details']", timeout=WAIT_MS)
    assert await page.locator(f"{row} [data-action='acknowledge']").count() == 0
    await shot(page, "dashboard-reader")
    # The situation opens read-only; its operation-centre part (no operations endpoint for a reader) says why it
    # is empty, in the page's language only (the server's "한국어 / English" detail split, QA7).
    await page.click(f"{row} [data-action='details']")
    block = f"#detail .alarm-detail[data-alarm-id='{second}']"
    await page.wait_for_selector(block, timeout=WAIT_MS)
    assert await page.text_content(f"{block} [data-role='read-only']") == "이 역할은 조회만 할 수 있습니다"
    for action in ("acknowledge", "clear", "assign", "comment", "close"):
        assert await page.locator(f"{block} [data-action='{action}']").count() == 0, action
    refused = page.locator("#detail [data-role='ops'] [data-role='ops-error']")
    await refused.wait_for(timeout=WAIT_MS)
    text = await refused.text_content() or ""
    assert text.startswith("이 역할로는 할 수 없습니다: 권한 없음: events:read") and " / " not in text, text
    # Were the action called all the same (a stale page), the server refuses it, said in one language.
    said = await page.evaluate("""async (id) => { const actions = await import('/static/js/actions.js');
      await actions.acknowledge(id); return [...document.querySelectorAll('.toast')].map((t) => t.textContent); }""", second)
    assert any(t.startswith("이 역할로는 할 수 없습니다: 권한 없음: data:write") and " / " not in t for t in said), said
    state = httpx.get(f"{url}/api/v1/alarms/{second}", headers=auth(ADMIN_TOKEN)).json()
    assert state["status"] == "active-unacknowledged"
    assert page.errors == []


async def test_an_operator_is_offered_the_actions_and_an_agency_is_told_the_page_is_not_for_it(
        auth_server: LiveServer, browser: Any) -> None:
    """QA7: actions follow the role's permissions (/auth/me); an agency's token gets a clear notice, not a broken page."""
    url = auth_server.url
    alarm = raise_alarm(url, "roles-1", ADMIN_TOKEN)
    page = await open_page(browser, url, live=False)
    await sign_in(page, OPS_TOKEN)
    await page.wait_for_selector(f"#alarm-list [data-alarm-id='{alarm}'] [data-action='acknowledge']", timeout=WAIT_MS)
    assert await page.is_hidden("#role-notice")

    police = await open_page(browser, url, live=False)
    before = len(police.requests)
    await sign_in(police, AGENCY_TOKEN)
    assert await police.text_content("#auth-user") == "구로서 상황실 · 유관기관 · guro-112"
    notice = police.locator("#role-notice")
    await notice.wait_for(timeout=WAIT_MS)
    assert (await notice.text_content() or "").strip().startswith("이 대시보드는 통합관제센터 운영 요원")
    assert await police.is_hidden("main.layout")
    assert await police.get_attribute("#live-state", "data-state") == "closed"
    await police.click("button[data-lang='en']")
    assert (await notice.text_content() or "").strip().startswith("This dashboard is for the operation centre's staff")
    # nothing the token may not read is asked for after sign-in: no alarms, no stream, no map layers
    asked = [urlsplit(r.url).path for r in police.requests[before:]]
    assert not [a for a in asked if a.startswith(("/api/v1/alarms", "/api/v1/stream", "/ngsi-ld/"))], asked
    await shot(police, "dashboard-agency")
    # signing out still works from the top bar
    async with police.expect_navigation():
        await police.click("#auth-signout")
    await police.wait_for_selector("body[data-ready='true']", timeout=20_000)
    assert await police.is_hidden("#role-notice")
    assert page.errors == [] and police.errors == []


def issue(url: str, **spec: Any) -> str:
    """A token issued by the admin through the API (shown once)."""
    made = httpx.post(f"{url}/api/v1/auth/tokens", json=spec, headers=auth(ADMIN_TOKEN))
    assert made.status_code == 201, made.text
    return str(made.json()["token"])


async def message(page: Any, reason: str) -> str:
    """The top bar's message once it gives `reason` (its catalogue key)."""
    await page.wait_for_selector(f"#auth-message[data-reason='{reason}']:not([hidden])", timeout=WAIT_MS)
    return await page.text_content("#auth-message") or ""


async def a_401_arrives(page: Any) -> None:
    """What the health poll does every 5 s, now (no waiting): an API answers the page without a token 401."""
    await page.evaluate("() => Promise.all([window.ucity.health.poll().catch(() => {}), window.ucity.alarms.load()])")


async def test_a_revoked_token_signs_the_page_out(auth_server: LiveServer, browser: Any) -> None:
    """F7: revoked while signed in, the page is as after signing out, and says the token is no longer valid."""
    url = auth_server.url
    token = issue(url, id="dash-revoked", role="operator", name="폐기 대상")
    first = raise_alarm(url, "revoke-1", ADMIN_TOKEN)
    page = await open_page(browser, url, live=False)
    await sign_in(page, token)
    await page.wait_for_selector(f"#alarm-list [data-alarm-id='{first}']", timeout=WAIT_MS)
    await page.wait_for_selector("#live-state[data-state='open']", timeout=WAIT_MS)
    await page.evaluate("() => { window.__before = true; }")  # gone once the page has reloaded

    revoked = httpx.delete(f"{url}/api/v1/auth/tokens/dash-revoked", headers=auth(ADMIN_TOKEN))
    assert revoked.status_code == 204, revoked.text
    # The next 401 (the stream's reconnection, or the health poll within 5 s) signs the page out.
    text = await message(page, "auth.expired")
    assert text == "토큰이 더 이상 유효하지 않습니다. 다시 로그인하세요"
    assert await page.evaluate("() => window.__before") is None  # reloaded: nothing read with the token is kept
    assert await page.evaluate("() => sessionStorage.getItem('ucity.token')") is None
    await page.wait_for_selector("#auth[data-state='signing-in'] #auth-form:not([hidden])", timeout=WAIT_MS)
    await page.wait_for_selector("#live-state[data-state='closed']", timeout=WAIT_MS)  # stopped, not reconnecting
    assert await page.text_content("#live-state") == "중지됨"
    await page.wait_for_selector("#alarm-count[data-error='401']", timeout=WAIT_MS)
    assert await page.locator("#alarm-list [data-alarm-id]").count() == 0
    # An alarm raised now reaches nobody on this page; the expired notice is not replaced by a later 401.
    later = raise_alarm(url, "revoke-2", ADMIN_TOKEN)
    await a_401_arrives(page)
    assert await page.locator(f"#alarm-list [data-alarm-id='{later}']").count() == 0
    assert await message(page, "auth.expired") == text
    await page.click("button[data-lang='en']")
    assert await message(page, "auth.expired") == "The token is no longer valid; sign in again"
    assert await page.text_content("#live-state") == "Stopped"
    await shot(page, "dashboard-token-revoked")
    # Signing in again with a valid token works as ever.
    await sign_in(page, OPS_TOKEN)
    await page.wait_for_selector(f"#alarm-list [data-alarm-id='{later}']", timeout=WAIT_MS)
    await page.wait_for_selector("#live-state[data-state='open']", timeout=WAIT_MS)
    assert page.errors == []


async def test_the_sign_in_says_why_a_token_is_refused(auth_server: LiveServer, browser: Any) -> None:
    """F12: an unknown token, a token of another tenant, the stopped stream and the tooltip after sign-in."""
    url = auth_server.url
    page = await open_page(browser, url, live=False)
    await message(page, "auth.required")
    # (c) a stream refused with 401 is stopped, not "reconnecting".
    await page.wait_for_selector("#live-state[data-state='closed']", timeout=WAIT_MS)
    assert await page.text_content("#live-state") == "중지됨"

    # (a) an unknown token: the message stays when the next poll answers 401.
    await page.fill("#auth-token", "uct_no-such-token-0123456789abcdef")
    await page.click("#auth-form button[type='submit']")
    assert (await message(page, "auth.rejected")).startswith("알 수 없는 토큰입니다")
    assert await page.get_attribute("#auth-message", "title") == "알 수 없거나 폐기된 토큰 / unknown or revoked token"
    await a_401_arrives(page)
    assert (await message(page, "auth.rejected")).startswith("알 수 없는 토큰입니다")

    # (b) a token of tenant citya on the page without ?tenant=: the server's 403 and where to go.
    citya = issue(url, id="dash-citya", role="operator", tenant="citya", name="A시 운영")
    await page.fill("#auth-token", citya)
    await page.click("#auth-form button[type='submit']")
    text = await message(page, "auth.otherTenant")
    assert "이 토큰은 테넌트 citya 전용" in text and "?tenant=citya" in text, text
    assert "this token is for tenant" not in text  # one language (QA7); the server's whole words are the tooltip
    assert "this token is for tenant citya" in (await page.get_attribute("#auth-message", "title") or "")
    await a_401_arrives(page)
    assert await message(page, "auth.otherTenant") == text
    await page.click("button[data-lang='en']")
    english = await message(page, "auth.otherTenant")
    assert "this token is for tenant citya" in english and "테넌트" not in english, english
    await page.click("button[data-lang='ko']")
    assert await page.evaluate("() => sessionStorage.getItem('ucity.token')") is None
    other = await open_page(browser, url, live=False, path="/?tenant=citya")
    await sign_in(other, citya)  # the hint was right
    await other.wait_for_selector("#live-state[data-state='open']", timeout=WAIT_MS)

    # (d) signed in: no tooltip of the refused attempts is left.
    await sign_in(page, OPS_TOKEN)
    await page.wait_for_selector("#live-state[data-state='open']", timeout=WAIT_MS)
    assert await page.get_attribute("#auth-message", "title") is None
    assert await page.is_hidden("#auth-message")
    assert page.errors == [] and other.errors == []


ERRORS = """async () => {
  const { ApiError, errorText, localText } = await import('/static/js/api.js');
  const { setLang } = await import('/static/js/i18n.js');
  const cases = () => [
    errorText(new ApiError(403, '권한 없음: data:write / the reader role does not have data:write',
                           { permission: 'data:write' })),
    errorText(new ApiError(400, '기관 tmp-agency 사용 중지됨 / agency tmp-agency is disabled')),
    errorText(new ApiError(409, 'no slash here')),
    localText('a / b / c'),
    errorText(new ApiError(403, 'forbidden', { permission: 'events:manage' })),
  ];
  const ko = cases(); setLang('en'); const en = cases(); setLang('ko');
  return { ko, en };
}"""


async def test_server_texts_show_the_part_of_the_page_language(server: LiveServer, browser: Any) -> None:
    """QA7: the server's "한국어 / English" details in a one-language screen show that language's part."""
    page = await open_page(browser, server.url, live=False)
    said = await page.evaluate(ERRORS)
    assert said["ko"] == ["이 역할로는 할 수 없습니다: 권한 없음: data:write", "처리하지 못했습니다: 기관 tmp-agency 사용 중지됨",
                          "처리하지 못했습니다: no slash here", "a / b / c",
                          "이 역할로는 할 수 없습니다: forbidden (events:manage)"]
    assert said["en"] == ["Your role may not do this: the reader role does not have data:write",
                          "Could not do that: agency tmp-agency is disabled", "Could not do that: no slash here", "a / b / c",
                          "Your role may not do this: forbidden (events:manage)"]
    assert page.errors == []


GRADE_STATES = """async () => {
  const { gradeStatusLine } = await import('/static/js/facility.js');
  const { setLang } = await import('/static/js/i18n.js');
  const cov = (scored, attached, basis = 'main') => ({ basis, scored, attached, share: attached ? scored / attached : null,
    minimum: 0.8, sufficient: scored / attached >= 0.8, unscored: [] });
  const safeties = [
    { grade: { status: 'ok', grade: 'B', coverage: cov(5, 5), gradeWithheld: false } },
    { grade: { status: 'insufficient-data', grade: null, provisionalGrade: 'C', gradeWithheld: true, coverage: cov(3, 5) } },
    { grade: { status: 'insufficient-data', grade: 'E', gradeWithheld: false, coverage: cov(1, 4) } },
    { grade: { status: 'no-data', grade: null, coverage: cov(0, 2, 'all') } },
    { dataSafetyGrade: null, dataSafetyGradeStatus: 'insufficient-data', dataSafetyCoverage: 0.5 },
  ];
  const line = (s) => { const el = gradeStatusLine(s); return [el.dataset?.status, el.textContent]; };
  const ko = safeties.map(line); setLang('en'); const en = safeties.map(line); setLang('ko');
  return { ko, en, none: gradeStatusLine({}) };
}"""


async def test_the_facility_panel_tells_a_withheld_grade_from_no_data(server: LiveServer, browser: Any) -> None:
    """QA5 F4 on the dashboard: the grade's status (ok / insufficient-data / no-data) and coverage, ko and en."""
    page = await open_page(browser, server.url, live=False)
    said = await page.evaluate(GRADE_STATES)
    assert said["ko"] == [
        ["ok", "산정됨 · 채점 범위: 주부재 5개 중 5개 (100%, 최소 80%)"],
        ["insufficient-data", "등급 보류: 데이터 부족 · 잠정 등급 C · 채점 범위: 주부재 5개 중 3개 (60%, 최소 80%)"],
        ["insufficient-data", "데이터 부족이나 긴급점검 권고로 등급 유지 · 채점 범위: 주부재 4개 중 1개 (25%, 최소 80%)"],
        ["no-data", "데이터 없음: 채점된 센서 없음 · 채점 범위: 센서 2개 중 0개 (0%, 최소 80%)"],
        ["insufficient-data", "등급 보류: 데이터 부족 · 채점 범위 50%"]]
    assert said["en"] == [
        ["ok", "Graded · Coverage: 5 of 5 main members scored (100%, minimum 80%)"],
        ["insufficient-data", "Grade withheld: insufficient data · provisional grade C · Coverage: 3 of 5 main members scored "
                              "(60%, minimum 80%)"],
        ["insufficient-data", "Insufficient data; the grade stands (emergency inspection recommended) · Coverage: 1 of 4 "
                              "main members scored (25%, minimum 80%)"],
        ["no-data", "No data: no sensor could be scored · Coverage: 0 of 2 sensors scored (0%, minimum 80%)"],
        ["insufficient-data", "Grade withheld: insufficient data · coverage 50%"]]
    assert said["none"] == ""
    assert page.errors == []
