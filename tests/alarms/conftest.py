"""Fixtures of the alarm tests: a real platform on SQLite with a fake clock, driven by bus events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.alarms.support import T0, City, alarm_settings
from tests.conftest import free_port
from ucity.core.config import Settings

__all__ = ["free_port"]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """The shared `settings` fixture (client, live_server) with a webhook secret and a short heartbeat."""
    return alarm_settings(tmp_path, sse_heartbeat_s=0.3)


@pytest.fixture
async def city(tmp_path: Path) -> AsyncIterator[City]:
    async with City.running(alarm_settings(tmp_path), T0) as started:
        yield started
