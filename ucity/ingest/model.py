"""The device model of ingest: service groups, devices and the merged profile measures are decoded with.

Plain frozen dataclasses (no I/O). A `ServiceGroup` and a `Device` are what FIWARE IoT Agent
provisioning stores; a `DeviceProfile` is the two merged into exactly what the hot path needs
(object_id -> attribute spec, entity id and type, static attributes, commands), built once per
provisioning change rather than per measure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

DEFAULT_ENTITY_TYPE = "Device"
DEFAULT_RESOURCE = "/iot/json"
DEFAULT_SERVICE_PATH = "/"


@dataclass(frozen=True, slots=True)
class AttrSpec:
    """One provisioned active attribute: what a device sends as `object_id`, stored as `name`."""

    object_id: str
    name: str
    type: str = "Text"  # IoT Agent type: Number, Integer, Boolean, Text, DateTime, geo:point, geo:json ...
    unit_code: str | None = None

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"object_id": self.object_id, "name": self.name, "type": self.type}
        if self.unit_code:
            out["metadata"] = {"unitCode": {"type": "Text", "value": self.unit_code}}
        return out


@dataclass(frozen=True, slots=True)
class StaticAttr:
    """An attribute every entity of the device carries, with a fixed value (a location, a model name)."""

    name: str
    type: str
    value: Any
    # IoT Agent metadata as provisioned (`{"unitCode": {"type": "Text", "value": "CEL"}, ...}`): on the entity,
    # `unitCode` and one sub-property per other item (decode.static_instances)
    metadata: Mapping[str, Any] | None = None

    def to_wire(self) -> dict[str, Any]:
        out = {"name": self.name, "type": self.type, "value": self.value}
        if self.metadata:
            out["metadata"] = dict(self.metadata)
        return out


@dataclass(frozen=True, slots=True)
class Command:
    """A command the device accepts; on the entity it is `<name>`, `<name>_status`, `<name>_info`."""

    name: str
    type: str = "command"

    def to_wire(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type}


@dataclass(frozen=True, slots=True)
class ServiceGroup:
    """A FIWARE IoT Agent service group (config group): defaults shared by the devices of one apikey."""

    tenant: str
    service_path: str
    apikey: str
    resource: str = DEFAULT_RESOURCE
    entity_type: str = DEFAULT_ENTITY_TYPE
    attributes: tuple[AttrSpec, ...] = ()
    static_attributes: tuple[StaticAttr, ...] = ()
    commands: tuple[Command, ...] = ()
    autoprovision: bool = True
    explicit_attrs: bool = False
    expected_interval_s: float | None = None
    timezone: str | None = None
    description: str | None = None

    @property
    def key(self) -> str:
        """The stored document key; (resource, apikey) is unique across tenants."""
        return f"{self.resource}|{self.apikey}"


@dataclass(frozen=True, slots=True)
class Device:
    """A provisioned device: its id at the apikey, its entity and its attribute mapping."""

    tenant: str
    service_path: str
    device_id: str
    apikey: str
    entity_name: str
    entity_type: str = DEFAULT_ENTITY_TYPE
    attributes: tuple[AttrSpec, ...] = ()
    static_attributes: tuple[StaticAttr, ...] = ()
    commands: tuple[Command, ...] = ()
    timezone: str | None = None
    transport: str | None = None
    protocol: str | None = None
    explicit_attrs: bool | None = None
    expected_interval_s: float | None = None
    autoprovisioned: bool = False


@dataclass(frozen=True, slots=True)
class DeviceProfile:
    """A device merged with its service group: everything needed to decode and write its measures."""

    tenant: str
    service_path: str
    apikey: str
    device_id: str
    entity_id: str
    entity_type: str
    by_object_id: Mapping[str, AttrSpec] = field(default_factory=lambda: MappingProxyType({}))
    by_name: Mapping[str, AttrSpec] = field(default_factory=lambda: MappingProxyType({}))  # devices may send names
    static_attributes: tuple[StaticAttr, ...] = ()
    commands: tuple[Command, ...] = ()
    timezone: str | None = None
    explicit_attrs: bool = False
    expected_interval_s: float | None = None
    # what the hot path works out once per profile on first use (decode.py's per-key plan, the service's
    # Resolved): the profile is rebuilt on every provisioning change, and so is this
    hot_path_cache: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def key(self) -> tuple[str, str]:
        return (self.apikey, self.device_id)


def entity_id_for(entity_type: str, device_id: str) -> str:
    """The default NGSI-LD entity id of a device (FIWARE IoT Agent convention, as a URN)."""
    return f"urn:ngsi-ld:{entity_type}:{device_id}"


def build_profile(device: Device, group: ServiceGroup | None) -> DeviceProfile:
    """Merge a device with its group: device attributes win by object_id, statics by name."""
    specs: dict[str, AttrSpec] = {}
    for spec in (*(group.attributes if group else ()), *device.attributes):
        specs[spec.object_id] = spec
    statics = _by_name((*(group.static_attributes if group else ()), *device.static_attributes))
    commands = _by_name((*(group.commands if group else ()), *device.commands))
    explicit = device.explicit_attrs if device.explicit_attrs is not None else bool(group and group.explicit_attrs)
    interval = device.expected_interval_s or (group.expected_interval_s if group else None)
    return DeviceProfile(
        tenant=device.tenant, service_path=device.service_path, apikey=device.apikey, device_id=device.device_id,
        entity_id=device.entity_name, entity_type=device.entity_type, by_object_id=MappingProxyType(specs),
        by_name=MappingProxyType({spec.name: spec for spec in specs.values()}),
        static_attributes=statics, commands=commands, timezone=device.timezone or (group.timezone if group else None),
        explicit_attrs=explicit, expected_interval_s=interval,
    )


def _by_name(items: tuple[Any, ...]) -> tuple[Any, ...]:
    """Later items replace earlier ones with the same name, keeping first-seen order."""
    named: dict[str, Any] = {}
    for item in items:
        named[item.name] = item
    return tuple(named.values())
