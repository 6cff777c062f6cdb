"""The server-sent-events stream for dashboards: `GET /api/v1/stream`.

Every alarm event (raised, escalated, deescalated, reactivated, acknowledged, cleared, closed,
updated) goes to every connected client of the alarm's tenant as

    id: <sequence number>
    event: alarm.<event>
    data: <the alarm, JSON>

* each client has a bounded queue; a client too slow to keep up is disconnected (its browser
  reconnects and resumes), so it never holds up the others or grows memory; what waits in the
  queue when the client's stream wakes up is sent in one write (in order), so a burst of alarms
  costs one wake-up and one send, not one per event;
* a comment line (`: heartbeat`) is sent when the stream has been idle `sse_heartbeat_s`, so
  proxies keep the connection open and clients notice a dead one;
* `Last-Event-ID` (header, or `lastEventId` query parameter) resumes from a ring buffer of the
  last `sse_buffer` events (in memory: a restart starts a new sequence);
* a stream ends after `sse_max_stream_s` and the client reconnects with `Last-Event-ID` (the SSE
  protocol's own recovery): uvicorn waits for open responses before it shuts down, and an
  endless stream would hold a shutdown forever.

Heartbeats use the event loop's own time: they keep a connection alive and are not platform logic.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

STREAM_RETRY_MS = 2000


@dataclass(frozen=True, slots=True)
class StreamEvent:
    seq: int
    tenant: str
    event: str
    data: dict[str, Any]
    _encoded: bytes | None = field(default=None, compare=False, repr=False)
    _viewed: bytes | None = field(default=None, compare=False, repr=False)

    def encode(self) -> bytes:
        """The event's bytes on the stream, made once for every client (and resumption) that sends it."""
        encoded = self._encoded
        if encoded is None:
            encoded = b"id: %d\nevent: %s\ndata: %s\n\n" % (self.seq, self.event.encode(), orjson.dumps(self.data))
            object.__setattr__(self, "_encoded", encoded)  # a cache: the event itself never changes
        return encoded

    def encode_viewed(self, view: Callable[[dict[str, Any]], dict[str, Any]]) -> bytes:
        """The event's bytes with its alarm as `view` shows it (an alarm about a person to a caller without
        personal:read, ucity/alarms/api.py `person_view`); made once per event: a hub has one view. An alarm the
        view leaves as it is (the same object) is sent as `encode` sends it."""
        viewed = self._viewed
        if viewed is None:
            data = view(self.data)
            viewed = self.encode() if data is self.data else \
                b"id: %d\nevent: %s\ndata: %s\n\n" % (self.seq, self.event.encode(), orjson.dumps(data))
            object.__setattr__(self, "_viewed", viewed)
        return viewed


class _Client:
    def __init__(self, tenant: str, size: int) -> None:
        self.tenant = tenant
        self.queue: asyncio.Queue[StreamEvent | None] = asyncio.Queue(maxsize=size)
        self.dropped = False


class SseHub:
    """Fans alarm events out to stream clients; keeps the recent ones for resuming."""

    def __init__(self, buffer: int, client_queue: int, heartbeat_s: float, max_stream_s: float = 300.0) -> None:
        self._ring: deque[StreamEvent] = deque(maxlen=buffer)
        self._clients: set[_Client] = set()
        self._seq = itertools.count(1)
        self._client_queue = client_queue
        self.heartbeat_s = heartbeat_s
        self.max_stream_s = max_stream_s
        self.dropped_clients = 0
        # Called with (tenant, event, data) for every event this process publishes itself (scale-out: sent on to
        # the API processes' hubs, ucity/cluster/live.py); not for events `relay` brings from other processes.
        self.on_publish: list[Callable[[str, str, dict[str, Any]], None]] = []

    @property
    def clients(self) -> int:
        return len(self._clients)

    def publish(self, tenant: str, event: str, data: dict[str, Any]) -> StreamEvent:
        for listener in self.on_publish:
            listener(tenant, event, data)
        return self.relay(tenant, event, data)

    def relay(self, tenant: str, event: str, data: dict[str, Any]) -> StreamEvent:
        """Stream an event to this hub's clients (and its ring), without telling `on_publish`: one another process
        published (a worker's alarm, in scale-out)."""
        item = StreamEvent(next(self._seq), tenant, f"alarm.{event}", data)
        self._ring.append(item)
        for client in list(self._clients):
            if client.tenant == tenant:
                self._offer(client, item)
        return item

    def _offer(self, client: _Client, item: StreamEvent) -> None:
        try:
            client.queue.put_nowait(item)
        except asyncio.QueueFull:  # too slow: disconnect it; it resumes from the ring with Last-Event-ID
            client.dropped = True
            self._clients.discard(client)
            self.dropped_clients += 1
            with contextlib.suppress(asyncio.QueueEmpty):
                client.queue.get_nowait()
            client.queue.put_nowait(None)

    def backlog(self, tenant: str, last_event_id: str | None) -> list[StreamEvent]:
        """Buffered events after `last_event_id` (all buffered ones if that id is gone or unparsable)."""
        if last_event_id is None:
            return []
        try:
            after = int(last_event_id)
        except ValueError:
            after = 0
        return [e for e in self._ring if e.tenant == tenant and e.seq > after]

    async def stream(self, tenant: str, last_event_id: str | None = None,
                     view: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> AsyncIterator[bytes]:
        """The bytes of one client's stream, until it disconnects (the server cancels it) or is dropped; with
        `view`, each alarm as that function shows it (one function per hub: its bytes are cached per event)."""
        encode: Callable[[StreamEvent], bytes] = StreamEvent.encode if view is None else \
            (lambda item: item.encode_viewed(view))
        client = _Client(tenant, self._client_queue)
        self._clients.add(client)  # before the backlog is read, so nothing falls between the two
        try:
            yield b"retry: %d\n: ucity alarm stream\n\n" % STREAM_RETRY_MS
            sent = 0
            for missed in self.backlog(tenant, last_event_id):
                sent = missed.seq
                yield encode(missed)
            loop = asyncio.get_running_loop()
            ends = loop.time() + self.max_stream_s
            queue = client.queue
            while (left := ends - loop.time()) > 0:
                waiting: list[StreamEvent | None] = []
                if queue.empty():
                    try:  # awaited in this task: `wait_for` ran the get in a task of its own, one more turn of
                        # the event loop per wake-up, which in an alarm storm is a long one
                        async with asyncio.timeout(min(self.heartbeat_s, left)):
                            waiting.append(await queue.get())
                    except TimeoutError:
                        if ends - loop.time() > 0:
                            yield b": heartbeat\n\n"
                        continue
                # Everything queued goes out in one write: in an alarm storm one wake-up and one send per
                # event fell behind the events (and the client was dropped); the order stays the queue's.
                while not queue.empty():
                    waiting.append(queue.get_nowait())
                out = [encode(item) for item in waiting if item is not None and item.seq > sent]
                if out:
                    yield b"".join(out)
                if None in waiting:  # dropped: the events queued before it were its last ones
                    return
        finally:
            self._clients.discard(client)

