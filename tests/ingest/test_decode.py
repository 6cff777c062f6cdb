"""decode.py is pure: a payload and a device profile in, NGSI-LD instances and rejections out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ucity.core.clock import to_iso
from ucity.ingest.decode import (
    DecodeError,
    command_instances,
    decode_payload,
    measures_in,
    parse_json,
    parse_single_value,
    parse_time,
    typed_instance,
)
from ucity.ingest.model import AttrSpec, Command, Device, ServiceGroup, build_profile

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
NOW_ISO = "2026-03-01T12:00:00.000000Z"


def profile(explicit: bool = False, timezone: str | None = None):  # type: ignore[no-untyped-def]
    group = ServiceGroup("t", "/", "k1", attributes=(AttrSpec("h", "relativeHumidity", "Number"),))
    device = Device(
        "t", "/", "d1", "k1", "urn:ngsi-ld:WeatherObserved:d1", "WeatherObserved",
        attributes=(
            AttrSpec("t", "temperature", "Number", "CEL"), AttrSpec("n", "count", "Integer"),
            AttrSpec("on", "enabled", "Boolean"), AttrSpec("s", "status", "Text"),
            AttrSpec("d", "lastSeen", "DateTime"), AttrSpec("p", "location", "geo:point"),
            AttrSpec("g", "area", "geo:json"), AttrSpec("r", "refDevice", "Relationship"),
            AttrSpec("ts", "TimeInstant", "DateTime"),
        ),
        explicit_attrs=explicit, timezone=timezone,
    )
    return build_profile(device, group)


def test_object_ids_are_mapped_and_typed_with_the_receive_time() -> None:
    decoded = decode_payload({"t": "21.5", "n": 4.0, "on": "true", "s": 17, "h": 55, "extra": {"a": 1}}, profile(), NOW)
    assert decoded.rejections == ()
    (observation,) = decoded.observations
    assert observation.observed_at == NOW_ISO
    assert observation.attrs == {
        "temperature": {"type": "Property", "value": 21.5, "unitCode": "CEL", "observedAt": NOW_ISO},
        "count": {"type": "Property", "value": 4, "observedAt": NOW_ISO},
        "enabled": {"type": "Property", "value": True, "observedAt": NOW_ISO},
        "status": {"type": "Property", "value": "17", "observedAt": NOW_ISO},
        "relativeHumidity": {"type": "Property", "value": 55, "observedAt": NOW_ISO},  # from the group
        "extra": {"type": "Property", "value": {"a": 1}, "observedAt": NOW_ISO},  # unmapped: passed through
    }
    assert decoded.values == 6


def test_names_are_accepted_as_well_as_object_ids() -> None:
    (observation,) = decode_payload({"temperature": "3"}, profile(), NOW).observations
    assert observation.attrs["temperature"]["value"] == 3


def test_geo_datetime_and_relationship() -> None:
    payload = {"p": "37.4954, 126.8874", "d": "2026-02-28T10:00:00+09:00", "r": "urn:ngsi-ld:Device:x",
               "g": {"type": "Polygon", "coordinates": [[[126.8, 37.4], [126.9, 37.4], [126.9, 37.5], [126.8, 37.4]]]}}
    (observation,) = decode_payload(payload, profile(), NOW).observations
    assert observation.attrs["location"]["type"] == "GeoProperty"
    assert observation.attrs["location"]["value"] == {"type": "Point", "coordinates": [126.8874, 37.4954]}
    assert observation.attrs["lastSeen"]["value"] == {"@type": "DateTime", "@value": "2026-02-28T01:00:00.000000Z"}
    assert observation.attrs["refDevice"] == {"type": "Relationship", "object": "urn:ngsi-ld:Device:x",
                                              "observedAt": NOW_ISO}
    assert observation.attrs["area"]["value"]["type"] == "Polygon"


@pytest.mark.parametrize("key", ["TimeInstant", "observedAt", "ts"])
def test_the_measure_time_comes_from_the_measure(key: str) -> None:
    (observation,) = decode_payload({"t": 1, key: "2026-02-01T00:00:05Z"}, profile(), NOW).observations
    assert observation.observed_at == "2026-02-01T00:00:05.000000Z"
    assert observation.attrs == {"temperature": {"type": "Property", "value": 1, "unitCode": "CEL",
                                                 "observedAt": "2026-02-01T00:00:05.000000Z"}}


def test_a_time_without_offset_is_in_the_device_timezone() -> None:
    (observation,) = decode_payload({"t": 1, "TimeInstant": "2026-02-01T09:00:00"}, profile(timezone="Asia/Seoul"),
                                    NOW).observations
    assert observation.observed_at == "2026-02-01T00:00:00.000000Z"


def test_an_array_is_several_observations_each_with_its_time() -> None:
    payload = [{"t": 1, "TimeInstant": "2026-02-01T00:00:00Z"}, {"t": 2, "TimeInstant": "2026-02-01T00:10:00Z"}, {"t": 3}]
    decoded = decode_payload(payload, profile(), NOW)
    assert [(o.observed_at, o.attrs["temperature"]["value"]) for o in decoded.observations] == [
        ("2026-02-01T00:00:00.000000Z", 1), ("2026-02-01T00:10:00.000000Z", 2), (to_iso(NOW + timedelta(microseconds=2)), 3)]


def test_measures_of_an_array_without_their_own_time_each_get_their_own_instant() -> None:
    # one per position, so that none replaces another in history (unique per observedAt): QA2 finding 1
    decoded = decode_payload([{"t": 1}, {"t": 2}, {"t": 3}], profile(), NOW)
    assert [o.observed_at for o in decoded.observations] == [to_iso(NOW + timedelta(microseconds=k)) for k in range(3)]
    assert measures_in([{"t": 1}, {"t": 2}, {"t": 3}]) == 3 and measures_in({"t": 1}) == 1 and measures_in([]) == 1


def test_invalid_fields_are_rejected_with_reasons_and_valid_ones_kept() -> None:
    payload = [{"t": "warm", "n": 1.5, "on": "maybe", "p": "91,0", "r": "not a uri", "s": None, "h": 40,
                "TimeInstant": "yesterday"}, 7, {"t": True}, {"bad name": 1}]
    decoded = decode_payload(payload, profile(), NOW)
    reasons = sorted((r.measure, r.field, r.reason) for r in decoded.rejections)
    assert reasons == [
        (0, "TimeInstant", "invalid-time"), (0, "n", "type-mismatch"), (0, "on", "type-mismatch"),
        (0, "p", "invalid-geo"), (0, "r", "type-mismatch"), (0, "s", "null-value"), (0, "t", "type-mismatch"),
        (1, None, "not-an-object"), (2, "t", "type-mismatch"), (3, "bad name", "invalid-name"),
    ]
    (observation,) = decoded.observations  # the one valid value survives, stamped with the receive time
    assert observation.attrs == {"relativeHumidity": {"type": "Property", "value": 40, "observedAt": NOW_ISO}}


def test_non_finite_numbers_and_reserved_names_are_rejected() -> None:
    decoded = decode_payload({"t": "NaN", "id": "x", "type": "y", "@context": "z"}, profile(), NOW)
    assert {(r.field, r.reason) for r in decoded.rejections} == {
        ("t", "type-mismatch"), ("id", "invalid-name"), ("type", "invalid-name"), ("@context", "invalid-name")}
    assert decoded.observations == ()


def test_explicit_attrs_rejects_unprovisioned_fields() -> None:
    decoded = decode_payload({"t": 1, "other": 2}, profile(explicit=True), NOW)
    assert [(r.field, r.reason) for r in decoded.rejections] == [("other", "unknown-attribute")]
    assert list(decoded.observations[0].attrs) == ["temperature"]


def test_an_empty_measure_is_a_heartbeat_with_nothing_to_write() -> None:
    decoded = decode_payload({}, profile(), NOW)
    assert decoded.observations == () and decoded.rejections == ()


def test_payload_parsing() -> None:
    assert parse_json(b'{"a": 1}') == {"a": 1}
    with pytest.raises(DecodeError) as info:
        parse_json(b"{oops")
    assert info.value.reason == "malformed-json"
    assert parse_single_value(b"21.5") == 21.5
    assert parse_single_value(b"open") == "open"  # plain text, as IoT Agents accept on /attrs/<object_id>
    with pytest.raises(DecodeError):
        parse_single_value(b"\xff\xfe")


def test_typing_helpers() -> None:
    assert typed_instance("Integer", "42") == {"type": "Property", "value": 42}
    assert typed_instance("Boolean", 0) == {"type": "Property", "value": False}
    assert typed_instance(None, {"type": "Point", "coordinates": [127.0, 37.5]}, name="location")["type"] == "GeoProperty"
    assert parse_time("2026-01-01T00:00:00+09:00") == datetime(2025, 12, 31, 15, 0, tzinfo=UTC)
    with pytest.raises(DecodeError):
        typed_instance("geo:json", {"type": "Point"})
    assert command_instances((Command("ping"),)) == {
        "ping": {"type": "Property", "value": ""}, "ping_status": {"type": "Property", "value": "UNKNOWN"},
        "ping_info": {"type": "Property", "value": ""}}


def test_text_or_names_holding_a_nul_character_are_rejected() -> None:
    """PostgreSQL cannot store U+0000 in a document: a value or name holding one failed its whole store call on
    every delivery (over MQTT: redelivered without end, its batch with it). It is rejected, on both backends."""
    decoded = decode_payload({"t": 21.5, "s": "a\x00b", "extra": {"k": ["x", "\x00"]}, "k\x00ey": 1, "free": "ok",
                              "n": 3}, profile(), NOW)
    (observation,) = decoded.observations
    assert set(observation.attrs) == {"temperature", "free", "count"}
    assert sorted((r.field, r.reason) for r in decoded.rejections) == [
        ("extra", "invalid-text"), ("k\x00ey", "invalid-name"), ("s", "invalid-text")]
    assert decode_payload({"s": "no NUL: \\u0000 as text is fine"}, profile(), NOW).rejections == ()
    single = decode_payload({"s": parse_single_value(b"on\x00off")}, profile(), NOW)
    assert [r.reason for r in single.rejections] == ["invalid-text"] and not single.observations
