"""Periodic work on the platform clock (ucity/core/periodic.py), moved by a FakeClock: no sleeps."""

from __future__ import annotations

import asyncio
import logging

import pytest

from ucity.core.clock import FakeClock
from ucity.core.periodic import Periodic


async def test_runs_each_period_after_the_first_delay_and_stops() -> None:
    clock, runs = FakeClock(), []

    async def job() -> None:
        runs.append(clock.now())

    periodic = Periodic(clock, "test-job", job, lambda: 10.0)
    periodic.start(first_delay_s=1.0)
    clock.advance(0.9)
    await periodic.settle()
    assert runs == []
    clock.advance(0.1)
    await asyncio.sleep(0)  # the task the timer made gets its turn
    await periodic.settle()
    assert len(runs) == 1 and periodic.next is not None
    clock.advance(10.0)
    await asyncio.sleep(0)
    await periodic.settle()
    assert len(runs) == 2
    await periodic.stop()
    assert periodic.next is None
    clock.advance(100.0)
    await asyncio.sleep(0)
    assert len(runs) == 2


async def test_a_failing_run_is_logged_and_the_next_period_runs(caplog: pytest.LogCaptureFixture) -> None:
    clock, runs = FakeClock(), []

    async def job() -> None:
        runs.append(1)
        if len(runs) == 1:
            raise RuntimeError("store down")

    periodic = Periodic(clock, "flaky-job", job, lambda: 5.0)
    periodic.start()
    with caplog.at_level(logging.ERROR, logger="ucity.core.periodic"):
        clock.advance(5.0)
        await asyncio.sleep(0)
        await periodic.settle()
    assert "flaky-job failed" in caplog.text
    clock.advance(5.0)
    await asyncio.sleep(0)
    await periodic.settle()
    assert len(runs) == 2
    await periodic.stop()


async def test_a_run_due_while_one_is_under_way_is_put_off_a_period() -> None:
    clock, started, release = FakeClock(), [], asyncio.Event()

    async def job() -> None:
        started.append(1)
        await release.wait()

    periodic = Periodic(clock, "slow-job", job, lambda: 5.0)
    periodic.start()
    clock.advance(5.0)
    await asyncio.sleep(0)
    assert periodic.busy and len(started) == 1
    periodic.arm(0.0)  # armed while the first is still running (as a domain's declaration does): put off
    clock.advance(0.0)
    await asyncio.sleep(0)
    assert len(started) == 1 and periodic.next is not None
    release.set()
    await periodic.settle()
    assert len(started) == 1  # the period counts from the end of the run that was under way
    await periodic.stop()


async def test_disabled_arms_nothing() -> None:
    clock, enabled = FakeClock(), [False]

    async def job() -> None:
        raise AssertionError("never runs")

    periodic = Periodic(clock, "off-job", job, lambda: 1.0, lambda: enabled[0])
    periodic.start()
    assert periodic.next is None
    enabled[0] = True
    periodic.arm()
    assert periodic.next is not None
    await periodic.stop()
