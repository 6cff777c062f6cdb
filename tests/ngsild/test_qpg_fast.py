"""The PostgreSQL ``q`` compiler's fast path (scalar nodes of a single instance read by path) against
its general form and the in-memory evaluator, on the shapes where the two meet.

Every query runs twice on the same documents: as compiled (fast path where it applies, general form
for the rest) and with the fast path switched off (general form alone). Both must select the same
entities, and, for documents that keep the storage contract, the same as ``qeval`` (the semantics'
reference). Documents that break the contract (an attribute that is no list, an instance that is no
object) are only compared with the general form: ``qeval`` reads them differently by design.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.ngsild.test_qsql import DEFAULT, TS, lang, prop, rel
from tests.pgserver import PostgresServer, SyncPg
from ucity.ngsild import qpg
from ucity.ngsild.qeval import eval_q
from ucity.ngsild.qlang import AttrPath, Exists, parse_q
from ucity.ngsild.qpg import compile_q_postgres
from ucity.store.postgres import init_connection
from ucity.store.sql import numbered


def resolve(term: str) -> str:
    """Short names expand under the default context; ``raw_X`` stays ``X`` (IRIs a path reads as an index)."""
    return term[4:] if term.startswith("raw_") else DEFAULT + term


def sub(name: str) -> str:
    return resolve(name)


def doc(eid: str, attrs: dict[str, Any]) -> dict[str, Any]:
    return {"id": eid, "type": [DEFAULT + "T"], "createdAt": TS, "modifiedAt": TS,
            "attrs": {resolve(name): value for name, value in attrs.items()}}


DS = "urn:ngsi-ld:Dataset:second"

# Documents that keep the storage contract: attrs map to lists of instance objects.
VALID = [
    # multi-instance: only the non-default instance matches 30, > 20, or carries observedAt / a sub-attribute
    doc("urn:x:multi", {"temperature": [prop(10), prop(30, datasetId=DS, observedAt="2024-06-01T00:00:00.000000Z",
                                                       **{sub("quality"): prop("good")})],
                        "status": [prop("ok"), prop(["ok", "broken"], datasetId=DS)]}),
    # single instances with scalar values
    doc("urn:x:single", {"temperature": [prop(21.5, observedAt="2024-01-01T00:00:00.000000Z", unitCode="CEL")],
                         "status": [prop("ok", **{sub("quality"): prop("poor")})],
                         "count": [prop(10)], "flag": [prop(True)], "nothing": [prop(None)],
                         "installedAt": [prop("2024-02-29T10:00:00+09:00")], "since": [prop("2020-01-01")],
                         "opening": [prop("18:30:00+09:00")], "big": [prop(2**70)]}),
    # arrays: any element
    doc("urn:x:arrays", {"temperature": [prop([5, 30])], "status": [prop(["ok", "late"])], "count": [prop([10.0])],
                         "flag": [prop([False])]}),
    # type mismatches: numbers as strings and strings as numbers, "true" as a string
    doc("urn:x:mismatch", {"temperature": [prop("30")], "status": [prop(10)], "count": [prop("10")],
                           "flag": [prop("true")], "nothing": [prop("null")]}),
    # language property, relationship, vocab, list and JSON properties, @value objects
    doc("urn:x:kinds", {"status": [lang({"en": "ok", "ko": ["좋음", "ok2"]})],
                        "ref": [rel("urn:ngsi-ld:Building:b1")],
                        "refs": [{"type": "ListRelationship", "objectList": ["urn:ngsi-ld:Building:b2"], "createdAt": TS}],
                        "category": [{"type": "VocabProperty", "vocab": "https://example.org/indoor", "createdAt": TS}],
                        "readings": [{"type": "ListProperty", "valueList": [1, 2, 3], "createdAt": TS}],
                        "config": [{"type": "JsonProperty", "json": {"mode": "eco", "level": 3}, "createdAt": TS}],
                        "scalarJson": [{"type": "JsonProperty", "json": 5, "createdAt": TS}],
                        "installedAt": [prop({"@type": "DateTime", "@value": "2024-02-29T01:00:00Z"})],
                        "temperature": [prop({"@value": 30})]}),
    # compound values, keyed
    doc("urn:x:compound", {"address": [prop({"city": "Seoul", "zip": ["04524", "04525"], "geo": {"lat": 37.5}})],
                           "status": [prop("ok", **{sub("quality"): prop({"score": 3})})],
                           "label": [lang({"en": "hall", "ko": "홀"})]}),
    # two value members in one instance (a scalar and a list), and a language map beside a value
    doc("urn:x:odd", {"temperature": [{"type": "Property", "value": 12, "valueList": [30], "createdAt": TS}],
                      "status": [{"type": "Property", "value": "late", "languageMap": {"en": "ok"}, "createdAt": TS}],
                      "ref": [{"type": "Relationship", "object": ["urn:ngsi-ld:Building:b1"], "createdAt": TS}]}),
    # attributes with no instance value member at all, and an empty instance list
    doc("urn:x:bare", {"temperature": [{"type": "Property", "createdAt": TS}], "status": []}),
    # an attribute whose IRI a path would read as an array index
    doc("urn:x:indexlike", {"raw_0": [prop(1)], "temperature": [prop(7, **{"1": prop(8)})]}),
]

# Documents that break the contract: only the two SQL forms are compared.
INVALID = [
    doc("urn:x:attr-object", {"temperature": {"0": prop(30)}, "status": {"x": prop("ok")}}),
    doc("urn:x:instance-scalar", {"temperature": [30], "status": ["ok"]}),
    doc("urn:x:instance-array", {"temperature": [[prop(30)]], "status": [[{"value": "ok"}]]}),
    doc("urn:x:attr-scalar", {"temperature": 30, "status": "ok"}),
    doc("urn:x:sub-array", {"status": [prop("ok", **{sub("quality"): [prop("good")]})]}),
]

QUERIES = [
    # existence, absence, members, sub-attributes, keys
    "temperature", "!temperature", "status", "!status", "temperature.observedAt", "!temperature.observedAt",
    "temperature.datasetId", "status.quality", "!status.quality", "status.quality.observedAt",
    "address[city]", "address[geo][lat]", "!address[zip]", "label[ko]", "config[mode]", "nothing", "raw_0",
    "temperature.raw_1", "temperature[1]", "address[zip][0]", "address[zip][-1]",
    # numbers
    'address[zip][0]=="04524"', 'address[zip][-1]!="x"', "temperature[1]==8",
    "temperature==30", "temperature!=30", "temperature>20", "temperature<=10", "temperature==20..40",
    "temperature!=0..25", "temperature==12,30", "temperature!=10,30", "count==10", "count!=10", 'count=="10"',
    "big==1180591620717411303424", "big>1e20", "raw_0==1", "temperature.raw_1==8", "scalarJson==5",
    "readings==2", "readings!=2", "config[level]>=3", "address[geo][lat]>37",
    # strings, relationships, vocab
    'status=="ok"', 'status!="ok"', 'status=="10"', "status==10", 'status>"m"', 'status=="a".."p"',
    'status=="late","broken"', 'status~="^o"', 'status!~="^o"', "ref==urn:ngsi-ld:Building:b1",
    "ref!=urn:ngsi-ld:Building:b1", "refs==urn:ngsi-ld:Building:b2", "category==https://example.org/indoor",
    'address[city]=="Seoul"', 'address[city]!="Seoul"', 'address[zip]=="04525"', 'address=="Seoul"',
    'label[ko]=="홀"', 'label=="hall"', 'status=="좋음"', 'config[mode]=="eco"', 'status.quality=="good"',
    'status.quality!="good"', "status.quality[score]==3",
    # booleans, nulls
    "flag==true", "flag!=true", "flag==false", 'flag=="true"', 'nothing=="null"', "nothing!=1",
    # members
    "temperature.observedAt>2024-03-01T00:00:00Z", "temperature.observedAt==2024-01-01T09:00:00+09:00",
    'temperature.unitCode=="CEL"', 'temperature.unitCode!="CEL"', f"temperature.datasetId=={DS}",
    f"temperature.datasetId!={DS}",
    # datetimes, dates, times, through @value objects too
    "installedAt==2024-02-29T01:00:00Z", "installedAt!=2024-02-29T01:00:00Z", "installedAt>2024-01-01T00:00:00Z",
    "since==2020-01-01", "since<2021-01-01", "opening==09:30:00Z", "opening>09:00:00Z",
    # logic across terms
    "temperature>20;status", 'temperature==30|status=="ok"', "!temperature|temperature.observedAt",
]


@pytest.fixture(scope="module")
def pg(postgres_server: PostgresServer) -> Iterator[SyncPg]:
    name = postgres_server.create_database()
    db = SyncPg(postgres_server.dsn(name))
    db.run(init_connection(db.conn))
    for tenant, docs in (("valid", VALID), ("invalid", INVALID)):
        for d in docs:
            db.execute("INSERT INTO entities (tenant, id, types, doc, created_at, modified_at) "
                       "VALUES ($1, $2, $3, $4, '', '')", tenant, d["id"], d["type"], d)
    yield db
    db.close()
    postgres_server.drop_database(name)


def select(db: SyncPg, tenant: str, q: str) -> set[str]:
    fragment, params = compile_q_postgres(parse_q(q), resolve)
    sql = numbered(f"SELECT e.id FROM entities e WHERE e.tenant = ? AND ({fragment})")
    return {row[0] for row in db.fetch(sql, tenant, *params)}


def general_only(monkeypatch: pytest.MonkeyPatch, db: SyncPg, tenant: str, q: str) -> set[str]:
    with monkeypatch.context() as patch:
        patch.setattr(qpg._Compiler, "fast_nodes", lambda self, path, compared=True: None)
        fragment, _ = compile_q_postgres(parse_q(q), resolve)
        assert "e.doc #> " not in fragment
        return select(db, tenant, q)


@pytest.mark.parametrize("q", QUERIES)
def test_fast_path_selects_what_the_general_form_and_qeval_select(
        pg: SyncPg, monkeypatch: pytest.MonkeyPatch, q: str) -> None:
    got = select(pg, "valid", q)
    assert got == general_only(monkeypatch, pg, "valid", q)
    assert got == {d["id"] for d in VALID if eval_q(parse_q(q), d, resolve)}


@pytest.mark.parametrize("q", QUERIES)
def test_fast_path_agrees_with_the_general_form_on_documents_outside_the_contract(
        pg: SyncPg, monkeypatch: pytest.MonkeyPatch, q: str) -> None:
    assert select(pg, "invalid", q) == general_only(monkeypatch, pg, "invalid", q)


def test_the_cases_that_meet_select_what_the_spec_says(pg: SyncPg) -> None:
    # A non-default instance alone matches; an array matches through an element; types must agree.
    assert select(pg, "valid", "temperature==30") == {"urn:x:multi", "urn:x:arrays", "urn:x:kinds", "urn:x:odd"}
    assert select(pg, "valid", "temperature!=10") >= {"urn:x:multi"}
    assert select(pg, "valid", "temperature.observedAt>2024-03-01T00:00:00Z") == {"urn:x:multi"}
    assert select(pg, "valid", 'status=="ok"') == {"urn:x:multi", "urn:x:single", "urn:x:arrays", "urn:x:kinds",
                                                   "urn:x:compound", "urn:x:odd"}
    assert select(pg, "valid", "count==10") == {"urn:x:single", "urn:x:arrays"}
    assert select(pg, "valid", 'count=="10"') == {"urn:x:mismatch"}
    assert select(pg, "valid", "nothing!=1") == {"urn:x:single", "urn:x:mismatch"}  # null is a value, unequal
    assert select(pg, "valid", "!status") == {"urn:x:bare", "urn:x:indexlike"}  # an empty list has no instance
    assert select(pg, "valid", "status") == {d["id"] for d in VALID if resolve("status") in d["attrs"]} - {
        "urn:x:bare"}


def test_single_scalar_instances_never_run_the_general_form(pg: SyncPg) -> None:
    fragment, params = compile_q_postgres(parse_q('status=="ok";temperature>20;temperature.observedAt'), resolve)
    plan = "\n".join(r[0] for r in pg.fetch(numbered(
        f"EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) SELECT e.id FROM entities e "
        f"WHERE e.tenant = ? AND e.id = 'urn:x:single' AND ({fragment})"), "valid", *params))
    each = [line for line in plan.splitlines() if "jsonb_each" in line or "jsonb_array_elements" in line]
    assert each and all("never executed" in line for line in each), plan


def test_index_like_path_elements_keep_the_general_form() -> None:
    for q in ("raw_0==1", "temperature.raw_1==8", "temperature[1]", "address[-2]", "x[01]"):
        fragment, _ = compile_q_postgres(parse_q(q), resolve)
        assert "e.doc #> " not in fragment, q
    for path in (AttrPath("raw_ 3"), AttrPath("a", ("raw_\t-5",)), AttrPath("a", (), ("k", " 6"))):
        fragment, _ = compile_q_postgres(Exists(path), resolve)
        assert "e.doc #> " not in fragment, path
    fragment, _ = compile_q_postgres(parse_q("temperature==1"), resolve)
    assert "e.doc #> " in fragment


def test_long_value_lists_keep_the_general_form_alone(pg: SyncPg) -> None:
    # The fast path repeats the values per compared node; a statement binds at most 32,767 parameters.
    values = ",".join(str(n) for n in range(1000))
    fragment, params = compile_q_postgres(parse_q(f"temperature=={values},30"), resolve)
    assert "e.doc #> " not in fragment and len(params) < 5000
    q = f"temperature=={values},30"
    assert select(pg, "valid", q) == {d["id"] for d in VALID if eval_q(parse_q(q), d, resolve)}
    fragment, _ = compile_q_postgres(parse_q("temperature==1,2,3"), resolve)
    assert "e.doc #> " in fragment


def test_existence_of_the_instance_reads_no_value_node() -> None:
    fragment, params = compile_q_postgres(parse_q("temperature"), resolve)
    assert "e.doc #> " in fragment and " AS n0" not in fragment
    assert ["attrs", resolve("temperature"), "0"] in params
