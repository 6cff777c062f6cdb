"""Helpers of the alarm tests: a started ucity on a fake clock, rule events, handler calls."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from ucity.app import Ucity
from ucity.core.bus import Context
from ucity.core.clock import FakeClock
from ucity.core.config import Settings, load_settings
from ucity.core.http import Req, Resp
from ucity.rules.events import RuleCleared, RuleMatched
from ucity.store.base import Mutation, Outcome

T0 = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
TENANT = "urn:ngsi-ld:tenant:default"
SECRET = "test-webhook-secret-0123456789"
SENSOR = "urn:ngsi-ld:Device:tilt-1"
OPERATOR = {"x-ucity-actor": "operator-kim"}


def alarm_settings(tmp_path: Path, **alarms: Any) -> Settings:
    return load_settings(environment="test", data_dir=str(tmp_path / "data"), store={"group_commit_ms": 1.0},
                         alarms={"webhook_secret": SECRET, "retry": {"max_attempts": 3, "base_s": 2.0}, **alarms})


def matched(entity: str = SENSOR, level: str = "warning", rule: str = "tilt", **extra: Any) -> RuleMatched:
    extra.setdefault("entity_types", ("Device",))
    return RuleMatched(Context(), extra.pop("tenant", TENANT), rule, entity, level, **extra)


def cleared(entity: str = SENSOR, rule: str = "tilt", **extra: Any) -> RuleCleared:
    return RuleCleared(Context(), extra.pop("tenant", TENANT), rule, entity, **extra)


class City:
    """A started ucity on a fake clock, called through its bus and framework-free handlers."""

    def __init__(self, ucity: Ucity, clock: FakeClock) -> None:
        self.ucity = ucity
        self.clock = clock

    @classmethod
    @asynccontextmanager
    async def running(cls, settings: Settings, start: datetime) -> AsyncIterator[City]:
        clock = FakeClock(start)
        ucity = Ucity(settings, clock=clock)
        await ucity.start()
        try:
            yield cls(ucity, clock)
        finally:
            await ucity.stop()

    @property
    def alarms(self) -> Any:
        return self.ucity.alarms

    async def publish(self, *events: Any) -> None:
        for event in events:
            await self.ucity.platform.bus.publish(event)
        await self.settle()

    async def settle(self) -> None:
        await self.ucity.publisher.drain()
        await self.ucity.alarms.settle()
        await self.ucity.publisher.drain()

    async def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        await self.settle()

    async def call(self, name: str, method: str = "GET", path: str = "/", body: Any = None,
                   headers: dict[str, str] | None = None, params: dict[str, str] | None = None,
                   **path_params: str) -> Resp:
        handler = getattr(self.ucity.alarms_api, name)
        req = Req(method, path, params={k: [v] for k, v in (params or {}).items()},
                  headers={"content-type": "application/json", **(headers or {})},
                  body=orjson.dumps(body) if body is not None else b"", path_params=path_params)
        resp: Resp = await handler(req)
        return resp

    async def act(self, alarm_id: str, action: str, body: Any = None, actor: str = "operator-kim") -> Resp:
        resp = await self.call(action, "POST", f"/api/v1/alarms/{alarm_id}/{action}", body,
                               {"x-ucity-actor": actor}, alarmId=alarm_id)
        await self.settle()
        return resp

    async def collection(self, name: str, operation: str, body: Any = None, item_id: str | None = None) -> Resp:
        handler = self.ucity.alarms_api.collection_handlers(name)[operation]
        req = Req("PUT", f"/api/v1/{name}", headers={"content-type": "application/json"},
                  body=orjson.dumps(body) if body is not None else b"",
                  path_params={"itemId": item_id} if item_id else {})
        resp: Resp = await handler(req)
        return resp

    def active(self, entity: str = SENSOR, rule: str = "tilt", tenant: str = TENANT) -> Any:
        return self.alarms.active_alarm(tenant, entity, rule)

    async def history(self, alarm_id: str) -> list[dict[str, Any]]:
        return list(await self.ucity.store.alarm_history(TENANT, alarm_id))

    async def alert(self, alarm_id: str) -> dict[str, Any] | None:
        doc: dict[str, Any] | None = await self.ucity.store.get_entity(TENANT, f"urn:ngsi-ld:Alert:{alarm_id}")
        return doc

    async def all_alarms(self, **params: str) -> list[dict[str, Any]]:
        resp = await self.call("list_alarms", params={"limit": "1000", **params})
        assert resp.status == 200, resp.body
        alarms: list[dict[str, Any]] = resp.body["alarms"]
        return alarms


ALERT = "urn:ngsi-ld:Alert:"


def gate_alert_writes(city: City, outcome: Callable[[], list[Outcome | Exception]] | None = None) -> asyncio.Event:
    """Alert writes (the store writes of `Alert` entities) wait for the returned gate; with `outcome`, they then
    return it instead of writing."""
    store = city.ucity.store
    mutate = store.mutate
    gate = asyncio.Event()

    async def gated(tenant: str, mutations: list[Mutation], context: Context) -> list[Outcome | Exception]:
        if any(m.entity_id.startswith(ALERT) for m in mutations):
            await gate.wait()
            if outcome is not None:
                return outcome()
        return await mutate(tenant, mutations, context)

    store.mutate = gated  # type: ignore[method-assign]
    return gate
