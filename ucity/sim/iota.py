"""FIWARE IoT Agent JSON payloads: service groups, device provisioning, measures, MQTT topics.

Pure builders that follow the IoT Agent conventions (iotagent-node-lib provisioning API and the
IoTA-JSON southbound): `POST /iot/services {"services": [...]}`, `POST /iot/devices
{"devices": [...]}`, measures to `POST /iot/json?k=<apikey>&i=<device_id>` as one JSON object or
an array of objects, each with its own `TimeInstant`, and over MQTT to `/<apikey>/<device_id>/attrs`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ucity.sim.devices import Attr, Reading, SimDevice

PROTOCOL = "PDI-IoTA-JSON"
RESOURCE = "/iot/json"
TIMEZONE = "Asia/Seoul"


@dataclass(frozen=True)
class IotaConfig:
    """How the simulated devices present themselves to the IoT Agent."""

    apikey_prefix: str = "guro"
    service: str | None = None  # fiware-service (the tenant); None = the default tenant
    service_path: str = "/"
    transport: str = "HTTP"  # HTTP | MQTT


def apikey(group: str, cfg: IotaConfig) -> str:
    return f"{cfg.apikey_prefix}-{group}"


def headers(cfg: IotaConfig) -> dict[str, str]:
    out = {"fiware-servicepath": cfg.service_path}
    if cfg.service:
        out["fiware-service"] = cfg.service
    return out


def attribute(a: Attr) -> dict[str, Any]:
    out: dict[str, Any] = {"object_id": a.object_id, "name": a.name, "type": a.type}
    if a.unit:
        out["metadata"] = {"unitCode": {"type": "Text", "value": a.unit}}
    return out


def service_groups(devices: list[SimDevice], cfg: IotaConfig) -> list[dict[str, Any]]:
    """One service group per device group, keyed by its apikey; no autoprovisioning."""
    groups: dict[str, str] = {}
    for d in devices:
        groups.setdefault(d.profile.group, d.profile.entity_type)
    return [{"apikey": apikey(g, cfg), "entity_type": etype, "resource": RESOURCE, "protocol": PROTOCOL,
             "transport": cfg.transport, "timezone": TIMEZONE, "autoprovision": False}
            for g, etype in groups.items()]


def device_provision(d: SimDevice, cfg: IotaConfig) -> dict[str, Any]:
    return {
        "device_id": d.device_id, "entity_name": d.entity_id, "entity_type": d.profile.entity_type,
        "apikey": apikey(d.profile.group, cfg), "protocol": PROTOCOL, "transport": cfg.transport,
        "timezone": TIMEZONE, "attributes": [attribute(a) for a in d.profile.attributes],
        "static_attributes": [{"name": s.name, "type": s.type, "value": s.value} for s in d.static],
        "expected_interval_s": d.profile.health_interval_s,  # ucity's device-health extension
    }


def iso_ms(t: float) -> str:
    """POSIX seconds as ISO 8601 UTC with milliseconds and Z."""
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def measure(reading: Reading, t: float) -> dict[str, Any]:
    """One measure: the reading's object ids plus its own time (IoT Agent `TimeInstant`)."""
    return {**reading, "TimeInstant": iso_ms(t)}


def measure_path(group: str, device_id: str, cfg: IotaConfig) -> tuple[str, dict[str, str]]:
    return RESOURCE, {"k": apikey(group, cfg), "i": device_id}


def mqtt_topic(group: str, device_id: str, cfg: IotaConfig) -> str:
    return f"/{apikey(group, cfg)}/{device_id}/attrs"
