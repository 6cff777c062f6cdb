"""Events the rules engine publishes on the bus, and the alert-level vocabulary.

The alarms service consumes them: a `RuleMatched` raises or escalates the alarm of
(tenant, entity, rule), a `RuleCleared` clears it. Levels follow the Korean national crisis
ladder (domain-rules §0, §9): interest (관심) < caution (주의) < warning (경계) < serious (심각).
A device fault is not a safety level: it is the alarm kind `fault`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ucity.core.bus import Event

LEVELS: tuple[str, ...] = ("interest", "caution", "warning", "serious")
LEVEL_NAMES: dict[str, dict[str, str]] = {
    "interest": {"ko": "관심", "en": "Interest"},
    "caution": {"ko": "주의", "en": "Caution"},
    "warning": {"ko": "경계", "en": "Warning"},
    "serious": {"ko": "심각", "en": "Serious"},
}
# Smart Data Models Alert.severity for each ucity level.
SEVERITY: dict[str, str] = {"interest": "low", "caution": "medium", "warning": "high", "serious": "critical"}
KINDS: tuple[str, ...] = ("safety", "fault")


def level_rank(level: str) -> int:
    """0 for interest … 3 for serious; raises ValueError for anything else."""
    return LEVELS.index(level)


@dataclass(frozen=True, slots=True)
class RuleMatched(Event):
    """A rule's condition holds for an entity at a level (raised or still holding)."""

    tenant: str
    rule_id: str
    entity_id: str
    level: str
    kind: str = "safety"
    category: str = ""
    entity_types: tuple[str, ...] = ()
    observed_at: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)
    location: dict[str, Any] | None = None
    parent_id: str | None = None
    description: dict[str, str] = field(default_factory=dict)
    # The entity's `name` for people's messages (the alarms leave it out for a personal entity type), "" unknown.
    entity_name: str = ""


@dataclass(frozen=True, slots=True)
class RuleCleared(Event):
    """A rule's condition no longer holds for an entity (past its hysteresis band). `parent_id`: the entity's parent
    as the match named it (the rule's `parent_relationship`, else `rules.parent_relationships`; None unknown), so a
    domain that keeps state per parent needs no entity -> parent map of its own (QA13 F4)."""

    tenant: str
    rule_id: str
    entity_id: str
    observed_at: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)
    parent_id: str | None = None


@dataclass(frozen=True, slots=True)
class RuleSpike(Event):
    """A level was indicated but ended before the rule's persistence was met (a knock, an
    earthquake): logged for the record, never an alarm. `evidence` has the peak, the number of
    samples and the duration of the excursion. `parent_id` as `RuleMatched`'s."""

    tenant: str
    rule_id: str
    entity_id: str
    level: str
    kind: str = "safety"
    category: str = ""
    observed_at: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)
    parent_id: str | None = None


@dataclass(frozen=True, slots=True)
class RuleStatesRestored(Event):
    """The rules engine read its states back (a start, a worker's new partitions): the matches they hold, each as
    the `RuleMatched` that raised it (`observed_at`: when its level was reached). A match is published before its
    state is written, but the alarm it raises is saved by another commit: a crash can leave a state that holds a
    match whose alarm was never saved, and a later reading at the same level is a repeat that raises nothing. The
    alarms service raises what is missing (`AlarmService._on_rules_restored`)."""

    matches: tuple[RuleMatched, ...] = ()
