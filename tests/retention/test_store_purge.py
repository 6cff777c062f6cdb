"""The store's retention deletions (each backend): history by type, attributes and cutoff in bounded batches,
audit lines (the only deletion the audit log allows), closed operations events with their grants, closed
alarms with their history, and dry runs that count without deleting."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from tests.conftest import StoreFactory
from ucity.core.clock import FakeClock, to_iso, to_micros
from ucity.store.base import (
    Aggregation,
    AlarmRow,
    AuditQuery,
    AuditRow,
    GrantRow,
    HistoryScope,
    OpsEventRow,
    Store,
    TemporalQuery,
)
from ucity.store.postgres import PostgresStore
from ucity.store.sqlite import SqliteStore

T = "urn:ngsi-ld:tenant:default"
T2 = "urn:ngsi-ld:tenant:other"
TRACKER = "https://example.org/Tracker"
SENSOR = "https://example.org/Sensor"
LOCATION = "https://example.org/location"
BATTERY = "https://example.org/battery"
NOW = datetime(2026, 6, 1, tzinfo=UTC)


def days_ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def reading(value: Any, days: float) -> dict[str, Any]:
    return {"type": "Property", "value": value, "observedAt": to_iso(days_ago(days))}


def cutoff(days: float) -> int:
    return to_micros(days_ago(days))


@pytest.fixture
async def store(make_store: StoreFactory) -> AsyncIterator[Store]:
    s = make_store(FakeClock(NOW), group_commit_ms=0.5)
    await s.start()
    yield s
    await s.stop()


async def values(store: Store, entity: str, attr: str, tenant: str = T) -> list[Any]:
    found, _ = await store.temporal_query(tenant, TemporalQuery(ids=(entity,)))
    series = found[0].attrs.get(attr) if found else None
    return [i["value"] for i in series.instances] if series else []


async def purge_all(store: Store, scope: HistoryScope, before: int, limit: int) -> list[int]:
    """Every call's count until the store has visited every series."""
    counts: list[int] = []
    cursor: int | None = 0
    while cursor is not None:
        deleted, cursor = await store.purge_history(scope, before, limit, cursor)
        assert deleted <= limit
        counts.append(deleted)
    return counts


# -- history ----------------------------------------------------------------------------------------
async def test_old_instances_of_the_type_go_new_ones_and_other_types_stay(store: Store) -> None:
    await store.append_history(T, "urn:ngsi-ld:Tracker:1", [TRACKER],
                               [(LOCATION, reading(d, d)) for d in (400, 200, 100, 10, 1)])
    await store.append_history(T2, "urn:ngsi-ld:Tracker:2", [TRACKER], [(LOCATION, reading(d, d)) for d in (300, 5)])
    await store.append_history(T, "urn:ngsi-ld:Sensor:1", [SENSOR], [(LOCATION, reading(d, d)) for d in (400, 1)])

    counts = await purge_all(store, HistoryScope((TRACKER,)), cutoff(180), 1000)

    assert sum(counts) == 3  # both tenants
    assert await values(store, "urn:ngsi-ld:Tracker:1", LOCATION) == [100, 10, 1]
    assert await values(store, "urn:ngsi-ld:Tracker:2", LOCATION, T2) == [5]
    assert await values(store, "urn:ngsi-ld:Sensor:1", LOCATION) == [400, 1]  # no rule for sensors


async def test_instances_without_observed_at_age_from_their_recording(store: Store) -> None:
    # Recorded at the store clock's now (NOW): younger than any cutoff in the past.
    await store.append_history(T, "urn:ngsi-ld:Tracker:1", [TRACKER], [(LOCATION, {"type": "Property", "value": "x"})])
    assert sum(await purge_all(store, HistoryScope((TRACKER,)), cutoff(1), 1000)) == 0
    assert sum(await purge_all(store, HistoryScope((TRACKER,)), to_micros(NOW + timedelta(seconds=1)), 1000)) == 1


async def test_attribute_filter_and_exclusions(store: Store) -> None:
    rows = [(LOCATION, reading("far", 90)), (BATTERY, reading(10, 90)), (LOCATION, reading("near", 1))]
    await store.append_history(T, "urn:ngsi-ld:Tracker:1", [TRACKER], list(rows))
    await store.append_history(T, "urn:ngsi-ld:Sensor:1", [SENSOR], list(rows))

    # the locations of trackers only
    assert sum(await purge_all(store, HistoryScope((TRACKER,), (LOCATION,)), cutoff(30), 1000)) == 1
    assert await values(store, "urn:ngsi-ld:Tracker:1", LOCATION) == ["near"]
    assert await values(store, "urn:ngsi-ld:Tracker:1", BATTERY) == [10]
    # everything but what a tracker's location rule covers (a default): the sensor's location, both batteries
    everything_else = HistoryScope(None, (), ((TRACKER, (LOCATION,)),))
    assert sum(await purge_all(store, everything_else, cutoff(30), 1000)) == 3
    assert await values(store, "urn:ngsi-ld:Tracker:1", BATTERY) == []
    assert await values(store, "urn:ngsi-ld:Sensor:1", LOCATION) == ["near"]


async def test_a_batch_never_deletes_more_than_its_limit(store: Store) -> None:
    for n in range(3):  # several series, 7 old instances each, 1 new
        await store.append_history(T, f"urn:ngsi-ld:Tracker:{n}", [TRACKER],
                                   [(LOCATION, reading(d, d)) for d in (*range(100, 107), 1)])
    counts = await purge_all(store, HistoryScope((TRACKER,)), cutoff(30), 4)
    assert sum(counts) == 21 and len([c for c in counts if c]) >= 6  # at most 4 a call: six calls at least
    for n in range(3):
        assert await values(store, f"urn:ngsi-ld:Tracker:{n}", LOCATION) == [1]


async def test_temporal_reads_after_a_purge(store: Store) -> None:
    """The temporal entity stays while it has history left; an emptied series is not shown (and goes: QA10 F8,
    tests/retention/test_emptied_series.py)."""
    entity = "urn:ngsi-ld:Tracker:1"
    await store.append_history(T, entity, [TRACKER], [(LOCATION, reading("old", 90)), (BATTERY, reading(5, 90)),
                                                      (BATTERY, reading(6, 1))])
    await purge_all(store, HistoryScope((TRACKER,)), cutoff(30), 1000)
    assert await store.temporal_entity_exists(T, entity)
    [found], _ = await store.temporal_query(T, TemporalQuery(ids=(entity,)))
    assert set(found.attrs) == {BATTERY}
    only, _ = await store.temporal_query(T, TemporalQuery(types=None, attrs=(LOCATION,), instances_only=True))
    assert only == []
    for window in (TemporalQuery(ids=(entity,)), TemporalQuery(ids=(entity,), time_from=cutoff(365))):
        [aggregated], _ = await store.temporal_aggregate(T, window, Aggregation(("totalCount", "avg")))
        assert set(aggregated.attrs) == {BATTERY}
        assert [v["totalCount"] for s in aggregated.attrs[BATTERY] for v in s.values] == [1]
    # new instances of the emptied series are recorded as before
    await store.append_history(T, entity, [TRACKER], [(LOCATION, reading("new", 0))])
    assert await values(store, entity, LOCATION) == ["new"]


async def test_dry_run_counts_and_deletes_nothing(store: Store) -> None:
    await store.append_history(T, "urn:ngsi-ld:Tracker:1", [TRACKER], [(LOCATION, reading(d, d)) for d in (90, 60, 1)])
    deleted, cursor = await store.purge_history(HistoryScope((TRACKER,)), cutoff(30), 1, 0, dry_run=True)
    assert (deleted, cursor) == (2, None)
    assert await values(store, "urn:ngsi-ld:Tracker:1", LOCATION) == [90, 60, 1]


def test_scope_rules() -> None:
    default = HistoryScope(None, (), ((TRACKER, ()), (SENSOR, (LOCATION,))))
    assert default.covers([], LOCATION)  # a series of unknown types: only a default covers it
    assert not default.covers([TRACKER], BATTERY)
    assert not default.covers([SENSOR], LOCATION) and default.covers([SENSOR], BATTERY)
    typed = HistoryScope((TRACKER,), (LOCATION,))
    assert typed.covers([SENSOR, TRACKER], LOCATION) and not typed.covers([TRACKER], BATTERY)
    assert not typed.covers([], LOCATION)


# -- audit ------------------------------------------------------------------------------------------
def audit(days: float, tenant: str = T, action: str = "created") -> AuditRow:
    return AuditRow(tenant, to_micros(days_ago(days)), "event", action, "tester", {"n": days})


async def test_audit_lines_past_the_cutoff_go_the_newest_always_stays(store: Store) -> None:
    await store.append_audit([audit(400), audit(300), audit(200, T2), audit(10), audit(5, T2)])
    assert await store.purge_audit(cutoff(100), 1000, dry_run=True) == 3
    assert await store.purge_audit(cutoff(100), 2) == 2  # bounded
    assert await store.purge_audit(cutoff(100), 2) == 1
    assert await store.purge_audit(cutoff(100), 2) == 0
    docs, _ = await store.query_audit(T, AuditQuery())
    assert [d["n"] for d in docs] == [10]
    # all older than the cutoff: the newest line stays, so that line numbers go on growing
    assert await store.purge_audit(to_micros(NOW), 1000) == 1
    (left,), _ = await store.query_audit(T2, AuditQuery())
    await store.append_audit([audit(0)])
    (new,), _ = await store.query_audit(T, AuditQuery())
    assert new["seq"] > left["seq"]


async def test_the_lines_of_an_event_still_open_stay(store: Store) -> None:
    """QA D4: an audit limit shorter than an event's life emptied the trail of an event still open (and the
    lines of its live grants). Those stay, however old; a closed, cancelled or deleted event's lines go."""
    for row in (event("open", "dispatched", 1), event("closed", "closed", 1), event("cancelled", "cancelled", 1),
                OpsEventRow(T2, "open", "112_VIDEO", "theft", "warning", "closed", "operator", "", 0, 0, 0, None, (),
                            {"id": "open"})):  # the same id, closed, in another tenant
        await store.save_ops_event(row, [])
    lines = [AuditRow(tenant, to_micros(days_ago(400)), kind, "x", "op", {"n": n}, event_id=event_id)
             for n, (tenant, kind, event_id) in enumerate([
                 (T, "event", "open"), (T, "grant", "open"), (T, "linkage", "open"), (T, "event", "closed"),
                 (T, "event", "cancelled"), (T, "event", "deleted-long-ago"), (T, "camera", None),
                 (T2, "event", "open")])]
    await store.append_audit([*lines, audit(0)])

    assert await store.purge_audit(cutoff(100), 1000, dry_run=True) == 5
    assert await store.purge_audit(cutoff(100), 2) == 2  # bounded as before
    assert await store.purge_audit(cutoff(100), 1000) == 3
    assert await store.purge_audit(cutoff(100), 1000) == 0
    docs, _ = await store.query_audit(T, AuditQuery(event_ids=("open",)))
    assert sorted(d["kind"] for d in docs) == ["event", "grant", "linkage"]  # the open event's trail is whole
    left, _ = await store.query_audit(T, AuditQuery())
    assert len(left) == 4
    assert await store.query_audit(T2, AuditQuery()) == ([], None)

    # once the event is closed, its lines go as any other
    await store.save_ops_event(event("open", "closed", 1), [])
    assert await store.purge_audit(cutoff(100), 1000) == 3


async def test_the_audit_log_refuses_any_other_delete(store: Store) -> None:
    await store.append_audit([audit(400), audit(1)])
    assert await store.purge_audit(cutoff(100), 1000) == 1
    if isinstance(store, SqliteStore):
        conn = sqlite3.connect(store.path)
        try:
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                conn.execute("DELETE FROM ops_audit")
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                conn.execute("UPDATE ops_audit SET actor = 'x'")
        finally:
            conn.close()
    else:
        assert isinstance(store, PostgresStore)
        conn = await asyncpg.connect(store.url)
        try:
            for statement in ("DELETE FROM ops_audit", "UPDATE ops_audit SET actor = 'x'", "TRUNCATE ops_audit"):
                with pytest.raises(asyncpg.RaiseError, match="append-only"):
                    await conn.execute(statement)
        finally:
            await conn.close()
    (line,), _ = await store.query_audit(T, AuditQuery())
    assert line["actor"] == "tester"


# -- operations events and grants ---------------------------------------------------------------------
def event(event_id: str, status: str, updated_days: float) -> OpsEventRow:
    updated = to_micros(days_ago(updated_days))
    return OpsEventRow(T, event_id, "112_VIDEO", "theft", "warning", status, "operator", "", updated, updated, updated,
                       None, (), {"id": event_id, "status": status})


def grant(grant_id: str, event_id: str) -> GrantRow:
    at = to_micros(days_ago(400))
    return GrantRow(T, grant_id, "police", event_id, "revoked", at, at, at, {"id": grant_id})


async def test_closed_events_go_with_their_grants(store: Store) -> None:
    for row in (event("old-closed", "closed", 400), event("old-cancelled", "cancelled", 300),
                event("new-closed", "closed", 10), event("old-open", "dispatched", 400)):
        await store.save_ops_event(row, [])
    for grant_id, event_id in (("g1", "old-closed"), ("g2", "old-closed"), ("g3", "new-closed"), ("g4", "old-open")):
        await store.save_grant(grant(grant_id, event_id), [])

    assert await store.purge_ops_events(cutoff(100), 1000, dry_run=True) == (2, 2)
    first, second = await store.purge_ops_events(cutoff(100), 1), await store.purge_ops_events(cutoff(100), 1)
    assert (first[0], second[0], first[1] + second[1]) == (1, 1, 2)  # one event per call, with its grants
    assert await store.purge_ops_events(cutoff(100), 1) == (0, 0)
    for gone in ("old-closed", "old-cancelled"):
        assert await store.get_ops_event(T, gone) is None
    for kept in ("new-closed", "old-open"):
        assert await store.get_ops_event(T, kept) is not None
    assert await store.get_grant(T, "g1") is None and await store.get_grant(T, "g2") is None
    assert await store.get_grant(T, "g3") is not None and await store.get_grant(T, "g4") is not None


# -- alarms -------------------------------------------------------------------------------------------
def alarm(alarm_id: str, status: str, closed_days: float | None) -> tuple[AlarmRow, list[dict[str, Any]]]:
    raised = to_micros(days_ago(500))
    closed = to_micros(days_ago(closed_days)) if closed_days is not None else None
    row = AlarmRow(T, alarm_id, "urn:ngsi-ld:Building:1", "Building", "r1", "threshold", "warning", status,
                   status.startswith("active"), False, None, None, None, raised, closed or raised, None, None, closed,
                   None, {"id": alarm_id, "status": status})
    history = [{"seq": n, "at": to_iso(days_ago(500)), "action": "raised" if n == 1 else "commented", "actor": "x"}
               for n in (1, 2, 3)]
    return row, history


async def test_closed_alarms_go_with_their_history(store: Store) -> None:
    await store.save_alarms([alarm("a-old", "closed", 400), alarm("a-new", "closed", 10),
                             alarm("a-cleared", "cleared-acknowledged", None), alarm("a-active", "active-unacknowledged", None)])
    assert await store.purge_alarms(cutoff(100), 1000, dry_run=True) == (1, 3)
    assert await store.purge_alarms(cutoff(100), 1000) == (1, 3)
    assert await store.get_alarm(T, "a-old") is None and await store.alarm_history(T, "a-old") == []
    for kept in ("a-new", "a-cleared", "a-active"):
        assert await store.get_alarm(T, kept) is not None
        assert len(await store.alarm_history(T, kept)) == 3
    assert await store.purge_alarms(cutoff(100), 1000) == (0, 0)
