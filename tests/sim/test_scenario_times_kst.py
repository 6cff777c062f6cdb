"""The scenario lines that `ucity demo` and `ucity simulate` print name their start in Korea time (QA12 F7)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from ucity.sim.city import CityConfig, build_city
from ucity.sim.runner import RunConfig, Runner

SEOUL = ZoneInfo("Asia/Seoul")
START = datetime(2026, 12, 7, 15, 42, 44, tzinfo=UTC)  # 2026-12-08 00:42:44 KST: the date differs


class Notes:
    """A display that keeps its notes (the seam between the runner and the console)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def note(self, text: str) -> None:
        self.lines.append(text)

    def task(self, label: str, total: int) -> Callable[[int], None]:
        return lambda n: None

    def provisioned(self) -> None:
        return None

    def streaming(self, snapshot: object) -> None:
        return None

    def close(self) -> None:
        return None


def test_scenario_start_is_printed_in_kst() -> None:
    city = build_city(CityConfig(seed=7, scale=0.05, reference_date=date(2026, 12, 1)))
    notes = Notes()
    runner = Runner(city, RunConfig(scenarios=("all",)), display=notes)
    bindings = runner.bind_scenarios(START.timestamp())
    lines = [line for line in notes.lines if line.startswith("scenario ")]
    assert bindings and len(lines) == len(bindings)
    for binding, line in zip(bindings, lines, strict=True):
        when = re.search(r", from (.+)$", line)
        assert when is not None, line
        expected = datetime.fromtimestamp(binding.start, SEOUL).strftime("%Y-%m-%d %H:%M:%S KST")
        assert when.group(1) == expected
        assert "Z" not in when.group(1)
    assert any("2026-12-08 00:" in line for line in lines)  # the first scenarios start at (or just after) START
