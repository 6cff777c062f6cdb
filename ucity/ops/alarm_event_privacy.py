"""The privacy migration of operations events made from alarms about a person before FIX-H: their `details` keep the
entity's raw id (`urn:ngsi-ld:CareDevice:kim-younghee-home`, which can be a name), they are not `about_person`, and
their `CityEvent` is the non-sensitive form (the home's address, the exact place, the alarm id).

At start (`OperationsCenter.start`, after `event_privacy`), once per tenant, version and personal types
(ucity/store/tenant_migration.py: a `ops-alarm-event-privacy` document per tenant marks the `VERSION` done and the
`fingerprint` of the personal entity types it ran with; a type declared or configured later migrates again), the
events of source `ucity-alarms` (`center.ALARM_SOURCE`) not yet `about_person` whose `details` end in
`(경보 alarm <alarm id>, <entity id>)` with an entity id of a personal type (`privacy.personal_entity_types` and the
declared ones, the type read from the id, as `center._about_person` does when the alarm has no `entity_type`):

1. the record gets the id masked in `details` (`events.mask_entity_id`, every occurrence) and `about_person`; its
   `updated_at` stays (nobody handled it);
2. its `CityEvent` entity is written again as `events.event_entity` makes it now (sensitive: no address, no source
   reference, the coarse cell);
3. that entity's temporal history loses what the sensitive form leaves out (`event_privacy._unwanted`: address and
   source reference, the exact points);
4. one audit line in the tenant (`retention` / `privacy-migration`, actor `system:ops-privacy-migration`,
   `data: OpsEvent`, the counts, never a value) and one log line when something was changed.
Idempotent: a migrated event is `about_person` and is not looked at again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from typing import Any

from ucity.core.bus import Context
from ucity.core.privacy import PersonalTypes
from ucity.ngsild.context import core_context
from ucity.ngsild.model import normalize_entity
from ucity.ngsild.ops import replace_op
from ucity.ops.audit import AuditLog
from ucity.ops.event_privacy import ACTOR, BATCH, HISTORY_ATTRS, MAX_INSTANCES, Policy, _unwanted
from ucity.ops.events import PROTECTED_TYPES, Event, EventService, entity_type_of, event_entity, mask_entity_id
from ucity.store.base import Mutation, OpsEventQuery, TemporalQuery
from ucity.store.tenant_migration import TenantMigration

log = logging.getLogger(__name__)
KIND = "ops-alarm-event-privacy"
VERSION = 1
ALARM_SOURCE = "ucity-alarms"  # center.ALARM_SOURCE (center imports this module)


def raw_entity(event: Event) -> str | None:
    """The entity id an alarm event's `details` end with (`(경보 alarm <alarm id>, <entity id>)`, center
    `_alarm_details` as it was before FIX-H), or None."""
    alarm = event.alarm_id or event.source_ref
    found = re.search(r"\(경보 alarm " + re.escape(alarm) + r", ([^\s()]+)\)$", event.details) if alarm else None
    return found.group(1) if found else None


def fingerprint(personal_types: frozenset[str]) -> str:
    return hashlib.sha256(json.dumps(sorted(personal_types)).encode()).hexdigest()[:16]


class AlarmEventPrivacyMigration(TenantMigration):
    """Runs the migration (module docstring) for the tenants not yet marked with `VERSION` and the personal types'
    `fingerprint`, each tenant in one process at a time."""

    kind, version, label = KIND, VERSION, "privacy migration of alarm events"

    def __init__(self, events: EventService, audit: AuditLog, privacy: PersonalTypes) -> None:
        super().__init__(events.store, events.clock)
        self.events = events
        self.audit = audit
        self.privacy = privacy  # read at run time: the domains declare their types in setup

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.privacy.names)

    async def finished(self, tenant: str, report: dict[str, int]) -> dict[str, Any]:
        if any(report.values()):
            detail: dict[str, Any] = {"data": "OpsEvent", "version": VERSION, "fingerprint": self.fingerprint,
                                      **report}
            await self.audit.append(self.audit.row(tenant, "retention", "privacy-migration", ACTOR, outcome="ok",
                                                   **detail))
            log.warning("operations events of alarms about a person of tenant %s migrated to the private form: %s",
                        tenant, report)
        return {"personalEntityTypes": sorted(self.privacy.names)}

    async def migrate(self, tenant: str) -> dict[str, int]:
        crime_types = frozenset(self.events.settings.video_crime_types)
        masked: list[Event] = []
        offset = 0
        while True:
            docs, _ = await self.store.query_ops_events(tenant, OpsEventQuery(source_system=ALARM_SOURCE,
                                                                              limit=BATCH, offset=offset))
            for doc in docs:
                event = await self._mask(tenant, Event.from_doc(doc))
                if event is not None:
                    masked.append(event)
            await self.renew()
            if len(docs) < BATCH:
                break
            offset += BATCH
        policies: dict[str, Policy] = {}
        for start in range(0, len(masked), BATCH):
            batch = masked[start:start + BATCH]
            mutations = []
            for event in batch:
                new = normalize_entity(event_entity(event, crime_types), core_context())
                policies[event.entity_id] = Policy.of(new, True, event.type_code in PROTECTED_TYPES)
                mutations.append(Mutation(event.entity_id, replace_op(new, True)))
            for result in await self.store.mutate(tenant, mutations, Context(actor=ACTOR)):
                if isinstance(result, Exception):
                    raise result
            await self.renew()
        series, instances = await self._purge_history(tenant, policies)
        return {"alarmEventsMasked": len(masked), "historySeriesDeleted": series,
                "historyInstancesDeleted": instances}

    async def _mask(self, tenant: str, seen: Event) -> Event | None:
        """The event masked and saved (under its lock, read again), or None when it is not an old one of a person."""
        if seen.about_person or not self._personal(raw_entity(seen)):
            return None
        async with self.events._locks.hold((tenant, seen.id)):
            doc = await self.store.get_ops_event(tenant, seen.id)
            event = Event.from_doc(doc) if doc is not None else None
            raw = raw_entity(event) if event is not None else None
            if event is None or event.about_person or raw is None or not self._personal(raw):
                return None
            event.details = event.details.replace(raw, mask_entity_id(raw))
            event.about_person = True
            await self.store.save_ops_event(event.to_row(), [])
            return event

    def _personal(self, entity: str | None) -> bool:
        kind = entity_type_of(entity or "")
        return bool(kind) and kind in self.privacy.names

    async def _purge_history(self, tenant: str, policies: dict[str, Policy]) -> tuple[int, int]:
        """Delete from the masked events' history what their sensitive form leaves out. (series, instances)"""
        deleted_series = deleted = 0
        ids = list(policies)
        for start in range(0, len(ids), BATCH):
            page, _ = await self.store.temporal_query(tenant, TemporalQuery(
                ids=tuple(ids[start:start + BATCH]), attrs=HISTORY_ATTRS, instances_only=True,
                limit_instances=MAX_INSTANCES, entity_limit=BATCH))
            for entity in page:
                for attr, found in entity.attrs.items():
                    if not found.instances:
                        continue
                    whole, instance_ids = _unwanted(policies.get(entity.id), attr, found.instances)
                    if whole:
                        deleted_series += bool(await self.store.delete_history(tenant, entity.id, attr,
                                                                               all_datasets=True))
                    for instance_id in instance_ids:
                        deleted += await self.store.delete_history(tenant, entity.id, attr,
                                                                   instance_id=instance_id, all_datasets=True)
                await self.renew()
        return deleted_series, deleted
