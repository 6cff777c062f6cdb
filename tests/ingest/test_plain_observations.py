"""decode marks a measure whose every value is a plain number (`Observation.plain`), and the writer then
skips checking each instance for an NGSI-LD Null or other members. Equivalence is the property: merging
a plain observation gives the very document, touched attributes and history rows that the general
checks give, over entities in every state a measure meets (new, older, newer, other types, datasets)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from ucity.ingest.decode import Observation, decode_payload
from ucity.ingest.model import AttrSpec, Device, ServiceGroup, build_profile
from ucity.ingest.writer import expand, measure_op
from ucity.ngsild.model import NULL

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
T1 = "2026-03-01T11:00:00.000000Z"
LATER = "2026-03-01T12:30:00.000000Z"


def _profile(unit: str | None = "CEL"):  # type: ignore[no-untyped-def]
    group = ServiceGroup("t", "/", "k1")
    device = Device("t", "/", "d1", "k1", "urn:ngsi-ld:Sensor:d1", "Sensor", attributes=(
        AttrSpec("t", "temperature", "Number", unit), AttrSpec("h", "humidity", "Number"),
        AttrSpec("s", "status", "Text")))
    return build_profile(device, group)


@pytest.mark.parametrize(("payload", "plain"), [
    ({"t": 21, "h": 40.5}, True),
    ({"t": 21, "h": 40.5, "TimeInstant": T1}, True),
    ({"t": 21, "s": "ok"}, False),  # a text value
    ({"t": "21"}, False),  # a number sent as text: converted by the general path
    ({"t": float("inf"), "h": 3}, True),  # the infinite value is rejected, the rest is plain
    ({"t": 21, "s": 5}, False),  # a number for a Text attribute: converted by the general path
])
def test_decode_marks_measures_of_plain_numbers(payload: dict[str, Any], plain: bool) -> None:
    decoded = decode_payload(payload, _profile(), NOW)
    assert decoded.observations[0].plain is plain


def test_a_null_unit_code_is_not_plain() -> None:
    decoded = decode_payload({"t": 21}, _profile(unit=NULL), NOW)
    assert decoded.observations[0].plain is False


def _entities() -> list[dict[str, Any] | None]:
    temperature, humidity = expand("temperature"), expand("humidity")

    def entity(attrs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
        return {"id": "urn:ngsi-ld:Sensor:d1", "type": [expand("Sensor")], "createdAt": T1, "modifiedAt": T1,
                "attrs": attrs}

    old = {"type": "Property", "value": 1, "unitCode": "CEL", "observedAt": T1, "createdAt": T1, "modifiedAt": T1}
    return [
        None,  # created by the measure
        entity({}),
        entity({temperature: [old]}),
        entity({temperature: [{**old, "observedAt": LATER}]}),  # newer: the measure goes to history only
        entity({temperature: [{**old, "type": "Relationship", "object": "urn:x:1"}]}),  # another type
        entity({temperature: [{**old, "datasetId": "urn:ngsi-ld:Dataset:a"}]}),  # only a dataset instance
        entity({temperature: [{**old, "datasetId": "urn:ngsi-ld:Dataset:a"}, old], humidity: []}),
        entity({temperature: [{**old, "https://example.org/sub": {"type": "Property", "value": 2}}]}),
        entity({temperature: [{k: v for k, v in old.items() if k != "observedAt"}]}),
    ]


@pytest.mark.parametrize("before", _entities())
@pytest.mark.parametrize("payloads", [
    [{"t": 21, "h": 40.5}],
    [{"t": 22, "TimeInstant": T1}],
    [{"t": 23, "h": 1, "TimeInstant": LATER}, {"t": 24, "TimeInstant": T1}],  # a buffer, out of order
])
def test_plain_observations_merge_as_the_general_checks_do(before: dict[str, Any] | None,
                                                           payloads: list[dict[str, Any]]) -> None:
    profile = _profile()
    decoded = decode_payload(payloads if len(payloads) > 1 else payloads[0], profile, NOW)
    assert all(o.plain for o in decoded.observations)
    general = tuple(Observation(o.observed_at, copy.deepcopy(o.attrs)) for o in decoded.observations)
    kept = copy.deepcopy(before)
    now = "2026-03-01T12:00:01.000000Z"
    fast = measure_op(profile, decoded.observations)(before, now)
    slow = measure_op(profile, general)(copy.deepcopy(before), now)
    assert before == kept  # the stored document is never changed
    assert fast.doc == slow.doc
    assert fast.attrs == slow.attrs
    assert fast.instances == slow.instances
    assert (fast.operation, fast.changed, fast.result) == (slow.operation, slow.changed, slow.result)


@pytest.mark.parametrize("old", [
    {"type": "Property", "value": 1, "unitCode": "CEL", "observedAt": T1, "createdAt": T1, "modifiedAt": T1},
    {"type": "Relationship", "object": "urn:x:1", "observedAt": T1, "createdAt": T1, "modifiedAt": T1},
    {"type": "Property", "value": 1, "https://example.org/sub": {"type": "Property", "value": 2}, "createdAt": T1},
])
def test_a_merged_instance_is_the_one_merged_gives(old: dict[str, Any]) -> None:
    """The plain merge of an observation over the current instance makes what `_merged` (the general path's
    merge of a decoded instance) makes."""
    from ucity.ingest.writer import _merged

    profile = _profile()
    temperature = expand("temperature")
    attrs = {temperature: [old]}
    before = {"id": "urn:ngsi-ld:Sensor:d1", "type": [expand("Sensor")], "attrs": attrs}
    decoded = decode_payload({"t": 21}, profile, NOW)
    now = "2026-03-01T12:00:01.000000Z"
    outcome = measure_op(profile, decoded.observations)(before, now)
    assert outcome.doc is not None
    assert outcome.doc["attrs"][temperature] == [_merged(old, decoded.observations[0].attrs["temperature"], now)]
    assert attrs[temperature] == [old]
