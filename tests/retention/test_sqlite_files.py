"""QA10 F7 (SQLite): what a retention sweep deletes leaves the files at once, the -wal file included (a WAL
checkpoint that truncates it after a sweep that deleted rows), and deleted content is zeroed in the file
(`secure_delete` set by ucity, not left to the SQLite build's default)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ucity.app import Ucity
from ucity.core.clock import FakeClock, to_iso
from ucity.core.config import load_settings
from ucity.store.sqlite import SqliteStore, open_connection

T = "urn:ngsi-ld:tenant:default"
VOCAB = "https://uri.etsi.org/ngsi-ld/default-context/"
PERSON, PHONE = f"{VOCAB}Person", f"{VOCAB}telephone"
NOW = datetime(2026, 6, 1, tzinfo=UTC)
SECRET = "010-9876-5432"


@pytest.fixture(autouse=True)
def sqlite_only(store_backend: str) -> None:
    if store_backend != "sqlite":
        pytest.skip("the files of the SQLite store")


def reading(value: Any, days: float) -> dict[str, Any]:
    return {"type": "Property", "value": value, "observedAt": to_iso(NOW - timedelta(days=days))}


def files(path: str) -> dict[str, bytes]:
    return {name: Path(name).read_bytes() for name in (path, f"{path}-wal") if Path(name).exists()}


async def test_purged_values_are_in_neither_the_file_nor_its_wal_after_a_sweep(tmp_path: Path) -> None:
    settings = load_settings(environment="test", data_dir=str(tmp_path / "data"), store={"group_commit_ms": 1.0},
                             retention={"history": [{"type": "Person", "keep_days": 30}]})
    app = Ucity(settings, clock=FakeClock(NOW))
    await app.start()
    try:
        store = app.store
        assert isinstance(store, SqliteStore)
        entity = "urn:ngsi-ld:Person:elder-2"
        await store.append_history(T, entity, [PERSON], [(PHONE, reading(SECRET, 90)), (PHONE, reading("x", 1))])
        assert any(SECRET.encode() in data for data in files(store.path).values())  # written: in the WAL
        [result] = [r for r in await app.retention.sweep() if r.data == "history"]
        assert result.deleted == 1
        found = {name: SECRET.encode() in data for name, data in files(store.path).items()}
        assert found and not any(found.values()), found
        wal = Path(f"{store.path}-wal")
        assert not wal.exists() or wal.stat().st_size == 0  # truncated
        # the store goes on writing after the checkpoint
        await store.append_history(T, entity, [PERSON], [(PHONE, reading("y", 0))])
        assert b'"y"' in b"".join(files(store.path).values())
    finally:
        await app.stop()


def test_every_connection_zeroes_deleted_content(tmp_path: Path) -> None:
    conn = open_connection(str(tmp_path / "x.db"))
    try:
        assert conn.execute("PRAGMA secure_delete").fetchone()[0] == 1
    finally:
        conn.close()
