"""Latency under a steady load: write -> NGSI-LD notification, write -> alarm on the SSE stream.

The load generator (its own process) sends device measures over HTTP at a steady 5,000
observations/s (1,250 requests/s, four attributes each) and is itself the notification endpoint
and an SSE client of `/api/v1/stream`. Every measure carries a sequence number (`seq`); every
tenth round a device's `level` jumps to 1,000,000 + seq, which a threshold rule raises as an alarm
(the next round clears it). Latency runs from just before the request is written to the moment
the notification or the SSE event is read, on one clock.
"""

from __future__ import annotations

import _common as c

APIKEY = "lat"
TYPE = "LatencySensor"
TARGET_MS = 100.0


def group() -> dict[str, object]:
    return {"apikey": APIKEY, "entity_type": TYPE, "resource": "/iot/json", "autoprovision": False,
            "attributes": [{"object_id": n, "name": n, "type": "Number"} for n in ("seq", "level", "a0", "a1")]}


def main() -> None:
    p = c.parser(__doc__ or "")
    p.add_argument("--rate", type=float, default=5000.0, help="observations per second")
    args = p.parse_args()
    report = c.Report(f"Latency at {args.rate:,.0f} observations/s ({args.backend})")
    print(f"machine: {c.machine_line()}", flush=True)
    devices = 1000
    duration = 10 if args.quick else 30
    receiver = c.free_port()
    with c.temp_dir("ucity-bench-latency-") as data_dir:
        env = c.settings_env(c.store_url(args, data_dir), data_dir)
        with c.Server(env) as server:
            server.send("POST", "/iot/services", {"services": [group()]})
            for start in range(0, devices, 500):
                server.send("POST", "/iot/devices", {"devices": [
                    {"device_id": f"dev{i}", "apikey": APIKEY, "expected_interval_s": 86400}
                    for i in range(start, start + 500)]})
            server.send("POST", "/api/v1/rules", {
                "id": "bench-level", "name": {"en": "bench level"}, "entityTypes": [TYPE], "kind": "safety",
                "condition": {"type": "threshold", "attribute": "level", "direction": "above",
                              "edges": [{"level": "caution", "at": 1_000_000}]}})
            server.send("POST", "/ngsi-ld/v1/subscriptions", {
                "type": "Subscription", "entities": [{"type": TYPE}], "watchedAttributes": ["seq"],
                "notification": {"format": "keyValues", "attributes": ["seq"],
                                 "endpoint": {"uri": f"http://127.0.0.1:{receiver}/notify"}}})
            window = c.CpuWindow(server.pid)
            result = c.loadgen(["latency", "--port", str(server.port), "--receiver-port", str(receiver),
                                "--apikey", APIKEY, "--devices", str(devices), "--rate", str(args.rate),
                                "--duration", str(duration), "--alarm-every", "10"])
            share = window.share()
    report.add(c.Row("write -> notification p99", result["notif_p99_ms"], "ms", None, "", f"<= {TARGET_MS:.0f} ms",
                     result["notif_p99_ms"] <= TARGET_MS,
                     f"p50 {result['notif_p50_ms']:.1f}, max {result['notif_max_ms']:.1f} ms, "
                     f"{result['notifications']:,} samples"))
    report.add(c.Row("write -> alarm on SSE p99", result["alarm_p99_ms"], "ms", None, "", f"<= {TARGET_MS:.0f} ms",
                     result["alarm_p99_ms"] <= TARGET_MS,
                     f"p50 {result['alarm_p50_ms']:.1f}, max {result['alarm_max_ms']:.1f} ms, {result['alarms']:,} samples"))
    report.add(c.Row("offered load held", result["obs_rate"], "obs/s", args.rate, "offered", "", None,
                     f"{result['late_sends']} sends late > 50 ms; statuses {result['statuses']}"))
    report.note(f"server CPU {share:.0%} of one core; load generator (sender, receiver, SSE client) CPU "
                f"{result['cpu_share']:.0%} of one core")
    report.print()


if __name__ == "__main__":
    main()
