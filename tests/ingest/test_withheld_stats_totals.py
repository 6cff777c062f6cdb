"""FIX-K (after QA17 F3): the ingest stats' `totals.lastRejection` and `totals.lastClockAhead` (a device's reason,
attribute and times) go to a caller without `personal:read` only when they come from a device that caller may see;
else they are left out and `withheld.totals` says so (bilingual). With the token guard on."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.ingest.support import IOT
from ucity.core.clock import FakeClock, to_iso
from ucity.core.config import load_settings
from ucity.ingest.decode import Rejection
from ucity.ingest.stats import IngestStats, Key
from ucity.server import create_app

ADMIN, READER = "a" * 32, "r" * 32
TOKENS = [{"id": "wall", "role": "reader", "token": READER}]
CARE_KEY, PARK_KEY = "care-key-4jggokgpepnvsb2u", "park-key-s40d59ov11aa"
STATS = "/api/v1/ingest/stats"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def http(tmp_path: Path) -> Iterator[TestClient]:
    settings = load_settings(environment="test", data_dir=str(tmp_path / "data"), store={"group_commit_ms": 1.0},
                             server={"require_auth": True}, ops={"admin_token": ADMIN, "tokens": TOKENS})
    with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as client:
        for key, entity_type, device in ((CARE_KEY, "CareDevice", "home-001-button"), (PARK_KEY, "ParkingSpot", "spot-1")):
            group = {"services": [{"apikey": key, "entity_type": entity_type, "resource": "/iot/json",
                                   "autoprovision": False}]}
            assert client.post("/iot/services", json=group, headers=IOT | bearer(ADMIN)).status_code == 201
            body = {"devices": [{"device_id": device, "apikey": key}]}
            assert client.post("/iot/devices", json=body, headers=IOT | bearer(ADMIN)).status_code == 201
        yield client


def stats(http: TestClient, token: str) -> dict[str, Any]:
    response = http.get(STATS, headers=bearer(token))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def reject(http: TestClient, key: str, device: str) -> None:
    # a measure time that is no time: rejected (invalid-time) and counted for the device
    assert http.post(f"/iot/json?k={key}&i={device}&t=not-a-time", json={"x": 1}).status_code == 400


def ahead(http: TestClient, key: str, device: str) -> None:
    # two hours ahead: taken (within ingest.max_future_s) and counted as a clock-ahead warning
    at = to_iso(datetime.now(UTC) + timedelta(hours=2))
    assert http.post(f"/iot/json?k={key}&i={device}", json={"TimeInstant": at, "x": 1}).status_code == 200


def test_the_latest_rejection_of_a_personal_device_is_left_out_for_a_reader(http: TestClient) -> None:
    reject(http, PARK_KEY, "spot-1")
    reject(http, CARE_KEY, "home-001-button")  # the latest: a care device's
    seen = stats(http, READER)
    assert "lastRejection" not in seen["totals"] and "home-001" not in str(seen)
    assert seen["totals"]["rejected"] == 2  # still counted
    assert seen["withheld"]["totals"] == ["lastRejection"]
    detail = seen["withheld"]["totalsDetail"]
    assert "personal:read" in detail and "개인" in detail and "lastRejection" in detail  # Korean and English
    # whoever may read personal data sees it
    assert stats(http, ADMIN)["totals"]["lastRejection"]["reason"] == "invalid-time"
    # a newer rejection of a device the reader may see: given again
    reject(http, PARK_KEY, "spot-1")
    seen = stats(http, READER)
    assert seen["totals"]["lastRejection"]["reason"] == "invalid-time" and "totals" not in seen["withheld"]


def test_the_latest_clock_ahead_warning_of_a_personal_device_is_left_out_for_a_reader(http: TestClient) -> None:
    ahead(http, PARK_KEY, "spot-1")
    seen = stats(http, READER)
    assert seen["totals"]["lastClockAhead"]["aheadSeconds"] > 7000 and "totals" not in seen["withheld"]
    ahead(http, CARE_KEY, "home-001-button")
    seen = stats(http, READER)
    assert "lastClockAhead" not in seen["totals"] and seen["withheld"]["totals"] == ["lastClockAhead"]
    assert seen["totals"]["warnings"] == {"clock-ahead": 2}
    assert stats(http, ADMIN)["totals"]["lastClockAhead"]["aheadSeconds"] > 7000


def test_the_platform_totals_follow_the_device_they_came_from() -> None:
    """`snapshot()` without a tenant (the platform's totals, kept as they come) withholds by the device too."""
    clock = FakeClock(datetime(2026, 12, 7, 15, 0, tzinfo=UTC))
    stats_ = IngestStats(clock)
    care: Key = ("t1", "care", "home-1")
    park: Key = ("t1", "park", "spot-1")
    personal = {care: "CareDevice"}

    def withhold(key: Key) -> str | None:
        return personal.get(key)

    stats_.rejected(park, [Rejection("invalid-value", "x is no number", field="x")], "http")
    stats_.clock_ahead(care, 1, 3600.0, "2026-12-07T16:00:00Z", "http", clock.now())
    clock.advance(1)
    stats_.rejected(care, [Rejection("invalid-value", "hr is no number", field="hr")], "http")
    seen = stats_.snapshot(withhold=withhold)
    assert "lastRejection" not in seen["totals"] and "lastClockAhead" not in seen["totals"]
    assert seen["withheld"]["totals"] == ["lastRejection", "lastClockAhead"]
    assert seen["withheld"]["types"] == {"CareDevice": 1}
    assert stats_.snapshot()["totals"]["lastRejection"]["attribute"] == "hr"  # nothing withheld: all of it
    clock.advance(1)
    stats_.rejected(park, [Rejection("invalid-value", "y is no number", field="y")], "http")
    seen = stats_.snapshot(withhold=withhold)
    assert seen["totals"]["lastRejection"]["attribute"] == "y" and seen["withheld"]["totals"] == ["lastClockAhead"]
