"""The NGSI-LD write operations as pure functions from the current document to an `Outcome`.

Each `*_op` returns an `ApplyFn` the store runs inside its transaction (docs/storage.md). They
raise UcityErrors for their own entity only, so that batch operations report per entity.
`result` carries the update report (updated / notUpdated attributes) back to the handler.
None changes the stored document it is given, nor the request's document, except `upsert_op`
(batch upsert), which is handed its document and writes it as the entity (see there).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import orjson

from ucity.core.errors import AlreadyExists, BadRequest, NotFound
from ucity.ngsild.model import RESERVED, VALUE_KEY, find_instance, is_null_instance, is_null_value, stamp, stamp_copy
from ucity.store.base import ApplyFn, Doc, Mutation, Outcome, TypeExpr

Attrs = dict[str, list[dict[str, Any]]]


def json_copy(value: Any) -> Any:
    """A deep copy of a JSON tree; several times faster than copy.deepcopy on the write path."""
    return orjson.loads(orjson.dumps(value))


def _stamped_new(attrs: Attrs, now: str) -> tuple[Attrs, tuple[tuple[str, dict[str, Any]], ...]]:
    """Copies of new instances stamped as created now (`stamp_copy(i, now)` each) and the `_history` rows
    of them, in one pass: create and replace write every instance, a batch upsert thousands of them."""
    out: Attrs = {}
    history: list[tuple[str, dict[str, Any]]] = []
    for iri, instances in attrs.items():
        stamped = []
        for instance in instances:
            if _FLAT_MEMBERS.issuperset(instance):  # no sub-attribute: one C-level pass over the names
                copy = dict(instance, createdAt=now, modifiedAt=now)
            else:
                copy = dict(instance)
                copy["createdAt"] = copy["modifiedAt"] = now
                for key, sub in instance.items():
                    if ":" in key and isinstance(sub, dict):  # a sub-attribute (its name is an expanded IRI)
                        copy[key] = stamp_copy(sub, now)
            stamped.append(copy)
            history.append((iri, copy.copy()))
        out[iri] = stamped
    return out, tuple(history)


# Instance members that are never sub-attributes (no ':' in their names, as every expanded IRI has):
# an instance with only these needs no search for sub-attributes to stamp.
_FLAT_MEMBERS = frozenset(name for name in RESERVED if ":" not in name)


def _value_copy(value: Any) -> Any:
    """A copy of a member value that a stored instance may share no containers with."""
    return json_copy(value) if isinstance(value, (dict, list, tuple)) else value


def _cow(before: Doc) -> Doc:
    """A working copy of a stored entity for an op that changes it: the entity and its attribute map
    are new, attribute lists are copied by whoever changes one (`_own`), instances are replaced, never
    changed. `before` stays as it was (the store publishes it and may give it to the next op)."""
    doc = dict(before)
    doc["attrs"] = dict(before.get("attrs", {}))
    return doc


def _own(doc: Doc, iri: str) -> list[dict[str, Any]]:
    """The instance list of `iri` in a working copy from `_cow`, copied so that it may be changed."""
    current = doc["attrs"][iri] = list(doc["attrs"].get(iri, ()))
    return current


def _history(attrs: Attrs) -> tuple[tuple[str, dict[str, Any]], ...]:
    # A copy of each instance's top level: the store adds its instanceId there, which the entity's own
    # instance must not get. What lies deeper (values, sub-attributes) is shared: after a commit both
    # the entity and its history are read only.
    return tuple((iri, dict(i)) for iri, instances in attrs.items() for i in instances)


# The reasons of an UpdateResult's notUpdated (CIM 009 §5.2.18), "한국어 / English" as every detail of ucity.
NOT_UPDATED_EXISTS = "속성이 이미 있고 noOverwrite가 지정됨 / attribute exists and noOverwrite was set"
NOT_UPDATED_NULL = ("없는 속성(또는 datasetId)에 NGSI-LD Null: 지울 것이 없음 / "
                    "NGSI-LD Null for an attribute (or datasetId) that does not exist: nothing to delete")
NOT_UPDATED_SCOPE = "엔티티에 바꿀 scope가 없음 / the entity has no scope to replace"


class EntityNotFound(NotFound):
    """The entity a mutation applies to does not exist (the handler knows which one it was)."""


def _require(before: Doc | None, entity_id: str) -> Doc:
    if before is None:
        raise EntityNotFound(f"엔티티 {entity_id} 없음 / entity {entity_id} does not exist" if entity_id
                             else "엔티티 없음 / the entity does not exist")
    return before


def _touch(doc: Doc, now: str) -> Doc:
    doc["modifiedAt"] = now
    return doc


def create_op(new: Doc) -> ApplyFn:
    def apply(before: Doc | None, now: str) -> Outcome:
        if before is not None:
            raise AlreadyExists(f"엔티티 {new['id']} 이미 있음 / entity {new['id']} already exists")
        doc = dict(new)
        doc["attrs"], history = _stamped_new(new["attrs"], now)
        doc["createdAt"] = doc["modifiedAt"] = now
        return Outcome(doc, "create", frozenset(doc["attrs"]), history, result="created")

    return apply


def replace_op(new: Doc, create_if_missing: bool = False) -> ApplyFn:
    """PUT /entities/{id} and batch upsert with replace: all attributes replaced."""

    def apply(before: Doc | None, now: str) -> Outcome:
        if before is None:
            if not create_if_missing:
                raise EntityNotFound(f"엔티티 {new['id']} 없음 / entity {new['id']} does not exist")
            return create_op(new)(None, now)
        doc = dict(new)
        doc["attrs"], history = _stamped_new(new["attrs"], now)
        doc["createdAt"] = before.get("createdAt", now)
        doc["modifiedAt"] = now
        if "type" not in doc:
            doc["type"] = before["type"]
        touched = frozenset(doc["attrs"])
        dropped = before.get("attrs")
        if dropped and not touched.issuperset(dropped):  # an upsert mostly sends the attributes it had
            touched = touched.union(dropped)
        return Outcome(doc, "replace", touched, history, result="updated")

    return apply


def upsert_op(new: Doc, flat: bool = False) -> ApplyFn:
    """Batch upsert with replace: `replace_op(new, create_if_missing=True)` that takes `new` as its own.

    The entity written is `new` itself, its instances stamped in place, instead of copies of them:
    the store's writer runs a thousand of these per request, and copying documents that the event
    loop has just built (on the other core) was most of their cost. So the caller hands `new` over,
    fresh from `normalize_entity` (whose containers nothing else holds), and does not use it again.
    Applied again (a retried group commit) it stamps the same containers again and gives the outcome
    `replace_op` gives, which the failed attempt's outcome, discarded with its transaction, shares.
    Only the history rows are copies (the store adds their instanceId). Without a type (which the
    stored entity then gives) it is `replace_op`, so that a retry cannot keep an earlier attempt's.
    `flat`: the caller knows that no instance has a sub-attribute (`normalize_owned_entity`'s plain
    ones), so none is looked for: this runs on the writer thread, once per entity.
    """
    if "type" not in new:
        return replace_op(new, create_if_missing=True)
    # A partial of a module function, not a closure: one object per entity instead of five (the function,
    # its cells and their tuple), made on the event loop a thousand times per request and freed after.
    return partial(_upsert, new, flat)


def upsert_mutations(docs: list[tuple[str, Doc]], flat: list[bool]) -> list[Mutation]:
    """`Mutation(entity_id, upsert_op(doc, flat))` of each (entity id, document) of a batch upsert, made
    in one comprehension (a thousand per request, on the event loop); the documents are handed over."""
    return [Mutation(entity_id, partial(_upsert, doc, plain) if "type" in doc else replace_op(doc, True))
            for (entity_id, doc), plain in zip(docs, flat, strict=True)]


def _upsert(new: Doc, flat: bool, before: Doc | None, now: str) -> Outcome:
    """upsert_op's apply function."""
    attrs = new["attrs"]
    if flat:  # `_stamp_owned` without its search for sub-attributes
        rows: list[tuple[str, dict[str, Any]]] = []
        for iri, instances in attrs.items():
            for instance in instances:
                instance["createdAt"] = instance["modifiedAt"] = now
                rows.append((iri, instance.copy()))
        history = tuple(rows)
    else:
        history = _stamp_owned(attrs, now)
    touched = frozenset(attrs)
    if before is None:
        new["createdAt"] = new["modifiedAt"] = now
        return Outcome(new, "create", touched, history, "created")
    new["createdAt"] = before.get("createdAt", now)
    new["modifiedAt"] = now
    dropped = before.get("attrs")
    if dropped and not touched.issuperset(dropped):
        touched = touched.union(dropped)
    return Outcome(new, "replace", touched, history, "updated")


def _stamp_owned(attrs: Attrs, now: str) -> tuple[tuple[str, dict[str, Any]], ...]:
    """`_stamped_new` on instances the op owns: stamped in place (sub-attributes too); the history rows,
    top-level copies as `_history` makes, are returned."""
    history: list[tuple[str, dict[str, Any]]] = []
    for iri, instances in attrs.items():
        for instance in instances:
            instance["createdAt"] = instance["modifiedAt"] = now
            if not _FLAT_MEMBERS.issuperset(instance):
                for key, sub in instance.items():
                    if ":" in key and isinstance(sub, dict):  # a sub-attribute (its name is an expanded IRI)
                        stamp(sub, now)
            history.append((iri, instance.copy()))
    return tuple(history)


def delete_op(entity_id: str = "") -> ApplyFn:
    def apply(before: Doc | None, now: str) -> Outcome:
        doc = _require(before, entity_id)
        return Outcome(None, "delete", frozenset(doc.get("attrs", {})), (), result="deleted")

    return apply


def _merge_types(doc: Doc, new: Doc) -> None:
    if "type" in new:
        doc["type"] = list(dict.fromkeys([*doc.get("type", []), *new["type"]]))
    if "scope" in new:
        doc["scope"] = new["scope"]


def append_op(new: Doc, overwrite: bool = True, create_if_missing: bool = False) -> ApplyFn:
    """POST /entities/{id}/attrs (append; options=noOverwrite keeps existing instances)."""

    def apply(before: Doc | None, now: str) -> Outcome:
        if before is None and create_if_missing:
            return create_op(new)(None, now)
        before = _require(before, new.get("id", ""))
        doc = _cow(before)
        _merge_types(doc, new)
        if not overwrite and "scope" in new:
            # noOverwrite adds the fragment's scopes to the entity's instead of replacing them
            doc["scope"] = list(dict.fromkeys([*before.get("scope", []), *new["scope"]]))
        written: Attrs = {}
        not_updated: list[dict[str, str]] = []
        for iri, instances in new["attrs"].items():
            current = _own(doc, iri)
            for instance in instances:
                index = find_instance(current, instance.get("datasetId"))
                if index is not None and not overwrite:
                    not_updated.append({"attributeName": iri, "reason": NOT_UPDATED_EXISTS})
                    continue
                stamped = stamp_copy(instance, now, current[index] if index is not None else None)
                if index is None:
                    current.append(stamped)
                else:
                    current[index] = stamped
                written.setdefault(iri, []).append(stamped)
            if not current:
                del doc["attrs"][iri]
        changed = bool(written) or doc.get("type") != before.get("type") or doc.get("scope") != before.get("scope")
        if changed:
            _touch(doc, now)
        report = {"updated": list(written), "notUpdated": not_updated}
        return Outcome(doc, "update", frozenset(written), _history(written), result=report, changed=changed)

    return apply


SCOPE_IRI = "https://uri.etsi.org/ngsi-ld/scope"


def update_op(new: Doc) -> ApplyFn:
    """PATCH /entities/{id}/attrs (CIM 009 v1.9.1 §5.6.2.4): each instance replaces the one with its
    datasetId, or is appended; an NGSI-LD Null deletes it. New types are added; scope replaces the
    entity's scope only if it has one (otherwise it is reported as not updated)."""

    def apply(before: Doc | None, now: str) -> Outcome:
        base = _require(before, new.get("id", ""))
        doc: Doc = _cow(base)
        written: Attrs = {}
        not_updated: list[dict[str, str]] = []
        for iri, instances in new["attrs"].items():
            for instance in instances:
                if not _update_instance(doc, iri, instance, now, written):
                    not_updated.append({"attributeName": iri, "reason": NOT_UPDATED_NULL})
        if "type" in new:
            doc["type"] = list(dict.fromkeys([*doc.get("type", []), *new["type"]]))
        if "scope" in new:
            if doc.get("scope"):
                doc["scope"] = new["scope"]
            else:
                not_updated.append({"attributeName": SCOPE_IRI, "reason": NOT_UPDATED_SCOPE})
        changed = bool(written) or doc.get("type") != base.get("type") or doc.get("scope") != base.get("scope")
        if changed:
            _touch(doc, now)
        report = {"updated": list(written), "notUpdated": not_updated}
        return Outcome(doc, "update", frozenset(written), _history(written), result=report, changed=changed)

    return apply


def _update_instance(doc: Doc, iri: str, instance: dict[str, Any], now: str, written: Attrs) -> bool:
    """Replace, append or (NGSI-LD Null) delete one instance in `doc`; False if there was nothing to delete."""
    current = _own(doc, iri)
    index = find_instance(current, instance.get("datasetId"))
    if is_null_instance(instance):
        if index is not None:
            del current[index]
            written.setdefault(iri, [])
        if not current:
            del doc["attrs"][iri]
        return index is not None
    stamped = stamp_copy(instance, now, current[index] if index is not None else None)
    if index is None:
        current.append(stamped)
    else:
        current[index] = stamped
    written.setdefault(iri, []).append(stamped)
    return True


def _merge_instance(old: dict[str, Any], patch: dict[str, Any], now: str) -> dict[str, Any] | None:
    """Merge-patch semantics on one instance: members replaced, sub-attributes merged, null deletes."""
    # is_null_instance({"type": old.get("type"), **patch}) without building that dict (once per PATCH)
    attr_type: str = (patch["type"] if "type" in patch else old.get("type")) or "Property"  # None acts as Property
    if is_null_value(attr_type, patch.get(VALUE_KEY.get(attr_type, "value"))):
        return None
    merged: dict[str, Any] = dict(old)  # members are replaced below, never changed in place
    if patch.get("type") and patch["type"] != old.get("type"):
        for key in ("value", "object", "languageMap", "valueList", "objectList", "json", "vocab"):
            merged.pop(key, None)
    for key, value in patch.items():
        if ":" in key and isinstance(value, dict):
            if key in merged and isinstance(merged[key], dict):
                sub = _merge_instance(merged[key], value, now)
                if sub is None:
                    del merged[key]
                else:
                    merged[key] = sub
            elif not is_null_instance(value):
                merged[key] = stamp(json_copy(value), now)
        elif key == "languageMap" and isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = _value_copy(value)
    merged["modifiedAt"] = now
    return merged


merge_instance = _merge_instance  # the ingest writer merges decoded measures itself, else with this


InstanceMerge = Callable[[dict[str, Any], dict[str, Any], str], "dict[str, Any] | None"]


def merge_attrs(doc: Doc, new_attrs: Attrs, now: str, touched: set[str],
                copy: Callable[[Any], Any] = json_copy, merge: InstanceMerge | None = None) -> Attrs:
    """Merge-patch `new_attrs` into `doc["attrs"]` in place; returns the instances written, by attribute.

    A new datasetId is appended, an existing one merged (`merge`, default `merge_instance`), an
    NGSI-LD Null deletes. `copy` copies a new instance before it is stored; a caller that made the
    instances itself may pass a cheaper one.
    """
    merge_one = merge or _merge_instance
    written: Attrs = {}
    for iri, instances in new_attrs.items():
        current = doc["attrs"].setdefault(iri, [])
        for instance in instances:
            index = find_instance(current, instance.get("datasetId"))
            touched.add(iri)
            if index is None:
                if not is_null_instance(instance):
                    current.append(stamp(copy(instance), now))
                    written.setdefault(iri, []).append(current[-1])
                continue
            merged = merge_one(current[index], instance, now)
            if merged is None:
                del current[index]
            else:
                current[index] = merged
                written.setdefault(iri, []).append(merged)
        if not current:
            del doc["attrs"][iri]
    return written


history_rows = _history  # public: (attribute, instance) rows for the store's history of written instances


def merge_op(new: Doc, create_if_missing: bool = False) -> ApplyFn:
    """PATCH /entities/{id} (merge) and batch merge."""

    def apply(before: Doc | None, now: str) -> Outcome:
        if before is None and create_if_missing:
            return create_op(new)(None, now)
        doc = _cow(_require(before, new.get("id", "")))
        for iri in new["attrs"]:
            if iri in doc["attrs"]:
                _own(doc, iri)
        _merge_types(doc, new)
        touched: set[str] = set()
        written = merge_attrs(doc, new["attrs"], now, touched)
        _touch(doc, now)
        return Outcome(doc, "update", frozenset(touched), _history(written), result="merged")

    return apply


def partial_attr_op(iri: str, patch: dict[str, Any], dataset_id: str | None) -> ApplyFn:
    """PATCH /entities/{id}/attrs/{attrId}: merge members into one existing instance."""
    touched = frozenset([iri])  # made once, on the event loop: the writer runs `apply`

    def apply(before: Doc | None, now: str) -> Outcome:
        # The instance is found in `before` itself, and the working copy made once the patch is known to apply.
        entity = _require(before, "")
        instances = entity.get("attrs", {}).get(iri)
        index = find_instance(instances, dataset_id) if instances else None
        if index is None:
            which = (f" (datasetId {dataset_id})", f" with datasetId {dataset_id}") if dataset_id else ("", "")
            raise NotFound(f"속성 {iri}{which[0]} 없음 / attribute {iri}{which[1]} does not exist")
        old_type = instances[index].get("type")
        if "type" in patch and patch["type"] != old_type:
            # a partial update changes members of the attribute; replacing it is PUT .../attrs/{attrId}
            raise BadRequest(f"속성 {iri}은(는) {old_type}이며 부분 갱신으로 {patch['type']}(으)로 바꿀 수 없음 / "
                             f"attribute {iri} is a {old_type}; a partial update cannot make it a {patch['type']}")
        doc = _cow(entity)
        current = _own(doc, iri)
        merged = _merge_instance(current[index], patch, now)
        if merged is None:
            del current[index]
            if not current:
                del doc["attrs"][iri]
            history: tuple[tuple[str, dict[str, Any]], ...] = ()
        else:
            current[index] = merged
            history = ((iri, dict(merged)),)  # the store adds the instanceId to this copy only
        _touch(doc, now)
        return Outcome(doc, "update", touched, history, result="updated")

    return apply


def replace_attr_op(iri: str, instances: list[dict[str, Any]]) -> ApplyFn:
    """PUT /entities/{id}/attrs/{attrId}: the instance(s) with the same datasetId are replaced."""

    def apply(before: Doc | None, now: str) -> Outcome:
        doc = _cow(_require(before, ""))
        if iri not in doc["attrs"]:
            raise NotFound(f"속성 {iri} 없음 / attribute {iri} does not exist")
        current = _own(doc, iri)
        written = []
        for instance in instances:
            index = find_instance(current, instance.get("datasetId"))
            if index is None:
                raise NotFound(f"속성 {iri}에 datasetId {instance.get('datasetId')}인 인스턴스 없음 / "
                               f"attribute {iri} has no instance with datasetId {instance.get('datasetId')}")
            current[index] = stamp_copy(instance, now, current[index])
            written.append(current[index])
        _touch(doc, now)
        return Outcome(doc, "update", frozenset([iri]), tuple((iri, dict(w)) for w in written), result="updated")

    return apply


def delete_attr_op(iri: str, dataset_id: str | None, delete_all: bool) -> ApplyFn:
    def apply(before: Doc | None, now: str) -> Outcome:
        doc = _cow(_require(before, ""))
        if iri not in doc["attrs"]:
            raise NotFound(f"속성 {iri} 없음 / attribute {iri} does not exist")
        current = _own(doc, iri)
        if delete_all:
            del doc["attrs"][iri]
        else:
            index = find_instance(current, dataset_id)
            if index is None:
                raise NotFound(f"속성 {iri}에 datasetId {dataset_id}인 인스턴스 없음 / "
                               f"attribute {iri} has no instance with datasetId {dataset_id}")
            del current[index]
            if not current:
                del doc["attrs"][iri]
        _touch(doc, now)
        return Outcome(doc, "update", frozenset([iri]), (), result="deleted")

    return apply


def of_type(fn: ApplyFn, types: TypeExpr | None) -> ApplyFn:
    """`fn` on an entity of the selected types only (the optional `type` of §5.6.2.3): else 404."""
    if types is None:
        return fn

    def apply(before: Doc | None, now: str) -> Outcome:
        held = set((before or {}).get("type", ()))
        if before is not None and not any(held.issuperset(group) for group in types.any_of):
            raise EntityNotFound(f"엔티티 {before['id']}은(는) 선택한 유형이 아님 / "
                                 f"entity {before['id']} is not of the selected type")
        return fn(before, now)

    return apply


def check_same_id(body_id: Any, path_id: str) -> None:
    if body_id is not None and body_id != path_id:
        raise BadRequest(f"본문의 id({body_id})가 경로의 id({path_id})와 다름 / "
                         f"the id in the body ({body_id}) differs from the id in the path ({path_id})")
