"""QA15 F6: the agencies an event is shared with are told of `dispatched` by the event service, whatever path moves
the event there (not only `POST /api/v1/events/{id}/status`), once: a repeat of the status tells nobody again."""

from __future__ import annotations

from tests.alarms.receiver import Receiver
from tests.ops.conftest import MakeOps
from tests.ops.support import TENANT, Ops
from tests.ops.test_linkage import fire_and_police
from tests.ops.test_qa15_events import shared_with_police
from ucity.alarms.journal import KIND as OUTBOX
from ucity.ops.auth import SYSTEM

ACTOR = "operator:op-kim"


def _dispatched(receiver: Receiver, path: str = "/112") -> list[dict[str, object]]:
    return [r.json for r in receiver.on(path) if r.json["event"] == "event-dispatched"]


async def _move(ops: Ops, event_id: str, status: str) -> None:
    """A move through the event service itself (no HTTP handler)."""
    events = ops.center.events
    await events.change(TENANT, event_id, lambda e: events.transition_rows(e, status, ACTOR))
    await ops.settle()


async def test_the_event_service_tells_the_agency_of_dispatched_once(make_ops: MakeOps, receiver: Receiver) -> None:
    async with make_ops(cameras=False, **fire_and_police(receiver)) as ops:
        event_id = await shared_with_police(ops)
        await _move(ops, event_id, "acknowledged")
        assert _dispatched(receiver) == []  # a status without notices
        await _move(ops, event_id, "dispatched")
        await _move(ops, event_id, "dispatched")  # a repeat: nothing written, nobody told again
        notices = _dispatched(receiver)
        assert len(notices) == 1
        package = notices[0]["package"]
        assert isinstance(package, dict) and package["event"]["id"] == event_id
        assert package["event"]["status"] == "dispatched"
        assert _dispatched(receiver, "/119") == []  # not shared with the fire room
        # delivered: no outbox entry left behind
        assert not [key for t, key, _ in await ops.ucity.store.list_docs(OUTBOX) if t == TENANT]
        await _move(ops, event_id, "closed")
        assert len(_dispatched(receiver)) == 1


async def test_the_centre_s_own_moves_tell_the_agency_too(make_ops: MakeOps, receiver: Receiver) -> None:
    async with make_ops(cameras=False, **fire_and_police(receiver)) as ops:
        event_id = await shared_with_police(ops)
        for _ in range(2):
            await ops.center.transition(TENANT, event_id, "dispatched", SYSTEM)
        await ops.settle()
        assert len(_dispatched(receiver)) == 1
