"""Helpers of the operations-centre tests: a started ucity on a fake clock with the simulator's cameras,
bearer tokens for each role, and calls to the framework-free handlers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import orjson

from ucity.app import Ucity
from ucity.core.bus import Context
from ucity.core.clock import FakeClock
from ucity.core.config import Settings, load_settings
from ucity.core.http import Req, Resp
from ucity.ngsild.context import core_context
from ucity.ngsild.model import normalize_entity
from ucity.ngsild.ops import replace_op
from ucity.ops.cameras import CameraAccess
from ucity.sim.city import CityConfig, build_cameras, build_facilities
from ucity.sim.entities import camera_entity
from ucity.sim.model import Camera
from ucity.store.base import Mutation

T0 = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
TENANT = "urn:ngsi-ld:tenant:default"
WEBHOOK_SECRET = "test-webhook-secret-0123456789"
GRANT_SECRET = "test-grant-secret-0123456789abcdef"
TOKENS = {
    "admin": "admin-token-0123456789abcdef",
    "operator": "operator-token-0123456789abcdef",
    "police": "police-token-0123456789abcdef",
    "fire": "fire-token-0123456789abcdef",
    "disaster": "disaster-token-0123456789abcdef",
}
# Guro-gu, near Guro Digital Complex: inside the simulated district.
POINT = (126.8874, 37.4954)


def ops_settings(tmp_path: Path, **ops: Any) -> Settings:
    tokens = [
        {"id": "op-kim", "token": TOKENS["operator"], "role": "operator", "name": "운영자 김"},
        {"id": "police-terminal", "token": TOKENS["police"], "role": "agency", "agency": "police-112"},
        {"id": "fire-terminal", "token": TOKENS["fire"], "role": "agency", "agency": "fire-119"},
        {"id": "disaster-terminal", "token": TOKENS["disaster"], "role": "agency", "agency": "disaster-room"},
    ]
    return load_settings(environment="test", data_dir=str(tmp_path / "data"), store={"group_commit_ms": 1.0},
                         alarms={"webhook_secret": WEBHOOK_SECRET, "retry": {"max_attempts": 3, "base_s": 2.0}},
                         ops={"grant_secret": GRANT_SECRET, "pseudonym_secret": "test-pseudonym-secret-0123456789",
                              "admin_token": TOKENS["admin"], "tokens": tokens,
                              "retry": {"max_attempts": 3, "base_s": 2.0}, **ops})


def agency(agency_id: str, kind: str, services: list[str], webhook: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"id": agency_id, "kind": kind, "name": {"ko": agency_id, "en": agency_id}, "services": services,
            "webhook": webhook, **extra}


@cache
def city_cameras() -> tuple[Camera, ...]:
    """The simulator's 4,100 cameras (built once per test run)."""
    cfg = CityConfig()
    return build_cameras(cfg, build_facilities(cfg))


@cache
def camera_docs() -> tuple[dict[str, Any], ...]:
    ctx = core_context()
    return tuple(normalize_entity(camera_entity(c), ctx) for c in city_cameras())


class Ops:
    """A started ucity on a fake clock, called through its framework-free operations handlers."""

    def __init__(self, ucity: Ucity, clock: FakeClock) -> None:
        self.ucity = ucity
        self.clock = clock

    @classmethod
    @asynccontextmanager
    async def running(cls, settings: Settings, cameras: bool = True) -> AsyncIterator[Ops]:
        clock = FakeClock(T0)
        ucity = Ucity(settings, clock=clock)
        await ucity.start()
        try:
            ops = cls(ucity, clock)
            if cameras:
                await ops.load_cameras()
            yield ops
        finally:
            await ucity.stop()

    @property
    def center(self) -> Any:
        return self.ucity.ops

    async def load_cameras(self, docs: tuple[dict[str, Any], ...] | None = None) -> None:
        city = docs is None
        docs = camera_docs() if docs is None else docs
        for start in range(0, len(docs), 1000):
            results = await self.ucity.store.mutate(
                TENANT, [Mutation(d["id"], replace_op(d, True)) for d in docs[start:start + 1000]], Context())
            assert not [r for r in results if isinstance(r, Exception)]
        if city:  # their stream URLs, kept out of NGSI-LD (ucity/ops/cameras.py), as an operator would register them
            await self.center.cameras.set_access(TENANT, {d["id"]: CameraAccess(c.stream_url)
                                                          for d, c in zip(docs, city_cameras(), strict=True)})
        await self.settle()

    async def settle(self) -> None:
        for _ in range(3):
            await self.ucity.publisher.drain()
            await self.ucity.alarms.settle()
            await self.center.settle()

    async def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        await self.settle()

    async def call(self, name: str, method: str = "GET", path: str = "/", body: Any = None, role: str | None = "operator",
                   params: dict[str, str] | None = None, raw: bytes | None = None, content_type: str = "application/json",
                   **path_params: str) -> Resp:
        headers = {"content-type": content_type}
        if role is not None:
            headers["authorization"] = f"Bearer {TOKENS[role]}"
        req = Req(method, path, params={k: [v] for k, v in (params or {}).items()}, headers=headers,
                  body=raw if raw is not None else (orjson.dumps(body) if body is not None else b""),
                  path_params=path_params)
        resp: Resp = await getattr(self.ucity.ops_api, name)(req)
        await self.settle()
        return resp
