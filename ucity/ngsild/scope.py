"""scopeQ (ETSI GS CIM 009 §4.19): one parser for entity queries, temporal queries and subscriptions.

A scopeQ is parsed into OR-of-AND groups of scope patterns (`ScopeExpr`); each pattern is an
anchored regular expression that one scope of the entity must match in full. The store evaluates
the same expression in SQL (`regexp` over the entity's scopes), subscriptions in Python
(`scope_matcher`), so both read a scopeQ the same way:

- `/a/b` matches exactly that scope, `/a/#` it and every scope below it, `/#` any scope;
- `+` matches any one level (`/+/b`);
- `,` means OR, `;` AND (binding tighter), parentheses group.

An entity without a scope matches no scopeQ.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Final

from ucity.core.errors import BadRequest
from ucity.store.base import ScopeExpr

ScopeTest = Callable[[Iterable[str]], bool]
Groups = tuple[tuple[str, ...], ...]  # OR of AND-groups of patterns
_TOKEN: Final = re.compile(r"\s*([(),;]|[^(),;\s]+)")


def parse_scope_query(text: str) -> ScopeExpr:
    """A scopeQ as OR-of-AND groups of anchored scope patterns (400 if it is not one)."""
    if not isinstance(text, str) or not text.strip():
        raise BadRequest("scopeQ는 비어 있지 않은 문자열이어야 함 / scopeQ must be a non-empty string")
    tokens = _TOKEN.findall(text)
    pos, groups = _or(tokens, 0)
    if pos != len(tokens):
        raise BadRequest(f"scopeQ {text!r}에 예상하지 못한 {tokens[pos]!r} / unexpected {tokens[pos]!r} in scopeQ {text!r}")
    return ScopeExpr(groups)


def scope_matcher(expr: ScopeExpr) -> ScopeTest:
    """A test of an entity's scopes, in Python, with the same reading as the store's SQL."""
    compiled = [[re.compile(p) for p in group] for group in expr.any_of]

    def test(scopes: Iterable[str]) -> bool:
        held = list(scopes)
        return any(all(any(p.search(s) for s in held) for p in group) for group in compiled)

    return test


def _or(tokens: list[str], pos: int) -> tuple[int, Groups]:
    pos, groups = _and(tokens, pos)
    while pos < len(tokens) and tokens[pos] == ",":
        pos, more = _and(tokens, pos + 1)
        groups = groups + more
    return pos, groups


def _and(tokens: list[str], pos: int) -> tuple[int, Groups]:
    pos, groups = _atom(tokens, pos)
    while pos < len(tokens) and tokens[pos] == ";":
        pos, right = _atom(tokens, pos + 1)
        # (a | b) & (c | d) = ac | ad | bc | bd: the expression stays OR-of-AND for SQL.
        groups = tuple(left + more for left in groups for more in right)
    return pos, groups


def _atom(tokens: list[str], pos: int) -> tuple[int, Groups]:
    if pos >= len(tokens):
        raise BadRequest("scopeQ가 너무 일찍 끝남 / scopeQ ends too early")
    if tokens[pos] == "(":
        pos, inner = _or(tokens, pos + 1)
        if pos >= len(tokens) or tokens[pos] != ")":
            raise BadRequest("scopeQ의 '('가 닫히지 않음 / a '(' in scopeQ is not closed")
        return pos + 1, inner
    if tokens[pos] in (")", ",", ";"):
        raise BadRequest(f"scopeQ에 예상하지 못한 {tokens[pos]!r} / unexpected {tokens[pos]!r} in scopeQ")
    return pos + 1, ((_pattern(tokens[pos]),),)


def _pattern(term: str) -> str:
    """The anchored regular expression of one scope term."""
    if not term.startswith("/") or "//" in term:
        raise BadRequest(f"scopeQ의 잘못된 scope {term!r}: scope는 /a/b, /a/#, /+/b 꼴임 / "
                         f"invalid scope {term!r} in scopeQ: scopes look like /a/b, /a/# or /+/b")
    levels = term.strip("/").split("/") if term != "/" else []
    tail = ""
    if levels and levels[-1] == "#":
        levels, tail = levels[:-1], "(/.*)?"
    if "#" in levels:
        raise BadRequest(f"scopeQ에서 '#'는 scope의 끝에만 올 수 있음({term!r}) / "
                         f"'#' may only end a scope in scopeQ, got {term!r}")
    body = "".join("/" + ("[^/]+" if level == "+" else re.escape(level)) for level in levels)
    return "^" + (body + tail if body or tail else "/") + "$"


__all__ = ["ScopeTest", "parse_scope_query", "scope_matcher"]
