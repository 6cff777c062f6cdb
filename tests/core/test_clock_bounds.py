"""The range of date-times ucity takes from input (clock.MIN_INSTANT..MAX_INSTANT in UTC): out of it,
`parse_iso` and `iso_micros` raise ValueError (which the APIs turn into 400 and ingest into
`invalid-time`), never OverflowError later in arithmetic; stored data and query bounds are clamped."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta, timezone

import pytest

from ucity.core.clock import (
    MAX_INSTANT,
    MIN_INSTANT,
    clamp_instant,
    iso_micros,
    parse_iso,
    parse_iso_clamped,
    to_iso,
    to_micros,
)

# The QA reproductions (finding 1, 2 and 3) and the edges of the range.
OUT_OF_RANGE = [
    "9999-12-31T23:59:59Z",  # storable by datetime, but no room for a deadline after it
    "9999-12-31T23:59:59.000000Z",  # the stored form: iso_micros' fast path
    "0001-01-01T00:00:00+09:00",  # year 0 in UTC: OverflowError in astimezone before
    "9999-12-31T23:59:59-09:00",  # year 10000 in UTC
    "0001-01-01T00:00:00Z",
    "0001-12-31T23:59:59.999999Z",
    "9999-01-01T00:00:00Z",
    "9999-01-01",
]


@pytest.mark.parametrize("text", OUT_OF_RANGE)
def test_out_of_range_date_times_are_a_value_error(text: str) -> None:
    with pytest.raises(ValueError, match="out of range"):
        parse_iso(text)
    with pytest.raises(ValueError, match="out of range"):
        iso_micros(text)


def test_the_range_ends_are_taken_and_leave_a_year_for_arithmetic() -> None:
    assert parse_iso("0002-01-01T00:00:00Z") == MIN_INSTANT
    assert parse_iso("0002-01-01T09:00:00+09:00") == MIN_INSTANT
    assert parse_iso("9998-12-31T23:59:59.999999Z") == MAX_INSTANT
    assert iso_micros("9998-12-31T23:59:59.999999Z") == to_micros(MAX_INSTANT)
    assert iso_micros("0002-01-01T00:00:00.000000Z") == to_micros(MIN_INSTANT)
    # What health, rules and the domains add or subtract: a year either way still fits in a datetime.
    assert (MAX_INSTANT + timedelta(days=364)).year == 9999
    assert (MIN_INSTANT - timedelta(days=364)).astimezone(timezone(timedelta(hours=-12))).year == 1


def test_values_inside_keep_their_offset_and_naive_means_utc() -> None:
    value = parse_iso("2026-03-01T09:00:00+09:00")
    assert value.utcoffset() == timedelta(hours=9)
    assert to_iso(value) == "2026-03-01T00:00:00.000000Z"
    assert parse_iso("2026-03-01T00:00:00") == datetime(2026, 3, 1, tzinfo=UTC)
    with pytest.raises(ValueError):
        parse_iso("not a time")


def test_to_iso_pads_years_below_1000_so_stored_times_parse_and_sort() -> None:
    old = datetime(500, 6, 1, 12, 0, tzinfo=UTC)
    assert to_iso(old) == "0500-06-01T12:00:00.000000Z"
    assert parse_iso(to_iso(old)) == old
    assert iso_micros(to_iso(old)) == to_micros(old)
    assert sorted([to_iso(datetime(2026, 1, 1, tzinfo=UTC)), to_iso(old)])[0] == to_iso(old)


def test_clamped_parsing_is_for_stored_data_and_query_bounds() -> None:
    assert parse_iso_clamped("9999-12-31T23:59:59.000000Z") == MAX_INSTANT
    assert parse_iso_clamped("9999-12-31T23:59:59-09:00") == MAX_INSTANT
    assert parse_iso_clamped("0001-01-01T00:00:00+09:00") == MIN_INSTANT
    assert parse_iso_clamped("2026-05-01T00:00:00Z") == datetime(2026, 5, 1, tzinfo=UTC)
    assert clamp_instant(datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=9)))) == MIN_INSTANT
    with pytest.raises(ValueError):
        parse_iso_clamped("garbage")


async def test_sleep_waits_on_the_platform_clock() -> None:
    """`clock.sleep` ends when a fake clock is advanced past it, not before; its timer goes when it is cancelled."""
    import asyncio

    from ucity.core.clock import FakeClock, sleep

    clock = FakeClock(datetime(2026, 1, 1, tzinfo=UTC))
    waiting = asyncio.ensure_future(sleep(clock, 5))
    await asyncio.sleep(0)
    clock.advance(4.9)
    await asyncio.sleep(0)
    assert not waiting.done()
    clock.advance(0.1)
    await asyncio.wait_for(waiting, 1)
    cancelled = asyncio.ensure_future(sleep(clock, 5))
    await asyncio.sleep(0)
    cancelled.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await cancelled
    clock.advance(10)  # its timer was cancelled with it: nothing fires into a finished future
