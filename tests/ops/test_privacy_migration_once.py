"""The start-up privacy migration of `CityEvent` entities (ucity/ops/event_privacy.py) runs once per tenant, version
and settings across processes: a claim in the store (`insert_doc`) lets one process migrate while the others wait for
its mark; a claim its process stopped renewing is taken over; a change of `ops.video_crime_types` (which events are
sensitive) migrates again. Two migrations on ONE store stand for two API processes; both backends."""

from __future__ import annotations

import asyncio

from tests.ops.conftest import MakeOps
from tests.ops.support import TENANT, Ops
from tests.ops.test_linkage import audit, event_body
from tests.ops.test_privacy_migration import HOME, history, old_form, values, write_old
from ucity.ops.event_privacy import KIND, VERSION, EventPrivacyMigration, fingerprint
from ucity.ops.events import EventService
from ucity.store.tenant_migration import CLAIM_LEASE_S, CLAIM_POLL_S

DEFAULT_TYPES = ["murder", "robbery", "pickpocketing", "theft", "kidnapping", "sexual_violence", "domestic_violence"]


def another_process(ops: Ops, crime_types: list[str] | None = None) -> EventPrivacyMigration:
    """The migration of another API process on the same store (optionally with other settings)."""
    events = ops.center.events
    settings = events.settings if crime_types is None else events.settings.model_copy(
        update={"video_crime_types": crime_types})
    return EventPrivacyMigration(EventService(events.store, events.clock, settings, events.audit, events.pseudonyms),
                                 ops.center.audit)


async def old_robbery(ops: Ops) -> str:
    robbery = (await ops.call("create_event", "POST", "/api/v1/events", event_body(
        "112_DISPATCH", "robbery", address=HOME, sourceRef="112-2026-000123"))).body
    await write_old(ops, old_form(robbery["entityId"], "112_DISPATCH", "robbery", "received", "112-2026-000123",
                                  None))
    await ops.ucity.store.delete_doc(KIND, TENANT, "done")  # as before this version
    assert [k for t, k, _ in await ops.ucity.store.list_docs(KIND) if t == TENANT] == []  # no claim left behind
    return str(robbery["entityId"])


async def test_two_processes_starting_together_migrate_a_tenant_once(make_ops: MakeOps) -> None:
    async with make_ops() as ops:
        entity_id = await old_robbery(ops)
        first, second = another_process(ops), another_process(ops)
        runs = {asyncio.ensure_future(first.run()), asyncio.ensure_future(second.run())}
        (winner,), (waiting,) = await asyncio.wait(runs, timeout=60, return_when=asyncio.FIRST_COMPLETED)
        assert winner.result()[TENANT]["entitiesRewritten"] == 1
        assert not waiting.done()  # it waits for the other's mark (platform clock), it does not migrate too
        ops.clock.advance(CLAIM_POLL_S)
        assert await asyncio.wait_for(waiting, 60) == {}
        (line,) = await audit(ops, kind="retention", action="privacy-migration")
        assert line["fingerprint"] == fingerprint(frozenset(DEFAULT_TYPES))
        assert "address" not in values(await ops.ucity.store.get_entity(TENANT, entity_id))
        # later starts read the mark and do nothing
        assert await another_process(ops).run() == {}
        assert len(await audit(ops, kind="retention", action="privacy-migration")) == 1


async def test_a_claim_not_renewed_is_taken_over(make_ops: MakeOps) -> None:
    async with make_ops() as ops:
        entity_id = await old_robbery(ops)
        # a process claimed the tenant, then stopped before its mark
        stopped = {"owner": "gone", "version": VERSION, "fingerprint": fingerprint(frozenset(DEFAULT_TYPES)),
                   "at": ops.center.events.now()}
        key = f"claim:{VERSION}:{stopped['fingerprint']}:0"
        assert await ops.ucity.store.insert_doc(KIND, TENANT, key, stopped)
        run = asyncio.ensure_future(another_process(ops).run())
        await ops.settle()
        assert not run.done() and await audit(ops, kind="retention", action="privacy-migration") == []
        for _ in range(int(CLAIM_LEASE_S / CLAIM_POLL_S) + 1):
            ops.clock.advance(CLAIM_POLL_S)
            await asyncio.sleep(0)
            await ops.settle()
        report = await asyncio.wait_for(run, 60)
        assert report[TENANT]["entitiesRewritten"] == 1
        assert "address" not in values(await ops.ucity.store.get_entity(TENANT, entity_id))
        claims = {k: d for t, k, d in await ops.ucity.store.list_docs(KIND) if t == TENANT and k.startswith("claim:")}
        assert sorted(claims) == [key]  # the stopped process's; the one that took over deleted its own when done


async def test_a_change_of_the_crime_types_migrates_again(make_ops: MakeOps) -> None:
    async with make_ops() as ops:
        graffiti = (await ops.call("create_event", "POST", "/api/v1/events", event_body(
            "DISASTER", "graffiti", sourceRef="dis-7"))).body  # no person: its entity keeps its address
        assert "address" in values(await ops.ucity.store.get_entity(TENANT, graffiti["entityId"]))
        assert await ops.center.privacy.run() == {}  # this version ran at the start already
    listed = [*DEFAULT_TYPES, "graffiti"]
    async with make_ops(cameras=False, video_crime_types=listed) as ops:  # a start with graffiti a listed crime
        now = values(await ops.ucity.store.get_entity(TENANT, graffiti["entityId"]))
        assert "address" not in now and "sourceRef" not in now and now["locationCellDeg"]["value"] == 0.005
        assert "address" not in await history(ops, graffiti["entityId"])
        (line,) = await audit(ops, kind="retention", action="privacy-migration")
        assert line["fingerprint"] == fingerprint(frozenset(listed)) and line["entitiesRewritten"] == 1
        mark = await ops.ucity.store.get_doc(KIND, TENANT, "done")
        assert mark is not None and mark["videoCrimeTypes"] == sorted(listed)
