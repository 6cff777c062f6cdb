"""The dashboard stream `GET /api/v1/stream` on a live server, read with httpx streaming.

No stopwatch here (latency is measured in bench/): what is checked is order, e.g. that an event is on
the stream before the next write is made, and waits end on what arrives, with generous timeouts.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.alarms.support import OPERATOR, SENSOR, T0, TENANT, alarm_settings, matched
from tests.conftest import LiveServer
from ucity.alarms.notifiers.sse import SseHub
from ucity.app import Ucity
from ucity.core.clock import FakeClock
from ucity.rules.events import RuleMatched

OTHER = "urn:ngsi-ld:tenant:other"
WAIT_S = 30.0  # how long a wait for what happens at once may take on a loaded machine before it fails


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

    async def wait(self, count: int, timeout: float = WAIT_S) -> list[tuple[float, dict[str, str]]]:
        await self._until(lambda: len(self.frames) >= count, timeout,
                          lambda: f"only {len(self.frames)} of {count} events arrived")
        return self.frames

    async def wait_comment(self, text: str, after: int = 0, timeout: float = WAIT_S) -> None:
        """Until a comment line `text` arrived, after the first `after` comments."""
        await self._until(lambda: text in self.comments[after:], timeout,
                          lambda: f"no {text!r} comment after the first {after}: {self.comments}")

    async def _until(self, done: Callable[[], bool], timeout: float, failure: Callable[[], str]) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            self._arrived.clear()
            remaining = deadline - time.monotonic()
            assert remaining > 0, failure()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)

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
        try:
            # The server registers the client before it sends the first bytes: from then on nothing is missed.
            await got.wait_comment("ucity alarm stream")
            yield got
        finally:
            reader.cancel()


@pytest.fixture
def still_server(tmp_path: Path) -> Iterator[LiveServer]:
    """A live server on which nothing waits for time to pass: its platform clock stands still and its
    heartbeat (the stream's only wake-up of its own) is 10 minutes. An event on its stream went out at once,
    not on a timer (order, not a stopwatch)."""
    with LiveServer(alarm_settings(tmp_path, sse_heartbeat_s=600.0), FakeClock(T0)) as server:
        yield server


def ucity_of(server: LiveServer) -> Ucity:
    ucity: Ucity = server.server.config.app.state.ucity  # type: ignore[union-attr]
    return ucity


async def drained(server: LiveServer) -> None:
    """Until the live server's alarm service has finished every change (Alert entities included)."""
    ucity = ucity_of(server)
    loop = ucity.platform.loop
    assert loop is not None
    await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(ucity.alarms.drain(), loop))


def publish(server: LiveServer, event: RuleMatched) -> None:
    """Publish on the live server's bus (its own loop); returns once published."""
    ucity = ucity_of(server)
    loop = ucity.platform.loop
    assert loop is not None
    asyncio.run_coroutine_threadsafe(ucity.platform.bus.publish(event), loop).result(WAIT_S)


async def test_a_raised_alarm_is_on_the_stream_at_once(still_server: LiveServer) -> None:
    live_server = still_server
    async with stream(live_server) as events:
        publish(live_server, matched(level="serious"))
        ((_, frame),) = await events.wait(1)
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
    async with stream(live_server) as first, stream(live_server, {"NGSILD-Tenant": OTHER}) as other:
        publish(live_server, matched(level="caution"))
        publish(live_server, matched(entity="urn:ngsi-ld:Device:b", level="warning"))
        frames = await first.wait(2)
        # The other tenant's own event: had its stream been offered the two above, they would be on it
        # before this one (a stream is in order), so waiting for it shows what it was given, without a sleep.
        publish(live_server, matched(entity="urn:ngsi-ld:Device:c", tenant=OTHER))
        await other.wait(1)
        assert [a["entity_id"] for _, a in other.events()] == ["urn:ngsi-ld:Device:c"]
        await first.wait_comment("heartbeat")  # idle for the 0.3 s heartbeat of these tests
    first_id = frames[0][1]["id"]
    async with stream(live_server, {"Last-Event-ID": first_id}) as resumed:
        (_, frame), = await resumed.wait(1)
        assert orjson.loads(frame["data"])["entity_id"] == "urn:ngsi-ld:Device:b"
    async with stream(live_server, tenant=TENANT, lastEventId="0") as replayed:  # EventSource style: query parameters
        assert len(await replayed.wait(2)) == 2


async def test_rule_on_an_entity_write_reaches_the_stream_at_once(still_server: LiveServer) -> None:
    """The acceptance path: tilt over the `serious` edge for 3 samples -> one alarm on the stream, there
    before the next write is made (latency is measured in bench/, not here)."""
    live_server = still_server
    rule = {"id": "tilt-serious", "name": {"ko": "기울기", "en": "Tilt"}, "entityTypes": ["Device"],
            "condition": {"type": "threshold", "attribute": "tilt", "edges": [{"level": "serious", "at": 1.0}],
                          "hysteresis": 0.2}, "persistence": {"samples": 3}}
    async with httpx.AsyncClient(base_url=live_server.url, timeout=10) as http:
        assert (await http.post("/api/v1/rules", json=rule)).status_code == 201, "rules API"
        entity = {"id": SENSOR, "type": "Device", "tilt": {"type": "Property", "value": 0.1}}
        assert (await http.post("/ngsi-ld/v1/entities", json=entity)).status_code == 201
        async with stream(live_server) as events:
            for value in (1.2, 1.3, 1.4):
                response = await http.patch(f"/ngsi-ld/v1/entities/{SENSOR}/attrs",
                                            json={"tilt": {"type": "Property", "value": value}})
                assert response.status_code == 204
            await events.wait(1)  # raised by the third sample: on the stream before any further write
            assert [(e, a["rule_id"], a["level"]) for e, a in events.events()] == [("alarm.raised", "tilt-serious", "serious")]
            for value in (1.5, 0.5):  # still serious (no second alarm), then cleared
                response = await http.patch(f"/ngsi-ld/v1/entities/{SENSOR}/attrs",
                                            json={"tilt": {"type": "Property", "value": value}})
                assert response.status_code == 204
            await events.wait(2)  # the stream is in order: a second raise would come before the clear
            assert [e for e, _ in events.events()] == ["alarm.raised", "alarm.cleared"]
        alarms = (await http.get("/api/v1/alarms")).json()
        assert alarms["total"] == 1
        await drained(live_server)  # the Alert entity follows the stream by a commit
        alerts = (await http.get("/ngsi-ld/v1/entities", params={"type": "Alert"})).json()
        assert len(alerts) == 1 and alerts[0]["status"]["value"] == "cleared-unacknowledged"


async def test_a_slow_client_is_dropped_and_streams_end_after_their_lifetime() -> None:
    # A heartbeat far longer than the lifetime: a stream that ended only when it next woke up would not end
    # within the test's timeout.
    hub = SseHub(buffer=10, client_queue=2, heartbeat_s=600.0, max_stream_s=0.3)
    slow = hub.stream(TENANT)
    assert (await anext(slow)).startswith(b"retry: 2000")
    for n in range(3):  # one more than its queue holds, while it reads nothing
        hub.publish(TENANT, "raised", {"n": n})
    assert (hub.clients, hub.dropped_clients) == (0, 1)
    rest = [chunk async for chunk in slow]
    assert rest == [b'id: 2\nevent: alarm.raised\ndata: {"n":1}\n\n']  # then it ends; it resumes from id 2

    started = time.monotonic()
    async with asyncio.timeout(WAIT_S):  # ended by its lifetime, not by the client (nor by a heartbeat)
        chunks = [chunk async for chunk in hub.stream(TENANT, last_event_id="2")]
    assert chunks[1] == b'id: 3\nevent: alarm.raised\ndata: {"n":2}\n\n' and len(chunks) == 2
    assert time.monotonic() - started >= 0.25  # not at once: it lived its 0.3 s (a lower bound: load only adds)
