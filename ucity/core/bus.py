"""The typed in-process event bus.

Every event is a frozen dataclass carrying a `Context` (id, parent id, actor), so that anything
the platform does can be traced back to the request, reading or rule that caused it.
Subscribing returns a function that unsubscribes. Handlers are coroutines; a failing handler is
logged and never breaks the publisher or the other handlers.

The store publishes `EntitiesChanged` after each commit: that is the one write path that
history, subscriptions and rules consume.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ucity.core.frozen import fast_init

log = logging.getLogger(__name__)


_IDS: list[str] = []


def _new_id() -> str:
    """A random 128-bit hex id (as long as uuid4().hex), from a pool filled by one read of the system's
    randomness: uuid4() reads it for every id, and that system call hands the GIL to the store's writer
    thread, which the event loop then waits to get back (measured: a fifth of the loop's time per PATCH;
    ~5 % of it in alarm bursts, which make a Context per change)."""
    try:
        return _IDS.pop()
    except IndexError:
        raw = os.urandom(16 * 256).hex()
        _IDS.extend(raw[k:k + 32] for k in range(32, len(raw), 32))
        return raw[:32]


@fast_init
@dataclass(frozen=True, slots=True)
class Context:
    """Who or what caused an event, and what caused that."""

    id: str = field(default_factory=_new_id)
    parent_id: str | None = None
    actor: str | None = None

    def child(self, actor: str | None = None) -> Context:
        return Context(parent_id=self.id, actor=actor or self.actor)


@dataclass(frozen=True, slots=True)
class Event:
    context: Context


@fast_init
@dataclass(frozen=True, slots=True)
class EntityChange:
    """One entity written by one committed operation.

    `before`/`after` are the stored (expanded) documents; `attrs` the attribute IRIs the write
    touched (created, updated or deleted); `instances` the attribute instances written, as
    (attribute IRI, instance) pairs, which are the observations rules consume.
    """

    tenant: str
    entity_id: str
    operation: str  # create | update | replace | delete
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    attrs: frozenset[str]
    instances: tuple[tuple[str, dict[str, Any]], ...] = ()

    @property
    def types(self) -> list[str]:
        doc = self.after or self.before or {}
        return list(doc.get("type", []))


@fast_init
@dataclass(frozen=True, slots=True)
class EntitiesChanged(Event):
    """Entities written in one committed batch."""

    changes: tuple[EntityChange, ...]


E = TypeVar("E", bound=Event)
Handler = Callable[[E], Awaitable[None]]


class Bus:
    """In-process publish/subscribe by event class."""

    def __init__(self) -> None:
        # Tuples, replaced (not changed) on (un)subscribing: `publish` iterates over the one it found without
        # copying it, and it runs once per committed write (one event per request of a group commit).
        self._handlers: dict[type[Event], tuple[Callable[[Any], Awaitable[None]], ...]] = {}

    def subscribe(self, event_type: type[E], handler: Handler[E]) -> Callable[[], None]:
        self._handlers[event_type] = (*self._handlers.get(event_type, ()), handler)

        def unsubscribe() -> None:
            handlers = list(self._handlers.get(event_type, ()))
            if handler in handlers:
                handlers.remove(handler)
                self._handlers[event_type] = tuple(handlers)

        return unsubscribe

    async def publish(self, event: Event) -> None:
        for handler in self._handlers.get(type(event), ()):
            try:
                await handler(event)
            except Exception:  # a subscriber's bug must not break the write path
                log.exception("bus handler %r failed on %s", handler, type(event).__name__)
