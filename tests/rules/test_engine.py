"""The rules engine on a real platform: SQLite store, the commit publisher, a fake clock.

Entities are written through the store's one write path (`store.mutate` with the NGSI-LD
operations), so the engine sees exactly what a device reading or an NGSI-LD PATCH produces.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ucity.app import Ucity
from ucity.core.bus import Context, Event
from ucity.core.clock import FakeClock, parse_iso, to_iso
from ucity.core.config import Settings, load_settings
from ucity.ngsild.context import core_context
from ucity.ngsild.ops import append_op, delete_op
from ucity.rules.events import RuleCleared, RuleMatched, RuleSpike
from ucity.rules.model import Rule
from ucity.store.base import Mutation

from .support import SEOUL, hours, inactivity_rule, kst, tilt_rule

TENANT = "urn:ngsi-ld:tenant:default"
SENSOR = "urn:ngsi-ld:StructuralSensor:guro-0001"
BUILDING = "urn:ngsi-ld:Building:guro-b1"
HOME_DEVICE = "urn:ngsi-ld:CareDevice:h7-motion"
START = kst(2026, 3, 2, 8)  # 08:00 KST
CTX = core_context()


def iri(term: str) -> str:
    return CTX.expand_term(term)


def make_settings(tmp_path: Path) -> Settings:
    return load_settings(environment="test", data_dir=str(tmp_path / "data"), store={"group_commit_ms": 1.0})


@dataclass
class City:
    app: Ucity
    clock: FakeClock
    events: list[Event] = field(default_factory=list)

    def of(self, kind: type[Event]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    async def write(self, entity_id: str, entity_type: str, context: Context | None = None,
                    observed: datetime | None = None, **attrs: Any) -> Context:
        """Append/overwrite attributes (creating the entity), as a device measure does."""
        at = to_iso(observed or self.clock.now())
        doc: dict[str, Any] = {"id": entity_id, "type": [CTX.expand_type(entity_type)], "attrs": {}}
        for name, value in attrs.items():
            if name == "location":
                instance = {"type": "GeoProperty", "value": value}
            elif name == "controlledAsset":
                instance = {"type": "Relationship", "object": value}
            else:
                instance = {"type": "Property", "value": value, "observedAt": at}
            doc["attrs"][iri(name)] = [instance]
        ctx = context or Context(actor="test")
        [outcome] = await self.app.store.mutate(TENANT, [Mutation(entity_id, append_op(doc, create_if_missing=True))],
                                                ctx)
        assert not isinstance(outcome, Exception), outcome
        await self.app.publisher.drain()
        return ctx

    async def tilt(self, value: float, minutes: float = 10) -> Context:
        """Move the clock on, then a tilt reading of the sensor (observedAt = now)."""
        self.clock.advance(timedelta(minutes=minutes))
        await self.app.rules.drain()
        return await self.write(SENSOR, "StructuralSensor", tiltX=value)

    async def advance(self, delta: timedelta) -> None:
        self.clock.advance(delta)
        await self.app.rules.drain()

    async def snapshot(self, rule_id: str, entity_id: str) -> dict[str, Any] | None:
        docs = {key: doc for _, key, doc in await self.app.store.list_docs("rule-state")}
        return docs.get(f"{rule_id}|{entity_id}")


async def open_city(tmp_path: Path, clock: FakeClock, rules: list[Rule]) -> City:
    app = Ucity(make_settings(tmp_path), clock=clock)
    app.rules.register_defaults(rules)
    city = City(app, clock)

    async def collect(event: Event) -> None:
        city.events.append(event)

    for kind in (RuleMatched, RuleCleared, RuleSpike):
        app.platform.bus.subscribe(kind, collect)
    await app.start()
    return city


@pytest.fixture
async def shm(tmp_path: Path) -> AsyncIterator[City]:
    city = await open_city(tmp_path, FakeClock(START), [tilt_rule(samples=3)])
    try:
        await city.write(SENSOR, "StructuralSensor", tiltX=0.0, location={"type": "Point", "coordinates": [126.88, 37.49]},
                         controlledAsset=BUILDING)
        yield city
    finally:
        await city.app.stop()


# -- acceptance: the tilt channel ---------------------------------------------------------------
async def test_tilt_serious_for_three_samples_raises_exactly_once_then_clears(shm: City) -> None:
    await shm.tilt(0.007)
    await shm.tilt(0.0071)
    assert shm.of(RuleMatched) == []
    ctx = await shm.tilt(0.0072)
    [matched] = shm.of(RuleMatched)
    assert (matched.tenant, matched.rule_id, matched.entity_id, matched.level) == (TENANT, "shm-tilt-x", SENSOR, "serious")
    assert matched.entity_types == ("StructuralSensor",) and matched.kind == "safety"
    assert matched.category == "facility-safety" and matched.parent_id == BUILDING
    assert matched.location == {"type": "Point", "coordinates": [126.88, 37.49]}
    assert matched.observed_at == to_iso(START + timedelta(minutes=30))
    assert matched.evidence["samples"] == 3 and matched.evidence["value"] == 0.0072
    assert matched.description == {"ko": "기울기 변화: 심각", "en": "Tilt change: Serious"}
    assert matched.context.parent_id == ctx.id  # traceable to the write that caused it
    snapshot = await shm.snapshot("shm-tilt-x", SENSOR)
    assert snapshot is not None and snapshot["state"]["level"] == "serious"  # written at once, no timer needed

    for value in (0.0075, 0.0068, 0.0070, 0.0063):  # 0.0063 is inside the band (clear at 1/150 - 0.0005)
        await shm.tilt(value)
    assert len(shm.of(RuleMatched)) == 1 and shm.of(RuleCleared) == []

    await shm.tilt(0.0002)  # below every clear edge
    [cleared] = shm.of(RuleCleared)
    assert (cleared.rule_id, cleared.entity_id, cleared.evidence["previous"]) == ("shm-tilt-x", SENSOR, "serious")
    assert cleared.observed_at == to_iso(START + timedelta(minutes=80))
    assert len(shm.of(RuleMatched)) == 1 and shm.of(RuleSpike) == []


async def test_two_sample_spike_is_published_as_a_spike_not_a_match(shm: City) -> None:
    await shm.tilt(0.007)
    await shm.tilt(0.0075)
    await shm.tilt(0.0)
    [spike] = shm.of(RuleSpike)
    assert (spike.level, spike.evidence["samples"], spike.evidence["peak"]) == ("serious", 2, 0.0075)
    assert shm.of(RuleMatched) == [] and shm.of(RuleCleared) == []


async def test_readings_older_than_the_newest_evaluated_are_ignored(shm: City) -> None:
    shm.clock.advance(timedelta(hours=1))
    base = shm.clock.now()
    for minutes_ago in (10, 30, 20):  # the last two arrive late
        await shm.write(SENSOR, "StructuralSensor", observed=base - timedelta(minutes=minutes_ago), tiltX=0.007)
    assert shm.of(RuleMatched) == []
    state = shm.app.rules.state(TENANT, "shm-tilt-x", SENSOR)
    assert state is not None and state.pending["serious"].samples == 1
    for minutes_ago in (5, 0):
        await shm.write(SENSOR, "StructuralSensor", observed=base - timedelta(minutes=minutes_ago), tiltX=0.007)
    [matched] = shm.of(RuleMatched)
    assert matched.observed_at == to_iso(base) and matched.evidence["heldSince"] == to_iso(base - timedelta(minutes=10))


async def test_other_types_and_attributes_are_not_evaluated(shm: City) -> None:
    before = shm.app.rules.stats["observations"]
    await shm.write(SENSOR, "StructuralSensor", temperature=0.9)
    await shm.write("urn:ngsi-ld:Streetlight:s1", "Streetlight", tiltX=0.9)
    assert shm.app.rules.stats["observations"] == before and shm.events == []


async def test_deleting_the_entity_clears_its_matches(shm: City) -> None:
    for _ in range(3):
        await shm.tilt(0.007)
    assert [m.level for m in shm.of(RuleMatched)] == ["serious"]
    await shm.app.store.mutate(TENANT, [Mutation(SENSOR, delete_op(SENSOR))], Context())
    await shm.app.publisher.drain()
    [cleared] = shm.of(RuleCleared)
    assert cleared.evidence["reason"] == "entity-deleted"
    assert await shm.snapshot("shm-tilt-x", SENSOR) is None
    assert shm.app.rules.state(TENANT, "shm-tilt-x", SENSOR) is None


async def test_disabling_a_rule_clears_its_matches_and_stops_it(shm: City) -> None:
    for _ in range(3):
        await shm.tilt(0.007)
    await shm.app.rules.set_enabled(TENANT, "shm-tilt-x", False)
    [cleared] = shm.of(RuleCleared)
    assert cleared.evidence["reason"] == "rule-disabled"
    for _ in range(3):
        await shm.tilt(0.007)
    assert len(shm.of(RuleMatched)) == 1


async def test_a_tenant_override_replaces_the_default_there_only(shm: City) -> None:
    await shm.app.rules.create(TENANT, tilt_rule(samples=1))
    await shm.tilt(0.007)
    assert [m.level for m in shm.of(RuleMatched)] == ["serious"]  # one sample is enough now
    rule, origin = shm.app.rules.effective(TENANT, "shm-tilt-x") or (None, "")
    assert origin == "user" and rule is not None and rule.tenant == TENANT
    assert rule.persistence is not None and rule.persistence.samples == 1
    assert shm.app.rules.effective("urn:ngsi-ld:tenant:mapo", "shm-tilt-x") == (tilt_rule(samples=3), "default")
    await shm.app.rules.delete(TENANT, "shm-tilt-x")  # the default shows through again, re-evaluated (QA9 F1)
    assert shm.of(RuleCleared) == []  # the latest tilt still breaches serious under the default: the match stays
    state = shm.app.rules.state(TENANT, "shm-tilt-x", SENSOR)
    assert state is not None and state.level == "serious"
    assert shm.app.rules.effective(TENANT, "shm-tilt-x") == (tilt_rule(samples=3), "default")


async def test_routine_state_is_snapshotted_in_batches(tmp_path: Path) -> None:
    city = await open_city(tmp_path, FakeClock(START), [inactivity_rule(sleep=False)])
    try:
        await city.write(HOME_DEVICE, "CareDevice", motionCount=1)
        first = await city.snapshot("care-inactivity", HOME_DEVICE)
        assert first is not None  # a new timer: written at once
        await city.advance(timedelta(minutes=10))
        await city.write(HOME_DEVICE, "CareDevice", motionCount=2)  # only the anchor moves
        assert (await city.snapshot("care-inactivity", HOME_DEVICE)) == first
        await city.advance(timedelta(seconds=5))  # rules.snapshot_interval_s
        later = await city.snapshot("care-inactivity", HOME_DEVICE)
        assert later is not None and later["state"]["data"]["last"] == to_iso(START + timedelta(minutes=10))
    finally:
        await city.app.stop()


# -- acceptance: inactivity ---------------------------------------------------------------------
async def test_inactivity_raises_interest_warning_serious_as_time_passes_but_not_while_asleep(tmp_path: Path) -> None:
    city = await open_city(tmp_path, FakeClock(START), [inactivity_rule(sleep=True)])
    try:
        await city.write(HOME_DEVICE, "CareDevice", motionCount=4)  # last motion 08:00 KST
        seen: list[tuple[str, datetime]] = []
        for _ in range(40 * 4):  # 40 h in 15-minute steps
            await city.advance(timedelta(minutes=15))
            seen += [(m.level, city.clock.now()) for m in city.of(RuleMatched)[len(seen):]]
        matched = city.of(RuleMatched)
        assert [(m.level, parse_iso(m.observed_at)) for m in matched] == [
            ("interest", kst(2026, 3, 2, 16)), ("warning", kst(2026, 3, 2, 20)), ("serious", kst(2026, 3, 3, 15))]
        for _, when in seen:  # published at those instants, none inside 23:00-06:00 Seoul time
            local = when.astimezone(SEOUL)
            assert 6 <= local.hour < 23
        assert [s[1] for s in seen] == [kst(2026, 3, 2, 16), kst(2026, 3, 2, 20), kst(2026, 3, 3, 15)]
        assert matched[0].evidence["lastReported"] == to_iso(START)

        await city.write(HOME_DEVICE, "CareDevice", motionCount=1)  # someone moves: cleared
        [cleared] = city.of(RuleCleared)
        assert cleared.evidence["reason"] == "reported" and cleared.evidence["previous"] == "serious"
    finally:
        await city.app.stop()


async def test_inactivity_is_suppressed_while_the_person_is_away(tmp_path: Path) -> None:
    from ucity.rules.model import Suppression

    rule = inactivity_rule(sleep=False, suppression=Suppression(attribute="away"))
    city = await open_city(tmp_path, FakeClock(START), [rule])
    try:
        await city.write(HOME_DEVICE, "CareDevice", motionCount=1, away=False)
        await city.advance(hours(1))
        await city.write(HOME_DEVICE, "CareDevice", away=True)
        await city.advance(hours(48))
        assert city.of(RuleMatched) == []
        await city.write(HOME_DEVICE, "CareDevice", away=False)
        await city.advance(hours(7))  # 1 h before leaving + 7 h = 8 h
        assert [(m.level, parse_iso(m.observed_at)) for m in city.of(RuleMatched)] == [
            ("interest", START + hours(56))]
    finally:
        await city.app.stop()


# -- acceptance: restarts -----------------------------------------------------------------------
async def test_restart_in_the_middle_of_a_duration_neither_loses_nor_duplicates(tmp_path: Path) -> None:
    rule = tilt_rule(samples=None, duration=15 * 60)  # SHM-R4: >= 15 min
    first = await open_city(tmp_path, FakeClock(START), [rule])
    await first.write(SENSOR, "StructuralSensor", tiltX=0.007)  # serious starts at 08:00
    await first.advance(timedelta(minutes=5))
    await first.app.stop()
    assert first.events == []

    second = await open_city(tmp_path, FakeClock(START + timedelta(minutes=10)), [rule])
    try:
        assert second.app.rules.state(TENANT, rule.id, SENSOR) is not None
        await second.advance(timedelta(minutes=4, seconds=59))
        assert second.of(RuleMatched) == []
        await second.advance(timedelta(seconds=1))
        [matched] = second.of(RuleMatched)
        assert matched.level == "serious" and matched.observed_at == to_iso(START + timedelta(minutes=15))
        assert matched.evidence["heldSince"] == to_iso(START)
        await second.write(SENSOR, "StructuralSensor", tiltX=0.0071)
        await second.advance(timedelta(minutes=30))
    finally:
        await second.app.stop()
    assert len(second.of(RuleMatched)) == 1

    third = await open_city(tmp_path, FakeClock(START + timedelta(hours=1)), [rule])
    try:
        await third.write(SENSOR, "StructuralSensor", tiltX=0.0072)  # still serious: no new match
        await third.advance(timedelta(minutes=30))
        assert third.of(RuleMatched) == []
        await third.write(SENSOR, "StructuralSensor", tiltX=0.0)  # the restored level clears
        assert [c.evidence["previous"] for c in third.of(RuleCleared)] == ["serious"]
    finally:
        await third.app.stop()


async def test_a_duration_that_came_due_while_down_is_raised_once_on_start(tmp_path: Path) -> None:
    rule = tilt_rule(samples=None, duration=15 * 60)
    first = await open_city(tmp_path, FakeClock(START), [rule])
    await first.write(SENSOR, "StructuralSensor", tiltX=0.007)
    await first.app.stop()

    second = await open_city(tmp_path, FakeClock(START + timedelta(minutes=40)), [rule])
    try:
        [matched] = second.of(RuleMatched)  # raised by start(), no clock movement needed
        assert matched.observed_at == to_iso(START + timedelta(minutes=15))
        await second.advance(timedelta(hours=1))
        assert len(second.of(RuleMatched)) == 1
    finally:
        await second.app.stop()


async def test_restart_keeps_the_sample_count(tmp_path: Path) -> None:
    rule = tilt_rule(samples=3)
    first = await open_city(tmp_path, FakeClock(START), [rule])
    await first.tilt(0.007)
    await first.tilt(0.007)
    await first.app.stop()
    second = await open_city(tmp_path, FakeClock(START + timedelta(minutes=25)), [rule])
    try:
        await second.tilt(0.007, minutes=5)
        assert [m.level for m in second.of(RuleMatched)] == ["serious"]
    finally:
        await second.app.stop()


async def test_restart_keeps_inactivity_running(tmp_path: Path) -> None:
    rule = inactivity_rule(sleep=False)
    first = await open_city(tmp_path, FakeClock(START), [rule])
    await first.write(HOME_DEVICE, "CareDevice", motionCount=1)
    await first.advance(hours(9))
    assert [m.level for m in first.of(RuleMatched)] == ["interest"]
    await first.app.stop()
    second = await open_city(tmp_path, FakeClock(START + hours(10)), [rule])
    try:
        await second.advance(hours(14))
        assert [(m.level, parse_iso(m.observed_at)) for m in second.of(RuleMatched)] == [
            ("warning", START + hours(12)), ("serious", START + hours(24))]
    finally:
        await second.app.stop()


# -- other kinds through the engine -------------------------------------------------------------
async def test_composite_is_evaluated_once_per_write_with_the_final_values(tmp_path: Path) -> None:
    from ucity.rules.model import Composite, Term, Text

    rule = Rule(id="efire-leak-heat", name=Text(en="Leak and heat"), entity_types=("ElectricBoard",),
                condition=Composite(mode="and", level="warning", terms=(
                    Term(attribute="leakageCurrent", op=">=", value=30), Term(attribute="temperature", op=">=", value=60))))
    city = await open_city(tmp_path, FakeClock(START), [rule])
    board = "urn:ngsi-ld:ElectricBoard:m1"
    try:
        await city.write(board, "ElectricBoard", leakageCurrent=35, temperature=65)
        [matched] = city.of(RuleMatched)
        assert matched.evidence["values"] == {"leakageCurrent": 35, "temperature": 65}
        assert city.app.rules.stats["observations"] == 1  # two attributes written, one evaluation
        await city.advance(timedelta(minutes=1))
        await city.write(board, "ElectricBoard", temperature=40)
        [cleared] = city.of(RuleCleared)
        assert cleared.evidence["values"] == {"leakageCurrent": 35, "temperature": 40}
    finally:
        await city.app.stop()


async def test_button_presses_each_match_and_geofence_exit(tmp_path: Path) -> None:
    from ucity.rules.model import Circle, Compare, EventMatch, Geofence, Text

    button = Rule(id="care-button", name=Text(ko="응급 버튼", en="Emergency button"), entity_types=("CareDevice",),
                  condition=EventMatch(attribute="buttonPressCount", when=Compare(op=">", value=0), level="serious",
                                       latch=False))
    fence = Rule(id="safe-home-exit", name=Text(ko="안심구역 이탈", en="Left the safe zone"), entity_types=("Person",),
                 condition=Geofence(attribute="location", area=Circle(center=(126.8874, 37.4954), radius_metres=100),
                                    trigger="exit", level="warning"))
    city = await open_city(tmp_path, FakeClock(START), [button, fence])
    try:
        for presses in (0, 1, 0, 2):
            await city.advance(timedelta(minutes=1))
            await city.write("urn:ngsi-ld:CareDevice:h7-button", "CareDevice", buttonPressCount=presses)
        assert [m.rule_id for m in city.of(RuleMatched)] == ["care-button", "care-button"]
        person = "urn:ngsi-ld:Person:p1"
        await city.write(person, "Person", location={"type": "Point", "coordinates": [126.8874, 37.4954]})
        await city.write(person, "Person", location={"type": "Point", "coordinates": [126.8904, 37.4954]})  # ~265 m
        exits = [m for m in city.of(RuleMatched) if m.rule_id == "safe-home-exit"]
        assert [(m.level, m.location) for m in exits] == [
            ("warning", {"type": "Point", "coordinates": [126.8904, 37.4954]})]
        assert exits[0].evidence["outsideMetres"] == pytest.approx(165.6, abs=1.0)
    finally:
        await city.app.stop()


async def test_a_changed_default_resets_its_states(shm: City) -> None:
    for _ in range(3):
        await shm.tilt(0.007)
    shm.app.rules.register_defaults([tilt_rule(samples=3)])  # the same rule: states kept
    assert shm.of(RuleCleared) == []
    shm.app.rules.register_defaults([tilt_rule(samples=5)])  # re-evaluated (QA9 F1): the latest tilt still breaches
    await shm.app.rules.drain()
    assert shm.of(RuleCleared) == []
    state = shm.app.rules.state(TENANT, "shm-tilt-x", SENSOR)
    assert state is not None and state.level == "serious"
    shm.app.rules.register_defaults([replace(tilt_rule(samples=5), entity_types=("Streetlight",))])  # not selected
    await shm.app.rules.drain()
    assert [c.evidence["reason"] for c in shm.of(RuleCleared)] == ["rule-changed"]


async def test_the_snapshots_of_one_batch_are_written_by_one_store_call(tmp_path: Path) -> None:
    """An alarm storm changes a state per transition: one `put_docs` (and one `delete_docs`) per batch, not
    a store call per state."""
    city = await open_city(tmp_path, FakeClock(START), [tilt_rule(samples=None)])
    store = city.app.store
    calls: list[tuple[str, int]] = []
    put_docs, delete_docs = store.put_docs, store.delete_docs

    async def put(kind: str, docs: list[Any]) -> None:
        calls.append(("put", len(docs)))
        await put_docs(kind, docs)

    async def delete(kind: str, keys: list[Any]) -> None:
        calls.append(("delete", len(keys)))
        await delete_docs(kind, keys)

    store.put_docs, store.delete_docs = put, delete  # type: ignore[method-assign]
    sensors = [f"urn:ngsi-ld:StructuralSensor:s{n}" for n in range(20)]

    async def write_all(value: float) -> None:
        at = to_iso(city.clock.now())
        mutations = [Mutation(s, append_op({"id": s, "type": [CTX.expand_type("StructuralSensor")], "attrs": {
            iri("tiltX"): [{"type": "Property", "value": value, "observedAt": at}]}}, create_if_missing=True))
            for s in sensors]
        await store.mutate(TENANT, mutations, Context(actor="test"))  # one commit, one EntitiesChanged
        await city.app.publisher.drain()
        await city.app.rules.drain()

    try:
        await write_all(0.0)
        calls.clear()
        await write_all(0.0072)
        assert len(city.of(RuleMatched)) == len(sensors) and calls == [("put", len(sensors))]
        for sensor in sensors:
            snapshot = await city.snapshot("shm-tilt-x", sensor)
            assert snapshot is not None and snapshot["state"]["level"] == "serious"
        calls.clear()
        city.clock.advance(timedelta(minutes=10))
        await write_all(0.0)
        assert len(city.of(RuleCleared)) == len(sensors) and calls == [("delete", len(sensors))]
        assert [await city.snapshot("shm-tilt-x", sensor) for sensor in sensors] == [None] * len(sensors)
    finally:
        await city.app.stop()
