"""Every alarm is also an NGSI-LD `Alert` entity (Smart Data Models dataModel.Alert).

The entity is `urn:ngsi-ld:Alert:<alarm id>`, written with the store's one write path (a
mutation), so NGSI-LD queries, subscriptions and history see alarms like any other entity. Its
names are plain terms expanded with the NGSI-LD core context alone (the default vocabulary, or the
core's own `location`): a client that sends no @context reads them back as short names
(`category`, `severity` ...). A client that uses the Smart Data Models @context for Alert gets the
same attributes under their full default-context IRIs.

Attributes:
  category      Smart Data Models category from the rule (default `security`); faults: `deviceFault`
                (not in the SDM enumeration: SDM has no device-fault category)
  subCategory   `evidence.subCategory` of the rule event if given, else the rule id
  severity      low / medium / high / critical from the level; faults: informational
  alertSource   Relationship to the entity the alarm is about
  dateIssued, validFrom   when it was raised; validTo   when it was cleared (absent while active)
  description   LanguageProperty (ko, en)
  location      GeoProperty: the rule event's location, else the entity's
  level (safety only), kind, status, rule, outcome (when closed)

A mere repeat of the condition (count, last seen) updates the alarm, not the entity: the Alert
changes when the alarm's state does, so its history and NGSI-LD subscriptions stay meaningful.

Only what changed is written. The entity always ends as `alert_entity(alarm)` (the attributes the
alarm no longer has, like validTo when it is re-activated, are removed), but attributes whose value
is the same keep their instance: no history row, no modifiedAt change, no notification for them. A
clear used to rewrite the whole entity (about 13 history rows, the whole entity normalized on the
event loop); it now writes status and validTo. The alarm remembers the short form it last
committed (`Alarm.alert_written`, in memory only), so only the changed attributes are normalized;
without it (a new alarm, after a restart, after a failed write) the whole entity is normalized and
the mutation compares it with the stored one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ucity.alarms.model import FAULT, Alarm
from ucity.core.bus import Context
from ucity.ngsild.context import core_context
from ucity.ngsild.model import expand_name, normalize_entity, stamp_copy
from ucity.ngsild.ops import create_op
from ucity.store.base import ApplyFn, Doc, Mutation, Outcome, Store

_SYSTEM_MEMBERS = frozenset({"createdAt", "modifiedAt", "instanceId"})


def _date(value: str) -> dict[str, Any]:
    return {"type": "Property", "value": {"@type": "DateTime", "@value": value}}


def _prop(value: Any) -> dict[str, Any]:
    return {"type": "Property", "value": value}


def alert_entity(alarm: Alarm) -> dict[str, Any]:
    """The Alert in NGSI-LD normalized form with short (core-context) names."""
    sub_category = alarm.evidence.get("subCategory") if isinstance(alarm.evidence.get("subCategory"), str) else None
    entity: dict[str, Any] = {
        "id": alarm.alert_id,
        "type": "Alert",
        "category": _prop(alarm.category or ("deviceFault" if alarm.kind == FAULT else "security")),
        "subCategory": _prop(sub_category or alarm.rule_id),
        "severity": _prop(alarm.severity),
        "alertSource": {"type": "Relationship", "object": alarm.entity_id},
        "dateIssued": _date(alarm.raised_at),
        "validFrom": _date(alarm.raised_at),
        "kind": _prop(alarm.kind),
        "status": _prop(alarm.status),
        "rule": _prop(alarm.rule_id),
    }
    if alarm.level:
        entity["level"] = _prop(alarm.level)
    if not alarm.active and alarm.cleared_at:
        entity["validTo"] = _date(alarm.cleared_at)
    if alarm.description:
        entity["description"] = {"type": "LanguageProperty", "languageMap": dict(alarm.description)}
    if alarm.location:
        entity["location"] = {"type": "GeoProperty", "value": alarm.location}
    if alarm.outcome:
        entity["outcome"] = _prop(alarm.outcome)
    return entity


def alert_doc(alarm: Alarm) -> Doc:
    """The stored (expanded) form, through the same validation as any NGSI-LD write."""
    return normalize_entity(alert_entity(alarm), core_context())


def _same(stored: list[dict[str, Any]], new: list[dict[str, Any]]) -> bool:
    """Stored instances carry the same content as the new ones (their timestamps aside)."""
    return len(stored) == len(new) and all({k: v for k, v in old.items() if k not in _SYSTEM_MEMBERS} == instance
                                           for old, instance in zip(stored, new, strict=True))


def sync_op(new: Doc, removed: frozenset[str] | None, whole: Callable[[], Doc] | None = None) -> ApplyFn:
    """Bring the stored Alert to `new`, writing only what differs.

    `removed` None: `new` is the whole entity, and stored attributes it lacks are removed. Else `new`
    holds the attributes that changed and `removed` the IRIs to remove. An entity that does not exist
    is created from `whole()` (the whole entity; `new` when not given).
    """

    def apply(before: Doc | None, now: str) -> Outcome:
        if before is None:
            return create_op(whole() if whole is not None else new)(None, now)
        stored = before.get("attrs", {})
        doc = dict(before)
        attrs = doc["attrs"] = dict(stored)
        written: dict[str, list[dict[str, Any]]] = {}
        for iri, instances in new["attrs"].items():
            old = stored.get(iri)
            if old is not None and _same(old, instances):
                continue
            previous = old[0] if old and len(old) == 1 and len(instances) == 1 else None
            attrs[iri] = written[iri] = [stamp_copy(i, now, previous) for i in instances]
        gone = (frozenset(stored) - frozenset(new["attrs"])) if removed is None else removed & frozenset(stored)
        for iri in gone:
            del attrs[iri]
        if removed is None:
            doc["type"] = new["type"]
        if not written and not gone and doc.get("type") == before.get("type"):
            return Outcome(before, "update", frozenset(), (), result="unchanged", changed=False)
        doc["modifiedAt"] = now
        history = tuple((iri, dict(i)) for iri, instances in written.items() for i in instances)
        return Outcome(doc, "update", frozenset(written) | gone, history, result="updated")

    return apply


async def write_alert(store: Store, alarm: Alarm, context: Context) -> Outcome | Exception | None:
    """Create the Alert or write what changed in it (one entity per alarm, ever); None if nothing did.

    Runs under the alarm's lock (one write of an alarm at a time), so `alarm.alert_written` is what the
    store has unless a write failed, and a failed or interrupted write forgets it.
    """
    entity = alert_entity(alarm)
    previous, alarm.alert_written = alarm.alert_written, None
    ctx = core_context()
    if previous is None:
        mutation = sync_op(normalize_entity(entity, ctx), None)
    else:
        changed = {k: v for k, v in entity.items() if k in ("id", "type") or previous.get(k) != v}
        removed = frozenset(expand_name(k, ctx) for k in previous if k not in entity)
        if len(changed) == 2 and not removed:
            alarm.alert_written = previous
            return None
        mutation = sync_op(normalize_entity(changed, ctx), removed, lambda: normalize_entity(entity, ctx))
    (result,) = await store.mutate(alarm.tenant, [Mutation(alarm.alert_id, mutation)], context)
    if not isinstance(result, Exception):
        alarm.alert_written = entity
    return result
