"""The pure parts of scale-out: which partition an entity is in, who owns a partition, and the wire form
of what travels on JetStream. (The whole, with real servers and killed processes: tests/integration/test_fault.py.)"""

from __future__ import annotations

from collections import Counter

import pytest

from ucity.cluster.messages import (
    MessageError,
    decode_changes,
    decode_event,
    decode_writes,
    encode_alarms,
    encode_changes,
    encode_notifications,
    encode_writes,
)
from ucity.cluster.partitions import assigned, owners, partition_of
from ucity.core.bus import Context, EntityChange
from ucity.ingest.decode import Observation
from ucity.ingest.model import Command, DeviceProfile, StaticAttr
from ucity.ingest.writer import DeviceWrite, entity_template


def test_an_entity_has_one_partition_whoever_asks() -> None:
    assert partition_of("t", "urn:ngsi-ld:X:1", 16) == partition_of("t", "urn:ngsi-ld:X:1", 16)
    spread = Counter(partition_of("t", f"urn:ngsi-ld:X:{n}", 16) for n in range(16_000))
    assert set(spread) == set(range(16))
    assert min(spread.values()) > 800  # about 1,000 each: no hot partition


def test_every_partition_has_exactly_one_owner_and_shares_are_even() -> None:
    for workers in (["w1"], ["w1", "w2"], ["w1", "w2", "w3"], [f"host-{n}" for n in range(5)]):
        shares = sorted(len(assigned(w, workers, 16)) for w in workers)
        assert sum(shares) == 16 and shares[-1] - shares[0] <= 1, (workers, shares)
        assert sorted(p for w in workers for p in assigned(w, workers, 16)) == list(range(16))
    assert owners([], 16) == {}


def test_a_worker_joining_moves_few_partitions() -> None:
    before = owners(["w1", "w2", "w3"], 48)
    joined = owners(["w1", "w2", "w3", "w4"], 48)
    assert sum(owner == "w4" for owner in joined.values()) == 12
    assert sum(before[p] != joined[p] for p in range(48)) <= 24  # w4's 12, and a few knock-on moves


def test_device_writes_travel_with_what_a_worker_needs_to_create_the_entity() -> None:
    profile = DeviceProfile(tenant="guro", service_path="/", apikey="k", device_id="d1",
                            entity_id="urn:ngsi-ld:Thermometer:d1", entity_type="Thermometer",
                            static_attributes=(StaticAttr("location", "geo:point", "37.5, 126.9"),
                                               StaticAttr("model", "Text", ["TH-1", "rev2"],
                                                          {"unitCode": {"type": "Text", "value": "CEL"}})),
                            commands=(Command("reset"),), timezone="Asia/Seoul", expected_interval_s=60.0)
    write = DeviceWrite(profile, (Observation("2026-01-01T00:00:00.000000Z",
                                              {"temperature": {"type": "Property", "value": 2 ** 70}}),))
    context = Context(actor="ingest")
    [back], got_context = decode_writes(encode_writes([write], context))
    assert got_context == context
    assert back.observations == write.observations
    assert entity_template(back.profile) == entity_template(profile)
    assert back.profile.static_attributes == profile.static_attributes  # static metadata included
    assert (back.profile.tenant, back.profile.entity_id, back.profile.expected_interval_s) == ("guro", profile.entity_id, 60.0)


def test_entity_changes_round_trip_and_garbage_is_refused() -> None:
    change = EntityChange("t", "urn:x:1", "update", {"id": "urn:x:1", "attrs": {}}, {"id": "urn:x:1", "attrs": {"a": []}},
                          frozenset({"a", "b"}), (("a", {"type": "Property", "value": 1}),))
    event = decode_changes(encode_changes(Context(actor="ngsi-ld"), [change]))
    assert event.changes == (change,) and event.context.actor == "ngsi-ld"
    for garbage in (b"", b"[]", b'{"v": 99, "ctx": [], "writes": []}', b'{"v": 1}'):
        with pytest.raises(MessageError):
            decode_writes(garbage)
        with pytest.raises(MessageError):
            decode_changes(garbage)


def test_alarm_messages_share_the_event_stream_and_garbage_is_refused() -> None:
    context = Context(actor="operator-kim")
    decoded = decode_event(encode_alarms(context, [("t", "alarm-1"), ("t", "alarm-2")]))
    assert isinstance(decoded, tuple) and decoded[0] == "alarms" and decoded[2] == [("t", "alarm-1"), ("t", "alarm-2")]
    assert decoded[1].actor == "operator-kim" and decoded[1].id == context.id
    handed = decode_event(encode_notifications(context, [("t", "urn:ucity:notification:1")]))
    assert handed == ("notifications", handed[1], [("t", "urn:ucity:notification:1")])  # type: ignore[index]
    change = EntityChange("t", "urn:x:1", "create", None, {"id": "urn:x:1", "attrs": {}}, frozenset(), ())
    assert decode_event(encode_changes(context, [change])).changes == (change,)  # type: ignore[union-attr]
    for garbage in (b"", b"[]", b'{"v": 99, "ctx": [null, null, null], "alarms": []}', b'{"v": 1, "alarms": []}',
                    b'{"v": 1, "ctx": [null, null, null], "alarms": [["t"]]}'):
        with pytest.raises(MessageError):
            decode_event(garbage)
