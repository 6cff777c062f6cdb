"""The runner on a fake clock (no sleeping) and the provisioning client against a mock server."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest

from ucity.core.clock import FakeClock
from ucity.sim import iota
from ucity.sim.city import CityConfig, build_city
from ucity.sim.client import CityApi, SimulatorError, chunks_by_size
from ucity.sim.devices import city_devices
from ucity.sim.iota import IotaConfig
from ucity.sim.model import City
from ucity.sim.runner import RunConfig, Runner, SimClock

START = datetime(2026, 11, 18, 1, 0, tzinfo=UTC)  # 10:00 KST


@pytest.fixture(scope="module")
def small_city() -> City:
    return build_city(CityConfig(seed=7, scale=0.05, reference_date=date(2026, 11, 1)))


class RecordingSink:
    """Collects what would have been sent (the seam between the runner and the network)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, list[dict[str, Any]]]] = []

    async def send(self, group: str, device_id: str, measures: list[dict[str, Any]]) -> bool:
        self.requests.append((group, device_id, measures))
        return True

    async def close(self) -> None:
        return None


async def stream(city: City, config: RunConfig) -> tuple[RecordingSink, Runner]:
    clock = FakeClock(START)
    sink = RecordingSink()

    async def sleep(seconds: float) -> None:
        clock.advance(seconds)

    async with Runner(city, config, clock=clock, sleep=sleep, sink=sink) as runner:
        await runner.stream()
    return sink, runner


def test_sim_clock_maps_wall_time_to_simulated_time() -> None:
    wall = FakeClock(START)
    sim = SimClock(wall, speed=60, start=START - timedelta(days=1))
    wall.advance(10)
    assert sim.now() == START - timedelta(days=1) + timedelta(minutes=10)
    assert sim.wall_elapsed() == 10
    with pytest.raises(ValueError):
        SimClock(wall, speed=0)


async def test_accelerated_run_is_bounded_and_deterministic(small_city: City) -> None:
    config = RunConfig(speed=60, duration_s=30, start=START, tick_s=1.0, flush_s=5.0)
    sink, runner = await stream(small_city, config)
    assert runner.report.sim_end == START + timedelta(minutes=30)  # exactly duration × speed
    measures = [m for _, _, ms in sink.requests for m in ms]
    times = {m["TimeInstant"] for m in measures}
    assert min(times) > "2026-11-18T01:00:00" and max(times) <= "2026-11-18T01:30:00.000Z"
    # every report of every device in (start, end], each once, in time order per device
    expected = sum(len(d.schedule(START.timestamp(), START.timestamp() + 1800)) for d in city_devices(small_city))
    assert len(measures) == expected
    per_device: dict[str, list[str]] = {}
    for _, device_id, ms in sink.requests:
        per_device.setdefault(device_id, []).extend(m["TimeInstant"] for m in ms)
    assert all(ts == sorted(ts) and len(ts) == len(set(ts)) for ts in per_device.values())
    again, _ = await stream(small_city, config)
    assert again.requests == sink.requests


async def test_many_measures_per_request_at_speed(small_city: City) -> None:
    sink, runner = await stream(small_city, RunConfig(speed=60, duration_s=20, start=START, flush_s=10.0))
    boards = [ms for group, _, ms in sink.requests if group == "efire"]
    assert boards and min(len(ms) for ms in boards) >= 9  # 10 s of wall time = 10 simulated minutes
    assert runner.report.stats.by_type["ElectricBoard"] == sum(len(ms) for ms in boards)


async def test_real_time_run_sends_each_measure_in_its_own_window(small_city: City) -> None:
    sink, _ = await stream(small_city, RunConfig(speed=1, duration_s=120, start=START, flush_s=1.0))
    boards = [ms for group, _, ms in sink.requests if group == "efire"]
    assert boards and max(len(ms) for ms in boards) == 1  # one board reports once a minute (EFIRE-R9)
    assert len(boards) == 2 * len(small_city.boards)


async def test_scenarios_are_bound_at_the_simulated_start(small_city: City) -> None:
    _, runner = await stream(small_city, RunConfig(speed=60, duration_s=1, start=START,
                                                   scenarios=("wall-tilt@10m", "sensor-silent")))
    starts = {b.scenario: b.start for b in runner.report.bindings}
    assert starts == {"wall-tilt": START.timestamp() + 600, "sensor-silent": START.timestamp() + 60}


async def test_stop_event_ends_an_unbounded_run(small_city: City) -> None:
    clock = FakeClock(START)
    stop = asyncio.Event()
    ticks = 0

    async def sleep(seconds: float) -> None:
        nonlocal ticks
        ticks += 1
        clock.advance(seconds)
        if ticks == 5:
            stop.set()

    async with Runner(small_city, RunConfig(start=START), clock=clock, sleep=sleep, sink=RecordingSink(),
                      stop=stop) as runner:
        report = await runner.stream()
    assert report.stream_s == 5.0


def test_chunks_stay_under_the_body_limit(small_city: City) -> None:
    from ucity.sim.entities import city_entities

    entities = city_entities(small_city)
    batches = list(chunks_by_size(entities, 20_000, 1000))
    assert sum(len(b) for b in batches) == len(entities)
    assert all(len(orjson.dumps(b)) <= 20_000 for b in batches)
    assert [e for b in batches for e in b] == entities


def test_iot_agent_payloads(small_city: City) -> None:
    cfg = IotaConfig(service="guro", transport="HTTP")
    devices = city_devices(small_city)
    groups = iota.service_groups(devices, cfg)
    assert {g["apikey"]: g["entity_type"] for g in groups} == {
        "guro-shm": "StructuralSensor", "guro-care": "CareDevice", "guro-efire": "ElectricBoard",
        "guro-parking": "ParkingSpot", "guro-traffic": "TrafficFlowObserved", "guro-bus": "Vehicle",
        "guro-child": "ChildTracker", "guro-walk": "SafeReturnWalk"}
    assert all(g["resource"] == "/iot/json" for g in groups)
    tilt = next(d for d in devices if d.profile.kind == "tilt")
    body = iota.device_provision(tilt, cfg)
    assert body["entity_name"] == f"urn:ngsi-ld:StructuralSensor:guro-{tilt.device_id}"
    assert body["apikey"] == "guro-shm" and body["protocol"] == "PDI-IoTA-JSON" and body["timezone"] == "Asia/Seoul"
    assert {"object_id": "tx", "name": "tiltX", "type": "Number",
            "metadata": {"unitCode": {"type": "Text", "value": "C81"}}} in body["attributes"]
    statics = {s["name"]: s for s in body["static_attributes"]}
    assert statics["location"]["type"] == "GeoProperty"
    assert statics["controlledAsset"]["type"] == "Relationship"
    assert body["expected_interval_s"] == 600
    assert iota.headers(cfg) == {"fiware-service": "guro", "fiware-servicepath": "/"}
    assert iota.mqtt_topic("shm", tilt.device_id, cfg) == f"/guro-shm/{tilt.device_id}/attrs"
    assert iota.measure({"tx": 0.001}, START.timestamp()) == {"tx": 0.001, "TimeInstant": "2026-11-18T01:00:00.000Z"}


class MockIotAgent:
    """A minimal IoT Agent provisioning API with IoT Agent duplicate semantics (409 for the request)."""

    def __init__(self) -> None:
        self.devices: dict[str, dict[str, Any]] = {}
        self.groups: dict[str, dict[str, Any]] = {}
        self.calls: Counter[str] = Counter()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls[f"{request.method} {request.url.path}"] += 1
        if request.url.path == "/iot/services":
            group = orjson.loads(request.content)["services"][0]
            if group["apikey"] in self.groups:
                return httpx.Response(409, json={"title": "Already exists"})
            self.groups[group["apikey"]] = group
            return httpx.Response(201)
        if request.method == "GET":
            offset, limit = int(request.url.params["offset"]), int(request.url.params["limit"])
            page = list(self.devices.values())[offset:offset + limit]
            return httpx.Response(200, json={"count": len(self.devices), "devices": page})
        batch = orjson.loads(request.content)["devices"]
        if any(d["device_id"] in self.devices for d in batch):
            return httpx.Response(409, json={"title": "Already exists"})
        self.devices.update({d["device_id"]: d for d in batch})
        return httpx.Response(201)


async def test_provisioning_twice_keeps_the_devices(small_city: City) -> None:
    agent = MockIotAgent()
    cfg = IotaConfig()
    payloads = [iota.device_provision(d, cfg) for d in city_devices(small_city)]
    async with httpx.AsyncClient(transport=httpx.MockTransport(agent), base_url="http://ucity") as client:
        api = CityApi(client, cfg, max_bytes=50_000)
        assert await api.create_groups(iota.service_groups(city_devices(small_city), cfg)) == 8
        assert await api.create_devices(payloads[:100]) == 100
        again = CityApi(client, cfg, max_bytes=50_000)
        assert await again.create_groups(iota.service_groups(city_devices(small_city), cfg)) == 0
        assert await again.create_devices(payloads) == len(payloads) - 100  # only the missing ones
    assert len(agent.devices) == len(payloads)
    assert agent.calls["GET /iot/devices"] == 1


async def test_a_server_without_the_iot_agent_api_is_explained(small_city: City) -> None:
    def no_iot(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"title": "Not Found"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(no_iot), base_url="http://ucity") as client:
        with pytest.raises(SimulatorError, match="no IoT Agent provisioning API"):
            await CityApi(client, IotaConfig()).create_groups(iota.service_groups(city_devices(small_city), IotaConfig()))
