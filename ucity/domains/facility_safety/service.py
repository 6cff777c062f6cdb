"""The facility-safety component: readings in, assessed values, grades, tasks and events out.

How it runs (README.md has the rules):

* **Bus, fast**: on every committed change it updates its registry of facilities and sensors and,
  for readings of a structural sensor, queues a job; on `RuleMatched` / `RuleSpike` /
  `RuleCleared` of its rules it queues the event log and the tasks SHM-R5 asks for. Nothing on the
  bus waits for the store (the commit publisher must not be held up).
* **One worker**, in order: fits a sensor's thermal model when it is due (SHM-R7), writes the
  assessed values of each reading in one `store.mutate` per committed batch (the rules engine
  evaluates them like any other write), logs rule events as history of the sensor, keeps tasks.
  The daily grade and the hourly stuck check run in the same worker, so they never race a reading.
* **Timers on the platform clock**: the daily data grade at `grade.recompute_at` (Asia/Seoul) and
  the stuck check every `health.check_interval_s`; tests move a FakeClock.

Contexts: each write carries a child Context of the change that caused it, so an alarm can be
traced from the rule, through the assessed value, to the device's measure.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import statistics
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import date, datetime, time, timedelta
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

from ucity.core.bus import Context, EntitiesChanged
from ucity.core.clock import TimerHandle, parse_iso, to_iso, to_micros
from ucity.core.errors import NotFound
from ucity.core.params import bad
from ucity.core.platform import Platform
from ucity.domains.facility_safety import evidence
from ucity.domains.facility_safety.assess import (
    Checks,
    Reading,
    assess,
    assessed_attr,
    battery,
    instance,
    kind_mismatch,
    neutral,
    observe,
    readings_of,
    write_op,
)
from ucity.domains.facility_safety.config import FacilitySafetyConfig, Ladder, LadderSet
from ucity.domains.facility_safety.grading import AUDIT_KIND, Grader, ingest_interval
from ucity.domains.facility_safety.models import (
    GRADES,
    LAST_INSPECTION_ATTR,
    Baseline,
    Facility,
    InspectionIn,
    Sensor,
    facility_from_doc,
    facility_of,
    iri,
    prop,
    short,
)
from ucity.domains.facility_safety.photos import PhotoStore
from ucity.domains.facility_safety.registry import BASELINE_ATTR, Registry
from ucity.domains.facility_safety.rules import (
    BATTERY_ATTR,
    CATEGORY,
    CHANNELS,
    CRACK,
    DATASET_PREFIX,
    DETACHED_ATTR,
    INSTALL_BASELINE_ATTR,
    OFFLINE_ATTR,
    RULE_IDS,
    STUCK_ATTR,
    SUSPECT_ATTR,
    SUSPECT_OK,
    TILT,
    Variant,
    class_variant,
    contact_documents,
    default_rules,
    effective,
    facility_variant,
    variant_rules,
)
from ucity.domains.facility_safety.tasks import COMPLETED, TaskBook
from ucity.domains.facility_safety.thermal import FitPolicy, NoModel, fit, pair_hours
from ucity.ingest import DeviceStatusChanged
from ucity.ngsild.ops import merge_op
from ucity.ops.audit import AuditLog
from ucity.rules import LEVELS, Rule, RuleCleared, RuleMatched, RuleSpike, level_rank
from ucity.store.base import ApplyFn, Mutation, Outcome, Store, TemporalQuery

log = logging.getLogger(__name__)
ACTOR = "facility-safety"
TENANTS_KIND = "facility-safety-tenant"
OVERRIDES_KIND = "facility-safety-thresholds"
SEED_KIND = "facility-safety-seed"
STATE_KIND = "facility-safety-state"
Job = Callable[[], Awaitable[None]]
Write = tuple[str, Any]  # (attribute IRI, instance) or (DROP, (attribute IRI, datasetId))
DROP = "drop"


class FacilitySafety:
    """The platform component of the facility-safety domain (`platform.get("facility_safety")`)."""

    def __init__(self, platform: Platform, cfg: FacilitySafetyConfig) -> None:
        self.platform = platform
        self.cfg = cfg
        self.clock = platform.clock
        self.store: Store = platform.get("store")
        self.engine = platform.get("rules")
        self.default_tenant = platform.settings.ngsild.default_tenant
        self.registry = Registry(cfg)
        self.tasks = TaskBook(self.store)
        self.photos = PhotoStore(platform.settings.data_dir / cfg.photos.directory, cfg.photos.max_bytes,
                                 cfg.photos.types)
        self.grader = Grader(self.store, self.registry, cfg, self.ladder_of, ingest_interval(platform),  # QA5 F1
                             platform.settings.ingest.max_future_s)  # QA5 F8: newest reading within ingest's bound
        self.audit = AuditLog(self.store, self.clock)  # the operations audit log (ucity/ops/audit.py)
        self.overrides: dict[tuple[str, str], LadderSet] = {}
        self.class_variants = {(c, ch): v for c in cfg.classes for ch in CHANNELS
                               if (v := class_variant(cfg, ch, c)) is not None}
        self.facility_variants: dict[tuple[str, str, str], Variant] = {}  # (tenant, facility, channel)
        # channel -> (rule id, datasetId) of the ladders shared by many facilities: the default and the classes'
        self.shared_ladders = {ch: ((RULE_IDS[ch], None), *((v.rule_id, v.dataset_id) for (_, c), v in
                                                           self.class_variants.items() if c == ch))
                               for ch in CHANNELS}
        self.rule_ids: set[str] = set()
        # (tenant, sensor, rule) -> time of the zero that ends that ladder, until the rules engine has evaluated it
        self._handovers: dict[tuple[str, str, str], datetime] = {}
        self.measured = frozenset(v for k, v in cfg.attributes.model_dump().items() if k not in ("humidity",))
        self.checks = Checks(cfg.plausibility, cfg.attributes)  # QA5 F3: plausible ranges and units
        self._seeded: dict[str, set[str]] = {}
        self._queue: asyncio.Queue[Job] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._unsubscribe: list[Callable[[], None]] = []
        self._timers: dict[str, TimerHandle] = {}
        self.stats = {"readings": 0, "assessed": 0, "skipped": 0, "fits": 0, "grades": 0, "events": 0, "errors": 0,
                      "implausible": 0, "unbaselined": 0, "detached": 0}
        self._register(default_rules(cfg) + variant_rules(cfg, list(self.class_variants.values())))
        from ucity.domains.facility_safety.api import FacilitySafetyApi

        self.api = FacilitySafetyApi(self)

    # -- lifecycle ----------------------------------------------------------------------------------------------
    async def start(self) -> None:
        await self.tasks.load()
        for tenant, _, doc in await self.store.list_docs(SEED_KIND):
            self._seeded[tenant] = set(doc.get("ids", []))
        for tenant, facility_id, doc in await self.store.list_docs(OVERRIDES_KIND):
            self.overrides[(tenant, facility_id)] = LadderSet.model_validate(doc)
        tenants = {self.default_tenant} | {t for t, _, _ in await self.store.list_docs(TENANTS_KIND)}
        for tenant in sorted(tenants):
            await self._adopt(tenant)
        self._refresh_facility_rules()
        bus = self.platform.bus
        self._unsubscribe = [bus.subscribe(EntitiesChanged, self._on_changes), bus.subscribe(RuleMatched, self._on_rule),
                             bus.subscribe(RuleSpike, self._on_rule), bus.subscribe(RuleCleared, self._on_rule),
                             bus.subscribe(DeviceStatusChanged, self._on_device)]
        alarms = self.platform.services.get("alarms")
        if self.cfg.health.offline_rule_enabled and alarms is not None and hasattr(alarms, "offline_owners"):
            # one alarm per offline structural sensor (QA5 F13a): shm-sensor-offline, with the maintenance chain
            alarms.offline_owners.append(self._owns_offline)
            self._unsubscribe.append(lambda: alarms.offline_owners.remove(self._owns_offline))
        self._worker = asyncio.get_running_loop().create_task(self._work(), name="facility-safety")
        await self._arm_daily(catch_up=True)
        self._arm_health()

    async def stop(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        await self.drain()
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            self._worker = None

    async def drain(self) -> None:
        """Wait until every queued job is done (tests, shutdown)."""
        await self._queue.join()

    def health(self) -> dict[str, Any]:
        ok = self._worker is not None and not self._worker.done()
        return {"ok": ok, "tenants": len(self.registry.tenants), "queued": self._queue.qsize(), **self.stats}

    # -- the worker -----------------------------------------------------------------------------------------------
    def enqueue(self, job: Job) -> None:
        self._queue.put_nowait(job)

    async def _work(self) -> None:
        while True:
            job = await self._queue.get()
            try:
                await job()
            except Exception:  # one failing job must not stop the domain
                self.stats["errors"] += 1
                log.exception("facility-safety job failed")
            finally:
                self._queue.task_done()

    async def run(self, job: Callable[[], Awaitable[Any]]) -> Any:
        """Run a job in the worker's order and return its result (the API's on-demand work)."""
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        async def wrapped() -> None:
            try:
                done.set_result(await job())
            except Exception as exc:
                done.set_exception(exc)

        self.enqueue(wrapped)
        return await done

    # -- tenants, rules, contact data -------------------------------------------------------------------------------
    async def _adopt(self, tenant: str) -> None:
        """Load a tenant's facilities and sensors and give it the default contact data."""
        await self.registry.load(self.store, tenant)
        await self.store.put_doc(TENANTS_KIND, tenant, "tenant", {"tenant": tenant})
        await self._seed(tenant)

    def _register(self, rules: tuple[Rule, ...]) -> None:
        self.engine.register_defaults(rules)
        self.rule_ids |= {r.id for r in rules}

    async def _seed(self, tenant: str) -> None:
        """SHM-R5 recipients and escalation chains, once per id and tenant (editable through the alarms API)."""
        alarms = self.platform.services.get("alarms")
        if not self.cfg.escalation.seed or alarms is None:
            return
        seeded = self._seeded.setdefault(tenant, set())
        groups, chains = contact_documents(self.cfg, sorted(self.rule_ids))
        added = False
        for collection, docs in ((alarms.contacts.recipients, groups), (alarms.contacts.escalations, chains)):
            for doc in docs:
                key = f"{collection.kind}:{doc['id']}"
                if key in seeded:
                    continue
                if collection.get(tenant, doc["id"]) is None:
                    await collection.put(tenant, collection.parse(dict(doc)))
                seeded.add(key)
                added = True
        if added:
            await self.store.put_doc(SEED_KIND, tenant, "contacts", {"ids": sorted(seeded)})

    def _refresh_facility_rules(self) -> list[str]:
        """Rules of the facilities' own ladders; a removed override's rule is disabled (it cannot be unregistered)."""
        fresh: dict[tuple[str, str, str], Variant] = {}
        for (tenant, facility_id), override in self.overrides.items():
            cls = self.class_of(self.registry.facility(tenant, facility_id))
            for channel in CHANNELS:
                variant = facility_variant(self.cfg, channel, cls, facility_id, override)
                if variant is not None:
                    fresh[(tenant, facility_id, channel)] = _tenant_variant(variant, tenant, self.default_tenant)
        rules = []
        for key, variant in fresh.items():
            rule = variant_rules(self.cfg, [variant])[0]
            rules.append(_with_tenant(rule, key[0]))
        for key, variant in self.facility_variants.items():
            if key not in fresh or fresh[key].rule_id != variant.rule_id:
                rule = variant_rules(self.cfg, [variant])[0]
                rules.append(_with_tenant(rule, key[0], enabled=False))
        self.facility_variants = fresh
        if rules:
            self._register(tuple(rules))
        return [v.rule_id for v in fresh.values()]

    # -- ladders that apply -----------------------------------------------------------------------------------------
    def class_of(self, facility: Facility | None) -> str:
        if facility is not None and facility.structure_class in self.cfg.classes:
            return facility.structure_class
        if facility is not None:
            return self.cfg.class_by_type.get(facility.facility_type, self.cfg.default_class)
        return self.cfg.default_class

    def variant_for(self, sensor: Sensor, channel: str) -> Variant | None:
        facility = self.registry.facility(sensor.tenant, sensor.facility_id)
        if sensor.facility_id is not None:
            own = self.facility_variants.get((sensor.tenant, sensor.facility_id, channel))
            if own is not None:
                return own
        return self.class_variants.get((self.class_of(facility), channel))

    def ladder_of(self, sensor: Sensor, channel: str) -> Ladder:
        facility = self.registry.facility(sensor.tenant, sensor.facility_id)
        override = self.overrides.get((sensor.tenant, sensor.facility_id or ""))
        return effective(self.cfg, channel, self.class_of(facility), override)[0]

    def rule_for(self, sensor: Sensor, channel: str) -> str:
        variant = self.variant_for(sensor, channel)
        return variant.rule_id if variant else RULE_IDS[channel]

    # -- bus ----------------------------------------------------------------------------------------------------
    async def _on_changes(self, event: EntitiesChanged) -> None:
        now = self.clock.now()
        work: dict[str, list[tuple[Sensor, list[Reading]]]] = {}
        for change in event.changes:
            if not self.registry.concerns(change.types):
                continue
            if change.tenant not in self.registry.tenants:  # a tenant's first facility or sensor
                self.registry.tenants.add(change.tenant)
                self.enqueue(partial(self._adopt, change.tenant))
            sensor = self.registry.apply(change)
            if sensor is None or sensor.kind is None:
                continue
            known = sensor.baseline.offsets if sensor.baseline is not None and sensor.baseline.known else None
            readings = readings_of(change, self.measured, now, self.checks, known)
            if readings:
                work.setdefault(change.tenant, []).append((sensor, readings))
        for tenant, items in work.items():
            self.enqueue(partial(self._assess, tenant, items, Context(parent_id=event.context.id, actor=ACTOR)))

    def _owns_offline(self, tenant: str, entity_id: str) -> bool:
        """Whether the domain raises the offline fault of this entity itself (a structural sensor it knows)."""
        return self.registry.sensor(tenant, entity_id) is not None

    async def _on_device(self, event: DeviceStatusChanged) -> None:
        """Ingest's device health: `sensorOffline` on a structural sensor, the text of shm-sensor-offline (the last
        report shown in Asia/Seoul, QA5 F13a; the time stays UTC in the event and `deviceState`), `ok` when back."""
        sensor = self.registry.sensor(event.tenant, event.entity_id)
        if sensor is None or event.status not in ("online", "offline") or not self.cfg.health.offline_rule_enabled:
            return
        text = SUSPECT_OK if event.status == "online" else self.offline_text(event.device_id, event.last_reported)
        inst: dict[str, Any] = {"type": "Property", "value": text, "observedAt": to_iso(self.clock.now())}
        if event.last_reported:
            inst[iri("lastReported")] = {"type": "Property", "value": event.last_reported}
        ctx = Context(parent_id=event.context.id, actor=ACTOR)
        self.enqueue(lambda: self._write(sensor, [(iri(OFFLINE_ATTR), inst)], ctx))

    def offline_text(self, device_id: str, last_reported: str | None) -> str:
        zone = self.cfg.grade.timezone
        if last_reported:
            shown = parse_iso(last_reported).astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M:%S")
            return (f"센서 {device_id} 통신 두절 (마지막 보고 {shown}, 한국 시간) / sensor {device_id} offline (last "
                    f"reported {shown} {zone})")
        return f"센서 {device_id} 통신 두절 (보고 없음) / sensor {device_id} offline (never reported)"

    async def _write(self, sensor: Sensor, writes: list[Write], ctx: Context) -> None:
        _check(await self.store.mutate(sensor.tenant, [Mutation(sensor.id, _op(writes))], ctx))

    async def _on_rule(self, event: RuleMatched | RuleSpike | RuleCleared) -> None:
        if event.rule_id not in self.rule_ids and getattr(event, "category", "") != CATEGORY:
            return
        self.enqueue(lambda: self._record_event(event))

    # -- readings -> assessed values ------------------------------------------------------------------------------
    async def _assess(self, tenant: str, items: list[tuple[Sensor, list[Reading]]], ctx: Context) -> None:
        now = self.clock.now()
        mutations = []
        for sensor, readings in items:
            self.stats["readings"] += len(readings)
            fitted = await self.ensure_models(sensor, now)
            captured = await self._capture(sensor, now) if not self.detached(sensor) else None
            writes = self._sensor_writes(sensor, readings, now)
            if captured is not None:
                writes.insert(0, (iri(INSTALL_BASELINE_ATTR), captured))
            if fitted:
                writes.append((iri("thermalCompensation"), self.models_instance(sensor, now)))
            if writes:
                mutations.append(Mutation(sensor.id, _op(writes)))
        if mutations:
            _check(await self.store.mutate(tenant, mutations, ctx))

    def _sensor_writes(self, sensor: Sensor, readings: list[Reading], now: datetime) -> list[Write]:
        """The instances (and dropped datasets) one sensor's readings produce, in time order."""
        names = self.cfg.attributes
        out: list[Write] = []
        if self.detached(sensor):  # stored by ingest, laddered by no one: it left its facility
            self.stats["detached"] += len(readings)
            # its battery is still a maintenance matter, as before the battery was converted (QA14 F2)
            return [(iri(BATTERY_ATTR), b) for r in readings if (b := battery(r, names)) is not None]
        for reading in readings:
            temperature = self._temperature(sensor, reading)
            reading = kind_mismatch(sensor, reading, names)  # QA5 F13i: another kind's measure is a suspect
            suspect = observe(sensor, reading)  # QA5 F3: implausible values -> readingSuspect (a fault)
            self.stats["implausible"] += len(reading.suspects)
            if suspect is not None:
                out.append((iri(SUSPECT_ATTR), suspect))
            charge = battery(reading, names)  # QA14 F2: as a fraction, for SHM-R6's battery rule
            if charge is not None:
                out.append((iri(BATTERY_ATTR), charge))
            if sensor.stuck:
                if not self._unstuck(sensor, reading):
                    self.stats["skipped"] += 1
                    continue
                out.append((iri(STUCK_ATTR), _stuck_instance(False, [], reading.at)))
            if not self.baseline_of(sensor).known and sensor.kind in (TILT, CRACK):
                self.stats["unbaselined"] += 1  # QA5 F9: stored, not laddered until its baseline is known
                continue
            assessed, skipped = assess(sensor, reading, temperature, names)
            self.stats["skipped"] += len(skipped)
            for a in assessed:
                dataset, moves = self._placement(sensor, a.channel, max(a.at, now))
                out.extend(moves)
                out.append((assessed_attr(a.channel), instance(a, dataset)))
                self.stats["assessed"] += 1
        return out

    def _placement(self, sensor: Sensor, channel: str, at: datetime) -> tuple[str | None, list[Write]]:
        """The datasetId of the ladder that applies now, and the writes that move the sensor off the others:
        a zero there at `at` (its rule clears) and the removal of that instance.

        `at` is the handover's time, the platform clock's now (or the reading's time if later), never the time of
        the reading that caused it: a buffered reading older than the old ladder's last one gave a zero the
        rules engine ignored as late, and the old rule's alarm stayed active for ever (QA finding 9).

        A ladder is left when the sensor has an instance on it, or when its rule still holds a level or a
        running excursion for the sensor with no zero of ours on its way (what that bug left behind: an alarm
        whose instance is gone), so such an alarm is cleared by the sensor's next reading, after a restart too.
        """
        variant = self.variant_for(sensor, channel)
        dataset = variant.dataset_id if variant else None
        attr = assessed_attr(channel)
        moves: list[Write] = []
        ladders = self._ladders(sensor, channel)
        left = (sensor.written_datasets.get(channel, set()) | set(ladders)) - {dataset}
        for stale in sorted(left, key=str):
            moves += [(attr, neutral(channel, at, stale)), (DROP, (attr, stale))]
            if stale in ladders:
                self._handovers[(sensor.tenant, sensor.id, ladders[stale])] = at
        sensor.written_datasets[channel] = {dataset}
        return dataset, moves

    def _ladders(self, sensor: Sensor, channel: str) -> dict[str | None, str]:
        """datasetId -> rule id, of the default and class ladders of the channel whose rule holds a level or a
        running excursion for the sensor that no zero already written will end (a few in-memory look-ups per
        assessed value). A facility's own ladder is left through its instance, or cleared by disabling its rule
        when the thresholds are removed."""
        out: dict[str | None, str] = {}
        for rule_id, dataset in self.shared_ladders[channel]:
            state = self.engine.state(sensor.tenant, rule_id, sensor.id)
            key = (sensor.tenant, sensor.id, rule_id)
            if state is None or (state.level is None and not state.pending):
                self._handovers.pop(key, None)
                continue
            sent = self._handovers.get(key)
            if sent is None or (state.last_at is not None and state.last_at >= sent):  # none, or it was ignored
                out[dataset] = rule_id
        return out

    def _temperature(self, sensor: Sensor, reading: Reading) -> float | None:
        name = self.cfg.attributes.temperature
        if name in reading.values:
            sensor.last_temperature = (reading.at, reading.values[name])
            return reading.values[name]
        if sensor.last_temperature is not None:
            at, value = sensor.last_temperature
            if abs((reading.at - at).total_seconds()) <= self.cfg.thermal.temperature_max_age_s:
                return value
        return None

    def _unstuck(self, sensor: Sensor, reading: Reading) -> bool:
        """A stuck sensor whose value moves again is trusted again at once."""
        moved = any(name in reading.values and reading.values[name] != value
                    for name, value in sensor.stuck_values.items())
        if moved:
            sensor.stuck, sensor.stuck_values = False, {}
        return moved

    # -- installation baseline (QA5 F9) -------------------------------------------------------------------------------
    def detached(self, sensor: Sensor) -> bool:
        """Detached from its facility and attached to none since: its readings are stored, not laddered."""
        return sensor.detached_from is not None and sensor.facility_id is None

    def baseline_attrs(self, sensor: Sensor) -> list[str]:
        a = self.cfg.attributes
        return {TILT: [a.tilt_x, a.tilt_y], CRACK: [a.crack]}.get(sensor.kind or "", [])

    def baseline_of(self, sensor: Sensor) -> Baseline:
        """The sensor's installation baseline in effect: the stored one, else none known (`capturing`) or zero
        (`baseline.mode = "zero"`: the devices report the change themselves)."""
        if sensor.baseline is not None:
            return sensor.baseline
        return Baseline({}, "zero") if self.cfg.baseline.mode == "zero" else Baseline({}, "capturing")

    def ladder_status(self, sensor: Sensor) -> dict[str, Any]:
        """Whether the sensor's readings reach a ladder now, and why not (Korean and English), for its health."""
        baseline = self.baseline_of(sensor)
        status: dict[str, Any] = {"laddered": True, "notLadderedBecause": None,
                                  "installationBaseline": baseline.to_json()}
        if self.detached(sensor):
            status.update(laddered=False, notLadderedBecause={
                "reason": "detached",
                "ko": f"시설물 {sensor.detached_from}에서 분리됨: 측정값은 저장만 되고 경보 단계로 평가하지 않음",
                "en": f"detached from facility {sensor.detached_from}: its readings are stored, not laddered"})
        elif not baseline.known and sensor.kind in (TILT, CRACK):
            n = self.cfg.baseline.capture_samples
            status.update(laddered=False, notLadderedBecause={
                "reason": "no-baseline",
                "ko": f"설치 기준값 없음: 처음 {n}개 측정값의 중앙값으로 정함, 그 전의 측정값은 저장만 되고 평가하지 않음",
                "en": f"no installation baseline yet: the median of its first {n} readings sets it; readings before "
                      f"it are stored, not laddered"})
        return status

    async def _capture(self, sensor: Sensor, now: datetime) -> dict[str, Any] | None:
        """The installation baseline captured from the sensor's first plausible readings (median of the first
        `baseline.capture_samples` per axis, since its reset if it had one), once there are enough; its instance.

        Read from history (the reading that triggers it is stored already), so a restart or an upgrade that meets a
        sensor without a baseline takes its first readings, never the current lean as the zero."""
        if sensor.kind not in (TILT, CRACK) or self.baseline_of(sensor).known:
            return None
        n = self.cfg.baseline.capture_samples
        names = self.baseline_attrs(sensor)
        held = sensor.baseline
        since = parse_iso(held.since) if held is not None and held.since else \
            self.registry.baseline_at(sensor.tenant, sensor.id)
        query = TemporalQuery(ids=(sensor.id,), attrs=tuple(iri(n) for n in names), dataset_ids=("@none",),
                              time_from=to_micros(since) if since else None, time_to=to_micros(now) + 86_400_000_000,
                              limit_instances=4 * n)
        entities, _ = await self.store.temporal_query(sensor.tenant, query)
        values: dict[str, list[float]] = {}
        for entity in entities:
            for attr, series in entity.attrs.items():
                name = short(attr)
                for inst in series.instances:
                    unit = inst.get("unitCode") if isinstance(inst.get("unitCode"), str) else None
                    checked = self.checks.check(name, inst.get("value"), unit) if self.checks.cfg.enabled \
                        else (inst.get("value"), 1.0)
                    if isinstance(checked, tuple) and isinstance(checked[0], int | float):
                        values.setdefault(name, []).append(float(checked[0]))
        if len(values.get(names[0], [])) < n:
            return None
        offsets = {name: statistics.median(found[:n]) for name, found in values.items() if found}
        at = to_iso(now)
        sensor.baseline = Baseline(offsets, "captured", at, n)
        return baseline_instance(sensor.baseline)

    async def set_baseline(self, sensor: Sensor, offsets: dict[str, float] | None, actor: str,
                           since: datetime | None = None) -> Baseline:
        """Set the sensor's installation baseline: `offsets` given (explicit), else none known from `since` on (it is
        captured from the readings after it) or zero (`baseline.mode = "zero"`). Written on the sensor entity."""
        now = self.clock.now()
        if offsets is not None:
            baseline = Baseline(dict(offsets), "explicit", to_iso(now))
        elif self.cfg.baseline.mode == "zero":
            baseline = Baseline({}, "zero", to_iso(now))
        else:
            baseline = Baseline({}, "capturing", to_iso(now), since=to_iso(since or now))
        sensor.baseline = baseline
        outcome = (await self.store.mutate(sensor.tenant, [Mutation(sensor.id, _op(
            [(iri(INSTALL_BASELINE_ATTR), baseline_instance(baseline))]))], Context(actor=actor)))[0]
        if isinstance(outcome, Exception):
            raise outcome
        return baseline

    # -- thermal models (SHM-R7) ------------------------------------------------------------------------------------
    def thermal_attrs(self, sensor: Sensor) -> list[str]:
        a = self.cfg.attributes
        return {TILT: [a.tilt_x, a.tilt_y], CRACK: [a.crack]}.get(sensor.kind or "", [])

    async def ensure_models(self, sensor: Sensor, now: datetime, force: bool = False) -> bool:
        """Fit the sensor's models that are due; True when a model or its status changed."""
        t = self.cfg.thermal
        if not t.enabled:
            return False
        due = [a for a in self.thermal_attrs(sensor) if force or self._fit_due(sensor, a, now)]
        if not due:
            return False
        for attr in due:
            sensor.fit_attempted[attr] = now
        hours = await self._hourly(sensor, due, now)
        changed = False
        for attr in due:
            changed |= self._apply_fit(sensor, attr, hours.get(attr, []), now)
        return changed

    def _fit_due(self, sensor: Sensor, attr: str, now: datetime) -> bool:
        t = self.cfg.thermal
        model = sensor.models.get(attr)
        if model is not None:
            return now - parse_iso(model.fitted_at) >= timedelta(hours=t.refit_hours)
        tried = sensor.fit_attempted.get(attr)
        return tried is None or now - tried >= timedelta(hours=t.retry_hours)

    async def _hourly(self, sensor: Sensor, attrs: list[str], now: datetime) -> dict[str, list[Any]]:
        start = (now - timedelta(days=self.cfg.thermal.window_days)).replace(minute=0, second=0, microsecond=0)
        baseline = self.registry.baseline_at(sensor.tenant, sensor.id)
        if baseline is not None and baseline > start:  # a replaced device: the old one's history is not its own
            start = baseline
        temp = self.cfg.attributes.temperature
        means = await evidence.bucket_means(self.store, sensor.tenant, sensor.id, [*attrs, temp], start, now, 3600)
        return {a: pair_hours(means.get(a, []), means.get(temp, [])) for a in attrs}

    def _apply_fit(self, sensor: Sensor, attr: str, hours: list[Any], now: datetime) -> bool:
        t = self.cfg.thermal
        policy = FitPolicy(t.min_days, t.min_hours, t.min_temperature_range_c, t.clip_sigmas)
        channel = TILT if sensor.kind == TILT else CRACK
        previous = sensor.models.get(attr)
        result = fit(hours, policy, now, previous, self.ladder_of(sensor, channel).interest)
        self.stats["fits"] += 1
        if isinstance(result, NoModel):
            before = sensor.model_status.get(attr)
            if previous is None:
                sensor.model_status[attr] = result.reason
            else:  # keep using the last good model; say why it was not refreshed
                sensor.model_status[attr] = f"refit failed, previous model kept: {result.reason}"
            return before != sensor.model_status[attr]
        sensor.models[attr] = result
        sensor.model_status.pop(attr, None)
        return True

    def models_instance(self, sensor: Sensor, now: datetime) -> dict[str, Any]:
        value: dict[str, Any] = {a: m.to_json() for a, m in sensor.models.items()}
        for attr, reason in sensor.model_status.items():
            value.setdefault(attr, {})["status"] = reason
        return {"type": "Property", "value": value, "observedAt": to_iso(now)}

    # -- rule events, tasks (SHM-R4 spikes, SHM-R5) ----------------------------------------------------------------
    async def _record_event(self, event: RuleMatched | RuleSpike | RuleCleared) -> None:
        kind = "matched" if isinstance(event, RuleMatched) else "spike" if isinstance(event, RuleSpike) else "cleared"
        record: dict[str, Any] = {"event": kind, "rule": event.rule_id,
                                  "previous": event.evidence.get("previous")}
        if isinstance(event, RuleSpike):  # the excursion's peak; the reading that ended it is `endValue` (QA5 F13e)
            record.update(level=event.level, kind=event.kind,
                          value=event.evidence.get("peak", event.evidence.get("value")),
                          endValue=event.evidence.get("value"))
        elif not isinstance(event, RuleCleared):
            record.update(level=event.level, kind=event.kind,
                          value=event.evidence.get("value", event.evidence.get("peak")))
        sensor = self.registry.sensor(event.tenant, event.entity_id)
        if sensor is not None:  # the event log is history of the sensor (a user's rule may watch anything)
            at = event.observed_at or to_iso(self.clock.now())
            inst = {"type": "Property", "value": record, "observedAt": at,
                    "datasetId": f"{DATASET_PREFIX}event:{event.rule_id}:{kind}"}
            await self.store.append_history(event.tenant, event.entity_id, sensor.types,
                                            [(iri(evidence.EVENT_ATTR), inst)])
            self.stats["events"] += 1
        if isinstance(event, RuleMatched) and event.kind == "safety" and event.level in LEVELS:
            facility = event.parent_id or (sensor.facility_id if sensor else None)
            if facility is not None:
                await self._tasks_for_alarm(event, facility)

    async def _tasks_for_alarm(self, event: RuleMatched, facility: str) -> None:
        t = self.cfg.tasks
        reason = {"source": "alarm", "rule": event.rule_id, "sensor": event.entity_id, "level": event.level,
                  "observedAt": event.observed_at, "value": event.evidence.get("value")}
        if level_rank(event.level) >= level_rank(t.field_check_level):
            await self.ensure_task(event.tenant, facility, "field-check", reason)
        if t.evacuation_level is not None and event.level == t.evacuation_level:
            await self.ensure_task(event.tenant, facility, "evacuation-decision", reason)

    async def ensure_task(self, tenant: str, facility: str, kind: str, reason: dict[str, Any],
                          actor: str = ACTOR) -> Any:
        """The open task of this kind for the facility, created if there is none (one per kind)."""
        now = self.clock.now()
        task = self.tasks.open_for(tenant, facility, kind)
        if task is None:
            due = now + timedelta(hours=self.cfg.tasks.due_hours.get(kind, 168.0))
            task = self.tasks.new(tenant, facility, kind, to_iso(now), to_iso(due), actor, reason)
        else:
            task.note(to_iso(now), "reason-added", actor, reason=reason)
        await self.tasks.save(task)
        return task

    # -- the daily grade and the stuck check ------------------------------------------------------------------------
    async def grade_facility(self, tenant: str, facility_id: str) -> dict[str, Any]:
        """Compute, record and act on one facility's data grade now (the worker's order)."""
        facility = self.registry.facility(tenant, facility_id)
        if facility is None:
            raise NotFound(f"시설물 {facility_id} 없음 / facility {facility_id} is not monitored")
        now = self.clock.now()
        for sensor in self.registry.sensors_of(tenant, facility_id):
            if await self.ensure_models(sensor, now):
                _check(await self.store.mutate(tenant, [Mutation(sensor.id, _op(
                    [(iri("thermalCompensation"), self.models_instance(sensor, now))]))], Context(actor=ACTOR)))
        graded = await self.grader.grade(facility, now)
        self.stats["grades"] += 1
        result = graded.result
        if result["emergency"]["recommended"] and not self._recently_inspected(tenant, facility_id, result["grade"]):
            reason = {"source": "data-grade", "grade": result["grade"], "score": result["score"],
                      "legalGrade": facility.legal_grade, "reasons": result["emergency"]["reasons"]}
            await self.ensure_task(tenant, facility_id, "emergency-inspection", reason)
        return result

    def _recently_inspected(self, tenant: str, facility_id: str, grade: str | None) -> bool:
        """An emergency inspection completed within `emergency_repeat_days` for this grade or a worse one:
        the recommendation is not repeated every day while the officer's findings stand."""
        since = to_iso(self.clock.now() - timedelta(days=self.cfg.tasks.emergency_repeat_days))
        for task in self.tasks.list(tenant, (COMPLETED,), facility_id, "emergency-inspection"):
            if (task.closed_at or "") >= since and grade is not None and \
                    GRADES.index(grade) <= GRADES.index(task.reason.get("grade") or "E"):
                return True
        return False

    # -- official inspections (§2.2) -------------------------------------------------------------------------------
    def today(self) -> date:
        """Today in the domain's time zone (Asia/Seoul) on the platform clock: the schedule's today."""
        return self.clock.now().astimezone(ZoneInfo(self.cfg.grade.timezone)).date()

    def refuse_future(self, days: dict[str, date | None]) -> None:
        """400 for a date after today where only a past event can be meant (an inspection's completion).

        A typo such as 2099 for 2019 would otherwise set the legal grade and make an overdue facility's
        schedule look fine for decades.
        """
        today = self.today()
        late = [f"{name} {day.isoformat()}" for name, day in days.items() if day is not None and day > today]
        if late:
            listed = ", ".join(late)
            raise bad(f"오늘({today.isoformat()}, 한국 시간) 이후의 날짜는 받을 수 없음: {listed}",
                      f"a date after today ({today.isoformat()}, Asia/Seoul) is refused: {listed}")

    async def record_inspection(self, facility: Facility, body: InspectionIn, actor: str,
                                task_id: str | None) -> Facility:
        """Record a completed official inspection: its date for the schedule, the legal grade it set, a record."""
        self.refuse_future({"completedOn": body.completed_on})
        day = body.completed_on.isoformat()
        attrs: dict[str, Any] = {}
        if body.kind in LAST_INSPECTION_ATTR:
            attrs[iri(LAST_INSPECTION_ATTR[body.kind])] = [prop(day)]
        if body.grade is not None:  # an official result: the only way the legal grade changes
            attrs[iri("legalSafetyGrade")] = [prop(body.grade)]
            attrs[iri("legalSafetyGradeDate")] = [prop(day)]
        ctx = Context(actor=actor)
        if attrs:
            outcome = (await self.registry.write(self.store, facility.tenant,
                                                 [Mutation(facility.id, merge_op({"attrs": attrs}))], ctx))[0]
            if isinstance(outcome, Exception):
                raise outcome
            assert outcome.doc is not None
            facility = facility_from_doc(facility.tenant, outcome.doc)
        record = {**body.model_dump(mode="json", by_alias=True), "recordedBy": actor, "recordedAt":
                  to_iso(self.clock.now()), "task": task_id}
        inst = {"type": "Property", "value": record, "observedAt": f"{day}T00:00:00.000000Z",
                "datasetId": f"{DATASET_PREFIX}inspection:{body.kind}"}
        await self.store.append_history(facility.tenant, facility.id, [iri(self.cfg.facility_type)],
                                        [(iri("inspectionRecord"), inst)])
        return facility

    async def grade_all(self) -> int:
        count = 0
        for tenant in sorted(self.registry.tenants):
            for facility in self.registry.facilities(tenant):
                try:
                    await self.grade_facility(tenant, facility.id)
                    count += 1
                except Exception:
                    self.stats["errors"] += 1
                    log.exception("data grade of %s failed", facility.id)
        return count

    async def check_stuck(self) -> list[str]:
        """SHM-R6: a channel with zero variance over `stuck_hours` makes the sensor suspect.

        As documented (QA14 F7): the channel is stuck when its readings in the last `stuck_hours` are all of one
        value and there are at least `stuck_min_samples` of them, whatever their spacing (a sensor reporting every
        2 h, or one that lost an hour's packets, qualifies), and it reported before that window too: a sensor that
        only began reporting has not held its value for `stuck_hours` yet.
        """
        h, now = self.cfg.health, self.clock.now()
        span = timedelta(hours=h.stuck_hours)
        changed: list[str] = []
        for tenant in sorted(self.registry.tenants):
            since = now - timedelta(hours=h.stuck_hours)
            # a sensor whose baseline was reset within the window (a replaced device) is judged on its own data only
            sensors = [s for s in self.registry.sensors(tenant) if s.kind
                       and not ((b := self.registry.baseline_at(tenant, s.id)) is not None and b > since)]
            stats = await evidence.counts(self.store, tenant, [s.id for s in sensors], self._stuck_names(), since, now,
                                          ("min", "max", "totalCount"))
            constant = {s: [n for n, row in by_name.items() if _constant(row, h.stuck_min_samples)]
                        for s, by_name in stats.items()}
            candidates = [s for s, names in constant.items() if names]
            before = await evidence.counts(self.store, tenant, candidates, self._stuck_names(), since - span, since) \
                if candidates else {}
            writes = []
            for sensor in sensors:
                stuck = {n: stats[sensor.id][n]["min"] for n in constant.get(sensor.id, [])
                         if int(before.get(sensor.id, {}).get(n, {}).get("totalCount") or 0) > 0}
                if stuck:  # after a restart the flag comes from the entity, the values from here
                    sensor.stuck_values = stuck
                if bool(stuck) != sensor.stuck:
                    sensor.stuck, sensor.stuck_values = bool(stuck), stuck
                    writes.append(Mutation(sensor.id, _op([(iri(STUCK_ATTR), _stuck_instance(bool(stuck),
                                                                                              sorted(stuck), now))])))
                    changed.append(sensor.id)
            if writes:
                _check(await self.store.mutate(tenant, writes, Context(actor=ACTOR)))
        return changed

    def _stuck_names(self) -> list[str]:
        a = self.cfg.attributes
        by_channel = {"tilt": [a.tilt_x, a.tilt_y], "crack": [a.crack], "vibration": [a.vibration],
                      "temperature": [a.temperature]}
        return [n for ch in self.cfg.health.stuck_channels for n in by_channel[ch]]

    # -- timers -----------------------------------------------------------------------------------------------------
    def next_daily(self, now: datetime) -> datetime:
        g = self.cfg.grade
        zone = ZoneInfo(g.timezone)
        hour, minute = (int(x) for x in g.recompute_at.split(":"))
        local = now.astimezone(zone)
        candidate = datetime.combine(local.date(), time(hour, minute), zone)
        if candidate <= local:
            candidate = datetime.combine(local.date() + timedelta(days=1), time(hour, minute), zone)
        return candidate.astimezone(now.tzinfo)

    async def _arm_daily(self, catch_up: bool = False) -> None:
        now = self.clock.now()
        when = self.next_daily(now)
        if catch_up:  # a run missed while the process was down happens soon after start
            last = next((d.get("at") for t, k, d in await self.store.list_docs(STATE_KIND) if k == "daily"), None)
            if last is not None and now - parse_iso(last) > timedelta(hours=26):
                when = now + timedelta(seconds=60)
        self._timers["daily"] = self.clock.call_at(when, lambda: self.enqueue(self._daily))

    async def _daily(self) -> None:
        try:
            count = await self.grade_all()
            log.info("daily data grades: %d facilities", count)
            await self.store.put_doc(STATE_KIND, self.default_tenant, "daily", {"at": to_iso(self.clock.now())})
        finally:
            if self._unsubscribe:
                await self._arm_daily()

    def _arm_health(self) -> None:
        when = self.clock.now() + timedelta(seconds=self.cfg.health.check_interval_s)
        self._timers["health"] = self.clock.call_at(when, lambda: self.enqueue(self._health_tick))

    async def _health_tick(self) -> None:
        try:
            await self.check_stuck()
        finally:
            if self._unsubscribe:
                self._arm_health()

    # -- facility thresholds (per facility configuration) ------------------------------------------------------------
    async def set_override(self, tenant: str, facility_id: str, override: LadderSet | None,
                           actor: str = ACTOR) -> list[str]:
        """Set (or, with None, remove) a facility's own ladders: they replace alarm rules, so the change is a line
        of the operations audit log (`GET /api/v1/audit?kind=facility-safety`) with its actor, old and new."""
        old = self.overrides.get((tenant, facility_id))
        if override is None:
            await self.store.delete_doc(OVERRIDES_KIND, tenant, facility_id)
            self.overrides.pop((tenant, facility_id), None)
        else:
            await self.store.put_doc(OVERRIDES_KIND, tenant, facility_id, override.model_dump(mode="json"))
            self.overrides[(tenant, facility_id)] = override
        ids = self._refresh_facility_rules()
        await self._seed(tenant)
        rules = sorted(i for i in ids if facility_id in self._variant_owner(i))
        await self.audit.append(self.audit.row(
            tenant, AUDIT_KIND, "thresholds-removed" if override is None else "thresholds-set", actor, outcome="ok",
            facility=facility_id, old=_ladders_json(old), new=_ladders_json(override), rules=rules))
        return rules

    # -- sensors leaving a facility ----------------------------------------------------------------------------------
    async def detach_sensor(self, sensor: Sensor, facility_id: str, actor: str) -> Sensor:
        """Take a sensor off its facility (a replaced or removed device): its relationship to the facility and its
        member go, and every ladder it was assessed on ends as at a handover, with a zero at now (its rules clear:
        an active alarm becomes cleared-unacknowledged) and the removal of that instance. The facility's grade no
        longer counts it; its history stays. A detached sensor that still reports is not assessed at all: its
        readings are stored (ingest), no ladder sees them, its health says so (`detachedFrom`); attaching it to a
        facility again ends that."""
        now = self.clock.now()
        writes: list[Write] = []
        for channel in CHANNELS:
            attr = assessed_attr(channel)
            ladders = self._ladders(sensor, channel)
            for stale in sorted(sensor.written_datasets.get(channel, set()) | set(ladders), key=str):
                writes += [(attr, neutral(channel, now, stale)), (DROP, (attr, stale))]
                if stale in ladders:
                    self._handovers[(sensor.tenant, sensor.id, ladders[stale])] = now
        doc = await self.store.get_entity(sensor.tenant, sensor.id)
        links = [name for name in self.cfg.facility_relationships if facility_of(doc or {}, [name]) == facility_id]
        writes += [(DROP, (iri(name), None)) for name in [*links, "structuralMember"]]
        # its later readings are stored, laddered by no one (not as a member of any facility) until it is attached
        writes.append((iri(DETACHED_ATTR), {"type": "Property", "value": facility_id, "observedAt": to_iso(now)}))
        outcome = (await self.store.mutate(sensor.tenant, [Mutation(sensor.id, _op(writes))], Context(actor=actor)))[0]
        if isinstance(outcome, Exception):
            raise outcome
        for channel in CHANNELS:
            sensor.written_datasets.pop(channel, None)
        if outcome.doc is not None:
            sensor = self.registry.put_sensor_doc(sensor.tenant, outcome.doc)
        await self.audit.append(self.audit.row(sensor.tenant, AUDIT_KIND, "sensor-detached", actor, outcome="ok",
                                               facility=facility_id, sensor=sensor.id))
        return sensor

    async def reset_baseline(self, sensor: Sensor, actor: str, reason: str = "",
                             offsets: dict[str, float] | None = None) -> Sensor:
        """Start a sensor's thermal model afresh (a replaced device that keeps the old id, a re-installed one; QA5 F9).

        The models and their status go, and `thermalBaselineAt` (now) is written on the sensor: fits use only the
        history from then on (`_hourly`), so the new device's readings are assessed raw on the same ladder until
        it has its own 30 days, and the stuck check looks at its own readings only. A stuck flag is lifted.
        Its history stays. Audited (`sensor-baseline-reset`, with the models that were dropped).

        The installation baseline is set again (QA5 F9): to `offsets` when given, else captured from the new
        device's first readings (those before it are stored, not laddered), or zero with `baseline.mode = "zero"`.
        The grade counts the sensor's level and events from now on only (the old device's are not its own)."""
        now = self.clock.now()
        await self.set_baseline(sensor, offsets, actor, since=now)
        old = {a: m.to_json() for a, m in sorted(sensor.models.items())}
        self.registry.set_baseline(sensor.tenant, sensor.id, now)
        sensor.models.clear()
        sensor.fit_attempted.clear()
        sensor.last_temperature = None
        sensor.model_status = {a: f"baseline reset at {to_iso(now)}: history from then on"
                               for a in self.thermal_attrs(sensor)}
        writes: list[Write] = [(iri("thermalCompensation"), self.models_instance(sensor, now)),
                               (iri(BASELINE_ATTR), {"type": "Property", "value": to_iso(now), "observedAt": to_iso(now)})]
        if sensor.stuck:
            sensor.stuck, sensor.stuck_values = False, {}
            writes.append((iri(STUCK_ATTR), _stuck_instance(False, [], now)))
        outcome = (await self.store.mutate(sensor.tenant, [Mutation(sensor.id, _op(writes))], Context(actor=actor)))[0]
        if isinstance(outcome, Exception):
            raise outcome
        await self.audit.append(self.audit.row(sensor.tenant, AUDIT_KIND, "sensor-baseline-reset", actor, outcome="ok",
                                               facility=sensor.facility_id, sensor=sensor.id, reason=reason[:500],
                                               baselineAt=to_iso(now), droppedModels=old,
                                               installationBaseline=self.baseline_of(sensor).to_json()))
        return sensor

    def _variant_owner(self, rule_id: str) -> str:
        return next((f for (_, f, _), v in self.facility_variants.items() if v.rule_id == rule_id), "")


def baseline_instance(baseline: Baseline) -> dict[str, Any]:
    """The stored `installationBaseline` (QA5 F9): offsets per measured attribute, in the device's unit."""
    out: dict[str, Any] = {"type": "Property", "value": dict(baseline.offsets), "observedAt": baseline.at,
                           iri("source"): {"type": "Property", "value": baseline.source}}
    if baseline.samples:
        out[iri("samples")] = {"type": "Property", "value": baseline.samples}
    if baseline.since:
        out[iri("since")] = {"type": "Property", "value": baseline.since}
    return out


def _ladders_json(ladders: LadderSet | None) -> dict[str, Any] | None:
    return ladders.model_dump(mode="json", exclude_none=True) if ladders is not None else None


def _op(writes: list[Write]) -> ApplyFn:
    """One sensor's writes as one mutation: instances in order, then the dropped (attribute, datasetId)s."""
    return write_op([w for w in writes if w[0] != DROP], [w[1] for w in writes if w[0] == DROP])


def _check(outcomes: list[Outcome | Exception]) -> None:
    for outcome in outcomes:
        if isinstance(outcome, NotFound):
            log.info("facility-safety write skipped: %s", outcome)
        elif isinstance(outcome, Exception):
            raise outcome


def _constant(row: dict[str, Any], min_samples: int) -> bool:
    """The readings of a window (one aggregate row): at least `min_samples`, all of one value (QA14 F7)."""
    low, high = row.get("min"), row.get("max")
    return int(row.get("totalCount") or 0) >= min_samples and low is not None and low == high


def _stuck_instance(stuck: bool, channels: list[str], at: datetime) -> dict[str, Any]:
    return {"type": "Property", "value": stuck, "observedAt": to_iso(at),
            iri("channels"): {"type": "Property", "value": channels}}


def _tenant_variant(variant: Variant, tenant: str, default_tenant: str) -> Variant:
    """Facility rules of other tenants get a tenant mark so that two tenants' ids never collide."""
    if tenant == default_tenant:
        return variant
    mark = hashlib.sha256(tenant.encode()).hexdigest()[:8]
    return Variant(variant.channel, f"{variant.rule_id}.t{mark}", f"{variant.dataset_id}:t{mark}", variant.ladder,
                   variant.persistence, variant.label)


def _with_tenant(rule: Rule, tenant: str, enabled: bool = True) -> Rule:
    return replace(rule, tenant=tenant, enabled=enabled)
