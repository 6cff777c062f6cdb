"""Rejected values always reach the log (QA4 F5): a device's first rejection at once, then one line per interval
with the count since the last, written out by a timer even when the device sends no more garbage, and at stop
for what the last interval had not logged. A started platform on a fake clock."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.ingest.test_health import START, make_settings, measure, provision
from ucity.app import Ucity
from ucity.core.clock import FakeClock

LOGGER = "ucity.ingest.stats"


def logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER]


async def test_every_rejection_is_logged_by_the_next_interval_or_at_stop(tmp_path: Path,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    clock = FakeClock(START)
    app = Ucity(make_settings(tmp_path), clock=clock)  # ingest.reject_log_interval_s: 300
    await app.start()
    try:
        await provision(app, [{"device_id": "p1"}, {"device_id": "p2"}])
        for _ in range(3):
            await measure(app, "p1", {"o": True, "b": "full"})  # batteryLevel is a Number: that value is rejected
        await measure(app, "p2", {"o": False, "b": "empty"})
        lines = logged(caplog)
        assert len(lines) == 2 and "1 value(s) of device p1" in lines[0] and "device p2" in lines[1]
        clock.advance(299)
        await app.ingest._stats_log.settle()
        assert len(logged(caplog)) == 2
        clock.advance(1)  # p1's interval is over: its two pending rejections are written out, without a new one
        await app.ingest._stats_log.settle()
        lines = logged(caplog)
        assert len(lines) == 3 and "rejected 2 value(s) of device p1" in lines[2] and "type-mismatch" in lines[2]
        await measure(app, "p1", {"o": True, "b": "low"})  # within p1's new interval: counted, not logged yet
        assert len(logged(caplog)) == 3
    finally:
        await app.stop()
    lines = logged(caplog)
    assert len(lines) == 4 and "rejected 1 value(s) of device p1" in lines[3] and "'low'" in lines[3]  # at stop
    assert app.ingest.stats.totals.rejected == 5
