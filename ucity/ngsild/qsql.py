"""Compile NGSI-LD ``q`` trees (``qlang``) to SQLite SQL over stored entity documents.

The fragment is a boolean SQL expression over the entity row aliased ``e`` (JSON text column
``e.doc``, format in docs/storage.md) with ``?`` placeholders; user values only ever travel as
parameters. Connections that run the SQL need ``register_sqlite_functions`` (``REGEXP`` and
the datetime normalisers).

Semantics, per the spec (CIM 009 §4.9), and where it leaves room, ours:

* A term matches an entity when ANY instance of the attribute (default or a ``datasetId``
  instance) matches. A missing attribute, sub-attribute or compound key never matches, not even
  ``!=``; only ``!attr`` matches absence.
* The compared value of an instance is its ``value``, ``object``, ``languageMap`` (any language),
  ``vocab``, ``json``, ``valueList`` or ``objectList`` member. When that value is an array, the
  term matches if any element matches (``!=``: if no element equals). A JSON-LD value object
  ``{"@type": "DateTime", "@value": ...}`` is compared through its ``@value``.
* Types must agree: ``10`` matches the number 10 and not the string ``"10"``; a datetime only
  matches a string that parses as a datetime. A value of another type counts as unequal, so
  ``!=`` matches it.
* Datetimes are compared in UTC at microsecond precision, whatever offset and precision the
  query or the stored value used.

Attribute IRIs, sub-attribute IRIs and compound keys are matched by comparing ``json_each``
keys with parameters rather than by building JSON paths: SQLite compares path labels against
the raw (still escaped) JSON text, so a path misses keys stored with ``\\uXXXX`` escapes (what
``json.dumps`` writes for non-ASCII names) and cannot express a key containing ``"``. The one
exception is a top-level attribute IRI of printable ASCII without ``"`` or ``\\``, which no JSON
writer escapes (the stores write documents with orjson): it is read by path,
``json_each(e.doc, '$.attrs."<iri>"')``, saving the scan of every attribute (about a quarter of a
term's cost on the bench's documents).

Cost: SQLite 3.40's JSON functions parse the document's text at every call, so reading a single
instance's value by path (what ``qpg`` does on PostgreSQL) costs as much as these ``json_each``
joins (measured 2.8-3.8 vs 3.1-3.3 µs per row and term); the joins stay, with the scalar node
tested before any container branch opens a ``json_each``.
"""

from __future__ import annotations

import functools
import re
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Final

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

__all__ = [
    "compile_q_sqlite",
    "normalize_datetime_text",
    "normalize_time_text",
    "register_sqlite_functions",
    "utc_datetime_text",
]

Resolve = Callable[[str], str]

# The members that hold an instance's value; an instance has exactly one of them.
_VALUE_MEMBERS: Final = "('value', 'object', 'languageMap', 'vocab', 'json', 'valueList', 'objectList')"
_D: Final = "[0-9]"
# Stored timestamps are already in this shape; only other shapes pay for a Python call.
_CANONICAL_TIME_GLOB: Final = f"{_D}{_D}:{_D}{_D}:{_D}{_D}.{_D * 6}Z"
_CANONICAL_DATETIME_GLOB: Final = f"{_D * 4}-{_D}{_D}-{_D}{_D}T{_CANONICAL_TIME_GLOB}"
_DATE_GLOB: Final = f"{_D * 4}-{_D}{_D}-{_D}{_D}"
_SQL_OPS: Final = {Op.EQ: "=", Op.GT: ">", Op.GE: ">=", Op.LT: "<", Op.LE: "<="}
_INT64: Final = range(-(2**63), 2**63)
# Attribute IRIs that every JSON writer (json.dumps, orjson) stores unescaped: printable ASCII but " and \.
_PLAIN_LABEL: Final = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]+")


# --------------------------------------------------------------------------------------------
# SQL fragments with their parameters, so that text and parameter order cannot drift apart.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Sql:
    text: str
    params: tuple[object, ...] = ()


def _fmt(template: str, *parts: _Sql | str) -> _Sql:
    """Fill the ``{}`` holes of ``template`` in order; ``str`` parts are trusted SQL text."""
    pieces = template.split("{}")
    if len(pieces) != len(parts) + 1:
        raise ValueError(f"template {template!r} needs {len(pieces) - 1} parts")
    text, params = pieces[0], list[object]()
    for part, piece in zip(parts, pieces[1:], strict=True):
        sql = _Sql(part) if isinstance(part, str) else part
        text += sql.text + piece
        params.extend(sql.params)
    return _Sql(text, tuple(params))


def _join(separator: str, parts: Sequence[_Sql]) -> _Sql:
    return _fmt(separator.join("{}" for _ in parts), *parts)


def _param(value: object) -> _Sql:
    return _Sql("?", (value,))


#: Builds the test of one scalar JSON node, given the alias of its json_each/json_tree row.
_Predicate = Callable[[str], _Sql]


# --------------------------------------------------------------------------------------------
# Walking from the entity to the compared node: a chain of json_each joins.
# --------------------------------------------------------------------------------------------


@dataclass
class _Chain:
    """``FROM`` items and ``WHERE`` conditions reaching one JSON node; ``last`` is its alias."""

    froms: list[_Sql] = field(default_factory=list)
    conds: list[_Sql] = field(default_factory=list)
    last: str = ""

    def step(self, alias: str, key: _Sql, node_type: str | None = None) -> None:
        """Descend from ``last`` to its child whose key equals ``key``."""
        self.froms.append(_Sql(f"json_each({_children(self.last)}) AS {alias}"))
        self.conds.append(_fmt(f"{alias}.key = {{}}", key))
        if node_type is not None:
            self.conds.append(_Sql(f"{alias}.type = '{node_type}'"))
        self.last = alias

    def exists(self, extra: _Sql | None = None) -> _Sql:
        conds = self.conds if extra is None else [*self.conds, extra]
        return _fmt("EXISTS (SELECT 1 FROM {} WHERE {})", _join(", ", self.froms), _join(" AND ", conds))


def _children(alias: str) -> str:
    # json_each(NULL) yields no rows, while json_each of a scalar's SQL value would fail to parse.
    return f"CASE WHEN {alias}.type IN ('object', 'array') THEN {alias}.value END"


class _Compiler:
    def __init__(self, resolve: Resolve) -> None:
        self.resolve = resolve
        self.count = 0

    def alias(self, prefix: str) -> str:
        # Unique names: fragments nest subqueries and may be combined with the caller's own.
        self.count += 1
        return f"q{prefix}{self.count}"

    def expr(self, expr: QExpr) -> _Sql:
        if isinstance(expr, (And, Or)):
            separator = " AND " if isinstance(expr, And) else " OR "
            return _fmt("({})", _join(separator, [self.expr(item) for item in expr.items]))
        if isinstance(expr, Exists):
            return self.existence(expr.path)
        if isinstance(expr, NotExists):
            return _fmt("NOT {}", self.existence(expr.path))
        if isinstance(expr, Match):
            return self.match(expr)
        return self.comparison(expr)

    def instances(self, path: AttrPath) -> _Chain:
        """From the entity to each instance of the attribute, or of its (sub-)sub-attribute."""
        iri = self.resolve(path.attr)
        if _PLAIN_LABEL.fullmatch(iri):
            # The attribute by path: one json_each instead of a scan of every attribute (see the module
            # docstring for why only plain labels).
            instance = self.alias("i")
            chain = _Chain([_fmt(f"json_each(e.doc, {{}}) AS {instance}", _param(f'$.attrs."{iri}"'))],
                           [_Sql(f"{instance}.type = 'object'")], instance)
        else:
            attrs, instance = self.alias("a"), self.alias("i")
            chain = _Chain(
                [_Sql(f"json_each(e.doc, '$.attrs') AS {attrs}")],
                [_fmt(f"{attrs}.key = {{}}", _param(iri))],
                attrs,
            )
            chain.froms.append(_Sql(f"json_each({_children(attrs)}) AS {instance}"))
            chain.conds.append(_Sql(f"{instance}.type = 'object'"))
            chain.last = instance
        for name in path.sub_attributes:
            chain.step(self.alias("s"), _param(self.resolve(name)), "object")
        return chain

    def value_node(self, path: AttrPath) -> _Chain:
        """From the entity to the compared node: the member, or the value and its keys."""
        chain = self.instances(path)
        if path.member is not None:
            chain.step(self.alias("m"), _Sql(f"'{path.member}'"))
            return chain
        root = self.alias("v")
        chain.froms.append(_Sql(f"json_each({_children(chain.last)}) AS {root}"))
        chain.conds.append(_Sql(f"{root}.key IN {_VALUE_MEMBERS}"))
        chain.last = root
        for key in path.keys:
            chain.step(self.alias("k"), _param(key))
        return chain

    def existence(self, path: AttrPath) -> _Sql:
        plain = path.member is None and not path.keys
        return (self.instances(path) if plain else self.value_node(path)).exists()

    def comparison(self, expr: Comparison) -> _Sql:
        op = Op.EQ if expr.op is Op.NE else expr.op
        predicate = _operand_predicate(expr.operand, op)
        return self.node_test(expr.path, predicate, negated=expr.op is Op.NE)

    def match(self, expr: Match) -> _Sql:
        def predicate(t: str) -> _Sql:
            return _fmt(f"{t}.type = 'text' AND {t}.value REGEXP {{}}", _param(expr.pattern))

        return self.node_test(expr.path, predicate, negated=expr.negated)

    def node_test(self, path: AttrPath, predicate: _Predicate, negated: bool) -> _Sql:
        """Some instance's node exists and matches ``predicate`` (or, if negated, does not)."""
        chain = self.value_node(path)
        language = path.member is None and not path.keys
        test = self.node_matches(chain.last, predicate, language)
        return chain.exists(_fmt("NOT coalesce(({}), 0)", test) if negated else test)

    def node_matches(self, node: str, predicate: _Predicate, language: bool) -> _Sql:
        """The node itself, an element of it (array) or its ``@value`` matches ``predicate``."""
        # Each json_each gets NULL (no rows) unless the node has the right type: SQLite does not
        # always short-circuit AND, and json_each of a string's SQL value is malformed JSON.
        each, value, lang = self.alias("t"), self.alias("t"), self.alias("t")
        containers = [
            _fmt(
                f"EXISTS (SELECT 1 FROM json_each(CASE WHEN {node}.type = 'array' THEN {node}.value END) "
                f"AS {each} WHERE {{}})",
                predicate(each),
            ),
            _fmt(
                f"EXISTS (SELECT 1 FROM json_each(CASE WHEN {node}.type = 'object' THEN {node}.value END) "
                f"AS {value} WHERE {value}.key = '@value' AND {{}})",
                predicate(value),
            ),
        ]
        if language:
            # A languageMap matches through any of its strings (or arrays of strings).
            containers.append(
                _fmt(
                    f"EXISTS (SELECT 1 FROM json_tree(CASE WHEN {node}.key = 'languageMap' AND {node}.type = 'object' "
                    f"THEN {node}.value END) AS {lang} WHERE {lang}.type NOT IN ('array', 'object') AND {{}})",
                    predicate(lang),
                )
            )
        # A scalar node is the predicate alone: the container branches would each open a json_each on NULL.
        return _fmt(f"(CASE WHEN {node}.type IN ('array', 'object') THEN ({{}}) ELSE ({{}}) END)",
                    _join(" OR ", containers), predicate(node))


# --------------------------------------------------------------------------------------------
# Predicates on one scalar JSON node (a json_each/json_tree row: ``.type``, ``.value``)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Typed:
    """How to compare one kind of value: a type check, the compared expression, the param."""

    check: str
    expr: str
    param: object


def _typed(value: Scalar, t: str) -> _Typed:
    if isinstance(value, NumberValue):
        number = value.value
        # SQLite integers are 64-bit; a larger literal still compares correctly as a REAL.
        param = number if not isinstance(number, int) or number in _INT64 else float(number)
        return _Typed(f"{t}.type IN ('integer', 'real')", f"{t}.value", param)
    if isinstance(value, (StringValue, UriValue)):
        return _Typed(f"{t}.type = 'text'", f"{t}.value", value.value)
    if isinstance(value, DateTimeValue):
        expr = (
            f"CASE WHEN {t}.value GLOB '{_CANONICAL_DATETIME_GLOB}' THEN {t}.value ELSE ngsild_datetime({t}.value) END"
        )
        return _Typed(f"{t}.type = 'text'", expr, utc_datetime_text(value.value))
    if isinstance(value, DateValue):
        return _Typed(f"{t}.type = 'text' AND {t}.value GLOB '{_DATE_GLOB}'", f"{t}.value", value.value.isoformat())
    if isinstance(value, TimeValue):
        expr = f"CASE WHEN {t}.value GLOB '{_CANONICAL_TIME_GLOB}' THEN {t}.value ELSE ngsild_time({t}.value) END"
        return _Typed(f"{t}.type = 'text'", expr, _utc_time_text(value.value))
    raise QueryError(f"{type(value).__name__} has no order")


def _scalar_predicate(value: Scalar, op: Op) -> _Predicate:
    if isinstance(value, BooleanValue):
        if op is not Op.EQ:
            raise QueryError(f"booleans only go with == or !=, not {op.value}")
        json_type = "true" if value.value else "false"
        return lambda t: _Sql(f"{t}.type = '{json_type}'")

    def predicate(t: str) -> _Sql:
        typed = _typed(value, t)
        return _fmt(f"{typed.check} AND {typed.expr} {_SQL_OPS[op]} {{}}", _param(typed.param))

    return predicate


def _range_predicate(operand: Range) -> _Predicate:
    if type(operand.low) is not type(operand.high) or isinstance(operand.low, BooleanValue):
        raise QueryError("range bounds must be two numbers, strings, dates or times")

    def predicate(t: str) -> _Sql:
        low, high = _typed(operand.low, t), _typed(operand.high, t)
        return _fmt(f"{low.check} AND {low.expr} BETWEEN {{}} AND {{}}", _param(low.param), _param(high.param))

    return predicate


def _list_predicate(operand: ValueList) -> _Predicate:
    items = [_scalar_predicate(item, Op.EQ) for item in operand.items]
    return lambda t: _fmt("({})", _join(" OR ", [_fmt("({})", item(t)) for item in items]))


def _operand_predicate(operand: Operand, op: Op) -> _Predicate:
    """``op`` is never NE here: ``!=`` is compiled as the negation of ``==``."""
    if isinstance(operand, (Range, ValueList)):
        if op is not Op.EQ:
            raise QueryError(f"ranges and value lists only go with == or !=, not {op.value}")
        return _range_predicate(operand) if isinstance(operand, Range) else _list_predicate(operand)
    return _scalar_predicate(operand, op)


def compile_q_sqlite(expr: QExpr, resolve: Resolve) -> tuple[str, list[object]]:
    """SQL boolean fragment over ``e.doc`` and its ``?`` parameters for the ``q`` tree ``expr``.

    ``resolve`` expands a short attribute name (top-level or sub-attribute) to its IRI.
    """
    sql = _Compiler(resolve).expr(expr)
    return sql.text, list(sql.params)


# --------------------------------------------------------------------------------------------
# SQL functions and the datetime normalisation they share with the compiler
# --------------------------------------------------------------------------------------------


def utc_datetime_text(value: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS.ffffffZ`` in UTC, the stored format; naive means UTC.

    A time whose UTC instant falls outside years 1-9999 (0001-01-01T00:00+09:00 is 0000-12-31T15:00Z)
    becomes the first or last representable instant: no stored time lies beyond them, so comparisons
    with stored times keep their order, and a query never fails on such a literal."""
    if value.tzinfo is not None:
        try:
            value = value.astimezone(UTC)
        except OverflowError:
            value = datetime.min if value.year == 1 else datetime.max
    return f"{value.year:04d}-{value.month:02d}-{value.day:02d}T{_clock(value)}Z"


def _utc_time_text(value: time) -> str:
    offset = value.utcoffset()
    if offset:
        shifted = datetime.combine(date(2000, 1, 2), value.replace(tzinfo=None)) - offset
        value = shifted.time()
    return _clock(value) + "Z"


def _clock(value: time | datetime) -> str:
    return f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}.{value.microsecond:06d}"


def normalize_datetime_text(text: object) -> str | None:
    """A stored datetime string in the canonical UTC form, or None if it is no datetime."""
    if not isinstance(text, str) or len(text) < 16 or text[10] not in "Tt ":
        return None
    try:
        return utc_datetime_text(datetime.fromisoformat(text))
    except (ValueError, OverflowError):
        return None


def normalize_time_text(text: object) -> str | None:
    """A stored time string (``HH:MM[:SS[.f]]`` with optional offset) in canonical UTC form."""
    if not isinstance(text, str) or len(text) < 5 or text[2] != ":":
        return None
    try:
        return _utc_time_text(time.fromisoformat(text))
    except ValueError:
        return None


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _regexp(pattern: object, value: object) -> bool:
    """SQLite's ``value REGEXP pattern`` (called as ``regexp(pattern, value)``); NULL is false."""
    if not isinstance(pattern, str) or not isinstance(value, str):
        return False
    return _compiled(pattern).search(value) is not None


def register_sqlite_functions(conn: sqlite3.Connection) -> None:
    """Install the functions compiled fragments call: ``regexp``, ``ngsild_datetime``/``_time``."""
    conn.create_function("regexp", 2, _regexp, deterministic=True)
    conn.create_function("ngsild_datetime", 1, normalize_datetime_text, deterministic=True)
    conn.create_function("ngsild_time", 1, normalize_time_text, deterministic=True)
