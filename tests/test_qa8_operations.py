"""QA8 (running ucity in production): F4 misspelled top-level environment variables, F6 production without its
secrets, F9 device apikeys in logs, F11 one-line start failures, F13 small items (config validate's effective
require_auth, the retention dry run's log line, the rules README's `name`)."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from tests.retention.test_service import history, running
from tests.rules.test_api import tilt_body
from ucity.cli import main
from ucity.core.clock import FakeClock
from ucity.core.config import load_settings, missing_secret_warnings, unknown_environment
from ucity.ingest.decode import Rejection
from ucity.ingest.stats import IngestStats, masked_apikey
from ucity.server import create_app

ADMIN = "admin-token-Qa8-Zx81Lm29Pq47Rt"
PG_PASSWORD = "Pg-Secret-q8w7"
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def _no_store_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UCITY_STORE__URL", raising=False)  # the PostgreSQL run sets it


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens there once closed


# -- F4: a misspelled top-level environment variable is refused ---------------------------------------
@pytest.mark.parametrize(("variable", "closest"), [
    ("UCITY_ENVIROMENT", "UCITY_ENVIRONMENT"), ("UCITY_SERVR__PORT", "UCITY_SERVER__PORT"),
    ("UCITY_LOG_LEVL", "UCITY_LOG_LEVEL"), ("UCITY_DATADIR", "UCITY_DATA_DIR"), ("ucity_enviroment", "UCITY_ENVIRONMENT"),
])
def test_an_unknown_ucity_variable_is_refused_naming_the_closest_setting(
        variable: str, closest: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(variable, "production" if "ENVIR" in variable.upper() else "1")
    with pytest.raises(ValueError) as refused:
        load_settings(data_dir=str(tmp_path))
    assert f"unknown environment variable {variable}" in str(refused.value)
    assert f"did you mean {closest}?" in str(refused.value)


def test_config_validate_refuses_a_misspelled_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("UCITY_ENVIROMENT", "production")
    with pytest.raises(SystemExit) as exited:
        main(["config", "validate", "--data-dir", str(tmp_path)])
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert "UCITY_ENVIROMENT" in err and "UCITY_ENVIRONMENT" in err and "Traceback" not in err


def test_settings_and_documented_non_setting_variables_are_accepted(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"UCITY_TOKEN": "t", "UCITY_TEST_BACKENDS": "sqlite", "UCITY_WEB__TILE_URL": "none",
                        "UCITY_BENCH_QUICK": "1", "UCITY_NATS_PASSWORD": "x", "UCITY_CONFORMANCE_OUT": "o",
                        "UCITY_LOG_LEVEL": "DEBUG", "UCITY_SERVER__PORT": "8123"}.items():
        monkeypatch.setenv(name, value)
    settings = load_settings(data_dir=str(tmp_path))
    assert (settings.log_level, settings.server.port) == ("DEBUG", 8123)
    assert unknown_environment(["PATH", "UCITY_DOMAINS__ENABLED", "UCITY_STORE__URL"]) == []


# -- F6: production without its secrets says so at its start and in /health ---------------------------
def test_missing_production_secrets_are_each_named_with_what_fails(tmp_path: Path) -> None:
    bare = load_settings(environment="production", data_dir=str(tmp_path), ops={"admin_token": ADMIN})
    warnings = missing_secret_warnings(bare)
    assert [w.split(" ", 1)[0] for w in warnings] == ["ops.grant_secret", "ops.pseudonym_secret",
                                                      "alarms.webhook_secret"]
    assert "footage" in warnings[0] and "503" in warnings[0] and "UCITY_OPS__GRANT_SECRET" in warnings[0]
    full = load_settings(environment="production", data_dir=str(tmp_path), alarms={"webhook_secret": "w" * 32},
                         ops={"admin_token": ADMIN, "grant_secret": "g" * 32, "pseudonym_secret": "p" * 32})
    assert missing_secret_warnings(full) == []
    assert missing_secret_warnings(load_settings(environment="development", data_dir=str(tmp_path))) == []


def test_a_production_start_without_secrets_warns_and_health_lists_them(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = load_settings(environment="production", data_dir=str(tmp_path / "data"),
                             store={"group_commit_ms": 1.0}, ops={"admin_token": ADMIN},
                             alarms={"webhook_secret": "w" * 32})
    with caplog.at_level(logging.WARNING), TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as client:
        health = client.get("/health", headers={"Authorization": f"Bearer {ADMIN}"})
    logged = [r.getMessage() for r in caplog.records if r.name == "ucity.server"]
    assert any(m.startswith("ops.grant_secret 미설정") for m in logged)
    assert any(m.startswith("ops.pseudonym_secret 미설정") for m in logged)
    assert not any("alarms.webhook_secret" in m for m in logged)  # it is set
    shown = health.json()["components"]["ops"]["configWarnings"]
    assert [w.split(" ", 1)[0] for w in shown] == ["ops.grant_secret", "ops.pseudonym_secret"]


# -- F9: apikeys are masked in the ingest log lines ---------------------------------------------------
def test_masked_apikey_keeps_a_short_prefix() -> None:
    assert masked_apikey("a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6") == "a1b2***"
    assert masked_apikey("keymq") == "k***"
    assert masked_apikey("hk") == "***"


def test_ingest_rejection_and_clock_lines_do_not_log_the_apikey(caplog: pytest.LogCaptureFixture) -> None:
    from ucity.core.clock import to_iso

    apikey = "Sx9apikey-7f3k2m1q"
    clock = FakeClock()
    stats = IngestStats(clock, log_interval_s=60)
    key = ("guro", apikey, "dev1")
    with caplog.at_level(logging.WARNING, logger="ucity.ingest.stats"):
        stats.rejected(key, [Rejection("unknown-device", f"no service group or device has apikey {apikey!r}")], "mqtt")
        stats.rejected(key, [Rejection("unknown-device", f"no service group or device has apikey {apikey!r}")], "mqtt")
        clock.advance(timedelta(seconds=61).total_seconds())
        assert stats.flush() == 1
        stats.clock_ahead(key, 1, 900.0, to_iso(clock.now()), "http", clock.now())
    text = caplog.text
    assert len(caplog.records) == 3
    assert apikey not in text and "apikey Sx9a***" in text
    assert "has apikey 'Sx9a***'" in text  # the detail names it masked too


# -- F11: a failed start is one line, no traceback ----------------------------------------------------
def _cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("UCITY_")}
    return subprocess.run([sys.executable, "-m", "ucity.cli", *args], env={**base, **env}, cwd=cwd,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.usefixtures("_no_store_from_the_environment")
def test_serve_and_migrate_with_the_database_down_say_one_line(tmp_path: Path) -> None:
    url = f"postgresql://ucity:{PG_PASSWORD}@127.0.0.1:{_closed_port()}/ucity"
    env = {"UCITY_STORE__URL": url, "PYTHONPATH": str(REPO)}
    served = _cli(["serve", "--port", str(_closed_port()), "--data-dir", str(tmp_path / "d")], env, tmp_path)
    assert served.returncode != 0
    output = served.stdout + served.stderr
    assert "Traceback" not in output and PG_PASSWORD not in output, output
    assert "ucity could not start" in output and "127.0.0.1" in output and "ConnectionRefusedError" in output
    migrated = _cli(["migrate"], env, tmp_path)
    assert migrated.returncode == 1
    output = migrated.stdout + migrated.stderr
    assert "Traceback" not in output and PG_PASSWORD not in output, output
    assert "cannot migrate the store postgresql://ucity:***@127.0.0.1" in output
    assert len([line for line in output.splitlines() if line.strip()]) <= 2  # one line (soft-wrapped at most)


@pytest.mark.usefixtures("_no_store_from_the_environment")
def test_a_second_serve_on_one_sqlite_dir_says_why_without_traceback(tmp_path: Path) -> None:
    data = tmp_path / "data"
    settings = load_settings(environment="test", data_dir=str(data), store={"group_commit_ms": 1.0})
    with TestClient(create_app(settings), base_url="http://127.0.0.1:8000"):
        second = _cli(["serve", "--port", str(_closed_port()), "--data-dir", str(data)],
                      {"PYTHONPATH": str(REPO), "UCITY_ENVIRONMENT": "test"}, tmp_path)
    output = second.stdout + second.stderr
    assert second.returncode != 0
    assert "Traceback" not in output, output
    assert "in use by another ucity process" in output and "ucity could not start" in output


# -- F13 ------------------------------------------------------------------------------------------------
@pytest.mark.usefixtures("_no_store_from_the_environment")
def test_config_validate_shows_the_effective_require_auth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("UCITY_ENVIRONMENT", "production")
    monkeypatch.setenv("UCITY_OPS__ADMIN_TOKEN", ADMIN)
    assert main(["config", "validate", "--data-dir", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out)["server"]["require_auth"] is True
    monkeypatch.setenv("UCITY_ENVIRONMENT", "development")
    assert main(["config", "validate", "--data-dir", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out)["server"]["require_auth"] is False


async def test_the_dry_run_log_line_says_would_delete(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    tracker = "https://uri.etsi.org/ngsi-ld/default-context/Tracker"
    async with running(tmp_path, history=[{"type": "Tracker", "keep_days": 30}]) as (app, _):
        await history(app, "urn:ngsi-ld:Tracker:1", [tracker], [("", d) for d in (90, 60, 1)])
        with caplog.at_level(logging.INFO, logger="ucity.store.retention"):
            await app.retention.sweep(dry_run=True)
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("retention: history")]
    assert "(dry run): would delete 2" in line and "deleted" not in line


def test_the_rules_readme_says_name_is_required_as_the_api_does(client: TestClient) -> None:
    readme = (REPO / "ucity" / "rules" / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith("| `name`"))
    assert row.split("|")[2].strip() == "required"
    refused = client.post("/api/v1/rules", json=tilt_body(name=None))
    assert refused.status_code == 400 and "name: Field required" in refused.json()["detail"], refused.text
    assert client.post("/api/v1/rules", json=tilt_body(description=None)).status_code == 201  # `{}` by default


# -- F12: liveness and readiness probes for orchestrators ------------------------------------------------
def _store_down(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """A dependency down as readiness sees it (the database unreachable: `components.store.ok` false)."""
    platform = client.app.state.ucity.platform  # type: ignore[attr-defined]
    healthy = platform.health
    monkeypatch.setattr(platform, "health", lambda: {**healthy(), "store": {"ok": False, "unreachable": "down"}})


def test_liveness_stays_200_while_readiness_and_health_answer_503(client: TestClient,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    assert client.get("/health/live").json() == {"status": "ok", "live": True, "version": client.get(
        "/health").json()["version"]}
    assert client.get("/health/ready").status_code == 200 and client.get("/health/ready").json()["ready"] is True
    _store_down(client, monkeypatch)
    assert client.get("/health/live").status_code == 200  # a liveness probe must not restart this process
    for path in ("/health", "/health/ready"):
        answer = client.get(path)
        assert answer.status_code == 503 and answer.json()["ready"] is False, path
        assert answer.json()["components"]["store"]["ok"] is False


def test_the_probes_need_no_token_and_show_no_detail_without_one(tmp_path: Path) -> None:
    settings = load_settings(environment="test", data_dir=str(tmp_path / "data"), store={"group_commit_ms": 1.0},
                             server={"require_auth": True}, ops={"admin_token": ADMIN})
    with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as client:
        assert client.get("/ngsi-ld/v1/types").status_code == 401  # the guard is on
        for path in ("/health/live", "/health/ready"):
            answer = client.get(path)
            assert answer.status_code == 200 and "components" not in answer.json(), path
        detail = client.get("/health/ready", headers={"Authorization": f"Bearer {ADMIN}"}).json()
        assert "store" in detail["components"]
        paths = client.get("/openapi.json").json()["paths"]
        assert "/health/live" in paths and "/health/ready" in paths


# -- F12: files ucity creates are the service account's alone -----------------------------------------------
@pytest.mark.usefixtures("_no_store_from_the_environment")
def test_migrate_creates_the_data_dir_0700_and_the_database_0600(tmp_path: Path) -> None:
    data = tmp_path / "data"
    previous = os.umask(0o022)  # the usual umask: 0755 directories, 0644 files
    try:
        assert main(["migrate", "--data-dir", str(data)]) == 0
        assert os.umask(0o022) == 0o022  # main() leaves the caller's umask as it was
    finally:
        os.umask(previous)
    assert (data.stat().st_mode & 0o777) == 0o700
    created = list(data.iterdir())
    assert created and all((p.stat().st_mode & 0o777) == 0o600 for p in created), \
        {p.name: oct(p.stat().st_mode & 0o777) for p in created}


@pytest.mark.usefixtures("_no_store_from_the_environment")
def test_serve_logs_json_lines_with_access_lines_and_keeps_its_files_private(tmp_path: Path) -> None:
    """`ucity serve` with `log.format = "json"` and `log.access = true`: stderr is JSON lines only (the banner
    included), uvicorn's own and access lines among them, UTC times, the device apikey masked; the SQLite files
    (-wal, -shm, .lock) are 0600 in a 0700 directory although started under umask 022."""
    import urllib.error
    import urllib.request

    port, data = _closed_port(), tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("UCITY_")}
    env.update({"PYTHONPATH": str(REPO), "UCITY_LOG__FORMAT": "json", "UCITY_LOG__ACCESS": "true", "TZ": "Asia/Seoul",
                "UCITY_ENVIRONMENT": "test"})
    proc = subprocess.Popen([sys.executable, "-c", "import os, sys; os.umask(0o022); from ucity.cli import main; "
                             "sys.exit(main(sys.argv[1:]))", "serve", "--port", str(port), "--data-dir", str(data)],
                            env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        live = None
        for _ in range(600):  # the start, up to 60 s on a busy machine
            try:
                live = urllib.request.urlopen(f"http://127.0.0.1:{port}/health/live", timeout=2)
                break
            except (urllib.error.URLError, ConnectionError):
                assert proc.poll() is None, proc.communicate()
                time.sleep(0.1)  # waiting for another process to listen: no platform time involved
        assert live is not None and live.status == 200
        with pytest.raises(urllib.error.HTTPError):  # no such device: 404, logged with the apikey masked
            urllib.request.urlopen(urllib.request.Request(
                f"http://127.0.0.1:{port}/iot/json?k=Secret-Key-q8w7&i=spot-1", data=b'{"t": 1}',
                headers={"Content-Type": "application/json"}), timeout=10)
        modes = {p.name: p.stat().st_mode & 0o777 for p in data.iterdir()}
        assert (data.stat().st_mode & 0o777) == 0o700
        assert {"ucity.db", "ucity.db-wal", "ucity.db-shm", "ucity.db.lock"} <= set(modes), modes
        assert all(mode == 0o600 for mode in modes.values()), modes
    finally:
        proc.terminate()
        _out, err = proc.communicate(timeout=60)
    lines = [line for line in err.splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= set(r) and r["time"].endswith("Z") for r in records)
    assert any(r["logger"] == "ucity.cli" and r["message"].startswith("ucity ") for r in records)  # the banner
    assert any(r["logger"] == "ucity.cli" and r["message"] == f"dashboard    http://127.0.0.1:{port}/" for r in records)
    access = [r for r in records if r["logger"] == "uvicorn.access"]
    assert {"method": "GET", "path": "/health/live", "status": 200}.items() <= access[0]["http"].items()
    assert any(r["http"]["path"] == "/iot/json?k=***&i=spot-1" and r["http"]["status"] == 404 for r in access)
    assert "Secret-Key-q8w7" not in err


# -- F11: a worker that cannot reach its database says so in one line --------------------------------------
@pytest.fixture
def nats_url() -> Iterator[str]:
    from tests.natsserver import running_nats

    for server in running_nats():
        yield server.url


@pytest.mark.usefixtures("_no_store_from_the_environment")
def test_a_worker_with_the_database_down_says_one_line_and_exits_3(tmp_path: Path, nats_url: str) -> None:
    url = f"postgresql://ucity:{PG_PASSWORD}@127.0.0.1:{_closed_port()}/ucity"
    worked = _cli(["worker"], {"UCITY_STORE__URL": url, "UCITY_BUS__URL": nats_url, "PYTHONPATH": str(REPO)},
                  tmp_path)
    output = worked.stdout + worked.stderr
    assert worked.returncode == 3, output
    assert "Traceback" not in output and PG_PASSWORD not in output, output
    failure = [line for line in output.splitlines() if "could not start" in line]
    assert failure and "ucity worker could not start (store postgresql://ucity:***@127.0.0.1" in failure[0]
    assert "ConnectionRefusedError" in output


async def test_a_worker_logs_its_stop_on_sigterm(caplog: pytest.LogCaptureFixture) -> None:
    """QA8 F11: a worker stopped by SIGTERM said nothing; now it says that it hands its partitions over, then
    that it stopped (run_worker's own signal handler: the signal never reaches pytest)."""
    import asyncio
    import signal

    from ucity.cluster.worker import run_worker

    started, calls = asyncio.Event(), []

    class App:  # run_worker needs only start and stop
        async def start(self) -> None:
            calls.append("start")
            started.set()

        async def stop(self) -> None:
            calls.append("stop")

    with caplog.at_level(logging.INFO, logger="ucity.cluster.worker"):
        running_worker = asyncio.create_task(run_worker(App()))  # type: ignore[arg-type]
        await started.wait()
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(running_worker, 10)
    assert calls == ["start", "stop"]
    logged = [r.getMessage() for r in caplog.records if r.name == "ucity.cluster.worker"]
    assert logged == ["worker started", "worker stopping (SIGTERM): handing its partitions over", "worker stopped"]
