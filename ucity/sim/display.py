"""The simulator's progress display (rich): provisioning bars, then a live streaming table.

`NullDisplay` does nothing (tests, `--quiet`); `RichDisplay` draws on a console. Both have the same
methods, so the runner never asks which one it has.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from types import TracebackType
from typing import Protocol

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ucity.sim.client import SendStats

KST = timezone(timedelta(hours=9), "KST")


@dataclass(frozen=True)
class Snapshot:
    """The state of a streaming run at one moment."""

    sim_time: datetime
    wall_elapsed_s: float
    speed: float
    stats: SendStats
    pending: int
    scenarios: tuple[str, ...]


class Display(Protocol):
    def note(self, text: str) -> None: ...

    def task(self, label: str, total: int) -> Callable[[int], None]: ...

    def provisioned(self) -> None: ...

    def streaming(self, snapshot: Snapshot) -> None: ...

    def close(self) -> None: ...


class NullDisplay:
    def note(self, text: str) -> None:
        return None

    def task(self, label: str, total: int) -> Callable[[int], None]:
        return lambda n: None

    def provisioned(self) -> None:
        return None

    def streaming(self, snapshot: Snapshot) -> None:
        return None

    def close(self) -> None:
        return None


class RichDisplay:
    """Progress bars while provisioning, then one live table of the stream."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=console, transient=False)
        self.live: Live | None = None

    def __enter__(self) -> RichDisplay:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def note(self, text: str) -> None:
        self.console.print(text)

    def task(self, label: str, total: int) -> Callable[[int], None]:
        if not self.progress.live.is_started:
            self.progress.start()
        task_id = self.progress.add_task(label, total=total)
        return lambda n: self.progress.advance(task_id, n)

    def provisioned(self) -> None:
        if self.progress.live.is_started:
            self.progress.stop()

    def streaming(self, snapshot: Snapshot) -> None:
        if self.live is None:
            self.live = Live(render(snapshot), console=self.console, refresh_per_second=2, transient=False)
            self.live.start()
        else:
            self.live.update(render(snapshot))

    def close(self) -> None:
        self.provisioned()
        if self.live is not None:
            self.live.stop()
            self.live = None


def render(s: Snapshot) -> Group:
    """The streaming table: simulated time, throughput, failures, per entity type counts."""
    rate = s.stats.measures / s.wall_elapsed_s if s.wall_elapsed_s > 0 else 0.0
    head = Table.grid(padding=(0, 2))
    head.add_row("simulated time", s.sim_time.astimezone(KST).strftime("%Y-%m-%d %H:%M:%S KST"),
                 "speed", f"×{s.speed:g}")
    head.add_row("measures sent", f"{s.stats.measures:,}", "rate", f"{rate:,.0f}/s")
    head.add_row("requests", f"{s.stats.requests:,}", "queued", f"{s.pending:,}")
    failed = f"{s.stats.failed_measures:,}" + (f" (last: {s.stats.last_error})" if s.stats.last_error else "")
    head.add_row("failed measures", failed, "running", f"{s.wall_elapsed_s:,.0f} s")
    types = Table(box=None, show_header=True, header_style="bold")
    types.add_column("entity type")
    types.add_column("measures", justify="right")
    for name, count in sorted(s.stats.by_type.items()):
        types.add_row(name, f"{count:,}")
    parts: list[Table] = [head, types]
    if s.scenarios:
        sc = Table(box=None, show_header=False)
        for line in s.scenarios:
            sc.add_row(line)
        parts.append(sc)
    return Group(*parts)
