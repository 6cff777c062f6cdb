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
with another request doing the same.
"""

from __future__ import annotations

import asyncio
import logging

from ucity.core.errors import AlreadyExists, BadRequest
from ucity.ingest.model import Device, DeviceProfile, ServiceGroup, build_profile
from ucity.ingest.schema import device_from_doc, device_to_wire, group_from_doc, group_to_wire
from ucity.store.base import Store

log = logging.getLogger(__name__)
GROUP_KIND = "iot-service"
DEVICE_KIND = "iot-device"


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

    async def load(self) -> None:
        """Read every stored group and device; a document that no longer validates is skipped and logged."""
        for tenant, key, doc in await self.store.list_docs(GROUP_KIND):
            try:
                group = group_from_doc(tenant, doc)
            except BadRequest as exc:
                log.error("stored service group %s/%s is invalid, skipped: %s", tenant, key, exc.detail)
                continue
            self._groups[(group.resource, group.apikey)] = group
        for tenant, key, doc in await self.store.list_docs(DEVICE_KIND):
            try:
                device = device_from_doc(tenant, doc)
            except BadRequest as exc:
                log.error("stored device %s/%s is invalid, skipped: %s", tenant, key, exc.detail)
                continue
            self._index_device(device)
        for apikey in sorted({g.apikey for g in self._groups.values()} | set(self._device_apikeys)):
            tenants = self.apikey_tenants(apikey)
            if len(tenants) > 1:
                log.error("apikey %s is used in several services (%s): each device keeps its own service's group, "
                          "none is autoprovisioned for it; give each service its own apikey", apikey,
                          ", ".join(sorted(tenants)))

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
        async with self._lock:
            seen: set[tuple[str, str]] = set()
            claimed: dict[str, str] = {}
            for group in groups:
                key = (group.resource, group.apikey)
                if key in self._groups or key in seen:
                    raise AlreadyExists(f"a service group with resource {group.resource} and apikey {group.apikey} exists")
                self._check_apikey(group.apikey, group.tenant, claimed)
                seen.add(key)
            for group in groups:
                await self._store_group(group)

    async def replace_group(self, group: ServiceGroup) -> None:
        async with self._lock:
            await self._store_group(group)

    async def _store_group(self, group: ServiceGroup) -> None:
        await self.store.put_doc(GROUP_KIND, group.tenant, group.key, group_to_wire(group))
        self._groups[(group.resource, group.apikey)] = group
        self._refresh_profiles(group.apikey)

    async def remove_group(self, group: ServiceGroup) -> None:
        async with self._lock:
            await self.store.delete_doc(GROUP_KIND, group.tenant, group.key)
            self._groups.pop((group.resource, group.apikey), None)
            self._refresh_profiles(group.apikey)

    # -- devices -----------------------------------------------------------------------------------
    def devices(self, tenant: str, service_path: str | None = None) -> list[Device]:
        found = [d for d in self._devices.values() if d.tenant == tenant and in_path(d.service_path, service_path)]
        return sorted(found, key=lambda d: d.device_id)

    def device(self, tenant: str, device_id: str) -> Device | None:
        return self._devices.get((tenant, device_id))

    async def add_devices(self, devices: list[Device]) -> None:
        async with self._lock:
            seen: set[tuple[str, str]] = set()
            claimed: dict[str, str] = {}
            for device in devices:
                self._check_new(device, seen, claimed)
            # Concurrent puts share group commits: one transaction for a whole provisioning batch.
            await asyncio.gather(*(self.store.put_doc(DEVICE_KIND, d.tenant, d.device_id, device_to_wire(d))
                                   for d in devices))
            for device in devices:
                self._index_device(device)

    def _check_new(self, device: Device, seen: set[tuple[str, str]], claimed: dict[str, str]) -> None:
        key = (device.tenant, device.device_id)
        if key in self._devices or key in seen:
            raise AlreadyExists(f"device {device.device_id} already exists")
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
            await self._store_device(new)

    async def _store_device(self, device: Device) -> None:
        await self.store.put_doc(DEVICE_KIND, device.tenant, device.device_id, device_to_wire(device))
        self._index_device(device)

    async def remove_device(self, device: Device) -> None:
        async with self._lock:
            await self.store.delete_doc(DEVICE_KIND, device.tenant, device.device_id)
            self._unindex_device(device)

    # -- profiles (the hot path) ---------------------------------------------------------------------
    def profile(self, apikey: str, device_id: str) -> DeviceProfile | None:
        return self._profiles.get((apikey, device_id))

    def profile_by_entity(self, tenant: str, entity_id: str) -> DeviceProfile | None:
        return self._by_entity.get((tenant, entity_id))

    def profiles(self) -> list[DeviceProfile]:
        return list(self._profiles.values())

    def _index_device(self, device: Device) -> None:
        previous = self._devices.get((device.tenant, device.device_id))
        if previous is not None:
            self._count_apikey(previous, -1)
        self._count_apikey(device, 1)
        self._devices[(device.tenant, device.device_id)] = device
        profile = build_profile(device, self.group_for_apikey(device.apikey, tenant=device.tenant))
        self._profiles[profile.key] = profile
        self._by_entity[(profile.tenant, profile.entity_id)] = profile

    def _unindex_device(self, device: Device) -> None:
        previous = self._devices.pop((device.tenant, device.device_id), None)
        if previous is not None:
            self._count_apikey(previous, -1)
        profile = self._profiles.pop((device.apikey, device.device_id), None)
        if profile is not None:
            self._by_entity.pop((profile.tenant, profile.entity_id), None)

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
