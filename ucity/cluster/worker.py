"""`ucity worker`: a member of the consumer group that commits the observation stream.

Each worker announces itself (`member.<id>` in the lease bucket, renewed every `lease_s / 3`) and
takes the partitions rendezvous hashing gives it among the live members, each under a lease
(`partition.<p>`, created only if nobody holds it, renewed with compare-and-set). For a partition it
holds, it fetches the partition's observations in order, commits them through the ordinary write
path (so its rules engine, alarms and subscriptions see the commit on its own bus), and
acknowledges them only when everything they caused is durable: the commit, the rule decisions and
rule states, the alarm writes. A worker that dies therefore loses nothing: its leases expire after
`lease_s`, by then its unacknowledged messages are due again (`ack_wait_s` is shorter), and the
partition's next owner reads the rule states and open alarms the dead one last wrote, then gets
those messages first. Writing them again is harmless: history keeps one instance per entity,
attribute, datasetId and observedAt, and an alarm exists once per entity and rule.

When its partitions change, a worker stops taking batches, lets the running ones finish, and
re-reads the rule states, open alarms and device health of what it owns now (`owns`).

If that re-read fails (the store restarting), the worker keeps its leases and stays up, but judges
nothing and takes no batch until a re-read succeeds: it is retried with jittered exponential
backoff (`_RELOAD_RETRY_MIN_S` up to `_RELOAD_RETRY_MAX_S`, on `retry_clock`), and `health()` shows
it pending. Before, the failure ended the rebalance: the gained partitions stayed leased with no
consumer and no state (their devices without health timers, their messages never taken), and the
rule and alarm states the failed re-read had already cleared were used as they were.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import re
import socket
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import orjson
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeout
from nats.js.errors import KeyWrongLastSequenceError, NoKeysError

from ucity.cluster.jetstream import JetStream
from ucity.cluster.messages import ALARMS, MessageError, decode_event, decode_writes
from ucity.cluster.partitions import assigned, partition_of
from ucity.core.clock import Clock, SystemClock
from ucity.core.config import BusSettings
from ucity.core.errors import Unavailable
from ucity.ingest.writer import DeviceWrite, MeasureWriter

if TYPE_CHECKING:
    from ucity.app import Ucity

log = logging.getLogger(__name__)
MEMBER = "member."
PARTITION = "partition."
# A failed re-read of the owned state is retried after 0.5 s, doubling up to 30 s (half of each step random, so
# that workers the same store failure hit do not retry in step).
_RELOAD_RETRY_MIN_S = 0.5
_RELOAD_RETRY_MAX_S = 30.0


def retry_delay(attempt: int) -> float:
    """Exponential backoff with equal jitter for the `attempt`-th retry (1, 2, ...), capped."""
    step = min(_RELOAD_RETRY_MAX_S, _RELOAD_RETRY_MIN_S * 2.0 ** min(attempt - 1, 30))
    return step / 2 + random.uniform(0, step / 2)


def worker_name(configured: str) -> str:
    """This worker's id: as configured, else host-pid; only characters lease keys allow."""
    name = configured or f"{socket.gethostname()}-{os.getpid()}"
    return re.sub(r"[^A-Za-z0-9_-]", "-", name)


class _Gate:
    """Batches run concurrently; a rebalance waits until none runs and holds new ones back."""

    def __init__(self) -> None:
        self._running = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._open = asyncio.Event()
        self._open.set()

    @contextlib.asynccontextmanager
    async def batch(self) -> AsyncIterator[None]:
        await self._open.wait()
        self._running += 1  # no await between the check and this: a rebalance cannot slip in
        self._idle.clear()
        try:
            yield
        finally:
            self._running -= 1
            if self._running == 0:
                self._idle.set()

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        self._open.clear()
        try:
            await self._idle.wait()
            yield
        finally:
            self._open.set()


class Worker:
    """A platform component of `ucity worker`: leases, consumption, commit, acknowledgement."""

    def __init__(self, app: Ucity, stream: JetStream, settings: BusSettings) -> None:
        self.app = app
        self.stream = stream
        self.settings = settings
        self.id = worker_name(settings.worker_id)
        self.writer = MeasureWriter(app.store, app.platform.clock, app.settings.ingest.max_future_s)
        self._leases: dict[int, int] = {}  # partition -> revision of our lease entry
        self._renewed: dict[int, float] = {}  # partition -> monotonic time of the last renewal
        self._tasks: dict[int, list[asyncio.Task[None]]] = {}
        self._gate = _Gate()
        self._balancer: asyncio.Task[None] | None = None
        self._stopping = False
        self._rules_seen: bytes | None = None  # the stored rules as last read
        # The owned state (rule states, open alarms, device health) as the last re-read left it: set when it
        # succeeded; cleared while a failed one waits for its retry (`_retry_reload`), during which this worker
        # owns nothing (`owns`) and its consumers wait. `_reloading` makes re-reads (and rule reloads) one at a time.
        self._loaded = asyncio.Event()
        self._loaded.set()
        self._quiet = False  # between a failed re-read and the next attempt: `owns` nothing
        self._reloading = asyncio.Lock()
        self._retry: asyncio.Task[None] | None = None
        self.reload_failures = 0  # consecutive failed re-reads (0: loaded)
        self.reload_error = ""
        # The retry backoff's clock: real time, like the lease renewal (a fake platform clock must not hold a
        # retry until it moves); tests set it.
        self.retry_clock: Clock = SystemClock()
        self.stats = {"observations": 0, "events": 0, "alarms": 0, "notifications": 0, "acked": 0, "redelivered": 0,
                      "dropped": 0, "rebalances": 0}
        self._own_nothing()  # before the platform starts them: no state is loaded, no timer armed

    # -- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        from ucity.rules.engine import RULE_KIND

        self._rules_seen = orjson.dumps(await self.app.store.list_docs(RULE_KIND))
        await self._balance()
        self._balancer = asyncio.create_task(self._balance_loop(), name="ucity-worker-leases")
        log.info("worker %s started with partitions %s", self.id, sorted(self._leases))

    async def stop(self) -> None:
        self._stopping = True
        for task in (self._balancer, self._retry):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._loaded.set()  # consumers waiting for a re-read see `_stopping` and end
        async with self._gate.exclusive():
            await self._stop_partitions(list(self._tasks))
            await self._settle()
            for partition in list(self._leases):  # hand them over at once instead of after lease_s
                await self._release(partition)
        with contextlib.suppress(NatsError, Unavailable):
            await self.stream.leases.delete(MEMBER + self.id)

    def health(self) -> dict[str, Any]:
        """`reloadPending`: the owned state could not be read (`reloadFailures` times, the last `reloadError`);
        the worker holds its partitions but takes no batch until a retry succeeds. Still ok: it renews its
        leases and recovers by itself once the store answers."""
        return {"ok": self._balancer is not None and not self._balancer.done(), "worker": self.id,
                "partitions": sorted(self._leases), "reloadPending": not self._loaded.is_set(),
                "reloadFailures": self.reload_failures, "reloadError": self.reload_error, **self.stats}

    @property
    def partitions(self) -> set[int]:
        return set(self._leases)

    def owns(self, tenant: str, entity_id: str) -> bool:
        """Nothing while a re-read is pending: health, rules and alarm escalation do not judge from the state a
        failed re-read left (cleared, partly read); the re-read that succeeds judges it all again."""
        return not self._quiet and partition_of(tenant, entity_id, self.settings.partitions) in self._leases

    def _own_nothing(self) -> None:
        """Until the first leases, this process judges no entity (its rules, alarms and health stay quiet)."""
        for component in (self.app.rules, self.app.alarms, self.app.ingest.monitor, self.app.subscriptions):
            component.owns = self.owns

    # -- leases ------------------------------------------------------------------------------------
    async def _balance_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.lease_s / 3)
            try:
                await self._balance()
                await self._follow_rules()
            except (TimeoutError, NatsError, Unavailable) as exc:
                log.warning("worker %s: lease renewal failed (%s); retrying", self.id, exc)
            except Exception:
                log.exception("worker %s: rebalancing failed", self.id)

    async def _balance(self) -> None:
        kv = self.stream.leases
        await kv.put(MEMBER + self.id, self.id.encode())
        want = assigned(self.id, await self._members(), self.settings.partitions)
        lost = [p for p in list(self._leases) if not await self._renew(p)]
        released = [p for p in self._leases if p not in want and p not in lost]
        gained = [p for p in sorted(want - set(self._leases)) if await self._acquire(p)]
        if lost or released or gained:
            await self._rebalance(lost, released, gained)

    async def _follow_rules(self) -> None:
        """Rules created, changed, disabled or deleted over the API (in an API process) take effect here within a
        renewal, as in the process that changed them (rules engine `follow_stored` -> `_changed`): the owned
        entities' matches of a changed rule are re-evaluated against their latest values (kept while they still
        breach, cleared with the actor when not), a disabled or deleted rule's active alarms are cleared, a rule
        enabled again evaluates the latest values. (Only `rules.reload()` here left a disabled rule's alarms
        active in the workers.) Taken while no batch runs, like a re-read."""
        from ucity.rules.engine import RULE_KIND

        stored = orjson.dumps(await self.app.store.list_docs(RULE_KIND))
        if self._rules_seen is not None and stored != self._rules_seen and self._loaded.is_set():
            async with self._reloading, self._gate.exclusive():
                await self.app.rules.follow_stored()
                await self.app.rules.persist()  # the states the change left are written before a batch runs
            log.info("worker %s: rules changed; applied to the owned entities", self.id)
        self._rules_seen = stored

    async def _members(self) -> set[str]:
        try:
            keys = await self.stream.leases.keys()
        except NoKeysError:
            return set()
        return {key[len(MEMBER):] for key in keys if key.startswith(MEMBER)}

    async def _renew(self, partition: int) -> bool:
        try:
            self._leases[partition] = await self.stream.leases.update(
                PARTITION + str(partition), self.id.encode(), last=self._leases[partition])
        except KeyWrongLastSequenceError:
            log.warning("worker %s lost the lease of partition %d", self.id, partition)
            return False
        self._renewed[partition] = time.monotonic()
        return True

    async def _acquire(self, partition: int) -> bool:
        try:
            revision = await self.stream.leases.create(PARTITION + str(partition), self.id.encode())
        except KeyWrongLastSequenceError:
            return False  # still held (its owner is leaving, or its lease has not expired yet)
        self._leases[partition] = revision
        self._renewed[partition] = time.monotonic()
        return True

    async def _release(self, partition: int) -> None:
        revision = self._leases.pop(partition, None)
        self._renewed.pop(partition, None)
        if revision is not None:
            with contextlib.suppress(NatsError, KeyWrongLastSequenceError):
                await self.stream.leases.delete(PARTITION + str(partition), last=revision)

    def _fresh(self, partition: int) -> bool:
        """Still surely ours: renewed well within the lease time (a paused process must not go on)."""
        renewed = self._renewed.get(partition)
        return renewed is not None and time.monotonic() - renewed < self.settings.lease_s * 0.8

    async def _rebalance(self, lost: list[int], released: list[int], gained: list[int]) -> None:
        self.stats["rebalances"] += 1
        async with self._reloading, self._gate.exclusive():
            await self._stop_partitions([*lost, *released])
            await self._settle()  # what the leaving partitions caused is written before another takes them
            for partition in lost:
                self._leases.pop(partition, None)
                self._renewed.pop(partition, None)
            for partition in released:
                await self._release(partition)
            await self._try_reload()
            for partition in gained:  # (their consumers wait for the state while a re-read is pending)
                self._tasks[partition] = [
                    asyncio.create_task(self._consume(partition, "obs"), name=f"ucity-obs-{partition}"),
                    asyncio.create_task(self._consume(partition, "events"), name=f"ucity-events-{partition}")]
        log.info("worker %s now owns partitions %s (lost %s, released %s, gained %s)", self.id,
                 sorted(self._leases), lost, released, gained)

    async def _try_reload(self) -> bool:
        """`_reload` (under the gate and `_reloading`); on failure the worker waits for `_retry_reload`."""
        self._quiet = False  # the re-read judges with what it owns now (`owns`); consumers still wait
        try:
            await self._reload()
        except Exception as exc:  # the store failing (Unavailable, a lost connection ...), or a bug: retried
            self._quiet = True
            self._loaded.clear()
            self.reload_failures += 1
            self.reload_error = f"{type(exc).__name__}: {exc}"
            if self.reload_failures == 1:  # logged when it starts failing and when it recovers, not per retry
                log.warning("worker %s: reading the state of partitions %s failed (%s); taking no batch and retrying "
                            "with backoff", self.id, sorted(self._leases), self.reload_error,
                            exc_info=not isinstance(exc, Unavailable))
            if self._retry is None or self._retry.done():
                self._retry = asyncio.create_task(self._retry_reload(), name="ucity-worker-reload")
            return False
        if self.reload_failures:
            log.info("worker %s: state of partitions %s read after %d failed attempt(s)", self.id,
                     sorted(self._leases), self.reload_failures)
        self.reload_failures, self.reload_error = 0, ""
        self._loaded.set()
        return True

    async def _retry_reload(self) -> None:
        """Retry the re-read with jittered, capped exponential backoff until it succeeds (a rebalance meanwhile
        re-reads too; whichever succeeds ends the wait)."""
        from ucity.core.clock import sleep as clock_sleep

        while not self._loaded.is_set() and not self._stopping:
            await clock_sleep(self.retry_clock, retry_delay(self.reload_failures))
            async with self._reloading, self._gate.exclusive():
                if self._loaded.is_set() or self._stopping:
                    return
                await self._try_reload()

    async def _reload(self) -> None:
        """Read what the owned entities' previous owners last wrote: rule states, open alarms, device health."""
        await self.app.ingest.monitor.drain()  # its state writes under way are read back, not overwritten
        await self.app.rules.reload()
        await self.app.alarms.reload()
        ingest = self.app.ingest
        await ingest.registry.load()
        await ingest.monitor.restore(ingest.registry.profiles(), self.app.store)

    async def _stop_partitions(self, partitions: list[int]) -> None:
        tasks = [task for p in partitions for task in self._tasks.pop(p, [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- consuming ---------------------------------------------------------------------------------
    async def _consume(self, partition: int, kind: str) -> None:
        """Fetch a partition's messages in order while the partition is ours."""
        try:
            subscription = await self.stream.consumer(kind, partition)
        except (TimeoutError, NatsError):
            log.exception("worker %s: no consumer for %s partition %d", self.id, kind, partition)
            return
        try:
            while partition in self._leases and not self._stopping:
                if not self._loaded.is_set():  # a failed re-read: no batch until it is retried successfully
                    await self._loaded.wait()
                    continue
                try:
                    messages = await subscription.fetch(self.settings.max_batch, timeout=1.0)
                except (TimeoutError, NatsTimeout):
                    continue
                except NatsError as exc:
                    log.warning("worker %s: fetch from %s partition %d failed: %s", self.id, kind, partition, exc)
                    await asyncio.sleep(0.5)
                    continue
                await self._batch(partition, kind, messages)
        finally:
            with contextlib.suppress(NatsError, asyncio.TimeoutError):
                await subscription.unsubscribe()

    async def _batch(self, partition: int, kind: str, messages: list[Msg]) -> None:
        """Commit a fetched batch while the partition is ours. A batch fetched just before a re-read failed waits
        for the retry that succeeds and then goes first (a nak would let the partition's newer messages overtake
        it; if it waits past ack_wait, its redelivery is committed again, which is harmless)."""
        while True:
            await self._loaded.wait()
            async with self._gate.batch():
                if partition not in self._leases or not self._fresh(partition) or self._stopping:
                    return  # not ours any more: unacknowledged, they go to the next owner
                if not self._loaded.is_set():
                    continue  # the re-read failed while this batch waited for the gate: out of it, and wait
                try:
                    await (self._observations(messages) if kind == "obs" else self._events(messages))
                except Exception:  # the store is down or refuses more: the batch comes again
                    log.exception("worker %s: %s batch of partition %d failed; it comes again", self.id, kind, partition)
                    for message in messages:
                        with contextlib.suppress(NatsError):
                            await message.nak(delay=1.0)
                return

    async def _observations(self, messages: list[Msg]) -> None:
        writes: list[DeviceWrite] = []
        good: list[Msg] = []
        for message in messages:
            try:
                writes.extend(decode_writes(message.data)[0])
                good.append(message)
            except MessageError as exc:
                await self._drop(message, exc)
        self._count_redeliveries(good)
        try:
            results = await self.writer.write(writes)
        except Unavailable:
            self._refused(writes)
            raise
        if any(isinstance(r, Unavailable) for r in results):
            log.warning("worker %s: the store refused a batch; it comes again", self.id)
            self._refused(writes)
            for message in good:
                await message.nak(delay=1.0)
            return
        for write, result in zip(writes, results, strict=True):
            if isinstance(result, Exception):  # the data itself (an entity of another type ...): not retried
                log.warning("measures of %s not written: %s", write.profile.device_id, result)
            elif write.observations:
                newest = max(write.observations, key=lambda o: o.observed_at).attrs
                self.app.ingest.monitor.reported(write.profile, newest)
        await self._settle()
        await self._ack(good)
        self.stats["observations"] += sum(len(w.observations) for w in writes)

    def _refused(self, writes: list[DeviceWrite]) -> None:
        """The store could not take these readings now (they come again): not reports, but their devices are alive,
        so their silence counts from now (`HealthMonitor.refused`): a store outage does not turn every device that
        kept sending into a false device-offline alarm."""
        monitor = self.app.ingest.monitor
        for write in writes:
            if write.observations:
                monitor.refused(write.profile)

    async def _events(self, messages: list[Msg]) -> None:
        good: list[Msg] = []
        for message in messages:
            try:
                event = decode_event(message.data)
            except MessageError as exc:
                await self._drop(message, exc)
                continue
            if isinstance(event, tuple):
                kind, _, pairs = event
                if kind == ALARMS:  # alarms an API process changed: read them again
                    for tenant, alarm_id in pairs:
                        await self.app.alarms.adopt(tenant, alarm_id)
                else:  # notifications an API process stored for this worker to send
                    await self.app.alarms.dispatcher.resume(self.owns, ids={key for _, key in pairs})
                good.append(message)
                self.stats[kind] += len(pairs)
                continue
            await self.app.rules.observe(event)
            good.append(message)
            self.stats["events"] += len(event.changes)
        await self._settle()
        await self._ack(good)

    async def _settle(self) -> None:
        """Until everything committed so far is durable in all its consequences."""
        await self.app.publisher.drain()  # the local bus has seen every commit (rules, alarms, subscriptions)
        await self.app.rules.persist()  # rule decisions published, states written
        await self.app.alarms.drain()  # alarm and Alert writes committed

    async def _ack(self, messages: list[Msg]) -> None:
        for message in messages:
            await message.ack()  # a lost ack means one more (harmless) delivery
        self.stats["acked"] += len(messages)

    async def _drop(self, message: Msg, error: MessageError) -> None:
        log.error("worker %s: dropping a message that is not ucity's: %s", self.id, error)
        self.stats["dropped"] += 1
        await message.term()

    def _count_redeliveries(self, messages: list[Msg]) -> None:
        again = 0
        for message in messages:
            with contextlib.suppress(Exception):
                again += message.metadata.num_delivered > 1
        if again:
            self.stats["redelivered"] += again
            log.info("worker %s: %d message(s) delivered again (their worker died or stalled)", self.id, again)


class StartFailed(RuntimeError):
    """The worker did not start (its store or bus unreachable, refused): the reason in one line; `ucity worker`
    says it and exits 3, as `ucity serve` does (QA8 F11: a traceback before). The traceback is logged at DEBUG."""


def one_line(exc: BaseException) -> str:
    """An error as one line: its type and the first line of its message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


async def run_worker(app: Ucity) -> None:
    """Run a worker process until SIGTERM or SIGINT, then hand its partitions over. StartFailed if it cannot
    start: systemd's `Restart=` (deploy/ucity-worker.service) tries again later."""
    import signal

    stop = asyncio.Event()
    received: list[str] = []
    loop = asyncio.get_running_loop()

    def on_signal(signum: signal.Signals) -> None:
        received.append(signum.name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        await app.start()
    except Exception as exc:
        log.debug("the worker did not start", exc_info=True)
        raise StartFailed(one_line(exc)) from exc
    log.info("worker started")
    try:
        await stop.wait()
        log.info("worker stopping (%s): handing its partitions over", received[0] if received else "stop")
    finally:
        await app.stop()
        log.info("worker stopped")
