"""Rules as data: frozen dataclasses, validated on construction and JSON-serialisable both ways.

A `Rule` says *what* it watches (tenant, entity types, optional id pattern, attributes) and *when*
it matches (its `condition`, one of the kinds below), plus an optional `Persistence` that a
level-producing condition must satisfy before it raises. The pure evaluators live in
evaluate.py; the engine (engine.py) indexes rules and keeps their per-entity state.

Condition kinds (`condition.type`):

* `threshold`  a ladder of edges on the four levels, above / below / |value|, with hysteresis;
* `rate`       the same ladder on a robust (Theil–Sen) slope over a time window;
* `inactivity` no report since the last *reported* time, with level steps, an excluded
               schedule (e.g. sleep hours, Asia/Seoul) and a suppression hook (e.g. `away`);
* `geofence`   enter / exit / dwell for a circle or a polygon, distances in metres;
* `event`      an attribute value (button pressed, fire detected) raises at a fixed level;
* `composite`  AND / OR of comparisons across attributes of one entity.

JSON uses camelCase member names (`entityTypes`, `clearAt`, `afterSeconds` ...); `rule_adapter`
converts both ways (`rule_from_json`, `rule_to_json`). Attribute names and entity types are
NGSI-LD short names resolved with the core context (`tiltX` is
`https://uri.etsi.org/ngsi-ld/default-context/tiltX`) or full IRIs.

Every number in a rule is configuration; README.md lists the defaults. A default is an
engineering default unless the rule's `source` says otherwise (domain-rules.md §0 tags).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time
from typing import Annotated, Any, Literal, TypeAlias
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError
from pydantic.alias_generators import to_camel

from ucity.rules.events import LEVELS, level_rank

# camelCase on the wire, snake_case in Python; unknown members are an error, not ignored.
_CONFIG = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

Level: TypeAlias = Literal["interest", "caution", "warning", "serious"]
Scalar: TypeAlias = bool | int | float | str | None
Operator: TypeAlias = Literal["==", "!=", ">", ">=", "<", "<=", "in"]
DEFAULT_TIMEZONE = "Asia/Seoul"
RULE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


class RuleError(ValueError):
    """A rule that is not well-formed (the API answers 400 BadRequestData)."""


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise RuleError(message)


# -- small parts --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class Text:
    """A name or description in Korean and English."""

    __pydantic_config__ = _CONFIG
    ko: str = ""
    en: str = ""

    def as_dict(self) -> dict[str, str]:
        return {k: v for k, v in (("ko", self.ko), ("en", self.en)) if v}


@dataclass(frozen=True, slots=True, kw_only=True)
class Compare:
    """`<value> <op> <operand>`; `in` takes a list operand. Ordering operators need numbers."""

    __pydantic_config__ = _CONFIG
    op: Operator = "=="
    value: Scalar | tuple[Scalar, ...] = True

    def __post_init__(self) -> None:
        _require((self.op == "in") == isinstance(self.value, tuple),
                 f"operator {self.op!r}: a list operand goes with 'in' and only with it")
        if self.op in (">", ">=", "<", "<="):
            _require(_is_number(self.value), f"operator {self.op!r} needs a number, got {self.value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Term(Compare):
    """A comparison on one attribute of the entity (a composite's operand)."""

    attribute: str

    def __post_init__(self) -> None:
        Compare.__post_init__(self)
        _require(bool(self.attribute), "a term needs an attribute")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True, kw_only=True)
class Edge:
    """One rung of a ladder: raise at `at`; once raised, hold until past `clear_at`.

    Without `clear_at` the level holds until past `at - hysteresis` (for `below`: `at + hysteresis`).
    """

    __pydantic_config__ = _CONFIG
    level: Level
    at: float
    clear_at: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Persistence:
    """How long a level must hold before it is raised: N consecutive samples and/or a duration.

    Whichever criterion is met first raises. An excursion that ends before that is a *spike*
    (a `RuleSpike` event, no alarm). Falling back to a lower level or clearing is immediate.
    """

    __pydantic_config__ = _CONFIG
    samples: int | None = None
    duration_seconds: float | None = None

    def __post_init__(self) -> None:
        _require(self.samples is not None or self.duration_seconds is not None,
                 "persistence needs samples or durationSeconds")
        _require(self.samples is None or self.samples >= 1, "samples must be at least 1")
        _require(self.duration_seconds is None or self.duration_seconds > 0, "durationSeconds must be positive")


# -- conditions ---------------------------------------------------------------------------------
def _check_ladder(edges: tuple[Edge, ...], direction: str, hysteresis: float) -> None:
    _require(len(edges) > 0, "a ladder needs at least one edge")
    ranks = [level_rank(e.level) for e in edges]
    _require(ranks == sorted(set(ranks)), "ladder edges must be in level order, each level at most once")
    sign = -1.0 if direction == "below" else 1.0
    ats = [sign * e.at for e in edges]
    _require(all(a <= b for a, b in itertools.pairwise(ats)),
             f"ladder edges must {'fall' if sign < 0 else 'rise'} with the level ({direction})")
    _require(hysteresis >= 0, "hysteresis must not be negative")
    for edge in edges:
        if edge.clear_at is not None:
            _require(sign * edge.clear_at <= sign * edge.at,
                     f"{edge.level}: clearAt must be on the safe side of at ({direction})")


@dataclass(frozen=True, slots=True, kw_only=True)
class Threshold:
    """A level ladder on an attribute's numeric value."""

    __pydantic_config__ = _CONFIG
    type: Literal["threshold"] = "threshold"
    attribute: str
    edges: tuple[Edge, ...]
    direction: Literal["above", "below", "abs"] = "above"
    hysteresis: float = 0.0

    def __post_init__(self) -> None:
        _check_ladder(self.edges, self.direction, self.hysteresis)


@dataclass(frozen=True, slots=True, kw_only=True)
class RateOfChange:
    """A level ladder on the Theil–Sen slope (value units per `per_seconds`) over a time window."""

    __pydantic_config__ = _CONFIG
    type: Literal["rate"] = "rate"
    attribute: str
    edges: tuple[Edge, ...]
    window_seconds: float
    per_seconds: float = 86400.0
    direction: Literal["above", "below", "abs"] = "above"
    hysteresis: float = 0.0
    min_samples: int = 5
    max_samples: int = 200

    def __post_init__(self) -> None:
        _check_ladder(self.edges, self.direction, self.hysteresis)
        _require(self.window_seconds > 0 and self.per_seconds > 0, "windowSeconds and perSeconds must be positive")
        _require(2 <= self.min_samples <= self.max_samples <= 2000, "need 2 <= minSamples <= maxSamples <= 2000")


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """An inactivity step: `level` once nothing was reported for `after_seconds` (counted time)."""

    __pydantic_config__ = _CONFIG
    level: Level
    after_seconds: float

    def __post_init__(self) -> None:
        _require(self.after_seconds > 0, "afterSeconds must be positive")


@dataclass(frozen=True, slots=True, kw_only=True)
class Window:
    """A daily local-time window `start`–`end` ("23:00"–"06:00" crosses midnight).

    `days` limits it to the ISO weekdays (1 = Monday … 7 = Sunday) on which the window *starts*;
    empty means every day.
    """

    __pydantic_config__ = _CONFIG
    start: str
    end: str
    days: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        parse_hhmm(self.start)
        parse_hhmm(self.end)
        _require(self.start != self.end, "a window needs different start and end")
        _require(all(1 <= d <= 7 for d in self.days), "days are ISO weekdays 1..7")


def parse_hhmm(text: str) -> time:
    match = re.fullmatch(r"([01]\d|2[0-3]):([0-5]\d)", text)
    _require(match is not None, f"a local time is HH:MM, got {text!r}")
    assert match is not None
    return time(int(match[1]), int(match[2]))


@dataclass(frozen=True, slots=True, kw_only=True)
class Schedule:
    """Excluded local-time windows of an inactivity rule.

    `pause` (default): time inside a window does not count as inactive time, so a step is
    reached later (domain-rules ELD-R3: "excluding the configured sleep window").
    `defer`: time counts, but a step that falls inside a window is raised when the window ends.
    `timezone` None means the platform's `rules.timezone` (default Asia/Seoul).
    """

    __pydantic_config__ = _CONFIG
    exclude: tuple[Window, ...] = ()
    mode: Literal["pause", "defer"] = "pause"
    timezone: str | None = None

    def __post_init__(self) -> None:
        if self.timezone is not None:
            try:
                ZoneInfo(self.timezone)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise RuleError(f"unknown time zone {self.timezone!r}") from exc


@dataclass(frozen=True, slots=True, kw_only=True)
class Suppression:
    """While it holds, inactivity does not count (e.g. the person is away, domain-rules ELD-R4).

    Either an attribute comparison (`attribute` with `when`, default `== true`) or a registered
    predicate (`engine.register_predicate(name, fn)`; fn(values, now) -> bool, where values are
    the latest values of `attribute` and `attributes`); both may be given (either suppresses).
    """

    __pydantic_config__ = _CONFIG
    attribute: str | None = None
    when: Compare = field(default_factory=Compare)
    predicate: str | None = None
    attributes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _require(self.attribute is not None or self.predicate is not None,
                 "a suppression needs an attribute or a predicate")

    @property
    def watched(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys([*([self.attribute] if self.attribute else []), *self.attributes]))


@dataclass(frozen=True, slots=True, kw_only=True)
class Inactivity:
    """No data: counted time since the last report of any of `attributes` reaches each step.

    `counts_if`, when given, makes only matching values count as activity (e.g. a motion count
    `> 0`); otherwise every report counts (the *reported* time, DESIGN §5.5).
    """

    __pydantic_config__ = _CONFIG
    type: Literal["inactivity"] = "inactivity"
    attributes: tuple[str, ...]
    steps: tuple[Step, ...]
    counts_if: Compare | None = None
    schedule: Schedule | None = None
    suppression: Suppression | None = None

    def __post_init__(self) -> None:
        _require(len(self.attributes) > 0, "inactivity needs at least one attribute")
        _require(len(self.steps) > 0, "inactivity needs at least one step")
        ranks = [level_rank(s.level) for s in self.steps]
        afters = [s.after_seconds for s in self.steps]
        _require(ranks == sorted(set(ranks)), "steps must be in level order, each level at most once")
        _require(afters == sorted(set(afters)), "step times must increase with the level")


@dataclass(frozen=True, slots=True, kw_only=True)
class Circle:
    __pydantic_config__ = _CONFIG
    shape: Literal["circle"] = "circle"
    center: tuple[float, float]  # lon, lat (GeoJSON order)
    radius_metres: float

    def __post_init__(self) -> None:
        _require(self.radius_metres > 0, "radiusMetres must be positive")
        lon, lat = self.center
        _require(-180 <= lon <= 180 and -90 <= lat <= 90, "center is [lon, lat] in degrees")


@dataclass(frozen=True, slots=True, kw_only=True)
class Polygon:
    """GeoJSON Polygon coordinates: an outer ring and optional holes, [lon, lat], closed."""

    __pydantic_config__ = _CONFIG
    shape: Literal["polygon"] = "polygon"
    coordinates: tuple[tuple[tuple[float, float], ...], ...]

    def __post_init__(self) -> None:
        from ucity.ngsild.geo import GeoQueryError, validate_geojson

        try:
            validate_geojson({"type": "Polygon", "coordinates": self.coordinates})
        except GeoQueryError as exc:
            raise RuleError(f"invalid polygon: {exc}") from exc


Area: TypeAlias = Annotated[Circle | Polygon, Field(discriminator="shape")]


@dataclass(frozen=True, slots=True, kw_only=True)
class Geofence:
    """Enter / exit / dwell on a GeoProperty (default `location`).

    `enter`: raised on a move from outside to inside, cleared on leaving; `exit`: the reverse;
    `dwell`: raised after `dwell_seconds` inside without leaving, cleared on leaving. Leaving
    needs more than `margin_metres` outside the area (hysteresis against GPS jitter).
    `initial`: a first known position already inside (enter, dwell) / outside (exit) counts.
    """

    __pydantic_config__ = _CONFIG
    type: Literal["geofence"] = "geofence"
    attribute: str = "location"
    area: Area
    trigger: Literal["enter", "exit", "dwell"]
    level: Level
    dwell_seconds: float = 0.0
    margin_metres: float = 0.0
    initial: bool = False

    def __post_init__(self) -> None:
        _require(self.trigger != "dwell" or self.dwell_seconds > 0, "dwell needs dwellSeconds > 0")
        _require(self.dwell_seconds >= 0 and self.margin_metres >= 0, "dwellSeconds and marginMetres must not be negative")


@dataclass(frozen=True, slots=True, kw_only=True)
class EventMatch:
    """An attribute value that raises at once: `when` (default `== true`) at `level`.

    `latch` (default): raised while the value matches, cleared when it stops matching (a fire
    detector). Not latched: every matching report is a new match and nothing clears (a button).
    """

    __pydantic_config__ = _CONFIG
    type: Literal["event"] = "event"
    attribute: str
    when: Compare = field(default_factory=Compare)
    level: Level
    latch: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class Composite:
    """AND / OR of comparisons on attributes of one entity, matching at one level."""

    __pydantic_config__ = _CONFIG
    type: Literal["composite"] = "composite"
    mode: Literal["and", "or"]
    terms: tuple[Term, ...]
    level: Level

    def __post_init__(self) -> None:
        _require(len(self.terms) >= 2, "a composite needs at least two terms")


Condition: TypeAlias = Annotated[
    Threshold | RateOfChange | Inactivity | Geofence | EventMatch | Composite, Field(discriminator="type")
]


# -- the rule -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    """One rule. `tenant` None applies to every tenant; `entity_types` empty to every type.

    `dataset_id` selects which instance of the attributes is watched (None: the default one).
    `parent_relationship` names the Relationship whose object is the parent asset reported with
    a match (None: the platform's `rules.parent_relationships`). `source` and `confidence`
    record where a value comes from (domain-rules.md tags V / P / U / D).
    """

    __pydantic_config__ = _CONFIG
    id: str
    name: Text
    condition: Condition
    entity_types: tuple[str, ...] = ()
    id_pattern: str | None = None
    tenant: str | None = None
    kind: Literal["safety", "fault"] = "safety"
    category: str = ""
    enabled: bool = True
    persistence: Persistence | None = None
    dataset_id: str | None = None
    parent_relationship: str | None = None
    description: Text = field(default_factory=Text)
    source: str = ""
    confidence: Literal["V", "P", "U", "D"] = "D"

    def __post_init__(self) -> None:
        _require(bool(RULE_ID.match(self.id)), f"rule id {self.id!r} must match {RULE_ID.pattern}")
        if self.id_pattern is not None:
            try:
                re.compile(self.id_pattern)
            except re.error as exc:
                raise RuleError(f"idPattern is not a regular expression: {exc}") from exc
        _require(self.persistence is None or self.condition.type in PERSISTENT_KINDS,
                 f"persistence does not apply to {self.condition.type} rules")

    @property
    def attributes(self) -> tuple[str, ...]:
        """Every attribute the rule reads, triggers first."""
        return condition_attributes(self.condition)

    @property
    def levels(self) -> tuple[str, ...]:
        return condition_levels(self.condition)


# Kinds whose level may be held back by a Persistence (the others have their own timing).
PERSISTENT_KINDS = frozenset({"threshold", "rate", "event", "composite"})


def condition_attributes(condition: Threshold | RateOfChange | Inactivity | Geofence | EventMatch | Composite,
                         ) -> tuple[str, ...]:
    if isinstance(condition, Inactivity):
        extra = condition.suppression.watched if condition.suppression else ()
        return tuple(dict.fromkeys([*condition.attributes, *extra]))
    if isinstance(condition, Composite):
        return tuple(dict.fromkeys(t.attribute for t in condition.terms))
    return (condition.attribute,)


def condition_levels(condition: Threshold | RateOfChange | Inactivity | Geofence | EventMatch | Composite,
                     ) -> tuple[str, ...]:
    if isinstance(condition, Threshold | RateOfChange):
        return tuple(e.level for e in condition.edges)
    if isinstance(condition, Inactivity):
        return tuple(s.level for s in condition.steps)
    return (condition.level,)


# -- JSON ---------------------------------------------------------------------------------------
rule_adapter: TypeAdapter[Rule] = TypeAdapter(Rule)


def rule_from_json(data: Mapping[str, Any]) -> Rule:
    """A Rule from its JSON form; RuleError says what is wrong, member by member."""
    if not isinstance(data, Mapping):
        raise RuleError("a rule is a JSON object")
    try:
        return rule_adapter.validate_python(dict(data))
    except ValidationError as exc:
        raise RuleError(_explain(exc)) from exc
    except RuleError:
        raise


def rule_to_json(rule: Rule) -> dict[str, Any]:
    """The JSON form of a rule (camelCase, None members left out)."""
    data: dict[str, Any] = rule_adapter.dump_python(rule, mode="json", by_alias=True, exclude_none=True)
    return data


def _explain(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(p) for p in error["loc"] if not _is_union_tag(p))
        message = str(error["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


def _is_union_tag(part: object) -> bool:
    # pydantic puts the discriminator value (e.g. 'threshold') and dataclass names in the path.
    return isinstance(part, str) and (part in _TAGS or part[:1].isupper())


_TAGS = frozenset({"threshold", "rate", "inactivity", "geofence", "event", "composite", "circle", "polygon"})

__all__ = [
    "DEFAULT_TIMEZONE", "LEVELS", "Area", "Circle", "Compare", "Composite", "Condition", "Edge", "EventMatch",
    "Geofence", "Inactivity", "Persistence", "Polygon", "RateOfChange", "Rule", "RuleError", "Schedule", "Step",
    "Suppression", "Term", "Text", "Threshold", "Window", "rule_from_json", "rule_to_json",
]
