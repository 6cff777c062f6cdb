"""One ucity process owns a SQLite file (store.exclusive, on by default): a second one on the same file is refused at
start, naming the first one's pid, instead of writing beside it (the writer's caches of entities, series and
instance ids hold only for the file's only writer). QA6 saw a second `ucity serve` on the same data dir serve."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ucity.core.config import load_settings
from ucity.core.errors import Unavailable
from ucity.store import open_store
from ucity.store.sqlite import SqliteStore


async def test_a_second_store_on_the_file_is_refused_until_the_first_stops(tmp_path: Path) -> None:
    path = tmp_path / "ucity.db"
    first = SqliteStore(path, exclusive=True)
    await first.start()
    try:
        second = SqliteStore(path, exclusive=True)
        with pytest.raises(Unavailable, match=rf"in use by another ucity process \(pid {os.getpid()}\)"):
            await second.start()
    finally:
        await first.stop()
    await second.start()  # the first one let go
    await second.stop()


async def test_another_process_is_refused_and_the_settings_default_to_exclusive(tmp_path: Path) -> None:
    settings = load_settings(environment="test", data_dir=str(tmp_path / "data"))
    assert settings.store.exclusive is True
    store = open_store(settings)
    await store.start()
    try:
        script = textwrap.dedent(f"""
            import asyncio
            from ucity.core.config import load_settings
            from ucity.store import open_store
            asyncio.run(open_store(load_settings(environment="test", data_dir={str(tmp_path / "data")!r})).start())
        """)
        other = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
        assert other.returncode != 0
        assert f"is in use by another ucity process (pid {os.getpid()})" in other.stderr
    finally:
        await store.stop()
