"""No acknowledged write is lost when the server process is killed with SIGKILL and restarted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from tests.conftest import free_port

ENOUGH_WRITES = 100  # acknowledged writes before the kill that the test needs to prove anything


def start_server(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "UCITY_LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ucity.cli", "serve", "--port", str(port), "--data-dir", str(data_dir)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not start: " + (proc.stderr.read().decode() if proc.stderr else ""))


def writer(base: str, worker: int, acked: list[str], stop: threading.Event) -> None:
    with httpx.Client(base_url=base, timeout=30) as client:  # a dead server fails at once, a loaded one is slow
        n = 0
        while not stop.is_set():
            entity_id = f"urn:ngsi-ld:Sensor:w{worker}-{n}"
            body = {"id": entity_id, "type": "Sensor", "reading": {"type": "Property", "value": n}}
            try:
                response = client.post("/ngsi-ld/v1/entities", json=body)
            except httpx.HTTPError:
                return  # the server died: this write was never acknowledged
            if response.status_code == 201:
                acked.append(entity_id)
            n += 1


def test_acknowledged_writes_survive_kill_9(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_server(tmp_path, port)
    acked: list[list[str]] = [[] for _ in range(8)]
    stop = threading.Event()
    threads = [threading.Thread(target=writer, args=(base, i, acked[i], stop)) for i in range(8)]
    try:
        for thread in threads:
            thread.start()
        time.sleep(1.5)  # mid-load; then on until enough writes were acknowledged (fewer come on a loaded machine)
        deadline = time.monotonic() + 60
        while sum(len(part) for part in acked) <= ENOUGH_WRITES and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
    written = [entity_id for part in acked for entity_id in part]
    assert len(written) > ENOUGH_WRITES, "too few writes before the kill to prove anything"

    proc = start_server(tmp_path, port)
    try:
        with httpx.Client(base_url=base, timeout=30) as client:
            response = client.get("/ngsi-ld/v1/entities", params={"type": "Sensor", "limit": 0, "count": "true"})
            stored = int(response.headers["NGSILD-Results-Count"])
            missing = [e for e in written if client.get(f"/ngsi-ld/v1/entities/{e}").status_code != 200][:5]
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert not missing, f"acknowledged but lost: {missing}"
    assert stored >= len(written)
