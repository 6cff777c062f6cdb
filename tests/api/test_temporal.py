"""The NGSI-LD temporal API over HTTP (ETSI GS CIM 009 §5.6.11–5.6.16, §5.7.3–5.7.4, §6.18–6.22):
temporal entity creation and append, history written by ordinary entity writes, time windows,
lastN, the simplified and aggregated representations, 206 paging by time, instance edits and
deletion, and the POST query. The parsing helpers are unit-tested at the end.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.api.entity_support import CORE, DEFAULT_VOCAB, ENTITIES, NGSI, assert_problem, entity_url
from ucity.core.config import Settings
from ucity.core.errors import BadRequest
from ucity.ngsild.temporal import TimeWindow, page_range, parse_duration, parse_window
from ucity.server import create_app
from ucity.store.base import HistorySeries

TEMPORAL = f"{NGSI}/temporal/entities"
TQUERY = f"{NGSI}/temporal/entityOperations/query"
S1 = "urn:ngsi-ld:Sensor:s1"
S2 = "urn:ngsi-ld:Sensor:s2"
GPS = "urn:ngsi-ld:Dataset:gps"


def t(hour: int, minute: int = 0) -> str:
    return f"2024-01-01T{hour:02d}:{minute:02d}:00.000000Z"


def obs(value: Any, hour: int, minute: int = 0, **members: Any) -> dict[str, Any]:
    return {"type": "Property", "value": value, "observedAt": t(hour, minute), **members}


def sensor(entity_id: str = S1, **attrs: Any) -> dict[str, Any]:
    return {"id": entity_id, "type": "Sensor", **attrs}


def temporal_url(entity_id: str, *rest: str) -> str:
    return "/".join([TEMPORAL, entity_id, *rest])


def post_temporal(client: TestClient, body: dict[str, Any], status: int = 201) -> None:
    response = client.post(TEMPORAL, json=body)
    assert response.status_code == status, response.text


def get_temporal(client: TestClient, entity_id: str = S1, status: int = 200, **params: str) -> dict[str, Any]:
    response = client.get(temporal_url(entity_id), params=params)
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


def values(attr: list[dict[str, Any]]) -> list[Any]:
    return [i["value"] for i in attr]


@pytest.fixture
def paged(settings: Settings) -> Iterator[TestClient]:
    """A client whose temporal page holds 3 instances per attribute."""
    small = settings.model_copy(update={"ngsild": settings.ngsild.model_copy(update={"temporal_page_size": 3})})
    with TestClient(create_app(small), base_url="http://127.0.0.1:8000") as c:
        yield c


# -- create and append ---------------------------------------------------------------------------
def test_create_is_201_with_location_then_204_and_instances_are_ordered_by_time(client: TestClient) -> None:
    response = client.post(TEMPORAL, json=sensor(speed=[obs(30, 3), obs(10, 1)]))
    assert response.status_code == 201 and response.content == b""
    assert response.headers["location"] == f"{TEMPORAL}/{S1}"
    post_temporal(client, sensor(speed=[obs(20, 2)]), status=204)
    body = get_temporal(client)
    assert (body["id"], body["type"]) == (S1, "Sensor")
    assert values(body["speed"]) == [10, 20, 30]
    assert [i["observedAt"] for i in body["speed"]] == [t(1), t(2), t(3)]
    assert all(i["type"] == "Property" and i["instanceId"].startswith("urn:ngsi-ld:Instance:") for i in body["speed"])
    assert len({i["instanceId"] for i in body["speed"]}) == 3


def test_creating_a_temporal_entity_does_not_create_the_current_entity(client: TestClient) -> None:
    post_temporal(client, sensor(speed=[obs(1, 1)]))
    assert client.get(entity_url(S1)).status_code == 404


def test_a_single_object_is_one_instance_and_many_may_share_a_dataset(client: TestClient) -> None:
    post_temporal(client, sensor(speed=obs(5, 1), gps=[obs(1, 1, datasetId=GPS), obs(2, 2, datasetId=GPS)]))
    body = get_temporal(client)
    assert values(body["speed"]) == [5]
    assert [(i["value"], i["datasetId"]) for i in body["gps"]] == [(1, GPS), (2, GPS)]


def test_create_rejects_bad_bodies(client: TestClient) -> None:
    assert_problem(client.post(TEMPORAL, json={"id": S1, "speed": [obs(1, 1)]}), 400, "BadRequestData")
    assert_problem(client.post(TEMPORAL, json=sensor(entity_id="not a uri")), 400, "BadRequestData")
    assert_problem(client.post(TEMPORAL, json=sensor(speed=[])), 400, "BadRequestData")
    bad_time = client.post(TEMPORAL, json=sensor(speed=[{"value": 1, "observedAt": "yesterday"}]))
    assert "observedAt" in assert_problem(bad_time, 400, "BadRequestData")["detail"]


def test_append_adds_instances_and_404s_for_an_unknown_entity(client: TestClient) -> None:
    post_temporal(client, sensor(speed=[obs(1, 1)]))
    response = client.post(temporal_url(S1, "attrs"), json={"speed": [obs(2, 2)], "mode": [obs("eco", 2)]})
    assert response.status_code == 204, response.text
    body = get_temporal(client)
    assert values(body["speed"]) == [1, 2] and values(body["mode"]) == ["eco"]
    missing = client.post(temporal_url(S2, "attrs"), json={"speed": [obs(2, 2)]})
    assert S2 in assert_problem(missing, 404, "ResourceNotFound")["detail"]
    other_id = client.post(temporal_url(S1, "attrs"), json={"id": S2, "speed": [obs(2, 2)]})
    assert_problem(other_id, 400, "BadRequestData")


def test_names_are_expanded_with_the_request_context_and_compacted_on_output(client: TestClient) -> None:
    body = {"@context": [{"speed": "https://example.org/vocab/speed"}, CORE], **sensor(speed=[obs(1, 1)])}
    response = client.post(TEMPORAL, json=body, headers={"Content-Type": "application/ld+json"})
    assert response.status_code == 201, response.text
    plain = get_temporal(client)
    assert "https://example.org/vocab/speed" in plain and "speed" not in plain
    assert plain["type"] == "Sensor"  # the type was given without the user term: default vocabulary
    post_temporal(client, sensor(S2, speed=[obs(1, 1)]))
    response = client.post(TQUERY, json={"type": "Query", "attrs": [DEFAULT_VOCAB + "speed"]})
    assert [e["id"] for e in response.json()] == [S2] and "speed" in response.json()[0]


# -- history from ordinary entity writes ----------------------------------------------------------------
def test_entity_create_and_updates_are_in_the_history(client: TestClient) -> None:
    assert client.post(ENTITIES, json=sensor(speed={"type": "Property", "value": 1},
                                             mode={"type": "Property", "value": "eco"})).status_code == 201
    assert client.patch(entity_url(S1, "attrs"), json={"speed": {"type": "Property", "value": 2}}).status_code == 204
    assert client.patch(entity_url(S1, "attrs", "speed"), json={"value": 3}).status_code == 204
    body = get_temporal(client, options="sysAttrs")
    assert values(body["speed"]) == [1, 2, 3] and values(body["mode"]) == ["eco"]
    created = [i["createdAt"] for i in body["speed"]]
    modified = [i["modifiedAt"] for i in body["speed"]]
    assert created[0] == created[1] == created[2] and modified == sorted(modified)
    recorded = get_temporal(client, timeproperty="modifiedAt", timerel="after", timeAt=modified[1])
    assert values(recorded["speed"]) == [2, 3]


def test_history_survives_deleting_the_entity(client: TestClient) -> None:
    assert client.post(ENTITIES, json=sensor(speed=obs(1, 1))).status_code == 201
    assert client.delete(entity_url(S1)).status_code == 204
    assert values(get_temporal(client)["speed"]) == [1]


# -- time windows, lastN, projections ------------------------------------------------------------------
@pytest.fixture
def hourly(client: TestClient) -> TestClient:
    """S1 with speed 0..5 at hours 0..5 and mode at hours 1 and 4; S2 with speed at hour 5 only."""
    post_temporal(client, sensor(speed=[obs(h, h) for h in range(6)], mode=[obs("a", 1), obs("b", 4)]))
    post_temporal(client, sensor(S2, speed=[obs(50, 5)]))
    return client


@pytest.mark.parametrize(("params", "expected"), [
    ({"timerel": "before", "timeAt": t(2)}, [0, 1]),
    ({"timerel": "after", "timeAt": t(4)}, [4, 5]),
    ({"timerel": "between", "timeAt": t(1), "endTimeAt": t(3)}, [1, 2]),
    ({"timerel": "after", "timeAt": "2024-01-01T03:30:00+01:00"}, [3, 4, 5]),  # 02:30Z
    ({}, [0, 1, 2, 3, 4, 5]),
])
def test_timerel_selects_the_window(hourly: TestClient, params: dict[str, str], expected: list[int]) -> None:
    response = hourly.get(temporal_url(S1), params=params)
    assert response.status_code == 200 and values(response.json()["speed"]) == expected


def test_last_n_returns_the_newest_in_ascending_order(hourly: TestClient) -> None:
    body = get_temporal(hourly, lastN="2")
    assert values(body["speed"]) == [4, 5] and values(body["mode"]) == ["a", "b"]
    assert values(get_temporal(hourly, lastN="2", timerel="before", timeAt=t(3))["speed"]) == [1, 2]


def test_attrs_selects_attributes_and_sys_attrs_adds_timestamps(hourly: TestClient) -> None:
    body = get_temporal(hourly, attrs="mode")
    assert set(body) == {"id", "type", "mode"}
    assert all("createdAt" not in i for i in body["mode"])
    assert all({"createdAt", "modifiedAt"} <= set(i) for i in get_temporal(hourly, options="sysAttrs")["mode"])


def test_an_entity_without_instances_in_the_window_is_still_retrieved(hourly: TestClient) -> None:
    assert get_temporal(hourly, S2, timerel="before", timeAt=t(1)) == {"id": S2, "type": "Sensor"}
    assert get_temporal(hourly, S2, attrs="mode") == {"id": S2, "type": "Sensor"}


def test_retrieve_unknown_entity_or_tenant_is_404(client: TestClient) -> None:
    assert_problem(client.get(temporal_url(S1)), 404, "ResourceNotFound")
    post_temporal(client, sensor(speed=[obs(1, 1)]))
    assert_problem(client.get(temporal_url(S1), headers={"NGSILD-Tenant": "nobody"}), 404, "NonexistentTenant")


@pytest.mark.parametrize(("params", "word"), [
    ({"timerel": "after"}, "timeAt"),
    ({"timerel": "between", "timeAt": t(1)}, "endTimeAt"),
    ({"timerel": "between", "timeAt": t(3), "endTimeAt": t(1)}, "later"),
    ({"timerel": "after", "timeAt": "soon"}, "timeAt"),
    ({"timerel": "during", "timeAt": t(1)}, "timerel"),
    ({"timeAt": t(1)}, "timerel"),
    ({"timerel": "after", "timeAt": t(1), "endTimeAt": t(2)}, "between"),
    ({"timeproperty": "deletedAt"}, "timeproperty"),
    ({"lastN": "0"}, "lastN"),
    ({"lastN": "many"}, "lastN"),
    ({"options": "aggregatedValues"}, "aggrMethods"),
    ({"options": "aggregatedValues", "aggrMethods": "median"}, "median"),
    ({"options": "aggregatedValues", "aggrMethods": "avg", "aggrPeriodDuration": "1H"}, "aggrPeriodDuration"),
    ({"options": "aggregatedValues", "aggrMethods": "avg", "aggrPeriodDuration": "P1M"}, "months"),
    ({"aggrMethods": "avg"}, "aggregatedValues"),
    ({"format": "pretty"}, "format"),
    ({"options": "temporalValues,aggregatedValues", "aggrMethods": "avg"}, "combined"),
])
def test_bad_temporal_parameters_are_400_with_a_clear_detail(hourly: TestClient, params: dict[str, str],
                                                               word: str) -> None:
    detail = assert_problem(hourly.get(temporal_url(S1), params=params), 400, "BadRequestData")["detail"]
    assert word in detail
    assert_problem(hourly.get(TEMPORAL, params={**params, "type": "Sensor"}), 400, "BadRequestData")


# -- representations --------------------------------------------------------------------------------
def test_temporal_values_are_value_time_pairs(hourly: TestClient) -> None:
    body = get_temporal(hourly, options="temporalValues", timerel="before", timeAt=t(3))
    assert body == {"id": S1, "type": "Sensor",
                    "speed": {"type": "Property", "values": [[0, t(0)], [1, t(1)], [2, t(2)]]},
                    "mode": {"type": "Property", "values": [["a", t(1)]]}}


def test_temporal_values_group_datasets_and_relationships_use_objects(client: TestClient) -> None:
    post_temporal(client, sensor(speed=[obs(1, 1), obs(2, 2, datasetId=GPS)],
                                 near=[{"type": "Relationship", "object": "urn:ngsi-ld:X:1", "observedAt": t(1)}]))
    body = get_temporal(client, format="temporalValues")
    assert body["speed"] == [{"type": "Property", "values": [[1, t(1)]]},
                             {"type": "Property", "values": [[2, t(2)]], "datasetId": GPS}]
    assert body["near"] == {"type": "Relationship", "objects": [["urn:ngsi-ld:X:1", t(1)]]}


def test_aggregated_values_per_period(client: TestClient) -> None:
    post_temporal(client, sensor(speed=[obs(v, h, m) for h, m, v in
                                        [(0, 0, 1), (0, 30, 3), (1, 0, 10), (1, 20, 20), (1, 40, 30)]]))
    body = get_temporal(client, options="aggregatedValues", aggrMethods="avg,min,max,sum,totalCount,distinctCount",
                        aggrPeriodDuration="PT1H", timerel="after", timeAt=t(0))
    hours = [t(0), t(1), t(2)]
    assert body["speed"] == {
        "type": "Property",
        "avg": [[2.0, hours[0], hours[1]], [20.0, hours[1], hours[2]]],
        "min": [[1.0, hours[0], hours[1]], [10.0, hours[1], hours[2]]],
        "max": [[3.0, hours[0], hours[1]], [30.0, hours[1], hours[2]]],
        "sum": [[4.0, hours[0], hours[1]], [60.0, hours[1], hours[2]]],
        "totalCount": [[2, hours[0], hours[1]], [3, hours[1], hours[2]]],
        "distinctCount": [[2, hours[0], hours[1]], [3, hours[1], hours[2]]],
    }


def test_aggregation_defaults_to_the_whole_requested_interval(client: TestClient) -> None:
    post_temporal(client, sensor(speed=[obs(v, h) for h, v in [(1, 2), (2, 4), (3, 9)]]))
    body = get_temporal(client, format="aggregatedValues", aggrMethods="stddev,sumsq",
                        timerel="between", timeAt=t(0), endTimeAt=t(3))
    assert body["speed"]["sumsq"] == [[20.0, t(0), t(3)]]
    assert body["speed"]["stddev"][0][0] == pytest.approx(2 ** 0.5)


def test_a_zero_aggregation_period_is_the_whole_interval_and_a_negative_one_is_refused(client: TestClient) -> None:
    # CIM 009: a duration of 0 ("PT0S" or "P0D") is valid and spans the whole time range of the query (the
    # default). QA2 finding 11 asked for a 400; its entity had no history left to aggregate (every period gave {}).
    post_temporal(client, sensor(speed=[obs(v, h) for h, v in [(1, 2), (2, 4), (3, 9)]]))
    whole = get_temporal(client, options="aggregatedValues", aggrMethods="avg,totalCount")
    assert whole["speed"]["avg"] == [[5.0, t(1), t(3)]] and whole["speed"]["totalCount"] == [[3, t(1), t(3)]]
    for zero in ("PT0S", "P0D", "P0W", "PT0.0S", "P0DT0H"):
        assert get_temporal(client, options="aggregatedValues", aggrMethods="avg,totalCount",
                            aggrPeriodDuration=zero) == whole, zero
    for negative in ("-P1D", "P-1D", "PT-1S", "-PT0S"):
        response = client.get(temporal_url(S1), params={"options": "aggregatedValues", "aggrMethods": "avg",
                                                        "aggrPeriodDuration": negative})
        assert "aggrPeriodDuration" in assert_problem(response, 400, "BadRequestData")["detail"], negative


# -- paging instances by time (206) ---------------------------------------------------------------------
def test_more_instances_than_a_page_is_206_with_a_content_range(paged: TestClient) -> None:
    post_temporal(paged, sensor(speed=[obs(h, h) for h in range(7)], mode=[obs("x", 0), obs("y", 6)]))
    response = paged.get(temporal_url(S1))
    assert response.status_code == 206
    assert response.headers["content-range"] == f"date-time {t(0)}-{t(2)}/*"
    assert values(response.json()["speed"]) == [0, 1, 2]
    assert values(response.json()["mode"]) == ["x"]  # cut at the same time as speed


def test_following_content_range_pages_through_everything(paged: TestClient) -> None:
    post_temporal(paged, sensor(speed=[obs(k, k // 4, (k % 4) * 15) for k in range(11)]))
    seen: list[int] = []
    params = {"timerel": "after", "timeAt": "2024-01-01T00:00:00Z"}
    for _ in range(10):
        response = paged.get(temporal_url(S1), params=params)
        page = values(response.json()["speed"])
        seen += [v for v in page if v not in seen]  # the boundary instance may repeat
        if response.status_code == 200:
            break
        assert response.status_code == 206
        params["timeAt"] = response.headers["content-range"].split("/")[0].split("Z-")[1]
    assert seen == list(range(11))


def test_last_n_beyond_the_page_returns_the_newest_page_and_names_last_n(paged: TestClient) -> None:
    post_temporal(paged, sensor(speed=[obs(h, h) for h in range(8)]))
    response = paged.get(temporal_url(S1), params={"lastN": "5", "timerel": "before", "timeAt": t(9)})
    assert response.status_code == 206
    assert values(response.json()["speed"]) == [5, 6, 7]
    assert response.headers["content-range"] == f"date-time {t(9)}-{t(5)}/5"
    within = paged.get(temporal_url(S1), params={"lastN": "2"})
    assert within.status_code == 200 and values(within.json()["speed"]) == [6, 7]


def test_aggregated_periods_are_paged_too(paged: TestClient) -> None:
    post_temporal(paged, sensor(speed=[obs(h, h) for h in range(5)]))
    response = paged.get(temporal_url(S1), params={"options": "aggregatedValues", "aggrMethods": "sum",
                                                   "aggrPeriodDuration": "PT1H"})
    assert response.status_code == 206
    assert [p[0] for p in response.json()["speed"]["sum"]] == [0.0, 1.0, 2.0]
    assert response.headers["content-range"] == f"date-time {t(0)}-{t(2)}/*"


# -- querying ----------------------------------------------------------------------------------------
def test_query_by_type_counts_and_pages_entities(hourly: TestClient) -> None:
    response = hourly.get(TEMPORAL, params={"type": "Sensor", "count": "true", "limit": "1"})
    assert response.status_code == 200
    assert response.headers["ngsild-results-count"] == "2"
    assert [e["id"] for e in response.json()] == [S1]
    assert 'rel="next"' in response.headers["link"] and "offset=1" in response.headers["link"]
    second = hourly.get(TEMPORAL, params={"type": "Sensor", "limit": "1", "offset": "1"}).json()
    assert [e["id"] for e in second] == [S2] and values(second[0]["speed"]) == [50]


def test_query_without_a_time_filter_returns_all_and_filters_by_id_pattern_and_attrs(hourly: TestClient) -> None:
    assert [e["id"] for e in hourly.get(TEMPORAL, params={"type": "Sensor"}).json()] == [S1, S2]
    assert [e["id"] for e in hourly.get(TEMPORAL, params={"type": "Sensor", "idPattern": ".*s2$"}).json()] == [S2]
    only_mode = hourly.get(TEMPORAL, params={"attrs": "mode"}).json()
    assert [(e["id"], sorted(e)) for e in only_mode] == [(S1, ["id", "mode", "type"])]


def test_query_leaves_out_entities_without_instances_in_the_window(hourly: TestClient) -> None:
    response = hourly.get(TEMPORAL, params={"type": "Sensor", "timerel": "before", "timeAt": t(3), "count": "true"})
    assert [e["id"] for e in response.json()] == [S1] and response.headers["ngsild-results-count"] == "1"


def test_q_filters_on_the_current_state(client: TestClient) -> None:
    for entity_id, speed in ((S1, 10), (S2, 90)):
        assert client.post(ENTITIES, json=sensor(entity_id, speed={"type": "Property", "value": speed})).status_code == 201
    post_temporal(client, sensor("urn:ngsi-ld:Sensor:history-only", speed=[obs(99, 1)]))
    response = client.get(TEMPORAL, params={"type": "Sensor", "q": "speed>50"})
    assert [e["id"] for e in response.json()] == [S2]


def test_post_query_with_temporal_q(hourly: TestClient) -> None:
    body = {"type": "Query", "entities": [{"type": "Sensor"}], "attrs": ["speed"],
            "temporalQ": {"timerel": "after", "timeAt": t(4), "timeproperty": "observedAt"}}
    response = hourly.post(TQUERY, json=body, params={"options": "temporalValues"})
    assert response.status_code == 200, response.text
    assert response.json() == [
        {"id": S1, "type": "Sensor", "speed": {"type": "Property", "values": [[4, t(4)], [5, t(5)]]}},
        {"id": S2, "type": "Sensor", "speed": {"type": "Property", "values": [[50, t(5)]]}}]
    by_ids = {"type": "Query", "entities": [{"id": S1, "type": "Sensor"}, {"id": S2, "type": "Sensor"}],
              "temporalQ": {"lastN": 1, "aggrMethods": ["max"]}}
    aggregated = hourly.post(TQUERY, json=by_ids, params={"options": "aggregatedValues"}).json()
    assert [e["speed"]["max"][0][0] for e in aggregated] == [5.0, 50.0]
    assert_problem(hourly.post(TQUERY, json={"type": "Subscription"}), 400, "BadRequestData")
    bad = hourly.post(TQUERY, json={"type": "Query", "temporalQ": {"timerel": "after"}})
    assert "timeAt" in assert_problem(bad, 400, "BadRequestData")["detail"]


# -- changing and deleting history ----------------------------------------------------------------------------
def instance_ids(client: TestClient, attr: str = "speed") -> list[str]:
    return [i["instanceId"] for i in get_temporal(client)[attr]]


def test_patch_one_instance_changes_its_value_and_time(hourly: TestClient) -> None:
    first = instance_ids(hourly)[0]
    response = hourly.patch(temporal_url(S1, "attrs", "speed", first), json={"value": 100, "observedAt": t(9)})
    assert response.status_code == 204, response.text
    body = get_temporal(hourly)
    assert values(body["speed"]) == [1, 2, 3, 4, 5, 100]
    assert body["speed"][-1]["instanceId"] == first and body["speed"][-1]["observedAt"] == t(9)
    wrapped = {"speed": [{"type": "Property", "value": 7}]}  # the attribute fragment form
    assert hourly.patch(temporal_url(S1, "attrs", "speed", first), json=wrapped).status_code == 204
    assert values(get_temporal(hourly)["speed"])[-1] == 7
    concise = {"speed": 8, "@context": CORE}  # a concise fragment: the value alone
    assert hourly.patch(temporal_url(S1, "attrs", "speed", first), json=concise,
                        headers={"Content-Type": "application/ld+json"}).status_code == 204
    assert values(get_temporal(hourly)["speed"])[-1] == 8
    expanded = {DEFAULT_VOCAB + "speed": {"type": "Property", "value": 9}}  # the attribute named by its IRI
    assert hourly.patch(temporal_url(S1, "attrs", "speed", first), json=expanded).status_code == 204
    assert values(get_temporal(hourly)["speed"])[-1] == 9


@pytest.mark.parametrize("body", [
    {"temperature": {"type": "Property", "value": 99}},  # another attribute's fragment (QA2 finding 10)
    {"mode": [{"type": "Property", "value": "z"}]},
    {"speed": {"type": "Property", "value": 99}, "mode": {"type": "Property", "value": "z"}},
    {"temperature": 99},
    {},
])
def test_patch_one_instance_with_a_fragment_of_another_attribute_is_400(hourly: TestClient, body: Any) -> None:
    before = get_temporal(hourly)["speed"]
    response = hourly.patch(temporal_url(S1, "attrs", "speed", before[0]["instanceId"]), json=body)
    assert "speed" in assert_problem(response, 400, "BadRequestData")["detail"]
    assert get_temporal(hourly)["speed"] == before  # the instance stays as it was


def test_patch_or_delete_unknown_instance_is_404(hourly: TestClient) -> None:
    unknown = "urn:ngsi-ld:Instance:nope"
    assert_problem(hourly.patch(temporal_url(S1, "attrs", "speed", unknown), json={"value": 1}), 404, "ResourceNotFound")
    assert_problem(hourly.delete(temporal_url(S1, "attrs", "speed", unknown)), 404, "ResourceNotFound")
    mode_instance = instance_ids(hourly, "mode")[0]  # an instance of another attribute
    assert_problem(hourly.delete(temporal_url(S1, "attrs", "speed", mode_instance)), 404, "ResourceNotFound")
    gone = hourly.patch(temporal_url("urn:ngsi-ld:Sensor:gone", "attrs", "speed", unknown), json={"value": 1})
    assert "urn:ngsi-ld:Sensor:gone" in assert_problem(gone, 404, "ResourceNotFound")["detail"]


def test_delete_one_instance(hourly: TestClient) -> None:
    second = instance_ids(hourly)[1]
    assert hourly.delete(temporal_url(S1, "attrs", "speed", second)).status_code == 204
    assert values(get_temporal(hourly)["speed"]) == [0, 2, 3, 4, 5]


def test_delete_attribute_default_dataset_or_all(client: TestClient) -> None:
    post_temporal(client, sensor(speed=[obs(1, 1), obs(2, 2, datasetId=GPS)], mode=[obs("a", 1)]))
    assert client.delete(temporal_url(S1, "attrs", "speed")).status_code == 204
    assert [i.get("datasetId") for i in get_temporal(client)["speed"]] == [GPS]
    assert client.delete(temporal_url(S1, "attrs", "speed"), params={"datasetId": GPS}).status_code == 204
    assert "speed" not in get_temporal(client)
    assert_problem(client.delete(temporal_url(S1, "attrs", "speed")), 404, "ResourceNotFound")
    post_temporal(client, sensor(speed=[obs(1, 1), obs(2, 2, datasetId=GPS)]), status=204)
    assert client.delete(temporal_url(S1, "attrs", "speed"), params={"deleteAll": "true"}).status_code == 204
    assert set(get_temporal(client)) == {"id", "type", "mode"}
    assert_problem(client.delete(temporal_url(S1, "attrs", "speed"), params={"deleteAll": "maybe"}), 400,
                   "BadRequestData")


def test_delete_temporal_entity_keeps_the_current_entity(client: TestClient) -> None:
    assert client.post(ENTITIES, json=sensor(speed=obs(1, 1))).status_code == 201
    assert client.delete(temporal_url(S1)).status_code == 204
    assert_problem(client.get(temporal_url(S1)), 404, "ResourceNotFound")
    assert_problem(client.delete(temporal_url(S1)), 404, "ResourceNotFound")
    assert client.get(entity_url(S1)).status_code == 200


def test_tenants_keep_separate_histories(client: TestClient) -> None:
    tenant = {"NGSILD-Tenant": "city2"}
    assert client.post(TEMPORAL, json=sensor(speed=[obs(1, 1)]), headers=tenant).status_code == 201
    assert_problem(client.get(temporal_url(S1)), 404, "ResourceNotFound")
    response = client.get(temporal_url(S1), headers=tenant)
    assert response.status_code == 200 and response.headers["ngsild-tenant"] == "city2"


def test_json_ld_answers_carry_the_context_in_the_body(hourly: TestClient) -> None:
    response = hourly.get(temporal_url(S2), headers={"Accept": "application/ld+json"})
    assert response.headers["content-type"].startswith("application/ld+json")
    assert response.json()["@context"] == CORE


# -- parsing and paging helpers (pure) ----------------------------------------------------------------
@pytest.mark.parametrize(("text", "micros"), [
    ("PT1H", 3_600_000_000), ("P1D", 86_400_000_000), ("P1W", 604_800_000_000), ("PT90M", 5_400_000_000),
    ("P1DT2H30M15.5S", 95_415_500_000), ("PT0S", 0), ("PT0,25S", 250_000),
])
def test_parse_duration(text: str, micros: int) -> None:
    assert parse_duration(text) == micros


@pytest.mark.parametrize("text", ["", "P", "PT", "1H", "PT1H30", "P1DT", "PT-1H", "P1Y", "P2M"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(BadRequest):
        parse_duration(text)


def test_parse_window_bounds() -> None:
    assert parse_window("before", "1970-01-01T00:00:01Z", None, None) == TimeWindow(None, 1_000_000, "observedAt")
    assert parse_window("after", "1970-01-01T00:00:01Z", None, "createdAt") == TimeWindow(1_000_000, None, "createdAt")
    assert parse_window("between", "1970-01-01T00:00:01Z", "1970-01-01T00:00:02Z", None).time_to == 2_000_000
    assert parse_window(None, None, None, None) == TimeWindow()


def test_page_range_cuts_every_series_at_the_earliest_truncated_end() -> None:
    long = HistorySeries([1, 2, 3], [{"value": v} for v in (1, 2, 3)], truncated=True)
    short = HistorySeries([2, 5], [{"value": 2}, {"value": 5}])
    shorter = HistorySeries([1, 4], [{"value": 1}, {"value": 4}], truncated=True)
    assert page_range([long, short, shorter], TimeWindow(time_from=0), newest_first=False) == (0, 3)
    assert (long.times, short.times, shorter.times) == ([1, 2, 3], [2], [1])
    newest = HistorySeries([7, 8, 9], [{}, {}, {}], truncated=True)
    other = HistorySeries([3, 8], [{}, {}])
    assert page_range([newest, other], TimeWindow(), newest_first=True) == (9, 7)
    assert other.times == [8]
    assert page_range([other], TimeWindow(), newest_first=False) is None
