"""`CityEvent` entities written before QA7 F3 (the subject's pseudonym, a sensitive event's address, case number and
exact place) are written again in the private form at start, and their temporal history loses what the private
form leaves out; once per tenant, audited, idempotent (ucity/ops/event_privacy.py). On both backends."""

from __future__ import annotations

import json
from typing import Any

from tests.alarms.receiver import Receiver
from tests.ops.conftest import MakeOps
from tests.ops.support import POINT, TENANT, Ops
from tests.ops.test_linkage import audit, event_body, fire_and_police
from ucity.core.bus import Context
from ucity.ngsild.context import core_context
from ucity.ngsild.model import normalize_entity
from ucity.ngsild.ops import replace_op
from ucity.ops.event_privacy import KIND, VERSION
from ucity.ops.events import SERVICES, coarse_point, type_name
from ucity.store.base import Mutation, TemporalQuery

HOME = "서울특별시 구로구 구로동 123-4 101동 1203호"
FIRE_ADDRESS = "서울특별시 구로구 디지털로 300"
VICTIM = {"name": "홍길순", "phone": "010-1234-5678", "category": "victim"}
ORPHAN = "urn:ngsi-ld:CityEvent:purged-by-retention"
EXACT = f"{POINT[0]}, {POINT[1]}"


def prop(value: Any) -> dict[str, Any]:
    return {"type": "Property", "value": value}


def old_form(entity_id: str, service: str, code: str, status: str, ref: str, subject_ref: str | None,
             address: str = HOME) -> dict[str, Any]:
    """A `CityEvent` as the previous version wrote it: every event with its exact point, address, case number, type
    and the subject's pseudonym."""
    entity = {"id": entity_id, "type": "CityEvent", "service": prop(service), "eventType": prop(code),
              "level": prop("warning"), "severity": prop("high"), "status": prop(status),
              "occurredAt": prop({"@type": "DateTime", "@value": "2026-03-02T00:00:00Z"}),
              "reportedAt": prop({"@type": "DateTime", "@value": "2026-03-02T00:00:00Z"}),
              "sourceSystem": prop("operator"), "sourceRef": prop(ref),
              "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": list(POINT)}},
              "address": prop({"streetAddress": address}),
              "description": {"type": "LanguageProperty", "languageMap": {
                  lang: f"{SERVICES[service][lang]}: {type_name(code)[lang]}" for lang in ("ko", "en")}}}
    if subject_ref is not None:
        entity["subjectRef"] = prop(subject_ref)
    return entity


async def write_old(ops: Ops, *entities: dict[str, Any]) -> None:
    """Straight into the store, as the previous version's event writes did (history recorded)."""
    ctx = core_context()
    results = await ops.ucity.store.mutate(TENANT, [Mutation(e["id"], replace_op(normalize_entity(e, ctx), True))
                                                    for e in entities], Context(actor="ucity-ops"))
    assert not [r for r in results if isinstance(r, Exception)], results


async def history(ops: Ops, entity_id: str) -> dict[str, list[dict[str, Any]]]:
    (entity,), _ = await ops.ucity.store.temporal_query(TENANT, TemporalQuery(ids=(entity_id,), limit_instances=10_000))
    return {attr.rsplit("/", 1)[-1]: series.instances for attr, series in entity.attrs.items()}


def values(doc: dict[str, Any] | None) -> dict[str, Any]:
    assert doc is not None
    return {k.rsplit("/", 1)[-1]: v[0] for k, v in doc["attrs"].items()}


async def test_old_city_event_entities_and_their_history_are_made_private_at_start(make_ops: MakeOps,
                                                                                  receiver: Receiver) -> None:
    settings = fire_and_police(receiver)
    async with make_ops(**settings) as ops:
        robbery = (await ops.call("create_event", "POST", "/api/v1/events", {**event_body(
            "112_DISPATCH", "robbery", address=HOME, sourceRef="112-2026-000123"), "subject": VICTIM})).body
        violence = (await ops.call("create_event", "POST", "/api/v1/events", event_body(
            "112_DISPATCH", "domestic_violence", address=HOME, sourceRef="112-2026-000124"))).body
        fire = (await ops.call("create_event", "POST", "/api/v1/events", event_body(
            "119_DISPATCH", "fire", sourceRef="119-77"))).body
        pseudonym = robbery["subject"]["ref"]
        # What the previous version wrote for them (twice for the robbery: it changed once), and for an event whose
        # record retention has purged since.
        old = [old_form(robbery["entityId"], "112_DISPATCH", "robbery", "received", "112-2026-000123", pseudonym),
               old_form(violence["entityId"], "112_DISPATCH", "domestic_violence", "received", "112-2026-000124",
                        None),
               old_form(fire["entityId"], "119_DISPATCH", "fire", "received", "119-77", None, FIRE_ADDRESS),
               old_form(ORPHAN, "VULNERABLE", "missing_person", "closed", "case-9", "psn-orphan0000000000")]
        await write_old(ops, *old)
        await ops.advance(60)
        await write_old(ops, {**old[0], "status": prop("acknowledged")})
        before = json.dumps([await history(ops, e["id"]) for e in old], ensure_ascii=False)
        for leak in ("1203호", pseudonym, "112-2026-000123", "가정폭력", "psn-orphan", "case-9", str(POINT[0])):
            assert leak in before, leak
        status_before = len((await history(ops, robbery["entityId"]))["status"])
        # as before this version: no tenant migrated
        await ops.ucity.store.delete_doc(KIND, TENANT, "done")

    async with make_ops(cameras=False, **settings) as ops:  # this version's start
        store = ops.ucity.store
        for entity_id in (robbery["entityId"], violence["entityId"], ORPHAN):
            text = json.dumps([await store.get_entity(TENANT, entity_id), await history(ops, entity_id)],
                              ensure_ascii=False)
            for leak in ("1203호", "구로동", pseudonym, "psn-orphan", "subjectRef", "112-2026", "case-9", "가정폭력",
                         "domestic", "streetAddress", str(POINT[0])):
                assert leak not in text, (entity_id, leak)
        cell = list(coarse_point(POINT))
        robbery_now = values(await store.get_entity(TENANT, robbery["entityId"]))
        assert robbery_now["location"]["value"]["coordinates"] == cell and robbery_now["eventType"]["value"] == "robbery"
        assert robbery_now["status"]["value"] == robbery["status"]  # the record's state, not the old entity's
        robbery_history = await history(ops, robbery["entityId"])
        assert robbery_history["location"] and all(i["value"]["coordinates"] == cell
                                                   for i in robbery_history["location"])
        assert len(robbery_history["status"]) > status_before  # the rest of the history stays (and the rewrite)
        assert [i["value"] for i in robbery_history["eventType"]].count("robbery") >= 3  # not protected: kept
        violence_history = await history(ops, violence["entityId"])
        assert "eventType" not in violence_history
        assert {i["languageMap"]["en"] for i in violence_history["description"]} == {"112 dispatch support"}
        orphan = values(await store.get_entity(TENANT, ORPHAN))
        assert orphan["location"]["value"]["coordinates"] == cell and orphan["locationCellDeg"]["value"] == 0.005
        assert orphan["status"]["value"] == "closed" and orphan["eventType"]["value"] == "missing_person"

        # an event about no person keeps its place and case number, in the entity and its history
        fire_now = values(await store.get_entity(TENANT, fire["entityId"]))
        assert fire_now["address"]["value"] == {"streetAddress": FIRE_ADDRESS} and fire_now["sourceRef"]["value"] == "119-77"
        assert fire_now["location"]["value"]["coordinates"] == list(POINT)
        fire_history = await history(ops, fire["entityId"])
        assert len(fire_history["address"]) >= 2 and len(fire_history["sourceRef"]) >= 2
        assert {tuple(i["value"]["coordinates"]) for i in fire_history["location"]} == {POINT}

        # audited in the tenant, with counts and no value; the tenant marked done
        (line,) = await audit(ops, kind="retention", action="privacy-migration")
        assert line["actor"] == "system:ops-privacy-migration" and line["outcome"] == "ok"
        assert (line["entitiesRewritten"], line["orphansCleaned"]) == (3, 1)
        assert line["historySeriesDeleted"] >= 6 and line["historyInstancesDeleted"] >= 4
        assert pseudonym not in json.dumps(line, ensure_ascii=False)
        marks = {(t, k): d for t, k, d in await store.list_docs(KIND)}
        assert marks[(TENANT, "done")]["version"] == VERSION

        # idempotent: run again over the same data it changes nothing; a start with nothing to do does nothing
        assert await ops.center.privacy.migrate(TENANT) == {
            "entitiesRewritten": 0, "orphansCleaned": 0, "historySeriesDeleted": 0, "historyInstancesDeleted": 0}
        assert await ops.center.privacy.run() == {}
        assert len(await audit(ops, kind="retention", action="privacy-migration")) == 1
