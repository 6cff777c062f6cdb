"""The SQLite ``q`` compiler reads plain attribute IRIs by JSON path, the others by scanning ``attrs``.

Both ways must select the same entities: every query of test_qsql's table runs with the path read
switched off and on, over documents written with and without ASCII escapes, plus documents whose
attributes break the storage contract (an object, a scalar, instances that are no objects).
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator

import pytest

from tests.ngsild.test_qsql import CASES, DOCS, entity, prop, resolve
from ucity.ngsild import qsql
from ucity.ngsild.qlang import parse_q
from ucity.ngsild.qsql import compile_q_sqlite, register_sqlite_functions

ODD = [
    {"id": "urn:x:attr-object", "attrs": {resolve("temperature"): {"a": prop(30)}, resolve("name"): {"x": prop("Alpha")}}},
    {"id": "urn:x:attr-scalar", "attrs": {resolve("temperature"): 30, resolve("name"): "Alpha"}},
    {"id": "urn:x:instance-scalar", "attrs": {resolve("temperature"): [30, prop(-5.0)], resolve("name"): ["Alpha"]}},
    {"id": "urn:x:empty", "attrs": {resolve("temperature"): [], resolve("name"): [{}]}},
    entity("urn:x:plain", "T", temperature=[prop(30), prop([21.5, 40], datasetId="urn:ngsi-ld:Dataset:x")]),
]


@pytest.fixture(scope="module")
def conn() -> Iterator[sqlite3.Connection]:
    db = sqlite3.connect(":memory:")
    register_sqlite_functions(db)
    db.execute("CREATE TABLE entities(eid INTEGER PRIMARY KEY, tenant TEXT, id TEXT, doc TEXT)")
    for i, doc in enumerate([*DOCS, *ODD]):
        db.execute("INSERT INTO entities(tenant, id, doc) VALUES ('city', ?, ?)",
                   (doc["id"], json.dumps(doc, ensure_ascii=i % 2 == 0)))
    yield db
    db.close()


def ids(conn: sqlite3.Connection, q: str) -> set[str]:
    fragment, params = compile_q_sqlite(parse_q(q), resolve)
    return {row[0] for row in conn.execute(f"SELECT e.id FROM entities e WHERE {fragment}", params)}


@pytest.mark.parametrize("q", [case[0] for case in CASES])
def test_reading_by_path_selects_what_the_scan_selects(
        conn: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch, q: str) -> None:
    by_path = ids(conn, q)
    with monkeypatch.context() as patch:
        patch.setattr(qsql, "_PLAIN_LABEL", re.compile(r"(?!)"))
        fragment, _ = compile_q_sqlite(parse_q(q), resolve)
        assert "json_each(e.doc, ?)" not in fragment
        assert by_path == ids(conn, q)


def test_plain_iris_are_read_by_path_and_others_by_scan() -> None:
    fragment, params = compile_q_sqlite(parse_q("temperature>20"), resolve)
    assert "json_each(e.doc, ?)" in fragment and f'$.attrs."{resolve("temperature")}"' in params
    for odd in ('https://example.org/we"ird', "https://example.org/back\\slash", "https://example.org/온도",
                "https://example.org/tab\there"):
        fragment, params = compile_q_sqlite(parse_q("w>20"), lambda _, odd=odd: odd)
        assert "json_each(e.doc, '$.attrs')" in fragment and odd in params, odd


def test_instances_that_break_the_contract_are_read_alike(conn: sqlite3.Connection) -> None:
    assert "urn:x:plain" in ids(conn, "temperature==40")
    assert ids(conn, "temperature==30") >= {"urn:x:plain"}
    assert "urn:x:instance-scalar" in ids(conn, "temperature<0")
