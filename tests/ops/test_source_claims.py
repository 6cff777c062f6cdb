"""A report's (tenant, source system, sourceRef) makes one event across processes (QA7 F9 follow-up): the key is
claimed in the store (`insert_doc`) before the event is made, and the report that loses the claim gets the winner's
event. Two operations centres on ONE store stand for two API processes (each has its own in-process locks); both
backends (tests/conftest.py)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from tests.ops.conftest import MakeOps
from tests.ops.support import TENANT, Ops
from tests.ops.test_linkage import audit, event_body
from ucity.core.errors import Unavailable
from ucity.ops import center as center_module
from ucity.ops.auth import ROLE_PERMISSIONS, Principal, Role
from ucity.ops.center import SOURCE_CLAIMS, OperationsCenter
from ucity.ops.events import EventIn
from ucity.store.base import OpsEventQuery

OPERATOR = Principal("op-kim", Role.OPERATOR, ROLE_PERMISSIONS[Role.OPERATOR])
POLICE = Principal("police-terminal", Role.AGENCY, ROLE_PERMISSIONS[Role.AGENCY], agency="police-112")


@asynccontextmanager
async def second_center(ops: Ops) -> AsyncIterator[OperationsCenter]:
    """Another operations centre on the same store: another API process, as far as events go."""
    dispatcher = ops.ucity.alarms.dispatcher
    resumers = dict(dispatcher.resumers)
    other = OperationsCenter(ops.ucity.platform, ops.ucity.store, ops.ucity.alarms)
    dispatcher.resumers.update(resumers)  # the first centre stays the one that sends again after a restart
    await other.agencies.start()
    try:
        yield other
    finally:
        await other.agencies.stop()


def report(ref: str, **extra: Any) -> EventIn:
    return EventIn.model_validate({**event_body("112_DISPATCH", "theft"), "sourceRef": ref, **extra})


async def events_of(ops: Ops, ref: str) -> list[Any]:
    events, _ = await ops.center.events.query(TENANT, OpsEventQuery(source_ref=ref, limit=100))
    return events


async def test_two_centres_reporting_at_once_make_one_event(make_ops: MakeOps) -> None:
    police = {"agencies": [{"id": "police-112", "kind": "police", "name": {"ko": "112", "en": "112"},
                            "services": ["112_VIDEO", "112_DISPATCH"]}]}
    async with make_ops(**police) as ops, second_center(ops) as other:
        for principal, ref in ((OPERATOR, "112-20260302-0001"), (POLICE, "112-20260302-0002")):
            results = await asyncio.gather(ops.center.report_event(TENANT, report(ref), principal),
                                           other.report_event(TENANT, report(ref), principal))
            assert sorted(created for _, created in results) == [False, True]
            assert results[0][0].id == results[1][0].id
            assert [e.id for e in await events_of(ops, ref)] == [results[0][0].id]
            claims = await ops.ucity.store.list_docs(SOURCE_CLAIMS)
            assert claims == []  # released by the winner, or by a loser that found the event after it claimed
        # later reports, through either centre, get that event too
        again, created = await other.report_event(TENANT, report("112-20260302-0001"), OPERATOR)
        assert not created and [e.id for e in await events_of(ops, "112-20260302-0001")] == [again.id]
        lines = await audit(ops, kind="event", action="created")
        assert sorted(line.get("outcome") or "ok" for line in lines) == ["duplicate", "duplicate", "duplicate", "ok", "ok"]


async def test_concurrent_reports_on_one_centre_make_one_event(make_ops: MakeOps) -> None:
    async with make_ops() as ops:
        results = await asyncio.gather(*(ops.call("create_event", "POST", "/api/v1/events",
                                                  {**event_body("119_DISPATCH", "fire"), "sourceRef": "119-0042"})
                                         for _ in range(5)))
        assert sorted(r.status for r in results) == [200, 200, 200, 200, 201]
        assert len({r.body["id"] for r in results}) == 1 and len(await events_of(ops, "119-0042")) == 1
        assert await ops.ucity.store.list_docs(SOURCE_CLAIMS) == []  # claims live only while an event is made


async def test_a_claim_whose_event_never_came_is_taken_over(make_ops: MakeOps,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    async with make_ops() as ops:
        # A process claimed the key and stopped before it stored its event.
        digest = hashlib.sha256(b"operator\n112-0100").hexdigest()
        ghost = {"sourceSystem": "operator", "sourceRef": "112-0100", "event": "0" * 32, "generation": 0,
                 "claimedAt": ops.center.events.now()}
        assert await ops.ucity.store.insert_doc(SOURCE_CLAIMS, TENANT, f"{digest}:0", ghost)
        monkeypatch.setattr(center_module, "SOURCE_CLAIM_WAIT_S", 0.05)
        with pytest.raises(Unavailable):  # fresh: maybe still being made elsewhere
            await ops.center.report_event(TENANT, report("112-0100"), OPERATOR)
        assert await events_of(ops, "112-0100") == []
        await ops.advance(121)  # stale now: taken over (generation 1)
        made, created = await ops.center.report_event(TENANT, report("112-0100"), OPERATOR)
        assert created and [e.id for e in await events_of(ops, "112-0100")] == [made.id]
        assert await ops.ucity.store.list_docs(SOURCE_CLAIMS) == []  # the ghost's claim too, once the event exists
        again, created = await ops.center.report_event(TENANT, report("112-0100"), OPERATOR)
        assert not created and again.id == made.id


async def test_a_failed_create_releases_its_claim(make_ops: MakeOps, monkeypatch: pytest.MonkeyPatch) -> None:
    async with make_ops() as ops:
        create = ops.center.events.create

        held: list[Any] = []

        async def failing(*args: Any) -> Any:
            held.extend(await ops.ucity.store.list_docs(SOURCE_CLAIMS))
            raise RuntimeError("store down")

        monkeypatch.setattr(ops.center.events, "create", failing)
        with pytest.raises(RuntimeError):
            await ops.center.report_event(TENANT, report("112-0200"), OPERATOR)
        assert await ops.ucity.store.list_docs(SOURCE_CLAIMS) == []
        [(_, _, claim)] = held  # while the event was being made: its claim names no case number
        assert "112-0200" not in str(claim) and set(claim) == {"event", "claimedAt", "generation"}
        monkeypatch.setattr(ops.center.events, "create", create)
        _, created = await ops.center.report_event(TENANT, report("112-0200"), OPERATOR)
        assert created
