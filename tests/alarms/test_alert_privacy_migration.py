"""The start-up privacy migration of `Alert` entities about a person written before QA10 F2
(ucity/alarms/alert_privacy.py): the old Alert (the person's id in `alertSource`, the exact place) and its history
are made private as `alert_entity` writes them now; Alerts of other alarms stay; it runs once per tenant and
settings, across processes, and audits counts only. Old Alerts are written as the old code did: `write_alert` with
no personal type. Both backends."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ucity.alarms.alert import AlertPrivacy, write_alert
from ucity.alarms.alert_privacy import (
    ALERT_SOURCE,
    CELL,
    KIND,
    LOCATION,
    AlertPrivacyMigration,
)
from ucity.alarms.model import ACTIVE_UNACK, CLEARED_UNACK, Alarm
from ucity.app import Ucity
from ucity.core.bus import Context
from ucity.core.clock import FakeClock, to_iso
from ucity.core.config import load_settings
from ucity.ngsild.context import core_context
from ucity.ngsild.ops import delete_op
from ucity.store.base import AuditQuery, Mutation, TemporalQuery
from ucity.store.tenant_migration import CLAIM_POLL_S

T = "urn:ngsi-ld:tenant:default"
NOW = datetime(2026, 6, 1, tzinfo=UTC)
OLD = AlertPrivacy(frozenset())  # the code before QA10 F2: no type is personal
FIRST = {"type": "Point", "coordinates": [126.887654, 37.495432]}
SECOND = {"type": "Point", "coordinates": [126.891234, 37.499876]}
FIRST_CELL = {"type": "Point", "coordinates": [126.8875, 37.4975]}
SECOND_CELL = {"type": "Point", "coordinates": [126.8925, 37.4975]}
STATUS = core_context().expand_term("status")


def settings(tmp_path: Path) -> Any:
    return load_settings(environment="test", data_dir=str(tmp_path / "data"), store={"group_commit_ms": 1.0})


@contextlib.asynccontextmanager
async def running(tmp_path: Path, clock: FakeClock | None = None) -> AsyncIterator[Ucity]:
    app = Ucity(settings(tmp_path), clock=clock or FakeClock(NOW))
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


def alarm(alarm_id: str, entity_id: str, entity_type: str) -> Alarm:
    at = to_iso(NOW)
    return Alarm(alarm_id, T, entity_id, "geofence-exit", "safety", "serious", ACTIVE_UNACK, at, at, at,
                 entity_type=entity_type, location=FIRST, description={"ko": "이탈", "en": "Left the area"})


async def write_old(app: Ucity, old: Alarm, record: bool = True) -> None:
    """An Alert as the code before QA10 F2 wrote it: raised at FIRST, then moved to SECOND and cleared (history)."""
    if record:
        await app.store.save_alarms([(old.to_row(), [])])
    assert not isinstance(await write_alert(app.store, old, Context(), OLD), Exception)
    later = replace(old, location=SECOND, status=CLEARED_UNACK, cleared_at=to_iso(NOW), alert_written=None)
    assert not isinstance(await write_alert(app.store, later, Context(), OLD), Exception)


async def history(app: Ucity, alert_id: str) -> dict[str, list[Any]]:
    found, _ = await app.store.temporal_query(T, TemporalQuery(ids=(alert_id,), limit_instances=1000))
    if not found:
        return {}
    return {attr: [i.get("value", i.get("object")) for i in series.instances] for attr, series in found[0].attrs.items()
            if series.instances}


async def migration_lines(app: Ucity) -> list[dict[str, Any]]:
    docs, _ = await app.store.query_audit(T, AuditQuery(kinds=("retention",)))
    return [d for d in docs if d.get("action") == "privacy-migration" and d.get("data") == "Alert"]


def another_process(app: Ucity, types: frozenset[str] = frozenset({"Person"})) -> AlertPrivacyMigration:
    """The migration of another process on the same store (optionally with other settings)."""
    return AlertPrivacyMigration(app.store, app.platform.clock, AlertPrivacy(types, 0.005))


async def test_old_alerts_about_a_person_and_their_history_are_made_private_once(tmp_path: Path) -> None:
    async with running(tmp_path) as app:
        assert (await app.store.list_docs(KIND)) == []  # an empty store: no tenant to mark
        person = alarm("a-person", "urn:ngsi-ld:Person:elder-7", "Person")
        purged = alarm("a-purged", "urn:ngsi-ld:Person:elder-8", "Person")  # its alarm no longer stored
        device = alarm("a-device", "urn:ngsi-ld:Device:d1", "Device")
        deleted = alarm("a-deleted", "urn:ngsi-ld:Person:elder-9", "Person")  # its Alert deleted, history left
        await write_old(app, person)
        await write_old(app, purged, record=False)
        await write_old(app, device)
        await write_old(app, deleted, record=False)
        await app.store.mutate(T, [Mutation(deleted.alert_id, delete_op(deleted.alert_id))], Context())
        device_before = await app.store.get_entity(T, device.alert_id)
        device_history = await history(app, device.alert_id)
        assert device_history[ALERT_SOURCE] and device_history[LOCATION] == [FIRST, SECOND]
        status_history = (await history(app, person.alert_id))[STATUS]

        report = await another_process(app).run()

        assert report == {T: {"alertsRewritten": 2, "historySeriesDeleted": 3, "historyInstancesCoarsened": 6}}
        for old in (person, purged):
            doc = await app.store.get_entity(T, old.alert_id)
            assert doc is not None
            assert ALERT_SOURCE not in doc["attrs"]
            assert doc["attrs"][LOCATION][0]["value"] == SECOND_CELL
            assert doc["attrs"][CELL][0]["value"] == 0.005
            past = await history(app, old.alert_id)
            assert ALERT_SOURCE not in past
            assert past[LOCATION] == [FIRST_CELL, SECOND_CELL, SECOND_CELL]  # the migration's own write is the 3rd
        assert (await history(app, person.alert_id))[STATUS] == status_history  # the rest of the history stays
        assert await app.store.get_entity(T, deleted.alert_id) is None
        past = await history(app, deleted.alert_id)
        assert ALERT_SOURCE not in past and past[LOCATION] == [FIRST_CELL, SECOND_CELL] and past[STATUS]
        # the Alert of a device keeps its source and exact places
        assert await app.store.get_entity(T, device.alert_id) == device_before
        assert await history(app, device.alert_id) == device_history

        (line,) = await migration_lines(app)
        assert line["actor"] == "system:alert-privacy-migration" and line["outcome"] == "ok"
        text = json.dumps(line)
        assert "elder" not in text and "126.8" not in text and "37.4" not in text  # counts, never a value
        # marked: the next start reads the mark and does nothing; without the mark, nothing is left to do
        assert await another_process(app).run() == {}
        await app.store.delete_doc(KIND, T, "done")
        assert await another_process(app).run() == {T: {"alertsRewritten": 0, "historySeriesDeleted": 0,
                                                         "historyInstancesCoarsened": 0}}
        assert len(await migration_lines(app)) == 1
        assert await history(app, device.alert_id) == device_history


async def test_it_runs_at_start_before_serving(tmp_path: Path) -> None:
    async with running(tmp_path) as app:
        old = alarm("a-person", "urn:ngsi-ld:Person:elder-7", "Person")
        await write_old(app, old)
        await app.store.delete_doc(KIND, T, "done")  # as a store written before this version
    async with running(tmp_path) as app:  # the next start migrates it
        doc = await app.store.get_entity(T, old.alert_id)
        assert doc is not None and ALERT_SOURCE not in doc["attrs"]
        assert app.platform.health()["alertPrivacy"]["migrated"][T]["alertsRewritten"] == 1
        assert (await app.store.get_doc(KIND, T, "done") or {}).get("version") == 1


async def test_two_processes_migrate_a_tenant_once_and_a_settings_change_migrates_again(tmp_path: Path) -> None:
    clock = FakeClock(NOW)
    async with running(tmp_path, clock) as app:
        old = alarm("a-household", "urn:ngsi-ld:Household:h1", "Household")
        await write_old(app, old)
        await app.store.delete_doc(KIND, T, "done")
        first, second = another_process(app), another_process(app)
        runs = {asyncio.ensure_future(first.run()), asyncio.ensure_future(second.run())}
        (winner,), (waiting,) = await asyncio.wait(runs, timeout=60, return_when=asyncio.FIRST_COMPLETED)
        assert winner.result()[T]["alertsRewritten"] == 0  # Household is not personal (yet)
        assert not waiting.done()  # it waits for the other's mark on the platform clock
        clock.advance(CLAIM_POLL_S)
        assert await asyncio.wait_for(waiting, 60) == {}
        assert await migration_lines(app) == []  # nothing changed: no line
        doc = await app.store.get_entity(T, old.alert_id)
        assert doc is not None and ALERT_SOURCE in doc["attrs"]
        # a deployment lists Household as personal: its Alerts are migrated at the next start
        households = frozenset({"Person", "Household"})
        assert (await another_process(app, households).run())[T]["alertsRewritten"] == 1
        doc = await app.store.get_entity(T, old.alert_id)
        assert doc is not None and ALERT_SOURCE not in doc["attrs"]
        assert len(await migration_lines(app)) == 1
        assert await another_process(app, households).run() == {}
        claims = [k for t, k, _ in await app.store.list_docs(KIND) if t == T and k.startswith("claim:")]
        assert claims == []  # every claim deleted with its mark
