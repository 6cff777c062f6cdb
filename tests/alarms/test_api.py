"""`/api/v1/alarms` over HTTP (TestClient on a fake clock): filters, statistics, errors, contact data."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.alarms.support import OPERATOR, T0, matched
from ucity.core.clock import FakeClock
from ucity.core.config import Settings
from ucity.rules.events import RuleMatched
from ucity.server import create_app

D1, D2, P1 = "urn:ngsi-ld:Device:d1", "urn:ngsi-ld:Device:d2", "urn:ngsi-ld:ParkingSpot:p1"
HOUSEHOLD = "urn:ngsi-ld:Household:h1"
INSIDE = {"type": "Point", "coordinates": [126.90, 37.50]}
OUTSIDE = {"type": "Point", "coordinates": [127.30, 37.70]}
BBOX = "126.8,37.4,127.0,37.6"


class Api:
    def __init__(self, client: TestClient, clock: FakeClock) -> None:
        self.client = client
        self.clock = clock

    def call(self, fn: Any, *args: Any) -> Any:
        assert self.client.portal is not None
        return self.client.portal.call(fn, *args)

    def publish(self, event: RuleMatched) -> None:
        ucity = self.client.app.state.ucity  # type: ignore[attr-defined]
        self.call(ucity.platform.bus.publish, event)
        self.call(ucity.alarms.drain)

    def advance_to(self, seconds: float) -> None:
        self.call(self.clock.set, T0 + timedelta(seconds=seconds))

    def ids(self, **params: str) -> list[str]:
        response = self.client.get("/api/v1/alarms", params={"derived": "false", **params})
        assert response.status_code == 200, response.text
        return [a["entity_id"] + ("#fault" if a["kind"] == "fault" else "") for a in response.json()["alarms"]]

    def alarm_id(self, entity: str) -> str:
        (alarm,) = self.client.get("/api/v1/alarms", params={"entity": entity, "kind": "safety"}).json()["alarms"]
        return str(alarm["id"])

    def act(self, entity: str, action: str, body: Any = None) -> None:
        response = self.client.post(f"/api/v1/alarms/{self.alarm_id(entity)}/{action}", json=body, headers=OPERATOR)
        assert response.status_code == 200, response.text


@pytest.fixture
def api(settings: Settings) -> Iterator[Api]:
    clock = FakeClock(T0)
    with TestClient(create_app(settings, clock), base_url="http://127.0.0.1:8000") as client:
        api = Api(client, clock)
        api.publish(matched(D1, "serious", location=INSIDE, parent_id=HOUSEHOLD))
        api.advance_to(60)
        api.publish(matched(D2, "caution", location=OUTSIDE, parent_id=HOUSEHOLD))
        api.advance_to(120)
        api.publish(matched(P1, "interest", rule="occupancy", entity_types=("ParkingSpot",)))
        api.advance_to(180)
        api.publish(matched(D1, "warning", rule="battery", kind="fault"))
        yield api


def test_filters(api: Api) -> None:
    assert api.ids() == [f"{D1}#fault", P1, D2, D1]  # newest first
    assert api.ids(status="active") == api.ids()
    assert api.ids(level="serious") == [D1]
    assert api.ids(level="serious,caution") == [D2, D1]
    assert api.ids(kind="fault") == [f"{D1}#fault"]
    assert api.ids(type="ParkingSpot") == [P1]
    assert api.ids(type="Device", kind="safety") == [D2, D1]
    assert api.ids(bbox=BBOX) == [D1]
    assert api.ids(**{"from": "2026-03-02T00:00:30Z", "to": "2026-03-02T00:02:30Z"}) == [P1, D2]
    assert api.ids(rule="occupancy") == [P1]
    body = api.client.get("/api/v1/alarms", params={"derived": "false", "limit": "2", "offset": "1"}).json()
    assert (body["total"], body["limit"], body["offset"], [a["entity_id"] for a in body["alarms"]]) == (4, 2, 1, [P1, D2])
    derived = api.client.get("/api/v1/alarms", params={"derived": "true"}).json()["alarms"]
    assert [(a["entity_id"], a["level"], a["rule_id"]) for a in derived] == [(HOUSEHOLD, "serious", "derived:safety")]
    assert api.ids(parent=HOUSEHOLD) == [D2, D1]

    api.act(D1, "acknowledge")
    assert api.ids(status="active-acknowledged") == [D1]
    assert api.ids(status="active-unacknowledged", kind="safety") == [P1, D2]


@pytest.mark.parametrize("params", [
    {"status": "bogus"}, {"level": "fault"}, {"kind": "danger"}, {"bbox": "1,2,3"}, {"bbox": "10,10,0,0"},
    {"from": "yesterday"}, {"from": "2026-03-02T01:00:00Z", "to": "2026-03-02T00:00:00Z"}, {"limit": "0"},
    {"limit": "abc"}, {"offset": "-1"}, {"derived": "maybe"},
])
def test_bad_filters_are_400_problems(api: Api, params: dict[str, str]) -> None:
    for path in ("/api/v1/alarms", "/api/v1/alarms/stats"):
        response = api.client.get(path, params=params)
        assert response.status_code == 400, (params, response.text)
        problem = response.json()
        assert problem["status"] == 400 and problem["type"].endswith("BadRequestData") and " / " in problem["detail"]


def test_errors_are_problem_details(api: Api) -> None:
    response = api.client.get("/api/v1/alarms/unknown")
    assert (response.status_code, response.json()["title"]) == (404, "Resource not found")
    alarm_id = api.alarm_id(D2)
    assert api.client.post(f"/api/v1/alarms/{alarm_id}/close", json={"outcome": "real"}, headers=OPERATOR).status_code == 409
    response = api.client.post(f"/api/v1/alarms/{alarm_id}/acknowledge")
    assert response.status_code == 400 and "X-Ucity-Actor" in response.json()["detail"]
    assert api.client.post(f"/api/v1/alarms/{alarm_id}/acknowledge", headers=OPERATOR).status_code == 200
    response = api.client.post(f"/api/v1/alarms/{alarm_id}/acknowledge", headers=OPERATOR)
    problem = response.json()
    assert (response.status_code, problem["type"], problem["alarmStatus"]) == (
        409, "urn:ucity:errors:InvalidTransition", "active-acknowledged")
    assert "이미 확인" in problem["detail"] and "already acknowledged" in problem["detail"]
    assert api.client.post(f"/api/v1/alarms/{alarm_id}/comments", content=b"{", headers=OPERATOR).status_code == 400


def test_statistics(api: Api) -> None:
    api.advance_to(300)
    api.act(D1, "acknowledge")  # 300 s after it was raised
    api.advance_to(420)
    api.act(D2, "acknowledge")  # 360 s
    api.advance_to(720)
    api.act(P1, "acknowledge")  # 600 s
    api.act(D1, "close", {"outcome": "real"})
    api.act(D2, "close", {"outcome": "false-device"})
    api.act(P1, "close", {"outcome": "false-user", "note": "parked briefly"})
    stats = api.client.get("/api/v1/alarms/stats", params={"derived": "false"}).json()
    assert stats["total"] == 4
    assert stats["byLevel"] == {"interest": 1, "caution": 1, "warning": 0, "serious": 1, "fault": 1}
    assert stats["byKind"] == {"fault": 1, "safety": 3}
    assert stats["byType"] == {"Device": 3, "ParkingSpot": 1}
    assert stats["byStatus"] == {"active-unacknowledged": 1, "closed": 3}
    assert stats["timeToAcknowledge"] == {"count": 3, "meanSeconds": 420.0, "medianSeconds": 360.0}
    rates = stats["falseAlarmRate"]
    assert rates["byDevice"] == [{"entity": D1, "closed": 1, "false": 0, "rate": 0.0},
                                 {"entity": D2, "closed": 1, "false": 1, "rate": 1.0},
                                 {"entity": P1, "closed": 1, "false": 1, "rate": 1.0}]
    assert rates["byHousehold"] == [{"entity": HOUSEHOLD, "closed": 2, "false": 1, "rate": 0.5}]
    by_type = api.client.get("/api/v1/alarms/stats", params={"type": "ParkingSpot"}).json()
    assert (by_type["total"], by_type["timeToAcknowledge"]["meanSeconds"]) == (1, 600.0)


def test_contact_data_over_http(api: Api) -> None:
    client = api.client
    hook = {"id": "situation-room", "type": "webhook", "url": "http://127.0.0.1:9/hook"}
    response = client.post("/api/v1/notifiers", json=hook)
    assert (response.status_code, response.headers["location"]) == (201, "/api/v1/notifiers/situation-room")
    assert client.post("/api/v1/notifiers", json=hook).status_code == 409
    shown = client.get("/api/v1/notifiers/situation-room").json()
    assert (shown["url"], shown["signed"], shown["source"], shown["delivery"]) == (hook["url"], True, "api", None)
    assert "secret" not in str(shown).lower()
    assert client.put("/api/v1/notifiers/situation-room", json={"type": "sms"}).status_code == 200
    assert client.get("/api/v1/notifiers").json()[0]["kind"] == "sms"
    assert client.post("/api/v1/recipients", json={"id": "room", "notifiers": ["situation-room"]}).status_code == 201
    chain = {"id": "room-serious", "level": "serious", "steps": [{"delay_s": 60, "group": "room"}]}
    assert client.put("/api/v1/escalations/room-serious", json=chain).status_code == 201
    assert client.get("/api/v1/escalations").json()[0]["steps"] == [{"delay_s": 60.0, "group": "room"}]
    assert client.put("/api/v1/escalations/other", json=chain).status_code == 400  # id differs from the path
    assert client.delete("/api/v1/escalations/room-serious").status_code == 204
    assert client.get("/api/v1/escalations/room-serious").status_code == 404
    assert client.delete("/api/v1/escalations/room-serious").status_code == 404
    assert client.get("/api/v1/notifications/dead-letters").json() == {"total": 0, "deadLetters": []}
