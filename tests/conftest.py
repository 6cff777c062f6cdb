"""Shared fixtures: settings on a temporary data dir, an in-process client, a live server, and the
store backend every store-backed test runs on.

Backends: the tests under the directories that go through a store (everything but the pure ones
in BACKEND_FREE) run once per backend, `[sqlite]` and `[postgresql]`. Choose with
`--backends=sqlite,postgresql` or `UCITY_TEST_BACKENDS`; the default is both when PostgreSQL and
PostGIS are installed (scripts/test installs them), else SQLite alone. On PostgreSQL every test
gets a fresh database cloned from a migrated template, on one server started for the session
(tests/pgserver.py), and `UCITY_STORE__URL` points at it, so every `load_settings()` of the test,
and every ucity process it starts, uses it.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import uvicorn
from starlette.testclient import TestClient

from tests.pgserver import PostgresServer, postgis_available, postgres_bin_dir
from ucity.core import gc_tuning
from ucity.core.clock import Clock
from ucity.core.config import Settings, load_settings
from ucity.server import create_app
from ucity.store.base import Store

CORE = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.9.jsonld"
BACKENDS = ("sqlite", "postgresql")
# Test directories and modules that never open a store: they run once, without a backend.
BACKEND_FREE = ("tests/ngsild/", "tests/core/", "tests/cluster/", "tests/rules/test_evaluate.py", "tests/rules/test_model.py",
                "tests/ingest/test_decode.py", "tests/ingest/test_mqtt_topics.py", "tests/sim/test_signals.py",
                "tests/store/test_postgres_store.py", "tests/store/test_sqlite_history_layout.py",
                "tests/store/test_sqlite_exclusive.py",
                "tests/store/test_sqlite_history_rows.py", "tests/store/test_sqlite_independent_calls.py",
                "tests/store/test_sqlite_writer_paths.py",
                "tests/integration/test_dashboard.py",
                "tests/integration/test_fault.py")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--backends", default=None,
                     help="store backends of the store-backed tests, e.g. sqlite,postgresql "
                          "(default: $UCITY_TEST_BACKENDS, else both when PostgreSQL + PostGIS are installed)")


def selected_backends(config: pytest.Config) -> list[str]:
    text = config.getoption("--backends") or os.environ.get("UCITY_TEST_BACKENDS", "")
    if text.strip():
        chosen = [b.strip() for b in text.split(",") if b.strip()]
        unknown = set(chosen) - set(BACKENDS)
        if unknown:
            raise pytest.UsageError(f"unknown store backends {sorted(unknown)}; known: {', '.join(BACKENDS)}")
        return chosen
    bin_dir = postgres_bin_dir()
    return list(BACKENDS) if bin_dir is not None and postgis_available(bin_dir) else ["sqlite"]


def _backend_free(path: str) -> bool:
    relative = path.replace(os.sep, "/")
    return any(f"/{part}" in relative or relative.startswith(part) for part in BACKEND_FREE)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "store_backend" in metafunc.fixturenames and not _backend_free(str(metafunc.definition.path)):
        metafunc.parametrize("store_backend", selected_backends(metafunc.config), indirect=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    bin_dir = postgres_bin_dir()
    if bin_dir is None or not postgis_available(bin_dir):
        pytest.skip("PostgreSQL + PostGIS are not installed (scripts/test installs them)")
    server = PostgresServer(bin_dir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, migrated database of this test's own."""
    name = postgres_server.create_database()
    try:
        yield postgres_server.dsn(name)
    finally:
        postgres_server.drop_database(name)


@pytest.fixture(autouse=True)
def store_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The store backend of this test (autouse: it runs before the fixtures that load settings)."""
    backend: str = getattr(request, "param", "sqlite")
    if backend == "postgresql":
        monkeypatch.setenv("UCITY_STORE__URL", request.getfixturevalue("postgres_url"))
    return backend


StoreFactory = Callable[..., Store]


@pytest.fixture
def make_store(store_backend: str, tmp_path: Path) -> StoreFactory:
    """Stores of this test's backend, all over the same data (a second one sees what the first wrote)."""

    def make(clock: Clock | None = None, group_commit_ms: float = 2.0, group_commit_max: int = 1000) -> Store:
        if store_backend == "postgresql":
            from ucity.store.postgres import PostgresStore

            return PostgresStore(os.environ["UCITY_STORE__URL"], clock, group_commit_ms, group_commit_max)
        from ucity.store.sqlite import SqliteStore

        return SqliteStore(tmp_path / "store.db", clock, group_commit_ms, group_commit_max)

    return make


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(environment="test", data_dir=str(tmp_path / "data"),
                         store={"group_commit_ms": 1.0})


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as c:
        yield c


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """ucity on uvicorn in a background thread, on a free loopback port.

    `clock`: the platform clock (e.g. a FakeClock that stands still, to show that something happens
    without any timer of the platform firing); the system clock by default.
    """

    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(create_app(settings, clock), host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        # As `ucity serve` does (core/gc_tuning.py): the heap that exists before the server starts is
        # out of the collector's sight. Here that is the whole test session's heap, which a full
        # collection on the server's thread would otherwise scan in the middle of a timed request.
        self._gc = gc_tuning.settle()
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("ucity did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)
        gc_tuning.unsettle(self._gc)


@pytest.fixture
def live_server(settings: Settings) -> Iterator[LiveServer]:
    with LiveServer(settings) as server:
        yield server
