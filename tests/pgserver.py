"""A real PostgreSQL + PostGIS server for the tests, from Debian's packages, on a free loopback port.

`PostgresServer` runs `initdb` into a temporary directory and starts `postgres` on 127.0.0.1 (as
the `postgres` user when the tests run as root, since PostgreSQL refuses to run as root), creates
a template database with PostGIS and ucity's schema, and hands out fresh databases cloned from
it (`CREATE DATABASE ... TEMPLATE`, made ahead by a background thread): every test gets its own
empty store.
Durability settings are relaxed (fsync off): the tests kill ucity processes, never the server.

`SyncPg` is a small synchronous asyncpg client on its own event loop thread, for fixtures and for
tests that are not coroutines (hypothesis).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import pwd
import queue
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Coroutine
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

T = TypeVar("T")
TEMPLATE = "ucity_template"


def postgres_bin_dir() -> Path | None:
    """The directory of Debian's PostgreSQL server binaries (the newest installed), if any."""
    root = Path("/usr/lib/postgresql")
    candidates = sorted((p for p in root.glob("*/bin") if (p / "postgres").exists()),
                        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0) if root.exists() else []
    if candidates:
        return candidates[-1]
    found = shutil.which("postgres")
    return Path(found).parent if found else None


def postgis_available(bin_dir: Path) -> bool:
    version = bin_dir.parent.name
    return any(Path(f"/usr/share/postgresql/{version}/extension").glob("postgis.control"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SyncPg:
    """An asyncpg connection driven synchronously from a private event loop thread."""

    def __init__(self, dsn: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="sync-pg")
        self._thread.start()
        self.conn: asyncpg.Connection = self.run(asyncpg.connect(dsn))

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout=120)

    def execute(self, sql: str, *args: Any) -> str:
        return self.run(self.conn.execute(sql, *args))

    def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        return self.run(self.conn.fetch(sql, *args))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.run(self.conn.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


class PostgresServer:
    """One PostgreSQL server process for the test session."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.port = _free_port()
        self.root = Path(tempfile.mkdtemp(prefix="ucity-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.admin: SyncPg | None = None
        self._names = itertools.count(1)
        self._jobs: queue.Queue[tuple[str, str] | None] = queue.Queue()
        self._ready: queue.Queue[str] = queue.Queue()
        self._cloner: threading.Thread | None = None
        self._recyclable: set[str] = set()
        # PostgreSQL refuses to run as root: then it runs as the `postgres` system user.
        self.user = "postgres" if os.geteuid() == 0 else None

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _as_user(self) -> dict[str, Any]:
        if self.user is None:
            return {}
        entry = pwd.getpwnam(self.user)
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}

    def start(self) -> None:
        self.data.mkdir()
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            for path in (self.root, self.data):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        subprocess.run([str(self.bin_dir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                        "-E", "UTF8", "--no-sync", "--no-instructions"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **self._as_user())
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [str(self.bin_dir / "postgres"), "-D", str(self.data), "-p", str(self.port), "-k", str(self.root),
                 "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "full_page_writes=off",
                 "-c", "max_connections=300", "-c", "shared_buffers=128MB"],
                stdout=log, stderr=subprocess.STDOUT, **self._as_user())
        self._wait_ready()
        self.admin = SyncPg(self.dsn())
        self._make_template()
        self._cloner = threading.Thread(target=self._clone_ahead, daemon=True, name="pg-clone-ahead")
        self._cloner.start()
        for _ in range(2):
            self._jobs.put(("create", self._new_name()))

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError("postgres exited: " + self.log.read_text(errors="replace")[-2000:])
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    try:
                        SyncPg(self.dsn()).close()
                        return
                    except (OSError, asyncpg.PostgresError):
                        pass
            time.sleep(0.05)
        raise RuntimeError("postgres did not start")

    def _make_template(self) -> None:
        """PostGIS and ucity's schema, migrated once: every test database is a copy of it."""
        from ucity.store.postgres import migrate_dsn

        assert self.admin is not None
        self.admin.execute(f"CREATE DATABASE {TEMPLATE}")
        template = SyncPg(self.dsn(TEMPLATE))
        try:
            template.execute("CREATE EXTENSION postgis")
        finally:
            template.close()
        asyncio.run(migrate_dsn(self.dsn(TEMPLATE)))

    def _new_name(self) -> str:
        return f"t{os.getpid()}_{next(self._names)}"

    def _clone_ahead(self) -> None:
        """Background thread: has an empty database ready before a test asks, so that no test waits for
        one. A used database is emptied (TRUNCATE, a few ms) rather than dropped and cloned again (both
        checkpoint: 0.05 to 0.3 s each)."""
        conn = SyncPg(self.dsn())
        try:
            while (job := self._jobs.get()) is not None:
                action, name = job
                if action == "create":
                    conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
                    self._recyclable.add(name)
                    self._ready.put(name)
                elif action == "recycle":
                    self._empty(name)
                    self._ready.put(name)
                else:
                    conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            conn.close()

    def _empty(self, name: str) -> None:
        """Back to the template's state: no rows, no history partitions, sequences restarted."""
        db = SyncPg(self.dsn(name))
        try:
            db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                       "WHERE datname = current_database() AND pid <> pg_backend_pid()")
            db.execute("SET session_replication_role = replica")  # the append-only audit log's triggers
            for (partition,) in db.fetch("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                                         "WHERE i.inhparent = 'instances'::regclass"):
                if partition != "instances_default":
                    db.execute(f'DROP TABLE "{partition}"')
            tables = [r[0] for r in db.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                                              "AND tablename NOT IN ('spatial_ref_sys', 'meta')")]
            db.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
        finally:
            db.close()

    def create_database(self, migrated: bool = True) -> str:
        """A fresh database (with ucity's schema, or with PostGIS only); returns its name."""
        assert self.admin is not None
        if migrated:
            if self._ready.empty():
                self._jobs.put(("create", self._new_name()))
            return self._ready.get(timeout=120)
        name = self._new_name()
        self.admin.execute(f"CREATE DATABASE {name} TEMPLATE template0")
        conn = SyncPg(self.dsn(name))
        try:
            conn.execute("CREATE EXTENSION postgis")
        finally:
            conn.close()
        return name

    def drop_database(self, name: str) -> None:
        """Done with a database: a migrated one is emptied for the next test, any other dropped."""
        self._jobs.put(("recycle" if name in self._recyclable else "drop", name))

    def release_helpers(self) -> None:
        """End the clone-ahead thread and close the admin connection (a stop would break them)."""
        if self._cloner is not None:
            self._jobs.put(None)
            self._cloner.join(timeout=60)
            self._cloner = None
        if self.admin is not None:
            self.admin.close()
            self.admin = None

    def stop(self) -> None:
        self.release_helpers()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # "fast" shutdown: disconnects any session left
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None
        shutil.rmtree(self.root, ignore_errors=True)
