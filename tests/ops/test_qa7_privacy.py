"""QA7 security and privacy findings of the operations centre, on both backends:

F1: an agency reads of an event's trail only what concerns it (its own linkages, grants and accesses, the event's
    lines without the operators' notes); operators read all of it.
F2: reads of personal data (an event shown unmasked) and of live footage tokens (a grant, a package) are audited,
    never with the data or the token; lists show personal data masked, and add no line.
F3: the NGSI-LD `CityEvent` (data:read: readers, a video wall) has no pseudonym, and a sensitive event no address,
    no case number and only a coarse cell as location (a protected type not even its type).
F6: 403 refusals of the operations API are audited (`auth` / `refused`) as the guard of the other APIs does.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.alarms.receiver import Receiver
from tests.ops.conftest import MakeOps
from tests.ops.support import POINT, TENANT, TOKENS, Ops
from tests.ops.test_auth import call_as
from tests.ops.test_linkage import audit, event_body, fire_and_police, open_link
from ucity.core.errors import UcityError
from ucity.ngsild.context import core_context
from ucity.ops.events import coarse_point
from ucity.store.base import TemporalQuery

HOME = "서울특별시 구로구 구로동 123-4 101동 1203호"
VICTIM = {"name": "홍길순", "phone": "010-1234-5678", "category": "victim"}
REPORTER = {"name": "홍길동", "phone": "010-8765-4321"}


async def refused(ops: Ops, *args: Any, **kwargs: Any) -> UcityError:
    with pytest.raises(UcityError) as caught:
        await ops.call(*args, **kwargs)
    assert caught.value.status == 403, caught.value.detail
    return caught.value


async def robbery_shared_with_fire(ops: Ops) -> tuple[str, str]:
    """A robbery the 112 room reports (shared with it at once), which an operator also shares with fire-119 and
    notes internally; fire opens a footage link. (event id, fire's grant id)"""
    created = await ops.call("create_event", "POST", "/api/v1/events", event_body(
        "112_DISPATCH", "robbery", reporter=REPORTER), role="police")
    event_id = created.body["id"]
    assert [link["agency"] for link in created.body["linkages"]] == ["police-112"]
    await ops.call("event_status", "POST", "/", {"status": "dispatched", "note": "내부 메모: 용의자 전과 3범"},
                   eventId=event_id)
    fire = await ops.call("request_linkage", "POST", "/", {"agency": "fire-119", "service": "119_DISPATCH",
                                                           "purpose": "진입로 확인"}, eventId=event_id)
    assert fire.body["status"] in ("queued", "delivered") and fire.body["grant"]
    links = (await ops.call("get_grant", role="fire", grantId=fire.body["grant"])).body["links"]
    assert (await open_link(ops, links[0]["stream"], "fire")).status in (307, 404)
    return event_id, fire.body["grant"]


# -- F1 --------------------------------------------------------------------------------------------------------------
async def test_an_agency_reads_only_its_own_part_of_an_event_trail(make_ops: MakeOps, receiver: Receiver) -> None:
    async with make_ops(**fire_and_police(receiver)) as ops:
        event_id, fire_grant = await robbery_shared_with_fire(ops)

        full = (await ops.call("get_event", eventId=event_id)).body
        operator_trail = json.dumps(full["history"], ensure_ascii=False)
        assert "fire-119" in operator_trail and fire_grant in operator_trail
        assert "용의자 전과" in full["notes"][0]["text"]  # kept with the event, not in the trail (QA10 F3)
        assert full["agencies"] == ["police-112", "fire-119"]

        police = (await ops.call("get_event", role="police", eventId=event_id)).body
        seen = json.dumps(police["history"], ensure_ascii=False)
        # nothing of fire's share (agency, grant, cameras, purpose, its access) nor the operators' notes
        for leak in ("fire-119", fire_grant, "진입로", "119_DISPATCH", "용의자 전과", "note", "personal-read",
                     "token-read"):
            assert leak not in seen, leak
        assert police["agencies"] == ["police-112"] and [x["agency"] for x in police["linkages"]] == ["police-112"]
        kinds = {(line["kind"], line["action"]) for line in police["history"]}
        # ... but the event's own lines and its own linkage and grant
        assert {("event", "created"), ("event", "status"), ("linkage", "requested"), ("grant", "issued")} <= kinds
        assert all(line["agency"] == "police-112" for line in police["history"] if line["kind"] != "event")
        status_lines = [line for line in police["history"] if line["action"] == "status"]
        assert ("sharing", "dispatched") in [(line["from"], line["to"]) for line in status_lines]

        # fire sees its part (its linkage, grant, access), not police's
        fire = (await ops.call("get_event", role="fire", eventId=event_id)).body
        fire_seen = json.dumps(fire["history"], ensure_ascii=False)
        assert fire_grant in fire_seen and "용의자 전과" not in fire_seen
        assert {line["agency"] for line in fire["history"] if line["kind"] != "event"} == {"fire-119"}
        assert ("grant", "access") in {(line["kind"], line["action"]) for line in fire["history"]}
        assert fire["agencies"] == ["police-112", "fire-119"]  # the reporting agency and itself


# -- F2 --------------------------------------------------------------------------------------------------------------
async def test_reading_personal_data_is_audited_and_lists_mask_it(make_ops: MakeOps, receiver: Receiver) -> None:
    async with make_ops(**fire_and_police(receiver)) as ops:
        created = await ops.call("create_event", "POST", "/api/v1/events", {
            **event_body("112_DISPATCH", "domestic_violence", address=HOME), "subject": VICTIM, "reporter": REPORTER},
            role="police")
        event_id = created.body["id"]
        assert await audit(ops, action="personal-read") == []

        # a list shows personal data masked, to operators too, and adds no line
        listed = (await ops.call("list_events")).body["events"]
        assert listed[0]["personal"]["subject"]["name"] == "홍**" and listed[0]["personal"]["subject"]["masked"]
        assert await audit(ops, action="personal-read") == []

        # an operator's read of the event shows it and is audited: who, which event, which parts; never the values
        ops.clock.advance(60)
        shown = (await ops.call("get_event", eventId=event_id)).body
        assert shown["personal"]["subject"]["name"] == "홍길순"
        [line] = await audit(ops, action="personal-read")
        assert (line["kind"], line["actor"], line["event"], line["outcome"]) == ("event", "operator:op-kim", event_id,
                                                                                 "ok")
        assert line["at"] == "2026-03-02T00:01:00.000000Z"
        assert line["personal"] == {"reporter": ["name", "phone"], "subject": ["name", "phone"]}
        assert "홍길" not in json.dumps(line, ensure_ascii=False) and "1234-5678" not in json.dumps(line)
        # the trail shown with the event leaves the reads out (they are in the audit log, for audit:read)
        assert "personal-read" not in {h["action"] for h in shown["history"]}

        # an agency sees it masked: no line
        assert (await ops.call("get_event", role="police", eventId=event_id)).body["personal"]["subject"]["masked"]
        # a status change answers masked, too
        moved = (await ops.call("event_status", "POST", "/", {"status": "dispatched"}, eventId=event_id)).body
        assert moved["personal"]["subject"]["name"] == "홍**"
        assert len(await audit(ops, action="personal-read")) == 1


async def test_reading_a_live_footage_token_is_audited_never_the_token(make_ops: MakeOps, receiver: Receiver) -> None:
    async with make_ops(**fire_and_police(receiver)) as ops:
        created = await ops.call("create_event", "POST", "/api/v1/events", event_body("112_DISPATCH", "robbery"),
                                 role="police")
        [link] = created.body["linkages"]
        assert await audit(ops, action="token-read") == []

        grant = (await ops.call("get_grant", role="police", grantId=link["grant"])).body
        token = grant["token"]
        package = (await ops.call("linkage_package", eventId=created.body["id"], linkageId=link["id"])).body
        assert package["grant"]["token"]
        lines = await audit(ops, action="token-read")
        assert [(x["kind"], x["actor"], x["agency"], x["grant"], x["event"], x["via"]) for x in lines] == [
            ("grant", "agency:police-terminal", "police-112", link["grant"], created.body["id"], "grant"),
            ("grant", "operator:op-kim", "police-112", link["grant"], created.body["id"], "package")]
        assert lines[1]["linkage"] == link["id"]
        everything = json.dumps(await audit(ops))
        assert token not in everything and package["grant"]["token"] not in everything
        # the grant's own audit lines, shown with it, leave the reads out
        again = (await ops.call("get_grant", role="police", grantId=link["grant"])).body
        assert "token-read" not in {x["action"] for x in again["audit"]}
        # a revoked grant shows no token: no line
        await ops.call("revoke_grant", "POST", "/", {"reason": "종결"}, grantId=link["grant"])
        assert "token" not in (await ops.call("get_grant", grantId=link["grant"])).body
        assert len(await audit(ops, action="token-read")) == 3


# -- F3 --------------------------------------------------------------------------------------------------------------
def attrs(doc: dict[str, Any]) -> dict[str, Any]:
    return {k.rsplit("/", 1)[-1]: v[0] for k, v in doc["attrs"].items()}


async def test_the_city_event_entity_of_a_sensitive_event_names_nobody_and_no_address(make_ops: MakeOps,
                                                                                      receiver: Receiver) -> None:
    async with make_ops(**fire_and_police(receiver)) as ops:
        created = await ops.call("create_event", "POST", "/api/v1/events", {
            **event_body("112_DISPATCH", "domestic_violence", address=HOME, sourceRef="112-2026-000123"),
            "subject": VICTIM, "reporter": REPORTER}, role="police")
        doc = await ops.ucity.store.get_entity(TENANT, created.body["entityId"])
        assert doc is not None
        text = json.dumps(doc, ensure_ascii=False)
        for leak in ("101동", "1203호", "구로동", created.body["subject"]["ref"], "domestic", "가정폭력", "112-2026",
                     "홍길", "010-"):
            assert leak not in text, leak
        values = attrs(doc)
        assert "address" not in values and "subjectRef" not in values and "eventType" not in values
        assert values["description"]["languageMap"] == {"ko": "112 긴급출동 지원", "en": "112 dispatch support"}
        cell = list(coarse_point(POINT))
        assert values["location"]["value"] == {"type": "Point", "coordinates": cell} and cell != list(POINT)
        assert values["locationCellDeg"]["value"] == 0.005
        assert values["level"]["value"] and values["status"]["value"] == "sharing"

        # every point of the cell gives the same location
        other = await ops.call("create_event", "POST", "/api/v1/events", {**event_body(
            "119_DISPATCH", "medical", location={"lon": POINT[0] + 0.001, "lat": POINT[1] + 0.001})})
        other_doc = await ops.ucity.store.get_entity(TENANT, other.body["entityId"])
        assert other_doc is not None and attrs(other_doc)["location"]["value"]["coordinates"] == cell
        assert "address" not in attrs(other_doc) and attrs(other_doc)["eventType"]["value"] == "medical"

        # nor in the entity's temporal history
        history, _ = await ops.ucity.store.temporal_query(TENANT, TemporalQuery(ids=(created.body["entityId"],)))
        past = json.dumps([str(h) for h in history], ensure_ascii=False)
        for leak in ("101동", "1203호", "구로동", "domestic", "가정폭력", "112-2026", "홍길", "010-"):
            # (the address's words, not a bare "1203": random instance ids hold any 4 digits now and then)
            assert leak not in past, leak


async def test_a_city_event_that_is_about_no_person_keeps_its_place(make_ops: MakeOps, receiver: Receiver) -> None:
    async with make_ops(**fire_and_police(receiver)) as ops:
        created = await ops.call("create_event", "POST", "/api/v1/events", event_body(
            "119_DISPATCH", "fire", sourceRef="119-77"))
        doc = await ops.ucity.store.get_entity(TENANT, created.body["entityId"])
        assert doc is not None
        values = attrs(doc)
        assert values["location"]["value"] == {"type": "Point", "coordinates": list(POINT)}
        assert values["address"]["value"] == {"streetAddress": "서울특별시 구로구 디지털로 300"}
        assert values["eventType"]["value"] == "fire" and values["sourceRef"]["value"] == "119-77"
        assert core_context().expand_term("locationCellDeg") not in doc["attrs"]


# -- F6 --------------------------------------------------------------------------------------------------------------
async def test_permission_refusals_of_the_operations_api_are_audited_and_paced(make_ops: MakeOps,
                                                                               receiver: Receiver) -> None:
    async with make_ops(**fire_and_police(receiver)) as ops:
        created = await ops.call("create_event", "POST", "/api/v1/events", event_body("112_DISPATCH", "robbery"),
                                 role="police")
        event_id, [link] = created.body["id"], created.body["linkages"]
        calls = [("event_status", "POST", "/", {"status": "acknowledged"}, {"eventId": event_id}),
                 ("approve_linkage", "POST", "/", {}, {"eventId": event_id, "linkageId": link["id"]}),
                 ("revoke_grant", "POST", "/", {}, {"grantId": link["grant"]}),
                 ("list_audit", "GET", "/", None, {}),
                 ("list_tokens", "GET", "/", None, {})]
        for name, method, path, body, params in calls:
            await refused(ops, name, method, path, body, role="police", **params)
        lines = await audit(ops, kind="auth", action="refused")
        assert [(x["actor"], x["agency"], x["outcome"], x["reason"], x["permission"], x["token"]) for x in lines] == [
            ("agency:police-terminal", "police-112", "denied", "permission", permission, "police-terminal")
            for permission in ("events:manage", "grants:issue", "audit:read", "tokens:admin")]
        assert [x["path"] for x in lines] == ["/", "/", "/", "/"] and all(x["method"] for x in lines)
        assert all(TOKENS["police"] not in json.dumps(x) for x in lines)

        # paced as the guard's: the same refusal (token, reason, permission) again within the minute is counted, not
        # written (the approval above was the second events:manage one) ...
        for _ in range(3):
            await refused(ops, "list_audit", role="police")
        assert len(await audit(ops, kind="auth", action="refused")) == 4
        # ... and the next line, a minute later, says how many were not
        await ops.advance(61)
        await refused(ops, "list_audit", role="police")
        last = (await audit(ops, kind="auth", action="refused"))[-1]
        assert (last["permission"], last["alsoRefused"]) == ("audit:read", 3)


async def test_a_token_of_another_tenant_refused_by_the_operations_api_is_audited(make_ops: MakeOps) -> None:
    async with make_ops(cameras=False) as ops:
        seoul = "urn:ngsi-ld:tenant:seoul"
        token = (await ops.call("create_token", "POST", "/", {"id": "seoul-op", "role": "operator", "tenant": seoul},
                                role="admin")).body["token"]
        assert (await call_as(ops, "list_events", token)).status == 403
        # written where the token's administrators look: its own tenant
        lines = (await ops.call("list_audit", params={"kind": "auth", "action": "refused"}, role="admin",
                                )).body["entries"]
        assert lines == []
        admin = await call_as(ops, "list_audit", TOKENS["admin"], seoul)
        [line] = admin.body["entries"]
        assert (line["actor"], line["reason"], line["token"], line["requestedTenant"]) == (
            "operator:seoul-op", "tenant", "seoul-op", TENANT)
