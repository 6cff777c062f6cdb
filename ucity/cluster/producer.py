"""The sending side of scale-out: measures onto the observation stream, own commits onto the event stream.

`StreamMeasureWriter` replaces the ingest's writer in every process when `bus.url` is set: the
device writes of an ingest batch are grouped by partition, one message per partition, and a
measure counts as accepted (HTTP 200, MQTT PUBACK) once JetStream has stored its message. A
stream that is full or unreachable fails the write with 503 + Retry-After: the device retries.
Provisioning and command status writes (`apply`) still go to the store directly.

`ChangeForwarder` runs in the API process: the changes it commits itself (NGSI-LD writes,
provisioning) are published on the event stream of their partitions, where the owning worker's
rules engine sees them. The API process's own rules engine and alarm service own no entity. The
alarms it changes itself (an operator acknowledges, clears, closes, assigns, comments) are named on
the event stream of their entity's partition too, and the owning worker reads them again from the
store (`AlarmService.adopt`), so that it neither escalates an acknowledged alarm nor saves its own
older copy over the operator's action.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from ucity.cluster.jetstream import JetStream
from ucity.cluster.messages import encode_alarms, encode_changes, encode_notifications, encode_writes
from ucity.cluster.partitions import partition_of
from ucity.core.bus import Bus, Context, EntitiesChanged, EntityChange
from ucity.core.errors import Unavailable
from ucity.ingest.writer import INGEST_ACTOR, DeviceWrite, MeasureWriter
from ucity.store.base import Outcome, Store

log = logging.getLogger(__name__)

# What a write on the stream answers: taken, to be committed by the partition's worker.
QUEUED = Outcome(None, "queued", result={"queued": True}, changed=False)


class StreamMeasureWriter(MeasureWriter):
    """Device writes onto the observation stream, one message per partition of a batch."""

    writes_extra = False  # the worker owning the device writes its deviceState (the stream carries observations)

    def __init__(self, store: Store, stream: JetStream, partitions: int) -> None:
        super().__init__(store)
        self.stream = stream
        self.partitions = partitions

    async def write(self, writes: list[DeviceWrite]) -> list[Outcome | Exception]:
        by_partition: dict[int, list[int]] = {}
        for index, write in enumerate(writes):
            partition = partition_of(write.profile.tenant, write.profile.entity_id, self.partitions)
            by_partition.setdefault(partition, []).append(index)
        results: list[Outcome | Exception] = [QUEUED] * len(writes)
        context = Context(actor=INGEST_ACTOR)

        async def send(partition: int, indexes: list[int]) -> None:
            try:
                await self.stream.publish("obs", partition, encode_writes([writes[i] for i in indexes], context))
            except Unavailable as exc:
                for i in indexes:
                    results[i] = exc

        await asyncio.gather(*(send(p, indexes) for p, indexes in by_partition.items()))
        return results


class ChangeForwarder:
    """A platform component of the API process: its committed changes onto the event stream."""

    def __init__(self, bus: Bus, stream: JetStream, partitions: int) -> None:
        self.bus = bus
        self.stream = stream
        self.partitions = partitions
        self._unsubscribe: Callable[[], None] | None = None
        self.forwarded = 0
        self.lost = 0
        self.alarms_forwarded = 0
        self.alarms_lost = 0
        self.handed_over = 0
        self.sent_here = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        from ucity.alarms import AlarmChanged

        unsubscribe = [self.bus.subscribe(EntitiesChanged, self._forward),
                       self.bus.subscribe(AlarmChanged, self._forward_alarm)]

        def stop_all() -> None:
            for stop in unsubscribe:
                stop()

        self._unsubscribe = stop_all

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def health(self) -> dict[str, Any]:
        return {"ok": self._unsubscribe is not None, "forwarded": self.forwarded, "lost": self.lost,
                "alarmsForwarded": self.alarms_forwarded, "alarmsLost": self.alarms_lost,
                "notificationsHandedOver": self.handed_over, "notificationsSentHere": self.sent_here}

    def hand_over(self, tenant: str, entity: str, notification_id: str, here: Callable[[], None]) -> None:
        """`Dispatcher.hand_over`: a stored notification of an entity (or event) the workers own goes to the worker
        of its partition, which sends it (and would send it again after a crash); if the stream does not take the
        message, this process sends it itself (`here`)."""
        task = asyncio.get_running_loop().create_task(self._hand_over(tenant, entity, notification_id, here))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _hand_over(self, tenant: str, entity: str, notification_id: str, here: Callable[[], None]) -> None:
        try:
            await self.stream.publish("events", partition_of(tenant, entity, self.partitions),
                                      encode_notifications(Context(actor="ucity-alarms"), [(tenant, notification_id)]),
                                      msg_id=f"{notification_id}.notification")
            self.handed_over += 1
        except Unavailable as exc:
            self.sent_here += 1
            log.warning("notification %s not handed over (%s): sent from this process", notification_id, exc)
            here()

    async def _forward_alarm(self, event: Any) -> None:
        """An alarm this process changed (it decides none itself): its owner reads it again."""
        alarm = event.alarm
        partition = partition_of(event.tenant, str(alarm["entity_id"]), self.partitions)
        try:
            await self.stream.publish("events", partition, encode_alarms(event.context, [(event.tenant, alarm["id"])]),
                                      msg_id=f"{event.context.id}.alarm")
            self.alarms_forwarded += 1
        except Unavailable as exc:
            # Saved but not told: the owner learns of it at its next rebalance (docs/operations.md).
            self.alarms_lost += 1
            log.error("alarm %s changed here, not forwarded to partition %d: %s", alarm["id"], partition, exc)

    async def _forward(self, event: EntitiesChanged) -> None:
        by_partition: dict[int, list[EntityChange]] = {}
        for change in event.changes:
            by_partition.setdefault(partition_of(change.tenant, change.entity_id, self.partitions), []).append(change)
        for partition, changes in by_partition.items():
            try:
                # The message id lets JetStream drop a second copy of the same commit's changes.
                await self.stream.publish("events", partition, encode_changes(event.context, changes),
                                          msg_id=f"{event.context.id}.{partition}")
                self.forwarded += len(changes)
            except Unavailable as exc:
                # Committed but not forwarded: the owner's rules miss this change (docs/operations.md).
                self.lost += len(changes)
                log.error("%d committed change(s) not forwarded to partition %d: %s", len(changes), partition, exc)


def owns_nothing(tenant: str, entity_id: str) -> bool:
    """The API process in scale-out: the workers own every entity."""
    return False
