"""Assembles ucity from its parts for one process: store, bus publisher, NGSI-LD services.

`core/` stays free of concrete parts; this module is where they are chosen (by configuration)
and registered on the platform in start order.
"""

from __future__ import annotations

from pathlib import Path

from ucity.core.clock import Clock
from ucity.core.config import Settings
from ucity.core.platform import Platform
from ucity.store import open_store
from ucity.store.publisher import CommitPublisher

CORE_CONTEXT_FILE = Path(__file__).parent / "ngsild" / "ngsi-ld-core-context-v1.9.jsonld"


class Ucity:
    """One ucity process: the platform and the services the server exposes."""

    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        from ucity.ngsild.api import NgsiLdApi
        from ucity.ngsild.contexts_api import build_context_services
        from ucity.ngsild.subscriptions import SubscriptionService
        from ucity.ngsild.temporal import TemporalApi

        self.settings = settings
        self.platform = Platform(settings, clock)
        self.store = open_store(settings, self.platform.clock)
        self.platform.add("store", self.store)
        # Consumers of committed changes start before the publisher and so stop after it: on stop the
        # publisher hands them every committed change (alarms consume what rules decide).
        self._add_alarms(settings)
        self._add_rules(settings)
        self.publisher = CommitPublisher(self.store, self.platform.bus)
        self.platform.add("publisher", self.publisher)
        self.resolver, self.contexts = build_context_services(self.store, settings)
        self.platform.add("contexts", self.contexts)
        self.ngsild = NgsiLdApi(self.store, self.resolver, settings.ngsild)
        self.temporal = TemporalApi(self.ngsild)
        self.subscriptions = SubscriptionService(self.ngsild, self.platform)
        self.platform.add("subscriptions", self.subscriptions)
        self._add_ingest(settings)

    def _add_rules(self, settings: Settings) -> None:
        """The rules engine (ucity/rules/README.md). Registered before the publisher so that, on stop,
        the publisher hands it every committed change before the engine writes its last snapshots."""
        from ucity.rules.api import RulesApi
        from ucity.rules.engine import RulesEngine

        self.rules = RulesEngine(self.store, self.platform.bus, self.platform.clock, settings.rules,
                                 settings.ngsild.default_tenant)
        self.platform.add("rules", self.rules)
        self.rules_api = RulesApi(self.rules)

    def _add_ingest(self, settings: Settings) -> None:
        """Devices in (docs/devices.md): the IoT Agent HTTP API, health and stats; MQTT when mqtt.url is set."""
        from ucity.ingest.mqtt import MqttSource
        from ucity.ingest.service import IngestService

        self.ingest = IngestService(self.platform, self.store)
        self.platform.add("ingest", self.ingest)
        self.mqtt: MqttSource | None = None
        if settings.mqtt.url:
            self.mqtt = MqttSource(self.ingest, settings.mqtt, settings.ingest.max_batch)
            self.platform.add("mqtt", self.mqtt)

    def _add_alarms(self, settings: Settings) -> None:
        """Alarms, Alert entities, escalation and notifiers (ucity/alarms/README.md); it also turns the
        ingest's device-health events into fault alarms (a bus subscription, independent of start order)."""
        from ucity.alarms.api import AlarmApi
        from ucity.alarms.service import AlarmService

        self.alarms = AlarmService(self.platform, self.store)
        self.platform.add("alarms", self.alarms)
        self.alarms_api = AlarmApi(self.alarms, settings.ngsild.default_tenant)

    async def start(self) -> None:
        await self.platform.start()
        await self.rules.resume()  # rule timers that came due while down, now that every subscriber runs

    async def stop(self) -> None:
        await self.platform.stop()
