"""The privacy migration of `CityEvent` entities written before QA7 F3 (their subject's pseudonym, and a sensitive
event's address, case number and exact place, readable by anybody with `data:read`, history included).

At start (`OperationsCenter.start`, before serving), once per tenant, version and settings (a `ops-event-privacy`
document per tenant records the `VERSION` done, the `fingerprint` of `ops.video_crime_types` it ran with, and the
counts; a tenant marked with both is skipped, so a start with nothing to do reads two small lists; a changed crime
list migrates again). Across processes on one store one process migrates a tenant: it claims it first (`insert_doc`
of `claim:<version>:<fingerprint>:<generation>`, renewed between batches, deleted once the mark is written); the
others wait for the mark on the platform clock; a claim not renewed for `CLAIM_LEASE_S` (its process stopped) is
taken over by claiming the next generation. So the audit line below is written once per tenant and run:

1. every event's entity is written again as `events.event_entity` makes it now, if it differs (a conditional
   write: an entity changed since it was read, by another API process, is left to that write); an entity without
   an event record any more (retention purged the record: `retention.ops_closed_days`) is cleaned as the entity it
   is (`clean_entity`: no `subjectRef`; judged sensitive from its own service, type and pseudonym, or when its type
   is gone, it loses `address` and `sourceRef` and its location is coarsened);
2. from the temporal history of every `CityEvent` entity (deleted ones too), deleted:
   * `subjectRef`: every instance (no entity carries it any more);
   * of a sensitive event: every instance of `address` and `sourceRef`, and the `location` instances other than its
     coarse cell (the exact points);
   * of a protected type (`PROTECTED_TYPES`): every instance of `eventType`, and the `description` instances other
     than its service-only one (they name the type);
   * of an entity that no longer exists and has no event record (nothing tells whether it was sensitive): every
     instance of those six attributes;
   the rest of the history (status, level, times ...) and the whole history of other events stay;
3. one audit line in the tenant (`retention` / `privacy-migration`, actor `system:ops-privacy-migration`, the
   counts, never a value) when something was changed.
Idempotent: run again over the same data it changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any

from ucity.core.bus import Context
from ucity.ngsild.context import core_context
from ucity.ngsild.model import normalize_entity
from ucity.ngsild.ops import replace_op
from ucity.ops.audit import AuditLog
from ucity.ops.events import (
    COARSE_CELL_DEG,
    ENTITY_TYPE,
    PERSON_TYPES,
    PROTECTED_TYPES,
    SENSITIVE_SERVICES,
    SERVICES,
    Event,
    EventService,
    coarse_point,
    event_entity,
    is_sensitive,
)
from ucity.store.base import ApplyFn, Doc, EntityQuery, Mutation, OpsEventQuery, Outcome, TemporalQuery, TypeExpr
from ucity.store.tenant_migration import TenantMigration

log = logging.getLogger(__name__)
KIND = "ops-event-privacy"  # (tenant, "done") -> {"version", "fingerprint", "videoCrimeTypes", "at", counts};
# (tenant, "claim:<version>:<fingerprint>:<generation>") -> {"owner", "at"}: the process migrating the tenant
VERSION = 1  # bump when the entity's form loses more: every tenant is migrated again
ACTOR = "system:ops-privacy-migration"
BATCH = 500
MAX_INSTANCES = 100_000  # per attribute of one event: far above what an event's changes write


def _iri(term: str) -> str:
    return core_context().expand_term(term)


TYPE_IRI = _iri(ENTITY_TYPE)
SUBJECT_REF, ADDRESS, SOURCE_REF, LOCATION, EVENT_TYPE, DESCRIPTION, SERVICE, CELL = (
    _iri(t) for t in ("subjectRef", "address", "sourceRef", "location", "eventType", "description", "service",
                      "locationCellDeg"))
HISTORY_ATTRS = (SUBJECT_REF, ADDRESS, SOURCE_REF, LOCATION, EVENT_TYPE, DESCRIPTION)
_SYSTEM_MEMBERS = frozenset({"createdAt", "modifiedAt", "instanceId"})


@dataclass(frozen=True, slots=True)
class Policy:
    """What of one entity's history may stay: everything but `subjectRef` for an event that is not sensitive; of a
    sensitive one no address or source reference and only `location` instances equal to `location`; of a protected
    type no `eventType` and only `description` instances equal to `description`."""

    sensitive: bool
    protected: bool
    location: Any = None
    description: Any = None

    @classmethod
    def of(cls, doc: Doc, sensitive: bool, protected: bool) -> Policy:
        """The policy of a (normalised) entity as it is now written."""
        return cls(sensitive, protected, _member(doc, LOCATION, "value"), _member(doc, DESCRIPTION, "languageMap"))


def _member(doc: Doc, attr: str, member: str) -> Any:
    instances = doc.get("attrs", {}).get(attr) or []
    return instances[0].get(member) if instances else None


def _plain(doc: Doc) -> tuple[Any, Any]:
    """An entity's types and attributes without the members the store stamps: what two writes compare by."""
    attrs = {k: [{m: v for m, v in i.items() if m not in _SYSTEM_MEMBERS} for i in instances]
             for k, instances in doc.get("attrs", {}).items()}
    return sorted(doc.get("type", [])), attrs


def _rewrite_op(new: Doc, seen: Doc | None) -> ApplyFn:
    """Replace the entity with `new`, unless it changed since it was read as `seen` (another API process wrote it:
    that write is of this version's form, or that version's concern)."""
    replace = replace_op(new, True)

    def apply(before: Doc | None, now: str) -> Outcome:
        if (before is None) != (seen is None) or (before is not None and seen is not None
                                                  and before.get("modifiedAt") != seen.get("modifiedAt")):
            return Outcome(before, "update", changed=False, result="changed-meanwhile")
        return replace(before, now)

    return apply


def clean_entity(doc: Doc, crime_types: frozenset[str]) -> tuple[Doc, Policy]:
    """An old `CityEvent` entity without an event record, cleaned as `event_entity` would have written it, and the
    policy of its history. Sensitive as `is_sensitive` decides, from what the entity says: its service, its type,
    a `subjectRef` (the event had a subject); an entity whose type is missing (a protected type, or unknown) or
    already coarse counts as sensitive."""
    attrs = {k: [dict(i) for i in v] for k, v in doc.get("attrs", {}).items() if k != SUBJECT_REF}
    service, code = _member(doc, SERVICE, "value"), _member(doc, EVENT_TYPE, "value")
    sensitive = (service in SENSITIVE_SERVICES or code is None or code in PERSON_TYPES or code in crime_types
                 or SUBJECT_REF in doc.get("attrs", {}) or CELL in attrs)
    protected = code is None or code in PROTECTED_TYPES
    if sensitive:
        attrs.pop(ADDRESS, None)
        attrs.pop(SOURCE_REF, None)
        for instance in attrs.get(LOCATION, []):
            coords = (instance.get("value") or {}).get("coordinates")
            if isinstance(coords, list) and len(coords) >= 2 and CELL not in doc.get("attrs", {}):
                instance["value"] = {"type": "Point", "coordinates": list(coarse_point((coords[0], coords[1])))}
        if LOCATION in attrs:
            attrs[CELL] = [{"type": "Property", "value": COARSE_CELL_DEG}]
    if protected:
        attrs.pop(EVENT_TYPE, None)
        if service in SERVICES:
            attrs[DESCRIPTION] = [{"type": "LanguageProperty",
                                   "languageMap": {lang: SERVICES[service][lang] for lang in ("ko", "en")}}]
        else:
            attrs.pop(DESCRIPTION, None)
    cleaned = {"id": doc["id"], "type": list(doc.get("type", [])), "attrs": {
        k: [{m: v for m, v in i.items() if m not in _SYSTEM_MEMBERS} for i in instances]
        for k, instances in attrs.items()}}
    return cleaned, Policy.of(cleaned, sensitive, protected)


def fingerprint(crime_types: frozenset[str]) -> str:
    """What the migration's result depends on besides `VERSION`: the listed crime types (`ops.video_crime_types`),
    which make an event sensitive (`is_sensitive`). A change of the list migrates every tenant again."""
    return hashlib.sha256(json.dumps(sorted(crime_types)).encode()).hexdigest()[:16]


class EventPrivacyMigration(TenantMigration):
    """Runs the migration (module docstring) for the tenants not yet marked with `VERSION` and the settings'
    `fingerprint`, each tenant in one process at a time (ucity/store/tenant_migration.py)."""

    kind, version, label = KIND, VERSION, "privacy migration"

    def __init__(self, events: EventService, audit: AuditLog) -> None:
        super().__init__(events.store, events.clock)
        self.events = events
        self.audit = audit
        self.crime_types = frozenset(events.settings.video_crime_types)
        self._fingerprint = fingerprint(self.crime_types)

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    async def finished(self, tenant: str, report: dict[str, int]) -> dict[str, Any]:
        if any(report.values()):
            detail: dict[str, Any] = {"data": "CityEvent", "version": VERSION, "fingerprint": self.fingerprint,
                                      **report}
            await self.audit.append(self.audit.row(tenant, "retention", "privacy-migration", ACTOR, outcome="ok",
                                                   **detail))
            log.warning("CityEvent entities of tenant %s migrated to the private form: %s", tenant, report)
        return {"videoCrimeTypes": sorted(self.crime_types)}

    async def migrate(self, tenant: str) -> dict[str, int]:
        """Rewrite the tenant's `CityEvent` entities, then purge their history (module docstring); the counts."""
        policies: dict[str, Policy] = {}
        rewritten = await self._rewrite_events(tenant, policies)
        await self.renew()
        cleaned = await self._clean_orphans(tenant, policies)
        await self.renew()
        series, instances = await self._purge_history(tenant, policies)
        return {"entitiesRewritten": rewritten, "orphansCleaned": cleaned, "historySeriesDeleted": series,
                "historyInstancesDeleted": instances}

    async def _write(self, tenant: str, writes: list[tuple[Doc, Doc | None]]) -> int:
        """Write the (new document, stored one) pairs that differ; how many were written."""
        changed = [(new, seen) for new, seen in writes if seen is None or _plain(new) != _plain(seen)]
        if not changed:
            return 0
        results = await self.store.mutate(tenant, [Mutation(new["id"], _rewrite_op(new, seen)) for new, seen in changed],
                                          Context(actor=ACTOR))
        for result in results:
            if isinstance(result, Exception):
                raise result
        return sum(1 for r in results if isinstance(r, Outcome) and r.result != "changed-meanwhile")

    async def _stored(self, tenant: str, ids: list[str]) -> dict[str, Doc]:
        docs, _ = await self.store.query_entities(tenant, EntityQuery(ids=tuple(ids), limit=len(ids)))
        return {d["id"]: d for d in docs}

    async def _rewrite_events(self, tenant: str, policies: dict[str, Policy]) -> int:
        written = offset = 0
        while True:
            docs, _ = await self.store.query_ops_events(tenant, OpsEventQuery(limit=BATCH, offset=offset))
            events = [Event.from_doc(d) for d in docs]
            stored = await self._stored(tenant, [e.entity_id for e in events]) if events else {}
            writes = []
            for event in events:
                new = normalize_entity(event_entity(event, self.crime_types), core_context())
                policies[event.entity_id] = Policy.of(new, is_sensitive(event, self.crime_types),
                                                      event.type_code in PROTECTED_TYPES)
                writes.append((new, stored.get(event.entity_id)))
            written += await self._write(tenant, writes)
            await self.renew()
            if len(docs) < BATCH:
                return written
            offset += BATCH

    async def _clean_orphans(self, tenant: str, policies: dict[str, Policy]) -> int:
        ids = [i for i in await self.store.entity_ids(tenant, EntityQuery(types=TypeExpr(((TYPE_IRI,),))))
               if i not in policies]
        written = 0
        for start in range(0, len(ids), BATCH):
            stored = await self._stored(tenant, ids[start:start + BATCH])
            writes: list[tuple[Doc, Doc | None]] = []
            for entity_id, doc in stored.items():
                cleaned, policies[entity_id] = clean_entity(doc, self.crime_types)
                writes.append((cleaned, doc))
            written += await self._write(tenant, writes)
            await self.renew()
        return written

    async def _purge_history(self, tenant: str, policies: dict[str, Policy]) -> tuple[int, int]:
        """Delete what the policies do not keep: whole series, then single instances (all found before any is
        deleted, as deleting would move the pages). (series deleted, instances deleted)"""
        series: list[tuple[str, str]] = []
        instances: list[tuple[str, str, str]] = []
        offset = 0
        while True:
            page, _ = await self.store.temporal_query(tenant, TemporalQuery(
                types=TypeExpr(((TYPE_IRI,),)), attrs=HISTORY_ATTRS, instances_only=True,
                limit_instances=MAX_INSTANCES, entity_limit=BATCH, entity_offset=offset))
            for entity in page:
                policy = policies.get(entity.id)
                for attr, found in entity.attrs.items():
                    if not found.instances:
                        continue
                    whole, ids = _unwanted(policy, attr, found.instances)
                    if whole:
                        series.append((entity.id, attr))
                    else:
                        instances += [(entity.id, attr, i) for i in ids]
            await self.renew()
            if len(page) < BATCH:
                break
            offset += BATCH
        deleted_series = 0
        for entity_id, attr in series:
            deleted_series += bool(await self.store.delete_history(tenant, entity_id, attr, all_datasets=True))
        await self.renew()
        deleted = 0
        for n, (entity_id, attr, instance_id) in enumerate(instances):
            if n % BATCH == 0:
                await self.renew()
            deleted += await self.store.delete_history(tenant, entity_id, attr, instance_id=instance_id,
                                                       all_datasets=True)
        return deleted_series, deleted


def _unwanted(policy: Policy | None, attr: str, instances: list[dict[str, Any]]) -> tuple[bool, list[str]]:
    """(the whole series goes, else the instance ids that go) of one attribute's history under `policy` (None: an
    entity that no longer exists, of an event no longer recorded: nothing of these attributes stays)."""
    if policy is None or attr == SUBJECT_REF:
        return True, []
    if policy.sensitive and attr in (ADDRESS, SOURCE_REF):
        return True, []
    if policy.protected and attr == EVENT_TYPE:
        return True, []
    if policy.sensitive and attr == LOCATION:
        keep, member = policy.location, "value"
    elif policy.protected and attr == DESCRIPTION:
        keep, member = policy.description, "languageMap"
    else:
        return False, []
    if keep is None:
        return True, []
    return False, [str(i["instanceId"]) for i in instances if i.get(member) != keep and i.get("instanceId")]
