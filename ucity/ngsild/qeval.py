"""Evaluate NGSI-LD ``q`` trees (``qlang``) in Python against one stored entity document.

Subscriptions test each committed entity change against their ``q``; a database round trip per
change and subscription would cost far more than the test itself, so the tree is evaluated here,
on the stored (expanded) document of docs/storage.md.

The semantics are those of the SQL compiler (``qsql``), term for term, so that a subscription
notifies about exactly the entities a query with the same ``q`` returns
(tests/ngsild/test_qeval.py runs both on the same documents and expressions):

* a term matches when ANY instance of the attribute (or of its sub-attribute chain) matches;
  a missing attribute, sub-attribute or compound key never matches, not even ``!=``;
* ``!=`` and ``!~=`` are the negation of ``==`` / ``~=`` *per value node*: some instance whose
  value is not equal (or of another type) is enough;
* the compared value is the instance's ``value``/``object``/``languageMap``/``vocab``/``json``/
  ``valueList``/``objectList``; an array matches through any element, a JSON-LD value object
  through its ``@value``, a languageMap through any of its strings;
* types must agree (``10`` is not ``"10"``); datetimes and times compare in canonical UTC text,
  dates only against ``YYYY-MM-DD`` strings; integers beyond 64 bits compare as floats (as
  SQLite's JSON functions read them).

Where SQL would yield NULL (a string that is no datetime), the term is false, and its ``!=`` true:
the same as ``NOT coalesce(NULL, 0)`` in the compiled SQL.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final

from ucity.ngsild.qlang import (
    And,
    AttrPath,
    BooleanValue,
    Comparison,
    DateTimeValue,
    DateValue,
    Exists,
    Match,
    NotExists,
    NumberValue,
    Op,
    Operand,
    Or,
    QExpr,
    QueryError,
    Range,
    Scalar,
    StringValue,
    TimeValue,
    UriValue,
    ValueList,
)
from ucity.ngsild.qsql import normalize_datetime_text, normalize_time_text, utc_datetime_text

__all__ = ["Resolve", "eval_q", "q_terms"]

Resolve = Callable[[str], str]
# A test of one scalar JSON value (the Python form of a json_each row).
_Predicate = Callable[[Any], bool]

_VALUE_MEMBERS: Final = frozenset({"value", "object", "languageMap", "vocab", "json", "valueList", "objectList"})
_CANONICAL_DATETIME: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z")
_CANONICAL_TIME: Final = re.compile(r"[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z")
_DATE: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_INT64: Final = range(-(2**63), 2**63)
_COMPARE: Final[Mapping[Op, Callable[[Any, Any], bool]]] = {
    Op.EQ: lambda a, b: bool(a == b),
    Op.GT: lambda a, b: bool(a > b),
    Op.GE: lambda a, b: bool(a >= b),
    Op.LT: lambda a, b: bool(a < b),
    Op.LE: lambda a, b: bool(a <= b),
}


def eval_q(expr: QExpr, doc: Mapping[str, Any], resolve: Resolve) -> bool:
    """Whether the stored entity ``doc`` satisfies ``expr``; ``resolve`` expands attribute terms.

    Raises QueryError for trees the parser would not build (``>`` on a boolean, mixed ranges),
    like the SQL compiler does.
    """
    if isinstance(expr, And):
        return all(eval_q(item, doc, resolve) for item in expr.items)
    if isinstance(expr, Or):
        return any(eval_q(item, doc, resolve) for item in expr.items)
    if isinstance(expr, Exists):
        return _exists(expr.path, doc, resolve)
    if isinstance(expr, NotExists):
        return not _exists(expr.path, doc, resolve)
    if isinstance(expr, Match):
        return _node_test(expr.path, doc, resolve, _match_predicate(expr.pattern), expr.negated)
    return _comparison(expr, doc, resolve)


def q_terms(expr: QExpr) -> set[str]:
    """Every attribute and sub-attribute term of ``expr`` (what ``resolve`` will be asked for)."""
    if isinstance(expr, (And, Or)):
        return set().union(*(q_terms(item) for item in expr.items))
    return {expr.path.attr, *expr.path.sub_attributes}


# -- walking from the document to the compared values -------------------------------------------
def _members(node: Any) -> Iterator[Any]:
    """The children of a JSON container (json_each): object member values or array elements."""
    if isinstance(node, dict):
        yield from node.values()
    elif isinstance(node, list):
        yield from node


def _instances(path: AttrPath, doc: Mapping[str, Any], resolve: Resolve) -> Iterator[dict[str, Any]]:
    """Each instance of the attribute, or of the sub-attribute the path names, that exists."""
    attrs = doc.get("attrs")
    if not isinstance(attrs, dict) or resolve(path.attr) not in attrs:
        return
    subs = [resolve(name) for name in path.sub_attributes]
    for instance in _members(attrs[resolve(path.attr)]):
        node = instance
        for key in subs:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict):
            yield node


def _value_nodes(path: AttrPath, doc: Mapping[str, Any], resolve: Resolve) -> Iterator[tuple[str, Any]]:
    """(member name, value) of each compared node: the special member, or the value and its keys."""
    for instance in _instances(path, doc, resolve):
        if path.member is not None:
            if path.member in instance:
                yield path.member, instance[path.member]
            continue
        for member, value in instance.items():
            if member not in _VALUE_MEMBERS:
                continue
            node: tuple[str, Any] | None = (member, value)
            for key in path.keys:
                inner = node[1] if node is not None else None
                node = (key, inner[key]) if isinstance(inner, dict) and key in inner else None
            if node is not None:
                yield node


def _exists(path: AttrPath, doc: Mapping[str, Any], resolve: Resolve) -> bool:
    if path.member is None and not path.keys:
        return next(_instances(path, doc, resolve), None) is not None
    return next(_value_nodes(path, doc, resolve), None) is not None


def _comparison(expr: Comparison, doc: Mapping[str, Any], resolve: Resolve) -> bool:
    op = Op.EQ if expr.op is Op.NE else expr.op
    return _node_test(expr.path, doc, resolve, _operand_predicate(expr.operand, op), expr.op is Op.NE)


def _node_test(path: AttrPath, doc: Mapping[str, Any], resolve: Resolve, predicate: _Predicate,
               negated: bool) -> bool:
    """Some value node exists and matches (or, negated, does not match) ``predicate``."""
    language = path.member is None and not path.keys
    nodes = _value_nodes(path, doc, resolve)
    return any(_node_matches(member, value, predicate, language) != negated for member, value in nodes)


def _node_matches(member: str, value: Any, predicate: _Predicate, language: bool) -> bool:
    """The node itself, an element of it, its ``@value`` or (languageMap) any string matches."""
    if isinstance(value, list):
        if any(predicate(item) for item in value):
            return True
    elif isinstance(value, dict):
        if "@value" in value and predicate(value["@value"]):
            return True
        if language and member == "languageMap":
            return any(predicate(leaf) for leaf in _leaves(value))
    else:
        return predicate(value)
    return False


def _leaves(node: Any) -> Iterator[Any]:
    """Every scalar below a JSON container, at any depth (json_tree without the containers)."""
    for child in _members(node):
        if isinstance(child, (dict, list)):
            yield from _leaves(child)
        else:
            yield child


# -- predicates on one scalar ----------------------------------------------------------------------
def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _as_sqlite_number(value: int | float) -> int | float:
    # SQLite's JSON reader turns integers beyond 64 bits into REALs; so does its parameter binding.
    return float(value) if isinstance(value, int) and value not in _INT64 else value


def _canonical_datetime(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    return value if _CANONICAL_DATETIME.fullmatch(value) else normalize_datetime_text(value)


def _canonical_time(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    return value if _CANONICAL_TIME.fullmatch(value) else normalize_time_text(value)


def _plain_date(value: Any) -> str | None:
    return value if isinstance(value, str) and _DATE.fullmatch(value) else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _number(value: Any) -> int | float | None:
    return _as_sqlite_number(value) if _is_number(value) else None


def _typed(value: Scalar) -> tuple[Callable[[Any], Any], Any]:
    """How one kind of query value compares: (stored value -> comparable or None, query side)."""
    if isinstance(value, NumberValue):
        return _number, _as_sqlite_number(value.value)
    if isinstance(value, (StringValue, UriValue)):
        return _text, value.value
    if isinstance(value, DateTimeValue):
        return _canonical_datetime, utc_datetime_text(value.value)
    if isinstance(value, DateValue):
        return _plain_date, value.value.isoformat()
    if isinstance(value, TimeValue):
        return _canonical_time, _utc_time(value)
    raise QueryError(f"{type(value).__name__} has no order")


def _utc_time(value: TimeValue) -> str:
    text = normalize_time_text(value.value.isoformat())
    if text is None:  # pragma: no cover - isoformat() always parses back
        raise QueryError(f"invalid time {value.value!r}")
    return text


def _scalar_predicate(value: Scalar, op: Op) -> _Predicate:
    if isinstance(value, BooleanValue):
        if op is not Op.EQ:
            raise QueryError(f"booleans only go with == or !=, not {op.value}")
        wanted = value.value
        return lambda stored: stored is wanted
    convert, param = _typed(value)
    compare = _COMPARE[op]

    def predicate(stored: Any) -> bool:
        comparable = convert(stored)
        return comparable is not None and compare(comparable, param)

    return predicate


def _range_predicate(operand: Range) -> _Predicate:
    if type(operand.low) is not type(operand.high) or isinstance(operand.low, BooleanValue):
        raise QueryError("range bounds must be two numbers, strings, dates or times")
    convert, low = _typed(operand.low)
    _, high = _typed(operand.high)

    def predicate(stored: Any) -> bool:
        comparable = convert(stored)
        return comparable is not None and bool(low <= comparable <= high)

    return predicate


def _list_predicate(operand: ValueList) -> _Predicate:
    items = [_scalar_predicate(item, Op.EQ) for item in operand.items]
    return lambda stored: any(item(stored) for item in items)


def _operand_predicate(operand: Operand, op: Op) -> _Predicate:
    """``op`` is never NE here: ``!=`` is evaluated as the negation of ``==``."""
    if isinstance(operand, (Range, ValueList)):
        if op is not Op.EQ:
            raise QueryError(f"ranges and value lists only go with == or !=, not {op.value}")
        return _range_predicate(operand) if isinstance(operand, Range) else _list_predicate(operand)
    return _scalar_predicate(operand, op)


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _match_predicate(pattern: str) -> _Predicate:
    regex = _compiled(pattern)
    return lambda stored: isinstance(stored, str) and regex.search(stored) is not None
