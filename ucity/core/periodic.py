"""Periodic work on the platform clock (ucity/core/clock.py), one run at a time.

Components that do something every so often (the retention sweep, the token registry's refresh) arm a timer
on the platform clock, so tests move a FakeClock instead of sleeping. A run due while the previous one is still
under way is put off by one period; a run that fails is logged, and the next period runs again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from ucity.core.clock import Clock, TimerHandle

log = logging.getLogger(__name__)


class Periodic:
    """Runs `job` `interval_s` (read at each arming) after the previous run ended, while started and `enabled()`."""

    def __init__(self, clock: Clock, name: str, job: Callable[[], Awaitable[Any]], interval_s: Callable[[], float],
                 enabled: Callable[[], bool] = lambda: True) -> None:
        self.clock = clock
        self.name = name
        self.job = job
        self.interval_s = interval_s
        self.enabled = enabled
        self.running = False
        self.next: datetime | None = None  # when the next run is due (None: none armed)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: TimerHandle | None = None
        self._task: asyncio.Task[Any] | None = None

    @property
    def busy(self) -> bool:
        """A run is under way."""
        return self._task is not None and not self._task.done()

    def start(self, first_delay_s: float | None = None) -> None:
        """From now on (called on the event loop); the first run after `first_delay_s`, else one period."""
        self._loop = asyncio.get_running_loop()
        self.running = True
        self.arm(first_delay_s)

    def arm(self, delay_s: float | None = None) -> None:
        """Arm the next run (after `delay_s`, else one period) unless one is armed, or it is stopped or disabled."""
        if not self.running or self._timer is not None or not self.enabled():
            return
        self.next = self.clock.now() + timedelta(seconds=self.interval_s() if delay_s is None else delay_s)
        self._timer = self.clock.call_at(self.next, self._due)

    async def stop(self) -> None:
        """No run after this; waits for the one under way."""
        self.running = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.next = None
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def settle(self) -> None:
        """Until the run under way (if any) has finished (tests: after moving the clock past one)."""
        while self.busy:
            await asyncio.gather(self._task, return_exceptions=True)  # type: ignore[arg-type]

    def _due(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a fake clock moved by a thread outside the loop (a test): run on the loop
            if self._loop is not None and self.running:
                self._loop.call_soon_threadsafe(self._due)
            return
        self._timer = None
        self.next = None
        if not self.running:
            return
        if self.busy:  # the previous run is still under way: the next one a period later
            self.arm()
            return
        self._task = loop.create_task(self._run(), name=self.name)

    async def _run(self) -> Any:
        try:
            return await self.job()
        except Exception:  # the job reports its own failures; this is the last guard of the server
            log.exception("%s failed", self.name)
            return None
        finally:
            self.arm()
