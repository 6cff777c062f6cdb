"""QA5 F8: a device whose clock runs ahead (typically Korean local time sent without its offset: +9 h).

Its readings are still taken (within `ingest.max_future_s`: no data lost), but each one more than
`ingest.clock_ahead_warn_s` ahead of the platform clock is counted as a `clock-ahead` warning, apart from
rejections, per device and in the totals with the latest offset; the device is flagged in
/api/v1/devices/health (`clockAheadS`); the HTTP answer says so; the log line is rate-limited like the
rejections'. All on a fake clock.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.ingest.support import Message, run, source_for
from ucity.app import Ucity
from ucity.core.clock import FakeClock
from ucity.core.config import Settings, load_settings
from ucity.core.http import Req, Resp

START = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
KST = START + timedelta(hours=9)  # the wall clock in Seoul, sent as if it were UTC
H = {"content-type": "application/json", "fiware-service": "guro"}
TENANT = "guro"


def make_settings(tmp_path: Path, **ingest: Any) -> Settings:
    return load_settings(environment="test", data_dir=str(tmp_path / "data"), store={"group_commit_ms": 1.0},
                         ingest=ingest)


async def call(handler: Callable[[Req], Awaitable[Resp]], path: str, body: Any = None, **params: str) -> Resp:
    req = Req("POST" if body is not None else "GET", path, params={k: [v] for k, v in params.items()},
              headers=dict(H), body=orjson.dumps(body) if body is not None else b"")
    return await handler(req)


async def started(tmp_path: Path, **ingest: Any) -> tuple[Ucity, FakeClock]:
    clock = FakeClock(START)
    app = Ucity(make_settings(tmp_path, **ingest), clock=clock)
    await app.start()
    groups = {"services": [{"apikey": "ck", "entity_type": "Thing", "autoprovision": True,
                            "attributes": [{"object_id": "cr", "name": "crackOpening", "type": "Number"}]}]}
    assert (await call(app.ingest.http.create_groups, "/iot/services", groups)).status == 201
    return app, clock


@pytest.fixture
async def city(tmp_path: Path) -> AsyncIterator[tuple[Ucity, FakeClock]]:
    app, clock = await started(tmp_path)
    try:
        yield app, clock
    finally:
        await app.stop()


async def post(app: Ucity, device: str, body: Any) -> Resp:
    return await call(app.ingest.http.measure, "/iot/json", body, k="ck", i=device)


def local(at: datetime) -> str:
    return at.replace(tzinfo=None).isoformat(timespec="seconds")  # no offset: read as UTC


def device_row(app: Ucity, device: str) -> dict[str, Any]:
    (row,) = [d for d in app.ingest.stats.snapshot(TENANT)["devices"] if d["device_id"] == device]
    return row


def health_of(app: Ucity, device: str) -> dict[str, Any]:
    (row,) = [d for d in app.ingest.monitor.summary(TENANT)["devices"] if d["device_id"] == device]
    return row


async def test_local_time_without_offset_is_taken_counted_flagged_and_answered(city: tuple[Ucity, FakeClock]) -> None:
    app, _ = city
    measures = [{"cr": 0.7, "TimeInstant": local(KST + timedelta(seconds=k))} for k in range(4)]
    response = await post(app, "kst-0", measures)
    assert response.status == 200, response.body
    assert (response.body["accepted"], response.body["rejected"]) == (4, [])  # taken: no data lost
    (warning,) = response.body["warnings"]
    assert (warning["reason"], warning["measures"], warning["aheadSeconds"]) == ("clock-ahead", 4, 32403.0)
    assert "time zone" in warning["detail"] and "시간대" in warning["detail"]

    row = device_row(app, "kst-0")
    assert (row["accepted"], row["rejected"], row["reasons"]) == (4, 0, {})  # not a rejection
    assert row["warnings"] == {"clock-ahead": 4}
    assert row["lastClockAhead"] == {"aheadSeconds": 32403.0, "observedAt": "2026-12-07T18:00:03.000000Z",
                                     "receivedAt": "2026-12-07T09:00:00.000000Z"}
    totals = app.ingest.stats.snapshot(TENANT)["totals"]
    assert totals["warnings"] == {"clock-ahead": 4} and totals["lastClockAhead"]["aheadSeconds"] == 32403.0
    assert app.ingest.stats.snapshot()["totals"]["warnings"] == {"clock-ahead": 4}

    health = app.ingest.monitor.summary(TENANT)
    assert health["clockAhead"] == 1 and health_of(app, "kst-0")["clockAheadS"] == 32403.0


async def test_a_few_minutes_ahead_is_no_warning_and_a_fixed_clock_clears_the_flag(
        city: tuple[Ucity, FakeClock]) -> None:
    app, clock = city
    assert "warnings" not in (await post(app, "d1", {"cr": 0.1, "TimeInstant": local(START + timedelta(minutes=4))})).body
    assert device_row(app, "d1")["warnings"] == {} and health_of(app, "d1")["clockAheadS"] is None
    assert "warnings" in (await post(app, "d1", {"cr": 0.2, "TimeInstant": local(KST)})).body
    assert health_of(app, "d1")["clockAheadS"] == 32400.0
    clock.advance(60)
    await post(app, "d1", {})  # a heartbeat carries no time: the flag stays
    assert health_of(app, "d1")["clockAheadS"] == 32400.0
    await post(app, "d1", {"cr": 0.3, "TimeInstant": "2026-12-07T18:01:00+09:00"})  # the offset fixed
    assert health_of(app, "d1")["clockAheadS"] is None
    assert device_row(app, "d1")["warnings"] == {"clock-ahead": 1}  # the count stays


async def test_the_threshold_is_a_setting(tmp_path: Path) -> None:
    app, _ = await started(tmp_path, clock_ahead_warn_s=60.0)
    try:
        response = await post(app, "d1", {"cr": 0.1, "TimeInstant": local(START + timedelta(minutes=2))})
        assert response.body["warnings"][0]["aheadSeconds"] == 120.0
    finally:
        await app.stop()


async def test_the_warning_log_is_rate_limited_like_the_rejections(city: tuple[Ucity, FakeClock],
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    app, clock = city
    caplog.set_level(logging.WARNING, logger="ucity.ingest.stats")

    def lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if "ahead of the platform clock" in r.getMessage()]

    await post(app, "d1", {"cr": 0.1, "TimeInstant": local(KST)})
    assert len(lines()) == 1 and "1 measure(s) of device d1" in lines()[0]
    for k in range(1, 4):
        clock.advance(10)
        await post(app, "d1", {"cr": 0.1, "TimeInstant": local(KST + timedelta(seconds=10 * k))})
    assert len(lines()) == 1  # within ingest.reject_log_interval_s: counted, not logged
    clock.advance(300)
    app.ingest.stats.flush()
    assert len(lines()) == 2 and "3 measure(s) of device d1" in lines()[1]
    app.ingest.stats.flush_all()
    assert len(lines()) == 2  # nothing left


async def test_mqtt_measures_ahead_are_counted_too(city: tuple[Ucity, FakeClock]) -> None:
    app, _ = city
    log: list[tuple[str, Any]] = []
    payload = orjson.dumps({"cr": 0.5, "TimeInstant": local(KST)})
    await run(source_for(app, log), [Message("/ck/m1/attrs", payload, 1), Message("/ck/m1/attrs/cr", b"0.6", 2)])
    row = device_row(app, "m1")
    assert (row["accepted"], row["warnings"]) == (2, {"clock-ahead": 1})
    assert row["transports"] == {"mqtt": 2}
