"""The simulator sends a bearer token (`--token` / `UCITY_TOKEN`) to a server with `server.require_auth` on."""

from __future__ import annotations

import argparse
from datetime import UTC, date, datetime
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer
from ucity.core.clock import FakeClock
from ucity.core.config import Settings, load_settings
from ucity.sim.city import CityConfig, build_city
from ucity.sim.client import SimulatorError
from ucity.sim.commands import run_config
from ucity.sim.runner import RunConfig, Runner

ADMIN = "sim-admin-token-0123456789abcdef"
START = datetime(2026, 11, 18, 1, 0, tzinfo=UTC)


def parsed(*argv: str) -> argparse.Namespace:
    from ucity.cli import build_parser

    return build_parser().parse_args(["simulate", *argv])


def test_the_token_comes_from_the_option_or_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UCITY_TOKEN", raising=False)
    assert run_config(parsed(), "http://x", None).token is None
    monkeypatch.setenv("UCITY_TOKEN", "from-env")
    assert run_config(parsed(), "http://x", None).token == "from-env"
    assert run_config(parsed("--token", "from-option"), "http://x", None).token == "from-option"
    assert "from-option" not in repr(run_config(parsed("--token", "from-option"), "http://x", None))


async def provision(url: str, token: str | None) -> Runner:
    clock = FakeClock(START)
    city = build_city(CityConfig(seed=7, scale=0.02, reference_date=date(2026, 11, 1)))
    async with Runner(city, RunConfig(url=url, stream=False, token=token), clock=clock) as runner:
        await runner.run()
    return runner


async def test_provisioning_a_guarded_server_needs_the_token(tmp_path: Path) -> None:
    settings = load_settings(environment="test", data_dir=str(tmp_path / "data"), server={"require_auth": True},
                             ops={"admin_token": ADMIN})
    with LiveServer(settings) as server:
        with pytest.raises(SimulatorError, match="--token or set UCITY_TOKEN"):
            await provision(server.url, None)
        runner = await provision(server.url, ADMIN)
        assert runner.report.entities > 0 and runner.report.devices > 0
        async with httpx.AsyncClient(base_url=server.url) as http:
            listed = await http.get("/iot/devices", headers={"Authorization": f"Bearer {ADMIN}"})
        assert listed.status_code == 200 and listed.json()["count"] == runner.report.devices
        # every camera's stream URL registered through the camera API (never NGSI-LD data), so events get cameras
        # that can give footage (the camera selection leaves out those without one)
        camera = runner.city.cameras[0]
        assert runner.report.camera_urls == len(runner.city.cameras) > 0
        async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {ADMIN}"}) as http:
            shown = (await http.get(f"/ngsi-ld/v1/entities/urn:ngsi-ld:Camera:guro-{camera.id}")).json()
            wired = (await http.get(f"/api/v1/cameras/guro-{camera.id}")).json()
        assert wired["streamURL"] == camera.stream_url
        assert shown["id"] == f"urn:ngsi-ld:Camera:guro-{camera.id}" and "streamURL" not in shown


OPERATOR = "sim-operator-token-0123456789abcdef"


def guarded_settings(tmp_path: Path) -> Settings:
    return load_settings(environment="test", data_dir=str(tmp_path / "data"), server={"require_auth": True},
                         ops={"admin_token": ADMIN, "tokens": [{"id": "op1", "role": "operator", "token": OPERATOR}]})


async def test_a_refused_provisioning_leaves_no_task_behind(tmp_path: Path) -> None:
    """QA3 F10: the devices' 403 ended the run while the static entities' upserts were still in flight; the
    client was closed under them and their task died later with an unretrieved httpx.ReadError."""
    import asyncio

    with LiveServer(guarded_settings(tmp_path)) as server:
        city = build_city(CityConfig(seed=7, scale=1.0, reference_date=date(2026, 11, 1)))
        async with Runner(city, RunConfig(url=server.url, stream=False, token=OPERATOR), clock=FakeClock(START)) as runner:
            with pytest.raises(SimulatorError, match="config:admin"):
                await runner.run()
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            assert others == []  # cancelled and awaited before the error came out


def test_simulate_with_an_operator_token_says_so_without_a_traceback(tmp_path: Path) -> None:
    """QA3 F10: `UCITY_TOKEN=<operator> ucity simulate` printed ~70 lines of asyncio traceback before the message."""
    import os
    import subprocess
    import sys

    with LiveServer(guarded_settings(tmp_path)) as server:
        result = subprocess.run([sys.executable, "-m", "ucity.cli", "simulate", "--url", server.url, "--duration", "3",
                                 "--quiet", "--no-scenarios"], capture_output=True, text=True, timeout=120,
                                env={**os.environ, "UCITY_TOKEN": OPERATOR})
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "Error" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "config:admin" in lines[0] and "admin" in lines[0] and OPERATOR not in result.stderr
    assert "권한" in lines[0] and "token" in lines[0]  # Korean / English
