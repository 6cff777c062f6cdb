"""Memory: the server's RSS with 100,000 provisioned devices, each of which has reported.

Devices are provisioned through the IoT Agent API (1,000 per request), then every device sends one
measure (`POST /iot/json`, 32 connections from the load generator). Baseline: the RSS of the same
server just started, with nothing provisioned.
"""

from __future__ import annotations

import json

import _common as c
import fixtures as fx

TARGET = 1 << 30


def main() -> None:
    args = c.parser(__doc__ or "").parse_args()
    devices = 10_000 if args.quick else 100_000
    report = c.Report(f"Memory with {devices:,} devices ({args.backend})")
    print(f"machine: {c.machine_line()}", flush=True)
    with c.temp_dir("ucity-bench-memory-") as data_dir:
        env = c.settings_env(c.store_url(args, data_dir), data_dir)
        with c.Server(env) as server:
            empty = c.rss_bytes(server.pid)
            server.send("POST", "/iot/services", {"services": [fx.service_group()]})
            for start in range(0, devices, 1000):
                server.send("POST", "/iot/devices", {"devices": [fx.device(i) for i in range(start, start + 1000)]})
            provisioned = c.rss_bytes(server.pid)
            plan = data_dir / "plan.jsonl"
            c.write_plan(plan, [("POST", f"/iot/json?k={fx.APIKEY}&i=dev{n}", {"content-type": "application/json"},
                                 json.dumps(fx.measure(n)).encode()) for n in range(devices)])
            result = c.loadgen(["http", "--port", str(server.port), "--plan", str(plan), "--connections", "32",
                                "--count", str(devices)])
            reported = c.rss_bytes(server.pid)
            health = server.get("/api/v1/devices/health?status=offline")
    mib = 1 << 20
    report.add(c.Row(f"RSS, {devices:,} devices provisioned and reported", reported / mib, "MiB", empty / mib,
                     "same server, empty", "<= 1,024 MiB", reported <= TARGET,
                     f"{(reported - empty) / devices:,.0f} bytes per device"))
    report.note(f"RSS after provisioning only: {provisioned / mib:,.0f} MiB; reports {result['statuses']} at "
                f"{result['rps']:,.0f} measures/s; devices online counted by health: {health.get('counts')}")
    report.print()


if __name__ == "__main__":
    main()
