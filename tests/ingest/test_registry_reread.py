"""The device registry shared by several processes on one store (ucity/ingest/registry.py, QA8 F1): what one
registry stores it tells (`on_change`); another re-reads the named documents (`reread`) or everything
(`refresh`), applying only what differs; the apikey-per-tenant rule holds for what is learnt; a full read under way
never undoes a newer re-read. Both store backends, two stores on the same data (two processes)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.conftest import StoreFactory
from ucity.core.clock import FakeClock
from ucity.core.errors import AlreadyExists
from ucity.ingest.model import AttrSpec, Device, ServiceGroup
from ucity.ingest.registry import DEVICE_KIND, GROUP_KIND, DeviceRegistry, DocKey
from ucity.store.base import Store


def group(tenant: str = "guro", apikey: str = "pk", **fields: Any) -> ServiceGroup:
    return ServiceGroup(tenant=tenant, service_path="/", apikey=apikey, entity_type="ParkingSpot", **fields)


def device(device_id: str, tenant: str = "guro", apikey: str = "pk") -> Device:
    return Device(tenant=tenant, service_path="/", device_id=device_id, apikey=apikey,
                  entity_name=f"urn:ngsi-ld:ParkingSpot:{device_id}", entity_type="ParkingSpot")


@pytest.fixture
async def two(make_store: StoreFactory) -> AsyncIterator[tuple[DeviceRegistry, DeviceRegistry, list[DocKey]]]:
    clock = FakeClock()
    stores: list[Store] = [make_store(clock, group_commit_ms=0.5), make_store(clock, group_commit_ms=0.5)]
    for store in stores:
        await store.start()
    told: list[DocKey] = []
    a, b = DeviceRegistry(stores[0]), DeviceRegistry(stores[1])
    a.share(told.extend)
    b.share(lambda keys: None)
    await a.load()
    await b.load()
    yield a, b, told
    for store in stores:
        await store.stop()


async def test_changes_are_told_and_reread_on_the_other_process(two: Any) -> None:
    a, b, told = two
    await a.add_groups([group()])
    await a.add_devices([device("p1"), device("p2")])
    assert told == [("guro", GROUP_KIND, "/iot/json|pk"), ("guro", DEVICE_KIND, "p1"), ("guro", DEVICE_KIND, "p2")]
    learnt = await b.reread(told)
    assert sorted(p.device_id for p in learnt.profiles) == ["p1", "p2"]
    assert b.profile("pk", "p1") == a.profile("pk", "p1") and b.group_for_apikey("pk") == group()

    told.clear()
    await a.replace_group(group(attributes=(AttrSpec("o", "occupied", "Boolean"),)))
    learnt = await b.reread(told)  # the group's devices get the new mapping
    assert sorted(p.device_id for p in learnt.profiles) == ["p1", "p2"]
    assert "o" in b.profile("pk", "p1").by_object_id

    told.clear()
    await a.remove_device(a.device("guro", "p1"))
    learnt = await b.reread(told)
    assert [d.device_id for d in learnt.removed] == ["p1"] and learnt.profiles == []
    assert b.profile("pk", "p1") is None and b.device("guro", "p1") is None
    assert b.profile_by_entity("guro", "urn:ngsi-ld:ParkingSpot:p1") is None


async def test_the_full_reread_applies_only_what_differs(two: Any) -> None:
    a, b, _ = two
    await a.add_groups([group()])
    await a.add_devices([device(f"p{i}") for i in range(5)])
    learnt = await b.refresh()
    assert len(learnt.profiles) == 5
    kept = b.profile("pk", "p3")
    assert not await b.refresh()  # nothing changed: nothing parsed, no profile rebuilt
    assert b.profile("pk", "p3") is kept

    await a.remove_device(a.device("guro", "p0"))
    await a.add_devices([device("p9")])
    learnt = await b.refresh()
    assert [d.device_id for d in learnt.removed] == ["p0"] and [p.device_id for p in learnt.profiles] == ["p9"]
    assert b.profile("pk", "p3") is kept

    await a.remove_group(a.group_for_apikey("pk"))
    learnt = await b.refresh()  # the devices lose their group's mapping (their profiles are rebuilt)
    assert b.group_for_apikey("pk") is None and len(learnt.profiles) == 5


async def test_the_apikey_rule_holds_for_what_is_learnt(two: Any, caplog: pytest.LogCaptureFixture) -> None:
    a, b, told = two
    await a.add_groups([group("guro", "pk")])
    await b.reread(told)
    with pytest.raises(AlreadyExists):  # b knows that pk is guro's
        await b.add_groups([group("mapo", "pk", resource="/iot/other")])
    with pytest.raises(AlreadyExists):
        await b.add_devices([device("m1", tenant="mapo", apikey="pk")])

    # Two processes giving one apikey to two tenants at the same moment: both are stored; once each knows of the
    # other's, the apikey is logged and nothing is autoprovisioned for it (which tenant would it be?).
    caplog.set_level(logging.ERROR, logger="ucity.ingest.registry")
    await b.add_groups([group("mapo", "qk")])
    told.clear()
    await a.add_groups([group("guro", "qk", resource="/iot/other")])
    await b.reread(told)
    await b.reread(told)
    assert b.group_for_apikey("qk") is None and b.apikey_tenants("qk") == {"guro", "mapo"}
    logged = [r.getMessage() for r in caplog.records if "several services (guro, mapo)" in r.getMessage()]
    assert len(logged) == 1 and "qk" not in logged[0]  # once, and the apikey (a credential) masked


async def test_a_full_read_under_way_does_not_undo_a_newer_reread(two: Any) -> None:
    a, b, told = two
    await a.add_groups([group()])
    await a.add_devices([device("p1")])
    await b.refresh()
    read, release = asyncio.Event(), asyncio.Event()
    list_docs_page = b.store.list_docs_page

    async def slow(kind: str, after: Any, limit: int) -> Any:
        docs = await list_docs_page(kind, after, limit)
        if kind == DEVICE_KIND:
            read.set()
            await release.wait()
        return docs

    b.store.list_docs_page = slow
    full = asyncio.create_task(b.refresh())
    await read.wait()  # the full read has p1; then p1 is deleted and b re-reads it
    told.clear()
    await a.remove_device(a.device("guro", "p1"))
    await b.reread(told)
    assert b.profile("pk", "p1") is None
    release.set()
    await full
    assert b.profile("pk", "p1") is None  # the older copy of the full read was not applied


async def test_a_registry_not_shared_keeps_no_fingerprints(make_store: StoreFactory) -> None:
    store = make_store(FakeClock())
    await store.start()
    try:
        registry = DeviceRegistry(store)
        await registry.load()
        await registry.add_groups([group()])
        await registry.add_devices([device("p1")])
        assert registry._fingerprints is None and registry.on_change is None
        assert not await registry.refresh()  # still right: what it wrote is what it reads
    finally:
        await store.stop()
