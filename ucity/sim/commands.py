"""`ucity simulate` and `ucity demo`: argument parsing and the two commands.

cli.py only registers them (`add_commands`); everything about the simulator stays in ucity/sim.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from datetime import UTC, datetime
from pathlib import Path

import httpx
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from ucity.core import logsafe, logsetup
from ucity.core.config import settings_error_lines
from ucity.sim.city import CityConfig, build_city
from ucity.sim.client import SimulatorError
from ucity.sim.display import KST, RichDisplay
from ucity.sim.runner import RunConfig, Runner, RunReport
from ucity.sim.scenarios import SCENARIOS, select

console = Console(stderr=True, soft_wrap=True)  # long lines stay whole in logs


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `simulate` and `demo` on the `ucity` parser."""
    sim = sub.add_parser("simulate", help="drive a running ucity with a simulated Guro-gu district",
                         description="Provision the simulated city on a running server (NGSI-LD upsert + IoT Agent "
                                     "provisioning), then stream its devices' measures over HTTP or MQTT.")
    sim.add_argument("--url", default="http://127.0.0.1:8000", help="the server (default http://127.0.0.1:8000)")
    sim.add_argument("--mqtt", metavar="URL", help="publish measures to this broker (mqtt://host:port) instead of HTTP")
    _city_options(sim)
    _run_options(sim)
    sim.add_argument("--tenant", help="NGSILD-Tenant / fiware-service to write into (default tenant when absent)")
    _token_option(sim)
    sim.add_argument("--no-provision", action="store_true", help="skip provisioning (already done)")
    sim.add_argument("--static-only", action="store_true", help="only upsert the static entities, no devices")
    sim.set_defaults(func=cmd_simulate)

    demo = sub.add_parser("demo", help="start ucity with a simulated city streaming live",
                          description="Start the server on the embedded store, provision the simulated district, "
                                      "stream its data live and print the dashboard and API addresses.")
    demo.add_argument("--config", type=Path, help="TOML configuration file (env UCITY_* overrides it)")
    demo.add_argument("--data-dir", default="ucity-demo-data",
                      help="where the demo's embedded store keeps its files (default ./ucity-demo-data)")
    demo.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    demo.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    demo.add_argument("--mqtt", metavar="URL", help="also run MQTT: the server subscribes to this broker and the "
                                                    "devices publish there")
    _city_options(demo)
    _run_options(demo, default_scenarios=["all"])
    _token_option(demo)
    demo.set_defaults(func=cmd_demo)


TOKEN_ENV = "UCITY_TOKEN"


def _token_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--token", default=None,
                   help=f"bearer token sent with every request, for a server with server.require_auth on "
                        f"(an admin token: provisioning needs config:admin); default ${TOKEN_ENV}, which keeps it "
                        "out of the process list. The demo uses its own admin token when none is given")


def token_of(args: argparse.Namespace) -> str | None:
    """--token, else $UCITY_TOKEN, else None."""
    return getattr(args, "token", None) or os.environ.get(TOKEN_ENV) or None


def _city_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=7, help="the city and its signals follow from this seed (default 7)")
    p.add_argument("--scale", type=float, default=1.0, help="multiply every count of the city (default 1.0)")


def _run_options(p: argparse.ArgumentParser, default_scenarios: list[str] | None = None) -> None:
    p.add_argument("--speed", type=float, default=1.0,
                   help="simulated seconds per second: 1 = real time, 60 = one simulated minute per second")
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds of streaming (default: until Ctrl-C)")
    p.add_argument("--start", metavar="ISO", help="simulated start time, e.g. 2026-11-20T08:00:00+09:00 (default now)")
    names = ", ".join(SCENARIOS)
    p.add_argument("--scenario", action="append", metavar="NAME[@OFFSET]", default=None,
                   help=f"switch on a scenario ({names}, or all), starting OFFSET after the start "
                        f"(90, 90s, 5m, 2h; default 1 min); repeatable" +
                        (" (default: all)" if default_scenarios else ""))
    p.add_argument("--no-scenarios", action="store_true", help="no scenario at all")
    p.set_defaults(default_scenarios=default_scenarios or [])
    p.add_argument("--quiet", action="store_true", help="no progress display")


def city_config(args: argparse.Namespace) -> CityConfig:
    if args.scale <= 0:
        raise SimulatorError("--scale must be positive")
    start = parse_start(args.start) or datetime.now(UTC)
    # "today" for the facilities' inspection dates, in Seoul
    return CityConfig(seed=args.seed, scale=args.scale, reference_date=start.astimezone(KST).date())


def parse_start(text: str | None) -> datetime | None:
    if not text:
        return None
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def run_config(args: argparse.Namespace, url: str, mqtt: str | None) -> RunConfig:
    scenarios = [] if args.no_scenarios else (args.scenario or args.default_scenarios)
    select(scenarios)  # fail early on an unknown name
    static_only = getattr(args, "static_only", False)
    return RunConfig(url=url, mqtt_url=mqtt, speed=args.speed, duration_s=args.duration,
                     start=parse_start(args.start), scenarios=tuple(scenarios), tenant=getattr(args, "tenant", None),
                     provision=not getattr(args, "no_provision", False), devices=not static_only,
                     token=token_of(args))


def cmd_simulate(args: argparse.Namespace) -> int:
    logsetup.configure("WARNING")  # UTC ISO times and secrets masked, as the server's lines (ucity/core/logsetup.py)
    try:
        cfg = run_config(args, args.url, args.mqtt)
        report = asyncio.run(simulate(city_config(args), cfg, quiet=args.quiet))
    except (SimulatorError, ValueError) as exc:
        console.print(f"[red]{escape(str(exc))}[/]")  # a server's detail may hold [brackets]
        return 2
    except httpx.HTTPError as exc:
        console.print(f"[red]cannot talk to {escape(logsafe.redact(args.url))}: {escape(logsafe.redact(repr(exc)))}[/] "
                      "(is `ucity serve` running?)")
        return 2
    except KeyboardInterrupt:
        return 130
    print_summary(report)
    return 0


async def simulate(city_cfg: CityConfig, cfg: RunConfig, quiet: bool = False) -> RunReport:
    city = build_city(city_cfg)
    display = None if quiet else RichDisplay(console)
    async with Runner(city, cfg, display=display) as runner:
        if cfg.provision and not quiet:
            console.print(f"provisioning the simulated city on {cfg.url} ...")
        return await runner.run()


def print_summary(report: RunReport) -> None:
    for line in report.summary():
        console.print(line)


def cmd_demo(args: argparse.Namespace) -> int:
    from ucity.sim.demo import DemoOptions, run_demo

    try:
        cfg = run_config(args, f"http://{args.host}:{args.port}", args.mqtt)
        options = DemoOptions(host=args.host, port=args.port, config=args.config,
                              data_dir=Path(args.data_dir),
                              mqtt=args.mqtt, quiet=args.quiet)
        return run_demo(city_config(args), cfg, options, console)
    except ValidationError as exc:  # the demo server's configuration (--config, UCITY_*): as `ucity serve` says it
        console.print("[red]invalid configuration:[/]\n  - " + escape("\n  - ".join(settings_error_lines(exc, os.environ))))
        return 2
    except (SimulatorError, ValueError) as exc:
        console.print(f"[red]{escape(str(exc))}[/]")
        return 2
    except KeyboardInterrupt:
        return 0
