"""What a reader sees of devices (QA17 F1, F3), with the token guard on, on both store backends.

F1: a device's apikey is its credential (measures need no token), so `GET /api/v1/ingest/stats` (`data:read`) shows
it only to a caller who may read the device configuration (`config:read`, as `GET /iot/services`); a reader gets it
masked, in the rows and in the rejections' details (an unknown device's names it), and the counts per device.
F3: `GET /api/v1/devices/health` and the stats leave out the devices of a personal type (`CareDevice` ...) for a
caller without `personal:read`, and count them in `withheld`; the totals still count every device.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.ingest.support import IOT
from ucity.core.clock import FakeClock
from ucity.core.config import load_settings
from ucity.ingest.decode import Rejection
from ucity.ingest.mqtt import logged_topic
from ucity.ingest.stats import IngestStats, _masked_wire, masked_apikey
from ucity.server import create_app

ADMIN, OPERATOR, READER, INGEST = ("a" * 32, "o" * 32, "r" * 32, "i" * 32)
TOKENS = [{"id": "op-1", "role": "operator", "token": OPERATOR}, {"id": "wall", "role": "reader", "token": READER},
          {"id": "pipe", "role": "ingest", "token": INGEST}]
CARE_KEY, PARK_KEY = "care-key-4jggokgpepnvsb2u", "park-key-s40d59ov11aa"
STATS, HEALTH = "/api/v1/ingest/stats", "/api/v1/devices/health"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def http(tmp_path: Path) -> Iterator[TestClient]:
    settings = load_settings(environment="test", data_dir=str(tmp_path / "data"), store={"group_commit_ms": 1.0},
                             server={"require_auth": True}, ops={"admin_token": ADMIN, "tokens": TOKENS})
    with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as client:
        for key, entity_type, devices in ((CARE_KEY, "CareDevice", ["home-001-button", "home-001-motion"]),
                                          (PARK_KEY, "ParkingSpot", ["spot-1"])):
            group = {"services": [{"apikey": key, "entity_type": entity_type, "resource": "/iot/json",
                                   "autoprovision": False}]}
            assert client.post("/iot/services", json=group, headers=IOT | bearer(ADMIN)).status_code == 201
            body = {"devices": [{"device_id": d, "apikey": key} for d in devices]}
            assert client.post("/iot/devices", json=body, headers=IOT | bearer(ADMIN)).status_code == 201
        # measures need no token: the apikey is the device's credential
        for key, device in ((CARE_KEY, "home-001-button"), (CARE_KEY, "home-001-motion"), (PARK_KEY, "spot-1")):
            sent = client.post(f"/iot/json?k={key}&i={device}", json={"batteryLevel": 0.5, "x": 1})
            assert sent.status_code == 200, sent.text
        # unknown devices of both groups, and an apikey nobody has: counted, their rejections name the apikey
        assert client.post(f"/iot/json?k={PARK_KEY}&i=ghost", json={"x": 1}).status_code == 404
        assert client.post(f"/iot/json?k={CARE_KEY}&i=ghost-care", json={"x": 1}).status_code == 404
        assert client.post("/iot/json?k=nobodys-key-77&i=x", json={"x": 1}).status_code == 404
        yield client


def get(http: TestClient, path: str, token: str, **params: str) -> dict[str, Any]:
    response = http.get(path, params=params, headers=bearer(token))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# -- F1: apikeys -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("token", [READER, INGEST])
def test_a_caller_without_config_read_never_sees_an_apikey_in_the_stats(http: TestClient, token: str) -> None:
    response = http.get(STATS, headers=bearer(token))
    assert response.status_code == 200
    for key in (CARE_KEY, PARK_KEY, "nobodys-key-77"):
        assert key not in response.text  # rows, lastRejection details, totals
    stats = response.json()
    assert stats["apikeysMasked"] is True
    rows = {row["device_id"]: row for row in stats["devices"]}
    assert sorted(rows) == ["ghost", "spot-1", "x"]  # the care devices withheld (F3)
    assert rows["spot-1"]["apikey"] == masked_apikey(PARK_KEY) == "park***"
    assert rows["spot-1"]["measures"] == 1 and rows["spot-1"]["accepted"] == 2  # still useful: counts per device
    assert rows["ghost"]["rejected"] == 1 and rows["ghost"]["reasons"] == {"unknown-device": 1}
    assert "park***" in rows["ghost"]["lastRejection"]["detail"]
    # the key learnt is no key: a measure with what the reader saw is refused
    assert http.post(f"/iot/json?k={rows['spot-1']['apikey']}&i=spot-1", json={"x": 2}).status_code == 404


@pytest.mark.parametrize("token", [ADMIN, OPERATOR])
def test_a_caller_who_reads_the_device_configuration_sees_the_apikeys(http: TestClient, token: str) -> None:
    stats = get(http, STATS, token)
    assert "apikeysMasked" not in stats and "withheld" not in stats  # both have personal:read too
    keys = {(row["apikey"], row["device_id"]) for row in stats["devices"]}
    assert keys == {(CARE_KEY, "home-001-button"), (CARE_KEY, "home-001-motion"), (CARE_KEY, "ghost-care"),
                    (PARK_KEY, "spot-1"), (PARK_KEY, "ghost"), ("nobodys-key-77", "x")}
    # as GET /iot/services shows them to the same caller
    assert {g["apikey"] for g in get(http, "/iot/services", token)["services"]} == {CARE_KEY, PARK_KEY}


def test_a_rejection_detail_masks_the_apikey_as_a_word_only() -> None:
    wire = {"reason": "unknown-device", "detail": "device 'd' is not provisioned for apikey 'hk' (checked)"}
    assert _masked_wire(wire, "hk")["detail"] == "device 'd' is not provisioned for apikey '***' (checked)"
    assert _masked_wire(wire, "xyz") is wire
    stats = IngestStats(FakeClock())
    stats.rejected(("t", PARK_KEY, "d"), [Rejection("unknown-device", f"no service group has apikey {PARK_KEY!r}")],
                   "http")
    snapshot = stats.snapshot(apikeys=False)
    assert PARK_KEY not in str(snapshot) and snapshot["devices"][0]["apikey"] == "park***"


# -- F3: personal devices ----------------------------------------------------------------------------------
@pytest.mark.parametrize("token", [READER, INGEST])
def test_device_health_withholds_personal_devices_from_a_caller_without_personal_read(
        http: TestClient, token: str) -> None:
    response = http.get(HEALTH, headers=bearer(token))
    assert response.status_code == 200
    assert "CareDevice:" not in response.text and "home-001" not in response.text
    health = response.json()
    assert [d["device_id"] for d in health["devices"]] == ["spot-1"]
    withheld = health["withheld"]
    assert withheld["devices"] == 2 and withheld["types"] == {"CareDevice": 2}
    assert withheld["counts"] == {"online": 2, "offline": 0, "unknown": 0}
    assert "personal:read" in withheld["detail"] and "개인" in withheld["detail"]  # said, in Korean and English
    # the totals stay honest: every device counted
    assert health["total"] == 3 and health["counts"] == {"online": 3, "offline": 0, "unknown": 0}
    online = get(http, HEALTH, token, status="online")
    assert [d["device_id"] for d in online["devices"]] == ["spot-1"] and online["withheld"]["devices"] == 2
    stats = get(http, STATS, token)
    assert stats["withheld"]["devices"] == 3 and stats["withheld"]["types"] == {"CareDevice": 3}  # ghost-care too
    assert stats["totals"]["measures"] == 3 and stats["totals"]["rejected"] == 3  # every device's


@pytest.mark.parametrize("token", [ADMIN, OPERATOR])
def test_device_health_shows_personal_devices_to_a_caller_with_personal_read(http: TestClient, token: str) -> None:
    health = get(http, HEALTH, token)
    assert [d["device_id"] for d in health["devices"]] == ["home-001-button", "home-001-motion", "spot-1"]
    assert "withheld" not in health and health["total"] == 3
    assert health["devices"][0]["entity_id"] == "urn:ngsi-ld:CareDevice:home-001-button"


def test_device_listings_of_the_configuration_stay_closed_to_a_reader(http: TestClient) -> None:
    for path in ("/iot/devices", "/iot/devices/home-001-button", "/iot/services"):
        refused = http.get(path, headers=bearer(READER))
        assert refused.status_code == 403 and refused.json()["permission"] == "config:read"


def test_health_and_the_mqtt_log_lines_name_no_apikey(http: TestClient) -> None:
    for token in (READER, ADMIN):
        health = http.get("/health", headers=bearer(token))
        assert health.status_code == 200 and "components" in health.json()
        assert CARE_KEY not in health.text and PARK_KEY not in health.text
    # the MQTT source's log lines name a topic with its apikey masked (QA8 F9), as ingest's other lines do
    assert logged_topic(f"/{PARK_KEY}/spot-1/attrs") == "/park***/spot-1/attrs"
    assert logged_topic(f"/json/{PARK_KEY}/spot-1/attrs/x") == "/json/park***/spot-1/attrs/x"
    assert logged_topic("/not/an/iot-agent/topic/at/all") == "/not/an/iot-agent/topic/at/all"
