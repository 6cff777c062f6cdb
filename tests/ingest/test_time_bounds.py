"""Out-of-range and far-future times in ingest (QA findings 1-3), on a real platform with a fake clock.

* A measure time out of range (0001-01-01T00:00:00+09:00, 9999-12-31T23:59:59Z) or more than
  `ingest.max_future_s` ahead of the platform clock is `invalid-time`; the other fields are kept
  with the receive time. A `DateTime` value out of range is rejected per field. Never a 500.
* MQTT: one such message (or one ucity fails on) never drops its batch: the valid messages are
  committed, counted and acknowledged, the bad one rejected with its reason.
* Health: a stored far-future last report (written before these bounds) does not stop the start.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.ingest.support import FakeClient, Message, run, source_for
from ucity.app import Ucity
from ucity.core.bus import Context, EntityChange
from ucity.core.clock import MAX_INSTANT, FakeClock, to_iso, to_micros
from ucity.core.config import Settings, load_settings
from ucity.core.errors import Unavailable
from ucity.core.http import Req, Resp
from ucity.ingest import DeviceStatusChanged
from ucity.ingest.decode import INTERNAL_ERROR, INVALID_TIME, DecodeError, decode_payload, iso_time, parse_time
from ucity.ingest.health import LONGEST_INTERVAL
from ucity.ingest.model import AttrSpec, Device, DeviceProfile, ServiceGroup, build_profile
from ucity.ingest.writer import attrs_op
from ucity.ngsild.ops import merge_op
from ucity.store.base import Mutation

START = datetime(2026, 12, 6, 23, 0, tzinfo=UTC)
START_ISO = "2026-12-06T23:00:00.000000Z"
H = {"content-type": "application/json", "fiware-service": "guro"}
TENANT = "guro"
V = "https://uri.etsi.org/ngsi-ld/default-context/v"
D = "https://uri.etsi.org/ngsi-ld/default-context/d"
X = "https://uri.etsi.org/ngsi-ld/default-context/x"
BATTERY = "https://uri.etsi.org/ngsi-ld/default-context/batteryLevel"
OUT_OF_RANGE = ["9999-12-31T23:59:59Z", "0001-01-01T00:00:00+09:00", "9999-12-31T23:59:59-09:00",
                "0001-01-01T00:00:00Z"]


# -- decode (pure) ------------------------------------------------------------------------------------
def _profile():  # type: ignore[no-untyped-def]
    group = ServiceGroup("t", "/", "k1")
    device = Device("t", "/", "d1", "k1", "urn:ngsi-ld:Thing:d1", "Thing",
                    attributes=(AttrSpec("v", "v", "Number"), AttrSpec("d", "d", "DateTime")))
    return build_profile(device, group)


@pytest.mark.parametrize("text", OUT_OF_RANGE)
def test_decode_refuses_out_of_range_times_with_invalid_time(text: str) -> None:
    for parse in (parse_time, iso_time):
        with pytest.raises(DecodeError) as raised:
            parse(text)
        assert raised.value.reason == INVALID_TIME and "out of range" in raised.value.detail
    decoded = decode_payload({"v": 9999, "TimeInstant": text, "d": text}, _profile(), START)
    (observation,) = decoded.observations
    assert observation.observed_at == START_ISO  # v is kept, with the receive time
    assert observation.attrs == {"v": {"type": "Property", "value": 9999, "observedAt": START_ISO}}
    assert sorted((r.reason, r.field) for r in decoded.rejections) == [(INVALID_TIME, "TimeInstant"),
                                                                       (INVALID_TIME, "d")]


def test_decode_refuses_a_time_after_latest_and_keeps_the_fields() -> None:
    latest = to_iso(START + timedelta(days=1))
    later = decode_payload({"v": 1, "observedAt": "2026-12-08T00:00:00Z"}, _profile(), START, latest=latest)
    assert later.observations[0].observed_at == START_ISO
    (rejection,) = later.rejections
    assert (rejection.reason, rejection.field) == (INVALID_TIME, "observedAt")
    assert "ingest.max_future_s" in rejection.detail
    ahead = decode_payload({"v": 1, "TimeInstant": "2026-12-07T22:59:59+09:00"}, _profile(), START, latest=latest)
    assert ahead.observations[0].observed_at == "2026-12-07T13:59:59.000000Z" and not ahead.rejections
    # A DateTime value is not a measure time: a future one (a due date, say) is taken.
    due = decode_payload({"d": "2030-01-01T00:00:00Z"}, _profile(), START, latest=latest)
    assert due.observations[0].attrs["d"]["value"] == {"@type": "DateTime", "@value": "2030-01-01T00:00:00.000000Z"}


# -- a platform --------------------------------------------------------------------------------------
def make_settings(tmp_path: Path, **ingest: Any) -> Settings:
    return load_settings(environment="test", data_dir=str(tmp_path / "data"), store={"group_commit_ms": 1.0},
                         ingest={"intervals_by_type": {"Thing": 60.0}, **ingest})


@pytest.fixture
async def city(tmp_path: Path) -> AsyncIterator[tuple[Ucity, FakeClock]]:
    clock = FakeClock(START)
    app = Ucity(make_settings(tmp_path), clock=clock)
    await app.start()
    try:
        await provision(app)
        yield app, clock
    finally:
        await app.stop()


async def call(handler: Callable[[Req], Awaitable[Resp]], method: str, path: str, body: Any = None,
               **params: str) -> Resp:
    req = Req(method, path, params={k: [v] for k, v in params.items()}, headers=dict(H),
              body=orjson.dumps(body) if body is not None else b"")
    return await handler(req)


async def provision(app: Ucity) -> None:
    groups = {"services": [{"apikey": "pk", "entity_type": "Thing", "autoprovision": True,
                            "attributes": [{"object_id": "v", "name": "v", "type": "Number"},
                                           {"object_id": "d", "name": "d", "type": "DateTime"},
                                           {"object_id": "b", "name": "batteryLevel", "type": "Number"}]}]}
    assert (await call(app.ingest.http.create_groups, "POST", "/iot/services", groups)).status == 201


async def post(app: Ucity, device: str, body: Any) -> Resp:
    return await call(app.ingest.http.measure, "POST", "/iot/json", body, k="pk", i=device)


async def current(app: Ucity, device: str, attr: str) -> dict[str, Any]:
    doc = await app.store.get_entity(TENANT, f"urn:ngsi-ld:Thing:{device}")
    assert doc is not None
    instance: dict[str, Any] = doc["attrs"][attr][0]
    return instance


def reasons(app: Ucity) -> dict[str, int]:
    counts: dict[str, int] = app.ingest.stats.snapshot(TENANT)["totals"]["reasons"]
    return counts


# -- HTTP ------------------------------------------------------------------------------------------
async def test_http_measure_with_an_out_of_range_time_is_200_with_invalid_time(city: tuple[Ucity, FakeClock]) -> None:
    app, _ = city
    previous = ""
    for n, text in enumerate(OUT_OF_RANGE):  # QA finding 3: 500, and the valid field lost
        response = await post(app, "d1", {"v": n, "TimeInstant": text})
        assert response.status == 200, response.body
        assert response.body["accepted"] == 1
        assert [(r["reason"], r["attribute"]) for r in response.body["rejected"]] == [(INVALID_TIME, "TimeInstant")]
        got = await current(app, "d1", V)
        assert got | {"createdAt": 0, "modifiedAt": 0, "observedAt": 0} == {
            "type": "Property", "value": n, "observedAt": 0, "createdAt": 0, "modifiedAt": 0}
        # the receive time: the frozen clock's, each measure a microsecond after the one before (its own instant)
        assert previous < got["observedAt"] < to_iso(START + timedelta(seconds=1)) and got["observedAt"] >= START_ISO
        previous = got["observedAt"]
    # A DateTime attribute out of range: that field is rejected, x (an untyped field) is committed.
    response = await post(app, "d1", {"d": "0001-01-01T00:00:00+09:00", "x": 1})
    assert response.status == 200, response.body
    assert [(r["reason"], r["attribute"]) for r in response.body["rejected"]] == [(INVALID_TIME, "d")]
    assert (await current(app, "d1", X))["value"] == 1
    assert reasons(app) == {INVALID_TIME: len(OUT_OF_RANGE) + 1}


async def test_a_far_future_time_neither_sticks_nor_freezes_the_current_value(city: tuple[Ucity, FakeClock]) -> None:
    """QA finding 1: 9999 became the current observedAt for ever; every later real measure went to history only."""
    app, clock = city
    response = await post(app, "d1", {"b": 0.3, "TimeInstant": "9999-12-31T23:59:59Z"})
    assert response.body["rejected"][0]["reason"] == INVALID_TIME
    response = await post(app, "d1", {"b": 0.4, "TimeInstant": to_iso(START + timedelta(days=1, seconds=1))})
    assert response.body["rejected"][0]["reason"] == INVALID_TIME  # more than max_future_s (1 day) ahead
    ahead = to_iso(START + timedelta(hours=3))  # a device clock 3 hours fast: taken
    response = await post(app, "d1", {"b": 0.5, "TimeInstant": ahead})
    assert response.body["rejected"] == []
    assert await current(app, "d1", BATTERY) | {"createdAt": 0, "modifiedAt": 0} == {
        "type": "Property", "value": 0.5, "observedAt": ahead, "createdAt": 0, "modifiedAt": 0}
    clock.advance(timedelta(hours=4))
    await post(app, "d1", {"b": 0.6})  # a real measure later than all of them becomes the current value
    assert (await current(app, "d1", BATTERY))["value"] == 0.6
    assert reasons(app) == {INVALID_TIME: 2}


async def test_a_far_future_time_written_through_ngsi_ld_does_not_freeze_the_device(
        city: tuple[Ucity, FakeClock]) -> None:
    """NGSI-LD takes any time in range: an observedAt of 9000 written there must not turn every later measure of
    the device into history only. A current time beyond ingest.max_future_s does not make a measure late."""
    app, clock = city
    assert (await post(app, "d1", {"b": 0.3})).body["rejected"] == []
    far = "9000-01-01T00:00:00.000000Z"
    (written,) = await app.store.mutate(TENANT, [Mutation("urn:ngsi-ld:Thing:d1", merge_op(
        {"attrs": {BATTERY: [{"type": "Property", "value": 0.1, "observedAt": far}]}}))], Context(actor="client"))
    assert not isinstance(written, Exception)
    assert (await current(app, "d1", BATTERY))["observedAt"] == far
    clock.advance(timedelta(minutes=1))
    assert (await post(app, "d1", {"b": 0.4})).body["rejected"] == []
    assert (await current(app, "d1", BATTERY))["value"] == 0.4  # the device's measure is current again
    # within the horizon, an older measure still goes to history only (a device emptying its buffer)
    ahead = to_iso(START + timedelta(hours=5))
    assert (await post(app, "d1", {"b": 0.5, "TimeInstant": ahead})).body["rejected"] == []
    assert (await post(app, "d1", {"b": 0.45, "TimeInstant": to_iso(START + timedelta(hours=1))})).body["rejected"] == []
    assert await current(app, "d1", BATTERY) | {"createdAt": 0, "modifiedAt": 0} == {
        "type": "Property", "value": 0.5, "observedAt": ahead, "createdAt": 0, "modifiedAt": 0}


async def test_max_future_is_a_setting(tmp_path: Path) -> None:
    app = Ucity(make_settings(tmp_path, max_future_s=60.0), clock=FakeClock(START))
    await app.start()
    try:
        await provision(app)
        response = await post(app, "d1", {"v": 1, "TimeInstant": to_iso(START + timedelta(seconds=61))})
        assert response.body["rejected"][0]["reason"] == INVALID_TIME
        response = await post(app, "d1", {"v": 2, "TimeInstant": to_iso(START + timedelta(seconds=60))})
        assert response.body["rejected"] == []
    finally:
        await app.stop()


async def test_a_payload_decode_fails_on_is_rejected_alone(city: tuple[Ucity, FakeClock],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The service's safety net: an exception while decoding one payload (a bug) rejects that payload as
    internal-error; the other payloads of the same call are committed."""
    import ucity.ingest.service as service_module

    app, _ = city
    real = service_module.decode_payload

    def flaky(payload: Any, *args: Any, **kwargs: Any) -> Any:
        if payload.get("v") == 13:
            raise OverflowError("date value out of range")
        return real(payload, *args, **kwargs)

    monkeypatch.setattr(service_module, "decode_payload", flaky)
    resolved = [app.ingest.resolve("pk", f"d{n}") for n in (1, 2)]
    from ucity.ingest.service import Received

    results = await app.ingest.ingest([Received(resolved[0], {"v": 13}, "mqtt"), Received(resolved[1], {"v": 2}, "mqtt")])
    assert [r.reason for r in results[0].decoded.rejections] == [INTERNAL_ERROR]
    assert results[1].decoded.values == 1 and not isinstance(results[1].outcome, Exception)
    assert (await current(app, "d2", V))["value"] == 2
    assert reasons(app) == {INTERNAL_ERROR: 1}


# -- MQTT (the broker replaced by a fake paho client that records acknowledgements) -------------------
def acks(log: list[tuple[str, Any]]) -> list[int]:
    return sorted(mid for kind, mid in log if kind == "ack")


def qa_burst() -> list[Message]:
    """/tmp/qa/repro_mqtt_poison.sh: 200 valid measures of one device, the 101st message the poison."""
    lines = []
    for i in range(200):
        if i == 100:
            lines.append('{"v": 9999, "TimeInstant": "0001-01-01T00:00:00+09:00"}')
        lines.append(f'{{"v": {i}, "TimeInstant": "2026-12-01T00:{i // 60:02d}:{i % 60:02d}Z"}}')
    return [Message("/pk/dev-1/attrs", line.encode(), n + 1) for n, line in enumerate(lines)]


async def test_qa_mqtt_poison_message_does_not_lose_its_batch(city: tuple[Ucity, FakeClock]) -> None:
    app, _ = city
    log: list[tuple[str, Any]] = []
    committed: list[Any] = []

    def on_commit(context: Context, changes: tuple[EntityChange, ...]) -> None:
        committed.extend(i["value"] for change in changes for iri, i in change.instances if iri == V)

    app.store.on_commit(on_commit)
    source = source_for(app, log)  # max_batch 500: all 201 messages in one batch, as in the QA run
    messages = qa_burst()
    await run(source, messages)

    assert acks(log) == [m.mid for m in messages]  # all acknowledged, after their commit
    assert sorted(committed) == sorted([*range(200), 9999])  # every valid reading; the poison's v at receive time
    health = source.health()
    assert (health["received"], health["processed"], health["notCommitted"]) == (201, 201, 0)
    device = app.ingest.stats.device((TENANT, "pk", "dev-1"))
    assert device is not None and device.reasons == {INVALID_TIME: 1}
    assert device.last_rejection is not None and "out of range" in device.last_rejection["detail"]
    totals = app.ingest.stats.snapshot(TENANT)["totals"]
    assert (totals["measures"], totals["accepted"]) == (201, 201)
    assert (await current(app, "dev-1", V))["value"] == 9999  # received last (at START), so the newest
    assert START_ISO <= (await current(app, "dev-1", V))["observedAt"] < to_iso(START + timedelta(seconds=1))


async def test_mqtt_a_message_ucity_fails_on_is_rejected_alone(city: tuple[Ucity, FakeClock],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    app, _ = city
    log: list[tuple[str, Any]] = []
    source = source_for(app, log)
    real = source._measure

    def measure(topic: Any, payload: bytes, rejected: Any) -> Any:
        if payload == b'{"v": 13}':
            raise RuntimeError("a bug")
        return real(topic, payload, rejected)

    monkeypatch.setattr(source, "_measure", measure)
    messages = [Message("/pk/d1/attrs", b'{"v": 1}', 1), Message("/pk/d1/attrs", b'{"v": 13}', 2),
                Message("/pk/d2/attrs", b'{"v": 3}', 3)]
    await run(source, messages)
    assert acks(log) == [1, 2, 3]  # the poison is acknowledged too: redelivering it would fail again
    assert (await current(app, "d1", V))["value"] == 1 and (await current(app, "d2", V))["value"] == 3
    device = app.ingest.stats.device((TENANT, "pk", "d1"))
    assert device is not None and device.reasons == {INTERNAL_ERROR: 1}
    assert source.not_committed == 0


async def test_mqtt_a_batch_whose_preparation_fails_is_prepared_message_by_message(
        city: tuple[Ucity, FakeClock], monkeypatch: pytest.MonkeyPatch) -> None:
    """`service.prepare` failing for the batch (autoprovisioning writes to the store): each measure is prepared
    alone; one the store cannot take now is held for redelivery (unacknowledged, reconnect), one ucity fails
    on is rejected as internal-error, the others are committed and acknowledged."""
    app, _ = city
    log: list[tuple[str, Any]] = []
    source = source_for(app, log)
    real = app.ingest.prepare
    calls: list[int] = []

    async def prepare(items: list[Any]) -> Any:
        calls.append(len(items))
        if len(items) > 1:
            raise RuntimeError("the batch fails")
        if items[0].payload == {"v": 2}:
            raise Unavailable("writes are waiting for a commit; retry shortly")
        if items[0].payload == {"v": 4}:
            raise ValueError("a bug")
        return await real(items)

    monkeypatch.setattr(app.ingest, "prepare", prepare)
    messages = [Message("/pk/d1/attrs", b'{"v": 1}', 1), Message("/pk/d2/attrs", b'{"v": 2}', 2),
                Message("/pk/d3/attrs", b"not json", 3), Message("/pk/d4/attrs", b'{"v": 4}', 4),
                Message("/pk/d5/attrs", b'{"v": 5}', 5)]
    await run(source, messages)
    assert calls == [4, 1, 1, 1, 1]
    assert acks(log) == [1, 3, 4, 5]  # 2 is left for the broker to deliver again
    client = source._ack_client
    assert isinstance(client, FakeClient) and client._client.disconnects == 1
    assert source.not_committed == 1 and source.processed == 5
    assert (await current(app, "d1", V))["value"] == 1 and (await current(app, "d5", V))["value"] == 5
    assert reasons(app) == {"malformed-json": 1, INTERNAL_ERROR: 1}


# -- health -----------------------------------------------------------------------------------------
async def test_a_stored_far_future_report_does_not_stop_the_start(tmp_path: Path, store_backend: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """QA finding 1: data written before the bounds (an observedAt of 9999-12-31) made `_deadline` raise
    OverflowError at start, and the server stayed down. Now the start goes on (the last report is the write time;
    an instance without one whose observedAt lies ahead counts as now)."""
    clock = FakeClock(START)
    first = Ucity(make_settings(tmp_path), clock=clock)
    await first.start()
    try:
        await provision(first)
        assert (await post(first, "d1", {"v": 1})).status == 200
        # Written as before the fix: the stores' time conversion then had no bounds.
        import ucity.store.postgres
        import ucity.store.sqlite

        def unbounded(text: str) -> int:
            return to_micros(datetime.fromisoformat(text.replace("Z", "+00:00")))

        with monkeypatch.context() as patch:
            patch.setattr(ucity.store.sqlite, "iso_micros", unbounded)
            patch.setattr(ucity.store.postgres, "iso_micros", unbounded)
            profile = first.ingest.registry.profile("pk", "d1")
            assert profile is not None
            outcome = await first.ingest.writer.apply(profile, attrs_op(
                {"batteryLevel": {"type": "Property", "value": 0.3, "observedAt": "9999-12-31T23:59:59.000000Z"}}))
            assert not isinstance(outcome, Exception), outcome
    finally:
        await first.stop()

    clock.advance(30)
    events: list[DeviceStatusChanged] = []

    async def collect(event: DeviceStatusChanged) -> None:
        events.append(event)

    second = Ucity(make_settings(tmp_path), clock=clock)
    second.platform.bus.subscribe(DeviceStatusChanged, collect)
    await second.start()  # raised OverflowError before
    try:
        record = second.ingest.monitor.get(TENANT, "d1")
        assert record is not None and record.status == "online"
        # The last report is when it was written (QA4 F4), not the far-future observedAt it carries.
        assert record.last_reported == START
        clock.advance(179)
        await second.ingest.monitor.drain()
        assert events == []
        clock.advance(1)  # 3 intervals of 60 s after the start (the write was before: QA12 F3)
        await second.ingest.monitor.drain()
        assert [(e.device_id, e.status) for e in events] == [("d1", "offline")]
        summary = second.ingest.monitor.summary(TENANT)
        assert summary["devices"][0]["lastReported"] == to_iso(START)
    finally:
        await second.stop()


async def test_health_deadlines_saturate_instead_of_overflowing(city: tuple[Ucity, FakeClock]) -> None:
    app, clock = city
    monitor = app.ingest.monitor
    huge = build_profile(Device(TENANT, "/", "h1", "pk", "urn:ngsi-ld:Thing:h1", "Thing", expected_interval_s=1e15),
                         None)
    assert monitor.interval_of(huge) == LONGEST_INTERVAL  # timedelta(seconds=1e15) raised OverflowError
    assert (await post(app, "d1", {"v": 1})).status == 200
    record = monitor.get(TENANT, "d1")
    assert record is not None
    record.interval = LONGEST_INTERVAL
    record.last_reported = MAX_INSTANT - timedelta(days=1)
    assert monitor._deadline(record) == MAX_INSTANT  # instead of OverflowError in a timer
    monitor._check(record)  # re-arms at the saturated deadline
    clock.advance(timedelta(days=1))
    await monitor.drain()
    assert record.status == "online"


def test_the_last_report_is_the_newest_write_time_and_observed_at_only_without_one() -> None:
    from ucity.ingest.health import _last_observed

    profile = DeviceProfile(tenant=TENANT, service_path="/", apikey="pk", device_id="d1",
                            entity_id="urn:ngsi-ld:Device:d1", entity_type="Device")
    base = "https://uri.etsi.org/ngsi-ld/default-context/"
    doc = {"attrs": {
        base + "a": [{"type": "Property", "value": 1, "observedAt": "2026-01-01T00:00:00.000000Z",
                      "modifiedAt": "2026-05-01T00:00:05.000000Z"}],
        base + "b": [{"type": "Property", "value": 2, "observedAt": "9999-12-31T23:59:59.000000Z",
                      "modifiedAt": "2026-05-01T00:00:01.000000Z"}],
        base + "deviceState": [{"type": "Property", "value": "online", "observedAt": "2026-06-01T00:00:00.000000Z",
                                "modifiedAt": "2026-06-01T00:00:00.000000Z"}]}}
    assert _last_observed(doc, profile) == datetime(2026, 5, 1, 0, 0, 5, tzinfo=UTC)
    old = {"attrs": {base + "a": [{"type": "Property", "value": 1, "observedAt": "2026-05-01T00:00:07.000000Z"}]}}
    assert _last_observed(old, profile) == datetime(2026, 5, 1, 0, 0, 7, tzinfo=UTC)  # written before modifiedAt
