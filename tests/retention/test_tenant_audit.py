"""Retention audits each tenant's deletions in that tenant (QA leftover: every line went to the default tenant, so
a tenant's auditors never saw their own deletions): the store's purges count per tenant (`tenants`, each backend),
and a sweep writes one line per rule and tenant with that tenant's counts; a failed rule is also told in the
default tenant."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import StoreFactory
from tests.retention import test_store_purge as sp
from tests.retention.test_service import NOW, TRACKER, history, reading, retention_lines, running, sweep_due
from ucity.app import Ucity
from ucity.core.clock import FakeClock, to_micros
from ucity.store.base import AuditQuery, AuditRow, HistoryScope, Store, TenantCounts

T, T2, T3 = "urn:ngsi-ld:tenant:default", "urn:ngsi-ld:tenant:north", "urn:ngsi-ld:tenant:south"


@pytest.fixture
async def store(make_store: StoreFactory) -> AsyncIterator[Store]:
    s = make_store(FakeClock(NOW), group_commit_ms=0.5)
    await s.start()
    yield s
    await s.stop()


def in_tenant(row: Any, tenant: str) -> Any:
    return dataclasses.replace(row, tenant=tenant)


async def test_each_purge_counts_what_it_deleted_per_tenant(store: Store) -> None:
    for tenant, entity, ages in ((T, "urn:ngsi-ld:Tracker:a", (400, 300, 1)), (T2, "urn:ngsi-ld:Tracker:b", (400, 1)),
                                 (T3, "urn:ngsi-ld:Tracker:c", (1,))):
        await store.append_history(tenant, entity, [sp.TRACKER], [(sp.LOCATION, sp.reading(d, d)) for d in ages])
    history: TenantCounts = {}
    cursor: int | None = 0
    while cursor is not None:  # batches of 2 across the tenants: the counts add up over the calls
        _, cursor = await store.purge_history(HistoryScope((sp.TRACKER,)), sp.cutoff(100), 2, cursor, tenants=history)
    assert history == {T: [2, 0], T2: [1, 0]}

    dry: TenantCounts = {}
    await store.save_ops_event(in_tenant(sp.event("e1", "closed", 400), T2), [])
    await store.save_ops_event(sp.event("e2", "closed", 400), [])
    await store.save_grant(in_tenant(sp.grant("g1", "e1"), T2), [])
    await store.save_grant(in_tenant(sp.grant("g2", "e1"), T2), [])
    assert await store.purge_ops_events(sp.cutoff(100), 1000, dry_run=True, tenants=dry) == (2, 2) and dry == {}
    events: TenantCounts = {}
    assert await store.purge_ops_events(sp.cutoff(100), 1000, tenants=events) == (2, 2)
    assert events == {T: [1, 0], T2: [1, 2]}

    row, entries = sp.alarm("a1", "closed", 400)
    await store.save_alarms([(in_tenant(row, T3), entries), sp.alarm("a2", "closed", 400)])
    alarms: TenantCounts = {}
    assert await store.purge_alarms(sp.cutoff(100), 1000, tenants=alarms) == (2, 6)
    assert alarms == {T: [1, 3], T3: [1, 3]}

    old = to_micros(sp.days_ago(400))
    await store.append_audit([AuditRow(t, old, "event", "created", "op", {}) for t in (T, T2, T2, T3)])
    await store.append_audit([AuditRow(T, to_micros(NOW), "event", "created", "op", {})])  # the newest stays
    audit: TenantCounts = {}
    assert await store.purge_audit(sp.cutoff(100), 1000, tenants=audit) == 4
    assert audit == {T: [1, 0], T2: [2, 0], T3: [1, 0]}


async def lines(app: Ucity, tenant: str) -> dict[str, dict[str, Any]]:
    docs, _ = await app.store.query_audit(tenant, AuditQuery(kinds=("retention",)))
    return {line["data"]: line for line in docs}


async def test_a_sweep_audits_each_tenants_deletions_in_that_tenant(tmp_path: Path) -> None:
    limits = {"history": [{"type": "Tracker", "keep_days": 30}], "audit_days": 365, "ops_closed_days": 90,
              "alarms_closed_days": 90}
    async with running(tmp_path, **limits) as (app, clock):
        await history(app, "urn:ngsi-ld:Tracker:1", [TRACKER], [("", d) for d in (90, 60, 1)])
        await app.store.append_history(T2, "urn:ngsi-ld:Tracker:2", [TRACKER],
                                       [("https://uri.etsi.org/ngsi-ld/default-context/trackPoint", reading(d, d))
                                        for d in (90, 1)])
        await app.store.save_ops_event(in_tenant(sp.event("e-old", "closed", 400), T2), [])
        await app.store.save_grant(in_tenant(sp.grant("g-old", "e-old"), T2), [])
        row, entries = sp.alarm("a-old", "closed", 400)
        await app.store.save_alarms([(in_tenant(row, T2), entries)])
        old = to_micros(NOW - timedelta(days=400))
        await app.store.append_audit([AuditRow(T2, old, "event", "created", "op", {}),
                                      AuditRow(T2, old, "grant", "issued", "op", {})])
        await sweep_due(app, clock, 60)

        mine = await lines(app, T)  # the default tenant: only its own history
        assert set(mine) == {"history"} and mine["history"]["deleted"] == 2
        north = await lines(app, T2)
        assert north["history"]["deleted"] == 1 and north["history"]["rule"] == TRACKER
        assert (north["ops-events"]["deleted"], north["ops-events"]["grantsDeleted"]) == (1, 1)
        assert (north["alarms"]["deleted"], north["alarms"]["historyDeleted"]) == (1, 3)
        assert north["audit"]["deleted"] == 2 and north["audit"]["outcome"] == "ok"
        assert {line["actor"] for line in north.values()} == {"ucity-retention"}
        # the totals are still what /health and the CLI show
        assert app.platform.health()["retention"]["lastDeleted"] == {
            "historyInstances": 3, "opsEvents": 1, "grants": 1, "alarms": 1, "alarmHistory": 3, "auditLines": 2}


async def test_a_failed_rule_is_also_told_in_the_default_tenant(tmp_path: Path) -> None:
    async with running(tmp_path, history=[{"type": "Tracker", "keep_days": 30}]) as (app, clock):
        await app.store.append_history(T2, "urn:ngsi-ld:Tracker:2", [TRACKER],
                                       [("https://uri.etsi.org/ngsi-ld/default-context/trackPoint", reading(d, d))
                                        for d in (90, 80, 1)])
        purge = app.store.purge_history
        calls = 0

        async def failing_later(*args: Any, **kwargs: Any) -> tuple[int, int | None]:
            nonlocal calls
            calls += 1
            if calls > 1:
                raise RuntimeError("disk full")
            deleted, _ = await purge(*args[:2], 1, *args[3:], **kwargs)  # one instance, then the failure
            return deleted, 0

        app.store.purge_history = failing_later  # type: ignore[method-assign]
        await sweep_due(app, clock, 60)
        (north,) = await retention_lines_of(app, T2)
        assert (north["outcome"], north["deleted"]) == ("failed", 1) and "disk full" in north["error"]
        (default,) = await retention_lines(app)
        assert (default["outcome"], default["deleted"]) == ("failed", 0) and "disk full" in default["error"]


async def retention_lines_of(app: Ucity, tenant: str) -> list[dict[str, Any]]:
    docs, _ = await app.store.query_audit(tenant, AuditQuery(kinds=("retention",)))
    return docs
