"""A lock for race tests: it tells when somebody had to wait for it (tests/ops, tests/alarms)."""

from __future__ import annotations

import asyncio
from typing import Literal


class WatchedLock(asyncio.Lock):
    """A lock that tells when somebody had to wait for it."""

    def __init__(self) -> None:
        super().__init__()
        self.contended = asyncio.Event()

    async def acquire(self) -> Literal[True]:
        if self.locked():
            self.contended.set()
        return await super().acquire()
