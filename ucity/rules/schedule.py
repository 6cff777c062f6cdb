"""Local-time windows (e.g. sleep hours 23:00–06:00 in Asia/Seoul) as UTC intervals; pure.

Windows are daily and given in local wall time, so they are computed per local date with
zoneinfo and then compared in UTC, which keeps them right across midnight and (in zones that
have it) daylight-saving changes. `counted_seconds` and `reach` implement the `pause` schedule
of inactivity rules (time inside a window does not count); `defer_past` the `defer` schedule.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from ucity.rules.model import Window, parse_hhmm

Interval = tuple[datetime, datetime]
_BLOCK = timedelta(days=7)
_MAX_BLOCKS = 530  # about ten years: beyond that a step is treated as never reached


def excluded(windows: Sequence[Window], tz: ZoneInfo, start: datetime, end: datetime) -> list[Interval]:
    """The UTC intervals of `windows` that overlap [start, end), sorted and merged."""
    if not windows or end <= start:
        return []
    first = start.astimezone(tz).date() - timedelta(days=1)
    last = end.astimezone(tz).date()
    spans = [span for day in _days(first, last) for w in windows if (span := _span(w, day, tz)) is not None]
    return _merge(sorted(s for s in spans if s[1] > start and s[0] < end))


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=k) for k in range((last - first).days + 1)]


def _span(window: Window, day: date, tz: ZoneInfo) -> Interval | None:
    if window.days and day.isoweekday() not in window.days:
        return None
    start_t, end_t = parse_hhmm(window.start), parse_hhmm(window.end)
    end_day = day if end_t > start_t else day + timedelta(days=1)
    start = datetime.combine(day, start_t, tz).astimezone(UTC)
    end = datetime.combine(end_day, end_t, tz).astimezone(UTC)
    return (start, end)


def _merge(spans: list[Interval]) -> list[Interval]:
    out: list[Interval] = []
    for start, end in spans:
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def counted_seconds(windows: Sequence[Window], tz: ZoneInfo, start: datetime, end: datetime) -> float:
    """Seconds in [start, end) outside every window."""
    if end <= start:
        return 0.0
    inside = sum(((min(e, end) - max(s, start)).total_seconds() for s, e in excluded(windows, tz, start, end)), 0.0)
    return (end - start).total_seconds() - inside


def reach(windows: Sequence[Window], tz: ZoneInfo, start: datetime, seconds: float) -> datetime | None:
    """The first instant at which `seconds` outside the windows have passed since `start`.

    None when that never happens within about ten years (a schedule excluding the whole day).
    """
    cursor, remaining = start, max(0.0, seconds)
    for _ in range(_MAX_BLOCKS):
        block_end = cursor + _BLOCK
        for s, e in excluded(windows, tz, cursor, block_end):
            gap = (s - cursor).total_seconds()
            if gap > 0:
                if gap >= remaining:
                    return cursor + timedelta(seconds=remaining)
                remaining -= gap
            cursor = max(cursor, e)
        gap = (block_end - cursor).total_seconds()
        if gap >= remaining:
            return cursor + timedelta(seconds=remaining)
        remaining -= max(0.0, gap)
        cursor = max(cursor, block_end)
    return None


def window_at(windows: Sequence[Window], tz: ZoneInfo, instant: datetime) -> Interval | None:
    """The (merged) window containing `instant`, if any."""
    for s, e in excluded(windows, tz, instant, instant + timedelta(microseconds=1)):
        if s <= instant < e:
            return (s, e)
    return None


def defer_past(windows: Sequence[Window], tz: ZoneInfo, instant: datetime) -> datetime:
    """`instant`, or the end of the window it falls in."""
    span = window_at(windows, tz, instant)
    return instant if span is None else span[1]
