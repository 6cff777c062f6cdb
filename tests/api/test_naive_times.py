"""Date-times without a UTC offset (QA17 F4), on both store backends.

NGSI-LD DateTimes are UTC instants (ETSI GS CIM 009): a time without an offset (or a date alone where a date-time is
needed) is a 400 BadRequestData saying to add `Z` or `+09:00`, not read as UTC (9 hours off for a Seoul analyst):
timeAt/endTimeAt, `q` date-times, `observedAt` and DateTime values in writes. The IoT Agent path keeps reading a
device's time without offset in the device's timezone (tests/ingest/test_decode.py). ucity's facility exports take
a date `YYYY-MM-DD` as that Seoul day and refuse a date-time without offset.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.api.entity_support import assert_problem
from tests.ingest.support import IOT, provision
from tests.ops.support import TOKENS, ops_settings
from ucity.core.errors import BadRequest
from ucity.core.http import Req
from ucity.domains.facility_safety.api import _bound
from ucity.server import create_app

B = "/ngsi-ld/v1"
JSON = {"content-type": "application/json"}
ADVICE = ("UTC 오프셋 필요", "add Z (UTC) or +09:00 (Korea time)")
DATE_ONLY = ("날짜뿐임", "is a date only")


@pytest.fixture
def http(tmp_path: Path) -> Iterator[TestClient]:
    settings = ops_settings(tmp_path, agencies=[])
    settings = settings.model_copy(update={"domains": settings.domains.model_copy(update={"enabled": ["facility_safety"]})})
    with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as client:
        # 2026-12-06T16:00Z is 2026-12-07 01:00 in Seoul
        sensor = {"id": "urn:ngsi-ld:X:n1", "type": "X",
                  "a": {"type": "Property", "value": 1, "observedAt": "2026-12-06T16:00:00Z"}}
        assert client.post(f"{B}/entities", json=sensor, headers=JSON).status_code == 201
        yield client


def refused(response: Any, words: tuple[str, str] = ADVICE) -> None:
    detail = assert_problem(response, 400, "BadRequestData")["detail"]
    assert all(word in detail for word in words), detail


def test_temporal_time_at_and_end_time_at_need_an_offset(http: TestClient) -> None:
    url = f"{B}/temporal/entities"
    base = {"attrs": "a", "timerel": "between"}
    refused(http.get(url, params={**base, "timeAt": "2026-12-07T00:00:00", "endTimeAt": "2026-12-08T00:00:00Z"}))
    refused(http.get(url, params={**base, "timeAt": "2026-12-07T00:00:00Z", "endTimeAt": "2026-12-08T00:00:00"}))
    refused(http.get(url, params={"attrs": "a", "timerel": "after", "timeAt": "2026-12-07"}), DATE_ONLY)
    query = {"type": "Query", "attrs": ["a"], "temporalQ": {"timerel": "after", "timeAt": "2026-12-07T00:00:00"}}
    refused(http.post(f"{B}/temporal/entityOperations/query", json=query, headers=JSON))
    # the Seoul day, written with its offset, finds the reading of 01:00 KST
    seoul = http.get(url, params={**base, "timeAt": "2026-12-07T00:00:00+09:00", "endTimeAt": "2026-12-08T00:00:00+09:00"})
    assert seoul.status_code == 200 and [e["id"] for e in seoul.json()] == ["urn:ngsi-ld:X:n1"]


def test_q_date_times_need_an_offset(http: TestClient) -> None:
    refused(http.get(f"{B}/entities", params={"type": "X", "q": "a.observedAt>2026-12-07T00:00:00"}))
    refused(http.get(f"{B}/entities", params={"type": "X", "q": "a.observedAt>2026-12-07"}),
            ("2026-12-07T00:00:00+09:00", "날짜·시각"))
    found = http.get(f"{B}/entities", params={"type": "X", "q": "a.observedAt>=2026-12-07T00:00:00+09:00"})
    assert found.status_code == 200 and [e["id"] for e in found.json()] == ["urn:ngsi-ld:X:n1"]


@pytest.mark.parametrize(("observed", "words"), [("2026-12-06T10:00:00", ADVICE), ("2026-12-06", DATE_ONLY)])
def test_writes_refuse_an_observed_at_without_offset(http: TestClient, observed: str, words: tuple[str, str]) -> None:
    attr = {"type": "Property", "value": 2, "observedAt": observed}
    refused(http.post(f"{B}/entities", json={"id": "urn:ngsi-ld:X:n2", "type": "X", "a": attr}, headers=JSON), words)
    assert http.get(f"{B}/entities/urn:ngsi-ld:X:n2").status_code == 404
    refused(http.patch(f"{B}/entities/urn:ngsi-ld:X:n1/attrs", json={"a": attr}, headers=JSON), words)
    refused(http.post(f"{B}/temporal/entities", json={"id": "urn:ngsi-ld:X:n1", "type": "X", "a": [attr]},
                      headers=JSON), words)
    assert http.get(f"{B}/entities/urn:ngsi-ld:X:n1").json()["a"]["value"] == 1
    with_offset = {**attr, "observedAt": "2026-12-06T10:00:00+09:00"}
    assert http.patch(f"{B}/entities/urn:ngsi-ld:X:n1/attrs", json={"a": with_offset}, headers=JSON).status_code == 204
    assert http.get(f"{B}/entities/urn:ngsi-ld:X:n1").json()["a"]["observedAt"] == "2026-12-06T01:00:00.000000Z"


def test_a_datetime_value_needs_an_offset(http: TestClient) -> None:
    def due(at: str) -> dict[str, Any]:
        return {"id": "urn:ngsi-ld:X:n3", "type": "X",
                "due": {"type": "Property", "value": {"@type": "DateTime", "@value": at}}}
    refused(http.post(f"{B}/entities", json=due("2026-12-07T09:00:00"), headers=JSON))
    assert http.post(f"{B}/entities", json=due("2026-12-07T09:00:00+09:00"), headers=JSON).status_code == 201


def test_a_device_measure_without_offset_is_still_in_the_device_timezone(http: TestClient) -> None:
    provision(http, {}, "nk", [], entity_type="Thing", autoprovision=True, timezone="Asia/Seoul",
              attributes=[{"object_id": "b", "name": "b", "type": "Number"}])
    response = http.post("/iot/json", params={"k": "nk", "i": "n-1"}, headers=IOT,
                         json={"b": 0.5, "TimeInstant": "2026-12-07T09:00:00"})
    assert response.status_code == 200 and not response.json().get("rejected"), response.text
    current = http.get(f"{B}/entities/urn:ngsi-ld:Thing:n-1").json()
    assert current["b"]["observedAt"] == "2026-12-07T00:00:00.000000Z"


def bound(name: str, text: str) -> datetime | None:
    return _bound(Req("GET", "/", params={name: [text]}), name, "Asia/Seoul")


def test_facility_export_bounds_take_seoul_days_and_refuse_a_time_without_offset() -> None:
    assert bound("from", "2026-12-01") == datetime(2026, 11, 30, 15, tzinfo=UTC)
    assert bound("to", "2026-12-01") == datetime(2026, 12, 1, 15, tzinfo=UTC)  # exclusive: all of Dec 1 in Seoul
    assert bound("from", "2026-12-01T00:00:00+09:00") == datetime(2026, 11, 30, 15, tzinfo=UTC)
    for name, text in (("from", "2026-12-01T00:00:00"), ("to", "2026-12-01T09:00")):
        with pytest.raises(BadRequest) as error:
            bound(name, text)
        assert all(word in error.value.detail for word in ADVICE)
    for text in ("2026-02-30", "9999-12-31"):
        with pytest.raises(BadRequest):
            bound("to", text)


def test_grades_csv_takes_a_seoul_day_and_refuses_a_time_without_offset(http: TestClient) -> None:
    operator = {"Authorization": f"Bearer {TOKENS['operator']}"}
    url = "/api/v1/facility-safety/export/grades.csv"
    assert http.get(url, params={"from": "2026-12-01", "to": "2026-12-07"}, headers=operator).status_code == 200
    response = http.get(url, params={"from": "2026-12-01T00:00:00"}, headers=operator)
    assert response.status_code == 400 and "+09:00" in response.json()["detail"]
