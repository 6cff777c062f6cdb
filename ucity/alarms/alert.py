"""Every alarm is also an NGSI-LD `Alert` entity (Smart Data Models dataModel.Alert).

The entity is `urn:ngsi-ld:Alert:<alarm id>`, written with the store's one write path (a
replace-or-create mutation), so NGSI-LD queries, subscriptions and history see alarms like any
other entity. Its names are plain terms expanded with the NGSI-LD core context alone (the
default vocabulary, or the core's own `location`): a client that sends no @context reads them
back as short names (`category`, `severity` ...). A client that uses the Smart Data Models
@context for Alert gets the same attributes under their full default-context IRIs.

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
"""

from __future__ import annotations

from typing import Any

from ucity.alarms.model import FAULT, Alarm
from ucity.core.bus import Context
from ucity.ngsild.context import core_context
from ucity.ngsild.model import normalize_entity
from ucity.ngsild.ops import replace_op
from ucity.store.base import Doc, Mutation, Outcome, Store


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


async def write_alert(store: Store, alarm: Alarm, context: Context) -> Outcome | Exception:
    """Create the Alert or replace its attributes in place (one entity per alarm, ever)."""
    doc = alert_doc(alarm)
    (result,) = await store.mutate(alarm.tenant, [Mutation(alarm.alert_id, replace_op(doc, create_if_missing=True))],
                                   context)
    return result
