"""The MQTT source of ingest: an aiomqtt client of a real broker (FIWARE IoT Agent JSON topics).

Subscribes with QoS 1 to `/+/+/attrs`, `/+/+/attrs/+`, `/json/+/+/attrs`, `/json/+/+/attrs/+`
(measures) and `/+/+/cmdexe`, `/json/+/+/cmdexe` (command results: the IoT Agent JSON manual has
devices publish them on `/json/<apikey>/<device_id>/cmdexe`); with `mqtt.shared_group` as shared subscriptions
(`$share/<group>/...`), so that several ucity processes share the measures (docs/operations.md).
Messages are queued and committed in batches (one store call for everything that arrived
meanwhile, at most `ingest.max_batch`). QoS 1 messages are acknowledged manually, after their
batch is committed (or rejected as garbage), with a persistent session (`clean_session=False`),
so a message the process dies on is delivered again; a message the store could not commit is not
acknowledged, and the connection is dropped so that the broker delivers it again. Two batches
may be in flight: the next one is decoded while the previous one commits, its writes queued to
the store after the previous one's, so each device's measures are committed (and acknowledged)
in the order they arrived. The broker's `max_inflight_messages` bounds how many messages wait
for an acknowledgement: it must cover about two batches (docs/devices.md).

Per message, aiomqtt (pinned < 2.2, with paho-mqtt 2.0) costs more than decoding and committing
it: one event-loop wake-up per packet, three `recv` calls, a task per message for its iterator,
and a `send` per acknowledgement; paho's own packet handling (per-packet state dict, `struct`
formats built per message, an `MQTTMessage`, debug logging, a topic-filter match and two locks)
cost about 12 CPU-µs a message more. `_Client` keeps aiomqtt and paho for the connection (connect,
subscribe, keepalive, disconnect detection, every packet other than a QoS 0/1 PUBLISH) and removes
those: every readable event reads the socket in 256 KiB chunks and splits them into packets itself
(about 1 µs a message), a chunk's messages go to the source's queue in one call, and a batch's
acknowledgements leave in one write.

Garbage never stops the consumer: every failure is counted per device with its reason and the
loop goes on. No message can lose its batch: each is prepared on its own (`_prepare`, and
`_prepare_each` if preparing the batch's measures together fails); a message ucity itself fails
on is rejected as `internal-error` and acknowledged (redelivered, it would only fail again), one
the store cannot take now is left unacknowledged for redelivery (`_failed`). The same holds for the
commit: a batch whose commit raises anything but `Unavailable` is committed again one message at a
time (`_commit_each`), so that a message that fails on its own is rejected and acknowledged instead
of holding its batch for redelivery for ever; a write the store refuses (an error other than
`Unavailable` as its outcome) is counted as `not-written` and acknowledged. A lost connection is
retried with jittered exponential backoff (the connection state change is logged once, not every
attempt). Device health is told of each connection and disconnection: while ucity is not connected no MQTT
device can be heard, so their silence does not count (`HealthMonitor.mqtt_connected`, docs/devices.md).

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
import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import aiomqtt
import orjson
import paho.mqtt.client as paho_mqtt

from ucity.core.bus import Context, EntitiesChanged
from ucity.core.clock import to_iso
from ucity.core.config import MqttSettings
from ucity.core.errors import UcityError, Unavailable
from ucity.core.frozen import fast_init
from ucity.ingest.decode import (
    COMMAND_INFO,
    COMMAND_STATUS,
    INTERNAL_ERROR,
    NOT_AN_OBJECT,
    UNKNOWN_COMMAND,
    DecodeError,
    Rejection,
    parse_json,
    parse_single_value,
)
from ucity.ingest.model import DeviceProfile
from ucity.ingest.service import IngestResult, IngestService, Prepared, Received, stats_key, unknown_device
from ucity.ingest.stats import Key, masked_apikey
from ucity.ingest.writer import INGEST_ACTOR, attrs_op, expand

log = logging.getLogger(__name__)
SUBSCRIPTIONS = ("/+/+/attrs", "/+/+/attrs/+", "/json/+/+/attrs", "/json/+/+/attrs/+", "/+/+/cmdexe",
                 "/json/+/+/cmdexe")
QOS = 1
PUBLISH_TIMEOUT_S = 10.0
PIPELINE = 2  # batches in flight: one committing while the next is decoded
RECV_SIZE = 262144  # bytes asked of the socket per recv (about 1,500 one-measure messages)
READ_CHUNKS = 8  # recv calls per readable event before other callbacks get a turn
TOPIC_CACHE = 100_000  # parsed topics remembered (one per device and topic it sends on)
PUBACK = 0x40


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
    # `/json/<apikey>/<device_id>/...` (the IoT Agent JSON manual's form); an apikey "json" still works without it.
    # `/json/k/attrs/cmdexe` could be either: the prefixed command result is taken (a device id "attrs" and an
    # attribute "cmdexe" of apikey "json" are both unlikely, and the manual names only the prefixed topics).
    if rest[0] == "json" and ((len(rest) in (4, 5) and rest[3] == "attrs") or (len(rest) == 4 and rest[3] == "cmdexe")):
        rest = rest[1:]
    if not rest[0] or not rest[1]:
        return None
    if len(rest) == 3 and rest[2] in ("attrs", "cmdexe"):
        return Topic(rest[0], rest[1], rest[2])
    if len(rest) == 4 and rest[2] == "attrs" and rest[3]:
        return Topic(rest[0], rest[1], "attrs", rest[3])
    return None


def logged_topic(topic: str) -> str:
    """A topic as the log shows it (at most 100 characters): an IoT Agent topic's apikey, the device's credential,
    masked as ingest's other log lines mask it (`masked_apikey`, QA8 F9, QA17 F1)."""
    parsed = parse_topic(topic)
    if parsed is None:
        return topic[:100]
    parts = topic.split("/")
    for at in (1, 2):  # `/<apikey>/...` or `/json/<apikey>/...`
        if parts[at] == parsed.apikey:
            parts[at] = masked_apikey(parsed.apikey)
    return "/".join(parts)[:100]


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


@fast_init
@dataclass(frozen=True, slots=True)
class Incoming:
    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int  # which connection it came on: acks go only to that one


def _fresh_in_packet() -> dict[str, Any]:
    """paho's state of "no packet being read" (as its `_packet_read` resets it after each packet)."""
    return {"command": 0, "have_remaining": 0, "remaining_count": [], "remaining_mult": 1, "remaining_length": 0,
            "packet": bytearray(b""), "to_process": 0, "pos": 0}


class _Client(aiomqtt.Client):
    """aiomqtt's client with its per-message costs removed (see the module docstring).

    Overrides two of aiomqtt 2.1's paho callbacks (the version is pinned): `_on_message` hands the
    paho message to `sink` instead of aiomqtt's queue and iterator, and `_on_socket_open` replaces
    the read callback (paho's, one packet per call) with `_read_available`, which reads the socket
    in large chunks and splits them into packets itself: QoS 0 and 1 PUBLISH packets become
    `Incoming` items handed to `deliver` in lists, one call per chunk; every other packet (CONNACK,
    SUBACK, PINGRESP, PUBACK of our commands, QoS 2) goes to paho's own handler. Iterating
    `messages` then only waits for the disconnection, raising MqttError as before.
    """

    def __init__(self, *args: Any, sink: Callable[[Any], None], deliver: Callable[[list[Incoming]], None],
                 generation: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sink = sink
        self._deliver = deliver
        self.generation = generation
        self._rest = b""  # the start of a packet not yet complete, of socket `_rest_sock`
        self._parts: list[bytes] = []  # chunks after `_rest` of a packet larger than a chunk
        self._missing = 0  # bytes that packet still lacks (0: `_rest` is all there is)
        self._rest_sock: Any = None
        paho: Any = self._client
        # MQTT 5 PUBLISH packets carry properties: those, and any paho without the internals, stay on paho's path.
        self.fast = _paho_supports_fast_path(paho) and paho._protocol in (paho_mqtt.MQTTv31, paho_mqtt.MQTTv311)

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        self._sink(message)

    def _on_socket_open(self, client: Any, userdata: Any, sock: Any) -> None:
        super()._on_socket_open(client, userdata, sock)
        if self.fast:  # runs after aiomqtt's add_reader (same thread-safe queue): replaces its callback
            self._loop.call_soon_threadsafe(self._loop.add_reader, sock.fileno(), self._read_available, client)

    def _read_available(self, client: Any) -> None:
        """Everything the socket holds (up to READ_CHUNKS chunks, then after the other callbacks), as packets.

        Reads until the socket has nothing more (BlockingIOError): a TLS socket may hold decrypted data
        without being readable again."""
        try:
            for _ in range(READ_CHUNKS):
                if client._sock is None:
                    return
                if client._in_packet["command"]:  # a packet paho's own read began, before this callback took over
                    rc = client._packet_read()
                    if rc > 0:
                        client._loop_rc_handle(rc)
                        return
                    if rc == paho_mqtt.MQTT_ERR_AGAIN:
                        return
                    continue
                try:
                    data = client._sock_recv(RECV_SIZE)
                except BlockingIOError:
                    return
                except OSError as exc:  # as paho's _packet_read: the connection is lost
                    log.debug("MQTT: failed to receive on socket: %s", exc)
                    client._loop_rc_handle(paho_mqtt.MQTT_ERR_CONN_LOST)
                    return
                if not data:
                    client._loop_rc_handle(paho_mqtt.MQTT_ERR_CONN_LOST)
                    return
                rc = self._packets(client, data)
                if rc > 0:
                    client._loop_rc_handle(rc)
                    return
            # More may be there without the socket being readable again: continue after the others.
            self._loop.call_soon(self._read_available, client)
        except Exception as exc:  # as aiomqtt's own read callback: a broken connection
            if not self._disconnected.done():
                self._disconnected.set_exception(exc)

    def _packets(self, client: Any, data: bytes) -> int:
        """Handle the complete packets of `data` (after what is left of the previous chunk); keep the rest.
        Returns paho's error code (0: fine)."""
        sock = client._sock
        with client._msgtime_mutex:  # keepalive: the broker was heard from
            client._last_msg_in = paho_mqtt.time_func()
        if self._rest_sock is not sock:  # a new connection: nothing kept belongs to it
            self._rest, self._parts, self._missing, self._rest_sock = b"", [], 0, sock
        if self._missing:  # the rest of a packet larger than a chunk: its chunks are joined once, when complete
            self._parts.append(data)
            if self._missing > len(data):
                self._missing -= len(data)
                return 0
            data, self._parts, self._missing = b"".join(self._parts), [], 0
        buf = self._rest + data if self._rest else data
        size = len(buf)
        pos = 0
        missing = 0
        items: list[Incoming] = []
        generation = self.generation
        rc = 0
        while size - pos >= 2:
            header = buf[pos]
            length = buf[pos + 1]
            start = pos + 2
            if length & 0x80:  # the remaining length takes more bytes (at most 4 in all)
                length &= 0x7F
                shift = 7
                while True:
                    if start >= size:
                        length = -1  # incomplete
                        break
                    byte = buf[start]
                    start += 1
                    length |= (byte & 0x7F) << shift
                    if not byte & 0x80:
                        break
                    if shift == 21:
                        rc = paho_mqtt.MQTT_ERR_PROTOCOL
                        break
                    shift += 7
                if rc or length < 0:
                    break
            stop = start + length
            if stop > size:
                missing = stop - size
                break
            if (header & 0xF6) in (0x30, 0x32) and length >= 2:  # PUBLISH, QoS 0 or 1
                topic_end = start + 2 + ((buf[start] << 8) | buf[start + 1])
                qos = (header >> 1) & 1
                if start + 2 < topic_end <= stop - 2 * qos:
                    raw = buf[start + 2:topic_end]
                    try:
                        topic = raw.decode()
                    except UnicodeDecodeError:  # MQTT topics are UTF-8; what is not cannot be one of ours
                        topic = raw.decode("utf-8", "replace")
                    if qos:
                        items.append(Incoming(topic, buf[topic_end + 2:stop], (buf[topic_end] << 8) | buf[topic_end + 1],
                                              1, generation))
                    else:
                        items.append(Incoming(topic, buf[topic_end:stop], 0, 0, generation))
                    pos = stop
                    continue
            # Any other packet (or a malformed PUBLISH, which paho refuses): paho's own handler, in order.
            if items:
                self._deliver(items)
                items = []
            client._in_packet = {"command": header, "have_remaining": 1, "remaining_count": [], "remaining_mult": 1,
                                 "remaining_length": length, "packet": bytearray(buf[start:stop]), "to_process": 0,
                                 "pos": 0}
            try:
                rc = client._packet_handle()
            finally:
                client._in_packet = _fresh_in_packet()
            pos = stop
            if rc or client._sock is not sock:
                break
        self._rest = buf[pos:] if pos < size else b""
        self._missing = missing if not rc else 0
        if items:
            self._deliver(items)
        return rc


def _paho_supports_fast_path(paho: Any) -> bool:
    """Whether paho has the internals `_Client` uses (paho-mqtt 2.0); else aiomqtt's own path is used."""
    return all(hasattr(paho, name) for name in ("_sock_recv", "_packet_read", "_packet_handle", "_in_packet",
                                                "_loop_rc_handle", "_packet_queue", "_sock", "_msgtime_mutex",
                                                "_protocol"))


def puback_packets(mids: list[int]) -> bytes:
    """MQTT 3.1.1 PUBACK packets of these message ids (0x40 0x02 and the id, big-endian), as one write."""
    return struct.pack(f">{len(mids)}I", *[0x40020000 | mid for mid in mids])


class MqttSource:
    """A platform component: the broker connection, the batching worker and the command bridge."""

    def __init__(self, service: IngestService, settings: MqttSettings, max_batch: int = 500) -> None:
        self.service = service
        self.settings = settings
        self.broker = Broker.from_url(settings.url)
        self.max_batch = max_batch
        self._pending: deque[Incoming] = deque()
        self._topics: dict[str, Topic | None] = {}  # parse_topic's answers by topic
        self._arrived = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._side_tasks: set[asyncio.Task[None]] = set()
        self._client: aiomqtt.Client | None = None  # set once subscribed (commands are sent through it)
        self._ack_client: aiomqtt.Client | None = None  # the connection of generation `_generation`
        self._generation = 0
        self._unsubscribe: Any = None
        self.connected = asyncio.Event()
        self.received = 0
        self.processed = 0
        self.reconnects = 0
        self.batches = 0
        self.not_committed = 0  # messages left unacknowledged because the store could not commit them

    # -- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        self._unsubscribe = self.service.platform.bus.subscribe(EntitiesChanged, self._on_changes)
        # Until connected, MQTT devices cannot be heard: their silence does not count (device health, FIX-A).
        self.service.monitor.mqtt_disconnected()
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
        """`listeningSince`: when the current connection was made (MQTT devices' silence counts from then);
        `downSince`: since when it is disconnected (their silence does not count meanwhile)."""
        monitor = self.service.monitor
        return {"ok": self.connected.is_set(), "broker": str(self.broker), "connected": self.connected.is_set(),
                "listeningSince": to_iso(monitor.mqtt_listening_since) if monitor.mqtt_listening_since else None,
                "downSince": to_iso(monitor.mqtt_down_since) if monitor.mqtt_down_since else None,
                "received": self.received, "processed": self.processed, "queued": len(self._pending),
                "batches": self.batches, "notCommitted": self.not_committed, "reconnects": self.reconnects}

    async def drain(self) -> None:
        """Wait until everything received so far is processed (for tests)."""
        while self.processed < self.received:
            await asyncio.sleep(0.005)

    # -- connection --------------------------------------------------------------------------------
    def _new_client(self) -> aiomqtt.Client:
        # A new generation before the connection exists: with a persistent session the broker sends
        # what it kept for us right after CONNACK, before our SUBSCRIBE is answered, and the fast read
        # path hands those messages over at once. They belong to this connection and are acknowledged
        # on it; tagged with the previous generation they were never acknowledged, and the broker,
        # its in-flight window full, stopped delivering to this session.
        self._generation += 1
        client = _Client(
            self.broker.host, self.broker.port, username=self.broker.username, password=self.broker.password,
            identifier=self.settings.client_id, clean_session=False, keepalive=self.settings.keepalive_s,
            tls_context=ssl.create_default_context() if self.broker.tls else None, sink=self._on_paho_message,
            deliver=self._deliver, generation=self._generation,
        )
        # Acknowledge QoS 1 only after the commit; aiomqtt does not expose this, paho does.
        paho = getattr(client, "_client", None)
        if paho is not None and hasattr(paho, "manual_ack_set"):
            paho.manual_ack_set(True)
        self._ack_client = client
        return client

    async def _connection_loop(self) -> None:
        attempt = 0
        while True:
            try:
                async with self._new_client() as client:
                    await self._on_connected(client)
                    attempt = 0
                    # Messages reach _on_paho_message directly; the iterator ends (MqttError) on disconnection.
                    async for message in client.messages:
                        self._enqueue(message)
            except aiomqtt.MqttError as exc:
                if self.connected.is_set() or attempt == 0:
                    log.warning("MQTT broker %s: connection lost or refused (%s); reconnecting with backoff",
                                self.broker, exc)
            except Exception:  # anything else (TLS, a client bug) must not end the source for good
                log.exception("MQTT broker %s: unexpected client failure; reconnecting with backoff", self.broker)
            finally:
                self._client = self._ack_client = None
                self.connected.clear()
                self.service.monitor.mqtt_disconnected()  # MQTT devices' silence stops counting until reconnected
            await asyncio.sleep(backoff_delay(attempt, self.settings.reconnect_min_s, self.settings.reconnect_max_s))
            attempt += 1
            self.reconnects += 1

    async def _on_connected(self, client: aiomqtt.Client) -> None:
        topics = topic_filters(self.settings.shared_group)
        await client.subscribe([(topic, QOS) for topic in topics])
        self._client = client
        self.connected.set()
        self.service.monitor.mqtt_connected()  # MQTT devices heard again: their silence counts from now
        log.info("MQTT broker %s connected, subscribed to %s", self.broker, ", ".join(topics))

    def _on_paho_message(self, message: Any) -> None:
        """A PUBLISH from the broker (paho's MQTTMessage), on the event loop: queued for the worker."""
        try:
            topic = message.topic
        except UnicodeDecodeError:  # MQTT topics are UTF-8; what is not cannot be one of ours
            topic = bytes(message._topic).decode("utf-8", "replace")
        self._push(Incoming(topic, message.payload, message.mid, message.qos, self._generation))

    def _enqueue(self, message: aiomqtt.Message) -> None:
        """A message from aiomqtt's iterator (only when paho lacks what `_Client` needs)."""
        payload = message.payload if isinstance(message.payload, bytes) else str(message.payload or "").encode()
        self._push(Incoming(str(message.topic), payload, message.mid, message.qos, self._generation))

    def _deliver(self, items: list[Incoming]) -> None:
        """The QoS 0/1 messages of one chunk read by `_Client`, in arrival order: queued for the worker."""
        self.received += len(items)
        self._pending.extend(items)
        if not self._arrived.is_set():
            self._arrived.set()

    def _push(self, item: Incoming) -> None:
        self.received += 1
        self._pending.append(item)
        if not self._arrived.is_set():
            self._arrived.set()

    def _ack(self, items: list[Incoming]) -> None:
        """Acknowledge (PUBACK) the QoS 1 messages of the current connection, in one write."""
        client = self._ack_client
        paho = getattr(client, "_client", None)
        if paho is None:
            return
        mids = [item.mid for item in items if item.qos == 1 and item.generation == self._generation]
        others = [item for item in items if item.qos > 1 and item.generation == self._generation]
        if mids:
            if getattr(client, "fast", False):
                paho._packet_queue(PUBACK, puback_packets(mids), 0, 0)
            else:
                for mid in mids:
                    paho.ack(mid, 1)
        for item in others:
            paho.ack(item.mid, item.qos)

    def _reconnect(self) -> None:
        """Drop the connection so that the broker delivers the unacknowledged messages again."""
        client = self._ack_client
        paho = getattr(client, "_client", None)
        if paho is not None:
            paho.disconnect()

    # -- measures ------------------------------------------------------------------------------------
    async def _worker(self) -> None:
        inflight: deque[asyncio.Task[None]] = deque()
        while True:
            if not self._pending:
                self._arrived.clear()
                await self._arrived.wait()
            count = min(len(self._pending), self.max_batch)
            batch = [self._pending.popleft() for _ in range(count)]
            rejected: list[tuple[Key, Rejection]] = []
            cuts: list[int] = []
            held: set[int] = set()  # positions in `batch` left unacknowledged, for the broker to deliver again
            # No failure drops a batch: `_prepare` handles each message on its own, and if preparing the batch's
            # measures together fails (autoprovisioning writes to the store), they are prepared one by one, so
            # that only the messages that fail themselves are affected (`_failed`).
            items = await self._prepare(batch, rejected, cuts, held)
            try:
                prepared = await self.service.prepare([item for item in items if item is not None])
            except Exception:
                log.exception("MQTT batch of %d message(s): preparing its measures failed; preparing them one by one",
                              len(batch))
                items, prepared, rejected, cuts = await self._prepare_each(batch, items, rejected, cuts, held)
            # The commit task's first step queues the batch's writes to the store; tasks start in the order
            # they are created, so batches reach the store (and are committed and acknowledged) in order.
            previous = inflight[-1] if inflight else None
            # Without rejections of its own there is nothing to interleave: no call per measure.
            counter = self._counter(rejected, cuts) if rejected else None
            inflight.append(asyncio.create_task(self._commit(batch, items, prepared, counter, previous, held)))
            while inflight and (len(inflight) >= PIPELINE or inflight[0].done()):
                await inflight.popleft()

    async def _prepare(self, batch: list[Incoming], rejected: list[tuple[Key, Rejection]],
                       cuts: list[int], held: set[int]) -> list[Received | None]:
        """Each message as a measure to commit, or None when it was handled here (command results written,
        garbage added to `rejected`: counted with the batch's decode rejections, so in arrival order).
        A message this fails on does not affect the others: it is held or rejected (`_failed`)."""
        items: list[Received | None] = []
        topics = self._topics
        for index, item in enumerate(batch):
            try:
                try:
                    topic = topics[item.topic]
                except KeyError:
                    topic = self._parse_topic(item.topic)
                if topic is None:
                    rejected.append(unknown_device("", item.topic[:100], f"not an IoT Agent topic: {item.topic[:100]}"))
                    items.append(None)
                elif topic.kind == "cmdexe":
                    await self._command_result(topic, item.payload, rejected)
                    items.append(None)
                else:
                    items.append(self._measure(topic, item.payload, rejected))
            except Exception as exc:
                del items[index:]  # (appended nothing, or the item it failed after)
                items.append(None)
                if self._failed(item, exc, rejected):
                    held.add(index)
            if items[-1] is not None:
                cuts.append(len(rejected))  # what was rejected before this measure, in arrival order
        return items

    async def _prepare_each(self, batch: list[Incoming], items: list[Received | None],
                            rejected: list[tuple[Key, Rejection]], cuts: list[int], held: set[int],
                            ) -> tuple[list[Received | None], Prepared, list[tuple[Key, Rejection]], list[int]]:
        """`service.prepare` of each measure on its own, after it failed for the batch: the measures it fails on
        again are held or rejected (`_failed`), in arrival order among the batch's rejections; the rest go on."""
        kept: list[Received | None] = list(items)
        ok: list[Received] = []
        decoded = []
        order: list[tuple[Key, Rejection]] = []
        new_cuts: list[int] = []
        done = 0
        measures = iter(cuts)
        for index, item in enumerate(items):
            if item is None:
                continue
            upto = next(measures)
            order.extend(rejected[done:upto])
            done = upto
            try:
                one = await self.service.prepare([item])
            except Exception as exc:
                kept[index] = None
                if self._failed(batch[index], exc, order, stats_key(item.device.profile)):
                    held.add(index)
                continue
            new_cuts.append(len(order))
            ok.append(item)
            decoded.extend(one.decoded)
        order.extend(rejected[done:])
        return kept, Prepared(ok, decoded), order, new_cuts

    def _failed(self, item: Incoming, exc: Exception, rejected: list[tuple[Key, Rejection]],
                key: Key | None = None) -> bool:
        """A message ucity failed on (not one it found invalid: decode turns those into rejections). True: hold it,
        unacknowledged, for the broker to deliver again, when the store is unavailable (the store's state, not
        the message's: redelivered until the store is back, as a batch whose commit failed). Any other failure
        is the message's own and would fail again on every delivery: rejected as `internal-error` (counted,
        acknowledged, logged with its traceback), so that a poison message cannot loop."""
        if isinstance(exc, Unavailable):
            log.warning("MQTT message on %s not processed (%s); leaving it for redelivery", logged_topic(item.topic), exc)
            return True
        log.error("MQTT message on %s not processed; rejected as %s", logged_topic(item.topic), INTERNAL_ERROR,
                  exc_info=exc)
        if key is None:  # counted under the device's tenant when the topic names a device ucity knows or would create
            topic = parse_topic(item.topic)
            key = ("", topic.apikey if topic else "", topic.device_id if topic else item.topic[:100])
            with contextlib.suppress(Exception):
                key = stats_key(self.service.resolve(key[1], key[2]).profile) if topic is not None else key
        rejected.append((key, Rejection(INTERNAL_ERROR, f"ucity failed on this message ({type(exc).__name__}); "
                                                        "see the server log")))
        return False

    def _parse_topic(self, name: str) -> Topic | None:
        """`parse_topic`, remembered: a device sends on the same topic again and again. Bounded (a flood of
        distinct garbage topics only empties the memory, which refills at the cost of parsing)."""
        if len(self._topics) >= TOPIC_CACHE:
            self._topics.clear()
        topic = self._topics[name] = parse_topic(name)
        return topic

    def _counter(self, rejected: list[tuple[Key, Rejection]], cuts: list[int]) -> Callable[[int], None]:
        """`before_account` for `service.commit`: counts this batch's own rejections interleaved with the
        measures' decode rejections, in arrival order (before measure k: those that arrived before it)."""
        done = 0

        def count(k: int) -> None:
            nonlocal done
            upto = cuts[k] if k < len(cuts) else len(rejected)
            for key, rejection in rejected[done:upto]:
                self.service.stats.rejected(key, [rejection], "mqtt")
            done = max(done, upto)

        return count

    async def _commit(self, batch: list[Incoming], items: list[Received | None], prepared: Prepared,
                      count: Callable[[int], None] | None, previous: asyncio.Task[None] | None,
                      held: set[int] | None = None) -> None:
        """Commit a batch's measures (one store call), then acknowledge what was committed or rejected.
        Counting happens in batch order: the store answers batches in the order they were queued."""
        try:
            if previous is not None and not any(d.observations for d in prepared.decoded):
                await asyncio.wait([previous])  # nothing to commit: wait for the previous batch's turn
            results = await self.service.commit(prepared, before_account=count)
            if held or any(isinstance(r.outcome, Unavailable) for r in results):
                self._ack_committed(batch, items, results, held or set())
            else:
                self._ack(batch)
            self.batches += 1
        except Unavailable as exc:  # the store cannot take them now: unacknowledged, the broker delivers them again
            log.warning("MQTT batch of %d message(s) not committed (%s); reconnecting for their redelivery",
                        len(batch), exc)
            self.not_committed += len(batch)
            self._reconnect()
        except Exception:  # something in the batch ucity fails on, and would on every delivery: see `_commit_each`
            log.exception("MQTT batch of %d message(s): its commit failed; committing its messages one by one",
                          len(batch))
            await self._commit_each(batch, items, prepared, count, held or set())
        finally:
            self.processed += len(batch)

    async def _commit_each(self, batch: list[Incoming], items: list[Received | None], prepared: Prepared,
                           count: Callable[[int], None] | None, held: set[int]) -> None:
        """After the batch's commit raised something other than `Unavailable`: commit its measures one at a time,
        in arrival order, so that only a message that fails on its own is affected, and no delivery can fail the
        same way for ever (held, the batch came back and failed again on every delivery, blocking QoS 1 ingest).

        Acknowledged: each message once its own commit returned (as after a batch, a write the store refused is
        counted as `not-written`), the messages handled before (garbage, command results), and a message whose
        own commit raises anything but `Unavailable`: rejected as `internal-error` (counted, logged with its
        traceback, `_failed`). Held for redelivery: what the store cannot take now (`Unavailable`, raised or as
        the outcome) and `held`. The batch's own rejections are counted in arrival order among the measures'
        (`count` counts each once, also those a failed batch commit counted already). A batch commit that failed
        after the store had committed (while counting) has its measures written again, which adds no history (an
        instance is unique per entity, attribute, datasetId and observedAt, as for a redelivery), and may count
        some of their figures twice: a bug's price, instead of a batch that never gets through.
        Each commit waits for the one before, so a device's measures are committed in the order they arrived;
        the next batch, queued meanwhile, may be committed before them (as when the broker delivers again),
        and the store merges measures by their time, so the current state stays the newest."""
        done: list[Incoming] = []
        measures = iter(zip(prepared.items, prepared.decoded, strict=True))
        k = 0  # the measure's index in `prepared`
        for index, (incoming, item) in enumerate(zip(batch, items, strict=True)):
            if index in held:
                continue
            if item is None:
                done.append(incoming)
                continue
            received, decoded = next(measures)
            if count is not None:
                count(k)  # what arrived before this measure
            k += 1
            try:
                (result,) = await self.service.commit(Prepared([received], [decoded]))
            except Exception as exc:
                own: list[tuple[Key, Rejection]] = []
                if self._failed(incoming, exc, own, stats_key(received.device.profile)):
                    continue  # Unavailable: held
                for key, rejection in own:
                    self.service.stats.rejected(key, [rejection], "mqtt")
                done.append(incoming)
                continue
            if not isinstance(result.outcome, Unavailable):
                done.append(incoming)
        if count is not None:
            count(len(prepared.items))  # what arrived after the last measure
        self._ack(done)
        self.batches += 1
        if len(done) < len(batch):
            self.not_committed += len(batch) - len(done)
            log.warning("MQTT: %d message(s) not committed (store unavailable); reconnecting for their redelivery",
                        len(batch) - len(done))
            self._reconnect()

    def _ack_committed(self, batch: list[Incoming], items: list[Received | None], results: list[IngestResult],
                       held: set[int]) -> None:
        """Acknowledge all but the messages the store could not commit (or `held`); reconnect for those."""
        outcomes = iter(results)
        done = []
        for index, (incoming, item) in enumerate(zip(batch, items, strict=True)):
            if index in held:
                continue
            if item is None or not isinstance(next(outcomes).outcome, Unavailable):
                done.append(incoming)
        self._ack(done)
        self.not_committed += len(batch) - len(done)
        log.warning("MQTT: %d message(s) not committed (store unavailable); reconnecting for their redelivery",
                    len(batch) - len(done))
        self._reconnect()

    def _measure(self, topic: Topic, payload: bytes, rejected: list[tuple[Key, Rejection]]) -> Received | None:
        try:
            resolved = self.service.resolve(topic.apikey, topic.device_id)
        except UcityError as exc:
            rejected.append(self.service.unknown(topic.apikey, topic.device_id, exc.detail))
            return None
        try:
            value = (parse_json(payload) if topic.object_id is None
                     else {topic.object_id: parse_single_value(payload)})
        except DecodeError as exc:
            rejected.append((stats_key(resolved.profile), Rejection(exc.reason, exc.detail)))
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
        log.info("command %s sent to %s on /%s/%s/cmd", name, profile.device_id, masked_apikey(profile.apikey),
                 profile.device_id)

    async def _command_result(self, topic: Topic, payload: bytes, rejected: list[tuple[Key, Rejection]]) -> None:
        profile = self.service.registry.profile(topic.apikey, topic.device_id)
        if profile is None:
            rejected.append(self.service.unknown(topic.apikey, topic.device_id, "command result of an unknown device"))
            return
        try:
            results = parse_json(payload)
            if not isinstance(results, dict):
                raise DecodeError(NOT_AN_OBJECT, "a command result must be a JSON object {command: result}")
        except DecodeError as exc:
            rejected.append((stats_key(profile), Rejection(exc.reason, exc.detail)))
            return
        known = {c.name for c in profile.commands}
        for name, result in results.items():
            if name not in known:
                rejected.append((stats_key(profile), Rejection(
                    UNKNOWN_COMMAND, f"{name!r} is not a command of this device", field=name)))
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
