"""The PostgreSQL ``q`` compiler against the SQLite one's table of cases, on a real PostgreSQL server.

The cases (documents, queries, expected ids) are test_qsql's, unchanged: both dialects must select
exactly the same entities. Also here: the hypothesis oracle on scalar comparisons, SQL injection,
odd attribute IRIs, the datetime functions of the schema, and that a selective ``q`` uses the
GIN index.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.ngsild.test_qsql import (
    ALL,
    CASES,
    DOCS,
    OPS,
    SCALARS,
    _oracle,
    _render,
    entity,
    prop,
    resolve,
)
from tests.pgserver import PostgresServer, SyncPg
from ucity.ngsild.qlang import QueryError, parse_q
from ucity.ngsild.qpg import compile_q_postgres
from ucity.store.postgres import init_connection
from ucity.store.sql import numbered


@pytest.fixture(scope="module")
def pg(postgres_server: PostgresServer) -> Iterator[SyncPg]:
    name = postgres_server.create_database()
    db = SyncPg(postgres_server.dsn(name))
    db.run(init_connection(db.conn))
    for doc in DOCS:
        insert(db, "city", doc)
    insert(db, "other", entity("urn:ngsi-ld:Sensor:x", "Sensor", count=[prop(10)]))
    yield db
    db.close()
    postgres_server.drop_database(name)


def insert(db: SyncPg, tenant: str, doc: dict[str, Any]) -> None:
    db.execute("INSERT INTO entities (tenant, id, types, doc, created_at, modified_at) VALUES ($1, $2, $3, $4, '', '')",
               tenant, doc["id"], doc["type"], doc)


def select(db: SyncPg, where: str, params: list[object], tenant: str = "city") -> set[str]:
    sql = numbered(f"SELECT e.id FROM entities e WHERE e.tenant = ? AND {where}")
    return {row[0] for row in db.fetch(sql, tenant, *params)}


def ids(db: SyncPg, q: str) -> set[str]:
    fragment, params = compile_q_postgres(parse_q(q), resolve)
    assert len(set(re.findall(r"\$\d+", numbered(fragment)))) == len(params)
    return select(db, fragment, params)


@pytest.mark.parametrize(("q", "expected"), CASES, ids=[case[0] for case in CASES])
def test_query_matches_exactly_as_on_sqlite(pg: SyncPg, q: str, expected: set[str]) -> None:
    assert ids(pg, q) == expected


def test_every_entity_is_in_a_term_or_its_complement(pg: SyncPg) -> None:
    for q in ("temperature", "status.reliability", "address[postal]", "temperature.observedAt"):
        assert ids(pg, q) | ids(pg, "!" + q) == ALL
        assert not ids(pg, q) & ids(pg, "!" + q)


def test_values_travel_as_parameters_only(pg: SyncPg) -> None:
    fragment, params = compile_q_postgres(parse_q('name=="x\'); DROP TABLE entities; --"'), resolve)
    assert "DROP" not in fragment
    assert "x'); DROP TABLE entities; --" in params
    assert ids(pg, 'name=="x\'); DROP TABLE entities; --"') == set()


def test_attribute_iri_with_quote_and_backslash_is_matched_exactly(pg: SyncPg) -> None:
    odd = 'https://example.org/we"ird\\name\'s'
    insert(pg, "odd", {"id": "urn:x:1", "type": [], "attrs": {odd: [prop(1)]}})
    fragment, params = compile_q_postgres(parse_q("w==1"), lambda _: odd)
    assert select(pg, fragment, params, "odd") == {"urn:x:1"}


def test_fragment_composes_with_other_conditions(pg: SyncPg) -> None:
    fragment, params = compile_q_postgres(parse_q("count==10"), resolve)
    assert select(pg, fragment, params, "other") == {"urn:ngsi-ld:Sensor:x"}


def test_the_schema_normalises_datetimes_like_python(pg: SyncPg) -> None:
    from ucity.ngsild.qsql import normalize_datetime_text, normalize_time_text

    datetimes = ["2024-01-01T09:00:00+09:00", "2024-01-01T00:00:00.5Z", "2024-01-01T00:00:00", "2024-01-01",
                 "not a date at all", "2024-01-01 23:30-05:30", "2024-02-29T10:00:00+0900", "2023-12-31T23:59:59,25Z",
                 "2024-13-01T00:00:00Z", "2024-01-01T00:00:00.123456789Z"]
    for text in datetimes:
        got = pg.fetch("SELECT ucity_datetime($1)", text)[0][0]
        assert got == normalize_datetime_text(text), text
    for text in ["18:30:00+09:00", "01:00:00+09:00", "noon", "09:00", "23:59:59.5-01:00", "25:00:00"]:
        assert pg.fetch("SELECT ucity_time($1)", text)[0][0] == normalize_time_text(text), text


def test_a_selective_q_reads_the_gin_index(pg: SyncPg) -> None:
    pg.execute("SET enable_seqscan = off")  # the table is tiny: make the planner show what it can use
    try:
        fragment, params = compile_q_postgres(parse_q("temperature>20"), resolve)
        plan = "\n".join(r[0] for r in pg.fetch(numbered(f"EXPLAIN SELECT e.id FROM entities e WHERE {fragment}"),
                                                 *params))
    finally:
        pg.execute("RESET enable_seqscan")
    assert "entities_attr_names" in plan


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    stored=st.lists(SCALARS, min_size=1, max_size=6),
    op=st.sampled_from(sorted(OPS)),
    query=SCALARS,
)
def test_sql_agrees_with_oracle(pg: SyncPg, stored: list[object], op: str, query: object) -> None:
    if isinstance(query, bool) and op not in ("==", "!="):
        query = 1
    pg.execute("DELETE FROM entities WHERE tenant = 'oracle'")
    for n, value in enumerate(stored):
        insert(pg, "oracle", entity(f"urn:x:{n}", "T", v=[prop(value)]))
    fragment, params = compile_q_postgres(parse_q(f"v{op}{_render(query)}"), resolve)
    expected = {f"urn:x:{n}" for n, value in enumerate(stored) if _oracle(value, op, query)}
    assert select(pg, fragment, params, "oracle") == expected


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=st.sampled_from(list('ab.[]();|!=<>~",:-0123456789TZ"\\ ')), max_size=30))
def test_anything_that_parses_compiles_and_runs(pg: SyncPg, text: str) -> None:
    try:
        expr = parse_q(text)
    except QueryError:
        return
    fragment, params = compile_q_postgres(expr, resolve)
    try:
        select(pg, fragment, params)
    except Exception as exc:  # only a regex PostgreSQL reads differently may fail, as a bad request
        assert "regular expression" in str(exc), (text, exc)


def test_json_texts_are_not_confused_with_json_strings(pg: SyncPg) -> None:
    insert(pg, "texts", {"id": "urn:x:t", "type": [], "attrs": {resolve("v"): [prop(json.dumps("a"))]}})
    fragment, params = compile_q_postgres(parse_q('v=="\\"a\\""'), resolve)
    assert select(pg, fragment, params, "texts") == {"urn:x:t"}
