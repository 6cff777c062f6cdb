"""The simulator against a real ucity: provisioning through the public APIs, then streaming.

A live server (uvicorn on loopback, tests/conftest.py) receives the simulated city; the runner's
simulated time comes from a fake clock, so the streamed measures (and their TimeInstant) are
known exactly, while the network, the IoT Agent API and the store are real.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer, free_port
from ucity.core.clock import FakeClock
from ucity.core.config import load_settings
from ucity.sim.city import CityConfig, build_city
from ucity.sim.devices import entity_id
from ucity.sim.model import City
from ucity.sim.runner import RunConfig, Runner

START = datetime(2026, 11, 18, 1, 0, tzinfo=UTC)  # 10:00 KST on a Wednesday
NGSI = "/ngsi-ld/v1"


def count(url: str, entity_type: str, headers: dict[str, str] | None = None) -> int:
    response = httpx.get(f"{url}{NGSI}/entities", params={"type": entity_type, "count": "true", "limit": "0"},
                         headers=headers or {})
    assert response.status_code == 200, response.text
    return int(response.headers["NGSILD-Results-Count"])


async def run(city: City, config: RunConfig) -> Runner:
    clock = FakeClock(START)

    async def sleep(seconds: float) -> None:
        clock.advance(seconds)

    async with Runner(city, config, clock=clock, sleep=sleep) as runner:
        await runner.run()
    return runner


async def test_the_whole_city_is_visible_by_type(live_server: LiveServer) -> None:
    """Scale 1: the counts of the description, read back with count=true&limit=0."""
    city = build_city(CityConfig(seed=7, reference_date=date(2026, 11, 1)))
    runner = await run(city, RunConfig(url=live_server.url, stream=False))
    assert runner.report.entities == 4744 and runner.report.devices == 6854
    expected = {
        "Building": 139, "Camera": 4100, "ElderlyHome": 350, "OffStreetParking": 5, "OnStreetParking": 20,
        "RoadSegment": 130, "StructuralSensor": 600, "CareDevice": 350 * 7, "ElectricBoard": 3000,
        "ParkingSpot": 400, "TrafficFlowObserved": 130, "Vehicle": 18, "ChildTracker": 216, "SafeReturnWalk": 40,
    }
    assert {t: count(live_server.url, t) for t in expected} == expected
    assert runner.report.camera_urls == 0  # the camera API needs a token (test_token.py registers them)
    building = httpx.get(f"{live_server.url}{NGSI}/entities/{entity_id('Building', 'fac-001')}").json()
    assert building["legalSafetyGrade"]["value"] in "ABCDE"
    assert building["location"]["value"]["type"] == "Point"


async def test_provisioning_again_changes_nothing(live_server: LiveServer) -> None:
    city = build_city(CityConfig(seed=7, scale=0.02, reference_date=date(2026, 11, 1)))
    first = await run(city, RunConfig(url=live_server.url, stream=False))
    second = await run(city, RunConfig(url=live_server.url, stream=False))
    assert first.report.devices_new == first.report.devices > 0
    assert second.report.devices_new == 0
    assert count(live_server.url, "ElectricBoard") == 60


async def test_streamed_measures_reach_entities_and_history(live_server: LiveServer) -> None:
    city = build_city(CityConfig(seed=7, scale=0.02, reference_date=date(2026, 11, 1)))
    config = RunConfig(url=live_server.url, speed=60, duration_s=10, start=START, flush_s=5.0,
                       scenarios=("leakage-climb@0",))
    runner = await run(city, config)
    stats = runner.report.stats
    assert stats.failed_measures == 0 and stats.measures > 0
    assert stats.by_type["ElectricBoard"] == 10 * len(city.boards)  # one a simulated minute, 10 minutes
    # The climbing board: its latest value and its history carry the measures' own times.
    [binding] = runner.report.bindings
    [board_id] = binding.devices
    board = httpx.get(f"{live_server.url}{NGSI}/entities/{entity_id('ElectricBoard', board_id)}").json()
    last = runner.devices[board_id].schedule(START.timestamp(), START.timestamp() + 600)[-1]
    assert board["leakageCurrent"]["observedAt"] == datetime.fromtimestamp(last, UTC).strftime("%Y-%m-%dT%H:%M:%S.000000Z")
    assert board["leakageCurrent"]["value"] == runner.devices[board_id].read(last)["il"]  # type: ignore[index]
    assert board["leakageCurrent"]["unitCode"] == "4K"
    history = httpx.get(f"{live_server.url}{NGSI}/temporal/entities/{entity_id('ElectricBoard', board_id)}",
                        params={"attrs": "leakageCurrent", "options": "temporalValues"}).json()
    values = [v for v, _ in history["leakageCurrent"]["values"]]
    assert len(values) == 10 and values[-1] > values[0] + 2  # climbing at 20 mA/h
    stats_body = httpx.get(f"{live_server.url}/api/v1/ingest/stats").json()
    assert "type-mismatch" not in str(stats_body)


# -- MQTT -----------------------------------------------------------------------------------------------
MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)


def wait_for(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[int]:
    if MOSQUITTO is None:
        pytest.skip("mosquitto is not installed")
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def listening() -> bool:
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) == 0

    try:
        wait_for(listening, "mosquitto")
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.integration
@pytest.mark.filterwarnings("ignore:Callback API version 1 is deprecated:DeprecationWarning")
async def test_measures_over_mqtt(tmp_path: Path, broker: int) -> None:
    settings = load_settings(environment="test", data_dir=str(tmp_path / "data"), store={"group_commit_ms": 1.0},
                             mqtt={"url": f"mqtt://127.0.0.1:{broker}", "client_id": "ucity-sim-test"})
    city = build_city(CityConfig(seed=7, scale=0.02, reference_date=date(2026, 11, 1)))
    with LiveServer(settings) as server:
        wait_for(lambda: bool(httpx.get(f"{server.url}/health").json()["components"]["mqtt"]["connected"]), "MQTT")
        config = RunConfig(url=server.url, mqtt_url=f"mqtt://127.0.0.1:{broker}", speed=60, duration_s=5,
                           start=START, flush_s=5.0, tenant="guro")
        runner = await run(city, config)
        assert runner.report.stats.failed_measures == 0
        board_id = city.boards[0].id
        last = runner.devices[board_id].schedule(START.timestamp(), START.timestamp() + 300)[-1]
        wanted = datetime.fromtimestamp(last, UTC).strftime("%Y-%m-%dT%H:%M:%S.000000Z")

        def arrived() -> bool:
            body: dict[str, Any] = httpx.get(f"{server.url}{NGSI}/entities/{entity_id('ElectricBoard', board_id)}",
                                             headers={"NGSILD-Tenant": "guro"}).json()
            return bool(body.get("current", {}).get("observedAt") == wanted)

        wait_for(arrived, "the last MQTT measure of a board")
        assert count(server.url, "ElectricBoard", {"NGSILD-Tenant": "guro"}) == len(city.boards)
