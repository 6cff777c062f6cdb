"""Measures into the store through the one write path (DESIGN §1): `store.mutate` with merge mutations.

Each device write is one `Mutation` on the device's NGSI-LD entity that creates the entity if it
is missing (with its static and command attributes), then merges every observation in time order
(NGSI-LD merge semantics, `ops.merge_op`), so the latest state and the temporal history are
written in the same transaction, and subscriptions and rules see the commit on the bus like any
other write. Several devices go into one `mutate` call per tenant; the caller acknowledges only
after it returns, i.e. after the commit.

A measure older than the attribute's current `observedAt` (a device emptying its buffer after an
outage) goes to history only: the current state stays the newest observation.

Attribute names and entity types are expanded with the NGSI-LD core context, so a client that
reads without a @context sees the names the device profile gives (`temperature`, `batteryLevel`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from typing import Any

from ucity.core.bus import Context
from ucity.core.clock import Clock, to_iso
from ucity.core.frozen import fast_init
from ucity.ingest.decode import DecodeError, Observation, command_instances, static_instances
from ucity.ingest.model import DeviceProfile
from ucity.ngsild import ops
from ucity.ngsild.context import core_context
from ucity.ngsild.model import NULL, find_instance, is_null_instance, stamp_copy
from ucity.store.base import ApplyFn, Doc, Mutation, Outcome, Store

log = logging.getLogger(__name__)
INGEST_ACTOR = "ingest"
VALUE_MEMBERS = ("value", "object", "languageMap", "valueList", "objectList", "json", "vocab")
_DECODED_MEMBERS = frozenset({"type", "value", "object", "unitCode", "observedAt"})  # what decode puts in an instance


@lru_cache(maxsize=8192)  # bounded: unmapped attribute names come from the devices
def expand(name: str) -> str:
    """The stored (expanded) IRI of an attribute name or entity type."""
    return core_context().expand_term(name)


@fast_init
@dataclass(frozen=True, slots=True)
class DeviceWrite:
    """The observations of one device to commit together."""

    profile: DeviceProfile
    observations: tuple[Observation, ...]
    # Attributes written after the observations in the same merge (name -> instance), e.g. the
    # `deviceState` of a device this report brings online (HealthMonitor.coming_online)
    extra: dict[str, dict[str, Any]] | None = None


def static_attrs(profile: DeviceProfile) -> dict[str, dict[str, Any]]:
    """The profile's static attributes as instances (an invalid stored one is skipped, not fatal)."""
    out: dict[str, dict[str, Any]] = {}
    for static in profile.static_attributes:
        try:
            out.update(static_instances((static,), profile.timezone))
        except DecodeError as exc:
            log.error("device %s: static attribute %s skipped: %s", profile.device_id, static.name, exc.detail)
    return out


def entity_template(profile: DeviceProfile) -> Doc:
    """The device's entity as first created: type, static attributes and command attributes."""
    attrs = {**static_attrs(profile), **command_instances(profile.commands)}
    return {"id": profile.entity_id, "type": [expand(profile.entity_type)], "attrs": _expanded(attrs)}


def _expanded(attrs: dict[str, dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    return {expand(name): [instance] for name, instance in attrs.items()}


# -- mutations ----------------------------------------------------------------------------------------
def measure_op(profile: DeviceProfile, observations: Iterable[Observation],
               extra: dict[str, dict[str, Any]] | None = None, horizon: str | None = None) -> ApplyFn:
    """Create the entity if missing, then merge the observations oldest first (NGSI-LD merge semantics),
    then `extra` (attribute name -> instance). `horizon` (ISO, as stored): a current observedAt beyond it
    (written through NGSI-LD, which takes any time) does not make a measure late: see `_merge_observation`."""
    ordered = tuple(observations)
    if len(ordered) > 1:
        ordered = tuple(sorted(ordered, key=lambda o: o.observed_at))

    def apply(before: Doc | None, now: str) -> Outcome:
        touched: set[str] = set()
        instances: list[tuple[str, dict[str, Any]]] = []
        owned: set[str] | None  # attribute lists this write has copied (None: the whole document is new)
        if before is None:  # the template is built only when needed: the hot path is an existing entity
            created = ops.create_op(entity_template(profile))(None, now)
            doc: Doc = created.doc or {}
            touched |= created.attrs
            instances.extend(created.instances)
            owned = None
        else:
            # Copy on write: the entity and its attribute map now, an attribute's list of instances only
            # when a measure changes it; instances are never changed (a merged one is a new dict). A full
            # copy of the entity per write cost more than the merge itself.
            doc = dict(before)
            doc["attrs"] = dict(before.get("attrs", {}))
            owned = set()
        late_history: list[tuple[str, dict[str, Any]]] = []
        merged = False
        for observation in ordered:
            if _merge_observation(doc, owned, observation.attrs, now, touched, instances, late_history,
                                  observation.plain, horizon):
                merged = True
                doc["modifiedAt"] = now
        if extra and _merge_observation(doc, owned, extra, now, touched, instances, late_history):
            merged = True
            doc["modifiedAt"] = now
        if late_history:  # rare (a device emptying its buffer): no generator made per measure otherwise
            instances.extend(late_history)
            touched.update(iri for iri, _ in late_history)
        operation = "create" if before is None else "update"
        return Outcome(doc, operation, frozenset(touched), tuple(instances), result={"created": before is None},
                       changed=before is None or merged or bool(late_history))

    return apply


def _merge_observation(
    doc: Doc, owned: set[str] | None, attrs: dict[str, dict[str, Any]], now: str, touched: set[str],
    history: list[tuple[str, dict[str, Any]]], late: list[tuple[str, dict[str, Any]]], plain: bool = False,
    horizon: str | None = None,
) -> bool:
    """Merge one decoded measure into the working copy (`ops.merge_attrs` semantics). An instance older
    than the attribute's current one goes to `late` (history only). Returns whether any was merged.
    `plain`: every instance is decode's plain numeric one (`Observation.plain`), so none can hold an
    NGSI-LD Null or members the general merge must see: the check of each instance's members is skipped."""
    entity_attrs: dict[str, list[dict[str, Any]]] = doc["attrs"]
    merged = False
    for name, instance in attrs.items():
        iri = expand(name)
        current = entity_attrs.get(iri)
        index: int | None = None
        if current:
            index = 0 if current[0].get("datasetId") is None else find_instance(current, None)
            if index is not None:
                current_time = current[index].get("observedAt")
                # Late (history only) when older than the current value, unless that one lies beyond the
                # horizon (ingest.max_future_s ahead): a time no device may send would freeze the attribute.
                if current_time is not None and instance["observedAt"] < current_time and (
                        horizon is None or current_time <= horizon):
                    late.append((iri, stamp_copy(instance, now)))
                    continue
        merged = True
        if current is None:
            current = entity_attrs[iri] = []
        elif owned is not None and iri not in owned:
            current = entity_attrs[iri] = list(current)
            owned.add(iri)
        if not plain and (NULL in instance.values() or not _DECODED_MEMBERS.issuperset(instance)):
            # An NGSI-LD Null (deletes the attribute) or other members: the general merge
            written = ops.merge_attrs(doc, {iri: [instance]}, now, touched, copy=dict, merge=_merge_decoded)
            history.extend(ops.history_rows(written))
            continue
        touched.add(iri)
        if index is None:
            new = dict(instance)
            new["createdAt"] = new["modifiedAt"] = now
            current.append(new)
        else:
            current[index] = new = _merged(current[index], instance, now)
        history.append((iri, dict(new)))
    return merged


def _merge_decoded(old: dict[str, Any], patch: dict[str, Any], now: str) -> dict[str, Any] | None:
    """`ops._merge_instance` for a decoded instance, without copying values decode has just made."""
    if not _DECODED_MEMBERS.issuperset(patch):  # sub-attributes or other members: the general merge
        return ops.merge_instance(old, patch, now)
    if is_null_instance({"type": old.get("type"), **patch}):
        return None
    return _merged(old, patch, now)


def _merged(old: dict[str, Any], patch: dict[str, Any], now: str) -> dict[str, Any]:
    """A decoded (non-null) instance merged over the current one: a new dict, `old` unchanged."""
    merged = dict(old)
    if patch.get("type") and patch["type"] != old.get("type"):
        for key in VALUE_MEMBERS:
            merged.pop(key, None)
    merged.update(patch)
    merged["modifiedAt"] = now
    return merged


def attrs_op(attrs: dict[str, dict[str, Any]]) -> ApplyFn:
    """Merge some attributes (by short name) into an existing entity: deviceState, command status."""
    return ops.merge_op({"attrs": _expanded(attrs)})


def provision_op(profile: DeviceProfile) -> ApplyFn:
    """Create the device's entity, or refresh its static attributes and add missing command attributes."""
    template = entity_template(profile)

    def apply(before: Doc | None, now: str) -> Outcome:
        if before is None:
            return ops.create_op(template)(None, now)
        statics = _expanded(static_attrs(profile))
        commands = {iri: v for iri, v in _expanded(command_instances(profile.commands)).items() if iri not in before["attrs"]}
        patch = {**statics, **commands}
        if not patch:
            return Outcome(before, "update", result={"created": False}, changed=False)
        return ops.merge_op({"attrs": patch})(before, now)

    return apply


# -- the writer ----------------------------------------------------------------------------------------
class MeasureWriter:
    """Commits device writes: one `store.mutate` call per tenant, all tenants concurrently."""

    writes_extra = True  # DeviceWrite.extra is written (a writer that only forwards writes may not)

    def __init__(self, store: Store, clock: Clock | None = None, max_future_s: float | None = None) -> None:
        self.store = store
        self.clock = clock
        self.max_future = timedelta(seconds=max_future_s) if max_future_s is not None else None

    async def write(self, writes: list[DeviceWrite]) -> list[Outcome | Exception]:
        """One result per write, in order, each available only after its commit."""
        by_tenant: dict[str, list[int]] = {}
        for index, write in enumerate(writes):
            by_tenant.setdefault(write.profile.tenant, []).append(index)
        results: list[Outcome | Exception] = [Exception("not written")] * len(writes)
        horizon = to_iso(self.clock.now() + self.max_future) if self.clock and self.max_future is not None else None

        async def run(tenant: str, indexes: list[int]) -> None:
            mutations = [Mutation(writes[i].profile.entity_id,
                                  measure_op(writes[i].profile, writes[i].observations, writes[i].extra, horizon))
                         for i in indexes]
            outcomes = await self.store.mutate(tenant, mutations, Context(actor=INGEST_ACTOR))
            for index, outcome in zip(indexes, outcomes, strict=True):
                results[index] = outcome

        if len(by_tenant) == 1:  # the common case; also queues the write to the store before suspending
            await run(*next(iter(by_tenant.items())))
        else:
            await asyncio.gather(*(run(tenant, indexes) for tenant, indexes in by_tenant.items()))
        return results

    async def apply(self, profile: DeviceProfile, fn: ApplyFn, context: Context | None = None) -> Outcome | Exception:
        """One mutation on a device's entity (provisioning, deviceState, command status)."""
        outcomes = await self.store.mutate(profile.tenant, [Mutation(profile.entity_id, fn)],
                                           context or Context(actor=INGEST_ACTOR))
        return outcomes[0]
