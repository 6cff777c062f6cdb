"""Scale-out: a rule changed through an API process takes effect in the worker that owns the entities as it does in
a single process (rules engine `_changed`, QA9 F1): the worker's rule follow (`Worker._follow_rules` ->
`RulesEngine.follow_stored`) keeps a match whose latest value still breaches under the edited rule and clears,
with the actor who disabled the rule, the alarm of a disabled rule. Before, the worker only read the rules and
states again and the disabled rule's alarm stayed active. Real NATS JetStream and PostgreSQL on loopback; one fake
platform clock for both processes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from tests.alarms.support import T0
from tests.cluster.test_alarm_actions import until
from tests.natsserver import NatsServer, running_nats
from tests.rules.support import tilt_rule
from ucity.alarms.model import Alarm
from ucity.app import Ucity
from ucity.core.bus import Context
from ucity.core.clock import FakeClock, to_iso
from ucity.core.config import Settings, load_settings
from ucity.ngsild.context import core_context
from ucity.ngsild.ops import append_op
from ucity.rules.model import Edge, Threshold
from ucity.store.base import Mutation

TENANT = "urn:ngsi-ld:tenant:default"
SENSOR = "urn:ngsi-ld:StructuralSensor:guro-0001"
RULE = "shm-tilt-x"
ADMIN = "admin:admin (김민수)"


@pytest.fixture(scope="module")
def nats_server() -> Iterator[NatsServer]:
    yield from running_nats()


def settings(tmp_path: Path, store_url: str, bus_url: str) -> Settings:
    return load_settings(environment="test", data_dir=str(tmp_path / "data"),
                         store={"url": store_url, "group_commit_ms": 1.0},
                         bus={"url": bus_url, "partitions": 4, "lease_s": 3, "ack_wait_s": 2, "worker_id": "w1"},
                         alarms={"webhook_secret": "test-webhook-secret-0123456789"})


async def tilt(app: Ucity, clock: FakeClock, value: float) -> None:
    """A tilt reading of the sensor, committed by the worker (its own bus: its rules judge it)."""
    ctx = core_context()
    doc = {"id": SENSOR, "type": [ctx.expand_type("StructuralSensor")], "attrs": {ctx.expand_term("tiltX"): [
        {"type": "Property", "value": value, "observedAt": to_iso(clock.now())}]}}
    [outcome] = await app.store.mutate(TENANT, [Mutation(SENSOR, append_op(doc, create_if_missing=True))],
                                       Context(actor="test"))
    assert not isinstance(outcome, Exception), outcome
    await app.rules.drain()
    await app.alarms.settle()


def alarm_of(app: Ucity) -> Alarm | None:
    return app.alarms.active_alarm(TENANT, SENSOR, RULE)


async def test_the_worker_applies_a_rule_edit_and_a_disable_made_through_the_api_process(
        tmp_path: Path, postgres_url: str, nats_server: NatsServer) -> None:
    clock = FakeClock(T0)
    worker = Ucity(settings(tmp_path, postgres_url, nats_server.url), clock=clock, role="worker")
    api = Ucity(settings(tmp_path, postgres_url, nats_server.url), clock=clock)
    for app in (worker, api):
        app.rules.register_defaults([tilt_rule(samples=1)])
    await worker.start()
    await api.start()
    try:
        await until(lambda: worker.worker.owns(TENANT, SENSOR), "the worker owns the sensor")
        await tilt(worker, clock, 0.0035)  # warning (1/300)
        raised = alarm_of(worker)
        assert raised is not None and raised.level == "warning"

        # An edit through the API process under which the latest value still breaches (caution now): kept.
        edges = (Edge(level="interest", at=0.001), Edge(level="caution", at=0.003), Edge(level="warning", at=0.005))
        rule = tilt_rule(samples=1)
        edited = replace(rule, condition=replace(rule.condition, edges=edges))
        assert isinstance(edited.condition, Threshold)
        await api.rules.replace_rule(TENANT, edited, actor=ADMIN)

        def level() -> str | None:
            state = worker.rules.state(TENANT, RULE, SENSOR)
            return None if state is None else state.level

        # the new ladder's level for the latest value, once the worker has re-evaluated it
        await until(lambda: level() == "caution" and worker.rules.effective(TENANT, RULE) == (
            replace(edited, tenant=TENANT), "user"), "the worker re-evaluated the sensor under the edited rule")
        await worker.rules.drain()
        await worker.alarms.settle()
        kept = alarm_of(worker)
        assert kept is not None and kept.id == raised.id and kept.active  # not cleared: it still breaches

        # Disabled through the API process: the worker clears the alarm, with the actor.
        await api.rules.set_enabled(TENANT, RULE, False, actor=ADMIN)
        await until(lambda: alarm_of(worker) is None, "the worker cleared the disabled rule's alarm")
        await worker.alarms.settle()
        cleared = await worker.alarms.load(TENANT, raised.id)
        assert cleared.status == "cleared-unacknowledged" and cleared.cleared_by == ADMIN
        assert worker.rules.state(TENANT, RULE, SENSOR) is None
        stored = await api.store.get_alarm(TENANT, raised.id)
        assert stored is not None and stored["status"] == "cleared-unacknowledged"
    finally:
        await api.stop()
        await worker.stop()
