"""The platform: the one object that wires ucity together and starts and stops it in order.

Components register in dependency order (store before the services that use it); `start`
starts them in that order and `stop` stops them in reverse, so nothing runs on top of a part
that is already gone. Domains receive the platform in their `setup(platform, config)`. Every platform has the
component `privacy` (ucity/core/privacy.py): the personal entity types in force, which domains extend in `setup`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from ucity.core.bus import Bus
from ucity.core.clock import Clock, SystemClock
from ucity.core.config import Settings
from ucity.core.privacy import PersonalTypes

log = logging.getLogger(__name__)


class Component(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class Platform:
    """Settings, clock, bus and the registered components with their lifecycle."""

    def __init__(self, settings: Settings, clock: Clock | None = None, bus: Bus | None = None) -> None:
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self.bus = bus or Bus()
        self._components: list[tuple[str, Component]] = []
        self._started: list[tuple[str, Component]] = []
        self.services: dict[str, Any] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        # The personal entity types in force (settings ∪ what domains declare in setup, ucity/core/privacy.py): the
        # first component, so that declarations close before anything else starts.
        self.privacy = PersonalTypes(settings.privacy)
        self.add("privacy", self.privacy)

    def add(self, name: str, component: Component) -> None:
        """Register a component; it starts after every component added before it."""
        if any(existing == name for existing, _ in self._components):
            raise ValueError(f"component {name!r} is already registered")
        self._components.append((name, component))
        self.services[name] = component

    def get(self, name: str) -> Any:
        return self.services[name]

    async def start(self) -> None:
        # The loop the platform runs on, for threads that must hand work to it.
        self.loop = asyncio.get_running_loop()
        for name, component in self._components:
            log.debug("starting %s", name)
            try:
                await component.start()
            except Exception:
                await self.stop()
                raise
            self._started.append((name, component))

    async def stop(self) -> None:
        while self._started:
            name, component = self._started.pop()
            log.debug("stopping %s", name)
            try:
                await component.stop()
            except Exception:  # keep stopping the rest
                log.exception("stopping %s failed", name)

    def health(self) -> dict[str, Any]:
        """Readiness per component: a component may offer `health() -> dict`."""
        detail: dict[str, Any] = {}
        for name, component in self._components:
            probe = getattr(component, "health", None)
            started = any(n == name for n, _ in self._started)
            detail[name] = probe() if callable(probe) and started else {"ok": started}
        return detail
