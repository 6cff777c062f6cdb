"""A subscription's personal data follows the token that last set it (FIX-E of stop 27, ucity/ngsild/sub_owner.py).

With the token guard on, the token that creates or changes a subscription is recorded on it (`sub_owner.OWNER`,
stored, never shown). Its notifications carry entities of a personal type only while that token holds
`personal:read`: revoked (or its id issued again), expired, or its role no longer granting it, they are left out,
counted on /health (`personalWithheld`, and `personalWithheldOwnerGone` for revoked or expired tokens). A subscription
read from the store with neither an owner nor the WITHHOLD mark (created before this, or with the guard off) has an
unknown creator: with the guard on it is treated as without `personal:read` until a holder changes it (one warning
per subscription, `ownerUnknown` on /health).

A started ucity on a fake clock, called through its framework-free handlers, notifying a real local receiver, on
both store backends; each case sends a personal entity and then a plain one, so that the plain one's arrival shows
the personal one was not sent (delivery is in order).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.api.test_personal_subscriptions import (
    OPERATOR,
    PLAIN,
    SUBS,
    WEARABLE,
    Broker,
    entity,
    notified,
    subscription,
)
from tests.api.test_subscriptions import WAIT_S, Receiver, receiver
from ucity.app import Ucity
from ucity.core.clock import FakeClock
from ucity.core.config import load_settings
from ucity.ngsild.sub_owner import OWNER, OwnerRights
from ucity.ngsild.subscriptions import WITHHOLD
from ucity.ops.auth import Principal, Role, TokenSpec

__all__ = ["receiver"]  # the fixture, imported for pytest

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
SUB = "urn:ngsi-ld:Subscription:watch"
CONFIGURED = {"id": "op-cfg", "token": "c" * 32, "role": "operator"}

Starter = Callable[..., Any]


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[Starter]:
    """Start ucity on one data directory (and one database): again after a stop, with other tokens if asked."""
    clock = FakeClock(T0)
    started: list[Ucity] = []

    async def starter(tokens: list[dict[str, Any]] | None = None, require_auth: bool = True) -> Broker:
        settings = load_settings(environment="test", data_dir=str(tmp_path / "data"),
                                 store={"group_commit_ms": 1.0, "exclusive": False},
                                 server={"require_auth": require_auth},
                                 ops={"admin_token": "a" * 32, "tokens": tokens or [CONFIGURED]})
        ucity = Ucity(settings, clock=clock)
        await ucity.start()
        started.append(ucity)
        return Broker(ucity, clock)

    try:
        yield starter
    finally:
        for ucity in started:
            if ucity.platform._started:
                await ucity.stop()


async def issued(broker: Broker, token_id: str, role: Role, expires_at: datetime | None = None) -> Principal:
    """A token issued through the registry (as `POST /api/v1/auth/tokens` does) and its principal."""
    value = await broker.ucity.ops.tokens.issue(TokenSpec(id=token_id, role=role), "admin", expires_at)
    principal = broker.ucity.ops.tokens.lookup(value)
    assert principal is not None
    return principal


async def personal_then_plain(broker: Broker, receiver: Receiver, path: str, rounds: int) -> list[str]:
    """Rate the Person, then the plain Device; once `path` got the Device `rounds` times in all, every entity id it
    was notified of (the Person, when sent, arrives before the Device: delivery is in order)."""
    await broker.rate(WEARABLE, 70 + rounds)
    await broker.rate(PLAIN, 60 + rounds)

    def wait() -> None:
        with receiver._cond:
            receiver._cond.wait_for(lambda: notified(receiver, path).count(PLAIN) >= rounds, WAIT_S)

    await asyncio.to_thread(wait)
    return notified(receiver, path)


async def setup(broker: Broker, receiver: Receiver, principal: Principal | None, path: str) -> None:
    await broker.upsert(entity(WEARABLE, ["Device", "Person"], 70), entity(PLAIN, "Device", 60))
    await broker.subscribe(subscription(SUB, f"{receiver.url}{path}", watchedAttributes=["heartRate"]), principal)


async def test_a_revoked_token_s_subscription_stops_notifying_personal_entities(
        start: Starter, receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    broker = await start()
    operator = await issued(broker, "op-2", Role.OPERATOR)
    await setup(broker, receiver, operator, "/op")
    owner = broker.stored(SUB)[OWNER]
    assert owner["token"] == "op-2" and owner["issuedAt"] and WITHHOLD not in broker.stored(SUB)
    # While the token holds personal:read, the Person is notified.
    assert await personal_then_plain(broker, receiver, "/op", 1) == [WEARABLE, PLAIN]
    caplog.set_level(logging.WARNING, logger="ucity.ngsild.subscriptions")
    await broker.ucity.ops.tokens.revoke("op-2")
    assert await personal_then_plain(broker, receiver, "/op", 2) == [WEARABLE, PLAIN, PLAIN]
    health = broker.ucity.subscriptions.health()
    assert (health["personalWithheld"], health["personalWithheldOwnerGone"], health["ownerGone"]) == (1, 1, 1)
    lines = [r.getMessage() for r in caplog.records if "was revoked" in r.getMessage()]
    assert len(lines) == 1 and "op-2" in lines[0]
    # An id issued again is another token: the revoked one's subscription does not get its right back.
    broker.clock.advance(60)  # (a token is told from another of its id by when it was issued, to the microsecond)
    await issued(broker, "op-2", Role.OPERATOR)
    assert await personal_then_plain(broker, receiver, "/op", 3) == [WEARABLE, PLAIN, PLAIN, PLAIN]
    # The owner is stored, never shown.
    resp = await broker.call(broker.ucity.subscriptions.retrieve, "GET", f"{SUBS}/{SUB}", None, OPERATOR,
                             subscriptionId=SUB)
    assert OWNER not in str(resp.body) and "op-2" not in str(resp.body)


async def test_an_expired_token_s_subscription_stops_notifying_personal_entities(
        start: Starter, receiver: Receiver) -> None:
    broker = await start()
    operator = await issued(broker, "op-brief", Role.OPERATOR, expires_at=T0 + timedelta(minutes=30))
    await setup(broker, receiver, operator, "/brief")
    broker.clock.advance(timedelta(minutes=29))
    assert await personal_then_plain(broker, receiver, "/brief", 1) == [WEARABLE, PLAIN]
    broker.clock.advance(timedelta(minutes=1))  # expiresAt: the token stops working, and so does its right
    assert await personal_then_plain(broker, receiver, "/brief", 2) == [WEARABLE, PLAIN, PLAIN]
    health = broker.ucity.subscriptions.health()
    assert (health["personalWithheld"], health["personalWithheldOwnerGone"], health["ownerGone"]) == (1, 1, 1)


async def test_a_token_whose_role_no_longer_grants_personal_read_has_them_withheld(
        start: Starter, receiver: Receiver) -> None:
    broker = await start()
    operator = broker.ucity.ops.tokens.lookup(str(CONFIGURED["token"]))
    assert operator is not None
    await setup(broker, receiver, operator, "/cfg")
    assert broker.stored(SUB)[OWNER] == {"token": "op-cfg"}  # a configured token: no issuedAt
    assert await personal_then_plain(broker, receiver, "/cfg", 1) == [WEARABLE, PLAIN]
    await broker.ucity.stop()
    # The configuration now gives op-cfg the ingest role (data:read, data:write, nothing personal).
    broker = await start([{**CONFIGURED, "role": "ingest"}])
    # (A notification whose answer the stop did not wait for is sent again at the start: delivery is at least once.)
    got = await personal_then_plain(broker, receiver, "/cfg", 2)
    assert got.count(WEARABLE) == 1 and got[-1] == PLAIN
    health = broker.ucity.subscriptions.health()
    assert health["personalWithheld"] >= 1 and (health["personalWithheldOwnerGone"], health["ownerGone"]) == (0, 0)


async def test_a_subscription_without_an_owner_is_withheld_until_a_holder_changes_it(
        start: Starter, receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    broker = await start()
    # Created without a principal (the guard off), as before owners were recorded: neither an owner nor a mark.
    await setup(broker, receiver, None, "/old")
    assert OWNER not in broker.stored(SUB) and WITHHOLD not in broker.stored(SUB)
    await broker.ucity.stop()
    caplog.set_level(logging.WARNING, logger="ucity.ngsild.subscriptions")
    broker = await start()  # the guard on: its creator is unknown
    lines = [r.getMessage() for r in caplog.records if "who created it is unknown" in r.getMessage()]
    assert len(lines) == 1 and SUB in lines[0]
    assert broker.ucity.subscriptions.health()["ownerUnknown"] == 1
    assert await personal_then_plain(broker, receiver, "/old", 1) == [PLAIN]
    assert broker.ucity.subscriptions.health()["personalWithheld"] == 1
    # A holder of personal:read changes it: it answers for it from then on.
    operator = broker.ucity.ops.tokens.lookup(str(CONFIGURED["token"]))
    await broker.patch(SUB, {"notification": {"endpoint": {"uri": f"{receiver.url}/new"}}}, operator)
    assert broker.ucity.subscriptions.health()["ownerUnknown"] == 0
    assert await personal_then_plain(broker, receiver, "/new", 1) == [WEARABLE, PLAIN]


async def test_without_the_guard_an_unowned_subscription_notifies_as_before(
        start: Starter, receiver: Receiver) -> None:
    broker = await start()
    await setup(broker, receiver, None, "/dev")
    await broker.ucity.stop()
    broker = await start(require_auth=False)
    assert broker.ucity.subscriptions.health()["ownerUnknown"] == 0
    assert await personal_then_plain(broker, receiver, "/dev", 1) == [WEARABLE, PLAIN]


class CountingRegistry:
    """A token registry's surface OwnerRights reads, counting how often it lists the tokens."""

    def __init__(self) -> None:
        self.changes = 0
        self.listings = 0
        self.tokens: list[dict[str, Any]] = [
            {"id": "op", "role": "operator", "source": "configuration"},
            {"id": "tmp", "role": "operator", "source": "api", "createdAt": "2026-03-01T00:00:00Z",
             "expiresAt": "2026-03-01T10:00:00Z"},
            {"id": "pipe", "role": "ingest", "source": "api", "createdAt": "2026-03-01T00:00:00Z"},
        ]

    def listing(self) -> list[dict[str, Any]]:
        self.listings += 1
        return [dict(t) for t in self.tokens]


def test_owner_rights_are_derived_once_per_change_of_the_tokens() -> None:
    registry = CountingRegistry()
    rights = OwnerRights(registry)
    now = T0
    for _ in range(1000):  # one per notified personal entity
        assert rights.lacks("op", None, now) is None
    assert rights.lacks("tmp", "2026-03-01T00:00:00Z", now) is None
    assert rights.lacks("tmp", "2026-03-01T00:00:00Z", datetime(2026, 3, 1, 10, tzinfo=UTC)) == "expired"
    assert rights.lacks("pipe", "2026-03-01T00:00:00Z", now) == "not-granted"
    assert rights.lacks("tmp", "2026-02-01T00:00:00Z", now) == "revoked"  # the id, issued again
    assert rights.lacks("gone", None, now) == "revoked"
    assert registry.listings == 1
    registry.tokens.pop(0)
    registry.changes += 1  # a revocation
    assert rights.lacks("op", None, now) == "revoked"
    assert registry.listings == 2
    assert OwnerRights(None).lacks("anyone", None, now) is None  # no registry: no token exists to follow
