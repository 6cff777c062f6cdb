"""A real ucity with facility safety on SQLite and a fake clock, fed by the simulated city.

Devices are provisioned and send their measures through ingest's IoT Agent handlers (as the
simulator does over HTTP), facilities are the simulator's `Building` entities, and the clock only
moves when a test says so.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from ucity.app import Ucity
from ucity.core.bus import Context
from ucity.core.clock import FakeClock, to_iso
from ucity.core.config import Settings, load_settings
from ucity.core.http import Req, Resp
from ucity.domains.facility_safety.service import FacilitySafety
from ucity.ngsild.context import core_context
from ucity.ngsild.ops import create_op, merge_op
from ucity.sim import iota
from ucity.sim.devices import Reading, SimDevice
from ucity.sim.entities import facility_entity
from ucity.sim.model import Facility
from ucity.store.base import Mutation

TENANT = "urn:ngsi-ld:tenant:default"
OFFICER = {"x-ucity-actor": "officer-kim"}
CFG = iota.IotaConfig()
CTX = core_context()


def iri(name: str) -> str:
    return CTX.expand_term(name)


def domain_settings(tmp_path: Path, **domain: Any) -> Settings:
    """Settings with facility safety on. The tests written before QA5 F9 send the change from the installation
    baseline as the devices' readings (as the simulator's devices do), so `baseline.mode` is `zero` here unless a
    test gives it: the shipped default `capture` is tested where it is named (test_qa5e_baseline.py)."""
    domain.setdefault("baseline", {"mode": "zero"})
    # One process: the re-reads of what other processes wrote (tokens, agencies, cameras, contacts every
    # `ops.token_refresh_s`, subscriptions every `subscriptions.refresh_s`) have nothing to find, and on a fake clock
    # moved through days of reports each 10 s period is a wake-up; once an hour is enough here.
    return load_settings(environment="test", data_dir=str(tmp_path / "data"), store={"group_commit_ms": 1.0},
                         ops={"token_refresh_s": 3600}, subscriptions={"refresh_s": 3600},
                         domains={"enabled": ["facility_safety"], "facility_safety": domain})


def stored(entity: dict[str, Any]) -> dict[str, Any]:
    """A normalized NGSI-LD entity of the simulator in the store's expanded form."""
    attrs = {iri(k): [v] for k, v in entity.items() if k not in ("id", "type")}
    return {"id": entity["id"], "type": [iri(entity["type"])], "attrs": attrs}


def with_read(device: SimDevice, change: Callable[[float, Reading], Reading | None]) -> SimDevice:
    """The device with its readings changed by `change(t, reading)`."""
    base = device.read

    def read(t: float) -> Reading | None:
        reading = base(t)
        return None if reading is None else change(t, dict(reading))

    return dataclasses.replace(device, read=read)


class Site:
    """A started ucity on a fake clock, driven through its handlers."""

    def __init__(self, ucity: Ucity, clock: FakeClock) -> None:
        self.ucity = ucity
        self.clock = clock
        self.fs: FacilitySafety = ucity.platform.get("facility_safety")
        self.devices: dict[str, SimDevice] = {}

    @classmethod
    @asynccontextmanager
    async def running(cls, settings: Settings, start: datetime) -> AsyncIterator[Site]:
        clock = FakeClock(start)
        ucity = Ucity(settings, clock=clock)
        await ucity.start()
        try:
            yield cls(ucity, clock)
        finally:
            await ucity.stop()

    # -- time and quiescence ------------------------------------------------------------------------------------
    async def settle(self) -> None:
        """Until nothing is left to publish, assess, evaluate or persist."""
        u = self.ucity
        for _ in range(50):
            await u.ingest.monitor.drain()
            await u.publisher.drain()
            await self.fs.drain()
            await u.publisher.drain()
            await u.rules.drain()
            await u.alarms.settle()
            ops = u.platform.services.get("ops")
            if ops is not None:
                await ops.settle()
            if u.publisher.published == u.publisher.enqueued and self.fs._queue.empty():
                return

    async def at(self, t: float) -> None:
        """Move the clock to POSIX time t and settle, stopping at each timer due on the way, so that what a
        timer starts (a persistence met, an escalation step) runs with the clock at the timer's instant."""
        target = datetime.fromtimestamp(t, UTC)
        while (due := self.clock.next_due()) is not None and due <= target:
            self.clock.set(max(due, self.clock.now()))
            await self.settle()
        if target > self.clock.now():
            self.clock.set(target)
        await self.settle()

    # -- entities and devices -------------------------------------------------------------------------------------
    async def facility(self, facility: Facility) -> str:
        entity = facility_entity(facility)
        [outcome] = await self.ucity.store.mutate(TENANT, [Mutation(entity["id"], create_op(stored(entity)))],
                                                  Context(actor="test"))
        assert not isinstance(outcome, Exception), outcome
        await self.settle()
        return str(entity["id"])

    async def provision(self, devices: list[SimDevice]) -> None:
        http = self.ucity.ingest.http
        groups = {"services": iota.service_groups(devices, CFG)}
        assert (await http.create_groups(self.req("POST", "/iot/services", groups))).status == 201
        body = {"devices": [iota.device_provision(d, CFG) for d in devices]}
        assert (await http.create_devices(self.req("POST", "/iot/devices", body))).status == 201
        self.devices.update({d.device_id: d for d in devices})
        await self.settle()

    async def send(self, device: SimDevice, t: float, reading: Reading | None = None) -> None:
        reading = reading if reading is not None else device.read(t)
        if reading is None:
            return
        path, params = iota.measure_path(device.profile.group, device.device_id, CFG)
        resp = await self.ucity.ingest.http.measure(self.req("POST", path, iota.measure(reading, t), params))
        assert resp.status == 200, resp.body
        await self.settle()  # assessed and evaluated before the clock moves on, as 10 minutes would allow

    async def run(self, t0: float, t1: float, devices: list[SimDevice] | None = None) -> None:
        """Every report of the devices in (t0, t1], in time order, with the clock at each report."""
        chosen = devices if devices is not None else list(self.devices.values())
        reports = sorted((t, d.device_id) for d in chosen for t in d.schedule(t0, t1))
        by_id = {d.device_id: d for d in chosen}
        for t, device_id in reports:
            await self.at(t)
            await self.send(by_id[device_id], t)
        await self.at(t1)

    async def backfill(self, device: SimDevice, t0: float, t1: float, names: dict[str, str]) -> int:
        """History only (imported records): the device's readings in (t0, t1] for `names` (object id -> attr)."""
        rows: list[tuple[str, dict[str, Any]]] = []
        for t in device.schedule(t0, t1):
            reading = device.read(t)
            for object_id, attr in names.items():
                if reading is not None and object_id in reading:
                    rows.append((iri(attr), {"type": "Property", "value": reading[object_id],
                                             "observedAt": to_iso(datetime.fromtimestamp(t, UTC))}))
        await self.ucity.store.append_history(TENANT, device.entity_id, [iri(device.profile.entity_type)], rows)
        return len(rows)

    # -- reading ------------------------------------------------------------------------------------------------
    @staticmethod
    def req(method: str, path: str, body: Any = None, params: dict[str, str] | None = None,
            headers: dict[str, str] | None = None, **path_params: str) -> Req:
        return Req(method, path, params={k: [v] for k, v in (params or {}).items()},
                   headers={"content-type": "application/json", **(headers or {})},
                   body=orjson.dumps(body) if body is not None else b"", path_params=path_params)

    async def write_tilt(self, sensor: str, at: datetime, minutes: tuple[int, ...], x: float, y: float = 0.0) -> None:
        """Tilt samples of `sensor` written straight to the store, one commit each, at `at` minus each of `minutes`."""
        for minute in minutes:
            when = to_iso(at - timedelta(minutes=minute))
            attrs = {iri(n): [{"type": "Property", "value": v, "observedAt": when}] for n, v in (("tiltX", x), ("tiltY", y))}
            [outcome] = await self.ucity.store.mutate(TENANT, [Mutation(sensor, merge_op({"attrs": attrs}))],
                                                      Context(actor="test"))
            assert not isinstance(outcome, Exception)
            await self.settle()

    async def api(self, name: str, method: str = "GET", body: Any = None, params: dict[str, str] | None = None,
                  headers: dict[str, str] | None = None, **path_params: str) -> Resp:
        resp: Resp = await getattr(self.fs.api, name)(self.req(method, "/", body, params, headers, **path_params))
        await self.settle()
        return resp

    async def alarms(self, **filters: str) -> list[dict[str, Any]]:
        resp = await self.ucity.alarms_api.list_alarms(self.req("GET", "/api/v1/alarms",
                                                                params={"limit": "1000", **filters}))
        found: list[dict[str, Any]] = resp.body["alarms"]
        return found

    async def history(self, alarm_id: str) -> list[dict[str, Any]]:
        return list(await self.ucity.store.alarm_history(TENANT, alarm_id))

    async def entity(self, entity_id: str) -> dict[str, Any]:
        doc = await self.ucity.store.get_entity(TENANT, entity_id)
        assert doc is not None
        return doc

    async def value(self, entity_id: str, name: str, dataset_id: str | None = None) -> Any:
        doc = await self.entity(entity_id)
        for inst in doc["attrs"].get(iri(name), []):
            if inst.get("datasetId") == dataset_id:
                return inst.get("value", inst.get("json"))
        return None


def posix(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> float:
    """A Seoul wall-clock time as POSIX seconds."""
    return datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp() - 9 * 3600


def hours(n: float) -> timedelta:
    return timedelta(hours=n)
