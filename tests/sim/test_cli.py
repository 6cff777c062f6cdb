"""`ucity simulate` and `ucity demo` as a user runs them (subprocesses, real server)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import LiveServer, free_port

UCITY = [sys.executable, "-m", "ucity.cli"]


def test_simulate_drives_a_running_server(live_server: LiveServer) -> None:
    result = subprocess.run([*UCITY, "simulate", "--url", live_server.url, "--scale", "0.02", "--speed", "60",
                             "--duration", "2", "--scenario", "sensor-silent@0", "--quiet"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert re.search(r"entities upserted: 101; devices: 147 \(147 new\)", result.stderr), result.stderr
    assert re.search(r"streamed [\d,]+ measures .* failed 0", result.stderr), result.stderr


def test_simulate_refuses_an_unknown_scenario() -> None:
    result = subprocess.run([*UCITY, "simulate", "--scenario", "flood"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "unknown scenario 'flood'" in result.stderr


def test_demo_serves_the_city_and_stops_by_itself(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen([*UCITY, "demo", "--port", str(port), "--data-dir", str(tmp_path / "demo"),
                             "--scale", "0.02", "--duration", "4", "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 60
    while not any("ready in" in line for line in lines) and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
    output = "".join(lines)
    assert re.search(r"ucity demo ready in [\d.]+ s: 101 static entities, 147 devices", output), output
    response = httpx.get(f"http://127.0.0.1:{port}/ngsi-ld/v1/entities",
                         params={"type": "Camera", "count": "true", "limit": "0"})
    assert response.headers["NGSILD-Results-Count"] == "82"
    # The operations features work in a demo: the token it printed is an admin's, and the two agencies exist.
    while not any("streaming live" in line for line in lines) and time.monotonic() < deadline:
        line = proc.stdout.readline()  # the rest of the banner
        if not line:
            break
        lines.append(line)
    output = "".join(lines)
    token = re.search(r"operations token \(admin, this run only\): (uct_demo_\S+)", output)
    assert token, output
    auth = {"Authorization": f"Bearer {token.group(1)}"}
    agencies = httpx.get(f"http://127.0.0.1:{port}/api/v1/agencies", headers=auth)
    assert agencies.status_code == 200, agencies.text
    assert {"fire-119", "police-112"} <= {a["id"] for a in agencies.json()}
    assert httpx.get(f"http://127.0.0.1:{port}/api/v1/agencies").status_code == 401
    proc.wait(timeout=60)
    rest = proc.stdout.read()  # through the same buffered reader as the lines above
    assert proc.returncode == 0, output + rest
    assert f"http://127.0.0.1:{port}/ngsi-ld/v1/entities?type=Building" in output + rest


def test_demo_refuses_a_bad_configuration_without_printing_its_values(tmp_path: Path) -> None:
    """The demo's server settings are refused as `ucity serve` refuses them (QA12 F1): one line per problem with
    the closest key, never the value (pydantic's own text printed it, and an English-only link)."""
    config = tmp_path / "demo.toml"
    config.write_text('[ops]\nadmin_tokn = "uct_demo-secret-value-0123456789"\n')
    result = subprocess.run([*UCITY, "demo", "--config", str(config), "--data-dir", str(tmp_path / "demo"),
                             "--port", str(free_port()), "--quiet"], capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "invalid configuration" in output and "ops.admin_token" in output and "ops.admin_tokn" in output
    assert "secret-value" not in output and "pydantic" not in output and "Traceback" not in output
