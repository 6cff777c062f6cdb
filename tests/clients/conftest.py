"""Fixtures for the client-interoperability tests: a notification receiver and client venvs.

`notification_sink` is a real HTTP endpoint (ThreadingHTTPServer on 127.0.0.1, port 0) that
records every request ucity's subscriptions send to it. `ngsildclient_python` is the Python of a
separate virtual environment holding ngsildclient, whose pins (httpx<0.24, rich<13) cannot live
beside ucity's; it is built once and cached under `.venv-clients/` (see docs/clients.md).
"""

from __future__ import annotations

import fcntl
import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
NGSILDCLIENT_REQUIREMENTS = HERE / "requirements-ngsildclient.txt"


# -- notification receiver ---------------------------------------------------------------------
@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class NotificationSink:
    """Records the requests posted to it; `url` is the endpoint to give a subscription."""

    url: str
    received: list[Received] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def record(self, item: Received) -> None:
        with self.cond:
            self.received.append(item)
            self.cond.notify_all()

    def wait_for(self, predicate: Callable[[Received], bool], timeout: float = 15.0) -> Received:
        """The first received request that satisfies `predicate`, waiting up to `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for item in self.received:
                    if predicate(item):
                        return item
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no matching notification within {timeout}s; got {self.received!r}")
                self.cond.wait(left)


def _handler_for(sink_ref: list[NotificationSink]) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body: Any = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode("utf-8", "replace")
            sink_ref[0].record(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # quiet test output
            pass

    return Handler


@pytest.fixture
def notification_sink() -> Iterator[NotificationSink]:
    ref: list[NotificationSink] = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(ref))
    ref.append(NotificationSink(url=f"http://127.0.0.1:{server.server_address[1]}/notify"))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield ref[0]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# -- separate venv for ngsildclient -------------------------------------------------------------
def _venv_root() -> Path:
    return Path(os.environ.get("UCITY_CLIENT_VENVS", REPO / ".venv-clients"))


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def build_venv(name: str, requirements: Path) -> Path:
    """A venv `<root>/<name>` with `requirements` installed; rebuilt when they or Python change.

    A lock file serialises concurrent builders; the stamp is written last, so an interrupted
    build is redone rather than trusted.
    """
    root = _venv_root()
    root.mkdir(parents=True, exist_ok=True)
    venv = root / name
    digest = hashlib.sha256(requirements.read_bytes() + sys.version.encode()).hexdigest()
    stamp = venv / ".ucity-stamp"
    with open(root / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.exists() and stamp.read_text() == digest and _venv_python(venv).exists():
            return _venv_python(venv)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        pip = [str(_venv_python(venv)), "-m", "pip", "install", "--disable-pip-version-check", "--quiet",
               "-r", str(requirements)]
        done = subprocess.run(pip, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            pytest.fail(f"could not install {requirements.name} into {venv}:\n{done.stdout}\n{done.stderr}")
        stamp.write_text(digest)
    return _venv_python(venv)


@pytest.fixture(scope="session")
def ngsildclient_python() -> Path:
    return build_venv("ngsildclient", NGSILDCLIENT_REQUIREMENTS)


@dataclass
class Driver:
    """Runs one scenario of tests/clients/ngsildclient_driver.py in the ngsildclient venv."""

    python: Path
    script: Path
    workdir: Path

    def __call__(self, scenario: str, url: str, **args: Any) -> Any:
        out = self.workdir / f"{scenario}-{time.monotonic_ns()}.json"
        cmd = [str(self.python), str(self.script), scenario, url, str(out), json.dumps(args)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if done.returncode != 0 or not out.exists():
            raise AssertionError(f"driver scenario {scenario} failed ({done.returncode}):\n"
                                 f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}")
        return json.loads(out.read_text())


@pytest.fixture
def ngsildclient(ngsildclient_python: Path, tmp_path: Path) -> Driver:
    return Driver(ngsildclient_python, HERE / "ngsildclient_driver.py", tmp_path)
