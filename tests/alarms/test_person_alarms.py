"""Alarms about a person in the alarms API and the SSE stream (QA10 F2 for the alarm, not only its Alert): with the
token guard on, a caller without `personal:read` (a video wall's reader token) gets the place coarse (the Alert's
cell), the alarm's Alert id instead of the person's entity id and the evidence without identifying values; an
operator (`personal:read`) gets the alarm unchanged; with the guard off nothing changes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from tests.alarms.support import SECRET, T0, TENANT, matched
from tests.alarms.test_config_qa9 import ADMIN, OPERATOR, READER, TOKENS, Client, bearer
from ucity.alarms.alert import AlertPrivacy
from ucity.alarms.api import person_entry, person_view
from ucity.core.clock import FakeClock
from ucity.core.config import load_settings
from ucity.server import create_app

PERSON = "urn:ngsi-ld:Person:elder-7"
EXACT = {"type": "Point", "coordinates": [126.887654, 37.495432]}
CELL = [126.8875, 37.4975]  # the centre of the 0.005° cell holding EXACT (the Alert's)
WHERE = {"type": "Point", "coordinates": [126.8876, 37.4954]}  # a geofence's evidence: the person's place


def settings(tmp_path: Path, production: bool) -> Any:
    ops = {"admin_token": ADMIN, "tokens": TOKENS, "grant_secret": "g" * 40, "pseudonym_secret": "p" * 40}
    data_dir = str(tmp_path / ("prod" if production else "dev"))
    return load_settings(environment="production" if production else "development", data_dir=data_dir,
                         store={"group_commit_ms": 1.0}, ops=ops,
                         alarms={"webhook_secret": SECRET, "sse_max_stream_s": 0.5, "sse_heartbeat_s": 0.2})


@contextmanager
def client(tmp_path: Path, production: bool) -> Iterator[Client]:
    with TestClient(create_app(settings(tmp_path, production), FakeClock(T0)),
                    base_url="http://127.0.0.1:8000") as test_client:
        api = Client(test_client)
        ucity = api.ucity
        api.portal(ucity.platform.bus.publish, matched(
            PERSON, "serious", "geofence-exit", entity_types=("Person",), location=EXACT,
            evidence={"attribute": "location", "value": WHERE, "heartRate": 48, "entityName": "홍길동"}))
        api.portal(ucity.platform.bus.publish, matched("urn:ngsi-ld:Device:d1", "warning", location=EXACT))
        api.portal(ucity.alarms.drain)
        yield api


@pytest.fixture
def prod(tmp_path: Path) -> Iterator[Client]:
    with client(tmp_path, True) as api:
        yield api


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[Client]:
    with client(tmp_path, False) as api:
        yield api


def by_entity_type(alarms: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {a["entity_type"]: a for a in alarms}


def assert_coarse(alarm: dict[str, Any]) -> None:
    assert alarm["entity_id"] == alarm["alert_id"] == f"urn:ngsi-ld:Alert:{alarm['id']}"
    assert alarm["location"] == {"type": "Point", "coordinates": CELL} and alarm["locationCellDeg"] == 0.005
    assert alarm["evidence"]["heartRate"] == 48 and alarm["evidence"]["attribute"] == "location"
    assert {"entity_id", "location", "evidence.value", "evidence.entityName"} <= set(alarm["withheld"])
    assert alarm["withheldReason"]["en"].startswith("an alarm about a person")
    text = orjson.dumps(alarm).decode()
    assert "elder-7" not in text and "126.887654" not in text and "126.8876" not in text and "홍길동" not in text


def assert_exact(alarm: dict[str, Any]) -> None:
    assert alarm["entity_id"] == PERSON and alarm["location"] == EXACT and alarm["evidence"]["value"] == WHERE
    assert "withheld" not in alarm and "locationCellDeg" not in alarm


def test_reader_gets_an_alarm_about_a_person_coarse_and_without_the_entity(prod: Client) -> None:
    listed = by_entity_type(prod.get("/api/v1/alarms", READER).json()["alarms"])
    assert_coarse(listed["Person"])
    assert listed["Device"]["location"] == EXACT and "withheld" not in listed["Device"]  # other alarms as they are
    one = prod.get(f"/api/v1/alarms/{listed['Person']['id']}", READER).json()
    assert_coarse(one)
    (raised,) = [h for h in one["history"] if h["action"] == "raised"]
    assert "value" not in raised["evidence"] and "evidence.value" in raised["withheld"]
    assert "elder-7" not in str(one) and "126.8876" not in str(one)


def test_reader_cannot_select_an_alarm_about_a_person_by_its_entity_or_place(prod: Client) -> None:
    box = {"bbox": "126.8876,37.4954,126.8877,37.4955"}  # around the exact place: narrowing it would find it
    for params, token, types in (({"entity": PERSON}, READER, []), (box, READER, ["Device"]),
                                 ({**box, "type": "Person"}, READER, []),
                                 ({"entity": PERSON}, OPERATOR, ["Person"]), (box, OPERATOR, ["Device", "Person"])):
        body = prod.get("/api/v1/alarms", token, params=params).json()
        assert sorted(a["entity_type"] for a in body["alarms"]) == types and body["total"] == len(types), params


def test_reader_gets_no_person_in_the_false_alarm_rate(prod: Client) -> None:
    for entity in (PERSON, "urn:ngsi-ld:Device:d1"):
        (alarm,) = prod.get("/api/v1/alarms", OPERATOR, params={"entity": entity}).json()["alarms"]
        assert prod.post(f"/api/v1/alarms/{alarm['id']}/acknowledge", OPERATOR).status_code == 200
        close = prod.post(f"/api/v1/alarms/{alarm['id']}/close", OPERATOR, json={"outcome": "false-device"})
        assert close.status_code == 200
    read = prod.get("/api/v1/alarms/stats", READER).json()["falseAlarmRate"]
    assert [row["entity"] for row in read["byDevice"]] == ["urn:ngsi-ld:Device:d1"] and read["withheld"] == 1
    operated = prod.get("/api/v1/alarms/stats", OPERATOR).json()["falseAlarmRate"]
    assert sorted(row["entity"] for row in operated["byDevice"]) == ["urn:ngsi-ld:Device:d1", PERSON]
    assert "withheld" not in operated


@pytest.mark.parametrize("guard", [True, False])
def test_operator_and_guard_off_get_the_alarm_unchanged(tmp_path: Path, guard: bool) -> None:
    with client(tmp_path, guard) as api:
        for token in ((OPERATOR, ADMIN) if guard else (READER,)):
            alarm = by_entity_type(api.get("/api/v1/alarms", token).json()["alarms"])["Person"]
            assert_exact(alarm)
            one = api.get(f"/api/v1/alarms/{alarm['id']}", token).json()
            assert_exact(one)
            (raised,) = [h for h in one["history"] if h["action"] == "raised"]
            assert raised["evidence"]["value"] == WHERE and "withheld" not in raised


def stream(api: Client, token: str | None) -> list[dict[str, Any]]:
    """The alarm events of one stream (from the start of the buffer; it ends after sse_max_stream_s)."""
    headers = {"NGSILD-Tenant": TENANT, "Last-Event-ID": "0", **(bearer(token) if token else {})}
    with api.client.stream("GET", "/api/v1/stream", headers=headers) as response:
        assert response.status_code == 200
        body = "".join(response.iter_text())
    return [orjson.loads(line[len("data: "):]) for line in body.splitlines() if line.startswith("data: ")]


def test_stream_shows_an_alarm_about_a_person_coarse_to_a_reader(prod: Client) -> None:
    read = by_entity_type(stream(prod, READER))
    assert_coarse(read["Person"])
    assert read["Device"]["location"] == EXACT and "withheld" not in read["Device"]
    assert_exact(by_entity_type(stream(prod, OPERATOR))["Person"])
    assert_coarse(by_entity_type(stream(prod, READER))["Person"])  # the cached view did not change the event


def test_stream_without_the_guard_is_unchanged(dev: Client) -> None:
    assert_exact(by_entity_type(stream(dev, None))["Person"])


def test_person_view_of_latest_values_and_unknown_geometry() -> None:
    privacy = AlertPrivacy(frozenset({"Person"}), 0.005)
    wire = {"id": "a1", "alert_id": "urn:ngsi-ld:Alert:a1", "entity_id": PERSON, "entity_type": "Person",
            "location": None, "evidence": {"values": {"pulse": 50, "name": "홍"},
                                           "latest": {"value": "010-1234-5678", "level": "interest"}}}
    seen = person_view(wire, privacy)
    assert seen["evidence"] == {"values": {"pulse": 50}, "latest": {"level": "interest"}}
    assert seen["withheld"] == ["entity_id", "evidence.values.name", "evidence.latest.value"]
    assert seen["location"] is None and wire["entity_id"] == PERSON  # the input is not changed
    other = {**wire, "entity_type": "Device"}
    assert person_view(other, privacy) is other
    entry = {"action": "raised", "evidence": {"value": 3.5}}
    assert person_entry(entry) is entry
