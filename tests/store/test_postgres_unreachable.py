"""PostgreSQL stopped under a running ucity (QA2 finding 4): reads answer 503 ServiceUnavailable (with Retry-After),
not 500, and `/health` says the store is not ready, until the database is back; then both recover without a
restart of ucity. On a throwaway cluster of this module's own, stopped ("fast" shutdown, as `pg_ctl -m fast`)
and started again; the session's shared server is never touched."""

from __future__ import annotations

import signal
import subprocess

import pytest
from starlette.testclient import TestClient

from tests.pgserver import PostgresServer, postgis_available, postgres_bin_dir
from ucity.core.config import load_settings
from ucity.core.errors import Unavailable
from ucity.server import create_app
from ucity.store.postgres import PostgresStore

ENTITIES = "/ngsi-ld/v1/entities"
E1 = "urn:ngsi-ld:Thing:down1"


class Cluster:
    """A PostgreSQL server that can be stopped and started again over the same data."""

    def __init__(self) -> None:
        bin_dir = postgres_bin_dir()
        if bin_dir is None or not postgis_available(bin_dir):
            pytest.skip("PostgreSQL + PostGIS are not installed (scripts/test installs them)")
        self.server = PostgresServer(bin_dir)
        self.server.start()
        self.url = self.server.dsn(self.server.create_database())
        self.server.release_helpers()  # its clone-ahead thread and admin connection would break on the stop

    def stop(self) -> None:
        proc = self.server.proc
        assert proc is not None
        proc.send_signal(signal.SIGINT)  # fast shutdown: sessions ended (57P01), new connections refused
        proc.wait(timeout=30)

    def start(self) -> None:
        s = self.server
        with open(s.log, "ab") as log:
            s.proc = subprocess.Popen(
                [str(s.bin_dir / "postgres"), "-D", str(s.data), "-p", str(s.port), "-k", str(s.root),
                 "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
                stdout=log, stderr=subprocess.STDOUT, **s._as_user())
        s._wait_ready()

    def close(self) -> None:
        if self.server.proc is not None and self.server.proc.poll() is not None:
            self.server.proc = None  # stopped by a failed test: nothing to stop
        self.server.stop()


async def test_reads_are_unavailable_and_health_says_so_until_the_database_is_back(running: Cluster) -> None:
    store = PostgresStore(running.url)
    await store.start()
    try:
        assert await store.get_entity("t", E1) is None
        await store.probe()
        assert store.health()["ok"] is True
        running.stop()
        with pytest.raises(Unavailable):
            await store.get_entity("t", E1)
        health = store.health()
        assert health["ok"] is False and "unreachable" in health
        await store.probe()  # still down: still not ok
        assert store.health()["ok"] is False
        running.start()
        await store.probe()
        assert store.health()["ok"] is True and "unreachable" not in store.health()
        assert await store.get_entity("t", E1) is None
    finally:
        await store.stop()


def test_http_reads_answer_503_and_health_is_not_ready_while_the_database_is_down(
        running: Cluster, tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UCITY_STORE__URL", running.url)
    settings = load_settings(environment="test", data_dir=str(tmp_path), store={"group_commit_ms": 1.0})
    with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as client:
        assert client.post(ENTITIES, json={"id": E1, "type": "Thing"}).status_code == 201
        up = client.get("/health")
        assert up.status_code == 200 and up.json()["components"]["store"]["ok"] is True
        running.stop()
        # nothing read or written since the stop: /health's own probe finds it
        down = client.get("/health")
        assert down.status_code == 503, down.text
        assert down.json()["ready"] is False and down.json()["components"]["store"]["ok"] is False
        for path in (f"{ENTITIES}?type=Thing&limit=1", f"{ENTITIES}/{E1}", "/ngsi-ld/v1/types",
                     f"/ngsi-ld/v1/temporal/entities/{E1}"):
            response = client.get(path)
            assert response.status_code == 503, (path, response.text)
            assert response.json()["type"] == "https://uri.etsi.org/ngsi-ld/errors/ServiceUnavailable"
            assert response.headers["retry-after"] == "1"
        running.start()
        assert client.get(f"{ENTITIES}/{E1}").status_code == 200
        again = client.get("/health")
        assert again.status_code == 200 and again.json()["components"]["store"]["ok"] is True
