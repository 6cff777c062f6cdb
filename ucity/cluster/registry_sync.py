"""Scale-out: a device or service group provisioned through one process is known to every process at once.

Every process (API or worker) resolves measures with its own copy of the device registry (ucity/ingest/registry.py):
an MQTT measure of the shared subscription may come to any of them, an HTTP measure to any API process. After each
change it stores (groups and devices: added, replaced, removed; autoprovisioned devices too), a process sends the
changed documents' names, (tenant, kind, key), on plain NATS (`ucity.live.registry`); every other process reads those
documents again from the store (`Store.get_doc`) and indexes or unindexes them. The message carries no document (a
message that is not ucity's makes nothing but a re-read), and it is sent after the commit, so the re-read finds it.

Plain NATS is at most once: a process cut from NATS for a moment misses changes. Every `ingest.registry_refresh_s`
(default 60 s; 0: never) each process therefore re-reads every group and device and applies what differs, a page
at a time with the event loop free in between; an unchanged device costs a fingerprint (docs/operations.md §1 gives
the cost at 100,000 devices). What this cannot mend, two processes creating one device id at the same instant, the
store settles: creation is insert-if-absent, and the loser answers 409 (ucity/ingest/registry.py). More than
`MAX_KEYS` changes at once (a large provisioning batch) are told as one "re-read everything".
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from ucity.cluster.jetstream import JetStream
from ucity.cluster.live import Broadcaster
from ucity.core.clock import Clock
from ucity.core.refresh import Refresh
from ucity.ingest.registry import KINDS, DeviceRegistry, DocKey

log = logging.getLogger(__name__)
NAME = "registry"
MAX_KEYS = 500  # more changed documents in one message: the receivers re-read everything instead


class RegistrySync:
    """A platform component (just before ingest): this process's provisioning changes out to the others; theirs in."""

    def __init__(self, registry: DeviceRegistry, stream: JetStream, clock: Clock,
                 refresh_s: Callable[[], float]) -> None:
        self.registry = registry
        self.stream = stream
        self.refresh_s = refresh_s
        self.out = Broadcaster(stream, NAME, "a provisioning change was not told to the other processes (they re-read "
                                             "every ingest.registry_refresh_s)")
        self.origin = self.out.origin  # this process: its own messages come back and are skipped
        self.received = self.refused = self.failed = 0
        self._stop: Callable[[], Awaitable[None]] | None = None
        self._refresh = Refresh(clock, "ucity-registry-refresh", "the service groups and devices", self._reread_all,
                                refresh_s)
        registry.share(self._send)  # before the ingest loads the registry: fingerprints from the first read

    async def start(self) -> None:
        # Started before the ingest loads the registry: a change told while it reads is re-read too (the load does
        # not apply its older copy of what was re-read meanwhile), so nothing falls between load and listening.
        self._stop = await self.stream.listen(NAME, self._received)
        if self.refresh_s() > 0:
            self._refresh.start()

    async def stop(self) -> None:
        await self._refresh.stop()
        if self._stop is not None:
            await self._stop()
            self._stop = None
        await self.out.drain()

    async def settle(self) -> None:
        """Until the periodic re-read under way (if any) and the messages being sent are done (tests)."""
        await self._refresh.settle()
        await self.out.drain()

    def health(self) -> dict[str, Any]:
        return {"ok": True, "receiving": self._stop is not None, "sent": self.out.sent, "received": self.received,
                "lost": self.out.lost, "refused": self.refused, "failed": self.failed, **self._refresh.health()}

    # -- out ---------------------------------------------------------------------------------------------------
    def _send(self, keys: list[DocKey]) -> None:
        message: dict[str, Any] = {}
        if len(keys) > MAX_KEYS:
            message["all"] = True
        else:
            message["changes"] = [list(key) for key in keys]
        self.out.send(message)

    # -- in ----------------------------------------------------------------------------------------------------
    async def _received(self, payload: bytes) -> None:
        try:
            message = orjson.loads(payload)
            if message["origin"] == self.origin:
                return
            everything = message.get("all") is True
            keys: list[DocKey] = []
            if not everything:
                for item in message["changes"]:
                    tenant, kind, key = item
                    if kind not in KINDS or not isinstance(tenant, str) or not isinstance(key, str):
                        raise ValueError(f"not a provisioning document: {kind!r}")
                    keys.append((tenant, kind, key))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            self.refused += 1
            log.warning("a provisioning message that is not ucity's was ignored: %s", exc)
            return
        self.received += 1
        try:
            if everything:
                await self.registry.refresh()
            elif keys:
                await self.registry.reread(keys)
        except Exception as exc:  # the store is down: the periodic re-read catches up
            self.failed += 1
            if self.failed == 1 or self.failed % 1000 == 0:
                log.warning("re-reading provisioning changed by another process failed (%d so far; re-read again "
                            "every ingest.registry_refresh_s): %s", self.failed, f"{type(exc).__name__}: {exc}"[:300])

    async def _reread_all(self) -> None:
        await self.registry.refresh()
