"""The MQTT source of ingest: an aiomqtt client of a real broker (FIWARE IoT Agent JSON topics).

Subscribes with QoS 1 to `/+/+/attrs`, `/+/+/attrs/+`, `/json/+/+/attrs`, `/json/+/+/attrs/+`
(measures) and `/+/+/cmdexe` (command results); with `mqtt.shared_group` as shared subscriptions
(`$share/<group>/...`), so that several ucity processes share the measures (docs/operations.md).
Messages are queued and committed in batches (one store call for everything that arrived
meanwhile, at most `ingest.max_batch`). QoS 1 messages are
acknowledged manually, after their batch is committed (or rejected), with a persistent session
(`clean_session=False`), so a message the process dies on is delivered again.

Garbage never stops the consumer: every failure is counted per device with its reason and the
loop goes on. A lost connection is retried with jittered exponential backoff (the connection
state change is logged once, not every attempt).

Commands: a device's `commands` are attributes of its entity. Writing one through NGSI-LD (a
PATCH seen on the bus as `EntitiesChanged`) sets `<cmd>_status` to PENDING and publishes
`{"<cmd>": value}` to `/<apikey>/<device_id>/cmd`; the device answers on `/cmdexe` with
`{"<cmd>": result}`, which sets `<cmd>_status` OK and `<cmd>_info` to the result.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import aiomqtt
import orjson

from ucity.core.bus import Context, EntitiesChanged
from ucity.core.clock import to_iso
from ucity.core.config import MqttSettings
from ucity.core.errors import UcityError
from ucity.ingest.decode import (
    COMMAND_INFO,
    COMMAND_STATUS,
    NOT_AN_OBJECT,
    UNKNOWN_COMMAND,
    DecodeError,
    Rejection,
    parse_json,
    parse_single_value,
)
from ucity.ingest.model import DeviceProfile
from ucity.ingest.service import IngestService, Received, stats_key
from ucity.ingest.writer import INGEST_ACTOR, attrs_op, expand

log = logging.getLogger(__name__)
SUBSCRIPTIONS = ("/+/+/attrs", "/+/+/attrs/+", "/json/+/+/attrs", "/json/+/+/attrs/+", "/+/+/cmdexe")
QOS = 1
PUBLISH_TIMEOUT_S = 10.0


def topic_filters(shared_group: str = "") -> list[str]:
    """The filters ucity subscribes to; with a shared group, shared subscriptions (`$share/<group>/...`,
    Mosquitto 2 and MQTT 5): the processes of one group each get a share of the measures (each with its
    own client id and persistent session)."""
    return [f"$share/{shared_group}/{topic}" if shared_group else topic for topic in SUBSCRIPTIONS]


@dataclass(frozen=True, slots=True)
class Topic:
    apikey: str
    device_id: str
    kind: str  # attrs | cmdexe
    object_id: str | None = None


def parse_topic(topic: str) -> Topic | None:
    """The parts of an IoT Agent JSON topic, or None for any other topic."""
    parts = topic.split("/")
    if len(parts) < 4 or parts[0] != "":
        return None
    rest = parts[1:]
    if rest[0] == "json" and len(rest) in (4, 5) and rest[3] == "attrs":
        rest = rest[1:]
    if not rest[0] or not rest[1]:
        return None
    if len(rest) == 3 and rest[2] in ("attrs", "cmdexe"):
        return Topic(rest[0], rest[1], rest[2])
    if len(rest) == 4 and rest[2] == "attrs" and rest[3]:
        return Topic(rest[0], rest[1], "attrs", rest[3])
    return None


def backoff_delay(attempt: int, low: float, high: float) -> float:
    """Exponential backoff with equal jitter: half the step fixed, half random."""
    step = min(high, low * 2.0 ** min(attempt, 30))
    return step / 2 + random.uniform(0, step / 2)


@dataclass(frozen=True, slots=True)
class Broker:
    host: str
    port: int
    username: str | None
    password: str | None
    tls: bool

    @classmethod
    def from_url(cls, url: str) -> Broker:
        parts = urlsplit(url)
        tls = parts.scheme == "mqtts"
        return cls(parts.hostname or "127.0.0.1", parts.port or (8883 if tls else 1883),
                   unquote(parts.username) if parts.username else None,
                   unquote(parts.password) if parts.password else None, tls)

    def __str__(self) -> str:  # never the credentials
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Incoming:
    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int  # which connection it came on: acks go only to that one


class MqttSource:
    """A platform component: the broker connection, the batching worker and the command bridge."""

    def __init__(self, service: IngestService, settings: MqttSettings, max_batch: int = 500) -> None:
        self.service = service
        self.settings = settings
        self.broker = Broker.from_url(settings.url)
        self.max_batch = max_batch
        self._queue: asyncio.Queue[Incoming] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._side_tasks: set[asyncio.Task[None]] = set()
        self._client: aiomqtt.Client | None = None
        self._generation = 0
        self._unsubscribe: Any = None
        self.connected = asyncio.Event()
        self.received = 0
        self.processed = 0
        self.reconnects = 0

    # -- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        self._unsubscribe = self.service.platform.bus.subscribe(EntitiesChanged, self._on_changes)
        self._tasks = [asyncio.create_task(self._connection_loop(), name="ucity-mqtt-connection"),
                       asyncio.create_task(self._worker(), name="ucity-mqtt-worker")]

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        for task in [*self._tasks, *self._side_tasks]:
            task.cancel()
        for task in [*self._tasks, *self._side_tasks]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []

    def health(self) -> dict[str, Any]:
        return {"ok": self.connected.is_set(), "broker": str(self.broker), "connected": self.connected.is_set(),
                "received": self.received, "processed": self.processed, "queued": self._queue.qsize(),
                "reconnects": self.reconnects}

    async def drain(self) -> None:
        """Wait until everything received so far is processed (for tests)."""
        while self.processed < self.received:
            await asyncio.sleep(0.005)

    # -- connection --------------------------------------------------------------------------------
    def _new_client(self) -> aiomqtt.Client:
        client = aiomqtt.Client(
            self.broker.host, self.broker.port, username=self.broker.username, password=self.broker.password,
            identifier=self.settings.client_id, clean_session=False, keepalive=self.settings.keepalive_s,
            tls_context=ssl.create_default_context() if self.broker.tls else None,
        )
        # Acknowledge QoS 1 only after the commit; aiomqtt does not expose this, paho does.
        paho = getattr(client, "_client", None)
        if paho is not None and hasattr(paho, "manual_ack_set"):
            paho.manual_ack_set(True)
        return client

    async def _connection_loop(self) -> None:
        attempt = 0
        while True:
            try:
                async with self._new_client() as client:
                    await self._on_connected(client)
                    attempt = 0
                    async for message in client.messages:
                        self._enqueue(message)
            except aiomqtt.MqttError as exc:
                if self.connected.is_set() or attempt == 0:
                    log.warning("MQTT broker %s: connection lost or refused (%s); reconnecting with backoff",
                                self.broker, exc)
            except Exception:  # anything else (TLS, a client bug) must not end the source for good
                log.exception("MQTT broker %s: unexpected client failure; reconnecting with backoff", self.broker)
            finally:
                self._client = None
                self.connected.clear()
            await asyncio.sleep(backoff_delay(attempt, self.settings.reconnect_min_s, self.settings.reconnect_max_s))
            attempt += 1
            self.reconnects += 1

    async def _on_connected(self, client: aiomqtt.Client) -> None:
        topics = topic_filters(self.settings.shared_group)
        await client.subscribe([(topic, QOS) for topic in topics])
        self._generation += 1
        self._client = client
        self.connected.set()
        log.info("MQTT broker %s connected, subscribed to %s", self.broker, ", ".join(topics))

    def _enqueue(self, message: aiomqtt.Message) -> None:
        payload = message.payload if isinstance(message.payload, bytes) else str(message.payload or "").encode()
        self.received += 1
        self._queue.put_nowait(Incoming(str(message.topic), payload, message.mid, message.qos, self._generation))

    def _ack(self, items: list[Incoming]) -> None:
        paho = getattr(self._client, "_client", None)
        if paho is None:
            return
        for item in items:
            if item.qos > 0 and item.generation == self._generation:
                paho.ack(item.mid, item.qos)

    # -- measures ------------------------------------------------------------------------------------
    async def _worker(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._process(batch)
                self._ack(batch)
            except Exception:  # the store failed: leave unacknowledged, the broker redelivers on reconnect
                log.exception("MQTT batch of %d message(s) not processed", len(batch))
            finally:
                self.processed += len(batch)

    async def _process(self, batch: list[Incoming]) -> None:
        measures: list[Received] = []
        for item in batch:
            topic = parse_topic(item.topic)
            if topic is None:
                self.service.reject_unknown("", item.topic[:100], f"not an IoT Agent topic: {item.topic[:100]}", "mqtt")
            elif topic.kind == "cmdexe":
                await self._command_result(topic, item.payload)
            else:
                received = self._measure(topic, item.payload)
                if received is not None:
                    measures.append(received)
        if measures:
            await self.service.ingest(measures)

    def _measure(self, topic: Topic, payload: bytes) -> Received | None:
        try:
            resolved = self.service.resolve(topic.apikey, topic.device_id)
        except UcityError as exc:
            self.service.reject_unknown(topic.apikey, topic.device_id, exc.detail, "mqtt")
            return None
        try:
            value = (parse_json(payload) if topic.object_id is None
                     else {topic.object_id: parse_single_value(payload)})
        except DecodeError as exc:
            self.service.stats.rejected(stats_key(resolved.profile), [Rejection(exc.reason, exc.detail)], "mqtt")
            return None
        return Received(resolved, value, "mqtt")

    # -- commands ------------------------------------------------------------------------------------
    async def _on_changes(self, event: EntitiesChanged) -> None:
        if event.context.actor == INGEST_ACTOR:
            return  # our own writes (entity creation, status updates) are not commands
        for change in event.changes:
            if change.operation != "update":
                continue
            profile = self.service.registry.profile_by_entity(change.tenant, change.entity_id)
            if profile is None or not profile.commands:
                continue
            names = {expand(c.name): c.name for c in profile.commands}
            for iri, instance in change.instances:
                if iri in names:
                    self._spawn(self._send_command(profile, names[iri], instance.get("value"), event.context))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    async def _send_command(self, profile: DeviceProfile, name: str, value: Any, cause: Context) -> None:
        context = cause.child(INGEST_ACTOR)
        client = self._client
        if client is None:
            await self._set_status(profile, name, "ERROR", "the MQTT broker is not connected", context)
            return
        await self._set_status(profile, name, "PENDING", None, context)
        topic = f"/{profile.apikey}/{profile.device_id}/cmd"
        try:
            await client.publish(topic, orjson.dumps({name: value}), qos=QOS, timeout=PUBLISH_TIMEOUT_S)
        except aiomqtt.MqttError as exc:
            await self._set_status(profile, name, "ERROR", f"publish failed: {exc}", context)
            return
        log.info("command %s sent to %s on %s", name, profile.device_id, topic)

    async def _command_result(self, topic: Topic, payload: bytes) -> None:
        profile = self.service.registry.profile(topic.apikey, topic.device_id)
        if profile is None:
            self.service.reject_unknown(topic.apikey, topic.device_id, "command result of an unknown device", "mqtt")
            return
        try:
            results = parse_json(payload)
            if not isinstance(results, dict):
                raise DecodeError(NOT_AN_OBJECT, "a command result must be a JSON object {command: result}")
        except DecodeError as exc:
            self.service.stats.rejected(stats_key(profile), [Rejection(exc.reason, exc.detail)], "mqtt")
            return
        known = {c.name for c in profile.commands}
        for name, result in results.items():
            if name not in known:
                self.service.stats.rejected(stats_key(profile), [Rejection(
                    UNKNOWN_COMMAND, f"{name!r} is not a command of this device", field=name)], "mqtt")
                continue
            await self._set_status(profile, name, "OK", result, Context(actor=INGEST_ACTOR))

    async def _set_status(self, profile: DeviceProfile, name: str, status: str, info: Any, context: Context) -> None:
        now = self.service.platform.clock.now()
        attrs: dict[str, dict[str, Any]] = {name + COMMAND_STATUS: {"type": "Property", "value": status,
                                                                   "observedAt": to_iso(now)}}
        if info is not None:
            attrs[name + COMMAND_INFO] = {"type": "Property", "value": info, "observedAt": to_iso(now)}
        result = await self.service.writer.apply(profile, attrs_op(attrs), context)
        if isinstance(result, Exception):
            log.warning("command %s of %s: status not written: %s", name, profile.device_id, result)
