"""The wire form (JSON, orjson) of what travels between ucity processes on JetStream. Pure functions.

An observation message carries the device writes of one partition that one ingest batch produced:
for each, the part of the device profile a worker needs to create the entity (the rest stays with
the decoder) and the decoded observations. An event message carries committed entity changes of
one partition; an alarm message (on the same stream) names alarms an API process changed (an operator's
action) whose entities are in that partition, for their owner to read again. All carry the Context of the
request or reading that caused them.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from ucity.core.bus import Context, EntitiesChanged, EntityChange
from ucity.ingest.decode import Observation
from ucity.ingest.model import Command, DeviceProfile, StaticAttr
from ucity.ingest.writer import DeviceWrite

VERSION = 1


class MessageError(ValueError):
    """A message that is not one of ucity's (another version, or garbage): it is dropped, not retried."""


def _dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:  # integers beyond 64 bits: the standard library writes them exactly
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _context(context: Context) -> list[str | None]:
    return [context.id, context.parent_id, context.actor]


def _context_from(wire: Any) -> Context:
    identifier, parent, actor = wire
    return Context(id=str(identifier), parent_id=parent, actor=actor)


# -- device writes ------------------------------------------------------------------------------------------
def _profile(profile: DeviceProfile) -> dict[str, Any]:
    return {"tenant": profile.tenant, "service_path": profile.service_path, "apikey": profile.apikey,
            "device_id": profile.device_id, "entity_id": profile.entity_id, "entity_type": profile.entity_type,
            "statics": [[s.name, s.type, s.value, dict(s.metadata) if s.metadata else None]
                        for s in profile.static_attributes],
            "commands": [[c.name, c.type] for c in profile.commands], "timezone": profile.timezone,
            "interval": profile.expected_interval_s}


def _profile_from(wire: dict[str, Any]) -> DeviceProfile:
    """The profile as far as writing goes: the decoding maps (by object id, by name) stayed with the sender."""
    return DeviceProfile(
        tenant=wire["tenant"], service_path=wire["service_path"], apikey=wire["apikey"], device_id=wire["device_id"],
        entity_id=wire["entity_id"], entity_type=wire["entity_type"],
        static_attributes=tuple(StaticAttr(*s) for s in wire["statics"]),  # [name, type, value(, metadata)]
        commands=tuple(Command(n, t) for n, t in wire["commands"]), timezone=wire["timezone"],
        expected_interval_s=wire["interval"])


def encode_writes(writes: list[DeviceWrite], context: Context) -> bytes:
    return _dumps({"v": VERSION, "ctx": _context(context), "writes": [
        {"profile": _profile(w.profile), "obs": [[o.observed_at, o.attrs] for o in w.observations]} for w in writes]})


def decode_writes(data: bytes) -> tuple[list[DeviceWrite], Context]:
    try:
        wire = orjson.loads(data)
        if wire.get("v") != VERSION:
            raise MessageError(f"observation message of version {wire.get('v')!r}")
        writes = [DeviceWrite(_profile_from(w["profile"]), tuple(Observation(at, attrs) for at, attrs in w["obs"]))
                  for w in wire["writes"]]
        return writes, _context_from(wire["ctx"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise MessageError(f"not an observation message: {exc}") from exc


# -- entity changes -----------------------------------------------------------------------------------------
def encode_changes(context: Context, changes: list[EntityChange]) -> bytes:
    return _dumps({"v": VERSION, "ctx": _context(context), "changes": [
        [c.tenant, c.entity_id, c.operation, c.before, c.after, sorted(c.attrs), [list(i) for i in c.instances]]
        for c in changes]})


def decode_changes(data: bytes) -> EntitiesChanged:
    try:
        wire = orjson.loads(data)
        if wire.get("v") != VERSION:
            raise MessageError(f"event message of version {wire.get('v')!r}")
        changes = tuple(
            EntityChange(tenant, entity_id, operation, before, after, frozenset(attrs),
                         tuple((attr, instance) for attr, instance in instances))
            for tenant, entity_id, operation, before, after, attrs, instances in wire["changes"])
        return EntitiesChanged(_context_from(wire["ctx"]), changes)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise MessageError(f"not an event message: {exc}") from exc


# -- alarms another process changed, notifications it handed over ------------------------------------------
ALARMS, NOTIFICATIONS = "alarms", "notifications"


def encode_alarms(context: Context, alarms: list[tuple[str, str]]) -> bytes:
    """(tenant, alarm id) pairs: read them again from the store (their owner holds them in memory)."""
    return _dumps({"v": VERSION, "ctx": _context(context), ALARMS: [list(pair) for pair in alarms]})


def encode_notifications(context: Context, notifications: list[tuple[str, str]]) -> bytes:
    """(tenant, notification id) pairs: stored outbox entries (ucity/alarms/journal.py) for the owner to send."""
    return _dumps({"v": VERSION, "ctx": _context(context), NOTIFICATIONS: [list(pair) for pair in notifications]})


def decode_event(data: bytes) -> EntitiesChanged | tuple[str, Context, list[tuple[str, str]]]:
    """An event message: entity changes, or (kind, context, (tenant, id) pairs) of an alarm (`ALARMS`) or
    notification (`NOTIFICATIONS`) message."""
    try:
        wire = orjson.loads(data)
        kind = next((k for k in (ALARMS, NOTIFICATIONS) if isinstance(wire, dict) and k in wire), None)
        if kind is not None:
            if wire.get("v") != VERSION:
                raise MessageError(f"{kind} message of version {wire.get('v')!r}")
            return kind, _context_from(wire["ctx"]), [(str(tenant), str(key)) for tenant, key in wire[kind]]
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise MessageError(f"not an alarm or notification message: {exc}") from exc
    return decode_changes(data)
