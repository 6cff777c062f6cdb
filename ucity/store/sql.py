"""SQL and row logic that the SQLite and PostgreSQL stores share (the dialects agree on it).

Fragments are written with `?` placeholders, SQLite's style; the PostgreSQL store numbers them
(`numbered`) once a statement is complete. What lives here is either plain SQL both dialects
read the same way (alarm filters, time windows, `IN` lists) or pure Python over stored rows
(history instance merging, aggregate combination, paging rules).
"""

from __future__ import annotations

import math
from typing import Any

import orjson

from ucity.store.base import AlarmQuery, AlarmRow, Doc, TemporalQuery

VALUE_MEMBERS = ("value", "object", "languageMap", "valueList", "objectList", "json", "vocab")
GEO_TYPES = ("GeoProperty",)
# createdAt and modifiedAt both select by the time an instance was recorded (the `created` column).
TIME_COLUMNS = {"observedAt": "ts", "modifiedAt": "created", "createdAt": "created"}


# -- placeholders --------------------------------------------------------------------------------------
def numbered(sql: str) -> str:
    """`sql` with its `?` placeholders turned into PostgreSQL's `$1, $2, ...`.

    Quoted literals and identifiers are copied as they are, so a `?` inside one (a regex, a
    jsonpath) is never mistaken for a placeholder.
    """
    out: list[str] = []
    n, i, length = 0, 0, len(sql)
    while i < length:
        char = sql[i]
        if char in "'\"":
            end = sql.index(char, i + 1)
            while end + 1 < length and sql[end + 1] == char:  # a doubled quote is an escaped one
                end = sql.index(char, end + 2)
            out.append(sql[i:end + 1])
            i = end + 1
            continue
        if char == "?":
            n += 1
            out.append(f"${n}")
        else:
            out.append(char)
        i += 1
    return "".join(out)


def any_of_sql(groups: tuple[tuple[str, ...], ...], test: str) -> tuple[str, list[Any]]:
    """SQL for OR-of-AND groups of values, `test` being a fragment with one `?` for a value."""
    ors: list[str] = []
    params: list[Any] = []
    for group in groups:
        ors.append("(" + " AND ".join([test] * len(group)) + ")")
        params.extend(group)
    return "(" + " OR ".join(ors) + ")", params


def in_list(column: str, values: tuple[Any, ...]) -> str:
    return f"{column} IN (" + ",".join("?" * len(values)) + ")"


# -- history -------------------------------------------------------------------------------------------
def vnum(instance: dict[str, Any]) -> float | None:
    """The number a Property's value aggregates as: numbers as they are, booleans as 1 and 0."""
    value = instance.get("value")
    return float(value) if isinstance(value, (int, float)) else None


def one_per_time(rows: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """`rows` with at most one instance per attribute, datasetId and observedAt (the last one given)."""
    kept: dict[object, tuple[str, dict[str, Any]]] = {}
    for n, (attr, instance) in enumerate(rows):
        observed = instance.get("observedAt")
        key = (attr, instance.get("datasetId"), observed) if observed else n
        kept.pop(key, None)  # the later instance also takes the later place
        kept[key] = (attr, instance)
    return list(kept.values())


def geo_parts(doc: Doc | None) -> list[tuple[str, str]]:
    """(attribute IRI, GeoJSON text) of every GeoProperty instance of a document."""
    if not doc:
        return []
    parts = []
    for attr, instances in doc.get("attrs", {}).items():
        for instance in instances:
            if instance.get("type") in GEO_TYPES and isinstance(instance.get("value"), dict):
                parts.append((attr, orjson.dumps(instance["value"]).decode()))
    return parts


def geo_of(instances: list[dict[str, Any]] | None) -> list[Any]:
    """The GeoJSON values of one attribute's instances: those `geo_parts` writes."""
    return [i["value"] for i in instances or () if i.get("type") in GEO_TYPES and isinstance(i.get("value"), dict)]


def geo_attr_changed(was: list[dict[str, Any]] | None, now: list[dict[str, Any]] | None) -> bool:
    """Whether one attribute's instances, before and after a write, index different geometries. Compared
    as values, not GeoJSON texts (equal values are one geometry; 1 and 1.0 are one coordinate), with a
    path for the usual case of one instance on each side: this runs for every touched attribute."""
    if was and now and len(was) == 1 and len(now) == 1:
        a, b = was[0], now[0]
        kind_a, kind_b = a.get("type"), b.get("type")
        if kind_a not in GEO_TYPES and kind_b not in GEO_TYPES:
            return False
        if kind_a == kind_b:  # both GeoProperties: their values compared (non-dict ones are not indexed)
            value_a, value_b = a.get("value"), b.get("value")
            if isinstance(value_a, dict) and isinstance(value_b, dict):
                return bool(value_a != value_b)
    return geo_of(was) != geo_of(now)


def merge_instance(old: dict[str, Any], new: dict[str, Any], now: str) -> dict[str, Any]:
    """A recorded instance with a fragment applied: new value members, same identity and dataset."""
    merged = {k: v for k, v in old.items() if k not in VALUE_MEMBERS and k != "datasetId"}
    merged.update({k: v for k, v in new.items() if k not in ("createdAt", "instanceId", "datasetId")})
    if "datasetId" in old:  # the instance stays in its series
        merged["datasetId"] = old["datasetId"]
    merged["modifiedAt"] = now
    merged["instanceId"] = old["instanceId"]
    return merged


def time_column(timeproperty: str) -> str:
    column = TIME_COLUMNS.get(timeproperty)
    if column is None:
        raise ValueError(f"unknown time property {timeproperty!r}")
    return column


def window(column: str, query: TemporalQuery, alias: str = "") -> tuple[str, list[Any]]:
    """` AND ...` restricting instances to the query's time window."""
    sql, params = "", []
    if query.time_from is not None:
        sql += f" AND {alias}{column} >= ?"
        params.append(query.time_from)
    if query.time_to is not None:
        sql += f" AND {alias}{column} < ?"
        params.append(query.time_to)
    return sql, params


def datasets(query: TemporalQuery) -> tuple[str, ...]:
    """The dataset_id column values selected by the query ('' is the default instance)."""
    return tuple("" if d == "@none" else d for d in query.dataset_ids or ())


def page(query: TemporalQuery) -> tuple[int, bool]:
    """(instances or periods per attribute on this page, newest first)."""
    if query.last_n is None:
        return query.limit_instances, False
    return min(query.limit_instances, query.last_n), True


def truncated(query: TemporalQuery, found: int, want: int) -> bool:
    """More in the window than the page holds; lastN within the page size is a complete answer."""
    return found > want and (query.last_n is None or query.last_n > want)


def combine(columns: list[Any], methods: tuple[str, ...], sql_of: dict[str, tuple[str, ...]]) -> dict[str, Any]:
    """method -> value from the aggregate columns of one period (in `sql_of` order)."""
    values: dict[str, Any] = {}
    for method in methods:
        width = len(sql_of[method])
        taken, columns = columns[:width], columns[width:]
        values[method] = stddev(*taken) if method == "stddev" else taken[0]
    return values


def stddev(count: int, total: float | None, squares: float | None) -> float | None:
    """Sample standard deviation from count, sum and sum of squares."""
    if not count or total is None or squares is None:
        return None
    if count == 1:
        return 0.0
    return math.sqrt(max(0.0, (squares - total * total / count) / (count - 1)))


# -- alarms: columns, filters, statistics ----------------------------------------------------------------
ALARM_COLUMNS = ("tenant, id, entity_id, entity_type, rule_id, kind, level, status, active, derived, parent_id, "
                 "outcome, assignee, raised_at, updated_at, acked_at, cleared_at, closed_at, minx, miny, maxx, maxy, doc")


def alarm_values(row: AlarmRow) -> list[Any]:
    """The ALARM_COLUMNS values of an alarm, its document last (as the dialect encodes it)."""
    minx, miny, maxx, maxy = row.bbox if row.bbox is not None else (None, None, None, None)
    return [row.tenant, row.id, row.entity_id, row.entity_type, row.rule_id, row.kind, row.level, row.status,
            int(row.active), int(row.derived), row.parent_id, row.outcome, row.assignee, row.raised_at,
            row.updated_at, row.acked_at, row.cleared_at, row.closed_at, minx, miny, maxx, maxy, row.doc]


def alarm_where(tenant: str, query: AlarmQuery) -> tuple[str, list[Any]]:
    """The WHERE clause (over alias `a`) of an alarm query, with its parameters."""
    clauses: list[str] = ["a.tenant = ?"]
    params: list[Any] = [tenant]
    for column, values in (("a.status", query.statuses), ("a.level", query.levels), ("a.kind", query.kinds),
                           ("a.entity_type", query.entity_types), ("a.entity_id", query.entity_ids),
                           ("a.rule_id", query.rule_ids), ("a.parent_id", query.parent_ids)):
        if values:
            clauses.append(in_list(column, values))
            params.extend(values)
    if query.derived is not None:
        clauses.append("a.derived = ?")
        params.append(int(query.derived))
    if query.bbox is not None:
        minx, miny, maxx, maxy = query.bbox
        clauses.append("a.minx IS NOT NULL AND a.minx <= ? AND a.maxx >= ? AND a.miny <= ? AND a.maxy >= ?")
        params.extend([maxx, minx, maxy, miny])
    if query.raised_from is not None:
        clauses.append("a.raised_at >= ?")
        params.append(query.raised_from)
    if query.raised_to is not None:
        clauses.append("a.raised_at < ?")
        params.append(query.raised_to)
    return " AND ".join(clauses), params


def alarm_count_sql(where: str, column: str) -> str:
    return f"SELECT {column}, count(*) FROM alarms a WHERE {where} GROUP BY {column} ORDER BY {column}"


def alarm_ack_sql(where: str) -> str:
    return f"SELECT a.acked_at - a.raised_at FROM alarms a WHERE {where} AND a.acked_at IS NOT NULL ORDER BY 1"


def alarm_false_rate_sql(where: str, column: str, false_outcomes: tuple[str, ...]) -> str:
    """(key, closed alarms, closed with a false outcome) per `column`; parameters: outcomes, then `where`'s."""
    false_in = in_list("a.outcome", false_outcomes) if false_outcomes else "false"
    return (f"SELECT {column}, count(*), sum(CASE WHEN {false_in} THEN 1 ELSE 0 END) FROM alarms a "
            f"WHERE {where} AND a.closed_at IS NOT NULL AND a.derived = 0 AND {column} IS NOT NULL "
            f"GROUP BY {column} ORDER BY {column}")


# The tenants of the audit log, one index seek each (a loose scan of ops_audit_time), not a scan of every line.
AUDIT_TENANTS = ("WITH RECURSIVE t(x) AS (SELECT min(tenant) FROM ops_audit UNION ALL "
                 "SELECT (SELECT min(tenant) FROM ops_audit WHERE tenant > t.x) FROM t WHERE t.x IS NOT NULL) "
                 "SELECT x FROM t WHERE x IS NOT NULL")


def row_count(status: str) -> int:
    """The row count of a PostgreSQL command status such as `DELETE 3` (0 for an empty status)."""
    return int(status.rsplit(" ", 1)[-1]) if status else 0
