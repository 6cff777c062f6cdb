"""Two processes creating one device id (or service group) at the same instant (ucity/ingest/registry.py `_insert`):
creation is insert-if-absent in the store, so one wins and the other is told 409 (the FIWARE IoT Agent's
DUPLICATE_DEVICE_ID / DUPLICATE_GROUP), learning the winner's document at once; before, both answered 201 and the
last write was kept. Both store backends, two stores on the same data (two processes)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.conftest import StoreFactory
from ucity.core.clock import FakeClock
from ucity.core.errors import AlreadyExists, NotFound
from ucity.ingest.errors import DuplicateDeviceId, DuplicateGroup
from ucity.ingest.model import AttrSpec, Device, ServiceGroup
from ucity.ingest.registry import DEVICE_KIND, GROUP_KIND, DeviceRegistry, Learnt
from ucity.ingest.schema import device_to_wire, group_to_wire
from ucity.store.base import Store


def group(tenant: str = "guro", apikey: str = "pk", entity_type: str = "ParkingSpot") -> ServiceGroup:
    return ServiceGroup(tenant=tenant, service_path="/", apikey=apikey, entity_type=entity_type)


def device(device_id: str, attr: str = "occupied", tenant: str = "guro", apikey: str = "pk") -> Device:
    return Device(tenant=tenant, service_path="/", device_id=device_id, apikey=apikey,
                  entity_name=f"urn:ngsi-ld:ParkingSpot:{device_id}", entity_type="ParkingSpot",
                  attributes=(AttrSpec("o", attr, "Boolean"),))


@pytest.fixture
async def two(make_store: StoreFactory) -> AsyncIterator[tuple[DeviceRegistry, DeviceRegistry, list[Learnt]]]:
    clock = FakeClock()
    stores: list[Store] = [make_store(clock, group_commit_ms=0.5), make_store(clock, group_commit_ms=0.5)]
    for store in stores:
        await store.start()
    a, b = DeviceRegistry(stores[0]), DeviceRegistry(stores[1])
    learnt: list[Learnt] = []
    for registry in (a, b):
        registry.share(lambda keys: None)
        await registry.load()
    b.on_learnt = learnt.append
    yield a, b, learnt
    for store in stores:
        await store.stop()


async def test_one_of_two_concurrent_creates_of_a_device_id_wins(two: Any) -> None:
    a, b, learnt = two
    for registry in (a, b):  # the group known to both
        registry._groups[("/iot/json", "pk")] = group()
    await a.store.put_doc(GROUP_KIND, "guro", group().key, group_to_wire(group()))
    results = await asyncio.gather(a.add_devices([device("p1", "occupied")]), b.add_devices([device("p1", "free")]),
                                   return_exceptions=True)
    assert sorted(type(r).__name__ for r in results) == ["DuplicateDeviceId", "NoneType"]
    winner, loser = (a, b) if results[0] is None else (b, a)
    refused = results[1] if results[0] is None else results[0]
    assert isinstance(refused, DuplicateDeviceId) and refused.status == 409 and "p1" in refused.detail
    stored = await a.store.get_doc(DEVICE_KIND, "guro", "p1")
    assert stored == device_to_wire(winner.device("guro", "p1"))
    assert loser.device("guro", "p1") == winner.device("guro", "p1")  # the loser learnt the winner's at once
    assert loser.profile("pk", "p1") is not None
    if loser is b:
        assert [p.device_id for learnt_ in learnt for p in learnt_.profiles] == ["p1"]


async def test_a_batch_with_a_device_another_process_stored_keeps_none(two: Any) -> None:
    a, b, _ = two
    await a.add_groups([group()])
    b._groups[("/iot/json", "pk")] = group()  # b knows the group, not a's device (its message was lost)
    await a.add_devices([device("p1", "occupied")])
    with pytest.raises(DuplicateDeviceId):
        await b.add_devices([device("p2"), device("p1", "free"), device("p3")])
    assert await b.store.get_doc(DEVICE_KIND, "guro", "p2") is None  # all or none, as the local check
    assert await b.store.get_doc(DEVICE_KIND, "guro", "p3") is None
    assert b.device("guro", "p2") is None and b.device("guro", "p1") == a.device("guro", "p1")
    await b.add_devices([device("p2")])  # not taken by the refused batch


async def test_one_of_two_concurrent_creates_of_a_service_group_wins(two: Any) -> None:
    a, b, _ = two
    results = await asyncio.gather(a.add_groups([group(entity_type="ParkingSpot")]),
                                   b.add_groups([group(entity_type="Streetlight")]), return_exceptions=True)
    assert sorted(type(r).__name__ for r in results) == ["DuplicateGroup", "NoneType"]
    refused = next(r for r in results if r is not None)
    assert isinstance(refused, DuplicateGroup) and isinstance(refused, AlreadyExists)
    stored = await a.store.get_doc(GROUP_KIND, "guro", "/iot/json|pk")
    assert stored is not None and a.group("/iot/json", "pk") == b.group("/iot/json", "pk")
    assert group_to_wire(a.group("/iot/json", "pk")) == stored


async def test_a_stored_device_that_no_longer_validates_is_replaced(two: Any) -> None:
    """Unknown here (logged at load and skipped: GET and DELETE cannot reach it): provisioning it again replaces it,
    as before the insert-if-absent."""
    a, _, _ = two
    await a.add_groups([group()])
    bad = {**device_to_wire(device("p1")), "timezone": None, "entity_type": "ParkingSpot",
           "attributes": [{"object_id": "o", "name": "occupied", "type": "Boolean", "expression": "o * 2"}]}
    await a.store.put_doc(DEVICE_KIND, "guro", "p1", bad)
    await a.refresh()
    assert a.device("guro", "p1") is None
    await a.add_devices([device("p1")])
    assert await a.store.get_doc(DEVICE_KIND, "guro", "p1") == device_to_wire(device("p1"))


async def test_an_update_does_not_bring_back_a_device_another_process_removed(two: Any) -> None:
    """A PUT was a put: racing another process's DELETE it could store the device again, which that process had
    answered 204 for. It is an update now: the removed device stays removed, and the update is 404."""
    a, b, _ = two
    await a.add_groups([group()])
    await a.add_devices([device("p1", "occupied")])
    await b.refresh()
    stale = b.device("guro", "p1")
    assert stale is not None
    await a.remove_device(a.device("guro", "p1"))
    with pytest.raises(NotFound) as missing:
        await b.replace_device(stale, device("p1", "free"))
    assert missing.value.status == 404 and "p1" in missing.value.detail
    assert await a.store.get_doc(DEVICE_KIND, "guro", "p1") is None
    assert b.device("guro", "p1") is None and b.profile("pk", "p1") is None


async def test_an_update_of_a_stored_device_is_kept(two: Any) -> None:
    a, b, _ = two
    await a.add_groups([group()])
    await a.add_devices([device("p1", "occupied")])
    await b.refresh()
    await b.replace_device(b.device("guro", "p1"), device("p1", "free"))
    assert await a.store.get_doc(DEVICE_KIND, "guro", "p1") == device_to_wire(device("p1", "free"))
    assert b.device("guro", "p1") == device("p1", "free")
