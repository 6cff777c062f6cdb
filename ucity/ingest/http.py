"""HTTP handlers of ingest (framework-free): IoT Agent provisioning, measures, health and stats.

Routes (server.py maps them):

* `/iot/services` POST / GET / PUT / DELETE (`?resource=&apikey=`), `/iot/devices` POST / GET,
  `/iot/devices/{deviceId}` GET / PUT / DELETE: FIWARE IoT Agent provisioning. The tenant is the
  `fiware-service` header (the NGSI-LD default tenant when absent), `fiware-servicepath` is kept.
* `POST /iot/json?k=<apikey>&i=<device_id>[&t=<time>]`: measures (`t`: the time of the measures that carry
  none of their own, instead of the receive time); `GET /iot/about`.
* `GET /api/v1/devices/health`, `GET /api/v1/ingest/stats`.

The provisioning routes' errors carry the FIWARE IoT Agent's `name` and `message` beside the ProblemDetails
members (errors.py). A measure is answered 200 only after its commit. Partly invalid measures: 200, the valid fields
committed, the rejected ones listed in the body; measures taken whose time is more than
`ingest.clock_ahead_warn_s` ahead of the platform clock are named in `warnings` (`clock-ahead`).
Nothing valid at all: 400 with the same list. A write the store cannot take now: 503 (send it again).
A write the store refused (its error for the device's entity): ProblemDetails with that error's status
(500 when ucity itself failed), its `rejected` list naming every value not written (reason `not-written`,
attribute, the measure's time) after those decode rejected; they are counted in the ingest stats too.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ucity import __version__
from ucity.core.clock import to_iso
from ucity.core.errors import BadRequest, InvalidRequest, NotFound, UcityError, Unavailable, UnsupportedMediaType
from ucity.core.http import Req, Resp
from ucity.core.openapi import ApiDocs, Doc
from ucity.ingest.decode import INVALID_TIME, TIME_KEYS, DecodeError, Rejection, parse_json, parse_time
from ucity.ingest.errors import DEVICES, GROUPS, iota_errors
from ucity.ingest.model import DEFAULT_RESOURCE, DEFAULT_SERVICE_PATH, Device, DeviceProfile, ServiceGroup
from ucity.ingest.registry import in_path
from ucity.ingest.schema import (
    check_service_path,
    check_tenant,
    device_to_wire,
    group_to_wire,
    legacy_group_type,
    list_body,
    parse_device,
    parse_group,
)
from ucity.ingest.service import Received, not_written, stats_key
from ucity.ingest.stats import Key
from ucity.ngsild.context import core_context
from ucity.ngsild.request import int_param, media_type
from ucity.ops.auth import Permission

if TYPE_CHECKING:
    from ucity.ingest.service import IngestService

JSON = "application/json"


class IngestHttp:
    def __init__(self, service: IngestService) -> None:
        self.service = service
        self.registry = service.registry

    # -- request helpers ---------------------------------------------------------------------------------
    def tenant(self, req: Req) -> str:
        value = req.header("fiware-service") or req.header("ngsild-tenant")
        return check_tenant(value) if value else self.service.default_tenant

    @staticmethod
    def service_path(req: Req, listing: bool = False) -> str | None:
        value = req.header("fiware-servicepath")
        if not value:
            return None if listing else DEFAULT_SERVICE_PATH
        return value if listing and value in ("/*", "/#") else check_service_path(value)

    @staticmethod
    def body(req: Req) -> Any:
        kind = media_type(req)
        if kind != JSON and not kind.endswith("+json"):
            raise UnsupportedMediaType(f"Content-Type {kind or '(none)'} is not supported; use application/json")
        try:
            return parse_json(req.body)
        except DecodeError as exc:
            raise InvalidRequest(exc.detail) from exc

    @staticmethod
    def page(req: Req, items: list[Any]) -> list[Any]:
        offset = int_param(req, "offset", 0)
        limit = int_param(req, "limit", 1000, minimum=1)
        return items[offset:offset + limit]

    # -- service groups ----------------------------------------------------------------------------------
    @iota_errors(GROUPS)
    async def create_groups(self, req: Req) -> Resp:
        """Provision service groups (FIWARE IoT Agent `services`): 201."""
        tenant, path = self.tenant(req), self.service_path(req) or DEFAULT_SERVICE_PATH
        groups = [parse_group(item, tenant, path) for item in list_body(self.body(req), "services")]
        await self.service.add_groups(groups)
        return Resp(201, None)

    @iota_errors(GROUPS)
    async def list_groups(self, req: Req) -> Resp:
        """The tenant's service groups, optionally one `apikey` / `resource`."""
        groups = self.registry.groups(self.tenant(req), self.service_path(req, listing=True))
        if req.param("apikey"):
            groups = [g for g in groups if g.apikey == req.param("apikey")]
        if req.param("resource"):
            groups = [g for g in groups if g.resource == req.param("resource")]
        return Resp(200, {"count": len(groups), "services": [group_to_wire(g) for g in self.page(req, groups)]})

    def _group(self, req: Req) -> ServiceGroup:
        apikey = req.param("apikey")
        if not apikey:
            raise BadRequest("the query parameters apikey (and resource, default /iot/json) select the service group")
        group = self.registry.group(req.param("resource") or DEFAULT_RESOURCE, apikey)
        if group is None or group.tenant != self.tenant(req) or not in_path(group.service_path, self.service_path(
                req, listing=True)):
            raise NotFound(f"no service group with apikey {apikey} and resource {req.param('resource') or DEFAULT_RESOURCE}")
        return group

    @iota_errors(GROUPS)
    async def update_group(self, req: Req) -> Resp:
        """Change the service group that `apikey` (and `resource`) select; apikey and resource stay."""
        group = self._group(req)
        changes = self.body(req)
        if not isinstance(changes, dict):
            raise BadRequest("the body must be a JSON object with the fields to change")
        _same(changes, {"apikey": group.apikey, "resource": group.resource})
        merged = {**group_to_wire(group), **legacy_group_type(changes)}
        await self.service.replace_group(parse_group(merged, group.tenant, group.service_path))
        return Resp(204, None)

    @iota_errors(GROUPS)
    async def delete_group(self, req: Req) -> Resp:
        """Remove the service group that `apikey` (and `resource`) select; `device=true` with its devices."""
        group = self._group(req)
        await self.service.remove_group(group, with_devices=(req.param("device") or "").lower() == "true")
        return Resp(204, None)

    # -- devices ------------------------------------------------------------------------------------------
    @iota_errors(DEVICES)
    async def create_devices(self, req: Req) -> Resp:
        """Provision devices (FIWARE IoT Agent `devices`): 201."""
        tenant, path = self.tenant(req), self.service_path(req) or DEFAULT_SERVICE_PATH
        devices = [self._parse_device(item, tenant, path) for item in list_body(self.body(req), "devices")]
        await self.service.add_devices(devices)
        return Resp(201, None)

    def _parse_device(self, item: dict[str, Any], tenant: str, path: str) -> Device:
        apikey = item.get("apikey")
        group = (self.registry.group_for_apikey(apikey, tenant=tenant) if isinstance(apikey, str) and apikey
                 else self.registry.default_group(tenant, path))
        return parse_device(item, tenant, path, group)

    @iota_errors(DEVICES)
    async def list_devices(self, req: Req) -> Resp:
        """The tenant's provisioned devices."""
        devices = self.registry.devices(self.tenant(req), self.service_path(req, listing=True))
        return Resp(200, {"count": len(devices), "devices": [device_to_wire(d) for d in self.page(req, devices)]})

    def _device(self, req: Req) -> Device:
        device_id = req.path_params["deviceId"]
        device = self.registry.device(self.tenant(req), device_id)
        # In the scope of the request's fiware-servicepath when it names one (IoT Agent: every operation is in the
        # scope of its fiware-service and fiware-servicepath); without it, or with `/*` or `/#`, any of the tenant's.
        if device is None or not in_path(device.service_path, self.service_path(req, listing=True)):
            raise NotFound(f"device {device_id} does not exist")
        return device

    @iota_errors(DEVICES)
    async def get_device(self, req: Req) -> Resp:
        """One provisioned device."""
        return Resp(200, device_to_wire(self._device(req)))

    @iota_errors(DEVICES)
    async def update_device(self, req: Req) -> Resp:
        """Change a provisioned device (a new entity type gives it a new default entity id)."""
        device = self._device(req)
        changes = self.body(req)
        if not isinstance(changes, dict):
            raise BadRequest("the body must be a JSON object with the fields to change")
        # The apikey too (docs/devices.md): a device moved to another apikey would leave its group, and its
        # measures would be read by another group's mappings; delete it and provision it again instead.
        _same(changes, {"device_id": device.device_id, "apikey": device.apikey})
        wire = device_to_wire(device)
        if "entity_type" in changes and "entity_name" not in changes:
            wire.pop("entity_name")  # a new type gives a new default entity id
        merged = {**wire, **changes}
        new = parse_device(merged, device.tenant, device.service_path,
                           self.registry.group_for_apikey(device.apikey, tenant=device.tenant))
        await self.service.replace_device(device, new)
        return Resp(204, None)

    @iota_errors(DEVICES)
    async def delete_device(self, req: Req) -> Resp:
        """Remove a provisioned device."""
        await self.service.remove_device(self._device(req))
        return Resp(204, None)

    # -- measures -----------------------------------------------------------------------------------------
    async def about(self, req: Req) -> Resp:
        """The IoT Agent's version and protocols (FIWARE `/iot/about`)."""
        return Resp(200, {"libVersion": f"ucity {__version__}", "version": __version__, "baseRoot": "/",
                          "protocols": ["IoTA-JSON (HTTP)", "IoTA-JSON (MQTT)"]})

    async def measure(self, req: Req) -> Resp:
        """Measures of a device (IoT Agent JSON), answered 200 after their commit with what was rejected."""
        apikey, device_id = req.param("k"), req.param("i")
        if not apikey or not device_id:
            raise BadRequest("a measure needs the query parameters k=<apikey> and i=<device_id>")
        kind = media_type(req)
        if kind != JSON and not kind.endswith("+json"):
            raise UnsupportedMediaType(f"Content-Type {kind or '(none)'} is not supported; measures are application/json")
        try:
            resolved = self.service.resolve(apikey, device_id, "/iot/json")
        except NotFound as exc:
            self.service.reject_unknown(apikey, device_id, exc.detail, "http")
            raise
        try:
            payload = parse_json(req.body)
        except DecodeError as exc:
            self.service.stats.rejected(stats_key(resolved.profile), [Rejection(exc.reason, exc.detail)], "http")
            raise InvalidRequest(exc.detail, rejected=[Rejection(exc.reason, exc.detail).to_wire()]) from exc
        stamp = req.param("t")
        if stamp:
            payload = self._stamped(payload, stamp, resolved.profile)
        result = (await self.service.ingest([Received(resolved, payload, "http")]))[0]
        if isinstance(result.outcome, Unavailable):
            raise Unavailable(f"the measures could not be committed: {result.outcome}")
        if isinstance(result.outcome, Exception):
            raise _refused(result.outcome, [r.to_wire() for r in (*result.decoded.rejections,
                                                                   *not_written(result.decoded, result.outcome))])
        rejected = [r.to_wire() for r in result.decoded.rejections]
        if not result.decoded.values and rejected:
            raise BadRequest("no valid value in the measures", rejected=rejected)
        body = {"entityId": resolved.profile.entity_id, "measures": len(result.decoded.observations),
                "accepted": result.decoded.values, "rejected": rejected}
        warnings = self.service.clock_ahead_warnings(result.decoded) if result.outcome is not None else []
        if warnings:  # (only when there are any: the common answer keeps its four members)
            body["warnings"] = warnings
        return Resp(200, body)

    def _stamped(self, payload: Any, stamp: str, profile: DeviceProfile) -> Any:
        """The payload with the `t` query parameter (FIWARE: "Timestamp of the measure. Will override the
        automatic IoTAgent timestamp") as the `TimeInstant` of each measure that has no time of its own; the
        measures of an array each a microsecond after the one before, as for the receive time (an attribute's
        history holds one instance per observedAt). A measure's own `TimeInstant` (or `observedAt`, or a key
        provisioned as one) still wins: it is the more precise. `t` is checked as a measure time is (ISO 8601,
        without offset in the device's timezone, in the stored range, at most `ingest.max_future_s` ahead);
        an invalid `t` refuses the request (400, counted as `invalid-time`), since no measure has a time then."""
        try:
            at = parse_time(stamp, profile.timezone)
            latest = self.service.platform.clock.now() + self.service.max_future
            if at > latest:
                raise DecodeError(INVALID_TIME, f"{stamp!r} is after {to_iso(latest)}, the platform clock plus "
                                                "ingest.max_future_s")
        except DecodeError as exc:
            rejection = Rejection(INVALID_TIME, f"query parameter t: {exc.detail}", field="t")
            self.service.stats.rejected(stats_key(profile), [rejection], "http")
            raise BadRequest(f"t: 측정 시각이 올바르지 않음 / invalid measure time: {exc.detail}",
                             rejected=[rejection.to_wire()]) from exc
        time_keys = set(TIME_KEYS) | {k for k, spec in profile.by_object_id.items() if spec.name in TIME_KEYS}
        measures = payload if isinstance(payload, list) else [payload]
        for position, measure in enumerate(measures):
            if isinstance(measure, dict) and time_keys.isdisjoint(measure):
                measure["TimeInstant"] = to_iso(at + timedelta(microseconds=position))
        return payload

    # -- operations ---------------------------------------------------------------------------------------
    async def devices_health(self, req: Req) -> Resp:
        """Device health: online / offline / unknown counts and each device, optionally one `status`; the devices of
        a personal type only counted for a caller without `personal:read` (`personal_types`)."""
        return Resp(200, self.service.monitor.summary(self.tenant(req), req.param("status"), self.personal_types(req)))

    async def ingest_stats(self, req: Req) -> Resp:
        """Ingest statistics: measures received, accepted and rejected (by reason), per device profile. The apikeys
        (the devices' credential: measures need no token) only for a caller who may read the device configuration
        (`config:read`, as `GET /iot/services`), masked otherwise (QA17 F1); the rows of devices of a personal type
        only counted for a caller without `personal:read` (QA17 F3)."""
        tenant = self.tenant(req)
        principal = req.principal  # None: the token guard is off (development), nothing withheld
        personal = self.personal_types(req)
        withhold = None if personal is None else self._stats_type(personal)
        return Resp(200, self.service.stats.snapshot(
            tenant, platform=tenant == self.service.default_tenant,
            apikeys=principal is None or principal.can(Permission.CONFIG_READ), withhold=withhold))

    def personal_types(self, req: Req) -> Callable[[str], str | None] | None:
        """For a caller from whom personal data is withheld (the token guard on, no `personal:read`, and personal
        types in force: `privacy.personal_entity_types` and those the domains declare), the personal type (short
        name) of an entity type, None if not personal; None (nothing withheld) for any other caller, as the
        NGSI-LD API does (ucity/ngsild/personal.py)."""
        principal = req.principal
        types = self.service.platform.privacy.types
        if principal is None or not types or principal.can(Permission.PERSONAL_READ):
            return None
        core = core_context()
        personal = {core.expand_type(t): core.compact_iri(core.expand_type(t)) for t in types}
        known: dict[str, str | None] = {}

        def personal_type(entity_type: str) -> str | None:
            if entity_type not in known:
                known[entity_type] = personal.get(core.expand_type(entity_type))
            return known[entity_type]

        return personal_type

    def _stats_type(self, personal_type: Callable[[str], str | None]) -> Callable[[Key], str | None]:
        """The personal type of a stats row's device: its profile's entity type, or for a device the registry does
        not know (an unknown device of a known apikey) its apikey's group's; None for no group."""
        groups: dict[tuple[str, str], str | None] = {}

        def row_type(key: Key) -> str | None:
            tenant, apikey, device_id = key
            profile = self.registry.profile(apikey, device_id)
            if profile is not None:
                return personal_type(profile.entity_type)
            if (tenant, apikey) not in groups:
                group = self.registry.group_for_apikey(apikey, tenant=tenant or None)
                groups[(tenant, apikey)] = personal_type(group.entity_type) if group and group.entity_type else None
            return groups[(tenant, apikey)]

        return row_type


def _refused(error: Exception, rejected: list[dict[str, Any]]) -> UcityError:
    """The ProblemDetails of measures whose write the store refused: the store's error (its status, type and
    title: the entity's state refused them), or a 500 when ucity failed; `rejected` names every value."""
    if not isinstance(error, UcityError):
        return UcityError("the measures were not written: ucity failed on them; see the server log", rejected=rejected)
    problem = UcityError(f"the measures were not written: {error.detail}", rejected=rejected)
    problem.status, problem.type_uri, problem.title = error.status, error.type_uri, error.title
    return problem


def _same(changes: dict[str, Any], fixed: dict[str, str]) -> None:
    for key, value in fixed.items():
        if key in changes and changes[key] != value:
            raise BadRequest(f"{key}은(는) 바꿀 수 없음 (삭제 후 다시 등록) / {key} cannot be changed (delete and "
                             "provision again)")


# -- /docs (ucity/openapi.py): what the route table in server.py does not say ------------------------------------
_IOTA = ("fiware-service", "fiware-servicepath")
_TENANT = ("fiware-service", "NGSILD-Tenant")
_GROUP = ("apikey", "resource")


def _listed(name: str) -> dict[str, Any]:
    return {"type": "object", "required": [name], "properties": {name: {"type": "array", "items": {"type": "object"}}},
            "description": "as the FIWARE IoT Agent's provisioning API (docs/devices.md)"}


_CHANGES: dict[str, Any] = {"type": "object", "description": "the fields to change"}
OPENAPI = ApiDocs(
    routes={
        ("POST", "/iot/services"): Doc(headers=_IOTA, body=_listed("services"), statuses=(201,)),
        ("GET", "/iot/services"): Doc(params=(*_GROUP, "limit", "offset"), headers=_IOTA),
        ("PUT", "/iot/services"): Doc(params=_GROUP, required=("apikey",), headers=_IOTA, body=_CHANGES,
                                      statuses=(204,)),
        ("DELETE", "/iot/services"): Doc(params=(*_GROUP, "device"), required=("apikey",), headers=_IOTA,
                                         statuses=(204,)),
        ("POST", "/iot/devices"): Doc(headers=_IOTA, body=_listed("devices"), statuses=(201,)),
        ("GET", "/iot/devices"): Doc(params=("limit", "offset"), headers=_IOTA),
        ("GET", "/iot/devices/{deviceId}"): Doc(headers=_IOTA),
        ("PUT", "/iot/devices/{deviceId}"): Doc(headers=_IOTA, body=_CHANGES, statuses=(204,)),
        ("DELETE", "/iot/devices/{deviceId}"): Doc(headers=_IOTA, statuses=(204,)),
        ("POST", "/iot/json"): Doc(params=("k", "i", "t"), required=("k", "i"), headers=(), body={
            "type": ["object", "array"], "description": "a measure `{object_id: value, ...}` (`TimeInstant` its "
                                                        "time) or an array of them"}),
        ("GET", "/iot/about"): Doc(headers=()),
        ("GET", "/api/v1/devices/health"): Doc(params=("status",), headers=_TENANT),
        ("GET", "/api/v1/ingest/stats"): Doc(headers=_TENANT),
    },
    params={"fiware-service": "tenant (FIWARE header; NGSILD-Tenant also works; the default tenant when absent)",
            "fiware-servicepath": "service path (default `/`; `/*` or `/#` when listing: every path)",
            "apikey": "the service group's API key", "resource": "the service group's resource (default /iot/json)",
            "device": "`true`: its devices too", "k": "API key of the device's service group", "i": "device id",
            "t": "time of the measures without a TimeInstant of their own (ISO 8601; default: the receive time)",
            "status": "`online`, `offline` or `unknown`", "limit": "page size (default 1000)"},
    tags={"ingest": "Devices in: FIWARE IoT Agent provisioning and IoT Agent JSON measures over HTTP (MQTT too, "
                    "not described here), device health and ingest statistics (docs/devices.md)."},
)
