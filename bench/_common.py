"""What every benchmark shares: the machine line, result tables, the backend parameter, a ucity
server in its own process, and the load generator (bench/loadgen.py) in another.

Figures are printed as a table whose rows carry the raw baseline measured in the same run and the
ratio to it, so that a number is never shown without what the machine itself can do.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- the machine -----------------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def cpu_probe() -> float:
    """Milliseconds one core takes for a fixed piece of Python work (dicts, strings, JSON: what ucity's hot
    paths do), best of three. A shared or throttled machine has slow and fast phases that the load average
    does not show; this figure, printed at the start and end of every script, does: compare runs only at
    similar probes."""
    best = float("inf")
    for _ in range(3):
        start = time.thread_time()
        for n in range(10_000):
            doc = {"id": f"urn:ngsi-ld:Probe:{n}", "type": "Probe", "value": n * 0.5, "unitCode": "CEL",
                   "observedAt": "2026-01-01T00:00:00.000000Z"}
            json.loads(json.dumps(doc))
        best = min(best, time.thread_time() - start)
    return best * 1e3


def machine_line() -> str:
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{cpu_model()}, {os.cpu_count()} cores, {mem_gib:.0f} GiB; Python {platform.python_version()}, "
            f"SQLite {sqlite3.sqlite_version}; load average {load}; CPU probe {cpu_probe():.1f} ms")


def load_average() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


# -- results ---------------------------------------------------------------------------------------
@dataclass
class Row:
    """One figure, the baseline it is compared with, and the target it must meet."""

    name: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_name: str = ""
    target: str = ""
    ok: bool | None = None
    note: str = ""

    @property
    def ratio(self) -> str:
        if self.baseline is None or not self.baseline:
            return ""
        return f"{self.value / self.baseline:.0%}"


@dataclass
class Report:
    title: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        print(f"  {row.name}: {fmt(row.value)} {row.unit}"
              + (f"  (baseline {row.baseline_name} {fmt(row.baseline)}, ratio {row.ratio})" if row.baseline else "")
              + (f"  target {row.target} {'OK' if row.ok else 'SHORT'}" if row.target else "")
              + (f"  [{row.note}]" if row.note else ""), flush=True)
        return row

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"  - {text}", flush=True)

    def print(self) -> None:
        print()
        print(f"## {self.title}")
        print(f"machine: {machine_line()}")
        print()
        print("| benchmark | result | baseline (same run) | ratio | target | met |")
        print("|---|---|---|---|---|---|")
        for r in self.rows:
            base = f"{fmt(r.baseline)} ({r.baseline_name})" if r.baseline else ""
            met = "" if r.ok is None else ("yes" if r.ok else "**no**")
            note = f" ({r.note})" if r.note else ""
            print(f"| {r.name} | {fmt(r.value)} {r.unit}{note} | {base} | {r.ratio} | {r.target} | {met} |")
        for text in self.notes:
            print(f"- {text}")
        print(flush=True)
        out = os.environ.get("UCITY_BENCH_JSON")
        if out:  # `ucity bench` collects every script's rows into one file
            with open(out, "a") as fh:
                fh.write(json.dumps({"title": self.title, "rows": [r.__dict__ for r in self.rows],
                                     "notes": self.notes, "load": load_average(), "probe": cpu_probe()}) + "\n")


def fmt(value: float | None) -> str:
    if value is None:
        return ""
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


# -- parameters --------------------------------------------------------------------------------------
def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--backend", choices=("sqlite", "postgresql"), default=os.environ.get("UCITY_BENCH_BACKEND", "sqlite"),
                   help="store backend (postgresql: --pg-url, or a throwaway local server)")
    p.add_argument("--pg-url", default=os.environ.get("UCITY_BENCH_PG_URL", ""),
                   help="postgresql://... of an empty database the benchmark may fill")
    p.add_argument("--quick", action="store_true", default=bool(os.environ.get("UCITY_BENCH_QUICK")),
                   help="smaller sizes and shorter runs (a smoke test of the benchmark itself)")
    return p


def postgres_available() -> bool:
    return (ROOT / "ucity" / "store" / "postgres.py").exists()


def store_url(args: argparse.Namespace, data_dir: Path) -> str:
    """The store of one benchmark part: a SQLite file in its data dir, or a fresh PostgreSQL database
    (on --pg-url's server, or on a throwaway local server with PostgreSQL's default durability)."""
    if args.backend == "sqlite":
        return f"sqlite:///{data_dir / 'ucity.db'}"
    return LocalPostgres.database(args.pg_url or None)


class LocalPostgres:
    """A PostgreSQL + PostGIS server from Debian's packages for this benchmark process: fsync and
    synchronous_commit on (its defaults), so that a commit is as durable as SQLite's synchronous=FULL."""

    _instance: LocalPostgres | None = None
    _count = 0

    def __init__(self) -> None:
        root = Path("/usr/lib/postgresql")
        bins = sorted(root.glob("*/bin/postgres")) if root.exists() else []
        if not bins:
            raise SystemExit("--backend postgresql: no PostgreSQL server installed (apt-get install postgresql postgis)")
        self.bin = bins[-1].parent
        self.root = Path(tempfile.mkdtemp(prefix="ucity-bench-pg-"))
        self.port = free_port()
        user = {}
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            import pwd

            entry = pwd.getpwnam("postgres")
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
            user = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        data = self.root / "data"
        subprocess.run([str(self.bin / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
                        "--no-instructions"], check=True, stdout=subprocess.DEVNULL, **user)  # type: ignore[call-overload]
        self.proc = subprocess.Popen([str(self.bin / "postgres"), "-D", str(data), "-p", str(self.port), "-k", str(self.root),
                                      "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200",
                                      "-c", "shared_buffers=256MB"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **user)  # type: ignore[call-overload]
        deadline = time.monotonic() + 60
        while subprocess.run([str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                             capture_output=True).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError("postgres did not start")
            time.sleep(0.2)
        import atexit

        atexit.register(self.stop)

    def psql(self, sql: str, database: str = "postgres") -> None:
        subprocess.run([str(self.bin / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", database,
                        "-q", "-c", sql], check=True, stdout=subprocess.DEVNULL)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)

    @classmethod
    def database(cls, server_url: str | None) -> str:
        if server_url:
            return server_url
        if cls._instance is None:
            cls._instance = LocalPostgres()
        cls._count += 1
        name = f"bench{cls._count}"
        cls._instance.psql(f"CREATE DATABASE {name}")
        cls._instance.psql("CREATE EXTENSION IF NOT EXISTS postgis", name)
        return f"postgresql://postgres@127.0.0.1:{cls._instance.port}/{name}"


def settings_env(url: str, data_dir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a benchmarked ucity: its own data dir and store, quiet logs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("UCITY_")}
    env.update({"UCITY_DATA_DIR": str(data_dir), "UCITY_STORE__URL": url, "UCITY_LOG_LEVEL": "WARNING",
                "UCITY_ENVIRONMENT": "production",
                "UCITY_SERVER__REQUIRE_AUTH": "false",  # no token guard, as the embedded default (README Performance)
                # The load generator receives the notifications on loopback, which production refuses unless
                # allowed (a deployment lists its receivers' networks the same way).
                "UCITY_SUBSCRIPTIONS__ALLOWED_NETWORKS": '["127.0.0.0/8"]'})
    env.update(extra or {})
    return env


@contextmanager
def temp_dir(prefix: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- processes ----------------------------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its threads (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class CpuWindow:
    """CPU share of a process over a measured window (1.0 = one core busy)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.cpu0 = cpu_seconds(pid)
        self.t0 = time.perf_counter()

    def share(self) -> float:
        return (cpu_seconds(self.pid) - self.cpu0) / max(1e-9, time.perf_counter() - self.t0)


class Server:
    """`ucity serve` in its own process (uvicorn with uvloop and httptools), on a free port."""

    def __init__(self, env: dict[str, str], port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ucity.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            env=self.env, cwd=str(ROOT), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"ucity exited at start:\n{err[-3000:]}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except Exception:
                time.sleep(0.1)
        raise RuntimeError("ucity did not become ready")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def get(self, path: str, headers: dict[str, str] | None = None) -> Any:
        req = urllib.request.Request(self.url + path, headers=headers or {})
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read() or b"null")

    def send(self, method: str, path: str, body: Any, headers: dict[str, str] | None = None) -> int:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=300) as r:
                return int(r.status)
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"{method} {path}: {exc.code} {exc.read()[:500]!r}") from exc

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def loadgen(args: list[str], timeout: float = 900) -> dict[str, Any]:
    """Run bench/loadgen.py in its own process; its last output line is a JSON result."""
    done = subprocess.run([sys.executable, str(BENCH_DIR / "loadgen.py"), *args], capture_output=True,
                          timeout=timeout, cwd=str(ROOT))
    if done.returncode != 0:
        raise RuntimeError(f"loadgen {args[:1]} failed:\n{done.stderr.decode()[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return result


def write_plan(path: Path, requests: list[tuple[str, str, dict[str, str], bytes]]) -> None:
    """A request plan for loadgen `http`: one JSON line per request (method, path, headers, body)."""
    with open(path, "w") as fh:
        for method, target, headers, body in requests:
            fh.write(json.dumps([method, target, headers, body.decode()]) + "\n")


class BareServer(Server):
    """bench/bare_app.py on uvicorn (uvloop, httptools): the same HTTP server with nothing behind it."""

    def __init__(self, kind: str = "fastapi") -> None:
        super().__init__({**os.environ, "BARE": kind})
        self.kind = kind

    def __enter__(self) -> BareServer:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "bare_app:app", "--host", "127.0.0.1", "--port", str(self.port),
             "--loop", "uvloop", "--http", "httptools", "--log-level", "warning", "--no-access-log"],
            env=self.env, cwd=str(BENCH_DIR), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("the bare server did not start")
