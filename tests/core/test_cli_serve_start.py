"""`ucity serve` says its addresses only once it listens, and a start that fails ends with one bilingual line,
exit code 3 (as every failed start of `ucity serve`, docs/operations.md §4), no traceback (FIX-C)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PG_PASSWORD = "Pg-Secret-f1xc"


@pytest.fixture(autouse=True)
def _no_store_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UCITY_STORE__URL", raising=False)  # the PostgreSQL run sets it; these tests choose theirs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UCITY_")}
    return {**env, "PYTHONPATH": str(REPO), "UCITY_ENVIRONMENT": "test", **extra}


def _serve(port: int, data: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ucity.cli", "serve", "--port", str(port), "--data-dir", str(data)],
                          env=env, cwd=data.parent, capture_output=True, text=True, timeout=120)


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_a_port_in_use_ends_with_one_bilingual_line_and_no_address(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        served = _serve(port, tmp_path / "data", _env())
    output = served.stdout + served.stderr
    assert served.returncode == 3, output
    assert "Traceback" not in output, output
    assert f"http://127.0.0.1:{port}" not in output, output  # no "dashboard http://..." before the failure
    assert f"starting on 127.0.0.1:{port}" in output
    last = _lines(output)[-1]
    assert "시작 실패" in last and f"ucity could not start: cannot listen on 127.0.0.1:{port}" in last, output
    assert "address already in use" in last and "다른 프로세스가 이미 쓰는 포트" in last
    assert output.count("address already in use") == 1, output  # uvicorn's English line is not said too


def test_a_store_that_is_down_ends_with_the_apps_bilingual_line(tmp_path: Path) -> None:
    url = f"postgresql://ucity:{PG_PASSWORD}@127.0.0.1:{_free_port()}/ucity"
    served = _serve(_free_port(), tmp_path / "data", _env(UCITY_STORE__URL=url))
    output = served.stdout + served.stderr
    assert served.returncode == 3, output
    assert "Traceback" not in output and PG_PASSWORD not in output, output
    assert "dashboard" not in output and "Application startup failed" not in output, output
    last = _lines(output)[-1]
    assert "시작 실패 / ucity could not start (store postgresql://***@127.0.0.1" in last, output


def test_the_addresses_are_said_once_the_server_listens(tmp_path: Path) -> None:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "ucity.cli", "serve", "--port", str(port), "--data-dir",
                             str(tmp_path / "data")], env=_env(), cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(600):  # the start, up to 60 s on a busy machine
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health/live", timeout=2)
                break
            except (urllib.error.URLError, ConnectionError):
                assert proc.poll() is None, proc.communicate()
                time.sleep(0.1)  # waiting for another process to listen: no platform time involved
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=60)
    lines = _lines(out + err)
    listening = next(i for i, line in enumerate(lines) if "Uvicorn running on" in line)
    dashboard = next(i for i, line in enumerate(lines) if line == f"dashboard    http://127.0.0.1:{port}/")
    assert dashboard > listening
