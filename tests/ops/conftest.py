"""Fixtures of the operations-centre tests: a real platform on SQLite with a fake clock and the simulator's
4,100 cameras, and a real local webhook receiver.

Writing 4,100 camera entities takes seconds, so it is done once per run and backend into a template
database that each test copies (`make_ops`): a file copy on SQLite, `CREATE DATABASE ... TEMPLATE` on
PostgreSQL.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.alarms.receiver import Receiver
from tests.ops.support import Ops, ops_settings

MakeOps = Callable[..., AbstractAsyncContextManager[Ops]]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as started:
        yield started


def _build_template(root: Path) -> None:
    async def build() -> None:
        async with Ops.running(ops_settings(root), cameras=True):
            pass

    # A thread of its own: the session fixture may be set up while a test's event loop runs.
    worker = threading.Thread(target=asyncio.run, args=(build(),))
    worker.start()
    worker.join()


@pytest.fixture(scope="session")
def camera_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SQLite: a database file with the city's cameras."""
    root = tmp_path_factory.mktemp("ops-template")
    saved = os.environ.pop("UCITY_STORE__URL", None)
    try:
        _build_template(root)
    finally:
        if saved is not None:
            os.environ["UCITY_STORE__URL"] = saved
    return root / "data" / "ucity.db"


@pytest.fixture(scope="session")
def camera_pg(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """PostgreSQL: the name of a database with the city's cameras (a template for the tests' copies)."""
    server = request.getfixturevalue("postgres_server")
    name = server.create_database()
    saved = os.environ.get("UCITY_STORE__URL")
    os.environ["UCITY_STORE__URL"] = server.dsn(name)
    try:
        _build_template(tmp_path_factory.mktemp("ops-pg-template"))
    finally:
        if saved is None:
            os.environ.pop("UCITY_STORE__URL", None)
        else:
            os.environ["UCITY_STORE__URL"] = saved
    return str(name)


@pytest.fixture
def make_ops(request: pytest.FixtureRequest, tmp_path: Path, store_backend: str,
             monkeypatch: pytest.MonkeyPatch) -> MakeOps:
    """`async with make_ops(**ops_settings) as ops`: a fresh copy of the city with these ops settings."""

    postgres = store_backend == "postgresql"
    template = request.getfixturevalue("camera_pg" if postgres else "camera_db")

    def copy_city() -> None:
        if postgres:
            server = request.getfixturevalue("postgres_server")
            clone = f"ops_{uuid.uuid4().hex[:12]}"
            server.admin.execute(f"CREATE DATABASE {clone} TEMPLATE {template}")
            request.addfinalizer(lambda: server.drop_database(clone))
            monkeypatch.setenv("UCITY_STORE__URL", server.dsn(clone))
        else:
            data = tmp_path / "data"
            data.mkdir(exist_ok=True)
            shutil.copy(template, data / "ucity.db")

    @asynccontextmanager
    async def start(cameras: bool = True, **overrides: Any) -> AsyncIterator[Ops]:
        if cameras:
            copy_city()
        async with Ops.running(ops_settings(tmp_path, **overrides), cameras=False) as started:
            yield started

    return start


@pytest.fixture
async def ops(make_ops: MakeOps) -> AsyncIterator[Ops]:
    async with make_ops() as started:
        yield started
