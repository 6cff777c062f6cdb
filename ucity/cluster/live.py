"""Scale-out: the live alarm stream of every API process shows the alarms of every process.

The workers raise, escalate and clear most alarms; an operator's dashboard reads the alarm stream (SSE,
`/api/v1/stream`) of an API process. Every process sends what its own alarm stream publishes (`SseHub.on_publish`)
on plain NATS (`ucity.live.alarms`: at most once, not stored); every API process streams what the others sent to
its clients (`SseHub.relay`), in the order it arrives. A message lost on the way (an API process disconnected
from NATS for a moment) is not sent again: the alarm list (`GET /api/v1/alarms`), which reads the store, is the
reference, and the dashboard reads it again whenever its stream reconnects.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from ucity.alarms.notifiers.sse import SseHub
from ucity.cluster.jetstream import JetStream
from ucity.core.errors import Unavailable

log = logging.getLogger(__name__)
NAME = "alarms"


class Broadcaster:
    """Messages out on one plain NATS subject (`JetStream.broadcast`: at most once, not stored), each sent in a task so
    that the caller (an alarm's publication, a provisioning write) never waits for NATS; counted, and a lost one
    logged (the first, then every 1000th). Each message names this process (`origin`): its own come back to it."""

    def __init__(self, stream: JetStream, name: str, lost_text: str) -> None:
        self.stream = stream
        self.name = name
        self.lost_text = lost_text
        self.origin = uuid.uuid4().hex
        self.sent = self.lost = 0
        self._tasks: set[asyncio.Task[None]] = set()

    def send(self, message: dict[str, Any]) -> None:
        task = asyncio.get_running_loop().create_task(self._broadcast(orjson.dumps({"origin": self.origin,
                                                                                    **message})))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Until the messages being sent are sent (or lost)."""
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _broadcast(self, payload: bytes) -> None:
        try:
            await self.stream.broadcast(self.name, payload)
            self.sent += 1
        except Unavailable as exc:
            self.lost += 1
            if self.lost == 1 or self.lost % 1000 == 0:
                log.warning("%s (%d so far): %s", self.lost_text, self.lost, exc)


class AlarmFanout:
    """A platform component: this process's alarm stream events out to the others; theirs in (API processes)."""

    def __init__(self, hub: SseHub, stream: JetStream, receive: bool) -> None:
        self.hub = hub
        self.stream = stream
        self.receive = receive
        self.out = Broadcaster(stream, NAME, "alarm stream event not sent to the other processes")
        self.origin = self.out.origin  # this process: its own events come back and are skipped
        self.received = self.refused = 0
        self._stop: Callable[[], Awaitable[None]] | None = None

    async def start(self) -> None:
        self.hub.on_publish.append(self._send)
        if self.receive:
            self._stop = await self.stream.listen(NAME, self._received)

    async def stop(self) -> None:
        if self._send in self.hub.on_publish:
            self.hub.on_publish.remove(self._send)
        if self._stop is not None:
            await self._stop()
            self._stop = None
        await self.out.drain()

    def health(self) -> dict[str, Any]:
        return {"ok": True, "receiving": self._stop is not None, "sent": self.out.sent, "received": self.received,
                "lost": self.out.lost, "refused": self.refused}

    def _send(self, tenant: str, event: str, data: dict[str, Any]) -> None:
        self.out.send({"tenant": tenant, "event": event, "data": data})

    async def _received(self, payload: bytes) -> None:
        try:
            message = orjson.loads(payload)
            if message["origin"] == self.origin:
                return
            tenant, event, data = str(message["tenant"]), str(message["event"]), message["data"]
            if not isinstance(data, dict):
                raise TypeError("data is not an object")
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            self.refused += 1
            log.warning("an alarm stream message that is not ucity's was ignored: %s", exc)
            return
        self.received += 1
        self.hub.relay(tenant, event, data)
