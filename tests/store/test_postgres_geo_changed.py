"""PostgreSQL's `_geo_changed` (whether an entity's geometry rows must be written again) compares GeoJSON
values, no longer their texts: the same answers as the text comparison, except that values equal as
numbers (1 and 1.0) are one geometry. A pure function: no database needed."""

from __future__ import annotations

import itertools
from typing import Any

import orjson

from ucity.store.postgres import _geo_changed
from ucity.store.sql import GEO_TYPES, geo_parts

LOC = "https://uri.etsi.org/ngsi-ld/location"
AREA = "https://example.org/area"
SPEED = "https://example.org/speed"


def _texts_differ(stored: dict[str, Any] | None, doc: dict[str, Any]) -> bool:
    """The former `_geo_changed`, which compared the GeoJSON texts (`geo_parts`') of changed attributes."""
    if stored is None:
        return bool(geo_parts(doc))
    old, new = stored.get("attrs", {}), doc.get("attrs", {})
    if old is new:
        return False

    def texts(instances: list[dict[str, Any]] | None) -> list[str]:
        return [orjson.dumps(i["value"]).decode() for i in instances or ()
                if i.get("type") in GEO_TYPES and isinstance(i.get("value"), dict)]

    for attr, instances in new.items():
        before = old.get(attr)
        geo = before is not instances and any(i.get("type") in GEO_TYPES for i in (*instances, *(before or ())))
        if geo and texts(before) != texts(instances):
            return True
    return any(attr not in new and texts(instances) for attr, instances in old.items())


def _geo(x: float, **members: Any) -> dict[str, Any]:
    return {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [x, 1.5]}, **members}


_ATTRS: list[list[dict[str, Any]] | None] = [
    None, [], [_geo(1)], [_geo(1, observedAt="2026-01-01T00:00:00Z")], [_geo(2)],
    [_geo(1), _geo(2, datasetId="urn:x:d")], [_geo(2, datasetId="urn:x:d"), _geo(1)],
    [{"type": "GeoProperty", "value": "not GeoJSON"}],
    [{"type": "Property", "value": {"type": "Point", "coordinates": [1, 1.5]}}],
    [{"type": "Property", "value": 3}], [{"type": "Relationship", "object": "urn:x:2"}], [{"value": 1}],
]


def _doc(**attrs: list[dict[str, Any]] | None) -> dict[str, Any]:
    return {"id": "urn:x:1", "type": ["T"], "attrs": {k: v for k, v in attrs.items() if v is not None}}


def test_geo_changed_answers_as_the_text_comparison() -> None:
    for was, now, other in itertools.product(_ATTRS, _ATTRS, (None, [_geo(5)], [{"type": "Property", "value": 1}])):
        stored = _doc(**{LOC: was, AREA: other, SPEED: [{"type": "Property", "value": 1}]})
        doc = _doc(**{LOC: orjson.loads(orjson.dumps(now)) if now is not None else None, AREA: other})
        assert _geo_changed(stored, doc) is _texts_differ(stored, doc), (was, now, other)
        assert _geo_changed(None, doc) is bool(geo_parts(doc))
    same = _doc(**{LOC: [_geo(1)]})
    assert _geo_changed(same, {**same}) is False  # the same attribute map


def test_equal_coordinates_written_differently_are_the_same_geometry() -> None:
    stored = _doc(**{LOC: [_geo(1)]})
    doc = _doc(**{LOC: [{"type": "GeoProperty", "value": {"coordinates": [1.0, 1.5], "type": "Point"}}]})
    assert _texts_differ(stored, doc) and _geo_changed(stored, doc) is False
