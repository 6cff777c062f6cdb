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
  alertSource   Relationship to the entity the alarm is about; absent for a personal entity type (below)
  dateIssued, validFrom   when it was raised; validTo   when it was cleared (absent while active)
  description   LanguageProperty (ko, en)
  location      GeoProperty: the rule event's location, else the entity's; for a personal entity type the
                centre of its coarse cell, with `locationCellDeg` saying so (below)
  level (safety only), kind, status, rule, outcome (when closed)

Personal entities (QA10 F2): where an alarm about a person (its entity's type in `privacy.personal_entity_types`,
default `Person` and ucity's care types `ElderlyHome`, `CareDevice`, `ChildTracker`, `SafeReturnWalk` (QA12 F8) [D])
is, is where that person is, and every `data:read` holder reads Alerts (a sensitive `CityEvent`'s `refAlert` leads to
it). Such an Alert carries no `alertSource` (the person's id) and as `location` the centre of the
`privacy.location_cell_deg` cell holding it (0.005°, the cell of the operations centre's sensitive events), with
`locationCellDeg`. The alarm itself (API, with its permissions) keeps the exact place and the entity. Alerts written
before, and their history, are made private the same way at start (ucity/alarms/alert_privacy.py); retention deletes
the Alerts of cleared or closed alarms after `retention.alerts_closed_days` (ucity/store/retention.py).

A mere repeat of the condition (count, last seen) updates the alarm, not the entity: the Alert
changes when the alarm's state does, so its history and NGSI-LD subscriptions stay meaningful.

Only what changed is written. The entity always ends as `alert_entity(alarm)` (the attributes the
alarm no longer has, like validTo when it is re-activated, are removed), but attributes whose value
is the same keep their instance: no history row, no modifiedAt change, no notification for them. A
clear used to rewrite the whole entity (about 13 history rows, the whole entity normalized on the
event loop); it now writes status and validTo. The alarm remembers what it last committed, as
plain values (`Alarm.alert_written`, in memory only: `alert_inputs`), so only the changed
attributes are built and normalized; without it (a new alarm, after a restart, after a failed
write) the whole entity is normalized and the mutation compares it with the stored one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ucity.alarms.model import FAULT, Alarm, geometry_bbox
from ucity.core.bus import Context
from ucity.core.privacy import PersonalTypes
from ucity.ngsild.context import core_context
from ucity.ngsild.geo import coarse_point
from ucity.ngsild.model import expand_name, normalize_entity, stamp_copy
from ucity.ngsild.ops import create_op
from ucity.store.base import ApplyFn, Doc, Mutation, Outcome, Store

_SYSTEM_MEMBERS = frozenset({"createdAt", "modifiedAt", "instanceId"})


def _date(value: str) -> dict[str, Any]:
    return {"type": "Property", "value": {"@type": "DateTime", "@value": value}}


def _prop(value: Any) -> dict[str, Any]:
    return {"type": "Property", "value": value}


@dataclass(frozen=True, slots=True)
class AlertPrivacy:
    """Which alarms are about a person (`privacy.personal_entity_types` and the types domains declare) and how coarse
    their Alert's place is (`privacy.location_cell_deg`); the defaults are the settings' [D]."""

    configured: frozenset[str] = frozenset({"Person"})
    cell_deg: float = 0.005
    # The kernel's list (settings ∪ what domains declare in setup, ucity/core/privacy.py), read when asked: a
    # domain's `setup` runs after the alarms service is built (QA13 F1). None: `configured` only.
    registry: PersonalTypes | None = None

    @property
    def personal_types(self) -> frozenset[str]:
        return self.configured if self.registry is None else self.registry.names

    def personal(self, alarm: Alarm) -> bool:
        return bool(alarm.entity_type) and alarm.entity_type in self.personal_types

    def coarse(self, location: Any) -> dict[str, Any] | None:
        """The centre of the cell holding the location (of its bounding box's centre for other geometries)."""
        box = geometry_bbox(location) if isinstance(location, dict) else None
        if box is None:
            return None
        lon, lat = coarse_point(((box[0] + box[2]) / 2, (box[1] + box[3]) / 2), self.cell_deg)
        return {"type": "Point", "coordinates": [lon, lat]}


DEFAULT_PRIVACY = AlertPrivacy()


def alert_inputs(alarm: Alarm, privacy: AlertPrivacy = DEFAULT_PRIVACY) -> dict[str, Any]:
    """What each Alert attribute shows, as plain values (short name -> value), in the entity's order.

    Cheap to make and to compare (strings, the description, the alarm's location): a change
    compares these with the ones last written and builds NGSI-LD attributes only for those that differ,
    instead of building and comparing the whole entity per change. An alarm about a person (`privacy`) shows
    no entity and a coarse place.
    """
    sub_category = alarm.evidence.get("subCategory")
    personal = privacy.personal(alarm)
    inputs: dict[str, Any] = {
        "category": alarm.category or ("deviceFault" if alarm.kind == FAULT else "security"),
        "subCategory": sub_category if isinstance(sub_category, str) and sub_category else alarm.rule_id,
        "severity": alarm.severity,
    }
    if not personal:
        inputs["alertSource"] = alarm.entity_id
    inputs |= {
        "dateIssued": alarm.raised_at,
        "validFrom": alarm.raised_at,
        "kind": alarm.kind,
        "status": alarm.status,
        "rule": alarm.rule_id,
    }
    if alarm.level:
        inputs["level"] = alarm.level
    if not alarm.active and alarm.cleared_at:
        inputs["validTo"] = alarm.cleared_at
    if alarm.description:
        inputs["description"] = dict(alarm.description)  # a copy: what was written must not change with the alarm
    if alarm.location:
        coarse = privacy.coarse(alarm.location) if personal else None
        if coarse is not None:
            inputs["location"], inputs["locationCellDeg"] = coarse, privacy.cell_deg
        elif not personal:
            inputs["location"] = alarm.location
    if alarm.outcome:
        inputs["outcome"] = alarm.outcome
    return inputs


def _relationship(value: Any) -> dict[str, Any]:
    return {"type": "Relationship", "object": value}


def _language(value: Any) -> dict[str, Any]:
    return {"type": "LanguageProperty", "languageMap": dict(value)}


def _geo(value: Any) -> dict[str, Any]:
    return {"type": "GeoProperty", "value": value}


_BUILD: dict[str, Callable[[Any], dict[str, Any]]] = {
    "alertSource": _relationship, "dateIssued": _date, "validFrom": _date, "validTo": _date,
    "description": _language, "location": _geo,
}


def _entity(alert_id: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """The Alert (or the part of it named by `inputs`) in NGSI-LD normalized form, short names."""
    entity: dict[str, Any] = {"id": alert_id, "type": "Alert"}
    for name, value in inputs.items():
        entity[name] = _BUILD.get(name, _prop)(value)
    return entity


def alert_entity(alarm: Alarm, privacy: AlertPrivacy = DEFAULT_PRIVACY) -> dict[str, Any]:
    """The Alert in NGSI-LD normalized form with short (core-context) names."""
    return _entity(alarm.alert_id, alert_inputs(alarm, privacy))


def alert_doc(alarm: Alarm, privacy: AlertPrivacy = DEFAULT_PRIVACY) -> Doc:
    """The stored (expanded) form, through the same validation as any NGSI-LD write."""
    return normalize_entity(alert_entity(alarm, privacy), core_context())


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


def alert_mutation(alarm: Alarm, privacy: AlertPrivacy = DEFAULT_PRIVACY) -> tuple[Mutation, dict[str, Any]] | None:
    """The mutation that brings the alarm's stored Alert up to date, and the inputs it writes; None if
    nothing changed since the last write. Forgets `alarm.alert_written` until the caller records the
    write's success (`_record`), so that a failed or interrupted write is followed by a whole one."""
    inputs = alert_inputs(alarm, privacy)
    previous, alarm.alert_written = alarm.alert_written, None
    ctx = core_context()
    if previous is None:
        return Mutation(alarm.alert_id, sync_op(normalize_entity(_entity(alarm.alert_id, inputs), ctx), None)), inputs
    changed = {k: v for k, v in inputs.items() if k not in previous or previous[k] != v}
    removed = frozenset(expand_name(k, ctx) for k in previous if k not in inputs)
    if not changed and not removed:
        alarm.alert_written = previous
        return None
    alert_id = alarm.alert_id
    apply = sync_op(normalize_entity(_entity(alert_id, changed), ctx), removed,
                    lambda: normalize_entity(_entity(alert_id, inputs), ctx))
    return Mutation(alert_id, apply), inputs


def _record(alarm: Alarm, inputs: dict[str, Any], result: Outcome | Exception) -> None:
    """Remember what an Alert write made from `alert_mutation` committed (nothing if it failed)."""
    if not isinstance(result, Exception):
        alarm.alert_written = inputs


async def write_alerts(store: Store, tenant: str, alarms: list[Alarm], context: Context,
                       privacy: AlertPrivacy = DEFAULT_PRIVACY) -> list[Outcome | Exception | None]:
    """Create the Alerts or write what changed in them, in one store write (alarms of one tenant, each at
    most once); per alarm, None if nothing changed.

    Each alarm's write runs under its lock (one write of an alarm at a time), so `alarm.alert_written`
    is what the store has unless a write failed, and a failed or interrupted write forgets it.
    """
    results: list[Outcome | Exception | None] = [None] * len(alarms)
    planned: list[tuple[int, tuple[Mutation, dict[str, Any]]]] = []
    for i, alarm in enumerate(alarms):
        try:
            made = alert_mutation(alarm, privacy)
        except Exception as exc:  # an Alert that cannot be made (invalid data) fails alone, not its neighbours
            results[i] = exc
            continue
        if made is not None:
            planned.append((i, made))
    if not planned:
        return results
    try:
        outcomes: list[Outcome | Exception] = list(await store.mutate(tenant, [m for _, (m, _) in planned], context))
    except Exception as exc:
        outcomes = [exc] * len(planned)
    if len(outcomes) != len(planned):  # a store that answered for fewer writes than it was given
        error = outcomes[0] if len(outcomes) == 1 and isinstance(outcomes[0], Exception) else \
            RuntimeError(f"{len(outcomes)} results for {len(planned)} Alert writes")
        outcomes = [error] * len(planned)
    for (i, (_, inputs)), outcome in zip(planned, outcomes, strict=True):
        _record(alarms[i], inputs, outcome)
        results[i] = outcome
    return results


async def write_alert(store: Store, alarm: Alarm, context: Context,
                      privacy: AlertPrivacy = DEFAULT_PRIVACY) -> Outcome | Exception | None:
    """Create the Alert or write what changed in it (one entity per alarm, ever); None if nothing did."""
    (result,) = await write_alerts(store, alarm.tenant, [alarm], context, privacy)
    return result
