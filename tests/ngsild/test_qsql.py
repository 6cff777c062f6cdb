"""Tests for compiling NGSI-LD ``q`` to SQLite: real documents in an in-memory database."""

from __future__ import annotations

import json
import operator
import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, time, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ucity.ngsild.qlang import (
    And,
    AttrPath,
    BooleanValue,
    Comparison,
    Exists,
    NumberValue,
    Op,
    QueryError,
    Range,
    StringValue,
    parse_q,
)
from ucity.ngsild.qsql import (
    compile_q_sqlite,
    normalize_datetime_text,
    normalize_time_text,
    register_sqlite_functions,
    utc_datetime_text,
)

DEFAULT = "https://uri.etsi.org/ngsi-ld/default-context/"
TS = "2024-01-01T00:00:00.000000Z"


def resolve(term: str) -> str:
    return DEFAULT + term


def prop(value: Any, **members: Any) -> dict[str, Any]:
    return {"type": "Property", "value": value, "createdAt": TS, "modifiedAt": TS, **members}


def rel(obj: str, **members: Any) -> dict[str, Any]:
    return {"type": "Relationship", "object": obj, "createdAt": TS, "modifiedAt": TS, **members}


def lang(language_map: dict[str, Any]) -> dict[str, Any]:
    return {"type": "LanguageProperty", "languageMap": language_map, "createdAt": TS, "modifiedAt": TS}


def sub(name: str) -> str:
    """Sub-attribute key inside an instance: an expanded IRI, like top-level attribute names."""
    return DEFAULT + name


def entity(eid: str, etype: str, **attrs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": eid,
        "type": [DEFAULT + etype],
        "createdAt": TS,
        "modifiedAt": TS,
        "attrs": {DEFAULT + name: instances for name, instances in attrs.items()},
    }


S1, S2, S3, B1 = (
    "urn:ngsi-ld:Sensor:s1",
    "urn:ngsi-ld:Sensor:s2",
    "urn:ngsi-ld:Sensor:s3",
    "urn:ngsi-ld:Building:b1",
)
ALL = {S1, S2, S3, B1}

DOCS = [
    entity(
        S1,
        "Sensor",
        temperature=[prop(21.5, observedAt="2024-01-01T12:00:00.000000Z", unitCode="CEL")],
        count=[prop(10)],
        name=[prop("Alpha")],
        active=[prop(True)],
        installedAt=[prop({"@type": "DateTime", "@value": "2023-05-01T08:00:00Z"})],
        address=[prop({"streetAddress": "1 Sejong-daero", "addressLocality": "Seoul", "postal": {"code": "04524"}})],
        refBuilding=[rel(B1)],
        label=[lang({"ko": "온도계", "en": "thermometer"})],
        tags=[prop(["red", "blue"])],
        location=[{"type": "GeoProperty", "value": {"type": "Point", "coordinates": [126.978, 37.5665]}}],
        openingTime=[prop("09:00:00Z")],
    ),
    entity(
        S2,
        "Sensor",
        temperature=[
            prop(30, observedAt="2024-06-01T00:00:00.000000Z"),
            prop(15, datasetId="urn:ngsi-ld:Dataset:backup", observedAt="2023-12-31T23:59:59.999999Z"),
        ],
        count=[prop("10")],
        name=[prop("beta")],
        active=[prop(False)],
        installedAt=[prop("2024-02-29T10:00:00+09:00")],
        refBuilding=[rel("urn:ngsi-ld:Building:b2")],
        label=[lang({"en": ["probe", "sensor"]})],
        status=[prop("ok", **{sub("reliability"): prop(0.9)})],
        openingTime=[prop("18:30:00+09:00")],
        since=[prop("2020-01-01")],
    ),
    entity(
        S3,
        "Sensor",
        temperature=[prop(-5.0)],
        name=[prop('Gamma "3"')],
        installedAt=[prop("2022-01-01T00:00:00.5Z")],
        refBuilding=[{"type": "ListRelationship", "objectList": [B1, "urn:ngsi-ld:Building:b3"], "createdAt": TS}],
        category=[{"type": "VocabProperty", "vocab": "https://example.org/vocab/indoor", "createdAt": TS}],
        config=[{"type": "JsonProperty", "json": {"mode": "eco", "level": 3}, "createdAt": TS}],
        readings=[{"type": "ListProperty", "valueList": [1, 2, 3], "createdAt": TS}],
        status=[
            prop(
                "broken",
                **{sub("reliability"): prop(0.2, observedAt="2024-03-01T00:00:00.000000Z", unitCode="P1")},
            )
        ],
        **{"온도": [prop(1)]},
    ),
    entity(
        B1,
        "Building",
        name=[prop("Main Hall")],
        count=[prop(10.0)],
        since=[prop("2019-07-01")],
        address=[prop({"addressLocality": "Busan"})],
        big=[prop(2**70)],
    ),
]


@pytest.fixture(scope="module")
def conn() -> Iterator[sqlite3.Connection]:
    db = sqlite3.connect(":memory:")
    register_sqlite_functions(db)
    db.execute("CREATE TABLE entities(eid INTEGER PRIMARY KEY, tenant TEXT, id TEXT, doc TEXT)")
    for i, doc in enumerate(DOCS):
        # Half the documents escape non-ASCII (json.dumps' default), half keep it raw: both must match.
        text = json.dumps(doc, ensure_ascii=i % 2 == 0)
        db.execute("INSERT INTO entities(tenant, id, doc) VALUES (?, ?, ?)", ("city", doc["id"], text))
    db.execute(
        "INSERT INTO entities(tenant, id, doc) VALUES (?, ?, ?)",
        ("other", "urn:ngsi-ld:Sensor:x", json.dumps(entity("urn:ngsi-ld:Sensor:x", "Sensor", count=[prop(10)]))),
    )
    yield db
    db.close()


def ids(conn: sqlite3.Connection, q: str) -> set[str]:
    fragment, params = compile_q_sqlite(parse_q(q), resolve)
    assert fragment.count("?") == len(params)
    rows = conn.execute(f"SELECT e.id FROM entities e WHERE e.tenant = 'city' AND {fragment}", params)
    return {row[0] for row in rows}


CASES: list[tuple[str, set[str]]] = [
    # existence
    ("temperature", {S1, S2, S3}),
    ("!temperature", {B1}),
    ("status.reliability", {S2, S3}),
    ("!status.reliability", {S1, B1}),
    ("temperature.observedAt", {S1, S2}),
    ("status.reliability.observedAt", {S3}),
    ("address[postal][code]", {S1}),
    ("address[postal]", {S1}),
    ("address[addressLocality]", {S1, B1}),
    ("!address[postal]", {S2, S3, B1}),
    ("temperature.datasetId", {S2}),
    ("nothing", set()),
    ("온도", {S3}),
    # numbers: typed, any instance matches
    ("count==10", {S1, B1}),
    ("count!=10", {S2}),
    ('count=="10"', {S2}),
    ("temperature>20", {S1, S2}),
    ("temperature>=21.5", {S1, S2}),
    ("temperature<0", {S3}),
    ("temperature<=15", {S2, S3}),
    ("temperature==15", {S2}),
    ("temperature!=30", {S1, S2, S3}),
    ("temperature==-5", {S3}),
    ("temperature==10..20", {S2}),
    ("temperature==-10..21.5", {S1, S2, S3}),
    ("temperature!=10..25", {S2, S3}),
    ("temperature!=10..40", {S3}),
    ("temperature==30,21.5", {S1, S2}),
    ("temperature!=30,15", {S1, S3}),
    ("big>1e20", {B1}),
    ("big==1180591620717411303424", {B1}),
    ("온도==1", {S3}),
    # strings, URIs, relationships
    ('name=="Alpha"', {S1}),
    ('name=="alpha"', set()),
    ('name!="Alpha"', {S2, S3, B1}),
    ('name=="Gamma \\"3\\""', {S3}),
    ('name>"M"', {S2, B1}),
    ('name=="A".."Z"', {S1, S3, B1}),
    ('name=="Alpha","beta"', {S1, S2}),
    ('name=="x\' OR 1=1 --"', set()),
    (f"refBuilding=={B1}", {S1, S3}),
    (f'refBuilding=="{B1}"', {S1, S3}),
    ("refBuilding==urn:ngsi-ld:Building:b2,urn:ngsi-ld:Building:b3", {S2, S3}),
    (f"refBuilding!={B1}", {S2}),
    ("category==https://example.org/vocab/indoor", {S3}),
    # booleans
    ("active==true", {S1}),
    ("active==false", {S2}),
    ("active!=true", {S2}),
    ("active==true,false", {S1, S2}),
    # arrays: any element
    ('tags=="blue"', {S1}),
    ('tags!="blue"', set()),
    ('tags!="green"', {S1}),
    ("readings==2", {S3}),
    ("readings>2", {S3}),
    ("readings>3", set()),
    # language maps: any language, or one
    ('label=="thermometer"', {S1}),
    ('label=="온도계"', {S1}),
    ('label=="sensor"', {S2}),
    ('label[ko]=="온도계"', {S1}),
    ('label[en]=="온도계"', set()),
    ('label[en]=="probe"', {S2}),
    ('label~="^therm"', {S1}),
    # compound values and JsonProperty
    ('address[addressLocality]=="Seoul"', {S1}),
    ('address[addressLocality]!="Seoul"', {B1}),
    ('address[postal][code]=="04524"', {S1}),
    ('address=="Seoul"', set()),
    ('config[mode]=="eco"', {S3}),
    ("config[level]>=3", {S3}),
    ('location[type]=="Point"', {S1}),
    # sub-properties and instance members
    ("status.reliability>0.5", {S2}),
    ("status.reliability<0.5", {S3}),
    ('status.reliability.unitCode=="P1"', {S3}),
    ('temperature.unitCode=="CEL"', {S1}),
    ("temperature.observedAt>2024-03-01T00:00:00Z", {S2}),
    ("temperature.observedAt<2024-01-01T00:00:00Z", {S2}),
    ("temperature.observedAt==2024-01-01T21:00:00+09:00", {S1}),
    ("temperature.observedAt==2023-12-31T23:59:59.999999Z", {S2}),
    ("temperature.observedAt==2023-12-31T23:59:59.999998Z", set()),
    ("temperature.datasetId==urn:ngsi-ld:Dataset:backup", {S2}),
    ("temperature.datasetId==urn:ngsi-ld:Dataset:backup;temperature==15", {S2}),
    ("temperature.datasetId==urn:ngsi-ld:Dataset:backup;temperature==30", {S2}),
    ("temperature.createdAt==2024-01-01T00:00:00Z", {S1, S2, S3}),
    # datetimes in any stored precision or offset, and JSON-LD @value objects
    ("installedAt==2023-05-01T08:00:00Z", {S1}),
    ("installedAt==2023-05-01T17:00:00+09:00", {S1}),
    ("installedAt==2024-02-29T01:00:00Z", {S2}),
    ("installedAt==2022-01-01T00:00:00.500Z", {S3}),
    ("installedAt>2023-01-01T00:00:00Z", {S1, S2}),
    ("installedAt==2022-01-01T00:00:00Z..2023-06-01T00:00:00Z", {S1, S3}),
    ("installedAt!=2022-01-01T00:00:00Z..2023-06-01T00:00:00Z", {S2}),
    ('installedAt=="2024-02-29T10:00:00+09:00"', {S2}),
    ("name>2000-01-01T00:00:00Z", set()),
    # dates and times
    ("since==2020-01-01", {S2}),
    ("since<2020-01-01", {B1}),
    ("since==2019-01-01..2019-12-31", {B1}),
    ("openingTime==09:00:00Z", {S1}),
    ("openingTime==09:30:00Z", {S2}),
    ("openingTime<10:00:00Z", {S1, S2}),
    ("openingTime>09:00:00Z", {S2}),
    # regular expressions
    ("name~=^[A-Z]", {S1, S3, B1}),
    ("name~=(?i)^(alpha|beta)$", {S1, S2}),
    ("name!~=(?i)^(alpha|beta)$", {S3, B1}),
    ('name~="Hall|Gamma"', {S3, B1}),
    ("count~=10", {S2}),
    ("count!~=10", {S1, B1}),
    (f"refBuilding~={B1}$", {S1, S3}),
    # logic
    ("temperature>20;active==true", {S1}),
    ('temperature>20|name=="Main Hall"', {S1, S2, B1}),
    ("temperature<0|temperature>25;active==false", {S2, S3}),
    ("(temperature<0|temperature>25);active==false", {S2}),
    ("!temperature|status.reliability>0.5", {S2, B1}),
    ("(name~=a|name~=e);(count|since)", {S1, S2, B1}),
]


@pytest.mark.parametrize(("q", "expected"), CASES, ids=[case[0] for case in CASES])
def test_query_matches_exactly(conn: sqlite3.Connection, q: str, expected: set[str]) -> None:
    assert ids(conn, q) == expected


def test_every_entity_is_in_a_term_or_its_complement(conn: sqlite3.Connection) -> None:
    for q in ("temperature", "status.reliability", "address[postal]", "temperature.observedAt"):
        assert ids(conn, q) | ids(conn, "!" + q) == ALL
        assert not ids(conn, q) & ids(conn, "!" + q)


def test_values_travel_as_parameters_only() -> None:
    fragment, params = compile_q_sqlite(parse_q('name=="x\'); DROP TABLE entities; --"'), resolve)
    assert "DROP" not in fragment
    assert "x'); DROP TABLE entities; --" in params


def test_resolve_is_called_for_attribute_and_sub_attributes_not_members_or_keys() -> None:
    seen: list[str] = []

    def recording(term: str) -> str:
        seen.append(term)
        return resolve(term)

    compile_q_sqlite(parse_q("a.b.c.observedAt>2024-01-01T00:00:00Z;d[k1][k2]"), recording)
    assert seen == ["a", "b", "c", "d"]


def test_attribute_iri_with_quote_and_backslash_is_matched_exactly() -> None:
    db = sqlite3.connect(":memory:")
    register_sqlite_functions(db)
    db.execute("CREATE TABLE entities(eid INTEGER PRIMARY KEY, tenant TEXT, id TEXT, doc TEXT)")
    odd = 'https://example.org/we"ird\\name'
    doc = {"id": "urn:x:1", "attrs": {odd: [prop(1)]}}
    db.execute("INSERT INTO entities(tenant, id, doc) VALUES ('t', 'urn:x:1', ?)", (json.dumps(doc),))
    fragment, params = compile_q_sqlite(parse_q("w==1"), lambda _: odd)
    assert db.execute(f"SELECT e.id FROM entities e WHERE {fragment}", params).fetchall() == [("urn:x:1",)]


def test_fragment_composes_with_other_conditions(conn: sqlite3.Connection) -> None:
    fragment, params = compile_q_sqlite(parse_q("count==10"), resolve)
    rows = conn.execute(f"SELECT e.id FROM entities e WHERE e.tenant = ? AND {fragment}", ["other", *params])
    assert [row[0] for row in rows] == ["urn:ngsi-ld:Sensor:x"]


def test_hand_built_trees_are_checked() -> None:
    path = AttrPath("a")
    with pytest.raises(QueryError):
        compile_q_sqlite(Comparison(path, Op.GT, BooleanValue(True)), resolve)
    with pytest.raises(QueryError):
        compile_q_sqlite(Comparison(path, Op.EQ, Range(NumberValue(1), StringValue("z"))), resolve)
    sql, _ = compile_q_sqlite(And((Exists(path), Exists(path))), resolve)
    assert sql.startswith("(EXISTS")


def test_regexp_function() -> None:
    db = sqlite3.connect(":memory:")
    register_sqlite_functions(db)
    assert db.execute("SELECT 'abc' REGEXP 'b', 'abc' REGEXP '^b', NULL REGEXP 'a', 'a' REGEXP NULL").fetchone() == (
        1,
        0,
        0,
        0,
    )
    assert db.execute("SELECT regexp('[0-9]+', 'no 42')").fetchone() == (1,)


def test_datetime_normalisation() -> None:
    assert normalize_datetime_text("2024-01-01T09:00:00+09:00") == "2024-01-01T00:00:00.000000Z"
    assert normalize_datetime_text("2024-01-01T00:00:00.5Z") == "2024-01-01T00:00:00.500000Z"
    assert normalize_datetime_text("2024-01-01T00:00:00") == "2024-01-01T00:00:00.000000Z"
    assert normalize_datetime_text("2024-01-01") is None
    assert normalize_datetime_text("not a date at all") is None
    assert normalize_datetime_text(12) is None
    assert normalize_time_text("18:30:00+09:00") == "09:30:00.000000Z"
    assert normalize_time_text("01:00:00+09:00") == "16:00:00.000000Z"
    assert normalize_time_text("noon") is None
    assert utc_datetime_text(datetime(5, 1, 1, tzinfo=timezone(timedelta(hours=-1)))) == "0005-01-01T01:00:00.000000Z"
    # UTC instants outside years 1-9999 become the first or last one (they used to raise OverflowError).
    assert utc_datetime_text(datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=9)))) == "0001-01-01T00:00:00.000000Z"
    assert utc_datetime_text(datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-1)))) == \
        "9999-12-31T23:59:59.999999Z"


@settings(max_examples=200, deadline=None)
@given(st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=9))])))
def test_canonical_text_orders_like_datetimes(value: datetime) -> None:
    reference = datetime(2024, 1, 1, tzinfo=UTC)
    text = utc_datetime_text(value)
    assert normalize_datetime_text(text) == text
    assert (text < utc_datetime_text(reference)) == (value < reference)


@settings(max_examples=100, deadline=None)
@given(st.times(timezones=st.sampled_from([UTC, timezone(timedelta(hours=-3, minutes=-30))])))
def test_time_normalisation_is_idempotent(value: time) -> None:
    text = normalize_time_text(value.isoformat())
    assert text is not None and normalize_time_text(text) == text


# --- property: SQL agrees with a Python oracle on scalar comparisons ---------------------------

SCALARS = st.one_of(
    st.integers(-1000, 1000),
    st.floats(-1000, 1000, allow_nan=False),
    st.sampled_from(["a", "b", "10", "", "zz"]),
    st.booleans(),
)
OPS = {"==": Op.EQ, "!=": Op.NE, ">": Op.GT, ">=": Op.GE, "<": Op.LT, "<=": Op.LE}


def _kind(value: object) -> str:
    return "bool" if isinstance(value, bool) else "num" if isinstance(value, (int, float)) else "str"


_PY_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}


def _oracle(stored: object, op: str, query: object) -> bool:
    """Spec semantics for one scalar: types must agree, a mismatch is 'unequal'."""
    same = _kind(stored) == _kind(query)
    if op == "!=":
        return not (same and stored == query)
    return same and _PY_OPS[op](stored, query)


def _render(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value) if isinstance(value, str) else repr(value)


@settings(max_examples=300, deadline=None)
@given(
    stored=st.lists(SCALARS, min_size=1, max_size=6),
    op=st.sampled_from(sorted(OPS)),
    query=SCALARS,
)
def test_sql_agrees_with_oracle(stored: list[object], op: str, query: object) -> None:
    if isinstance(query, bool) and op not in ("==", "!="):
        query = 1
    db = sqlite3.connect(":memory:")
    register_sqlite_functions(db)
    db.execute("CREATE TABLE entities(eid INTEGER PRIMARY KEY, tenant TEXT, id TEXT, doc TEXT)")
    for n, value in enumerate(stored):
        doc = entity(f"urn:x:{n}", "T", v=[prop(value)])
        db.execute("INSERT INTO entities(tenant, id, doc) VALUES ('t', ?, ?)", (f"urn:x:{n}", json.dumps(doc)))
    fragment, params = compile_q_sqlite(parse_q(f"v{op}{_render(query)}"), resolve)
    got = {row[0] for row in db.execute(f"SELECT e.id FROM entities e WHERE {fragment}", params)}
    expected = {f"urn:x:{n}" for n, value in enumerate(stored) if _oracle(value, op, query)}
    assert got == expected


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list('ab.[]();|!=<>~",:-0123456789TZ"\\ ')), max_size=30))
def test_anything_that_parses_compiles_and_runs(conn: sqlite3.Connection, text: str) -> None:
    try:
        expr = parse_q(text)
    except QueryError:
        return
    fragment, params = compile_q_sqlite(expr, resolve)
    conn.execute(f"SELECT count(*) FROM entities e WHERE {fragment}", params).fetchone()
