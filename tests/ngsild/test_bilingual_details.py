"""Every refusal the NGSI-LD API raises says its detail in Korean and English, "한국어 / English" (FIX-D).

A source check over ucity/ngsild: each `raise` of an error with a literal text carries Korean, and for the
q language and geo-query errors (ValueErrors whose English `str()` other modules wrap) the Korean goes in
their `ko`. subscriptions.py is checked by its own tests; qeval/qsql/qpg raise QueryError only for trees the
parser never builds (a bug, answered as a 500); notify_http's DeliveryError is a subscription's failure
note, not a ProblemDetails."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from ucity.ngsild.geo import GeoQueryError, parse_geoquery, validate_geojson
from ucity.ngsild.qlang import QueryError, parse_q

NGSILD = Path(__file__).resolve().parents[2] / "ucity" / "ngsild"
SKIPPED = {"subscriptions.py", "notify_http.py", "qeval.py", "qsql.py", "qpg.py"}
HANGUL = re.compile("[가-힣]")
# Errors raised with a text for a client; the two ValueErrors take their Korean as a second argument (or ko=).
CLIENT_ERRORS = {"BadRequest", "InvalidRequest", "NotFound", "NonexistentTenant", "AlreadyExists", "NotAcceptable",
                 "UnsupportedMediaType", "OperationNotSupported", "LdContextNotAvailable", "InvalidContext",
                 "ContextBadRequest", "ContextNotFound", "EntityNotFound", "UcityError", "Forbidden"}
KO_AS_ARGUMENT = {"QueryError": 2, "GeoQueryError": 1}


def _texts(node: ast.expr | None) -> str:
    """The literal text of a str / f-string argument (its constant parts), "" for anything else."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(_texts(v) for v in node.values if isinstance(v, ast.Constant))
    if isinstance(node, ast.IfExp):
        return _texts(node.body) + _texts(node.orelse)
    return ""


def _english_only() -> list[str]:
    found: list[str] = []
    for path in sorted(NGSILD.glob("*.py")):
        if path.name in SKIPPED:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name) or not node.args:
                continue
            name = node.func.id
            if name in CLIENT_ERRORS:
                text = _texts(node.args[0])
            elif name in KO_AS_ARGUMENT:
                index = KO_AS_ARGUMENT[name]
                ko = node.args[index] if len(node.args) > index else next(
                    (k.value for k in node.keywords if k.arg == "ko"), None)
                text = _texts(ko) if ko is not None else ""
                if not text and not _texts(node.args[0]):
                    continue  # not a literal message (none is built elsewhere)
            else:
                continue
            literal = isinstance(node.args[0], (ast.Constant, ast.JoinedStr))
            if (literal or name in KO_AS_ARGUMENT) and not HANGUL.search(text):
                found.append(f"{path.name}:{node.lineno}: {name}({_texts(node.args[0])[:60]!r})")
    return found


def test_every_ngsild_refusal_with_a_literal_text_has_its_korean() -> None:
    assert _english_only() == []


def test_a_q_error_says_both_halves_and_keeps_its_english_str() -> None:
    with pytest.raises(QueryError) as caught:
        parse_q("temperature>")
    assert str(caught.value) == "invalid q: expected a value, found nothing (at position 12)"
    assert caught.value.bilingual() == ("잘못된 q: 값이 필요한데 없음 (위치 12) / "
                                        "invalid q: expected a value, found nothing (at position 12)")
    with pytest.raises(QueryError) as caught:
        parse_q("a==1;")
    ko, _, en = caught.value.bilingual().partition(" / ")
    assert ko == "잘못된 q: 속성 이름 필요, 찾은 것: 식의 끝 (위치 5)" and not HANGUL.search(en)


def test_a_geo_error_says_both_halves_and_keeps_its_english_str() -> None:
    with pytest.raises(GeoQueryError) as caught:
        parse_geoquery("near", "Point", "[127.0,37.5]")
    assert str(caught.value) == "georel 'near' needs maxDistance or minDistance, e.g. 'near;maxDistance==2000'"
    assert caught.value.bilingual("잘못된 지오쿼리", "invalid geo-query") == (
        "잘못된 지오쿼리: georel 'near'에는 maxDistance나 minDistance가 필요함(예: 'near;maxDistance==2000') / "
        "invalid geo-query: georel 'near' needs maxDistance or minDistance, e.g. 'near;maxDistance==2000'")
    with pytest.raises(GeoQueryError) as caught:
        validate_geojson({"type": "Point", "coordinates": [200, 37.5]})
    assert caught.value.ko == "geometry.coordinates: 경도 200이(가) 범위 [-180, 180]을 벗어남"
