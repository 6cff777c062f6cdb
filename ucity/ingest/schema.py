"""Provisioning payloads (FIWARE IoT Agent JSON) in and out: input models, wire/stored form.

Input is validated with pydantic models (provisioning is not the hot path); the result is the
frozen dataclasses of model.py. The stored document and the GET output are the same IoT Agent
wire form (snake_case fields as the IoT Agent uses them, plus `service` and `service_path`), so a
stored group or device reads back exactly as it was provisioned.

Fields of the IoT Agent that ucity does not use (cbroker, token, lazy, internal_attributes,
polling, endpoint ...) are accepted and ignored. Fields that would change the stored values if they
were ignored are refused with a 400 instead: an attribute's or command's `expression` (JEXL), an
attribute's `entity_name` / `entity_type` (multi-entity), `explicitAttrs` as a JEXL expression, and a
`timezone` that is no IANA time zone (its DateTime values would silently be read as UTC). A stored
document is read back leniently (`stored=True`): a timezone stored before it was checked is kept
(and logged), so that the device does not vanish at the next start.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

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

log = logging.getLogger(__name__)

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
    # IoT Agent features ucity does not implement: refused (`_unsupported`), as ignoring them stores wrong data
    expression: Any = None
    entity_name: Any = None
    entity_type: Any = None


class StaticIn(_In):
    name: str = Field(min_length=1)
    type: str = "Text"
    value: Any = None
    metadata: dict[str, Any] | None = None


class CommandIn(_In):
    name: str = Field(min_length=1)
    type: str = "command"
    expression: Any = None


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
    entity_name_exp: Any = Field(None, alias="entityNameExp")  # refused (parse_group)
    payload_type: Any = Field(None, alias="payloadType")  # only "iotagent" (`_check_payload_type`)


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
    payload_type: Any = Field(None, alias="payloadType")


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


def _given(value: Any) -> bool:
    return value is not None and value != ""


def _unsupported(what: str, name: str, field: str, korean: str, english: str) -> BadRequest:
    return BadRequest(f"{what} {name!r}: {field}은(는) 지원하지 않음 ({korean}) / {field} is not supported by ucity "
                      f"({english}); see the differences from the IoT Agent in docs/devices.md")


_EXPRESSION = ("JEXL 식 변환 없음, 값은 보낸 그대로 저장", "no JEXL transformation: values are stored as sent, so "
               "send them already converted")
_MULTI_ENTITY = ("다중 엔티티 없음, 값은 장치 엔티티에 저장", "no multi-entity: every value goes to the device's own "
                 "entity; provision a device per entity instead")


def _attrs(items: list[AttrIn]) -> tuple[AttrSpec, ...]:
    specs = []
    for item in items:
        if _given(item.expression):
            raise _unsupported("attribute", item.name, "expression", *_EXPRESSION)
        for field in ("entity_name", "entity_type"):
            if _given(getattr(item, field)):
                raise _unsupported("attribute", item.name, field, *_MULTI_ENTITY)
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
    statics = tuple(StaticAttr(i.name, i.type, i.value, i.metadata or None) for i in items)
    _decode_check(lambda: static_instances(statics, timezone))
    return statics


def _commands(items: list[CommandIn]) -> tuple[Command, ...]:
    for item in items:
        if _given(item.expression):
            raise _unsupported("command", item.name, "expression", "명령 값은 보낸 그대로 장치에 전달",
                               "the command's value is published to the device as written")
    commands = tuple(Command(i.name, i.type) for i in items)
    _decode_check(lambda: command_instances(commands))
    return commands


def _decode_check(check: Callable[[], object]) -> None:
    try:
        check()
    except DecodeError as exc:
        raise BadRequest(exc.detail) from exc


def check_timezone(value: str | None, stored: bool = False) -> str | None:
    """An IANA time zone name (`Asia/Seoul`), None or "" for none. 400 for any other: a DateTime value
    without offset would be read in UTC instead (9 hours off for a mistyped Asia/Seoul). `stored`: a
    document stored before the check keeps its value (logged; such values are read as UTC)."""
    if value is None or value == "":
        return None
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        if stored:
            log.warning("stored timezone %r is not an IANA time zone: its values without offset are read as UTC",
                        value[:100])
            return value
        raise BadRequest(f"알 수 없는 시간대 {value!r} / unknown timezone {value!r}: an IANA time zone name such as "
                         "Asia/Seoul") from exc
    return value


def _check_explicit_attrs(body: Any) -> None:
    """`explicitAttrs` as a JEXL expression (`"['temperature']"`, IoT Agent cases 3 to 5): a clear 400."""
    value = body.get("explicitAttrs") if isinstance(body, dict) else None
    if isinstance(value, (str, list, dict)) and str(value).strip().lower() not in ("true", "false"):
        raise BadRequest("explicitAttrs는 true/false만 지원 / explicitAttrs takes true or false; a JEXL expression or "
                         f"list of attribute names ({str(value)[:60]!r}) is not supported by ucity (docs/devices.md)")


def _check_payload_type(value: Any) -> None:
    """`payloadType` `ngsiv2` / `ngsild` (measures that are NGSI entities): their keys would be stored as attributes."""
    if _given(value) and value != "iotagent":
        raise BadRequest(f"payloadType {str(value)[:40]!r}은(는) 지원하지 않음 / payloadType {str(value)[:40]!r} is not "
                         "supported by ucity: measures are IoT Agent JSON key-value objects (payloadType iotagent)")


def legacy_group_type(body: Any) -> Any:
    """A group body with the IoT Agent's legacy `type` (its own API examples use it) as `entity_type`, when no
    `entity_type` is given; both given and different: 400 (which one would be meant?)."""
    if not isinstance(body, dict) or body.get("type") is None:
        return body
    legacy, given = body["type"], body.get("entity_type")
    if given is not None and given != legacy:
        raise BadRequest(f"type {legacy!r}와 entity_type {given!r}가 다름 / type {legacy!r} (the IoT Agent's legacy "
                         f"name of entity_type) and entity_type {given!r} differ: give entity_type only")
    return {**body, "entity_type": legacy}


def parse_group(body: Any, tenant: str, service_path: str, stored: bool = False) -> ServiceGroup:
    _check_explicit_attrs(body)
    data: GroupIn = _validate(GroupIn, legacy_group_type(body), "service group")
    if _given(data.entity_name_exp):
        raise _unsupported("service group", data.apikey, "entityNameExp", "자동 등록 장치의 엔티티 ID는 "
                           "urn:ngsi-ld:<entity_type>:<device_id>", "an autoprovisioned device's entity id is "
                           "urn:ngsi-ld:<entity_type>:<device_id>; provision the device with its entity_name instead")
    _check_payload_type(data.payload_type)
    check_topic_safe(data.apikey, "apikey")
    if not data.resource.startswith("/"):
        raise BadRequest(f"resource must be a path starting with '/', got {data.resource!r}")
    check_name(data.entity_type, "entity_type")
    timezone = check_timezone(data.timezone, stored)
    return ServiceGroup(
        tenant=tenant, service_path=service_path, apikey=data.apikey, resource=data.resource,
        entity_type=data.entity_type, attributes=_attrs(data.attributes),
        static_attributes=_statics(data.static_attributes, timezone), commands=_commands(data.commands),
        autoprovision=data.autoprovision, explicit_attrs=data.explicit_attrs,
        expected_interval_s=data.expected_interval_s, timezone=timezone, description=data.description,
    )


def parse_device(body: Any, tenant: str, service_path: str, group: ServiceGroup | None,
                 stored: bool = False) -> Device:
    """A device; apikey and entity_type default to its service group's."""
    _check_explicit_attrs(body)
    data: DeviceIn = _validate(DeviceIn, body, "device")
    _check_payload_type(data.payload_type)
    timezone = check_timezone(data.timezone, stored)
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
        attributes=_attrs(data.attributes), static_attributes=_statics(data.static_attributes, timezone),
        commands=_commands(data.commands), timezone=timezone, transport=data.transport, protocol=data.protocol,
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
    return parse_group(doc, tenant, doc.get("service_path") or "/", stored=True)


def device_from_doc(tenant: str, doc: dict[str, Any]) -> Device:
    return parse_device(doc, tenant, doc.get("service_path") or "/", None, stored=True)
