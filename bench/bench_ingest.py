"""Ingest end to end: decode -> durable store (commit) -> bus -> rules, three ways.

1. In-process batches: `IngestService.ingest` called with batches of device payloads, several
   batches in flight (as concurrent HTTP requests or MQTT batches would be); the clock stops
   when the commit publisher has handed every change to the rules engine.
   Baseline: the very rows ucity wrote (history instances and the entity documents), read back
   and replayed with raw `sqlite3.executemany` in transactions of the same size.
2. `POST /iot/json` over HTTP: each request one device's buffered measures (a JSON array),
   32 keep-alive connections from the load generator process.
3. MQTT through a real Mosquitto: QoS 1 publishes to `/<apikey>/<device>/attrs`, one measure
   each. Baseline: Mosquitto relaying the same messages to its own C subscriber (mosquitto_sub).

An observation is one attribute value; every measure here carries four.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import _common as c
import fixtures as fx
import orjson

TARGET_OBS = 50_000
TARGET_MQTT = 20_000


# -- 1. in process -----------------------------------------------------------------------------------
async def in_process(args: Any, data_dir: Path, report: c.Report) -> Path:
    from ucity.app import Ucity
    from ucity.ingest.schema import parse_device, parse_group
    from ucity.ingest.service import Received
    from ucity.rules.model import rule_from_json

    url = c.store_url(args, data_dir)
    settings = fx.in_process_settings(data_dir, url)
    devices = 1000 if args.quick else 5000
    batch, inflight = 500, 4
    total_measures = 40_000 if args.quick else 200_000
    app = Ucity(settings)
    await app.start()
    previous = settle_gc()  # as `ucity serve` does once started
    try:
        tenant = settings.ngsild.default_tenant
        group = parse_group(fx.service_group(), tenant, "/")
        await app.ingest.add_groups([group])
        for start in range(0, devices, 1000):
            await app.ingest.add_devices([parse_device(fx.device(i), tenant, "/", group)
                                          for i in range(start, min(devices, start + 1000))])
        await app.rules.create(tenant, rule_from_json(fx.RULE))
        # Payloads arrive as bytes, as from a socket: parsing them is part of the measured work.
        payloads = [orjson.dumps(fx.measure(n)) for n in range(total_measures)]
        await app.publisher.drain()
        queue = list(reversed(range(0, total_measures, batch)))

        async def worker() -> None:
            while queue:
                start = queue.pop()
                await app.ingest.ingest([Received(app.ingest.resolve(fx.APIKEY, f"dev{n % devices}"),
                                                  orjson.loads(payloads[n]), "http")
                                         for n in range(start, start + batch)])

        window = c.CpuWindow(__import__("os").getpid())
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(inflight)))
        await app.publisher.drain()
        elapsed = time.perf_counter() - t0
        share = window.share()
        obs = total_measures * fx.OBS_PER_MEASURE
        stats = app.rules.stats["observations"]
        report.note(f"in-process: {total_measures:,} measures of {devices:,} devices in batches of {batch}, "
                    f"{inflight} in flight; rules engine evaluated {stats:,} observations; CPU {share:.0%} of one core, "
                    f"{share * elapsed / obs * 1e6:.1f} CPU-us per observation")
    finally:
        if previous is not None:
            from ucity.core import gc_tuning

            gc_tuning.unsettle(previous)
        await app.stop()
    rate = obs / elapsed
    per_commit = batch * inflight // 2
    if args.backend == "sqlite":
        raw, raw_name = raw_replay(Path(url[len("sqlite:///"):]), data_dir / "raw.db", per_commit), "raw executemany"
    else:
        raw, raw_name = await raw_copy(url, c.store_url(args, data_dir), per_commit), "raw COPY"
    report.add(c.Row("ingest in-process batches", rate, "obs/s", raw, f"{raw_name} of the same rows",
                     f">= {TARGET_OBS:,} obs/s and >= 50 % of raw", rate >= TARGET_OBS and (raw is None or rate >= raw / 2),
                     f"{total_measures / elapsed:,.0f} measures/s"))
    return data_dir


def settle_gc() -> tuple[int, int, int] | None:
    """`ucity serve`'s collector settings (None on a ucity version without them, for before/after runs)."""
    try:
        from ucity.core import gc_tuning
    except ImportError:
        return None
    return gc_tuning.settle()


def raw_replay(source: Path, target: Path, per_commit: int) -> float:
    """Observations/s of raw executemany: the history rows and entity documents ucity wrote, replayed
    into the same schema with the store's own statements and connection settings, `per_commit`
    measures (their history rows and entity updates) per commit."""
    from ucity.store import sqlite as store

    src = sqlite3.connect(source)
    tables = {r[0] for r in src.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "instance_docs" in tables:  # since migration 6: a document row and a key row per instance
        docs = src.execute("SELECT rid, sid, ts, doc FROM instance_docs ORDER BY rid").fetchall()
        keys = {r[5]: r for r in src.execute("SELECT sid, ts, seq, vnum, created, rid FROM instance_keys")}
        batches = [(store.INSERT_DOCS, docs), (store.INSERT_KEYS, [keys[d[0]] for d in docs])]
        save_rid = [d[0] for d in docs]
    else:  # the single `instances` table of earlier versions (for before/after runs)
        columns = [r[1] for r in src.execute("PRAGMA table_info(instances)")]
        wanted = [col for col in ("sid", "ts", "created", "instance_id", "vnum", "doc", "observed") if col in columns]
        insert = getattr(store, "INSERT_INSTANCES", None) or (  # the statement ucity uses
            f"INSERT INTO instances ({', '.join(wanted)}) VALUES ({', '.join('?' * len(wanted))})")
        batches = [(insert, src.execute(f"SELECT {', '.join(wanted)} FROM instances ORDER BY rowid").fetchall())]
        save_rid = []
    entities = src.execute("SELECT eid, tenant, id, doc, created_at, modified_at FROM entities").fetchall()
    src.close()
    conn = store.open_connection(str(target))
    store.migrate(conn)
    conn.executemany("INSERT INTO entities (eid, tenant, id, doc, created_at, modified_at) VALUES (?,?,?,?,?,?)", entities)
    updates = [(doc, modified, eid) for eid, _, _, doc, _, modified in entities]
    rows_per_commit = per_commit * fx.OBS_PER_MEASURE
    count = len(batches[0][1])
    t0 = time.perf_counter()
    for k, start in enumerate(range(0, count, rows_per_commit)):
        conn.execute("BEGIN IMMEDIATE")  # in the order of the store's flush: documents, then history
        part = [updates[(k * per_commit + j) % len(updates)] for j in range(per_commit)]
        conn.executemany("UPDATE entities SET doc=?, modified_at=? WHERE eid=?", part)
        for statement, rows in batches:
            conn.executemany(statement, rows[start:start + rows_per_commit])
        if save_rid:  # ucity keeps its highest instance rid with each commit
            conn.execute(store.SAVE_RID, (save_rid[min(start + rows_per_commit, count) - 1],))
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    conn.close()
    return count / elapsed


async def raw_copy(source: str, target: str, per_commit: int) -> float:
    """PostgreSQL: the history rows and entity documents ucity wrote, replayed with COPY (history) and
    executemany (documents) into a fresh migrated database, `per_commit` measures per transaction."""
    import asyncpg

    from ucity.store.postgres import migrate_dsn

    await migrate_dsn(target)
    src, dst = await asyncpg.connect(source), await asyncpg.connect(target)
    try:
        series = await src.fetch("SELECT sid, tenant, entity_id, attr, dataset_id FROM series")
        entities = await src.fetch("SELECT eid, tenant, id, types, doc::text, created_at, modified_at FROM entities")
        rows = [tuple(r) for r in await src.fetch(
            "SELECT sid, ts, created, instance_id, observed, vnum, doc FROM instances ORDER BY iid")]
        await dst.copy_records_to_table("series", records=[tuple(r) for r in series],
                                        columns=["sid", "tenant", "entity_id", "attr", "dataset_id"])
        await dst.executemany("INSERT INTO entities (eid, tenant, id, types, doc, created_at, modified_at) "
                              "VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7)", [tuple(e) for e in entities])
        docs = [(e[4], e[6], e[0]) for e in entities]
        rows_per_commit = per_commit * fx.OBS_PER_MEASURE
        t0 = time.perf_counter()
        for k, start in enumerate(range(0, len(rows), rows_per_commit)):
            async with dst.transaction():
                await dst.copy_records_to_table("instances", records=rows[start:start + rows_per_commit],
                                                columns=["sid", "ts", "created", "instance_id", "observed", "vnum", "doc"])
                part = [docs[(k * per_commit + j) % len(docs)] for j in range(per_commit)]
                await dst.executemany("UPDATE entities SET doc = $1::jsonb, modified_at = $2 WHERE eid = $3", part)
        return len(rows) / (time.perf_counter() - t0)
    finally:
        await src.close()
        await dst.close()


# -- 2. HTTP -------------------------------------------------------------------------------------------
def provision_http(server: c.Server, devices: int, apikey: str = fx.APIKEY) -> None:
    server.send("POST", "/iot/services", {"services": [fx.service_group(apikey)]})
    for start in range(0, devices, 1000):
        server.send("POST", "/iot/devices", {"devices": [fx.device(i, apikey) for i in range(start, min(devices, start + 1000))]})


def create_rule(server: c.Server) -> None:
    server.send("POST", "/api/v1/rules", fx.RULE)


def over_http(args: Any, report: c.Report) -> None:
    devices = 1000 if args.quick else 5000
    per_request = 10
    requests = 2000 if args.quick else 12_000
    with c.temp_dir("ucity-bench-http-") as data_dir:
        env = c.settings_env(c.store_url(args, data_dir), data_dir)
        with c.Server(env) as server:
            provision_http(server, devices)
            create_rule(server)
            plan = data_dir / "plan.jsonl"
            c.write_plan(plan, [
                ("POST", f"/iot/json?k={fx.APIKEY}&i=dev{n % devices}", {"content-type": "application/json"},
                 json.dumps([fx.measure(n * per_request + j) for j in range(per_request)]).encode())
                for n in range(requests)])
            window = c.CpuWindow(server.pid)
            result = c.loadgen(["http", "--port", str(server.port), "--plan", str(plan), "--connections", "32",
                                "--count", str(requests)])
            share = window.share()
            cpu_s = c.cpu_seconds(server.pid) - window.cpu0
    ok = result["statuses"].get("200", 0)
    obs = ok * per_request * fx.OBS_PER_MEASURE / result["elapsed_s"]
    report.add(c.Row("ingest POST /iot/json (10 measures/request)", obs, "obs/s", None, "", f">= {TARGET_OBS:,} obs/s",
                     obs >= TARGET_OBS, f"{result['rps']:,.0f} requests/s, p99 {result['p99_ms']:.1f} ms"))
    report.note(f"HTTP ingest: statuses {result['statuses']}; server CPU {share:.0%} of one core, "
                f"{cpu_s / max(1, ok * per_request * fx.OBS_PER_MEASURE) * 1e6:.1f} CPU-us per observation; "
                f"load generator CPU {result['cpu_share']:.0%} of one core")


# -- 3. MQTT -------------------------------------------------------------------------------------------
def mosquitto_conf(path: Path, port: int) -> Path:
    # ucity acknowledges a QoS 1 message only after its commit: the broker must allow enough messages
    # in flight to one client to cover a commit round trip (the default, 20, caps throughput).
    path.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                    "max_inflight_messages 2000\nmax_queued_messages 0\n")
    return path


class Mosquitto:
    def __init__(self, workdir: Path) -> None:
        self.port = c.free_port()
        self.conf = mosquitto_conf(workdir / "mosquitto.conf", self.port)
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Mosquitto:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen([binary, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait()


def mqtt_messages(path: Path, count: int, devices: int, apikey: str) -> Path:
    with open(path, "w") as fh:
        for n in range(count):
            fh.write(json.dumps([f"/{apikey}/dev{n % devices}/attrs", json.dumps(fx.measure(n))]) + "\n")
    return path


def relay_rate(broker: Mosquitto, messages: Path, count: int) -> tuple[float, float]:
    """Mosquitto's own relay rate: our publisher -> broker -> its C subscriber, QoS 1."""
    sub = subprocess.Popen(["mosquitto_sub", "-p", str(broker.port), "-h", "127.0.0.1", "-q", "1", "-t", "/+/+/attrs",
                            "-C", str(count)], stdout=subprocess.DEVNULL)
    time.sleep(0.5)
    proc = subprocess.Popen([sys.executable, str(c.BENCH_DIR / "loadgen.py"), "mqtt", "--port", str(broker.port),
                             "--messages", str(messages), "--client-id", "relay-pub"], stdout=subprocess.PIPE)
    sub.wait(timeout=600)
    end = time.time()
    out, _ = proc.communicate(timeout=600)
    result = json.loads(out.decode().strip().splitlines()[-1])
    return count / (end - result["start"]), result["cpu_share"]


def over_mqtt(args: Any, report: c.Report) -> None:
    if not shutil.which("mosquitto_sub") or not (shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists()):
        report.note("MQTT skipped: mosquitto and mosquitto-clients are not installed")
        return
    devices = 1000 if args.quick else 5000
    count = 20_000 if args.quick else 100_000
    with c.temp_dir("ucity-bench-mqtt-") as data_dir, Mosquitto(data_dir) as broker:
        messages = mqtt_messages(data_dir / "messages.jsonl", count, devices, fx.APIKEY)
        relay, relay_cpu = relay_rate(broker, messages, count)
        env = c.settings_env(c.store_url(args, data_dir), data_dir,
                             {"UCITY_MQTT__URL": f"mqtt://127.0.0.1:{broker.port}", "UCITY_MQTT__CLIENT_ID": "ucity-bench"})
        with c.Server(env) as server:
            provision_http(server, devices)
            create_rule(server)
            deadline = time.monotonic() + 30
            while not server.get("/health")["components"].get("mqtt", {}).get("connected"):
                if time.monotonic() > deadline:
                    raise RuntimeError("ucity did not connect to the broker")
                time.sleep(0.2)
            base = server.get("/health")["components"]["mqtt"]["processed"]
            window = c.CpuWindow(server.pid)
            proc = subprocess.Popen([sys.executable, str(c.BENCH_DIR / "loadgen.py"), "mqtt", "--port", str(broker.port),
                                     "--messages", str(messages)], stdout=subprocess.PIPE)
            while server.get("/health")["components"]["mqtt"]["processed"] - base < count:
                time.sleep(0.05)
                if time.monotonic() > deadline + 900:
                    raise RuntimeError("MQTT messages were not all processed")
            end = time.time()
            share = window.share()
            cpu_s = c.cpu_seconds(server.pid) - window.cpu0
            mqtt_health = server.get("/health")["components"]["mqtt"]
            out, _ = proc.communicate(timeout=600)
            result = json.loads(out.decode().strip().splitlines()[-1])
            accepted = server.get("/api/v1/ingest/stats")
    rate = count / (end - result["start"])
    report.add(c.Row("ingest MQTT QoS 1 (1 measure/message)", rate, "msg/s", relay, "Mosquitto relay to mosquitto_sub",
                     f">= {TARGET_MQTT:,} msg/s", rate >= TARGET_MQTT, f"{rate * fx.OBS_PER_MEASURE:,.0f} obs/s"))
    report.note(f"MQTT: server CPU {share:.0%} of one core, {cpu_s / count * 1e6:.1f} CPU-us per message "
                f"({cpu_s / count / fx.OBS_PER_MEASURE * 1e6:.1f} per observation), "
                f"{mqtt_health.get('batches', '?')} batches; publisher CPU {result['cpu_share']:.0%} "
                f"(relay run {relay_cpu:.0%}); ingest stats totals {json.dumps(accepted.get('totals', accepted))[:200]}")


def main() -> None:
    p = c.parser(__doc__ or "")
    p.add_argument("--only", choices=("inprocess", "http", "mqtt"), help="run one part only")
    args = p.parse_args()
    report = c.Report(f"Ingest end to end ({args.backend})")
    print(f"machine: {c.machine_line()}", flush=True)
    if args.only in (None, "inprocess"):
        with c.temp_dir("ucity-bench-ingest-") as data_dir:
            asyncio.run(in_process(args, data_dir, report))
    if args.only in (None, "http"):
        over_http(args, report)
    if args.only in (None, "mqtt"):
        over_mqtt(args, report)
    report.print()


if __name__ == "__main__":
    main()
