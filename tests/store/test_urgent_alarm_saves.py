"""An alarm's save does not wait for the readings queued with it: both writers commit the alarm saves of a
batch (with the calls that may overtake mutations) in a transaction of their own, ahead of the batch's
mutations (`urgent_first`). What may not be reordered is left in order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.conftest import StoreFactory
from tests.store.window_support import HOUR_MS, T, create, hold_writer, queued
from ucity.core.bus import Context
from ucity.core.clock import FakeClock
from ucity.store.base import CALL, MOVABLE, MUTATION, URGENT, AlarmRow, Store, urgent_first


def split(kinds: str) -> tuple[str, str]:
    """`urgent_first` over items named by letter: m mutation, c call, v movable call, u urgent call (each
    letter followed by its position, so that the order can be read back)."""
    code = {"m": MUTATION, "c": CALL, "v": MOVABLE, "u": URGENT}
    items = [f"{k}{i}" for i, k in enumerate(kinds)]
    ahead, rest = urgent_first(items, lambda item: code[item[0]])
    return " ".join(ahead), " ".join(rest)


def test_urgent_calls_and_the_movable_calls_before_them_go_ahead_of_the_mutations() -> None:
    assert split("mmummvm") == ("u2", "m0 m1 m3 m4 v5 m6")
    assert split("mvmumu") == ("v1 u3 u5", "m0 m2 m4")
    assert split("umm") == ("u0", "m1 m2")


def test_a_batch_without_an_urgent_call_or_without_a_mutation_is_left_as_it_is() -> None:
    assert split("mmvm") == ("", "m0 m1 v2 m3")
    assert split("vuv") == ("", "v0 u1 v2")
    assert split("") == ("", "")


def test_a_call_that_may_read_the_mutations_before_it_keeps_the_batch_in_order() -> None:
    assert split("mcmu") == ("", "m0 c1 m2 u3")
    # after the last urgent call, any call is fine: it stays behind the mutations queued before it
    assert split("mumc") == ("u1", "m0 m2 c3")


def alarm(n: int) -> AlarmRow:
    alarm_id = f"alarm-{n}"
    return AlarmRow(tenant=T, id=alarm_id, entity_id=f"urn:ngsi-ld:Building:{n}", entity_type="B", rule_id="r",
                    kind="safety", level="caution", status="active-unacknowledged", active=True, derived=False,
                    parent_id=None, outcome=None, assignee=None, raised_at=1, updated_at=1, acked_at=None,
                    cleared_at=None, closed_at=None, bbox=None, doc={"id": alarm_id, "status": "active-unacknowledged"})


@pytest.fixture
async def store(make_store: StoreFactory) -> AsyncIterator[Store]:
    s = make_store(FakeClock(), group_commit_ms=HOUR_MS, group_commit_max=500)
    await s.start()
    yield s
    await s.stop()


async def test_an_alarm_save_queued_behind_readings_is_committed_before_them(store: Store) -> None:
    held, release = await hold_writer(store)
    done: list[str] = []

    def track(name: str, future: asyncio.Future[object]) -> asyncio.Future[object]:
        future.add_done_callback(lambda _: done.append(name))
        return future

    readings = [track(f"reading-{n}", asyncio.ensure_future(store.mutate(T, [create(n)], Context())))
                for n in range(20)]
    await queued(store, 20)
    save = track("alarm", asyncio.ensure_future(store.save_alarms([(alarm(1), [])])))
    after = track("reading-after", asyncio.ensure_future(store.mutate(T, [create(99)], Context())))
    await queued(store, 22)
    commits = store.commits  # type: ignore[attr-defined]
    release()
    await held
    await asyncio.gather(save, after, *readings)
    assert done[0] == "alarm"  # its transaction was committed (and resolved) first
    assert sorted(done[1:]) == sorted([f"reading-{n}" for n in range(20)] + ["reading-after"])
    # the held call's own transaction, the alarm's, then the readings'
    assert store.commits - commits == 3  # type: ignore[attr-defined]
    assert (await store.get_alarm(T, "alarm-1")) is not None
    for n in (0, 19, 99):
        assert (await store.get_entity(T, f"urn:ngsi-ld:Building:{n}")) is not None


async def test_without_an_alarm_save_the_batch_is_one_transaction(store: Store) -> None:
    held, release = await hold_writer(store)
    readings = [asyncio.ensure_future(store.mutate(T, [create(n)], Context())) for n in range(5)]
    docs = asyncio.ensure_future(store.put_docs("rule-state", [(T, "r|e1", {"n": 1})]))
    await queued(store, 6)
    commits = store.commits  # type: ignore[attr-defined]
    release()
    await held
    await asyncio.gather(docs, *readings)
    assert store.commits - commits == 2  # type: ignore[attr-defined]  # the held call's, then one for all
