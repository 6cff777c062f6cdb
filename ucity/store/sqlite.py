"""The embedded default store: SQLite in WAL mode, with group commit.

One writer thread owns the write connection. Callers put operation groups on its queue; the
thread takes what is queued and what keeps arriving (each write within 0.2 ms of the previous one,
all within `group_commit_ms`, up to `group_commit_max`), applies them in one transaction, commits,
and only then resolves the callers' futures: an acknowledged write is a committed write. Writes sent
while a batch commits form the next batch. Reads use one connection per worker thread (WAL readers
never block the writer) and run off the event loop.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import queue
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ucity.core.bus import Context, EntityChange
from ucity.core.clock import Clock, SystemClock, iso_micros, parse_iso, parse_iso_clamped, to_iso, to_micros
from ucity.core.errors import UcityError, Unavailable, WriteRefused
from ucity.core.ids import uuid4_texts
from ucity.ngsild.qsql import register_sqlite_functions
from ucity.store import sqlite_ops as ops_sql
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
from ucity.store.migrations.sqlite import MIGRATIONS
from ucity.store.sql import ALARM_COLUMNS as _ALARM_COLUMNS
from ucity.store.sql import (
    alarm_ack_sql,
    alarm_count_sql,
    alarm_false_rate_sql,
    alarm_values,
    any_of_sql,
    geo_attr_changed,
    geo_of,
    geo_parts,
)
from ucity.store.sql import alarm_where as _alarm_where
from ucity.store.sql import combine as _combine
from ucity.store.sql import datasets as _datasets
from ucity.store.sql import in_list as _in
from ucity.store.sql import merge_instance as _merge_instance
from ucity.store.sql import page as _page
from ucity.store.sql import time_column as _time_column
from ucity.store.sql import truncated as _truncated
from ucity.store.sql import window as _window

log = logging.getLogger(__name__)
# History (migration 6): a document row per instance, appended in rid order, and its key row. An
# observed instance (seq 0) replaces the one of the same series and observedAt (the key's trigger drops
# the replaced document): writing an observation twice (a redelivery) records it once.
INSERT_DOCS = "INSERT INTO instance_docs (rid, sid, ts, doc) VALUES (?,?,?,?)"
INSERT_KEYS = ("INSERT INTO instance_keys (sid, ts, seq, vnum, created, rid) VALUES (?,?,?,?,?,?) "
               "ON CONFLICT (sid, ts, seq) DO UPDATE SET vnum=excluded.vnum, created=excluded.created, rid=excluded.rid")
# The highest rid given so far, kept with each commit that gives new ones (ids are never reused).
SAVE_RID = "INSERT OR REPLACE INTO meta VALUES ('instance_rid', ?)"
NEXT_RID = ("SELECT max(coalesce((SELECT max(rid) FROM instance_docs), 0), "
            "coalesce((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'instance_rid'), 0)) + 1")
INSTANCE_PREFIX = "urn:ngsi-ld:Instance:"
# A batch waits for more writes only while they keep coming: each within this of the previous one (and
# all within `group_commit_ms`). Measured (in-process PATCH, 32 in flight): 2 ms after the first write ->
# 6,200/s, drained queue only -> 12,000/s with more, smaller commits, this gap -> 11,100/s at the same
# batch sizes as the 2 ms window.
IDLE_GAP_S = 0.0002


def open_connection(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")  # an acknowledged write survives a power cut too
    conn.execute("PRAGMA foreign_keys=OFF")
    conn.execute("PRAGMA busy_timeout=30000")
    # Deleted content is overwritten with zeros, whatever the SQLite build's default (Debian's has it on, the
    # upstream default is off): personal data a retention purge deletes leaves the file (QA10 F7).
    conn.execute("PRAGMA secure_delete=ON")
    register_sqlite_functions(conn)  # regexp (idPattern, q ~=, scopeQ) and the q datetime functions
    return conn


def migrate(conn: sqlite3.Connection) -> int:
    """Apply pending migrations; return the schema version."""
    conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    version = int(row[0]) if row else 0
    for number, statements in MIGRATIONS:
        if number <= version:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in statements:
                conn.execute(statement)
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(number),))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        version = number
    return version


@dataclass(slots=True)
class _Group:
    tenant: str
    mutations: list[Mutation]
    context: Context
    future: asyncio.Future[list[Outcome | Exception]]
    results: list[Outcome | Exception] = field(default_factory=list)
    changes: list[EntityChange] = field(default_factory=list)


@dataclass(slots=True)
class _Call:
    """Any other write (history, documents): fn(conn) run inside a group-committed transaction. It never
    writes `entities`: entity documents change only through mutations (the writer keeps them parsed)."""

    fn: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future[Any]
    result: Any = None
    error: BaseException | None = None
    # True for a call that neither reads nor writes the entity and history tables (documents, alarms,
    # operations events, grants, audit): the batch's pending entity and history writes need not be flushed
    # before it, nor instance rids read again after it. An alarm storm sends one such call per alarm and per
    # rule state between the readings' mutations; each flush split the readings' executemany statements.
    independent: bool = False
    # True for a call that someone is waiting on to see an event (an alarm's save: the operators' stream
    # announces it once committed). Independent too; see `urgent_first`.
    urgent: bool = False


def _kind(item: _Group | _Call) -> int:
    if isinstance(item, _Group):
        return MUTATION
    return URGENT if item.urgent else MOVABLE if item.independent else CALL


@dataclass(slots=True)
class _Work:
    """One group commit in progress: the entities as the batch sees them, and the writes it holds back
    to send in one statement each (entity documents, history rows) just before the commit."""

    rows: dict[tuple[str, str], tuple[int | None, Any]] = field(default_factory=dict)  # -> (eid, doc or its text)
    # eid -> its document as the batch leaves it: the UPDATE's row (text, modifiedAt, eid) when the batch
    # wrote the entity once, the document itself (serialized at the flush) when it wrote it again
    updates: dict[int, Doc | tuple[str, str, int]] = field(default_factory=dict)
    docs: list[tuple[int, int, int, str]] = field(default_factory=list)  # instance_docs rows
    keys: list[tuple[int, int, int, float | None, int, int]] = field(default_factory=list)  # instance_keys rows
    tenants: set[str] = field(default_factory=set)  # inserted into `tenants` by this batch
    times: dict[str, int] = field(default_factory=dict)  # observedAt text -> its microseconds (iso_micros)
    next_rid: int = 0  # the next instance rid to give (0: not read yet in this transaction)
    saved_rid: int = 0  # the highest rid given that `meta` holds
    # The time of the batch's writes (modifiedAt text, and its microseconds for history rows without
    # observedAt), read once per transaction ("": not yet): formatting and parsing it again for every
    # single-attribute PATCH of a group commit cost about 4.5 µs each in the writer (measured, one thread).
    now: str = ""
    created: int = 0


def _refused(exc: Exception) -> bool:
    """Whether a failed write would fail the same way again: data SQLite rejects (a constraint, a value it cannot
    bind) or ucity's own failure on it (not an sqlite3 error at all). An OperationalError (locked, disk full, I/O)
    or another DatabaseError may pass: the write is `Unavailable`, to be sent again."""
    return isinstance(exc, sqlite3.IntegrityError | sqlite3.DataError | sqlite3.ProgrammingError
                      | sqlite3.InterfaceError) or not isinstance(exc, sqlite3.Error)


def instance_id(rid: int) -> str:
    """The instanceId of an instance recorded since migration 6: derived from its rid, never stored."""
    return f"{INSTANCE_PREFIX}{rid}"


def instance_rid(text: str) -> int | None:
    """The rid an instanceId derives from; None for any other id (random UUIDs recorded before migration 6)."""
    if text.startswith(INSTANCE_PREFIX):
        digits = text[len(INSTANCE_PREFIX):]
        if digits.isascii() and digits.isdigit() and len(digits) < 19:
            return int(digits)
    return None


def new_instance_ids(count: int) -> list[str]:
    """`count` ids `urn:ngsi-ld:Instance:<random UUID v4>`, from one read of the system's randomness."""
    return [f"urn:ngsi-ld:Instance:{u}" for u in uuid4_texts(count)]


def type_sql(expr: TypeExpr, has_type: str) -> tuple[str, list[Any]]:
    """SQL for a type expression, `has_type` being a fragment with one `?` for the type IRI."""
    return any_of_sql(expr.any_of, has_type)


def _attr_path() -> str:
    return "'$.attrs.' || json_quote(?)"


class SqliteStore(Store):
    """SQLite backend of the store contract."""

    def __init__(
        self,
        path: str | Path,
        clock: Clock | None = None,
        group_commit_ms: float = 2.0,
        group_commit_max: int = 1000,
        max_queued: int = 0,
        entity_cache: int = 10_000,
        series_cache: int = 1_000_000,
        exclusive: bool = False,
    ) -> None:
        self.path = str(path)
        self.exclusive = exclusive  # own the file (`_own_file`); `ucity serve` does (store.exclusive)
        self.max_queued = max_queued  # 0: unbounded
        # The documents of the entities written last, parsed, as committed (eid, document): the writer
        # thread is the only writer of `entities`, so a device reporting again is neither read nor parsed
        # again. Documents are never changed once made (apply functions return new ones); about 5 KB each.
        self.entity_cache_max = entity_cache
        self._entity_cache: OrderedDict[tuple[str, str], tuple[int, Doc]] = OrderedDict()
        self.clock = clock or SystemClock()
        self.group_commit_s = group_commit_ms / 1000.0
        self.group_commit_idle_s = min(self.group_commit_s, IDLE_GAP_S)
        self.group_commit_max = group_commit_max
        # A SimpleQueue: put and get are C calls; queue.Queue's run a Condition in Python (about 4 µs per
        # write on the event loop and as much in the writer, measured on single-attribute PATCH).
        self._queue: queue.SimpleQueue[_Group | _Call | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._local = threading.local()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._commit_callbacks: list[Callable[[Context, tuple[EntityChange, ...]], None]] = []
        # Series ids by entity: (tenant, entity id) -> {attribute IRI, or (IRI, datasetId) for a dataset: sid}.
        # One lookup per written entity, then one per history row in its small map (a row used to build and
        # look up a 4-tuple key in the map of every series).
        # Bounded by `series_cache` sids: the entities cached first are dropped (not the whole map), so
        # that with more series than it holds only the overflow is read again, not every series.
        self._series_cache: OrderedDict[tuple[str, str], dict[str | tuple[str, str], int]] = OrderedDict()
        self._series_cached = 0  # how many sids `_series_cache` holds (bounded)
        self.series_cache_max = series_cache
        self._tenants: set[str] = set()  # tenants known to be in the tenants table
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self.commits = 0
        self.committed_ops = 0
        # (next rid to give, highest rid `meta` holds) as the last commit left them; (0, 0): read them
        # again (at start, after a failed commit, after a batch whose call wrote the tables itself).
        self._rids = (0, 0)
        self._failed: BaseException | None = None
        self._lock_file: int | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            if self.exclusive:
                self._own_file()
        self._loop = asyncio.get_running_loop()
        conn = open_connection(self.path)
        migrate(conn)
        self._writer = threading.Thread(target=self._write_loop, args=(conn,), name="ucity-sqlite-writer", daemon=True)
        self._writer.start()

    def _own_file(self) -> None:
        """Take the file for this store alone (an exclusive `flock` on `<file>.lock`, released at stop or when the
        process ends, however it ends): the writer's caches of entities, series and instance ids hold only if no
        other writer changes the file, so a second ucity process (or store) on the same file is refused at start
        with the first one's pid, instead of both writing (docs/storage.md)."""
        fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise Unavailable(f"SQLite file {self.path} is in use by another ucity process (pid {holder}); one process "
                              "owns a SQLite file: stop it, or use PostgreSQL for several processes") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._lock_file = fd

    async def stop(self) -> None:
        if self._writer is not None:
            self._queue.put(None)
            await asyncio.to_thread(self._writer.join)
            self._writer = None
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()
        if self._lock_file is not None:
            os.close(self._lock_file)  # and with it the lock
            self._lock_file = None

    def health(self) -> dict[str, Any]:
        alive = self._writer is not None and self._writer.is_alive()
        return {"ok": alive and self._failed is None, "backend": "sqlite", "path": self.path,
                "commits": self.commits, "committed_operations": self.committed_ops,
                "queued": self._queue.qsize()}

    def on_commit(self, callback: Callable[[Context, tuple[EntityChange, ...]], None]) -> None:
        self._commit_callbacks.append(callback)

    # -- writing -----------------------------------------------------------------------------
    async def mutate(self, tenant: str, mutations: list[Mutation], context: Context) -> list[Outcome | Exception]:
        if self._writer is None or self._loop is None:
            raise Unavailable("the store is not running")
        if self.max_queued and self._queue.qsize() >= self.max_queued:  # a burst: back-pressure, not memory
            raise Unavailable(f"{self._queue.qsize()} writes are waiting for a commit; retry shortly")
        future: asyncio.Future[list[Outcome | Exception]] = self._loop.create_future()
        self._queue.put(_Group(tenant, mutations, context, future))
        return await future

    async def _call(self, fn: Callable[[sqlite3.Connection], Any], independent: bool = False,
                    urgent: bool = False) -> Any:
        if self._writer is None or self._loop is None:
            raise Unavailable("the store is not running")
        future: asyncio.Future[Any] = self._loop.create_future()
        self._queue.put(_Call(fn, future, independent=independent or urgent, urgent=urgent))
        return await future

    def _write_loop(self, conn: sqlite3.Connection) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                conn.close()
                return
            batch, stop = self._collect(first)
            ahead, batch = urgent_first(batch, _kind)
            if ahead:
                self._commit_batch(conn, ahead)
            if batch:
                self._commit_batch(conn, batch)
            if stop:
                conn.close()
                return

    def _collect(self, first: _Group | _Call) -> tuple[list[_Group | _Call], bool]:
        """The batch that `first` opens, and whether the store is stopping. It takes what is queued, then
        waits for more only while writes keep arriving: each within `group_commit_idle_s` of the previous
        one, all within `group_commit_s` of the first (at most `group_commit_max`). Once the queue is
        drained and nothing comes, waiting longer cannot pay: writes sent while this batch commits (the
        commit releases the GIL) queue up and form the next one, so a lone write is not held for the window."""
        batch = [first]
        get, get_nowait, idle = self._queue.get, self._queue.get_nowait, self.group_commit_idle_s
        deadline = time.monotonic() + self.group_commit_s
        while len(batch) < self.group_commit_max:
            try:
                item = get_nowait()
            except queue.Empty:
                if idle <= 0:
                    break
                wait = min(deadline - time.monotonic(), idle)
                if wait <= 0:
                    break
                try:
                    item = get(timeout=wait)
                except queue.Empty:
                    break
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    def _commit_batch(self, conn: sqlite3.Connection, batch: list[_Group | _Call], resolve: bool = True) -> None:
        """Commit `batch` in one transaction, then hand its items to the loop (`_resolve`), unless `resolve` is
        False (`_commit_each`'s parts, which its group resolves). On a failure every item is tried alone; a lone
        group of several mutations that fails in a way that would recur (`_refused`) is committed a mutation at a
        time, so that one poison write does not fail, or hold for ever, the others sent with it."""
        work = _Work()
        work.next_rid, work.saved_rid = self._rids
        try:
            conn.execute("BEGIN IMMEDIATE")
            self._prefetch(conn, batch, work)
            for item in batch:
                self._run_item(conn, item, work)
            self._flush(conn, work)
            conn.execute("COMMIT")
        except Exception as exc:  # unexpected database failure: retry one by one
            log.exception("group commit failed; retrying items one at a time")
            self._forget_series()
            self._entity_cache.clear()
            self._rids = (0, 0)
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if len(batch) > 1:
                for item in batch:
                    self._reset(item)
                    self._commit_batch(conn, [item], resolve)
                return
            item = batch[0]
            if isinstance(item, _Group) and len(item.mutations) > 1 and _refused(exc):
                self._commit_each(conn, item)
            else:
                self._fail_item(item, exc)
        else:
            self.commits += 1
            self.committed_ops += len(batch)
            self._tenants |= work.tenants
            self._rids = (work.next_rid, work.saved_rid)  # the writer is the only one to give rids
            self._remember(work)
        if resolve:
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._resolve, batch)

    def _commit_each(self, conn: sqlite3.Connection, group: _Group) -> None:
        """Commit the group's mutations one per transaction, in order: each gets its own outcome (`WriteRefused`
        for the one the store refuses), and the group's changes are those committed."""
        results: list[Outcome | Exception] = []
        changes: list[EntityChange] = []
        for mutation in group.mutations:
            part = _Group(group.tenant, [mutation], group.context, group.future)
            self._commit_batch(conn, [part], resolve=False)
            results += part.results
            changes += part.changes
        group.results, group.changes = results, changes

    @staticmethod
    def _reset(item: _Group | _Call) -> None:
        if isinstance(item, _Group):
            item.results.clear()
            item.changes.clear()
        else:
            item.result, item.error = None, None

    @staticmethod
    def _fail_item(item: _Group | _Call, exc: Exception) -> None:
        error: UcityError = Unavailable(f"the store could not commit: {exc}")
        if isinstance(item, _Group):
            if _refused(exc):  # it would fail again: not to be sent again (a `_Call` keeps Unavailable)
                error = WriteRefused(f"the store refused the write: {type(exc).__name__}: {exc}")
            item.results = [error] * len(item.mutations)
            item.changes = []
        else:
            item.error = error

    def _remember(self, work: _Work) -> None:
        """Keep the committed documents of the batch's entities (forget deleted ones), newest last."""
        cache: OrderedDict[tuple[str, str], Any] = self._entity_cache  # values: the (eid, dict) tuples of work.rows
        pop, to_end = cache.pop, cache.move_to_end
        for key, found in work.rows.items():  # found: (eid, document), kept as it is (no new tuple per entity)
            if found[0] is not None and isinstance(found[1], dict):
                cache[key] = found
                to_end(key)
            else:
                pop(key, None)
        # An OrderedDict evicts its oldest in O(1). A plain dict re-ordered by pop and insert made
        # `next(iter(cache))` walk the holes its deletions leave at the front: with more entities
        # written than the cache holds, about 30 µs per evicted entity (measured, 100,000 devices).
        for _ in range(len(cache) - self.entity_cache_max):
            cache.popitem(last=False)

    def _prefetch(self, conn: sqlite3.Connection, batch: list[_Group | _Call], work: _Work) -> None:
        """Read every entity the batch's mutations touch that the writer does not keep: one SELECT per
        tenant, not one per mutation."""
        wanted: dict[str, set[str]] = {}
        for item in batch:
            if isinstance(item, _Group):
                wanted.setdefault(item.tenant, set()).update(m.entity_id for m in item.mutations)
        cache, rows = self._entity_cache, work.rows
        for tenant, wanted_ids in wanted.items():
            ids: list[str] = []  # the ones to read
            for entity_id in wanted_ids:  # one plain loop: it runs for every entity of every batch
                key = (tenant, entity_id)
                kept = cache.get(key)
                if kept is None:
                    ids.append(entity_id)
                else:
                    rows[key] = kept
            if not ids:
                continue
            # One row holding them all: fetching row by row re-takes the GIL per row, which under a
            # busy event loop waits a switch interval each time (measured: 3 ms -> 660 ms for 1,000 rows).
            # The documents (JSON that orjson wrote) are spliced in as they are, not quoted as strings:
            # one parse of them all instead of a parse of the array and another of each document.
            (found,) = conn.execute(
                "SELECT '[' || group_concat('[' || eid || ',' || json_quote(id) || ',' || doc || ']') || ']' "
                "FROM entities WHERE tenant=? AND id IN (SELECT value FROM json_each(?))",
                (tenant, orjson.dumps(ids).decode()),
            ).fetchone()
            for eid, entity_id, doc in orjson.loads(found or "[]"):
                work.rows[(tenant, entity_id)] = (eid, doc)
            for entity_id in ids:
                work.rows.setdefault((tenant, entity_id), (None, None))

    @staticmethod
    def _flush(conn: sqlite3.Connection, work: _Work) -> None:
        """Write what the batch's mutations left pending: entity documents, then history rows."""
        if work.updates:
            # Most rows were made by `_write_entity`; an entity written again in the batch is serialized here.
            dumps = orjson.dumps
            conn.executemany("UPDATE entities SET doc=?, modified_at=? WHERE eid=?",
                             [u if isinstance(u, tuple) else (dumps(u).decode(), u.get("modifiedAt", ""), eid)
                              for eid, u in work.updates.items()])
            work.updates.clear()
        if work.docs:
            conn.executemany(INSERT_DOCS, work.docs)
            conn.executemany(INSERT_KEYS, work.keys)
            work.docs.clear()
            work.keys.clear()
        if work.next_rid - 1 > work.saved_rid:
            conn.execute(SAVE_RID, (work.next_rid - 1,))
            work.saved_rid = work.next_rid - 1

    def _run_item(self, conn: sqlite3.Connection, item: _Group | _Call, work: _Work) -> None:
        if isinstance(item, _Call):
            if not item.independent:
                self._flush(conn, work)  # a call reads and writes the tables itself: it must see every earlier write
                work.next_rid = 0  # and the rids it gives are read again by later mutations
            try:
                item.result = item.fn(conn)
            except UcityError as exc:
                item.error = exc
            return
        if item.mutations and item.tenant not in self._tenants and item.tenant not in work.tenants:
            conn.execute("INSERT OR IGNORE INTO tenants VALUES (?)", (item.tenant,))
            work.tenants.add(item.tenant)
        now = work.now
        if not now:
            now = work.now = to_iso(self.clock.now())
            work.created = to_micros(parse_iso(now))
        created = work.created
        for mutation in item.mutations:
            item.results.append(self._apply(conn, item, mutation, now, created, work))

    def _current(self, conn: sqlite3.Connection, tenant: str, entity_id: str, work: _Work) -> tuple[int | None, Doc | None]:
        """(eid, document) of an entity as this batch has it: prefetched, written earlier in the batch, or read now."""
        found = work.rows.get((tenant, entity_id))
        if found is None:
            row = conn.execute("SELECT eid, doc FROM entities WHERE tenant=? AND id=?", (tenant, entity_id)).fetchone()
            found = (int(row[0]), row[1]) if row else (None, None)
        eid, doc = found
        if isinstance(doc, str):
            doc = orjson.loads(doc)
            work.rows[(tenant, entity_id)] = (eid, doc)
        return eid, doc

    def _apply(
        self, conn: sqlite3.Connection, item: _Group, mutation: Mutation, now: str, created: int, work: _Work
    ) -> Outcome | Exception:
        key = (item.tenant, mutation.entity_id)
        found = work.rows.get(key)  # mostly prefetched and parsed already: `_current` only for the rest
        eid, before = found if found is not None and not isinstance(found[1], str) else self._current(
            conn, item.tenant, mutation.entity_id, work)
        try:
            outcome = mutation.apply(before, now)
        except UcityError as exc:
            return exc
        if not outcome.changed:
            return outcome
        if self.write_checks and outcome.doc is not None:
            for check in self.write_checks:
                refused = check(item.tenant, mutation.entity_id, outcome.doc, outcome.attrs)
                if refused is not None:
                    return refused
        eid = self._write_entity(conn, item.tenant, mutation.entity_id, eid, before, outcome.doc, work, outcome.attrs)
        # The next mutation of this entity in the batch starts from this outcome (apply functions never
        # change the document they are given, so it is also the `after` published below).
        work.rows[key] = (eid, outcome.doc)
        if outcome.instances:
            self._rows(conn, item.tenant, mutation.entity_id, outcome.instances, created, work)
        item.changes.append(EntityChange(
            item.tenant, mutation.entity_id, outcome.operation, before, outcome.doc, outcome.attrs, outcome.instances
        ))
        return outcome

    def _write_entity(
        self, conn: sqlite3.Connection, tenant: str, entity_id: str, eid: int | None, before: Doc | None,
        after: Doc | None, work: _Work, touched: frozenset[str] | None = None,
    ) -> int | None:
        """Write an entity's new document (None deletes it); returns its eid. Updates of existing
        entities wait in `work` to be written in one executemany, the last one of an entity winning."""
        if after is None:
            if eid is not None:
                work.updates.pop(eid, None)
                conn.execute("DELETE FROM entities WHERE eid=?", (eid,))
                conn.execute("DELETE FROM entity_types WHERE eid=?", (eid,))
                self._drop_geo(conn, eid)
            return None
        if eid is None:
            cur = conn.execute(
                "INSERT INTO entities (tenant, id, doc, created_at, modified_at) VALUES (?,?,?,?,?)",
                (tenant, entity_id, orjson.dumps(after).decode(), after.get("createdAt", ""), after.get("modifiedAt", "")),
            )
            eid = int(cur.lastrowid or 0)
        elif eid in work.updates:  # written again in this batch: serialized once, at the flush
            work.updates[eid] = after
        else:
            # Serialized now, while the document's objects are still in the CPU's caches: at the flush,
            # after the rest of the batch, the same dumps cost about 1.4 times as much (measured, 1,000
            # entities per batch). Documents are never changed once made (apply functions return new ones).
            work.updates[eid] = (orjson.dumps(after).decode(), after.get("modifiedAt", ""), eid)
        retyped = before is None or before.get("type") != after.get("type")
        if retyped:
            conn.execute("DELETE FROM entity_types WHERE eid=?", (eid,))
            conn.executemany(
                "INSERT OR IGNORE INTO entity_types (eid, tenant, type) VALUES (?,?,?)",
                [(eid, tenant, t) for t in after.get("type", [])],
            )
        # Only touched attributes can have changed (Outcome.attrs); compared as values, no GeoJSON text per write.
        if _geo_changed(before, after, touched if before is not None else None):
            self._drop_geo(conn, eid)
            for attr, geometry in geo_parts(after):
                self._add_geo(conn, eid, tenant, attr, geometry)
        if retyped:  # the history's type index
            conn.execute(
                "INSERT INTO temporal_entities (tenant, id, types) VALUES (?,?,?) "
                "ON CONFLICT (tenant, id) DO UPDATE SET types=excluded.types",
                (tenant, entity_id, orjson.dumps(after.get("type", [])).decode()),
            )
        return eid

    @staticmethod
    def _drop_geo(conn: sqlite3.Connection, eid: int) -> None:
        conn.execute("DELETE FROM geo_rtree WHERE gid IN (SELECT gid FROM geo_meta WHERE eid=?)", (eid,))
        conn.execute("DELETE FROM geo_meta WHERE eid=?", (eid,))

    @staticmethod
    def _add_geo(conn: sqlite3.Connection, eid: int, tenant: str, attr: str, geometry: str) -> None:
        from ucity.ngsild.geo import GeoQueryError, geometry_bbox

        try:
            minx, miny, maxx, maxy = geometry_bbox(orjson.loads(geometry))
        except GeoQueryError:
            return  # validated on input; an old invalid value is simply not indexed
        cur = conn.execute("INSERT INTO geo_meta (eid, tenant, attr, geojson) VALUES (?,?,?,?)", (eid, tenant, attr, geometry))
        conn.execute("INSERT INTO geo_rtree VALUES (?,?,?,?,?)", (cur.lastrowid, minx, maxx, miny, maxy))

    def _forget_series(self) -> None:
        self._series_cache.clear()
        self._series_cached = 0

    def _series_id(self, conn: sqlite3.Connection, tenant: str, entity_id: str, attr: str, dataset: str) -> int:
        name: str | tuple[str, str] = (attr, dataset) if dataset else attr
        series = self._series_cache.get((tenant, entity_id))
        sid = series.get(name) if series is not None else None
        if sid is None:
            key = (tenant, entity_id, attr, dataset)
            row = conn.execute(
                "SELECT sid FROM series WHERE tenant=? AND entity_id=? AND attr=? AND dataset_id=?", key
            ).fetchone()
            if row is None:
                cur = conn.execute("INSERT INTO series (tenant, entity_id, attr, dataset_id) VALUES (?,?,?,?)", key)
                sid = int(cur.lastrowid or 0)
            else:
                sid = int(row[0])
            if series is None:
                if self._series_cached >= self.series_cache_max:
                    self._evict_series()
                series = self._series_cache[(tenant, entity_id)] = {}
            series[name] = sid
            self._series_cached += 1
        return sid

    def _evict_series(self) -> None:
        """Drop the entities cached first until a tenth of the bound is free. Clearing the whole map, as
        before, made every series be read again once per fill whenever the city had more series than the
        bound (every write's rows read back their sids while devices reported in turn)."""
        cache, target = self._series_cache, self.series_cache_max * 9 // 10
        while cache and self._series_cached > target:
            _, series = cache.popitem(last=False)
            self._series_cached -= len(series)

    def _rows(
        self, conn: sqlite3.Connection, tenant: str, entity_id: str,
        rows: Sequence[tuple[str, dict[str, Any]]], created: int, work: _Work,
    ) -> None:
        """Add the history rows of attribute instances to `work`; each instance gets its rid (and so its
        instanceId) here. The stored document leaves the id out: it is derived from the rid on reading."""
        if not work.next_rid:
            work.next_rid = work.saved_rid = int(conn.execute(NEXT_RID).fetchone()[0])
            work.saved_rid -= 1
        rid = work.next_rid
        cache, docs, keys, dumps, times = self._series_cache, work.docs, work.keys, orjson.dumps, work.times
        series = cache.get((tenant, entity_id)) or {}  # this entity's sids (a missing one: `_series_id`)
        last_observed, last_ts = None, 0
        for attr, instance in rows:
            dataset = instance.get("datasetId")
            sid = series.get((attr, dataset) if dataset else attr) or self._series_id(conn, tenant, entity_id, attr,
                                                                                        dataset or "")
            observed = instance.get("observedAt")
            if not observed:
                ts = created
            elif observed == last_observed:  # the attributes of one measure share their time
                ts = last_ts
            else:
                known = times.get(observed)  # devices of one batch mostly share their times too
                if known is None:
                    known = times[observed] = iso_micros(observed)
                ts = last_ts = known
                last_observed = observed
            instance.pop("instanceId", None)  # a retried commit gives the instance a new rid
            docs.append((rid, sid, ts, dumps(instance).decode()))
            keys.append((sid, ts, 0 if observed else rid, _vnum(instance), created, rid))
            instance["instanceId"] = instance_id(rid)
            rid += 1
        work.next_rid = rid

    def _resolve(self, batch: list[_Group | _Call]) -> None:
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

    # -- reading -----------------------------------------------------------------------------
    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = open_connection(self.path)
            conn.execute("PRAGMA query_only=ON")
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    async def _read(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        return await asyncio.to_thread(lambda: fn(self._reader()))

    async def get_entity(self, tenant: str, entity_id: str) -> Doc | None:
        def run(conn: sqlite3.Connection) -> Doc | None:
            row = conn.execute("SELECT doc FROM entities WHERE tenant=? AND id=?", (tenant, entity_id)).fetchone()
            return orjson.loads(row[0]) if row else None

        result: Doc | None = await self._read(run)
        return result

    def _where(self, conn: sqlite3.Connection, tenant: str, query: EntityQuery) -> tuple[str, list[Any]]:
        clauses = ["e.tenant = ?"]
        params: list[Any] = [tenant]
        if query.ids:
            clauses.append("e.id IN (" + ",".join("?" * len(query.ids)) + ")")
            params.extend(query.ids)
        if query.id_pattern:
            clauses.append("regexp(?, e.id)")
            params.append(query.id_pattern)
        if query.types is not None:
            sql, tparams = type_sql(
                query.types, "EXISTS (SELECT 1 FROM entity_types t WHERE t.eid = e.eid AND t.type = ?)"
            )
            clauses.append(sql)
            params.extend(tparams)
        if query.attrs_any:
            clauses.append("(" + " OR ".join(
                [f"json_type(e.doc, {_attr_path()}) IS NOT NULL"] * len(query.attrs_any)) + ")")
            params.extend(query.attrs_any)
        if query.scope is not None:
            # Each pattern must match one of the entity's scopes (a pattern per AND-group member).
            sql, sparams = any_of_sql(
                query.scope.any_of, "EXISTS (SELECT 1 FROM json_each(e.doc, '$.scope') s WHERE regexp(?, s.value))"
            )
            clauses.append(sql)
            params.extend(sparams)
        if query.q is not None:
            from ucity.ngsild.qsql import compile_q_sqlite

            sql, qparams = compile_q_sqlite(query.q.expr, query.q.resolve)
            clauses.append("(" + sql + ")")
            params.extend(qparams)
        if query.geo is not None:
            geo = query.geo
            conn.create_function("ucity_geo_match", 1, geo.matches_text)
            sub = "SELECT m.eid FROM geo_meta m WHERE m.tenant = ? AND m.attr = ?"
            sub_params: list[Any] = [tenant, query.geo_attr]
            box = geo.bbox()
            if box is not None:
                sub = (
                    "SELECT m.eid FROM geo_rtree r JOIN geo_meta m ON m.gid = r.gid WHERE m.tenant = ? AND m.attr = ?"
                    " AND r.maxx >= ? AND r.minx <= ? AND r.maxy >= ? AND r.miny <= ?"
                )
                sub_params += [box[0], box[2], box[1], box[3]]
            clauses.append(f"e.eid IN ({sub} AND ucity_geo_match(m.geojson))")
            params.extend(sub_params)
        return " AND ".join(clauses), params

    async def query_entities(self, tenant: str, query: EntityQuery) -> tuple[list[Doc], int | None]:
        def run(conn: sqlite3.Connection) -> tuple[list[Doc], int | None]:
            where, params = self._where(conn, tenant, query)
            total = None
            if query.count:
                total = int(conn.execute(f"SELECT count(*) FROM entities e WHERE {where}", params).fetchone()[0])
            docs: list[Doc] = []
            if query.limit > 0:
                order = "e.modified_at DESC, e.id" if query.order == "modified" else "e.id"
                rows = conn.execute(
                    f"SELECT e.doc FROM entities e WHERE {where} ORDER BY {order} LIMIT ? OFFSET ?",
                    [*params, query.limit, query.offset],
                ).fetchall()
                docs = [orjson.loads(r[0]) for r in rows]
            return docs, total

        result: tuple[list[Doc], int | None] = await self._read(run)
        return result

    async def entity_ids(self, tenant: str, query: EntityQuery) -> list[str]:
        def run(conn: sqlite3.Connection) -> list[str]:
            where, params = self._where(conn, tenant, query)
            return [r[0] for r in conn.execute(f"SELECT e.id FROM entities e WHERE {where} ORDER BY e.id", params)]

        result: list[str] = await self._read(run)
        return result

    async def tenant_exists(self, tenant: str) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            return conn.execute("SELECT 1 FROM tenants WHERE tenant=?", (tenant,)).fetchone() is not None

        result: bool = await self._read(run)
        return result

    async def tenants(self) -> list[str]:
        def run(conn: sqlite3.Connection) -> list[str]:
            return [r[0] for r in conn.execute("SELECT tenant FROM tenants ORDER BY tenant")]

        result: list[str] = await self._read(run)
        return result

    async def types_summary(self, tenant: str) -> list[tuple[str, list[str], int]]:
        def run(conn: sqlite3.Connection) -> list[tuple[str, list[str], int]]:
            counts = dict(conn.execute(
                "SELECT type, count(*) FROM entity_types WHERE tenant=? GROUP BY type", (tenant,)).fetchall())
            attrs: dict[str, set[str]] = {t: set() for t in counts}
            for t, key in conn.execute(
                "SELECT DISTINCT t.type, j.key FROM entity_types t JOIN entities e ON e.eid = t.eid, "
                "json_each(e.doc, '$.attrs') j WHERE t.tenant = ?", (tenant,)
            ):
                attrs[t].add(key)
            return [(t, sorted(attrs[t]), int(c)) for t, c in sorted(counts.items())]

        result: list[tuple[str, list[str], int]] = await self._read(run)
        return result

    async def attributes_summary(self, tenant: str) -> list[tuple[str, list[str], list[str], int]]:
        def run(conn: sqlite3.Connection) -> list[tuple[str, list[str], list[str], int]]:
            info: dict[str, tuple[set[str], set[str], set[int]]] = {}
            for key, kind, types, eid in conn.execute(
                "SELECT j.key, json_extract(j.value, '$[0].type'), e.doc -> '$.type', e.eid "
                "FROM entities e, json_each(e.doc, '$.attrs') j WHERE e.tenant = ?", (tenant,)
            ):
                entry = info.setdefault(key, (set(), set(), set()))
                entry[0].update(orjson.loads(types))
                entry[1].add(kind or "Property")
                entry[2].add(eid)
            return [(a, sorted(t), sorted(k), len(e)) for a, (t, k, e) in sorted(info.items())]

        result: list[tuple[str, list[str], list[str], int]] = await self._read(run)
        return result

    # -- history -----------------------------------------------------------------------------
    async def append_history(
        self, tenant: str, entity_id: str, types: list[str], rows: list[tuple[str, dict[str, Any]]]
    ) -> None:
        now = to_iso(self.clock.now())
        for _, instance in rows:  # history written directly (temporal API) is stamped when recorded
            instance.setdefault("createdAt", now)
            instance.setdefault("modifiedAt", now)

        def run(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT OR IGNORE INTO tenants VALUES (?)", (tenant,))
            row = conn.execute("SELECT types FROM temporal_entities WHERE tenant=? AND id=?", (tenant, entity_id)).fetchone()
            merged = list(dict.fromkeys([*(orjson.loads(row[0]) if row else []), *types]))
            conn.execute(
                "INSERT INTO temporal_entities (tenant, id, types) VALUES (?,?,?) "
                "ON CONFLICT (tenant, id) DO UPDATE SET types=excluded.types",
                (tenant, entity_id, orjson.dumps(merged).decode()),
            )
            if rows:  # an instance of the same attribute, datasetId and observedAt as a recorded one replaces it
                work = _Work()
                self._rows(conn, tenant, entity_id, _one_per_time(rows), to_micros(parse_iso(now)), work)
                self._flush(conn, work)

        await self._call(run)

    async def temporal_entity_exists(self, tenant: str, entity_id: str) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            return conn.execute(
                "SELECT 1 FROM temporal_entities WHERE tenant=? AND id=?", (tenant, entity_id)).fetchone() is not None

        result: bool = await self._read(run)
        return result

    async def temporal_query(self, tenant: str, query: TemporalQuery) -> tuple[list[TemporalEntity], int | None]:
        def run(conn: sqlite3.Connection) -> tuple[list[TemporalEntity], int | None]:
            entities, total = _temporal_entities(conn, tenant, query)
            column = _time_column(query.timeproperty)
            out: list[TemporalEntity] = []
            for entity_id, types in entities:
                entity = TemporalEntity(entity_id, types)
                for attr, series in _attr_series(conn, tenant, entity_id, query).items():
                    history = _history(conn, [sid for sid, _ in series], column, query)
                    if history.instances:
                        entity.attrs[attr] = history
                out.append(entity)
            return out, total

        result: tuple[list[TemporalEntity], int | None] = await self._read(run)
        return result

    async def temporal_aggregate(
        self, tenant: str, query: TemporalQuery, aggregation: Aggregation
    ) -> tuple[list[AggregatedEntity], int | None]:
        def run(conn: sqlite3.Connection) -> tuple[list[AggregatedEntity], int | None]:
            entities, total = _temporal_entities(conn, tenant, query)
            column = _time_column(query.timeproperty)
            out: list[AggregatedEntity] = []
            for entity_id, types in entities:
                entity = AggregatedEntity(entity_id, types)
                for attr, series in _attr_series(conn, tenant, entity_id, query).items():
                    origin = query.time_from if query.time_from is not None else _oldest(conn, series, column, query)
                    if origin is None:
                        continue
                    found = [_aggregate(conn, sid, dataset, column, query, aggregation, origin) for sid, dataset in series]
                    if any(s.times for s in found):
                        entity.attrs[attr] = [s for s in found if s.times]
                out.append(entity)
            return out, total

        result: tuple[list[AggregatedEntity], int | None] = await self._read(run)
        return result

    async def delete_history(
        self, tenant: str, entity_id: str, attr: str | None = None, dataset_id: str | None = None,
        instance_id: str | None = None, all_datasets: bool = False,
    ) -> int:
        def run(conn: sqlite3.Connection) -> int:
            clauses, params = ["tenant = ?", "entity_id = ?"], [tenant, entity_id]
            if attr is not None:
                clauses.append("attr = ?")
                params.append(attr)
                if not all_datasets:
                    clauses.append("dataset_id = ?")
                    params.append(dataset_id or "")
            sids = [r[0] for r in conn.execute("SELECT sid FROM series WHERE " + " AND ".join(clauses), params)]
            deleted = 0
            if instance_id is not None:
                found = _find_instance(conn, instance_id, sids)
                if found is not None:  # its key row; the trigger deletes the document
                    deleted += conn.execute("DELETE FROM instance_keys WHERE sid=? AND ts=? AND rid=?", found[:3]).rowcount
            else:
                for sid in sids:
                    deleted += conn.execute("DELETE FROM instance_keys WHERE sid=?", (sid,)).rowcount
                    # counted too: an attribute whose instances were all deleted one by one still exists
                    deleted += conn.execute("DELETE FROM series WHERE sid=?", (sid,)).rowcount
            if attr is None and instance_id is None:
                deleted += conn.execute("DELETE FROM temporal_entities WHERE tenant=? AND id=?", (tenant, entity_id)).rowcount
            self._forget_series()
            return deleted

        result: int = await self._call(run)
        return result

    async def replace_history_instance(
        self, tenant: str, entity_id: str, attr: str, instance_id: str, instance: dict[str, Any]
    ) -> bool:
        now = to_iso(self.clock.now())

        def run(conn: sqlite3.Connection) -> bool:
            sids = [r[0] for r in conn.execute(
                "SELECT sid FROM series WHERE tenant=? AND entity_id=? AND attr=?", (tenant, entity_id, attr))]
            found = _find_instance(conn, instance_id, sids)
            if found is None:
                return False
            sid, old_ts, rid, text, stored_id = found
            old = orjson.loads(text)
            old.setdefault("instanceId", instance_id)
            merged = _merge_instance(old, instance, now)
            observed = merged.get("observedAt")
            ts = to_micros(parse_iso_clamped(observed)) if observed else old_ts  # may be a stored time
            if stored_id is None:  # derived from the rid, never stored
                del merged["instanceId"]
            conn.execute("UPDATE instance_docs SET doc=?, ts=? WHERE rid=?", (orjson.dumps(merged).decode(), ts, rid))
            conn.execute("UPDATE instance_keys SET ts=?, seq=?, vnum=? WHERE sid=? AND ts=? AND rid=?",
                         (ts, 0 if observed else rid, _vnum(merged), sid, old_ts, rid))
            return True

        result: bool = await self._call(run)
        return result

    # -- documents ---------------------------------------------------------------------------
    async def put_doc(self, kind: str, tenant: str, key: str, doc: Doc) -> None:
        text = orjson.dumps(doc).decode()
        await self._call(lambda conn: conn.execute(_DOC_PUT, (kind, tenant, key, text)) and None, independent=True)

    async def insert_doc(self, kind: str, tenant: str, key: str, doc: Doc) -> bool:
        text = orjson.dumps(doc).decode()
        inserted: bool = await self._call(lambda conn: conn.execute(
            "INSERT INTO docs VALUES (?,?,?,?) ON CONFLICT (kind, tenant, key) DO NOTHING",
            (kind, tenant, key, text)).rowcount > 0, independent=True)
        return inserted

    async def replace_doc_if(self, kind: str, tenant: str, key: str, doc: Doc, member: str) -> bool:
        path = f"$.{member_name(member)}"
        text, expected = orjson.dumps(doc).decode(), orjson.dumps(doc.get(member)).decode()
        replaced: bool = await self._call(lambda conn: conn.execute(
            "UPDATE docs SET doc=? WHERE kind=? AND tenant=? AND key=? AND json_extract(doc, ?) IS json_extract(?, '$')",
            (text, kind, tenant, key, path, expected)).rowcount > 0, independent=True)
        return replaced

    async def delete_doc(self, kind: str, tenant: str, key: str) -> bool:
        result: bool = await self._call(lambda conn: conn.execute(
            "DELETE FROM docs WHERE kind=? AND tenant=? AND key=?", (kind, tenant, key)).rowcount > 0, independent=True)
        return result

    async def put_docs(self, kind: str, docs: list[tuple[str, str, Doc]]) -> None:
        if not docs:
            return
        dumps = orjson.dumps
        rows = [(kind, tenant, key, dumps(doc).decode()) for tenant, key, doc in docs]
        await self._call(lambda conn: conn.executemany(_DOC_PUT, rows) and None, independent=True)

    async def delete_docs(self, kind: str, keys: list[tuple[str, str]]) -> None:
        if not keys:
            return
        rows = [(kind, tenant, key) for tenant, key in keys]
        await self._call(lambda conn: conn.executemany(
            "DELETE FROM docs WHERE kind=? AND tenant=? AND key=?", rows) and None, independent=True)

    async def list_docs(self, kind: str) -> list[tuple[str, str, Doc]]:
        def run(conn: sqlite3.Connection) -> list[tuple[str, str, Doc]]:
            return [(t, k, orjson.loads(d)) for t, k, d in conn.execute(
                "SELECT tenant, key, doc FROM docs WHERE kind=? ORDER BY tenant, key", (kind,))]

        result: list[tuple[str, str, Doc]] = await self._read(run)
        return result

    async def list_docs_page(self, kind: str, after: tuple[str, str] | None, limit: int) -> list[tuple[str, str, Doc]]:
        def run(conn: sqlite3.Connection) -> list[tuple[str, str, Doc]]:
            rows = (conn.execute("SELECT tenant, key, doc FROM docs WHERE kind=? ORDER BY tenant, key LIMIT ?",
                                 (kind, limit)) if after is None else
                    conn.execute("SELECT tenant, key, doc FROM docs WHERE kind=? AND (tenant, key) > (?, ?) "
                                 "ORDER BY tenant, key LIMIT ?", (kind, after[0], after[1], limit)))
            return [(t, k, orjson.loads(d)) for t, k, d in rows]

        result: list[tuple[str, str, Doc]] = await self._read(run)
        return result

    async def get_doc(self, kind: str, tenant: str, key: str) -> Doc | None:
        def run(conn: sqlite3.Connection) -> Doc | None:
            row = conn.execute("SELECT doc FROM docs WHERE kind=? AND tenant=? AND key=?", (kind, tenant, key)).fetchone()
            return orjson.loads(row[0]) if row is not None else None

        result: Doc | None = await self._read(run)
        return result

    # -- alarms ------------------------------------------------------------------------------
    async def save_alarm(self, row: AlarmRow, history: list[Doc]) -> None:
        await self.save_alarms([(row, history)])

    async def save_alarms(self, saves: list[tuple[AlarmRow, list[Doc]]],
                          docs: Sequence[tuple[str, str, str, Doc]] = ()) -> None:
        # One call, one executemany per table, whatever the number of alarms: in an alarm storm a call per
        # alarm cost a queue item, a future and a wake-up each, and the writer a GIL hand-over per statement.
        if not saves and not docs:
            return
        dumps = orjson.dumps
        rows = [_alarm_values(row) for row, _ in saves]
        entries = [(row.tenant, row.id, int(h["seq"]), iso_micros(h["at"]), str(h["action"]),
                    str(h.get("actor") or ""), dumps(h).decode()) for row, history in saves for h in history]
        puts = [(kind, tenant, key, dumps(doc).decode()) for kind, tenant, key, doc in docs]

        def run(conn: sqlite3.Connection) -> None:
            if rows:
                conn.executemany(_ALARM_UPSERT, rows)
            if entries:
                conn.executemany("INSERT OR REPLACE INTO alarm_history VALUES (?,?,?,?,?,?,?)", entries)
            if puts:
                conn.executemany(_DOC_PUT, puts)

        await self._call(run, independent=True, urgent=True)

    async def get_alarm(self, tenant: str, alarm_id: str) -> Doc | None:
        def run(conn: sqlite3.Connection) -> Doc | None:
            found = conn.execute("SELECT doc FROM alarms WHERE tenant=? AND id=?", (tenant, alarm_id)).fetchone()
            return orjson.loads(found[0]) if found else None

        result: Doc | None = await self._read(run)
        return result

    async def alarm_history(self, tenant: str, alarm_id: str) -> list[Doc]:
        def run(conn: sqlite3.Connection) -> list[Doc]:
            return [orjson.loads(d) for (d,) in conn.execute(
                "SELECT doc FROM alarm_history WHERE tenant=? AND alarm_id=? ORDER BY seq", (tenant, alarm_id))]

        result: list[Doc] = await self._read(run)
        return result

    async def query_alarms(self, tenant: str, query: AlarmQuery) -> tuple[list[Doc], int | None]:
        where, params = _alarm_where(tenant, query)

        def run(conn: sqlite3.Connection) -> tuple[list[Doc], int | None]:
            total = None
            if query.count:
                total = int(conn.execute(f"SELECT count(*) FROM alarms a WHERE {where}", params).fetchone()[0])
            docs = [orjson.loads(d) for (d,) in conn.execute(
                f"SELECT doc FROM alarms a WHERE {where} ORDER BY raised_at DESC, id LIMIT ? OFFSET ?",
                [*params, query.limit, query.offset])]
            return docs, total

        result: tuple[list[Doc], int | None] = await self._read(run)
        return result

    async def open_alarms(self) -> list[tuple[str, Doc]]:
        def run(conn: sqlite3.Connection) -> list[tuple[str, Doc]]:
            return [(t, orjson.loads(d)) for t, d in conn.execute(
                "SELECT tenant, doc FROM alarms WHERE status <> 'closed' ORDER BY raised_at")]

        result: list[tuple[str, Doc]] = await self._read(run)
        return result

    async def alarm_stats(self, tenant: str, query: AlarmQuery, false_outcomes: tuple[str, ...]) -> AlarmStats:
        where, params = _alarm_where(tenant, query)
        result: AlarmStats = await self._read(lambda conn: _alarm_stats(conn, where, params, false_outcomes))
        return result

    # -- operations centre (SQL in sqlite_ops.py) --------------------------------------------------
    async def save_ops_event(self, row: OpsEventRow, audit: list[AuditRow],
                             docs: Sequence[tuple[str, str, str, Doc]] = ()) -> None:
        puts = [(kind, tenant, key, orjson.dumps(doc).decode()) for kind, tenant, key, doc in docs]

        def run(conn: sqlite3.Connection) -> None:
            ops_sql.save_event(conn, row, audit)
            if puts:
                conn.executemany(_DOC_PUT, puts)

        await self._call(run, independent=True)

    async def get_ops_event(self, tenant: str, event_id: str) -> Doc | None:
        result: Doc | None = await self._read(lambda conn: ops_sql.get_doc(conn, "ops_events", tenant, event_id))
        return result

    async def query_ops_events(self, tenant: str, query: OpsEventQuery) -> tuple[list[Doc], int | None]:
        result: tuple[list[Doc], int | None] = await self._read(lambda conn: ops_sql.event_page(conn, tenant, query))
        return result

    async def save_grant(self, row: GrantRow, audit: list[AuditRow], expected_version: int | None = None,
                         docs: Sequence[tuple[str, str, str, Doc]] = ()) -> bool:
        puts = [(kind, tenant, key, orjson.dumps(doc).decode()) for kind, tenant, key, doc in docs]

        def run(conn: sqlite3.Connection) -> bool:
            if not ops_sql.save_grant(conn, row, audit, expected_version):
                return False
            if puts:
                conn.executemany(_DOC_PUT, puts)
            return True

        saved: bool = await self._call(run, independent=True)
        return saved

    async def get_grant(self, tenant: str, grant_id: str) -> Doc | None:
        result: Doc | None = await self._read(lambda conn: ops_sql.get_doc(conn, "ops_grants", tenant, grant_id))
        return result

    async def query_grants(self, tenant: str, query: GrantQuery) -> tuple[list[Doc], int | None]:
        result: tuple[list[Doc], int | None] = await self._read(lambda conn: ops_sql.grant_page(conn, tenant, query))
        return result

    async def live_grant_tenants(self, valid_at: int) -> list[str]:
        result: list[str] = await self._read(lambda conn: ops_sql.live_grant_tenants(conn, valid_at))
        return result

    async def append_audit(self, rows: list[AuditRow]) -> None:
        await self._call(lambda conn: ops_sql.insert_audit(conn, rows), independent=True)

    async def query_audit(self, tenant: str, query: AuditQuery) -> tuple[list[Doc], int | None]:
        result: tuple[list[Doc], int | None] = await self._read(lambda conn: ops_sql.audit_page(conn, tenant, query))
        return result

    async def audit_counts(self, tenant: str, query: AuditQuery) -> list[tuple[str, str, str, int]]:
        result: list[tuple[str, str, str, int]] = await self._read(lambda conn: ops_sql.audit_counts(conn, tenant, query))
        return result

    # -- retention (ucity/store/retention.py): bounded deletions, each one writer call ------------------
    async def purge_history(
        self, scope: HistoryScope, before: int, limit: int, after: int = 0, dry_run: bool = False,
        tenants: TenantCounts | None = None,
    ) -> tuple[int, int | None]:
        # The window of series is read on a reader connection: the writer only deletes.
        tenant_of, last, full = await self._read(lambda conn: _purge_window(conn, scope, after))
        following = last if full else None
        if not tenant_of:
            return 0, following
        chosen = orjson.dumps(sorted(tenant_of)).decode()
        if dry_run:
            counted: int = await self._read(lambda conn: int(conn.execute(
                "SELECT count(*) FROM instance_keys WHERE sid IN (SELECT value FROM json_each(?)) AND ts < ?",
                (chosen, before)).fetchone()[0]))
            return counted, following
        # Key rows by the primary key (sid, ts, seq), at most `limit`; the trigger of migration 6 deletes each
        # one's document. Not `independent`: the batch's pending history rows are written first. The deleted
        # rows' series (at most `limit` ids) tell whose they were.
        gone: list[tuple[int]] = await self._call(lambda conn: conn.execute(
            "DELETE FROM instance_keys WHERE (sid, ts, seq) IN (SELECT sid, ts, seq FROM instance_keys "
            "WHERE sid IN (SELECT value FROM json_each(?)) AND ts < ? LIMIT ?) RETURNING sid",
            (chosen, before, limit)).fetchall())
        counts: TenantCounts = {}
        for (sid,) in gone:
            counts.setdefault(tenant_of[int(sid)], [0, 0])[0] += 1
        add_counts(tenants, counts)
        deleted = len(gone)
        if deleted < limit and self.exclusive:  # the window is done: its series left without history (QA10 F8)
            await self._drop_emptied(chosen)
        return deleted, (after if deleted >= limit else following)  # a full batch: the same window again

    async def _drop_emptied(self, chosen: str) -> int:
        """Delete the series of `chosen` (a JSON array of sids) that have no instance left, and the temporal
        entity of each of their entities that then has neither a series nor a current state, so that an entity
        id (`Person:elder-2`) does not outlive its history (QA10 F8). Looked for on a reader, deleted (checked
        again) by the writer. Only by the process that owns the file: the writer caches series ids (a CLI sweep
        beside a running server leaves them to the server's next sweep)."""
        empty = await self._read(lambda conn: conn.execute(
            "SELECT 1 FROM json_each(?) j WHERE NOT EXISTS (SELECT 1 FROM instance_keys k WHERE k.sid = j.value) "
            "LIMIT 1", (chosen,)).fetchone())
        if empty is None:
            return 0

        def run(conn: sqlite3.Connection) -> int:
            dropped = conn.execute(
                "DELETE FROM series WHERE sid IN (SELECT value FROM json_each(?)) AND NOT EXISTS "
                "(SELECT 1 FROM instance_keys k WHERE k.sid = series.sid) RETURNING tenant, entity_id",
                (chosen,)).fetchall()
            for tenant, entity_id in set(dropped):
                cached = self._series_cache.pop((tenant, entity_id), None)
                if cached is not None:
                    self._series_cached -= len(cached)
                conn.execute(
                    "DELETE FROM temporal_entities WHERE tenant=? AND id=? AND NOT EXISTS (SELECT 1 FROM series "
                    "WHERE tenant=? AND entity_id=?) AND NOT EXISTS (SELECT 1 FROM entities WHERE tenant=? AND id=?)",
                    (tenant, entity_id) * 3)
            return len(dropped)

        dropped: int = await self._call(run)
        if dropped:
            log.info("retention: %d series left without history deleted", dropped)
        return dropped

    async def release_deleted(self) -> None:
        """After a purge that deleted rows: checkpoint the WAL into the file and truncate it, so that the deleted
        values (zeroed in the file: secure_delete) leave the -wal file too instead of staying there until SQLite
        reuses it (QA10 F7). On a connection of its own: PASSIVE first, which never blocks the writer, copies
        nearly everything; TRUNCATE then holds writers only for the rest and the truncation (measured, a 4.3 MB WAL
        with a write every 2 ms: the longest write 5-60 ms, against 42-107 ms for TRUNCATE alone; docs/storage.md)."""
        if self.path == ":memory:":
            return

        def run() -> tuple[int, int, int]:
            conn = open_connection(self.path)
            try:
                conn.execute("PRAGMA busy_timeout=2000")  # under a steady write load: give up, the load reuses the WAL
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                busy, frames, done = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                return int(busy), int(frames), int(done)
            except sqlite3.OperationalError as exc:  # locked beyond the busy timeout
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                return 1, -1, -1
            finally:
                conn.close()

        busy, _, _ = await asyncio.to_thread(run)
        if busy:
            log.warning("retention: the WAL checkpoint after a purge did not complete (readers or writers held it): deleted "
                        "values may stay in %s-wal until the next one", self.path)

    async def purge_audit(self, before: int, limit: int, dry_run: bool = False,
                          tenants: TenantCounts | None = None) -> int:
        if dry_run:
            counted: int = await self._read(lambda conn: ops_sql.purge_audit(conn, before, limit, True))
            return counted
        result: int = await self._purge(lambda conn, counts: ops_sql.purge_audit(conn, before, limit, False, counts),
                                        tenants)
        return result

    async def purge_ops_events(self, before: int, limit: int, dry_run: bool = False,
                               tenants: TenantCounts | None = None) -> tuple[int, int]:
        if dry_run:
            counted: tuple[int, int] = await self._read(lambda conn: ops_sql.purge_events(conn, before, limit, True))
            return counted
        result: tuple[int, int] = await self._purge(
            lambda conn, counts: ops_sql.purge_events(conn, before, limit, False, counts), tenants)
        return result

    async def purge_alarms(self, before: int, limit: int, dry_run: bool = False,
                           tenants: TenantCounts | None = None) -> tuple[int, int]:
        if dry_run:
            counted: tuple[int, int] = await self._read(lambda conn: _purge_alarms(conn, before, limit, True))
            return counted
        result: tuple[int, int] = await self._purge(
            lambda conn, counts: _purge_alarms(conn, before, limit, False, counts), tenants)
        return result

    async def _purge(self, fn: Callable[[sqlite3.Connection, TenantCounts], Any], tenants: TenantCounts | None) -> Any:
        """One purge in the writer, on its own; its per-tenant counts (fresh for each run) added to `tenants`."""

        def run(conn: sqlite3.Connection) -> tuple[Any, TenantCounts]:
            counts: TenantCounts = {}
            return fn(conn, counts), counts

        result, counts = await self._call(run, independent=True)
        add_counts(tenants, counts)
        return result


# -- retention ------------------------------------------------------------------------------------------
def _purge_window(conn: sqlite3.Connection, scope: HistoryScope, after: int) -> tuple[dict[int, str], int, bool]:
    """(the series `scope` covers among the PURGE_SERIES_WINDOW after `after`, id -> tenant; the window's last id;
    whether the window was full: more series may follow)."""
    rows = conn.execute(
        "SELECT s.sid, s.attr, te.types, s.tenant FROM (SELECT sid, tenant, entity_id, attr FROM series WHERE sid > ? "
        "ORDER BY sid LIMIT ?) s LEFT JOIN temporal_entities te ON te.tenant = s.tenant AND te.id = s.entity_id",
        (after, PURGE_SERIES_WINDOW)).fetchall()
    if not rows:
        return {}, after, False
    types_of: dict[str | None, list[str]] = {None: []}  # an entity's series come together: its types parsed once
    chosen: dict[int, str] = {}
    for sid, attr, types, tenant in rows:
        parsed = types_of.get(types)
        if parsed is None:
            parsed = types_of[types] = orjson.loads(types)
        if scope.covers(parsed, attr):
            chosen[int(sid)] = str(tenant)
    return chosen, max(int(r[0]) for r in rows), len(rows) == PURGE_SERIES_WINDOW


_CLOSED_ALARMS = "status = 'closed' AND closed_at < ?"  # as the partial index alarms_closed (migration 7)


def _purge_alarms(conn: sqlite3.Connection, before: int, limit: int, dry_run: bool,
                  counts: TenantCounts | None = None) -> tuple[int, int]:
    """Delete at most `limit` alarms closed before `before`, with their history entries."""
    return ops_sql.purge_closed(conn, ("alarms", _CLOSED_ALARMS), ("alarm_history", "alarm_id"), before, limit, dry_run,
                                counts)


_DOC_PUT = "INSERT INTO docs VALUES (?,?,?,?) ON CONFLICT (kind, tenant, key) DO UPDATE SET doc=excluded.doc"

# -- alarms: columns, filters and statistics SQL are shared (ucity/store/sql.py) -------------------------
# An update in place: `INSERT OR REPLACE` deleted the row and inserted it again, with each of its index
# entries, and every change of an alarm but its raise updates an existing row (measured: 28 -> 15 us of
# the writer's CPU per row, 2,000-row executemany of 1.5 KB documents).
_ALARM_UPSERT = (f"INSERT INTO alarms ({_ALARM_COLUMNS}) VALUES ({','.join('?' * len(_ALARM_COLUMNS.split(',')))}) "
                 "ON CONFLICT (tenant, id) DO UPDATE SET "
                 + ", ".join(f"{c.strip()} = excluded.{c.strip()}" for c in _ALARM_COLUMNS.split(",")[2:]))


def _alarm_values(row: AlarmRow) -> list[Any]:
    """The shared alarm columns, with the document as JSON text."""
    return [*alarm_values(row)[:-1], orjson.dumps(row.doc).decode()]


def _alarm_stats(conn: sqlite3.Connection, where: str, params: list[Any], false_outcomes: tuple[str, ...]) -> AlarmStats:
    stats = AlarmStats()

    def counts(column: str) -> dict[str, int]:
        return {str(k or ""): int(n) for k, n in conn.execute(alarm_count_sql(where, column), params)}

    stats.by_level, stats.by_kind = counts("a.level"), counts("a.kind")
    stats.by_type, stats.by_status = counts("a.entity_type"), counts("a.status")
    stats.total = sum(stats.by_kind.values())
    stats.ack_seconds = [int(d) / 1e6 for (d,) in conn.execute(alarm_ack_sql(where), params)]

    def false_rate(column: str) -> list[tuple[str, int, int]]:
        return [(str(k), int(c), int(f)) for k, c, f in conn.execute(
            alarm_false_rate_sql(where, column, false_outcomes), [*false_outcomes, *params])]

    stats.false_by_entity, stats.false_by_parent = false_rate("a.entity_id"), false_rate("a.parent_id")
    return stats


def _one_per_time(rows: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """`rows` with at most one instance per attribute, datasetId and observedAt (the last one given)."""
    kept: dict[object, tuple[str, dict[str, Any]]] = {}
    for n, (attr, instance) in enumerate(rows):
        observed = instance.get("observedAt")
        key = (attr, instance.get("datasetId"), observed) if observed else n
        kept.pop(key, None)  # the later instance also takes the later place
        kept[key] = (attr, instance)
    return list(kept.values())


def _geo_changed(before: Doc | None, after: Doc, attrs: frozenset[str] | None) -> bool:
    """Whether the GeoProperty values of `after` differ from those of `before` (of `attrs` only if given)."""
    if before is None or attrs is None:
        return _geo_values(before) != _geo_values(after)
    old, new = before.get("attrs", {}), after.get("attrs", {})
    for attr in attrs:
        was, now = old.get(attr), new.get(attr)
        if was is not now and geo_attr_changed(was, now):
            return True
    return False


def _geo_values(doc: Doc | None) -> list[tuple[str, Any]]:
    """(attribute IRI, GeoJSON value) of the GeoProperty instances of a document."""
    if not doc:
        return []
    return [(attr, value) for attr, instances in doc.get("attrs", {}).items() for value in geo_of(instances)]


# -- history: reading and aggregating (functions of a reader connection) ------------------------------
VALUE_MEMBERS = ("value", "object", "languageMap", "valueList", "objectList", "json", "vocab")
# createdAt and modifiedAt both select by the time an instance was recorded (the `created` column).
# Aggregation SQL per value kind of a series (its newest instance decides). Numbers and booleans
# (true = 1) aggregate the `vnum` column only, so SQLite reads the (sid, ts) index and `vnum`, never
# parsing JSON; texts (strings, date-times) compare their JSON value; other kinds are only counted.
_VALUE_JSON = "COALESCE(" + ", ".join(f"doc -> '$.{m}'" for m in VALUE_MEMBERS) + ")"
_TEXT_VALUE = "json_extract(doc, '$.value')"
_NUMERIC_SQL: dict[str, tuple[str, ...]] = {
    "totalCount": ("count(*)",),
    "distinctCount": ("count(DISTINCT vnum)",),
    "sum": ("sum(vnum)",),
    "avg": ("avg(vnum)",),
    "min": ("min(vnum)",),
    "max": ("max(vnum)",),
    "sumsq": ("sum(vnum * vnum)",),
    "stddev": ("count(vnum)", "sum(vnum)", "sum(vnum * vnum)"),  # combined by _stddev
}
_TEXT_SQL: dict[str, tuple[str, ...]] = {
    **{m: ("NULL",) for m in _NUMERIC_SQL}, "stddev": ("NULL", "NULL", "NULL"),
    "totalCount": ("count(*)",), "distinctCount": (f"count(DISTINCT {_TEXT_VALUE})",),
    "min": (f"min({_TEXT_VALUE})",), "max": (f"max({_TEXT_VALUE})",),
}
_OTHER_SQL: dict[str, tuple[str, ...]] = {
    **_TEXT_SQL, "distinctCount": (f"count(DISTINCT {_VALUE_JSON})",), "min": ("NULL",), "max": ("NULL",),
}


def _vnum(instance: dict[str, Any]) -> float | None:
    """The number a Property's value aggregates as: numbers as they are, booleans as 1 and 0."""
    value = instance.get("value")
    return float(value) if isinstance(value, (int, float)) else None


def _temporal_entities(
    conn: sqlite3.Connection, tenant: str, query: TemporalQuery
) -> tuple[list[tuple[str, list[str]]], int | None]:
    """(id, type IRIs) of the page of temporal entities the query selects, and their count."""
    if query.entity_ids_only is not None and not query.entity_ids_only:
        return [], 0 if query.count else None
    clauses, params = ["te.tenant = ?"], [tenant]
    if query.ids:
        clauses.append(_in("te.id", query.ids))
        params.extend(query.ids)
    if query.entity_ids_only is not None:  # possibly many ids (a q match): one JSON parameter
        clauses.append("te.id IN (SELECT value FROM json_each(?))")
        params.append(orjson.dumps(query.entity_ids_only).decode())
    if query.id_pattern:
        clauses.append("regexp(?, te.id)")
        params.append(query.id_pattern)
    if query.types is not None:
        sql, tparams = type_sql(query.types, "EXISTS (SELECT 1 FROM json_each(te.types) tt WHERE tt.value = ?)")
        clauses.append(sql)
        params.extend(tparams)
    if query.instances_only:
        sql, sparams = _has_series(query)
        clauses.append(sql)
        params.extend(sparams)
    where = " AND ".join(clauses)
    total = None
    if query.count:
        total = int(conn.execute(f"SELECT count(*) FROM temporal_entities te WHERE {where}", params).fetchone()[0])
    rows = conn.execute(
        f"SELECT te.id, te.types FROM temporal_entities te WHERE {where} ORDER BY te.id LIMIT ? OFFSET ?",
        [*params, query.entity_limit, query.entity_offset],
    ).fetchall()
    return [(r[0], orjson.loads(r[1])) for r in rows], total


def _has_series(query: TemporalQuery) -> tuple[str, list[Any]]:
    """EXISTS: the entity has an instance of a selected attribute (and dataset) in the window."""
    sql = "EXISTS (SELECT 1 FROM series s WHERE s.tenant = te.tenant AND s.entity_id = te.id"
    params: list[Any] = []
    if query.attrs:
        sql += " AND " + _in("s.attr", query.attrs)
        params.extend(query.attrs)
    if query.dataset_ids is not None:
        sql += " AND " + _in("s.dataset_id", _datasets(query))
        params.extend(_datasets(query))
    window, wparams = _window(_time_column(query.timeproperty), query, "i.")
    sql += f" AND EXISTS (SELECT 1 FROM instance_keys i WHERE i.sid = s.sid{window})"
    return sql + ")", [*params, *wparams]


def _attr_series(
    conn: sqlite3.Connection, tenant: str, entity_id: str, query: TemporalQuery
) -> dict[str, list[tuple[int, str]]]:
    """attribute IRI -> [(sid, dataset_id)] of an entity's selected series."""
    sql, params = "SELECT sid, attr, dataset_id FROM series WHERE tenant=? AND entity_id=?", [tenant, entity_id]
    if query.attrs:
        sql += " AND " + _in("attr", query.attrs)
        params.extend(query.attrs)
    if query.dataset_ids is not None:
        sql += " AND " + _in("dataset_id", _datasets(query))
        params.extend(_datasets(query))
    out: dict[str, list[tuple[int, str]]] = {}
    for sid, attr, dataset in conn.execute(sql + " ORDER BY attr, dataset_id", params):
        out.setdefault(attr, []).append((int(sid), dataset))
    return out


def _history(conn: sqlite3.Connection, sids: list[int], column: str, query: TemporalQuery) -> HistorySeries:
    """One page of an attribute's instances over all its series, oldest first."""
    want, newest = _page(query)
    window, params = _window(column, query, "k.")
    order = "DESC" if newest else "ASC"
    rows: list[tuple[int, int, str]] = []
    for sid in sids:  # each series reads at most one page from its keys, then they are merged
        rows.extend(conn.execute(
            f"SELECT k.{column}, k.rid, d.doc FROM instance_keys k JOIN instance_docs d ON d.rid = k.rid "
            f"WHERE k.sid = ?{window} ORDER BY k.{column} {order}, k.rid {order} LIMIT ?",
            [sid, *params, want + 1]).fetchall())
    rows.sort(key=lambda r: (r[0], r[1]), reverse=newest)
    truncated = _truncated(query, len(rows), want)
    rows = rows[:want]
    if newest:
        rows.reverse()
    return HistorySeries([r[0] for r in rows], [_instance_doc(r[1], r[2]) for r in rows], truncated)


def _instance_doc(rid: int, text: str) -> dict[str, Any]:
    """A recorded instance with its instanceId: stored in the document before migration 6, derived after."""
    doc: dict[str, Any] = orjson.loads(text)
    if "instanceId" not in doc:
        doc["instanceId"] = instance_id(rid)
    return doc


def _find_instance(
    conn: sqlite3.Connection, instance_id_: str, sids: list[int]
) -> tuple[int, int, int, str, str | None] | None:
    """(sid, ts, rid, document, stored id) of the instance of one of the series `sids` with that id."""
    if not sids:
        return None
    rid = instance_rid(instance_id_)
    if rid is not None:  # an id derived from the rid (instances recorded with a stored id keep only that one)
        row = conn.execute("SELECT sid, ts, rid, doc, instance_id FROM instance_docs WHERE rid=? AND instance_id IS NULL",
                           (rid,)).fetchone()
    else:
        row = conn.execute("SELECT sid, ts, rid, doc, instance_id FROM instance_docs WHERE instance_id=?",
                           (instance_id_,)).fetchone()
    return row if row is not None and row[0] in sids else None


def _oldest(conn: sqlite3.Connection, series: list[tuple[int, str]], column: str, query: TemporalQuery) -> int | None:
    """The earliest time among an attribute's series in the window (where periods start by default)."""
    window, params = _window(column, query)
    placeholders = ",".join("?" * len(series))
    row = conn.execute(f"SELECT min({column}) FROM instance_keys WHERE sid IN ({placeholders}){window}",
                       [*(sid for sid, _ in series), *params]).fetchone()
    return int(row[0]) if row and row[0] is not None else None


def _aggregate(
    conn: sqlite3.Connection, sid: int, dataset: str, column: str, query: TemporalQuery,
    aggregation: Aggregation, origin: int,
) -> AggregateSeries:
    """One series aggregated per period by SQL GROUP BY over the integer time column."""
    want, newest = _page(query)
    window, params = _window(column, query, "k.")
    period = aggregation.period_us
    # Periods of a given length need no bounds from the data; the whole window does.
    bucket, bounds, bucket_params = ((f"(k.{column} - ?) / ?", "NULL, NULL", [origin, period]) if period
                                     else ("0", f"min(k.{column}), max(k.{column})", []))
    attr_type, sql_of = _series_kind(conn, sid)
    exprs = ", ".join(e for method in aggregation.methods for e in sql_of[method])
    order = "DESC" if newest else "ASC"
    # Numbers aggregate from the keys alone (vnum); other kinds read their documents.
    source = "instance_keys k" if sql_of is _NUMERIC_SQL else "instance_keys k JOIN instance_docs d ON d.rid = k.rid"
    rows = conn.execute(
        f"SELECT {bucket} AS b, {bounds}, {exprs} FROM {source} WHERE k.sid = ?{window} "
        f"GROUP BY b ORDER BY b {order} LIMIT ?", [*bucket_params, sid, *params, want + 1]).fetchall()
    series = AggregateSeries(attr_type, dataset or None, [], [], [], _truncated(query, len(rows), want))
    rows = rows[:want]
    for row in reversed(rows) if newest else rows:
        start = origin + int(row[0]) * period if period else (query.time_from if query.time_from is not None else row[1])
        end = start + period if period else (query.time_to if query.time_to is not None else row[2])
        series.times.append(int(start))
        series.ends.append(int(end))
        series.values.append(_combine(list(row[3:]), aggregation.methods, sql_of))
    return series


def _series_kind(conn: sqlite3.Connection, sid: int) -> tuple[str, dict[str, tuple[str, ...]]]:
    """(attribute type, aggregation SQL) of a series, from its newest instance."""
    row = conn.execute(
        "SELECT json_extract(d.doc, '$.type'), json_type(d.doc, '$.value'), k.vnum FROM instance_keys k "
        "JOIN instance_docs d ON d.rid = k.rid WHERE k.sid=? ORDER BY k.ts DESC LIMIT 1", (sid,)).fetchone()
    if row is None:
        return "Property", _OTHER_SQL
    attr_type = str(row[0] or "Property")
    if row[2] is not None:
        return attr_type, _NUMERIC_SQL
    return attr_type, _TEXT_SQL if attr_type == "Property" and row[1] == "text" else _OTHER_SQL


def sqlite_path(url: str) -> str:
    """The file path of a `sqlite:///path` URL (`sqlite:///:memory:` for memory)."""
    if not url.startswith("sqlite://"):
        raise ValueError(f"not a sqlite URL: {url}")
    return url[len("sqlite:///"):] if url.startswith("sqlite:///") else url[len("sqlite://"):]
