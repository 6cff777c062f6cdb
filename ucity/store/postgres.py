"""The production store: PostgreSQL + PostGIS through asyncpg, with group commit.

Same contract as the SQLite store (ucity/store/base.py), same logical model (docs/storage.md).
One writer task per process takes the queued writes and those that keep arriving (each within 0.2 ms of
the previous one, all within `group_commit_ms` of the first, up to `group_commit_max`; a write that
finds nothing else queued or arriving commits at once) and applies them in one transaction, on a
connection it keeps from batch to batch (when the next batch is already queued, its BEGIN goes with this
batch's COMMIT, one round trip):

1. advisory locks on every touched (tenant, entity id), in key order, then `SELECT ... FOR
   UPDATE` of the rows that exist: another process (an API process, other workers) writing the
   same entity, even one that does not exist yet, waits for this commit instead of racing it (the
   statement that takes the locks also reads the series epoch, `_check_epoch`);
2. the pure apply functions run in order on the locked documents, in memory, so ten mutations of
   one entity in a batch write it once;
3. entities, geometries, the history type index and the history instances go in as multi-row
   statements over `unnest` arrays (one statement per table, not one per row); the history rows as
   one JSON text instead (`_json_rows`: asyncpg's arrays cost a Python-level check per element);
4. alarm saves (rows of their own tables, read by nothing else in the batch) go in last, all the
   batch's in one `executemany` per table (one round trip each, not two per alarm);
5. commit; only then are the callers' futures resolved and the commit callbacks run, in order.

A deadlock with another process retries the whole batch: the apply functions are pure. Any other database failure
retries the items one at a time, so one bad item fails alone. Reads use the pool and never wait
for the writer. A read that cannot reach the database is `Unavailable` (503, `_reading`), and the store's health
is not ok from such a failure (of a read, a commit or `/health`'s own `probe`) until one reaches it again.

History is partitioned by month on the observation time; a month's partition is created by the
transaction that first writes into it (under an advisory lock, so processes never race on it).
An observed attribute instance is unique per (series, observedAt): writing it again replaces it,
which makes the redelivery of an observation idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import urlsplit

import asyncpg
import orjson

from ucity.core.bus import Context, EntityChange
from ucity.core.clock import Clock, SystemClock, iso_micros, parse_iso, parse_iso_clamped, to_iso, to_micros
from ucity.core.errors import BadRequest, UcityError, Unavailable, WriteRefused
from ucity.ngsild.qpg import compile_q_postgres
from ucity.store import postgres_ops as ops_sql
from ucity.store.base import (
    CALL,
    MOVABLE,
    MUTATION,
    PURGE_SERIES_WINDOW,
    URGENT,
    AggregatedEntity,
    AggregateSeries,
    Aggregation,
    AlarmQuery,
    AlarmRow,
    AlarmStats,
    AuditQuery,
    AuditRow,
    Doc,
    EntityQuery,
    GrantQuery,
    GrantRow,
    HistoryScope,
    HistorySeries,
    Mutation,
    OpsEventQuery,
    OpsEventRow,
    Outcome,
    Store,
    TemporalEntity,
    TemporalQuery,
    TenantCounts,
    TypeExpr,
    add_counts,
    member_name,
    urgent_first,
)
from ucity.store.migrations.postgres import MIGRATIONS
from ucity.store.sql import (
    ALARM_COLUMNS,
    VALUE_MEMBERS,
    alarm_ack_sql,
    alarm_count_sql,
    alarm_false_rate_sql,
    alarm_values,
    alarm_where,
    any_of_sql,
    combine,
    datasets,
    geo_attr_changed,
    geo_of,
    geo_parts,
    in_list,
    merge_instance,
    numbered,
    one_per_time,
    page,
    row_count,
    time_column,
    truncated,
    vnum,
    window,
)
from ucity.store.sqlite import new_instance_ids  # the hot path's id pool

log = logging.getLogger(__name__)

# Advisory lock keys of the schema (one process migrates at a time) and of history partitions.
MIGRATION_LOCK = 0x75C1_7900
PARTITION_LOCK = 0x75C1_7901
# Failures that say nothing about the batch itself: run it again from the start.
_RETRY = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)
_UNREACHABLE = (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError, asyncpg.CannotConnectNowError,
                asyncpg.ConnectionDoesNotExistError, asyncio.TimeoutError)
_BATCH_ATTEMPTS = 5


def _usable(conn: asyncpg.Connection) -> bool:
    """Whether the writer's kept connection can still be used. A connection lost while idle (the database
    restarted) is closed by asyncpg, which gives it back to the pool itself: the proxy kept is then detached,
    and every call on it, `is_closed()` included, raises InterfaceError (QA8 F2: the first write after a
    restart failed with 503 and marked the store unreachable)."""
    try:
        return not conn.is_closed()
    except asyncpg.InterfaceError:  # "connection has been released back to the pool"
        return False
# A read that fails with one of these failed because the database cannot be reached (stopped, restarting,
# the network): `Unavailable` (503, retry later), not an internal error, and the store's health says so.
# A fast shutdown ends the open sessions with 57P01 (AdminShutdownError) before connections are refused.
_READ_UNREACHABLE = (*_UNREACHABLE, asyncpg.AdminShutdownError, asyncpg.CrashShutdownError)
# The readiness probe of `/health` (`probe`): one `SELECT 1`, given up after this long. A probe that times out
# (every read connection busy, a slow network) says nothing about reachability: the health is left as it was.
PROBE_TIMEOUT_S = 0.5
_Read = TypeVar("_Read", bound=Callable[..., Awaitable[Any]])


def _reading(read: _Read) -> _Read:
    """A read of the store that answers `Unavailable` (503 ServiceUnavailable, Retry-After) when the database
    cannot be reached, instead of the driver's error (a 500 InternalError), and keeps the store's health in step
    with what reads find: unreachable after such a failure, reachable again after a read that worked."""

    @functools.wraps(read)
    async def reading(self: PostgresStore, *args: Any, **kwargs: Any) -> Any:
        try:
            result = await read(self, *args, **kwargs)
        except _READ_UNREACHABLE as exc:
            self._mark_unreachable(exc)
            raise Unavailable(f"the database cannot be reached: {type(exc).__name__}") from exc
        self._unreachable = None
        return result

    return reading  # type: ignore[return-value]


def _refused(exc: BaseException) -> bool:
    """Whether a failed write would fail the same way again: data PostgreSQL rejects (class 22 data exceptions,
    e.g. a NUL character in text; class 23 integrity constraints) or ucity's own failure on it (not a database,
    driver or connection error at all). Anything else (connection, resources, operator intervention, ...) may
    pass: the write is `Unavailable`, to be sent again."""
    if isinstance(exc, asyncpg.DataError | asyncpg.IntegrityConstraintViolationError):
        return True
    if isinstance(exc, (Unavailable, *_UNREACHABLE)):
        return False
    # Any other error of the driver (the server's, or the client's own, e.g. a connection left mid-operation
    # when it was lost: InternalClientError) is the database's or the connection's, not the write's.
    return not type(exc).__module__.startswith("asyncpg")
# A batch waits for more writes only while they keep coming: each within this of the previous one (and all
# within `group_commit_ms` of the first), as in the SQLite store. On the event loop a wait this short lasts
# one pass of the loop (uvloop's timers count whole milliseconds, so it fires on the next pass, after the
# I/O poll) or, on asyncio's own loop, up to 1 ms when nothing else is ready (epoll's resolution).
IDLE_GAP_S = 0.0002
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The series ids of the keys $1..$4 (tenant, entity id, attribute, dataset id), creating the missing series, in one
# round trip (`_series_ids`). The existing series are looked up key by key (LIMIT 1 keeps the lateral subquery a
# nested loop over the unique index: as a plain join of the unnest, the planner hash-joined a sequential scan of
# the whole table, 10 ms at 17,000 series, to every batch of new devices, and after a restart to every first
# measure of a device), and share-locked (FOR SHARE: a concurrent delete of the series waits for this commit); the
# others are inserted, their ids returned (the CTEs share one snapshot: `old` does not see `ins`'s rows).
_SERIES_IDS = (
    "WITH u AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS u(t, e, a, d)), "
    "old AS (SELECT s.sid, u.t, u.e, u.a, u.d FROM u CROSS JOIN LATERAL (SELECT s.sid FROM series s "
    "WHERE s.tenant = u.t AND s.entity_id = u.e AND s.attr = u.a AND s.dataset_id = u.d LIMIT 1 FOR SHARE) s), "
    "ins AS (INSERT INTO series (tenant, entity_id, attr, dataset_id) SELECT t, e, a, d FROM u WHERE NOT EXISTS "
    "(SELECT FROM old WHERE old.t = u.t AND old.e = u.e AND old.a = u.a AND old.d = u.d) ON CONFLICT DO NOTHING "
    "RETURNING sid, tenant, entity_id, attr, dataset_id) "
    "SELECT sid, t, e, a, d FROM old UNION ALL SELECT sid, tenant, entity_id, attr, dataset_id FROM ins")
_SERIES_PASSES = 5


# -- connections and schema --------------------------------------------------------------------------------
def _settle(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _encode_jsonb(value: Any) -> bytes:
    try:
        text = orjson.dumps(value)
    except orjson.JSONEncodeError:  # integers beyond 64 bits: the standard library writes them exactly
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
    return b"\x01" + text  # jsonb's binary format: a version byte, then the text


def _decode_jsonb(data: bytes) -> Any:
    return orjson.loads(data[1:])


def _json_rows(rows: list[Any]) -> str:
    """Many rows as one JSON text, for `jsonb_array_elements($1::text::jsonb)`: one orjson call for a
    whole statement. asyncpg's array parameters cost a Python-level check per element (and a codec call
    per jsonb one), a quarter of the writer's time. The database parses the text as it parsed each
    jsonb parameter's, so documents are stored identically. Used for history rows only: the entity
    documents' UPDATE through it cost the server more CPU (~7 µs per observation) than it saved here."""
    try:
        return orjson.dumps(rows).decode()
    except orjson.JSONEncodeError:  # an integer beyond 64 bits: each value alone, as `_encode_jsonb` writes it
        return "[" + ",".join("[" + ",".join(_encode_jsonb(v)[1:].decode() for v in row) + "]" for row in rows) + "]"


def _float_json(value: float) -> float | str:
    """A float8 column's value in `_json_rows`: a JSON number goes through `numeric`, which has no
    -0, NaN or infinities (orjson would write null for the latter), so those travel as float8's text."""
    if value - value or not value:  # NaN, ±infinity, ±0
        return repr(value).replace("inf", "Infinity").replace("nan", "NaN")
    return value


async def init_connection(conn: asyncpg.Connection) -> None:
    """jsonb as Python objects (orjson) on every connection."""
    await conn.set_type_codec("jsonb", encoder=_encode_jsonb, decoder=_decode_jsonb, schema="pg_catalog",
                              format="binary")


async def migrate_connection(conn: asyncpg.Connection) -> int:
    """Apply pending migrations (one process at a time); return the schema version."""
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS meta (key text PRIMARY KEY, value text NOT NULL)")
        found = await conn.fetchval("SELECT value FROM meta WHERE key = 'schema_version'")
        version = int(found) if found else 0
        for number, statements in MIGRATIONS:
            if number <= version:
                continue
            async with conn.transaction():
                for statement in statements:
                    await conn.execute(statement)
                await conn.execute("INSERT INTO meta VALUES ('schema_version', $1) "
                                   "ON CONFLICT (key) DO UPDATE SET value = excluded.value", str(number))
            version = number
        return version
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)


async def migrate_dsn(dsn: str) -> int:
    """`ucity migrate` for a PostgreSQL URL."""
    conn = await asyncpg.connect(dsn)
    try:
        return await migrate_connection(conn)
    finally:
        await conn.close()


def safe_location(url: str) -> str:
    """host:port/database of a URL, without credentials (for health and logs)."""
    parts = urlsplit(url)
    return f"{parts.hostname or ''}:{parts.port or 5432}{parts.path}"


def _geo_changed(stored: Doc | None, doc: Doc) -> bool:
    """Whether a document's geometries (`geo_parts`) differ from its stored version's. Attributes whose
    instance list is the stored one's own object (mutations copy on write: an update of a few attributes
    keeps the others' lists) are skipped, so that a reading's update does not look at the location.

    Geometries are compared as values, not as GeoJSON texts (as SQLite's `_geo_changed` does): values
    that are equal give the same geometry (1 and 1.0 are one coordinate to PostGIS), and a batch upsert
    that sends every entity's unchanged location again serialized it twice per entity to find that out.
    """
    if stored is None:
        return any(geo_of(instances) for instances in doc.get("attrs", {}).values())
    old: dict[str, Any] = stored.get("attrs", {})
    new: dict[str, Any] = doc.get("attrs", {})
    if old is new:
        return False
    for attr, instances in new.items():
        before = old.get(attr)
        if before is not instances and geo_attr_changed(before, instances):
            return True
    if old.keys() <= new.keys():  # no attribute removed
        return False
    return any(attr not in new and geo_of(instances) for attr, instances in old.items())


# -- history partitions ----------------------------------------------------------------------------------
Month = tuple[int, int]


def month_of(micros: int) -> Month:
    instant = _EPOCH + timedelta(microseconds=micros)
    return instant.year, instant.month


def months_of(stamps: list[int]) -> set[Month]:
    """The months of some times (µs): a batch's usually share one, which its first and last tell."""
    if not stamps:
        return set()
    first = month_of(min(stamps))
    if month_of(max(stamps)) == first:
        return {first}
    return {month_of(t) for t in stamps}


def partition_name(month: Month) -> str:
    return f"instances_p{month[0]:04d}{month[1]:02d}"


def partition_bounds(month: Month) -> tuple[str, str]:
    """FROM and TO of a month's range partition, in µs since the epoch."""
    year, number = month
    start = to_micros(datetime(year, number, 1, tzinfo=UTC))
    if (year, number) == (9999, 12):
        return str(start), "MAXVALUE"
    following = datetime(year + number // 12, number % 12 + 1, 1, tzinfo=UTC)
    return str(start), str(to_micros(following))


# -- the write queue -------------------------------------------------------------------------------------
@dataclass
class _Group:
    tenant: str
    mutations: list[Mutation]
    context: Context
    future: asyncio.Future[list[Outcome | Exception]]
    results: list[Outcome | Exception] = field(default_factory=list)
    changes: list[EntityChange] = field(default_factory=list)


@dataclass
class _Call:
    """Any other write (history, documents, alarms): fn(conn, tx) inside a group-committed transaction."""

    fn: Callable[[asyncpg.Connection, _Tx], Awaitable[Any]]
    future: asyncio.Future[Any]
    result: Any = None
    error: BaseException | None = None
    # A write of its own rows that reads nothing (an alarm and its history): the batch writes all of these
    # rows at its end, `rows.write(conn, [their rows in batch order])`, one round trip per table instead of
    # one per statement of each call, and they do not split the batch's runs of mutations.
    rows: _Rows | None = None
    # A write of rows someone waits on to see an event (an alarm's save: the operators' stream announces an
    # alarm once committed): committed ahead of the batch's mutations (`urgent_first`).
    urgent: bool = False


@dataclass
class _Rows:
    write: Callable[[asyncpg.Connection, list[Any]], Awaitable[None]]
    value: Any


_Item = _Group | _Call


def _kind(item: _Item) -> int:
    if isinstance(item, _Group):
        return MUTATION
    if item.rows is None:
        return CALL
    return URGENT if item.urgent else MOVABLE
Key = tuple[str, str]  # (tenant, entity id)
SeriesKey = tuple[str, str, str, str]  # (tenant, entity id, attribute IRI, dataset id or "")


@dataclass
class _Entity:
    """An entity within a transaction: its row as stored now, and its document as mutated so far."""

    eid: int | None
    stored: Doc | None
    doc: Doc | None
    temporal_types: list[str] | None = None  # set when the history's type index must be written


@dataclass
class _Tx:
    """What one transaction has locked and created; the caches learn it only after the commit."""

    entities: dict[Key, _Entity] = field(default_factory=dict)
    tenants: set[str] = field(default_factory=set)
    sids: dict[SeriesKey, int] = field(default_factory=dict)
    partitions: set[Month] = field(default_factory=set)
    epoch_checked: bool = False


@dataclass
class _Row:
    """One history instance to insert."""

    key: SeriesKey
    instance: dict[str, Any]
    created: int


class PostgresStore(Store):
    """PostgreSQL + PostGIS backend of the store contract."""

    def __init__(
        self,
        url: str,
        clock: Clock | None = None,
        group_commit_ms: float = 2.0,
        group_commit_max: int = 1000,
        pool_size: int = 10,
        max_queued: int = 0,
        series_cache: int = 1_000_000,
        read_settings: dict[str, str] | None = None,
    ) -> None:
        self.url = url
        self.read_settings = dict(read_settings or {})  # server_settings of the read pool's connections
        self.series_cache_max = series_cache
        self.max_queued = max_queued  # 0: unbounded
        self.clock = clock or SystemClock()
        self.group_commit_s = group_commit_ms / 1000.0
        self.group_commit_idle_s = min(self.group_commit_s, IDLE_GAP_S)
        self.group_commit_max = group_commit_max
        self.pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._write_pool: asyncpg.Pool | None = None  # the writer's own connection: reads never starve it
        self._queue: asyncio.Queue[_Item | None] = asyncio.Queue()
        self._arrived: asyncio.Future[None] | None = None  # what `_collect` waits on for the next write
        self._conn: asyncpg.Connection | None = None  # the writer's, from `_write_pool`
        self._begun = False  # whether `_conn` is in a transaction begun for the next batch (`_transact`)
        self._writer: asyncio.Task[None] | None = None
        self._commit_callbacks: list[Callable[[Context, tuple[EntityChange, ...]], None]] = []
        self._tenants: set[str] = set()
        self._sids: dict[SeriesKey, int] = {}
        self._epoch: str | None = None  # meta.series_epoch when _sids was filled
        self._partitions: set[Month] = set()
        self.commits = 0
        self.committed_ops = 0
        self.retries = 0
        self._failed: BaseException | None = None
        # Why the database was last found unreachable (a read, a commit or `probe` failed so), until one succeeds.
        self._unreachable: str | None = None
        self._probe: asyncio.Task[None] | None = None  # the probe in flight: concurrent /health calls share it

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        self._pool = await asyncpg.create_pool(self.url, min_size=1, max_size=max(1, self.pool_size - 1),
                                               init=init_connection, server_settings=self.read_settings or None)
        self._write_pool = await asyncpg.create_pool(self.url, min_size=1, max_size=1, init=init_connection)
        async with self._pool.acquire() as conn:
            await migrate_connection(conn)
            names = await conn.fetch("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                                     "WHERE i.inhparent = 'instances'::regclass")
        self._partitions = {(int(r[0][-6:-2]), int(r[0][-2:])) for r in names if r[0].startswith("instances_p")}
        self._writer = asyncio.create_task(self._write_loop(), name="ucity-postgres-writer")

    async def stop(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(BaseException):
                await self._probe
            self._probe = None
        if self._writer is not None:
            self._enqueue(None)
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None
        await self._release()
        for pool in (self._pool, self._write_pool):
            if pool is not None:
                await pool.close()
        self._pool = self._write_pool = None

    def health(self) -> dict[str, Any]:
        """Not ok while the database is unreachable: the last read, commit or probe (`probe`) failed to reach it
        (`unreachable` says how), until one succeeds."""
        alive = self._writer is not None and not self._writer.done()
        health = {"ok": alive and self._failed is None and self._unreachable is None, "backend": "postgresql",
                  "database": safe_location(self.url), "commits": self.commits,
                  "committed_operations": self.committed_ops, "retries": self.retries, "queued": self._queue.qsize()}
        if self._unreachable is not None:
            health["unreachable"] = self._unreachable
        return health

    async def probe(self) -> None:
        """Check that the database answers (`SELECT 1` on a read connection), for `/health` (server.py), which
        awaits it before it reads `health()`: so a stopped database shows within one call, even when nothing
        else reads or writes. Bounded by PROBE_TIMEOUT_S; one probe at a time, shared by concurrent callers."""
        if self._pool is None:
            return
        if self._probe is None or self._probe.done():
            self._probe = asyncio.create_task(self._run_probe(self._pool), name="ucity-postgres-probe")
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._probe), PROBE_TIMEOUT_S)

    async def _run_probe(self, pool: asyncpg.Pool) -> None:
        try:
            await pool.fetchval("SELECT 1")
        except _READ_UNREACHABLE as exc:
            self._mark_unreachable(exc)
        except Exception:  # anything else is no news about reachability
            log.warning("the database probe failed", exc_info=True)
        else:
            self._unreachable = None

    def _mark_unreachable(self, exc: BaseException) -> None:
        if self._unreachable is None:  # once per spell: every read fails alike meanwhile
            log.error("the store is not ready until the database can be reached again: %s: %s", type(exc).__name__, exc)
        self._unreachable = f"{type(exc).__name__}: {exc}"[:300]

    def on_commit(self, callback: Callable[[Context, tuple[EntityChange, ...]], None]) -> None:
        self._commit_callbacks.append(callback)

    @property
    def pool(self) -> asyncpg.Pool:
        """The readers' connections."""
        if self._pool is None:
            raise Unavailable("the store is not running")
        return self._pool

    @property
    def write_pool(self) -> asyncpg.Pool:
        if self._write_pool is None:
            raise Unavailable("the store is not running")
        return self._write_pool

    # -- writing -----------------------------------------------------------------------------
    async def mutate(self, tenant: str, mutations: list[Mutation], context: Context) -> list[Outcome | Exception]:
        if self._writer is None:
            raise Unavailable("the store is not running")
        if self.max_queued and self._queue.qsize() >= self.max_queued:  # a burst: back-pressure, not memory
            raise Unavailable(f"{self._queue.qsize()} writes are waiting for a commit; retry shortly")
        future: asyncio.Future[list[Outcome | Exception]] = asyncio.get_running_loop().create_future()
        self._enqueue(_Group(tenant, mutations, context, future))
        return await future

    async def _call(self, fn: Callable[[asyncpg.Connection, _Tx], Awaitable[Any]], rows: _Rows | None = None,
                    urgent: bool = False) -> Any:
        if self._writer is None:
            raise Unavailable("the store is not running")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._enqueue(_Call(fn, future, rows=rows, urgent=urgent and rows is not None))
        return await future

    async def _write_loop(self) -> None:
        while True:
            first = await self._queue.get()
            if first is None:
                return
            batch, stop = await self._collect(first)
            for part in urgent_first(batch, _kind):
                if not part:
                    continue
                try:
                    await self._commit_batch(part)
                except Exception as exc:  # never let the writer die: fail the batch instead
                    log.exception("the writer failed a batch")
                    for item in part:
                        self._fail_item(item, exc)
                    self._resolve(part)
            if stop:
                return

    async def _collect(self, first: _Item) -> tuple[list[_Item], bool]:
        """The batch that `first` opens, and whether the store is stopping. It takes what is queued, then
        waits for more only while writes keep arriving: each within `group_commit_idle_s` of the previous
        one, all within `group_commit_s` of the first (at most `group_commit_max`). Once the queue is
        drained and nothing comes, waiting longer cannot pay: the writes sent while this batch is in the
        database (every statement is a round trip that lets the event loop run) queue up and form the next
        batch, so a lone write, or a PATCH whose client waits for it, is not held for the window."""
        batch = [first]
        get_nowait, idle = self._queue.get_nowait, self.group_commit_idle_s
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.group_commit_s
        while len(batch) < self.group_commit_max:
            try:
                item = get_nowait()
            except asyncio.QueueEmpty:
                if idle <= 0:
                    break
                wait = min(deadline - loop.time(), idle)
                if wait <= 0 or not await self._arrival(loop, wait):
                    break
                continue
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    async def _arrival(self, loop: asyncio.AbstractEventLoop, wait: float) -> bool:
        """Whether a write is queued within `wait` seconds: one future and one timer, cheaper than
        `wait_for(queue.get())` (a task each), since a busy writer waits once per batch."""
        if not self._queue.empty():
            return True
        waiter: asyncio.Future[None] = loop.create_future()
        self._arrived = waiter
        timer = loop.call_later(wait, _settle, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._arrived = None
        return not self._queue.empty()

    def _enqueue(self, item: _Item | None) -> None:
        self._queue.put_nowait(item)
        if self._arrived is not None:
            _settle(self._arrived)

    async def _commit_batch(self, batch: list[_Item], resolve: bool = True) -> None:
        """Commit `batch` in one transaction (retried on a deadlock or serialization failure), then hand its items
        to their callers (`_resolve`), unless `resolve` is False (`_commit_each`'s parts, which its group resolves).
        On a failure every item is tried alone; a lone group of several mutations that fails in a way that would
        recur (`_refused`) is committed a mutation at a time, so that one poison write does not fail, or hold for
        ever, the others sent with it."""
        for attempt in range(_BATCH_ATTEMPTS):
            tx = _Tx()
            try:
                conn = await self._connection()
                await self._transact(conn, batch, tx)
            except _RETRY as exc:
                self.retries += 1
                log.info("batch retried (attempt %d): %s", attempt + 1, exc)
                self._sids.clear()
                self._reset(batch)
                continue
            except _UNREACHABLE as exc:
                log.error("the database is unreachable: %s", exc)
                self._mark_unreachable(exc)
                await self._release()  # the next batch connects again
                for item in batch:
                    self._fail_item(item, exc)
            except Exception as exc:
                log.exception("group commit failed; retrying items one at a time")
                self._sids.clear()
                if len(batch) > 1:
                    for item in batch:
                        self._reset([item])
                        await self._commit_batch([item], resolve)
                    return
                item = batch[0]
                if isinstance(item, _Group) and len(item.mutations) > 1 and _refused(exc):
                    await self._commit_each(item)
                else:
                    self._fail_item(item, exc)
            else:
                self._learn(tx)
                self._unreachable = None
                self.commits += 1
                self.committed_ops += len(batch)
            if resolve:
                self._resolve(batch)
            return
        for item in batch:
            self._fail_item(item, Unavailable("too many conflicting transactions"))
        if resolve:
            self._resolve(batch)

    async def _commit_each(self, group: _Group) -> None:
        """Commit the group's mutations one per transaction, in order: each gets its own outcome (`WriteRefused`
        for the one the store refuses), and the group's changes are those committed."""
        results: list[Outcome | Exception] = []
        changes: list[EntityChange] = []
        for mutation in group.mutations:
            part = _Group(group.tenant, [mutation], group.context, group.future)
            await self._commit_batch([part], resolve=False)
            results += part.results
            changes += part.changes
        group.results, group.changes = results, changes

    async def _transact(self, conn: asyncpg.Connection, batch: list[_Item], tx: _Tx) -> None:
        """BEGIN, the batch, COMMIT. When the next batch is already queued, its BEGIN goes with this COMMIT
        (`COMMIT; BEGIN`, one round trip, the same transactions): under load every statement's round trip
        waits for both processes to be scheduled, and a batch makes about seven of them. A transaction is
        never left open idle: it is begun early only for writes that are waiting."""
        begun, self._begun = self._begun, False
        try:
            if not begun:
                await conn.execute("BEGIN")
            await self._run_batch(conn, batch, tx)
            if self._queue.qsize():
                await conn.execute("COMMIT; BEGIN")
                self._begun = True
            else:
                await conn.execute("COMMIT")
        except BaseException:
            self._begun = False
            if _usable(conn) and conn.is_in_transaction():
                with contextlib.suppress(Exception):  # a lost connection: the pool closes it
                    await conn.execute("ROLLBACK")
            raise

    async def _connection(self) -> asyncpg.Connection:
        """The writer's connection, kept from batch to batch: given back to the pool after each batch, it
        was reset (one more round trip per commit, `pg_advisory_unlock_all(); CLOSE ALL; ...`)."""
        if self._conn is not None and not _usable(self._conn):
            await self._release()
        if self._conn is None:
            self._conn = await self.write_pool.acquire()
        return self._conn

    async def _release(self) -> None:
        conn, self._conn = self._conn, None
        self._begun = False  # the pool rolls back a transaction left open
        if conn is not None and self._write_pool is not None:
            with contextlib.suppress(Exception):  # a broken connection is closed by the pool
                await self._write_pool.release(conn)

    def _learn(self, tx: _Tx) -> None:
        """After a commit: what the transaction created exists for good."""
        self._tenants |= tx.tenants
        self._partitions |= tx.partitions
        self._sids.update(tx.sids)
        excess = len(self._sids) - self.series_cache_max
        if excess > 0:  # the series cached first go, down to nine tenths of the bound (not all of them)
            for key in list(itertools.islice(self._sids, excess + self.series_cache_max // 10)):
                del self._sids[key]

    @staticmethod
    def _reset(batch: list[_Item]) -> None:
        for item in batch:
            if isinstance(item, _Group):
                item.results.clear()
                item.changes.clear()
            else:
                item.result, item.error = None, None

    @staticmethod
    def _fail_item(item: _Item, exc: BaseException) -> None:
        error: UcityError = exc if isinstance(exc, Unavailable) else Unavailable(f"the store could not commit: {exc}")
        if isinstance(item, _Group):
            if _refused(exc):  # it would fail again: not to be sent again (a `_Call` keeps Unavailable)
                error = WriteRefused(f"the store refused the write: {type(exc).__name__}: {exc}")
            item.results = [error] * len(item.mutations)
            item.changes = []
        else:
            item.error = error

    def _resolve(self, batch: list[_Item]) -> None:
        for item in batch:
            if isinstance(item, _Group):
                if item.changes:
                    for callback in self._commit_callbacks:
                        try:
                            callback(item.context, tuple(item.changes))
                        except Exception:
                            log.exception("commit callback failed")
                if not item.future.done():
                    item.future.set_result(item.results)
            elif not item.future.done():
                if item.error is not None:
                    item.future.set_exception(item.error)
                else:
                    item.future.set_result(item.result)

    async def _run_batch(self, conn: asyncpg.Connection, batch: list[_Item], tx: _Tx) -> None:
        """Runs of consecutive mutation groups are applied together; a call sees everything before it. The
        calls that only add their own rows (`_Call.rows`) are written last, together: no other write of the
        batch reads or writes their tables, and the whole batch commits at once."""
        segment: list[_Group] = []
        merged: dict[Callable[[asyncpg.Connection, list[Any]], Awaitable[None]], list[Any]] = {}
        for item in batch:
            if isinstance(item, _Group):
                segment.append(item)
                continue
            if item.rows is not None:
                merged.setdefault(item.rows.write, []).append(item.rows.value)
                continue
            await self._run_segment(conn, segment, tx)
            segment = []
            try:
                item.result = await item.fn(conn, tx)
            except UcityError as exc:
                item.error = exc
        await self._run_segment(conn, segment, tx)
        for write, values in merged.items():
            await write(conn, values)  # a database error fails the batch: its items are then retried alone

    async def _run_segment(self, conn: asyncpg.Connection, groups: list[_Group], tx: _Tx) -> None:
        if not groups:
            return
        await self._lock_entities(conn, tx, [(g.tenant, m.entity_id) for g in groups for m in g.mutations])
        await self._add_tenants(conn, tx, {g.tenant for g in groups if g.mutations})
        rows: list[_Row] = []
        touched: dict[Key, _Entity] = {}
        # One time for the segment's writes, which commit together (as SQLite's group commit has it): read,
        # formatted and parsed once, not once per request of a group commit of single-attribute PATCHes.
        now = to_iso(self.clock.now())
        created = to_micros(parse_iso(now))
        for group in groups:
            for mutation in group.mutations:
                group.results.append(self._apply(group, mutation, now, created, tx, touched, rows))
        await self._write_entities(conn, touched)
        if rows:
            await self._insert_instances(conn, tx, rows)

    async def _lock_entities(self, conn: asyncpg.Connection, tx: _Tx, keys: list[Key]) -> None:
        """Lock and load the entities this transaction has not touched yet."""
        fresh = sorted({k for k in keys if k not in tx.entities})
        if not fresh:
            return
        tenants, ids = [k[0] for k in fresh], [k[1] for k in fresh]
        # Advisory locks also cover entities that do not exist yet (two processes creating one).
        locks = ("SELECT count(pg_advisory_xact_lock(k)) FROM (SELECT DISTINCT hashtextextended(t || chr(31) || i, 0) "
                 "AS k FROM unnest($1::text[], $2::text[]) AS u(t, i) ORDER BY k) AS s")
        if tx.epoch_checked:
            await conn.execute(locks, tenants, ids)
        else:  # `_check_epoch` in the same round trip; its row is read once the aggregate has taken every lock
            self._saw_epoch(tx, await conn.fetchval(
                f"SELECT (SELECT value FROM meta WHERE key = 'series_epoch' FOR SHARE) FROM ({locks}) AS l", tenants, ids))
        found = await conn.fetch(
            "SELECT e.eid, e.tenant, e.id, e.doc FROM entities e JOIN unnest($1::text[], $2::text[]) AS u(t, i) "
            "ON e.tenant = u.t AND e.id = u.i ORDER BY e.eid FOR UPDATE OF e", tenants, ids)
        for key in fresh:
            tx.entities[key] = _Entity(None, None, None)
        for eid, tenant, entity_id, doc in found:
            tx.entities[(tenant, entity_id)] = _Entity(eid, doc, doc)

    async def _add_tenants(self, conn: asyncpg.Connection, tx: _Tx, tenants: set[str]) -> None:
        fresh = sorted(tenants - self._tenants - tx.tenants)
        if fresh:
            await conn.execute("INSERT INTO tenants SELECT unnest($1::text[]) ON CONFLICT DO NOTHING", fresh)
            tx.tenants.update(fresh)

    def _apply(
        self, group: _Group, mutation: Mutation, now: str, created: int, tx: _Tx, touched: dict[Key, _Entity],
        rows: list[_Row],
    ) -> Outcome | Exception:
        key = (group.tenant, mutation.entity_id)
        entity = tx.entities[key]
        before = entity.doc
        try:
            outcome = mutation.apply(before, now)
        except UcityError as exc:
            return exc
        if not outcome.changed:
            return outcome
        after = outcome.doc
        if self.write_checks and after is not None:
            for check in self.write_checks:
                refused = check(group.tenant, mutation.entity_id, after, outcome.attrs)
                if refused is not None:
                    return refused
        entity.doc = after
        touched[key] = entity
        if after is not None and (before is None or before.get("type") != after.get("type")):
            entity.temporal_types = list(after.get("type", []))
        for attr, instance in outcome.instances:
            rows.append(_Row((group.tenant, mutation.entity_id, attr, instance.get("datasetId") or ""), instance, created))
        group.changes.append(EntityChange(
            group.tenant, mutation.entity_id, outcome.operation, before, after, outcome.attrs, outcome.instances))
        return outcome

    async def _write_entities(self, conn: asyncpg.Connection, touched: dict[Key, _Entity]) -> None:
        """The final state of every entity the segment changed: deletes, inserts, updates, geometries."""
        deleted = [e.eid for e in touched.values() if e.doc is None and e.eid is not None]
        inserted = [(k, e) for k, e in touched.items() if e.doc is not None and e.eid is None]
        updated = [e for e in touched.values() if e.doc is not None and e.eid is not None and e.doc is not e.stored]
        if deleted:  # their geometries go with them (geo.eid: ON DELETE CASCADE)
            await conn.execute("DELETE FROM entities WHERE eid = ANY($1::bigint[])", deleted)
        if inserted:
            new = await conn.fetch(
                "INSERT INTO entities (tenant, id, types, doc, created_at, modified_at) "
                "SELECT u.t, u.i, ARRAY(SELECT jsonb_array_elements_text(u.d -> 'type')), u.d, "
                "coalesce(u.d ->> 'createdAt', ''), coalesce(u.d ->> 'modifiedAt', '') "
                "FROM unnest($1::text[], $2::text[], $3::jsonb[]) AS u(t, i, d) RETURNING eid, tenant, id",
                [k[0] for k, _ in inserted], [k[1] for k, _ in inserted], [e.doc for _, e in inserted])
            eids = {(r[1], r[2]): r[0] for r in new}
            for key, entity in inserted:
                entity.eid = eids[key]
        if updated:
            await conn.execute(
                "UPDATE entities e SET doc = u.d, types = ARRAY(SELECT jsonb_array_elements_text(u.d -> 'type')), "
                "modified_at = coalesce(u.d ->> 'modifiedAt', '') FROM unnest($1::bigint[], $2::jsonb[]) AS u(eid, d) "
                "WHERE e.eid = u.eid", [e.eid for e in updated], [e.doc for e in updated])
        await self._write_geometries(conn, touched)
        await self._write_temporal_types(conn, touched)
        for entity in touched.values():
            if entity.doc is None:
                entity.eid = None
            entity.stored = entity.doc

    @staticmethod
    async def _write_geometries(conn: asyncpg.Connection, touched: dict[Key, _Entity]) -> None:
        from ucity.ngsild.geo import GeoQueryError, geometry_bbox

        changed = [(k, e) for k, e in touched.items()
                   if e.eid is not None and e.doc is not None and _geo_changed(e.stored, e.doc)]
        if not changed:
            return
        await conn.execute("DELETE FROM geo WHERE eid = ANY($1::bigint[])", [e.eid for _, e in changed])
        values: list[tuple[int, str, str, str]] = []
        for (tenant, _), entity in changed:
            assert entity.eid is not None
            for attr, geometry in geo_parts(entity.doc):
                try:
                    geometry_bbox(orjson.loads(geometry))
                except GeoQueryError:
                    continue  # validated on input; an old invalid value is simply not indexed
                values.append((entity.eid, tenant, attr, geometry))
        if values:
            await conn.execute(
                "INSERT INTO geo (eid, tenant, attr, geom) SELECT u.eid, u.t, u.a, "
                "ST_Force2D(ST_SetSRID(ST_GeomFromGeoJSON(u.g), 4326)) "
                "FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[]) AS u(eid, t, a, g)",
                *map(list, zip(*values, strict=True)))

    @staticmethod
    async def _write_temporal_types(conn: asyncpg.Connection, touched: dict[Key, _Entity]) -> None:
        """The history's type index, written only when an entity's types change (or it is created)."""
        rows = [(k, e.temporal_types) for k, e in touched.items() if e.temporal_types is not None]
        if not rows:
            return
        await conn.execute(
            # The types travel as JSON texts: asyncpg would read a list of lists as a 2-D array.
            "INSERT INTO temporal_entities (tenant, id, types) "
            "SELECT u.t, u.i, ARRAY(SELECT jsonb_array_elements_text(u.ty::jsonb)) "
            "FROM unnest($1::text[], $2::text[], $3::text[]) AS u(t, i, ty) "
            "ON CONFLICT (tenant, id) DO UPDATE SET types = excluded.types",
            [k[0] for k, _ in rows], [k[1] for k, _ in rows], [orjson.dumps(types).decode() for _, types in rows])
        for _, entity in touched.items():
            entity.temporal_types = None

    # -- history rows ------------------------------------------------------------------------
    async def _check_epoch(self, conn: asyncpg.Connection, tx: _Tx) -> None:
        """Forget cached series ids if any process has deleted series since they were cached. FOR SHARE:
        a deletion (which bumps the epoch) waits for this transaction, and this one for a deletion."""
        if not tx.epoch_checked:
            self._saw_epoch(tx, await conn.fetchval("SELECT value FROM meta WHERE key = 'series_epoch' FOR SHARE"))

    def _saw_epoch(self, tx: _Tx, epoch: str | None) -> None:
        """`tx` has read (and share-locked) meta.series_epoch: a mutation batch does so with its entity
        locks (`_lock_entities`), one round trip less per commit; other writes in `_check_epoch`."""
        if epoch != self._epoch:
            self._sids.clear()
            self._epoch = epoch
        tx.epoch_checked = True

    async def _series_ids(self, conn: asyncpg.Connection, tx: _Tx, rows: list[_Row]) -> list[int]:
        """The series id of each row, in order, creating the missing series. One lookup per row: a
        series key is a tuple of four strings, whose hash Python computes again at every lookup."""
        await self._check_epoch(conn, tx)
        cached, local = self._sids.get, tx.sids
        if local:
            ids: list[int | None] = [local.get(r.key) or cached(r.key) for r in rows]
        else:
            ids = [cached(r.key) for r in rows]
        if None not in ids:
            return ids  # type: ignore[return-value]
        missing = sorted({r.key for r, sid in zip(rows, ids, strict=True) if sid is None})
        for _ in range(_SERIES_PASSES):
            columns = [list(c) for c in zip(*missing, strict=True)]
            for sid, *key in await conn.fetch(_SERIES_IDS, *columns):
                local[(key[0], key[1], key[2], key[3])] = int(sid)
            # A series that another process created after this statement's snapshot was neither seen nor
            # inserted (its INSERT conflicted): the next pass, a new snapshot, finds it.
            missing = [k for k in missing if k not in local]
            if not missing:
                return [sid if sid is not None else local[r.key] for r, sid in zip(rows, ids, strict=True)]
        raise RuntimeError(f"series ids not found after {_SERIES_PASSES} passes: {missing[:3]}")

    async def _ensure_partitions(self, conn: asyncpg.Connection, tx: _Tx, months: set[Month]) -> None:
        missing = sorted(months - self._partitions - tx.partitions)
        if not missing:
            return
        await conn.execute("SELECT pg_advisory_xact_lock($1)", PARTITION_LOCK)
        for month in missing:
            name = partition_name(month)
            if not await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", name):
                await self._create_partition(conn, name, *partition_bounds(month))
            tx.partitions.add(month)

    @staticmethod
    async def _create_partition(conn: asyncpg.Connection, name: str, low: str, high: str) -> None:
        """A month's partition; rows of that month in the default partition (written from outside the
        store) move into it, since PostgreSQL refuses a partition whose rows sit in the default one."""
        stray = await conn.fetchval(
            f"SELECT EXISTS (SELECT 1 FROM instances_default WHERE ts >= {low}"
            + (f" AND ts < {high})" if high != "MAXVALUE" else ")"))
        if not stray:
            await conn.execute(f"CREATE TABLE {name} PARTITION OF instances FOR VALUES FROM ({low}) TO ({high})")
            return
        upper = f" AND ts < {high}" if high != "MAXVALUE" else ""
        await conn.execute(f"CREATE TABLE {name} (LIKE instances INCLUDING DEFAULTS)")
        await conn.execute(f"WITH moved AS (DELETE FROM instances_default WHERE ts >= {low}{upper} RETURNING *) "
                           f"INSERT INTO {name} SELECT * FROM moved")
        await conn.execute(f"ALTER TABLE instances ATTACH PARTITION {name} FOR VALUES FROM ({low}) TO ({high})")

    async def _insert_instances(self, conn: asyncpg.Connection, tx: _Tx, rows: list[_Row]) -> None:
        """Append history instances; an observed one replaces its namesake (same series and observedAt).
        All rows travel as one JSON text (`_json_rows`), read back on the server column by column."""
        sids = await self._series_ids(conn, tx, rows)
        records: dict[object, list[Any]] = {}
        unnamed: list[list[Any]] = []  # the records whose instance has no instanceId yet
        last_observed, last_ts = None, 0
        for n, row in enumerate(rows):
            instance = row.instance
            observed = instance.get("observedAt")
            if not observed:
                ts = row.created
            elif observed == last_observed:  # the attributes of one measure share their time: parsed once
                ts = last_ts
            else:
                ts = last_ts = iso_micros(observed)
                last_observed = observed
            sid = sids[n]
            number: float | str | None = vnum(instance)
            if number is not None:
                number = _float_json(number)  # type: ignore[arg-type]
            record = [sid, ts, row.created, instance.get("instanceId"), bool(observed), number, instance]
            if not record[3]:
                unnamed.append(record)
            key: object = (sid, ts) if observed else n
            records.pop(key, None)  # one statement may not update a row twice: the last one wins
            records[key] = record
        if unnamed:
            fresh = iter(new_instance_ids(len(unnamed)))
            for record in unnamed:  # (one instance listed twice keeps the id its first listing got)
                record[3] = record[6]["instanceId"] = record[6].get("instanceId") or next(fresh)
        values = list(records.values())
        await self._ensure_partitions(conn, tx, months_of([r[1] for r in values]))
        await conn.execute(
            "INSERT INTO instances (sid, ts, created, instance_id, observed, vnum, doc) "
            "SELECT (r->>0)::bigint, (r->>1)::bigint, (r->>2)::bigint, r->>3, (r->>4)::boolean, (r->>5)::float8, "
            "r->6 FROM jsonb_array_elements($1::text::jsonb) AS r "
            "ON CONFLICT (sid, ts) WHERE observed DO UPDATE SET created = excluded.created, "
            "iid = excluded.iid, instance_id = excluded.instance_id, vnum = excluded.vnum, doc = excluded.doc",
            _json_rows(values))

    # -- reading -----------------------------------------------------------------------------
    async def _fetch(self, sql: str, params: list[Any]) -> list[asyncpg.Record]:
        try:
            rows: list[asyncpg.Record] = await self.pool.fetch(numbered(sql), *params)
        except asyncpg.InvalidRegularExpressionError as exc:
            raise BadRequest(f"invalid regular expression: {exc}") from exc
        return rows

    @_reading
    async def get_entity(self, tenant: str, entity_id: str) -> Doc | None:
        doc: Doc | None = await self.pool.fetchval(
            "SELECT doc FROM entities WHERE tenant = $1 AND id = $2", tenant, entity_id)
        return doc

    def _where(self, tenant: str, query: EntityQuery) -> tuple[str, list[Any]]:
        clauses = ["e.tenant = ?"]
        params: list[Any] = [tenant]
        if query.ids:
            clauses.append("e.id = ANY(?::text[])")
            params.append(list(query.ids))
        if query.id_pattern:
            clauses.append("e.id ~ ?")
            params.append(query.id_pattern)
        if query.types is not None:
            sql, tparams = _types_sql(query.types, "e.types")
            clauses.append(sql)
            params.extend(tparams)
        if query.attrs_any:
            clauses.append("ucity_attr_names(e.doc) && ?::text[]")  # any of them (GIN-indexed)
            params.append(list(query.attrs_any))
        if query.scope is not None:
            sql, sparams = any_of_sql(query.scope.any_of, _SCOPE_MATCH)
            clauses.append(sql)
            params.extend(sparams)
        if query.q is not None:
            sql, qparams = compile_q_postgres(query.q.expr, query.q.resolve)
            clauses.append("(" + sql + ")")
            params.extend(qparams)
        if query.geo is not None:
            sql, gparams = _geo_sql(query.geo)
            clauses.append("e.eid IN (SELECT g.eid FROM geo g WHERE g.tenant = ? AND g.attr = ? AND " + sql + ")")
            params.extend([tenant, query.geo_attr, *gparams])
        return " AND ".join(clauses), params

    @_reading
    async def query_entities(self, tenant: str, query: EntityQuery) -> tuple[list[Doc], int | None]:
        where, params = self._where(tenant, query)
        total = None
        if query.count:
            total = int((await self._fetch(f"SELECT count(*) FROM entities e WHERE {where}", params))[0][0])
        docs: list[Doc] = []
        if query.limit > 0:
            order = "e.modified_at DESC, e.id" if query.order == "modified" else "e.id"
            rows = await self._fetch(f"SELECT e.doc FROM entities e WHERE {where} ORDER BY {order} LIMIT ? OFFSET ?",
                                     [*params, query.limit, query.offset])
            docs = [r[0] for r in rows]
        return docs, total

    @_reading
    async def entity_ids(self, tenant: str, query: EntityQuery) -> list[str]:
        where, params = self._where(tenant, query)
        return [r[0] for r in await self._fetch(f"SELECT e.id FROM entities e WHERE {where} ORDER BY e.id", params)]

    @_reading
    async def tenant_exists(self, tenant: str) -> bool:
        return bool(await self.pool.fetchval("SELECT EXISTS (SELECT 1 FROM tenants WHERE tenant = $1)", tenant))

    @_reading
    async def tenants(self) -> list[str]:
        return [r[0] for r in await self.pool.fetch("SELECT tenant FROM tenants ORDER BY tenant")]

    @_reading
    async def types_summary(self, tenant: str) -> list[tuple[str, list[str], int]]:
        counts = {r[0]: int(r[1]) for r in await self.pool.fetch(
            "SELECT t, count(DISTINCT e.eid) FROM entities e, unnest(e.types) AS t WHERE e.tenant = $1 GROUP BY t",
            tenant)}
        attrs: dict[str, set[str]] = {t: set() for t in counts}
        for t, key in await self.pool.fetch(
                "SELECT DISTINCT t, k FROM entities e, unnest(e.types) AS t, jsonb_object_keys(e.doc -> 'attrs') AS k "
                "WHERE e.tenant = $1", tenant):
            attrs[t].add(key)
        return [(t, sorted(attrs[t]), c) for t, c in sorted(counts.items())]

    @_reading
    async def attributes_summary(self, tenant: str) -> list[tuple[str, list[str], list[str], int]]:
        info: dict[str, tuple[set[str], set[str], set[int]]] = {}
        for key, kind, types, eid in await self.pool.fetch(
                "SELECT a.k, a.v -> 0 ->> 'type', e.types, e.eid FROM entities e, jsonb_each(e.doc -> 'attrs') AS a(k, v) "
                "WHERE e.tenant = $1", tenant):
            entry = info.setdefault(key, (set(), set(), set()))
            entry[0].update(types)
            entry[1].add(kind or "Property")
            entry[2].add(eid)
        return [(a, sorted(t), sorted(k), len(e)) for a, (t, k, e) in sorted(info.items())]

    # -- history -----------------------------------------------------------------------------
    async def append_history(
        self, tenant: str, entity_id: str, types: list[str], rows: list[tuple[str, dict[str, Any]]]
    ) -> None:
        now = to_iso(self.clock.now())
        created = to_micros(parse_iso(now))
        for _, instance in rows:  # history written directly (temporal API) is stamped when recorded
            instance.setdefault("createdAt", now)
            instance.setdefault("modifiedAt", now)

        async def run(conn: asyncpg.Connection, tx: _Tx) -> None:
            await self._add_tenants(conn, tx, {tenant})
            current = await conn.fetchval(
                "SELECT types FROM temporal_entities WHERE tenant = $1 AND id = $2 FOR UPDATE", tenant, entity_id)
            merged = list(dict.fromkeys([*(current or []), *types]))
            await conn.execute(
                "INSERT INTO temporal_entities (tenant, id, types) VALUES ($1, $2, $3::text[]) "
                "ON CONFLICT (tenant, id) DO UPDATE SET types = excluded.types", tenant, entity_id, merged)
            if rows:
                await self._insert_instances(conn, tx, [
                    _Row((tenant, entity_id, attr, instance.get("datasetId") or ""), instance, created)
                    for attr, instance in one_per_time(rows)])

        await self._call(run)

    @_reading
    async def temporal_entity_exists(self, tenant: str, entity_id: str) -> bool:
        return bool(await self.pool.fetchval(
            "SELECT EXISTS (SELECT 1 FROM temporal_entities WHERE tenant = $1 AND id = $2)", tenant, entity_id))

    @_reading
    async def temporal_query(self, tenant: str, query: TemporalQuery) -> tuple[list[TemporalEntity], int | None]:
        async with self.pool.acquire() as conn:
            entities, total = await _temporal_entities(conn, tenant, query)
            column = time_column(query.timeproperty)
            out: list[TemporalEntity] = []
            for entity_id, types in entities:
                entity = TemporalEntity(entity_id, types)
                for attr, series in (await _attr_series(conn, tenant, entity_id, query)).items():
                    history = await _history(conn, [sid for sid, _ in series], column, query)
                    if history.instances:
                        entity.attrs[attr] = history
                out.append(entity)
        return out, total

    @_reading
    async def temporal_aggregate(
        self, tenant: str, query: TemporalQuery, aggregation: Aggregation
    ) -> tuple[list[AggregatedEntity], int | None]:
        async with self.pool.acquire() as conn:
            entities, total = await _temporal_entities(conn, tenant, query)
            column = time_column(query.timeproperty)
            out: list[AggregatedEntity] = []
            for entity_id, types in entities:
                entity = AggregatedEntity(entity_id, types)
                for attr, series in (await _attr_series(conn, tenant, entity_id, query)).items():
                    origin = query.time_from if query.time_from is not None else await _oldest(conn, series, column, query)
                    if origin is None:
                        continue
                    found = [await _aggregate(conn, sid, dataset, column, query, aggregation, origin)
                             for sid, dataset in series]
                    if any(s.times for s in found):
                        entity.attrs[attr] = [s for s in found if s.times]
                out.append(entity)
        return out, total

    async def delete_history(
        self, tenant: str, entity_id: str, attr: str | None = None, dataset_id: str | None = None,
        instance_id: str | None = None, all_datasets: bool = False,
    ) -> int:
        async def run(conn: asyncpg.Connection, tx: _Tx) -> int:
            clauses, params = ["tenant = ?", "entity_id = ?"], [tenant, entity_id]
            if attr is not None:
                clauses.append("attr = ?")
                params.append(attr)
                if not all_datasets:
                    clauses.append("dataset_id = ?")
                    params.append(dataset_id or "")
            sids = [r[0] for r in await conn.fetch(numbered("SELECT sid FROM series WHERE " + " AND ".join(clauses)),
                                                    *params)]
            deleted = 0
            if instance_id is not None:
                deleted += row_count(await conn.execute(
                    "DELETE FROM instances WHERE sid = ANY($1::bigint[]) AND instance_id = $2", sids, instance_id))
            else:
                deleted += row_count(await conn.execute("DELETE FROM instances WHERE sid = ANY($1::bigint[])", sids))
                # counted too: an attribute whose instances were all deleted one by one still exists
                deleted += row_count(await conn.execute("DELETE FROM series WHERE sid = ANY($1::bigint[])", sids))
                if sids:  # other processes drop their cached ids of these series
                    await conn.execute("UPDATE meta SET value = (value::bigint + 1)::text WHERE key = 'series_epoch'")
            if attr is None and instance_id is None:
                deleted += row_count(await conn.execute(
                    "DELETE FROM temporal_entities WHERE tenant = $1 AND id = $2", tenant, entity_id))
            self._sids.clear()
            tx.sids.clear()
            return deleted

        result: int = await self._call(run)
        return result

    async def replace_history_instance(
        self, tenant: str, entity_id: str, attr: str, instance_id: str, instance: dict[str, Any]
    ) -> bool:
        now = to_iso(self.clock.now())

        async def run(conn: asyncpg.Connection, tx: _Tx) -> bool:
            row = await conn.fetchrow(
                "SELECT i.iid, i.ts, i.doc FROM instances i JOIN series s ON s.sid = i.sid WHERE s.tenant = $1 "
                "AND s.entity_id = $2 AND s.attr = $3 AND i.instance_id = $4 LIMIT 1 FOR UPDATE OF i",
                tenant, entity_id, attr, instance_id)
            if row is None:
                return False
            merged = merge_instance(row[2], instance, now)
            observed = merged.get("observedAt")
            ts = to_micros(parse_iso_clamped(observed)) if observed else row[1]  # may be a stored time
            await self._ensure_partitions(conn, tx, {month_of(ts)})
            await conn.execute("UPDATE instances SET doc = $1, ts = $2, vnum = $3, observed = $4 WHERE iid = $5 AND ts = $6",
                               merged, ts, vnum(merged), bool(observed), row[0], row[1])
            return True

        result: bool = await self._call(run)
        return result

    # -- documents ---------------------------------------------------------------------------
    # Document writes only write `docs`, which nothing else in a batch reads or writes: they are `_Rows`
    # calls, written at the batch's end all together (`_write_doc_ops`, in batch order). As ordinary calls
    # they split the batch's runs of mutations, and the rules engine writes its states once per batch of
    # readings: each split cost the mutations' round trips (locks, entities, instances) a second time.
    async def put_doc(self, kind: str, tenant: str, key: str, doc: Doc) -> None:
        await self._doc_call(_DocOps(puts=[(kind, tenant, key, doc)]))

    async def insert_doc(self, kind: str, tenant: str, key: str, doc: Doc) -> bool:
        async def run(conn: asyncpg.Connection, tx: _Tx) -> bool:  # an ordinary call: its answer is needed
            return row_count(await conn.execute(
                "INSERT INTO docs VALUES ($1, $2, $3, $4) ON CONFLICT (kind, tenant, key) DO NOTHING",
                kind, tenant, key, doc)) > 0

        inserted: bool = await self._call(run)
        return inserted

    async def replace_doc_if(self, kind: str, tenant: str, key: str, doc: Doc, member: str) -> bool:
        member_name(member)

        async def run(conn: asyncpg.Connection, tx: _Tx) -> bool:  # an ordinary call: its answer is needed
            return row_count(await conn.execute(
                "UPDATE docs SET doc = $4 WHERE kind = $1 AND tenant = $2 AND key = $3 "
                "AND (doc -> $5::text) IS NOT DISTINCT FROM $6::jsonb", kind, tenant, key, doc, member,
                doc.get(member))) > 0

        replaced: bool = await self._call(run)
        return replaced

    async def delete_doc(self, kind: str, tenant: str, key: str) -> bool:
        op = _DocOps(deletes=[(kind, tenant, key)], count=True)
        await self._doc_call(op)
        return op.deleted > 0

    async def put_docs(self, kind: str, docs: list[tuple[str, str, Doc]]) -> None:
        if docs:
            await self._doc_call(_DocOps(puts=[(kind, tenant, key, doc) for tenant, key, doc in docs]))

    async def delete_docs(self, kind: str, keys: list[tuple[str, str]]) -> None:
        if keys:
            await self._doc_call(_DocOps(deletes=[(kind, tenant, key) for tenant, key in keys]))

    async def _doc_call(self, op: _DocOps) -> None:
        async def run(conn: asyncpg.Connection, tx: _Tx) -> None:  # the same write; `_run_batch` uses `rows`
            await _write_doc_ops(conn, [op])

        await self._call(run, _Rows(_write_doc_ops, op))

    @_reading
    async def list_docs(self, kind: str) -> list[tuple[str, str, Doc]]:
        return [(r[0], r[1], r[2]) for r in await self.pool.fetch(
            "SELECT tenant, key, doc FROM docs WHERE kind = $1 ORDER BY tenant, key", kind)]

    @_reading
    async def list_docs_page(self, kind: str, after: tuple[str, str] | None, limit: int) -> list[tuple[str, str, Doc]]:
        if after is None:
            rows = await self.pool.fetch(
                "SELECT tenant, key, doc FROM docs WHERE kind = $1 ORDER BY tenant, key LIMIT $2", kind, limit)
        else:  # (tenant, key) are COLLATE "C", as the primary key's order: the row comparison walks that index
            rows = await self.pool.fetch(
                "SELECT tenant, key, doc FROM docs WHERE kind = $1 AND (tenant, key) > ($2, $3) "
                "ORDER BY tenant, key LIMIT $4", kind, after[0], after[1], limit)
        return [(r[0], r[1], r[2]) for r in rows]

    @_reading
    async def get_doc(self, kind: str, tenant: str, key: str) -> Doc | None:
        doc: Doc | None = await self.pool.fetchval(
            "SELECT doc FROM docs WHERE kind = $1 AND tenant = $2 AND key = $3", kind, tenant, key)
        return doc

    # -- alarms ------------------------------------------------------------------------------
    async def save_alarm(self, row: AlarmRow, history: list[Doc]) -> None:
        await self.save_alarms([(row, history)])

    async def save_alarms(self, saves: list[tuple[AlarmRow, list[Doc]]],
                          docs: Sequence[tuple[str, str, str, Doc]] = ()) -> None:
        # One call for the alarms decided together (one future, one queue item), their rows merged with the
        # batch's other alarm saves (`_save_alarm_lists`), in order; `docs` in the same commit.
        if not saves and not docs:
            return
        values = [(alarm_values(row), [(row.tenant, row.id, int(h["seq"]), to_micros(parse_iso(h["at"])),
                                        str(h["action"]), str(h.get("actor") or ""), h) for h in history])
                  for row, history in saves]
        call = _AlarmSaves(values, _DocOps(puts=list(docs)) if docs else None)

        async def run(conn: asyncpg.Connection, tx: _Tx) -> None:  # the same write; `_run_batch` uses `rows`
            await _save_alarm_lists(conn, [call])

        await self._call(run, _Rows(_save_alarm_lists, call), urgent=True)

    @_reading
    async def get_alarm(self, tenant: str, alarm_id: str) -> Doc | None:
        doc: Doc | None = await self.pool.fetchval("SELECT doc FROM alarms WHERE tenant = $1 AND id = $2", tenant, alarm_id)
        return doc

    @_reading
    async def alarm_history(self, tenant: str, alarm_id: str) -> list[Doc]:
        return [r[0] for r in await self.pool.fetch(
            "SELECT doc FROM alarm_history WHERE tenant = $1 AND alarm_id = $2 ORDER BY seq", tenant, alarm_id)]

    @_reading
    async def query_alarms(self, tenant: str, query: AlarmQuery) -> tuple[list[Doc], int | None]:
        where, params = alarm_where(tenant, query)
        total = None
        if query.count:
            total = int((await self._fetch(f"SELECT count(*) FROM alarms a WHERE {where}", params))[0][0])
        docs = [r[0] for r in await self._fetch(
            f"SELECT doc FROM alarms a WHERE {where} ORDER BY raised_at DESC, id LIMIT ? OFFSET ?",
            [*params, query.limit, query.offset])]
        return docs, total

    @_reading
    async def open_alarms(self) -> list[tuple[str, Doc]]:
        return [(r[0], r[1]) for r in await self.pool.fetch(
            "SELECT tenant, doc FROM alarms WHERE status <> 'closed' ORDER BY raised_at")]

    @_reading
    async def alarm_stats(self, tenant: str, query: AlarmQuery, false_outcomes: tuple[str, ...]) -> AlarmStats:
        where, params = alarm_where(tenant, query)
        stats = AlarmStats()

        async def counts(column: str) -> dict[str, int]:
            return {str(k or ""): int(n) for k, n in await self._fetch(alarm_count_sql(where, column), params)}

        stats.by_level, stats.by_kind = await counts("a.level"), await counts("a.kind")
        stats.by_type, stats.by_status = await counts("a.entity_type"), await counts("a.status")
        stats.total = sum(stats.by_kind.values())
        stats.ack_seconds = [int(d) / 1e6 for (d,) in await self._fetch(alarm_ack_sql(where), params)]

        async def false_rate(column: str) -> list[tuple[str, int, int]]:
            return [(str(k), int(c), int(f)) for k, c, f in await self._fetch(
                alarm_false_rate_sql(where, column, false_outcomes), [*false_outcomes, *params])]

        stats.false_by_entity, stats.false_by_parent = await false_rate("a.entity_id"), await false_rate("a.parent_id")
        return stats


    # -- operations centre (SQL in postgres_ops.py) ------------------------------------------------
    async def save_ops_event(self, row: OpsEventRow, audit: list[AuditRow],
                             docs: Sequence[tuple[str, str, str, Doc]] = ()) -> None:
        async def run(conn: asyncpg.Connection, tx: _Tx) -> None:
            await ops_sql.save_event(conn, row, audit)
            if docs:
                await conn.executemany(_DOC_PUT, list(docs))

        await self._call(run)

    @_reading
    async def get_ops_event(self, tenant: str, event_id: str) -> Doc | None:
        return await ops_sql.get_doc(self.pool, "ops_events", tenant, event_id)

    @_reading
    async def query_ops_events(self, tenant: str, query: OpsEventQuery) -> tuple[list[Doc], int | None]:
        return await ops_sql.event_page(self.pool, tenant, query)

    async def save_grant(self, row: GrantRow, audit: list[AuditRow], expected_version: int | None = None,
                         docs: Sequence[tuple[str, str, str, Doc]] = ()) -> bool:
        async def run(conn: asyncpg.Connection, tx: _Tx) -> bool:
            if not await ops_sql.save_grant(conn, row, audit, expected_version):
                return False
            if docs:
                await conn.executemany(_DOC_PUT, list(docs))
            return True

        saved: bool = await self._call(run)
        return saved

    @_reading
    async def get_grant(self, tenant: str, grant_id: str) -> Doc | None:
        return await ops_sql.get_doc(self.pool, "ops_grants", tenant, grant_id)

    @_reading
    async def query_grants(self, tenant: str, query: GrantQuery) -> tuple[list[Doc], int | None]:
        return await ops_sql.grant_page(self.pool, tenant, query)

    @_reading
    async def live_grant_tenants(self, valid_at: int) -> list[str]:
        return await ops_sql.live_grant_tenants(self.pool, valid_at)

    async def append_audit(self, rows: list[AuditRow]) -> None:
        await self._call(lambda conn, tx: ops_sql.insert_audit(conn, rows))

    @_reading
    async def query_audit(self, tenant: str, query: AuditQuery) -> tuple[list[Doc], int | None]:
        return await ops_sql.audit_page(self.pool, tenant, query)

    @_reading
    async def audit_counts(self, tenant: str, query: AuditQuery) -> list[tuple[str, str, str, int]]:
        return await ops_sql.audit_counts(self.pool, tenant, query)

    # -- retention (ucity/store/retention.py): bounded deletions, each one writer call ------------------
    async def purge_history(
        self, scope: HistoryScope, before: int, limit: int, after: int = 0, dry_run: bool = False,
        tenants: TenantCounts | None = None,
    ) -> tuple[int, int | None]:
        # The window of series is read on the readers' pool: the writer only deletes.
        tenant_of, last, full = await _purge_window(self.pool, scope, after)
        following = last if full else None
        if not tenant_of:
            return 0, following
        sids = sorted(tenant_of)
        if dry_run:
            counted = await self.pool.fetchval(
                "SELECT count(*) FROM instances WHERE sid = ANY($1::bigint[]) AND ts < $2", sids, before)
            return int(counted), following

        async def run(conn: asyncpg.Connection, tx: _Tx) -> TenantCounts:
            # Partition by partition, oldest first, each by its rows' ctids (a TID scan). One statement over the
            # partitioned table joined the chosen rows back to every partition, which PostgreSQL 15 planned as a
            # hash join over a sequential scan of the whole history: 230-270 ms per 2,000 rows of 400,000 in 16
            # months, against 4-7 ms this way (measured, alternated, inside rolled-back transactions). Counted per
            # series (whose tenant the window says) by the statement itself.
            deleted = 0
            counts: TenantCounts = {}
            for table in _purge_partitions(await conn.fetch(_PARTITIONS), before):
                for sid, gone in await conn.fetch(
                        f"WITH gone AS (DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {table} WHERE "
                        "sid = ANY($1::bigint[]) AND ts < $2 LIMIT $3)) RETURNING sid) "
                        "SELECT sid, count(*) FROM gone GROUP BY sid", sids, before, limit - deleted):
                    counts.setdefault(tenant_of[int(sid)], [0, 0])[0] += int(gone)
                    deleted += int(gone)
                if deleted >= limit:
                    break
            if deleted < limit:  # the window is done: its series left without history (QA10 F8)
                await self._drop_emptied(conn, tx, sids)
            return counts

        counts: TenantCounts = await self._call(run)
        add_counts(tenants, counts)
        deleted = sum(c[0] for c in counts.values())
        return deleted, (after if deleted >= limit else following)  # a full batch: the same window again

    async def _drop_emptied(self, conn: asyncpg.Connection, tx: _Tx, sids: list[int]) -> int:
        """Delete the series of `sids` that have no instance left, and the temporal entity of each of their
        entities that then has neither a series nor a current state, so that an entity id (`Person:elder-2`) does
        not outlive its history (QA10 F8). Only when some series is empty, the series epoch is bumped first: that
        waits for every other process's write under way (each holds it FOR SHARE: `_lock_entities`,
        `_check_epoch`), which may be adding to these series or creating these entities, holds back new ones
        until the commit and makes them forget their cached ids; emptiness and current state are then checked
        again by statements that see what those writes committed."""
        empty = "s.sid = ANY($1::bigint[]) AND NOT EXISTS (SELECT 1 FROM instances i WHERE i.sid = s.sid)"
        keys = sorted({(str(t), str(i)) for t, i in await conn.fetch(
            f"SELECT DISTINCT s.tenant, s.entity_id FROM series s WHERE {empty}", sids)})
        if not keys:
            return 0
        tenants, ids = [k[0] for k in keys], [k[1] for k in keys]
        await conn.execute("UPDATE meta SET value = (value::bigint + 1)::text WHERE key = 'series_epoch'")
        dropped = await conn.fetch(f"DELETE FROM series s WHERE {empty} RETURNING s.tenant", sids)
        self._sids.clear()
        tx.sids.clear()
        await conn.execute(
            "DELETE FROM temporal_entities te USING unnest($1::text[], $2::text[]) AS u(t, i) "
            "WHERE te.tenant = u.t AND te.id = u.i "
            "AND NOT EXISTS (SELECT 1 FROM series s WHERE s.tenant = u.t AND s.entity_id = u.i) "
            "AND NOT EXISTS (SELECT 1 FROM entities e WHERE e.tenant = u.t AND e.id = u.i)", tenants, ids)
        if dropped:
            log.info("retention: %d series left without history deleted", len(dropped))
        return len(dropped)

    async def purge_audit(self, before: int, limit: int, dry_run: bool = False,
                          tenants: TenantCounts | None = None) -> int:
        if dry_run:
            return await ops_sql.purge_audit(self.pool, before, limit, True)
        result: int = await self._purge(lambda conn, counts: ops_sql.purge_audit(conn, before, limit, False, counts),
                                        tenants)
        return result

    async def purge_ops_events(self, before: int, limit: int, dry_run: bool = False,
                               tenants: TenantCounts | None = None) -> tuple[int, int]:
        if dry_run:
            return await ops_sql.purge_events(self.pool, before, limit, True)
        result: tuple[int, int] = await self._purge(
            lambda conn, counts: ops_sql.purge_events(conn, before, limit, False, counts), tenants)
        return result

    async def purge_alarms(self, before: int, limit: int, dry_run: bool = False,
                           tenants: TenantCounts | None = None) -> tuple[int, int]:
        if dry_run:
            return await _purge_alarms(self.pool, before, limit, True)
        result: tuple[int, int] = await self._purge(
            lambda conn, counts: _purge_alarms(conn, before, limit, False, counts), tenants)
        return result

    async def _purge(self, fn: Callable[[asyncpg.Connection, TenantCounts], Awaitable[Any]],
                     tenants: TenantCounts | None) -> Any:
        """One purge in the writer; its per-tenant counts (fresh for each run of it) added to `tenants`."""

        async def run(conn: asyncpg.Connection, tx: _Tx) -> tuple[Any, TenantCounts]:
            counts: TenantCounts = {}
            return await fn(conn, counts), counts

        result, counts = await self._call(run)
        add_counts(tenants, counts)
        return result


_ALARM_UPSERT = numbered(
    f"INSERT INTO alarms ({ALARM_COLUMNS}) VALUES ({','.join('?' * len(ALARM_COLUMNS.split(',')))}) "
    "ON CONFLICT (tenant, id) DO UPDATE SET "
    + ", ".join(f"{c.strip()} = excluded.{c.strip()}" for c in ALARM_COLUMNS.split(",")[2:]))

_ALARM_HISTORY_UPSERT = (
    "INSERT INTO alarm_history VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (tenant, alarm_id, seq) "
    "DO UPDATE SET at = excluded.at, action = excluded.action, actor = excluded.actor, doc = excluded.doc")


_DOC_PUT = "INSERT INTO docs VALUES ($1, $2, $3, $4) ON CONFLICT (kind, tenant, key) DO UPDATE SET doc = excluded.doc"
_DOC_DELETE = "DELETE FROM docs WHERE kind = $1 AND tenant = $2 AND key = $3"


@dataclass(slots=True)
class _DocOps:
    """One call's document writes: puts (kind, tenant, key, doc) or deletes (kind, tenant, key); `count`: the
    call wants the number of documents its deletes removed (`deleted`)."""

    puts: list[tuple[str, str, str, Doc]] = field(default_factory=list)
    deletes: list[tuple[str, str, str]] = field(default_factory=list)
    count: bool = False
    deleted: int = 0


async def _write_doc_ops(conn: asyncpg.Connection, ops: list[_DocOps]) -> None:
    """The document writes of a batch's calls, in batch order: consecutive puts in one `executemany`, and
    consecutive deletes in another (a delete whose count is wanted on its own)."""
    run: list[tuple[Any, ...]] = []
    run_sql = ""

    async def flush() -> None:
        if run:
            await conn.executemany(run_sql, run)
            run.clear()

    for op in ops:
        op.deleted = 0
        for sql, rows in ((_DOC_PUT, op.puts), (_DOC_DELETE, op.deletes)):
            if not rows:
                continue
            if sql != run_sql:
                await flush()
                run_sql = sql
            if op.count and sql == _DOC_DELETE:
                await flush()
                for row in rows:
                    op.deleted += row_count(await conn.execute(sql, *row))
                continue
            run.extend(rows)
    await flush()


@dataclass
class _AlarmSaves:
    """One `save_alarms` call: its alarm saves (row values, history entries) and its documents."""

    saves: list[tuple[list[Any], list[tuple[Any, ...]]]]
    docs: _DocOps | None = None


async def _save_alarm_lists(conn: asyncpg.Connection, calls: list[_AlarmSaves]) -> None:
    """The saves of a batch's `save_alarms` calls, in batch order, then their documents (in the same commit)."""
    saves = [save for call in calls for save in call.saves]
    if saves:
        await _save_alarms(conn, saves)
    ops = [call.docs for call in calls if call.docs is not None]
    if ops:
        await _write_doc_ops(conn, ops)


async def _save_alarms(conn: asyncpg.Connection, saves: list[tuple[list[Any], list[tuple[Any, ...]]]]) -> None:
    """Alarm rows and their history entries, in order (a later save of an alarm wins): `executemany` sends
    all the rows of a statement in one round trip."""
    await conn.executemany(_ALARM_UPSERT, [values for values, _ in saves])
    entries = [entry for _, history in saves for entry in history]
    if entries:
        await conn.executemany(_ALARM_HISTORY_UPSERT, entries)


_SCOPE_MATCH = ("EXISTS (SELECT 1 FROM jsonb_array_elements_text(CASE jsonb_typeof(e.doc -> 'scope') "
                "WHEN 'array' THEN e.doc -> 'scope' WHEN 'string' THEN jsonb_build_array(e.doc -> 'scope') END) "
                "AS s(v) WHERE s.v ~ ?)")


def _types_sql(expr: TypeExpr, column: str) -> tuple[str, list[Any]]:
    """OR of AND-groups of type IRIs: one array containment per group (GIN-indexed)."""
    return "(" + " OR ".join([f"{column} @> ?::text[]"] * len(expr.any_of)) + ")", [list(g) for g in expr.any_of]


# -- geo-queries: PostGIS ----------------------------------------------------------------------------------
# "the entity's geometry <georel> the query geometry", as GeoQuery defines them (OGC Simple Features).
_GEO_PREDICATES = {
    "within": "ST_Within", "contains": "ST_Contains", "intersects": "ST_Intersects", "equals": "ST_Equals",
    "disjoint": "ST_Disjoint", "overlaps": "ST_Overlaps",
}
_QUERY_GEOMETRY = "ST_Force2D(ST_SetSRID(ST_GeomFromGeoJSON(?), 4326))"


def _geo_sql(geo: Any) -> tuple[str, list[Any]]:
    """The condition on `g.geom` of a GeoQuery; distances in metres on the WGS84 spheroid (geography)."""
    shape = orjson.dumps({"type": geo.geometry_type, "coordinates": orjson.loads(geo.coordinates)}).decode()
    rel = str(geo.georel.value)
    if rel != "near":
        return f"{_GEO_PREDICATES[rel]}(g.geom, {_QUERY_GEOMETRY})", [shape]
    clauses: list[str] = []
    params: list[Any] = []
    if geo.max_distance is not None:
        clauses.append(f"ST_DWithin(g.geom::geography, {_QUERY_GEOMETRY}::geography, ?::float8)")
        params.extend([shape, float(geo.max_distance)])
    if geo.min_distance is not None:
        clauses.append(f"NOT ST_DWithin(g.geom::geography, {_QUERY_GEOMETRY}::geography, ?::float8)")
        params.extend([shape, float(geo.min_distance)])
    return "(" + " AND ".join(clauses) + ")", params


# -- history: reading and aggregating (functions of a pool connection) -----------------------------------
# Aggregation SQL per value kind of a series (its newest instance decides), as in the SQLite store:
# numbers and booleans aggregate `vnum`, texts compare their value in code point order, other
# kinds are only counted.
_VALUE_JSON = "COALESCE(" + ", ".join(f"doc -> '{m}'" for m in VALUE_MEMBERS) + ")"
_TEXT_VALUE = "(doc ->> 'value') COLLATE \"C\""
_NUMERIC_SQL: dict[str, tuple[str, ...]] = {
    "totalCount": ("count(*)",),
    "distinctCount": ("count(DISTINCT vnum)",),
    "sum": ("sum(vnum)",),
    "avg": ("avg(vnum)",),
    "min": ("min(vnum)",),
    "max": ("max(vnum)",),
    "sumsq": ("sum(vnum * vnum)",),
    "stddev": ("count(vnum)", "sum(vnum)", "sum(vnum * vnum)"),  # combined by sql.stddev
}
_TEXT_SQL: dict[str, tuple[str, ...]] = {
    **{m: ("NULL",) for m in _NUMERIC_SQL}, "stddev": ("NULL", "NULL", "NULL"),
    "totalCount": ("count(*)",), "distinctCount": (f"count(DISTINCT {_TEXT_VALUE})",),
    "min": (f"min({_TEXT_VALUE})",), "max": (f"max({_TEXT_VALUE})",),
}
_OTHER_SQL: dict[str, tuple[str, ...]] = {
    **_TEXT_SQL, "distinctCount": (f"count(DISTINCT {_VALUE_JSON})",), "min": ("NULL",), "max": ("NULL",),
}


# -- retention ------------------------------------------------------------------------------------------
async def _purge_window(pool: asyncpg.Pool, scope: HistoryScope, after: int) -> tuple[dict[int, str], int, bool]:
    """(the series `scope` covers among the PURGE_SERIES_WINDOW after `after`, id -> tenant; the window's last id;
    whether the window was full: more series may follow)."""
    rows = await pool.fetch(
        "SELECT s.sid, s.attr, te.types, s.tenant FROM (SELECT sid, tenant, entity_id, attr FROM series WHERE sid > $1 "
        "ORDER BY sid LIMIT $2) s LEFT JOIN temporal_entities te ON te.tenant = s.tenant AND te.id = s.entity_id",
        after, PURGE_SERIES_WINDOW)
    if not rows:
        return {}, after, False
    chosen = {int(r[0]): str(r[3]) for r in rows if scope.covers(list(r[2] or ()), r[1])}
    return chosen, max(int(r[0]) for r in rows), len(rows) == PURGE_SERIES_WINDOW


_PARTITIONS = ("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
               "WHERE i.inhparent = 'instances'::regclass")


def _purge_partitions(rows: list[asyncpg.Record], before: int) -> list[str]:
    """The history partitions that may hold rows older than `before`, oldest first, the default one (rows
    written from outside the store, of any time) last. Names are the store's own (`instances_pYYYYMM`)."""
    months = sorted(str(r[0]) for r in rows if str(r[0]).startswith("instances_p") and str(r[0])[-6:].isdigit())
    chosen = [name for name in months if int(partition_bounds((int(name[-6:-2]), int(name[-2:])))[0]) < before]
    return chosen + [str(r[0]) for r in rows if r[0] == "instances_default"]


_CLOSED_ALARMS = "status = 'closed' AND closed_at < $1"  # as the partial index alarms_closed (migration 3)


async def _purge_alarms(conn: asyncpg.Connection | asyncpg.Pool, before: int, limit: int,
                        dry_run: bool, counts: TenantCounts | None = None) -> tuple[int, int]:
    """Delete at most `limit` alarms closed before `before`, with their history entries."""
    return await ops_sql.purge_closed(conn, ("alarms", _CLOSED_ALARMS), ("alarm_history", "alarm_id"), before, limit,
                                      dry_run, counts)


async def _temporal_entities(
    conn: asyncpg.Connection, tenant: str, query: TemporalQuery
) -> tuple[list[tuple[str, list[str]]], int | None]:
    """(id, type IRIs) of the page of temporal entities the query selects, and their count."""
    if query.entity_ids_only is not None and not query.entity_ids_only:
        return [], 0 if query.count else None
    clauses: list[str] = ["te.tenant = ?"]
    params: list[Any] = [tenant]
    if query.ids:
        clauses.append("te.id = ANY(?::text[])")
        params.append(list(query.ids))
    if query.entity_ids_only is not None:
        clauses.append("te.id = ANY(?::text[])")
        params.append(list(query.entity_ids_only))
    if query.id_pattern:
        clauses.append("te.id ~ ?")
        params.append(query.id_pattern)
    if query.types is not None:
        sql, tparams = _types_sql(query.types, "te.types")
        clauses.append(sql)
        params.extend(tparams)
    if query.instances_only:
        sql, sparams = _has_series(query)
        clauses.append(sql)
        params.extend(sparams)
    where = " AND ".join(clauses)
    total = None
    try:
        if query.count:
            total = int(await conn.fetchval(numbered(f"SELECT count(*) FROM temporal_entities te WHERE {where}"), *params))
        rows = await conn.fetch(
            numbered(f"SELECT te.id, te.types FROM temporal_entities te WHERE {where} ORDER BY te.id LIMIT ? OFFSET ?"),
            *params, query.entity_limit, query.entity_offset)
    except asyncpg.InvalidRegularExpressionError as exc:
        raise BadRequest(f"invalid regular expression: {exc}") from exc
    return [(r[0], list(r[1])) for r in rows], total


def _has_series(query: TemporalQuery) -> tuple[str, list[Any]]:
    """EXISTS: the entity has an instance of a selected attribute (and dataset) in the window."""
    sql = "EXISTS (SELECT 1 FROM series s WHERE s.tenant = te.tenant AND s.entity_id = te.id"
    params: list[Any] = []
    if query.attrs:
        sql += " AND " + in_list("s.attr", query.attrs)
        params.extend(query.attrs)
    if query.dataset_ids is not None:
        sql += " AND " + in_list("s.dataset_id", datasets(query))
        params.extend(datasets(query))
    where, wparams = window(time_column(query.timeproperty), query, "i.")
    sql += f" AND EXISTS (SELECT 1 FROM instances i WHERE i.sid = s.sid{where})"
    return sql + ")", [*params, *wparams]


async def _attr_series(
    conn: asyncpg.Connection, tenant: str, entity_id: str, query: TemporalQuery
) -> dict[str, list[tuple[int, str]]]:
    """attribute IRI -> [(sid, dataset_id)] of an entity's selected series."""
    sql, params = "SELECT sid, attr, dataset_id FROM series WHERE tenant = ? AND entity_id = ?", [tenant, entity_id]
    if query.attrs:
        sql += " AND " + in_list("attr", query.attrs)
        params.extend(query.attrs)
    if query.dataset_ids is not None:
        sql += " AND " + in_list("dataset_id", datasets(query))
        params.extend(datasets(query))
    out: dict[str, list[tuple[int, str]]] = {}
    for sid, attr, dataset in await conn.fetch(numbered(sql + " ORDER BY attr, dataset_id"), *params):
        out.setdefault(attr, []).append((int(sid), dataset))
    return out


async def _history(conn: asyncpg.Connection, sids: list[int], column: str, query: TemporalQuery) -> HistorySeries:
    """One page of an attribute's instances over all its series, oldest first."""
    want, newest = page(query)
    where, params = window(column, query, "i.")
    order = "DESC" if newest else "ASC"
    # Each series reads at most one page from its (sid, ts) index, in one statement; then they are merged.
    rows = await conn.fetch(numbered(
        f"SELECT x.t, x.iid, x.doc FROM unnest(?::bigint[]) AS s(sid), LATERAL (SELECT i.{column} AS t, i.iid, i.doc "
        f"FROM instances i WHERE i.sid = s.sid{where} ORDER BY i.{column} {order}, i.iid {order} LIMIT ?) AS x"),
        sids, *params, want + 1)
    ordered = sorted(rows, key=lambda r: (r[0], r[1]), reverse=newest)
    cut = truncated(query, len(ordered), want)
    ordered = ordered[:want]
    if newest:
        ordered.reverse()
    return HistorySeries([int(r[0]) for r in ordered], [r[2] for r in ordered], cut)


async def _oldest(conn: asyncpg.Connection, series: list[tuple[int, str]], column: str, query: TemporalQuery) -> int | None:
    """The earliest time among an attribute's series in the window (where periods start by default)."""
    where, params = window(column, query)
    found = await conn.fetchval(numbered(f"SELECT min({column}) FROM instances WHERE sid = ANY(?::bigint[]){where}"),
                                [sid for sid, _ in series], *params)
    return int(found) if found is not None else None


async def _aggregate(
    conn: asyncpg.Connection, sid: int, dataset: str, column: str, query: TemporalQuery,
    aggregation: Aggregation, origin: int,
) -> AggregateSeries:
    """One series aggregated per period by SQL GROUP BY over the integer time column."""
    want, newest = page(query)
    where, params = window(column, query)
    period = aggregation.period_us
    bucket, bounds, bucket_params = ((f"({column} - ?::bigint) / ?::bigint", "NULL, NULL", [origin, period]) if period
                                     else ("0", f"min({column}), max({column})", []))
    attr_type, sql_of = await _series_kind(conn, sid)
    exprs = ", ".join(e for method in aggregation.methods for e in sql_of[method])
    order = "DESC" if newest else "ASC"
    rows = await conn.fetch(numbered(
        f"SELECT {bucket} AS b, {bounds}, {exprs} FROM instances WHERE sid = ?{where} "
        f"GROUP BY 1 ORDER BY 1 {order} LIMIT ?"), *bucket_params, sid, *params, want + 1)
    series = AggregateSeries(attr_type, dataset or None, [], [], [], truncated(query, len(rows), want))
    rows = rows[:want]
    for row in reversed(rows) if newest else rows:
        start = origin + int(row[0]) * period if period else (query.time_from if query.time_from is not None else row[1])
        end = start + period if period else (query.time_to if query.time_to is not None else row[2])
        series.times.append(int(start))
        series.ends.append(int(end))
        series.values.append(combine([_plain(v) for v in list(row)[3:]], aggregation.methods, sql_of))
    return series


def _plain(value: Any) -> Any:
    """Aggregates as JSON-ready Python values (count(*) is an int already; numeric sums are floats)."""
    return float(value) if value is not None and type(value).__name__ == "Decimal" else value


async def _series_kind(conn: asyncpg.Connection, sid: int) -> tuple[str, dict[str, tuple[str, ...]]]:
    """(attribute type, aggregation SQL) of a series, from its newest instance."""
    row = await conn.fetchrow(
        "SELECT doc ->> 'type', jsonb_typeof(doc -> 'value'), vnum FROM instances WHERE sid = $1 "
        "ORDER BY ts DESC LIMIT 1", sid)
    if row is None:
        return "Property", _OTHER_SQL
    attr_type = str(row[0] or "Property")
    if row[2] is not None:
        return attr_type, _NUMERIC_SQL
    return attr_type, _TEXT_SQL if attr_type == "Property" and row[1] == "string" else _OTHER_SQL


def postgres_url(url: str) -> str:
    """A `postgresql://` URL as asyncpg takes it (`postgres://` is accepted too)."""
    if not url.startswith(("postgresql://", "postgres://")):
        raise ValueError(f"not a PostgreSQL URL: {url}")
    return url
