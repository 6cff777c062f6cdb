"""NGSI-LD writes and queries over HTTP, from the load generator's keep-alive connections.

* single-attribute PATCH (`PATCH /entities/{id}/attrs/status`, 32 connections), each answered
  after its commit; baselines: a bare FastAPI endpoint and a raw ASGI app on the same uvicorn;
* batch upsert (`POST /entityOperations/upsert`, 1,000 existing entities per request,
  4 connections), entity updates/s; baseline: the bare endpoint receiving the same bodies;
* query by type + q, and geo near-query, p50/p99 (4 connections) over 10,000 entities.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import _common as c

TYPE = "ParkingSpot"
JSON = {"content-type": "application/json"}


def spot(i: int, status: str = "free") -> dict[str, Any]:
    lon, lat = 126.85 + (i % 100) * 0.0005, 37.48 + (i // 100 % 100) * 0.0005
    return {"id": f"urn:ngsi-ld:{TYPE}:s{i}", "type": TYPE,
            "status": {"type": "Property", "value": status},
            "occupancy": {"type": "Property", "value": i % 2, "observedAt": "2026-01-01T00:00:00Z"},
            "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}}}


def create(server: c.Server, count: int) -> None:
    for start in range(0, count, 1000):
        server.send("POST", "/ngsi-ld/v1/entityOperations/upsert", [spot(i) for i in range(start, min(count, start + 1000))])


def patch_plan(path: Path, entities: int, requests: int) -> Path:
    statuses = ("occupied", "free", "closed")
    c.write_plan(path, [("PATCH", f"/ngsi-ld/v1/entities/urn:ngsi-ld:{TYPE}:s{n % entities}/attrs/status", JSON,
                         json.dumps({"value": statuses[n % 3]}).encode()) for n in range(requests)])
    return path


def upsert_plan(path: Path, entities: int, requests: int, per_request: int) -> Path:
    c.write_plan(path, [("POST", "/ngsi-ld/v1/entityOperations/upsert", JSON,
                         json.dumps([spot((n * per_request + k) % entities, ("occupied", "free")[(n + k) % 2])
                                     for k in range(per_request)]).encode()) for n in range(requests)])
    return path


def run(port: int, plan: Path, connections: int, count: int) -> dict[str, Any]:
    return c.loadgen(["http", "--port", str(port), "--plan", str(plan), "--connections", str(connections),
                      "--count", str(count)])


def main() -> None:
    args = c.parser(__doc__ or "").parse_args()
    report = c.Report(f"NGSI-LD ({args.backend})")
    print(f"machine: {c.machine_line()}", flush=True)
    entities = 2000 if args.quick else 10_000
    patches = 10_000 if args.quick else 60_000
    per_batch = 1000
    batches = 10 if args.quick else 60
    with c.temp_dir("ucity-bench-ngsild-") as data_dir:
        patch_file = patch_plan(data_dir / "patch.jsonl", entities, patches)
        upsert_file = upsert_plan(data_dir / "upsert.jsonl", entities, min(batches, 20), per_batch)
        with c.BareServer("fastapi") as bare:
            bare_patch = run(bare.port, patch_file, 32, patches)
            bare_upsert = run(bare.port, upsert_file, 4, batches)
        with c.BareServer("asgi") as raw:
            raw_patch = run(raw.port, patch_file, 32, patches)
        env = c.settings_env(c.store_url(args, data_dir), data_dir)
        with c.Server(env) as server:
            create(server, entities)
            window = c.CpuWindow(server.pid)
            patch = run(server.port, patch_file, 32, patches)
            patch_cpu, patch_cpu_s = window.share(), c.cpu_seconds(server.pid) - window.cpu0
            window = c.CpuWindow(server.pid)
            upsert = run(server.port, upsert_file, 4, batches)
            upsert_cpu, upsert_cpu_s = window.share(), c.cpu_seconds(server.pid) - window.cpu0
            queries = query_figures(server, data_dir, entities, args.quick)
    ok = patch["statuses"].get("204", 0) / patch["elapsed_s"]
    report.add(c.Row("PATCH /entities/{id}/attrs/{attr}", ok, "req/s", bare_patch["rps"], "bare FastAPI endpoint",
                     ">= 5,000/s", ok >= 5000, f"p50 {patch['p50_ms']:.1f} ms, p99 {patch['p99_ms']:.1f} ms"))
    # CPU time per write is what a busy machine changes least (wall-clock rates move with the load).
    report.note(f"PATCH: raw ASGI app on the same uvicorn {raw_patch['rps']:,.0f} req/s "
                f"(ucity {ok / raw_patch['rps']:.0%} of it); server CPU {patch_cpu:.0%} of one core, "
                f"{patch_cpu_s / max(1, patch['requests']) * 1e6:,.0f} CPU-µs per PATCH; load generator CPU "
                f"{patch['cpu_share']:.0%} of one core; statuses {patch['statuses']}")
    rate = upsert["statuses"].get("204", 0) * per_batch / upsert["elapsed_s"]
    report.add(c.Row(f"batch upsert ({per_batch} entities/request)", rate, "entities/s",
                     bare_upsert["rps"] * per_batch, "bare endpoint, same bodies", ">= 50,000/s", rate >= 50_000,
                     f"p99 {upsert['p99_ms']:.0f} ms per request"))
    report.note(f"upsert: server CPU {upsert_cpu:.0%} of one core, "
                f"{upsert_cpu_s / max(1, upsert['requests'] * per_batch) * 1e6:,.1f} CPU-µs per entity; "
                f"load generator CPU {upsert['cpu_share']:.0%}; statuses {upsert['statuses']}")
    for name, result in queries:
        report.add(c.Row(name, result["p50_ms"], "ms p50", None, "", "", None,
                         f"p99 {result['p99_ms']:.1f} ms, {result['rps']:,.0f} req/s, statuses {result['statuses']}"))
    report.print()


def query_figures(server: c.Server, data_dir: Path, entities: int, quick: bool) -> list[tuple[str, dict[str, Any]]]:
    count = 500 if quick else 3000
    hdr = {"accept": "application/json"}
    by_q = [("GET", f"/ngsi-ld/v1/entities?type={TYPE}&q=status==%22occupied%22;occupancy==1&limit=20&offset={n % 50 * 20}",
             hdr, b"") for n in range(count)]
    near = [("GET", f"/ngsi-ld/v1/entities?type={TYPE}&georel=near;maxDistance==200&geometry=Point"
             f"&coordinates=[{126.85 + (n % 100) * 0.0005},{37.48 + (n % 97) * 0.0005}]&limit=100", hdr, b"")
            for n in range(count)]
    out = []
    for name, plan in (("query type + q (20 per page)", by_q), ("geo near-query, 200 m", near)):
        path = data_dir / "query.jsonl"
        c.write_plan(path, plan)
        out.append((f"{name} over {entities:,} entities", run(server.port, path, 4, count)))
    return out


if __name__ == "__main__":
    main()
