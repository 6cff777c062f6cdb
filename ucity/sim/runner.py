"""Drives a running ucity with the simulated city: provision first, then stream measures.

Time is simulated: `SimClock` maps the wall clock it is given to simulated time (`speed` simulated
seconds per wall second, from a chosen start). Each tick the runner asks every device which reports
fall in the simulated interval since the last tick, reads them (pure functions), queues them per
device, and every flush window sends each device's queue as one request (a JSON array of measures,
each with its own `TimeInstant`), many requests concurrently. A slow server makes the runner fall
behind, never lose or reorder a device's measures. With `duration_s` the run stops by itself after
exactly `duration_s × speed` simulated seconds. Tests pass a fake clock and a sleep that advances it.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Protocol

import httpx

from ucity.sim import iota, scenarios
from ucity.sim.client import CityApi, HttpSink, MeasureSink, MqttSink, SendStats, SimulatorError, gather_all
from ucity.sim.devices import SimDevice, city_devices, entity_id
from ucity.sim.display import KST, Display, NullDisplay, Snapshot
from ucity.sim.entities import city_entities
from ucity.sim.iota import IotaConfig
from ucity.sim.model import City
from ucity.sim.scenarios import Binding

Sleep = Callable[[float], Awaitable[None]]


class NowSource(Protocol):
    """Anything with a `now()` in UTC: ucity's SystemClock and FakeClock both are."""

    def now(self) -> datetime: ...


class WallClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class SimClock:
    """Simulated time: `start` when created, then `speed` simulated seconds per wall second."""

    def __init__(self, wall: NowSource, speed: float, start: datetime | None = None) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.wall = wall
        self.speed = speed
        self.wall0 = wall.now()
        self.start = start or self.wall0

    def wall_elapsed(self) -> float:
        return (self.wall.now() - self.wall0).total_seconds()

    def at(self, wall_elapsed_s: float) -> datetime:
        return self.start + timedelta(seconds=wall_elapsed_s * self.speed)

    def now(self) -> datetime:
        return self.at(self.wall_elapsed())


@dataclass(frozen=True)
class RunConfig:
    """How to drive the server; the defaults suit `ucity simulate` on one machine."""

    url: str = "http://127.0.0.1:8000"
    mqtt_url: str | None = None
    speed: float = 1.0
    duration_s: float | None = None  # wall seconds of streaming; None = until stopped
    start: datetime | None = None  # simulated start; None = now
    scenarios: tuple[str, ...] = ()
    tenant: str | None = None  # NGSILD-Tenant and fiware-service
    token: str | None = field(default=None, repr=False)  # bearer token (server.require_auth); never printed
    provision: bool = True
    devices: bool = True  # provision devices and stream measures (False: static entities only)
    stream: bool = True
    tick_s: float = 1.0  # wall seconds between generation steps
    flush_s: float | None = None  # wall seconds between sends; None = by speed (1–10 s)
    concurrency: int = 16  # requests in flight
    max_measures_per_request: int = 120
    provision_bytes: int = 1_000_000  # per provisioning request (the server's default limit is 2 MiB)
    provision_concurrency: int = 3
    # Register the simulated cameras' stream URLs (the city's fake VMS, `cameras.stream_base`) through the camera
    # API, so that events get nearby cameras that can give footage (only those are chosen, docs/operations-center.md)
    camera_urls: bool = True

    def flush_window(self) -> float:
        """Longer windows at higher speeds: more measures per request, fewer requests."""
        return self.flush_s if self.flush_s is not None else min(10.0, max(1.0, self.speed / 10.0))


@dataclass
class RunReport:
    entities: int = 0
    camera_urls: int = 0  # cameras whose stream URL was registered
    groups: int = 0
    devices: int = 0
    devices_new: int = 0
    provision_s: float = 0.0
    stream_s: float = 0.0  # wall seconds of simulated streaming (the duration)
    stream_wall_s: float = 0.0  # how long it really took (longer when the server fell behind)
    sim_start: datetime | None = None
    sim_end: datetime | None = None
    stats: SendStats = field(default_factory=SendStats)
    bindings: list[Binding] = field(default_factory=list)

    def summary(self) -> list[str]:
        """What was done, for the end of a command."""
        s = self.stats
        lines = [f"entities upserted: {self.entities:,}; devices: {self.devices:,} ({self.devices_new:,} new); "
                 f"provisioning {self.provision_s:.1f} s"]
        if self.sim_start and self.sim_end:
            late = self.stream_wall_s > self.stream_s + 5
            behind = f", took {self.stream_wall_s:.0f} s: the server fell behind" if late else ""
            lines.append(f"streamed {s.measures:,} measures in {s.requests:,} requests over {self.stream_s:.0f} s{behind} "
                         f"(simulated {self.sim_start.astimezone(KST):%Y-%m-%d %H:%M} → "
                         f"{self.sim_end.astimezone(KST):%Y-%m-%d %H:%M} KST); "
                         f"failed {s.failed_measures:,}" + (f" (last: {s.last_error})" if s.last_error else ""))
        return lines


def auth_headers(token: str | None) -> dict[str, str]:
    """`Authorization: Bearer <token>` for every request of a run (provisioning and NGSI-LD need it when the
    server has `server.require_auth` on; device measures carry their API key and ignore it)."""
    return {"Authorization": f"Bearer {token}"} if token else {}


class Runner:
    """One simulation run against one server."""

    def __init__(self, city: City, config: RunConfig, *, clock: NowSource | None = None,
                 sleep: Sleep | None = None, sink: MeasureSink | None = None, display: Display | None = None,
                 stop: asyncio.Event | None = None) -> None:
        self.city = city
        self.config = config
        self.clock = clock or WallClock()
        self.sleep = sleep or asyncio.sleep
        self.display = display or NullDisplay()
        self.stop = stop or asyncio.Event()
        self.iota = IotaConfig(service=config.tenant, transport="MQTT" if config.mqtt_url else "HTTP")
        self.report = RunReport()
        self.devices: dict[str, SimDevice] = {d.device_id: d for d in city_devices(city)}
        self.pending: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.client = httpx.AsyncClient(
            base_url=config.url, timeout=httpx.Timeout(60.0, connect=10.0), headers=auth_headers(config.token),
            limits=httpx.Limits(max_connections=config.concurrency, max_keepalive_connections=config.concurrency))
        self.sink = sink

    async def __aenter__(self) -> Runner:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        if self.sink is not None:
            await self.sink.close()
        await self.client.aclose()
        self.display.close()

    # -- provisioning -------------------------------------------------------------------------------
    async def provision(self) -> RunReport:
        """Upsert the static entities and provision the devices, concurrently, in large batches."""
        started = time.perf_counter()
        api = CityApi(self.client, self.iota, self.config.tenant, self.config.provision_bytes,
                      concurrency=self.config.provision_concurrency)
        entities = city_entities(self.city)
        jobs: list[Awaitable[None]] = [self._entities(api, entities)]
        if self.config.devices:
            jobs.append(self._devices(api))
        await gather_all(*jobs)  # a refusal of one (e.g. 403 on the devices) cancels and awaits the other
        self.display.provisioned()
        self.report.provision_s = time.perf_counter() - started
        return self.report

    async def _entities(self, api: CityApi, entities: list[dict[str, Any]]) -> None:
        self.report.entities = await api.upsert_entities(entities, self.display.task("static entities", len(entities)))
        if not (self.config.camera_urls and self.city.cameras):
            return
        if not self.config.token:  # the camera API takes a token even where the data API does not
            self.display.note("카메라 스트림 URL 미등록: 카메라 API는 토큰이 필요합니다(--token) / camera stream URLs not "
                              "registered: the camera API needs a token (--token)")
            return
        # the camera API names a camera by the last part of its entity id (urn:ngsi-ld:Camera:<id>)
        urls = [(entity_id("Camera", c.id).rsplit(":", 1)[1], c.stream_url) for c in self.city.cameras]
        try:
            self.report.camera_urls = await api.set_camera_urls(urls, self.display.task("camera URLs", len(urls)))
        except SimulatorError as exc:  # e.g. an operator's token (`--static-only`): no cameras:admin; not fatal
            self.display.note(f"카메라 스트림 URL 미등록 / camera stream URLs not registered: {exc}")

    async def _devices(self, api: CityApi) -> None:
        devices = list(self.devices.values())
        self.report.groups = await api.create_groups(iota.service_groups(devices, self.iota))
        payloads = [iota.device_provision(d, self.iota) for d in devices]
        self.report.devices_new = await api.create_devices(payloads, self.display.task("devices", len(payloads)))
        self.report.devices = len(payloads)

    # -- streaming ----------------------------------------------------------------------------------
    async def open_sink(self) -> MeasureSink:
        if self.sink is None:
            if self.config.mqtt_url:
                self.sink = await MqttSink.connect(self.config.mqtt_url, self.iota, self.report.stats)
            else:
                self.sink = HttpSink(self.client, self.iota, self.report.stats)
        return self.sink

    def bind_scenarios(self, sim_start: float) -> list[Binding]:
        chosen = scenarios.select(self.config.scenarios)
        bindings = scenarios.apply(self.city, self.devices, chosen, sim_start)
        for b in bindings:
            # Shown in Korea time, as the simulated-time line and the summary are (times stay UTC on the wire).
            when = datetime.fromtimestamp(b.start, UTC).astimezone(KST).strftime("%Y-%m-%d %H:%M:%S KST")
            self.display.note(f"scenario [bold]{b.scenario}[/]: {b.target}, from {when}")
        self.report.bindings = bindings
        return bindings

    def generate(self, t0: float, t1: float) -> int:
        """Queue every report in the simulated interval (t0, t1]; returns how many."""
        count = 0
        for device in self.devices.values():
            for t in device.schedule(t0, t1):
                reading = device.read(t)
                if reading is not None:
                    self.pending[device.device_id].append(iota.measure(reading, t))
                    count += 1
        return count

    async def flush(self) -> None:
        """Send every queued measure: one request per device (split if very long), concurrently."""
        if not self.pending:
            return
        sink = await self.open_sink()
        queued, self.pending = self.pending, defaultdict(list)
        slots = asyncio.Semaphore(self.config.concurrency)
        size = self.config.max_measures_per_request

        async def send(device: SimDevice, measures: list[dict[str, Any]]) -> None:
            for i in range(0, len(measures), size):
                async with slots:
                    ok = await sink.send(device.profile.group, device.device_id, measures[i:i + size])
                if ok:
                    self.report.stats.by_type[device.profile.entity_type] += len(measures[i:i + size])

        await gather_all(*(send(self.devices[d], m) for d, m in queued.items()))

    async def stream(self) -> RunReport:
        """Stream until the duration is over or `stop` is set; returns the report."""
        sim = SimClock(self.clock, self.config.speed, self.config.start)
        self.report.sim_start = sim.start
        self.bind_scenarios(sim.start.timestamp())
        window, last = self.config.flush_window(), sim.start.timestamp()
        next_flush = 0.0  # the first tick's reports go out at once; then one send per window
        while True:
            elapsed = sim.wall_elapsed()
            done = self.stop.is_set() or (self.config.duration_s is not None and elapsed >= self.config.duration_s)
            if self.config.duration_s is not None:
                elapsed = min(elapsed, self.config.duration_s)  # end exactly at start + duration × speed
            now = sim.at(elapsed).timestamp()
            self.generate(last, now)
            last = now
            if done or elapsed >= next_flush:
                await self.flush()
                next_flush = sim.wall_elapsed() + window
            self._show(sim, elapsed)
            if done:
                break
            await self._pause()
        self.report.sim_end = sim.at(elapsed)
        self.report.stream_s = elapsed
        self.report.stream_wall_s = sim.wall_elapsed()
        return self.report

    async def _pause(self) -> None:
        """Sleep one tick, waking early when asked to stop."""
        tasks = [asyncio.ensure_future(self.stop.wait()), asyncio.ensure_future(self.sleep(self.config.tick_s))]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()

    def _show(self, sim: SimClock, elapsed: float) -> None:
        lines = tuple(f"{b.scenario}: {b.target}" for b in self.report.bindings)
        pending = sum(len(m) for m in self.pending.values())
        self.display.streaming(Snapshot(sim.at(elapsed), elapsed, self.config.speed, self.report.stats, pending, lines))

    async def run(self) -> RunReport:
        """Provision (if configured), then stream (if configured)."""
        if self.config.provision:
            await self.provision()
        if self.config.stream and self.config.devices:
            await self.stream()
        return self.report
