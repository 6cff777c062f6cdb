"""The /docs data of the facility-safety API (ucity/openapi.py finds a domain's `openapi` module): what
its route table (api.routes) does not say: summaries, query parameters, body models, statuses.
The routes and their rules are in README.md ("API").
"""

from __future__ import annotations

from typing import Any

from ucity.core.openapi import ApiDocs, Doc
from ucity.domains.facility_safety.api import BASE, SensorAttachBody
from ucity.domains.facility_safety.config import LadderSet
from ucity.domains.facility_safety.models import FacilityIn, InspectionIn, TaskIn, TaskResultIn

F = f"{BASE}/facilities/{{facilityId}}"
T = f"{BASE}/tasks/{{taskId}}"
ACT = ("NGSILD-Tenant", "X-Ucity-Actor")  # task changes say who acts
CSV = "text/csv"
THRESHOLDS_NOTE = ("They replace the facility's alarm rules, so with `server.require_auth` on they need `config:admin`, as "
                   "`PUT /api/v1/rules/{ruleId}` does; each change is an audit line (`GET /api/v1/audit?kind="
                   "facility-safety`) with its actor and the old and new ladders.")


def _act(summary: str, body: Any = None, statuses: tuple[int, ...] = (200,), media: str = "application/json") -> Doc:
    return Doc(summary=summary, headers=ACT, required=ACT[1:], body=body, media=(media,), statuses=statuses)


OPENAPI = ApiDocs(
    routes={
        ("GET", f"{BASE}/facilities"): Doc(summary="Facilities, with their grades",
                                          description="An unknown filter value is 400 naming the allowed ones; "
                                                      "`total` counts every match, `limit` / `offset` page them.",
                                          params=("facilityType", "dataGrade", "legalGrade", "district",
                                                  "dataGradeStatus", "limit", "offset")),
        ("POST", f"{BASE}/facilities"): Doc(
            summary="Register a facility (201) or update it (200)",
            description="On an existing facility, a `legalSafetyGrade`, `legalSafetyGradeDate` or `lastInspections` "
                        "value that differs from the record is refused (409): only an official inspection "
                        "(`POST .../facilities/{facilityId}/inspections`) changes them.",
            body=FacilityIn, statuses=(200, 201)),
        ("GET", F): Doc(summary="A facility: sensors, series, grade and explanation, inspections, tasks, alarms",
                        description="Each sensor's `ladder` names the `datasetId` of the assessed instance it "
                                    "watches and gives `edges` (exact, as the rule compares) and `display` "
                                    "(mrad, mm, mm/s, 2 decimals). Without `from`, the series window starts 7 days before `to`, "
                                    "floored to the period on the Seoul clock; `series.sensors[].units` gives each "
                                    "attribute's unit.",
                        params=("from", "to", "period")),
        ("GET", f"{F}/grade"): Doc(summary="The facility's data safety grade with its explanation"),
        ("POST", f"{F}/grade"): Doc(summary="Recompute the facility's data safety grade now"),
        ("GET", f"{F}/grades"): Doc(summary="The facility's grade history", params=("from", "to", "limit", "explain")),
        ("POST", f"{F}/sensors"): Doc(summary="Attach a sensor to a structural member",
                                      description="The sensor entity must exist (a provisioned device's): an unknown "
                                                  "id is 404 unless `create` is true, which creates a StructuralSensor "
                                                  "entity for a sensor an NGSI-LD client will write. A sensor attached "
                                                  "to another monitored facility is 409 unless `move` is true (the "
                                                  "move is audited, `sensor-moved`). `replaced` true resets its "
                                                  "thermal model (a new device under the old id).",
                                      body=SensorAttachBody, statuses=(200, 404, 409)),
        ("DELETE", f"{F}/sensors/{{sensorId}}"): Doc(
            summary="Detach a sensor from the facility (a replaced or removed device)",
            description="Its relationship and member go; the ladders it was assessed on end with a zero (their "
                        "rules clear), the grade stops counting it, its history stays. 404 unless it is attached "
                        "to this facility. Audited (`kind=facility-safety`).", statuses=(204,)),
        ("GET", f"{F}/thresholds"): Doc(summary="The facility's own ladders (tilt, crack, vibration)"),
        ("PUT", f"{F}/thresholds"): Doc(summary="Set the facility's own ladders", body=LadderSet,
                                        description=THRESHOLDS_NOTE),
        ("DELETE", f"{F}/thresholds"): Doc(summary="Remove the facility's own ladders (the class's apply)",
                                           description=THRESHOLDS_NOTE, statuses=(204,)),
        ("GET", f"{F}/inspections"): Doc(summary="The facility's inspection schedule and records", params=("limit",)),
        ("POST", f"{F}/inspections"): Doc(summary="Record an official inspection", headers=ACT, required=ACT[1:],
                                          body=InspectionIn, statuses=(201,)),
        ("GET", f"{BASE}/sensors"): Doc(summary="Structural sensors; `orphan=true`: those in no monitored facility",
                                       description="An orphan has no `controlledAsset`, or one naming no monitored "
                                                   "facility (a typo): it can alarm but no grade counts it. Each row's "
                                                   "`orphan` says why (`no-facility`, `unknown-facility`) or is null.",
                                       params=("orphan", "facility", "limit", "offset")),
        ("GET", f"{BASE}/sensors/{{sensorId}}"): Doc(summary="A sensor with its models and ladder"),
        ("POST", f"{BASE}/sensors/{{sensorId}}/reset-baseline"): Doc(
            summary="Start the sensor's thermal model and installation baseline afresh (a replaced device)",
            description="Its models go and `thermalBaselineAt` is set to now: fits and the stuck check use its "
                        "history from then on, so it is assessed raw until it has 30 days of its own; the grade "
                        "counts its level and events from then on. Its installation baseline (zero offset, QA5 F9) "
                        "is `baseline` when given, else captured from its next `baseline.capture_samples` readings "
                        "(stored, not laddered until then). Audited (`sensor-baseline-reset`).",
            body={"type": "object", "properties": {
                "reason": {"type": "string"},
                "baseline": {"type": "object", "additionalProperties": {"type": "number"},
                             "description": "zero offset per axis (tiltX, tiltY, crackOpening), device's unit"}}}),
        ("POST", f"{BASE}/sensors/{{sensorId}}/thermal-fit"): Doc(summary="Fit the sensor's thermal model now"),
        ("POST", f"{BASE}/grades/recompute"): Doc(summary="Recompute every facility's grade now"),
        ("GET", f"{BASE}/inspections/schedule"): Doc(summary="The inspection schedule of every facility",
                                                    params=("status",),
                                                    description="`status`: ok, due-soon, overdue, no-record (400 "
                                                                "for another value)."),
        ("GET", f"{BASE}/inspections/overdue"): Doc(summary="Overdue inspections"),
        ("GET", f"{BASE}/tasks"): Doc(summary="Field tasks", params=("status", "facility", "kind", "limit", "offset")),
        ("POST", f"{BASE}/tasks"): _act("Create a field task", TaskIn, (201,)),
        ("GET", T): Doc(summary="A field task"),
        ("POST", f"{T}/start"): _act("Start a task", {"type": "object", "properties": {
            "assignee": {"type": "string", "description": "default: the actor"}}}),
        ("POST", f"{T}/complete"): _act("Complete a task with its result (and an inspection it made); an open task "
                                        "may be completed without a start (history: `withoutStart`)", TaskResultIn),
        ("POST", f"{T}/cancel"): _act("Cancel a task", {"type": "object", "properties": {"reason": {"type": "string"}}}),
        ("POST", f"{T}/photos"): _act("Upload photos of a task (JPEG, PNG, WebP; at most 10 MiB each, 20 per task)",
                                      {"type": "object"}, (201,), "multipart/form-data"),
        ("GET", f"{T}/photos/{{photoId}}"): Doc(summary="A photo of a task", response_media="image/*"),
        ("GET", f"{BASE}/summary"): Doc(summary="The district: facilities by grade, alarms, overdue inspections, "
                                                "recommendations, open tasks"),
        ("GET", f"{BASE}/export/facilities.csv"): Doc(summary="Facilities as CSV (UTF-8 with BOM; times in Asia/Seoul)",
                                                      response_media=CSV),
        ("GET", f"{BASE}/export/grades.csv"): Doc(summary="Grade history as CSV (UTF-8 with BOM; times in Asia/Seoul)",
                                                  params=("from", "to"), response_media=CSV),
        ("GET", f"{BASE}/report"): Doc(
            summary="A month's report: alarms, grade changes, tasks, inspections and changes per facility",
            description="The month is a calendar month in Asia/Seoul (`grade.timezone`); without `month`, the last "
                        "complete one; the current month is reported up to now (`partial`); a month not begun is "
                        "400. Alarms are those raised in the month on the facility or its sensors (derived alarms "
                        "left out), with minutes to acknowledge and to clear (median, max), false closures and how "
                        "many are still active; the grade at both ends of the month and each change with its "
                        "reasons; tasks opened, completed, cancelled and open at the end; the domain's audited "
                        "changes (what and when, not who).",
            params=("month", "facility")),
        ("GET", f"{BASE}/export/report.csv"): Doc(summary="A month's report as CSV, one row per facility (UTF-8 with "
                                                          "BOM; times in Asia/Seoul)",
                                                  params=("month", "facility"), response_media=CSV),
    },
    params={"facilityType": "facility type", "dataGrade": "data safety grade (A..E, or `none`)",
            "legalGrade": "legal safety grade (A..E, or `none`)", "district": "district", "period": "seconds or PT1H, PT15M, P1D",
            "explain": "`true`: with each grade's explanation", "status": "status; for tasks also `active`",
            "facility": "facility id", "kind": "kind", "limit": "page size", "offset": "rows to skip",
            "dataGradeStatus": "ok, insufficient-data, no-data",
            "orphan": "`true`: only sensors in no monitored facility; `false`: only attached ones",
            "from": "ISO 8601 date-time (not after `to`)", "to": "ISO 8601 date-time",
            "month": "YYYY-MM, a calendar month in Asia/Seoul (default: the last complete one)"},
    tags={"facility_safety": "Structural safety of facilities (retaining walls, buildings, bridges ...): sensors and "
                             "their ladders, data safety grades, inspections, field tasks "
                             "(ucity/domains/facility_safety/README.md)."},
)
