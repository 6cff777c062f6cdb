"""The batch normalization in one loop (`normalize_owned_batch`), the batch upsert's mutations
(`upsert_mutations`) and the plain-instance checks they rely on: the same results and errors as the
per-entity functions they stand for."""

from __future__ import annotations

import copy
import json
import math
from typing import Any

import pytest

from tests.ngsild.test_model import _VARIED_ATTRS, V, _owned_entities, base, prop, stored
from ucity.core.errors import BadRequest, UcityError
from ucity.ngsild import model, ops
from ucity.ngsild.context import compile_local
from ucity.ngsild.model import normalize_owned_batch, normalize_owned_entity

T0 = "2026-01-01T00:00:00.000000Z"
T1 = "2026-01-02T00:00:00.000000Z"
USER_TERMS = {"ex": "https://example.org/", "ParkingSpot": "https://example.org/ParkingSpot"}


def _one_by_one(items: list[Any], ctx: Any, require_type: bool, allow_null: bool) -> tuple[str, str, str]:
    """What the per-entity loop gave: (entity id, document), plain flags, (entity id, problem) of errors."""
    docs, flags, errors = [], [], []
    for item in items:
        try:
            doc, plain = normalize_owned_entity(item, ctx, require_type, allow_null)
        except UcityError as exc:
            errors.append((item.get("id") if isinstance(item, dict) else None, exc.to_problem()))
            continue
        entity_id = item.get("id")
        docs.append((entity_id if entity_id.__class__ is str else str(entity_id), doc))
        flags.append(plain)
    return json.dumps(docs), json.dumps(flags), json.dumps(errors)


@pytest.mark.parametrize("require_type", [True, False])
@pytest.mark.parametrize("allow_null", [False, True])
def test_normalize_owned_batch_gives_what_normalize_owned_entity_gives(require_type: bool, allow_null: bool) -> None:
    """Valid and invalid entities in one batch, for contexts that have and have not seen the names, ids and
    date-times: the same documents (members in the same order), flags and errors, in the same order."""
    entities = _owned_entities()
    _one_by_one(copy.deepcopy(entities), compile_local([]), require_type, allow_null)  # the date-times (global)
    for terms in ([], [USER_TERMS]):
        ctx, ctx2 = compile_local(terms), compile_local(terms)
        for _ in range(2):  # the second time with everything seen before
            expected = _one_by_one(copy.deepcopy(entities), ctx, require_type, allow_null)
            items = copy.deepcopy(entities)
            docs, flags, errors = normalize_owned_batch(items, ctx2, require_type, allow_null)
            got = (json.dumps(docs), json.dumps(flags), json.dumps([(i, e.to_problem()) for i, e in errors]))
            assert got == expected
            assert items == [None] * len(entities)  # consumed


def test_normalize_owned_batch_takes_the_bodys_plain_instances(monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = compile_local([])
    entity = {"id": "urn:ngsi-ld:ParkingSpot:1", "type": "ParkingSpot", "status": prop("free"),
              "occupancy": prop(1, observedAt="2026-01-01T00:00:00Z"),
              "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [126.9, 37.5]}}}
    normalize_owned_batch([copy.deepcopy(entity)], ctx)  # names, id and date-time seen: the loop's own path
    monkeypatch.setattr(model, "normalize_owned_entity", None)  # (not called)
    body = copy.deepcopy(entity)
    members = [body["status"], body["occupancy"], body["location"]]
    (entity_id, doc), = normalize_owned_batch([body], ctx)[0]
    assert entity_id == entity["id"] and list(doc) == ["id", "type", "attrs"]
    assert all(a is b for a, b in zip((i for v in doc["attrs"].values() for i in v), members, strict=True))
    assert members[1]["observedAt"] == "2026-01-01T00:00:00.000000Z"


def test_ids_not_among_those_checked_before_take_the_loops_path_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """A city with more entities than the bounded set of checked ids: a valid id is checked in the loop, an
    invalid one gets normalize_owned_entity's error."""
    ctx = compile_local([])
    entity = {"id": "urn:x:1", "type": "T", "a": prop(1)}
    normalize_owned_batch([copy.deepcopy(entity)], ctx)
    monkeypatch.setattr(model, "_VALID_IDS", set())
    with monkeypatch.context() as patched:
        patched.setattr(model, "normalize_owned_entity", None)  # (not called)
        docs, flags, errors = normalize_owned_batch([{**copy.deepcopy(entity), "id": "urn:x:2"}], ctx)
    assert docs == [("urn:x:2", {"id": "urn:x:2", "type": [f"{V}T"], "attrs": {f"{V}a": [prop(1)]}})]
    assert flags == [True] and not errors
    docs, flags, errors = normalize_owned_batch([{**copy.deepcopy(entity), "id": "not a uri"}], ctx)
    assert not docs and errors[0][0] == "not a uri" and "URI" in errors[0][1].to_problem()["detail"]


def test_a_batch_entity_that_is_not_plain_after_plain_attributes_is_normalized_whole() -> None:
    """An attribute the loop does not take, after some it took (their observedAt already in stored form),
    sends the entity to normalize_owned_entity, whose result is the one normalize_entity gives."""
    ctx = compile_local([])
    seen = {"id": "urn:x:1", "type": "T", "a": prop(1, observedAt="2026-01-01T00:00:00Z"), "b": prop(2, accuracy=prop(1))}
    normalize_owned_batch([copy.deepcopy(seen)], ctx)
    docs, flags, errors = normalize_owned_batch([copy.deepcopy(seen)], ctx)
    assert not errors and flags == [False]
    assert json.dumps(docs[0][1]) == json.dumps(model.normalize_entity(copy.deepcopy(seen), compile_local([])))
    docs, flags, errors = normalize_owned_batch([{**copy.deepcopy(seen), "b": prop(None)}], ctx)
    assert not docs and errors[0][0] == "urn:x:1" and isinstance(errors[0][1], BadRequest)


def _plain_owned_reference(value: dict[str, Any]) -> bool:
    """`_plain_owned` as it was written before `_plain_member` was inlined in it."""
    names = iter(value)
    if next(names, None) != "type":
        return False
    attr_type = value["type"]
    if attr_type.__class__ is not str:
        return False
    key = model._PLAIN_KEYS.get(attr_type)
    if key is None or next(names, None) != key:
        return False
    if not model._plain_member(attr_type, value[key]):
        return False
    observed = None
    for name in names:
        item = value[name]
        if name == "observedAt":
            observed = model._TIMES.get(item) if item.__class__ is str else None
            if observed is None:
                return False
        elif name == "datasetId":
            if item.__class__ is not str or item == model.NULL or not model._URI.match(item):
                return False
        elif name == "unitCode":
            if item.__class__ is not str:
                return False
        else:
            return False
    if observed is not None:
        value["observedAt"] = observed
    return True


def _point_reference(value: Any) -> bool:
    """`_plain_point` as it was written before (a loop over the position)."""
    if value.__class__ is not dict or value.get("type") != "Point":
        return False
    position = value.get("coordinates")
    if position.__class__ is not list or not 2 <= len(position) <= 3:
        return False
    for item in position:
        kind = item.__class__
        if kind is float:
            if not math.isfinite(item):
                return False
        elif kind is not int:
            return False
    return bool(-180 <= position[0] <= 180 and -90 <= position[1] <= 90)


_POSITIONS: list[Any] = [
    [1, 2], [1.5, -2.5], [180, 90], [-180, -90], [180.0001, 0], [0, 90.5], [1, 2, 3], [1, 2, 3.5], [1, 2, "3"],
    [1, 2, float("nan")], [1, 2, float("inf")], [float("nan"), 0], [0, float("-inf")], [True, 0], [0, False],
    [1, 2, True], [1], [], [1, 2, 3, 4], ["1", 2], [None, 2], [10**400, 0], [0, 10**400], (1, 2), "1,2", None,
]


def test_plain_checks_equal_their_former_versions() -> None:
    model.normalize_time("2026-01-01T00:00:00Z", "observedAt")
    for position in _POSITIONS:
        value = {"type": "Point", "coordinates": position}
        assert model._plain_point(value) is _point_reference(value), position
    values = [*_VARIED_ATTRS, *({"type": "GeoProperty", "value": {"type": "Point", "coordinates": p}} for p in _POSITIONS),
              {"type": "Relationship", "object": "urn:x:1", "observedAt": "2026-01-01T00:00:00Z"},
              {"type": "Relationship", "object": "not a uri"}, {"type": "Relationship", "object": 5},
              {"type": "Property", "value": {"a": 1}, "unitCode": 5}, {"type": "Property", "value": [1], "x": 1}]
    for value in values:
        if not isinstance(value, dict):
            continue
        mine, theirs = copy.deepcopy(value), copy.deepcopy(value)
        assert model._plain_owned(mine) is _plain_owned_reference(theirs), value
        assert mine == theirs, value


def test_upsert_mutations_are_upsert_ops() -> None:
    """Each mutation gives what upsert_op(doc, flat) gives, on a new, a stored and another entity."""
    docs: list[tuple[str, dict[str, Any]]] = []
    flags: list[bool] = []
    for entity in _owned_entities():
        try:
            doc, plain = normalize_owned_entity(copy.deepcopy(entity), compile_local([]))
        except BadRequest:
            continue
        docs.append((doc["id"], doc))
        flags.append(plain)
    docs.append(("urn:x:untyped", {"id": "urn:x:untyped", "attrs": {"https://example.org/t": [prop(1)]}}))
    flags.append(True)
    befores = [None, base(), ops.create_op(stored(t=[prop(3)]))(None, T0).doc]
    for before in befores:
        mutations = ops.upsert_mutations(copy.deepcopy(docs), flags)
        assert [m.entity_id for m in mutations] == [i for i, _ in docs]
        for mutation, (_, doc), flag in zip(mutations, docs, flags, strict=True):
            expected = ops.upsert_op(copy.deepcopy(doc), flag)(copy.deepcopy(before), T1)
            outcome = mutation.apply(copy.deepcopy(before), T1)
            assert json.dumps([outcome.doc, outcome.operation, sorted(outcome.attrs), outcome.instances,
                               outcome.result]) == json.dumps([expected.doc, expected.operation, sorted(expected.attrs),
                                                               expected.instances, expected.result])
    with pytest.raises(ValueError):
        ops.upsert_mutations(docs, flags[:-1])
