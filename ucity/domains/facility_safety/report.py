"""A month's report of the facility-safety domain (QA14 F8): what a month held, per facility and for the district.

The engineer's monthly review had to be built by hand from grades.csv and the alarms API. This module turns
what the platform keeps into that review (pure functions; api.py reads the data):

* the month is a calendar month on the domain's clock (`grade.timezone`, Asia/Seoul): 2026-11 runs from
  2026-11-01 00:00 KST to 2026-12-01 00:00 KST; the current month is reported up to now (`partial`);
* **alarms** raised in the month on the facility or its sensors (the sensor's alarm names the facility as its
  parent): by level and by rule, how many were acknowledged and how fast (median and longest minutes to
  acknowledge), how long they took to clear, how many were closed as false (`false-user`, `false-device`) and how
  many are still active now;
* **the data grade**: the grade in force at the start and at the end of the month, and every change within it
  with its status and reasons (a withheld grade is a change too);
* **tasks**: opened in the month (by kind), completed and cancelled in it, and still open at its end;
* **official inspections** recorded in the month, and the domain's **changes** audited in it (sensors detached,
  baselines reset, thresholds set or removed), without who made them (the audit log keeps that).

Times are UTC in the JSON, with a Seoul-time twin (`...Local`) where a person reads them; the CSV has Seoul times.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from statistics import median
from typing import Any
from zoneinfo import ZoneInfo

from ucity.alarms.model import ACTIVE_STATUSES, FALSE_OUTCOMES
from ucity.core.clock import parse_iso, to_iso
from ucity.core.params import bad
from ucity.domains.facility_safety.tasks import CANCELLED, COMPLETED

MONTH = re.compile(r"^(\d{4})-(\d{2})$")


@dataclass(frozen=True, slots=True)
class Month:
    label: str  # YYYY-MM
    start: datetime  # UTC, inclusive
    end: datetime  # UTC, exclusive: the month's end, or now for the current month
    partial: bool  # the current month, reported up to now
    zone: str

    def holds(self, at: str | None) -> bool:
        return bool(at) and self.start <= parse_iso(str(at)) < self.end

    def local(self, at: str | datetime | None) -> str | None:
        if at is None or at == "":
            return None
        when = parse_iso(at) if isinstance(at, str) else at
        return f"{when.astimezone(ZoneInfo(self.zone)):%Y-%m-%d %H:%M:%S}"

    def to_wire(self) -> dict[str, Any]:
        return {"month": self.label, "timezone": self.zone, "from": to_iso(self.start), "to": to_iso(self.end),
                "fromLocal": self.local(self.start), "toLocal": self.local(self.end), "partial": self.partial}


def month_of(text: str | None, now: datetime, zone: str) -> Month:
    """The month `text` (YYYY-MM) names on the clock of `zone`, or the last complete one; a month that has not
    begun is refused (400), the current one ends now."""
    tz = ZoneInfo(zone)
    here = now.astimezone(tz)
    if text is None or text == "":
        first = here.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        year, month = (first.year, first.month - 1) if first.month > 1 else (first.year - 1, 12)
    else:
        found = MONTH.match(text)
        if found is None or not 1 <= int(found.group(2)) <= 12 or int(found.group(1)) < 1970:
            raise bad(f"month는 YYYY-MM 형식입니다 (받은 값: {text[:20]!r})",
                      f"month must be YYYY-MM (got {text[:20]!r})")
        year, month = int(found.group(1)), int(found.group(2))
    start_local = datetime(year, month, 1, tzinfo=tz)
    end_local = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=tz)
    start, end = start_local.astimezone(UTC), end_local.astimezone(UTC)
    if start > now:
        raise bad(f"{year:04d}-{month:02d}은 아직 시작하지 않은 달입니다", f"{year:04d}-{month:02d} has not begun yet")
    partial = end > now
    return Month(f"{year:04d}-{month:02d}", start, now if partial else end, partial, zone)


def _minutes(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return (parse_iso(end) - parse_iso(start)) / timedelta(minutes=1)


def _figure(values: list[float]) -> dict[str, float | None]:
    return {"median": round(median(values), 1) if values else None, "max": round(max(values), 1) if values else None}


def alarm_figures(alarms: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The alarms raised in the month (documents of the alarm store), in figures. Derived alarms are left out:
    they restate their children's."""
    by_level: dict[str, int] = {}
    by_rule: dict[str, int] = {}
    ack: list[float] = []
    clear: list[float] = []
    total = false = active = 0
    for alarm in alarms:
        total += 1
        level = alarm.get("level") or "fault"
        by_level[level] = by_level.get(level, 0) + 1
        rule = str(alarm.get("rule_id") or "")
        by_rule[rule] = by_rule.get(rule, 0) + 1
        minutes = _minutes(alarm.get("raised_at"), alarm.get("acked_at"))
        if minutes is not None:
            ack.append(minutes)
        minutes = _minutes(alarm.get("raised_at"), alarm.get("cleared_at"))
        if minutes is not None:
            clear.append(minutes)
        false += alarm.get("outcome") in FALSE_OUTCOMES
        active += alarm.get("status") in ACTIVE_STATUSES
    return {"raised": total, "byLevel": dict(sorted(by_level.items())), "byRule": dict(sorted(by_rule.items())),
            "acknowledged": len(ack), "minutesToAcknowledge": _figure(ack), "cleared": len(clear),
            "minutesToClear": _figure(clear), "closedAsFalse": false, "stillActive": active}


def grade_figures(rows: list[dict[str, Any]], month: Month) -> dict[str, Any]:
    """The grade at the start and the end of the month and its changes within it, from the grade history rows
    (`api._grade_history`, oldest first) up to the month's end."""
    def state(row: dict[str, Any] | None) -> dict[str, Any] | None:
        if row is None:
            return None
        return {"grade": row.get("dataSafetyGrade"), "status": row.get("dataSafetyGradeStatus"),
                "provisionalGrade": row.get("provisionalGrade"), "at": row["at"], "atLocal": month.local(row["at"])}

    def key(row: dict[str, Any] | None) -> tuple[Any, Any]:
        return (None, None) if row is None else (row.get("dataSafetyGrade"), row.get("dataSafetyGradeStatus"))

    before = [r for r in rows if parse_iso(r["at"]) < month.start]
    within = [r for r in rows if month.holds(r["at"])]
    previous = before[-1] if before else None
    changes = []
    for row in within:
        if key(row) != key(previous):
            changes.append({"at": row["at"], "atLocal": month.local(row["at"]),
                            "from": key(previous)[0], "to": row.get("dataSafetyGrade"),
                            "status": row.get("dataSafetyGradeStatus"), "reasons": row.get("reasons") or []})
        previous = row
    return {"atStart": state(before[-1] if before else None),
            "atEnd": state(within[-1] if within else before[-1] if before else None),
            "gradings": len(within), "changes": changes}


def task_figures(tasks: Iterable[Any], month: Month) -> dict[str, Any]:
    """Field tasks (tasks.Task) opened, completed and cancelled in the month, and open at its end."""
    opened: dict[str, int] = {}
    completed = cancelled = open_at_end = 0
    for task in tasks:
        if month.holds(task.created_at):
            opened[task.kind] = opened.get(task.kind, 0) + 1
        if month.holds(task.closed_at):
            completed += task.status == COMPLETED
            cancelled += task.status == CANCELLED
        created = parse_iso(task.created_at)
        if created < month.end and (not task.closed_at or parse_iso(task.closed_at) >= month.end):
            open_at_end += 1
    return {"opened": sum(opened.values()), "openedByKind": dict(sorted(opened.items())), "completed": completed,
            "cancelled": cancelled, "openAtEnd": open_at_end}


def change_lines(audit: Iterable[dict[str, Any]], month: Month) -> list[dict[str, Any]]:
    """The domain's audited changes of one facility (sensor detached, baseline reset, thresholds): what and when,
    not who (the audit log, with its own permission, says who)."""
    out = []
    for row in audit:
        line = {"action": row.get("action"), "at": row.get("at"), "atLocal": month.local(row.get("at"))}
        if row.get("sensor"):
            line["sensor"] = row["sensor"]
        out.append(line)
    return out


def district(facilities: list[dict[str, Any]], alarms: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The district's totals over the facility sections; `alarms` are all of theirs (figured as one)."""
    def total(path: tuple[str, str]) -> int:
        return sum(int(section[path[0]][path[1]]) for section in facilities)

    return {"facilities": len(facilities), "alarms": alarm_figures(alarms),
            "gradeChanges": sum(len(section["grade"]["changes"]) for section in facilities),
            "worsened": sorted(section["facility"] for section in facilities if _worse(section["grade"])),
            "tasksOpened": total(("tasks", "opened")), "tasksCompleted": total(("tasks", "completed")),
            "tasksCancelled": total(("tasks", "cancelled")),
            "tasksOpenAtEnd": total(("tasks", "openAtEnd")),
            "inspections": sum(len(section["inspections"]) for section in facilities)}


def _worse(grade: dict[str, Any]) -> bool:
    """Whether the facility ends the month on a worse letter than it began it (A best, E worst)."""
    start, end = grade.get("atStart") or {}, grade.get("atEnd") or {}
    first, last = start.get("grade"), end.get("grade")
    return bool(first and last and last > first)


CSV_HEADER = ["facility", "name", "facilityType", "legalSafetyGrade", "gradeAtStart", "gradeAtEnd", "gradeChanges",
              "alarmsRaised", "alarmsByLevel", "acknowledged", "medianMinutesToAcknowledge", "closedAsFalse",
              "stillActive", "tasksOpened", "tasksCompleted", "tasksCancelled", "tasksOpenAtEnd", "inspections",
              "changes"]


def csv_rows(report: dict[str, Any]) -> list[list[Any]]:
    rows: list[list[Any]] = [CSV_HEADER]
    for s in report["facilities"]:
        grade, alarms, tasks = s["grade"], s["alarms"], s["tasks"]
        rows.append([s["facility"], s["name"], s["facilityType"], s["legalSafetyGrade"] or "",
                     ((grade["atStart"] or {}).get("grade")) or "", ((grade["atEnd"] or {}).get("grade")) or "",
                     ";".join(f"{c['atLocal']} {c['from'] or '-'}->{c['to'] or '-'}" for c in grade["changes"]),
                     alarms["raised"], ";".join(f"{k}={v}" for k, v in alarms["byLevel"].items()),
                     alarms["acknowledged"], alarms["minutesToAcknowledge"]["median"] or "",
                     alarms["closedAsFalse"], alarms["stillActive"], tasks["opened"], tasks["completed"],
                     tasks["cancelled"], tasks["openAtEnd"], len(s["inspections"]),
                     ";".join(f"{c['atLocal']} {c['action']}" for c in s["changes"])])
    return rows
