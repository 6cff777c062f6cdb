"""Assembles ucity from its parts for one process: store, bus publisher, NGSI-LD services.

`core/` stays free of concrete parts; this module is where they are chosen (by configuration)
and registered on the platform in start order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ucity.core.clock import Clock
from ucity.core.config import Settings
from ucity.core.platform import Platform
from ucity.store import open_store
from ucity.store.publisher import CommitPublisher

CORE_CONTEXT_FILE = Path(__file__).parent / "ngsild" / "ngsi-ld-core-context-v1.9.jsonld"


class Ucity:
    """One ucity process: the platform and the services the server exposes."""

    def __init__(self, settings: Settings, clock: Clock | None = None, role: str = "serve") -> None:
        from ucity.ngsild.api import NgsiLdApi
        from ucity.ngsild.contexts_api import build_context_services
        from ucity.ngsild.subscriptions import SubscriptionService
        from ucity.ngsild.temporal import TemporalApi

        self.settings = settings
        self.platform = Platform(settings, clock)
        self.store = open_store(settings, self.platform.clock)
        self.platform.add("store", self.store)
        self._add_bus(settings, role)
        self._add_retention(role)
        # Consumers of committed changes start before the publisher and so stop after it: on stop the
        # publisher hands them every committed change (alarms consume what rules decide).
        self._add_alarms(settings)
        self._add_rules(settings)
        self._add_domains()
        self._add_ops()
        self._add_forwarder(settings, role)
        self.publisher = CommitPublisher(self.store, self.platform.bus)
        self.publisher.add_drainer(self.rules.drain)  # its urgent snapshots are written just after publishing
        self.platform.add("publisher", self.publisher)
        self.resolver, self.contexts = build_context_services(self.store, settings)
        self.platform.add("contexts", self.contexts)
        self.ngsild = NgsiLdApi(self.store, self.resolver, settings.ngsild, privacy=settings.privacy,
                                personal_types=self.platform.privacy)  # settings ∪ declared (QA13 F1)
        self.temporal = TemporalApi(self.ngsild)
        self.subscriptions = SubscriptionService(self.ngsild, self.platform)
        self.publisher.add_drainer(self.subscriptions.drain)  # notifications matched but not yet queued
        self.platform.add("subscriptions", self.subscriptions)
        self._add_ingest(settings)
        self._add_cluster(settings, role)

    def _add_retention(self, role: str) -> None:
        """Retention limits (ucity/store/retention.py): right after the store (and the bus), before the domains,
        which declare their defaults with it in `setup`; it stops after them, just before the store. A scale-out
        worker keeps the declarations but does not sweep: the API process does."""
        from ucity.store.retention import RetentionService

        self.retention = RetentionService(self.platform, self.store, scheduled=role != "worker")
        self.platform.add("retention", self.retention)

    def _add_rules(self, settings: Settings) -> None:
        """The rules engine (ucity/rules/README.md). Registered before the publisher so that, on stop,
        the publisher hands it every committed change before the engine writes its last snapshots."""
        from ucity.rules.api import RulesApi
        from ucity.rules.engine import RulesEngine

        self.rules = RulesEngine(self.store, self.platform.bus, self.platform.clock, settings.rules,
                                 settings.ngsild.default_tenant)
        self.platform.add("rules", self.rules)
        self.rules_api = RulesApi(self.rules)

    def _add_domains(self) -> None:
        """Domain services (ucity/domains/README.md): `setup(platform, config)` of each enabled package. After
        the rules engine and alarms (domains register default rules and contact data with them), before the
        publisher, so that, like the rules engine, their components see every committed change until stop."""
        from ucity.domains import setup_domains

        self.domains = setup_domains(self.platform)

    def _add_ingest(self, settings: Settings) -> None:
        """Devices in (docs/devices.md): the IoT Agent HTTP API, health and stats; MQTT when mqtt.url is set."""
        from ucity.ingest.mqtt import MqttSource
        from ucity.ingest.service import IngestService

        self.ingest = IngestService(self.platform, self.store)
        self.registry_sync: Any = None
        if self.stream is not None:  # scale-out: provisioning through any process is known to every process
            from ucity.cluster.registry_sync import RegistrySync

            self.registry_sync = RegistrySync(self.ingest.registry, self.stream, self.platform.clock,
                                              lambda: settings.ingest.registry_refresh_s)
            self.platform.add("registrySync", self.registry_sync)
        self.platform.add("ingest", self.ingest)
        self.mqtt: MqttSource | None = None
        if settings.mqtt.url:
            self.mqtt = MqttSource(self.ingest, settings.mqtt, settings.ingest.max_batch)
            self.platform.add("mqtt", self.mqtt)

    def _add_ops(self) -> None:
        """The operation centre (ucity/ops/README.md): events, CCTV, agency linkage, footage grants, audit. After
        the alarms, whose notifier contract delivers its packages and whose changes become events (PLAT-R9);
        before the publisher, so that its camera index sees every committed change until stop."""
        from ucity.ops import OperationsCenter, OpsApi

        self.ops = OperationsCenter(self.platform, self.store, self.alarms)
        self.platform.add("ops", self.ops)
        self.ops_api = OpsApi(self.ops)

    def _add_alarms(self, settings: Settings) -> None:
        """Alarms, Alert entities, escalation and notifiers (ucity/alarms/README.md); it also turns the
        ingest's device-health events into fault alarms (a bus subscription, independent of start order)."""
        from ucity.alarms.api import AlarmApi
        from ucity.alarms.service import AlarmService

        self.alarms = AlarmService(self.platform, self.store)
        self.platform.add("alarms", self.alarms)
        from ucity.alarms.alert_privacy import AlertPrivacyMigration

        # Alerts about a person written before QA10 F2 (exact place, the person's id): made private at start, before
        # serving, once per tenant and settings across processes (ucity/alarms/alert_privacy.py)
        self.platform.add("alertPrivacy", AlertPrivacyMigration(self.store, self.platform.clock, self.alarms.privacy))
        self.alarms_api = AlarmApi(self.alarms, settings.ngsild.default_tenant)

    def _add_bus(self, settings: Settings, role: str) -> None:
        """Scale-out (ucity/cluster, docs/operations.md) when `bus.url` names NATS: the JetStream connection,
        started right after the store and stopped just before it, so everything between may use it."""
        self.stream: Any = None
        if not settings.bus.url:
            if role == "worker":
                raise ValueError("ucity worker needs bus.url (a NATS JetStream server)")
            return
        if settings.store_url.startswith("sqlite://"):
            raise ValueError("bus.url (scale-out) needs a store every process shares: store.url = postgresql://...")
        from ucity.cluster.jetstream import JetStream
        from ucity.cluster.worker import worker_name

        self.stream = JetStream(settings.bus, f"ucity-{role}-{worker_name(settings.bus.worker_id)}")
        self.platform.add("bus", self.stream)

    def _add_forwarder(self, settings: Settings, role: str) -> None:
        """`serve` in scale-out: its own commits go onto the event stream, to the workers owning the
        entities; its rules, alarms and device health judge no entity. A consumer of committed changes,
        so registered before the publisher (it stops after it, forwarding the last ones)."""
        if self.stream is None or role == "worker":
            return
        from ucity.cluster.producer import ChangeForwarder

        forwarder = ChangeForwarder(self.platform.bus, self.stream, settings.bus.partitions)
        self.platform.add("forwarder", forwarder)
        # The notifications this process stores (an operator's follow-ups, the agencies' packages) are sent by the
        # worker owning their entity, which also sends them again after a crash.
        self.alarms.dispatcher.hand_over = forwarder.hand_over

    def _add_cluster(self, settings: Settings, role: str) -> None:
        """Scale-out: measures go onto the observation stream (in every process that ingests); a `worker`
        commits the partitions it leases. The worker is registered last: it stops first."""
        self.worker: Any = None
        if self.stream is None:
            return
        from ucity.cluster.producer import StreamMeasureWriter, owns_nothing
        from ucity.cluster.worker import Worker

        self.ingest.writer = StreamMeasureWriter(self.store, self.stream, settings.bus.partitions)
        from ucity.cluster.live import AlarmFanout

        # Every process's alarm stream events reach every API process's stream clients.
        self.platform.add("alarmFanout", AlarmFanout(self.alarms.sse, self.stream, receive=role != "worker"))
        if role == "worker":
            self.worker = Worker(self, self.stream, settings.bus)
            self.platform.add("worker", self.worker)
            return
        for component in (self.rules, self.alarms, self.ingest.monitor, self.subscriptions):
            component.owns = owns_nothing

    async def start(self) -> None:
        await self.platform.start()
        await self.rules.resume()  # rule timers that came due while down, now that every subscriber runs

    async def stop(self) -> None:
        await self.platform.stop()
