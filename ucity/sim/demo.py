"""`ucity demo`: the server on the embedded store, in this process, with the simulated city live.

uvicorn serves `ucity.server.create_app` in this process. The simulator is a client like any
other (loopback HTTP): on Linux it runs in a forked child process, so that on a 2-core machine the
server keeps one core for itself and the city is built while the server starts; elsewhere it runs
on the server's event loop. It provisions the city, prints the addresses with the measured time to
ready, and streams until Ctrl-C or `--duration`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import multiprocessing
import os
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from rich.console import Console

from ucity.core import logsetup
from ucity.core.config import load_settings
from ucity.sim.city import CityConfig, build_city
from ucity.sim.client import SimulatorError
from ucity.sim.display import NullDisplay, RichDisplay
from ucity.sim.runner import RunConfig, Runner, RunReport

SERVER_WAIT_S = 60.0  # the longest the simulator waits for the server to listen


@dataclass(frozen=True)
class DemoOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    config: Path | None = None
    data_dir: Path = Path("ucity-demo-data")
    mqtt: str | None = None
    quiet: bool = False
    admin_token: str | None = None  # the demo's own, when it made one (shown in the banner)


def demo_settings(options: DemoOptions) -> Any:
    overrides: dict[str, Any] = {"data_dir": str(options.data_dir), "log_level": "WARNING",
                                 "server": {"host": options.host, "port": options.port}}
    if options.mqtt:
        overrides["mqtt"] = {"url": options.mqtt}
    settings = load_settings(options.config, **overrides)
    extra: dict[str, Any] = {}
    if not settings.domains.enabled:  # the demo shows the domain services unless a config names its own
        extra["domains"] = {"enabled": ["facility_safety"]}
    if "max_future_s" not in settings.ingest.model_fields_set:
        # The simulated city runs at ×speed, from --start: its devices' times run ahead of the server's clock,
        # which ingest.max_future_s (one day) would refuse after a few hours at ×10. They are simulation times
        # (nor are they a wrong device clock: no clock-ahead warning for them either).
        extra["ingest"] = {"max_future_s": DEMO_MAX_FUTURE_S,
                           **({} if "clock_ahead_warn_s" in settings.ingest.model_fields_set
                              else {"clock_ahead_warn_s": DEMO_MAX_FUTURE_S})}
    if settings.ops.admin_token is None and options.admin_token:
        # The dashboard's operations features (situation panel, share with an agency) take a bearer token: a
        # fresh admin token per demo run (`run_demo`), shown in the banner, and the district's two agencies
        # (no webhooks).
        extra["ops"] = {"admin_token": options.admin_token,
                        **({} if settings.ops.agencies else {"agencies": DEMO_AGENCIES})}
    if extra:  # sections of their own (domains, ingest, ops): none of `overrides`'
        settings = load_settings(options.config, **overrides, **extra)
    return settings


DEMO_MAX_FUTURE_S = 3.0e9  # about 95 years: any --start and --speed a demo is run with
DEMO_AGENCIES = [
    {"id": "fire-119", "kind": "fire", "name": {"ko": "구로소방서 상황실", "en": "Guro fire station"},
     "services": ["119_DISPATCH", "DISASTER"], "autoServices": ["119_DISPATCH"]},
    {"id": "police-112", "kind": "police", "name": {"ko": "서울경찰청 112치안종합상황실", "en": "Seoul police 112 room"},
     "services": ["112_VIDEO", "112_DISPATCH", "VULNERABLE"]},
]


async def start_server(options: DemoOptions) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    """uvicorn in this process; returns once it listens (or raises if it could not start)."""
    from ucity.server import create_app

    settings = demo_settings(options)
    logsetup.configure("WARNING", settings.log.format)  # the server's format: UTC ISO times, secrets masked
    config = uvicorn.Config(create_app(settings), host=options.host, port=options.port, log_level="warning",
                            access_log=False, lifespan="on", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # re-raise its error, if any
            raise SimulatorError(f"ucity could not start on {options.host}:{options.port} (port in use?)")
        await asyncio.sleep(0.02)
    return server, task


def process_started() -> float:
    """When this process started (POSIX time), so that "ready in" counts Python's start and imports too."""
    try:
        with open("/proc/self/stat") as stat, open("/proc/uptime") as uptime:
            start_ticks = int(stat.read().rsplit(")", 1)[1].split()[19])  # field 22: starttime
            up = float(uptime.read().split()[0])
        return time.time() - (up - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return time.time()


def run_demo(city_cfg: CityConfig, cfg: RunConfig, options: DemoOptions, console: Console) -> int:
    """The demo; the simulator in a forked child process on Linux, else on the server's loop."""
    started = process_started()
    if options.admin_token is None and load_settings(options.config).ops.admin_token is None:
        # made before the fork: the server takes it, the simulator's banner shows it
        options = dataclasses.replace(options, admin_token="uct_demo_" + secrets.token_urlsafe(18))
    cfg = dataclasses.replace(cfg, token=cfg.token or simulator_token(options))
    if sys.platform != "linux":
        try:
            return asyncio.run(run_in_process(city_cfg, cfg, options, console, started))
        except SystemExit as exc:
            raise SimulatorError(f"ucity could not start on {options.host}:{options.port}; see the error above") from exc
    child = multiprocessing.get_context("fork").Process(
        target=simulator_process, args=(city_cfg, cfg, options, console, started), name="ucity-sim", daemon=True)
    child.start()  # before the event loop and uvicorn's threads exist: a clean fork
    try:
        asyncio.run(serve_while(child, options))
    except SystemExit as exc:  # uvicorn exits when startup fails (port in use, an app error)
        child.terminate()
        raise SimulatorError(f"ucity could not start on {options.host}:{options.port}; see the error above") from exc
    finally:
        child.join(timeout=10)
        if child.is_alive():
            child.terminate()
    return 0 if child.exitcode in (0, None) else int(child.exitcode)


def simulator_token(options: DemoOptions) -> str | None:
    """The token the demo's simulator sends (provisioning needs one when server.require_auth is on): the demo's
    own admin token, else the configured `ops.admin_token`."""
    if options.admin_token:
        return options.admin_token
    configured = load_settings(options.config).ops.admin_token
    return configured.get_secret_value() if configured is not None else None


async def serve_while(child: multiprocessing.process.BaseProcess, options: DemoOptions) -> None:
    """Serve until the simulator is done (its duration) or uvicorn is told to stop (Ctrl-C)."""
    server, serving = await start_server(options)
    while child.is_alive() and not server.should_exit:
        await asyncio.sleep(0.2)
    server.should_exit = True
    await serving


def simulator_process(city_cfg: CityConfig, cfg: RunConfig, options: DemoOptions, console: Console,
                      started: float) -> None:
    """The child: build the city while the server starts, wait for it, provision, stream."""
    try:
        code = asyncio.run(simulate_when_up(city_cfg, cfg, options, console, started))
    except KeyboardInterrupt:  # Ctrl-C reaches both processes; the server shuts itself down
        code = 0
    except SimulatorError as exc:
        console.print(f"[red]{exc}[/]")
        code = 2
    sys.exit(code)


async def simulate_when_up(city_cfg: CityConfig, cfg: RunConfig, options: DemoOptions, console: Console,
                           started: float) -> int:
    display = NullDisplay() if options.quiet else RichDisplay(console)
    async with Runner(build_city(city_cfg), cfg, display=display) as runner:
        await wait_for_server(runner, started + SERVER_WAIT_S)
        report = await runner.provision()
        banner(console, options, report, time.time() - started, cfg)
        await runner.stream()
    for line in report.summary():
        console.print(line)
    return 0


async def wait_for_server(runner: Runner, deadline: float) -> None:
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if (await runner.client.get("/health")).status_code < 500:
                return
        if time.time() > deadline:
            raise SimulatorError("the server did not come up")
        await asyncio.sleep(0.05)


async def run_in_process(city_cfg: CityConfig, cfg: RunConfig, options: DemoOptions, console: Console,
                         started: float) -> int:
    """Server and simulator on one event loop (platforms without fork)."""
    server, serving = await start_server(options)
    stop = asyncio.Event()
    watcher = asyncio.create_task(_stop_with(server, stop))
    display = NullDisplay() if options.quiet else RichDisplay(console)
    try:
        async with Runner(build_city(city_cfg), cfg, display=display, stop=stop) as runner:
            report = await runner.provision()
            banner(console, options, report, time.time() - started, cfg)
            await runner.stream()
    finally:
        watcher.cancel()
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await serving
    return 0


async def _stop_with(server: uvicorn.Server, stop: asyncio.Event) -> None:
    """Ctrl-C reaches uvicorn (it owns the signal handlers): stop streaming when it shuts down."""
    while not server.should_exit:
        await asyncio.sleep(0.2)
    stop.set()


def banner(console: Console, options: DemoOptions, report: RunReport, ready_s: float, cfg: RunConfig) -> None:
    base = f"http://{options.host}:{options.port}"
    console.print(f"\n[bold green]ucity demo ready in {ready_s:.1f} s[/]: {report.entities:,} static entities, "
                  f"{report.devices:,} devices of a simulated Guro-gu (data in {options.data_dir})")
    console.print(f"  dashboard       {base}/")
    console.print(f"  NGSI-LD API     {base}/ngsi-ld/v1/entities?type=Building")
    console.print(f"  device health   {base}/api/v1/devices/health")
    console.print(f"  API docs        {base}/docs")
    if options.admin_token:
        console.print(f"  operations token (admin, this run only): {options.admin_token}")
    until = f"for {cfg.duration_s:g} s" if cfg.duration_s else "until Ctrl-C"
    console.print(f"streaming live at ×{cfg.speed:g} {until}\n")
