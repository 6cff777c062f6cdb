"""NGSI-LD entities: validate the wire form and turn it into the stored form, and back.

The wire form is what clients send and receive (normalized, concise or keyValues, short names
compacted with their @context). The stored form is docs/storage.md: expanded names, each
attribute a list of instances. Everything here is pure: no I/O, no clock (the time is an argument).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Protocol

from ucity.core.clock import parse_iso, require_offset, to_iso
from ucity.core.errors import BadRequest, UcityError

NULL = "urn:ngsi-ld:null"
DEFAULT_VOCAB = "https://uri.etsi.org/ngsi-ld/default-context/"
ATTR_TYPES = {
    "Property", "Relationship", "GeoProperty", "LanguageProperty", "ListProperty", "JsonProperty",
    "VocabProperty", "ListRelationship",
}
VALUE_KEY = {
    "Property": "value", "GeoProperty": "value", "Relationship": "object", "LanguageProperty": "languageMap",
    "ListProperty": "valueList", "JsonProperty": "json", "VocabProperty": "vocab", "ListRelationship": "objectList",
}
# Members of an attribute instance that are not sub-attributes.
RESERVED = {
    "type", "value", "object", "languageMap", "valueList", "objectList", "json", "vocab", "datasetId",
    "observedAt", "unitCode", "createdAt", "modifiedAt", "deletedAt", "instanceId", "lang", "@context",
    "objectType", "previousValue", "previousObject", "previousLanguageMap", "previousValueList", "previousJson",
    "previousVocab",
}
ENTITY_RESERVED = {"id", "type", "@context", "scope", "createdAt", "modifiedAt", "deletedAt"}
GEO_ATTRS = {"location", "observationSpace", "operationSpace"}
GEOJSON_TYPES = {"Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon", "GeometryCollection"}
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:[^\s<>\"{}|\\^`]+$")
_FORBIDDEN_NAME = re.compile(r"[\s<>\"'=;()]")


class Ctx(Protocol):
    """The part of a compiled @context this module uses."""

    def expand_term(self, term: str) -> str: ...

    def compact_iri(self, iri: str) -> str: ...


def _is_geometry_type(value: Any) -> bool:
    """A GeoJSON geometry type name (a list or object there is none, and cannot be looked up in a set)."""
    return isinstance(value, str) and value in GEOJSON_TYPES


def is_geojson_geometry(value: Any) -> bool:
    """Whether a value is a GeoJSON geometry object (a concise GeoProperty is one)."""
    if not isinstance(value, dict) or not _is_geometry_type(value.get("type")):
        return False
    return "geometries" in value if value["type"] == "GeometryCollection" else "coordinates" in value


def is_null_value(attr_type: str, value: Any) -> bool:
    """Whether a value member is the NGSI-LD Null of its attribute type (CIM 009 §4.5.0, §4.6.5).

    A JsonProperty's `json` is opaque, so there the sentinel is data, never a marker.
    """
    if attr_type == "LanguageProperty":
        return bool(value == {"@none": NULL})
    return attr_type != "JsonProperty" and value == NULL


def is_null_instance(instance: dict[str, Any]) -> bool:
    """Whether an update/merge fragment instance is an NGSI-LD Null (a request to delete it)."""
    attr_type = instance.get("type", "Property")
    return is_null_value(attr_type, instance.get(VALUE_KEY.get(attr_type, "value")))


def is_uri(value: Any) -> bool:
    return isinstance(value, str) and bool(_URI.match(value))


def check_entity_id(value: Any) -> str:
    if value.__class__ is str and value in _VALID_IDS:
        return value
    if not is_uri(value):
        raise BadRequest(f"엔티티 id는 URI여야 함({value!r}) / entity id must be a URI, got {value!r}")
    if value.__class__ is str and len(value) <= _VALID_ID_MAX_LEN:
        if len(_VALID_IDS) >= _VALID_IDS_LIMIT:
            _VALID_IDS.clear()
        _VALID_IDS.add(value)
    return str(value)


# Entity ids checked before: a city's devices write the same entities over and over, and looking an id
# up (its hash is kept with the string, and the store's lookups reuse it) costs a fraction of the match.
# Bounded (ids come from clients): at most 32,768 ids of up to 128 characters, a few MiB at worst.
_VALID_IDS: set[str] = set()
_VALID_IDS_LIMIT = 32768
_VALID_ID_MAX_LEN = 128


# What a name names (`check_name`, `expand_name`), in Korean.
_WHAT_KO = {"attribute": "속성", "sub-attribute": "하위 속성", "metadata": "메타데이터", "type": "유형",
            "entity_type": "엔티티 유형"}


def check_name(name: str, what: str = "attribute") -> str:
    if not name or _FORBIDDEN_NAME.search(name):
        raise BadRequest(f"잘못된 {_WHAT_KO.get(what, what)} 이름 {name!r} / invalid {what} name {name!r}")
    return name


def expand_name(name: str, ctx: Ctx, what: str = "attribute") -> str:
    """The IRI of an attribute or entity type name: 400 for a name that does not expand to an IRI.

    The core @context maps `type` and `id` to the JSON-LD keywords `@type` and `@id`, and
    `@`-names are keywords: none of them can name an attribute or a type. A compiled context
    remembers the names it has expanded here (`name_memo`), so each is checked once.
    """
    memo: dict[str, str] | None = getattr(ctx, "name_memo", None)
    if memo is not None:
        known = memo.get(name)
        if known is not None:
            return known
    iri = ctx.expand_term(check_name(name, what))
    if iri.startswith("@") or not is_uri(iri):
        raise BadRequest(f"{name!r}은(는) 올바른 {_WHAT_KO.get(what, what)} 이름이 아님: IRI가 아닌 {iri!r}(으)로 확장됨 / "
                         f"{name!r} is not a valid {what} name: it expands to {iri!r}, not to an IRI")
    if memo is not None and len(memo) < _NAME_MEMO_LIMIT:
        memo[name] = iri
    return iri


_NAME_MEMO_LIMIT = 4096  # per context; names come from clients


def expand_attr_name(name: str, ctx: Ctx) -> str:
    """The IRI of an attribute name; entity members (`id`, `type`, `scope`, ...) are not attributes."""
    if name in ENTITY_RESERVED:
        raise BadRequest(f"{name!r}은(는) 속성 이름이 아니라 엔티티 구성원임 / "
                         f"{name!r} is an entity member, not an attribute name")
    return expand_name(name, ctx)


def normalize_time(value: Any, member: str) -> str:
    if not isinstance(value, str):
        raise BadRequest(f"{member}은(는) 날짜·시각 문자열이어야 함({value!r}) / "
                         f"{member} must be a date-time string, got {value!r}")
    known = _TIMES.get(value)
    if known is not None:
        return known
    try:
        require_offset(value, member)  # NGSI-LD times are UTC instants: no offset is a 400, not UTC (QA17 F4)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    try:
        normalized = to_iso(parse_iso(value))
    except ValueError as exc:  # not a date-time, or out of range (clock.parse_iso: 0002..9998 in UTC)
        if "out of range" in str(exc):
            raise BadRequest(f"{member}: 범위를 벗어난 날짜·시각 {value!r} / {member}: {exc}") from exc
        raise BadRequest(f"{member}이(가) 올바른 ISO 8601 날짜·시각이 아님: {value!r} / "
                         f"{member} is not a valid ISO 8601 date-time: {value!r}") from exc
    if len(_TIMES) >= 4096:
        _TIMES.clear()
    _TIMES[value] = normalized
    return normalized


# Date-times as sent -> stored form: the entities of a batch (or a device's readings) mostly share a few.
_TIMES: dict[str, str] = {}


# -- wire -> stored ------------------------------------------------------------------------------
def expand_types(value: Any, ctx: Ctx) -> list[str]:
    if value.__class__ is str:  # one type name, most often one the context has expanded before
        memo: dict[str, str] | None = getattr(ctx, "name_memo", None)
        known = memo.get(value) if memo is not None else None
        if known is not None:
            return [known]
    types = value if isinstance(value, list) else [value]
    if not types or not all(isinstance(t, str) and t for t in types):
        raise BadRequest(f"엔티티 유형은 비어 있지 않은 문자열이나 문자열 목록이어야 함({value!r}) / "
                         f"entity type must be a non-empty string or list of strings, got {value!r}")
    return list(dict.fromkeys(expand_name(t, ctx, "type") for t in types))


def normalize_entity(body: Any, ctx: Ctx, *, require_id: bool = True, require_type: bool = True,
                     allow_null: bool = False) -> dict[str, Any]:
    """Validate an entity in wire form and return its stored form (no timestamps yet)."""
    if not isinstance(body, dict):
        raise BadRequest("엔티티는 JSON 객체여야 함 / an entity must be a JSON object")
    doc: dict[str, Any] = {}
    memo: dict[str, str] | None = getattr(ctx, "name_memo", None)
    if "id" in body or require_id:
        doc["id"] = check_entity_id(body.get("id"))
    if "type" in body or require_type:
        if "type" not in body:
            raise BadRequest("엔티티 유형(type)이 없음 / entity type is missing")
        types = body["type"]
        known = memo.get(types) if memo is not None and types.__class__ is str else None  # expand_types' memo
        doc["type"] = [known] if known is not None else expand_types(types, ctx)
    if "scope" in body:
        doc["scope"] = normalize_scope(body["scope"])
    # The entity's own members are skipped here rather than filtered into a new dict first: a batch
    # normalizes thousands of entities, and each dict made and freed per entity shows in its CPU time.
    doc["attrs"] = _normalize_attrs(body, ctx, allow_null, ENTITY_RESERVED, memo)
    return doc


def normalize_owned_entity(body: Any, ctx: Ctx, require_type: bool = True,
                           allow_null: bool = False) -> tuple[dict[str, Any], bool]:
    """`normalize_entity(body, ctx, ...)` for a caller that hands `body` over (a batch's entities, parsed
    for it and used no more): (stored form, whether every instance is plain).

    The stored form is the one normalize_entity gives, but each plain attribute instance
    (`_plain_owned`) is the body's own dict, not a new one: a batch upsert normalizes a thousand
    entities per request, and a dict made (and the body's freed) per instance was about 8 % of the
    normalization (3.3 -> 3.05 us per entity of bench_ngsild's, alone). Plain instances have no
    sub-attributes, which spares `upsert_op` looking for them to stamp.
    """
    if body.__class__ is not dict or "scope" in body:
        return normalize_entity(body, ctx, require_type=require_type, allow_null=allow_null), False
    memo: dict[str, str] | None = getattr(ctx, "name_memo", None)
    if "type" in body:
        types = body["type"]
        known = memo.get(types) if memo is not None and types.__class__ is str else None  # expand_types' memo
        doc: dict[str, Any] = {"id": check_entity_id(body.get("id")),
                               "type": [known] if known is not None else expand_types(types, ctx)}
    elif require_type:
        check_entity_id(body.get("id"))  # normalize_entity's order: an invalid id is the error
        raise BadRequest("엔티티 유형(type)이 없음 / entity type is missing")
    else:
        doc = {"id": check_entity_id(body.get("id"))}
    attrs: dict[str, list[dict[str, Any]]] = {}
    plain = True
    for name, value in body.items():
        if name in ENTITY_RESERVED:
            continue
        if value.__class__ is dict and _plain_owned(value):
            instances = [value]
        else:  # as _normalize_attrs: the value first, then the name
            instances = normalize_attribute(name, value, ctx, allow_null)
            plain = False
        iri = memo.get(name) if memo is not None else None
        attrs[iri if iri is not None else expand_name(name, ctx)] = instances
    doc["attrs"] = attrs
    return doc, plain


def normalize_owned_batch(items: list[Any], ctx: Ctx, require_type: bool = True, allow_null: bool = False,
                          ) -> tuple[list[tuple[str, dict[str, Any]]], list[bool], list[tuple[Any, UcityError]]]:
    """`normalize_owned_entity` of each entity of a batch under one context, in one loop: (entity id and
    stored form of each valid one, whether each is plain, (entity id, error) of each invalid one).

    `items` is consumed as `normalize_owned_entity` consumes an entity: each leaves the list once
    normalized. The common entity (no scope, one type name the context has expanded, a URI as id,
    attributes of names the context has expanded that `_plain_owned` takes) is made here without the per-entity
    call; anything else goes to `normalize_owned_entity`, so that results and errors are its own.
    A batch upsert normalizes a thousand entities per request on the event loop.
    """
    docs: list[tuple[str, dict[str, Any]]] = []
    flags: list[bool] = []
    errors: list[tuple[Any, UcityError]] = []
    memo: dict[str, str] | None = getattr(ctx, "name_memo", None)
    if memo is None:  # no memo of names: the general path decides everything
        memo = {}
    reserved = ENTITY_RESERVED
    valid_ids = _VALID_IDS
    for n, item in enumerate(items):
        items[n] = None
        if item.__class__ is dict and "scope" not in item:
            entity_id = item.get("id")
            types = item.get("type")
            known = memo.get(types) if types.__class__ is str else None
            # (an id not among those checked before, e.g. beyond the bound of a large city's, is checked here)
            if known is not None and entity_id.__class__ is str and (entity_id in valid_ids or is_uri(entity_id)):
                attrs: dict[str, list[dict[str, Any]]] = {}
                for name, value in item.items():
                    if name in reserved:
                        continue
                    iri = memo.get(name)
                    if iri is None or value.__class__ is not dict or not _plain_owned(value):
                        break
                    attrs[iri] = [value]
                else:
                    docs.append((entity_id, {"id": entity_id, "type": [known], "attrs": attrs}))
                    flags.append(True)
                    continue
        try:
            doc, only_plain = normalize_owned_entity(item, ctx, require_type, allow_null)
        except UcityError as exc:
            errors.append((item.get("id") if isinstance(item, dict) else None, exc))
            continue
        entity_id = item.get("id")
        docs.append((entity_id if entity_id.__class__ is str else str(entity_id), doc))
        flags.append(only_plain)
    return docs, flags, errors


def normalize_scope(value: Any) -> list[str]:
    scopes = value if isinstance(value, list) else [value]
    for scope in scopes:
        if not isinstance(scope, str) or not re.match(r"^/[^\s]*$", scope):
            raise BadRequest(f"잘못된 scope {scope!r}: scope는 '/'로 시작함 / invalid scope {scope!r}: scopes start with '/'")
    return list(scopes)


def normalize_attrs(attrs: dict[str, Any], ctx: Ctx, allow_null: bool = False) -> dict[str, list[dict[str, Any]]]:
    return _normalize_attrs(attrs, ctx, allow_null, _NO_MEMBERS, getattr(ctx, "name_memo", None))


_NO_MEMBERS: frozenset[str] = frozenset()


def _normalize_attrs(attrs: dict[str, Any], ctx: Ctx, allow_null: bool, skip: frozenset[str] | set[str],
                     memo: dict[str, str] | None) -> dict[str, list[dict[str, Any]]]:
    """The attributes of `attrs` (every member but those in `skip`) in stored form; `memo` is the
    context's `name_memo` (expand_name)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for name, value in attrs.items():
        if name in skip:
            continue
        # The value first, then the name (as `out[expand_name(...)] = normalize_attribute(...)` did):
        # an entity with both wrong reports its value's error.
        plain = _plain_instance(value) if value.__class__ is dict else None
        instances = [plain] if plain is not None else normalize_attribute(name, value, ctx, allow_null)
        iri = memo.get(name) if memo is not None else None
        out[iri if iri is not None else expand_name(name, ctx)] = instances
    return out


_PLAIN_KEYS = {"Property": "value", "Relationship": "object", "GeoProperty": "value"}


def _plain_instance(value: dict[str, Any]) -> dict[str, Any] | None:
    """`normalize_instance` of the common attribute, or None for the general path to decide.

    Common: a normalized Property, Relationship (to one URI) or GeoProperty (a Point) whose other
    members are only observedAt (a date-time seen before), datasetId and unitCode. None for anything
    else (sub-attributes, the NGSI-LD Null, any member to ignore, any invalid value), so that
    `normalize_instance` gives the result and every error; for what it accepts here it gives the same
    instance, members in the same order (tests/ngsild/test_model.py compares both on varied input).
    """
    attr_type = value.get("type")
    if attr_type.__class__ is not str:
        return None
    key = _PLAIN_KEYS.get(attr_type)
    if key is None:
        return None
    member = value.get(key)
    if not _plain_member(attr_type, member):
        return None
    instance: dict[str, Any] = {"type": attr_type, key: member}
    if len(value) == 2:  # type and the value member (present: it passed the checks above), nothing else
        return instance
    for name, item in value.items():
        if name == "type" or name == key:
            continue
        if name == "observedAt":
            known = _TIMES.get(item) if item.__class__ is str else None
            if known is None:
                return None
            instance["observedAt"] = known
        elif name == "datasetId":
            if item.__class__ is not str or item == NULL or not _URI.match(item):
                return None
            instance["datasetId"] = item
        elif name == "unitCode":
            if item.__class__ is not str:
                return None
            instance["unitCode"] = item
        else:
            return None
    return instance


def _plain_member(attr_type: str, member: Any) -> bool:
    """Whether the value member of a plain instance of `attr_type` (a key of `_PLAIN_KEYS`) is one the
    plain paths store as sent: a Property's non-Null value, a Relationship's URI, a GeoProperty's Point."""
    if attr_type == "Property":  # (a typed value {"@type": "DateTime", "@value": ...} is checked: _check_value)
        return member is not None and member != NULL and (member.__class__ is not dict or "@value" not in member)
    if attr_type == "Relationship":
        return member.__class__ is str and member != NULL and _URI.match(member) is not None
    return _plain_point(member)


def _plain_owned(value: dict[str, Any]) -> bool:
    """Whether `value` itself is its stored instance, as `_plain_instance(value)` would make it: True
    after replacing its observedAt by the stored form (the only member that differs), False (and
    `value` as it was) for the general path to decide.

    Only for a caller that owns `value`, and only when its members already come in the order
    `normalize_instance` writes them (type, then the value member, then the others as sent), so that
    the stored instance is the same member for member; tests/ngsild/test_model.py compares both.
    """
    names = iter(value)
    if next(names, None) != "type":
        return False
    attr_type = value["type"]
    if attr_type.__class__ is not str:
        return False
    # `_plain_member` inline, the usual types first: this runs for every attribute of a batch upsert
    if attr_type == "Property":
        if next(names, None) != "value":
            return False
        member = value["value"]
        if member is None or member == NULL or (member.__class__ is dict and "@value" in member):
            return False
    elif attr_type == "GeoProperty":
        if next(names, None) != "value" or not _plain_point(value["value"]):
            return False
    elif attr_type == "Relationship":
        if next(names, None) != "object":
            return False
        member = value["object"]
        if member.__class__ is not str or member == NULL or _URI.match(member) is None:
            return False
    else:
        return False
    observed = None
    for name in names:
        item = value[name]
        if name == "observedAt":
            observed = _TIMES.get(item) if item.__class__ is str else None
            if observed is None:
                return False
        elif name == "datasetId":
            if item.__class__ is not str or item == NULL or not _URI.match(item):
                return False
        elif name == "unitCode":
            if item.__class__ is not str:
                return False
        else:
            return False
    if observed is not None:
        value["observedAt"] = observed
    return True


def _plain_point(value: Any) -> bool:
    """Whether a GeoProperty value is a GeoJSON Point that `geo.validate_geojson` accepts (a position
    of 2 or 3 finite numbers, longitude and latitude in range); False leaves it to that check."""
    if value.__class__ is not dict or value.get("type") != "Point":
        return False
    position = value.get("coordinates")
    if position.__class__ is not list:
        return False
    size = len(position)
    if size == 2:
        lon, lat = position
    elif size == 3:
        lon, lat, altitude = position
        kind = altitude.__class__
        if kind is float:
            if not math.isfinite(altitude):
                return False
        elif kind is not int:
            return False
    else:
        return False
    kind = lon.__class__
    if kind is not float and kind is not int:
        return False
    kind = lat.__class__
    if kind is not float and kind is not int:
        return False
    # the ranges also refuse NaN and the infinities (every comparison with NaN is false)
    return bool(-180 <= lon <= 180 and -90 <= lat <= 90)


def normalize_attribute(name: str, value: Any, ctx: Ctx, allow_null: bool = False) -> list[dict[str, Any]]:
    """All instances of one attribute (a multi-attribute is a JSON array of instances)."""
    if isinstance(value, list) and value and all(isinstance(v, dict) and _looks_like_instance(v) for v in value):
        instances = [normalize_instance(name, v, ctx, allow_null) for v in value]
    else:
        return [normalize_instance(name, value, ctx, allow_null)]  # one instance: no datasetId to repeat
    seen: set[str | None] = set()
    for instance in instances:
        dataset = instance.get("datasetId")
        if dataset in seen:
            raise BadRequest(f"속성 {name!r}에 datasetId {dataset!r}인 인스턴스가 둘 있음 / "
                             f"attribute {name!r} has two instances with datasetId {dataset!r}")
        seen.add(dataset)
    return instances


_INSTANCE_MEMBERS = frozenset({"type", "value", "object", "languageMap", "valueList", "objectList", "json", "vocab"})


def _looks_like_instance(value: dict[str, Any]) -> bool:
    return not _INSTANCE_MEMBERS.isdisjoint(value)


def looks_like_instance(value: dict[str, Any]) -> bool:
    """Whether a JSON object is an attribute instance (it has `type`, `value`, `object`, ...), not an object of
    attributes by name: how a body that may be either (a temporal instance PATCH) is told apart."""
    return not _INSTANCE_MEMBERS.isdisjoint(value)


_INFERRED = (("Relationship", "object"), ("LanguageProperty", "languageMap"), ("ListProperty", "valueList"),
             ("JsonProperty", "json"), ("VocabProperty", "vocab"), ("ListRelationship", "objectList"))
_INFERRED_KEYS = frozenset(key for _, key in _INFERRED)


def _infer_type(name: str, value: dict[str, Any]) -> str:
    if not _INFERRED_KEYS.isdisjoint(value):  # one C-level test for the common `{"value": ...}`
        for attr_type, key in _INFERRED:
            if key in value:
                return attr_type
    if name in GEO_ATTRS and isinstance(value.get("value"), dict) and _is_geometry_type(value["value"].get("type")):
        return "GeoProperty"
    return "Property"


def normalize_instance(name: str, value: Any, ctx: Ctx, allow_null: bool = False) -> dict[str, Any]:
    """One attribute instance in stored form, validated."""
    if value == NULL and allow_null:
        return {"type": "Property", "value": NULL}
    if is_geojson_geometry(value):
        value = {"type": "GeoProperty", "value": value}  # concise GeoProperty
    elif not isinstance(value, dict) or not _looks_like_instance(value):
        if isinstance(value, dict) and not value:
            raise BadRequest(f"속성 {name!r}이(가) 비어 있음 / attribute {name!r} is empty")
        else:
            value = {"value": value}  # concise Property
    attr_type = value.get("type") or _infer_type(name, value)
    if not isinstance(attr_type, str) or attr_type not in ATTR_TYPES:  # a list or object is no type either
        raise BadRequest(f"속성 {name!r}의 유형 {attr_type!r}을(를) 알 수 없음 / "
                         f"attribute {name!r} has unknown type {attr_type!r}")
    key = VALUE_KEY[attr_type]
    if key not in value:
        raise BadRequest(f"{attr_type} 속성 {name!r}에는 {key!r} 구성원이 필요함 / "
                         f"attribute {name!r} of type {attr_type} needs a {key!r} member")
    instance: dict[str, Any] = {"type": attr_type, key: _check_value(name, attr_type, value[key], allow_null)}
    for member, member_value in value.items():
        if member in ("type", key, "createdAt", "modifiedAt", "instanceId", "@context"):
            continue
        if member == "observedAt":
            instance["observedAt"] = normalize_time(member_value, "observedAt")
        elif member == "datasetId":
            if not is_uri(member_value) or member_value == NULL:
                # §5.5.8: "A datasetId cannot be deleted by setting it to the value urn:ngsi-ld:null".
                raise BadRequest(f"{name!r}의 datasetId는 NGSI-LD Null이 아닌 URI여야 함({member_value!r}) / "
                                 f"datasetId of {name!r} must be a URI other than the NGSI-LD Null, got {member_value!r}")
            instance["datasetId"] = member_value
        elif member == "unitCode":
            if not isinstance(member_value, str):
                raise BadRequest(f"{name!r}의 unitCode는 문자열이어야 함 / unitCode of {name!r} must be a string")
            instance["unitCode"] = member_value
        elif member in RESERVED:
            continue
        else:
            sub = normalize_instance(member, member_value, ctx, allow_null)
            instance[expand_name(member, ctx, "sub-attribute")] = sub
    return instance


def _check_value(name: str, attr_type: str, value: Any, allow_null: bool) -> Any:
    if value is None:
        raise BadRequest(f"속성 {name!r}의 값이 null임 / attribute {name!r} has a null value")
    if is_null_value(attr_type, value):
        if not allow_null:
            raise BadRequest(f"속성 {name!r}: NGSI-LD Null은 갱신이나 병합에서만 쓸 수 있음 / "
                             f"attribute {name!r}: the NGSI-LD Null is only allowed in an update or merge")
        return value
    if attr_type == "Relationship":
        objects = value if isinstance(value, list) else [value]
        if not objects or not all(is_uri(o) for o in objects):
            raise BadRequest(f"관계 {name!r}은(는) URI를 가리켜야 함({value!r}) / "
                             f"relationship {name!r} must point to a URI, got {value!r}")
    elif attr_type == "GeoProperty":
        from ucity.ngsild.geo import GeoQueryError, validate_geojson

        try:
            validate_geojson(value)
        except GeoQueryError as exc:
            raise BadRequest(exc.bilingual(f"GeoProperty {name!r}이(가) 올바른 GeoJSON이 아님",
                                           f"GeoProperty {name!r} is not valid GeoJSON")) from exc
    elif attr_type == "LanguageProperty":
        if not isinstance(value, dict) or not all(isinstance(v, (str, list)) for v in value.values()):
            raise BadRequest(f"{name!r}의 languageMap은 언어 태그를 문자열에 대응시켜야 함 / "
                             f"languageMap of {name!r} must map language tags to strings")
    elif attr_type in ("ListProperty", "ListRelationship") and not isinstance(value, list):
        raise BadRequest(f"{attr_type} {name!r}에는 JSON 배열이 필요함 / {attr_type} {name!r} needs a JSON array")
    elif isinstance(value, dict) and value.get("@type") in DATETIME_TYPES and isinstance(value.get("@value"), str):
        try:  # a DateTime value ({"@type": "DateTime", "@value": ...}) is a UTC instant too (QA17 F4)
            require_offset(value["@value"], name)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
    return value


DATETIME_TYPES = ("DateTime", "ngsi-ld:DateTime", "https://uri.etsi.org/ngsi-ld/DateTime")


# -- timestamps -------------------------------------------------------------------------------------
def stamp(instance: dict[str, Any], now: str, previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """Set createdAt (kept from the previous instance) and modifiedAt on an instance and its subs."""
    instance["createdAt"] = (previous or {}).get("createdAt", now)
    instance["modifiedAt"] = now
    for key, sub in instance.items():
        if ":" in key and isinstance(sub, dict):
            stamp(sub, now, (previous or {}).get(key))
    return instance


def stamp_copy(instance: dict[str, Any], now: str, previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """`stamp(json_copy(instance), now, previous)` copying only what stamping changes: the instance and
    its sub-attributes. Values stay shared with `instance` (a request's own objects): after a commit
    documents are read only, and a deep copy per written instance cost more than the rest of the op."""
    out = dict(instance)
    out["createdAt"] = previous.get("createdAt", now) if previous else now
    out["modifiedAt"] = now
    for key, sub in instance.items():
        if ":" in key and isinstance(sub, dict):
            out[key] = stamp_copy(sub, now, previous.get(key) if previous else None)
    return out


def find_instance(instances: list[dict[str, Any]], dataset_id: str | None) -> int | None:
    for index, instance in enumerate(instances):
        if instance.get("datasetId") == dataset_id:
            return index
    return None


# -- stored -> wire --------------------------------------------------------------------------------
@dataclass(frozen=True)
class RenderOptions:
    """How an entity is shown: format, system attributes and projection."""

    fmt: str = "normalized"  # normalized | concise | keyValues
    sys_attrs: bool = False
    attrs: frozenset[str] | None = None  # attribute IRIs to keep (attrs / pick)
    omit: frozenset[str] = frozenset()  # attribute IRIs to drop
    pick_id: bool = True
    pick_type: bool = True
    pick_scope: bool = True
    lang: str | None = None
    dataset_ids: frozenset[str] | None = None
    keep_null_value: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def render_entity(doc: dict[str, Any], ctx: Ctx, opts: RenderOptions) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if opts.pick_id:
        out["id"] = doc["id"]
    if opts.pick_type:
        types = [ctx.compact_iri(t) for t in doc.get("type", [])]
        out["type"] = types[0] if len(types) == 1 else types
    if doc.get("scope") and opts.pick_scope:
        out["scope"] = doc["scope"] if len(doc["scope"]) > 1 else doc["scope"][0]
    if opts.sys_attrs:
        out["createdAt"] = doc.get("createdAt")
        out["modifiedAt"] = doc.get("modifiedAt")
    for iri, instances in doc.get("attrs", {}).items():
        if (opts.attrs is not None and iri not in opts.attrs) or iri in opts.omit:
            continue
        chosen = instances
        if opts.dataset_ids is not None:
            chosen = [i for i in instances if (i.get("datasetId") or "@none") in opts.dataset_ids]
        if not chosen:
            continue
        rendered = [render_instance(i, ctx, opts) for i in chosen]
        if len(rendered) == 1:
            out[ctx.compact_iri(iri)] = rendered[0]
        elif opts.fmt == "keyValues":
            # §4.5.4: simplified instances keyed by datasetId ("@none" for the default), as Stellio does;
            # a bare array would lose which value came from which dataset.
            datasets = {i.get("datasetId", "@none"): r for i, r in zip(chosen, rendered, strict=True)}
            out[ctx.compact_iri(iri)] = {"dataset": datasets}
        else:
            out[ctx.compact_iri(iri)] = rendered
    return out


_WRAPPED_IN_KEY_VALUES = frozenset({"LanguageProperty", "JsonProperty", "VocabProperty"})


def render_instance(instance: dict[str, Any], ctx: Ctx, opts: RenderOptions) -> Any:
    attr_type = instance.get("type", "Property")
    key = VALUE_KEY.get(attr_type, "value")
    if opts.fmt == "keyValues":
        if attr_type == "LanguageProperty" and opts.lang:
            return _pick_lang(instance.get(key, {}), opts.lang)[0]
        if attr_type in _WRAPPED_IN_KEY_VALUES:
            # §4.5.4: these stay a one-member object so that they are not mistaken for a Property value.
            return {key: instance.get(key)}
        return instance.get(key)
    out: dict[str, Any] = {}
    concise = opts.fmt == "concise"
    if not concise or attr_type in ("GeoProperty", "JsonProperty", "VocabProperty", "ListRelationship"):
        out["type"] = attr_type
    if attr_type == "LanguageProperty" and opts.lang:
        value, lang = _pick_lang(instance.get(key, {}), opts.lang)
        out["type"] = "Property"
        out["value"] = value
        out["lang"] = lang
    else:
        out[key] = instance.get(key)
    for member, member_value in instance.items():
        if member in ("type", key, "instanceId"):
            continue
        if member in ("createdAt", "modifiedAt"):
            if opts.sys_attrs:
                out[member] = member_value
        elif ":" in member:
            out[ctx.compact_iri(member)] = render_instance(member_value, ctx, opts)
        else:
            out[member] = member_value
    if concise and set(out) == {"value"}:
        return out["value"]
    return out


def _pick_lang(language_map: dict[str, Any], wanted: str) -> tuple[Any, str]:
    """The best value of a language map for a `lang` parameter (`ko`, `en,ko`, `*`)."""
    for tag in [t.split(";")[0].strip() for t in wanted.split(",")]:
        if tag == "*" and language_map:
            first = next(iter(language_map))
            return language_map[first], first
        if tag in language_map:
            return language_map[tag], tag
    if "@none" in language_map:
        return language_map["@none"], "@none"
    if language_map:
        first = next(iter(language_map))
        return language_map[first], first
    return None, wanted


def default_geometry(doc: dict[str, Any], iri: str) -> Any:
    """The GeoJSON geometry of a stored entity's GeoProperty: its default instance (§4.5.16.1), or None."""
    instances = doc.get("attrs", {}).get(iri, [])
    index = find_instance(instances, None)
    value = instances[index].get("value") if index is not None else None
    return value if is_geojson_geometry(value) else None


def to_geojson_feature(entity: dict[str, Any], geometry: Any) -> dict[str, Any]:
    """A rendered entity as a GeoJSON Feature (Accept: application/geo+json, §4.5.16.2)."""
    props = {k: v for k, v in entity.items() if k not in ("id", "@context")}
    return {"id": entity.get("id"), "type": "Feature", "geometry": geometry, "properties": props}
