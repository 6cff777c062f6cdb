"""The alarm: its stored form, its lifecycle and the transitions between states, as pure functions.

Lifecycle (ThingsBoard's, which operators know)::

    active-unacknowledged --acknowledge--> active-acknowledged
          |                                     |
        clear                                 clear
          v                                     v
    cleared-unacknowledged --acknowledge--> cleared-acknowledged
                                                |
    (any acknowledged state) ----close(outcome)-> closed

Closing needs an acknowledgement first (so every closed alarm has a time to acknowledge); closing
an active alarm clears it too. A transition that the state does not allow raises
`InvalidTransition` (HTTP 409). Every transition returns the `HistoryEntry` to append: the history
is the audit trail (who did what, when).

A safety alarm has a level on the national crisis ladder (`ucity.rules.events.LEVELS`); a fault
alarm (a device problem) has none: the two kinds never mix.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any

from ucity.core.clock import iso_micros
from ucity.core.errors import UcityError
from ucity.rules.events import LEVEL_NAMES, SEVERITY, level_rank
from ucity.store.base import AlarmRow, Doc

ACTIVE_UNACK = "active-unacknowledged"
ACTIVE_ACK = "active-acknowledged"
CLEARED_UNACK = "cleared-unacknowledged"
CLEARED_ACK = "cleared-acknowledged"
CLOSED = "closed"
STATUSES: tuple[str, ...] = (ACTIVE_UNACK, ACTIVE_ACK, CLEARED_UNACK, CLEARED_ACK, CLOSED)
ACTIVE_STATUSES = (ACTIVE_UNACK, ACTIVE_ACK)
OUTCOMES: tuple[str, ...] = ("real", "false-user", "false-device", "test", "duplicate")
FALSE_OUTCOMES: tuple[str, ...] = ("false-user", "false-device")
SAFETY, FAULT = "safety", "fault"
DERIVED_PREFIX = "derived:"
SYSTEM = "system"  # the actor of transitions the platform makes itself (rules, device health)
FAULT_SEVERITY = "informational"  # Smart Data Models severity of a fault: not a crisis level

# Korean + English names of statuses and outcomes (the dashboard shows them).
STATUS_NAMES: dict[str, dict[str, str]] = {
    ACTIVE_UNACK: {"ko": "발생(미확인)", "en": "Active, unacknowledged"},
    ACTIVE_ACK: {"ko": "발생(확인)", "en": "Active, acknowledged"},
    CLEARED_UNACK: {"ko": "해제(미확인)", "en": "Cleared, unacknowledged"},
    CLEARED_ACK: {"ko": "해제(확인)", "en": "Cleared, acknowledged"},
    CLOSED: {"ko": "종결", "en": "Closed"},
}
OUTCOME_NAMES: dict[str, dict[str, str]] = {
    "real": {"ko": "실제 상황", "en": "Real emergency"},
    "false-user": {"ko": "오경보(사용자)", "en": "False alarm (user)"},
    "false-device": {"ko": "오경보(장치)", "en": "False alarm (device)"},
    "test": {"ko": "시험", "en": "Test"},
    "duplicate": {"ko": "중복", "en": "Duplicate"},
}
FAULT_NAME = {"ko": "장치 고장", "en": "Device fault"}

Key = tuple[str, str, str]  # (tenant, entity id, rule id)


class InvalidTransition(UcityError):
    """The alarm's state does not allow the requested action (409)."""

    status = 409
    type_uri = "urn:ucity:errors:InvalidTransition"
    title = "Invalid alarm transition"


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One line of an alarm's audit trail."""

    seq: int
    at: str
    action: str  # raised | escalated | deescalated | reactivated | acknowledged | cleared | closed | ...
    actor: str
    detail: dict[str, Any] = field(default_factory=dict)

    def to_doc(self) -> Doc:
        return {"seq": self.seq, "at": self.at, "action": self.action, "actor": self.actor, **self.detail}


@dataclass(slots=True)
class Alarm:
    """One alarm of (tenant, entity, rule); mutable, owned by the alarm service."""

    id: str
    tenant: str
    entity_id: str
    rule_id: str
    kind: str
    level: str | None
    status: str
    raised_at: str
    updated_at: str
    last_seen: str
    count: int = 1
    entity_type: str = ""
    entity_name: str = ""  # the entity's `name` when known (messages); never for personal entity types
    category: str = ""
    description: dict[str, str] = field(default_factory=dict)
    location: dict[str, Any] | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    parent_id: str | None = None
    depth: int = 0  # 0 for an alarm of a rule; n for a derived alarm n levels up
    children: list[str] = field(default_factory=list)  # derived alarms: the active child alarms
    assignee: str | None = None
    outcome: str | None = None
    acked_at: str | None = None
    acked_by: str | None = None
    cleared_at: str | None = None
    cleared_by: str | None = None
    closed_at: str | None = None
    closed_by: str | None = None
    escalation: dict[str, Any] | None = None  # chain, level, started_at, next_step (escalation.py)
    notified_groups: list[str] = field(default_factory=list)
    history_seq: int = 0
    cause: str | None = None  # the Context id of the event that raised it (tracing)
    enriched: bool = False  # entity type, location and parent known: read from the entity, or the rule event's
    # The Alert entity's values (alert.alert_inputs) as last committed, in memory only: its next write sends
    # what changed.
    alert_written: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    # -- state -----------------------------------------------------------------------------------
    @property
    def key(self) -> Key:
        return (self.tenant, self.entity_id, self.rule_id)

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def acknowledged(self) -> bool:
        return self.status in (ACTIVE_ACK, CLEARED_ACK)

    @property
    def derived(self) -> bool:
        return self.rule_id.startswith(DERIVED_PREFIX)

    @property
    def alert_id(self) -> str:
        """The NGSI-LD Alert entity that mirrors this alarm."""
        return f"urn:ngsi-ld:Alert:{self.id}"

    @property
    def severity(self) -> str:
        return SEVERITY[self.level] if self.level else FAULT_SEVERITY

    def entry(self, at: str, action: str, actor: str, **detail: Any) -> HistoryEntry:
        """The next history entry of this alarm (numbered in the order the service decided them)."""
        self.history_seq += 1
        self.updated_at = at
        return HistoryEntry(self.history_seq, at, action, actor, detail)

    # -- stored and wire forms ---------------------------------------------------------------------
    def to_doc(self) -> Doc:
        return dict(zip(_PERSISTED, _persisted_values(self), strict=True))  # made per change: one C call, not 32

    @classmethod
    def from_doc(cls, doc: Doc) -> Alarm:
        return cls(**{name: doc[name] for name in _PERSISTED if name in doc})

    def to_wire(self, doc: Doc | None = None) -> Doc:
        """The API form: the stored fields plus names a dashboard shows; of `doc` (a `to_doc` of this
        alarm, e.g. the one just saved) if given, so that what is announced is what was saved."""
        wire = dict(doc) if doc is not None else self.to_doc()
        del wire["history_seq"]
        level, status = wire["level"], wire["status"]
        wire.update(alert_id=self.alert_id, severity=SEVERITY[level] if level else FAULT_SEVERITY,
                    derived=self.derived, level_name=LEVEL_NAMES[level] if level else FAULT_NAME,
                    status_name=STATUS_NAMES[status])
        return wire

    def to_row(self, doc: Doc | None = None) -> AlarmRow:
        """The stored form; `doc` is this alarm's `to_doc` if the caller has it already."""
        doc = doc if doc is not None else self.to_doc()
        return AlarmRow(
            tenant=self.tenant, id=self.id, entity_id=self.entity_id, entity_type=doc["entity_type"],
            rule_id=self.rule_id, kind=self.kind, level=doc["level"], status=doc["status"],
            active=doc["status"] in ACTIVE_STATUSES, derived=self.derived, parent_id=doc["parent_id"],
            outcome=doc["outcome"], assignee=doc["assignee"], raised_at=iso_micros(doc["raised_at"]),
            updated_at=iso_micros(doc["updated_at"]), acked_at=_opt_micros(doc["acked_at"]),
            cleared_at=_opt_micros(doc["cleared_at"]), closed_at=_opt_micros(doc["closed_at"]),
            bbox=geometry_bbox(doc["location"]), doc=doc,
        )


_PERSISTED = (
    "id", "tenant", "entity_id", "rule_id", "kind", "level", "status", "raised_at", "updated_at", "last_seen",
    "count", "entity_type", "entity_name", "category", "description", "location", "evidence", "parent_id", "depth", "children",
    "assignee", "outcome", "acked_at", "acked_by", "cleared_at", "cleared_by", "closed_at", "closed_by",
    "escalation", "notified_groups", "history_seq", "cause", "enriched",
)
_persisted_values = operator.attrgetter(*_PERSISTED)


def _opt_micros(text: str | None) -> int | None:
    return iso_micros(text) if text else None


def geometry_bbox(geometry: dict[str, Any] | None) -> tuple[float, float, float, float] | None:
    """(minx, miny, maxx, maxy) of a GeoJSON geometry; None without a usable one."""
    if not geometry:
        return None
    points = list(_positions(geometry.get("coordinates")))
    for part in geometry.get("geometries", ()):
        box = geometry_bbox(part)
        if box:
            points.extend([(box[0], box[1]), (box[2], box[3])])
    if not points:
        return None
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return min(xs), min(ys), max(xs), max(ys)


def _positions(coords: Any) -> list[tuple[float, float]]:
    if isinstance(coords, list) and len(coords) >= 2 and all(isinstance(c, (int, float)) for c in coords[:2]):
        return [(float(coords[0]), float(coords[1]))]
    if isinstance(coords, list):
        return [p for c in coords for p in _positions(c)]
    return []


# ================================================================================================
# Transitions (operators' and the platform's); each returns the history entry to append
# ================================================================================================


def _refuse(alarm: Alarm, ko: str, en: str) -> InvalidTransition:
    return InvalidTransition(f"{ko} / {en} (alarm {alarm.id} is {alarm.status})", alarm=alarm.id, alarmStatus=alarm.status)


def acknowledge(alarm: Alarm, actor: str, now: str) -> HistoryEntry:
    if alarm.status == ACTIVE_UNACK:
        alarm.status = ACTIVE_ACK
    elif alarm.status == CLEARED_UNACK:
        alarm.status = CLEARED_ACK
    else:
        raise _refuse(alarm, "이미 확인되었거나 종결된 경보입니다", "the alarm is already acknowledged or closed")
    alarm.acked_at, alarm.acked_by = now, actor
    return alarm.entry(now, "acknowledged", actor)


def clear(alarm: Alarm, actor: str, now: str, **detail: Any) -> HistoryEntry:
    if alarm.status == ACTIVE_UNACK:
        alarm.status = CLEARED_UNACK
    elif alarm.status == ACTIVE_ACK:
        alarm.status = CLEARED_ACK
    else:
        raise _refuse(alarm, "이미 해제되었거나 종결된 경보입니다", "the alarm is already cleared or closed")
    alarm.cleared_at, alarm.cleared_by = now, actor
    return alarm.entry(now, "cleared", actor, **detail)


def close(alarm: Alarm, actor: str, now: str, outcome: str, note: str = "") -> HistoryEntry:
    if outcome not in OUTCOMES:
        from ucity.core.errors import BadRequest

        raise BadRequest(f"결과 코드는 {', '.join(OUTCOMES)} 중 하나입니다 / outcome must be one of "
                         f"{', '.join(OUTCOMES)}, got {outcome!r}")
    if alarm.status == CLOSED:
        raise _refuse(alarm, "이미 종결된 경보입니다", "the alarm is already closed")
    if not alarm.acknowledged:
        raise _refuse(alarm, "종결하기 전에 확인하십시오", "acknowledge the alarm before closing it")
    if alarm.cleared_at is None or alarm.active:
        alarm.cleared_at, alarm.cleared_by = now, actor
    alarm.status, alarm.outcome, alarm.closed_at, alarm.closed_by = CLOSED, outcome, now, actor
    detail: dict[str, Any] = {"outcome": outcome}
    if note:
        detail["note"] = note
    return alarm.entry(now, "closed", actor, **detail)


def assign(alarm: Alarm, actor: str, now: str, assignee: str | None) -> HistoryEntry:
    if alarm.status == CLOSED:
        raise _refuse(alarm, "종결된 경보는 담당자를 바꿀 수 없습니다", "a closed alarm cannot be assigned")
    previous, alarm.assignee = alarm.assignee, assignee
    return alarm.entry(now, "assigned", actor, assignee=assignee, previous=previous)


def comment(alarm: Alarm, actor: str, now: str, text: str) -> HistoryEntry:
    """Comments are allowed in every state: a closed alarm may still be annotated (audit)."""
    return alarm.entry(now, "commented", actor, text=text)


def change_level(alarm: Alarm, level: str, now: str, actor: str = SYSTEM, **detail: Any) -> HistoryEntry:
    """Move a safety alarm to another level; going up also asks for a new acknowledgement.

    Why re-open the acknowledgement: the ladder exists so that a worse situation reaches people
    again (domain-rules ELD-R3: 8 h interest -> 24 h serious); an acknowledgement of `interest`
    says nothing about `serious`.
    """
    previous = alarm.level
    up = previous is None or level_rank(level) > level_rank(previous)
    alarm.level = level
    if up and alarm.status == ACTIVE_ACK:
        alarm.status, alarm.acked_at, alarm.acked_by = ACTIVE_UNACK, None, None
    return alarm.entry(now, "escalated" if up else "deescalated", actor, previous=previous, level=level, **detail)


def reactivate(alarm: Alarm, now: str, actor: str = SYSTEM, **detail: Any) -> HistoryEntry:
    """A cleared alarm whose condition returned within the dedupe window is active again."""
    if alarm.status == CLEARED_UNACK:
        alarm.status = ACTIVE_UNACK
    elif alarm.status == CLEARED_ACK:
        alarm.status = ACTIVE_ACK
    else:
        raise _refuse(alarm, "해제된 경보만 다시 발생시킬 수 있습니다", "only a cleared alarm can be reactivated")
    alarm.cleared_at = alarm.cleared_by = None
    return alarm.entry(now, "reactivated", actor, **detail)
