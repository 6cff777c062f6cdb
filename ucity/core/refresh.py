"""The periodic re-reading of a per-process copy of data that other processes change in the shared store.

Several API processes and workers may share one store (docs/operations.md, "Several machines"). What a component
keeps in memory and changes only through its own API calls (agencies, camera URLs, alarm contact data) would stay
as it was at start in the other processes: each such component re-reads it every period on the platform clock
(`Refresh`), so that a change made through another process is seen here within that bound.

The component's `read` applies the differences itself, under the lock its own writes take, so that a re-read does
not undo a change this process made while the read was under way. A failed read keeps what is known and is retried
the next period; the log says when re-reading starts failing and when it works again, not every period.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ucity.core.clock import Clock, to_iso
from ucity.core.periodic import Periodic

log = logging.getLogger(__name__)


class Refresh:
    """Runs `read` every `interval_s()` seconds once started, and keeps what health shows of it."""

    def __init__(self, clock: Clock, name: str, what: str, read: Callable[[], Awaitable[None]],
                 interval_s: Callable[[], float]) -> None:
        self.clock = clock
        self.what = what  # for the log: "the agencies", "the camera URLs" ...
        self.read = read
        self.interval_s = interval_s
        self.refreshes = 0  # periodic re-reads that worked
        self.failures = 0  # periodic re-reads that failed
        self.last_refresh: str | None = None  # when the copy was last read whole (the first load too)
        self.last_error: str | None = None
        self.failing = False  # the last periodic re-read failed
        self._periodic = Periodic(clock, name, self._run, interval_s)

    def start(self) -> None:
        """From now on (on the event loop), the first re-read one period after the load the caller made."""
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()

    async def settle(self) -> None:
        """Until the re-read under way (if any) has finished (tests: after moving the clock past one)."""
        await self._periodic.settle()

    def loaded(self) -> None:
        """The component read its copy whole (its first load, or a re-read)."""
        self.last_refresh = to_iso(self.clock.now())

    def health(self) -> dict[str, Any]:
        nxt = self._periodic.next
        return {"refreshS": self.interval_s(), "lastRefresh": self.last_refresh,
                "nextRefresh": to_iso(nxt) if nxt else None, "refreshes": self.refreshes, "failures": self.failures,
                "failing": self.failing, "lastError": self.last_error}

    async def _run(self) -> None:
        try:
            await self.read()
        except Exception as exc:  # the store is down: the copy stays as it is, the next period retries
            self.failures += 1
            self.last_error = f"{type(exc).__name__}: {exc}"[:500]
            if not self.failing:
                log.warning("re-reading %s failed (retried every %ss; logged again when it works): %s", self.what,
                            self.interval_s(), self.last_error)
            self.failing = True
            return
        self.refreshes += 1
        self.loaded()
        if self.failing:
            log.info("re-reading %s works again", self.what)
            self.failing = False


class Refreshed:
    """A component whose copy `load` reads whole and whose `_refresh` (a `Refresh`) re-reads it: `start` loads, then
    re-reads every period; `stop` ends that; `settle` waits for a re-read under way (tests)."""

    _refresh: Refresh
    load: Callable[[], Awaitable[None]]  # the component's own: reads its copy whole

    async def start(self) -> None:
        await self.load()
        self._refresh.start()

    async def stop(self) -> None:
        await self._refresh.stop()

    async def settle(self) -> None:
        """Until the re-read under way (if any) has finished (tests: after moving the clock past one)."""
        await self._refresh.settle()
