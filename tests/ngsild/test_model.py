"""Pure unit tests of the wire <-> stored conversion (model.py) and the write operations (ops.py).

No app, no store: a compiled core context (plus small user contexts) and a fixed clock string.
"""

from __future__ import annotations

import contextlib
import copy
import json
from typing import Any

import pytest

from ucity.core.errors import AlreadyExists, BadRequest, NotFound
from ucity.ngsild import ops
from ucity.ngsild.context import compile_local, core_context
from ucity.ngsild.model import (
    NULL,
    RenderOptions,
    default_geometry,
    is_geojson_geometry,
    is_null_instance,
    normalize_attribute,
    normalize_entity,
    normalize_instance,
    render_entity,
    render_instance,
    stamp_copy,
    to_geojson_feature,
)

V = "https://uri.etsi.org/ngsi-ld/default-context/"
LOCATION = "https://uri.etsi.org/ngsi-ld/location"
CTX = core_context()
T0, T1 = "2026-01-01T00:00:00.000000Z", "2026-01-01T00:00:01.000000Z"
GPS = "urn:ngsi-ld:Dataset:gps"
E1 = "urn:ngsi-ld:Building:1"


def prop(value: Any, **members: Any) -> dict[str, Any]:
    return {"type": "Property", "value": value, **members}


def stored(**attrs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"id": E1, "type": [V + "Building"], "attrs": {V + k: v for k, v in attrs.items()}}


# -- normalize: wire -> stored -----------------------------------------------------------------
def test_normalize_entity_expands_names_and_types() -> None:
    doc = normalize_entity({"id": E1, "type": "Building", "height": prop(3)}, CTX)
    assert doc == {"id": E1, "type": [V + "Building"], "attrs": {V + "height": [prop(3)]}}


def test_normalize_entity_with_a_user_context() -> None:
    ctx = compile_local([{"h": "https://ex.org/height", "B": "https://ex.org/Building"}])
    doc = normalize_entity({"id": E1, "type": ["B", "B"], "h": prop(3)}, ctx)
    assert doc == {"id": E1, "type": ["https://ex.org/Building"], "attrs": {"https://ex.org/height": [prop(3)]}}


def test_normalize_entity_keeps_scope_and_drops_system_members() -> None:
    body = {"id": E1, "type": "Building", "scope": "/A", "createdAt": "x", "modifiedAt": "y", "@context": "z"}
    assert normalize_entity(body, CTX) == {"id": E1, "type": [V + "Building"], "scope": ["/A"], "attrs": {}}


def test_normalize_entity_fragment_without_type() -> None:
    assert normalize_entity({"id": E1, "a": 1}, CTX, require_type=False) == {"id": E1, "attrs": {V + "a": [prop(1)]}}


@pytest.mark.parametrize("value", [
    "A", 1.5, True, [1, 2], {"city": "Seoul"},
])
def test_concise_values_become_properties(value: Any) -> None:
    assert normalize_instance("a", value, CTX) == prop(value)


@pytest.mark.parametrize(("wire", "expected"), [
    ({"object": "urn:x:1"}, {"type": "Relationship", "object": "urn:x:1"}),
    ({"languageMap": {"en": "x"}}, {"type": "LanguageProperty", "languageMap": {"en": "x"}}),
    ({"valueList": [1]}, {"type": "ListProperty", "valueList": [1]}),
    ({"json": {"a": None}}, {"type": "JsonProperty", "json": {"a": None}}),
    ({"vocab": "x"}, {"type": "VocabProperty", "vocab": "x"}),
    ({"objectList": ["urn:x:1"]}, {"type": "ListRelationship", "objectList": ["urn:x:1"]}),
    ({"type": "Point", "coordinates": [1, 2]}, {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [1, 2]}}),
    ({"value": {"type": "Point", "coordinates": [1, 2]}}, {"type": "Property",
                                                          "value": {"type": "Point", "coordinates": [1, 2]}}),
])
def test_concise_attribute_kinds_are_inferred(wire: dict[str, Any], expected: dict[str, Any]) -> None:
    assert normalize_instance("a", wire, CTX) == expected


def test_concise_location_value_is_a_geo_property() -> None:
    geo = {"type": "Point", "coordinates": [1, 2]}
    assert normalize_instance("location", {"value": geo}, CTX) == {"type": "GeoProperty", "value": geo}


def test_normalize_instance_members_and_sub_attributes() -> None:
    wire = prop(1, observedAt="2026-01-01T09:00:00+09:00", unitCode="CEL", datasetId=GPS,
                createdAt="ignored", accuracy={"value": 0.5, "method": "m"})
    assert normalize_instance("t", wire, CTX) == prop(
        1, observedAt="2026-01-01T00:00:00.000000Z", unitCode="CEL", datasetId=GPS,
        **{V + "accuracy": prop(0.5, **{V + "method": prop("m")})})


def test_normalize_attribute_with_dataset_instances() -> None:
    assert normalize_attribute("s", [prop(1), prop(2, datasetId=GPS)], CTX) == [prop(1), prop(2, datasetId=GPS)]


def test_a_list_of_plain_values_is_one_property() -> None:
    assert normalize_attribute("s", [1, 2], CTX) == [prop([1, 2])]


@pytest.mark.parametrize("wire", [
    None, prop(None), {}, {"type": "Nope", "value": 1}, {"type": "Relationship", "object": "no uri"},
    {"type": "Relationship", "value": "urn:x:1"}, prop(1, observedAt="x"), prop(1, unitCode=5),
    prop(1, datasetId="gps"), {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [200, 0]}},
    {"type": "LanguageProperty", "languageMap": {"en": 1}}, {"type": "ListProperty", "valueList": {}},
    prop(1, **{"bad name": prop(1)}), prop(NULL), {"type": "Relationship", "object": NULL},
    {"type": "LanguageProperty", "languageMap": {"@none": NULL}}, NULL,
])
def test_invalid_instances_are_rejected(wire: Any) -> None:
    with pytest.raises(BadRequest):
        normalize_instance("a", wire, CTX)


def test_duplicate_dataset_ids_are_rejected() -> None:
    with pytest.raises(BadRequest):
        normalize_attribute("s", [prop(1, datasetId=GPS), prop(2, datasetId=GPS)], CTX)


@pytest.mark.parametrize("body", [
    [], {"type": "B"}, {"id": "x", "type": "B"}, {"id": E1}, {"id": E1, "type": []}, {"id": E1, "type": "a b"},
    {"id": E1, "type": "B", "scope": "A"}, {"id": E1, "type": "B", "a=b": 1},
])
def test_invalid_entities_are_rejected(body: Any) -> None:
    with pytest.raises(BadRequest):
        normalize_entity(body, CTX)


@pytest.mark.parametrize("wire", [
    NULL, prop(NULL), {"type": "Relationship", "object": NULL}, {"object": NULL},
    {"type": "LanguageProperty", "languageMap": {"@none": NULL}}, {"type": "VocabProperty", "vocab": NULL},
    {"type": "GeoProperty", "value": NULL},
])
def test_ngsi_ld_null_is_accepted_in_fragments_and_recognized(wire: Any) -> None:
    assert is_null_instance(normalize_instance("a", wire, CTX, allow_null=True))


def test_ngsi_ld_null_inside_a_json_property_is_data() -> None:
    instance = normalize_instance("a", {"type": "JsonProperty", "json": NULL}, CTX)
    assert instance == {"type": "JsonProperty", "json": NULL}
    assert not is_null_instance(instance)


def test_is_geojson_geometry() -> None:
    assert is_geojson_geometry({"type": "Point", "coordinates": [1, 2]})
    assert is_geojson_geometry({"type": "GeometryCollection", "geometries": []})
    assert not is_geojson_geometry({"type": "Point"})
    assert not is_geojson_geometry({"type": "Feature", "coordinates": [1, 2]})
    assert not is_geojson_geometry([1, 2])


# -- render: stored -> wire --------------------------------------------------------------------
DOC = {
    "id": E1, "type": [V + "Building"], "scope": ["/A"], "createdAt": T0, "modifiedAt": T1,
    "attrs": {
        V + "name": [{**prop("x"), "createdAt": T0, "modifiedAt": T1, "instanceId": "urn:i:1"}],
        V + "t": [prop(1, unitCode="CEL", **{V + "accuracy": prop(0.5)})],
        V + "owner": [{"type": "Relationship", "object": "urn:x:p"}],
        V + "label": [{"type": "LanguageProperty", "languageMap": {"en": "hi", "ko": "안녕"}}],
        V + "cfg": [{"type": "JsonProperty", "json": {"a": 1}}],
        V + "kind": [{"type": "VocabProperty", "vocab": "office"}],
        V + "speed": [prop(55), prop(11, datasetId=GPS)],
        LOCATION: [{"type": "GeoProperty", "value": {"type": "Point", "coordinates": [1, 2]}}],
    },
}


def test_render_normalized_compacts_and_hides_system_members() -> None:
    out = render_entity(DOC, CTX, RenderOptions())
    assert out["id"] == E1 and out["type"] == "Building" and out["scope"] == "/A"
    assert out["name"] == prop("x")
    assert out["t"] == prop(1, unitCode="CEL", accuracy=prop(0.5))
    assert out["speed"] == [prop(55), prop(11, datasetId=GPS)]
    assert out["location"] == {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [1, 2]}}
    assert "createdAt" not in out


def test_render_sys_attrs() -> None:
    out = render_entity(DOC, CTX, RenderOptions(sys_attrs=True))
    assert (out["createdAt"], out["modifiedAt"]) == (T0, T1)
    assert out["name"] == {**prop("x"), "createdAt": T0, "modifiedAt": T1}


def test_render_key_values() -> None:
    out = render_entity(DOC, CTX, RenderOptions(fmt="keyValues"))
    assert out == {"id": E1, "type": "Building", "scope": "/A", "name": "x", "t": 1, "owner": "urn:x:p",
                   "label": {"languageMap": {"en": "hi", "ko": "안녕"}}, "cfg": {"json": {"a": 1}},
                   "kind": {"vocab": "office"}, "speed": {"dataset": {"@none": 55, GPS: 11}},
                   "location": {"type": "Point", "coordinates": [1, 2]}}


def test_render_concise() -> None:
    out = render_entity(DOC, CTX, RenderOptions(fmt="concise"))
    assert out["name"] == "x"
    assert out["t"] == {"value": 1, "unitCode": "CEL", "accuracy": 0.5}
    assert out["owner"] == {"object": "urn:x:p"}
    assert out["label"] == {"languageMap": {"en": "hi", "ko": "안녕"}}
    assert out["speed"] == [55, {"value": 11, "datasetId": GPS}]


def test_render_lang() -> None:
    instance = DOC["attrs"][V + "label"][0]
    assert render_instance(instance, CTX, RenderOptions(lang="ko")) == {"type": "Property", "value": "안녕",
                                                                        "lang": "ko"}
    assert render_instance(instance, CTX, RenderOptions(lang="fr,en;q=0.5")) == {"type": "Property", "value": "hi",
                                                                                 "lang": "en"}
    assert render_instance(instance, CTX, RenderOptions(lang="*", fmt="keyValues")) == "hi"


def test_render_projection() -> None:
    opts = RenderOptions(attrs=frozenset({V + "name", V + "t"}), omit=frozenset({V + "t"}), pick_type=False,
                         pick_scope=False)
    assert render_entity(DOC, CTX, opts) == {"id": E1, "name": prop("x")}


def test_render_dataset_selection() -> None:
    opts = RenderOptions(attrs=frozenset({V + "speed"}), dataset_ids=frozenset({"@none"}))
    assert render_entity(DOC, CTX, opts) == {"id": E1, "type": "Building", "scope": "/A", "speed": prop(55)}


def test_render_with_a_user_context() -> None:
    ctx = compile_local([{"nm": V + "name", "Bldg": V + "Building"}])
    out = render_entity(DOC, ctx, RenderOptions(attrs=frozenset({V + "name"})))
    assert out == {"id": E1, "type": "Bldg", "scope": "/A", "nm": prop("x")}


def test_geojson_feature_uses_the_default_instance() -> None:
    doc = {"id": E1, "attrs": {LOCATION: [
        {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [9, 9]}, "datasetId": GPS},
        {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [1, 2]}}]}}
    assert default_geometry(doc, LOCATION) == {"type": "Point", "coordinates": [1, 2]}
    assert default_geometry(doc, V + "nothing") is None
    assert default_geometry({"id": E1, "attrs": {V + "a": [prop(3)]}}, V + "a") is None
    feature = to_geojson_feature({"id": E1, "type": "B", "a": 1, "@context": "c"}, None)
    assert feature == {"id": E1, "type": "Feature", "geometry": None, "properties": {"type": "B", "a": 1}}


# -- ops: pure write operations ----------------------------------------------------------------
def base() -> dict[str, Any]:
    return ops.create_op(stored(name=[prop("x")], t=[prop(1, **{V + "acc": prop(0.5)})],
                                speed=[prop(55), prop(11, datasetId=GPS)]))(None, T0).doc or {}


def test_create_stamps_every_instance() -> None:
    doc = base()
    assert doc["createdAt"] == doc["modifiedAt"] == T0
    assert doc["attrs"][V + "t"][0][V + "acc"]["createdAt"] == T0


def test_create_of_an_existing_entity_fails() -> None:
    with pytest.raises(AlreadyExists):
        ops.create_op(stored())(base(), T1)


def test_replace_keeps_created_at_and_drops_other_attributes() -> None:
    outcome = ops.replace_op({"id": E1, "attrs": {V + "new": [prop(1)]}})(base(), T1)
    assert outcome.doc is not None
    assert outcome.doc["createdAt"] == T0 and outcome.doc["modifiedAt"] == T1
    assert list(outcome.doc["attrs"]) == [V + "new"]
    assert outcome.doc["type"] == [V + "Building"]


def test_ops_on_a_missing_entity_raise_entity_not_found() -> None:
    for fn in (ops.delete_op(E1), ops.replace_op({"id": E1, "attrs": {}}), ops.update_op({"id": E1, "attrs": {}}),
               ops.merge_op({"id": E1, "attrs": {}}), ops.append_op({"id": E1, "attrs": {}}),
               ops.delete_attr_op(V + "a", None, False)):
        with pytest.raises(ops.EntityNotFound):
            fn(None, T1)
    with pytest.raises(NotFound, match=E1):
        ops.delete_op(E1)(None, T1)


def test_append_no_overwrite_reports_existing_attributes() -> None:
    outcome = ops.append_op({"id": E1, "attrs": {V + "name": [prop("y")], V + "n": [prop(1)]}},
                            overwrite=False)(base(), T1)
    assert outcome.result == {"updated": [V + "n"], "notUpdated": [
        {"attributeName": V + "name", "reason": ops.NOT_UPDATED_EXISTS}]}
    assert ops.NOT_UPDATED_EXISTS == "속성이 이미 있고 noOverwrite가 지정됨 / attribute exists and noOverwrite was set"
    assert outcome.doc is not None and outcome.doc["attrs"][V + "name"][0]["value"] == "x"


def test_update_replaces_existing_and_appends_unknown() -> None:
    # CIM 009 v1.9.1 §5.6.2.4: an attribute (or datasetId) the entity lacks is appended.
    outcome = ops.update_op({"id": E1, "attrs": {V + "name": [prop("y")], V + "zz": [prop(1)]}})(base(), T1)
    assert outcome.result == {"updated": [V + "name", V + "zz"], "notUpdated": []}
    assert outcome.doc is not None
    assert outcome.doc["attrs"][V + "name"][0] == {**prop("y"), "createdAt": T0, "modifiedAt": T1}
    assert outcome.doc["attrs"][V + "zz"] == [{**prop(1), "createdAt": T1, "modifiedAt": T1}]


def test_update_with_null_for_an_absent_attribute_reports_it() -> None:
    outcome = ops.update_op({"id": E1, "attrs": {V + "zz": [prop(NULL)]}})(base(), T1)
    assert outcome.result["updated"] == []
    assert [n["attributeName"] for n in outcome.result["notUpdated"]] == [V + "zz"]
    assert outcome.doc is not None and V + "zz" not in outcome.doc["attrs"] and not outcome.changed


@pytest.mark.parametrize("null", [prop(NULL), {"type": "Relationship", "object": NULL},
                                  {"type": "LanguageProperty", "languageMap": {"@none": NULL}}])
def test_update_with_null_deletes(null: dict[str, Any]) -> None:
    outcome = ops.update_op({"id": E1, "attrs": {V + "name": [null]}})(base(), T1)
    assert outcome.doc is not None and V + "name" not in outcome.doc["attrs"]


def test_merge_merges_members_and_sub_attributes() -> None:
    patch = {"id": E1, "attrs": {V + "t": [prop(2, unitCode="CEL", **{V + "m": prop("k")})]}}
    outcome = ops.merge_op(patch)(base(), T1)
    assert outcome.doc is not None
    t = outcome.doc["attrs"][V + "t"][0]
    assert (t["value"], t["unitCode"], t["createdAt"], t["modifiedAt"]) == (2, "CEL", T0, T1)
    assert t[V + "acc"]["value"] == 0.5 and t[V + "m"]["value"] == "k"


def test_merge_with_null_deletes_attributes_sub_attributes_and_instances() -> None:
    patch = {"id": E1, "attrs": {V + "name": [prop(NULL)], V + "t": [prop(1, **{V + "acc": prop(NULL)})],
                                 V + "speed": [prop(NULL, datasetId=GPS)], V + "none": [prop(NULL)]}}
    outcome = ops.merge_op(patch)(base(), T1)
    assert outcome.doc is not None
    attrs = outcome.doc["attrs"]
    assert V + "name" not in attrs and V + "none" not in attrs
    assert V + "acc" not in attrs[V + "t"][0]
    assert [i["value"] for i in attrs[V + "speed"]] == [55]


def test_merge_does_not_mutate_its_input() -> None:
    before = base()
    snapshot = copy.deepcopy(before)
    ops.merge_op({"id": E1, "attrs": {V + "name": [prop("z")]}})(before, T1)
    assert before == snapshot


def _new_doc() -> dict[str, Any]:
    return {"id": E1, "type": [V + "Building"],
            "attrs": {V + "t": [prop(7, **{V + "acc": prop(0.1)})], V + "speed": [prop(12, datasetId=GPS)],
                      V + "loc": [{"type": "GeoProperty", "value": {"type": "Point", "coordinates": [1.0, 2.0]}}]}}


@pytest.mark.parametrize("make", [
    lambda new: ops.create_op(new), lambda new: ops.replace_op(new, create_if_missing=True),
    lambda new: ops.append_op(new), lambda new: ops.append_op(new, overwrite=False), lambda new: ops.update_op(new),
    lambda new: ops.merge_op(new), lambda new: ops.partial_attr_op(V + "t", new["attrs"][V + "t"][0], None),
    lambda new: ops.replace_attr_op(V + "speed", new["attrs"][V + "speed"]),
    lambda new: ops.delete_attr_op(V + "speed", GPS, False), lambda new: ops.delete_attr_op(V + "t", None, True),
])
def test_ops_change_neither_the_stored_entity_nor_the_request(make: Any) -> None:
    # Ops copy only what they change (the store publishes `before` and hands it to the next op of a
    # batch); a retried group commit runs the same op again and must get the same outcome.
    new = _new_doc()
    fn = make(new)
    for before in (None, base()):
        snapshot, request = copy.deepcopy(before), copy.deepcopy(new)
        try:
            first = fn(before, T1)
        except (AlreadyExists, NotFound):
            continue
        assert before == snapshot and new == request
        again = fn(copy.deepcopy(snapshot), T1)
        assert (first.doc, first.attrs, first.instances) == (again.doc, again.attrs, again.instances)
        history = [instance for _, instance in first.instances]
        for instance in history:  # the store adds instanceId to history rows, never to the entity
            instance["instanceId"] = "urn:ngsi-ld:Instance:x"
        assert "instanceId" not in str(first.doc)


def test_partial_attr_keeps_the_other_members() -> None:
    outcome = ops.partial_attr_op(V + "t", {"value": 9}, None)(base(), T1)
    assert outcome.doc is not None
    t = outcome.doc["attrs"][V + "t"][0]
    assert t["value"] == 9 and t[V + "acc"]["value"] == 0.5
    with pytest.raises(NotFound):
        ops.partial_attr_op(V + "t", {"value": 9}, GPS)(base(), T1)


def test_replace_attr_and_delete_attr_by_dataset() -> None:
    outcome = ops.replace_attr_op(V + "speed", [prop(12, datasetId=GPS)])(base(), T1)
    assert outcome.doc is not None
    assert [i["value"] for i in outcome.doc["attrs"][V + "speed"]] == [55, 12]
    deleted = ops.delete_attr_op(V + "speed", GPS, False)(outcome.doc, T1).doc
    assert deleted is not None and [i["value"] for i in deleted["attrs"][V + "speed"]] == [55]
    gone = ops.delete_attr_op(V + "speed", None, True)(base(), T1).doc
    assert gone is not None and V + "speed" not in gone["attrs"]


def test_check_same_id() -> None:
    ops.check_same_id(None, E1)
    ops.check_same_id(E1, E1)
    with pytest.raises(BadRequest):
        ops.check_same_id("urn:x:other", E1)


# -- the plain-attribute fast path of normalize_attrs ---------------------------------------------------
_POINT = {"type": "Point", "coordinates": [126.85, 37.48]}
# Attribute values the fast path takes, and values it must leave to normalize_instance (same result or error).
_VARIED_ATTRS: list[Any] = [
    prop("free"), prop(0), prop(1.5), prop(False), prop(None), prop(NULL), prop([1, 2]), prop({"a": {"b": 1}}),
    prop(""), prop(21.5, unitCode="CEL"), prop(21.5, unitCode=7), prop(3, observedAt="2026-01-01T00:00:00Z"),
    prop(3, observedAt="2026-01-01T09:00:00+09:00"), prop(3, observedAt="yesterday"), prop(3, observedAt=17),
    {"value": 3, "type": "Property", "observedAt": "2026-01-01T00:00:00Z", "datasetId": GPS, "unitCode": "MTR"},
    prop(3, datasetId=GPS), prop(3, datasetId="not a uri"), prop(3, datasetId=NULL), prop(3, datasetId=5),
    prop(3, createdAt=T0), prop(3, modifiedAt=T0, instanceId="urn:x:1"), prop(3, **{"@context": "x"}),
    prop(3, accuracy=prop(0.5)), prop(3, **{"https://example.org/sub": prop(1)}), prop(3, previousValue=2),
    {"type": "Property"}, {"type": "Property", "object": "urn:x:1"}, {"type": ["Property"], "value": 1},
    {"type": "Relationship", "object": "urn:ngsi-ld:Building:2"},
    {"type": "Relationship", "object": "urn:ngsi-ld:Building:2", "observedAt": "2026-01-01T00:00:00Z"},
    {"type": "Relationship", "object": "not a uri"}, {"type": "Relationship", "object": NULL},
    {"type": "Relationship", "object": ["urn:x:1", "urn:x:2"]}, {"type": "Relationship", "object": 5},
    {"type": "Relationship", "value": "urn:x:1"}, {"type": "Relationship", "object": "urn:x:1", "objectType": "T"},
    {"type": "GeoProperty", "value": _POINT}, {"type": "GeoProperty", "value": {**_POINT, "bbox": [1, 2, 3, 4]}},
    {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [126, 37, 12.5]}},
    {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [181, 37]}},
    {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [126, -91]}},
    {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [10**400, 0]}},
    {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [float("nan"), 0]}},
    {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [True, 0]}},
    {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [1]}},
    {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [1, 2, 3, 4]}},
    {"type": "GeoProperty", "value": {"type": "Point", "coordinates": "1,2"}},
    {"type": "GeoProperty", "value": {"type": "Point"}}, {"type": "GeoProperty", "value": {"type": "Pt"}},
    {"type": "GeoProperty", "value": {"type": "LineString", "coordinates": [[1, 2], [3, 4]]}},
    {"type": "GeoProperty", "value": NULL}, {"type": "GeoProperty", "value": "POINT(1 2)"},
    {"type": "GeoProperty", "value": _POINT, "observedAt": "2026-01-01T00:00:00Z", "datasetId": GPS},
    {"type": "LanguageProperty", "languageMap": {"en": "x"}}, {"type": "ListProperty", "valueList": [1]},
    {"type": "VocabProperty", "vocab": "x"}, {"type": "JsonProperty", "json": {"a": 1}}, {"type": "Weird", "value": 1},
    {"type": "", "value": 1}, {"type": None, "value": 1}, {}, {"value": 1}, {"object": "urn:x:1"}, _POINT,
    "free", 5, None, NULL, [prop(1), prop(2, datasetId=GPS)], [prop(1), prop(2)], [],
]


def _outcome(fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        result = fn(*args, **kwargs)
    except BadRequest as exc:
        return ("error", type(exc), exc.to_problem())
    return ("ok", json.dumps(result))  # members in order too


@pytest.mark.parametrize("allow_null", [False, True])
@pytest.mark.parametrize("name", ["temperature", "location", "refBuilding", "bad name", "type2"])
def test_normalize_attrs_fast_path_equals_the_general_path(monkeypatch: pytest.MonkeyPatch, name: str, allow_null: bool) -> None:
    """Every value above gives the same instances (members in the same order) or the same error with the
    plain-attribute fast path as with normalize_instance alone, whether the context had seen the name."""
    from ucity.ngsild import model

    normalize_instance("x", prop(1, observedAt="2026-01-01T00:00:00Z"), CTX)  # a date-time seen before
    for value in _VARIED_ATTRS:
        fast = [_outcome(model.normalize_attrs, {name: copy.deepcopy(value)}, ctx, allow_null)
                for ctx in (compile_local([]), CTX)]
        with monkeypatch.context() as patched:
            patched.setattr(model, "_plain_instance", lambda _value: None)
            general = [_outcome(model.normalize_attrs, {name: copy.deepcopy(value)}, ctx, allow_null)
                       for ctx in (compile_local([]), CTX)]
        assert fast == general, value


def test_plain_instance_takes_the_common_attributes() -> None:
    """The fast path is taken (not only equal) for what a batch upsert of plain entities carries."""
    from ucity.ngsild.model import _plain_instance

    normalize_instance("x", prop(1, observedAt="2026-01-01T00:00:00Z"), CTX)
    for value in (prop("free"), prop(1, observedAt="2026-01-01T00:00:00Z", unitCode="CEL", datasetId=GPS),
                  {"type": "Relationship", "object": "urn:x:1"}, {"type": "GeoProperty", "value": _POINT}):
        assert _plain_instance(value) == normalize_instance("a", value, CTX)
    for value in (prop(NULL), prop(1, accuracy=prop(1)), prop(1, observedAt="2031-01-01T00:00:00Z"),
                  {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [200, 0]}}):
        assert _plain_instance(value) is None


def test_normalize_entity_with_a_user_context_term_expands_names_as_before() -> None:
    ctx = compile_local([{"temperature": "https://example.org/temp", "Spot": "https://example.org/Spot"}])
    doc = normalize_entity({"id": "urn:x:1", "type": "Spot", "temperature": prop(1)}, ctx)
    again = normalize_entity({"id": "urn:x:2", "type": "Spot", "temperature": prop(2)}, ctx)
    assert doc["type"] == again["type"] == ["https://example.org/Spot"]
    assert list(doc["attrs"]) == list(again["attrs"]) == ["https://example.org/temp"]


def test_a_list_as_attribute_type_or_a_coordinate_beyond_any_float_is_a_400() -> None:
    """Both used to escape as TypeError / OverflowError, i.e. a 500."""
    for value in ({"type": ["Property"], "value": 1}, {"type": {"a": 1}, "value": 1}):
        with pytest.raises(BadRequest):
            normalize_instance("location", value, CTX)
    odd = {"type": ["Point"], "coordinates": [1, 2]}  # no GeoJSON geometry: a Property's value
    assert normalize_instance("location", {"value": odd}, CTX) == {"type": "Property", "value": odd}
    with pytest.raises(BadRequest, match="finite"):
        normalize_instance("location", {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [10**400, 0]}}, CTX)


_VARIED_ENTITIES: list[Any] = [
    {"id": "urn:ngsi-ld:ParkingSpot:1", "type": "ParkingSpot", "status": prop("free"),
     "occupancy": prop(1, observedAt="2026-01-01T00:00:00Z"), "location": {"type": "GeoProperty", "value": _POINT}},
    {"id": "urn:ngsi-ld:ParkingSpot:2", "type": ["ParkingSpot", "Spot"], "status": "free", "location": _POINT,
     "refBuilding": {"type": "Relationship", "object": E1}, "temp": prop(3, accuracy=prop(0.5), unitCode="CEL"),
     "scope": "/a/b", "@context": "ignored here", "createdAt": T0},
    {"id": "urn:ngsi-ld:ParkingSpot:3", "type": "ParkingSpot", "name": {"type": "LanguageProperty", "languageMap": {"en": "x"}},
     "multi": [prop(1), prop(2, datasetId=GPS)], "status": prop(NULL)},
    {"id": "urn:ngsi-ld:ParkingSpot:4", "type": "ParkingSpot", "status": prop(None)},
    {"id": "not a uri", "type": "ParkingSpot", "status": prop("free")},
    {"type": "ParkingSpot", "status": prop("free")}, {"id": "urn:x:5"}, {"id": "urn:x:6", "type": ""},
    {"id": "urn:x:7", "type": "ParkingSpot", "bad name": prop(1)}, {"id": "urn:x:8", "type": "T", "a": prop(1, datasetId=NULL)},
    {"id": "urn:x:9", "type": "T", "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [0, 99]}}},
    {"id": "urn:x:10", "type": "T", "https://example.org/full": prop(1), "ex:curie": prop(2)}, [], "x", None,
]


@pytest.mark.parametrize("allow_null", [False, True])
def test_normalize_entity_fast_path_equals_the_general_path(monkeypatch: pytest.MonkeyPatch, allow_null: bool) -> None:
    """Whole entities, valid and not: the same stored form (in the same order) or the same error."""
    from ucity.ngsild import model

    user_terms = {"ex": "https://example.org/", "ParkingSpot": "https://example.org/ParkingSpot"}
    for entity in _VARIED_ENTITIES:
        for terms in ([], [user_terms]):
            ctx = compile_local(terms)
            # twice: the second time with the names the context has seen
            fast = [_outcome(model.normalize_entity, copy.deepcopy(entity), ctx, allow_null=allow_null) for _ in range(2)]
            with monkeypatch.context() as patched:
                patched.setattr(model, "_plain_instance", lambda _value: None)
                patched.setattr(model, "expand_types", _expand_types_unmemoized)
                general = _outcome(model.normalize_entity, copy.deepcopy(entity), compile_local(terms), allow_null=allow_null)
            assert fast == [general, general], entity


def _expand_types_unmemoized(value: Any, ctx: Any) -> list[str]:
    from ucity.ngsild.model import expand_name

    types = value if isinstance(value, list) else [value]
    if not types or not all(isinstance(t, str) and t for t in types):
        raise BadRequest(f"엔티티 유형은 비어 있지 않은 문자열이나 문자열 목록이어야 함({value!r}) / "
                         f"entity type must be a non-empty string or list of strings, got {value!r}")
    return list(dict.fromkeys(expand_name(t, ctx, "type") for t in types))


def test_create_and_replace_stamp_new_instances_as_before() -> None:
    """`_stamped_new` gives what stamp_copy of each instance and `_history` of them gave (sub-attributes too)."""
    doc = normalize_entity(_VARIED_ENTITIES[1], CTX)
    attrs, history = ops._stamped_new(doc["attrs"], T1)
    expected = {iri: [stamp_copy(i, T1) for i in instances] for iri, instances in doc["attrs"].items()}
    assert json.dumps(attrs) == json.dumps(expected)
    assert json.dumps(history) == json.dumps(ops._history(expected))
    assert all(h is not a for (_, h), a in zip(history, (i for v in attrs.values() for i in v), strict=True))
    sub = attrs[V + "temp"][0]["https://uri.etsi.org/ngsi-ld/default-context/accuracy"]
    assert sub is not doc["attrs"][V + "temp"][0]["https://uri.etsi.org/ngsi-ld/default-context/accuracy"]
    assert "createdAt" not in doc["attrs"][V + "temp"][0]  # the request's instances are left as they were


def test_a_location_value_with_a_geometry_type_is_still_checked_as_geojson() -> None:
    with pytest.raises(BadRequest, match="GeoJSON"):
        normalize_instance("location", {"value": {"type": "Point"}}, CTX)


def _upsert_docs() -> list[dict[str, Any]]:
    docs = [_new_doc(), {"id": E1, "attrs": {V + "t": [prop(1)]}}]  # the second without a type
    for entity in _VARIED_ENTITIES:
        with contextlib.suppress(BadRequest):
            docs.append(normalize_entity(copy.deepcopy(entity), CTX))
    return docs


def _summary(outcome: Any) -> str:
    return json.dumps([outcome.doc, outcome.operation, sorted(outcome.attrs), outcome.instances, outcome.result,
                       outcome.changed])  # members in order too


@pytest.mark.parametrize("retried", [False, True])
def test_upsert_op_gives_what_replace_op_gives(retried: bool) -> None:
    """The batch upsert's op, which writes the normalized document itself, gives replace_op's outcome
    (create or replace; members in the same order), also when applied again as a retried commit is,
    after an attempt at another time and on another state of the entity."""
    stored_other = ops.create_op(stored(t=[prop(3)], name=[prop("y")]))(None, T0).doc
    befores = [None, base(), stored_other]
    for new in _upsert_docs():
        for before in befores:
            expected = ops.replace_op(copy.deepcopy(new), create_if_missing=True)(copy.deepcopy(before), T1)
            owned = copy.deepcopy(new)
            fn = ops.upsert_op(owned)
            if retried:
                for earlier in befores:
                    fn(copy.deepcopy(earlier), T0)
            outcome = fn(copy.deepcopy(before), T1)
            assert _summary(outcome) == _summary(expected), (new, before)
            if "type" in new:
                assert outcome.doc is owned  # no copy: that is the point
            for _, instance in outcome.instances:  # the store adds instanceId to history rows, never to the entity
                instance["instanceId"] = "urn:ngsi-ld:Instance:x"
            assert "instanceId" not in str(outcome.doc)


def test_upsert_op_stamps_the_normalized_document_itself() -> None:
    doc = normalize_entity(copy.deepcopy(_VARIED_ENTITIES[0]), CTX)
    outcome = ops.upsert_op(doc)(None, T1)
    assert outcome.doc is doc and doc["attrs"][V + "occupancy"][0]["createdAt"] == T1


def test_entity_ids_checked_before_are_remembered_and_invalid_ones_never(monkeypatch: pytest.MonkeyPatch) -> None:
    from ucity.ngsild import model

    monkeypatch.setattr(model, "_VALID_IDS", set())
    monkeypatch.setattr(model, "_VALID_IDS_LIMIT", 3)
    for _ in range(2):  # the second time from the memo
        assert [model.check_entity_id(f"urn:x:{n}") for n in range(2)] == ["urn:x:0", "urn:x:1"]
        for bad in ("not a uri", "urn:x: space", "", 5, None, ["urn:x:1"]):
            with pytest.raises(BadRequest):
                model.check_entity_id(bad)
    assert sorted(model._VALID_IDS) == ["urn:x:0", "urn:x:1"]
    for n in range(2, 6):
        model.check_entity_id(f"urn:x:{n}")
    assert len(model._VALID_IDS) <= 3 and all(model.is_uri(i) for i in model._VALID_IDS)
    long_id = "urn:x:" + "y" * model._VALID_ID_MAX_LEN
    assert model.check_entity_id(long_id) == long_id and long_id not in model._VALID_IDS


# -- batches: the owned normalization (normalize_owned_entity) and the flat upsert -------------------
def _owned_entities() -> list[Any]:
    """_VARIED_ENTITIES, each of _VARIED_ATTRS as an attribute of a plain entity, and the batch bench's entity
    with its members in other orders (value before type, observedAt first, ...)."""
    out: list[Any] = list(_VARIED_ENTITIES)
    for n, value in enumerate(_VARIED_ATTRS):
        out.append({"id": f"urn:x:a{n}", "type": "ParkingSpot", "status": prop("free"), "a": value})
    spot = _VARIED_ENTITIES[0]
    out += [
        {**spot, "occupancy": {"value": 1, "type": "Property", "observedAt": "2026-01-01T00:00:00Z"}},
        {**spot, "occupancy": {"observedAt": "2026-01-01T00:00:00Z", "type": "Property", "value": 1}},
        {**spot, "occupancy": prop(1, observedAt="2026-01-01T09:00:00.5+09:00", unitCode="C62", datasetId=GPS)},
        {**spot, "location": {"value": _POINT, "type": "GeoProperty"}},
        {**spot, "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [1, 2, 3]}}},
        {**spot, "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [1.0, float("nan")]}}},
        {**spot, "refOwner": {"type": "Relationship", "object": E1, "datasetId": GPS}},
        {"type": "ParkingSpot", "id": "urn:x:b1", "status": prop("free")},
        {"id": "urn:x:b2", "status": prop("free")}, {"id": "urn:x:b3", "type": "T", "scope": ["/a"], "s": prop(1)},
        {"id": 5, "type": "T"}, {"id": "urn:x:b4", "type": "T", "s": prop(1), "bad name": prop(2)},
        {"id": "urn:x:b5", "type": ["T", "U"], "s": [prop(1), prop(2, datasetId=GPS)]}, {"id": "urn:x:b6", "type": "T"},
    ]
    return out


@pytest.mark.parametrize("require_type", [True, False])
@pytest.mark.parametrize("allow_null", [False, True])
def test_normalize_owned_entity_gives_what_normalize_entity_gives(require_type: bool, allow_null: bool) -> None:
    """The batch's normalization, which takes the body's plain instances as its own: the same stored form
    (members in the same order) or the same error as normalize_entity, for contexts that have and have not
    seen the names and date-times; `plain` only when no instance has a sub-attribute."""
    from ucity.ngsild.model import normalize_owned_entity

    user_terms = {"ex": "https://example.org/", "ParkingSpot": "https://example.org/ParkingSpot"}
    for entity in _owned_entities():
        for terms in ([], [user_terms]):
            ctx = compile_local(terms)
            for _ in range(2):  # the second time with the names and date-times seen before
                expected = _outcome(normalize_entity, copy.deepcopy(entity), ctx, require_type=require_type,
                                    allow_null=allow_null)
                got = _outcome(normalize_owned_entity, copy.deepcopy(entity), ctx, require_type, allow_null)
                if got[0] == "error":
                    assert got == expected, entity
                    continue
                doc, plain = json.loads(got[1])
                assert ("ok", json.dumps(doc)) == expected, entity
                if plain:
                    assert all(not any(":" in k for k in i) for v in doc["attrs"].values() for i in v), entity


def test_normalize_owned_entity_takes_the_bodys_plain_instances() -> None:
    from ucity.ngsild.model import normalize_owned_entity

    normalize_instance("x", prop(1, observedAt="2026-01-01T00:00:00Z"), CTX)  # a date-time seen before
    body = copy.deepcopy(_VARIED_ENTITIES[0])
    members = [body["status"], body["occupancy"], body["location"]]
    doc, plain = normalize_owned_entity(body, CTX)
    assert plain and [i for v in doc["attrs"].values() for i in v] == members
    assert all(a is b for a, b in zip((i for v in doc["attrs"].values() for i in v), members, strict=True))
    assert members[1]["observedAt"] == "2026-01-01T00:00:00.000000Z"  # the stored form, in place
    # members in another order than normalize_instance's: a new instance, the body's left as it was
    body = {"id": E1, "type": "Building", "a": {"value": 1, "type": "Property"}}
    doc, plain = normalize_owned_entity(body, CTX)
    assert plain is False and doc["attrs"][V + "a"][0] is not body["a"] and list(body["a"]) == ["value", "type"]
    # a sub-attribute: not plain
    assert normalize_owned_entity({"id": E1, "type": "Building", "a": prop(1, accuracy=prop(2))}, CTX)[1] is False


@pytest.mark.parametrize("retried", [False, True])
def test_flat_upsert_op_gives_what_upsert_op_gives(retried: bool) -> None:
    """upsert_op(flat=True), given a document without sub-attributes (what normalize_owned_entity says
    is plain), gives the outcome of upsert_op and of replace_op, members in the same order."""
    from ucity.ngsild.model import normalize_owned_entity

    stored_other = ops.create_op(stored(t=[prop(3)], name=[prop("y")]))(None, T0).doc
    befores = [None, base(), stored_other]
    flat_docs = []
    for entity in _owned_entities():
        with contextlib.suppress(BadRequest):
            doc, plain = normalize_owned_entity(copy.deepcopy(entity), CTX)
            if plain:
                flat_docs.append(doc)
    assert len(flat_docs) > 10
    for new in flat_docs:
        for before in befores:
            expected = ops.replace_op(copy.deepcopy(new), create_if_missing=True)(copy.deepcopy(before), T1)
            general = ops.upsert_op(copy.deepcopy(new))(copy.deepcopy(before), T1)
            owned = copy.deepcopy(new)
            fn = ops.upsert_op(owned, flat=True)
            if retried:
                for earlier in befores:
                    fn(copy.deepcopy(earlier), T0)
            outcome = fn(copy.deepcopy(before), T1)
            assert _summary(outcome) == _summary(expected) == _summary(general), (new, before)
            assert outcome.doc is owned
