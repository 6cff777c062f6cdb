"""No acknowledged observation is lost or doubled when processes die (issue 7): 1 API process, 2 workers,
NATS JetStream, PostgreSQL and Mosquitto, all real, on loopback.

Under a steady load of device measures (over HTTP to the API process, and over MQTT to a shared
subscription of all three processes), one worker is killed with SIGKILL, then the API process; both
are started again (as systemd would), the load stops, and once the workers have caught up:

* every acknowledged observation (HTTP 200, or the broker's PUBACK) is in the history exactly once,
  and no observation is there twice (acknowledged or not);
* every device that sent a value over the rule's threshold has exactly one alarm of the rule, and
  no other device has one.

Each measure carries its own `TimeInstant` and a value unique to its device, so an observation is
recognisable in the history. Timeouts are short (ack_wait 3 s, leases 5 s) to keep the test quick.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.conftest import free_port
from tests.integration.test_mqtt import Broker
from tests.natsserver import NATS_SERVER, NatsServer, running_nats
from tests.pgserver import PostgresServer, SyncPg

pytestmark = [pytest.mark.integration]
if NATS_SERVER is None or (shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists()):
    pytest.skip("nats-server and mosquitto are not installed (scripts/test installs them)", allow_module_level=True)

SERVICE = {"fiware-service": "fault"}
APIKEY = "fault-key"
RULE = "fault-hot"
HTTP_DEVICES = [f"h{n}" for n in range(8)]
MQTT_DEVICES = [f"m{n}" for n in range(6)]
HOT = {"h0", "h3", "m1", "m4"}  # these send a value over the threshold now and then
ENOUGH_ACKED = 300  # acknowledged measures the test needs to prove anything
THRESHOLD = 50.0
START = datetime(2026, 5, 1, tzinfo=UTC)


class Process:
    """One ucity process (serve or worker) with its own log file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], logs: Path) -> None:
        self.name, self.args, self.env, self.log = name, args, env, logs / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "ucity.cli", *self.args], env=self.env,
                                         stdout=out, stderr=subprocess.STDOUT)

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


class Cluster:
    """The processes of the test and how to reach them."""

    def __init__(self, tmp: Path, store_url: str, nats: NatsServer, broker: Broker) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.nats = nats
        common = {**os.environ, "UCITY_STORE__URL": store_url, "UCITY_BUS__URL": nats.url,
                  "UCITY_BUS__ACK_WAIT_S": "3", "UCITY_BUS__LEASE_S": "5", "UCITY_BUS__PARTITIONS": "8",
                  "UCITY_MQTT__URL": f"mqtt://127.0.0.1:{broker.port}", "UCITY_MQTT__SHARED_GROUP": "ucity",
                  "UCITY_LOG_LEVEL": "INFO", "UCITY_ENVIRONMENT": "test"}

        def env(name: str) -> dict[str, str]:
            return {**common, "UCITY_BUS__WORKER_ID": name, "UCITY_MQTT__CLIENT_ID": f"ucity-{name}",
                    "UCITY_DATA_DIR": str(tmp / name)}

        self.api = Process("api", ["serve", "--port", str(self.port)], env("api"), tmp)
        self.workers = [Process(n, ["worker"], env(n), tmp) for n in ("w1", "w2")]

    def all(self) -> list[Process]:
        return [self.api, *self.workers]

    def wait_api(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError("the API process did not start: " + self.api.log.read_text()[-3000:])

    def leases(self) -> dict[str, str]:
        """partition -> worker, as the lease bucket has it now."""
        async def read() -> dict[str, str]:
            import nats
            from nats.js.errors import KeyNotFoundError

            nc = await nats.connect(self.nats.url)
            try:
                kv = await nc.jetstream().key_value("ucity_leases")
                try:
                    keys = await kv.keys()
                except Exception:
                    return {}
                out = {}
                for key in keys:
                    if key.startswith("partition."):
                        try:
                            entry = await kv.get(key)
                        except KeyNotFoundError:  # released between the listing and this read (a rebalance)
                            continue
                        out[key] = (entry.value or b"").decode()
                return out
            finally:
                await nc.close()

        return asyncio.run(read())

    def wait_leases(self, workers: set[str], timeout: float = 40) -> None:
        """Until the 8 partitions are leased, and by exactly these workers."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leases = self.leases()
            if len(leases) == 8 and set(leases.values()) == workers:
                return
            time.sleep(0.2)
        raise AssertionError(f"partitions not leased by {workers}: {self.leases()}")


class Load:
    """Measures at a steady pace from HTTP and MQTT devices; what was acknowledged is remembered."""

    def __init__(self, cluster: Cluster, broker_port: int) -> None:
        self.cluster = cluster
        self.broker_port = broker_port
        self.stop = threading.Event()
        self.acked: dict[str, set[int]] = {d: set() for d in [*HTTP_DEVICES, *MQTT_DEVICES]}
        self.sent: dict[str, int] = dict.fromkeys(self.acked, 0)
        self.threads = [threading.Thread(target=self._http, args=(HTTP_DEVICES[k::2],)) for k in range(2)]
        self.threads.append(threading.Thread(target=self._mqtt))

    @staticmethod
    def measure(device: str, seq: int) -> dict[str, Any]:
        hot = device in HOT and seq % 7 == 3
        value = THRESHOLD + 10 + seq if hot else seq % 40  # the value says which measure it was
        at = START + timedelta(seconds=seq)
        return {"temperature": value, "seq": seq, "TimeInstant": at.isoformat().replace("+00:00", "Z")}

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)

    def wait_acked(self, count: int, timeout: float = 120.0) -> None:
        """Keep the load on until `count` measures were acknowledged: on a loaded machine the phases above
        (fixed durations) may see fewer, and the test needs enough to prove anything, not a rate."""
        deadline = time.monotonic() + timeout
        while sum(len(s) for s in list(self.acked.values())) < count and time.monotonic() < deadline:
            time.sleep(0.1)

    def _http(self, devices: list[str]) -> None:
        with httpx.Client(base_url=self.cluster.base, timeout=5) as client:
            while not self.stop.is_set():
                for device in devices:
                    seq = self.sent[device]
                    self.sent[device] += 1
                    try:
                        response = client.post("/iot/json", params={"k": APIKEY, "i": device},
                                               json=self.measure(device, seq), headers=SERVICE)
                    except httpx.HTTPError:
                        time.sleep(0.05)  # the API process is down: this one was never acknowledged
                        continue
                    if response.status_code == 200:
                        self.acked[device].add(seq)
                time.sleep(0.01)

    def _mqtt(self) -> None:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="fault-devices")
        client.connect("127.0.0.1", self.broker_port)
        client.loop_start()
        try:
            while not self.stop.is_set():
                for device in MQTT_DEVICES:
                    seq = self.sent[device]
                    self.sent[device] += 1
                    info = client.publish(f"/{APIKEY}/{device}/attrs", json.dumps(self.measure(device, seq)), qos=1)
                    info.wait_for_publish(timeout=5)
                    if info.is_published():  # the broker's PUBACK: acknowledged to the device
                        self.acked[device].add(seq)
                time.sleep(0.02)
        finally:
            client.loop_stop()
            client.disconnect()


@pytest.fixture
def nats_server() -> Iterator[NatsServer]:
    yield from running_nats()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    server = Broker(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def provision_and_rule(base: str) -> None:
    devices = [{"device_id": d, "entity_name": f"urn:ngsi-ld:Thermometer:{d}", "entity_type": "Thermometer",
                "attributes": [{"object_id": "temperature", "name": "temperature", "type": "Number"},
                               {"object_id": "seq", "name": "seq", "type": "Number"}]}
               for d in [*HTTP_DEVICES, *MQTT_DEVICES]]
    with httpx.Client(base_url=base, timeout=10) as client:
        body = {"services": [{"apikey": APIKEY, "entity_type": "Thermometer", "autoprovision": False}]}
        assert client.post("/iot/services", json=body, headers=SERVICE).status_code == 201
        assert client.post("/iot/devices", json={"devices": devices}, headers=SERVICE).status_code == 201
        rule = {"id": RULE, "name": {"ko": "과열", "en": "Too hot"}, "kind": "safety", "category": "test",
                "entityTypes": ["Thermometer"], "persistence": {"samples": 1},
                "condition": {"type": "threshold", "attribute": "temperature", "direction": "above",
                              "edges": [{"level": "serious", "at": THRESHOLD}], "hysteresis": 1.0}}
        created = client.post("/api/v1/rules", json=rule, headers={"NGSILD-Tenant": "fault"})
        assert created.status_code == 201, created.text


def history(db: SyncPg) -> dict[str, list[int]]:
    """device -> every `seq` value in its history (a value twice: an observation recorded twice)."""
    rows = db.fetch("SELECT s.entity_id, (i.doc ->> 'value')::int FROM instances i JOIN series s ON s.sid = i.sid "
                    "WHERE s.attr LIKE '%/seq' AND s.tenant = 'fault'")
    out: dict[str, list[int]] = {}
    for entity_id, seq in rows:
        out.setdefault(entity_id.rsplit(":", 1)[1], []).append(seq)
    return out


def test_acknowledged_observations_survive_killed_workers_and_api(
        tmp_path: Path, postgres_server: PostgresServer, postgres_url: str, nats_server: NatsServer,
        broker: Broker) -> None:
    cluster = Cluster(tmp_path, postgres_url, nats_server, broker)
    db = SyncPg(postgres_url)
    try:
        cluster.api.start()
        cluster.wait_api()
        provision_and_rule(cluster.base)
        for worker in cluster.workers:
            worker.start()
        cluster.wait_leases({"w1", "w2"})
        with Load(cluster, broker.port) as load:
            time.sleep(3)
            cluster.workers[0].kill9()
            time.sleep(3)
            cluster.api.kill9()
            time.sleep(2)
            cluster.api.start()
            cluster.wait_api()
            cluster.workers[0].start()
            time.sleep(4)
            load.wait_acked(ENOUGH_ACKED + 1)
        acked = {d: set(s) for d, s in load.acked.items()}
        assert sum(len(s) for s in acked.values()) > ENOUGH_ACKED, "too little load to prove anything"
        cluster.wait_leases({"w1", "w2"})

        deadline = time.monotonic() + 60
        while True:  # the workers catch up with the streams (and the broker with its sessions)
            recorded = history(db)
            missing = {d: sorted(s - set(recorded.get(d, []))) for d, s in acked.items() if s - set(recorded.get(d, []))}
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert not missing, f"acknowledged but not in the history: { {d: s[:10] for d, s in missing.items()} }"
        doubled = {d: sorted({s for s in seqs if seqs.count(s) > 1})[:10] for d, seqs in recorded.items()
                   if len(seqs) != len(set(seqs))}
        assert not doubled, f"observations recorded twice: {doubled}"

        extra = sum(len(set(seqs) - acked.get(d, set())) for d, seqs in recorded.items())
        again = sum(int(line.split(": ")[-1].split()[0]) for w in cluster.workers for line in
                    w.log.read_text(errors="replace").splitlines() if "delivered again" in line)
        print(f"\nacknowledged {sum(len(s) for s in acked.values())} observations, recorded "
              f"{sum(len(s) for s in recorded.values())} (of which {extra} never acknowledged: in flight at a kill); "
              f"{again} message(s) delivered again to a worker")
        alarms = dict(db.fetch("SELECT entity_id, count(*) FROM alarms WHERE tenant = 'fault' AND rule_id = $1 "
                               "AND derived = 0 GROUP BY entity_id", RULE))
        assert alarms == {f"urn:ngsi-ld:Thermometer:{d}": 1 for d in HOT}
    finally:
        db.close()
        for process in cluster.all():
            process.stop()
        logs = {p.name: p.log.read_text(errors="replace") for p in cluster.all() if p.log.exists()}
        if os.environ.get("UCITY_FAULT_LOGS"):
            for name, text in logs.items():
                print(f"--- {name}\n" + "\n".join(line for line in text.splitlines() if "cluster" in line))
        for name, text in logs.items():
            assert "Traceback" not in text or "KeyboardInterrupt" in text, f"{name} failed:\n{text[-4000:]}"
