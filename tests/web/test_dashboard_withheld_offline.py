"""FIX-K (after QA17 F3), in Debian's Chromium (Playwright), with `server.require_auth` on: a reader's offline chip
counts the care devices that are offline, but the offline list leaves them out (personal data, no `personal:read`);
the panel says so under the list, with how many and the server's bilingual reason, instead of "없음"."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer
from tests.ingest.support import IOT
from ucity.core.config import load_settings

playwright_api = pytest.importorskip("playwright.async_api")

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
ADMIN = "uct_fixk-dashboard-admin-token-0123456789abcdef"
READER = "uct_fixk-dashboard-reader-token-0123456789abcde"
CARE_KEY = "fixk-care-key-4jggokgpepnvsb2u"
WAIT_MS = 30_000

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data = tmp_path_factory.mktemp("dashboard-fixk") / "data"
    tokens = [{"id": "admin", "token": ADMIN, "role": "admin", "name": "관리자"},
              {"id": "viewer", "token": READER, "role": "reader", "name": "조회 전용"}]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("UCITY_WEB__TILE_URL", "none")
        patch.setenv("UCITY_WEB__REFRESH_S", "2")
        patch.delenv("UCITY_STORE__URL", raising=False)
        patch.delenv("UCITY_SERVER__REQUIRE_AUTH", raising=False)
        # a care device is offline one second after it was last heard (the dashboard polls the server's answer)
        settings = load_settings(environment="test", data_dir=str(data), store={"group_commit_ms": 1.0},
                                 server={"require_auth": True},
                                 ingest={"intervals_by_type": {"CareDevice": 1.0}, "offline_after_intervals": 1},
                                 ops={"grant_secret": "fixk-dashboard-grant-secret-0123456789",
                                      "pseudonym_secret": "fixk-dashboard-pseudonyms-0123", "tokens": tokens})
        with LiveServer(settings) as live:
            admin = {"Authorization": f"Bearer {ADMIN}"}
            group = {"services": [{"apikey": CARE_KEY, "entity_type": "CareDevice", "resource": "/iot/json",
                                   "autoprovision": False}]}
            assert httpx.post(f"{live.url}/iot/services", json=group, headers=IOT | admin).status_code == 201
            body = {"devices": [{"device_id": "home-001-button", "apikey": CARE_KEY}]}
            assert httpx.post(f"{live.url}/iot/devices", json=body, headers=IOT | admin).status_code == 201
            sent = httpx.post(f"{live.url}/iot/json?k={CARE_KEY}&i=home-001-button", json={"batteryLevel": 0.5})
            assert sent.status_code == 200, sent.text
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


async def open_page(browser: Any, url: str, token: str) -> Any:
    page = await browser.new_page(viewport={"width": 1366, "height": 768}, locale="ko-KR", timezone_id="Europe/Berlin")
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.errors = errors
    await page.goto(url + "/")
    await page.wait_for_selector("body[data-ready='true']", timeout=20_000)
    if await page.is_visible("#auth-open"):
        await page.click("#auth-open")
    await page.fill("#auth-token", token)
    await page.click("#auth-form button[type='submit']")
    await page.wait_for_selector("#auth[data-state='signed-in'] #auth-user:not([hidden])", timeout=WAIT_MS)
    return page


async def test_a_reader_is_told_why_the_offline_list_is_shorter_than_the_chip(server: LiveServer, browser: Any) -> None:
    page = await open_page(browser, server.url, READER)
    # the chip counts the care device once it is offline (polled every 2 s)
    await page.wait_for_function("() => document.querySelector('#chip-offline [data-value]')?.textContent === '1'",
                                 timeout=WAIT_MS)
    await page.click("#chip-offline")
    note = page.locator("#health-body [data-role='offline-withheld']")
    await note.wait_for(state="visible", timeout=WAIT_MS)
    text = await note.text_content() or ""
    assert "목록에 없는 개인 유형 오프라인 장치 1대" in text, text
    assert "personal:read" in text and "개인정보 열람 권한" in text and "CareDevice" in text  # the server's, both languages
    body = await page.text_content("#health-body") or ""
    assert "home-001" not in body
    assert await page.locator("#health-body [data-role='offline-devices']").count() == 0
    assert "없음" not in body.split("오프라인 장치", 1)[1].split("수집", 1)[0]  # not "none" while one is offline
    assert page.errors == []


async def test_whoever_may_read_personal_data_sees_the_device_and_no_note(server: LiveServer, browser: Any) -> None:
    page = await open_page(browser, server.url, ADMIN)
    await page.click("#chip-offline")
    await page.wait_for_selector("#health-body [data-role='offline-devices'] li", timeout=WAIT_MS)
    assert "home-001-button" in (await page.text_content("#health-body [data-role='offline-devices']") or "")
    assert await page.locator("#health-body [data-role='offline-withheld']").count() == 0
    assert page.errors == []
