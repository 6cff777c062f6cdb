"""The `retention` component on a real platform with a fake clock (each backend): sweeps on the clock, in
batches, their audit lines, domain defaults and settings overrides, store failures, settings validation,
the temporal API after a purge, and the one-shot CLI."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from starlette.testclient import TestClient

from tests.conftest import free_port
from ucity.app import Ucity
from ucity.cli import main
from ucity.core.clock import FakeClock, to_iso, to_micros
from ucity.core.config import Settings, load_settings
from ucity.server import create_app
from ucity.store.base import AlarmRow, AuditQuery, AuditRow, OpsEventRow, TemporalQuery

T = "urn:ngsi-ld:tenant:default"
VOCAB = "https://uri.etsi.org/ngsi-ld/default-context/"
TRACKER, PERSON, SENSOR = f"{VOCAB}Tracker", f"{VOCAB}Person", f"{VOCAB}Sensor"
LOCATION, BATTERY = f"{VOCAB}trackPoint", f"{VOCAB}batteryLevel"
NOW = datetime(2026, 6, 1, tzinfo=UTC)


def make_settings(tmp_path: Path, **retention: Any) -> Settings:
    return load_settings(environment="test", data_dir=str(tmp_path / "data"), store={"group_commit_ms": 1.0},
                         retention=retention)


@contextlib.asynccontextmanager
async def running(tmp_path: Path, declare: Any = None, **retention: Any) -> AsyncIterator[tuple[Ucity, FakeClock]]:
    clock = FakeClock(NOW)
    app = Ucity(make_settings(tmp_path, **retention), clock=clock)
    if declare is not None:
        declare(app.retention)  # as a domain's setup does
    await app.start()
    try:
        yield app, clock
    finally:
        await app.stop()


def reading(value: Any, days: float) -> dict[str, Any]:
    return {"type": "Property", "value": value, "observedAt": to_iso(NOW - timedelta(days=days))}


async def history(app: Ucity, entity: str, types: list[str], rows: list[tuple[str, float]], attr: str = LOCATION) -> None:
    await app.store.append_history(T, entity, types, [(attr, reading(days, days)) for _, days in rows])


async def kept(app: Ucity, entity: str, attr: str = LOCATION) -> list[Any]:
    found, _ = await app.store.temporal_query(T, TemporalQuery(ids=(entity,)))
    series = found[0].attrs.get(attr) if found else None
    return [i["value"] for i in series.instances] if series else []


async def sweep_due(app: Ucity, clock: FakeClock, seconds: float) -> None:
    clock.advance(seconds)
    await app.retention.settle()


async def retention_lines(app: Ucity) -> list[dict[str, Any]]:
    docs, _ = await app.store.query_audit(T, AuditQuery(kinds=("retention",)))
    return docs


# -- sweeps -------------------------------------------------------------------------------------------
async def test_sweeps_run_on_the_clock_in_batches_and_audit_themselves(tmp_path: Path) -> None:
    rule = {"history": [{"type": "Tracker", "keep_days": 30}], "sweep_interval_s": 3600, "batch": 2}
    async with running(tmp_path, **rule) as (app, clock):
        await history(app, "urn:ngsi-ld:Tracker:1", [TRACKER], [("", d) for d in (90, 60, 45, 40, 31, 1)])
        await history(app, "urn:ngsi-ld:Sensor:1", [SENSOR], [("", d) for d in (90, 1)])
        calls: list[int] = []
        purge = app.store.purge_history

        async def counted(*args: Any, **kwargs: Any) -> tuple[int, int | None]:
            result = await purge(*args, **kwargs)
            calls.append(result[0])
            return result

        app.store.purge_history = counted  # type: ignore[method-assign]
        await sweep_due(app, clock, 59)
        assert calls == [] and await kept(app, "urn:ngsi-ld:Tracker:1") == [90, 60, 45, 40, 31, 1]
        await sweep_due(app, clock, 1)  # the first sweep, a minute after the start

        assert await kept(app, "urn:ngsi-ld:Tracker:1") == [1]
        assert await kept(app, "urn:ngsi-ld:Sensor:1") == [90, 1]  # no rule, no default: kept
        assert max(calls) <= 2 and sum(calls) == 5 and len(calls) >= 3  # batches of at most `batch`
        (line,) = await retention_lines(app)
        assert (line["action"], line["actor"], line["outcome"]) == ("purged", "ucity-retention", "ok")
        assert line["data"] == "history" and line["deleted"] == 5 and line["rule"] == TRACKER
        assert line["keepDays"] == 30 and line["source"] == "settings"
        assert line["cutoff"] == to_iso(NOW + timedelta(seconds=60) - timedelta(days=30))
        assert "value" not in line and "90" not in str(line)  # what was removed, never the data itself
        health = app.platform.health()["retention"]
        assert health["sweeps"] == 1 and health["lastDeleted"] == {"historyInstances": 5}
        assert health["nextSweep"] == to_iso(NOW + timedelta(seconds=60 + 3600))

        await sweep_due(app, clock, 3600)  # nothing old left: no audit line
        assert app.platform.health()["retention"]["sweeps"] == 2 and len(await retention_lines(app)) == 1
        await history(app, "urn:ngsi-ld:Tracker:1", [TRACKER], [("", 50)])  # late data, already past the limit
        await sweep_due(app, clock, 3600)
        assert await kept(app, "urn:ngsi-ld:Tracker:1") == [1]
        assert app.platform.health()["retention"]["deleted"] == {"historyInstances": 6}


async def test_nothing_is_scheduled_when_every_limit_is_off(tmp_path: Path) -> None:
    async with running(tmp_path) as (app, clock):
        await history(app, "urn:ngsi-ld:Tracker:1", [TRACKER], [("", 5000)])
        await sweep_due(app, clock, 86400)
        health = app.platform.health()["retention"]
        assert (health["active"], health["sweeps"], health["nextSweep"]) == (False, 0, None)
        assert await kept(app, "urn:ngsi-ld:Tracker:1") == [5000]


async def test_default_covers_types_without_a_rule(tmp_path: Path) -> None:
    settings = {"history": [{"type": "Tracker", "keep_days": 400}, {"type": "Sensor", "attrs": ["trackPoint"],
                                                                    "keep_days": 400}],
                "default_history_days": 30}
    async with running(tmp_path, **settings) as (app, clock):
        await history(app, "urn:ngsi-ld:Tracker:1", [TRACKER], [("", d) for d in (100, 1)])
        await history(app, "urn:ngsi-ld:Sensor:1", [SENSOR], [("", d) for d in (100, 1)])
        await history(app, "urn:ngsi-ld:Sensor:1", [SENSOR], [("", d) for d in (100, 1)], attr=BATTERY)
        await history(app, "urn:ngsi-ld:Thing:1", [f"{VOCAB}Thing"], [("", d) for d in (100, 1)])
        await sweep_due(app, clock, 60)
        assert await kept(app, "urn:ngsi-ld:Tracker:1") == [100, 1]  # its own, longer rule
        assert await kept(app, "urn:ngsi-ld:Sensor:1") == [100, 1]  # the rule of its attribute
        assert await kept(app, "urn:ngsi-ld:Sensor:1", BATTERY) == [1]  # the default
        assert await kept(app, "urn:ngsi-ld:Thing:1") == [1]
        lines = await retention_lines(app)
        assert [(line["rule"], line["deleted"]) for line in lines] == [("every type without a rule", 2)]


# -- declared defaults and overrides ---------------------------------------------------------------
async def test_declared_defaults_and_settings_overrides(tmp_path: Path) -> None:
    def declare(retention: Any) -> None:
        retention.declare("Tracker", 180, source="SAFE-R1 [D]")
        retention.declare("Tracker", 365, source="another domain")  # the shorter of two declarations stays
        retention.declare("Tracker", 5, attrs=["batteryLevel"], source="ucity [D]")
        retention.declare(PERSON, 10, source="LOC-R2 [P]")

    async with running(tmp_path, declare, history=[{"type": "Person", "keep_days": 20}]) as (app, clock):
        rules = {(r.type, r.attrs): (r.keep_days, r.source) for r in app.retention.rules()}
        assert rules == {
            (TRACKER, ()): (180, "SAFE-R1 [D]"),
            (TRACKER, (BATTERY,)): (5, "ucity [D]"),
            (PERSON, ()): (20, "settings (overrides LOC-R2 [P]: 10 days)"),
        }
        await history(app, "urn:ngsi-ld:Tracker:1", [TRACKER], [("", d) for d in (200, 100, 1)])
        await history(app, "urn:ngsi-ld:Tracker:1", [TRACKER], [("", d) for d in (200, 100, 1)], attr=BATTERY)
        await history(app, "urn:ngsi-ld:Person:1", [PERSON], [("", d) for d in (30, 15, 1)])
        await sweep_due(app, clock, 60)
        assert await kept(app, "urn:ngsi-ld:Tracker:1") == [100, 1]
        assert await kept(app, "urn:ngsi-ld:Tracker:1", BATTERY) == [1]  # its attribute's own, shorter rule
        assert await kept(app, "urn:ngsi-ld:Person:1") == [15, 1]  # the settings' 20 days, not the declared 10
        sources = {line["rule"]: line["source"] for line in await retention_lines(app)}
        assert sources[PERSON] == "settings (overrides LOC-R2 [P]: 10 days)"
        assert sources[TRACKER] == "SAFE-R1 [D]"


async def test_a_declaration_must_be_positive_and_cite_its_source(tmp_path: Path) -> None:
    async with running(tmp_path) as (app, _):
        with pytest.raises(ValueError, match="positive"):
            app.retention.declare("Tracker", 0, source="x")
        with pytest.raises(ValueError, match="positive"):
            app.retention.declare("Tracker", -3, source="x")
        with pytest.raises(ValueError, match="positive"):
            app.retention.declare("Tracker", float("inf"), source="x")
        with pytest.raises(ValueError, match="source"):
            app.retention.declare("Tracker", 3, source="")
        # declared after the start (a late domain): the sweep gets scheduled
        assert app.platform.health()["retention"]["nextSweep"] is None
        app.retention.declare("Tracker", 3, source="x")
        assert app.platform.health()["retention"]["nextSweep"] is not None


# -- operations records, alarms and the audit log ---------------------------------------------------
def event(event_id: str, status: str, days: float) -> OpsEventRow:
    at = to_micros(NOW - timedelta(days=days))
    return OpsEventRow(T, event_id, "112_VIDEO", "theft", "warning", status, "operator", "", at, at, at, None, (),
                       {"id": event_id})


def alarm(alarm_id: str, days: float) -> tuple[AlarmRow, list[dict[str, Any]]]:
    at = to_micros(NOW - timedelta(days=days))
    row = AlarmRow(T, alarm_id, "urn:ngsi-ld:Building:1", "Building", "r1", "threshold", "warning", "closed", False,
                   False, None, "confirmed", None, at, at, at, at, at, None, {"id": alarm_id})
    return row, [{"seq": 1, "at": to_iso(NOW - timedelta(days=days)), "action": "closed", "actor": "x"}]


async def test_closed_records_and_audit_lines_go_the_sweep_lines_stay(tmp_path: Path) -> None:
    settings = {"audit_days": 365, "ops_closed_days": 90, "alarms_closed_days": 90}
    async with running(tmp_path, **settings) as (app, clock):
        await app.store.save_ops_event(event("e-old", "closed", 100), [])
        await app.store.save_ops_event(event("e-new", "closed", 10), [])
        await app.store.save_alarms([alarm("a-old", 100), alarm("a-new", 10)])
        old = to_micros(NOW - timedelta(days=400))
        await app.store.append_audit([AuditRow(T, old, "event", "created", "op", {}), AuditRow(T, old, "grant", "x", "op", {})])
        await sweep_due(app, clock, 60)
        assert await app.store.get_ops_event(T, "e-old") is None and await app.store.get_ops_event(T, "e-new")
        assert await app.store.get_alarm(T, "a-old") is None and await app.store.get_alarm(T, "a-new")
        lines = {line["data"]: line for line in await retention_lines(app)}
        assert lines["ops-events"]["deleted"] == 1 and lines["ops-events"]["grantsDeleted"] == 0
        assert lines["alarms"]["deleted"] == 1 and lines["alarms"]["historyDeleted"] == 1
        assert lines["audit"]["deleted"] == 2 and lines["audit"]["rule"] == "retention.audit_days"
        everything, _ = await app.store.query_audit(T, AuditQuery())
        assert {line["kind"] for line in everything} == {"retention"}  # the sweep's own lines stayed
        assert app.platform.health()["retention"]["lastDeleted"] == {
            "opsEvents": 1, "grants": 0, "alarms": 1, "alarmHistory": 1, "auditLines": 2}


@pytest.mark.parametrize(("limits", "warned"), [
    ({"audit_days": 30}, True),  # events closed are kept for ever, their lines 30 days
    ({"audit_days": 30, "ops_closed_days": 90}, True),
    ({"audit_days": 400, "ops_closed_days": 365}, False),
    ({"ops_closed_days": 90}, False),  # audit lines kept
])
async def test_an_audit_limit_shorter_than_closed_events_is_warned_at_the_start(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, limits: dict[str, Any], warned: bool) -> None:
    """QA D4: nobody was told that a closed event kept longer than its audit lines loses its trail."""
    with caplog.at_level("WARNING", logger="ucity.store.retention"):
        async with running(tmp_path, **limits):
            pass
    notes = [r.getMessage() for r in caplog.records if r.name == "ucity.store.retention"]
    assert len(notes) == int(warned)
    if warned:
        assert "retention.audit_days (30 days) is shorter than retention.ops_closed_days" in notes[0]


async def test_a_store_failure_is_logged_counted_and_retried(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with running(tmp_path, history=[{"type": "Tracker", "keep_days": 30}], audit_days=30) as (app, clock):
        await history(app, "urn:ngsi-ld:Tracker:1", [TRACKER], [("", d) for d in (90, 1)])
        purge = app.store.purge_history

        async def broken(*args: Any, **kwargs: Any) -> tuple[int, int | None]:
            raise RuntimeError("disk full")

        app.store.purge_history = broken  # type: ignore[method-assign]
        await sweep_due(app, clock, 60)
        health = app.platform.health()["retention"]
        assert health["ok"] and health["failures"] == 1 and "disk full" in health["lastError"]
        assert "retention of history" in caplog.text
        (line,) = await retention_lines(app)  # the failed run is audited too; the other rules ran
        assert (line["outcome"], line["deleted"]) == ("failed", 0) and "disk full" in line["error"]
        assert health["nextSweep"] is not None

        app.store.purge_history = purge  # type: ignore[method-assign]
        await sweep_due(app, clock, 3600)
        assert await kept(app, "urn:ngsi-ld:Tracker:1") == [1]
        assert app.platform.health()["retention"]["failures"] == 1


async def test_dry_run_counts_and_changes_nothing(tmp_path: Path) -> None:
    async with running(tmp_path, history=[{"type": "Tracker", "keep_days": 30}], batch=1) as (app, _):
        await history(app, "urn:ngsi-ld:Tracker:1", [TRACKER], [("", d) for d in (90, 60, 1)])
        (result,) = await app.retention.sweep(dry_run=True)
        assert (result.data, result.deleted) == ("history", 2)
        assert await kept(app, "urn:ngsi-ld:Tracker:1") == [90, 60, 1]
        assert await retention_lines(app) == [] and app.platform.health()["retention"]["sweeps"] == 0


async def test_a_dry_run_counts_what_the_sweep_then_deletes(tmp_path: Path) -> None:
    """QA D3: the rules of an entity of several types overlap, and the dry run counted the same instances under
    each of them (40 said, 31 deleted). It counts what the sweep, running the rules in turn, deletes."""
    car, vehicle, speed, fuel = f"{VOCAB}Car", f"{VOCAB}Vehicle", f"{VOCAB}speed", f"{VOCAB}fuel"
    location = "https://uri.etsi.org/ngsi-ld/location"
    settings = {"history": [{"type": "Vehicle", "keep_days": 30}, {"type": "Vehicle", "attrs": ["location"], "keep_days": 10},
                            {"type": "Car", "keep_days": 5}, {"type": "Car", "attrs": ["speed"], "keep_days": 100}],
                "default_history_days": 365, "batch": 3}
    ages = (1, 8, 20, 40, 120, 400)
    async with running(tmp_path, **settings) as (app, _):
        for entity, types in (("urn:ngsi-ld:Vehicle:both", [vehicle, car]), ("urn:ngsi-ld:Vehicle:v", [vehicle]),
                              ("urn:ngsi-ld:Car:c", [car]), ("urn:ngsi-ld:Thing:t", [f"{VOCAB}Thing"])):
            for attr in (location, speed, fuel):
                await history(app, entity, types, [("", d) for d in ages], attr=attr)

        dry = {r.rule: r.deleted for r in await app.retention.sweep(dry_run=True)}
        done = {r.rule: r.deleted for r in await app.retention.sweep()}

        assert dry == done
        left = {(e, a): await kept(app, e, a) for e in ("urn:ngsi-ld:Vehicle:both", "urn:ngsi-ld:Vehicle:v",
                                                        "urn:ngsi-ld:Car:c", "urn:ngsi-ld:Thing:t")
                for a in (location, speed, fuel)}
        assert sum(done.values()) == 4 * 3 * len(ages) - sum(len(v) for v in left.values())
        # the shortest of an entity's rules keeps: Car's 5 days, but its speed rule's 100 meets Vehicle's 30
        assert left[("urn:ngsi-ld:Vehicle:both", fuel)] == [1]
        assert left[("urn:ngsi-ld:Vehicle:both", location)] == [1]
        assert left[("urn:ngsi-ld:Vehicle:both", speed)] == [20, 8, 1]
        assert left[("urn:ngsi-ld:Car:c", speed)] == [40, 20, 8, 1]
        assert left[("urn:ngsi-ld:Thing:t", fuel)] == [120, 40, 20, 8, 1]


# -- settings ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("retention", [
    {"keep_forever": True},
    {"audit_days": -1},
    {"audit_days": 0},
    {"default_history_days": -30},
    {"batch": 0},
    {"sweep_interval_s": 0},
    {"history": [{"type": "Tracker", "keep_days": -1}]},
    {"history": [{"type": "Tracker"}]},
    {"history": [{"type": "Tracker", "keep_days": 5, "keep_hours": 3}]},
    {"history": [{"type": "Tracker", "keep_days": 5}, {"type": "Tracker", "keep_days": 6}]},
    {"history": [{"type": "", "keep_days": 5}]},
    {"history": [{"type": "Tracker", "keep_days": float("inf")}]},
    {"audit_days": 1e9},
    {"alarms_closed_days": float("nan")},
])
def test_invalid_settings_are_refused(tmp_path: Path, retention: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        make_settings(tmp_path, **retention)


SAME_ONCE_EXPANDED = [
    ([{"type": "Vehicle", "keep_days": 3}, {"type": f"{VOCAB}Vehicle", "keep_days": 5}],
     ['rules 1 (type "Vehicle")', f'2 (type "{VOCAB}Vehicle")']),
    ([{"type": "Vehicle", "attrs": ["location"], "keep_days": 3},
      {"type": "Tracker", "keep_days": 4},
      {"type": "Vehicle", "attrs": ["https://uri.etsi.org/ngsi-ld/location"], "keep_days": 5}],
     ['rules 1 (type "Vehicle", attrs ["location"])',
      '3 (type "Vehicle", attrs ["https://uri.etsi.org/ngsi-ld/location"])']),
    ([{"type": "Vehicle", "attrs": ["location", "https://uri.etsi.org/ngsi-ld/location"], "keep_days": 3}],
     ["rule 1", "names an attribute twice"]),
]


def _toml(rules: list[dict[str, Any]]) -> str:
    text = 'environment = "test"\n'
    for rule in rules:
        attrs = ", ".join(f'"{a}"' for a in rule.get("attrs", []))
        text += f'[[retention.history]]\ntype = "{rule["type"]}"\nattrs = [{attrs}]\nkeep_days = {rule["keep_days"]}\n'
    return text


@pytest.mark.parametrize(("rules", "named"), SAME_ONCE_EXPANDED)
def test_rules_the_same_once_names_are_expanded_are_refused_by_every_command(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], rules: list[dict[str, Any]], named: list[str]) -> None:
    """QA 5: `config validate` said valid for `Vehicle` next to its IRI, then `serve` and `retention sweep` died
    with a ValueError traceback. Every command refuses it now, in one line naming both rules."""
    config = tmp_path / "ucity.toml"
    config.write_text(_toml(rules))
    common = ["--config", str(config), "--data-dir", str(tmp_path / "data")]
    for command in (["config", "validate", *common], ["serve", *common, "--port", "0"], ["retention", "sweep", *common]):
        with pytest.raises(SystemExit) as exited:
            main(command)
        assert exited.value.code == 1
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 3 and len(set(errors)) == 1 and "Traceback" not in errors[0]
    assert errors[0].startswith("invalid configuration: retention.history: ")
    assert all(name in errors[0] for name in named)
    with pytest.raises(ValueError, match=r"retention\.history"):  # the service checks the same itself
        Ucity(load_settings(config, data_dir=str(tmp_path / "data")))


def test_settings_defaults_keep_everything(tmp_path: Path) -> None:
    s = make_settings(tmp_path).retention
    assert (s.history, s.default_history_days, s.audit_days, s.ops_closed_days, s.alarms_closed_days) == (
        [], None, None, None, None)
    assert (s.sweep_interval_s, s.batch) == (3600, 2000)


# -- the temporal API and the CLI ------------------------------------------------------------------------
@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[TestClient, FakeClock]]:
    clock = FakeClock(NOW)
    settings = make_settings(tmp_path, history=[{"type": "Tracker", "attrs": ["trackPoint"], "keep_days": 30}])
    with TestClient(create_app(settings, clock), base_url="http://127.0.0.1:8000") as client:
        yield client, clock


def test_the_temporal_api_no_longer_returns_purged_instances(served: tuple[TestClient, FakeClock]) -> None:
    client, clock = served
    entity = "urn:ngsi-ld:Tracker:t1"
    body = {"id": entity, "type": "Tracker",
            "trackPoint": [reading(f"p{d}", d) for d in (90, 40, 2, 1)],
            "batteryLevel": [reading(d, d) for d in (90, 1)]}
    assert client.post("/ngsi-ld/v1/temporal/entities", json=body).status_code == 201
    ucity: Ucity = client.app.state.ucity  # type: ignore[attr-defined]
    assert client.portal is not None
    client.portal.call(clock.advance, 60)
    client.portal.call(ucity.retention.settle)

    got = client.get(f"/ngsi-ld/v1/temporal/entities/{entity}").json()
    assert [i["value"] for i in got["trackPoint"]] == ["p2", "p1"]
    assert [i["value"] for i in got["batteryLevel"]] == [90, 1]
    got = client.get(f"/ngsi-ld/v1/temporal/entities/{entity}", params={"attrs": "trackPoint", "lastN": "5"}).json()
    assert [i["value"] for i in got["trackPoint"]] == ["p2", "p1"]
    window = {"timerel": "before", "timeAt": to_iso(NOW - timedelta(days=10)), "attrs": "trackPoint"}
    got = client.get(f"/ngsi-ld/v1/temporal/entities/{entity}", params=window).json()
    assert "trackPoint" not in got or got["trackPoint"] == []
    listed = client.get("/ngsi-ld/v1/temporal/entities", params={"type": "Tracker", **window}).json()
    assert listed == []  # a query selects only entities with instances in the window


def test_cli_sweep_once(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "ucity.toml"
    config.write_text('environment = "test"\n[retention]\naudit_days = 30\n'
                      '[[retention.history]]\ntype = "Tracker"\nkeep_days = 30\n')

    async def seed() -> None:  # the CLI runs on the system clock
        app = Ucity(load_settings(config, data_dir=str(tmp_path / "data")))
        now = datetime.now(UTC)
        await app.store.start()
        try:
            await app.store.append_history(T, "urn:ngsi-ld:Tracker:1", [TRACKER], [
                (LOCATION, {"type": "Property", "value": n, "observedAt": to_iso(now - timedelta(days=n))})
                for n in (5000, 0)])
        finally:
            await app.store.stop()

    import asyncio

    asyncio.run(seed())
    args = ["retention", "sweep", "--config", str(config), "--data-dir", str(tmp_path / "data")]
    assert main([*args, "--dry-run"]) == 0
    assert "would delete 1, older than" in capsys.readouterr().err
    assert main(args) == 0
    assert f"history    {TRACKER}: deleted 1" in capsys.readouterr().err
    assert main(args) == 0
    assert "deleted 0" in capsys.readouterr().err


def test_cli_sweep_runs_beside_a_running_server(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """QA8 F7: the sweep may run from cron while the server runs (docs/operations.md §8); the server owns the SQLite
    file (store.exclusive), the sweep does not take it for itself."""
    config = tmp_path / "ucity.toml"
    config.write_text('environment = "test"\n[retention]\naudit_days = 30\n')
    settings = load_settings(config, data_dir=str(tmp_path / "data"))
    assert settings.store.exclusive is True

    import asyncio

    async def beside_the_server() -> int:
        server = Ucity(settings)
        await server.store.start()  # as `ucity serve` holds it
        try:
            return await asyncio.to_thread(main, ["retention", "sweep", "--config", str(config), "--data-dir",
                                                  str(tmp_path / "data")])
        finally:
            await server.store.stop()

    assert asyncio.run(beside_the_server()) == 0
    assert "in use by another" not in capsys.readouterr().err


def test_cli_sweep_says_in_one_line_that_the_store_is_unreachable(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, store_backend: str) -> None:
    """QA C4: with the database down, `ucity retention sweep` printed a whole traceback (cron mail). One line
    and exit code 1."""
    config = tmp_path / "ucity.toml"
    config.write_text('environment = "test"\n[retention]\naudit_days = 30\n')
    data = tmp_path / "data"
    if store_backend == "postgresql":  # nobody listens there
        monkeypatch.setenv("UCITY_STORE__URL", f"postgresql://ucity:pw@127.0.0.1:{free_port()}/ucity")
    else:  # the data directory is a file: the database cannot be created
        data.write_text("not a directory")
    for extra in ([], ["--dry-run"]):
        assert main(["retention", "sweep", "--config", str(config), "--data-dir", str(data), *extra]) == 1
        err = capsys.readouterr().err
        assert "Traceback" not in err
        (line,) = [text for text in err.splitlines() if "cannot open the store" in text]
        assert "Error" in line and ("pw" not in line or store_backend == "sqlite")  # what failed, no password


@pytest.mark.parametrize("text", ["[retention]\nbatch = 0\n", "[retention]\nsweep_intervall_s = 60\n", "[store\n"])
def test_any_invalid_configuration_stops_every_command_in_one_message_without_a_traceback(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str) -> None:
    """QA2: a value the settings model refuses (`batch = 0`), a misspelled key, a file that is no TOML: `serve`
    died with a pydantic traceback, only `config validate` said what was wrong."""
    config = tmp_path / "ucity.toml"
    config.write_text(text)
    common = ["--config", str(config), "--data-dir", str(tmp_path / "data")]
    for command in (["config", "validate", *common], ["serve", *common, "--port", "0"], ["retention", "sweep", *common]):
        with pytest.raises(SystemExit) as exited:
            main(command)
        assert exited.value.code == 1
    err = capsys.readouterr().err
    assert err.count("invalid configuration:") == 3 and "Traceback" not in err


async def test_dead_letters_go_after_their_limit_with_an_audit_line_per_tenant(tmp_path: Path) -> None:
    """Dead letters hold recipients' names and addresses: `retention.dead_letters_days` deletes those that failed
    before it (by `failedAt`), in batches, each tenant's counted in its own audit line."""
    from ucity.alarms.dispatch import DEAD_LETTERS
    from ucity.store.retention import DEAD_LETTERS as KIND

    assert KIND == DEAD_LETTERS  # the store layer names the alarms' kind without importing them
    other = "urn:ngsi-ld:tenant:anyang"
    async with running(tmp_path, dead_letters_days=30, batch=2) as (app, clock):
        for tenant, key, days in ((T, "n1", 40), (T, "n2", 31), (T, "n3", 5), (other, "n4", 100)):
            await app.store.put_doc(KIND, tenant, key, {"id": key, "failedAt": to_iso(NOW - timedelta(days=days)),
                                                        "notification": {"recipient": {"address": "010-0000-0000"}}})
        dry = await app.retention.sweep(dry_run=True)
        assert [(r.data, r.deleted) for r in dry if r.data == "dead-letters"] == [("dead-letters", 3)]
        await sweep_due(app, clock, 60)
        assert sorted((t, k) for t, k, _ in await app.store.list_docs(KIND)) == [(T, "n3")]
        (line,) = [line for line in await retention_lines(app) if line["data"] == "dead-letters"]
        assert (line["deleted"], line["rule"]) == (2, "retention.dead_letters_days")
        docs, _ = await app.store.query_audit(other, AuditQuery(kinds=("retention",)))
        assert [(d["data"], d["deleted"]) for d in docs] == [("dead-letters", 1)]
        assert app.platform.health()["retention"]["lastDeleted"]["deadLetters"] == 3
