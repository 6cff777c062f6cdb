"""Publishes committed changes on the bus, in commit order, after the commit.

The store calls `on_commit` on the event loop once a transaction is durable; this component
queues the changes and publishes them one batch at a time, so subscribers see every entity's
changes in the order they were committed, and a slow subscriber never holds up the writer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from ucity.core.bus import Bus, Context, EntitiesChanged, EntityChange
from ucity.store.base import Store


class CommitPublisher:
    def __init__(self, store: Store, bus: Bus) -> None:
        self.bus = bus
        # A deque and one waiter rather than an asyncio.Queue: a group commit of single-attribute PATCHes
        # publishes one event per request, and the Queue's put and get (Python code each, with its
        # unfinished-task count and getter futures) cost about 3 µs per event on the event loop.
        self._queue: deque[EntitiesChanged | None] = deque()
        self._wake: asyncio.Future[None] | None = None  # set while `_run` waits for an event
        self._task: asyncio.Task[None] | None = None
        self.published = 0
        self.enqueued = 0
        self._drainers: list[Callable[[], Awaitable[None]]] = []
        store.on_commit(self._committed)

    def add_drainer(self, drain: Callable[[], Awaitable[None]]) -> None:
        """Work a subscriber defers past its handler (e.g. rule-state snapshots) that `drain` also awaits."""
        self._drainers.append(drain)

    def _committed(self, context: Context, changes: tuple[EntityChange, ...]) -> None:
        self.enqueued += 1
        self._put(EntitiesChanged(context, changes))

    def _put(self, event: EntitiesChanged | None) -> None:
        self._queue.append(event)
        wake = self._wake
        if wake is not None:
            self._wake = None
            if not wake.done():
                wake.set_result(None)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ucity-commit-publisher")

    async def _run(self) -> None:
        queue, publish = self._queue, self.bus.publish
        while True:
            if not queue:
                self._wake = asyncio.get_running_loop().create_future()
                await self._wake
                continue
            event = queue.popleft()
            if event is None:
                return
            await publish(event)
            self.published += 1

    async def drain(self) -> None:
        """Wait until everything committed so far has been published (for tests and shutdown)."""
        target = self.enqueued
        while self.published < target and self._task is not None and not self._task.done():
            await asyncio.sleep(0.001)
        for drain in self._drainers:
            await drain()

    async def stop(self) -> None:
        if self._task is not None:
            self._put(None)
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self._task, timeout=10)
            self._task = None

    def health(self) -> dict[str, Any]:
        return {"ok": self._task is not None and not self._task.done(), "pending": len(self._queue),
                "published": self.published}
