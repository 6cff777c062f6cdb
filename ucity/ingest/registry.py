"""The device registry: service groups and devices, persisted and indexed for the hot path.

Groups and devices are stored as small documents (`store.put_doc("iot-service" | "iot-device",
tenant, key, doc)`) and loaded at start. Measures arrive with an apikey and a device id but no
tenant, so the in-memory indexes are global: groups by (resource, apikey), device profiles by
(apikey, device_id) and by (tenant, entity id) for commands. A device id is unique in its tenant.

An apikey therefore belongs to one tenant (FIWARE `fiware-service`): the MQTT topic and the HTTP `k` name no
tenant, so an apikey in the groups or devices of two tenants would send one tenant's measures to the other. A
group or device whose apikey another tenant uses is refused (409); stored data from before that rule, with an
apikey in several tenants, is logged at start, each device keeps its own tenant's group, and no device is
autoprovisioned for such an apikey (which tenant would it be?).

Writes are serialised by one lock: a check-then-store (409 on a duplicate) must not interleave
with another request doing the same. Another process on the same store is not held by that lock, so a creation is
insert-if-absent in the store (`Store.insert_doc`): of two processes creating one device id (or group) at the same
instant, one stores it, the other answers 409 and applies the stored document.

Several processes on one store (scale-out, ucity/cluster/registry_sync.py): `share` makes the registry tell each
change it stores (`on_change`: (tenant, kind, key) of each group or device document) so that the other processes
`reread` those documents, and keep a fingerprint of every device document so that `refresh` (the periodic full
re-read, the safety net of that at-most-once message) skips the unchanged ones without parsing them or rebuilding
their profiles; it reads a page at a time (`Store.list_docs_page`) and applies a slice at a time, yielding to the
event loop in between. What is learnt so is indexed as the stored data of `load` is: its apikeys count in
`apikey_tenants` (this process then refuses another tenant's group or device with one of them, 409), and an
apikey found in several tenants (two processes provisioning it at once) is logged and never autoprovisioned.
What another process changed reaches the service through `on_learnt` (device health follows it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from ucity.core.errors import AlreadyExists, BadRequest, NotFound
from ucity.ingest.errors import DuplicateDeviceId, DuplicateGroup
from ucity.ingest.model import Device, DeviceProfile, ServiceGroup, build_profile
from ucity.ingest.schema import device_from_doc, device_to_wire, group_from_doc, group_to_wire
from ucity.ingest.stats import masked_apikey
from ucity.store.base import Store

log = logging.getLogger(__name__)
GROUP_KIND = "iot-service"
DEVICE_KIND = "iot-device"
KINDS = (GROUP_KIND, DEVICE_KIND)
DocKey = tuple[str, str, str]  # (tenant, kind, key) of a stored group or device document
READ_PAGE = 200  # devices per page of a full read (a keyset page: `Store.list_docs_page`)
APPLY_SLICE = 100  # changed devices applied between two yields to the event loop
UNSEEN_SLICE = 2_000  # known devices looked up in what a full read saw between two yields


@dataclass
class Learnt:
    """What a re-read of the store changed here: the profiles (re)built, the devices gone, the groups' apikeys."""

    profiles: list[DeviceProfile] = field(default_factory=list)
    removed: list[Device] = field(default_factory=list)
    apikeys: set[str] = field(default_factory=set)  # of the groups changed

    def __bool__(self) -> bool:
        return bool(self.profiles or self.removed)


def fingerprint(doc: Any) -> int:
    """A stored document, as one number: equal documents give equal numbers (key order aside)."""
    return hash(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS))


def in_path(item_path: str, wanted: str | None) -> bool:
    """`None`, `/*` and `/#` select every service path of the tenant (IoT Agent convention)."""
    return wanted is None or wanted in ("/*", "/#") or item_path == wanted


class DeviceRegistry:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._groups: dict[tuple[str, str], ServiceGroup] = {}  # (resource, apikey)
        self._devices: dict[tuple[str, str], Device] = {}  # (tenant, device_id)
        self._profiles: dict[tuple[str, str], DeviceProfile] = {}  # (apikey, device_id)
        self._by_entity: dict[tuple[str, str], DeviceProfile] = {}  # (tenant, entity_id)
        self._device_apikeys: dict[str, dict[str, int]] = {}  # apikey -> tenant -> devices with it
        self._lock = asyncio.Lock()
        # Shared with other processes (`share`): what this process stores is told, what they store re-read.
        self.on_change: Callable[[list[DocKey]], None] | None = None
        self.on_learnt: Callable[[Learnt], None] | None = None  # what a re-read changed (not the first load)
        self._fingerprints: dict[tuple[str, str], int] | None = None  # (tenant, device id) -> its stored document's
        self._reading = asyncio.Lock()  # one full read at a time
        self._touched: list[set[DocKey]] = []  # per full read under way: documents written or re-read meanwhile
        self._conflicts: set[str] = set()  # apikeys logged as used in several tenants
        self._invalid: set[DocKey] = set()  # stored documents logged as invalid

    def share(self, on_change: Callable[[list[DocKey]], None]) -> None:
        """Several processes on one store: tell `on_change` what this process stores; keep the fingerprints that
        `refresh` compares (before `load`)."""
        self.on_change = on_change
        if self._fingerprints is None:
            self._fingerprints = {}

    async def load(self) -> None:
        """Read every stored group and device; a document that no longer validates is skipped and logged. Again
        later (a worker's rebalance): what differs from the store is applied, as `refresh` does."""
        await self._read_all()
        for apikey in sorted({g.apikey for g in self._groups.values()} | set(self._device_apikeys)):
            self._log_conflict(apikey, always=True)

    async def refresh(self) -> Learnt:
        """Re-read every stored group and device and apply what differs (another process's changes whose message
        was lost); an unchanged device costs a fingerprint. Apikeys newly in several tenants are logged."""
        learnt = await self._read_all()
        self._log_conflicts(learnt)
        return learnt

    async def reread(self, keys: list[DocKey]) -> Learnt:
        """Re-read the named documents (another process changed them) and apply what differs."""
        learnt = Learnt()
        async with self._lock:  # read under the lock: no write of this process comes between read and apply
            docs = await asyncio.gather(*(self.store.get_doc(kind, tenant, key) for tenant, kind, key in keys))
            self._apply_docs(keys, docs, learnt)
        self._log_conflicts(learnt)
        self._learnt(learnt)
        return learnt

    def _apply_docs(self, keys: list[DocKey], docs: list[dict[str, Any] | None], learnt: Learnt) -> None:
        """Apply these stored documents (None: gone), read under the lock, where they differ from what is known."""
        self._touch(keys)
        groups = {(t, k): doc for (t, kind, k), doc in zip(keys, docs, strict=True) if kind == GROUP_KIND}
        changed: set[str] = set()
        if groups:
            current = [g for g in self._groups.values() if (g.tenant, g.key) in groups]
            target = {(g.tenant, g.key): g for g in current}
            for (tenant, key), doc in groups.items():
                if doc is None:
                    target.pop((tenant, key), None)
                elif (group := self._parse(tenant, GROUP_KIND, key, doc)) is not None:
                    target[(tenant, key)] = group
            changed = self._apply_groups(current, list(target.values()))
        fresh: dict[tuple[str, str], None] = {}
        for (tenant, kind, key), doc in zip(keys, docs, strict=True):
            if kind == DEVICE_KIND:
                self._apply_device(tenant, key, doc, learnt, fresh)
        self._refresh_learnt(changed, fresh, learnt)

    async def _read_all(self) -> Learnt:
        """Read every group and device outside the lock (a provisioning or an autoprovisioned device does not wait
        for it), then apply under the lock what differs, but for the documents written or re-read meanwhile
        (newer than this read). The devices are read a page at a time (`READ_PAGE`, a keyset cursor) and applied a
        slice at a time, yielding to the event loop in between: at 100,000 devices one `list_docs` held the loop
        for up to a second (mostly the garbage collector walking the 100,000 documents held at once)."""
        learnt = Learnt()
        async with self._reading:
            touched: set[DocKey] = set()
            self._touched.append(touched)
            try:
                group_docs = await self.store.list_docs(GROUP_KIND)
                device_docs, seen = await self._read_devices()
                gone = await self._unseen(seen)
            except BaseException:
                self._touched.remove(touched)
                raise
            async with self._lock:
                self._touched.remove(touched)  # nothing touches while the lock is held, even across the yields
                current = list(self._groups.values())
                skip = {(g.tenant, g.key) for g in current if (g.tenant, GROUP_KIND, g.key) in touched}
                skip |= {(t, k) for t, k, _ in group_docs if (t, GROUP_KIND, k) in touched}
                target = [g for g in current if (g.tenant, g.key) in skip]
                for tenant, key, doc in group_docs:
                    if (tenant, key) in skip:
                        continue
                    group = self._parse(tenant, GROUP_KIND, key, doc)
                    if group is not None:
                        target.append(group)
                    else:  # invalid now: what was known stays
                        target.extend(g for g in current if (g.tenant, g.key) == (tenant, key))
                changed = self._apply_groups(current, target)
                fresh: dict[tuple[str, str], None] = {}
                for start in range(0, len(device_docs), APPLY_SLICE):
                    if start:
                        await asyncio.sleep(0)  # under the lock: measures are resolved meanwhile, nothing written
                    for tenant, key, doc in device_docs[start:start + APPLY_SLICE]:
                        if (tenant, DEVICE_KIND, key) not in touched:
                            self._apply_device(tenant, key, doc, learnt, fresh)
                for tenant, key in gone:  # (a device indexed since `_unseen` was touched: skipped)
                    if (tenant, key) in self._devices and (tenant, DEVICE_KIND, key) not in touched:
                        self._apply_device(tenant, key, None, learnt, fresh)
                self._refresh_learnt(changed, fresh, learnt)
        self._learnt(learnt)
        return learnt

    async def _read_devices(self) -> tuple[list[tuple[str, str, dict[str, Any]]], dict[str, set[str]]]:
        """Every stored device, a page at a time: those whose fingerprint is not the one known (all of them if none
        is kept), and the keys of all, by tenant. A page's documents are dropped once compared: the unchanged ones
        are never held all at once (a device written or re-read meanwhile is skipped by the caller)."""
        prints = self._fingerprints
        known = self._devices
        out: list[tuple[str, str, dict[str, Any]]] = []
        seen: dict[str, set[str]] = {}
        after: tuple[str, str] | None = None
        while True:
            page = await self.store.list_docs_page(DEVICE_KIND, after, READ_PAGE)  # yields to the loop
            for tenant, key, doc in page:
                keys = seen.get(tenant)
                if keys is None:
                    keys = seen[tenant] = set()
                keys.add(key)
                if prints is None or prints.get((tenant, key)) != fingerprint(doc) or (tenant, key) not in known:
                    out.append((tenant, key, doc))
            if len(page) < READ_PAGE:
                return out, seen
            after = (page[-1][0], page[-1][1])
            del page

    async def _unseen(self, seen: dict[str, set[str]]) -> list[tuple[str, str]]:
        """The devices known here that the full read did not see (gone from the store), found a slice at a time
        before the lock is taken. A device indexed after this is one written or re-read meanwhile: touched."""
        known = list(self._devices)
        gone: list[tuple[str, str]] = []
        for start in range(0, len(known), UNSEEN_SLICE):
            if start:
                await asyncio.sleep(0)
            gone.extend(k for k in known[start:start + UNSEEN_SLICE] if k[1] not in seen.get(k[0], ()))
        return gone

    def _parse(self, tenant: str, kind: str, key: str, doc: dict[str, Any]) -> Any:
        """The group or device of a stored document; None (logged once) when it no longer validates."""
        try:
            item = group_from_doc(tenant, doc) if kind == GROUP_KIND else device_from_doc(tenant, doc)
        except BadRequest as exc:
            if (tenant, kind, key) not in self._invalid:
                self._invalid.add((tenant, kind, key))
                if kind == GROUP_KIND:  # its key is resource|apikey
                    resource, _, apikey = key.rpartition("|")
                    log.error("stored service group %s/%s|%s is invalid, skipped: %s", tenant, resource,
                              masked_apikey(apikey), exc.detail)
                else:
                    log.error("stored device %s/%s is invalid, skipped: %s", tenant, key, exc.detail)
            return None
        self._invalid.discard((tenant, kind, key))
        return item

    def _apply_groups(self, current: list[ServiceGroup], target: list[ServiceGroup]) -> set[str]:
        """Make `target` the groups that `current` were (the others stay); the apikeys whose groups changed. In the
        order given, the last of a (resource, apikey) wins, as at load (stored before the apikey rule)."""
        before = {(g.resource, g.apikey): g for g in current}
        after = {(g.resource, g.apikey): g for g in target}
        changed: set[str] = set()
        for key in before.keys() | after.keys():
            old, new = before.get(key), after.get(key)
            if old == new:
                continue
            if new is None:
                self._groups.pop(key, None)
            else:
                self._groups[key] = new
            changed.add(key[1])
        return changed

    def _apply_device(self, tenant: str, key: str, doc: dict[str, Any] | None, learnt: Learnt,
                      fresh: dict[tuple[str, str], None]) -> None:
        """Index the stored device (`doc`; None: gone) if it differs from the one known; `fresh` gets its key."""
        old = self._devices.get((tenant, key))
        prints = self._fingerprints
        mark = None
        if doc is not None and prints is not None:
            mark = fingerprint(doc)
            if old is not None and prints.get((tenant, key)) == mark:
                return  # unchanged: neither parsed nor its profile rebuilt
        device = self._parse(tenant, DEVICE_KIND, key, doc) if doc is not None else None
        if doc is not None and device is None:
            return  # invalid now: what was known stays
        if device == old:
            if prints is not None and mark is not None:
                prints[(tenant, key)] = mark
            return
        if old is not None:
            self._unindex_device(old)
            if device is None:
                learnt.removed.append(old)
        if device is not None:
            self._index_device(device)
            fresh[(tenant, device.device_id)] = None
            if prints is not None and mark is not None:
                prints[(tenant, device.device_id)] = mark

    def _refresh_learnt(self, apikeys: set[str], fresh: dict[tuple[str, str], None], learnt: Learnt) -> None:
        """The profiles of the devices re-indexed (`fresh`, in the order applied) and of those whose group changed,
        once each."""
        learnt.apikeys |= apikeys
        if not apikeys:  # no group changed: only the fresh ones, not a walk over every device
            for key in fresh:
                device = self._devices.get(key)
                profile = self._profiles.get((device.apikey, device.device_id)) if device is not None else None
                if profile is not None:
                    learnt.profiles.append(profile)
            return
        for key, device in list(self._devices.items()):
            if key not in fresh:
                if device.apikey not in apikeys:
                    continue
                self._index_device(device)
            profile = self._profiles.get((device.apikey, device.device_id))
            if profile is not None:
                learnt.profiles.append(profile)

    def _learnt(self, learnt: Learnt) -> None:
        if learnt and self.on_learnt is not None:
            self.on_learnt(learnt)

    def _touch(self, keys: list[DocKey]) -> None:
        """These documents were written or re-read here: a full read under way must not apply its older copy."""
        for touched in self._touched:
            touched.update(keys)

    def _changed(self, keys: list[DocKey]) -> None:
        """This process stored (or deleted) these documents: full reads under way skip them, the others are told."""
        self._touch(keys)
        if self.on_change is not None:
            self.on_change(keys)

    def _log_conflicts(self, learnt: Learnt) -> None:
        for apikey in sorted({p.apikey for p in learnt.profiles} | {d.apikey for d in learnt.removed} | learnt.apikeys):
            self._log_conflict(apikey)

    def _log_conflict(self, apikey: str, always: bool = False) -> None:
        tenants = self.apikey_tenants(apikey)
        if len(tenants) <= 1:
            self._conflicts.discard(apikey)
            return
        if always or apikey not in self._conflicts:
            log.error("apikey %s is used in several services (%s): each device keeps its own service's group, "
                      "none is autoprovisioned for it; give each service its own apikey", masked_apikey(apikey),
                      ", ".join(sorted(tenants)))
        self._conflicts.add(apikey)

    def apikey_tenants(self, apikey: str) -> set[str]:
        """The tenants whose groups or devices use `apikey` (one, but for data stored before the rule)."""
        return {g.tenant for g in self._groups.values() if g.apikey == apikey} | set(self._device_apikeys.get(apikey, ()))

    def _check_apikey(self, apikey: str, tenant: str, claimed: dict[str, str]) -> None:
        """409 if another tenant uses `apikey` (or claimed it earlier in the same request)."""
        others = (self.apikey_tenants(apikey) | ({claimed[apikey]} if apikey in claimed else set())) - {tenant}
        if others:
            raise AlreadyExists(f"apikey {apikey} is used by another service (fiware-service): an apikey belongs to one "
                                "service, as measures name no service")
        claimed[apikey] = tenant

    # -- groups ------------------------------------------------------------------------------------
    def groups(self, tenant: str, service_path: str | None = None) -> list[ServiceGroup]:
        return [g for g in self._groups.values() if g.tenant == tenant and in_path(g.service_path, service_path)]

    def group(self, resource: str, apikey: str) -> ServiceGroup | None:
        return self._groups.get((resource, apikey))

    def group_for_apikey(self, apikey: str, resource: str | None = None, tenant: str | None = None) -> ServiceGroup | None:
        """The group of an apikey (of `tenant`, if given): the one at `resource` if given and present, else any.
        None when the apikey is in the groups of several tenants and no tenant is given (stored before that was
        refused): a measure that names no tenant must not pick one."""
        found = [g for g in self._groups.values() if g.apikey == apikey and (tenant is None or g.tenant == tenant)]
        if len({g.tenant for g in found}) > 1:
            return None
        return next((g for g in found if g.resource == resource), found[0] if found else None)

    def default_group(self, tenant: str, service_path: str) -> ServiceGroup | None:
        """The group a device without apikey belongs to: the only one of its service path."""
        candidates = self.groups(tenant, service_path)
        return candidates[0] if len(candidates) == 1 else None

    async def add_groups(self, groups: list[ServiceGroup]) -> None:
        """Store new groups, all or none: 409 (`DuplicateGroup`) if one exists, here or stored meanwhile by another
        process (then learnt here at once)."""
        learnt = Learnt()
        try:
            async with self._lock:
                seen: set[tuple[str, str]] = set()
                claimed: dict[str, str] = {}
                for group in groups:
                    key = (group.resource, group.apikey)
                    if key in self._groups or key in seen:
                        raise DuplicateGroup(group.resource, group.apikey)
                    self._check_apikey(group.apikey, group.tenant, claimed)
                    seen.add(key)
                items = [(GROUP_KIND, g.tenant, g.key, group_to_wire(g)) for g in groups]
                lost = await self._insert(items, learnt)
                if lost is not None:
                    raise DuplicateGroup(groups[lost].resource, groups[lost].apikey)
                for group in groups:
                    self._groups[(group.resource, group.apikey)] = group
                    self._refresh_profiles(group.apikey)
        finally:
            self._log_conflicts(learnt)
            self._learnt(learnt)

    async def _insert(self, items: list[tuple[str, str, str, dict[str, Any]]], learnt: Learnt) -> int | None:
        """Insert new documents (kind, tenant, key, doc) of one kind, each only if none is stored under its key
        (under the lock, after the checks against what this process knows): None if all were, else the index of
        one that another process stored meanwhile (two processes creating one device id at the same instant: one
        wins, the other is told 409). Then none of them is kept, as when the checks find a duplicate, and what is
        stored under the keys lost is applied here (`learnt`). A stored document that does not validate (logged
        at load, unknown here: a GET or DELETE cannot reach it) is replaced, as before this check, so that
        provisioning it again is the way out."""
        keys: list[DocKey] = [(tenant, kind, key) for kind, tenant, key, _ in items]
        told = keys  # on a store failure, every key: a re-read of them is harmless
        try:
            # Concurrent inserts share group commits: one transaction for a whole provisioning batch.
            inserted = list(await asyncio.gather(*(self.store.insert_doc(*item) for item in items)))
            for k in [k for k, ok in enumerate(inserted) if not ok]:
                kind, tenant, key, wire = items[k]
                doc = await self.store.get_doc(kind, tenant, key)
                if doc is None:  # deleted meanwhile: free again
                    inserted[k] = await self.store.insert_doc(kind, tenant, key, wire)
                elif self._parse(tenant, kind, key, doc) is None:
                    await self.store.put_doc(kind, tenant, key, wire)
                    inserted[k] = True
            done = [keys[k] for k, ok in enumerate(inserted) if ok]
            lost = [keys[k] for k, ok in enumerate(inserted) if not ok]
            if not lost:
                told = done
                return None
            await self.store.delete_docs(items[0][0], [(tenant, key) for tenant, _, key in done])
            told = done  # inserted, then deleted: another process may have read them in between
            stored = await asyncio.gather(*(self.store.get_doc(kind, tenant, key) for tenant, kind, key in lost))
            self._apply_docs(lost, list(stored), learnt)
            return inserted.index(False)
        finally:
            self._changed(told)

    async def replace_group(self, group: ServiceGroup) -> None:
        async with self._lock:
            try:
                await self._store_group(group)
            finally:
                self._changed([(group.tenant, GROUP_KIND, group.key)])

    async def _store_group(self, group: ServiceGroup) -> None:
        await self.store.put_doc(GROUP_KIND, group.tenant, group.key, group_to_wire(group))
        self._groups[(group.resource, group.apikey)] = group
        self._refresh_profiles(group.apikey)

    async def remove_group(self, group: ServiceGroup) -> None:
        async with self._lock:
            try:
                await self.store.delete_doc(GROUP_KIND, group.tenant, group.key)
            finally:
                self._changed([(group.tenant, GROUP_KIND, group.key)])
            self._groups.pop((group.resource, group.apikey), None)
            self._refresh_profiles(group.apikey)

    # -- devices -----------------------------------------------------------------------------------
    def devices(self, tenant: str, service_path: str | None = None) -> list[Device]:
        found = [d for d in self._devices.values() if d.tenant == tenant and in_path(d.service_path, service_path)]
        return sorted(found, key=lambda d: d.device_id)

    def device(self, tenant: str, device_id: str) -> Device | None:
        return self._devices.get((tenant, device_id))

    async def add_devices(self, devices: list[Device]) -> None:
        """Store new devices, all or none: 409 if one exists (`DuplicateDeviceId` for its id in the tenant, here or
        stored meanwhile by another process, then learnt here at once) or conflicts (apikey, entity)."""
        learnt = Learnt()
        try:
            await self._add_devices(devices, learnt)
        finally:
            self._log_conflicts(learnt)
            self._learnt(learnt)

    async def _add_devices(self, devices: list[Device], learnt: Learnt) -> None:
        async with self._lock:
            seen: set[tuple[str, str]] = set()
            claimed: dict[str, str] = {}
            for device in devices:
                self._check_new(device, seen, claimed)
            wires = [device_to_wire(d) for d in devices]
            lost = await self._insert([(DEVICE_KIND, d.tenant, d.device_id, w) for d, w in zip(devices, wires, strict=True)],
                                      learnt)
            if lost is not None:
                raise DuplicateDeviceId(devices[lost].device_id)
            for device, wire in zip(devices, wires, strict=True):
                self._index_device(device, wire)

    def _check_new(self, device: Device, seen: set[tuple[str, str]], claimed: dict[str, str]) -> None:
        key = (device.tenant, device.device_id)
        if key in self._devices or key in seen:
            raise DuplicateDeviceId(device.device_id)
        self._check_apikey(device.apikey, device.tenant, claimed)
        if (device.apikey, device.device_id) in self._profiles:
            raise AlreadyExists(f"device {device.device_id} already exists with apikey {device.apikey} in another service")
        owner = self._by_entity.get((device.tenant, device.entity_name))
        if owner is not None:
            raise AlreadyExists(f"entity {device.entity_name} already belongs to device {owner.device_id}")
        seen.add(key)

    async def replace_device(self, old: Device, new: Device) -> None:
        async with self._lock:
            self._unindex_device(old)
            try:
                self._check_new(new, set(), {})
            except AlreadyExists:
                self._index_device(old)
                raise
            if (old.tenant, old.device_id) != (new.tenant, new.device_id):
                await self._store_device(new)
                return
            # An update, not a put: a device another process removed meanwhile is not brought back (404 here, as
            # that process's DELETE said); its apikey cannot change (ingest/http.py), so it tells the stored one.
            wire = device_to_wire(new)
            try:
                updated = await self.store.replace_doc_if(DEVICE_KIND, new.tenant, new.device_id, wire, "apikey")
            finally:
                self._changed([(new.tenant, DEVICE_KIND, new.device_id)])
            if not updated:
                raise NotFound(f"device {new.device_id} does not exist (removed by another request meanwhile)")
            self._index_device(new, wire)

    async def _store_device(self, device: Device) -> None:
        wire = device_to_wire(device)
        try:
            await self.store.put_doc(DEVICE_KIND, device.tenant, device.device_id, wire)
        finally:
            self._changed([(device.tenant, DEVICE_KIND, device.device_id)])
        self._index_device(device, wire)

    async def remove_device(self, device: Device) -> None:
        async with self._lock:
            try:
                await self.store.delete_doc(DEVICE_KIND, device.tenant, device.device_id)
            finally:
                self._changed([(device.tenant, DEVICE_KIND, device.device_id)])
            self._unindex_device(device)

    # -- profiles (the hot path) ---------------------------------------------------------------------
    def profile(self, apikey: str, device_id: str) -> DeviceProfile | None:
        return self._profiles.get((apikey, device_id))

    def profile_by_entity(self, tenant: str, entity_id: str) -> DeviceProfile | None:
        return self._by_entity.get((tenant, entity_id))

    def profiles(self) -> list[DeviceProfile]:
        return list(self._profiles.values())

    def _index_device(self, device: Device, wire: dict[str, Any] | None = None) -> None:
        """Index a device (`wire`: the document this process stored for it, whose fingerprint is kept)."""
        previous = self._devices.get((device.tenant, device.device_id))
        if previous is not None:
            self._count_apikey(previous, -1)
        if wire is not None and self._fingerprints is not None:
            self._fingerprints[(device.tenant, device.device_id)] = fingerprint(wire)
        self._count_apikey(device, 1)
        self._devices[(device.tenant, device.device_id)] = device
        profile = build_profile(device, self.group_for_apikey(device.apikey, tenant=device.tenant))
        self._profiles[profile.key] = profile
        self._by_entity[(profile.tenant, profile.entity_id)] = profile

    def _unindex_device(self, device: Device) -> None:
        previous = self._devices.pop((device.tenant, device.device_id), None)
        if previous is not None:
            self._count_apikey(previous, -1)
        if self._fingerprints is not None:
            self._fingerprints.pop((device.tenant, device.device_id), None)
        profile = self._profiles.get((device.apikey, device.device_id))
        if profile is not None and profile.tenant == device.tenant:  # (not another tenant's, stored before the rule)
            del self._profiles[profile.key]
            if self._by_entity.get((profile.tenant, profile.entity_id)) is profile:
                del self._by_entity[(profile.tenant, profile.entity_id)]

    def _count_apikey(self, device: Device, step: int) -> None:
        tenants = self._device_apikeys.setdefault(device.apikey, {})
        tenants[device.tenant] = tenants.get(device.tenant, 0) + step
        if tenants[device.tenant] <= 0:
            del tenants[device.tenant]
            if not tenants:
                del self._device_apikeys[device.apikey]

    def _refresh_profiles(self, apikey: str) -> None:
        """A group changed: rebuild the profiles of its devices (they inherit its mapping)."""
        for device in [d for d in self._devices.values() if d.apikey == apikey]:
            self._index_device(device)
