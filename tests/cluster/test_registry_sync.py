"""Scale-out: a service group or device provisioned through one process is known to the others (QA8 F1). Two API
processes on one PostgreSQL store and a real NATS: what A provisions, changes or deletes, B re-reads from the store
when A tells it (plain NATS), and B takes (or refuses) the device's measures over HTTP and MQTT accordingly; with the
message lost, B's periodic re-read (`ingest.registry_refresh_s`, on the fake platform clock) converges alone."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.cluster.test_alarm_actions import until
from tests.ingest.support import Message, run, source_for
from tests.ingest.test_health import START, H, call, provision
from tests.natsserver import NatsServer, running_nats
from ucity.app import Ucity
from ucity.core.clock import FakeClock
from ucity.core.config import Settings, load_settings
from ucity.core.errors import AlreadyExists, UcityError
from ucity.core.http import Req
from ucity.ingest.decode import UNKNOWN_DEVICE


@pytest.fixture(scope="module")
def nats_server() -> Iterator[NatsServer]:
    yield from running_nats()


def settings(tmp_path: Path, name: str, store_url: str, bus_url: str, refresh_s: float = 60.0) -> Settings:
    return load_settings(environment="test", data_dir=str(tmp_path / name), store={"url": store_url, "group_commit_ms": 1.0},
                         ingest={"registry_refresh_s": refresh_s},
                         bus={"url": bus_url, "partitions": 4, "lease_s": 3, "ack_wait_s": 2})


async def http_measure(app: Ucity, device: str, body: Any) -> int:
    """The status of an HTTP measure (the server answers the errors it raises as ProblemDetails)."""
    try:
        return (await call(app.ingest.http.measure, "POST", "/iot/json", body, k="pk", i=device)).status
    except UcityError as exc:
        return exc.status


async def mqtt_measure(app: Ucity, device: str, body: Any) -> tuple[int, int]:
    """A QoS 1 MQTT measure as the shared subscription hands it to `app`: (acknowledged, rejected as unknown-device)."""
    acks: list[tuple[str, Any]] = []
    before = app.ingest.stats.totals.reasons[UNKNOWN_DEVICE]
    await run(source_for(app, acks), [Message(f"/pk/{device}/attrs", orjson.dumps(body), 1)])
    return len(acks), app.ingest.stats.totals.reasons[UNKNOWN_DEVICE] - before


async def delete_device(app: Ucity, device: str) -> int:
    req = Req("DELETE", f"/iot/devices/{device}", headers=dict(H), path_params={"deviceId": device})
    return (await app.ingest.http.delete_device(req)).status


async def two_processes(tmp_path: Path, postgres_url: str, nats_url: str, clock: FakeClock) -> tuple[Ucity, Ucity]:
    a = Ucity(settings(tmp_path, "a", postgres_url, nats_url), clock=clock)
    b = Ucity(settings(tmp_path, "b", postgres_url, nats_url), clock=clock)
    await a.start()
    try:
        await b.start()
    except BaseException:
        await a.stop()
        raise
    return a, b


async def test_provisioning_through_one_process_is_known_to_the_other_at_once(
        tmp_path: Path, postgres_url: str, nats_server: NatsServer) -> None:
    a, b = await two_processes(tmp_path, postgres_url, nats_server.url, FakeClock(START))
    try:
        assert await http_measure(b, "p1", {"o": True}) == 404  # nothing provisioned yet
        await provision(a, [{"device_id": "p1"}])
        await until(lambda: b.ingest.registry.profile("pk", "p1") is not None, "B knows the device A provisioned")
        assert b.ingest.registry.device("guro", "p1") is not None  # its IoT Agent API lists it too
        assert b.ingest.monitor.get("guro", "p1") is not None  # and its health is followed
        assert await http_measure(b, "p1", {"o": True}) == 200
        assert await mqtt_measure(b, "p1", {"o": False}) == (1, 0)
        assert b.ingest.stats.totals.accepted == 2

        # The apikey belongs to A's tenant on B as well: another tenant's group with it is refused there.
        other = Req("POST", "/iot/services", headers={**H, "fiware-service": "other"},
                    body=orjson.dumps({"services": [{"apikey": "pk", "resource": "/iot/other"}]}))
        with pytest.raises(AlreadyExists):
            await b.ingest.http.create_groups(other)

        # A group change through A: B's profile of the device follows (a new attribute mapping).
        group = a.ingest.registry.group_for_apikey("pk")
        assert group is not None
        update = Req("PUT", "/iot/services", params={"apikey": ["pk"]}, headers=dict(H), body=orjson.dumps(
            {"attributes": [{"object_id": "t", "name": "temperature", "type": "Number"}]}))
        assert (await a.ingest.http.update_group(update)).status == 204
        await until(lambda: "t" in b.ingest.registry.profile("pk", "p1").by_object_id,  # type: ignore[union-attr]
                    "B's profile follows A's group change")

        # Deleted through A: B refuses its measures (HTTP 404, MQTT unknown-device) and forgets its health.
        assert await delete_device(a, "p1") == 204
        await until(lambda: b.ingest.registry.profile("pk", "p1") is None, "B forgets the device A deleted")
        assert b.ingest.registry.device("guro", "p1") is None and b.ingest.monitor.get("guro", "p1") is None
        assert await http_measure(b, "p1", {"o": True}) == 404
        assert await mqtt_measure(b, "p1", {"o": True}) == (1, 1)  # acknowledged and counted as unknown-device

        # An autoprovisioned device (B's MQTT path) is known to A.
        services = {"services": [{"apikey": "ak", "entity_type": "ParkingSpot", "autoprovision": True}]}
        assert (await call(a.ingest.http.create_groups, "POST", "/iot/services", services)).status == 201
        await until(lambda: b.ingest.registry.group_for_apikey("ak") is not None, "B knows A's new group")
        acks: list[tuple[str, Any]] = []
        await run(source_for(b, acks), [Message("/ak/auto1/attrs", b'{"o": true}', 1)])
        assert b.ingest.registry.device("guro", "auto1") is not None
        await until(lambda: a.ingest.registry.profile("ak", "auto1") is not None, "A knows B's autoprovisioned device")

        health = b.platform.health()["registrySync"]
        assert health["received"] >= 4 and health["sent"] >= 1 and health["refused"] == 0
        assert a.platform.health()["registrySync"]["received"] >= 1
    finally:
        await b.stop()
        await a.stop()


async def test_the_periodic_reread_converges_when_the_message_is_lost(
        tmp_path: Path, postgres_url: str, nats_server: NatsServer) -> None:
    clock = FakeClock(START)
    a, b = await two_processes(tmp_path, postgres_url, nats_server.url, clock)
    try:
        a.ingest.registry.on_change = lambda keys: None  # A's messages are lost
        await provision(a, [{"device_id": "p1"}, {"device_id": "p2"}])
        assert b.ingest.registry.profile("pk", "p1") is None
        assert await http_measure(b, "p1", {"o": True}) == 404

        clock.advance(60)  # ingest.registry_refresh_s: B re-reads every group and device
        await b.registry_sync.settle()
        assert b.ingest.registry.profile("pk", "p1") is not None and b.ingest.registry.profile("pk", "p2") is not None
        assert await http_measure(b, "p1", {"o": True}) == 200
        assert await mqtt_measure(b, "p2", {"o": True}) == (1, 0)
        kept = b.ingest.registry.profile("pk", "p2")

        assert await delete_device(a, "p1") == 204
        assert b.ingest.registry.profile("pk", "p1") is not None  # not told
        clock.advance(60)
        await b.registry_sync.settle()
        assert b.ingest.registry.profile("pk", "p1") is None
        assert b.ingest.monitor.get("guro", "p1") is None
        assert await http_measure(b, "p1", {"o": True}) == 404
        assert await mqtt_measure(b, "p1", {"o": True}) == (1, 1)
        assert b.ingest.registry.profile("pk", "p2") is kept  # unchanged: not rebuilt
        health = b.platform.health()["registrySync"]
        assert health["received"] == 0 and health["refreshes"] == 2 and health["failures"] == 0
    finally:
        await b.stop()
        await a.stop()
