"""The on-call leftovers of QA9 F12: an operator resends an alarm's failed notification from the alarm (audited, in
its history, 409 when there is nothing to resend, 404 for a letter not of this alarm, addresses withheld from a
token without `personal:read`); the entity's name in the messages (never a person's); the device-offline text in
Korea time; no webhook or agency URL path in the `httpx` logger's request lines."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from tests.alarms.receiver import Receiver
from tests.alarms.support import SECRET, SENSOR, T0, TENANT, City, matched
from tests.alarms.test_config_qa9 import ADMIN, OPERATOR, READER, TOKENS, Client
from ucity.core.bus import Context
from ucity.core.clock import FakeClock
from ucity.core.config import load_settings
from ucity.core.errors import UcityError
from ucity.core.http import Req, Resp
from ucity.ingest import DeviceStatusChanged
from ucity.rules.events import RuleMatched
from ucity.server import create_app
from ucity.store.base import AuditQuery

OTHER_TENANT = "urn:ngsi-ld:tenant:other"
PHONE = "010-5555-0199"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


async def refusing_chain(city: City, receiver: Receiver) -> None:
    """A webhook whose receiver refuses (400: a dead letter at once), a group on it, a chain telling it at once."""
    receiver.status["/hook"] = 400
    notifier = {"id": "room", "type": "webhook", "url": f"{receiver.url}/hook"}
    assert (await city.collection("notifiers", "create", notifier)).status == 201
    assert (await city.collection("recipients", "create", {"id": "g", "notifiers": ["room"]})).status == 201
    assert (await city.collection("escalations", "create", {"id": "c", "steps": [{"delay_s": 0, "group": "g"}]})
            ).status == 201


async def resend(city: City, alarm_id: str, letter_id: str, tenant: str = TENANT) -> Resp:
    """The handler's answer, its errors as the server answers them (ProblemDetails)."""
    try:
        resp = await city.call("resend_dead_letter", "POST",
                               f"/api/v1/alarms/{alarm_id}/dead-letters/{letter_id}/resend",
                               headers={"x-ucity-actor": "operator-kim", "ngsild-tenant": tenant}, alarmId=alarm_id,
                               letterId=letter_id)
    except UcityError as exc:
        resp = Resp(exc.status, exc.to_problem())
    await city.settle()
    return resp


async def raise_with_dead_letter(city: City, receiver: Receiver) -> tuple[Any, dict[str, Any]]:
    await refusing_chain(city, receiver)
    await city.publish(matched(level="serious"))
    alarm = city.active()
    listed = await city.call("alarm_dead_letters", alarmId=alarm.id)
    assert listed.status == 200 and listed.body["total"] == 1
    return alarm, listed.body["deadLetters"][0]


# -- 1. resend from the alarm -------------------------------------------------------------------------------------
async def test_an_operator_resends_an_alarms_failed_notification(city: City, receiver: Receiver) -> None:
    alarm, letter = await raise_with_dead_letter(city, receiver)
    assert letter["resend"] == f"/api/v1/alarms/{alarm.id}/dead-letters/{letter['id']}/resend"
    assert (letter["event"], letter["group"], letter["error"]) == ("raised", "g", "HTTP 400")
    receiver.status["/hook"] = 200  # the receiver is back
    resp = await resend(city, alarm.id, letter["id"])
    assert resp.status == 202, resp.body
    assert resp.body["queued"] is True and resp.body["notifier"] == "room"
    # The same notification (same delivery id) reached the receiver again.
    sent = receiver.on("/hook")
    assert len(sent) == 2 and sent[1].headers["x-ucity-delivery"] == letter["id"]
    assert (await city.call("alarm_dead_letters", alarmId=alarm.id)).body["total"] == 0
    history = await city.history(alarm.id)
    (resent,) = [h for h in history if h["action"] == "resent"]
    assert (resent["actor"], resent["notification"], resent["notifier"], resent["event"], resent["attempts"]) == (
        "operator-kim", letter["id"], "room", "raised", 1)
    assert history.index(resent) < max(i for i, h in enumerate(history) if h["action"] == "delivered")
    rows, _ = await city.ucity.alarms_api.audit.query(TENANT, AuditQuery(kinds=("alarm",)))
    (row,) = rows
    assert (row["action"], row["actor"], row["alarm"], row["deadLetter"]) == (
        "notification-resent", "operator-kim", alarm.id, letter["id"])
    # Nothing left to resend: 409 with its reason, bilingual.
    again = await resend(city, alarm.id, letter["id"])
    assert again.status == 409 and again.body["reason"] == "no-dead-letter"


async def test_nothing_to_resend_is_409_and_a_letter_not_of_this_alarm_404(city: City, receiver: Receiver) -> None:
    alarm, letter = await raise_with_dead_letter(city, receiver)
    # A letter of another tenant (even one naming this alarm) and an unknown one: 404.
    stolen = {"id": "n-other", "notifier": "room", "attempts": 1, "error": "x", "failedAt": "2026-03-02T00:00:00Z",
              "notification": {"id": "n-other", "alarm": {"id": alarm.id}}}
    await city.ucity.store.put_doc("alarm-dead-letter", OTHER_TENANT, "n-other", stolen)
    for letter_id in ("n-other", "no-such-letter"):
        resp = await resend(city, alarm.id, letter_id)
        assert resp.status == 404, resp.body
    # The alarm asked for in another tenant: 404 too.
    assert (await resend(city, alarm.id, letter["id"], tenant=OTHER_TENANT)).status == 404
    # A letter of another alarm of this tenant: 404.
    await city.publish(matched("urn:ngsi-ld:Device:tilt-2", level="serious"))
    other = city.active("urn:ngsi-ld:Device:tilt-2")
    (theirs,) = (await city.call("alarm_dead_letters", alarmId=other.id)).body["deadLetters"]
    assert (await resend(city, alarm.id, theirs["id"])).status == 404
    # An administrator replayed it first (its receiver back): nothing left to resend (409); the replay unchanged.
    receiver.status["/hook"] = 200
    replay = await city.call("replay_dead_letter", "POST", headers={"x-ucity-actor": "admin"}, letterId=letter["id"])
    assert replay.status == 202
    await city.settle()
    assert (await resend(city, alarm.id, letter["id"])).status == 409
    # A disabled notifier: 409, the letter stays.
    disabled = {"type": "webhook", "url": f"{receiver.url}/hook", "enabled": False}
    assert (await city.collection("notifiers", "put", disabled, "room")).status == 200
    resp = await resend(city, other.id, theirs["id"])
    assert resp.status == 409 and resp.body["reason"] == "notifier-unavailable"
    assert (await city.call("alarm_dead_letters", alarmId=other.id)).body["total"] == 1


# -- 1. over HTTP with tokens: who may, what they see ---------------------------------------------------------------
@pytest.fixture
def guarded(tmp_path: Path, receiver: Receiver) -> Iterator[Client]:
    settings = load_settings(environment="test", data_dir=str(tmp_path / "data"), store={"group_commit_ms": 1.0},
                             server={"require_auth": True}, alarms={"webhook_secret": SECRET},
                             ops={"admin_token": ADMIN, "tokens": TOKENS, "grant_secret": "g" * 40,
                                  "pseudonym_secret": "p" * 40})
    with TestClient(create_app(settings, FakeClock(T0)), base_url="http://127.0.0.1:8000") as test_client:
        api = Client(test_client)
        receiver.status["/hook"] = 400
        assert api.post("/api/v1/notifiers", json={"id": "room", "type": "webhook",
                                                   "url": f"{receiver.url}/hook"}).status_code == 201
        group = {"id": "duty", "members": [{"name": "이당직", "contacts": [{"notifier": "room", "address": PHONE}]}]}
        assert api.post("/api/v1/recipients", json=group).status_code == 201
        assert api.post("/api/v1/escalations", json={"id": "c", "steps": [{"delay_s": 0, "group": "duty"}]}
                        ).status_code == 201
        api.portal(api.ucity.platform.bus.publish, matched(level="serious"))
        api.portal(api.ucity.alarms.settle)
        yield api


def test_operators_resend_readers_may_not_and_see_no_address(guarded: Client, receiver: Receiver) -> None:
    (alarm,) = guarded.get("/api/v1/alarms", OPERATOR).json()["alarms"]
    path = f"/api/v1/alarms/{alarm['id']}/dead-letters"
    (seen,) = guarded.get(path, OPERATOR).json()["deadLetters"]  # personal:read: whole
    assert seen["recipient"] == {"name": "이당직", "address": PHONE, "language": "ko"} and "withheld" not in seen
    (masked,) = guarded.get(path, READER).json()["deadLetters"]
    assert PHONE not in str(masked) and "이당직" not in str(masked)
    assert masked["withheld"] == ["recipient.name", "recipient.address"] and masked["withheldReason"]["en"]
    # The operator may not replay (config:admin) but may resend from the alarm; a reader may not.
    assert guarded.post(f"/api/v1/notifications/dead-letters/{seen['id']}/replay", OPERATOR).status_code == 403
    refused = guarded.post(f"{path}/{seen['id']}/resend", READER)
    assert refused.status_code == 403 and refused.json()["permission"] == "data:write"
    receiver.status["/hook"] = 200
    done = guarded.post(f"{path}/{seen['id']}/resend", OPERATOR)
    assert done.status_code == 202, done.text
    guarded.portal(guarded.ucity.alarms.settle)
    history = guarded.get(f"/api/v1/alarms/{alarm['id']}", OPERATOR).json()["history"]
    (resent,) = [h for h in history if h["action"] == "resent"]
    assert resent["actor"] == "operator:op1" and PHONE not in str(resent)
    again = guarded.post(f"{path}/{seen['id']}/resend", OPERATOR)
    assert again.status_code == 409 and again.json()["status"] == 409 and " / " in again.json()["detail"]
    lines = guarded.get("/api/v1/audit", ADMIN, params={"kind": "alarm"}).json()["entries"]
    assert [(e["action"], e["actor"]) for e in lines] == [("notification-resent", "operator:op1")]
    assert PHONE not in str(lines)


# -- 2. the entity's name in the messages -------------------------------------------------------------------------
async def recording_chain(city: City) -> None:
    assert (await city.collection("notifiers", "create", {"id": "push", "type": "push"})).status == 201
    group = {"id": "room", "notifiers": ["push"]}  # a group endpoint
    assert (await city.collection("recipients", "create", group)).status == 201
    assert (await city.collection("escalations", "create", {"id": "c", "steps": [{"delay_s": 0, "group": "room"}]})
            ).status == 201


def recorded(city: City) -> list[dict[str, Any]]:
    instance: Any = city.alarms.dispatcher.notifier(TENANT, "push")
    return list(instance.recorded)


async def create(city: City, body: dict[str, Any]) -> None:
    req = Req("POST", "/ngsi-ld/v1/entities", headers={"content-type": "application/json"}, body=orjson.dumps(body))
    assert (await city.ucity.ngsild.create_entity(req)).status == 201


async def test_a_rule_alarm_names_its_entity_through_the_rules_engine(city: City) -> None:
    """A real rule on a named device: the rules engine describes the entity (type, place), so the alarm does not
    read it again; its name comes with the rule event."""
    await recording_chain(city)
    await create(city, {"id": SENSOR, "type": "Device", "name": {"type": "Property", "value": "구로교 기울기 1"},
                        "tilt": {"type": "Property", "value": 1.0}})
    rule = {"id": "tilt-high", "name": {"ko": "기울기", "en": "Tilt"}, "entityTypes": ["Device"], "kind": "safety",
            "condition": {"type": "threshold", "attribute": "tilt", "direction": "above",
                          "edges": [{"level": "warning", "at": 10}]}}
    resp = await city.ucity.rules_api.create(Req("POST", "/api/v1/rules", headers={
        "content-type": "application/json", "x-ucity-actor": "admin"}, body=orjson.dumps(rule)))
    assert resp.status == 201, resp.body
    req = Req("PATCH", f"/ngsi-ld/v1/entities/{SENSOR}/attrs", headers={"content-type": "application/json"},
              body=orjson.dumps({"tilt": {"type": "Property", "value": 12.0}}), path_params={"entityId": SENSOR})
    assert (await city.ucity.ngsild.update_attrs(req)).status == 204
    await city.settle()
    alarm = city.active(rule="tilt-high")
    assert alarm is not None and alarm.entity_name == "구로교 기울기 1"
    (message,) = recorded(city)
    assert "이름: 구로교 기울기 1" in message["text"]["ko"] and "Name: 구로교 기울기 1" in message["text"]["en"]
    assert f"구로교 기울기 1 ({SENSOR})" in message["subject"]["ko"]
    assert f"구로교 기울기 1 ({SENSOR})" in message["subject"]["en"]


async def test_a_persons_name_never_reaches_a_group_endpoint(city: City) -> None:
    await recording_chain(city)
    # Described by the rules engine (entity types given) with its name, and undescribed with an `entityName` in
    # its evidence: the alarm learns it is about a person only when it reads the entity.
    await city.publish(matched("urn:ngsi-ld:Person:p1", "serious", "sos", entity_types=("Person",),
                               entity_name="홍길동"))
    await create(city, {"id": "urn:ngsi-ld:Person:p2", "type": "Person", "name": {"type": "Property", "value": "김철수"}})
    await city.publish(RuleMatched(Context(), TENANT, "sos", "urn:ngsi-ld:Person:p2", "serious",
                                   evidence={"entityName": "김철수"}))
    assert city.active("urn:ngsi-ld:Person:p1", "sos").entity_name == ""
    assert city.active("urn:ngsi-ld:Person:p2", "sos").entity_name == ""
    messages = recorded(city)
    assert len(messages) == 2
    for message in messages:  # to the group endpoint: neither subject nor text names the person
        assert "홍길동" not in str(message["subject"]) + str(message["text"])
        assert "김철수" not in str(message["subject"]) + str(message["text"])
    assert [a["entity_name"] for a in await city.all_alarms()] == ["", ""]


# -- 3. the device-offline text in Korea time -----------------------------------------------------------------------
async def test_device_offline_text_shows_the_last_report_in_korea_time(city: City) -> None:
    await city.publish(DeviceStatusChanged(Context(), TENANT, "tilt-1", SENSOR, "offline", "2026-03-01T23:30:00Z"))
    alarm = city.active(rule="device-offline")
    assert alarm.description["ko"] == "장치 tilt-1 통신 두절 (마지막 보고 2026-03-02 08:30:00 KST)"
    assert alarm.description["en"] == "Device tilt-1 offline (last reported 2026-03-02 08:30:00 KST)"
    assert alarm.evidence["last_reported"] == "2026-03-01T23:30:00Z"  # stored in UTC
    await city.publish(DeviceStatusChanged(Context(), TENANT, "d2", "urn:ngsi-ld:Device:d2", "offline", None))
    never = city.active("urn:ngsi-ld:Device:d2", "device-offline")
    assert never.description["en"] == "Device d2 offline (never reported)"


# -- 4. no webhook URL path in httpx's request lines ----------------------------------------------------------------
async def test_httpx_request_lines_show_no_webhook_path(city: City, receiver: Receiver,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    receiver.status["/hooks/T0/B0/SECRETPATH?token=SECRETQUERY"] = 400  # the receiver sees the path with its query
    notifier = {"id": "room", "type": "webhook", "url": f"{receiver.url}/hooks/T0/B0/SECRETPATH?token=SECRETQUERY"}
    assert (await city.collection("notifiers", "create", notifier)).status == 201
    assert (await city.collection("recipients", "create", {"id": "g", "notifiers": ["room"]})).status == 201
    assert (await city.collection("escalations", "create", {"id": "c", "steps": [{"delay_s": 0, "group": "g"}]})
            ).status == 201
    await city.publish(matched(level="serious"))
    assert len(receiver.received) == 1  # it was sent, and refused
    requests = [r for r in caplog.records if r.name == "httpx"]
    assert requests and all("SECRET" not in r.getMessage() for r in requests)
    assert f"POST {receiver.url}/*** " in requests[0].getMessage()  # host and status stay, for diagnosis
    assert "SECRET" not in caplog.text
    # ucity's own lines are not silenced: the dead letter is logged.
    assert any(r.name == "ucity.alarms.dispatch" and "dead letter" in r.getMessage() for r in caplog.records)
