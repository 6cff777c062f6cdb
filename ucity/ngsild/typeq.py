"""The NGSI-LD entity type selection language (`type=A,B`, `type=(A;B)|C`).

`,` and `|` mean OR, `;` means AND and binds tighter, parentheses group. The result is in
disjunctive normal form (an OR of AND-groups), which every store compiles the same way.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from ucity.core.errors import BadRequest
from ucity.store.base import TypeExpr

_TOKEN = re.compile(r"\s*([(),;|]|[^(),;|\s]+)")

Dnf = list[tuple[str, ...]]


def parse_type_expr(text: str, expand: Callable[[str], str]) -> TypeExpr:
    tokens = [t for t in _TOKEN.findall(text) if t]
    if not tokens:
        raise BadRequest("type 매개변수가 비어 있음 / the type parameter is empty")
    pos, dnf = _or(tokens, 0, expand)
    if pos != len(tokens):
        raise BadRequest(f"유형 식 {text!r}에 예상하지 못한 {tokens[pos]!r} / "
                         f"unexpected {tokens[pos]!r} in type expression {text!r}")
    return TypeExpr(tuple(dict.fromkeys(dnf)))


def _or(tokens: list[str], pos: int, expand: Callable[[str], str]) -> tuple[int, Dnf]:
    pos, result = _and(tokens, pos, expand)
    while pos < len(tokens) and tokens[pos] in (",", "|"):
        pos, more = _and(tokens, pos + 1, expand)
        result = result + more
    return pos, result


def _and(tokens: list[str], pos: int, expand: Callable[[str], str]) -> tuple[int, Dnf]:
    pos, result = _atom(tokens, pos, expand)
    while pos < len(tokens) and tokens[pos] == ";":
        pos, more = _atom(tokens, pos + 1, expand)
        result = [tuple(dict.fromkeys(a + b)) for a in result for b in more]
    return pos, result


def _atom(tokens: list[str], pos: int, expand: Callable[[str], str]) -> tuple[int, Dnf]:
    if pos >= len(tokens):
        raise BadRequest("유형 식이 너무 일찍 끝남 / the type expression ends too early")
    token = tokens[pos]
    if token == "(":
        pos, inner = _or(tokens, pos + 1, expand)
        if pos >= len(tokens) or tokens[pos] != ")":
            raise BadRequest("유형 식의 '('가 닫히지 않음 / a '(' in the type expression is not closed")
        return pos + 1, inner
    if token in "),;|":
        raise BadRequest(f"유형 식에 예상하지 못한 {token!r} / unexpected {token!r} in the type expression")
    return pos + 1, [(expand(token),)]
