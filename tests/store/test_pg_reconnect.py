"""QA8 F2: after PostgreSQL restarts, the first write of a running ucity succeeds (it answered 503 "cannot call
Connection.is_closed(): connection has been released back to the pool" and marked the store unreachable, once
`/health` was already green). On a throwaway cluster of this module's own (`Cluster` of
test_postgres_unreachable), restarted with a "fast" shutdown as `pg_ctl -m fast restart` does."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from tests.store.test_postgres_unreachable import Cluster
from ucity.core.config import load_settings
from ucity.server import create_app

ENTITIES = "/ngsi-ld/v1/entities"


def test_the_first_write_after_a_database_restart_succeeds(
        running: Cluster, tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UCITY_STORE__URL", running.url)
    settings = load_settings(environment="test", data_dir=str(tmp_path), store={"group_commit_ms": 1.0})
    with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as client:
        # the writer keeps its connection from batch to batch: a first write makes it hold one
        assert client.post(ENTITIES, json={"id": "urn:ngsi-ld:Thing:before", "type": "Thing"}).status_code == 201
        running.stop()
        running.start()
        health = client.get("/health")
        assert health.status_code == 200, health.text
        for n in (1, 2):
            response = client.post(ENTITIES, json={"id": f"urn:ngsi-ld:Thing:after{n}", "type": "Thing"})
            assert response.status_code == 201, (n, response.text)
        again = client.get("/health")
        assert again.status_code == 200 and again.json()["components"]["store"]["ok"] is True, again.text
        assert client.get(f"{ENTITIES}/urn:ngsi-ld:Thing:after1").status_code == 200
