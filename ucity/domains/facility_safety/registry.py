"""The facilities and sensors of every tenant, in memory, kept in step with the store.

Loaded from the stored entities at start (per known tenant) and updated from every committed
change, so the domain never scans the store on the hot path.

A facility's record is made from its committed document alone (legal grade, inspections, and the
data grade the domain writes on it): the registry, the entity and a restart agree. The domain's own
facility writes go through `Registry.write`, which takes the committed document in at once and
keeps the changes committed before it, still waiting to be published, from overwriting it.

A sensor's record keeps what the domain computes (thermal models, stuck flags) in memory, because a
change published after the domain's own write may carry an older copy of it; what the entity says
about itself (name, type, member, facility) is taken from each change, on the same object.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from ucity.core.bus import Context, EntityChange
from ucity.core.clock import parse_iso
from ucity.domains.facility_safety.config import FacilitySafetyConfig
from ucity.domains.facility_safety.models import Facility, Sensor, facility_from_doc, iri, is_facility, sensor_from_doc
from ucity.domains.facility_safety.rules import ASSESSED
from ucity.store.base import Doc, EntityQuery, Mutation, Outcome, Store, TypeExpr

PAGE = 1000
BASELINE_ATTR = "thermalBaselineAt"  # when the sensor's thermal history restarts (a replaced device, QA5 F9)


class Registry:
    def __init__(self, cfg: FacilitySafetyConfig) -> None:
        self.cfg = cfg
        self.facility_type = iri(cfg.facility_type)
        self.sensor_types = frozenset(iri(t) for t in cfg.sensor_types)
        self.names = cfg.attributes.model_dump()
        self._facilities: dict[tuple[str, str], Facility] = {}
        self._sensors: dict[tuple[str, str], Sensor] = {}
        self._baselines: dict[tuple[str, str], datetime] = {}  # sensor -> its `thermalBaselineAt`
        self.tenants: set[str] = set()
        # The domain's own facility writes (`write`): a committed document taken in before its change was
        # published, and the facility documents published while a write is in flight.
        self._ahead: dict[tuple[str, str], Doc] = {}
        self._watchers: dict[tuple[str, str], list[list[Doc | None]]] = {}

    # -- loading ------------------------------------------------------------------------------------------------
    async def load(self, store: Store, tenant: str) -> None:
        """Every facility and sensor of a tenant; records already taken in from changes are newer and kept."""
        self.tenants.add(tenant)
        for doc in await _all(store, tenant, (self.facility_type,)):
            if (tenant, doc["id"]) not in self._facilities:
                self._put_facility(tenant, doc)
        for doc in await _all(store, tenant, tuple(self.sensor_types)):
            if (tenant, doc["id"]) not in self._sensors:
                self._put_sensor(tenant, doc)

    def concerns(self, types: Iterable[str]) -> bool:
        """Whether entities of these types are facilities or sensors (the rest of the city is ignored)."""
        held = set(types)
        return self.facility_type in held or not self.sensor_types.isdisjoint(held)

    # -- changes ------------------------------------------------------------------------------------------------
    def is_sensor(self, types: Iterable[str]) -> bool:
        return not self.sensor_types.isdisjoint(types)

    def apply(self, change: EntityChange) -> Sensor | None:
        """Take in one committed change; the sensor it concerns, if it is one."""
        types = change.types
        key = (change.tenant, change.entity_id)
        if self.facility_type in types and not self._in_order(key, change.after):
            return None  # committed before the domain's own write of this facility, which is held already
        if change.after is None:
            self._facilities.pop(key, None)
            self._sensors.pop(key, None)
            return None
        if self.facility_type in types:
            self._put_facility(change.tenant, change.after)
        if self.is_sensor(types):
            return self._put_sensor(change.tenant, change.after)
        return None

    def _in_order(self, key: tuple[str, str], doc: Doc | None) -> bool:
        """Whether a published facility document is newer than the one held (see `write`)."""
        for seen in self._watchers.get(key, ()):
            seen.append(doc)
        ahead = self._ahead.get(key)
        if ahead is None:
            return True
        if doc is ahead or doc == ahead:  # the domain's own write, published: from now on changes are newer
            del self._ahead[key]
            return True
        return False

    async def write(self, store: Store, tenant: str, mutations: list[Mutation], context: Context
                    ) -> list[Outcome | Exception]:
        """The domain's own write of facilities (and other entities): committed, then at once in the registry.

        A facility's record is made from its committed document only, so the registry, the entity and a
        restart agree. Taking the outcome in now (an API reading it right after the write sees it) must not
        let the changes still queued for publication overwrite it: published in commit order, those older
        than this write come first. So the registry watches the facility's published documents while the
        write is in flight. If this write's own document was among them, it is in and the registry is as new
        or newer. Otherwise it is taken in now, and published documents of the facility are passed over
        until its own arrives.
        """
        keys = {(tenant, m.entity_id) for m in mutations}
        seen: dict[tuple[str, str], list[Doc | None]] = {k: [] for k in keys}
        for key in keys:
            self._watchers.setdefault(key, []).append(seen[key])
        try:
            outcomes = await store.mutate(tenant, mutations, context)
        finally:
            for key in keys:
                rest = [w for w in self._watchers[key] if w is not seen[key]]
                if rest:
                    self._watchers[key] = rest
                else:
                    del self._watchers[key]
        for mutation, outcome in zip(mutations, outcomes, strict=True):
            if isinstance(outcome, Exception) or not outcome.changed or outcome.doc is None:
                continue
            doc, key = outcome.doc, (tenant, mutation.entity_id)
            if self.facility_type not in doc.get("type", ()) or any(d is doc or d == doc for d in seen[key]):
                continue
            self._ahead[key] = doc
            self._put_facility(tenant, doc)  # a new tenant is adopted when the change is published (service)
        return outcomes

    def _put_facility(self, tenant: str, doc: Doc) -> None:
        key = (tenant, doc["id"])
        if not is_facility(doc) and key not in self._facilities:
            return
        self._facilities[key] = facility_from_doc(tenant, doc)

    def _put_sensor(self, tenant: str, doc: Doc) -> Sensor:
        key = (tenant, doc["id"])
        baseline = _baseline_of(doc)
        if baseline is not None:  # only ever moves forward: a change published late carries an older one, or none
            self.set_baseline(tenant, doc["id"], baseline)
        fresh = sensor_from_doc(tenant, doc, self.cfg.facility_relationships, self.names)
        old = self._sensors.get(key)
        if old is None:
            fresh.written_datasets = written_datasets(doc)
            self._sensors[key] = fresh
            return fresh
        old.types, old.facility_id, old.member, old.kind, old.name = (fresh.types, fresh.facility_id, fresh.member,
                                                                      fresh.kind, fresh.name)
        old.declared_kind, old.detached_from = fresh.declared_kind, fresh.detached_from
        if fresh.baseline is not None and _newer(fresh.baseline.at, old.baseline.at if old.baseline else None,
                                                 old.baseline is None):
            old.baseline = fresh.baseline  # only ever forward: a change published late carries an older one
        return old

    def set_baseline(self, tenant: str, sensor_id: str, at: datetime) -> None:
        key = (tenant, sensor_id)
        held = self._baselines.get(key)
        if held is None or at > held:
            self._baselines[key] = at

    def baseline_at(self, tenant: str, sensor_id: str) -> datetime | None:
        """When the sensor's own history starts for its thermal model and stuck check (None: all of it)."""
        return self._baselines.get((tenant, sensor_id))

    # -- reading ------------------------------------------------------------------------------------------------
    def facility(self, tenant: str, facility_id: str | None) -> Facility | None:
        return self._facilities.get((tenant, facility_id)) if facility_id else None

    def put_sensor_doc(self, tenant: str, doc: Doc) -> Sensor:
        """Take in a sensor the domain itself just wrote (its change arrives later on the bus)."""
        return self._put_sensor(tenant, doc)

    def sensor(self, tenant: str, sensor_id: str) -> Sensor | None:
        return self._sensors.get((tenant, sensor_id))

    def facilities(self, tenant: str) -> list[Facility]:
        return sorted((f for (t, _), f in self._facilities.items() if t == tenant), key=lambda f: f.id)

    def sensors_of(self, tenant: str, facility_id: str) -> list[Sensor]:
        return sorted((s for (t, _), s in self._sensors.items() if t == tenant and s.facility_id == facility_id),
                      key=lambda s: s.id)

    def sensors(self, tenant: str) -> list[Sensor]:
        return sorted((s for (t, _), s in self._sensors.items() if t == tenant), key=lambda s: s.id)


def written_datasets(doc: Doc) -> dict[str, set[str | None]]:
    """Which datasetIds of each assessed attribute a stored sensor has (a ladder it was assessed on)."""
    out: dict[str, set[str | None]] = {}
    for channel, name in ASSESSED.items():
        instances = doc.get("attrs", {}).get(iri(name), [])
        if instances:
            out[channel] = {i.get("datasetId") for i in instances}
    return out


def _newer(at: str | None, held: str | None, none_held: bool) -> bool:
    """Whether an installation baseline written at `at` replaces the one held (written at `held`): a provisioned one
    (no time) only when none is held; a written one when it is not older."""
    if none_held:
        return True
    if at is None:
        return False
    return held is None or parse_iso(at) >= parse_iso(held)


def _baseline_of(doc: Doc) -> datetime | None:
    for inst in doc.get("attrs", {}).get(iri(BASELINE_ATTR), []):
        if "datasetId" not in inst and isinstance(inst.get("value"), str):
            try:
                return parse_iso(inst["value"])
            except ValueError:
                return None
    return None


async def _all(store: Store, tenant: str, types: tuple[str, ...]) -> list[Doc]:
    out: list[Doc] = []
    query = EntityQuery(types=TypeExpr(tuple((t,) for t in types)), limit=PAGE)
    while True:
        docs, _ = await store.query_entities(tenant, query)
        out.extend(docs)
        if len(docs) < PAGE:
            return out
        query.offset += PAGE
