"""Latency under a steady load: write -> NGSI-LD notification, write -> alarm on the SSE stream.

The load generator (its own process) sends device measures over HTTP at a steady 5,000
observations/s (1,250 requests/s, four attributes each) and is itself the notification endpoint
and an SSE client of `/api/v1/stream`. Every measure carries a sequence number (`seq`); every
tenth round a device's `level` jumps to 1,000,000 + seq, which a threshold rule raises as an alarm
(the next round clears it). Latency runs from just before the request is written to the moment
the notification or the SSE event is read, on one clock.
"""

from __future__ import annotations

import subprocess
import threading
import time
import urllib.request

import _common as c


class LoopProbe:
    """GET /health every 50 ms while the load runs: its round trip is a floor of the event loop's lag."""

    def __init__(self, url: str) -> None:
        self.url = url + "/health"
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LoopProbe:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            start = time.perf_counter()
            try:
                with urllib.request.urlopen(self.url, timeout=10) as r:
                    r.read()
            except Exception:
                continue
            self.samples.append((time.perf_counter() - start) * 1e3)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

APIKEY = "lat"
TYPE = "LatencySensor"
TARGET_MS = 100.0


def group() -> dict[str, object]:
    return {"apikey": APIKEY, "entity_type": TYPE, "resource": "/iot/json", "autoprovision": False,
            "attributes": [{"object_id": n, "name": n, "type": "Number"} for n in ("seq", "level", "a0", "a1")]}


def main() -> None:
    p = c.parser(__doc__ or "")
    p.add_argument("--rate", type=float, default=5000.0, help="observations per second")
    p.add_argument("--profile", metavar="FILE", help="record the server with py-spy (raw folded stacks) into FILE")
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
            spy = None
            if args.profile:
                spy = subprocess.Popen(["py-spy", "record", "-r", "200", "-f", "raw", "-o", args.profile, "--pid",
                                        str(server.pid), "--duration", str(duration + 2)],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            window = c.CpuWindow(server.pid)
            with LoopProbe(server.url) as probe:
                result = c.loadgen(["latency", "--port", str(server.port), "--receiver-port", str(receiver),
                                    "--apikey", APIKEY, "--devices", str(devices), "--rate", str(args.rate),
                                    "--duration", str(duration), "--alarm-every", "10"])
            share = window.share()
            if spy is not None:
                spy.wait()
    report.add(c.Row("write -> notification p99", result["notif_p99_ms"], "ms", None, "", f"<= {TARGET_MS:.0f} ms",
                     result["notif_p99_ms"] <= TARGET_MS,
                     f"p50 {result['notif_p50_ms']:.1f}, max {result['notif_max_ms']:.1f} ms, "
                     f"{result['notifications']:,} samples in {result.get('notification_posts', 0):,} POSTs"))
    report.add(c.Row("write -> alarm on SSE p99", result["alarm_p99_ms"], "ms", None, "", f"<= {TARGET_MS:.0f} ms",
                     result["alarm_p99_ms"] <= TARGET_MS,
                     f"p50 {result['alarm_p50_ms']:.1f}, max {result['alarm_max_ms']:.1f} ms, {result['alarms']:,} samples"))
    report.add(c.Row("offered load held", result["obs_rate"], "obs/s", args.rate, "offered", "", None,
                     f"{result['late_sends']} sends late > 50 ms; statuses {result['statuses']}"))
    parts = result.get("breakdown", {})
    for name, label in (("notif_write_to_queued", "notification: write -> queued (notifiedAt)"),
                        ("notif_queued_to_received", "notification: queued -> received"),
                        ("alarm_write_to_decided", "alarm: write -> decided (updated_at)"),
                        ("alarm_decided_to_sse", "alarm: decided -> read from SSE")):
        if name in parts:
            report.add(c.Row(f"{label} p99", parts[name]["p99_ms"], "ms", note=f"p50 {parts[name]['p50_ms']:.1f} ms"))
    for storm in result.get("storms", ()):  # diagnostics: the first storm also creates every device entity
        report.add(c.Row(f"alarm storm of round {storm['round']} p99", storm["p99_ms"], "ms",
                         note=f"p50 {storm['p50_ms']:.1f}, max {storm['max_ms']:.1f} ms, {storm['samples']} samples"))
    report.add(c.Row("GET /health under the load p99", c.percentile(probe.samples, 99), "ms",
                     note=f"p50 {c.percentile(probe.samples, 50):.1f} ms, {len(probe.samples)} probes; "
                          "a floor of event-loop lag"))
    report.note(f"server CPU {share:.0%} of one core; load generator (sender, receiver, SSE client) CPU "
                f"{result['cpu_share']:.0%} of one core")
    report.print()


if __name__ == "__main__":
    main()
