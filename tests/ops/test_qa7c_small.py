"""QA7 small items of the operations centre, on both backends: an event at 0,0 ("Null Island", a client's zeros for a
missing position) is refused, and an alarm of an entity at 0,0 makes its event without a place; the refusal to renew
an ended grant says "an expired" / "a revoked" grant."""

from __future__ import annotations

from typing import Any

import pytest

from tests.alarms.receiver import Receiver
from tests.ops.conftest import MakeOps
from tests.ops.support import TENANT, Ops
from tests.ops.test_alarm_events import SENSOR, iot_events, publish
from tests.ops.test_linkage import event_body, fire_and_police, nearest_ids
from ucity.core.bus import Context
from ucity.core.errors import UcityError
from ucity.rules.events import RuleMatched


async def error(ops: Ops, name: str, body: Any, role: str = "operator", **path: str) -> UcityError:
    with pytest.raises(UcityError) as caught:
        await ops.call(name, "POST", "/", body, role=role, **path)
    return caught.value


@pytest.mark.parametrize("location", [{"lon": 0, "lat": 0}, {"lon": 0.0, "lat": -0.0},
                                      {"type": "Point", "coordinates": [0, 0]}])
async def test_an_event_at_null_island_is_refused(ops: Ops, location: dict[str, Any]) -> None:
    refused = await error(ops, "create_event", {**event_body("119_DISPATCH", "fire"), "location": location})
    assert refused.status == 400
    assert "위치 0,0" in refused.detail and "location 0,0" in refused.detail and "Null Island" in refused.detail
    assert (await ops.call("list_events")).body["events"] == []
    # a point near it (a real place at sea, or a client that sends one coordinate zero) is a point
    created = await ops.call("create_event", "POST", "/", {**event_body("DISASTER", "flood"),
                                                           "location": {"lon": 0.0, "lat": 0.001}})
    assert created.status == 201


async def test_an_alarm_of_an_entity_at_null_island_makes_its_event_without_a_place(ops: Ops) -> None:
    await publish(ops, RuleMatched(Context(), TENANT, "tilt-ladder", SENSOR, "warning", category="structural",
                                   location={"type": "Point", "coordinates": [0.0, 0.0]}, entity_types=("Device",),
                                   description={"ko": "기울기 경계", "en": "Tilt warning"}))
    [event] = await iot_events(ops)
    assert event["location"] is None and event["level"] == "warning"


async def test_renewing_an_ended_grant_is_refused_in_plain_english(make_ops: MakeOps, receiver: Receiver) -> None:
    async with make_ops(**fire_and_police(receiver)) as ops:
        event = await ops.call("create_event", "POST", "/api/v1/events", event_body("112_DISPATCH", "theft"))
        cameras = (await nearest_ids(ops))[:1]
        first = await ops.call("create_grant", "POST", "/api/v1/grants", {
            "agency": "police-112", "event": event.body["id"], "cameras": cameras})
        second = await ops.call("create_grant", "POST", "/api/v1/grants", {
            "agency": "police-112", "event": event.body["id"], "cameras": cameras})
        await ops.call("revoke_grant", "POST", "/", {"reason": "끝"}, grantId=second.body["id"])
        revoked = await error(ops, "renew_grant", {}, role="police", grantId=second.body["id"])
        assert revoked.status == 409
        assert revoked.detail == ("회수된 공유는 갱신할 수 없습니다 / a revoked grant cannot be renewed: "
                                  "request a new one")
        await ops.advance(31 * 60)
        expired = await error(ops, "renew_grant", {}, role="police", grantId=first.body["id"])
        assert expired.status == 409
        assert expired.detail == ("만료된 공유는 갱신할 수 없습니다 / an expired grant cannot be renewed: "
                                  "request a new one")


async def test_an_attachment_url_is_an_http_address_of_another_host(make_ops: MakeOps) -> None:
    """QA7 F7: an attachment's URL goes in other agencies' packages and on the dashboard: a `javascript:` link, or an
    address that points a receiver at its own machine (loopback, link-local cloud metadata), is refused."""
    async with make_ops(cameras=False) as ops:
        event_id = (await ops.call("create_event", "POST", "/api/v1/events", event_body("DISASTER", "flood"))).body["id"]
        for url in ("javascript:alert(1)", "data:text/html,<b>x</b>", "file:///etc/passwd", "http://169.254.169.254/",
                    "http://127.0.0.1:8000/x", "http://localhost/x", "https://[::1]/x", "http://0.0.0.0/", "ftp://x.kr/a"):
            refused = await error(ops, "add_attachment", {"name": "x.jpg", "url": url}, eventId=event_id)
            assert refused.status == 400, url
        kept = await ops.call("add_attachment", "POST", "/", {"name": "photo.jpg", "url": "https://files.guro.go.kr/a.jpg"},
                              eventId=event_id)
        assert kept.status == 201 and kept.body["url"] == "https://files.guro.go.kr/a.jpg"
        internal = await ops.call("add_attachment", "POST", "/", {"name": "cctv.jpg", "url": "http://10.1.2.3/still.jpg"},
                                  eventId=event_id)
        assert internal.status == 201  # the city's own file server on its network is fine
