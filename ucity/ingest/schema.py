"""Provisioning payloads (FIWARE IoT Agent JSON) in and out: input models, wire/stored form.

Input is validated with pydantic models (provisioning is not the hot path); the result is the
frozen dataclasses of model.py. The stored document and the GET output are the same IoT Agent
wire form (snake_case fields as the IoT Agent uses them, plus `service` and `service_path`), so a
stored group or device reads back exactly as it was provisioned.

Fields of the IoT Agent that ucity does not use (cbroker, token, lazy, internal_attributes,
polling, endpoint ...) are accepted and ignored.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ucity.core.errors import BadRequest
from ucity.ingest.decode import DecodeError, check_attr_spec, command_instances, static_instances
from ucity.ingest.model import (
    DEFAULT_ENTITY_TYPE,
    DEFAULT_RESOURCE,
    AttrSpec,
    Command,
    Device,
    ServiceGroup,
    StaticAttr,
    entity_id_for,
)
from ucity.ngsild.model import check_entity_id, check_name, is_uri

# apikeys and device ids are MQTT topic levels: no '/', '+', '#', no whitespace.
_TOPIC_SAFE = re.compile(r"^[A-Za-z0-9_.:@~\-]{1,256}$")
_TENANT = re.compile(r"^[A-Za-z0-9_:\-./]{1,255}$")
_SERVICE_PATH = re.compile(r"^/[A-Za-z0-9_\-/]*$")


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class AttrIn(_In):
    object_id: str | None = None
    name: str = Field(min_length=1)
    type: str = "Text"
    metadata: dict[str, Any] | None = None


class StaticIn(_In):
    name: str = Field(min_length=1)
    type: str = "Text"
    value: Any = None


class CommandIn(_In):
    name: str = Field(min_length=1)
    type: str = "command"


class GroupIn(_In):
    apikey: str
    resource: str = DEFAULT_RESOURCE
    entity_type: str = DEFAULT_ENTITY_TYPE
    attributes: list[AttrIn] = []
    static_attributes: list[StaticIn] = []
    commands: list[CommandIn] = []
    autoprovision: bool = True
    explicit_attrs: bool = Field(False, alias="explicitAttrs")
    expected_interval_s: float | None = Field(None, gt=0)
    timezone: str | None = None
    description: str | None = None


class DeviceIn(_In):
    device_id: str
    apikey: str | None = None
    entity_name: str | None = None
    entity_type: str | None = None
    attributes: list[AttrIn] = []
    static_attributes: list[StaticIn] = []
    commands: list[CommandIn] = []
    timezone: str | None = None
    transport: str | None = None
    protocol: str | None = None
    explicit_attrs: bool | None = Field(None, alias="explicitAttrs")
    expected_interval_s: float | None = Field(None, gt=0)
    autoprovisioned: bool = False


# -- headers -------------------------------------------------------------------------------------------
def check_tenant(value: str) -> str:
    if not _TENANT.match(value):
        raise BadRequest(f"invalid fiware-service {value!r}")
    return value


def check_service_path(value: str) -> str:
    if not _SERVICE_PATH.match(value) or len(value) > 255:
        raise BadRequest(f"invalid fiware-servicepath {value!r}: it starts with '/'")
    return value


def check_topic_safe(value: str, what: str) -> str:
    if not _TOPIC_SAFE.match(value):
        raise BadRequest(f"invalid {what} {value!r}: letters, digits and _ . : @ ~ - only (it is an MQTT topic level)")
    return value


# -- input -> model ---------------------------------------------------------------------------------------
def _validate(model: type[_In], body: Any, what: str) -> Any:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise BadRequest(f"invalid {what}: {problems}") from exc


def _attrs(items: list[AttrIn]) -> tuple[AttrSpec, ...]:
    specs = []
    for item in items:
        unit = (item.metadata or {}).get("unitCode")
        unit_code = unit.get("value") if isinstance(unit, dict) else unit if isinstance(unit, str) else None
        spec = AttrSpec(item.object_id or item.name, item.name, item.type, unit_code)
        try:
            check_attr_spec(spec)
        except DecodeError as exc:
            raise BadRequest(exc.detail) from exc
        specs.append(spec)
    return tuple(specs)


def _statics(items: list[StaticIn], timezone: str | None) -> tuple[StaticAttr, ...]:
    statics = tuple(StaticAttr(i.name, i.type, i.value) for i in items)
    _decode_check(lambda: static_instances(statics, timezone))
    return statics


def _commands(items: list[CommandIn]) -> tuple[Command, ...]:
    commands = tuple(Command(i.name, i.type) for i in items)
    _decode_check(lambda: command_instances(commands))
    return commands


def _decode_check(check: Callable[[], object]) -> None:
    try:
        check()
    except DecodeError as exc:
        raise BadRequest(exc.detail) from exc


def parse_group(body: Any, tenant: str, service_path: str) -> ServiceGroup:
    data: GroupIn = _validate(GroupIn, body, "service group")
    check_topic_safe(data.apikey, "apikey")
    if not data.resource.startswith("/"):
        raise BadRequest(f"resource must be a path starting with '/', got {data.resource!r}")
    check_name(data.entity_type, "entity_type")
    return ServiceGroup(
        tenant=tenant, service_path=service_path, apikey=data.apikey, resource=data.resource,
        entity_type=data.entity_type, attributes=_attrs(data.attributes),
        static_attributes=_statics(data.static_attributes, data.timezone), commands=_commands(data.commands),
        autoprovision=data.autoprovision, explicit_attrs=data.explicit_attrs,
        expected_interval_s=data.expected_interval_s, timezone=data.timezone, description=data.description,
    )


def parse_device(body: Any, tenant: str, service_path: str, group: ServiceGroup | None) -> Device:
    """A device; apikey and entity_type default to its service group's."""
    data: DeviceIn = _validate(DeviceIn, body, "device")
    check_topic_safe(data.device_id, "device_id")
    apikey = data.apikey or (group.apikey if group else None)
    if not apikey:
        raise BadRequest(f"device {data.device_id!r} needs an apikey (or exactly one service group in its service path)")
    check_topic_safe(apikey, "apikey")
    entity_type = data.entity_type or (group.entity_type if group else DEFAULT_ENTITY_TYPE)
    check_name(entity_type, "entity_type")
    return Device(
        tenant=tenant, service_path=service_path, device_id=data.device_id, apikey=apikey,
        entity_name=entity_name(data.entity_name, entity_type, data.device_id), entity_type=entity_type,
        attributes=_attrs(data.attributes), static_attributes=_statics(data.static_attributes, data.timezone),
        commands=_commands(data.commands), timezone=data.timezone, transport=data.transport, protocol=data.protocol,
        explicit_attrs=data.explicit_attrs, expected_interval_s=data.expected_interval_s,
        autoprovisioned=data.autoprovisioned,
    )


def entity_name(given: str | None, entity_type: str, device_id: str) -> str:
    """The device's entity id: as given when it is a URI, else a URN of the type and the name."""
    if not given:
        return entity_id_for(entity_type, device_id)
    if is_uri(given):
        return check_entity_id(given)
    return check_entity_id(entity_id_for(entity_type, given))


def list_body(body: Any, key: str) -> list[Any]:
    """`{"services": [...]}` / `{"devices": [...]}` (a bare object or array is accepted too)."""
    if isinstance(body, dict) and key in body:
        body = body[key]
    items = body if isinstance(body, list) else [body]
    if not items or not all(isinstance(i, dict) for i in items):
        raise BadRequest(f"expected {{\"{key}\": [ ... ]}} with at least one object")
    return items


# -- model -> wire / stored form --------------------------------------------------------------------------
def group_to_wire(group: ServiceGroup) -> dict[str, Any]:
    out: dict[str, Any] = {
        "service": group.tenant, "service_path": group.service_path,
        "apikey": group.apikey, "resource": group.resource, "entity_type": group.entity_type,
        "attributes": [a.to_wire() for a in group.attributes],
        "static_attributes": [s.to_wire() for s in group.static_attributes],
        "commands": [c.to_wire() for c in group.commands],
        "autoprovision": group.autoprovision, "explicitAttrs": group.explicit_attrs,
    }
    _put_optional(out, expected_interval_s=group.expected_interval_s, timezone=group.timezone,
                  description=group.description)
    return out


def device_to_wire(device: Device) -> dict[str, Any]:
    out: dict[str, Any] = {
        "service": device.tenant, "service_path": device.service_path, "device_id": device.device_id,
        "apikey": device.apikey, "entity_name": device.entity_name, "entity_type": device.entity_type,
        "attributes": [a.to_wire() for a in device.attributes],
        "static_attributes": [s.to_wire() for s in device.static_attributes],
        "commands": [c.to_wire() for c in device.commands],
    }
    _put_optional(out, timezone=device.timezone, transport=device.transport, protocol=device.protocol,
                  explicitAttrs=device.explicit_attrs, expected_interval_s=device.expected_interval_s)
    if device.autoprovisioned:
        out["autoprovisioned"] = True
    return out


def _put_optional(out: dict[str, Any], **values: Any) -> None:
    out.update({k: v for k, v in values.items() if v is not None})


def group_from_doc(tenant: str, doc: dict[str, Any]) -> ServiceGroup:
    return parse_group(doc, tenant, doc.get("service_path") or "/")


def device_from_doc(tenant: str, doc: dict[str, Any]) -> Device:
    return parse_device(doc, tenant, doc.get("service_path") or "/", None)
