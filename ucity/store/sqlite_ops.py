"""SQL of the operations centre's tables (events, grants, audit log) for the SQLite store.

Functions of a connection: `SqliteStore` runs the writes in its group-committing writer thread and
the reads on its reader connections. The audit log is only ever inserted into (the table's triggers
refuse updates and deletes, migration 4), but for retention's deletion of lines past its cutoff
(`purge_audit`, migration 7).
"""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson

from ucity.core.clock import from_micros, to_iso
from ucity.store.base import (
    AuditQuery,
    AuditRow,
    Doc,
    GrantQuery,
    GrantRow,
    OpsEventQuery,
    OpsEventRow,
    TenantCounts,
    add_counts,
)
from ucity.store.sql import AUDIT_TENANTS

_EVENT_COLUMNS = ("tenant, id, service, type_code, level, status, source_system, source_ref, occurred_at, "
                  "reported_at, updated_at, lon, lat, agencies, doc")
_GRANT_COLUMNS = "tenant, id, agency_id, event_id, status, issued_at, expires_at, updated_at, doc"
_AUDIT_COLUMNS = "tenant, at, kind, action, actor, agency_id, event_id, grant_id, camera_id, outcome, doc"


def _dumps(doc: Doc) -> str:
    return orjson.dumps(doc).decode()


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN (" + ",".join("?" * len(values)) + ")"


def _filters(pairs: list[tuple[str, tuple[str, ...]]], clauses: list[str], params: list[Any]) -> None:
    """Add `column IN (...)` for every non-empty value tuple."""
    for column, values in pairs:
        if values:
            clauses.append(_in(column, values))
            params.extend(values)


def _page(conn: sqlite3.Connection, table: str, where: str, params: list[Any], order: str, limit: int, offset: int,
          count: bool) -> tuple[list[str], int | None]:
    total = int(conn.execute(f"SELECT count(*) FROM {table} WHERE {where}", params).fetchone()[0]) if count else None
    rows = conn.execute(f"SELECT doc FROM {table} WHERE {where} ORDER BY {order} LIMIT ? OFFSET ?",
                        [*params, limit, offset]).fetchall()
    return [r[0] for r in rows], total


# -- audit ------------------------------------------------------------------------------------------
def insert_audit(conn: sqlite3.Connection, rows: list[AuditRow]) -> None:
    conn.executemany(
        f"INSERT INTO ops_audit ({_AUDIT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        [(r.tenant, r.at, r.kind, r.action, r.actor, r.agency_id, r.event_id, r.grant_id, r.camera_id, r.outcome,
          _dumps(r.doc)) for r in rows])


def _audit_where(tenant: str, query: AuditQuery) -> tuple[str, list[Any]]:
    clauses, params = ["tenant = ?"], list[Any]([tenant])
    _filters([("kind", query.kinds), ("action", query.actions), ("agency_id", query.agency_ids),
              ("event_id", query.event_ids), ("grant_id", query.grant_ids), ("camera_id", query.camera_ids),
              ("outcome", query.outcomes)], clauses, params)
    if query.at_from is not None:
        clauses.append("at >= ?")
        params.append(query.at_from)
    if query.at_to is not None:
        clauses.append("at < ?")
        params.append(query.at_to)
    return " AND ".join(clauses), params


def audit_page(conn: sqlite3.Connection, tenant: str, query: AuditQuery) -> tuple[list[Doc], int | None]:
    where, params = _audit_where(tenant, query)
    total = int(conn.execute(f"SELECT count(*) FROM ops_audit WHERE {where}", params).fetchone()[0]) \
        if query.count else None
    order = "DESC" if query.newest_first else "ASC"
    rows = conn.execute(
        f"SELECT seq, at, kind, action, actor, agency_id, event_id, grant_id, camera_id, outcome, doc FROM ops_audit "
        f"WHERE {where} ORDER BY seq {order} LIMIT ? OFFSET ?", [*params, query.limit, query.offset]).fetchall()
    return [_audit_doc(row) for row in rows], total


def _audit_doc(row: tuple[Any, ...]) -> Doc:
    seq, at, kind, action, actor, agency, event, grant, camera, outcome, doc = row
    return {**orjson.loads(doc), "seq": seq, "at": to_iso(from_micros(at)), "kind": kind, "action": action,
            "actor": actor, "agency": agency, "event": event, "grant": grant, "camera": camera, "outcome": outcome}


def audit_counts(conn: sqlite3.Connection, tenant: str, query: AuditQuery) -> list[tuple[str, str, str, int]]:
    where, params = _audit_where(tenant, query)
    return [(str(a or ""), str(act), str(o or ""), int(n)) for a, act, o, n in conn.execute(
        f"SELECT agency_id, action, outcome, count(*) FROM ops_audit WHERE {where} "
        "GROUP BY agency_id, action, outcome ORDER BY agency_id, action, outcome", params)]


# -- events -----------------------------------------------------------------------------------------
def save_event(conn: sqlite3.Connection, row: OpsEventRow, audit: list[AuditRow]) -> None:
    lon, lat = row.point if row.point is not None else (None, None)
    conn.execute(
        f"INSERT OR REPLACE INTO ops_events ({_EVENT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (row.tenant, row.id, row.service, row.type_code, row.level, row.status, row.source_system, row.source_ref,
         row.occurred_at, row.reported_at, row.updated_at, lon, lat, orjson.dumps(list(row.agencies)).decode(),
         _dumps(row.doc)))
    insert_audit(conn, audit)


def event_page(conn: sqlite3.Connection, tenant: str, query: OpsEventQuery) -> tuple[list[Doc], int | None]:
    clauses, params = ["tenant = ?"], list[Any]([tenant])
    _filters([("service", query.services), ("status", query.statuses), ("level", query.levels),
              ("type_code", query.type_codes)], clauses, params)
    for column, value in (("source_system", query.source_system), ("source_ref", query.source_ref)):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    if query.agency is not None:
        clauses.append("EXISTS (SELECT 1 FROM json_each(agencies) a WHERE a.value = ?)")
        params.append(query.agency)
    if query.bbox is not None:
        minx, miny, maxx, maxy = query.bbox
        clauses.append("lon BETWEEN ? AND ? AND lat BETWEEN ? AND ?")
        params.extend([minx, maxx, miny, maxy])
    if query.reported_from is not None:
        clauses.append("reported_at >= ?")
        params.append(query.reported_from)
    if query.reported_to is not None:
        clauses.append("reported_at < ?")
        params.append(query.reported_to)
    docs, total = _page(conn, "ops_events", " AND ".join(clauses), params, "reported_at DESC, id", query.limit,
                        query.offset, query.count)
    return [orjson.loads(d) for d in docs], total


# -- grants -----------------------------------------------------------------------------------------
# A conditional write of a grant (optimistic concurrency, base.Store.save_grant): the version is the document's
# `version`, 0 for documents written before it existed (no migration).
_GRANT_UPDATE_IF = ("UPDATE ops_grants SET agency_id=?, event_id=?, status=?, issued_at=?, expires_at=?, updated_at=?, "
                    "doc=? WHERE tenant=? AND id=? AND coalesce(json_extract(doc, '$.version'), 0) = ?")


def save_grant(conn: sqlite3.Connection, row: GrantRow, audit: list[AuditRow],
               expected_version: int | None = None) -> bool:
    if expected_version is None:
        conn.execute(f"INSERT OR REPLACE INTO ops_grants ({_GRANT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)",
                     (row.tenant, row.id, row.agency_id, row.event_id, row.status, row.issued_at, row.expires_at,
                      row.updated_at, _dumps(row.doc)))
    elif conn.execute(_GRANT_UPDATE_IF, (row.agency_id, row.event_id, row.status, row.issued_at, row.expires_at,
                                         row.updated_at, _dumps(row.doc), row.tenant, row.id,
                                         expected_version)).rowcount != 1:
        return False  # changed (or deleted) since it was read: nothing written, no audit line
    insert_audit(conn, audit)
    return True


def grant_page(conn: sqlite3.Connection, tenant: str, query: GrantQuery) -> tuple[list[Doc], int | None]:
    clauses, params = ["tenant = ?"], list[Any]([tenant])
    _filters([("agency_id", query.agency_ids), ("event_id", query.event_ids), ("status", query.statuses)],
             clauses, params)
    if query.valid_at is not None:
        clauses.append("status = 'active' AND expires_at > ?")
        params.append(query.valid_at)
    if query.expired_at is not None:
        clauses.append("status = 'active' AND expires_at <= ?")
        params.append(query.expired_at)
    docs, total = _page(conn, "ops_grants", " AND ".join(clauses), params, "issued_at DESC, id", query.limit,
                        query.offset, query.count)
    return [orjson.loads(d) for d in docs], total


def live_grant_tenants(conn: sqlite3.Connection, valid_at: int) -> list[str]:
    rows = conn.execute("SELECT DISTINCT tenant FROM ops_grants WHERE status = 'active' AND expires_at > ? "
                        "ORDER BY tenant", (valid_at,)).fetchall()
    return [str(r[0]) for r in rows]


def get_doc(conn: sqlite3.Connection, table: str, tenant: str, key: str) -> Doc | None:
    """The document of one event or grant (`table` is one of ucity's own table names, never input)."""
    row = conn.execute(f"SELECT doc FROM {table} WHERE tenant=? AND id=?", (tenant, key)).fetchone()
    return orjson.loads(row[0]) if row else None


# -- retention (ucity/store/retention.py) -------------------------------------------------------------


# The lines a purge may take: past the cutoff, not the newest, and not of an event still open (not closed or
# cancelled): those are its trail (`GET /api/v1/events/{id}`) and the record of its live grants, kept however
# old (QA D4: a 173-second audit_days emptied an open event's history). One primary-key probe per line that
# names an event.
_PURGEABLE_AUDIT = ("a.tenant = ? AND a.at < ? AND a.seq < ? AND NOT EXISTS (SELECT 1 FROM ops_events e "
                    "WHERE e.tenant = a.tenant AND e.id = a.event_id AND e.status NOT IN ('closed', 'cancelled'))")


def purge_audit(conn: sqlite3.Connection, before: int, limit: int, dry_run: bool,
                counts: TenantCounts | None = None) -> int:
    """Delete at most `limit` lines recorded before `before`, tenant by tenant through (tenant, at); never the
    newest line (SQLite numbers a line max(seq) + 1: the numbering must not start again), nor a line of an event
    not closed or cancelled. The trigger of migration 7 lets a line go only while `meta.audit_purge_before` is
    set, which it is in this transaction only. `counts`: each tenant's deletions are added to it."""
    newest = conn.execute("SELECT max(seq) FROM ops_audit").fetchone()[0]
    if newest is None:
        return 0
    tenants = [r[0] for r in conn.execute(AUDIT_TENANTS)]
    if dry_run:
        return sum(int(conn.execute(f"SELECT count(*) FROM ops_audit a WHERE {_PURGEABLE_AUDIT}",
                                    (t, before, newest)).fetchone()[0]) for t in tenants)
    deleted = 0
    conn.execute("INSERT OR REPLACE INTO meta VALUES ('audit_purge_before', ?)", (str(before),))
    try:
        for tenant in tenants:
            if deleted >= limit:
                break
            gone = conn.execute(
                f"DELETE FROM ops_audit WHERE seq IN (SELECT a.seq FROM ops_audit a WHERE {_PURGEABLE_AUDIT} LIMIT ?)",
                (tenant, before, newest, limit - deleted)).rowcount
            deleted += gone
            if gone:
                add_counts(counts, {tenant: [gone, 0]})
    finally:
        conn.execute("DELETE FROM meta WHERE key = 'audit_purge_before'")
    return deleted


_FINAL_EVENTS = "status IN ('closed', 'cancelled') AND updated_at < ?"  # as the partial index ops_events_final


def purge_events(conn: sqlite3.Connection, before: int, limit: int, dry_run: bool,
                 counts: TenantCounts | None = None) -> tuple[int, int]:
    """Delete at most `limit` closed or cancelled events last changed before `before`, with their grants."""
    return purge_closed(conn, ("ops_events", _FINAL_EVENTS), ("ops_grants", "event_id"), before, limit, dry_run,
                        counts)


def purge_closed(conn: sqlite3.Connection, records: tuple[str, str], related: tuple[str, str], before: int,
                 limit: int, dry_run: bool, counts: TenantCounts | None = None) -> tuple[int, int]:
    """Delete at most `limit` rows of `records` (table, condition on `before`) with the rows of `related` (table,
    column naming the record's id, same tenant); (records, related rows) deleted, or counted in a dry run. The
    tables and conditions are ucity's own, never input. `counts`: each tenant's deletions are added to it."""
    (table, where), (child, key) = records, related
    if dry_run:
        count, children = conn.execute(
            f"SELECT count(*), coalesce(sum((SELECT count(*) FROM {child} c WHERE c.tenant = r.tenant AND "
            f"c.{key} = r.id)), 0) FROM {table} r WHERE {where}", (before,)).fetchone()
        return int(count), int(children)
    keys = conn.execute(f"SELECT tenant, id FROM {table} WHERE {where} LIMIT ?", (before, limit)).fetchall()
    if not keys:
        return 0, 0
    by_tenant: dict[str, list[tuple[str, str]]] = {}
    for tenant, record in keys:
        by_tenant.setdefault(tenant, []).append((tenant, record))
    mine: TenantCounts = {}
    for tenant, group in by_tenant.items():  # one statement of each per tenant: each tenant's own counts
        gone = conn.executemany(f"DELETE FROM {child} WHERE tenant = ? AND {key} = ?", group).rowcount
        mine[tenant] = [conn.executemany(f"DELETE FROM {table} WHERE tenant = ? AND id = ?", group).rowcount, gone]
    add_counts(counts, mine)
    return sum(c[0] for c in mine.values()), sum(c[1] for c in mine.values())
