"""Watching a region's sheet fill in while a run moves, as an operator with the spreadsheet open would.

Reads the status column through the emulator's control API (which spends no quota) a few times a second,
on a thread, and keeps how many rows had a status at each moment. The demo prints it as a timeline; the
tests check that statuses appear before write-back starts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import requests

from localservers.stack import LocalRegion


def status_count(region: LocalRegion) -> int:
    """Rows whose status cell holds text now."""
    header, *rows = region.cells()
    column = header.index(region.config.sheets.columns.status) if region.config.sheets.columns.status in header else -1
    return sum(1 for row in rows if 0 <= column < len(row) and str(row[column] or "").strip())


@dataclass
class Watch:
    """What the sheet showed: ``(seconds since the watch began, rows with a status)``."""

    started: float = field(default_factory=time.time)
    seen: list[tuple[float, int]] = field(default_factory=list)

    def first_seen(self) -> float | None:
        """When (epoch seconds) the first status appeared, if one did."""
        return next((self.started + at for at, count in self.seen if count), None)

    def timeline(self, points: int = 6) -> str:
        """A short line: ``0 s: 0 · 3 s: 300 · ...`` at most ``points`` changes, the last always shown."""
        changes = [(at, count) for i, (at, count) in enumerate(self.seen) if i == 0 or count != self.seen[i - 1][1]]
        if len(changes) > points:
            step = (len(changes) - 1) / (points - 1)
            changes = [changes[round(i * step)] for i in range(points)]
        return " · ".join(f"{at:.0f} s: {count:,}" for at, count in changes)


@contextmanager
def watching(
    region: LocalRegion, interval: float = 0.1, on_first: Callable[[], None] | None = None
) -> Iterator[Watch]:
    """Sample the status column until the block ends; ``on_first`` runs once when the first status shows."""
    watch, stop = Watch(), threading.Event()

    def sample() -> None:
        nonlocal on_first
        while not stop.is_set():
            try:
                count = status_count(region)
            except requests.RequestException:
                continue
            watch.seen.append((time.time() - watch.started, count))
            if count and on_first is not None:
                on_first()
                on_first = None
            stop.wait(interval)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield watch
    finally:
        stop.set()
        thread.join(timeout=10)
