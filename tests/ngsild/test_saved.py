"""Whether the holder of saved NGSI-LD notifications is gone (ucity/ngsild/saved.py): only then, or when it released
them at a stop, does the subscription's owner send them again."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from ucity.core.clock import FakeClock, to_iso
from ucity.ngsild.saved import SavedNotifications

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
STALE_S = 30.0


def holder(seconds_ago: float, host: str | None = None, pid: int | None = None) -> dict[str, Any]:
    return {"aliveAt": to_iso(T0 - timedelta(seconds=seconds_ago)), "host": host or "elsewhere",
            "pid": os.getpid() + 1 if pid is None else pid}


def saved() -> SavedNotifications:
    return SavedNotifications(None, FakeClock(T0))  # type: ignore[arg-type]  # no store: `_gone` reads none


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_holder_on_another_host_is_alive_until_its_word_is_stale() -> None:
    s = saved()
    assert not s._gone("other", holder(STALE_S - 1), T0, STALE_S)
    assert s._gone("other", holder(STALE_S + 1), T0, STALE_S)
    assert s._gone("other", None, T0, STALE_S)  # never said it was alive (or said it was done)
    assert not s._gone(s.instance, None, T0, STALE_S)  # never this process itself


def test_a_holder_on_this_host_is_gone_at_once_when_its_process_is() -> None:
    s, host = saved(), socket.gethostname()
    assert s._gone("other", holder(1, host, dead_pid()), T0, STALE_S)
    assert not s._gone("other", holder(1, host, os.getppid()), T0, STALE_S)  # running
    other = saved()  # another platform running in this process (tests): alive
    assert not s._gone(other.instance, holder(1, host, os.getpid()), T0, STALE_S)
    assert s._gone("an-earlier-start", holder(1, host, os.getpid()), T0, STALE_S)  # this pid, not running: restarted
