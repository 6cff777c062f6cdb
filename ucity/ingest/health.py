"""Device health: online / offline from the last *reported* time, on timers of the platform clock.

Rules (docs/devices.md):

* A device *reports* when a measure of it is committed, even one repeating the last value, or
  when it sends an empty measure (a heartbeat). A payload that is rejected as a whole does not
  count: garbage does not prove a working device.
* Its expected interval: the device's `expected_interval_s`, else its service group's, else
  `ingest.intervals_by_type[entity_type]`, else `ingest.default_interval_s`.
* Silent for `ingest.offline_after_intervals` intervals (default 3) -> `offline`; the next report
  -> `online`. A device never heard of is `unknown` until it reports or its first deadline passes.
* Silence is counted only while ucity listens (QA12 F3): after a start, a device goes offline once silent
  for its threshold since max(its last report, the start), a grace of its own threshold. Before, every
  device whose deadline passed while ucity was down went offline at start, before it could report (a
  storm of false device-offline alarms after a short maintenance stop).
* The same while the MQTT source is not connected to its broker (before its first connection, a broker
  restart, a network cut: FIX-A): the silence of a device heard over MQTT does not count; it goes offline
  once silent for its threshold since max(its last report, the reconnection) (`mqtt_connected`,
  `mqtt_listening_since`). Heard over MQTT: declared so (its `transport`), else last heard on MQTT by this
  process, else (not heard since the start, undeclared) taken as possibly MQTT. A device over HTTP is not
  affected. While the store refuses writes (`Unavailable`: PostgreSQL unreachable, a full write queue), a
  valid reading it refused is not a report (`lastReported`, the status and `deviceState` stay) but proves the
  device alive: its silence counts from it (`refused`). A device really silent is still judged offline.
* Each change publishes `DeviceStatusChanged` on the bus and sets the entity's `deviceState`
  (Smart Data Models Device) with the time of the change as `observedAt`. The alarms issue turns
  `offline` into an alarm of kind `fault`.
* Battery level and RSSI are remembered when a device sends them (`batteryLevel`, `rssi`).
* `clockAheadS`: how far ahead of the platform clock the newest measure of the device's latest timed
  report was, when more than `ingest.clock_ahead_warn_s` (else null): its clock or time zone is off.

One timer per device, lazily re-armed: a report only moves `last_reported`; when the timer fires
it checks the real deadline and re-arms if the device reported meanwhile. That keeps the hot path
free of timer churn. At start (the first `restore` of the process: `listening_since`) the state is restored
from the stored entities (when the last report was received: the newest write time of their measured
attributes, and their `deviceState`), and `DeviceStatusesRestored` lists the devices whose stored status the
restore kept: a state is committed before its event goes out, so a crash in between leaves it without its
alarm's change, which the alarms then reconcile.

Times from the store are not trusted to be sane: data written before ucity bounded measure times
(clock.MIN_INSTANT..MAX_INSTANT, `ingest.max_future_s`) may carry an observedAt of 9999-12-31.
A restored last report is never later than now (a report cannot come from the future), and the
deadline arithmetic saturates instead of raising: a bad record must not stop the server starting.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ucity.core.bus import Bus, Context, Event
from ucity.core.clock import MAX_INSTANT, Clock, TimerHandle, parse_iso_clamped, to_iso
from ucity.core.config import IngestSettings
from ucity.core.frozen import fast_init
from ucity.ingest.decode import COMMAND_INFO, COMMAND_STATUS
from ucity.ingest.model import DeviceProfile
from ucity.ingest.stats import withheld_summary
from ucity.ingest.writer import INGEST_ACTOR, MeasureWriter, attrs_op, expand
from ucity.store.base import Doc, EntityQuery, Store

log = logging.getLogger(__name__)
ONLINE, OFFLINE, UNKNOWN = "online", "offline", "unknown"
DEVICE_STATE = "deviceState"
BATTERY_NAMES = ("batteryLevel", "battery")
RSSI_NAMES = ("rssi", "RSSI")
LONGEST_INTERVAL = timedelta(days=36525)  # an expected interval beyond a century is taken as a century


@dataclass(frozen=True, slots=True)
class DeviceStatusChanged(Event):
    """A device went `online` or `offline`; `last_reported` is ISO 8601 UTC (None: never reported)."""

    tenant: str
    device_id: str
    entity_id: str
    status: str
    last_reported: str | None


@fast_init  # one per device at every start (100,000 devices: ~60 ms less than the generated __init__)
@dataclass(frozen=True, slots=True)
class RestoredStatus:
    """One device's status as a start restored it from its stored entity, unchanged by the restore.

    `changed_at`: the stored `deviceState`'s observedAt (ISO 8601 UTC, the time of that change), if any."""

    tenant: str
    device_id: str
    entity_id: str
    status: str
    last_reported: datetime | None
    changed_at: str | None


@dataclass(frozen=True, slots=True)
class DeviceStatusesRestored(Event):
    """Published once per `HealthMonitor.restore` (a start, a worker's rebalance), after the states are applied:
    the owned devices whose stored status the restore kept, which it therefore did not announce.

    The stored `deviceState` is committed before its `DeviceStatusChanged` goes out and the alarm it causes is
    saved, so a process killed in between leaves a state whose consequence is lost (an offline device without
    its device-offline alarm; an online one whose alarm was never cleared). The restore cannot tell: it takes
    the stored state as announced. The alarms reconcile with this list (`AlarmService._on_restored`). Devices
    the restore changed are not in it: their own `DeviceStatusChanged` follows."""

    devices: tuple[RestoredStatus, ...]


@dataclass(slots=True)
class DeviceHealth:
    profile: DeviceProfile
    interval: timedelta
    since: datetime  # when tracking started or the status last changed
    status: str = UNKNOWN
    last_reported: datetime | None = None
    battery: Any = None
    battery_at: datetime | None = None
    rssi: Any = None
    rssi_at: datetime | None = None
    timer: TimerHandle | None = None
    clock_ahead_s: float | None = None  # the latest timed report's offset beyond ingest.clock_ahead_warn_s
    transport: str | None = None  # what it last reported on to this process (http | mqtt; None: not yet)
    refused_at: datetime | None = None  # its latest valid reading the store refused (Unavailable): heard, not reported

    def to_wire(self, offline_after: int) -> dict[str, Any]:
        return {
            "service": self.profile.tenant, "service_path": self.profile.service_path,
            "device_id": self.profile.device_id, "entity_id": self.profile.entity_id,
            "entity_type": self.profile.entity_type, "status": self.status, "since": to_iso(self.since),
            "lastReported": to_iso(self.last_reported) if self.last_reported else None,
            "expectedIntervalSeconds": self.interval.total_seconds(),
            "offlineAfterSeconds": (self.interval * offline_after).total_seconds(),
            "batteryLevel": self.battery, "rssi": self.rssi, "clockAheadS": self.clock_ahead_s,
        }


class HealthMonitor:
    def __init__(self, clock: Clock, bus: Bus, writer: MeasureWriter, settings: IngestSettings) -> None:
        self.clock = clock
        self.bus = bus
        self.writer = writer
        self.settings = settings
        self._devices: dict[tuple[str, str], DeviceHealth] = {}  # (tenant, device_id)
        self._tasks: set[asyncio.Task[None]] = set()
        self._running = False
        # When this process started listening (its first `restore`): no silence is counted before it. None until then.
        self.listening_since: datetime | None = None
        # Distributed mode (ucity/cluster): the devices, by their entity, whose health this process judges
        # (timers, deviceState writes, status events); it still remembers the others' reports.
        self.owns: Callable[[str, str], bool] = lambda tenant, entity_id: True
        # MQTT (FIX-A): `mqtt_disconnected` (the source's start, a lost connection) and `mqtt_connected` tell whether
        # MQTT devices can be heard. Without an MQTT source (`_mqtt` False) nothing changes.
        self._mqtt = False
        self.mqtt_listening_since: datetime | None = None  # its latest (re)connection; None while disconnected
        self.mqtt_down_since: datetime | None = None  # since when it is disconnected; None while connected
        self._held: set[tuple[str, str]] = set()  # devices whose deadline waits for the MQTT reconnection (no timer)
        # The transport a device is declared with (its IoT Agent `transport`, e.g. "MQTT"), by (tenant, device id):
        # set by the ingest service from its registry.
        self.declared_transport: Callable[[str, str], str | None] = lambda tenant, device_id: None

    # -- lifecycle ---------------------------------------------------------------------------------
    async def restore(self, profiles: Iterable[DeviceProfile], store: Store) -> None:
        """Track every device, with its last report and state read from its stored entity.

        Two phases: every tenant's entities are read (what health needs of each kept, `_Stored`) before any
        device is tracked or judged; then all are applied at once, without an await, so nothing can interrupt
        it. A start interrupted while the states load (the store failing on a later tenant) used to leave the
        earlier tenants judged: their silent devices set offline, their `deviceState` written and their events
        published while the failed start stopped the alarm service. The next start then read the stored
        offline state as announced already, and their device-offline alarms were never raised. Now such a
        start has judged nothing: the next one finds the states as they were and announces every change.

        The first restore of a process (a start) sets `listening_since`: a device whose deadline passed while
        ucity was down is not judged offline now but a threshold later unless it reports (QA12 F3); one stored
        offline stays offline without a new announcement. A later restore (a worker's rebalance) keeps it."""
        by_tenant: dict[str, list[DeviceProfile]] = {}
        for profile in profiles:
            by_tenant.setdefault(profile.tenant, []).append(profile)
        stored: list[tuple[DeviceProfile, _Stored | None]] = []
        for tenant, group in by_tenant.items():
            docs = await _entities(store, tenant, [p.entity_id for p in group])
            for profile in group:
                doc = docs.get(profile.entity_id)
                stored.append((profile, _stored(doc, profile) if doc is not None else None))
        self._running = True
        if self.listening_since is None:
            self.listening_since = self.clock.now()
        kept: list[RestoredStatus] = []
        for profile, state in stored:
            record = self._restore_one(profile, state)
            if record is not None and self._owned(record):
                kept.append(RestoredStatus(profile.tenant, profile.device_id, profile.entity_id, record.status,
                                           record.last_reported, state.changed_at if state is not None else None))
        # After the states are applied (nothing judged twice): the alarms reconcile what a crash may have lost.
        await self.bus.publish(DeviceStatusesRestored(Context(actor=INGEST_ACTOR), tuple(kept)))

    def _restore_one(self, profile: DeviceProfile, state: _Stored | None) -> DeviceHealth | None:
        """Apply a device's stored state; returns its record if the status stayed as stored (not announced now:
        see `DeviceStatusesRestored`), None if the restore changed it (announced) or there was no entity."""
        record = self.track(profile)
        if state is None:
            return None
        last = state.last_reported
        record.last_reported = min(last, self.clock.now()) if last is not None else None
        record.status = state.status
        record.battery = state.battery
        record.rssi = state.rssi
        if record.status == ONLINE and record.last_reported is None:
            record.status = UNKNOWN
        if record.timer is not None:  # armed by track() from now; the real deadline is from the last report
            record.timer.cancel()
            record.timer = None
        restored = record.status
        # (online only if it really reported within its threshold, not by the start's grace)
        if (record.status == UNKNOWN and record.last_reported is not None
                and self.clock.now() < self._deadline(record, grace=False)):
            self._change(record, ONLINE)
        self._check(record)
        return record if record.status == restored else None

    async def stop(self) -> None:
        self._running = False
        self.listening_since = None  # (a start of this monitor again is a new start: a new grace)
        self._held.clear()
        for record in self._devices.values():
            if record.timer is not None:
                record.timer.cancel()
                record.timer = None
        await self.drain()

    async def drain(self) -> None:
        """Wait for the pending status writes and events (tests call this after moving the clock)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- devices --------------------------------------------------------------------------------------
    def interval_of(self, profile: DeviceProfile) -> timedelta:
        seconds = (profile.expected_interval_s or self.settings.intervals_by_type.get(profile.entity_type)
                   or self.settings.default_interval_s)
        return timedelta(seconds=min(seconds, LONGEST_INTERVAL.total_seconds()))  # (min: no OverflowError)

    def track(self, profile: DeviceProfile) -> DeviceHealth:
        """Start (or refresh, after a provisioning change) watching a device."""
        key = (profile.tenant, profile.device_id)
        record = self._devices.get(key)
        if record is None:
            record = DeviceHealth(profile, self.interval_of(profile), self.clock.now())
            self._devices[key] = record
        else:
            record.profile, record.interval = profile, self.interval_of(profile)
            if record.timer is not None:  # the deadline may have moved
                record.timer.cancel()
                record.timer = None
        self._arm(record)
        return record

    def forget(self, tenant: str, device_id: str) -> None:
        record = self._devices.pop((tenant, device_id), None)
        self._held.discard((tenant, device_id))
        if record is not None and record.timer is not None:
            record.timer.cancel()

    def coming_online(self, profile: DeviceProfile) -> bool:
        """Whether a report of this device now would bring it online, with its `deviceState` written by this
        process: ingest then writes the state with the measure (`online_state`), one write instead of two."""
        record = self._devices.get((profile.tenant, profile.device_id))
        return record is not None and record.status != ONLINE and self._running and self._owned(record)

    @staticmethod
    def online_state(now: str) -> dict[str, dict[str, Any]]:
        """The `deviceState` attribute a measure that brings its device online carries (see `coming_online`)."""
        return _state(ONLINE, now)

    def reported(self, profile: DeviceProfile, attrs: dict[str, dict[str, Any]], now: datetime | None = None,
                 state_written: bool = False, clock_ahead_s: float | None = None, timed: bool = False,
                 transport: str | None = None) -> None:
        """A committed report of a device (attribute name -> instance of its newest measure, as ingest decoded
        it), at `now` (default: the clock's now); only the few names health reads are looked at.
        `timed`: the caller checked the report's measure times, and `clock_ahead_s` is how far they were ahead
        of the platform clock beyond `ingest.clock_ahead_warn_s` (None: not). Untimed (a heartbeat, or a
        caller that does not check, as a scale-out worker) leaves the last one shown. `transport`: what it came
        on (http | mqtt; None: not known, the last one known stays)."""
        record = self._devices.get((profile.tenant, profile.device_id)) or self.track(profile)
        now = now or self.clock.now()
        record.last_reported = now
        if transport is not None:
            record.transport = transport
        if timed:
            record.clock_ahead_s = clock_ahead_s
        for name in BATTERY_NAMES:
            if name in attrs:
                record.battery, record.battery_at = attrs[name].get("value"), now
        for name in RSSI_NAMES:
            if name in attrs:
                record.rssi, record.rssi_at = attrs[name].get("value"), now
        if record.status != ONLINE:  # (state_written: the report's own write set deviceState online)
            self._change(record, ONLINE, write=not state_written)
        if record.timer is None:  # else armed already (`_arm` checks this first too; a call saved per report)
            self._arm(record)

    def refused(self, profile: DeviceProfile, now: datetime | None = None, transport: str | None = None) -> None:
        """A valid reading of a tracked device that the store could not take now (`Unavailable`: unreachable,
        its write queue full), refused with a 503 or left for MQTT redelivery. Not a report (not committed: the
        status, `lastReported` and `deviceState` stay as they are, an offline device stays offline) but the
        device is alive: its silence counts from now. Without this, every device that kept sending during a store
        outage longer than its threshold went offline (a false alarm each) once ucity itself was down."""
        record = self._devices.get((profile.tenant, profile.device_id))
        if record is None:
            return
        record.refused_at = now or self.clock.now()
        if transport is not None:
            record.transport = transport
        if record.timer is None:  # (its timer, if armed, finds the moved deadline when it fires)
            self._arm(record)

    # -- MQTT connection (FIX-A) --------------------------------------------------------------------------
    def mqtt_disconnected(self) -> None:
        """The MQTT source is not connected to its broker (its start, before the first connection; a lost one):
        until `mqtt_connected`, the silence of the devices heard over MQTT does not count."""
        self._mqtt = True
        self.mqtt_listening_since = None
        if self.mqtt_down_since is None:
            self.mqtt_down_since = self.clock.now()

    def mqtt_connected(self) -> None:
        """The MQTT source is connected and subscribed again: MQTT devices are heard from now, each judged
        offline once silent for its threshold since max(its last report, now), as after a start."""
        self._mqtt = True
        self.mqtt_listening_since = self.clock.now()
        self.mqtt_down_since = None
        held, self._held = self._held, set()
        for key in held:  # (the others' timers find their moved deadline when they fire)
            record = self._devices.get(key)
            if record is not None and record.timer is None:
                self._arm(record)

    def _over_mqtt(self, record: DeviceHealth) -> bool:
        """Whether the device may be heard over MQTT: declared so; else last heard on MQTT; else (undeclared, not
        heard since this process started) possibly: no false alarm because ucity could not hear it."""
        declared = (self.declared_transport(record.profile.tenant, record.profile.device_id) or "").lower()
        if declared in ("mqtt", "http"):
            return declared == "mqtt"
        return record.transport != "http"

    def _deaf(self, record: DeviceHealth) -> bool:
        """Whether ucity cannot hear the device now: it may report over MQTT and the broker is not connected."""
        return self._mqtt and self.mqtt_listening_since is None and self._over_mqtt(record)

    def get(self, tenant: str, device_id: str) -> DeviceHealth | None:
        return self._devices.get((tenant, device_id))

    def summary(self, tenant: str, status: str | None = None,
                withhold: Callable[[str], str | None] | None = None) -> dict[str, Any]:
        """The tenant's devices: `total`, `counts` by status and the rows (of one `status` if given).

        `withhold` (a caller without `personal:read`, QA17 F3): the personal entity type of an entity type, None if
        not personal. Devices of a personal type are then left out of the rows (their entity ids, status,
        `lastReported` and battery are a person's data, which the NGSI-LD API refuses such a caller) and counted
        in `withheld` (how many, by type and by status, and why); `total` and `counts` still count every device."""
        records = sorted((r for r in self._devices.values() if r.profile.tenant == tenant),
                         key=lambda r: r.profile.device_id)
        counts = {ONLINE: 0, OFFLINE: 0, UNKNOWN: 0}
        for record in records:
            counts[record.status] = counts.get(record.status, 0) + 1
        withheld: dict[str, Any] | None = None
        visible = records
        if withhold is not None:
            types: Counter[str] = Counter()
            by_status = dict.fromkeys(counts, 0)
            visible = []
            for record in records:
                personal = withhold(record.profile.entity_type)
                if personal is None:
                    visible.append(record)
                else:
                    types[personal] += 1
                    by_status[record.status] = by_status.get(record.status, 0) + 1
            withheld = {**withheld_summary(types), "counts": by_status}
        shown = [r for r in visible if status is None or r.status == status]
        out: dict[str, Any] = {
                "total": len(records), "counts": counts, "offlineAfterIntervals": self.settings.offline_after_intervals,
                # since when this process hears devices (its start): silence before it is not counted (QA12 F3), so a
                # device silent since before it stays online until its threshold after it
                "listeningSince": None if self.listening_since is None else to_iso(self.listening_since),
                # with an MQTT source: since when it is connected again (MQTT devices' silence counts from then), or
                # since when it is not (their silence does not count meanwhile); both None without MQTT
                "mqttListeningSince": None if self.mqtt_listening_since is None else to_iso(self.mqtt_listening_since),
                "mqttDownSince": None if self.mqtt_down_since is None else to_iso(self.mqtt_down_since),
                "clockAhead": sum(1 for r in records if r.clock_ahead_s is not None),
                "devices": [r.to_wire(self.settings.offline_after_intervals) for r in shown]}
        if withheld is not None:
            out["withheld"] = withheld
        return out

    # -- timers --------------------------------------------------------------------------------------
    def _deadline(self, record: DeviceHealth, grace: bool = True) -> datetime:
        """When the device goes offline without a report; MAX_INSTANT (never, in practice) if that is beyond
        what a datetime holds, rather than OverflowError in a timer or at start.

        Its silence counts from its last report (or since tracking started), but not from before this process
        started listening (`listening_since`, QA12 F3), nor, for a device heard over MQTT, from before the MQTT
        source last connected, and not at all while it is disconnected (MAX_INSTANT); a valid reading the store
        refused counts as heard (`refused`). `grace=False`: from its last report however old."""
        heard = record.last_reported or record.since
        if record.refused_at is not None and record.refused_at > heard:
            heard = record.refused_at
        if grace:
            if self.listening_since is not None and heard < self.listening_since:
                heard = self.listening_since
            if self._mqtt and self._over_mqtt(record):
                if self.mqtt_listening_since is None:
                    return MAX_INSTANT
                if heard < self.mqtt_listening_since:
                    heard = self.mqtt_listening_since
        try:
            return heard + record.interval * self.settings.offline_after_intervals
        except OverflowError:
            return MAX_INSTANT

    def _arm(self, record: DeviceHealth) -> None:
        if record.timer is None and record.status != OFFLINE and self._running and self._owned(record):
            key = (record.profile.tenant, record.profile.device_id)
            if self._deaf(record):  # no deadline until the MQTT source reconnects (`mqtt_connected` arms it)
                self._held.add(key)
                return
            record.timer = self.clock.call_at(self._deadline(record), lambda: self._fire(key))

    def _fire(self, key: tuple[str, str]) -> None:
        record = self._devices.get(key)
        if record is not None:
            record.timer = None
            self._check(record)

    def _check(self, record: DeviceHealth) -> None:
        """Offline if the deadline has passed, else wait for the (possibly moved) deadline."""
        if self.clock.now() >= self._deadline(record):
            if record.status != OFFLINE:
                self._change(record, OFFLINE)
        else:
            self._arm(record)

    def _owned(self, record: DeviceHealth) -> bool:
        return self.owns(record.profile.tenant, record.profile.entity_id)

    def _change(self, record: DeviceHealth, status: str, write: bool = True) -> None:
        """Record the change now; publish the event and (unless already written) write `deviceState` in a task."""
        record.status = status
        record.since = self.clock.now()
        if not self._owned(record):
            return  # its owner announces it
        log.info("device %s (%s) is %s", record.profile.device_id, record.profile.tenant, status)
        task = asyncio.get_running_loop().create_task(
            self._announce(record.profile, status, record.last_reported, write))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _announce(self, profile: DeviceProfile, status: str, last: datetime | None, write: bool = True) -> None:
        context = Context(actor=INGEST_ACTOR)
        now = to_iso(self.clock.now())
        result: Any = None
        if write:
            try:
                result = await self.writer.apply(profile, attrs_op(_state(status, now)), context)
            except Exception as exc:  # e.g. the store pushing back: the status event below still goes out
                result = exc
        if isinstance(result, Exception):
            log.warning("could not set deviceState of %s: %s", profile.entity_id, result)
        await self.bus.publish(DeviceStatusChanged(context, profile.tenant, profile.device_id, profile.entity_id,
                                                   status, to_iso(last) if last else None))


def _state(status: str, now: str) -> dict[str, dict[str, Any]]:
    """The `deviceState` attribute (by short name) of a status set at `now`, as ingest writes it."""
    return {DEVICE_STATE: {"type": "Property", "value": status, "observedAt": now}}


# -- reading stored entities ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Stored:
    """What health restores of a device's stored entity (read first, applied later: `restore`)."""

    last_reported: datetime | None
    status: str
    battery: Any
    rssi: Any
    changed_at: str | None  # the deviceState's observedAt: when the stored status was set


def _stored(doc: Doc, profile: DeviceProfile) -> _Stored:
    state = _default(doc, DEVICE_STATE) or {}
    changed_at = state.get("observedAt")
    return _Stored(_last_observed(doc, profile), str(state.get("value") or UNKNOWN),
                   next((v for v in (_value(doc, n) for n in BATTERY_NAMES) if v is not None), None),
                   next((v for v in (_value(doc, n) for n in RSSI_NAMES) if v is not None), None),
                   changed_at if isinstance(changed_at, str) else None)


async def _entities(store: Store, tenant: str, ids: list[str], chunk: int = 500) -> dict[str, Doc]:
    found: dict[str, Doc] = {}
    for start in range(0, len(ids), chunk):
        part = tuple(ids[start:start + chunk])
        docs, _ = await store.query_entities(tenant, EntityQuery(ids=part, limit=len(part)))
        found.update({doc["id"]: doc for doc in docs})
    return found


def _default(doc: Doc, name: str) -> dict[str, Any] | None:
    """The attribute's default instance (no datasetId), if any."""
    instances = doc.get("attrs", {}).get(expand(name)) or []
    return next((i for i in instances if "datasetId" not in i), None)


def _value(doc: Doc, name: str) -> Any:
    default = _default(doc, name)
    return default.get("value") if default else None


def _last_observed(doc: Doc, profile: DeviceProfile) -> datetime | None:
    """When the device last reported, as stored: the newest write time (`modifiedAt`, the store's clock when the
    measure was committed, a moment after it was received) among the measured attributes (not deviceState, not
    command results, not static attributes); `observedAt` only for an instance without one. The device's own
    `observedAt` is not its report's time: a device whose clock runs behind would look silent after a restart and
    go offline (QA4 F4), one whose clock runs ahead would look alive for too long."""
    skip = {expand(DEVICE_STATE)} | {expand(static.name) for static in profile.static_attributes}
    for command in profile.commands:
        skip |= {expand(command.name), expand(command.name + COMMAND_STATUS), expand(command.name + COMMAND_INFO)}
    times = [i.get("modifiedAt") or i["observedAt"] for iri, instances in doc.get("attrs", {}).items()
             if iri not in skip for i in instances if i.get("modifiedAt") or i.get("observedAt")]
    if not times:
        return None
    try:  # stored times are in to_iso form: the greatest text is the newest
        return parse_iso_clamped(max(times))
    except (TypeError, ValueError):  # a malformed stored time: the newest of those that parse
        parsed = [_parsed(t) for t in times]
        return max((t for t in parsed if t is not None), default=None)


def _parsed(text: Any) -> datetime | None:
    try:
        return parse_iso_clamped(text)
    except (TypeError, ValueError, AttributeError):
        return None
