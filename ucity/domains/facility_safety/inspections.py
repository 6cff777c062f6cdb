"""The legal inspection schedule of §2.2, pure: when each kind of inspection is next due.

Intervals count from the completion date of the previous inspection of the same kind [V] and depend
on the legal grade (A; B and C; D and E) and, for precise safety inspections, on whether the
facility is a building [V]. Which facility classes need precise inspections (1 and 2) and precise
safety diagnoses (1) is ucity's reading of the Act, tagged [U] and configurable.

A kind with no recorded completion has status `no-record` (not `overdue`): the platform does not
know the facility's paper history, and inventing a due date from the construction year would fill
the overdue list with guesses. Without a legal grade the strictest intervals (D/E) apply and the
item says so.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date
from typing import Any

from ucity.domains.facility_safety.config import InspectionConfig
from ucity.domains.facility_safety.models import Facility

KIND_NAMES = {"periodic": {"ko": "정기안전점검", "en": "periodic safety inspection"},
              "precise": {"ko": "정밀안전점검", "en": "precise safety inspection"},
              "diagnosis": {"ko": "정밀안전진단", "en": "precise safety diagnosis"}}
STRICTEST = "E"


@dataclass(frozen=True, slots=True)
class ScheduleItem:
    facility: str
    kind: str
    interval_months: int
    last: date | None
    due: date | None
    status: str  # ok | due-soon | overdue | no-record
    days_left: int | None
    grade_used: str
    note: str = ""

    def to_wire(self) -> dict[str, Any]:
        return {"facility": self.facility, "kind": self.kind, "name": KIND_NAMES[self.kind],
                "intervalMonths": self.interval_months, "lastCompleted": self.last.isoformat() if self.last else None,
                "due": self.due.isoformat() if self.due else None, "status": self.status, "daysLeft": self.days_left,
                "gradeUsed": self.grade_used, "note": self.note}


def add_months(day: date, months: int) -> date:
    """The same day `months` later, clamped to the month's end (31 Aug + 6 months = 28/29 Feb)."""
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def kinds_for(facility: Facility, cfg: InspectionConfig) -> list[str]:
    """Which inspections the facility owes; an unknown class owes all (the conservative reading)."""
    cls = facility.facility_class
    kinds = ["periodic"]
    if cls is None or cls in cfg.precise_classes:
        kinds.append("precise")
    if cls is None or cls in cfg.diagnosis_classes:
        kinds.append("diagnosis")
    return kinds


def interval_months(kind: str, grade: str, facility_type: str, cfg: InspectionConfig) -> int:
    if kind == "periodic":
        return cfg.periodic[grade]
    if kind == "precise":
        table = cfg.precise_building if facility_type in cfg.building_types else cfg.precise_other
        return table[grade]
    return cfg.diagnosis[grade]


def schedule(facility: Facility, today: date, cfg: InspectionConfig) -> list[ScheduleItem]:
    """Every inspection the facility owes, with its due date and status on `today`."""
    grade = facility.legal_grade or STRICTEST
    items = []
    for kind in kinds_for(facility, cfg):
        months = interval_months(kind, grade, facility.facility_type, cfg)
        last = facility.last_inspections.get(kind)
        note = "" if facility.legal_grade else "no legal grade: the D/E intervals are used"
        if facility.facility_class is None and kind != "periodic":
            note = (note + "; " if note else "") + "facility class not set: assumed to owe it"
        if last is None:
            items.append(ScheduleItem(facility.id, kind, months, None, None, "no-record", None, grade, note))
            continue
        due = add_months(last, months)
        left = (due - today).days
        status = "overdue" if left < 0 else "due-soon" if left <= cfg.due_soon_days else "ok"
        items.append(ScheduleItem(facility.id, kind, months, last, due, status, left, grade, note))
    return items


def overdue(facilities: list[Facility], today: date, cfg: InspectionConfig) -> list[ScheduleItem]:
    """Overdue inspections of all facilities, most overdue first."""
    items = [item for f in facilities for item in schedule(f, today, cfg) if item.status == "overdue"]
    return sorted(items, key=lambda i: (i.days_left or 0, i.facility, i.kind))
