"""The privacy migration of `Alert` entities about a person written before QA10 F2 (their `alertSource`, the
person's id, and their exact `location`, readable by every `data:read` holder, history included).

Since QA10 F2 the Alert of an alarm about a person (its entity's type in `privacy.personal_entity_types`) has no
`alertSource` and as `location` the centre of its `privacy.location_cell_deg` cell, with `locationCellDeg`
(ucity/alarms/alert.py). The personal types are those in force at start, the settings' and those the domains
declare in `setup` (ucity/core/privacy.py, QA13 F1). This makes the Alerts written before look the same, at
start (the component `alertPrivacy`, before serving), once per tenant, version and settings, like ucity/ops/event_privacy.py: a
`alarm-alert-privacy` document per tenant records the `VERSION` done, the `fingerprint` of the settings it ran with
(the personal types and the cell) and the counts; a tenant marked with both is skipped (a start with nothing to do
reads one small list), a change of either setting migrates again. Across processes on one store one process
migrates a tenant: it claims it (`insert_doc` of `claim:<version>:<fingerprint>:<generation>`, renewed between
batches, deleted once the mark is written); the others wait for the mark on the platform clock; a claim not renewed
for `CLAIM_LEASE_S` (its process stopped) is taken over by claiming the next generation.

An Alert is about a person when its alarm (the alarms table) has a personal entity type, or its `alertSource`
(current, or any instance of its history) names an entity of a personal type (the stored entity's types, else the
type its `urn:ngsi-ld:<Type>:...` id names), or it already has `locationCellDeg`. Of such an Alert:

1. the current entity loses `alertSource`; each `location` instance becomes the centre of its cell (dropped when it
   is no geometry) and `locationCellDeg` is set: what `alert_entity` writes now. A conditional write (an Alert
   changed since it was read, by the alarm service of any process, is left to that write, which is private);
2. its history (of a deleted Alert too): every `alertSource` instance is deleted, and every `location` instance
   that is not a cell's centre is replaced by its cell's centre (the instance stays, with its times: the history
   still says when the alarm moved, only coarsely);
3. one audit line in the tenant (`retention` / `privacy-migration`, actor `system:alert-privacy-migration`, `data`
   `Alert`, the counts, never a value) when something was changed.
The Alerts of other alarms, and every other attribute, stay as they are. Idempotent: run again over the same data
it changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from ucity.alarms.alert import AlertPrivacy, sync_op
from ucity.core.bus import Context
from ucity.core.clock import Clock, to_micros
from ucity.ngsild.context import core_context
from ucity.store.base import (
    AlarmQuery,
    ApplyFn,
    AuditRow,
    Doc,
    EntityQuery,
    Mutation,
    Outcome,
    Store,
    TemporalQuery,
    TypeExpr,
)
from ucity.store.tenant_migration import TenantMigration

log = logging.getLogger(__name__)
KIND = "alarm-alert-privacy"  # (tenant, "done") -> {"version", "fingerprint", "at", counts};
# (tenant, "claim:<version>:<fingerprint>:<generation>") -> {"owner", "at"}: the process migrating the tenant
VERSION = 1  # bump when the Alert of a person loses more: every tenant is migrated again
ACTOR = "system:alert-privacy-migration"
BATCH = 500
MAX_INSTANCES = 100_000  # per attribute of one Alert: far above what an alarm's changes write
_SYSTEM_MEMBERS = frozenset({"createdAt", "modifiedAt", "instanceId"})


def _iri(term: str) -> str:
    return core_context().expand_term(term)


TYPE_IRI = _iri("Alert")
ALERT_SOURCE, LOCATION, CELL = (_iri(t) for t in ("alertSource", "location", "locationCellDeg"))


def fingerprint(privacy: AlertPrivacy) -> str:
    """What the migration's result depends on besides `VERSION`: which types are personal and the cell's size."""
    settings = {"types": sorted(privacy.personal_types), "cell": privacy.cell_deg}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _type_of(entity_id: str) -> str | None:
    """The type a `urn:ngsi-ld:<Type>:<id>` names (expanded), else None."""
    parts = entity_id.split(":", 3)
    if len(parts) == 4 and parts[0].lower() == "urn" and parts[1].lower() == "ngsi-ld" and parts[2]:
        return _iri(parts[2])
    return None


def private_doc(doc: Doc, privacy: AlertPrivacy) -> Doc:
    """A stored Alert about a person as `alert_entity` writes it now: no `alertSource`, each `location` instance
    the centre of its cell (none where it is no geometry), `locationCellDeg`; system members dropped."""
    attrs = {k: [{m: v for m, v in i.items() if m not in _SYSTEM_MEMBERS} for i in instances]
             for k, instances in doc.get("attrs", {}).items() if k != ALERT_SOURCE}
    locations = []
    for instance in attrs.pop(LOCATION, []):
        coarse = privacy.coarse(instance.get("value"))
        if coarse is not None:
            locations.append({**instance, "value": coarse})
    attrs.pop(CELL, None)
    if locations:
        attrs[LOCATION] = locations
        attrs[CELL] = [{"type": "Property", "value": privacy.cell_deg}]
    return {"id": doc["id"], "type": list(doc.get("type", [])), "attrs": attrs}


def _rewrite_op(new: Doc, seen: Doc) -> ApplyFn:
    """Bring the Alert to `new` (only what differs: `sync_op`), unless it changed since it was read as `seen`."""
    sync = sync_op(new, None)

    def apply(before: Doc | None, now: str) -> Outcome:
        if before is None or before.get("modifiedAt") != seen.get("modifiedAt"):
            return Outcome(before, "update", changed=False, result="changed-meanwhile")
        return sync(before, now)

    return apply


class AlertPrivacyMigration(TenantMigration):
    """The platform component `alertPrivacy`: runs the migration (module docstring) at start for the tenants not
    yet marked with `VERSION` and the settings' `fingerprint`, each tenant in one process at a time
    (ucity/store/tenant_migration.py)."""

    kind, version, label = KIND, VERSION, "Alert privacy migration"

    def __init__(self, store: Store, clock: Clock, privacy: AlertPrivacy) -> None:
        super().__init__(store, clock)
        self.privacy = privacy
        self.last: dict[str, dict[str, int]] = {}

    @property
    def fingerprint(self) -> str:
        """Of the personal types in force when asked (settings ∪ what domains declared in setup, QA13 F1)."""
        return fingerprint(self.privacy)

    @property
    def personal_iris(self) -> frozenset[str]:
        types = self.privacy.personal_types
        return frozenset(_iri(t) for t in types) | types

    async def start(self) -> None:
        self.last = await self.run()

    async def stop(self) -> None:
        return None

    def health(self) -> dict[str, Any]:
        """Always ok once started (a failed migration fails the start): what this process's start migrated."""
        return {"ok": True, "version": VERSION, "migrated": self.last}

    async def finished(self, tenant: str, report: dict[str, int]) -> dict[str, Any]:
        if any(report.values()):
            detail: dict[str, Any] = {"data": "Alert", "version": VERSION, "fingerprint": self.fingerprint, **report}
            await self.store.append_audit([AuditRow(tenant, to_micros(self.clock.now()), "retention",
                                                    "privacy-migration", ACTOR, detail, outcome="ok")])
            log.warning("Alert entities about a person of tenant %s migrated to the private form: %s", tenant, report)
        return {"personalTypes": sorted(self.privacy.personal_types), "cellDeg": self.privacy.cell_deg}

    # -- the migration of one tenant -----------------------------------------------------------------------
    async def migrate(self, tenant: str) -> dict[str, int]:
        """Make the tenant's Alerts about a person private, current entity and history (module docstring)."""
        personal = await self._personal_alarms(tenant)
        rewritten = await self._rewrite(tenant, personal)
        await self.renew()
        series, coarsened = await self._clean_history(tenant, personal)
        return {"alertsRewritten": rewritten, "historySeriesDeleted": series, "historyInstancesCoarsened": coarsened}

    async def _personal_alarms(self, tenant: str) -> set[str]:
        """The Alert ids of the tenant's alarms whose entity type is a personal one (the alarms table)."""
        ids: set[str] = set()
        offset = 0
        types = tuple(sorted(self.personal_iris))
        while True:
            docs, _ = await self.store.query_alarms(tenant, AlarmQuery(entity_types=types, limit=BATCH, offset=offset))
            ids |= {f"urn:ngsi-ld:Alert:{d['id']}" for d in docs}
            if len(docs) < BATCH:
                return ids
            offset += BATCH

    async def _personal_sources(self, tenant: str, sources: set[str]) -> set[str]:
        """Those of the entity ids `sources` that name an entity of a personal type: by its stored types, else by
        the type its URN names."""
        found: set[str] = set()
        listed = sorted(sources)
        personal = self.personal_iris
        for start in range(0, len(listed), BATCH):
            chunk = listed[start:start + BATCH]
            docs, _ = await self.store.query_entities(tenant, EntityQuery(ids=tuple(chunk), limit=len(chunk)))
            stored = {d["id"]: d.get("type", []) for d in docs}
            for source in chunk:
                types = stored.get(source) or [_type_of(source)]
                if any(t in personal for t in types if t):
                    found.add(source)
        return found

    async def _rewrite(self, tenant: str, personal: set[str]) -> int:
        """Write the current Alerts about a person in the private form; adds their ids to `personal`."""
        written = offset = 0
        while True:
            docs, _ = await self.store.query_entities(tenant, EntityQuery(
                types=TypeExpr(((TYPE_IRI,),)), limit=BATCH, offset=offset))
            sources = {str(s) for d in docs for s in _objects(d.get("attrs", {}).get(ALERT_SOURCE))}
            people = await self._personal_sources(tenant, sources) if sources else set()
            mutations = []
            for doc in docs:
                attrs = doc.get("attrs", {})
                if not (doc["id"] in personal or CELL in attrs
                        or any(str(s) in people for s in _objects(attrs.get(ALERT_SOURCE)))):
                    continue
                personal.add(doc["id"])
                new = private_doc(doc, self.privacy)
                if _plain(new) != _plain(doc):
                    mutations.append(Mutation(doc["id"], _rewrite_op(new, doc)))
            if mutations:
                results = await self.store.mutate(tenant, mutations, Context(actor=ACTOR))
                for result in results:
                    if isinstance(result, Exception):
                        raise result
                written += sum(1 for r in results if isinstance(r, Outcome) and r.changed)
            await self.renew()
            if len(docs) < BATCH:
                return written
            offset += BATCH

    async def _clean_history(self, tenant: str, personal: set[str]) -> tuple[int, int]:
        """Delete the `alertSource` series and coarsen the exact `location` instances of the Alerts about a person
        (deleted ones too): all found before any is changed, as deleting would move the pages; only what changes
        is kept meanwhile. (series deleted, instances coarsened or deleted)"""
        series: list[str] = []  # Alert ids whose alertSource history goes
        exact: list[tuple[str, str, dict[str, Any] | None]] = []  # (Alert id, instance id, its cell's centre)
        offset = 0
        while True:
            page, _ = await self.store.temporal_query(tenant, TemporalQuery(
                types=TypeExpr(((TYPE_IRI,),)), attrs=(ALERT_SOURCE, LOCATION), instances_only=True,
                limit_instances=MAX_INSTANCES, entity_limit=BATCH, entity_offset=offset))
            named = {e.id: {str(o) for o in _objects(e.attrs[ALERT_SOURCE].instances)}
                     for e in page if ALERT_SOURCE in e.attrs}
            people = await self._personal_sources(tenant, set().union(*named.values())) if named else set()
            for entity in page:
                if entity.id not in personal and not named.get(entity.id, set()) & people:
                    continue
                if entity.id in named:
                    series.append(entity.id)
                for instance in entity.attrs[LOCATION].instances if LOCATION in entity.attrs else []:
                    value, instance_id = instance.get("value"), instance.get("instanceId")
                    coarse = self.privacy.coarse(value)
                    if instance_id and coarse != value:
                        exact.append((entity.id, str(instance_id), coarse))
            await self.renew()
            if len(page) < BATCH:
                break
            offset += BATCH
        deleted = 0
        for alert in series:
            deleted += bool(await self.store.delete_history(tenant, alert, ALERT_SOURCE, all_datasets=True))
        coarsened = 0
        for n, (alert, instance_id, coarse) in enumerate(exact):
            if n % BATCH == 0:
                await self.renew()
            if coarse is None:  # no geometry: nothing of it can stay
                coarsened += bool(await self.store.delete_history(tenant, alert, LOCATION, instance_id=instance_id,
                                                                  all_datasets=True))
            else:
                coarsened += await self.store.replace_history_instance(tenant, alert, LOCATION, instance_id,
                                                                       {"type": "GeoProperty", "value": coarse})
        return deleted, coarsened


def _objects(instances: Any) -> list[Any]:
    """The objects of a Relationship's instances (stored or historic)."""
    return [i.get("object") for i in instances or [] if isinstance(i, dict) and i.get("object")]


def _plain(doc: Doc) -> tuple[Any, Any]:
    """An entity's types and attributes without the members the store stamps: what two writes compare by."""
    attrs = {k: [{m: v for m, v in i.items() if m not in _SYSTEM_MEMBERS} for i in instances]
             for k, instances in doc.get("attrs", {}).items()}
    return sorted(doc.get("type", [])), attrs
