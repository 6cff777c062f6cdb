"""Schema migrations of the SQLite store, applied in order by `ucity migrate` and on start.

Each migration is (version, statements). A migration never changes once released: add a new one.
"""

from __future__ import annotations

MIGRATIONS: list[tuple[int, list[str]]] = [
    (
        1,
        [
            """CREATE TABLE entities (
                eid INTEGER PRIMARY KEY,
                tenant TEXT NOT NULL,
                id TEXT NOT NULL,
                doc TEXT NOT NULL,
                created_at TEXT NOT NULL,
                modified_at TEXT NOT NULL,
                UNIQUE (tenant, id)
            )""",
            "CREATE INDEX entities_modified ON entities (tenant, modified_at)",
            """CREATE TABLE entity_types (
                eid INTEGER NOT NULL,
                tenant TEXT NOT NULL,
                type TEXT NOT NULL,
                PRIMARY KEY (tenant, type, eid)
            ) WITHOUT ROWID""",
            "CREATE INDEX entity_types_eid ON entity_types (eid)",
            "CREATE VIRTUAL TABLE geo_rtree USING rtree(gid, minx, maxx, miny, maxy)",
            """CREATE TABLE geo_meta (
                gid INTEGER PRIMARY KEY,
                eid INTEGER NOT NULL,
                tenant TEXT NOT NULL,
                attr TEXT NOT NULL,
                geojson TEXT NOT NULL
            )""",
            "CREATE INDEX geo_meta_eid ON geo_meta (eid)",
            """CREATE TABLE temporal_entities (
                tenant TEXT NOT NULL,
                id TEXT NOT NULL,
                types TEXT NOT NULL,
                PRIMARY KEY (tenant, id)
            ) WITHOUT ROWID""",
            """CREATE TABLE series (
                sid INTEGER PRIMARY KEY,
                tenant TEXT NOT NULL,
                entity_id TEXT NOT NULL,
                attr TEXT NOT NULL,
                dataset_id TEXT NOT NULL DEFAULT '',
                UNIQUE (tenant, entity_id, attr, dataset_id)
            )""",
            """CREATE TABLE instances (
                sid INTEGER NOT NULL,
                ts INTEGER NOT NULL,
                created INTEGER NOT NULL,
                instance_id TEXT NOT NULL,
                vnum REAL,
                doc TEXT NOT NULL
            )""",
            "CREATE INDEX instances_series_ts ON instances (sid, ts)",
            "CREATE INDEX instances_instance_id ON instances (instance_id)",
            """CREATE TABLE docs (
                kind TEXT NOT NULL,
                tenant TEXT NOT NULL,
                key TEXT NOT NULL,
                doc TEXT NOT NULL,
                PRIMARY KEY (kind, tenant, key)
            ) WITHOUT ROWID""",
            "CREATE TABLE tenants (tenant TEXT PRIMARY KEY) WITHOUT ROWID",
        ],
    ),
    (
        2,
        [
            # Temporal aggregation reads only (sid, time, vnum): a covering index spares it the
            # table rows (which carry the JSON documents), about halving an aggregate's time.
            "CREATE INDEX instances_series_ts_vnum ON instances (sid, ts, vnum, created)",
            "DROP INDEX instances_series_ts",
            # Booleans aggregate as 1 / 0 (sum = number of true values) from the vnum column.
            "UPDATE instances SET vnum = 1.0 WHERE vnum IS NULL AND json_type(doc, '$.value') = 'true'",
            "UPDATE instances SET vnum = 0.0 WHERE vnum IS NULL AND json_type(doc, '$.value') = 'false'",
        ],
    ),
    (
        3,
        [
            # Alarms (ucity/alarms): indexed columns for filtering and statistics in SQL, plus the
            # whole document. "One active alarm per (tenant, entity, rule)" is enforced by the alarm
            # service, which owns every alarm write; a unique index would reject the legitimate
            # case of a clear and the next raise being committed in the other order.
            """CREATE TABLE alarms (
                tenant TEXT NOT NULL,
                id TEXT NOT NULL,
                entity_id TEXT NOT NULL,
                entity_type TEXT NOT NULL DEFAULT '',
                rule_id TEXT NOT NULL,
                kind TEXT NOT NULL,
                level TEXT,
                status TEXT NOT NULL,
                active INTEGER NOT NULL,
                derived INTEGER NOT NULL DEFAULT 0,
                parent_id TEXT,
                outcome TEXT,
                assignee TEXT,
                raised_at INTEGER NOT NULL,
                updated_at INTEGER NOT NULL,
                acked_at INTEGER,
                cleared_at INTEGER,
                closed_at INTEGER,
                minx REAL, miny REAL, maxx REAL, maxy REAL,
                doc TEXT NOT NULL,
                PRIMARY KEY (tenant, id)
            ) WITHOUT ROWID""",
            "CREATE INDEX alarms_raised ON alarms (tenant, raised_at)",
            "CREATE INDEX alarms_key ON alarms (tenant, entity_id, rule_id, active)",
            "CREATE INDEX alarms_not_closed ON alarms (status) WHERE status <> 'closed'",
            """CREATE TABLE alarm_history (
                tenant TEXT NOT NULL,
                alarm_id TEXT NOT NULL,
                seq INTEGER NOT NULL,
                at INTEGER NOT NULL,
                action TEXT NOT NULL,
                actor TEXT NOT NULL,
                doc TEXT NOT NULL,
                PRIMARY KEY (tenant, alarm_id, seq)
            ) WITHOUT ROWID""",
        ],
    ),
    (
        4,
        [
            # The operations centre (ucity/ops): events, footage grants and their audit log.
            """CREATE TABLE ops_events (
                tenant TEXT NOT NULL,
                id TEXT NOT NULL,
                service TEXT NOT NULL,
                type_code TEXT NOT NULL,
                level TEXT NOT NULL,
                status TEXT NOT NULL,
                source_system TEXT NOT NULL DEFAULT '',
                source_ref TEXT NOT NULL DEFAULT '',
                occurred_at INTEGER NOT NULL,
                reported_at INTEGER NOT NULL,
                updated_at INTEGER NOT NULL,
                lon REAL,
                lat REAL,
                agencies TEXT NOT NULL DEFAULT '[]',
                doc TEXT NOT NULL,
                PRIMARY KEY (tenant, id)
            ) WITHOUT ROWID""",
            "CREATE INDEX ops_events_reported ON ops_events (tenant, reported_at)",
            "CREATE INDEX ops_events_source ON ops_events (tenant, source_system, source_ref)",
            """CREATE TABLE ops_grants (
                tenant TEXT NOT NULL,
                id TEXT NOT NULL,
                agency_id TEXT NOT NULL,
                event_id TEXT NOT NULL,
                status TEXT NOT NULL,
                issued_at INTEGER NOT NULL,
                expires_at INTEGER NOT NULL,
                updated_at INTEGER NOT NULL,
                doc TEXT NOT NULL,
                PRIMARY KEY (tenant, id)
            ) WITHOUT ROWID""",
            "CREATE INDEX ops_grants_agency ON ops_grants (tenant, agency_id, issued_at)",
            "CREATE INDEX ops_grants_event ON ops_grants (tenant, event_id)",
            # The audit log is append-only in the database too: the triggers refuse any UPDATE or DELETE,
            # so not even a bug in ucity (or an SQL console on the live file) rewrites it unnoticed.
            """CREATE TABLE ops_audit (
                seq INTEGER PRIMARY KEY,
                tenant TEXT NOT NULL,
                at INTEGER NOT NULL,
                kind TEXT NOT NULL,
                action TEXT NOT NULL,
                actor TEXT NOT NULL,
                agency_id TEXT,
                event_id TEXT,
                grant_id TEXT,
                camera_id TEXT,
                outcome TEXT,
                doc TEXT NOT NULL
            )""",
            "CREATE INDEX ops_audit_time ON ops_audit (tenant, at)",
            "CREATE INDEX ops_audit_event ON ops_audit (tenant, event_id, seq)",
            "CREATE INDEX ops_audit_grant ON ops_audit (tenant, grant_id, seq)",
            "CREATE INDEX ops_audit_agency ON ops_audit (tenant, agency_id, at)",
            """CREATE TRIGGER ops_audit_no_update BEFORE UPDATE ON ops_audit
               BEGIN SELECT RAISE(ABORT, 'ops_audit is append-only'); END""",
            """CREATE TRIGGER ops_audit_no_delete BEFORE DELETE ON ops_audit
               BEGIN SELECT RAISE(ABORT, 'ops_audit is append-only'); END""",
        ],
    ),
    (
        5,
        [
            # Idempotent history (issue 7): an observed attribute instance is unique per series (entity,
            # attribute, datasetId) and observedAt, so a redelivered observation replaces itself (INSERT OR
            # REPLACE) instead of adding a row. `observed` spares the index a JSON parse per insert.
            "ALTER TABLE instances ADD COLUMN observed INTEGER NOT NULL DEFAULT 0",
            "UPDATE instances SET observed = 1 WHERE json_extract(doc, '$.observedAt') IS NOT NULL",
            "DELETE FROM instances WHERE observed = 1 AND rowid NOT IN "
            "(SELECT max(rowid) FROM instances WHERE observed = 1 GROUP BY sid, ts)",
            "CREATE UNIQUE INDEX instances_observed ON instances (sid, ts) WHERE observed = 1",
        ],
    ),
    (
        6,
        [
            # History in two tables (issue 9). Each instance used to cost five b-tree inserts: the rowid
            # table, a random-UUID index on instance_id, the covering (sid, ts, vnum, created) index and
            # the unique (sid, ts) index of observed instances. Now it costs two: `instance_docs`,
            # appended in recording order (cheap: always the last page), and `instance_keys`, a
            # WITHOUT ROWID table that is at once the covering index aggregation reads and the unique
            # key of observed instances (seq 0; an instance without observedAt has seq = its rid).
            # A new instance's id is derived from its rid (urn:ngsi-ld:Instance:<rid>), so it needs no
            # stored text and no index; ids recorded before keep working through `instance_id`.
            """CREATE TABLE instance_docs (
                rid INTEGER PRIMARY KEY,
                sid INTEGER NOT NULL,
                ts INTEGER NOT NULL,
                instance_id TEXT,
                doc TEXT NOT NULL
            )""",
            """CREATE TABLE instance_keys (
                sid INTEGER NOT NULL,
                ts INTEGER NOT NULL,
                seq INTEGER NOT NULL,
                vnum REAL,
                created INTEGER NOT NULL,
                rid INTEGER NOT NULL,
                PRIMARY KEY (sid, ts, seq)
            ) WITHOUT ROWID""",
            "INSERT INTO instance_docs (rid, sid, ts, instance_id, doc) "
            "SELECT rowid, sid, ts, instance_id, doc FROM instances ORDER BY rowid",
            "INSERT INTO instance_keys (sid, ts, seq, vnum, created, rid) "
            "SELECT sid, ts, CASE WHEN observed = 1 THEN 0 ELSE rowid END, vnum, created, rowid FROM instances "
            "ORDER BY sid, ts, 3",
            "DROP TABLE instances",
            "CREATE INDEX instance_docs_instance_id ON instance_docs (instance_id) WHERE instance_id IS NOT NULL",
            # A key row owns its document: deleting the key (a history deletion) or pointing it at a new
            # document (a redelivered observation replacing itself) deletes the old document.
            """CREATE TRIGGER instance_keys_delete AFTER DELETE ON instance_keys
               BEGIN DELETE FROM instance_docs WHERE rid = old.rid; END""",
            """CREATE TRIGGER instance_keys_replace AFTER UPDATE OF rid ON instance_keys WHEN old.rid <> new.rid
               BEGIN DELETE FROM instance_docs WHERE rid = old.rid; END""",
            # The highest rid ever given: ids are never reused, even after the newest instances are deleted.
            "INSERT OR REPLACE INTO meta VALUES ('instance_rid', (SELECT coalesce(max(rid), 0) FROM instance_docs))",
        ],
    ),
    (
        7,
        [
            # Retention (ucity/store/retention.py). The audit log stays append-only, but lines older than the
            # retention cutoff may go: the purge writes the cutoff into `meta` in its own transaction, deletes,
            # and removes it again before the commit, so any other DELETE (a bug, a console) is still refused.
            "DROP TRIGGER ops_audit_no_delete",
            """CREATE TRIGGER ops_audit_no_delete BEFORE DELETE ON ops_audit
               WHEN old.at >= coalesce((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'audit_purge_before'),
                                       -9223372036854775808)
               BEGIN SELECT RAISE(ABORT, 'ops_audit is append-only (retention deletes only lines past its cutoff)'); END""",
            # The closed records a purge looks for, oldest first, without reading the open ones.
            "CREATE INDEX ops_events_final ON ops_events (updated_at) WHERE status IN ('closed', 'cancelled')",
            "CREATE INDEX alarms_closed ON alarms (closed_at) WHERE status = 'closed'",
        ],
    ),
]
