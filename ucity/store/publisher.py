"""Publishes committed changes on the bus, in commit order, after the commit.

The store calls `on_commit` on the event loop once a transaction is durable; this component
queues the changes and publishes them one batch at a time, so subscribers see every entity's
changes in the order they were committed, and a slow subscriber never holds up the writer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from ucity.core.bus import Bus, Context, EntitiesChanged, EntityChange
from ucity.store.base import Store


class CommitPublisher:
    def __init__(self, store: Store, bus: Bus) -> None:
        self.bus = bus
        self._queue: asyncio.Queue[EntitiesChanged | None] = asyncio.Queue()
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
        self._queue.put_nowait(EntitiesChanged(context, changes))

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ucity-commit-publisher")

    async def _run(self) -> None:
        while True:
            event = await self._queue.get()
            if event is None:
                return
            await self.bus.publish(event)
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
            self._queue.put_nowait(None)
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self._task, timeout=10)
            self._task = None

    def health(self) -> dict[str, Any]:
        return {"ok": self._task is not None and not self._task.done(), "pending": self._queue.qsize(),
                "published": self.published}
