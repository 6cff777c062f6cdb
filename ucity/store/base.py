"""The store contract: what every backend (SQLite, PostgreSQL) provides.

Entities are kept as expanded, normalized documents (docs/storage.md). Writes are `Mutation`s:
a pure function from the current document to the new one plus the attribute instances to
append to history. The backend runs the function inside its transaction (so read-check-write is
atomic), group-commits many mutations in one transaction, and acknowledges each only after the
commit. Queries are described by `EntityQuery` and run in the database.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ucity.core.bus import Context, EntityChange
from ucity.core.errors import UcityError
from ucity.core.frozen import fast_init

Doc = dict[str, Any]


@fast_init
@dataclass(frozen=True, slots=True)
class Outcome:
    """What a mutation decided: the new document (None deletes) and the history to append."""

    doc: Doc | None
    operation: str
    attrs: frozenset[str] = frozenset()
    instances: tuple[tuple[str, dict[str, Any]], ...] = ()
    result: Any = None
    changed: bool = True  # False: nothing to write (e.g. update of absent attributes only)


# apply(current_doc_or_None, now_iso) -> Outcome; may raise a UcityError for this entity only.
ApplyFn = Callable[[Doc | None, str], Outcome]


@fast_init
@dataclass(frozen=True, slots=True)
class Mutation:
    entity_id: str
    apply: ApplyFn


@dataclass(frozen=True, slots=True)
class TypeExpr:
    """A type selector: OR of AND-groups of expanded type IRIs (`A,B` / `(A;B)|C`)."""

    any_of: tuple[tuple[str, ...], ...]


@dataclass(frozen=True, slots=True)
class ScopeExpr:
    """A scopeQ: OR of AND-groups of anchored regular expressions, each to be matched in full by
    one of the entity's scopes (ucity/ngsild/scope.py parses it; backends use `regexp`)."""

    any_of: tuple[tuple[str, ...], ...]


@dataclass(frozen=True, slots=True)
class QFilter:
    """A parsed `q` (a tree of ucity.ngsild.qlang) with the function expanding its short names to IRIs.

    Callers hold no SQL: each backend compiles the tree to its own dialect (ucity/ngsild/qsql.py for
    SQLite, qpg.py for PostgreSQL) with the same semantics.
    """

    expr: Any  # ucity.ngsild.qlang.QExpr (the store layer does not import the NGSI-LD package)
    resolve: Callable[[str], str]


@dataclass(slots=True)
class EntityQuery:
    ids: tuple[str, ...] = ()
    id_pattern: str | None = None
    types: TypeExpr | None = None
    attrs_any: tuple[str, ...] = ()  # the entity must have at least one of these attribute IRIs
    q: QFilter | None = None  # compiled by each backend to its own SQL dialect
    geo: Any = None  # ucity.ngsild.geo.GeoQuery, with `geo_attr` holding the expanded IRI
    geo_attr: str | None = None
    scope: ScopeExpr | None = None
    limit: int = 20
    offset: int = 0
    count: bool = False
    order: str = "id"  # id | modified


@dataclass(slots=True)
class TemporalQuery:
    """Which history to read: entities, attributes and a time window over one time property."""

    ids: tuple[str, ...] = ()
    id_pattern: str | None = None
    types: TypeExpr | None = None
    attrs: tuple[str, ...] = ()  # attribute IRIs, empty = all
    dataset_ids: tuple[str, ...] | None = None  # None = all; "@none" selects the default instance
    time_from: int | None = None  # micros, inclusive
    time_to: int | None = None  # micros, exclusive
    timeproperty: str = "observedAt"  # observedAt | modifiedAt | createdAt
    last_n: int | None = None  # the newest N per attribute (returned oldest first)
    limit_instances: int = 1000  # page size per attribute; more available -> `truncated`
    entity_limit: int = 20
    entity_offset: int = 0
    count: bool = False
    entity_ids_only: tuple[str, ...] | None = None  # a pre-selection (e.g. by q on the current state)
    # A query (True) selects only entities with an instance of the selected attributes (and
    # datasets) in the window; a retrieval (False) returns the entity even without one.
    instances_only: bool = False


AGGREGATE_METHODS = ("totalCount", "distinctCount", "sum", "avg", "min", "max", "stddev", "sumsq")


@dataclass(frozen=True, slots=True)
class Aggregation:
    """What to aggregate: methods (AGGREGATE_METHODS) over periods of `period_us` (0 = the whole window)."""

    methods: tuple[str, ...]
    period_us: int = 0


@dataclass(slots=True)
class HistorySeries:
    """One attribute's instances (all its datasetIds), oldest first, with the time each was selected by."""

    times: list[int]  # micros of the query's time property, ascending
    instances: list[dict[str, Any]]
    truncated: bool = False  # the window holds more instances than were returned

    def keep_between(self, low: int, high: int) -> None:
        """Drop the instances outside [low, high] (a page boundary)."""
        kept = [(t, i) for t, i in zip(self.times, self.instances, strict=True) if low <= t <= high]
        self.times = [t for t, _ in kept]
        self.instances = [i for _, i in kept]


@dataclass(slots=True)
class AggregateSeries:
    """The aggregated values of one attribute instance series (one datasetId), oldest period first."""

    attr_type: str
    dataset_id: str | None
    times: list[int]  # period starts, micros, ascending
    ends: list[int]  # period ends, micros
    values: list[dict[str, Any]]  # per period: method -> value
    truncated: bool = False

    def keep_between(self, low: int, high: int) -> None:
        kept = [k for k, t in enumerate(self.times) if low <= t <= high]
        self.times = [self.times[k] for k in kept]
        self.ends = [self.ends[k] for k in kept]
        self.values = [self.values[k] for k in kept]


# -- alarms (ucity/alarms): rows with indexed columns, filtered and counted in SQL ---------------------
@dataclass(slots=True)
class AlarmRow:
    """One alarm as the store keeps it: the columns it filters on, and the whole document.

    Times are microseconds since the epoch (UTC); `bbox` is (minx, miny, maxx, maxy) of its location.
    """

    tenant: str
    id: str
    entity_id: str
    entity_type: str
    rule_id: str
    kind: str
    level: str | None
    status: str
    active: bool
    derived: bool
    parent_id: str | None
    outcome: str | None
    assignee: str | None
    raised_at: int
    updated_at: int
    acked_at: int | None
    cleared_at: int | None
    closed_at: int | None
    bbox: tuple[float, float, float, float] | None
    doc: Doc


@dataclass(slots=True)
class AlarmQuery:
    """Which alarms to list or count; every given filter must hold (values of one filter: any of)."""

    statuses: tuple[str, ...] = ()
    levels: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    entity_types: tuple[str, ...] = ()
    entity_ids: tuple[str, ...] = ()
    rule_ids: tuple[str, ...] = ()
    parent_ids: tuple[str, ...] = ()
    derived: bool | None = None
    bbox: tuple[float, float, float, float] | None = None  # intersects the alarm's location bbox
    raised_from: int | None = None  # micros, inclusive
    raised_to: int | None = None  # micros, exclusive
    limit: int = 20
    offset: int = 0
    count: bool = False


@dataclass(slots=True)
class AlarmStats:
    """Counts over the alarms a query selects (alarm statistics of the API)."""

    total: int = 0
    by_level: dict[str, int] = field(default_factory=dict)  # fault alarms (no level) under ""
    by_kind: dict[str, int] = field(default_factory=dict)
    by_type: dict[str, int] = field(default_factory=dict)
    by_status: dict[str, int] = field(default_factory=dict)
    ack_seconds: list[float] = field(default_factory=list)  # time to acknowledge of each acknowledged alarm
    # (key, closed alarms, closed with a false outcome) by entity and by parent entity
    false_by_entity: list[tuple[str, int, int]] = field(default_factory=list)
    false_by_parent: list[tuple[str, int, int]] = field(default_factory=list)


# -- operations centre (ucity/ops): events, footage grants and the append-only audit log -----------------
@dataclass(slots=True)
class OpsEventRow:
    """One operations event as the store keeps it: the columns it filters on, and the whole document.

    Times are microseconds since the epoch (UTC); `point` is (lon, lat); `agencies` the agencies the
    event was shared with or reported by (an agency sees only those events).
    """

    tenant: str
    id: str
    service: str
    type_code: str
    level: str
    status: str
    source_system: str
    source_ref: str
    occurred_at: int
    reported_at: int
    updated_at: int
    point: tuple[float, float] | None
    agencies: tuple[str, ...]
    doc: Doc


@dataclass(slots=True)
class OpsEventQuery:
    """Which events to list; every given filter must hold (values of one filter: any of)."""

    services: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    levels: tuple[str, ...] = ()
    type_codes: tuple[str, ...] = ()
    agency: str | None = None  # shared with or reported by this agency
    source_system: str | None = None
    source_ref: str | None = None
    bbox: tuple[float, float, float, float] | None = None
    reported_from: int | None = None  # micros, inclusive
    reported_to: int | None = None  # micros, exclusive
    limit: int = 20
    offset: int = 0
    count: bool = False


@dataclass(slots=True)
class GrantRow:
    """One footage grant: its columns and document. `status` is active or revoked; expiry is `expires_at`."""

    tenant: str
    id: str
    agency_id: str
    event_id: str
    status: str
    issued_at: int
    expires_at: int
    updated_at: int
    doc: Doc


@dataclass(slots=True)
class GrantQuery:
    agency_ids: tuple[str, ...] = ()
    event_ids: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()  # active | revoked (as stored)
    valid_at: int | None = None  # micros: only grants active and not expired at that instant
    expired_at: int | None = None  # micros: only grants not revoked but expired at that instant
    limit: int = 20
    offset: int = 0
    count: bool = False


@dataclass(slots=True)
class AuditRow:
    """One line of the operations audit log. The store appends it and numbers it (`seq`); nothing
    changes it afterwards, and only retention deletes it, once older than `retention.audit_days`."""

    tenant: str
    at: int  # micros
    kind: str  # event | grant | linkage | camera | auth | retention
    action: str
    actor: str
    doc: Doc
    agency_id: str | None = None
    event_id: str | None = None
    grant_id: str | None = None
    camera_id: str | None = None
    outcome: str | None = None  # ok | denied | held | failed ...


@dataclass(slots=True)
class AuditQuery:
    kinds: tuple[str, ...] = ()
    actions: tuple[str, ...] = ()
    agency_ids: tuple[str, ...] = ()
    event_ids: tuple[str, ...] = ()
    grant_ids: tuple[str, ...] = ()
    camera_ids: tuple[str, ...] = ()
    outcomes: tuple[str, ...] = ()
    at_from: int | None = None  # micros, inclusive
    at_to: int | None = None  # micros, exclusive
    limit: int = 100
    offset: int = 0
    count: bool = False
    newest_first: bool = False


@dataclass(frozen=True, slots=True)
class HistoryScope:
    """Which history series a retention purge covers (ucity/store/retention.py): the series of the entities
    having one of `types` (of every entity when None), of the attributes `attrs` (of every attribute when
    empty), except, for each (type, attributes) of `excluding`, the series of an entity having that type of
    one of those attributes (of any attribute when empty). Names are expanded IRIs. The rule is decided
    here, in Python, for both backends: they read a window of series with their entity's types and keep
    the ones `covers` accepts."""

    types: tuple[str, ...] | None
    attrs: tuple[str, ...] = ()
    excluding: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def covers(self, types: list[str], attr: str) -> bool:
        """Whether the series of `attr` of an entity of `types` (its temporal types, [] if unknown) is covered."""
        if self.types is not None and not any(t in self.types for t in types):
            return False
        if self.attrs and attr not in self.attrs:
            return False
        return not any(t in types and (not attrs or attr in attrs) for t, attrs in self.excluding)


# Series one retention call reads to find the covered ones (on a reader connection, not in the writer).
PURGE_SERIES_WINDOW = 5000
# What retention purges deleted per tenant: tenant -> [records, related rows] (related: the grants of events, the
# history entries of alarms; 0 for history instances and audit lines). A purge given one adds what it deleted to it
# (not a dry run's counts), so that each tenant's deletions are audited in that tenant (retention.py).
TenantCounts = dict[str, list[int]]


def member_name(member: str) -> str:
    """A document's top-level member name for `replace_doc_if`: letters and digits only (never a request's text)."""
    if not member.isalnum() or not member.isascii():
        raise ValueError(f"not a member name: {member!r}")
    return member


def add_counts(into: TenantCounts | None, counts: TenantCounts) -> None:
    """Add `counts` (one purge call's, per tenant) to `into`, if given."""
    if into is not None:
        for tenant, (records, related) in counts.items():
            mine = into.setdefault(tenant, [0, 0])
            mine[0] += records
            mine[1] += related


_T = TypeVar("_T")
MUTATION, CALL, MOVABLE, URGENT = range(4)  # what a queued write is to `urgent_first`


def urgent_first(batch: list[_T], kind: Callable[[_T], int]) -> tuple[list[_T], list[_T]]:
    """Split a writer's batch whose urgent calls (alarm saves: the operators' stream announces an alarm once
    it is committed) would otherwise wait for all of its readings. The urgent calls, with the movable calls
    queued before them, go first in a small transaction of their own; the rest follow in their order.

    `kind` says what each item is: `MUTATION` (entity writes and their history), `MOVABLE` (a call that
    neither reads nor writes what mutations write, so it may overtake them), `URGENT` (a movable call to
    hurry) or `CALL` (any other call). Only mutations are overtaken, never a call, and the readings behind
    an alarm were committed before their rules raised it. A `CALL` before the last urgent one (it may read
    what the mutations queued before it wrote) leaves the batch as it is.

    Measured under the latency benchmark's load (SQLite, 5,000 observations/s over HTTP): an alarm's save
    waited ~20 ms (p50) for the batch in progress, then ~20 ms more for the 35 or so readings committed
    with it; split, it waits for the first only."""
    kinds = [kind(item) for item in batch]
    if URGENT not in kinds or MUTATION not in kinds:
        return [], batch
    last = len(kinds) - 1 - kinds[::-1].index(URGENT)
    if CALL in kinds[:last]:
        return [], batch
    ahead = [item for item, k in zip(batch[:last + 1], kinds, strict=False) if k != MUTATION]
    rest = [item for item, k in zip(batch[:last + 1], kinds, strict=False) if k == MUTATION] + batch[last + 1:]
    return ahead, rest


@dataclass(slots=True)
class TemporalEntity:
    """An entity's temporal representation in stored form: expanded names."""

    id: str
    types: list[str]
    attrs: dict[str, HistorySeries] = field(default_factory=dict)


@dataclass(slots=True)
class AggregatedEntity:
    id: str
    types: list[str]
    attrs: dict[str, list[AggregateSeries]] = field(default_factory=dict)


# A check of every entity write, after its mutation is applied and before anything is written:
# (tenant, entity id, the document as the write leaves it, the attributes it touched) -> the error that refuses
# the write (its mutation's outcome; the rest of the call is unaffected), or None.
WriteCheck = Callable[[str, str, "Doc", frozenset[str]], UcityError | None]


class Store(ABC):
    """The backend-neutral store. All methods are coroutines and never block the event loop."""

    write_checks: tuple[WriteCheck, ...] = ()

    def add_write_check(self, check: WriteCheck) -> None:
        """Run `check` on every entity write (not deletions) from now on, in the writer (the SQLite store's
        thread): it must be quick, pure and thread-safe. For what must never be stored, whoever writes it
        (e.g. camera URLs through NGSI-LD): refused before the write, no subscriber or history ever sees it. The
        temporal API runs the same checks before its history-only writes (ucity/ngsild/temporal.py)."""
        self.write_checks = (*self.write_checks, check)

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def stop(self) -> None: ...

    @abstractmethod
    async def mutate(self, tenant: str, mutations: list[Mutation], context: Context) -> list[Outcome | Exception]:
        """Apply mutations (each independently), commit, then return one result per mutation."""

    @abstractmethod
    def on_commit(self, callback: Callable[[Context, tuple[EntityChange, ...]], None]) -> None:
        """Register the (synchronous, loop-side) callback that receives committed changes in order."""

    @abstractmethod
    async def get_entity(self, tenant: str, entity_id: str) -> Doc | None: ...

    @abstractmethod
    async def query_entities(self, tenant: str, query: EntityQuery) -> tuple[list[Doc], int | None]: ...

    @abstractmethod
    async def entity_ids(self, tenant: str, query: EntityQuery) -> list[str]: ...

    @abstractmethod
    async def tenant_exists(self, tenant: str) -> bool: ...

    @abstractmethod
    async def tenants(self) -> list[str]:
        """Every tenant that ever had an entity or history written (sorted): start-up upkeep that runs per tenant."""

    @abstractmethod
    async def types_summary(self, tenant: str) -> list[tuple[str, list[str], int]]:
        """(type IRI, attribute IRIs, entity count) per type."""

    @abstractmethod
    async def attributes_summary(self, tenant: str) -> list[tuple[str, list[str], list[str], int]]:
        """(attribute IRI, type IRIs having it, attribute types, entity count) per attribute."""

    # -- history -----------------------------------------------------------------------------
    @abstractmethod
    async def append_history(
        self, tenant: str, entity_id: str, types: list[str], rows: list[tuple[str, dict[str, Any]]]
    ) -> None:
        """Add attribute instances (attribute IRI, instance) to history only.

        Creates the temporal entity (merging `types`) even when `rows` is empty; instances
        without createdAt/modifiedAt get the time of recording. An instance with an observedAt
        replaces the recorded instance of the same attribute, datasetId and observedAt (an
        attribute has one value per dataset at a time), so sending the same history twice
        records it once.
        """

    @abstractmethod
    async def temporal_query(self, tenant: str, query: TemporalQuery) -> tuple[list[TemporalEntity], int | None]:
        """The entities of one page with their instances per attribute, and the entity count if asked."""

    @abstractmethod
    async def temporal_aggregate(
        self, tenant: str, query: TemporalQuery, aggregation: Aggregation
    ) -> tuple[list[AggregatedEntity], int | None]:
        """Like temporal_query, but each attribute aggregated per period in the database.

        Periods start at `query.time_from` (or the attribute's oldest instance in the window);
        `limit_instances` and `last_n` count periods instead of instances.
        """

    @abstractmethod
    async def temporal_entity_exists(self, tenant: str, entity_id: str) -> bool: ...

    @abstractmethod
    async def delete_history(
        self, tenant: str, entity_id: str, attr: str | None = None, dataset_id: str | None = None,
        instance_id: str | None = None, all_datasets: bool = False,
    ) -> int:
        """Delete history: a whole entity, one attribute (its default instance, `dataset_id`, or
        all datasets) or one instance of it. Returns how many instances and series were deleted."""

    @abstractmethod
    async def replace_history_instance(
        self, tenant: str, entity_id: str, attr: str, instance_id: str, instance: dict[str, Any]
    ) -> bool:
        """Merge `instance` into a recorded instance (its value members replaced, createdAt and
        instanceId kept, modifiedAt now); False if the attribute has no such instance."""

    # -- retention (ucity/store/retention.py): bounded deletions of old records ------------------
    @abstractmethod
    async def purge_history(
        self, scope: HistoryScope, before: int, limit: int, after: int = 0, dry_run: bool = False,
        tenants: TenantCounts | None = None,
    ) -> tuple[int, int | None]:
        """Delete at most `limit` attribute instances, of the series `scope` covers, whose time is before
        `before` (µs): the time history is keyed and indexed by, the instance's observedAt, else the time it
        was recorded. Series are visited in id order, at most PURGE_SERIES_WINDOW after the id `after` per
        call. Returns (instances deleted, the `after` of the next call, None once every series was visited).
        Series and temporal entities stay (a series may be left without instances). `dry_run`: count only.
        `tenants` (this and the other purges): the deletions are also added to it per tenant (`TenantCounts`)."""

    @abstractmethod
    async def purge_audit(self, before: int, limit: int, dry_run: bool = False,
                          tenants: TenantCounts | None = None) -> int:
        """Delete at most `limit` audit lines (every tenant) recorded before `before` (µs); the count. The newest
        line always stays, so that line numbers never start again. The only deletion the audit log allows: the
        database refuses any other. `dry_run`: count only."""

    @abstractmethod
    async def purge_ops_events(self, before: int, limit: int, dry_run: bool = False,
                               tenants: TenantCounts | None = None) -> tuple[int, int]:
        """Delete at most `limit` closed or cancelled operations events (every tenant) last changed before
        `before` (µs), with their footage grants; (events, grants). Their audit lines stay (`purge_audit`).
        `dry_run`: count only."""

    @abstractmethod
    async def purge_alarms(self, before: int, limit: int, dry_run: bool = False,
                           tenants: TenantCounts | None = None) -> tuple[int, int]:
        """Delete at most `limit` closed alarms (every tenant) closed before `before` (µs), with their history;
        (alarms, history entries). Alarms not closed are never deleted. `dry_run`: count only."""

    # -- small documents: subscriptions, hosted contexts --------------------------------------
    @abstractmethod
    async def put_doc(self, kind: str, tenant: str, key: str, doc: Doc) -> None: ...

    @abstractmethod
    async def insert_doc(self, kind: str, tenant: str, key: str, doc: Doc) -> bool:
        """Put a document only if none is stored under (kind, tenant, key); whether it was put. Atomic across
        processes on one store (two API processes issuing one token id: one wins, the other is told)."""

    @abstractmethod
    async def replace_doc_if(self, kind: str, tenant: str, key: str, doc: Doc, member: str) -> bool:
        """Replace a stored document only if its top-level `member` (a name of letters and digits) still has the
        value `doc` has; whether it did. A process writing its own counters into a shared document (subscription
        delivery counters) neither revives one another process deleted nor takes back another's update of it."""

    @abstractmethod
    async def delete_doc(self, kind: str, tenant: str, key: str) -> bool: ...

    @abstractmethod
    async def list_docs(self, kind: str) -> list[tuple[str, str, Doc]]:
        """(tenant, key, doc) for every stored document of a kind."""

    async def list_docs_page(self, kind: str, after: tuple[str, str] | None, limit: int) -> list[tuple[str, str, Doc]]:
        """(tenant, key, doc) of at most `limit` documents of a kind, in (tenant, key) order, those after the
        (tenant, key) `after` (None: from the first): a keyset page. Reading a whole kind page by page (the
        device registry's periodic re-read) holds neither the database nor the event loop for long, and sees
        every document that stays stored meanwhile exactly once. The stores read the one page; this default
        reads the whole kind."""
        rows = await self.list_docs(kind)
        if after is not None:
            rows = [row for row in rows if (row[0], row[1]) > after]
        return rows[:limit]

    async def get_doc(self, kind: str, tenant: str, key: str) -> Doc | None:
        """The document stored under (kind, tenant, key), or None (the stores read the one row; this default reads
        the whole kind)."""
        return next((doc for t, k, doc in await self.list_docs(kind) if t == tenant and k == key), None)

    # -- alarms ------------------------------------------------------------------------------
    @abstractmethod
    async def save_alarm(self, row: AlarmRow, history: list[Doc]) -> None:
        """Insert or replace an alarm and append its new history entries (each with a `seq`), atomically."""

    async def save_alarms(self, saves: list[tuple[AlarmRow, list[Doc]]],
                          docs: Sequence[tuple[str, str, str, Doc]] = ()) -> None:
        """`save_alarm` of each (row, history), in order (a later save of the same alarm wins), all or none,
        with `docs` (kind, tenant, key, doc) put in the same commit (the changes' queued notifications).

        One store call for the alarms decided together (an alarm storm), not one each: per alarm that
        spares a queued write, a future and a wake-up of its waiter, on the event loop and in the writer.
        This default saves them one by one (each alarm atomically), then the documents; the stores write
        it all in one commit."""
        for row, history in saves:
            await self.save_alarm(row, history)
        for kind, tenant, key, doc in docs:
            await self.put_doc(kind, tenant, key, doc)

    async def put_docs(self, kind: str, docs: list[tuple[str, str, Doc]]) -> None:
        """`put_doc` of each (tenant, key, doc) of one kind, in order; the stores write them in one commit
        (rule-state snapshots of an alarm storm: one per transition)."""
        for tenant, key, doc in docs:
            await self.put_doc(kind, tenant, key, doc)

    async def delete_docs(self, kind: str, keys: list[tuple[str, str]]) -> None:
        """`delete_doc` of each (tenant, key) of one kind; the stores delete them in one commit."""
        for tenant, key in keys:
            await self.delete_doc(kind, tenant, key)

    @abstractmethod
    async def get_alarm(self, tenant: str, alarm_id: str) -> Doc | None: ...

    @abstractmethod
    async def alarm_history(self, tenant: str, alarm_id: str) -> list[Doc]:
        """The history entries of an alarm, oldest first."""

    @abstractmethod
    async def query_alarms(self, tenant: str, query: AlarmQuery) -> tuple[list[Doc], int | None]:
        """A page of alarm documents, newest raised first, and their count if asked."""

    @abstractmethod
    async def open_alarms(self) -> list[tuple[str, Doc]]:
        """(tenant, document) of every alarm not closed, of every tenant (restored on start)."""

    @abstractmethod
    async def alarm_stats(self, tenant: str, query: AlarmQuery, false_outcomes: tuple[str, ...]) -> AlarmStats:
        """Counts over the alarms the query selects (its paging is ignored)."""

    # -- operations centre -----------------------------------------------------------------------
    @abstractmethod
    async def save_ops_event(self, row: OpsEventRow, audit: list[AuditRow],
                             docs: Sequence[tuple[str, str, str, Doc]] = ()) -> None:
        """Insert or replace an event and append its audit lines, atomically, with `docs` (kind, tenant, key, doc)
        put in the same commit (the package a linkage queues for its agency)."""

    @abstractmethod
    async def get_ops_event(self, tenant: str, event_id: str) -> Doc | None: ...

    @abstractmethod
    async def query_ops_events(self, tenant: str, query: OpsEventQuery) -> tuple[list[Doc], int | None]:
        """A page of event documents, newest reported first, and their count if asked."""

    @abstractmethod
    async def save_grant(self, row: GrantRow, audit: list[AuditRow], expected_version: int | None = None,
                         docs: Sequence[tuple[str, str, str, Doc]] = ()) -> bool:
        """Insert or replace a footage grant and append its audit lines, atomically, with `docs` (kind, tenant, key,
        doc) put in the same commit (the notice its change queues for its agency); True if written.

        With `expected_version` the write is conditional (optimistic concurrency across API processes): the
        stored grant is replaced only if its document's `version` (0 when absent: rows older than it) is still
        `expected_version`, and nothing is written, audit lines and `docs` included, otherwise (False: re-read,
        re-decide)."""

    @abstractmethod
    async def get_grant(self, tenant: str, grant_id: str) -> Doc | None: ...

    @abstractmethod
    async def query_grants(self, tenant: str, query: GrantQuery) -> tuple[list[Doc], int | None]:
        """A page of grant documents, newest issued first, and their count if asked."""

    @abstractmethod
    async def live_grant_tenants(self, valid_at: int) -> list[str]:
        """The tenants with at least one grant active and unexpired at `valid_at` (micros): the operations
        centre's start-up sweep looks there for grants a crash left live."""

    @abstractmethod
    async def append_audit(self, rows: list[AuditRow]) -> None:
        """Append audit lines. The audit log has no update, in the contract and in the database; the only
        deletion is retention's (`purge_audit`)."""

    @abstractmethod
    async def query_audit(self, tenant: str, query: AuditQuery) -> tuple[list[Doc], int | None]:
        """Audit lines (each document with its `seq`), in append order (or newest first), and their count."""

    @abstractmethod
    async def audit_counts(self, tenant: str, query: AuditQuery) -> list[tuple[str, str, str, int]]:
        """(agency id, action, outcome, count) over the lines the query selects (its paging ignored)."""

    def health(self) -> dict[str, Any]:
        return {"ok": True}
