"""A data subject's entity in saved NGSI-LD notifications (ucity/ngsild/saved.py: what waits for a receiver during an
outage, with entity data): the subject search with `entityId` lists them (ids, counts and their subscriptions, never
a value), and `subject-erase` leaves them and says so (the process that saved them delivers them from memory; one
notification may hold other people's entities). Both store backends.
"""

from __future__ import annotations

from typing import Any

from tests.ops.conftest import MakeOps
from tests.ops.support import TENANT
from tests.ops.test_subject_entity import OTHER, PERSON, PHONE, _audit, _call, _city
from ucity.ngsild.saved import KIND, SavedNotifications

SUB = "urn:ngsi-ld:Subscription:care-feed"
OTHER_TENANT = "urn:ngsi-ld:tenant:elsewhere"


def sent(entity_id: str) -> dict[str, Any]:
    """An entity as a notification sends it (normalized, with a value that must not come back)."""
    return {"id": entity_id, "type": "Person", "telephone": {"type": "Property", "value": PHONE}}


async def _saved(ops: Any) -> SavedNotifications:
    """Three saved notifications of the tenant (two holding PERSON, one with OTHER as well) and one of another
    tenant holding an entity of the same id, written by the real writer."""
    saved = SavedNotifications(ops.ucity.store, ops.clock)
    saved.save(TENANT, SUB, "urn:ngsi-ld:Notification:n1", "2026-03-02T00:00:00Z", [sent(PERSON)], 2)
    saved.save(TENANT, SUB, "urn:ngsi-ld:Notification:n2", "2026-03-02T00:01:00Z", [sent(OTHER), sent(PERSON)], 0)
    saved.save(TENANT, SUB, "urn:ngsi-ld:Notification:n3", "2026-03-02T00:02:00Z", [sent(OTHER)], 0)
    saved.save(OTHER_TENANT, SUB, "urn:ngsi-ld:Notification:n4", "2026-03-02T00:02:00Z", [sent(PERSON)], 0)
    await saved.flush()
    return saved


async def test_search_lists_the_saved_notifications_holding_the_entity(make_ops: MakeOps) -> None:
    async with make_ops() as ops:
        await _city(ops)
        await _saved(ops)
        resp = await _call(ops, "subject_search", "/api/v1/privacy/subject-search", {"entityId": PERSON})
        assert resp.status == 200, resp.body
        assert resp.body["elsewhere"]["ngsildNotifications"] == {
            "count": 2, "ids": ["urn:ngsi-ld:Notification:n1", "urn:ngsi-ld:Notification:n2"], "subscriptions": [SUB]}
        assert PHONE not in str(resp.body)
        line = (await _audit(ops, "subject-search"))[-1]
        assert line["elsewhere"]["ngsildNotifications"] == 2 and "Notification:n1" not in str(line)
        other = await _call(ops, "subject_search", "/api/v1/privacy/subject-search", {"entityId": OTHER})
        assert other.body["elsewhere"]["ngsildNotifications"]["ids"] == ["urn:ngsi-ld:Notification:n2",
                                                                         "urn:ngsi-ld:Notification:n3"]


async def test_erase_leaves_the_saved_notifications_and_says_so(make_ops: MakeOps) -> None:
    async with make_ops() as ops:
        await _city(ops)
        saved = await _saved(ops)
        resp = await _call(ops, "subject_erase", "/api/v1/privacy/subject-erase",
                           {"entityId": PERSON, "reason": "본인 삭제 요청 제124호"})
        assert resp.status == 200, resp.body
        assert resp.body["entityDeleted"] is True
        assert resp.body["elsewhere"]["ngsildNotifications"]["count"] == 2
        assert "2건" in resp.body["note"] and "2 saved NGSI-LD notifications" in resp.body["note"]
        left = {(t, key) for t, key, _ in await ops.ucity.store.list_docs(KIND)}
        assert len(left) == 4  # untouched, the other tenant's too
        line = (await _audit(ops, "erased"))[-1]
        assert line["left"]["ngsildNotifications"] == 2 and PHONE not in str(line)
        # Once delivered they are gone, and an erasure then has no note.
        saved.done([f"urn:ngsi-ld:Notification:n{n}" for n in (1, 2, 3)])
        await saved.flush()
        quiet = await _call(ops, "subject_erase", "/api/v1/privacy/subject-erase",
                            {"entityId": OTHER, "reason": "본인 삭제 요청 제125호"})
        assert quiet.status == 200 and quiet.body["elsewhere"]["ngsildNotifications"] == {
            "count": 0, "ids": [], "subscriptions": []}
        assert "note" not in quiet.body
