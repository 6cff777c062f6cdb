"""Measures to NGSI-LD attribute instances, per device. PURE: no I/O, no clock.

A FIWARE IoT Agent JSON measure is one JSON object `{object_id: value, ...}`; a payload may be an
array of them (several observations in one request). Each field is mapped to its attribute name
by the device profile (object_id, else the name itself, else passed through unchanged), typed per
the provisioned IoT Agent type, and given the measure's time as `observedAt`: `TimeInstant` (or
`observedAt`) in the measure, else the receive time passed in by the caller. A measure time that
is no date-time, out of the range ucity stores (`clock.MIN_INSTANT..MAX_INSTANT` in UTC), or later
than `latest` (the caller's clock plus `ingest.max_future_s`) is rejected as `invalid-time` and the
measure's fields are kept with the receive time: a device clock set to 9999 must neither poison a
batch nor become the attribute's current time for ever.

Within one payload, a value replaced by a later measure's value of the same attribute at the same time
(history keeps one instance per attribute and observedAt) is dropped as `duplicate-time`, so that what
is counted as accepted is what is kept.

Invalid input never discards valid input: every bad field (or bad measure in an array) becomes a
`Rejection` with a short reason code, counted per device by stats.py, and the rest is kept.
This runs per reading, so it stays plain dicts and small functions (no pydantic on the hot path).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson

from ucity.core.clock import check_instant, to_iso
from ucity.core.errors import BadRequest
from ucity.core.frozen import fast_init
from ucity.core.params import holds_nul
from ucity.ingest.model import AttrSpec, Command, DeviceProfile, StaticAttr
from ucity.ngsild.model import (
    ENTITY_RESERVED,
    NULL,
    RESERVED,
    check_entity_id,
    check_name,
    expand_name,
    is_uri,
    normalize_instance,
)

TIME_KEYS = ("TimeInstant", "observedAt")

# Reason codes, as counted in /api/v1/ingest/stats.
MALFORMED_JSON = "malformed-json"
NOT_AN_OBJECT = "not-an-object"
NULL_VALUE = "null-value"
TYPE_MISMATCH = "type-mismatch"
INVALID_TIME = "invalid-time"
INVALID_GEO = "invalid-geo"
INVALID_NAME = "invalid-name"
UNKNOWN_ATTRIBUTE = "unknown-attribute"
UNKNOWN_DEVICE = "unknown-device"
UNKNOWN_TOPIC = "unknown-topic"
UNKNOWN_COMMAND = "unknown-command"
INTERNAL_ERROR = "internal-error"  # ucity failed on the payload (a bug, logged with its traceback)
NOT_WRITTEN = "not-written"  # valid values the store refused to write (its error as detail)
INVALID_TEXT = "invalid-text"  # text holding a NUL character (U+0000), which PostgreSQL cannot store
# A value replaced by a later value of the same attribute at the same time in the same payload: an attribute's
# history holds one instance per observedAt (docs/conformance.md item 10), so only the later one is kept.
DUPLICATE_TIME = "duplicate-time"


class DecodeError(ValueError):
    """One value (or payload) that cannot be used, with its reason code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Rejection:
    """What was dropped and why: `measure` is the index in the payload, `field` the key as sent."""

    reason: str
    detail: str
    measure: int | None = None
    field: str | None = None

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"reason": self.reason, "detail": self.detail}
        if self.measure is not None:
            out["measure"] = self.measure
        if self.field is not None:
            out["attribute"] = self.field
        return out


@fast_init
@dataclass(frozen=True, slots=True)
class Observation:
    """One measure: its time and its attributes (short name -> NGSI-LD instance with observedAt)."""

    observed_at: str
    attrs: dict[str, dict[str, Any]]
    # Every instance is decode's plain numeric one, {"type": "Property", "value": <int or finite float>,
    # ["unitCode": <not the NGSI-LD Null>,] "observedAt"}: the writer merges it without checking its
    # members for an NGSI-LD Null or for others. False promises nothing.
    plain: bool = False


@fast_init
@dataclass(frozen=True, slots=True)
class Decoded:
    observations: tuple[Observation, ...]
    rejections: tuple[Rejection, ...]
    values: int = -1  # how many attribute values were accepted (counted once, on construction)

    def __post_init__(self) -> None:
        if self.values < 0:
            object.__setattr__(self, "values", sum(len(o.attrs) for o in self.observations))


# -- payloads ---------------------------------------------------------------------------------------
def parse_json(raw: bytes) -> Any:
    """A JSON payload; `DecodeError(malformed-json)` when it is not JSON."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(MALFORMED_JSON, f"the payload is not valid JSON: {exc}") from exc


def parse_single_value(raw: bytes) -> Any:
    """The payload of `/attrs/<object_id>`: a JSON value, or else the text as sent (IoT Agent style)."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    try:
        return raw.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise DecodeError(MALFORMED_JSON, "the payload is neither JSON nor UTF-8 text") from exc


def decode_payload(payload: Any, profile: DeviceProfile, received_at: datetime, received_iso: str | None = None,
                   latest: str | None = None) -> Decoded:
    """A parsed measure payload (an object or an array of objects) for one device. `received_iso`:
    `received_at` already formatted, if the caller has it (else formatted only for a measure without its own
    time). `latest`: the latest measure time taken, in `to_iso` form (None: no bound but the range).

    The measures of an array that carry no time of their own get `received_at` plus their position in
    microseconds: each its own instant, so none replaces another in history (an attribute instance is unique
    per observedAt). A caller decoding several payloads gives each its own `received_at` (`receive_times`)."""
    received = received_iso
    if isinstance(payload, dict):  # the common case: one measure
        observation, rejected = decode_measure(payload, profile, received_at, None, received, latest)
        observations: tuple[Observation, ...] = (observation,) if observation is not None else ()
        return Decoded(observations, tuple(rejected), len(observation.attrs) if observation is not None else 0)
    measures = payload if isinstance(payload, list) else [payload]
    index_of: Callable[[int], int | None] = (lambda i: i) if isinstance(payload, list) else (lambda i: None)
    found: list[Observation] = []
    positions: list[int] = []
    rejections: list[Rejection] = []
    for position, measure in enumerate(measures):
        if not isinstance(measure, dict):
            kind = type(measure).__name__ if measure is not None else "null"
            rejections.append(Rejection(NOT_AN_OBJECT, f"a measure must be a JSON object, got {kind}", index_of(position)))
            continue
        at = received_at + timedelta(microseconds=position) if position else received_at
        observation, rejected = decode_measure(measure, profile, at, index_of(position), received if not position
                                               else None, latest)
        rejections.extend(rejected)
        if observation is not None:
            found.append(observation)
            positions.append(position)
    if len(found) > 1 and len({o.observed_at for o in found}) < len(found):
        found = _without_replaced(found, positions, rejections)
    return Decoded(tuple(found), tuple(rejections))


def _without_replaced(found: list[Observation], positions: list[int], rejections: list[Rejection]) -> list[Observation]:
    """The observations without the values a later measure of the payload replaces: the same attribute at the same
    time. The store keeps one instance per attribute and observedAt (the later one, as merged in order), so
    counting both as accepted told the sender two values were kept where one was (QA6 15); each replaced value
    is a `duplicate-time` rejection instead, naming the measure whose value is kept."""
    kept_by: dict[tuple[str, str], int] = {}  # (attribute, time) -> position of the measure whose value is kept
    kept: list[Observation] = []
    replaced: list[Rejection] = []
    for observation, position in zip(reversed(found), reversed(positions), strict=True):
        at = observation.observed_at
        attrs = observation.attrs
        gone = [name for name in attrs if (name, at) in kept_by]
        for name in attrs:
            kept_by.setdefault((name, at), position)
        if gone:
            replaced.extend(Rejection(DUPLICATE_TIME, f"{name!r} at {at} is replaced by measure {kept_by[name, at]}'s "
                                      "value at the same time: an attribute keeps one value per time", position, name)
                            for name in gone)
            attrs = {name: instance for name, instance in attrs.items() if name not in gone}
            if not attrs:
                continue
            observation = Observation(at, attrs, observation.plain)
        kept.append(observation)
    rejections.extend(sorted(replaced, key=lambda r: r.measure or 0))
    kept.reverse()
    return kept


def measures_in(payload: Any) -> int:
    """How many measures a payload holds (its receive times to reserve: `decode_payload`)."""
    return len(payload) if isinstance(payload, list) and payload else 1


def decode_measure(
    measure: Mapping[str, Any], profile: DeviceProfile, received_at: datetime, index: int | None = None,
    received_iso: str | None = None, latest: str | None = None,
) -> tuple[Observation | None, list[Rejection]]:
    """One measure object: its observation (None if no field was valid) and what was rejected."""
    rejections: list[Rejection] = []
    plan = _plan(profile)
    observed_at = (_measure_time(measure, profile, plan, index, rejections, latest) or received_iso
                   or to_iso(received_at))
    fields = plan.fields
    attrs: dict[str, dict[str, Any]] = {}
    plain = True
    for key, value in measure.items():
        field = fields.get(key) or plan.field(key, profile)
        if not isinstance(field, tuple):
            if isinstance(field, DecodeError):
                rejections.append(Rejection(field.reason, field.detail, index, key))
            continue  # else a time key
        name, convert, unit_code = field
        if convert is _number and (type(value) is int or (type(value) is float and math.isfinite(value))):
            # The common case, a Number sent as a JSON number: what `_number` and the lines below make, in one go
            attrs[name] = ({"type": "Property", "value": value, "unitCode": unit_code, "observedAt": observed_at}
                           if unit_code else {"type": "Property", "value": value, "observedAt": observed_at})
            if unit_code == NULL:
                plain = False
            continue
        if value is None:
            rejections.append(Rejection(NULL_VALUE, f"{key!r} is null", index, key))
            continue
        kind = type(value)
        if (kind is str and "\x00" in value) or ((kind is dict or kind is list) and holds_nul(value)):
            rejections.append(Rejection(INVALID_TEXT, f"{key!r} holds a NUL character (U+0000), which ucity cannot "
                                        "store", index, key))
            continue
        try:
            instance = convert(value, profile.timezone) if convert is not None else _untyped(name, value)
        except DecodeError as exc:
            detail = exc.detail
            if kind is list and exc.reason == TYPE_MISMATCH:  # e.g. FIWARE's [{"timestamp": .., "value": ..}]
                shown = orjson.dumps(key).decode()
                detail += (f"; an array is one value of {shown} (as the IoT Agent stores a single-measure array), not "
                           f"several: send timed values as measures [{{{shown}: <value>, \"TimeInstant\": <time>}}, "
                           "...] (docs/devices.md)")
            rejections.append(Rejection(exc.reason, detail, index, key))
            continue
        if unit_code:
            instance["unitCode"] = unit_code
        instance["observedAt"] = observed_at
        attrs[name] = instance
        plain = False
    return (Observation(observed_at, attrs, plain) if attrs else None), rejections


def _measure_time(
    measure: Mapping[str, Any], profile: DeviceProfile, plan: _Plan, index: int | None, rejections: list[Rejection],
    latest: str | None = None,
) -> str | None:
    """The measure's own time if it carries a valid one, not after `latest` (None: use the receive time)."""
    time_keys = plan.time_keys
    for key, value in measure.items():
        if key not in time_keys:
            continue
        try:
            observed = iso_time(value, profile.timezone)
        except DecodeError as exc:
            # The other fields are still kept, stamped with the receive time (documented in docs/devices.md).
            rejections.append(Rejection(exc.reason, exc.detail, index, key))
            continue
        # Both in to_iso form (four-digit years): text order is time order. A far-future time would stay the
        # attribute's current one, every later real measure going to history only.
        if latest is not None and observed > latest:
            rejections.append(Rejection(INVALID_TIME, f"{_show(value)} is after {latest}, the platform clock plus "
                                        "ingest.max_future_s", index, key))
            continue
        return observed
    return None


# -- the per-device decoding plan ---------------------------------------------------------------------
class _Skip:
    """A time key: read by _measure_time, not an attribute."""


_SKIP = _Skip()
_PLAN_KEYS = 256  # keys remembered per device: unmapped keys come from the device, so bounded
Field = tuple[str, Callable[[Any, str | None], dict[str, Any]] | None, str | None]  # name, converter, unitCode
Entry = Field | DecodeError | _Skip


class _Plan:
    """What decoding a device's measures needs, worked out once per key rather than per value: the
    keys that carry the time, and per key its attribute name (validated), converter and unit."""

    __slots__ = ("fields", "time_keys")

    def __init__(self, profile: DeviceProfile) -> None:
        self.time_keys = frozenset(TIME_KEYS) | {key for key, spec in profile.by_object_id.items() if spec.name in TIME_KEYS}
        self.fields: dict[str, Entry] = {}

    def field(self, key: str, profile: DeviceProfile) -> Entry:
        found = _field(key, profile, self.time_keys)
        if len(self.fields) < _PLAN_KEYS:
            self.fields[key] = found
        return found


def _plan(profile: DeviceProfile) -> _Plan:
    plan: _Plan | None = profile.hot_path_cache.get("plan")
    if plan is None:
        plan = profile.hot_path_cache["plan"] = _Plan(profile)
    return plan


def _field(key: str, profile: DeviceProfile, time_keys: frozenset[str]) -> Entry:
    """How a key of this device's measures is decoded: _SKIP, a DecodeError for every value, or a Field."""
    spec = profile.by_object_id.get(key) or profile.by_name.get(key)
    if key in time_keys or (spec is not None and spec.name in TIME_KEYS):
        return _SKIP
    if spec is None and profile.explicit_attrs:
        return DecodeError(UNKNOWN_ATTRIBUTE, f"{key!r} is not a provisioned attribute")
    name = spec.name if spec is not None else key
    try:
        _check_attr_name(name)
    except DecodeError as exc:
        return exc
    convert = _CONVERTERS.get(spec.type or "") if spec is not None else None
    return name, convert, spec.unit_code if spec is not None else None


def _untyped(name: str, value: Any) -> dict[str, Any]:
    """An attribute without a known IoT Agent type: passed through (a GeoJSON `location` as geometry)."""
    if name == "location" and isinstance(value, dict) and "coordinates" in value:
        return _geo_json(value, None)
    return {"type": "Property", "value": value}


# -- typing -------------------------------------------------------------------------------------------
def _check_attr_name(name: str) -> None:
    if name in _VALID_NAMES:
        return
    _check_new_attr_name(name)
    if len(_VALID_NAMES) < 65536:  # bounded: unmapped names come from the devices
        _VALID_NAMES.add(name)


_VALID_NAMES: set[str] = set()


def _check_new_attr_name(name: str) -> None:
    if name in ENTITY_RESERVED or name.startswith("@") or name in TIME_KEYS:
        raise DecodeError(INVALID_NAME, f"{name!r} is reserved and cannot be an attribute name")
    if "\x00" in name:  # as for values (`holds_nul`): no store write could take it
        raise DecodeError(INVALID_NAME, f"{name!r} holds a NUL character (U+0000)")
    try:
        check_name(name)
    except BadRequest as exc:
        raise DecodeError(INVALID_NAME, exc.detail) from exc


def typed_instance(attr_type: str | None, value: Any, timezone: str | None = None, name: str = "") -> dict[str, Any]:
    """An NGSI-LD instance for a value of an IoT Agent attribute type (None: untyped, passed through)."""
    convert = _CONVERTERS.get(attr_type or "")
    if convert is not None:
        return convert(value, timezone)
    return _untyped(name, value)


def _property(value: Any) -> dict[str, Any]:
    return {"type": "Property", "value": value}


def _number(value: Any, _tz: str | None) -> dict[str, Any]:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise DecodeError(TYPE_MISMATCH, f"expected a Number, got {_show(value)}")
    if isinstance(value, str):
        try:
            value = float(value) if any(c in value for c in ".eEnN") else int(value)
        except ValueError as exc:
            raise DecodeError(TYPE_MISMATCH, f"expected a Number, got {_show(value)}") from exc
    if isinstance(value, float) and not math.isfinite(value):
        raise DecodeError(TYPE_MISMATCH, f"expected a finite Number, got {value}")
    return _property(value)


def _integer(value: Any, _tz: str | None) -> dict[str, Any]:
    if isinstance(value, bool):
        raise DecodeError(TYPE_MISMATCH, f"expected an Integer, got {_show(value)}")
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return _property(int(value))
    if isinstance(value, str):
        try:
            return _property(int(value.strip()))
        except ValueError:
            pass
    if isinstance(value, int):
        return _property(value)
    raise DecodeError(TYPE_MISMATCH, f"expected an Integer, got {_show(value)}")


_TRUE = {"true", "1", "on", "yes"}
_FALSE = {"false", "0", "off", "no"}


def _boolean(value: Any, _tz: str | None) -> dict[str, Any]:
    if isinstance(value, bool):
        return _property(value)
    if isinstance(value, int) and value in (0, 1):
        return _property(bool(value))
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return _property(value.strip().lower() in _TRUE)
    raise DecodeError(TYPE_MISMATCH, f"expected a Boolean, got {_show(value)}")


def _text(value: Any, _tz: str | None) -> dict[str, Any]:
    if isinstance(value, str):
        return _property(value)
    if isinstance(value, (bool, int, float)):
        # Lossless: a numeric id sent without quotes is still the same text.
        return _property(orjson.dumps(value).decode())
    raise DecodeError(TYPE_MISMATCH, f"expected Text, got {_show(value)}")


def _datetime(value: Any, timezone: str | None) -> dict[str, Any]:
    return _property({"@type": "DateTime", "@value": iso_time(value, timezone)})


def _geo_point(value: Any, _tz: str | None) -> dict[str, Any]:
    """`"lat, lon"` (NGSI-v2's geo:point text, latitude first), a GeoJSON Point, or an array `[lon, lat]` (the
    IoT Agent's NGSI-LD form: GeoJSON coordinates, longitude first) -> a GeoProperty Point."""
    if isinstance(value, dict):
        if value.get("type") != "Point":
            raise DecodeError(INVALID_GEO, f"geo:point expects \"lat,lon\" or a GeoJSON Point, got {_show(value)}")
        return _geo_json(value, _tz)
    if isinstance(value, list):
        return _point_array(value)
    if not isinstance(value, str):
        raise DecodeError(INVALID_GEO, f"geo:point expects \"lat,lon\", got {_show(value)}")
    parts = value.split(",")
    try:
        lat, lon = (float(p) for p in parts)
    except ValueError as exc:
        raise DecodeError(INVALID_GEO, f"geo:point expects \"lat,lon\", got {_show(value)}") from exc
    if not (math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180):
        raise DecodeError(INVALID_GEO, f"geo:point out of range (lat -90..90, lon -180..180): {_show(value)}")
    return {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}}


def _point_array(value: list[Any]) -> dict[str, Any]:
    """`[lon, lat]` or `[lon, lat, altitude]`: GeoJSON coordinates, as the IoT Agent (NGSI-LD) takes an array for
    a point. Longitude first, unlike geo:point's text: the hint names a swapped pair when that would fit."""
    if not (2 <= len(value) <= 3 and all(type(v) in (int, float) and math.isfinite(v) for v in value)):
        raise DecodeError(INVALID_GEO, f"a point array is [lon, lat] (GeoJSON order), got {_show(value)}")
    lon, lat = value[0], value[1]
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        swapped = " (was it [lat, lon]? an array is longitude first)" if -90 <= lon <= 90 and -180 <= lat <= 180 else ""
        raise DecodeError(INVALID_GEO, f"a point array is [lon, lat] (GeoJSON order), out of range (lon -180..180, "
                                       f"lat -90..90): {_show(value)}{swapped}")
    return {"type": "GeoProperty", "value": {"type": "Point", "coordinates": list(value)}}


def _geometry_of(kind: str) -> Callable[[Any, str | None], dict[str, Any]]:
    """The converter of an attribute typed with a GeoJSON geometry name (`Point`, `LineString` ... as the IoT
    Agent takes for NGSI-LD): a GeoJSON geometry of that type (object or JSON text), or its `coordinates` as
    GeoJSON nests them (longitude first) -> a GeoProperty. Not a "x, y" text: the IoT Agent reads it longitude
    first, geo:point's text is latitude first; ucity takes neither guess for these types."""

    def convert(value: Any, _tz: str | None) -> dict[str, Any]:
        if kind == "Point" and isinstance(value, list):
            return _point_array(value)
        if isinstance(value, list):
            value = {"type": kind, "coordinates": value}
        elif isinstance(value, str) and not value.lstrip().startswith("{"):
            raise DecodeError(INVALID_GEO, f"{kind} expects a GeoJSON {kind} or its coordinates (longitude first), "
                                           f"got {_show(value)}; for \"lat,lon\" text use the type geo:point")
        instance = _geo_json(value, _tz)
        if instance["value"].get("type") != kind:
            raise DecodeError(INVALID_GEO, f"{kind} expects a GeoJSON {kind}, got {_show(value)}")
        return instance

    return convert


def _geo_json(value: Any, _tz: str | None) -> dict[str, Any]:
    from ucity.ngsild.geo import GeoQueryError, validate_geojson

    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise DecodeError(INVALID_GEO, "geo:json text is not JSON") from exc
    try:
        validate_geojson(value)
    except (GeoQueryError, TypeError, ValueError) as exc:
        raise DecodeError(INVALID_GEO, f"not a valid GeoJSON geometry: {exc}") from exc
    return {"type": "GeoProperty", "value": value}


def _relationship(value: Any, _tz: str | None) -> dict[str, Any]:
    try:
        return {"type": "Relationship", "object": check_entity_id(value)}
    except BadRequest as exc:
        raise DecodeError(TYPE_MISMATCH, f"a Relationship needs a URI, got {_show(value)}") from exc


_CONVERTERS: dict[str, Callable[[Any, str | None], dict[str, Any]]] = {
    "Number": _number, "Float": _number, "Double": _number,
    "Integer": _integer, "Int": _integer,
    "Boolean": _boolean, "Bool": _boolean,
    "Text": _text, "String": _text,
    "DateTime": _datetime, "ISO8601": _datetime,
    "geo:point": _geo_point,
    "geo:json": _geo_json, "GeoProperty": _geo_json,
    **{kind: _geometry_of(kind) for kind in ("Point", "LineString", "Polygon", "MultiPoint", "MultiLineString",
                                             "MultiPolygon")},
    "Relationship": _relationship,
}
KNOWN_TYPES = frozenset(_CONVERTERS)


def iso_time(value: Any, timezone: str | None = None) -> str:
    """`to_iso(parse_time(value, timezone))`; the UTC forms devices and ucity send (`...SS[.fff[fff]]Z`)
    are checked and completed without the round trip through a datetime."""
    # (Years 1000-8999 only: the others may be out of range, checked by parse_time.)
    if isinstance(value, str) and value[-1:] == "Z" and "1" <= value[:1] <= "8":
        size = len(value)
        if (size in (20, 24, 27) and value[4] == value[7] == "-" and value[10] == "T" and value[13] == value[16] == ":"
                and (size == 20 or value[19] == ".") and _is_iso(value[:-1])):
            return value if size == 27 else value[:19] + ".000000Z" if size == 20 else value[:23] + "000Z"
    return to_iso(parse_time(value, timezone))


def _is_iso(text: str) -> bool:
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def parse_time(value: Any, timezone: str | None = None) -> datetime:
    """An ISO 8601 date-time; a value without offset is in the device's timezone (default UTC)."""
    if not isinstance(value, str):
        raise DecodeError(INVALID_TIME, f"a time must be an ISO 8601 string, got {_show(value)}")
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise DecodeError(INVALID_TIME, f"not an ISO 8601 date-time: {_show(value)}") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=_zone(timezone))
    try:
        check_instant(parsed, value)  # e.g. 0001-01-01T00:00:00+09:00 is in year 0 in UTC: OverflowError below
    except ValueError as exc:
        raise DecodeError(INVALID_TIME, str(exc)) from None
    return parsed.astimezone(UTC)


@cache
def _zone(name: str | None) -> ZoneInfo | Any:
    if not name:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def _show(value: Any, limit: int = 60) -> str:
    """A short, safe rendering of a bad value for a reason text."""
    text = orjson.dumps(value).decode() if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- provisioning-time instances ---------------------------------------------------------------------
def static_instances(statics: tuple[StaticAttr, ...], timezone: str | None = None) -> dict[str, dict[str, Any]]:
    """The static attributes as NGSI-LD instances; raises DecodeError for the first invalid one.

    As the IoT Agent, which adds static attributes "as is": an array or object value is kept as it is
    (a Property holding it, a Relationship for an array of URIs) where the type's converter takes no such
    value (the IoT Agent's own example is `{"type": "Text", "value": ["actuator", "sensor"]}`); the
    geo types still need valid geometry. Metadata: `unitCode` becomes the instance's unitCode, each other
    item a sub-property (a sub-relationship for `"type": "Relationship"`) with the item's `value`."""
    out: dict[str, dict[str, Any]] = {}
    for static in statics:
        _check_attr_name(static.name)
        if static.value is None:
            raise DecodeError(NULL_VALUE, f"static attribute {static.name!r} has no value")
        try:
            converted = typed_instance(static.type if static.type in KNOWN_TYPES else None, static.value, timezone,
                                       static.name)
        except DecodeError:
            if not isinstance(static.value, (list, dict)) or static.type in _GEO_TYPES:
                raise
            converted = _structured_static(static)
        if static.metadata:
            _static_metadata(converted, static)
        out[static.name] = converted
    return out


_GEO_TYPES = frozenset({"geo:point", "geo:json", "GeoProperty", "Point", "LineString", "Polygon", "MultiPoint",
                        "MultiLineString", "MultiPolygon"})


def _structured_static(static: StaticAttr) -> dict[str, Any]:
    """An array or object value of a static attribute, kept as it is."""
    if holds_nul(static.value):
        raise DecodeError(INVALID_TEXT, f"static attribute {static.name!r} holds a NUL character (U+0000)")
    if static.type == "Relationship":
        if not isinstance(static.value, list) or not static.value or not all(is_uri(v) for v in static.value):
            raise DecodeError(TYPE_MISMATCH, f"a Relationship needs a URI or an array of URIs, got {_show(static.value)}")
        return {"type": "Relationship", "object": list(static.value)}
    return _property(static.value)


def _static_metadata(instance: dict[str, Any], static: StaticAttr) -> None:
    """Add a static attribute's IoT Agent metadata to its instance (see `static_instances`)."""
    from ucity.ngsild.context import core_context

    assert static.metadata is not None
    for key, item in static.metadata.items():
        where = f"static attribute {static.name!r}, metadata {key!r}"
        value = item.get("value") if isinstance(item, dict) else item  # IoT Agent form {"type": .., "value": ..}
        if key == "unitCode":
            if not isinstance(value, str) or not value:
                raise DecodeError(TYPE_MISMATCH, f"{where}: a unit code is a text, got {_show(value)}")
            instance["unitCode"] = value
            continue
        if key in RESERVED or key in TIME_KEYS or key.startswith("@"):
            raise DecodeError(INVALID_NAME, f"{where}: {key!r} is reserved and cannot name metadata")
        if value is None:
            raise DecodeError(NULL_VALUE, f"{where} has no value")
        if holds_nul(value) or "\x00" in key:
            raise DecodeError(INVALID_TEXT, f"{where} holds a NUL character (U+0000)")
        relationship = isinstance(item, dict) and item.get("type") == "Relationship"
        sub = {"type": "Relationship", "object": value} if relationship else {"type": "Property", "value": value}
        try:
            ctx = core_context()
            instance[expand_name(key, ctx, "metadata")] = normalize_instance(key, sub, ctx)
        except BadRequest as exc:
            raise DecodeError(TYPE_MISMATCH, f"{where}: {exc.detail}") from exc


COMMAND_STATUS = "_status"
COMMAND_INFO = "_info"


def command_instances(commands: tuple[Command, ...]) -> dict[str, dict[str, Any]]:
    """Each command as three attributes: the command itself, its status and its result text."""
    out: dict[str, dict[str, Any]] = {}
    for command in commands:
        _check_attr_name(command.name)
        out[command.name] = _property("")
        out[command.name + COMMAND_STATUS] = _property("UNKNOWN")
        out[command.name + COMMAND_INFO] = _property("")
    return out


def check_attr_spec(spec: AttrSpec) -> None:
    """Provisioning check of a mapping (raises DecodeError): valid names, time keys only as DateTime."""
    _check_name_only(spec.object_id)
    if spec.name in TIME_KEYS:
        return
    _check_attr_name(spec.name)


def _check_name_only(name: str) -> None:
    try:
        check_name(name, "object_id")
    except BadRequest as exc:
        raise DecodeError(INVALID_NAME, exc.detail) from exc
