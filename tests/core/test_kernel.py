"""The kernel: clock, bus, errors, settings and the platform lifecycle."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from ucity.core.bus import Bus, Context, EntitiesChanged, Event
from ucity.core.clock import FakeClock, from_micros, parse_iso, to_iso, to_micros
from ucity.core.config import load_settings
from ucity.core.errors import NotFound, PayloadTooLarge, UcityError, http_problem
from ucity.core.platform import Platform


def test_fake_clock_fires_timers_in_order_at_their_instants() -> None:
    clock = FakeClock(datetime(2026, 1, 1, tzinfo=UTC))
    fired: list[tuple[str, datetime]] = []
    clock.call_at(clock.now() + timedelta(seconds=30), lambda: fired.append(("b", clock.now())))
    clock.call_at(clock.now() + timedelta(seconds=10), lambda: fired.append(("a", clock.now())))
    cancelled = clock.call_at(clock.now() + timedelta(seconds=20), lambda: fired.append(("x", clock.now())))
    cancelled.cancel()
    clock.advance(25)
    assert [name for name, _ in fired] == ["a"]
    assert fired[0][1] == datetime(2026, 1, 1, 0, 0, 10, tzinfo=UTC)
    clock.advance(timedelta(seconds=5))
    assert [name for name, _ in fired] == ["a", "b"]
    assert clock.now() == datetime(2026, 1, 1, 0, 0, 30, tzinfo=UTC)


def test_time_formats_round_trip_in_utc() -> None:
    instant = parse_iso("2026-03-01T09:00:00+09:00")
    assert to_iso(instant) == "2026-03-01T00:00:00.000000Z"
    assert from_micros(to_micros(instant)) == instant
    assert parse_iso("2026-03-01T00:00:00").tzinfo is not None


async def test_bus_delivers_by_type_unsubscribes_and_survives_failing_handlers() -> None:
    bus = Bus()
    seen: list[str] = []

    async def broken(event: Event) -> None:
        raise RuntimeError("boom")

    async def good(event: EntitiesChanged) -> None:
        seen.append(event.context.id)

    bus.subscribe(EntitiesChanged, broken)
    unsubscribe = bus.subscribe(EntitiesChanged, good)
    ctx = Context(actor="test")
    await bus.publish(EntitiesChanged(ctx, ()))
    await bus.publish(Event(ctx))  # another type: not delivered to EntitiesChanged handlers
    unsubscribe()
    await bus.publish(EntitiesChanged(ctx, ()))
    assert seen == [ctx.id]


def test_context_chain_keeps_parent_and_actor() -> None:
    root = Context(actor="sensor-7")
    child = root.child()
    assert child.parent_id == root.id and child.actor == "sensor-7" and child.id != root.id


def test_errors_map_to_problem_details() -> None:
    problem = NotFound("entity x does not exist").to_problem()
    assert problem == {"type": "https://uri.etsi.org/ngsi-ld/errors/ResourceNotFound", "title": "Resource not found",
                       "status": 404, "detail": "entity x does not exist"}
    assert PayloadTooLarge().to_problem()["status"] == 413
    assert http_problem(405, "no")["status"] == 405
    assert UcityError().to_problem()["status"] == 500


def test_settings_from_toml_env_and_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "ucity.toml"
    config.write_text('[server]\nport = 9000\nhost = "0.0.0.0"\n[store]\ngroup_commit_ms = 5\n')
    monkeypatch.setenv("UCITY_SERVER__PORT", "9100")
    settings = load_settings(config)
    assert settings.server.port == 9100  # the environment beats the file
    assert settings.server.host == "0.0.0.0"
    assert settings.store.group_commit_ms == 5
    assert load_settings(config, server={"port": 9200}).server.port == 9200


def test_settings_reject_invalid_values(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[store]\nurl = "mysql://x"\n')
    with pytest.raises(ValidationError, match=r"store\.url"):
        load_settings(config)
    with pytest.raises(ValidationError):
        load_settings(unknown_key=1)


@pytest.mark.parametrize("section, key", [
    ("subscriptions", "block_private_network"), ("ops", "grant_secrett"), ("alarms", "webhook_secrte"),
    ("store", "group_comit_ms"), ("server", "prot"), ("ingest", "max_batches"), ("mqtt", "uri"), ("bus", "urls"),
    ("rules", "enable"), ("ngsild", "default_tennant"),
])
def test_settings_refuse_a_misspelled_key_in_any_section(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        section: str, key: str) -> None:
    # A misspelled security setting must not leave the default in force silently (QA finding 12).
    config = tmp_path / "typo.toml"
    config.write_text(f"[{section}]\n{key} = 1\n")
    with pytest.raises(ValidationError, match=rf"{section}\.{key}\n.*Extra inputs are not permitted"):
        load_settings(config)
    monkeypatch.setenv(f"UCITY_{section.upper()}__{key.upper()}", "1")  # the environment is checked the same way
    with pytest.raises(ValidationError, match=rf"{section}\.{key}"):
        load_settings()


def test_nested_sections_refuse_misspelled_keys_too() -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        load_settings(alarms={"smtp": {"hots": "mail.example"}})
    assert load_settings(domains={"facility_safety": {"anything": 1}}).domains  # a domain checks its own table


class _Part:
    def __init__(self, name: str, log: list[str], fail: bool = False) -> None:
        self.name, self.log, self.fail = name, log, fail

    async def start(self) -> None:
        if self.fail:
            raise RuntimeError("cannot start")
        self.log.append(f"start {self.name}")

    async def stop(self) -> None:
        self.log.append(f"stop {self.name}")


async def test_platform_starts_in_order_and_stops_in_reverse() -> None:
    log: list[str] = []
    platform = Platform(load_settings(), clock=FakeClock())
    for name in ("store", "bus", "api"):
        platform.add(name, _Part(name, log))
    await platform.start()
    await platform.stop()
    assert log == ["start store", "start bus", "start api", "stop api", "stop bus", "stop store"]
    with pytest.raises(ValueError):
        platform.add("store", _Part("store", log))


async def test_platform_stops_started_parts_when_one_fails_to_start() -> None:
    log: list[str] = []
    platform = Platform(load_settings())
    platform.add("a", _Part("a", log))
    platform.add("b", _Part("b", log, fail=True))
    with pytest.raises(RuntimeError):
        await platform.start()
    assert log == ["start a", "stop a"]
    await asyncio.sleep(0)
