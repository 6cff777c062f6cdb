"""Temporal API over 100,000 instances of one attribute (one every 10 s, about 278 hours).

* retrieve: `GET /temporal/entities/{id}?attrs=speed&timerel=after&timeAt=<first>` (the first page
  of 1,000 instances, a 206 with Content-Range), and `lastN=100`;
* aggregate: `options=aggregatedValues&aggrMethods=avg&aggrPeriodDuration=PT1H` over all of it.
Sequential requests from the load generator (one connection), p50/p99.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import _common as c

ENTITY = "urn:ngsi-ld:TrafficFlowObserved:bench-1"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
INSTANCES = 100_000
TARGET_MS = 50.0


def iso(k: int) -> str:
    return (T0 + timedelta(seconds=10 * k)).strftime("%Y-%m-%dT%H:%M:%SZ")


def instances(start: int, stop: int) -> list[dict[str, object]]:
    return [{"type": "Property", "value": float(k % 97), "observedAt": iso(k)} for k in range(start, stop)]


def main() -> None:
    args = c.parser(__doc__ or "").parse_args()
    report = c.Report(f"Temporal over {INSTANCES:,} instances ({args.backend})")
    print(f"machine: {c.machine_line()}", flush=True)
    count = 30 if args.quick else 200
    chunk = 10_000
    hdr = {"accept": "application/json"}
    with c.temp_dir("ucity-bench-temporal-") as data_dir:
        env = c.settings_env(c.store_url(args, data_dir), data_dir)
        with c.Server(env) as server:
            server.send("POST", "/ngsi-ld/v1/temporal/entities",
                        {"id": ENTITY, "type": "TrafficFlowObserved", "speed": instances(0, chunk)})
            for start in range(chunk, INSTANCES, chunk):
                server.send("POST", f"/ngsi-ld/v1/temporal/entities/{ENTITY}/attrs", {"speed": instances(start, start + chunk)})
            base = f"/ngsi-ld/v1/temporal/entities/{ENTITY}?attrs=speed"
            cases = [
                ("temporal retrieve, first page (1,000 instances)", f"{base}&timerel=after&timeAt={iso(0)}"),
                ("temporal retrieve, lastN=100", f"{base}&timerel=after&timeAt={iso(0)}&lastN=100"),
                ("temporal aggregate avg per 1 h (278 periods)",
                 f"{base}&options=aggregatedValues&aggrMethods=avg&aggrPeriodDuration=PT1H&timerel=after&timeAt={iso(0)}"),
            ]
            results = []
            for name, target in cases:
                plan = data_dir / "plan.jsonl"
                c.write_plan(plan, [("GET", target, hdr, b"")] * count)
                results.append((name, c.loadgen(["http", "--port", str(server.port), "--plan", str(plan),
                                                 "--connections", "1", "--count", str(count)])))
    for name, r in results:
        aggregate = "aggregate" in name
        report.add(c.Row(name, r["p50_ms"], "ms p50", None, "", f"<= {TARGET_MS:.0f} ms" if aggregate else "",
                         (r["p50_ms"] <= TARGET_MS) if aggregate else None,
                         f"p99 {r['p99_ms']:.1f} ms; statuses {r['statuses']}"))
    report.note("times include HTTP and JSON rendering; Stellio reports 88-321 ms for a temporal aggregate on 8 vCPU")
    report.print()


if __name__ == "__main__":
    main()
