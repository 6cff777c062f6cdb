"""The facilities and sensors of every tenant, in memory, kept in step with the store.

Loaded from the stored entities at start (per known tenant) and updated from every committed
change, so the domain never scans the store on the hot path. What the entities say about
themselves (name, type, member, facility) is taken from each change; what the domain computes
(thermal models, stuck flags, the data grade) is kept from memory, because a change published
after the domain's own write may carry an older copy of it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from ucity.core.bus import EntityChange
from ucity.domains.facility_safety.config import FacilitySafetyConfig
from ucity.domains.facility_safety.models import Facility, Sensor, facility_from_doc, iri, is_facility, sensor_from_doc
from ucity.domains.facility_safety.rules import ASSESSED
from ucity.store.base import Doc, EntityQuery, Store, TypeExpr

PAGE = 1000


class Registry:
    def __init__(self, cfg: FacilitySafetyConfig) -> None:
        self.cfg = cfg
        self.facility_type = iri(cfg.facility_type)
        self.sensor_types = frozenset(iri(t) for t in cfg.sensor_types)
        self.names = cfg.attributes.model_dump()
        self._facilities: dict[tuple[str, str], Facility] = {}
        self._sensors: dict[tuple[str, str], Sensor] = {}
        self.tenants: set[str] = set()

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
        if change.after is None:
            self._facilities.pop(key, None)
            self._sensors.pop(key, None)
            return None
        if self.facility_type in types:
            self._put_facility(change.tenant, change.after)
        if self.is_sensor(types):
            return self._put_sensor(change.tenant, change.after)
        return None

    def _put_facility(self, tenant: str, doc: Doc) -> None:
        key = (tenant, doc["id"])
        if not is_facility(doc) and key not in self._facilities:
            return
        fresh = facility_from_doc(tenant, doc)
        old = self._facilities.get(key)
        if old is not None:  # the domain's own results are newest in memory
            fresh = replace(fresh, data_grade=old.data_grade, data_score=old.data_score,
                            data_grade_at=old.data_grade_at, emergency_recommended=old.emergency_recommended)
        self._facilities[key] = fresh

    def _put_sensor(self, tenant: str, doc: Doc) -> Sensor:
        key = (tenant, doc["id"])
        fresh = sensor_from_doc(tenant, doc, self.cfg.facility_relationships, self.names)
        old = self._sensors.get(key)
        if old is None:
            fresh.written_datasets = written_datasets(doc)
            self._sensors[key] = fresh
            return fresh
        old.types, old.facility_id, old.member, old.kind, old.name = (fresh.types, fresh.facility_id, fresh.member,
                                                                      fresh.kind, fresh.name)
        return old

    # -- reading ------------------------------------------------------------------------------------------------
    def facility(self, tenant: str, facility_id: str | None) -> Facility | None:
        return self._facilities.get((tenant, facility_id)) if facility_id else None

    def put_facility(self, facility: Facility) -> None:
        self._facilities[(facility.tenant, facility.id)] = facility
        self.tenants.add(facility.tenant)

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


async def _all(store: Store, tenant: str, types: tuple[str, ...]) -> list[Doc]:
    out: list[Doc] = []
    query = EntityQuery(types=TypeExpr(tuple((t,) for t in types)), limit=PAGE)
    while True:
        docs, _ = await store.query_entities(tenant, query)
        out.extend(docs)
        if len(docs) < PAGE:
            return out
        query.offset += PAGE
