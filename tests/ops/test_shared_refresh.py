"""Agencies and camera URLs changed through another API process on the same store are seen here within
`ops.token_refresh_s` (ucity/ops/agencies.py, ucity/ops/cameras.py, ucity/core/refresh.py): two registries on ONE
store are two processes; the fake clock moves the periodic re-read. On both backends (tests/conftest.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from tests.conftest import StoreFactory
from tests.locks import WatchedLock
from tests.ops.conftest import MakeOps
from tests.ops.support import TENANT, agency
from tests.ops.test_linkage import audit, event_body, link_parts, nearest_ids, open_link
from ucity.core.bus import Context
from ucity.core.clock import FakeClock
from ucity.ngsild.ops import delete_op
from ucity.ops.agencies import Agency, AgencyRegistry
from ucity.ops.cameras import ACCESS_KIND, NO_ACCESS, CameraAccess, CameraIn, CameraRegistry, entity_id
from ucity.store.base import Mutation, Store

POLICE = agency("police-112", "police", ["112_VIDEO", "112_DISPATCH"])
COAST = agency("coast-122", "other", ["112_DISPATCH"])


def gate(monkeypatch: pytest.MonkeyPatch, store: Store) -> tuple[asyncio.Event, asyncio.Event]:
    """The next `list_docs` of `store` reads, then waits for `release` (`entered` is set once it has read): a
    re-read held between its read and its use of what it read."""
    entered, release = asyncio.Event(), asyncio.Event()
    original = store.list_docs
    armed = [True]

    async def held(kind: str) -> Any:
        docs = await original(kind)
        if armed[0]:
            armed[0] = False
            entered.set()
            await release.wait()
        return docs

    monkeypatch.setattr(store, "list_docs", held)
    return entered, release


async def while_held(entered: asyncio.Event, release: asyncio.Event, work: Callable[[], Awaitable[Any]],
                     lock: WatchedLock) -> None:
    """Run `work` while the re-read is held after its read, as far as it goes (to its end, or until it waits for
    `lock`), then let the re-read go on: the worst interleaving the locking allows."""
    await entered.wait()
    loop = asyncio.get_running_loop()
    task = loop.create_task(work())
    waiting = loop.create_task(lock.contended.wait())
    await asyncio.wait({task, waiting}, return_when=asyncio.FIRST_COMPLETED)
    waiting.cancel()
    release.set()
    await task


@pytest.fixture
async def two_stores(make_store: StoreFactory) -> AsyncIterator[tuple[FakeClock, Store, Store]]:
    clock = FakeClock()
    store_a, store_b = make_store(clock, group_commit_ms=0.5), make_store(clock, group_commit_ms=0.5)
    await store_a.start()
    await store_b.start()
    yield clock, store_a, store_b
    await store_a.stop()
    await store_b.stop()


# -- agencies -----------------------------------------------------------------------------------------------------
@pytest.fixture
async def agencies(two_stores: tuple[FakeClock, Store, Store]) -> AsyncIterator[Any]:
    clock, store_a, store_b = two_stores
    a, b = AgencyRegistry(store_a, [], clock, 10), AgencyRegistry(store_b, [], clock, 10)
    await a.start()
    await b.start()
    yield clock, a, b
    await a.stop()
    await b.stop()


async def test_an_agency_changed_on_one_process_is_seen_on_the_other_within_the_refresh(agencies: Any) -> None:
    clock, a, b = agencies
    changes: list[tuple[str, str]] = []
    refused: list[tuple[str, str, str]] = []

    async def on_refused(tenant: str, agency_id: str, reason: str) -> None:
        refused.append((tenant, agency_id, reason))

    b.on_change = lambda tenant, agency_id: changes.append((tenant, agency_id))
    b.on_refused = on_refused
    await a.put(TENANT, Agency.model_validate(COAST))
    assert b.refusal(TENANT, "coast-122") == "agency-unknown"
    clock.advance(9.9)
    await b.settle()
    assert b.refusal(TENANT, "coast-122") == "agency-unknown"  # not before the period
    clock.advance(0.1)
    await b.settle()
    assert b.refusal(TENANT, "coast-122") is None and b.require(TENANT, "coast-122").services == ["112_DISPATCH"]
    assert changes == [(TENANT, "coast-122")] and refused == []
    # disabled on A: refused on B (its tokens, links and grants) after B's next re-read, and B's grants revoked
    await a.put(TENANT, Agency.model_validate({**COAST, "enabled": False}))
    assert b.refusal(TENANT, "coast-122") is None
    clock.advance(10)
    await b.settle()
    assert b.refusal(TENANT, "coast-122") == "agency-disabled"
    assert refused == [(TENANT, "coast-122", "agency-disabled")] and len(changes) == 2
    # a re-read that finds nothing new calls nothing
    clock.advance(10)
    await b.settle()
    assert len(changes) == 2 and len(refused) == 1
    # enabled again, then deleted on A
    await a.put(TENANT, Agency.model_validate(COAST))
    clock.advance(10)
    await b.settle()
    assert b.refusal(TENANT, "coast-122") is None
    await a.delete(TENANT, "coast-122")
    clock.advance(10)
    await b.settle()
    assert b.refusal(TENANT, "coast-122") == "agency-unknown" and not b.known_anywhere("coast-122")
    assert refused[-1] == (TENANT, "coast-122", "agency-unknown") and len(changes) == 4
    health = b.health()
    assert health["refreshes"] == 5 and health["failures"] == 0 and health["registered"] == 0
    assert health["refreshS"] == 10 and health["nextRefresh"] is not None


async def test_a_reread_does_not_undo_a_change_this_process_made_meanwhile(
        agencies: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    clock, _, b = agencies
    lock = WatchedLock()
    monkeypatch.setattr(b, "_lock", lock)
    entered, release = gate(monkeypatch, b._store)
    clock.advance(10)  # B's re-read reads (no agency yet), then is held
    await while_held(entered, release, lambda: b.put(TENANT, Agency.model_validate(COAST)), lock)
    await b.settle()
    assert b.refusal(TENANT, "coast-122") is None  # the put waited for the re-read, which did not undo it


async def test_writes_read_the_store_first(agencies: Any) -> None:
    _, a, b = agencies
    await a.put(TENANT, Agency.model_validate(COAST))
    # B has not re-read yet: a create of the same id is still a 409, a delete is not a 404
    with pytest.raises(Exception) as taken:
        await b.put(TENANT, Agency.model_validate(COAST), create_only=True)
    assert getattr(taken.value, "status", None) == 409
    await b.delete(TENANT, "coast-122")
    assert await b._store.list_docs("ops-agencies") == []


async def test_one_agency_id_created_on_two_processes_at_once_is_created_once(agencies: Any) -> None:
    """Both read the store before either wrote (B's read is held until A's write landed): the store takes the first
    create only, and B answers 409 instead of replacing A's agency."""
    _, a, b = agencies
    sync = b._sync

    async def read_before_a_wrote() -> list[tuple[str, str, str]]:
        found = await sync()
        await a.put(TENANT, Agency.model_validate(COAST), create_only=True)
        return found

    b._sync = read_before_a_wrote
    other = Agency.model_validate({**COAST, "name": {"ko": "다른 기관", "en": "Another"}})
    with pytest.raises(Exception) as taken:
        await b.put(TENANT, other, create_only=True)
    assert getattr(taken.value, "status", None) == 409
    [(_, _, doc)] = await b._store.list_docs("ops-agencies")
    assert doc["name"] == COAST["name"]


async def test_a_failing_reread_keeps_the_agencies_and_logs_once(
        agencies: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    clock, a, b = agencies
    await a.put(TENANT, Agency.model_validate(COAST))
    clock.advance(10)
    await b.settle()

    async def down(kind: str) -> Any:
        raise ConnectionError("store down")

    monkeypatch.setattr(b._store, "list_docs", down)
    with caplog.at_level(logging.INFO, logger="ucity.core.refresh"):
        for _ in range(3):
            clock.advance(10)
            await b.settle()
        assert b.refusal(TENANT, "coast-122") is None
        health = b.health()
        assert health["failures"] == 3 and health["failing"] and "store down" in health["lastError"]
        monkeypatch.undo()
        await a.put(TENANT, Agency.model_validate({**COAST, "enabled": False}))
        clock.advance(10)
        await b.settle()
        clock.advance(10)
        await b.settle()
    assert b.refusal(TENANT, "coast-122") == "agency-disabled" and not b.health()["failing"]
    lines = [r for r in caplog.records if r.name == "ucity.core.refresh"]
    assert [r.levelno for r in lines] == [logging.WARNING, logging.INFO]  # when it starts failing, when it works
    assert "the agencies" in lines[0].getMessage() and "works again" in lines[1].getMessage()


async def test_grants_issued_on_a_process_that_learns_late_of_a_disabled_agency_are_revoked(
        make_ops: MakeOps) -> None:
    async with make_ops() as ops:
        refresh_s = ops.ucity.settings.ops.token_refresh_s
        other = AgencyRegistry(ops.ucity.store, [], ops.clock)  # the admin API of another process on the store
        await other.put(TENANT, Agency.model_validate(POLICE))
        await ops.advance(refresh_s)
        event = (await ops.call("create_event", "POST", "/api/v1/events", event_body("112_VIDEO", "robbery"))).body
        camera = (await nearest_ids(ops))[1]
        grant = (await ops.call("create_grant", "POST", "/api/v1/grants", {
            "agency": "police-112", "event": event["id"], "cameras": [camera]})).body
        stream = grant["links"][0]["stream"]
        assert (await open_link(ops, stream, "police")).status == 307
        # disabled through the other process (which revoked the grants it knew of: none of these)
        await other.put(TENANT, Agency.model_validate({**POLICE, "enabled": False}))
        await ops.advance(refresh_s)
        refused = await open_link(ops, stream, "police")
        assert refused.status == 403 and refused.extra["reason"] == "agency-disabled"
        [revoked] = await audit(ops, kind="grant", action="revoked")
        assert (revoked["grant"], revoked["actor"], revoked["reason"]) == (grant["id"], "system", "agency disabled")
        assert (await ops.call("get_grant", grantId=grant["id"])).body["status"] == "revoked"
        # enabled again: the revoked grant stays revoked; a new one works
        await other.put(TENANT, Agency.model_validate(POLICE))
        await ops.advance(refresh_s)
        assert (await open_link(ops, stream, "police")).status == 403
        assert ops.center.health()["agencies"]["refreshes"] >= 3


# -- camera URLs --------------------------------------------------------------------------------------------------
@pytest.fixture
async def cameras(two_stores: tuple[FakeClock, Store, Store]) -> AsyncIterator[Any]:
    clock, store_a, store_b = two_stores
    a, b = CameraRegistry(store_a, clock, refresh_s=10), CameraRegistry(store_b, clock, refresh_s=10)
    for registry in (a, b):
        registry.follow()
        await registry.load(TENANT)
    b.start_refresh()
    yield clock, a, b
    await a.stop()
    await b.stop()


def cam(camera_id: str, stream: str | None = None, still: str | None = None) -> CameraIn:
    return CameraIn(id=camera_id, lon=126.8874, lat=37.4954, streamURL=stream, stillImageURL=still)


async def test_camera_urls_changed_on_one_process_are_seen_on_the_other_within_the_refresh(cameras: Any) -> None:
    clock, a, b = cameras
    await a.put(TENANT, [cam("c1", "rtsp://vms.example/1"), cam("c2", "rtsp://vms.example/2")], "admin:admin")
    assert await b.urls(TENANT, "c1") == (None, None)
    clock.advance(10)
    await b.idle()
    assert await b.urls(TENANT, "c1") == ("rtsp://vms.example/1", None)
    # a URL changed, a record dropped (null URLs), on A
    await a.set_access(TENANT, {entity_id("c1"): CameraAccess("rtsp://vms.example/1b", "https://vms.example/1.jpg"),
                                entity_id("c2"): NO_ACCESS})
    assert await b.urls(TENANT, "c1") == ("rtsp://vms.example/1", None)  # until B's next re-read
    clock.advance(10)
    await b.idle()
    assert await b.urls(TENANT, "c1") == ("rtsp://vms.example/1b", "https://vms.example/1.jpg")
    assert await b.urls(TENANT, "c2") == (None, None)
    health = b.health()
    assert health["records"] == 1 and health["refreshes"] == 2 and health["failures"] == 0


async def test_a_camera_url_reread_does_not_undo_this_processs_writes(
        cameras: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    clock, _, b = cameras
    await b.put(TENANT, [cam("c1", "rtsp://vms.example/1"), cam("c2", "rtsp://vms.example/2")], "admin:admin")
    lock = WatchedLock()
    monkeypatch.setattr(b, "_doc_lock", lock)
    entered, release = gate(monkeypatch, b.store)
    clock.advance(10)  # B's re-read reads both records, then is held
    await while_held(entered, release, lambda: b.set_access(TENANT, {entity_id("c1"): CameraAccess("rtsp://new/1")}),
                     lock)
    await b.idle()
    assert await b.urls(TENANT, "c1") == ("rtsp://new/1", None)
    # a camera deleted here while a re-read is under way: its record does not come back, and goes from the store
    lock = WatchedLock()
    monkeypatch.setattr(b, "_doc_lock", lock)
    entered, release = gate(monkeypatch, b.store)
    clock.advance(10)

    async def delete_c2() -> None:
        (result,) = await b.store.mutate(TENANT, [Mutation(entity_id("c2"), delete_op("c2"))], Context())
        assert not isinstance(result, Exception)

    await while_held(entered, release, delete_c2, lock)
    await b.idle()
    assert await b.urls(TENANT, "c2") == (None, None)
    monkeypatch.undo()
    assert [k for _, k, _ in await b.store.list_docs(ACCESS_KIND)] == [entity_id("c1")]


async def test_footage_links_follow_camera_urls_changed_through_another_process(make_ops: MakeOps) -> None:
    async with make_ops(agencies=[POLICE]) as ops:
        refresh_s = ops.ucity.settings.ops.token_refresh_s
        other = CameraRegistry(ops.ucity.store, ops.clock)  # the camera API of another process on the store
        await other.load(TENANT)
        event = (await ops.call("create_event", "POST", "/api/v1/events", event_body("112_VIDEO", "robbery"))).body
        camera = (await nearest_ids(ops))[1]
        grant = (await ops.call("create_grant", "POST", "/api/v1/grants", {
            "agency": "police-112", "event": event["id"], "cameras": [camera]})).body
        stream = grant["links"][0]["stream"]
        before = (await open_link(ops, stream, "police")).headers["Location"]
        assert link_parts(stream)[0] == camera
        await other.set_access(TENANT, {entity_id(camera): CameraAccess("rtsp://vms.other.example/moved")})
        assert (await open_link(ops, stream, "police")).headers["Location"] == before
        await ops.advance(refresh_s)
        assert (await open_link(ops, stream, "police")).headers["Location"] == "rtsp://vms.other.example/moved"
        await other.set_access(TENANT, {entity_id(camera): NO_ACCESS})  # the URLs removed on the other process
        await ops.advance(refresh_s)
        gone = await open_link(ops, stream, "police")
        assert gone.status == 404
        assert ops.center.health()["cameraUrls"]["refreshes"] >= 2
