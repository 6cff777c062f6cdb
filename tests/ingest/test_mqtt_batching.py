"""The MQTT source's batching on a real platform (SQLite, fake clock), with the broker connection
replaced by a fake paho client that records acknowledgements (the real broker: tests/integration).

QoS 1: a message is acknowledged only after the commit that holds it; messages the store could not
commit are not acknowledged (the connection is dropped so that the broker delivers them again);
garbage in a batch is counted with its reason, acknowledged, and does not hold up the rest.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.ingest.support import FakeClient, Message, run, source_for
from ucity.app import Ucity
from ucity.core.bus import Context, EntityChange
from ucity.core.clock import FakeClock
from ucity.core.config import MqttSettings, load_settings
from ucity.core.errors import BadRequest, Unavailable
from ucity.ingest.mqtt import MqttSource, puback_packets
from ucity.ingest.schema import parse_device, parse_group

START = datetime(2026, 5, 1, tzinfo=UTC)
SEQ = "https://uri.etsi.org/ngsi-ld/default-context/seq"
TENANT = "guro"


@pytest.fixture
async def city(tmp_path: Path) -> AsyncIterator[tuple[Ucity, list[tuple[str, Any]]]]:
    settings = load_settings(environment="test", data_dir=str(tmp_path / "data"), store={"group_commit_ms": 1.0})
    app = Ucity(settings, clock=FakeClock(START))
    log: list[tuple[str, Any]] = []

    def committed(context: Context, changes: tuple[EntityChange, ...]) -> None:
        for change in changes:
            for iri, instance in change.instances:
                if iri == SEQ:
                    log.append(("commit", (change.entity_id, instance["value"])))

    app.store.on_commit(committed)
    await app.start()
    group = parse_group({"apikey": "k", "entity_type": "Counter", "autoprovision": False,
                         "attributes": [{"object_id": "s", "name": "seq", "type": "Number"}]}, TENANT, "/")
    await app.ingest.add_groups([group])
    await app.ingest.add_devices([parse_device({"device_id": d}, TENANT, "/", group) for d in ("d1", "d2", "d3")])
    try:
        yield app, log
    finally:
        await app.stop()


def measure(device: str, seq: int, mid: int) -> Message:
    return Message(f"/k/{device}/attrs", b'{"s": %d, "TimeInstant": "2026-05-01T00:00:%02dZ"}' % (seq, seq), mid)


async def test_each_message_is_acknowledged_after_its_commit_and_devices_keep_their_order(
        city: tuple[Ucity, list[tuple[str, Any]]]) -> None:
    app, log = city
    source = source_for(app, log, max_batch=7)  # 60 messages: several batches, two in flight at a time
    messages = [measure(f"d{n % 3 + 1}", n, n + 1) for n in range(60)]
    await run(source, messages)

    acks = [mid for kind, mid in log if kind == "ack"]
    assert sorted(acks) == [m.mid for m in messages]  # every message acknowledged, once
    assert source.batches >= 60 // 7
    position = {entry: k for k, entry in enumerate(log)}
    for n, message in enumerate(messages):
        entity = f"urn:ngsi-ld:Counter:d{n % 3 + 1}"
        assert position[("commit", (entity, n))] < position[("ack", message.mid)]  # committed, then acknowledged
    for device in ("d1", "d2", "d3"):
        entity = f"urn:ngsi-ld:Counter:{device}"
        committed = [value for kind, entry in log if kind == "commit" for eid, value in [entry] if eid == entity]
        assert committed == sorted(committed)  # per device, in the order published
        doc = await app.store.get_entity(TENANT, entity)
        assert doc is not None and doc["attrs"][SEQ][0]["value"] == committed[-1]


async def test_garbage_in_a_batch_is_counted_and_acknowledged_and_the_rest_is_committed(
        city: tuple[Ucity, list[tuple[str, Any]]]) -> None:
    app, log = city
    source = source_for(app, log, max_batch=100)
    messages = [
        measure("d1", 1, 1),
        Message("/k/d1/attrs", b'{"s": 2,', 2),  # malformed JSON
        Message("/k/nobody/attrs", b'{"s": 3}', 3),  # unknown device
        Message("/k/d2/attrs", b'{"s": "many"}', 4),  # a type mismatch, nothing valid
        Message("/k/d2/cmd", b"{}", 5),  # not a topic ucity reads
        measure("d2", 6, 6),
    ]
    await run(source, messages)

    assert source.batches == 1  # one batch, one commit
    assert sorted(mid for kind, mid in log if kind == "ack") == [1, 2, 3, 4, 5, 6]
    assert [entry for kind, entry in log if kind == "commit"] == [
        ("urn:ngsi-ld:Counter:d1", 1), ("urn:ngsi-ld:Counter:d2", 6)]
    totals = app.ingest.stats.snapshot(TENANT)["totals"]
    assert totals["measures"] == 2
    # The tenant's totals include the senders no tenant knows: the stranger and the topic ucity does not read.
    assert totals["reasons"] == {"malformed-json": 1, "type-mismatch": 1, "unknown-device": 2}


async def test_rejections_in_one_batch_are_counted_in_arrival_order(city: tuple[Ucity, list[tuple[str, Any]]]) -> None:
    """A measure's own rejected value and the garbage after it, in one batch: the device's latest
    rejection is the garbage, the later of the two."""
    app, log = city
    source = source_for(app, log, max_batch=100)
    await run(source, [
        Message("/k/d1/attrs", b'{"s": "many", "TimeInstant": "2026-05-01T00:00:01Z"}', 1),  # type mismatch
        Message("/k/d1/attrs/s", b"\xff\xfe", 2),  # not UTF-8: rejected before decoding, arrives after
    ])
    assert source.batches == 1
    counters = app.ingest.stats.device((TENANT, "k", "d1"))
    assert counters is not None and set(counters.reasons) == {"type-mismatch", "malformed-json"}
    assert counters.last_rejection is not None and counters.last_rejection["reason"] == "malformed-json"
    assert app.ingest.stats.totals.last_rejection == counters.last_rejection  # the totals show the latest too
    assert app.ingest.stats.snapshot()["totals"]["lastRejection"]["reason"] == "malformed-json"
    # a tenant's totals (GET /api/v1/ingest/stats sends the request's tenant) too; QA2 finding 8: always null
    assert app.ingest.stats.snapshot(TENANT)["totals"]["lastRejection"]["reason"] == "malformed-json"


async def test_messages_the_store_could_not_commit_are_not_acknowledged_and_the_connection_is_dropped(
        city: tuple[Ucity, list[tuple[str, Any]]], monkeypatch: pytest.MonkeyPatch) -> None:
    app, log = city
    source = source_for(app, log, max_batch=100)

    async def unavailable(writes: list[Any]) -> list[Any]:
        return [Unavailable("the store could not commit: disk I/O error") for _ in writes]

    monkeypatch.setattr(app.ingest.writer, "write", unavailable)
    await run(source, [measure("d1", 1, 1), Message("/k/d1/attrs", b"not json", 2), measure("d2", 3, 3)])

    assert [mid for kind, mid in log if kind == "ack"] == [2]  # only the garbage, which needs no commit
    assert source.not_committed == 2
    client = source._ack_client
    assert isinstance(client, FakeClient) and client._client.disconnects == 1  # the broker delivers them again
    assert not [entry for kind, entry in log if kind == "commit"]


def test_acknowledgements_of_a_batch_are_one_write_of_puback_packets() -> None:
    assert puback_packets([1, 258]) == b"\x40\x02\x00\x01" + b"\x40\x02\x01\x02"



async def test_messages_kept_by_the_broker_belong_to_the_new_connection(
        city: tuple[Ucity, list[tuple[str, Any]]]) -> None:
    """With a persistent session the broker sends what it kept right after CONNACK, before our
    SUBSCRIBE is answered: those messages are acknowledged on the new connection (tagged with the
    previous one, they were never acknowledged and the broker stopped delivering to the session)."""
    app, log = city
    source = MqttSource(app.ingest, MqttSettings(url="mqtt://127.0.0.1:1883"), max_batch=10)
    old = source._generation
    client = source._new_client()  # not connected: only what exists before CONNACK
    source._on_paho_message(Message("/k/d1/attrs", b'{"t": 1}', mid=7))
    (item,) = source._pending
    assert item.generation == source._generation != old
    assert source._ack_client is client
    source._ack_client = FakeClient(log)  # type: ignore[assignment]
    source._ack([item])
    assert [mid for kind, mid in log if kind == "ack"] == [7]


POISON = 666  # a `seq` value the patched writer below fails on, on every delivery


def failing_on_poison(app: Ucity, error: Exception) -> list[int]:
    """The writer raises `error` for any write holding a measure of seq POISON; returns the sizes of the writes."""
    write = app.ingest.writer.write
    sizes: list[int] = []

    async def writer(writes: list[Any]) -> list[Any]:
        sizes.append(len(writes))
        if any(o.attrs.get("seq", {}).get("value") == POISON for w in writes for o in w.observations):
            raise error
        return await write(writes)

    app.ingest.writer.write = writer  # type: ignore[method-assign]
    return sizes


async def test_a_batch_whose_commit_fails_is_committed_one_by_one_and_only_the_poison_is_rejected(
        city: tuple[Ucity, list[tuple[str, Any]]]) -> None:
    """A commit that raises something other than Unavailable would raise again on every delivery: the batch's
    messages are committed one at a time, the one that fails alone is rejected as internal-error and
    acknowledged, its neighbours (and the garbage among them) are committed, counted and acknowledged."""
    app, log = city
    source = source_for(app, log, max_batch=100)
    sizes = failing_on_poison(app, RuntimeError("a bug this message triggers"))
    await run(source, [measure("d1", 1, 1), Message("/k/d1/attrs", b"not json", 2), measure("d2", POISON % 60, 3),
                       Message("/k/d2/attrs", b'{"s": %d}' % POISON, 4), measure("d3", 5, 5), measure("d1", 6, 6)])

    assert sorted(mid for kind, mid in log if kind == "ack") == [1, 2, 3, 4, 5, 6]  # nothing held for ever
    assert source.not_committed == 0
    assert isinstance(source._ack_client, FakeClient) and source._ack_client._client.disconnects == 0
    assert sizes == [5, 1, 1, 1, 1, 1]  # the batch, then each of its five measures alone
    assert [entry for kind, entry in log if kind == "commit"] == [
        ("urn:ngsi-ld:Counter:d1", 1), ("urn:ngsi-ld:Counter:d2", POISON % 60), ("urn:ngsi-ld:Counter:d3", 5),
        ("urn:ngsi-ld:Counter:d1", 6)]
    totals = app.ingest.stats.snapshot(TENANT)["totals"]
    assert (totals["measures"], totals["reasons"]) == (4, {"malformed-json": 1, "internal-error": 1})
    counters = app.ingest.stats.device((TENANT, "k", "d2"))
    assert counters is not None and counters.last_rejection is not None
    assert counters.last_rejection["reason"] == "internal-error"
    assert "RuntimeError" in counters.last_rejection["detail"]
    # The garbage (d1) is counted once, in arrival order: before d1's last measure was accepted.
    d1 = app.ingest.stats.device((TENANT, "k", "d1"))
    assert d1 is not None and (d1.measures, d1.rejected) == (2, 1)


async def test_a_batch_whose_commit_raises_unavailable_is_still_held_for_redelivery(
        city: tuple[Ucity, list[tuple[str, Any]]]) -> None:
    """The store that cannot take a batch now (Unavailable raised, not a failure of the messages): nothing is
    rejected, the messages are left unacknowledged and the connection dropped, as before."""
    app, log = city
    source = source_for(app, log, max_batch=100)
    sizes = failing_on_poison(app, Unavailable("12000 writes are waiting for a commit; retry shortly"))
    await run(source, [measure("d1", 1, 1), Message("/k/d2/attrs", b'{"s": %d}' % POISON, 2)])

    assert [mid for kind, mid in log if kind == "ack"] == []
    assert sizes == [2]  # not retried one by one
    assert source.not_committed == 2
    assert isinstance(source._ack_client, FakeClient) and source._ack_client._client.disconnects == 1
    assert app.ingest.stats.snapshot(TENANT)["totals"]["rejected"] == 0


async def test_a_message_failing_alone_on_an_unavailable_store_is_held_and_its_neighbours_committed(
        city: tuple[Ucity, list[tuple[str, Any]]]) -> None:
    app, log = city
    source = source_for(app, log, max_batch=100)
    write = app.ingest.writer.write
    calls = 0

    async def writer(writes: list[Any]) -> list[Any]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("the batch fails")
        if any(w.profile.device_id == "d2" for w in writes):
            raise Unavailable("the store is not running")
        return await write(writes)

    app.ingest.writer.write = writer  # type: ignore[method-assign]
    await run(source, [measure("d1", 1, 1), measure("d2", 2, 2), measure("d3", 3, 3)])

    assert sorted(mid for kind, mid in log if kind == "ack") == [1, 3]
    assert source.not_committed == 1
    assert isinstance(source._ack_client, FakeClient) and source._ack_client._client.disconnects == 1
    assert app.ingest.stats.snapshot(TENANT)["totals"]["rejected"] == 0


async def test_a_write_the_store_refuses_is_counted_as_not_written_and_acknowledged(
        city: tuple[Ucity, list[tuple[str, Any]]], monkeypatch: pytest.MonkeyPatch) -> None:
    """A write outcome that is an error other than Unavailable would be refused again on redelivery: the
    message is acknowledged, and its values are counted as rejected (reason not-written), not dropped."""
    app, log = city
    source = source_for(app, log, max_batch=100)
    write = app.ingest.writer.write

    async def refusing(writes: list[Any]) -> list[Any]:
        outcomes = await write([w for w in writes if w.profile.device_id != "d2"])
        return [BadRequest("attribute seq is a Relationship") if w.profile.device_id == "d2" else outcomes.pop(0)
                for w in writes]

    monkeypatch.setattr(app.ingest.writer, "write", refusing)
    await run(source, [measure("d1", 1, 1), measure("d2", 2, 2)])

    assert sorted(mid for kind, mid in log if kind == "ack") == [1, 2]
    assert source.not_committed == 0
    counters = app.ingest.stats.device((TENANT, "k", "d2"))
    assert counters is not None and (counters.measures, counters.rejected) == (0, 1)
    assert counters.reasons == {"not-written": 1}
    assert counters.last_rejection == {
        "reason": "not-written", "attribute": "seq",
        "detail": "measure of 2026-05-01T00:00:02.000000Z not written: attribute seq is a Relationship"}
    assert app.ingest.stats.snapshot(TENANT)["totals"]["reasons"] == {"not-written": 1}


async def test_text_with_a_nul_character_is_rejected_not_held_for_redelivery(
        city: tuple[Ucity, list[tuple[str, Any]]]) -> None:
    """U+0000 in a text: PostgreSQL fails the whole store call on it, every time, and the store reports that as
    unavailable, so the batch (every device's messages in it) was held for redelivery without end. Decode
    rejects it (invalid-text); the rest of the message and its neighbours are committed and acknowledged."""
    app, log = city
    source = source_for(app, log, max_batch=100)
    await run(source, [measure("d1", 1, 1), Message("/k/d2/attrs", b'{"note": "a\\u0000b", "s": 2}', 2),
                       Message("/k/d3/attrs", b'{"note": ["\\u0000"]}', 3), measure("d1", 4, 4)])

    assert sorted(mid for kind, mid in log if kind == "ack") == [1, 2, 3, 4]
    assert source.not_committed == 0
    assert isinstance(source._ack_client, FakeClient) and source._ack_client._client.disconnects == 0
    assert [entry for kind, entry in log if kind == "commit"] == [
        ("urn:ngsi-ld:Counter:d1", 1), ("urn:ngsi-ld:Counter:d2", 2), ("urn:ngsi-ld:Counter:d1", 4)]
    assert app.ingest.stats.snapshot(TENANT)["totals"]["reasons"] == {"invalid-text": 2}
