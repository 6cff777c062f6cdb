"""Schema migrations of the PostgreSQL store, applied in order by `ucity migrate` and on start.

Each migration is (version, statements). A migration never changes once released: add a new one.
The logical model is the SQLite one (docs/storage.md); what differs:

* documents are `jsonb`; entity types are also a `text[]` column (GIN: `types @> '{T}'`);
* GeoProperty values are PostGIS geometries (SRID 4326) in `geo`, with a GiST index on the
  geometry (within/contains/intersects/...) and one on its geography (`near`, in metres);
* the attribute names of a document have a GIN index that answers "has attribute X" for `q` and `attrs`;
* history (`instances`) is range-partitioned by month on `ts` (µs since the epoch); the store
  creates a month's partition when it first writes into it;
* an observed attribute instance is unique per series (entity, attribute, datasetId) and
  observedAt, so a redelivered observation replaces itself instead of adding a row;
* texts that are keys or sort orders use `COLLATE "C"`: code point order, as in SQLite, whatever
  the database's locale.
"""

from __future__ import annotations

from ucity.ngsild.qpg import PG_FUNCTIONS

C = 'COLLATE "C"'

MIGRATIONS: list[tuple[int, list[str]]] = [
    (
        1,
        [
            "CREATE EXTENSION IF NOT EXISTS postgis",
            *PG_FUNCTIONS,
            f"CREATE TABLE tenants (tenant text {C} PRIMARY KEY)",
            f"""CREATE TABLE entities (
                eid bigserial PRIMARY KEY,
                tenant text {C} NOT NULL,
                id text {C} NOT NULL,
                types text[] {C} NOT NULL,
                doc jsonb NOT NULL,
                created_at text {C} NOT NULL,
                modified_at text {C} NOT NULL,
                UNIQUE (tenant, id)
            )""",
            "CREATE INDEX entities_modified ON entities (tenant, modified_at)",
            "CREATE INDEX entities_types ON entities USING gin (types)",
            # The attribute names only (not every value, as a GIN on the document would): `q` and `attrs`
            # ask "has attribute X", and a small index keeps entity updates cheap.
            "CREATE INDEX entities_attr_names ON entities USING gin (ucity_attr_names(doc))",
            f"""CREATE TABLE geo (
                eid bigint NOT NULL REFERENCES entities (eid) ON DELETE CASCADE,
                tenant text {C} NOT NULL,
                attr text {C} NOT NULL,
                geom geometry(Geometry, 4326) NOT NULL
            )""",
            "CREATE INDEX geo_eid ON geo (eid)",
            "CREATE INDEX geo_geom ON geo USING gist (geom)",
            "CREATE INDEX geo_geog ON geo USING gist ((geom::geography))",
            f"""CREATE TABLE temporal_entities (
                tenant text {C} NOT NULL,
                id text {C} NOT NULL,
                types text[] {C} NOT NULL,
                PRIMARY KEY (tenant, id)
            )""",
            "CREATE INDEX temporal_entities_types ON temporal_entities USING gin (types)",
            f"""CREATE TABLE series (
                sid bigserial PRIMARY KEY,
                tenant text {C} NOT NULL,
                entity_id text {C} NOT NULL,
                attr text {C} NOT NULL,
                dataset_id text {C} NOT NULL DEFAULT '',
                UNIQUE (tenant, entity_id, attr, dataset_id)
            )""",
            "CREATE SEQUENCE instances_iid",
            # iid orders instances of equal time by insertion, like SQLite's rowid.
            # No foreign key to series: a check per row costs a fifth of the insert. A process that
            # caches series ids learns of deleted series from meta.series_epoch instead.
            """CREATE TABLE instances (
                sid bigint NOT NULL,
                ts bigint NOT NULL,
                created bigint NOT NULL,
                iid bigint NOT NULL DEFAULT nextval('instances_iid'),
                instance_id text NOT NULL,
                observed boolean NOT NULL,
                vnum double precision,
                doc jsonb NOT NULL
            ) PARTITION BY RANGE (ts)""",
            # Rows the store did not route to a month (a bulk COPY from outside): kept, and moved into
            # their month's partition when the store creates it.
            "CREATE TABLE instances_default PARTITION OF instances DEFAULT",
            "CREATE INDEX instances_series_ts ON instances (sid, ts) INCLUDE (vnum, created, iid)",
            "CREATE UNIQUE INDEX instances_observed ON instances (sid, ts) WHERE observed",
            f"""CREATE TABLE docs (
                kind text {C} NOT NULL,
                tenant text {C} NOT NULL,
                key text {C} NOT NULL,
                doc jsonb NOT NULL,
                PRIMARY KEY (kind, tenant, key)
            )""",
            # Alarms (ucity/alarms): the SQLite columns, so that the alarm SQL is shared.
            f"""CREATE TABLE alarms (
                tenant text {C} NOT NULL,
                id text {C} NOT NULL,
                entity_id text {C} NOT NULL,
                entity_type text {C} NOT NULL DEFAULT '',
                rule_id text {C} NOT NULL,
                kind text {C} NOT NULL,
                level text {C},
                status text {C} NOT NULL,
                active integer NOT NULL,
                derived integer NOT NULL DEFAULT 0,
                parent_id text {C},
                outcome text {C},
                assignee text {C},
                raised_at bigint NOT NULL,
                updated_at bigint NOT NULL,
                acked_at bigint,
                cleared_at bigint,
                closed_at bigint,
                minx double precision, miny double precision, maxx double precision, maxy double precision,
                doc jsonb NOT NULL,
                PRIMARY KEY (tenant, id)
            )""",
            "CREATE INDEX alarms_raised ON alarms (tenant, raised_at)",
            "CREATE INDEX alarms_key ON alarms (tenant, entity_id, rule_id, active)",
            "CREATE INDEX alarms_not_closed ON alarms (status) WHERE status <> 'closed'",
            f"""CREATE TABLE alarm_history (
                tenant text {C} NOT NULL,
                alarm_id text {C} NOT NULL,
                seq integer NOT NULL,
                at bigint NOT NULL,
                action text NOT NULL,
                actor text NOT NULL,
                doc jsonb NOT NULL,
                PRIMARY KEY (tenant, alarm_id, seq)
            )""",
            "INSERT INTO meta VALUES ('series_epoch', '0') ON CONFLICT (key) DO NOTHING",
        ],
    ),
    (
        2,
        [
            # The operations centre (ucity/ops, SQL in ucity/store/postgres_ops.py): SQLite's migration 4.
            f"""CREATE TABLE ops_events (
                tenant text {C} NOT NULL,
                id text {C} NOT NULL,
                service text {C} NOT NULL,
                type_code text {C} NOT NULL,
                level text {C} NOT NULL,
                status text {C} NOT NULL,
                source_system text {C} NOT NULL DEFAULT '',
                source_ref text {C} NOT NULL DEFAULT '',
                occurred_at bigint NOT NULL,
                reported_at bigint NOT NULL,
                updated_at bigint NOT NULL,
                lon double precision,
                lat double precision,
                agencies text[] {C} NOT NULL DEFAULT '{{}}',
                doc jsonb NOT NULL,
                PRIMARY KEY (tenant, id)
            )""",
            "CREATE INDEX ops_events_reported ON ops_events (tenant, reported_at)",
            "CREATE INDEX ops_events_source ON ops_events (tenant, source_system, source_ref)",
            "CREATE INDEX ops_events_agencies ON ops_events USING gin (agencies)",
            f"""CREATE TABLE ops_grants (
                tenant text {C} NOT NULL,
                id text {C} NOT NULL,
                agency_id text {C} NOT NULL,
                event_id text {C} NOT NULL,
                status text {C} NOT NULL,
                issued_at bigint NOT NULL,
                expires_at bigint NOT NULL,
                updated_at bigint NOT NULL,
                doc jsonb NOT NULL,
                PRIMARY KEY (tenant, id)
            )""",
            "CREATE INDEX ops_grants_agency ON ops_grants (tenant, agency_id, issued_at)",
            "CREATE INDEX ops_grants_event ON ops_grants (tenant, event_id)",
            f"""CREATE TABLE ops_audit (
                seq bigserial PRIMARY KEY,
                tenant text {C} NOT NULL,
                at bigint NOT NULL,
                kind text {C} NOT NULL,
                action text {C} NOT NULL,
                actor text NOT NULL,
                agency_id text {C},
                event_id text {C},
                grant_id text {C},
                camera_id text {C},
                outcome text {C},
                doc jsonb NOT NULL
            )""",
            "CREATE INDEX ops_audit_time ON ops_audit (tenant, at)",
            "CREATE INDEX ops_audit_event ON ops_audit (tenant, event_id, seq)",
            "CREATE INDEX ops_audit_grant ON ops_audit (tenant, grant_id, seq)",
            "CREATE INDEX ops_audit_agency ON ops_audit (tenant, agency_id, at)",
            # Append-only in the database too: not even a bug in ucity (or a console) rewrites it unnoticed.
            """CREATE FUNCTION ops_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN RAISE EXCEPTION 'ops_audit is append-only'; END $$""",
            """CREATE TRIGGER ops_audit_no_change BEFORE UPDATE OR DELETE OR TRUNCATE ON ops_audit
               FOR EACH STATEMENT EXECUTE FUNCTION ops_audit_append_only()""",
        ],
    ),
    (
        3,
        [
            # Retention (ucity/store/retention.py), SQLite's migration 7. Updates and TRUNCATE stay refused; a row
            # may be deleted only when older than the cutoff the purge sets for its own transaction
            # (set_config(..., true)), so any other DELETE is still refused.
            "DROP TRIGGER ops_audit_no_change ON ops_audit",
            """CREATE TRIGGER ops_audit_no_change BEFORE UPDATE OR TRUNCATE ON ops_audit
               FOR EACH STATEMENT EXECUTE FUNCTION ops_audit_append_only()""",
            """CREATE FUNCTION ops_audit_purge_only() RETURNS trigger LANGUAGE plpgsql AS $$
               DECLARE cutoff text := coalesce(current_setting('ucity.audit_purge_before', true), '');
               BEGIN
                 IF cutoff <> '' AND old.at < cutoff::bigint THEN RETURN old; END IF;
                 RAISE EXCEPTION 'ops_audit is append-only (retention deletes only lines past its cutoff)';
               END $$""",
            """CREATE TRIGGER ops_audit_no_delete BEFORE DELETE ON ops_audit
               FOR EACH ROW EXECUTE FUNCTION ops_audit_purge_only()""",
            "CREATE INDEX ops_events_final ON ops_events (updated_at) WHERE status IN ('closed', 'cancelled')",
            "CREATE INDEX alarms_closed ON alarms (closed_at) WHERE status = 'closed'",
        ],
    ),
]
