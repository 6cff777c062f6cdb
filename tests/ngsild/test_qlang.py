"""Tests for the NGSI-LD query language parser: grammar, values, paths, errors, round trips."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ucity.ngsild.qlang import (
    SPECIAL_MEMBERS,
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
    Or,
    QExpr,
    QueryError,
    Range,
    Scalar,
    StringValue,
    TimeValue,
    UriValue,
    ValueList,
    attribute_names,
    format_q,
    parse_q,
)

KST = timezone(timedelta(hours=9))


def ex(name: str) -> Exists:
    return Exists(AttrPath(name))


def cmp(name: str, op: Op, operand: Scalar | Range | ValueList) -> Comparison:
    return Comparison(AttrPath(name), op, operand)


def num(value: int | float) -> NumberValue:
    return NumberValue(value)


# --- structure and precedence ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a", ex("a")),
        ("a;b", And((ex("a"), ex("b")))),
        ("a|b", Or((ex("a"), ex("b")))),
        ("a;b;c", And((ex("a"), ex("b"), ex("c")))),
        ("a;b|c", Or((And((ex("a"), ex("b"))), ex("c")))),
        ("a|b;c", Or((ex("a"), And((ex("b"), ex("c")))))),
        ("a|b;c|d", Or((ex("a"), And((ex("b"), ex("c"))), ex("d")))),
        ("(a|b);c", And((Or((ex("a"), ex("b"))), ex("c")))),
        ("a;(b|c)", And((ex("a"), Or((ex("b"), ex("c")))))),
        ("((a))", ex("a")),
        ("(a;b);c", And((And((ex("a"), ex("b"))), ex("c")))),
        ("((a|b);(c|d))|e", Or((And((Or((ex("a"), ex("b"))), Or((ex("c"), ex("d"))))), ex("e")))),
        ("!a", NotExists(AttrPath("a"))),
        ("!a;b", And((NotExists(AttrPath("a")), ex("b")))),
        ("a==1;!b|c>2", Or((And((cmp("a", Op.EQ, num(1)), NotExists(AttrPath("b")))), cmp("c", Op.GT, num(2))))),
    ],
)
def test_structure(text: str, expected: QExpr) -> None:
    assert parse_q(text) == expected


def test_whitespace_between_tokens_is_ignored() -> None:
    assert parse_q(" ( a == 1 ; b ) | ! c ") == parse_q("(a==1;b)|!c")


@pytest.mark.parametrize(
    ("text", "op"),
    [("a==1", Op.EQ), ("a!=1", Op.NE), ("a>1", Op.GT), ("a>=1", Op.GE), ("a<1", Op.LT), ("a<=1", Op.LE)],
)
def test_every_comparison_operator(text: str, op: Op) -> None:
    assert parse_q(text) == cmp("a", op, num(1))


def test_regex_operators() -> None:
    assert parse_q("a~=^x.*y$") == Match(AttrPath("a"), "^x.*y$")
    assert parse_q("a!~=^x") == Match(AttrPath("a"), "^x", negated=True)
    assert parse_q('a~="x;y|z"') == Match(AttrPath("a"), "x;y|z")
    assert parse_q('a~=""') == Match(AttrPath("a"), "")


@pytest.mark.parametrize(
    ("text", "pattern", "rest"),
    [
        ("a~=(?i)foo;b", "(?i)foo", ex("b")),
        ("a~=(x|y)z|b", "(x|y)z", ex("b")),
        ("a~=[;|)]+;b", "[;|)]+", ex("b")),
        (r"a~=x\;y\|z;b", r"x\;y\|z", ex("b")),
        ("a~=^b c ;b", "^b c", ex("b")),
    ],
)
def test_raw_regex_ends_at_a_logical_operator_outside_its_groups(text: str, pattern: str, rest: QExpr) -> None:
    expr = parse_q(text)
    assert isinstance(expr, (And, Or))
    assert expr.items == (Match(AttrPath("a"), pattern), rest)


def test_raw_regex_inside_parentheses() -> None:
    assert parse_q("(a~=(x)y);b") == And((Match(AttrPath("a"), "(x)y"), ex("b")))


# --- values ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0", num(0)),
        ("42", num(42)),
        ("-7", num(-7)),
        ("3.25", num(3.25)),
        ("-0.5", num(-0.5)),
        ("1e3", num(1000.0)),
        ("2.5E-2", num(0.025)),
        ("1e+16", num(1e16)),
        ("123456789012345678901234567890", num(123456789012345678901234567890)),
        ('"hello"', StringValue("hello")),
        ('""', StringValue("")),
        ('"a\\"b"', StringValue('a"b')),
        ('"back\\\\slash"', StringValue("back\\slash")),
        ('"line\\nbreak\\ttab"', StringValue("line\nbreak\ttab")),
        ('"caf\\u00e9"', StringValue("café")),
        ('"서울 시청"', StringValue("서울 시청")),
        ('"a;b|c)(,.."', StringValue("a;b|c)(,..")),
        ("true", BooleanValue(True)),
        ("false", BooleanValue(False)),
        ("2024-01-01T12:00:00Z", DateTimeValue(datetime(2024, 1, 1, 12, tzinfo=UTC))),
        ("2024-01-01T12:00:00.123456Z", DateTimeValue(datetime(2024, 1, 1, 12, 0, 0, 123456, tzinfo=UTC))),
        ("2024-01-01T21:00:00+09:00", DateTimeValue(datetime(2024, 1, 1, 21, tzinfo=KST))),
        ("2024-01-01T12:00Z", DateTimeValue(datetime(2024, 1, 1, 12, tzinfo=UTC))),
        ("2024-02-29", DateValue(date(2024, 2, 29))),
        ("12:30:00Z", TimeValue(time(12, 30, tzinfo=UTC))),
        ("12:30:00.5", TimeValue(time(12, 30, 0, 500000))),
        ("urn:ngsi-ld:Building:b1", UriValue("urn:ngsi-ld:Building:b1")),
        ("https://example.org/a/b?c=1#d", UriValue("https://example.org/a/b?c=1#d")),
        ("http://example.org/a/../b", UriValue("http://example.org/a/../b")),
    ],
)
def test_scalar_values(text: str, value: Scalar) -> None:
    assert parse_q(f"attr=={text}") == cmp("attr", Op.EQ, value)


def test_a_datetime_without_offset_is_refused_unless_stored_before() -> None:
    """QA17 F4: NGSI-LD DateTimes are UTC instants; a Korea time without +09:00 was silently read as UTC."""
    for q in ("a>2024-01-01T12:00:00", "a==2024-01-01T12:00:00Z..2024-01-02T00:00:00", "a==1,2024-01-01T12:00"):
        with pytest.raises(QueryError) as refused:
            parse_q(q)
        assert "UTC 오프셋 필요" in refused.value.bilingual() and "add Z (UTC) or +09:00" in str(refused.value)
    stored = parse_q("attr==2024-01-01T12:00:00", naive_utc=True)  # e.g. a subscription's q saved before
    assert stored == cmp("attr", Op.EQ, DateTimeValue(datetime(2024, 1, 1, 12, tzinfo=UTC)))


def test_a_time_member_needs_a_datetime_not_a_date() -> None:
    for q in ("a.observedAt>2024-01-01", "a.modifiedAt==2024-01-01,2024-01-01T00:00:00Z"):
        with pytest.raises(QueryError) as refused:
            parse_q(q)
        assert "2024-01-01T00:00:00+09:00" in str(refused.value)
    assert parse_q("birthDate>2024-01-01") == cmp("birthDate", Op.GT, DateValue(date(2024, 1, 1)))


def test_datetime_offsets_denote_the_same_instant() -> None:
    assert parse_q("a==2024-01-01T21:00:00+09:00") == parse_q("a==2024-01-01T12:00:00Z")


def test_numbers_keep_int_and_float_apart_for_rendering() -> None:
    operand = parse_q("a==10").operand  # type: ignore[union-attr]
    assert isinstance(operand, NumberValue) and isinstance(operand.value, int)
    operand = parse_q("a==10.0").operand  # type: ignore[union-attr]
    assert isinstance(operand, NumberValue) and isinstance(operand.value, float)


@pytest.mark.parametrize(
    ("text", "operand"),
    [
        ("1..5", Range(num(1), num(5))),
        ("-5..-1", Range(num(-5), num(-1))),
        ("1.5..2.5", Range(num(1.5), num(2.5))),
        ('"a".."m"', Range(StringValue("a"), StringValue("m"))),
        (
            "2024-01-01T00:00:00Z..2024-12-31T23:59:59Z",
            Range(
                DateTimeValue(datetime(2024, 1, 1, tzinfo=UTC)),
                DateTimeValue(datetime(2024, 12, 31, 23, 59, 59, tzinfo=UTC)),
            ),
        ),
        ("2024-01-01..2024-02-01", Range(DateValue(date(2024, 1, 1)), DateValue(date(2024, 2, 1)))),
        ("08:00:00Z..18:00:00Z", Range(TimeValue(time(8, tzinfo=UTC)), TimeValue(time(18, tzinfo=UTC)))),
        ("1 .. 5", Range(num(1), num(5))),
    ],
)
def test_ranges(text: str, operand: Range) -> None:
    assert parse_q(f"a=={text}") == cmp("a", Op.EQ, operand)
    assert parse_q(f"a!={text}") == cmp("a", Op.NE, operand)


@pytest.mark.parametrize(
    ("text", "items"),
    [
        ("1,2,3", (num(1), num(2), num(3))),
        ('"red","green"', (StringValue("red"), StringValue("green"))),
        ('"a,b",1', (StringValue("a,b"), num(1))),
        ("true,false", (BooleanValue(True), BooleanValue(False))),
        ("urn:a:1,urn:a:2", (UriValue("urn:a:1"), UriValue("urn:a:2"))),
        ("2024-01-01,2024-01-02", (DateValue(date(2024, 1, 1)), DateValue(date(2024, 1, 2)))),
        ("1 , 2", (num(1), num(2))),
    ],
)
def test_value_lists(text: str, items: tuple[Scalar, ...]) -> None:
    assert parse_q(f"a=={text}") == cmp("a", Op.EQ, ValueList(items))
    assert parse_q(f"a!={text}") == cmp("a", Op.NE, ValueList(items))


# --- paths -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("temperature", AttrPath("temperature")),
        ("temperature.observedAt", AttrPath("temperature", ("observedAt",))),
        ("status.reliability", AttrPath("status", ("reliability",))),
        ("a.b.c", AttrPath("a", ("b", "c"))),
        ("a.b.unitCode", AttrPath("a", ("b", "unitCode"))),
        ("address[city]", AttrPath("address", (), ("city",))),
        ("address[postal][code]", AttrPath("address", (), ("postal", "code"))),
        ("a.b[k]", AttrPath("a", ("b",), ("k",))),
        ("a.b.c[k1][k2]", AttrPath("a", ("b", "c"), ("k1", "k2"))),
        ("a[key.with.dots]", AttrPath("a", (), ("key.with.dots",))),
        ("schema:name", AttrPath("schema:name")),
        ("snake_case-and-dash", AttrPath("snake_case-and-dash")),
        ("온도", AttrPath("온도")),
    ],
)
def test_paths(text: str, path: AttrPath) -> None:
    assert parse_q(text) == Exists(path)
    assert parse_q(f"!{text}") == NotExists(path)
    assert parse_q(f"{text}==1") == Comparison(path, Op.EQ, num(1))


def test_path_member_and_sub_attributes() -> None:
    assert AttrPath("a", ("b", "observedAt")).member == "observedAt"
    assert AttrPath("a", ("b", "observedAt")).sub_attributes == ("b",)
    assert AttrPath("a", ("b",)).member is None
    assert AttrPath("a", ("b",)).sub_attributes == ("b",)
    assert {"observedAt", "unitCode", "datasetId", "createdAt", "modifiedAt"} == SPECIAL_MEMBERS


def test_attribute_names() -> None:
    expr = parse_q("a.b==1;(c[k]|!d|e~=x);a>2;f.observedAt<2024-01-01T00:00:00Z")
    assert attribute_names(expr) == {"a", "c", "d", "e", "f"}
    assert attribute_names(parse_q("x")) == {"x"}


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message", "position"),
    [
        ("", "empty query", 0),
        ("   ", "empty query", 0),
        ("a==", "expected a value", 3),
        ("a==foo", "strings must be double-quoted", 3),
        ("a=1", "expected an operator", 1),
        ("a b", "expected an operator", 2),
        ("==1", "expected an attribute name", 0),
        ("a;", "expected an attribute name", 2),
        ("a;;b", "expected an attribute name", 2),
        ("a|", "expected an attribute name", 2),
        ("(a", "expected ';', '|' or ')'", 2),
        ("a)", "expected ';', '|' or end of query", 1),
        ("()", "expected an attribute name", 1),
        ('a=="abc', "unterminated quoted string", 3),
        ('a=="\\x"', "invalid escape", 3),
        ('a=="\\ud800"', "invalid escape", 3),
        ("a==1x", "invalid value '1x'", 3),
        ("a==1e999", "out of range", 3),
        ("a==2024-13-01", "invalid date", 3),
        ("a==2024-01-01T25:00:00Z", "invalid dateTime", 3),
        ("a==25:00:00", "invalid time", 3),
        ("a>true", "boolean values only go with == or !=", 2),
        ("a<urn:x:y", "uri values only go with == or !=", 2),
        ("a>1..2", "ranges and value lists only go with == or !=", 2),
        ("a<=1,2", "ranges and value lists only go with == or !=", 3),
        ('a==1.."z"', "range bounds differ in type", 3),
        ("a==true..false", "range bound must be a number", 3),
        ('a=="x"..urn:x:2', "range bound must be a number", 3),
        ("a==1..", "expected a value", 6),
        ("a==1,", "expected a value", 5),
        ("a~=", "expected a regular expression", 3),
        ("a~=(x", "invalid regular expression", 3),
        ("a~=[", "invalid regular expression", 3),
        ("!a==1", "'!' only negates attribute existence", 2),
        ("!(a)", "expected an attribute name", 1),
        ("a.", "expected a sub-attribute name", 2),
        ("a[", "expected a compound key", 2),
        ("a[]", "expected a compound key", 2),
        ("a[k", "expected ']'", 3),
        ("a[k].b", "sub-attributes must come before", 4),
        ("a.observedAt.b", "'observedAt' must be the last segment", 14),
        ("a.unitCode[k]", "'unitCode' has no compound value", 13),
        ("a==1;b=", "expected an operator", 6),
        ("(" * 70 + "a" + ")" * 70, "nested deeper than", 64),
    ],
)
def test_errors_say_where_and_what(text: str, message: str, position: int) -> None:
    with pytest.raises(QueryError) as info:
        parse_q(text)
    assert message in str(info.value)
    assert info.value.position == position
    assert f"(at position {position})" in str(info.value)


def test_query_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="invalid q"):
        parse_q("a==")


# --- rendering ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "rendered"),
    [
        ("a == 1 ; b", "a==1;b"),
        ("(a|b);c", "(a|b);c"),
        ("a;b|c", "a;b|c"),
        ("a~=(?i)x", 'a~="(?i)x"'),
        ("a==2024-01-01T12:00:00+00:00", "a==2024-01-01T12:00:00Z"),
        ("a==12:00:00+00:00", "a==12:00:00Z"),
        ('a=="q\\"uote"', 'a=="q\\"uote"'),
        ("a.b[c]!=1..2", "a.b[c]!=1..2"),
        ("a==urn:x:1,2,true", "a==urn:x:1,2,true"),
    ],
)
def test_format_q(text: str, rendered: str) -> None:
    assert format_q(parse_q(text)) == rendered


# --- properties --------------------------------------------------------------------------------

NAME_CHARS = "abcxyzAZ019_-:온도"
NAMES = st.one_of(
    st.text(alphabet=NAME_CHARS, min_size=1, max_size=8),
    st.sampled_from(["schema:name", "refDevice", "observed", *sorted(SPECIAL_MEMBERS)]),
).filter(lambda name: name not in SPECIAL_MEMBERS)
KEYS = st.text(alphabet=NAME_CHARS + ".#/@", min_size=1, max_size=8)
ZONES = st.sampled_from([UTC, KST, timezone(timedelta(hours=-5, minutes=-30))])


@st.composite
def paths(draw: st.DrawFn) -> AttrPath:
    subs = draw(st.lists(NAMES, max_size=2))
    if draw(st.booleans()) and subs is not None:
        return AttrPath(draw(NAMES), (*subs, draw(st.sampled_from(sorted(SPECIAL_MEMBERS)))))
    return AttrPath(draw(NAMES), tuple(subs), tuple(draw(st.lists(KEYS, max_size=2))))


NUMBERS = st.builds(NumberValue, st.one_of(st.integers(), st.floats(allow_nan=False, allow_infinity=False)))
STRINGS = st.builds(StringValue, st.text(max_size=12))
DATETIMES = st.builds(
    DateTimeValue,
    st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31), timezones=ZONES),
)
DATES = st.builds(DateValue, st.dates())
TIMES = st.builds(TimeValue, st.times(timezones=st.one_of(st.none(), ZONES)))
URIS = st.builds(UriValue, st.text(alphabet="abXY09:_-/#?=", min_size=1, max_size=10).map("urn:x:".__add__))
BOOLEANS = st.builds(BooleanValue, st.booleans())
COMPARABLE_STRATEGIES = [NUMBERS, STRINGS, DATETIMES, DATES, TIMES]
COMPARABLES = st.one_of(*COMPARABLE_STRATEGIES)
SCALARS = st.one_of(COMPARABLES, BOOLEANS, URIS)
RANGES = st.one_of(*(st.builds(Range, kind, kind) for kind in COMPARABLE_STRATEGIES))
LISTS = st.builds(ValueList, st.lists(SCALARS, min_size=2, max_size=4).map(tuple))
ORDERING = [Op.GT, Op.GE, Op.LT, Op.LE]


def _valid_pattern(pattern: str) -> bool:
    try:
        re.compile(pattern)
    except re.error:
        return False
    return True


TERMS = st.one_of(
    st.builds(Exists, paths()),
    st.builds(NotExists, paths()),
    st.builds(Comparison, paths(), st.sampled_from([Op.EQ, Op.NE]), st.one_of(SCALARS, RANGES, LISTS)),
    st.builds(Comparison, paths(), st.sampled_from(ORDERING), COMPARABLES),
    st.builds(Match, paths(), st.text(max_size=10).filter(_valid_pattern), st.booleans()),
)
EXPRESSIONS = st.recursive(
    TERMS,
    lambda children: st.one_of(
        st.builds(And, st.lists(children, min_size=2, max_size=3).map(tuple)),
        st.builds(Or, st.lists(children, min_size=2, max_size=3).map(tuple)),
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(EXPRESSIONS)
def test_render_then_parse_is_identity(expr: QExpr) -> None:
    # naive_utc: the generated terms include dates on `createdAt` & co., which a client's q may not use (QA17 F4)
    assert parse_q(format_q(expr), naive_utc=True) == expr


QUERY_CHARS = st.sampled_from([*'ab1-.[]();|!=<>~",:TZ\\ e', "..", "==", "urn:x", "2024-01-01", '"s"'])


@settings(max_examples=1000, deadline=None)
@given(st.one_of(st.text(max_size=40), st.lists(QUERY_CHARS, max_size=20).map("".join)))
def test_garbage_raises_only_query_error(text: str) -> None:
    try:
        expr = parse_q(text)
    except QueryError as exc:
        assert exc.position is None or 0 <= exc.position <= len(text)
        return
    # Whatever parses renders to text that parses back to the same tree.
    assert parse_q(format_q(expr)) == expr


@settings(max_examples=200, deadline=None)
@given(st.lists(NAMES, min_size=1, max_size=5), st.data())
def test_and_binds_tighter_than_or(names: list[str], data: st.DataObject) -> None:
    separators = [data.draw(st.sampled_from([";", "|"])) for _ in names[1:]]
    text = names[0] + "".join(sep + name for sep, name in zip(separators, names[1:], strict=True))
    expr = parse_q(text)
    # The OR-of-ANDs reading: split on "|" first, then on ";".
    groups = [[ex(n) for n in group.split(";")] for group in text.split("|")]
    terms: list[QExpr] = [g[0] if len(g) == 1 else And(tuple(g)) for g in groups]
    assert expr == (terms[0] if len(terms) == 1 else Or(tuple(terms)))
