"""The NGSI-LD query language (``q``, ETSI GS CIM 009 §4.9): parser and AST.

``parse_q`` turns the (already URL-decoded) text of a ``q`` parameter into an abstract syntax
tree of frozen dataclasses; ``format_q`` renders a tree back to text. The tree knows nothing
about SQL or JSON-LD: one compiler per database dialect (``qsql`` for SQLite) turns it into a
query, and attribute names stay short terms until the compiler expands them.

Grammar (a superset of the spec's ABNF; whitespace between tokens is ignored)::

    query     = or-expr
    or-expr   = and-expr *( "|" and-expr )          ; ";" (AND) binds tighter than "|" (OR)
    and-expr  = factor *( ";" factor )
    factor    = "(" or-expr ")" / term
    term      = "!" path                            ; attribute does not exist
              / path                                ; attribute exists
              / path ( "==" / "!=" ) ( range / value-list / value )
              / path ( ">" / ">=" / "<" / "<=" ) comparable
              / path ( "~=" / "!~=" ) regex         ; regex: quoted string or raw text
    path      = name *( "." name ) *( "[" key "]" ) ; attr.sub[key1][key2]; the last name may
                                                    ; be observedAt, unitCode, datasetId,
                                                    ; createdAt or modifiedAt (then no keys)
    name      = 1*( letter / digit / "_" / "-" / ":" )   ; Unicode letters; CURIEs allowed
    key       = 1*( any character but "[", "]" and whitespace )
    range     = comparable ".." comparable
    value-list= value 1*( "," value )
    value     = comparable / "true" / "false" / URI
    comparable= number / quoted-string / dateTime / date / time

Quoted strings use JSON escapes. Unquoted URIs end at ``; | , ) "`` or whitespace. A raw regex
ends at a ``;``, ``|`` or ``)`` outside its own groups and classes; quote it to use those freely.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Final, TypeAlias, TypeVar

__all__ = [
    "COMPARABLE_TYPES",
    "SPECIAL_MEMBERS",
    "And",
    "AttrPath",
    "BooleanValue",
    "Comparison",
    "DateTimeValue",
    "DateValue",
    "Exists",
    "Match",
    "NotExists",
    "NumberValue",
    "Op",
    "Operand",
    "Or",
    "QExpr",
    "QueryError",
    "Range",
    "Scalar",
    "StringValue",
    "TimeValue",
    "UriValue",
    "ValueList",
    "attribute_names",
    "format_path",
    "format_q",
    "format_value",
    "parse_q",
]

#: Members of an attribute instance that a dotted path may name instead of a sub-attribute
#: (``temperature.observedAt``). They are NGSI-LD reserved names, never expanded by @context.
SPECIAL_MEMBERS: Final = frozenset({"observedAt", "unitCode", "datasetId", "createdAt", "modifiedAt"})

# Deep enough for any hand-written query, shallow enough to stay far from Python's recursion limit.
_MAX_DEPTH: Final = 64

_T = TypeVar("_T")


class QueryError(ValueError):
    """A ``q`` expression that cannot be parsed; ``position`` is a 0-based index into the text."""

    def __init__(self, message: str, position: int | None = None, ko: str = "") -> None:
        self.message = message
        self.position = position
        self.ko = ko  # the message in Korean (`bilingual`); str() stays English for ucity's own logs and wrappers
        suffix = "" if position is None else f" (at position {position})"
        super().__init__(f"invalid q: {message}{suffix}")

    def bilingual(self) -> str:
        """The error as ucity's details say it, "한국어 / English" (the English half is `str(self)`)."""
        where = "" if self.position is None else f" (위치 {self.position})"
        return f"잘못된 q: {self.ko or '해석할 수 없는 식'}{where} / {self}"


# --------------------------------------------------------------------------------------------
# AST
# --------------------------------------------------------------------------------------------


class Op(enum.Enum):
    """Comparison operators; the value is the operator's spelling in the query language."""

    EQ = "=="
    NE = "!="
    GT = ">"
    GE = ">="
    LT = "<"
    LE = "<="


@dataclass(frozen=True)
class AttrPath:
    """``attr.sub1.sub2[key1][key2]``: a top-level attribute, sub-attributes, compound keys.

    The last element of ``sub`` may be one of ``SPECIAL_MEMBERS`` (then ``keys`` is empty).
    """

    attr: str
    sub: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()

    @property
    def member(self) -> str | None:
        """The special instance member named by the path (``observedAt`` ...), if any."""
        if self.sub and self.sub[-1] in SPECIAL_MEMBERS:
            return self.sub[-1]
        return None

    @property
    def sub_attributes(self) -> tuple[str, ...]:
        """The sub-attribute names of the path, without a trailing special member."""
        return self.sub[:-1] if self.member is not None else self.sub


@dataclass(frozen=True)
class NumberValue:
    value: int | float


@dataclass(frozen=True)
class StringValue:
    value: str


@dataclass(frozen=True)
class BooleanValue:
    value: bool


@dataclass(frozen=True)
class DateTimeValue:
    """Always timezone-aware: a query datetime without offset is taken as UTC."""

    value: datetime


@dataclass(frozen=True)
class DateValue:
    value: date


@dataclass(frozen=True)
class TimeValue:
    value: time


@dataclass(frozen=True)
class UriValue:
    """An unquoted absolute URI (``urn:ngsi-ld:Building:b1``); compared as a string."""

    value: str


Scalar: TypeAlias = NumberValue | StringValue | BooleanValue | DateTimeValue | DateValue | TimeValue | UriValue
#: Scalars that have an order and may be used with ``> >= < <=`` and in ranges.
COMPARABLE_TYPES: Final = (NumberValue, StringValue, DateTimeValue, DateValue, TimeValue)


@dataclass(frozen=True)
class Range:
    """``low..high``: with ``==`` the value is between the bounds inclusive, with ``!=`` outside."""

    low: Scalar
    high: Scalar


@dataclass(frozen=True)
class ValueList:
    """``a,b,c``: with ``==`` the value is any of the items, with ``!=`` none of them."""

    items: tuple[Scalar, ...]


Operand: TypeAlias = Scalar | Range | ValueList


@dataclass(frozen=True)
class Comparison:
    path: AttrPath
    op: Op
    operand: Operand


@dataclass(frozen=True)
class Match:
    """``path~=pattern`` (or ``path!~=pattern`` when ``negated``): a regular expression match."""

    path: AttrPath
    pattern: str
    negated: bool = False


@dataclass(frozen=True)
class Exists:
    path: AttrPath


@dataclass(frozen=True)
class NotExists:
    path: AttrPath


@dataclass(frozen=True)
class And:
    items: tuple[QExpr, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[QExpr, ...]


QExpr: TypeAlias = Comparison | Match | Exists | NotExists | And | Or


# --------------------------------------------------------------------------------------------
# Scanner: the lexical level. The language is context-dependent (a "." separates path segments
# but belongs to a number, a "(" groups terms but belongs to a regex), so the parser asks for
# the kind of token it expects next instead of consuming a pre-built token stream.
# --------------------------------------------------------------------------------------------

_NAME_RE: Final = re.compile(r"[\w:\-]+")
_KEY_RE: Final = re.compile(r"[^\[\]\s]+")
_OPERATORS: Final = ("!~=", "==", "!=", ">=", "<=", "~=", ">", "<")
_URI_START_RE: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
# Characters that end an unquoted value (URIs may contain "(" and ".." but not these).
_URI_STOP: Final = frozenset(';|,)"')
_VALUE_STOP: Final = frozenset(';|,)("')

_NUMBER_RE: Final = re.compile(r"-?\d+(\.\d+)?([eE][+-]?\d+)?")
_OFFSET: Final = r"(Z|[+-]\d{2}(:?\d{2})?)?"
_TIME_PART: Final = r"\d{2}:\d{2}(:\d{2}(\.\d+)?)?" + _OFFSET
_DATETIME_RE: Final = re.compile(r"\d{4}-\d{2}-\d{2}T" + _TIME_PART)
_DATE_RE: Final = re.compile(r"\d{4}-\d{2}-\d{2}")
_TIME_RE: Final = re.compile(_TIME_PART)


# What the parser expected (`_Scanner.error`), in Korean.
_EXPECTED_KO: Final = {
    "';', '|' or end of query": "';', '|' 또는 식의 끝",
    "';', '|' or ')'": "';', '|' 또는 ')'",
    "an operator (== != > >= < <= ~= !~=), ';', '|', ')' or end of query":
        "연산자(== != > >= < <= ~= !~=), ';', '|', ')' 또는 식의 끝",
    "a regular expression": "정규식",
    "an attribute name": "속성 이름",
    "a sub-attribute name after '.'": "'.' 뒤의 하위 속성 이름",
    "a compound key after '['": "'[' 뒤의 복합 값 키",
}


def _describe(text: str, pos: int) -> str:
    """What the parser found at ``pos``, for error messages."""
    if pos >= len(text):
        return "end of query"
    return repr(text[pos : pos + 12])


class _Scanner:
    """A cursor over the query text with the token readers the parser needs."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def at_end(self) -> bool:
        self.skip_space()
        return self.pos >= len(self.text)

    def peek(self, literal: str) -> bool:
        self.skip_space()
        return self.text.startswith(literal, self.pos)

    def accept(self, literal: str) -> bool:
        if self.peek(literal):
            self.pos += len(literal)
            return True
        return False

    def error(self, expected: str, pos: int | None = None) -> QueryError:
        at = self.pos if pos is None else pos
        found = _describe(self.text, at)
        found_ko = "식의 끝" if at >= len(self.text) else found
        return QueryError(f"expected {expected}, found {found}", at,
                          f"{_EXPECTED_KO.get(expected, expected)} 필요, 찾은 것: {found_ko}")

    def expect(self, literal: str, expected: str) -> None:
        if not self.accept(literal):
            raise self.error(expected)

    def read_regex(self, pattern: re.Pattern[str], expected: str, skip: bool = True) -> str:
        if skip:
            self.skip_space()
        found = pattern.match(self.text, self.pos)
        if found is None:
            raise self.error(expected)
        self.pos = found.end()
        return found.group()

    def read_operator(self) -> str | None:
        self.skip_space()
        for op in _OPERATORS:
            if self.text.startswith(op, self.pos):
                self.pos += len(op)
                return op
        return None

    def read_quoted(self) -> str:
        """A JSON-style double-quoted string (``\\"``, ``\\\\``, ``\\n``, ``\\uXXXX`` ...)."""
        start = self.pos
        end = self._closing_quote(start)
        try:
            value: str = json.loads(self.text[start : end + 1], strict=False)
            value.encode("utf-8")  # lone surrogates from \\uD800 escapes cannot be stored
        except (ValueError, UnicodeEncodeError) as exc:
            raise QueryError(f"invalid escape in quoted string: {exc}", start,
                             f"따옴표 문자열의 이스케이프가 잘못됨({exc})") from None
        self.pos = end + 1
        return value

    def _closing_quote(self, start: int) -> int:
        i = start + 1
        while i < len(self.text):
            char = self.text[i]
            if char == "\\":
                i += 2
                continue
            if char == '"':
                return i
            i += 1
        raise QueryError("unterminated quoted string", start, "따옴표 문자열이 닫히지 않음")

    def read_bare(self) -> str:
        """An unquoted value: a number, date/time, ``true``/``false`` or a URI."""
        self.skip_space()
        start = self.pos
        is_uri = _URI_START_RE.match(self.text, start) is not None
        stop = _URI_STOP if is_uri else _VALUE_STOP
        i = start
        while i < len(self.text) and self.text[i] not in stop and not self.text[i].isspace():
            # ".." separates range bounds; a URI cannot be a bound, so its dots are its own.
            if not is_uri and self.text.startswith("..", i):
                break
            i += 1
        self.pos = i
        return self.text[start:i]

    def read_raw_regex(self) -> str:
        """An unquoted pattern: up to a ``;``/``|``/``)`` outside the pattern's own groups."""
        self.skip_space()
        start = i = self.pos
        depth, in_class = 0, False
        while i < len(self.text):
            char = self.text[i]
            if char == "\\":
                i += 2
                continue
            if in_class:
                in_class = char != "]"
            elif char == "[":
                in_class = True
            elif char == "(":
                depth += 1
            elif char == ")":
                if depth == 0:
                    break
                depth -= 1
            elif char in ";|" and depth == 0:
                break
            i += 1
        self.pos = min(i, len(self.text))
        return self.text[start : self.pos].rstrip()


# --------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------


def _classify_bare(word: str, pos: int) -> Scalar:
    """Turn an unquoted word into a typed scalar, or explain why it is not one."""
    if word in ("true", "false"):
        return BooleanValue(word == "true")
    if _DATETIME_RE.fullmatch(word):
        return DateTimeValue(_parse_datetime(word, pos))
    if _DATE_RE.fullmatch(word):
        return DateValue(_parse_iso(date.fromisoformat, word, pos, "date"))
    if _TIME_RE.fullmatch(word):
        return TimeValue(_parse_iso(time.fromisoformat, word, pos, "time"))
    if _NUMBER_RE.fullmatch(word):
        return NumberValue(_parse_number(word, pos))
    scheme = _URI_START_RE.match(word)
    if scheme is not None and len(word) > scheme.end():
        return UriValue(word)
    if not word:
        raise QueryError("expected a value, found nothing", pos, "값이 필요한데 없음")
    raise QueryError(
        f"invalid value {word!r}: expected a number, a double-quoted string, true/false, "
        "a date/time or a URI (strings must be double-quoted)",
        pos,
        f"잘못된 값 {word!r}: 숫자, 큰따옴표 문자열, true/false, 날짜/시각 또는 URI여야 함(문자열은 큰따옴표로 감쌈)",
    )


def _parse_iso(parse: Callable[[str], _T], word: str, pos: int, what: str) -> _T:
    try:
        return parse(word)
    except ValueError as exc:
        raise QueryError(f"invalid {what} {word!r}: {exc}", pos, f"잘못된 {what} {word!r}({exc})") from None


def _parse_datetime(word: str, pos: int) -> datetime:
    try:
        value = datetime.fromisoformat(word)
    except ValueError as exc:
        raise QueryError(f"invalid dateTime {word!r}: {exc}", pos, f"잘못된 dateTime {word!r}({exc})") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)  # NGSI-LD times are UTC unless told otherwise
    try:
        value.astimezone(UTC)  # compilers normalise to UTC: fail here, not there
    except OverflowError:
        raise QueryError(f"dateTime {word!r} is out of range in UTC", pos, f"dateTime {word!r}이(가) UTC 범위를 벗어남") from None
    return value


def _parse_number(word: str, pos: int) -> int | float:
    try:
        if not any(c in word for c in ".eE"):
            return int(word)
        number = float(word)
    except ValueError as exc:
        raise QueryError(f"invalid number {word!r}: {exc}", pos, f"잘못된 숫자 {word!r}({exc})") from None
    if number in (float("inf"), float("-inf")):
        raise QueryError(f"number {word!r} is out of range", pos, f"숫자 {word!r}이(가) 범위를 벗어남")
    return number


# --------------------------------------------------------------------------------------------
# Parser
# --------------------------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str, naive_utc: bool = False) -> None:
        self.scan = _Scanner(text)
        self.depth = 0
        self.naive_utc = naive_utc

    def parse(self) -> QExpr:
        if self.scan.at_end():
            raise QueryError("empty query", 0, "빈 식")
        expr = self.or_expr()
        if not self.scan.at_end():
            raise self.scan.error("';', '|' or end of query")
        return expr

    def or_expr(self) -> QExpr:
        items = [self.and_expr()]
        while self.scan.accept("|"):
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def and_expr(self) -> QExpr:
        items = [self.factor()]
        while self.scan.accept(";"):
            items.append(self.factor())
        return items[0] if len(items) == 1 else And(tuple(items))

    def factor(self) -> QExpr:
        if not self.scan.accept("("):
            return self.term()
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise QueryError(f"parentheses nested deeper than {_MAX_DEPTH}", self.scan.pos - 1,
                             f"괄호가 {_MAX_DEPTH}단계보다 깊게 중첩됨")
        expr = self.or_expr()
        self.scan.expect(")", "';', '|' or ')'")
        self.depth -= 1
        return expr

    def term(self) -> QExpr:
        if self.scan.accept("!"):
            return self.not_exists()
        path = self.path()
        op = self.scan.read_operator()
        if op is None:
            return self.exists(path)
        if op in ("~=", "!~="):
            return Match(path, self.regex(), negated=op == "!~=")
        return self.comparison(path, Op(op))

    def not_exists(self) -> NotExists:
        path = self.path()
        self.scan.skip_space()
        op_pos = self.scan.pos
        if self.scan.read_operator() is not None:
            raise QueryError("'!' only negates attribute existence (write 'attr!=value')", op_pos,
                             "'!'는 속성의 존재만 부정함('attr!=value'로 쓰세요)")
        return NotExists(path)

    def exists(self, path: AttrPath) -> Exists:
        if self.scan.at_end() or any(self.scan.peek(token) for token in ";|)"):
            return Exists(path)
        raise self.scan.error("an operator (== != > >= < <= ~= !~=), ';', '|', ')' or end of query")

    def path(self) -> AttrPath:
        attr = self.scan.read_regex(_NAME_RE, "an attribute name")
        sub: list[str] = []
        while self.scan.text.startswith(".", self.scan.pos):
            self.scan.pos += 1
            sub.append(self.scan.read_regex(_NAME_RE, "a sub-attribute name after '.'", skip=False))
            self._check_member_is_last(sub)
        keys: list[str] = []
        while self.scan.text.startswith("[", self.scan.pos):
            self.scan.pos += 1
            keys.append(self.scan.read_regex(_KEY_RE, "a compound key after '['", skip=False))
            if not self.scan.text.startswith("]", self.scan.pos):
                raise self.scan.error("']'")
            self.scan.pos += 1
        path = AttrPath(attr, tuple(sub), tuple(keys))
        if keys and path.member is not None:
            raise QueryError(f"'{path.member}' has no compound value to index with '[...]'", self.scan.pos,
                             f"'{path.member}'에는 '[...]'로 찾을 복합 값이 없음")
        if self.scan.text.startswith(".", self.scan.pos):
            raise QueryError("sub-attributes must come before '[...]' keys in a path", self.scan.pos,
                             "경로에서 하위 속성은 '[...]' 키보다 앞에 와야 함")
        return path

    def _check_member_is_last(self, sub: list[str]) -> None:
        if len(sub) > 1 and sub[-2] in SPECIAL_MEMBERS:
            raise QueryError(f"'{sub[-2]}' must be the last segment of an attribute path", self.scan.pos,
                             f"'{sub[-2]}'는 속성 경로의 마지막 부분이어야 함")

    def regex(self) -> str:
        self.scan.skip_space()
        start = self.scan.pos
        if self.scan.peek('"'):
            pattern = self.scan.read_quoted()  # quoted: may hold ';', '|' and even be empty
        else:
            pattern = self.scan.read_raw_regex()
            if not pattern:
                raise self.scan.error("a regular expression", start)
        _check_regex(pattern, start)
        return pattern

    def comparison(self, path: AttrPath, op: Op) -> Comparison:
        self.scan.skip_space()
        start = self.scan.pos
        first = self.scalar()
        if self.scan.accept(".."):
            operand: Operand = Range(first, self.scalar())
        elif self.scan.peek(","):
            items = [first]
            while self.scan.accept(","):
                items.append(self.scalar())
            operand = ValueList(tuple(items))
        else:
            operand = first
        _check_operand(op, operand, start)
        if not self.naive_utc and path.member in ("observedAt", "createdAt", "modifiedAt"):
            _check_instant_operand(path.member, operand, start)
        return Comparison(path, op, operand)

    def scalar(self) -> Scalar:
        self.scan.skip_space()
        start = self.scan.pos
        if self.scan.peek('"'):
            return StringValue(self.scan.read_quoted())
        word = self.scan.read_bare()
        if not self.naive_utc and _DATETIME_RE.fullmatch(word) and _naive(word):
            raise QueryError(f"dateTime {word!r} has no UTC offset: add Z (UTC) or +09:00 (Korea time)", start,
                             f"dateTime {word!r}에 UTC 오프셋 필요: 끝에 Z(UTC)나 +09:00(한국 시각)을 붙이세요")
        return _classify_bare(word, start)


def _check_instant_operand(member: str, operand: Operand, pos: int) -> None:
    """`observedAt` and the like are instants: a date alone (a day in which timezone?) is refused (QA17 F4)."""
    scalars = operand.items if isinstance(operand, ValueList) else (
        (operand.low, operand.high) if isinstance(operand, Range) else (operand,))
    for value in scalars:
        if isinstance(value, DateValue):
            day = value.value.isoformat()
            raise QueryError(f"{member} is a date-time: give one with a UTC offset, e.g. {day}T00:00:00+09:00, "
                             f"not the date {day}", pos,
                             f"{member}은(는) 날짜·시각임: 날짜 {day}가 아니라 UTC 오프셋이 있는 날짜·시각"
                             f"(예: {day}T00:00:00+09:00)을 쓰세요")


def _naive(word: str) -> bool:
    """A date-time without a UTC offset (QA17 F4: NGSI-LD DateTimes are UTC instants; not read as UTC silently)."""
    try:
        return datetime.fromisoformat(word).tzinfo is None
    except ValueError:
        return False  # _classify_bare says what is wrong with it


def _check_regex(pattern: str, pos: int) -> None:
    try:
        re.compile(pattern)
    except Exception as exc:  # re.error, but also RecursionError/OverflowError on hostile input
        raise QueryError(f"invalid regular expression {pattern!r}: {exc}", pos, f"잘못된 정규식 {pattern!r}({exc})") from None


def _check_operand(op: Op, operand: Operand, pos: int) -> None:
    """Enforce the spec's typing: only ==/!= take booleans, URIs, ranges and lists."""
    if isinstance(operand, Range):
        _check_range(operand, pos)
    if op in (Op.EQ, Op.NE):
        return
    if isinstance(operand, (Range, ValueList)):
        raise QueryError(f"ranges and value lists only go with == or !=, not {op.value}", pos,
                         f"범위와 값 목록은 == 또는 !=와만 쓸 수 있음({op.value} 불가)")
    if not isinstance(operand, COMPARABLE_TYPES):
        raise QueryError(f"{_kind(operand)} values only go with == or !=, not {op.value}", pos,
                         f"{_kind(operand)} 값은 == 또는 !=와만 쓸 수 있음({op.value} 불가)")


def _check_range(operand: Range, pos: int) -> None:
    for bound in (operand.low, operand.high):
        if not isinstance(bound, COMPARABLE_TYPES):
            raise QueryError(f"a range bound must be a number, string or date/time, not {_kind(bound)}", pos,
                             f"범위의 경계는 숫자, 문자열, 날짜/시각이어야 함({_kind(bound)} 불가)")
    if type(operand.low) is not type(operand.high):
        raise QueryError(f"range bounds differ in type ({_kind(operand.low)} .. {_kind(operand.high)})", pos,
                         f"범위의 두 경계의 유형이 다름({_kind(operand.low)} .. {_kind(operand.high)})")


def _kind(value: Scalar) -> str:
    return type(value).__name__.removesuffix("Value").lower()


def parse_q(text: str, naive_utc: bool = False) -> QExpr:
    """Parse a URL-decoded NGSI-LD ``q`` expression; raise ``QueryError`` on bad syntax. A dateTime without a UTC
    offset is refused, unless `naive_utc` (an expression stored before that, e.g. a subscription's ``q``, which
    must still load: read as UTC as it was then)."""
    return _Parser(text, naive_utc).parse()


# --------------------------------------------------------------------------------------------
# Inspection and rendering
# --------------------------------------------------------------------------------------------


def attribute_names(expr: QExpr) -> set[str]:
    """The top-level attribute terms (short names, unexpanded) that ``expr`` refers to."""
    if isinstance(expr, (And, Or)):
        return set().union(*(attribute_names(item) for item in expr.items))
    return {expr.path.attr}


def format_q(expr: QExpr) -> str:
    """Render ``expr`` as query text that ``parse_q`` parses back to an equal tree."""
    if isinstance(expr, (And, Or)):
        separator = ";" if isinstance(expr, And) else "|"
        return separator.join(_format_child(expr, item) for item in expr.items)
    if isinstance(expr, Exists):
        return format_path(expr.path)
    if isinstance(expr, NotExists):
        return "!" + format_path(expr.path)
    if isinstance(expr, Match):
        op = "!~=" if expr.negated else "~="
        return format_path(expr.path) + op + json.dumps(expr.pattern, ensure_ascii=False)
    return format_path(expr.path) + expr.op.value + _format_operand(expr.operand)


def _format_child(parent: And | Or, child: QExpr) -> str:
    # Parentheses keep the tree's shape: an OR inside an AND, or a group of the parent's own kind.
    needs_parens = isinstance(child, Or) or type(child) is type(parent)
    text = format_q(child)
    return f"({text})" if needs_parens else text


def format_path(path: AttrPath) -> str:
    """``attr.sub[key]`` text of a path."""
    return ".".join((path.attr, *path.sub)) + "".join(f"[{key}]" for key in path.keys)


def _format_operand(operand: Operand) -> str:
    if isinstance(operand, Range):
        return f"{format_value(operand.low)}..{format_value(operand.high)}"
    if isinstance(operand, ValueList):
        return ",".join(format_value(item) for item in operand.items)
    return format_value(operand)


def format_value(value: Scalar) -> str:
    """Query-language text of one scalar value."""
    if isinstance(value, BooleanValue):
        return "true" if value.value else "false"
    if isinstance(value, NumberValue):
        return repr(value.value)
    if isinstance(value, StringValue):
        return json.dumps(value.value, ensure_ascii=False)
    if isinstance(value, UriValue):
        return value.value
    if isinstance(value, (DateTimeValue, TimeValue)):
        return value.value.isoformat().replace("+00:00", "Z")
    return value.value.isoformat()
