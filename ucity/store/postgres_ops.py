"""SQL of the operations centre's tables (events, grants, audit log) for the PostgreSQL store.

The PostgreSQL twin of sqlite_ops.py: the same columns and filters. Writes are functions of the
writer's connection inside its group-committed transaction; reads take a pool connection. The
audit log is only ever inserted into (a trigger of migration 2 refuses updates and deletes), but for
retention's deletion of lines past its cutoff (`purge_audit`, migration 3).
"""

from __future__ import annotations

from typing import Any

import asyncpg

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
from ucity.store.sql import AUDIT_TENANTS, in_list, numbered, row_count

_EVENT_COLUMNS = ("tenant, id, service, type_code, level, status, source_system, source_ref, occurred_at, "
                  "reported_at, updated_at, lon, lat, agencies, doc")
_GRANT_COLUMNS = "tenant, id, agency_id, event_id, status, issued_at, expires_at, updated_at, doc"
_AUDIT_COLUMNS = "tenant, at, kind, action, actor, agency_id, event_id, grant_id, camera_id, outcome, doc"


def _upsert(table: str, columns: str) -> str:
    """INSERT OR REPLACE, PostgreSQL's way (the key is (tenant, id))."""
    names = [c.strip() for c in columns.split(",")]
    placeholders = ", ".join(f"${n}" for n in range(1, len(names) + 1))
    updates = ", ".join(f"{c} = excluded.{c}" for c in names[2:])
    return f"INSERT INTO {table} ({columns}) VALUES ({placeholders}) ON CONFLICT (tenant, id) DO UPDATE SET {updates}"


_EVENT_UPSERT = _upsert("ops_events", _EVENT_COLUMNS)
_GRANT_UPSERT = _upsert("ops_grants", _GRANT_COLUMNS)


def _filters(pairs: list[tuple[str, tuple[str, ...]]], clauses: list[str], params: list[Any]) -> None:
    """Add `column IN (...)` for every non-empty value tuple."""
    for column, values in pairs:
        if values:
            clauses.append(in_list(column, values))
            params.extend(values)


async def _page(conn: asyncpg.Pool, table: str, where: str, params: list[Any], order: str, limit: int, offset: int,
                count: bool) -> tuple[list[Doc], int | None]:
    total = int(await conn.fetchval(numbered(f"SELECT count(*) FROM {table} WHERE {where}"), *params)) if count else None
    rows = await conn.fetch(numbered(f"SELECT doc FROM {table} WHERE {where} ORDER BY {order} LIMIT ? OFFSET ?"),
                            *params, limit, offset)
    return [r[0] for r in rows], total


# -- audit ------------------------------------------------------------------------------------------
async def insert_audit(conn: asyncpg.Connection, rows: list[AuditRow]) -> None:
    if rows:
        await conn.executemany(
            f"INSERT INTO ops_audit ({_AUDIT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            [(r.tenant, r.at, r.kind, r.action, r.actor, r.agency_id, r.event_id, r.grant_id, r.camera_id, r.outcome,
              r.doc) for r in rows])


def _audit_where(tenant: str, query: AuditQuery) -> tuple[str, list[Any]]:
    clauses: list[str] = ["tenant = ?"]
    params: list[Any] = [tenant]
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


async def audit_page(pool: asyncpg.Pool, tenant: str, query: AuditQuery) -> tuple[list[Doc], int | None]:
    where, params = _audit_where(tenant, query)
    total = int(await pool.fetchval(numbered(f"SELECT count(*) FROM ops_audit WHERE {where}"), *params)) \
        if query.count else None
    order = "DESC" if query.newest_first else "ASC"
    rows = await pool.fetch(numbered(
        f"SELECT seq, at, kind, action, actor, agency_id, event_id, grant_id, camera_id, outcome, doc FROM ops_audit "
        f"WHERE {where} ORDER BY seq {order} LIMIT ? OFFSET ?"), *params, query.limit, query.offset)
    return [_audit_doc(tuple(row)) for row in rows], total


def _audit_doc(row: tuple[Any, ...]) -> Doc:
    seq, at, kind, action, actor, agency, event, grant, camera, outcome, doc = row
    return {**doc, "seq": seq, "at": to_iso(from_micros(at)), "kind": kind, "action": action,
            "actor": actor, "agency": agency, "event": event, "grant": grant, "camera": camera, "outcome": outcome}


async def audit_counts(pool: asyncpg.Pool, tenant: str, query: AuditQuery) -> list[tuple[str, str, str, int]]:
    where, params = _audit_where(tenant, query)
    return [(str(a or ""), str(act), str(o or ""), int(n)) for a, act, o, n in await pool.fetch(numbered(
        f"SELECT agency_id, action, outcome, count(*) FROM ops_audit WHERE {where} "
        "GROUP BY agency_id, action, outcome ORDER BY agency_id, action, outcome"), *params)]


# -- events -----------------------------------------------------------------------------------------
async def save_event(conn: asyncpg.Connection, row: OpsEventRow, audit: list[AuditRow]) -> None:
    lon, lat = row.point if row.point is not None else (None, None)
    await conn.execute(_EVENT_UPSERT, row.tenant, row.id, row.service, row.type_code, row.level, row.status,
                       row.source_system, row.source_ref, row.occurred_at, row.reported_at, row.updated_at, lon, lat,
                       list(row.agencies), row.doc)
    await insert_audit(conn, audit)


async def event_page(pool: asyncpg.Pool, tenant: str, query: OpsEventQuery) -> tuple[list[Doc], int | None]:
    clauses: list[str] = ["tenant = ?"]
    params: list[Any] = [tenant]
    _filters([("service", query.services), ("status", query.statuses), ("level", query.levels),
              ("type_code", query.type_codes)], clauses, params)
    for column, value in (("source_system", query.source_system), ("source_ref", query.source_ref)):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    if query.agency is not None:
        clauses.append("agencies @> ARRAY[?::text]")
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
    return await _page(pool, "ops_events", " AND ".join(clauses), params, "reported_at DESC, id", query.limit,
                       query.offset, query.count)


# -- grants -----------------------------------------------------------------------------------------
# A conditional write of a grant (optimistic concurrency, base.Store.save_grant): the version is the document's
# `version`, 0 for documents written before it existed (no migration). The UPDATE takes the row lock, so of two
# processes' writes of one version only the first matches.
_GRANT_UPDATE_IF = ("UPDATE ops_grants SET agency_id = $3, event_id = $4, status = $5, issued_at = $6, "
                    "expires_at = $7, updated_at = $8, doc = $9 WHERE tenant = $1 AND id = $2 "
                    "AND coalesce((doc->>'version')::bigint, 0) = $10")


async def save_grant(conn: asyncpg.Connection, row: GrantRow, audit: list[AuditRow],
                     expected_version: int | None = None) -> bool:
    values = (row.tenant, row.id, row.agency_id, row.event_id, row.status, row.issued_at, row.expires_at,
              row.updated_at, row.doc)
    if expected_version is None:
        await conn.execute(_GRANT_UPSERT, *values)
    elif row_count(await conn.execute(_GRANT_UPDATE_IF, *values, expected_version)) != 1:
        return False  # changed (or deleted) since it was read: nothing written, no audit line
    await insert_audit(conn, audit)
    return True


async def grant_page(pool: asyncpg.Pool, tenant: str, query: GrantQuery) -> tuple[list[Doc], int | None]:
    clauses: list[str] = ["tenant = ?"]
    params: list[Any] = [tenant]
    _filters([("agency_id", query.agency_ids), ("event_id", query.event_ids), ("status", query.statuses)],
             clauses, params)
    if query.valid_at is not None:
        clauses.append("status = 'active' AND expires_at > ?")
        params.append(query.valid_at)
    if query.expired_at is not None:
        clauses.append("status = 'active' AND expires_at <= ?")
        params.append(query.expired_at)
    return await _page(pool, "ops_grants", " AND ".join(clauses), params, "issued_at DESC, id", query.limit,
                       query.offset, query.count)


async def live_grant_tenants(pool: asyncpg.Pool, valid_at: int) -> list[str]:
    rows = await pool.fetch("SELECT DISTINCT tenant FROM ops_grants WHERE status = 'active' AND expires_at > $1 "
                            "ORDER BY tenant", valid_at)
    return [str(r[0]) for r in rows]


async def get_doc(pool: asyncpg.Pool, table: str, tenant: str, key: str) -> Doc | None:
    """The document of one event or grant (`table` is one of ucity's own table names, never input)."""
    doc: Doc | None = await pool.fetchval(f"SELECT doc FROM {table} WHERE tenant = $1 AND id = $2", tenant, key)
    return doc


# -- retention (ucity/store/retention.py) -------------------------------------------------------------


# The lines a purge may take: past the cutoff, not the newest, and not of an event still open (not closed or
# cancelled), as on SQLite (sqlite_ops._PURGEABLE_AUDIT): an open event's trail and live grants stay.
_PURGEABLE_AUDIT = ("a.tenant = $1 AND a.at < $2 AND a.seq < $3 AND NOT EXISTS (SELECT 1 FROM ops_events e "
                    "WHERE e.tenant = a.tenant AND e.id = a.event_id AND e.status NOT IN ('closed', 'cancelled'))")


async def purge_audit(conn: asyncpg.Connection | asyncpg.Pool, before: int, limit: int, dry_run: bool,
                      counts: TenantCounts | None = None) -> int:
    """Delete at most `limit` lines recorded before `before`, tenant by tenant through (tenant, at); never the
    newest line (as on SQLite, where numbering would start again), nor a line of an event not closed or cancelled.
    The trigger of migration 3 lets a line go only while `ucity.audit_purge_before` is set, for this transaction
    only. `counts`: each tenant's deletions are added to it."""
    newest = await conn.fetchval("SELECT max(seq) FROM ops_audit")
    if newest is None:
        return 0
    tenants = [r[0] for r in await conn.fetch(AUDIT_TENANTS)]
    if dry_run:
        return sum([int(await conn.fetchval(
            f"SELECT count(*) FROM ops_audit a WHERE {_PURGEABLE_AUDIT}", t, before, newest)) for t in tenants])
    deleted = 0
    await conn.execute("SELECT set_config('ucity.audit_purge_before', $1, true)", str(before))
    for tenant in tenants:
        if deleted >= limit:
            break
        gone = row_count(await conn.execute(
            f"DELETE FROM ops_audit WHERE seq IN (SELECT a.seq FROM ops_audit a WHERE {_PURGEABLE_AUDIT} LIMIT $4)",
            tenant, before, newest, limit - deleted))
        deleted += gone
        if gone:
            add_counts(counts, {tenant: [gone, 0]})
    # (A failed DELETE aborts the transaction, which takes the setting with it.)
    await conn.execute("SELECT set_config('ucity.audit_purge_before', '', true)")
    return deleted


_FINAL_EVENTS = "status IN ('closed', 'cancelled') AND updated_at < $1"  # as the partial index ops_events_final


async def purge_events(conn: asyncpg.Connection | asyncpg.Pool, before: int, limit: int,
                       dry_run: bool, counts: TenantCounts | None = None) -> tuple[int, int]:
    """Delete at most `limit` closed or cancelled events last changed before `before`, with their grants."""
    return await purge_closed(conn, ("ops_events", _FINAL_EVENTS), ("ops_grants", "event_id"), before, limit, dry_run,
                              counts)


async def purge_closed(conn: asyncpg.Connection | asyncpg.Pool, records: tuple[str, str], related: tuple[str, str],
                       before: int, limit: int, dry_run: bool, counts: TenantCounts | None = None) -> tuple[int, int]:
    """Delete at most `limit` rows of `records` (table, condition on `before` as $1) with the rows of `related`
    (table, column naming the record's id, same tenant); (records, related rows) deleted, or counted in a dry run.
    The tables and conditions are ucity's own, never input. `counts`: each tenant's deletions are added to it."""
    (table, where), (child, key) = records, related
    if dry_run:
        row = await conn.fetchrow(
            f"SELECT count(*), coalesce(sum((SELECT count(*) FROM {child} c WHERE c.tenant = r.tenant AND "
            f"c.{key} = r.id)), 0) FROM {table} r WHERE {where}", before)
        return int(row[0]), int(row[1])
    keys = await conn.fetch(f"SELECT tenant, id FROM {table} WHERE {where} LIMIT $2", before, limit)
    if not keys:
        return 0, 0
    tenants, ids = [k[0] for k in keys], [k[1] for k in keys]
    mine: TenantCounts = {}
    # Each statement counts its deletions per tenant itself (one row back per tenant, not one per deleted row).
    deleting = ("WITH gone AS (DELETE FROM {0} x USING unnest($1::text[], $2::text[]) AS k(t, i) WHERE x.tenant = k.t "
                "AND x.{1} = k.i RETURNING x.tenant) SELECT tenant, count(*) FROM gone GROUP BY tenant")
    for column, (rows_of, id_column) in ((1, (child, key)), (0, (table, "id"))):  # the related rows first
        for tenant, gone in await conn.fetch(deleting.format(rows_of, id_column), tenants, ids):
            mine.setdefault(str(tenant), [0, 0])[column] += int(gone)
    add_counts(counts, mine)
    return sum(c[0] for c in mine.values()), sum(c[1] for c in mine.values())
