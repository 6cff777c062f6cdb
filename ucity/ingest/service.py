"""Ingest as one platform component: registry, decode, writer, stats and health wired together.

Both sources (HTTP in http.py, MQTT in mqtt.py) hand measures to `IngestService.ingest`, which
decodes them (pure), commits them in one store call, and only then counts them and tells the
health monitor: what is counted as accepted has been committed. A write the store refused (an
error other than `Unavailable`, which the sources retry) is counted as rejected (`not-written`).

Provisioning goes through here too, so that a device's entity, its health record and the
registry stay in step.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ucity.core.bus import Context
from ucity.core.clock import parse_iso_clamped, to_iso
from ucity.core.errors import AlreadyExists, NotFound, UcityError, Unavailable
from ucity.core.frozen import fast_init
from ucity.core.periodic import Periodic
from ucity.core.platform import Platform
from ucity.ingest.decode import (
    INTERNAL_ERROR,
    NOT_WRITTEN,
    UNKNOWN_DEVICE,
    Decoded,
    Rejection,
    decode_payload,
    measures_in,
)
from ucity.ingest.health import HealthMonitor
from ucity.ingest.model import Device, DeviceProfile, ServiceGroup, build_profile, entity_id_for
from ucity.ingest.registry import DeviceRegistry, Learnt
from ucity.ingest.schema import check_topic_safe
from ucity.ingest.stats import CLOCK_AHEAD, IngestStats, Key, masked_apikey
from ucity.ingest.writer import INGEST_ACTOR, DeviceWrite, MeasureWriter, provision_op
from ucity.store.base import Mutation, Outcome, Store

log = logging.getLogger(__name__)
_MICROSECOND = timedelta(microseconds=1)


@fast_init
@dataclass(frozen=True, slots=True)
class Resolved:
    """The device a measure is for; `new_device` is set when it would be autoprovisioned."""

    profile: DeviceProfile
    new_device: Device | None = None


@fast_init
@dataclass(frozen=True, slots=True)
class Received:
    """One parsed payload of one device, as a source got it."""

    device: Resolved
    payload: Any
    transport: str  # http | mqtt


@fast_init
@dataclass(frozen=True, slots=True)
class IngestResult:
    decoded: Decoded
    outcome: Outcome | Exception | None  # None: nothing valid to write


@dataclass(frozen=True, slots=True)
class Prepared:
    """Payloads decoded and ready to commit (`IngestService.prepare`)."""

    items: list[Received]
    decoded: list[Decoded]


def clock_ahead_of(decoded: Decoded, ahead: str, now: datetime) -> tuple[int, str, float]:
    """How many of the decoded measures have a time after `ahead` (ISO, decode's `to_iso` form, so text order is
    time order), the newest such time, and how many seconds it is after `now` ((0, "", 0.0) when none is)."""
    observations = decoded.observations
    if len(observations) == 1 and observations[0].observed_at <= ahead:  # the common case, without a list
        return 0, "", 0.0
    times = [o.observed_at for o in observations if o.observed_at > ahead]
    if not times:
        return 0, "", 0.0
    newest = max(times)
    return len(times), newest, (parse_iso_clamped(newest) - now).total_seconds()


def stats_key(profile: DeviceProfile) -> Key:
    return (profile.tenant, profile.apikey, profile.device_id)


def unknown_device(apikey: str, device_id: str, detail: str, tenant: str = "") -> tuple[Key, Rejection]:
    """The stats key and rejection of a message for no known device: counted under the tenant whose apikey it
    names (`IngestService.unknown`), or under no tenant for an apikey nobody has."""
    return (tenant, apikey, device_id), Rejection(UNKNOWN_DEVICE, detail)


def not_written(decoded: Decoded, error: Exception) -> tuple[Rejection, ...]:
    """The rejections of valid values whose write the store answered with `error` (not `Unavailable`, which
    the sources retry): one per attribute value, each naming its attribute and the measure's time, so that
    they are counted (`/api/v1/ingest/stats`, reason `not-written`) and listed to an HTTP sender like the
    values decode rejected. The store's detail is the entity's (e.g. a conflicting attribute); any other
    exception is ucity's own failure, told as such (its traceback is logged where it is counted)."""
    cause = (error.detail if isinstance(error, UcityError)
             else f"ucity failed on it ({type(error).__name__}); see the server log")
    return tuple(Rejection(NOT_WRITTEN, f"measure of {observation.observed_at} not written: {cause}", field=name)
                 for observation in decoded.observations for name in observation.attrs)


class IngestService:
    def __init__(self, platform: Platform, store: Store) -> None:
        settings = platform.settings.ingest
        self.platform = platform
        self.store = store
        self.default_tenant = platform.settings.ngsild.default_tenant
        self.registry = DeviceRegistry(store)
        self.stats = IngestStats(platform.clock, settings.reject_log_interval_s, settings.clock_ahead_warn_s)
        self._stats_log = Periodic(platform.clock, "ucity-ingest-reject-log", self._flush_stats,
                                   lambda: settings.reject_log_interval_s)
        self.writer = MeasureWriter(store, platform.clock, settings.max_future_s)
        self.monitor = HealthMonitor(platform.clock, platform.bus, self.writer, settings)
        self.monitor.declared_transport = self._declared_transport
        self.max_future = timedelta(seconds=settings.max_future_s)
        self.clock_ahead_warn = timedelta(seconds=settings.clock_ahead_warn_s)
        self._received = datetime.min.replace(tzinfo=UTC)  # the last receive time given (`prepare`)
        from ucity.ingest.http import IngestHttp

        self.http = IngestHttp(self)

    async def start(self) -> None:
        await self.registry.load()
        await self.monitor.restore(self.registry.profiles(), self.store)
        # From now on, what a re-read of the store brings (another process's provisioning: ucity/cluster/
        # registry_sync.py; a worker's rebalance) is watched by device health like this process's own provisioning.
        self.registry.on_learnt = self._learnt
        self._stats_log.start()

    async def stop(self) -> None:
        await self._stats_log.stop()
        self.stats.flush_all()  # what the log has not said yet, before the counters go with the process
        await self.monitor.stop()

    async def _flush_stats(self) -> None:
        self.stats.flush()

    def health(self) -> dict[str, Any]:
        summary = self.stats.totals
        return {"ok": True, "devices": len(self.registry.profiles()), "accepted": summary.accepted,
                "rejected": summary.rejected}

    # -- measures ---------------------------------------------------------------------------------------
    def resolve(self, apikey: str, device_id: str, resource: str | None = None) -> Resolved:
        """The device of a measure; NotFound (404) for an unknown apikey or device without autoprovision."""
        profile = self.registry.profile(apikey, device_id)
        if profile is not None:  # one Resolved per profile (a provisioning change makes a new profile)
            resolved: Resolved | None = profile.hot_path_cache.get("resolved")
            if resolved is None:
                resolved = profile.hot_path_cache["resolved"] = Resolved(profile)
            return resolved
        group = self.registry.group_for_apikey(apikey, resource)
        if group is None:
            raise NotFound(f"no service group or device has apikey {apikey!r}")
        if not group.autoprovision:
            raise NotFound(f"device {device_id!r} is not provisioned for apikey {apikey!r} (autoprovision is off)")
        check_topic_safe(device_id, "device id")
        device = Device(tenant=group.tenant, service_path=group.service_path, device_id=device_id, apikey=apikey,
                        entity_name=entity_id_for(group.entity_type, device_id), entity_type=group.entity_type,
                        autoprovisioned=True)
        return Resolved(build_profile(device, group), device)

    def unknown(self, apikey: str, device_id: str, detail: str) -> tuple[Key, Rejection]:
        """`unknown_device`, counted under the tenant that has the apikey (if exactly one has): shown to it, and to
        no other (`IngestStats.snapshot`: rows under no tenant are the platform's, shown to the default tenant)."""
        tenants = self.registry.apikey_tenants(apikey)
        return unknown_device(apikey, device_id, detail, next(iter(tenants)) if len(tenants) == 1 else "")

    def reject_unknown(self, apikey: str, device_id: str, detail: str, transport: str) -> None:
        key, rejection = self.unknown(apikey, device_id, detail)
        self.stats.rejected(key, [rejection], transport)

    async def ingest(self, items: list[Received]) -> list[IngestResult]:
        """Decode, commit (one store call), then count and report to health. Raises if the store fails."""
        return await self.commit(await self.prepare(items))

    async def prepare(self, items: list[Received]) -> Prepared:
        """Decode (pure) and register the autoprovisioned devices that sent something valid.

        Decoding one payload cannot fail the others: an exception there (a bug: decode turns every bad
        input into a Rejection) rejects that payload alone as `internal-error`, logged with its traceback."""
        now = self.platform.clock.now()
        latest = to_iso(now + self.max_future)
        decoded = []
        for item in items:
            # Each measure its own receive time (the time of a measure without TimeInstant), strictly after the
            # last one given: measures received together (a batch, an array), or in one clock tick, would share
            # it, and all but one would replace each other in history (unique per observedAt): lost once acked.
            size = measures_in(item.payload)
            at = now if now > self._received else self._received + _MICROSECOND
            self._received = at + _MICROSECOND * (size - 1)
            try:
                decoded.append(decode_payload(item.payload, item.device.profile, at, None, latest))
            except Exception as exc:  # never seen in tests: decode's own checks come first
                log.exception("measure of %s not decoded", item.device.profile.device_id)
                decoded.append(Decoded((), (Rejection(INTERNAL_ERROR, f"ucity could not decode it ({type(exc).__name__}); "
                                                      "see the server log"),), 0))
        fresh = [i.device for i, d in zip(items, decoded, strict=True) if d.values and i.device.new_device is not None]
        if fresh:
            await self._autoprovision(fresh)
        return Prepared(items, decoded)

    async def commit(self, prepared: Prepared, before_account: Callable[[int], None] | None = None) -> list[IngestResult]:
        """Commit decoded measures (one store call), then count them and tell health. The writes are queued
        to the store before the first suspension, so that commits called in order are committed in order.
        `before_account(k)` runs once the store has answered, before item k is counted, and once more
        with k = len(items) after the last: a caller counts what it rejected itself in arrival order."""
        items, decoded = prepared.items, prepared.decoded
        to_write = [k for k, d in enumerate(decoded) if d.observations]
        writes: list[DeviceWrite] = []
        online: set[int] = set()  # items whose write also sets deviceState online (not a second write after it)
        coming, stamp = (self.monitor.coming_online if self.writer.writes_extra else None), ""
        for k in to_write:
            profile = items[k].device.profile
            if coming is not None and coming(profile):
                stamp = stamp or to_iso(self.platform.clock.now())
                online.add(k)
                writes.append(DeviceWrite(profile, decoded[k].observations, self.monitor.online_state(stamp)))
            else:
                writes.append(DeviceWrite(profile, decoded[k].observations))
        try:
            outcomes = await self.writer.write(writes) if writes else []
        except Unavailable:  # the store takes nothing now: the devices sent valid readings, they are alive
            refused_at = self.platform.clock.now()
            for k in to_write:
                self.monitor.refused(items[k].device.profile, refused_at, items[k].transport)
            raise
        by_index: dict[int, Outcome | Exception] = dict(zip(to_write, outcomes, strict=True))
        results = []
        counted = self.platform.clock.now()
        ahead = to_iso(counted + self.clock_ahead_warn)  # a committed measure time after it: a clock-ahead warning
        accepted: dict[str, list[int]] = {}  # transport -> [measures, values] committed: the totals, once per batch
        for k, (item, dec) in enumerate(zip(items, decoded, strict=True)):
            outcome = by_index.get(k)
            if before_account is not None:
                before_account(k)
            self._account(item, dec, outcome, counted, accepted, k in online, ahead)
            results.append(IngestResult(dec, outcome))
        if accepted:
            self.stats.accepted_totals(accepted, counted)
        if before_account is not None:
            before_account(len(items))
        return results

    async def _autoprovision(self, devices: list[Resolved]) -> None:
        """Register autoprovisioned devices once they send something valid (garbage creates nothing)."""
        for resolved in devices:
            device = resolved.new_device
            if device is None or self.registry.profile(device.apikey, device.device_id) is not None:
                continue
            try:
                await self.registry.add_devices([device])
            except AlreadyExists:
                continue  # another message of the same device won the race
            log.info("autoprovisioned device %s (apikey %s) as %s", device.device_id, masked_apikey(device.apikey),
                     device.entity_name)
            self.monitor.track(resolved.profile)

    def _account(self, item: Received, decoded: Decoded, outcome: Outcome | Exception | None,
                 now: datetime, accepted: dict[str, list[int]], state_written: bool = False,
                 ahead: str | None = None) -> None:
        """Count one item and tell health; the totals of what was committed are added to `accepted`
        (transport -> [measures, values]) for the caller to count once per batch. `ahead` (ISO, as decode
        writes times): committed measures with a later time are counted as `clock-ahead` warnings."""
        profile = item.device.profile
        rejections = decoded.rejections
        clock_ahead_s: float | None = None
        if rejections:
            self.stats.rejected(stats_key(profile), rejections, item.transport)
        if outcome is not None:
            if isinstance(outcome, Exception):
                # Unavailable: the store cannot take it now and the source has it sent again (MQTT redelivery,
                # an HTTP 503). Anything else would fail again: the values are rejected, counted with a reason.
                if not isinstance(outcome, Unavailable):
                    if not isinstance(outcome, UcityError):  # ucity's own failure: its traceback, once
                        log.error("measures of %s not written", profile.device_id, exc_info=outcome)
                    self.stats.rejected(stats_key(profile), not_written(decoded, outcome), item.transport)
                else:  # not a report (not committed), but the device is alive: device health counts it as heard
                    self.monitor.refused(profile, now, item.transport)
                return
            measures, values = len(decoded.observations), decoded.values
            self.stats.accepted_device(stats_key(profile), measures, values, item.transport, now)
            sums = accepted.get(item.transport)
            if sums is None:
                accepted[item.transport] = [measures, values]
            else:
                sums[0] += measures
                sums[1] += values
            if ahead is not None:
                clock_ahead_s = self._clock_ahead(item, decoded, ahead, now)
        if decoded.values or not rejections:
            observations = decoded.observations
            if not observations:
                newest: dict[str, dict[str, Any]] = {}
            elif len(observations) == 1:
                newest = observations[0].attrs
            else:
                newest = max(observations, key=lambda o: o.observed_at).attrs
            self.monitor.reported(profile, newest, now, state_written, clock_ahead_s,
                                  timed=bool(observations) and outcome is not None, transport=item.transport)

    def _clock_ahead(self, item: Received, decoded: Decoded, ahead: str, now: datetime) -> float | None:
        """Count the committed measures whose time is after `ahead` (taken: within ingest.max_future_s) as
        `clock-ahead` warnings; returns how far ahead of `now` the newest of them is (None: none is)."""
        count, newest, offset = clock_ahead_of(decoded, ahead, now)
        if not count:
            return None
        self.stats.clock_ahead(stats_key(item.device.profile), count, offset, newest, item.transport, now)
        return offset

    def clock_ahead_warnings(self, decoded: Decoded) -> list[dict[str, Any]]:
        """The `warnings` of an HTTP answer: its measures more than ingest.clock_ahead_warn_s ahead (taken)."""
        now = self.platform.clock.now()
        count, newest, offset = clock_ahead_of(decoded, to_iso(now + self.clock_ahead_warn), now)
        if not count:
            return []
        return [{"reason": CLOCK_AHEAD, "measures": count, "aheadSeconds": round(offset, 3), "observedAt": newest,
                 "detail": f"측정 시각이 플랫폼 시계보다 {offset:.0f}초 앞섬: 저장했으나 장치의 시계나 시간대를 확인 "
                           f"(오프셋 없는 한국 시간?) / measure time {offset:.0f} s ahead of the platform clock: taken, "
                           "but check the device's clock or time zone (local time sent without its offset?)"}]

    # -- provisioning --------------------------------------------------------------------------------------
    async def add_groups(self, groups: list[ServiceGroup]) -> None:
        await self.registry.add_groups(groups)
        await self._refresh_apikeys({g.apikey for g in groups})

    async def replace_group(self, group: ServiceGroup) -> None:
        await self.registry.replace_group(group)
        await self._refresh_apikeys({group.apikey})

    async def remove_group(self, group: ServiceGroup, with_devices: bool) -> None:
        await self.registry.remove_group(group)
        if with_devices:
            for device in [d for d in self.registry.devices(group.tenant) if d.apikey == group.apikey]:
                await self.remove_device(device)
        else:
            await self._refresh_apikeys({group.apikey})

    async def add_devices(self, devices: list[Device]) -> None:
        """Register devices and create their entities; returns after the entities are committed."""
        await self.registry.add_devices(devices)
        await self._provision([self._profile_of(d) for d in devices])

    async def replace_device(self, old: Device, new: Device) -> None:
        await self.registry.replace_device(old, new)
        if (old.tenant, old.device_id) != (new.tenant, new.device_id):
            self.monitor.forget(old.tenant, old.device_id)
        await self._provision([self._profile_of(new)])

    async def remove_device(self, device: Device) -> None:
        """Forget a device; its entity and history stay (they are the city's record)."""
        await self.registry.remove_device(device)
        self.monitor.forget(device.tenant, device.device_id)

    def _declared_transport(self, tenant: str, device_id: str) -> str | None:
        """The transport a device was provisioned with (IoT Agent `transport`: MQTT, HTTP), if any (device health)."""
        device = self.registry.device(tenant, device_id)
        return device.transport if device is not None else None

    def _learnt(self, learnt: Learnt) -> None:
        """Devices another process provisioned, changed or removed (their entities are its work): health follows."""
        for device in learnt.removed:
            if self.registry.device(device.tenant, device.device_id) is None:
                self.monitor.forget(device.tenant, device.device_id)
        for profile in learnt.profiles:
            self.monitor.track(profile)

    def _profile_of(self, device: Device) -> DeviceProfile:
        profile = self.registry.profile(device.apikey, device.device_id)
        assert profile is not None, "a registered device has a profile"
        return profile

    async def _refresh_apikeys(self, apikeys: set[str]) -> None:
        """Devices inherit from their group: re-provision the entities of the groups' devices."""
        await self._provision([p for p in self.registry.profiles() if p.apikey in apikeys])

    async def _provision(self, profiles: list[DeviceProfile]) -> None:
        by_tenant: dict[str, list[DeviceProfile]] = {}
        for profile in profiles:
            by_tenant.setdefault(profile.tenant, []).append(profile)
        for tenant, group in by_tenant.items():
            outcomes = await self.store.mutate(tenant, [Mutation(p.entity_id, provision_op(p)) for p in group],
                                               Context(actor=INGEST_ACTOR))
            for profile, outcome in zip(group, outcomes, strict=True):
                if isinstance(outcome, Exception):
                    raise outcome
                self.monitor.track(profile)
