"""The platform clock: every piece of ucity asks it for the time, so tests can move time.

`SystemClock` is the real one. `FakeClock` starts at a given instant and only moves when a test
calls `advance`; timers scheduled with `call_at` fire during `advance`, in time order, so
time-dependent logic (inactivity, escalation, throttling) is tested without sleeping.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol


class TimerHandle:
    """A scheduled callback that can be cancelled."""

    def __init__(self, when: datetime, callback: Callable[[], object]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False
        self._native: asyncio.TimerHandle | None = None

    def cancel(self) -> None:
        self.cancelled = True
        if self._native is not None:
            self._native.cancel()


class Clock(Protocol):
    def now(self) -> datetime: ...

    def call_at(self, when: datetime, callback: Callable[[], object]) -> TimerHandle: ...


class SystemClock:
    """Wall-clock time in UTC; timers run on the asyncio loop."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def call_at(self, when: datetime, callback: Callable[[], object]) -> TimerHandle:
        handle = TimerHandle(when, callback)
        delay = max(0.0, (when - self.now()).total_seconds())
        handle._native = asyncio.get_running_loop().call_later(delay, callback)
        return handle


class FakeClock:
    """A clock that moves only when told to; for tests."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._timers: list[tuple[datetime, int, TimerHandle]] = []
        self._seq = itertools.count()

    def now(self) -> datetime:
        return self._now

    def call_at(self, when: datetime, callback: Callable[[], object]) -> TimerHandle:
        handle = TimerHandle(when, callback)
        heapq.heappush(self._timers, (when, next(self._seq), handle))
        return handle

    def advance(self, delta: timedelta | float) -> None:
        """Move time forward, firing due timers in order at their own instants."""
        step = delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        target = self._now + step
        while self._timers and self._timers[0][0] <= target:
            when, _, handle = heapq.heappop(self._timers)
            self._now = max(self._now, when)
            if not handle.cancelled:
                handle.callback()
        self._now = target

    def set(self, instant: datetime) -> None:
        self.advance(instant - self._now)


def to_iso(instant: datetime) -> str:
    """UTC ISO 8601 with microseconds and Z: the one wire and storage format of ucity."""
    utc = instant.astimezone(UTC)
    if utc.year >= 1000:  # isoformat is twice as fast as strftime; it pads years below 1000, strftime does not
        return utc.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
    return utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text: str) -> datetime:
    """Parse an ISO 8601 date-time; naive values are taken as UTC."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def to_micros(instant: datetime) -> int:
    return int((instant - _EPOCH) / timedelta(microseconds=1))


def from_micros(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_NAIVE = datetime(1970, 1, 1)
_MICROSECOND = timedelta(microseconds=1)


def iso_micros(text: str) -> int:
    """`to_micros(parse_iso(text))`, with a fast path for the form the platform writes (`to_iso`:
    `...SS.ffffffZ`): every history row and every alarm save converts such times."""
    if len(text) == 27 and text[-1] == "Z":
        try:
            return (datetime.fromisoformat(text[:-1]) - _EPOCH_NAIVE) // _MICROSECOND
        except ValueError:
            pass
    return to_micros(parse_iso(text))
