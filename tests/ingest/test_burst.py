"""A burst of measures far beyond what the store commits meanwhile is back-pressured (issue 7): the measures
that do not fit are answered 503 with Retry-After, never 500, and everything answered 200 is committed.

A real server (uvicorn on loopback) with a small `store.max_queued`, and 400 measures sent at once, each on
a connection of its own, 200 at a time: the queue of writes waiting for a commit would otherwise grow with
the burst.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer
from ucity.core.config import Settings, load_settings

SERVICE = {"fiware-service": "burst"}
DEVICES = [f"d{n}" for n in range(20)]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # group_commit_ms 20: each commit waits for company, so a burst piles up behind it.
    return load_settings(environment="test", data_dir=str(tmp_path / "data"),
                         store={"group_commit_ms": 20.0, "max_queued": 10})


async def burst(base: str) -> list[httpx.Response]:
    # One connection per measure (as devices send them), 200 open at once. Not kept alive: uvicorn closes a
    # connection idle for 5 s, and on a loaded machine the client may come back to one just then, its
    # next request then failing with httpx.ReadError (a race of any HTTP/1.1 client, not the server's fault).
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
        async def send(n: int) -> httpx.Response:
            device = DEVICES[n % len(DEVICES)]
            at = f"2026-04-01T00:{n // 60:02d}:{n % 60:02d}Z"
            return await client.post("/iot/json", params={"k": "burst-key", "i": device},
                                      json={"t": n, "TimeInstant": at}, headers=SERVICE)

        return list(await asyncio.gather(*(send(n) for n in range(400))))


def test_a_burst_is_answered_503_with_retry_after_and_what_is_acknowledged_is_committed(
        live_server: LiveServer) -> None:
    devices = [{"device_id": d, "entity_name": f"urn:ngsi-ld:Thermometer:{d}", "entity_type": "Thermometer",
                "attributes": [{"object_id": "t", "name": "seq", "type": "Number"}]} for d in DEVICES]
    with httpx.Client(base_url=live_server.url, timeout=30) as client:
        group = {"services": [{"apikey": "burst-key", "entity_type": "Thermometer"}]}
        assert client.post("/iot/services", json=group, headers=SERVICE).status_code == 201
        assert client.post("/iot/devices", json={"devices": devices}, headers=SERVICE).status_code == 201

    responses = asyncio.run(burst(live_server.url))
    statuses = sorted({r.status_code for r in responses})
    refused = [r for r in responses if r.status_code == 503]
    assert set(statuses) <= {200, 503}, statuses
    assert refused, "the burst never hit the limit: nothing was back-pressured"
    assert all(r.headers.get("Retry-After") == "1" for r in refused)
    assert all(r.json()["type"].endswith("ServiceUnavailable") for r in refused)
    accepted = {r.request.url.params["i"]: 0 for r in responses}
    for r in responses:
        if r.status_code == 200:
            accepted[r.request.url.params["i"]] += 1

    with httpx.Client(base_url=live_server.url, timeout=30) as client:
        assert client.get("/health").status_code == 200
        for device, count in accepted.items():
            temporal = client.get(f"/ngsi-ld/v1/temporal/entities/urn:ngsi-ld:Thermometer:{device}",
                                  params={"attrs": "seq", "lastN": "1000"}, headers={"NGSILD-Tenant": "burst"})
            instances = temporal.json().get("seq", []) if temporal.status_code == 200 else []
            instances = instances if isinstance(instances, list) else [instances]
            assert len(instances) == count, (device, count, temporal.text[:300])
