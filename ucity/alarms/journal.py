"""The durable side of the notification outboxes: what is queued to be sent is also in the store.

A queued notification (an alarm's to a person or a group endpoint, an event package to an agency) is a
document of kind `notification-outbox` in the store's document table from the moment it is queued until it
is delivered (deleted) or given up on (deleted, and kept as a dead letter). An alarm change's notifications
are written in the same commit as the alarm row (`Store.save_alarms(..., docs)`): once the change is
durable, so is the duty to tell. A process that starts (or a worker that gains partitions) sends again what
is in the store for the entities it owns and does not hold in memory, with the attempts already made
counted. Delivery is at least once: a crash after a send and before its deletion, or a rebalance while the
previous owner still sends, sends it again with the same id (`X-Ucity-Delivery`), which receivers use to
drop the copy.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from typing import Any

from ucity.alarms.notifiers.base import Notification, Recipient
from ucity.core.clock import Clock, to_iso
from ucity.store.base import Doc, Store

log = logging.getLogger(__name__)
KIND = "notification-outbox"
ALARM, AGENCY = "alarm", "agency"  # channels: an alarm notifier, an agency's linkage webhook


def notification_doc(notification: Notification) -> Doc:
    """Every field of a notification (or of a subclass's dataclass fields), as JSON."""
    doc: Doc = {"id": notification.id, "tenant": notification.tenant, "event": notification.event,
                "createdAt": notification.created_at, "alarm": notification.alarm, "subject": notification.subject,
                "text": notification.text, "group": notification.group, "step": notification.step,
                "recipient": None if notification.recipient is None else {
                    "name": notification.recipient.name, "address": notification.recipient.address,
                    "language": notification.recipient.language}}
    for name in ("package", "linkage"):  # PackageNotification's own fields
        if hasattr(notification, name):
            doc[name] = getattr(notification, name)
    return doc


def notification_fields(doc: Doc) -> dict[str, Any]:
    """The constructor arguments of the notification a `notification_doc` holds (`Notification(**fields)`, or a
    subclass's with its own fields, which are included when stored)."""
    recipient = doc.get("recipient")
    fields: dict[str, Any] = {
        "id": doc["id"], "tenant": doc["tenant"], "event": doc["event"], "created_at": doc["createdAt"],
        "alarm": doc.get("alarm") or {}, "subject": doc["subject"], "text": doc["text"], "group": doc.get("group"),
        "step": doc.get("step"),
        "recipient": None if recipient is None else Recipient(recipient["name"], recipient.get("address"),
                                                              recipient.get("language", "ko"))}
    for name in ("package", "linkage"):
        if name in doc:
            fields[name] = doc[name]
    return fields


@dataclass(frozen=True, slots=True)
class Pending:
    """One stored outbox entry, read back at start: where it goes and how often it was tried."""

    channel: str
    endpoint: str  # the notifier id (alarm) or the agency id (agency)
    entity: str  # the entity whose owner sends it (the alarm's entity; an ops event's id)
    attempts: int
    doc: Doc  # the notification (`notification_doc`)
    entry: Doc  # the whole stored entry (rewritten after each failed attempt)

    @property
    def id(self) -> str:
        return str(self.doc["id"])

    @property
    def tenant(self) -> str:
        return str(self.doc["tenant"])

    def notification(self) -> Notification:
        return Notification(**notification_fields(self.doc))


class Journal:
    """Stored outbox entries: written when queued, updated per failed attempt, deleted when done."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self._order = itertools.count()
        self.held: set[str] = set()  # ids of the entries this process has queued and not yet settled
        self.failures = 0  # journal writes that failed (the notification still goes; a restart may not resend it)

    def entry(self, channel: str, endpoint: str, entity: str, notification: Notification) -> tuple[str, str, Doc]:
        """(tenant, key, doc) of the entry of a notification about to be queued."""
        doc = {"channel": channel, "endpoint": endpoint, "entity": entity, "queuedAt": to_iso(self.clock.now()),
               "order": next(self._order), "attempts": 0, "lastError": None,
               "notification": notification_doc(notification)}
        return notification.tenant, notification.id, doc

    async def add(self, entries: list[tuple[str, str, Doc]]) -> None:
        await self.store.put_docs(KIND, entries)

    async def attempted(self, notification: Notification, entry: Doc | None, attempts: int, error: str) -> None:
        """A failed attempt: the count survives a restart (`alarms.retry.max_attempts` holds across it)."""
        if entry is None:
            return
        entry["attempts"], entry["lastError"] = attempts, error
        await self._write(self.store.put_doc(KIND, notification.tenant, notification.id, entry), notification)

    async def done(self, notification: Notification) -> None:
        """Delivered or given up on (the dead letter is written first): the entry goes, and then the notification is
        no longer held. In that order: a `Dispatcher.resume` reading the entries meanwhile either finds it held or
        reads after the deletion, and never sends a delivered notification again (found at a start, when the sweep's
        notices are delivered while the start-up resume reads)."""
        await self._write(self.store.delete_doc(KIND, notification.tenant, notification.id), notification)
        self.held.discard(notification.id)

    async def _write(self, write: Any, notification: Notification) -> None:
        try:
            await write
        except Exception as exc:  # the delivery itself went as it went; only its record is behind
            self.failures += 1
            log.warning("notification %s: its outbox entry could not be updated: %s", notification.id, exc)

    async def pending(self) -> list[Pending]:
        """Every stored entry, oldest first (per endpoint, the order they were queued in)."""
        found = []
        for _, _, doc in await self.store.list_docs(KIND):
            try:
                found.append((str(doc["queuedAt"]), int(doc.get("order", 0)),
                              Pending(str(doc["channel"]), str(doc["endpoint"]), str(doc.get("entity", "")),
                                      int(doc.get("attempts", 0)), doc["notification"], doc)))
            except (KeyError, TypeError, ValueError) as exc:
                log.error("an outbox entry in the store is unreadable and is left there: %s", exc)
        found.sort(key=lambda item: (item[0], item[1]))
        return [pending for _, _, pending in found]
