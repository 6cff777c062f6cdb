"""Compile NGSI-LD ``q`` trees (``qlang``) to PostgreSQL SQL over stored ``jsonb`` entity documents.

The PostgreSQL twin of ``qsql`` (SQLite): the same AST, the same semantics term for term (see
the docstring of ``qsql``: any instance matches, missing never matches, types must agree,
datetimes compared in UTC at microsecond precision, array values match by any element, JSON-LD
``@value`` objects and language maps are looked through). The fragment is a boolean expression
over the entity row aliased ``e`` (``e.doc jsonb``) with ``?`` placeholders, which the PostgreSQL
store numbers (``$n``) together with its own clauses; user values only ever travel as
parameters. It calls the SQL functions ``ucity_datetime(text)`` and ``ucity_time(text)`` that the
store's migrations create.

Where the dialects differ:

* Keys are looked up with ``->`` (exact, no path syntax to escape), so the ``json_each`` scans
  that ``qsql`` needs for odd attribute IRIs are unnecessary.
* PostgreSQL does not promise to evaluate ``AND`` left to right, so every cast of a JSON value
  sits in a ``CASE`` on its ``jsonb_typeof``: a string is never cast to ``numeric``.
* Texts compare with ``COLLATE "C"`` (code point order, like SQLite's binary collation) whatever
  the database's locale.
* Numbers compare as ``numeric``: exact, like SQLite's integer/real comparison of the values
  ``json.dumps`` writes.
* Regular expressions are PostgreSQL's (ARE); the parser has already accepted the pattern as a
  Python regex, and the common syntax (classes, anchors, ``(?i)`` at the start, groups,
  alternation) means the same in both. A pattern PostgreSQL rejects is a bad request.
* Each term that needs its attribute (everything but ``!attr``) also tests
  ``ucity_attr_names(e.doc) @> ARRAY[<iri>]``, which the GIN index on the attribute names answers,
  so a selective ``q`` does not read every document of the tenant.

The fast path. The general form of a term expands, per row, the attribute's instances and their
members with set-returning functions (``jsonb_array_elements``, ``jsonb_each``, a
``jsonb_path_query`` over language maps): about 7 µs per row and term. Nearly every stored
attribute has one instance whose value is a scalar, and for that instance the general form's test
is just the predicate on the value. So each term first reads, by path (``e.doc #> '{attrs,<iri>,0,
...}'``, in a subquery that binds them once per row), the attribute, its first instance and the
compared nodes of that instance (``value``, ``object``, ``vocab``; or the named member; or every
value member followed by the compound keys). When the attribute has exactly one instance, no
``languageMap``/``json``/``valueList``/``objectList`` member (unless keyed), and every compared node
is a scalar or missing, the term is the predicate on those nodes (``!=``: some present node that
does not match); otherwise it is the general form, unchanged. Both give the same answer on every
document (tests/ngsild/test_qpg_fast.py checks them against each other and against ``qeval``);
the fast path costs about 0.7 µs per row and term. ``#>`` reads an integer-looking path element as
an array index where ``->`` finds nothing, so a path with such an IRI or key keeps the general
form alone.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
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

# The fragment builder and the datetime texts are shared with the SQLite compiler.
from ucity.ngsild.qsql import Resolve, _fmt, _join, _param, _Sql, _utc_time_text, utc_datetime_text

__all__ = ["PG_FUNCTIONS", "compile_q_postgres"]

_VALUE_MEMBER_NAMES: Final = ("value", "object", "languageMap", "vocab", "json", "valueList", "objectList")
_VALUE_MEMBERS: Final = "(" + ", ".join(f"'{name}'" for name in _VALUE_MEMBER_NAMES) + ")"
# The fast path compares these members of a single instance when they are scalars; the others
# (language maps, JSON, lists) are left to the general form.
_SCALAR_MEMBERS: Final = ("value", "object", "vocab")
_OTHER_MEMBERS: Final = ("languageMap", "json", "valueList", "objectList")
# What PostgreSQL's ``#>`` reads as an array index (strtol: leading blanks, a sign, digits).
_INDEX_LIKE: Final = re.compile(r"\s*[+-]?[0-9]+")
# The fast path repeats a term's value parameters per compared node; past this many it is left out
# (asyncpg binds at most 32,767 parameters per statement).
_FAST_MAX_PARAMS: Final = 2000
_SQL_OPS: Final = {Op.EQ: "=", Op.GT: ">", Op.GE: ">=", Op.LT: "<", Op.LE: "<="}
# Stored timestamps are already canonical; only other shapes pay for the normalising function.
_CANONICAL_TIME: Final = r"[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z"
_CANONICAL_DATETIME: Final = rf"^[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}T{_CANONICAL_TIME}$"
_DATE: Final = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"

#: Builds the test of one JSON node, given a SQL expression of type jsonb for it.
_PredicateFn = Callable[[str], _Sql]


def _string(node: str) -> str:
    """The node's text if it is a JSON string, else NULL (compared in code point order)."""
    return f"(CASE WHEN jsonb_typeof({node}) = 'string' THEN ({node}) #>> ARRAY[]::text[] END) COLLATE \"C\""


def _number(node: str) -> str:
    return f"(CASE WHEN jsonb_typeof({node}) = 'number' THEN ({node})::numeric END)"


@dataclass
class _Chain:
    """``FROM`` items and ``WHERE`` conditions reaching one JSON node; ``last`` is its expression."""

    froms: list[_Sql] = field(default_factory=list)
    conds: list[_Sql] = field(default_factory=list)
    last: str = ""
    key: str | None = None  # the expression of the node's key, for the value root

    def child(self, alias: str, key: _Sql, node_type: str | None = None) -> None:
        """Descend from ``last`` to its member ``key`` (objects only: ``->`` on an array is NULL)."""
        self.froms.append(_fmt(f"LATERAL (SELECT ({self.last}) -> {{}}::text AS v) AS {alias}", key))
        test = f"jsonb_typeof({alias}.v) = '{node_type}'" if node_type else f"{alias}.v IS NOT NULL"
        self.conds.append(_Sql(test))
        self.last, self.key = f"{alias}.v", None

    def exists(self, extra: _Sql | None = None) -> _Sql:
        conds = self.conds if extra is None else [*self.conds, extra]
        return _fmt("EXISTS (SELECT 1 FROM {} WHERE {})", _join(", ", self.froms), _join(" AND ", conds))


@dataclass
class _Fast:
    """The fast path of one term: nodes of the attribute's only instance, bound once per row.

    ``select`` computes, in a subquery aliased ``alias``: ``a`` the attribute (its list of
    instances), ``i`` the first instance (or its sub-attribute), ``n0``... the compared nodes.
    """

    alias: str
    select: _Sql
    nodes: list[str]
    others: tuple[str, ...]  # value members whose presence leaves the instance to the general form

    @property
    def instance(self) -> str:
        return f"{self.alias}.i"

    def case(self, simple: str, test: _Sql, general: _Sql) -> _Sql:
        """``test`` when the attribute has one instance and ``simple`` holds, else the general form."""
        single = f"jsonb_typeof({self.alias}.a) = 'array' AND ({self.alias}.a -> 1) IS NULL"
        return _fmt(f"(SELECT CASE WHEN {single} AND {simple} THEN coalesce(({{}}), false) ELSE {{}} END "
                    f"FROM (SELECT {{}} OFFSET 0) AS {self.alias})", test, general, self.select)


class _Compiler:
    def __init__(self, resolve: Resolve) -> None:
        self.resolve = resolve
        self.count = 0

    def alias(self, prefix: str) -> str:
        self.count += 1
        return f"q{prefix}{self.count}"

    def expr(self, expr: QExpr) -> _Sql:
        if isinstance(expr, (And, Or)):
            separator = " AND " if isinstance(expr, And) else " OR "
            return _fmt("({})", _join(separator, [self.expr(item) for item in expr.items]))
        if isinstance(expr, NotExists):
            return _fmt("NOT {}", self.existence(expr.path))
        test = self.existence(expr.path) if isinstance(expr, Exists) else (
            self.match(expr) if isinstance(expr, Match) else self.comparison(expr))
        return _fmt("({} AND {})", self.has_attribute(expr.path), test)

    def has_attribute(self, path: AttrPath) -> _Sql:
        """A necessary condition the GIN index on ``doc -> 'attrs'`` can answer."""
        return _fmt("ucity_attr_names(e.doc) @> ARRAY[{}::text]", _param(self.resolve(path.attr)))

    def instances(self, path: AttrPath) -> _Chain:
        """From the entity to each instance of the attribute, or of its (sub-)sub-attribute."""
        instance = self.alias("i")
        iri = self.resolve(path.attr)
        attr = "e.doc -> 'attrs' -> ?::text"
        chain = _Chain(
            [_Sql(f"jsonb_array_elements(CASE WHEN jsonb_typeof({attr}) = 'array' THEN {attr} END) AS {instance}(v)",
                  (iri, iri))],
            [_Sql(f"jsonb_typeof({instance}.v) = 'object'")],
            f"{instance}.v",
        )
        for name in path.sub_attributes:
            chain.child(self.alias("s"), _param(self.resolve(name)), "object")
        return chain

    def value_node(self, path: AttrPath) -> _Chain:
        """From the entity to the compared node: the member, or the value and its keys."""
        chain = self.instances(path)
        if path.member is not None:
            chain.child(self.alias("m"), _Sql(f"'{path.member}'"))
            return chain
        root = self.alias("v")
        chain.froms.append(_Sql(
            f"jsonb_each(CASE WHEN jsonb_typeof({chain.last}) = 'object' THEN {chain.last} END) AS {root}(key, value)"))
        chain.conds.append(_Sql(f"{root}.key IN {_VALUE_MEMBERS}"))
        chain.last, chain.key = f"{root}.value", f"{root}.key"
        for key in path.keys:
            chain.child(self.alias("k"), _param(key))
        return chain

    def existence(self, path: AttrPath) -> _Sql:
        plain = path.member is None and not path.keys
        general = (self.instances(path) if plain else self.value_node(path)).exists()
        fast = self.fast_nodes(path, compared=not plain)
        if fast is None:
            return general
        # One instance: it (or its sub-attribute) exists if it is an object; a member or keyed node if not NULL.
        test = (f"jsonb_typeof({fast.instance}) = 'object'" if plain
                else " OR ".join(f"{node} IS NOT NULL" for node in fast.nodes))
        return fast.case("true", _Sql(test), general)

    def comparison(self, expr: Comparison) -> _Sql:
        op = Op.EQ if expr.op is Op.NE else expr.op
        return self.node_test(expr.path, _operand_predicate(expr.operand, op), negated=expr.op is Op.NE)

    def match(self, expr: Match) -> _Sql:
        def predicate(node: str) -> _Sql:
            return _fmt(f"{_string(node)} ~ {{}}", _param(expr.pattern))

        return self.node_test(expr.path, predicate, negated=expr.negated)

    def node_test(self, path: AttrPath, predicate: _PredicateFn, negated: bool) -> _Sql:
        """Some instance's node exists and matches ``predicate`` (or, if negated, does not)."""
        chain = self.value_node(path)
        test = self.node_matches(chain, predicate)
        general = chain.exists(_fmt("NOT coalesce(({}), false)", test) if negated else test)
        fast = self.fast_nodes(path)
        if fast is None:
            return general
        # Every compared node is a scalar or missing: the general form's test of a scalar node is the
        # predicate itself (no elements, no @value, no language map), and a missing node is no node.
        scalars = [f"coalesce(jsonb_typeof({node}) NOT IN ('array', 'object'), true)" for node in fast.nodes]
        if fast.others:
            # (jsonb_exists_any is ``?|``, spelled so that ``?`` stays the placeholder)
            scalars.insert(0, f"NOT jsonb_exists_any({fast.instance}, ARRAY{list(fast.others)!r}::text[])")
        if negated:
            tests = [_fmt(f"({node} IS NOT NULL AND NOT coalesce(({{}}), false))", predicate(node))
                     for node in fast.nodes]
        else:
            tests = [_fmt("coalesce(({}), false)", predicate(node)) for node in fast.nodes]
        if sum(len(sql.params) for sql in tests) > _FAST_MAX_PARAMS:
            return general  # (a long value list: the parameters a statement may bind are few)
        return fast.case(" AND ".join(scalars), _join(" OR ", tests), general)

    def fast_nodes(self, path: AttrPath, compared: bool = True) -> _Fast | None:
        """The compared nodes of the attribute's only instance, read by path, or None if paths cannot say.

        ``#>`` reads a path element as an array index when the node is an array, where the general
        form's ``->`` finds nothing: elements that look like integers keep the general form alone.
        Without ``compared`` (existence of the instance itself) only ``a`` and ``i`` are read.
        """
        iri = self.resolve(path.attr)
        subs = [self.resolve(name) for name in path.sub_attributes]
        if any(_INDEX_LIKE.fullmatch(text) for text in (iri, *subs, *path.keys)):
            return None
        alias = self.alias("f")
        instance = ["attrs", iri, "0", *subs]
        columns: list[_Sql] = [_param(["attrs", iri]), _param(instance)]
        others: tuple[str, ...] = ()
        paths: list[list[str]] = []
        if compared and path.member is not None:
            paths = [[*instance, path.member]]
        elif compared and path.keys:
            paths = [[*instance, member, *path.keys] for member in _VALUE_MEMBER_NAMES]
        elif compared:
            paths, others = [[*instance, member] for member in _SCALAR_MEMBERS], _OTHER_MEMBERS
        columns += [_param(p) for p in paths]
        names = ["a", "i", *(f"n{n}" for n in range(len(paths)))]
        select = _join(", ", [_fmt(f"e.doc #> {{}}::text[] AS {name}", column) for name, column in zip(names, columns,
                                                                                                        strict=True)])
        return _Fast(alias, select, [f"{alias}.n{n}" for n in range(len(paths))], others)

    def node_matches(self, chain: _Chain, predicate: _PredicateFn) -> _Sql:
        """The node itself, an element of it (array) or its ``@value`` matches ``predicate``."""
        node, each, tree = chain.last, self.alias("t"), self.alias("t")
        branches = [
            _fmt(f"(jsonb_typeof({node}) NOT IN ('array', 'object') AND {{}})", predicate(node)),
            _fmt(f"EXISTS (SELECT 1 FROM jsonb_array_elements(CASE WHEN jsonb_typeof({node}) = 'array' "
                 f"THEN {node} END) AS {each}(v) WHERE {{}})", predicate(f"{each}.v")),
            # ``->`` yields NULL unless the node is an object with that member.
            _fmt("coalesce(({}), false)", predicate(f"({node}) -> '@value'")),
        ]
        if chain.key is not None:
            # A languageMap matches through any of its strings (or arrays of strings), at any depth.
            branches.append(_fmt(
                f"EXISTS (SELECT 1 FROM jsonb_path_query(CASE WHEN {chain.key} = 'languageMap' AND "
                f"jsonb_typeof({node}) = 'object' THEN {node} END, 'strict $.**') AS {tree}(v) "
                f"WHERE jsonb_typeof({tree}.v) NOT IN ('array', 'object') AND {{}})", predicate(f"{tree}.v")))
        return _fmt("({})", _join(" OR ", branches))


# --------------------------------------------------------------------------------------------
# Predicates on one JSON node, given as a jsonb SQL expression
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Typed:
    """How to compare one kind of value: a guard, the compared expression (NULL if the kind differs), the param."""

    guard: str
    expr: str
    param: object


def _typed(value: Scalar, node: str) -> _Typed:
    if isinstance(value, NumberValue):
        return _Typed("true", _number(node), Decimal(repr(value.value)))
    if isinstance(value, (StringValue, UriValue)):
        return _Typed("true", _string(node), value.value)
    text = _string(node)
    if isinstance(value, DateTimeValue):
        expr = f"(CASE WHEN {text} ~ '{_CANONICAL_DATETIME}' THEN {text} ELSE ucity_datetime({text}) END) COLLATE \"C\""
        return _Typed("true", expr, utc_datetime_text(value.value))
    if isinstance(value, DateValue):
        return _Typed(f"{text} ~ '{_DATE}'", text, value.value.isoformat())
    if isinstance(value, TimeValue):
        expr = f"(CASE WHEN {text} ~ '^{_CANONICAL_TIME}$' THEN {text} ELSE ucity_time({text}) END) COLLATE \"C\""
        return _Typed("true", expr, _utc_time_text(value.value))
    raise QueryError(f"{type(value).__name__} has no order")


def _param_sql(typed: _Typed) -> _Sql:
    cast = "::numeric" if isinstance(typed.param, Decimal) else "::text"
    return _Sql("?" + cast, (typed.param,))


def _scalar_predicate(value: Scalar, op: Op) -> _PredicateFn:
    if isinstance(value, BooleanValue):
        if op is not Op.EQ:
            raise QueryError(f"booleans only go with == or !=, not {op.value}")
        literal = "true" if value.value else "false"
        return lambda node: _Sql(f"({node}) = '{literal}'::jsonb")

    def predicate(node: str) -> _Sql:
        typed = _typed(value, node)
        return _fmt(f"({typed.guard} AND {typed.expr} {_SQL_OPS[op]} {{}})", _param_sql(typed))

    return predicate


def _range_predicate(operand: Range) -> _PredicateFn:
    if type(operand.low) is not type(operand.high) or isinstance(operand.low, BooleanValue):
        raise QueryError("range bounds must be two numbers, strings, dates or times")

    def predicate(node: str) -> _Sql:
        low, high = _typed(operand.low, node), _typed(operand.high, node)
        return _fmt(f"({low.guard} AND {low.expr} BETWEEN {{}} AND {{}})", _param_sql(low), _param_sql(high))

    return predicate


def _list_predicate(operand: ValueList) -> _PredicateFn:
    items = [_scalar_predicate(item, Op.EQ) for item in operand.items]
    return lambda node: _fmt("({})", _join(" OR ", [_fmt("({})", item(node)) for item in items]))


def _operand_predicate(operand: Operand, op: Op) -> _PredicateFn:
    """``op`` is never NE here: ``!=`` is compiled as the negation of ``==``."""
    if isinstance(operand, (Range, ValueList)):
        if op is not Op.EQ:
            raise QueryError(f"ranges and value lists only go with == or !=, not {op.value}")
        return _range_predicate(operand) if isinstance(operand, Range) else _list_predicate(operand)
    return _scalar_predicate(operand, op)


def compile_q_postgres(expr: QExpr, resolve: Resolve) -> tuple[str, list[object]]:
    """SQL boolean fragment over ``e.doc`` and its ``?`` parameters for the ``q`` tree ``expr``.

    ``resolve`` expands a short attribute name (top-level or sub-attribute) to its IRI.
    """
    sql = _Compiler(resolve).expr(expr)
    return sql.text, list(sql.params)


# --------------------------------------------------------------------------------------------
# The SQL functions the fragments call (created by the store's migrations)
# --------------------------------------------------------------------------------------------

# The offset of an ISO 8601 time: Z, +hh, +hhmm, +hh:mm, optionally with seconds (Python accepts them).
_CLOCK_RE: Final = r"[0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:[.,][0-9]+)?)?"
_OFFSET_RE: Final = r"(Z|z|[+-][0-9]{2}(?::?[0-9]{2}(?::?[0-9]{2}(?:\.[0-9]+)?)?)?)?"

PG_FUNCTIONS: Final = [
    # The attribute IRIs of an entity document: what the GIN index `entities_attr_names` holds.
    """CREATE OR REPLACE FUNCTION ucity_attr_names(doc jsonb) RETURNS text[]
        LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
        SELECT ARRAY(SELECT jsonb_object_keys(CASE WHEN jsonb_typeof(doc -> 'attrs') = 'object'
                                                   THEN doc -> 'attrs' END)) $$""",
    # The interval an ISO offset text stands for (NULL for none or Z).
    r"""CREATE OR REPLACE FUNCTION ucity_offset(o text) RETURNS interval
        LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
        SELECT CASE WHEN o IS NULL OR o IN ('', 'Z', 'z') THEN interval '0' ELSE
          (CASE WHEN left(o, 1) = '-' THEN -1 ELSE 1 END) * (
            make_interval(hours => substr(replace(o, ':', ''), 2, 2)::int)
            + make_interval(mins => coalesce(nullif(substr(replace(o, ':', ''), 4, 2), '')::int, 0))
            + make_interval(secs => coalesce(nullif(substr(replace(o, ':', ''), 6), '')::float8, 0)))
        END $$""",
    # A clock text with its fraction cut (not rounded) to microseconds, as Python reads it.
    r"""CREATE OR REPLACE FUNCTION ucity_clock(c text) RETURNS text
        LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
        SELECT regexp_replace(replace(c, ',', '.'), '(\.[0-9]{6})[0-9]+$', '\1') $$""",
    # ``normalize_datetime_text`` of qsql: a datetime text in canonical UTC form, NULL if it is none.
    rf"""CREATE OR REPLACE FUNCTION ucity_datetime(t text) RETURNS text
        LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
        DECLARE m text[];
        BEGIN
          m := regexp_match(t, '^([0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}})[Tt ]'
                               '({_CLOCK_RE}){_OFFSET_RE}$');
          IF m IS NULL THEN RETURN NULL; END IF;
          RETURN to_char((m[1] || ' ' || ucity_clock(m[2]))::timestamp - ucity_offset(m[3]),
                         'YYYY-MM-DD"T"HH24:MI:SS.US"Z"');
        EXCEPTION WHEN others THEN RETURN NULL;
        END $$""",
    # ``normalize_time_text`` of qsql: a time text in canonical UTC form (wrapping around midnight).
    rf"""CREATE OR REPLACE FUNCTION ucity_time(t text) RETURNS text
        LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
        DECLARE m text[];
        BEGIN
          m := regexp_match(t, '^({_CLOCK_RE}){_OFFSET_RE}$');
          IF m IS NULL THEN RETURN NULL; END IF;
          RETURN to_char(ucity_clock(m[1])::time - ucity_offset(m[2]), 'HH24:MI:SS.US') || 'Z';
        EXCEPTION WHEN others THEN RETURN NULL;
        END $$""",
]
