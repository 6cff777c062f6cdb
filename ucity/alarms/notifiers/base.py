"""The notifier contract, and the delivery queue every notifier endpoint gets.

A notifier sends one `Notification` and says how it went (`DeliveryResult`); it does not retry.
`Outbox` gives each endpoint its own bounded queue and worker task, so a receiver that is down
delays only its own notifications. A failed send is retried with exponential backoff on the
platform clock (tests move a fake clock); after the last attempt, or when the notifier says a
retry cannot help, the notification becomes a dead letter: stored and listed by the API, never
silently lost. A full queue turns its oldest notification into a dead letter too.

An outbox given a `Journal` (ucity/alarms/journal.py) keeps its queue in the store as well: an item's stored
entry is rewritten after each failed attempt and deleted once the item is delivered or is a dead letter, so
that a restart sends what was queued and not yet delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ucity.core.clock import Clock, to_iso
from ucity.core.clock import sleep as clock_sleep
from ucity.core.config import RetrySettings

if TYPE_CHECKING:
    from ucity.alarms.journal import Journal

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Recipient:
    """Whom a notification is for: a member of a recipient group, at one address of one channel."""

    name: str
    address: str | None = None  # e-mail address, phone number, push token; None for a group endpoint
    language: str = "ko"


@dataclass(frozen=True, slots=True)
class Notification:
    """One message about one alarm event, for one recipient (or one group endpoint)."""

    id: str
    tenant: str
    event: str  # raised | escalated | step | reactivated | acknowledged | cleared | closed
    created_at: str
    alarm: dict[str, Any]
    subject: dict[str, str]  # {"ko": ..., "en": ...}
    text: dict[str, str]
    group: str | None = None
    step: int | None = None
    recipient: Recipient | None = None

    def payload(self) -> dict[str, Any]:
        """The JSON form (webhook body, dead letters, recordings)."""
        body: dict[str, Any] = {"id": self.id, "tenant": self.tenant, "event": self.event,
                                "createdAt": self.created_at, "subject": self.subject, "text": self.text,
                                "group": self.group, "step": self.step, "alarm": self.alarm}
        if self.recipient is not None:
            body["recipient"] = {"name": self.recipient.name, "address": self.recipient.address,
                                 "language": self.recipient.language}
        return body


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    ok: bool
    detail: str = ""
    retry: bool = True  # False: another attempt cannot succeed (e.g. no address, misconfiguration)


class Notifier(Protocol):
    """What a channel provides. `sends` is False for adapters that only record (development)."""

    id: str
    kind: str
    sends: bool

    async def send(self, notification: Notification) -> DeliveryResult: ...

    def describe(self) -> dict[str, Any]: ...

    async def close(self) -> None: ...


DeadLetterFn = Callable[[Notification, str, int, str], Coroutine[Any, Any, None]]  # (notification, notifier, attempts, error)
DeliveredFn = Callable[[Notification, "Notifier", DeliveryResult], None]  # (notification, notifier, its result)


@dataclass(slots=True)
class OutboxStats:
    sent: int = 0
    failed_attempts: int = 0
    dead: int = 0
    last_error: str | None = None
    last_success: str | None = None
    state: str = "idle"  # idle | sending | backoff

    def to_wire(self, queued: int) -> dict[str, Any]:
        return {"sent": self.sent, "failedAttempts": self.failed_attempts, "deadLetters": self.dead,
                "lastError": self.last_error, "lastSuccess": self.last_success, "state": self.state,
                "queued": queued}


@dataclass(slots=True)
class _Item:
    notification: Notification
    attempts: int = 0
    errors: list[str] = field(default_factory=list)
    entry: dict[str, Any] | None = None  # its stored outbox entry (None: not journaled)


class Outbox:
    """One endpoint's bounded queue, worker task and retry policy."""

    def __init__(self, name: str, notifier: Callable[[], Notifier | None], clock: Clock, retry: RetrySettings,
                 size: int, dead_letter: DeadLetterFn, journal: Journal | None = None,
                 delivered: DeliveredFn | None = None) -> None:
        self.name = name
        self._delivered = delivered  # told of each delivery (the alarm's history records it)
        self._journal = journal
        self.stats = OutboxStats()
        self._notifier = notifier
        self._clock = clock
        self._retry = retry
        self._dead_letter = dead_letter
        self._queue: asyncio.Queue[_Item] = asyncio.Queue(maxsize=size)
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"ucity-alarm-outbox:{name}")

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    @property
    def busy(self) -> bool:
        """Sending now or holding work (for tests: `idle` means nothing moves without the clock)."""
        return self.stats.state == "sending" or (self.stats.state == "idle" and not self._queue.empty())

    def put(self, notification: Notification, attempts: int = 0, entry: dict[str, Any] | None = None) -> None:
        """Queue a notification; `attempts` already made (one read back from the store), `entry` its stored
        outbox entry when the outbox has a journal."""
        if self._queue.full():
            oldest = self._queue.get_nowait()  # never block an alarm: the oldest gives way, as a dead letter
            self._spawn_dead(oldest, "queue full")
        self._queue.put_nowait(_Item(notification, attempts, entry=entry))

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        return float(min(self._retry.max_s, self._retry.base_s * 2 ** (attempt - 1)))

    async def _run(self) -> None:
        while True:
            item = await self._queue.get()
            try:
                await self._deliver(item)
            except Exception:  # a bug in one delivery must not stop the endpoint's worker
                log.exception("outbox %s: delivering %s failed", self.name, item.notification.id)
            self.stats.state = "idle"

    async def _deliver(self, item: _Item) -> None:
        while True:
            notifier = self._notifier()
            if notifier is None:
                await self._dead(item, "notifier removed")
                return
            self.stats.state = "sending"
            item.attempts += 1
            result = await notifier.send(item.notification)
            if result.ok:
                self._succeeded()
                await self._settled(item)
                if self._delivered is not None:
                    self._delivered(item.notification, notifier, result)
                return
            self._failed(item, result.detail)
            if not result.retry or item.attempts >= self._retry.max_attempts:
                await self._dead(item, result.detail)
                return
            if self._journal is not None:
                await self._journal.attempted(item.notification, item.entry, item.attempts, result.detail)
            self.stats.state = "backoff"
            await clock_sleep(self._clock, self.backoff(item.attempts), self._woken)

    def _woken(self) -> None:
        # Busy from the instant the clock wakes it, so that whoever waits for idle endpoints
        # (tests, shutdown) does not see it idle between the timer and the next attempt.
        self.stats.state = "sending"

    def _succeeded(self) -> None:
        if self.stats.last_error is not None and self.stats.failed_attempts:
            log.info("notifier %s delivers again", self.name)
        self.stats.sent += 1
        self.stats.last_success = to_iso(self._clock.now())
        self.stats.last_error = None

    def _failed(self, item: _Item, detail: str) -> None:
        # Log the transition to failing, not every failed attempt.
        if self.stats.last_error is None:
            log.warning("notifier %s: delivery failed: %s", self.name, detail)
        self.stats.failed_attempts += 1
        self.stats.last_error = detail
        item.errors.append(detail)

    async def _settled(self, item: _Item) -> None:
        """Delivered, or kept as a dead letter: its stored entry goes."""
        if self._journal is not None and item.entry is not None:
            await self._journal.done(item.notification)

    async def _dead(self, item: _Item, detail: str) -> None:
        self.stats.dead += 1
        await self._dead_letter(item.notification, self.name, item.attempts, detail)
        await self._settled(item)  # not reached when the dead letter could not be written: the entry stays

    def _spawn_dead(self, item: _Item, detail: str) -> None:
        self.stats.dead += 1

        async def dead() -> None:
            await self._dead_letter(item.notification, self.name, item.attempts, detail)
            await self._settled(item)

        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(dead())
        task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
