"""The platform clock: every piece of ucity asks it for the time, so tests can move time.

`SystemClock` is the real one. `FakeClock` starts at a given instant and only moves when a test
calls `advance`; timers scheduled with `call_at` fire during `advance`, in time order, so
time-dependent logic (inactivity, escalation, throttling) is tested without sleeping.

Date-times from input go through `parse_iso`, which refuses (ValueError, which the APIs answer with
400 and ingest counts as `invalid-time`) instants outside MIN_INSTANT..MAX_INSTANT in UTC, years
0002 to 9998: `datetime` ends at years 1 and 9999, and a value at its edge (9999-12-31T23:59:59Z,
or 0001-01-01T00:00:00+09:00, in year 0 in UTC) made later arithmetic raise OverflowError, once at
every start (ingest health). What the platform stored itself is read back with `parse_iso_clamped`.
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

    def next_due(self) -> datetime | None:
        """When the earliest timer not cancelled is due (None: no timer pending), so that a test can step timer
        by timer (`set(clock.next_due())`, then settle). Cancelled timers at the head are dropped (QA13 F7)."""
        timers = self._timers
        while timers and timers[0][2].cancelled:
            heapq.heappop(timers)
        return timers[0][0] if timers else None


async def sleep(clock: Clock, seconds: float, on_wake: Callable[[], None] | None = None) -> None:
    """Wait `seconds` on `clock`: real time on the `SystemClock`, until a test advances a `FakeClock` past it.
    `on_wake` runs in the timer callback itself, before the waiting coroutine resumes."""
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def wake() -> None:
        if on_wake is not None:
            on_wake()
        if not done.done():
            done.set_result(None)

    timer = clock.call_at(clock.now() + timedelta(seconds=seconds), wake)
    try:
        await done
    finally:
        timer.cancel()


def to_iso(instant: datetime) -> str:
    """UTC ISO 8601 with microseconds and Z: the one wire and storage format of ucity."""
    utc = instant.astimezone(UTC)
    if utc.year >= 1000:  # isoformat is twice as fast as strftime
        return utc.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
    # Four digits, as ISO 8601 and `parse_iso` need (strftime's %Y does not pad): stored times then sort as text.
    return f"{utc.year:04d}" + utc.strftime("-%m-%dT%H:%M:%S.%fZ")


# The instants ucity takes from input (UTC): a year of headroom inside what `datetime` holds (years 1-9999), so
# that the arithmetic done on them (health deadlines, rule dwell times, windows a few days back, a local
# date one day before) cannot overflow. Nothing a city records is near either end; docs/devices.md.
MIN_INSTANT = datetime(2, 1, 1, tzinfo=UTC)
MAX_INSTANT = datetime(9998, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
RANGE_TEXT = "0002-01-01T00:00:00Z to 9998-12-31T23:59:59.999999Z"


def parse_iso(text: str) -> datetime:
    """Parse an ISO 8601 date-time; naive values are taken as UTC (for what ucity wrote itself and internal callers:
    input that names an instant goes through `parse_aware` or `require_offset` first, QA17 F4). ValueError (as for
    text that is no date-time) for an instant outside MIN_INSTANT..MAX_INSTANT in UTC: e.g.
    0001-01-01T00:00:00+09:00, which is in year 0 in UTC, or 9999-12-31T23:59:59Z, which leaves no room for
    arithmetic. The offset as given is kept."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if not value.tzinfo:
        value = value.replace(tzinfo=UTC)
    if not 2 < value.year < 9998:  # (an offset is under a day: years 3-9997 are inside whatever it is)
        check_instant(value, text)
    return value


def require_offset(text: str, name: str) -> None:
    """ValueError (bilingual: "한국어 / English") when `text` is an ISO 8601 date-time without a UTC offset, or a date
    without a time, where an instant is needed (QA17 F4): `parse_iso` would read it as UTC, 9 hours off for a Korea
    time. NGSI-LD DateTime values are UTC instants (ETSI GS CIM 009); an IoT Agent measure without an offset is in
    its device's timezone instead (ingest/decode.py). Text that is no date-time at all passes: the parser says so."""
    try:
        naive = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00")).tzinfo is None
    except ValueError:
        return
    if not naive:
        return
    if not any(sep in text for sep in "Tt "):
        raise ValueError(f"{name}에 시각과 UTC 오프셋 필요: {text!r}은(는) 날짜뿐임(예: {text}T00:00:00+09:00) / "
                         f"{name} needs a date-time with a UTC offset: {text!r} is a date only "
                         f"(e.g. {text}T00:00:00+09:00)")
    raise ValueError(f"{name}에 UTC 오프셋 필요: {text!r} 끝에 Z(UTC)나 +09:00(한국 시각)을 붙이세요 / "
                     f"{name} needs a UTC offset: add Z (UTC) or +09:00 (Korea time) to {text!r}")


def parse_aware(text: str, name: str) -> datetime:
    """`parse_iso` of a date-time that must carry its UTC offset (`require_offset`); ValueError otherwise."""
    require_offset(text, name)
    return parse_iso(text)


def check_instant(value: datetime, text: object = None) -> datetime:
    """`value` (aware) if it lies within MIN_INSTANT..MAX_INSTANT, else ValueError("date-time ... out of range")."""
    try:
        inside = MIN_INSTANT <= value.astimezone(UTC) <= MAX_INSTANT
    except OverflowError:  # beyond year 1-9999 once converted to UTC
        inside = False
    if not inside:
        shown = text if text is not None else value.isoformat()
        raise ValueError(f"date-time {shown!r} out of range: ucity takes {RANGE_TEXT}")
    return value


def parse_iso_clamped(text: str) -> datetime:
    """An ISO 8601 date-time moved into MIN_INSTANT..MAX_INSTANT instead of refused (ValueError only for text
    that is no date-time). For what the platform stored itself, since data written before the range was
    enforced (e.g. an observedAt of 9999-12-31T23:59:59Z) must not stop a restart; and for query bounds,
    where a bound beyond the range selects the same as the range's end."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    return clamp_instant(value if value.tzinfo else value.replace(tzinfo=UTC))


def clamp_instant(value: datetime) -> datetime:
    """`value` (aware) moved into MIN_INSTANT..MAX_INSTANT: for query bounds, where an instant beyond the range
    means "everything stored" (no stored time lies outside it), not an error."""
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        return MIN_INSTANT if value.year < 5000 else MAX_INSTANT
    return MIN_INSTANT if utc < MIN_INSTANT else MAX_INSTANT if utc > MAX_INSTANT else value


def to_micros(instant: datetime) -> int:
    # Integer division: exact at any year (a float quotient is off by a microsecond or more beyond 2^53 µs,
    # about years before 1685 and after 2255), and so equal to what iso_micros gives for the same time.
    return (instant - _EPOCH) // _MICROSECOND


def from_micros(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_NAIVE = datetime(1970, 1, 1)
_MICROSECOND = timedelta(microseconds=1)
_MIN_MICROS = to_micros(MIN_INSTANT)
_MAX_MICROS = to_micros(MAX_INSTANT)


def iso_micros(text: str) -> int:
    """`to_micros(parse_iso(text))` (ValueError out of range, as parse_iso), with a fast path for the form the
    platform writes (`to_iso`: `...SS.ffffffZ`): every history row and every alarm save converts such times."""
    if len(text) == 27 and text[-1] == "Z":
        try:
            micros = (datetime.fromisoformat(text[:-1]) - _EPOCH_NAIVE) // _MICROSECOND
        except ValueError:
            pass
        else:
            if _MIN_MICROS <= micros <= _MAX_MICROS:
                return micros
    return to_micros(parse_iso(text))
