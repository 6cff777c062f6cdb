"""The bulk forms of the alarm and document writes, on both stores: `save_alarms` writes many alarms and
their history in one call (a later save of an alarm wins, history entries add up), `put_docs` and
`delete_docs` write or remove many documents of one kind in one call (the rules engine's state snapshots)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from tests.conftest import StoreFactory
from tests.store.window_support import T
from ucity.core.clock import FakeClock
from ucity.store.base import AlarmQuery, AlarmRow, Store


@pytest.fixture
async def store(make_store: StoreFactory) -> AsyncIterator[Store]:
    s = make_store(FakeClock())
    await s.start()
    yield s
    await s.stop()


def alarm(n: int, status: str = "active-unacknowledged", updated: int = 1) -> AlarmRow:
    alarm_id = f"alarm-{n}"
    return AlarmRow(tenant=T, id=alarm_id, entity_id=f"urn:ngsi-ld:Building:{n}", entity_type="B", rule_id="r",
                    kind="safety", level="caution", status=status, active=status.startswith("active"), derived=False,
                    parent_id=None, outcome=None, assignee=None, raised_at=1, updated_at=updated, acked_at=None,
                    cleared_at=None, closed_at=None, bbox=None,
                    doc={"id": alarm_id, "status": status, "updated": updated})


def entry(seq: int, action: str) -> dict[str, object]:
    return {"seq": seq, "at": f"2026-01-01T00:00:0{seq}.000000Z", "action": action, "actor": "system"}


async def test_save_alarms_writes_every_alarm_and_history_in_order(store: Store) -> None:
    commits = getattr(store, "commits", None)
    await store.save_alarms([(alarm(n), [entry(1, "raised")]) for n in range(5)]
                            + [(alarm(2, "cleared-unacknowledged", 2), [entry(2, "cleared")])])
    if commits is not None:
        assert store.commits - commits == 1  # type: ignore[attr-defined]
    for n in range(5):
        doc = await store.get_alarm(T, f"alarm-{n}")
        assert doc is not None and doc["status"] == ("cleared-unacknowledged" if n == 2 else "active-unacknowledged")
    assert [h["action"] for h in await store.alarm_history(T, "alarm-2")] == ["raised", "cleared"]
    docs, total = await store.query_alarms(T, AlarmQuery(statuses=("active-unacknowledged",), count=True))
    assert total == 4 and "alarm-2" not in {d["id"] for d in docs}
    await store.save_alarms([])  # nothing to write: no call


async def test_put_docs_and_delete_docs(store: Store) -> None:
    await store.put_docs("rule-state", [(T, f"r|e{n}", {"n": n}) for n in range(4)] + [("other", "r|e0", {"n": 9})])
    await store.put_docs("rule-state", [(T, "r|e1", {"n": 10})])  # replaces
    assert sorted((t, k, d["n"]) for t, k, d in await store.list_docs("rule-state")) == [
        ("other", "r|e0", 9), (T, "r|e0", 0), (T, "r|e1", 10), (T, "r|e2", 2), (T, "r|e3", 3)]
    await store.delete_docs("rule-state", [(T, "r|e0"), (T, "r|e3"), (T, "r|missing")])
    assert sorted((t, k) for t, k, _ in await store.list_docs("rule-state")) == [
        ("other", "r|e0"), (T, "r|e1"), (T, "r|e2")]
    await store.put_docs("rule-state", [])
    await store.delete_docs("rule-state", [])


async def test_an_alarm_saved_again_is_updated_in_place_with_every_column(store: Store) -> None:
    """A later save updates the row (SQLite: an upsert, no longer a delete and insert): every filtered column,
    the document and the history follow, and no row is added."""
    await store.save_alarms([(alarm(n), [entry(1, "raised")]) for n in range(3)])
    again = replace(alarm(1, "cleared-acknowledged", 5), level="serious", outcome="real", assignee="kim",
                    raised_at=7, acked_at=3, cleared_at=4, bbox=(126.0, 37.0, 127.0, 38.0),
                    doc={"id": "alarm-1", "status": "cleared-acknowledged", "updated": 5})
    await store.save_alarms([(again, [entry(2, "cleared")])])
    assert await store.get_alarm(T, "alarm-1") == {"id": "alarm-1", "status": "cleared-acknowledged", "updated": 5}
    _, total = await store.query_alarms(T, AlarmQuery(count=True))
    assert total == 3
    for query in (AlarmQuery(statuses=("cleared-acknowledged",)), AlarmQuery(levels=("serious",)),
                  AlarmQuery(bbox=(126.5, 37.5, 126.6, 37.6)), AlarmQuery(raised_from=7),
                  AlarmQuery(entity_ids=("urn:ngsi-ld:Building:1",), statuses=("cleared-acknowledged",))):
        docs, _ = await store.query_alarms(T, query)
        assert [d["id"] for d in docs] == ["alarm-1"], query
    docs, _ = await store.query_alarms(T, AlarmQuery(statuses=("active-unacknowledged",), limit=10))
    assert sorted(d["id"] for d in docs) == ["alarm-0", "alarm-2"]
    assert [h["action"] for h in await store.alarm_history(T, "alarm-1")] == ["raised", "cleared"]
    assert [doc["id"] for _, doc in await store.open_alarms()] == ["alarm-0", "alarm-2", "alarm-1"]


async def test_save_alarms_writes_its_documents_in_the_same_commit(store: Store) -> None:
    """The queued notifications of alarm changes (ucity/alarms/journal.py) are committed with the alarm rows; calls
    of one group commit keep their order (a later save of an alarm wins) whether or not they carry documents."""
    commits = getattr(store, "commits", None)
    await store.save_alarms([(alarm(1), [entry(1, "raised")])], [("outbox", T, "n1", {"n": 1})])
    if commits is not None:
        assert store.commits - commits == 1  # type: ignore[attr-defined]
    assert await store.list_docs("outbox") == [(T, "n1", {"n": 1})]
    await asyncio.gather(  # queued together: one batch (PostgreSQL merges their rows)
        store.save_alarms([(alarm(2, updated=1), [entry(1, "raised")])], [("outbox", T, "n2", {"n": 2})]),
        store.save_alarms([(alarm(2, "cleared-unacknowledged", 2), [entry(2, "cleared")])]),
        store.save_alarms([(alarm(2, "cleared-acknowledged", 3), [entry(3, "acknowledged")])],
                          [("outbox", T, "n3", {"n": 3}), ("outbox", T, "n2", {"n": 22})]))
    stored = await store.get_alarm(T, "alarm-2")
    assert stored is not None and stored["status"] == "cleared-acknowledged"
    assert [h["action"] for h in await store.alarm_history(T, "alarm-2")] == ["raised", "cleared", "acknowledged"]
    assert sorted((k, d["n"]) for _, k, d in await store.list_docs("outbox")) == [("n1", 1), ("n2", 22), ("n3", 3)]
    await store.save_alarms([], [("outbox", T, "n4", {"n": 4})])  # documents alone
    assert len(await store.list_docs("outbox")) == 4


async def test_insert_doc_puts_only_when_the_key_is_free(make_store: StoreFactory) -> None:
    """Two stores on one database (two processes): the first insert of a key wins, the second is told."""
    a, b = make_store(FakeClock()), make_store(FakeClock())
    await a.start()
    await b.start()
    try:
        assert await a.insert_doc("tokens", T, "duty", {"by": "a"}) is True
        assert await b.insert_doc("tokens", T, "duty", {"by": "b"}) is False
        assert await b.insert_doc("tokens", "other", "duty", {"by": "b"}) is True  # another tenant: another key
        assert sorted((t, d["by"]) for t, _, d in await a.list_docs("tokens")) == [("other", "b"), (T, "a")]
    finally:
        await a.stop()
        await b.stop()


async def test_replace_doc_if_writes_only_over_the_same_member_value(store: Store) -> None:
    """Another process's update (a new `modifiedAt`) or deletion is not taken back by a write of an older copy."""
    await store.put_doc("subs", T, "s1", {"modifiedAt": "t1", "timesSent": 0})
    assert await store.replace_doc_if("subs", T, "s1", {"modifiedAt": "t1", "timesSent": 5}, "modifiedAt") is True
    await store.put_doc("subs", T, "s1", {"modifiedAt": "t2", "timesSent": 5, "q": "new"})  # updated elsewhere
    assert await store.replace_doc_if("subs", T, "s1", {"modifiedAt": "t1", "timesSent": 6}, "modifiedAt") is False
    assert await store.list_docs("subs") == [(T, "s1", {"modifiedAt": "t2", "timesSent": 5, "q": "new"})]
    await store.delete_doc("subs", T, "s1")  # deleted elsewhere
    assert await store.replace_doc_if("subs", T, "s1", {"modifiedAt": "t2", "timesSent": 7}, "modifiedAt") is False
    assert await store.list_docs("subs") == []
    await store.put_doc("subs", T, "s2", {"n": 1})  # no such member: equal to an absent one
    assert await store.replace_doc_if("subs", T, "s2", {"n": 2}, "modifiedAt") is True
    with pytest.raises(ValueError, match="not a member name"):
        await store.replace_doc_if("subs", T, "s2", {"n": 3}, "a') OR ('1")
