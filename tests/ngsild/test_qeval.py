"""The Python q evaluator against the SQL compiler: same documents, same expressions, same answers."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.ngsild.test_qsql import ALL, CASES, DOCS, S1, S2, entity, prop, resolve
from ucity.ngsild.qeval import eval_q, q_terms
from ucity.ngsild.qlang import AttrPath, BooleanValue, Comparison, NumberValue, Op, QueryError, Range, StringValue, parse_q
from ucity.ngsild.qsql import compile_q_sqlite, register_sqlite_functions


@pytest.fixture(scope="module")
def conn() -> Iterator[sqlite3.Connection]:
    db = _database(DOCS)
    yield db
    db.close()


def _database(docs: list[dict[str, Any]]) -> sqlite3.Connection:
    db = sqlite3.connect(":memory:")
    register_sqlite_functions(db)
    db.execute("CREATE TABLE entities(eid INTEGER PRIMARY KEY, id TEXT, doc TEXT)")
    for doc in docs:
        db.execute("INSERT INTO entities(id, doc) VALUES (?, ?)", (doc["id"], json.dumps(doc)))
    return db


def sql_ids(conn: sqlite3.Connection, q: str) -> set[str]:
    fragment, params = compile_q_sqlite(parse_q(q), resolve)
    return {row[0] for row in conn.execute(f"SELECT e.id FROM entities e WHERE {fragment}", params)}


def eval_ids(q: str, docs: list[dict[str, Any]] = DOCS) -> set[str]:
    expr = parse_q(q)
    return {doc["id"] for doc in docs if eval_q(expr, doc, resolve)}


@pytest.mark.parametrize(("q", "expected"), CASES, ids=[case[0] for case in CASES])
def test_same_answers_as_sql_on_every_compiler_case(conn: sqlite3.Connection, q: str, expected: set[str]) -> None:
    assert eval_ids(q) == expected
    assert sql_ids(conn, q) == expected


def test_complements_partition_the_documents() -> None:
    for q in ("temperature", "status.reliability", "address[postal]", "temperature.observedAt", "label[ko]"):
        assert eval_ids(q) | eval_ids("!" + q) == ALL
        assert not eval_ids(q) & eval_ids("!" + q)


def test_document_without_attrs_matches_only_absence() -> None:
    bare = {"id": "urn:x:bare", "type": ["T"]}
    assert eval_q(parse_q("!a"), bare, resolve) is True
    assert eval_q(parse_q("a!=1"), bare, resolve) is False
    assert eval_q(parse_q("a"), bare, resolve) is False


def test_hand_built_trees_are_checked_like_the_compiler() -> None:
    doc = DOCS[0]
    with pytest.raises(QueryError):
        eval_q(Comparison(AttrPath("count"), Op.GT, BooleanValue(True)), doc, resolve)
    with pytest.raises(QueryError):
        eval_q(Comparison(AttrPath("count"), Op.EQ, Range(NumberValue(1), StringValue("z"))), doc, resolve)


def test_terms_include_sub_attributes_but_not_members_or_keys() -> None:
    assert q_terms(parse_q("a.b.c.observedAt>2024-01-01T00:00:00Z;d[k1][k2]|!e")) == {"a", "b", "c", "d", "e"}


def test_resolve_gives_the_iri_looked_up() -> None:
    doc = entity("urn:x:1", "T", temperature=[prop(5)])
    assert eval_q(parse_q("t==5"), doc, lambda term: resolve("temperature")) is True
    assert eval_q(parse_q("temperature==5"), doc, lambda term: "https://other.example/" + term) is False


# --- random expressions and random documents: the evaluator and SQL never disagree --------------

TOKENS = list('ab.[]();|!=<>~",:-0123456789TZ"\\ ')


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.sampled_from(TOKENS), max_size=30))
def test_random_text_agrees_with_sql(conn: sqlite3.Connection, text: str) -> None:
    try:
        expr = parse_q(text)
    except QueryError:
        return
    fragment, params = compile_q_sqlite(expr, resolve)
    expected = {row[0] for row in conn.execute(f"SELECT e.id FROM entities e WHERE {fragment}", params)}
    assert {doc["id"] for doc in DOCS if eval_q(expr, doc, resolve)} == expected


NAMES = ["temperature", "count", "name", "active", "installedAt", "address", "refBuilding", "label", "tags",
         "status", "status.reliability", "temperature.observedAt", "address[addressLocality]", "since",
         "openingTime", "readings", "config[level]", "big", "label[en]"]
VALUES = ["10", "21.5", "-5", "\"Alpha\"", "\"10\"", "true", "false", "2023-05-01T08:00:00Z", "2020-01-01",
          "09:00:00Z", "urn:ngsi-ld:Building:b1", "10..30", "\"A\"..\"Z\"", "1,10,\"beta\"", "0.5",
          "2022-01-01T00:00:00Z..2024-06-01T00:00:00Z", "1e21"]
OPERATORS = ["==", "!=", ">", ">=", "<", "<="]


@st.composite
def terms(draw: st.DrawFn) -> str:
    name = draw(st.sampled_from(NAMES))
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return name
    if kind == 1:
        return "!" + name
    if kind == 2:
        return name + draw(st.sampled_from(["~=", "!~="])) + draw(st.sampled_from(["^[A-Z]", "\"a|e\"", "(?i)alpha", "1"]))
    return name + draw(st.sampled_from(OPERATORS)) + draw(st.sampled_from(VALUES))


@st.composite
def expressions(draw: st.DrawFn) -> str:
    parts = draw(st.lists(terms(), min_size=1, max_size=4))
    text = parts[0]
    for part in parts[1:]:
        text += draw(st.sampled_from([";", "|"])) + part
    return f"({text})" if draw(st.booleans()) else text


@settings(max_examples=500, deadline=None)
@given(expressions())
def test_structured_expressions_agree_with_sql(conn: sqlite3.Connection, text: str) -> None:
    try:
        expr = parse_q(text)
    except QueryError:
        return
    try:
        fragment, params = compile_q_sqlite(expr, resolve)
    except QueryError:
        with pytest.raises(QueryError):
            for doc in DOCS:
                eval_q(expr, doc, resolve)
        return
    expected = {row[0] for row in conn.execute(f"SELECT e.id FROM entities e WHERE {fragment}", params)}
    assert {doc["id"] for doc in DOCS if eval_q(expr, doc, resolve)} == expected


JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**66), 2**66),
    st.floats(-1e6, 1e6, allow_nan=False),
    st.sampled_from(["a", "b", "10", "", "zz", "2024-01-01T00:00:00Z", "2024-01-01", "09:00:00Z", "Alpha"]),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(st.sampled_from(["k", "@value", "en", "ko"]), children, max_size=3),
    ),
    max_leaves=6,
)
QUERIES = ["v==10", "v!=10", "v>5", "v<=\"b\"", "v==\"a\"", "v!=\"a\"", "v==true", "v!=false", "v[k]==10",
           "v[k]", "!v[k]", "v==2024-01-01T00:00:00Z", "v>2023-01-01T00:00:00Z", "v==2024-01-01", "v<10:00:00Z",
           "v==1..100", "v==\"a\",10,true", "v~=a", "v!~=^1", "v[en]==\"a\"", "v.observedAt", "v==18446744073709551616",
           "v>1e19"]


@settings(max_examples=300, deadline=None)
@given(values=st.lists(JSON_VALUES, min_size=1, max_size=5), query=st.sampled_from(QUERIES),
       kinds=st.lists(st.sampled_from(["value", "languageMap", "json", "valueList"]), min_size=5, max_size=5))
def test_random_documents_agree_with_sql(values: list[Any], query: str, kinds: list[str]) -> None:
    docs = [entity(f"urn:x:{n}", "T", v=[{"type": "Property", kinds[n]: value}]) for n, value in enumerate(values)]
    db = _database(docs)
    try:
        fragment, params = compile_q_sqlite(parse_q(query), resolve)
        expected = {row[0] for row in db.execute(f"SELECT e.id FROM entities e WHERE {fragment}", params)}
    finally:
        db.close()
    assert eval_ids(query, docs) == expected


def test_multi_instance_semantics_any_instance(conn: sqlite3.Connection) -> None:
    # S2 has temperature 30 (default instance) and 15 (dataset "backup"): either instance may match.
    assert eval_ids("temperature==15") == {S2} == sql_ids(conn, "temperature==15")
    assert eval_ids("temperature!=30") == {S1, S2, "urn:ngsi-ld:Sensor:s3"}
