"""The dashboard stream `GET /api/v1/stream` on a live server, read with httpx streaming."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson

from tests.alarms.support import OPERATOR, SENSOR, TENANT, matched
from tests.conftest import LiveServer
from ucity.alarms.notifiers.sse import SseHub
from ucity.app import Ucity
from ucity.rules.events import RuleMatched

LATENCY_LIMIT_S = 0.100


class Stream:
    """The frames of one SSE connection, each with the monotonic time it arrived."""

    def __init__(self) -> None:
        self.frames: list[tuple[float, dict[str, str]]] = []
        self.comments: list[str] = []
        self._arrived = asyncio.Event()

    def feed(self, lines: list[str]) -> None:
        frame: dict[str, str] = {}
        for line in lines:
            if line.startswith(":"):
                self.comments.append(line[1:].strip())
            elif ":" in line:
                name, _, value = line.partition(":")
                frame[name] = value.lstrip(" ")
        if "event" in frame:
            self.frames.append((time.monotonic(), frame))
        self._arrived.set()

    async def wait(self, count: int, timeout: float = 5.0) -> list[tuple[float, dict[str, str]]]:
        deadline = time.monotonic() + timeout
        while len(self.frames) < count:
            self._arrived.clear()
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"only {len(self.frames)} of {count} events arrived"
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)
        return self.frames

    def events(self) -> list[tuple[str, dict[str, Any]]]:
        return [(f["event"], orjson.loads(f["data"])) for _, f in self.frames]


@asynccontextmanager
async def stream(server: LiveServer, headers: dict[str, str] | None = None, **params: str) -> AsyncIterator[Stream]:
    got = Stream()
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http, \
            http.stream("GET", "/api/v1/stream", headers=headers or {}, params=params) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")

        async def read() -> None:
            lines: list[str] = []
            async for line in response.aiter_lines():
                if line:
                    lines.append(line)
                else:
                    got.feed(lines)
                    lines = []

        reader = asyncio.create_task(read())
        await asyncio.sleep(0.05)  # the server registers the client before it sends the first bytes
        try:
            yield got
        finally:
            reader.cancel()


def ucity_of(server: LiveServer) -> Ucity:
    ucity: Ucity = server.server.config.app.state.ucity  # type: ignore[union-attr]
    return ucity


async def drained(server: LiveServer) -> None:
    """Until the live server's alarm service has finished every change (Alert entities included)."""
    ucity = ucity_of(server)
    loop = ucity.platform.loop
    assert loop is not None
    await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(ucity.alarms.drain(), loop))


def publish(server: LiveServer, event: RuleMatched) -> float:
    """Publish on the live server's bus (its own loop); returns when publishing began."""
    ucity = ucity_of(server)
    started = time.monotonic()
    loop = ucity.platform.loop
    assert loop is not None
    asyncio.run_coroutine_threadsafe(ucity.platform.bus.publish(event), loop).result(5)
    return started


async def test_a_raised_alarm_is_on_the_stream_within_100_ms(live_server: LiveServer) -> None:
    async with stream(live_server) as events:
        started = publish(live_server, matched(level="serious"))
        ((arrived, frame),) = await events.wait(1)
        latency = arrived - started
        assert latency < LATENCY_LIMIT_S, f"{latency * 1000:.1f} ms"
        print(f"raised -> on the stream: {latency * 1000:.1f} ms")
        event, alarm = events.events()[0]
        assert (event, alarm["entity_id"], alarm["level"], alarm["status"]) == (
            "alarm.raised", SENSOR, "serious", "active-unacknowledged")
        assert frame["id"].isdigit()

        async with httpx.AsyncClient(base_url=live_server.url) as http:
            response = await http.post(f"/api/v1/alarms/{alarm['id']}/acknowledge", headers=OPERATOR)
            assert response.status_code == 200
        await events.wait(2)
        assert [e for e, _ in events.events()] == ["alarm.raised", "alarm.acknowledged"]


async def test_heartbeats_tenants_and_resume_with_last_event_id(live_server: LiveServer) -> None:
    async with stream(live_server) as first, stream(live_server, {"NGSILD-Tenant": "urn:ngsi-ld:tenant:other"}) as other:
        publish(live_server, matched(level="caution"))
        publish(live_server, matched(entity="urn:ngsi-ld:Device:b", level="warning"))
        frames = await first.wait(2)
        await asyncio.sleep(0.4)  # idle longer than the 0.3 s heartbeat of these tests
        assert "heartbeat" in first.comments and other.frames == []
    first_id = frames[0][1]["id"]
    async with stream(live_server, {"Last-Event-ID": first_id}) as resumed:
        (_, frame), = await resumed.wait(1)
        assert orjson.loads(frame["data"])["entity_id"] == "urn:ngsi-ld:Device:b"
    async with stream(live_server, tenant=TENANT, lastEventId="0") as replayed:  # EventSource style: query parameters
        assert len(await replayed.wait(2)) == 2


async def test_rule_on_an_entity_write_reaches_the_stream_within_100_ms(live_server: LiveServer) -> None:
    """The acceptance path: tilt over the `serious` edge for 3 samples -> one alarm on the stream."""
    rule = {"id": "tilt-serious", "name": {"ko": "기울기", "en": "Tilt"}, "entityTypes": ["Device"],
            "condition": {"type": "threshold", "attribute": "tilt", "edges": [{"level": "serious", "at": 1.0}],
                          "hysteresis": 0.2}, "persistence": {"samples": 3}}
    async with httpx.AsyncClient(base_url=live_server.url, timeout=10) as http:
        assert (await http.post("/api/v1/rules", json=rule)).status_code == 201, "rules API"
        entity = {"id": SENSOR, "type": "Device", "tilt": {"type": "Property", "value": 0.1}}
        assert (await http.post("/ngsi-ld/v1/entities", json=entity)).status_code == 201
        async with stream(live_server) as events:
            acked = 0.0
            for value in (1.2, 1.3, 1.4, 1.5):
                response = await http.patch(f"/ngsi-ld/v1/entities/{SENSOR}/attrs",
                                            json={"tilt": {"type": "Property", "value": value}})
                assert response.status_code == 204
                acked = acked or (time.monotonic() if value == 1.4 else 0.0)
            ((arrived, _),) = await events.wait(1)
            assert arrived - acked < LATENCY_LIMIT_S, f"{(arrived - acked) * 1000:.1f} ms"
            print(f"acknowledged write -> on the stream: {(arrived - acked) * 1000:.1f} ms")
            await asyncio.sleep(0.2)
            assert [(e, a["rule_id"], a["level"]) for e, a in events.events()] == [("alarm.raised", "tilt-serious", "serious")]
            response = await http.patch(f"/ngsi-ld/v1/entities/{SENSOR}/attrs",
                                        json={"tilt": {"type": "Property", "value": 0.5}})
            assert response.status_code == 204
            await events.wait(2)
            assert [e for e, _ in events.events()] == ["alarm.raised", "alarm.cleared"]
        alarms = (await http.get("/api/v1/alarms")).json()
        assert alarms["total"] == 1
        await drained(live_server)  # the Alert entity follows the stream by a commit
        alerts = (await http.get("/ngsi-ld/v1/entities", params={"type": "Alert"})).json()
        assert len(alerts) == 1 and alerts[0]["status"]["value"] == "cleared-unacknowledged"


async def test_a_slow_client_is_dropped_and_streams_end_after_their_lifetime() -> None:
    hub = SseHub(buffer=10, client_queue=2, heartbeat_s=10.0, max_stream_s=0.3)
    slow = hub.stream(TENANT)
    assert (await anext(slow)).startswith(b"retry: 2000")
    for n in range(3):  # one more than its queue holds, while it reads nothing
        hub.publish(TENANT, "raised", {"n": n})
    assert (hub.clients, hub.dropped_clients) == (0, 1)
    rest = [chunk async for chunk in slow]
    assert rest == [b'id: 2\nevent: alarm.raised\ndata: {"n":1}\n\n']  # then it ends; it resumes from id 2

    started = time.monotonic()
    chunks = [chunk async for chunk in hub.stream(TENANT, last_event_id="2")]
    assert chunks[1] == b'id: 3\nevent: alarm.raised\ndata: {"n":2}\n\n' and len(chunks) == 2
    assert 0.25 < time.monotonic() - started < 1.0  # ended by its lifetime, not by the client
