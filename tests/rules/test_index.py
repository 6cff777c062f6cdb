"""`RuleIndex.watched`: per (tenant, types), exactly the attributes `candidates` answers for, and nothing for a
type no rule watches (the engine then passes the change over with one lookup)."""

from __future__ import annotations

from ucity.ngsild.context import core_context
from ucity.rules.engine import Compiled, RuleIndex
from ucity.rules.model import rule_from_json


def rule(rule_id: str, types: list[str], attribute: str, tenant: str | None = None) -> Compiled:
    doc = {"id": rule_id, "name": {"en": rule_id}, "entityTypes": types, "kind": "safety",
           "condition": {"type": "threshold", "attribute": attribute, "direction": "above",
                         "edges": [{"level": "warning", "at": 10}]}}
    if tenant is not None:
        doc["tenant"] = tenant
    return Compiled.of(rule_from_json(doc), "user")


def test_watched_agrees_with_candidates() -> None:
    ctx = core_context()
    compiled = [rule("heat", ["Room"], "temperature"), rule("wet", ["Room", "Hall"], "humidity"),
                rule("any", [], "pressure"), rule("mine", ["Hall"], "temperature", tenant="t1")]
    index = RuleIndex(compiled, {})
    attrs = [ctx.expand_term(a) for a in ("temperature", "humidity", "pressure", "noise")]
    for tenant in ("t1", "t2"):
        for names in ([], ["Room"], ["Hall"], ["Room", "Hall"], ["Camera"]):
            types = [ctx.expand_type(n) for n in names]
            watched = index.watched(tenant, types)
            expected = {a: index.candidates(tenant, types, a) for a in attrs if index.candidates(tenant, types, a)}
            assert {a: [c.rule.id for c in v] for a, v in watched.items()} == \
                   {a: [c.rule.id for c in v] for a, v in expected.items()}, (tenant, names)
    assert set(index.watched("t2", [ctx.expand_type("Camera")])) == {ctx.expand_term("pressure")}  # any type


def test_an_unwatched_type_has_nothing() -> None:
    ctx = core_context()
    index = RuleIndex([rule("heat", ["Room"], "temperature")], {})
    assert index.watched("t", [ctx.expand_type("Camera")]) == {}
    assert index.watched("t", [ctx.expand_type("Room")]).keys() == {ctx.expand_term("temperature")}
