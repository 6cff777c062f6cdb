"""The full re-read of the device registry reads the devices a page at a time (`Store.list_docs_page`, a keyset
cursor) and yields to the event loop between pages: at 100,000 devices one `list_docs` of every row held the loop for
up to a second (/tmp/s24 measurement in the lead's report). Its result stays that of reading everything at once.
Both store backends, two stores on the same data (two processes)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.conftest import StoreFactory
from ucity.core.clock import FakeClock
from ucity.ingest import registry as registry_module
from ucity.ingest.model import AttrSpec, Device, ServiceGroup
from ucity.ingest.registry import DEVICE_KIND, DeviceRegistry
from ucity.store.base import Store

TENANTS = ("guro", "mapo")


def group(tenant: str) -> ServiceGroup:
    return ServiceGroup(tenant=tenant, service_path="/", apikey=f"k-{tenant}", entity_type="ParkingSpot")


def device(tenant: str, device_id: str, attr: str = "occupied") -> Device:
    return Device(tenant=tenant, service_path="/", device_id=device_id, apikey=f"k-{tenant}",
                  entity_name=f"urn:ngsi-ld:ParkingSpot:{device_id}", entity_type="ParkingSpot",
                  attributes=(AttrSpec("o", attr, "Boolean"),))


@pytest.fixture
async def stores(make_store: StoreFactory) -> AsyncIterator[list[Store]]:
    clock = FakeClock()
    made: list[Store] = [make_store(clock, group_commit_ms=0.5), make_store(clock, group_commit_ms=0.5)]
    for store in made:
        await store.start()
    yield made
    for store in made:
        await store.stop()


async def test_list_docs_page_walks_every_document_once_in_key_order(stores: list[Store]) -> None:
    store = stores[0]
    keys = ["p-1", "p_1", "P1", "p1", "p10", "p2", "a:b@c~d", "spot.9"]
    for tenant in ("mapo", "guro", "guro2"):
        await store.put_docs(DEVICE_KIND, [(tenant, key, {"device_id": key, "n": n}) for n, key in enumerate(keys)])
    await store.put_doc("iot-service", "guro", "x", {"other": "kind"})
    everything = await store.list_docs(DEVICE_KIND)
    for limit in (1, 2, 3, 7, 100):
        walked: list[Any] = []
        after = None
        while True:
            page = await store.list_docs_page(DEVICE_KIND, after, limit)
            assert len(page) <= limit
            walked.extend(page)
            if len(page) < limit:
                break
            after = (page[-1][0], page[-1][1])
        assert walked == everything, limit
    assert await store.list_docs_page(DEVICE_KIND, ("mapo", "spot.9"), 5) == []
    assert await store.list_docs_page("nothing", None, 5) == []


async def test_a_paged_refresh_sees_what_another_process_added_removed_and_changed(
        stores: list[Store], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry_module, "READ_PAGE", 3)  # several pages, a tenant boundary inside one
    monkeypatch.setattr(registry_module, "APPLY_SLICE", 2)
    monkeypatch.setattr(registry_module, "UNSEEN_SLICE", 2)
    a, b = DeviceRegistry(stores[0]), DeviceRegistry(stores[1])
    for registry in (a, b):
        registry.share(lambda keys: None)
        await registry.load()
    pages: list[int] = []
    read_page = b.store.list_docs_page

    async def counted(kind: str, after: Any, limit: int) -> Any:
        page = await read_page(kind, after, limit)
        if kind == DEVICE_KIND:
            pages.append(len(page))
        return page

    list_docs = b.store.list_docs

    async def whole(kind: str) -> Any:
        assert kind != DEVICE_KIND, "every device read at once"
        return await list_docs(kind)

    b.store.list_docs_page = counted  # type: ignore[method-assign]
    for tenant in TENANTS:
        await a.add_groups([group(tenant)])
        await a.add_devices([device(tenant, f"d{i}") for i in range(5)])
    await b.refresh()
    b.store.list_docs = whole  # type: ignore[method-assign]

    await a.remove_device(a.device("guro", "d0"))
    await a.remove_device(a.device("mapo", "d4"))
    await a.replace_device(a.device("guro", "d3"), device("guro", "d3", "free"))
    await a.add_devices([device("mapo", "d9"), device("guro", "d5")])
    kept = b.profile("k-mapo", "d2")
    pages.clear()
    learnt = await b.refresh()
    assert pages == [3, 3, 3, 1]  # 10 devices, read 3 at a time
    assert sorted((d.tenant, d.device_id) for d in learnt.removed) == [("guro", "d0"), ("mapo", "d4")]
    assert sorted((p.tenant, p.device_id) for p in learnt.profiles) == [("guro", "d3"), ("guro", "d5"),
                                                                         ("mapo", "d9")]
    for tenant in TENANTS:
        assert b.devices(tenant) == a.devices(tenant)
    assert sorted(b.profiles(), key=lambda p: p.key) == sorted(a.profiles(), key=lambda p: p.key)
    assert b.profile("guro", "d0") is None and "free" in [s.name for s in b.profile("k-guro", "d3").by_object_id.values()]
    assert b.profile("k-mapo", "d2") is kept  # unchanged: neither parsed nor rebuilt
    assert not await b.refresh()  # nothing more differs
