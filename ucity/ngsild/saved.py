"""The NGSI-LD notifications a subscription could not deliver yet, kept in the store (QA11 leftover).

A subscription's queue (`subscriptions.Outbox`) lives in memory while its receiver answers: a healthy
subscription writes nothing here, so the hot path gains no store write per notification. Its
notifications are written here as documents of kind `ngsild-notification-outbox` (the store's document
table, as the alarms' outbox: ucity/alarms/journal.py), keyed by the notification id:

* while its deliveries fail (an outage): from the first failed attempt, the notification being retried
  (with its attempts so far) and every one queued behind it, and each new one as it is queued, until a
  delivery succeeds; each is deleted once delivered (or given up on, or dropped by a full queue), so a
  crash (SIGKILL) during an outage loses nothing that was queued;
* at a graceful stop: everything still queued and what a `throttling` window holds, `released`.

At start a process sends again, before anything newer, the saved notifications of the subscriptions it
owns, in the order they were queued, each with its id and its attempts so far, and deletes each once
delivered. Only one process sends a saved queue again: the one that `owns` the subscription (alone, the
process; in scale-out the worker owning the partition of (tenant, subscription id), as for periodic
notifications; an API process owns none), at its start and at each re-read of the subscriptions
(`subscriptions.refresh_s`), and only a queue no running process holds: one written at a graceful stop
(`released`), or one whose holder is gone. A holder says it is alive in a document of kind
`ngsild-notification-holder` (written before its first saved notification, then every refresh while it
holds some): it is gone when that is `STALE_REFRESHES` refresh periods old, or at once when it ran on
this host and its process id is not running (or is this process's own: a container started again).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from ucity.core.clock import Clock, parse_iso_clamped, to_iso
from ucity.store.base import Doc, Store

log = logging.getLogger(__name__)

KIND: Final = "ngsild-notification-outbox"
HOLDER_KIND: Final = "ngsild-notification-holder"
HOLDER_TENANT: Final = ""  # the holders' documents belong to no tenant
_RUNNING: set[str] = set()  # the instances running in this process (tests run several platforms in one)
STALE_REFRESHES: Final = 3
"""A holder that has not written its `aliveAt` for this many refresh periods is taken to be gone."""


@dataclass(frozen=True, slots=True)
class Saved:
    """One saved notification read back: its subscription, where it stands and what it says."""

    tenant: str
    subscription: str
    id: str
    notified_at: str
    data: list[dict[str, Any]]
    attempts: int
    holder: str
    released: bool
    order: tuple[str, int]  # (queuedAt, order): the order they were queued in


def saved_of(tenant: str, doc: Doc) -> Saved:
    return Saved(tenant, str(doc["subscription"]), str(doc["id"]), str(doc["notifiedAt"]), list(doc["data"]),
                 int(doc.get("attempts", 0)), str(doc.get("holder", "")), bool(doc.get("released", False)),
                 (str(doc.get("queuedAt", "")), int(doc.get("order", 0))))


class SavedNotifications:
    """The saved notifications this process holds, and their writes to the store, in order."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self.instance = uuid.uuid4().hex  # this process (this start of it)
        _RUNNING.add(self.instance)
        self.held: dict[str, tuple[str, Doc]] = {}  # notification id -> (tenant, its document), written or due
        self.failures = 0  # store writes that failed (logged; the notifications still go from memory)
        self._order = itertools.count()
        self._ops: list[tuple[str, str, str, Doc | None]] = []  # ("put" | "del", tenant, key, doc)
        self._writer: asyncio.Task[None] | None = None
        self._alive_written = False
        self._host, self._pid = socket.gethostname(), os.getpid()

    # -- what is held --------------------------------------------------------------------------
    def save(self, tenant: str, subscription: str, item_id: str, notified_at: str, data: list[dict[str, Any]],
             attempts: int) -> None:
        """Write (or rewrite) one notification's document: queued, with `attempts` made so far."""
        doc = self._hold(tenant, subscription, item_id, notified_at, data, attempts)
        self._enqueue("put", tenant, item_id, doc)

    def _say_alive(self) -> None:
        """Before this process's first saved notification is written: the holder's document, so that an owner
        elsewhere does not take the notifications for those of a process that is gone."""
        if not self._alive_written:
            self._alive_written = True
            self._enqueue("alive", HOLDER_TENANT, self.instance, None)

    def _hold(self, tenant: str, subscription: str, item_id: str, notified_at: str, data: list[dict[str, Any]],
              attempts: int) -> Doc:
        held = self.held.get(item_id)
        self._say_alive()
        if held is None:
            doc: Doc = {"id": item_id, "subscription": subscription, "holder": self.instance, "released": False,
                        "queuedAt": to_iso(self.clock.now()), "order": next(self._order), "attempts": attempts,
                        "notifiedAt": notified_at, "data": data}
        else:
            doc = {**held[1], "attempts": attempts, "notifiedAt": notified_at, "data": data}
        self.held[item_id] = (tenant, doc)
        return doc

    def adopt(self, saved: Saved) -> None:
        """Hold a notification read back from the store (written again as this process's, not released)."""
        self._say_alive()
        doc: Doc = {"id": saved.id, "subscription": saved.subscription, "holder": self.instance, "released": False,
                    "queuedAt": saved.order[0], "order": saved.order[1], "attempts": saved.attempts,
                    "notifiedAt": saved.notified_at, "data": saved.data}
        self.held[saved.id] = (saved.tenant, doc)
        self._enqueue("put", saved.tenant, saved.id, doc)

    def attempts(self, item_id: str) -> int:
        held = self.held.get(item_id)
        return int(held[1]["attempts"]) if held is not None else 0

    def done(self, ids: Iterable[str]) -> None:
        """Delivered, given up on or dropped: their documents go."""
        for item_id in ids:
            held = self.held.pop(item_id, None)
            if held is not None:
                self._enqueue("del", held[0], item_id, None)

    def forget(self, tenant: str, subscription: str) -> None:
        """A deleted subscription: the documents this process holds for it go."""
        self.done([i for i, (t, doc) in self.held.items() if t == tenant and doc["subscription"] == subscription])

    def count(self) -> int:
        return len(self.held)

    def writing(self) -> bool:
        """Whether writes asked for are not done yet (a notification saved a moment ago may not be durable yet)."""
        return self._writer is not None and not self._writer.done()

    # -- writes, in the order they were asked for ------------------------------------------------
    def _enqueue(self, op: str, tenant: str, key: str, doc: Doc | None) -> None:
        self._ops.append((op, tenant, key, doc))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write(), name="ucity-ngsild-saved")

    async def _write(self) -> None:
        while self._ops:
            ops, self._ops = self._ops, []
            # Consecutive puts (and deletes) go in one commit; a put and a later delete of one key stay in order.
            for op, group in itertools.groupby(ops, key=lambda o: o[0]):
                batch = list(group)
                try:
                    if op == "alive":
                        await self.store.put_doc(HOLDER_KIND, HOLDER_TENANT, self.instance, self._holder_doc())
                    elif op == "unalive":
                        await self.store.delete_doc(HOLDER_KIND, HOLDER_TENANT, self.instance)
                    elif op == "put":
                        await self.store.put_docs(KIND, [(t, k, dict(d or {})) for _, t, k, d in batch])
                    else:
                        await self.store.delete_docs(KIND, [(t, k) for _, t, k, _ in batch])
                except Exception as exc:  # the notifications still go from memory; a crash now could lose them
                    self.failures += 1
                    log.warning("subscriptions: %d saved-notification writes failed: %s", len(batch), exc)

    async def flush(self) -> None:
        """Until every write asked for so far is done."""
        while self._writer is not None and not self._writer.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(self._writer)

    # -- liveness of holders (scale-out) ---------------------------------------------------------
    def alive(self) -> None:
        """While this process holds saved notifications, say so (every refresh); once it holds none, stop."""
        if self.held:
            self._alive_written = True
            self._enqueue("alive", HOLDER_TENANT, self.instance, None)
        elif self._alive_written:
            self._alive_written = False
            self._enqueue("unalive", HOLDER_TENANT, self.instance, None)

    def _holder_doc(self) -> Doc:
        return {"aliveAt": to_iso(self.clock.now()), "host": self._host, "pid": self._pid}

    def _gone(self, holder: str, doc: Doc | None, now: datetime, stale_s: float) -> bool:
        """Whether the process that saved a notification is gone: no word from it for `stale_s`, or it ran on this
        host and its process is not running (or this process has its pid: a container started again)."""
        if holder == self.instance:
            return False
        if doc is None:
            return True
        try:
            if now - parse_iso_clamped(str(doc["aliveAt"])) > timedelta(seconds=stale_s):
                return True
            if doc.get("host") == self._host:
                pid = int(doc["pid"])
                if pid == self._pid:
                    return holder not in _RUNNING
                os.kill(pid, 0)  # signal 0: only whether it exists
        except ProcessLookupError:
            return True
        except (KeyError, TypeError, ValueError, PermissionError):  # unreadable, or a process of another user
            return False
        return False

    # -- stop and start --------------------------------------------------------------------------
    async def release(self, items: list[tuple[str, str, str, str, list[dict[str, Any]], int]]) -> None:
        """At a graceful stop: (tenant, subscription, id, notifiedAt, data, attempts) of everything still queued,
        in order, written `released` (any owner may send them), with what this process held."""
        await self.flush()
        for tenant, subscription, item_id, notified_at, data, attempts in items:
            self._hold(tenant, subscription, item_id, notified_at, data, max(attempts, self.attempts(item_id)))
        docs = [(tenant, item_id, {**doc, "released": True}) for item_id, (tenant, doc) in self.held.items()]
        if docs:
            await self.store.put_docs(KIND, docs)  # one commit
        self.held.clear()
        self.alive()
        await self.flush()
        _RUNNING.discard(self.instance)

    async def read(self, owns: Callable[[str, str], bool], stale_s: float) -> list[Saved]:
        """The saved notifications this process is to send again, in the order they were queued: those of the
        subscriptions it owns that no running process holds (released at a stop, or their holder is gone)."""
        await self.flush()  # this process's own writes are in what is read
        # Held when the read starts, or since: one held then and delivered while the read ran (its deletion behind
        # the read) may still be in what it returns, and must not be sent again (as `alarms.Dispatcher.resume`).
        holding = set(self.held)
        now = self.clock.now()
        holders = {key: doc for _, key, doc in await self.store.list_docs(HOLDER_KIND)}
        gone: dict[str, bool] = {}
        found: list[Saved] = []
        for tenant, key, doc in await self.store.list_docs(KIND):
            try:
                saved = saved_of(tenant, doc)
            except (KeyError, TypeError, ValueError) as exc:
                log.error("saved notification %s is unreadable and is left in the store: %s", key, exc)
                continue
            if (saved.id in holding or saved.id in self.held or saved.holder == self.instance
                    or not owns(tenant, saved.subscription)):
                continue
            if saved.holder not in gone:
                gone[saved.holder] = self._gone(saved.holder, holders.get(saved.holder), now, stale_s)
            if saved.released or gone[saved.holder]:
                found.append(saved)
        found.sort(key=lambda s: s.order)
        return found

    async def drop(self, saved: list[Saved]) -> None:
        """Saved notifications of subscriptions that no longer exist."""
        if saved:
            await self.store.delete_docs(KIND, [(s.tenant, s.id) for s in saved])
