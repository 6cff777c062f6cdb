"""Retention of `Alert` entities (`retention.alerts_closed_days`, ucity/store/retention.py `_purge_alerts`): the
Alert of a cleared or closed alarm unchanged for longer goes with its history; the Alert of an active alarm, a
recent one, and one whose alarm is active again (its Alert not yet rewritten) stay. Fake clock; both backends."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ucity.alarms.alert import write_alert
from ucity.alarms.model import ACTIVE_STATUSES, ACTIVE_UNACK, CLEARED_ACK, CLOSED, STATUSES, Alarm
from ucity.app import Ucity
from ucity.core.bus import Context
from ucity.core.clock import FakeClock, to_iso
from ucity.core.config import load_settings
from ucity.ngsild.context import core_context
from ucity.ngsild.model import normalize_entity
from ucity.ngsild.ops import create_op
from ucity.store import retention
from ucity.store.base import AuditQuery, Mutation

T = "urn:ngsi-ld:tenant:default"
NOW = datetime(2026, 6, 1, tzinfo=UTC)
DAY = 86400.0
WHERE = {"type": "Point", "coordinates": [126.98, 37.56]}


@contextlib.asynccontextmanager
async def running(tmp_path: Path, **limits: Any) -> AsyncIterator[tuple[Ucity, FakeClock]]:
    """A started ucity at NOW - 100 days whose retention sweeps only when the test asks (as the CLI's)."""
    clock = FakeClock(NOW - timedelta(days=100))
    app = Ucity(load_settings(environment="test", data_dir=str(tmp_path / "data"), store={"group_commit_ms": 1.0},
                              retention=limits), clock=clock)
    app.retention.scheduled = False
    await app.start()
    try:
        yield app, clock
    finally:
        await app.stop()


async def alert(app: Ucity, clock: FakeClock, alarm_id: str, status: str, record: str | None = None) -> str:
    """An alarm's Alert written now (raised, then moved to `status`), and its alarm row with status `record`."""
    at = to_iso(clock.now())
    alarm = Alarm(alarm_id, T, f"urn:ngsi-ld:Device:{alarm_id}", "tilt", "safety", "warning", ACTIVE_UNACK, at, at,
                  at, entity_type="Device", location=WHERE)
    assert not isinstance(await write_alert(app.store, alarm, Context()), Exception)
    if status != ACTIVE_UNACK:
        alarm = replace(alarm, status=status, cleared_at=at, outcome="real" if status == CLOSED else None,
                        alert_written=None)
        assert not isinstance(await write_alert(app.store, alarm, Context()), Exception)
    if record is not None:
        await app.store.save_alarms([(replace(alarm, status=record).to_row(), [])])
    return alarm.alert_id


async def exists(app: Ucity, alert_id: str) -> tuple[bool, bool]:
    """(the entity, its temporal entity) exist."""
    return await app.store.get_entity(T, alert_id) is not None, await app.store.temporal_entity_exists(T, alert_id)


async def test_old_cleared_and_closed_alerts_go_with_their_history_active_and_recent_ones_stay(tmp_path: Path) -> None:
    async with running(tmp_path, alerts_closed_days=30) as (app, clock):
        cleared = await alert(app, clock, "old-cleared", CLEARED_ACK)
        closed = await alert(app, clock, "old-closed", CLOSED, record=CLOSED)
        active = await alert(app, clock, "old-active", ACTIVE_UNACK, record=ACTIVE_UNACK)
        lagging = await alert(app, clock, "old-reactivated", CLEARED_ACK, record=ACTIVE_UNACK)  # Alert not rewritten yet
        clock.advance(90 * DAY)
        recent = await alert(app, clock, "recent-cleared", CLEARED_ACK)
        clock.advance(10 * DAY)

        (dry,) = [r for r in await app.retention.sweep(dry_run=True) if r.data == "alerts"]
        assert dry.deleted == 2 and await exists(app, cleared) == (True, True)

        (result,) = [r for r in await app.retention.sweep() if r.data == "alerts"]

        assert (result.deleted, result.rule, result.keep_days) == (2, "retention.alerts_closed_days", 30)
        assert result.related > 0  # history rows: instances, series and the temporal entity
        assert await exists(app, cleared) == (False, False) and await exists(app, closed) == (False, False)
        for kept in (active, lagging, recent):
            assert await exists(app, kept) == (True, True)
        docs, _ = await app.store.query_audit(T, AuditQuery(kinds=("retention",)))
        (line,) = [d for d in docs if d.get("data") == "alerts"]
        assert line["deleted"] == 2 and line["historyDeleted"] == result.related and line["keepDays"] == 30
        assert app.platform.health()["retention"]["lastDeleted"]["alerts"] == 2
        # the next sweep finds nothing more
        (again,) = [r for r in await app.retention.sweep() if r.data == "alerts"]
        assert again.deleted == 0


async def test_alerts_go_in_batches(tmp_path: Path) -> None:
    async with running(tmp_path, alerts_closed_days=30, batch=2) as (app, clock):
        ids = [await alert(app, clock, f"old-{n}", CLEARED_ACK) for n in range(5)]
        kept = await alert(app, clock, "still-active", ACTIVE_UNACK)
        clock.advance(100 * DAY)
        (result,) = [r for r in await app.retention.sweep() if r.data == "alerts"]
        assert result.deleted == 5
        assert [await exists(app, i) for i in ids] == [(False, False)] * 5 and await exists(app, kept) == (True, True)


async def test_unset_by_default_keeps_them_as_every_other_limit(tmp_path: Path) -> None:
    async with running(tmp_path, alerts_closed_days=None) as (app, clock):
        assert load_settings(environment="test", data_dir=str(tmp_path / "d")).retention.alerts_closed_days is None
        old = await alert(app, clock, "old-cleared", CLEARED_ACK)
        clock.advance(1000 * DAY)
        assert [r for r in await app.retention.sweep() if r.data == "alerts"] == []
        assert await exists(app, old) == (True, True)
    async with running(tmp_path / "year", alerts_closed_days=365) as (app, clock):
        old = await alert(app, clock, "old-cleared", CLEARED_ACK)
        clock.advance(100 * DAY)
        assert [r.deleted for r in await app.retention.sweep() if r.data == "alerts"] == [0]
        clock.advance(266 * DAY)
        assert [r.deleted for r in await app.retention.sweep() if r.data == "alerts"] == [1]
        assert await exists(app, old) == (False, False)


async def test_an_alert_a_client_wrote_stays(tmp_path: Path) -> None:
    async with running(tmp_path, alerts_closed_days=30) as (app, clock):
        theirs = {"id": "urn:ngsi-ld:Alert:theirs", "type": "Alert", "status": {"type": "Property", "value": "closed"},
                  "validTo": {"type": "Property", "value": {"@type": "DateTime", "@value": to_iso(clock.now())}}}
        await app.store.mutate(T, [Mutation(theirs["id"], create_op(normalize_entity(theirs, core_context())))],
                               Context())
        clock.advance(100 * DAY)
        assert [r.deleted for r in await app.retention.sweep() if r.data == "alerts"] == [0]
        assert await exists(app, str(theirs["id"])) == (True, True)


def test_the_store_layer_names_alerts_as_the_alarms_do() -> None:
    assert set(retention._ACTIVE_ALARM) == set(ACTIVE_STATUSES)
    assert set(retention._ENDED_ALARM) == set(STATUSES) - set(ACTIVE_STATUSES)
    alarm = Alarm("a1", T, "urn:ngsi-ld:Device:d1", "r", "safety", "warning", ACTIVE_UNACK, "", "", "")
    assert alarm.alert_id == retention.ALERT_PREFIX + alarm.id
