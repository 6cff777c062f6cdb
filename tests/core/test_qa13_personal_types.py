"""QA13 F1 (kernel part): the personal entity types in force, `platform.get("privacy")` (ucity/core/privacy.py), are
the settings' list and the types domains declare in `setup`; declarations close when the platform starts. F7:
`FakeClock.next_due()`, the earliest timer not cancelled, for tests that step timer by timer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ucity.core.clock import FakeClock
from ucity.core.config import PERSONAL_DEFAULT, PrivacySettings, load_settings
from ucity.core.platform import Platform
from ucity.core.privacy import PersonalTypes


async def test_declared_types_join_the_settings_and_close_at_start() -> None:
    platform = Platform(load_settings(privacy={"personal_entity_types": ["Person"]}), clock=FakeClock())
    privacy = platform.get("privacy")
    assert privacy is platform.privacy and privacy.types == ("Person",)
    seen: list[tuple[str, ...]] = []
    privacy.watch(lambda: seen.append(privacy.types))
    privacy.declare("Household", "Person", source="ELD-R1 [D]")
    privacy.declare("Household", source="another domain")  # the first source stays
    assert privacy.types == ("Person", "Household") and privacy.names == frozenset({"Person", "Household"})
    assert seen == [("Person", "Household")] * 2
    assert privacy.health() == {"ok": True, "personalEntityTypes": ["Person", "Household"],
                                "declared": {"Household": "ELD-R1 [D]", "Person": "ELD-R1 [D]"}}
    with pytest.raises(ValueError, match="source"):
        privacy.declare("Tracker", source="")
    with pytest.raises(ValueError):
        privacy.declare(source="x")
    await platform.start()
    try:
        with pytest.raises(RuntimeError, match="setup"):
            privacy.declare("Tracker", source="late")
        assert platform.health()["privacy"]["personalEntityTypes"] == ["Person", "Household"]
    finally:
        await platform.stop()


def test_an_empty_settings_list_cannot_remove_a_declared_type() -> None:
    privacy = PersonalTypes(PrivacySettings(personal_entity_types=[]))
    assert privacy.types == ()
    privacy.declare("Household", source="x")
    assert privacy.types == ("Household",)
    assert PersonalTypes().types == PERSONAL_DEFAULT


def test_fake_clock_next_due_is_the_earliest_live_timer() -> None:
    start = datetime(2026, 3, 2, tzinfo=UTC)
    clock = FakeClock(start)
    assert clock.next_due() is None
    fired: list[int] = []
    first = clock.call_at(start + timedelta(seconds=5), lambda: fired.append(1))
    clock.call_at(start + timedelta(seconds=9), lambda: fired.append(2))
    assert clock.next_due() == start + timedelta(seconds=5)
    first.cancel()
    assert clock.next_due() == start + timedelta(seconds=9)
    clock.set(clock.next_due() or start)
    assert fired == [2] and clock.next_due() is None
