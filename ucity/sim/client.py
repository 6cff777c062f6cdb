"""How the simulator talks to a running ucity: only through its public APIs.

- static entities: NGSI-LD `POST /ngsi-ld/v1/entityOperations/upsert`, in batches bounded by size;
- devices: FIWARE IoT Agent provisioning, `POST /iot/services` and `POST /iot/devices`, in batches;
- measures: `POST /iot/json?k=<apikey>&i=<device_id>` (HTTP) or MQTT `/<apikey>/<device_id>/attrs`,
  each request carrying all pending measures of one device as a JSON array.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar
from urllib.parse import urlparse

import httpx
import orjson

from ucity.sim import iota
from ucity.sim.iota import IotaConfig

log = logging.getLogger(__name__)
NGSI = "/ngsi-ld/v1"
CAMERA_URL_BATCH = 1000  # cameras per PATCH /api/v1/cameras (the server's limit, ucity/ops/cameras.py BULK_MAX)
Progress = Callable[[int], None]
T = TypeVar("T")


async def gather_all(*jobs: Awaitable[T]) -> list[T]:
    """`asyncio.gather`, but the first failure (or a cancellation) cancels the other jobs and waits for them
    before it is raised: no request outlives the call, nothing runs on after the client is closed, and no task
    dies later with an exception nobody retrieves (QA3 F10: an operator token's 403 on the devices left the
    static entities' upserts running; closing the client made them fail with a ReadError traceback)."""
    tasks = [asyncio.ensure_future(job) for job in jobs]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


class SimulatorError(Exception):
    """The server refused the simulated city in a way the simulator cannot work around."""


def check_access(resp: httpx.Response, what: str) -> None:
    """A SimulatorError that says what to do when the server wants a token (401) or a better one (403), in
    Korean and English, in one line (the ProblemDetails' detail and permission, not the raw body)."""
    if resp.status_code == 401:
        raise SimulatorError(f"{what}: 서버가 접근 토큰을 요구합니다(server.require_auth). --token 또는 UCITY_TOKEN에 관리자 "
                             "토큰을 주십시오 / the server asks for a bearer token (server.require_auth): pass --token "
                             "or set UCITY_TOKEN (an admin token)")
    if resp.status_code == 403:
        try:
            problem = resp.json()
        except ValueError:
            problem = None
        if not isinstance(problem, dict):
            problem = {}
        detail = " ".join(str(problem.get("detail") or resp.text[:300]).split())  # one line, whatever was sent
        hint = ""
        if problem.get("permission") == "config:admin":
            hint = (" — 장치 프로비저닝에는 관리자 토큰이 필요합니다(--static-only는 운영자 토큰으로 충분) / provisioning "
                    "devices needs an admin token (--static-only works with an operator's)")
        raise SimulatorError(f"{what}: 이 토큰으로는 할 수 없습니다 / the token may not do this: {detail}{hint}")


@dataclass
class SendStats:
    """What has been sent, for the progress display and the final report."""

    measures: int = 0
    requests: int = 0
    failed_requests: int = 0
    failed_measures: int = 0
    by_type: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    last_error: str = ""

    def failure(self, reason: str, measures: int) -> None:
        self.failed_requests += 1
        self.failed_measures += measures
        self.statuses[reason] += 1
        self.last_error = reason


def chunks_by_size(items: Iterable[dict[str, Any]], max_bytes: int, max_items: int) -> Iterator[list[dict[str, Any]]]:
    """Consecutive batches whose JSON stays under `max_bytes` (the server's body limit)."""
    batch: list[dict[str, Any]] = []
    size = 2
    for item in items:
        item_size = len(orjson.dumps(item)) + 1
        if batch and (size + item_size > max_bytes or len(batch) >= max_items):
            yield batch
            batch, size = [], 2
        batch.append(item)
        size += item_size
    if batch:
        yield batch


class CityApi:
    """Provisioning over HTTP: NGSI-LD batch upsert and the IoT Agent provisioning API."""

    def __init__(self, client: httpx.AsyncClient, cfg: IotaConfig, tenant: str | None = None,
                 max_bytes: int = 1_000_000, max_items: int = 1000, concurrency: int = 4) -> None:
        self.client = client
        self.cfg = cfg
        self.tenant = tenant
        self.max_bytes = max_bytes
        self.max_items = max_items
        self.slots = asyncio.Semaphore(concurrency)
        self._existing: set[str] | None = None

    def ngsi_headers(self) -> dict[str, str]:
        return {"NGSILD-Tenant": self.tenant} if self.tenant else {}

    async def upsert_entities(self, entities: list[dict[str, Any]], progress: Progress | None = None) -> int:
        """Upsert all entities (replacing earlier versions); returns how many succeeded."""
        batches = list(chunks_by_size(entities, self.max_bytes, self.max_items))
        done = await gather_all(*(self._upsert(b, progress) for b in batches))
        return sum(done)

    async def _upsert(self, batch: list[dict[str, Any]], progress: Progress | None) -> int:
        async with self.slots:
            resp = await self.client.post(f"{NGSI}/entityOperations/upsert", content=orjson.dumps(batch),
                                          headers={"Content-Type": "application/json", **self.ngsi_headers()})
        check_access(resp, "NGSI-LD upsert")
        if resp.status_code == 207:
            body = resp.json()
            log.warning("upsert: %d errors, first: %s", len(body.get("errors", [])), body.get("errors", [{}])[0])
            ok = len(body.get("success", []))
        elif resp.status_code in (200, 201, 204):
            ok = len(batch)
        else:
            raise SimulatorError(f"NGSI-LD upsert failed: {resp.status_code} {resp.text[:300]}")
        if progress:
            progress(len(batch))
        return ok

    async def set_camera_urls(self, urls: list[tuple[str, str]], progress: Progress | None = None) -> int:
        """Register the cameras' stream URLs through the operations camera API, after their Camera entities were
        upserted (URLs are never NGSI-LD data): `PATCH /api/v1/cameras` with up to `CAMERA_URL_BATCH` cameras a
        request (5 requests for the city's 4,100 rather than 4,100), or, on a server without that route (404/405),
        `PATCH /api/v1/cameras/{id}` one by one. Returns how many cameras have their URL (set now or already)."""
        batches = [urls[start:start + CAMERA_URL_BATCH] for start in range(0, len(urls), CAMERA_URL_BATCH)]
        done = await gather_all(*(self._camera_urls(batch, progress) for batch in batches))
        if any(d is None for d in done):
            return await self._camera_urls_one_by_one(urls, progress)
        return sum(d or 0 for d in done)

    async def _camera_urls(self, batch: list[tuple[str, str]], progress: Progress | None) -> int | None:
        body = {"cameras": [{"id": camera_id, "streamURL": url} for camera_id, url in batch]}
        async with self.slots:
            resp = await self.client.patch("/api/v1/cameras", content=orjson.dumps(body),
                                           headers={"Content-Type": "application/json", **self.ngsi_headers()})
        check_access(resp, "camera stream URLs")
        if resp.status_code in (404, 405):  # a server before the bulk route
            return None
        if resp.status_code not in (200, 207):
            raise SimulatorError(f"camera stream URLs: {resp.status_code} {resp.text[:300]}")
        results = resp.json().get("results", [])
        failed = [r for r in results if r.get("status") == "failed"]
        if failed:
            first = failed[0]
            log.warning("%d camera stream URLs not set, first: %s %s", len(failed), first.get("id"),
                        "; ".join(str(r.get("en")) for r in first.get("reasons", [])))
        if progress:
            progress(len(batch))
        return len(results) - len(failed)

    async def _camera_urls_one_by_one(self, urls: list[tuple[str, str]], progress: Progress | None) -> int:
        async def one(camera_id: str, url: str) -> int:
            async with self.slots:
                resp = await self.client.patch(f"/api/v1/cameras/{camera_id}", json={"streamURL": url},
                                               headers=self.ngsi_headers())
            check_access(resp, "camera stream URLs")
            if progress:
                progress(1)
            if resp.status_code == 200:
                return 1
            log.warning("camera %s: its stream URL was not set: %s %s", camera_id, resp.status_code, resp.text[:200])
            return 0

        return sum(await gather_all(*(one(camera_id, url) for camera_id, url in urls)))

    async def create_groups(self, groups: list[dict[str, Any]]) -> int:
        """Create the service groups; one that exists already (409) is fine."""
        created = 0
        for group in groups:
            resp = await self.client.post("/iot/services", json={"services": [group]}, headers=iota.headers(self.cfg))
            check_access(resp, "service group provisioning")
            if resp.status_code in (404, 405):
                raise SimulatorError("the server has no IoT Agent provisioning API at /iot/services")
            if resp.status_code not in (200, 201, 204, 409):
                raise SimulatorError(f"service group {group['apikey']}: {resp.status_code} {resp.text[:300]}")
            created += resp.status_code != 409
        return created

    async def create_devices(self, devices: list[dict[str, Any]], progress: Progress | None = None) -> int:
        """Provision devices in batches; devices that exist already are kept. Returns how many are new."""
        batches = list(chunks_by_size(devices, self.max_bytes, self.max_items))
        done = await gather_all(*(self._devices(b, progress) for b in batches))
        return sum(done)

    async def _devices(self, batch: list[dict[str, Any]], progress: Progress | None) -> int:
        async with self.slots:
            created = await self._post_devices(batch)
        if progress:
            progress(len(batch))
        return created

    async def _post_devices(self, batch: list[dict[str, Any]]) -> int:
        resp = await self.client.post("/iot/devices", content=orjson.dumps({"devices": batch}),
                                      headers={"Content-Type": "application/json", **iota.headers(self.cfg)})
        check_access(resp, "device provisioning")
        if resp.status_code in (200, 201, 204):
            return len(batch)
        if resp.status_code != 409:
            raise SimulatorError(f"device provisioning failed: {resp.status_code} {resp.text[:300]}")
        # A duplicate fails the whole request (IoT Agent semantics): post only the missing ones.
        existing = await self.existing_devices()
        missing = [d for d in batch if d["device_id"] not in existing]
        if len(missing) == len(batch):
            return await self._split(batch)
        return await self._post_devices(missing) if missing else 0

    async def _split(self, batch: list[dict[str, Any]]) -> int:
        if len(batch) == 1:
            return 0  # exists (perhaps under another apikey): keep it as it is
        half = len(batch) // 2
        return await self._post_devices(batch[:half]) + await self._post_devices(batch[half:])

    async def existing_devices(self) -> set[str]:
        """All provisioned device ids of the service (paged `GET /iot/devices`), fetched once."""
        if self._existing is None:
            found: set[str] = set()
            offset = 0
            while True:
                resp = await self.client.get("/iot/devices", params={"limit": 1000, "offset": offset},
                                             headers=iota.headers(self.cfg))
                page = resp.json().get("devices", []) if resp.status_code == 200 else []
                found.update(d["device_id"] for d in page)
                if len(page) < 1000:
                    break
                offset += len(page)
            self._existing = found
        return self._existing


class MeasureSink(Protocol):
    """Where device measures go."""

    async def send(self, group: str, device_id: str, measures: list[dict[str, Any]]) -> bool: ...

    async def close(self) -> None: ...


class HttpSink:
    """Measures over HTTP: `POST /iot/json?k=&i=` with a JSON object or an array of objects."""

    def __init__(self, client: httpx.AsyncClient, cfg: IotaConfig, stats: SendStats) -> None:
        self.client = client
        self.cfg = cfg
        self.stats = stats
        self.headers = {"Content-Type": "application/json", **iota.headers(cfg)}

    async def send(self, group: str, device_id: str, measures: list[dict[str, Any]]) -> bool:
        path, params = iota.measure_path(group, device_id, self.cfg)
        body = orjson.dumps(measures[0] if len(measures) == 1 else measures)
        try:
            resp = await self.client.post(path, params=params, content=body, headers=self.headers)
        except httpx.HTTPError as exc:
            self.stats.failure(type(exc).__name__, len(measures))
            return False
        self.stats.requests += 1
        if resp.status_code >= 300:
            self.stats.failure(f"HTTP {resp.status_code}", len(measures))
            if resp.status_code < 500:
                log.debug("measure for %s refused: %s", device_id, resp.text[:200])
            return False
        self.stats.measures += len(measures)
        return True

    async def close(self) -> None:
        return None


class MqttSink:
    """Measures over MQTT: QoS 1 publishes to `/<apikey>/<device_id>/attrs` (IoT Agent JSON)."""

    def __init__(self, client: Any, cfg: IotaConfig, stats: SendStats) -> None:
        self.client = client
        self.cfg = cfg
        self.stats = stats

    @classmethod
    async def connect(cls, url: str, cfg: IotaConfig, stats: SendStats) -> MqttSink:
        try:
            import aiomqtt
        except ImportError as exc:  # the ingest extra brings it; say so instead of a traceback
            raise SimulatorError("MQTT needs the aiomqtt package: pip install aiomqtt") from exc
        parts = urlparse(url)
        client = aiomqtt.Client(parts.hostname or "127.0.0.1", parts.port or 1883,
                                username=parts.username, password=parts.password,
                                identifier=f"ucity-sim-{os.getpid()}")  # unique: a second client must not evict it
        await client.__aenter__()
        return cls(client, cfg, stats)

    async def send(self, group: str, device_id: str, measures: list[dict[str, Any]]) -> bool:
        topic = iota.mqtt_topic(group, device_id, self.cfg)
        payload = orjson.dumps(measures[0] if len(measures) == 1 else measures)
        try:
            await self.client.publish(topic, payload, qos=1)
        except Exception as exc:  # aiomqtt.MqttError and socket errors: count, keep streaming
            self.stats.failure(type(exc).__name__, len(measures))
            return False
        self.stats.requests += 1
        self.stats.measures += len(measures)
        return True

    async def close(self) -> None:
        await self.client.__aexit__(None, None, None)
