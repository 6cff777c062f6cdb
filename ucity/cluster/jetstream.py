"""The NATS JetStream connection of a ucity process: streams, per-partition consumers, the lease bucket.

Streams (work-queue retention: a message is gone once acknowledged; file storage; `bus.replicas`):

    UCITY_OBS     ucity.obs.<partition>      device observations, from every process that ingests
    UCITY_EVENTS  ucity.events.<partition>   entity changes the API process committed itself

Each partition of each stream has one durable pull consumer (`obs-<p>`, `events-<p>`), so a
partition's messages come in order to whichever worker holds its lease; a message not acknowledged
within `bus.ack_wait_s` is delivered again (first, before newer ones) to the next fetch. A stream
holds at most `bus.max_pending` messages and refuses more (discard new): publishers answer 503 and
devices retry, which is the back-pressure of a burst.

Leases and membership live in the key-value bucket `ucity_leases` (entries expire after
`bus.lease_s` unless renewed): `member.<worker>` says a worker is alive, `partition.<p>` who owns p.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import BadRequestError, BucketNotFoundError
from nats.js.kv import KeyValue

from ucity.core.config import BusSettings
from ucity.core.errors import Unavailable

log = logging.getLogger(__name__)

STREAMS = {"obs": "UCITY_OBS", "events": "UCITY_EVENTS"}
LEASE_BUCKET = "ucity_leases"


def subject(kind: str, partition: int) -> str:
    return f"ucity.{kind}.{partition}"


class JetStream:
    """One connection, the streams and the lease bucket; a platform component."""

    def __init__(self, settings: BusSettings, name: str) -> None:
        self.settings = settings
        self.name = name
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._kv: KeyValue | None = None
        self.published = 0
        self.publish_failures = 0

    @property
    def servers(self) -> list[str]:
        return [part.strip() for part in self.settings.url.split(",") if part.strip()]

    async def start(self) -> None:
        self._nc = await nats.connect(servers=self.servers, name=self.name, max_reconnect_attempts=-1,
                                      reconnect_time_wait=0.5, connect_timeout=5, error_cb=self._nats_error)
        self._js = self._nc.jetstream(timeout=self.settings.publish_timeout_s)
        for kind, stream in STREAMS.items():
            await self._ensure_stream(stream, kind)
        self._kv = await self._lease_bucket()
        log.info("NATS %s: JetStream streams %s ready, %d partitions", ", ".join(self.servers),
                 ", ".join(STREAMS.values()), self.settings.partitions)

    async def _nats_error(self, error: Exception) -> None:
        """The NATS client's errors (a lost connection, an internal subscription's timeout) as one warning line: the
        client's default logs each with a traceback, e.g. the lease bucket's key listing cut short by a drain at
        shutdown, which reads as a crash in a worker's log though nothing was lost (the client reconnects, and a
        renewal that failed is retried)."""
        log.warning("NATS %s: %s: %s", ", ".join(self.servers), type(error).__name__, error or "(no detail)")

    async def stop(self) -> None:
        if self._nc is not None:
            try:
                await self._nc.drain()
            except (TimeoutError, NatsError):
                await self._nc.close()
            self._nc = None

    def health(self) -> dict[str, Any]:
        connected = self._nc is not None and self._nc.is_connected
        return {"ok": connected, "servers": self.servers, "published": self.published,
                "publishFailures": self.publish_failures}

    @property
    def js(self) -> JetStreamContext:
        if self._js is None:
            raise Unavailable("the NATS connection is not started")
        return self._js

    @property
    def leases(self) -> KeyValue:
        if self._kv is None:
            raise Unavailable("the NATS connection is not started")
        return self._kv

    async def _ensure_stream(self, name: str, kind: str) -> None:
        config = js_api.StreamConfig(
            name=name, subjects=[f"ucity.{kind}.*"], retention=js_api.RetentionPolicy.WORK_QUEUE,
            storage=js_api.StorageType.FILE, num_replicas=self.settings.replicas, max_msgs=self.settings.max_pending,
            discard=js_api.DiscardPolicy.NEW, duplicate_window=120.0)
        try:
            await self.js.add_stream(config)
        except BadRequestError:  # it exists with other limits: take ours (a restart with new settings)
            await self.js.update_stream(config)

    async def _lease_bucket(self) -> KeyValue:
        try:
            return await self.js.key_value(LEASE_BUCKET)
        except BucketNotFoundError:
            return await self.js.create_key_value(js_api.KeyValueConfig(
                bucket=LEASE_BUCKET, history=1, ttl=self.settings.lease_s, replicas=self.settings.replicas,
                storage=js_api.StorageType.FILE))

    async def publish(self, kind: str, partition: int, payload: bytes, msg_id: str | None = None) -> None:
        """Store a message on a stream; Unavailable (503) when JetStream does not confirm it."""
        headers = {"Nats-Msg-Id": msg_id} if msg_id else None
        try:
            await self.js.publish(subject(kind, partition), payload, stream=STREAMS[kind], headers=headers,
                                  timeout=self.settings.publish_timeout_s)
        except (TimeoutError, NatsError, NatsTimeout) as exc:
            self.publish_failures += 1
            raise Unavailable(f"the message bus did not take the message: {exc or type(exc).__name__}") from exc
        self.published += 1

    async def broadcast(self, name: str, payload: bytes) -> None:
        """Send a message to every process listening (`listen`), now and at most once: plain NATS, not stored."""
        if self._nc is None:
            raise Unavailable("the NATS connection is not started")
        try:
            await self._nc.publish(f"ucity.live.{name}", payload)
        except NatsError as exc:
            raise Unavailable(f"the message bus did not take the message: {exc or type(exc).__name__}") from exc

    async def listen(self, name: str, handler: Callable[[bytes], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        """Receive the `broadcast` messages of a name from now on; returns what stops it."""
        if self._nc is None:
            raise Unavailable("the NATS connection is not started")

        async def on_message(message: Msg) -> None:
            await handler(message.data)

        subscription = await self._nc.subscribe(f"ucity.live.{name}", cb=on_message)
        return subscription.unsubscribe

    async def consumer(self, kind: str, partition: int) -> JetStreamContext.PullSubscription:
        """The durable pull consumer of one partition of a stream (created on first use)."""
        config = js_api.ConsumerConfig(
            durable_name=f"{kind}-{partition}", ack_policy=js_api.AckPolicy.EXPLICIT,
            ack_wait=self.settings.ack_wait_s, max_deliver=-1, max_ack_pending=self.settings.max_batch * 4,
            filter_subject=subject(kind, partition), deliver_policy=js_api.DeliverPolicy.ALL)
        return await self.js.pull_subscribe(subject(kind, partition), durable=f"{kind}-{partition}",
                                            stream=STREAMS[kind], config=config)
