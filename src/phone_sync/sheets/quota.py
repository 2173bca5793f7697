"""A region's Sheets quota shared by every task process of its runs: a ledger of the last minute's requests.

Google counts requests per user per minute (60 by default, the region's ``sheets.requests_per_minute``) and
answers 429 past it. A run's own Sheets steps (extract, write-back, the report) need a few requests each;
the live progress writes of its batches (two requests each: re-read the rows, write their statuses) are
optional, and many batches run at once in separate processes, on any worker. So progress writes take what
the minute still allows from a ledger every process shares, and a batch that finds no room leaves its
statuses to write-back instead of waiting or retrying.

The ledger is an Airflow Variable per Google connection (``phone_sync__sheets_quota__<conn_id>``): the one
store every task process reaches on every executor. It holds ``[seconds, requests, holder]`` entries of the
last minute and nothing else. Of each minute, :data:`RUN_RESERVE` requests stay with the run's own steps
(at most 7 at 100,000 rows), and progress writes share the rest, less a margin for races: Variables have no
compare-and-set, so a process writes its entry, reads the ledger back, and goes only if its entry is there;
a concurrent writer can still erase an entry that was read back, which costs at most one write's requests
per batch running at once (``racers``), kept free for that. Deleting the Variable is always safe.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

from phone_sync.fhir.token_store import AirflowVariables, KeyValue

log = logging.getLogger(__name__)

VARIABLE_PREFIX = "phone_sync__sheets_quota__"
WINDOW_SECONDS = 60.0
RUN_RESERVE = 10  # requests a minute kept for extract, write-back and the report
Entry = tuple[float, int, str]


class SheetsQuota:
    """The progress writes' share of one Google connection's per-minute quota (see module docstring)."""

    def __init__(
        self,
        conn_id: str,
        requests_per_minute: int,
        *,
        racers: int,
        request_size: int = 2,
        store: KeyValue | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.key = f"{VARIABLE_PREFIX}{conn_id}"
        self.budget = requests_per_minute - RUN_RESERVE - racers * request_size
        self._store = store or AirflowVariables()
        self._clock = clock
        self._holder = secrets.token_hex(4)

    def try_take(self, requests: int) -> bool:
        """Claim ``requests`` of the last minute's share, now; False (and nothing claimed) when it is spent."""
        if requests > self.budget:
            return False
        now = self._clock()
        ledger = self._read(now)
        if sum(entry[1] for entry in ledger) + requests > self.budget:
            return False
        mine: Entry = (round(now, 3), requests, self._holder)
        self._write([*ledger, mine])
        return mine in self._read(now)

    def spent(self) -> int:
        """Requests claimed in the last minute."""
        return sum(entry[1] for entry in self._read(self._clock()))

    def _read(self, now: float) -> list[Entry]:
        raw = self._store.get(self.key)
        try:
            entries: Any = json.loads(raw) if raw else []
            ledger = [(float(t), int(n), str(h)) for t, n, h in entries]
        except (ValueError, TypeError):
            log.warning("Variable '%s' is not a phone-sync quota ledger; starting a new one", self.key)
            return []
        return [entry for entry in ledger if now - WINDOW_SECONDS < entry[0] <= now + WINDOW_SECONDS]

    def _write(self, ledger: list[Entry]) -> None:
        description = (
            "phone-sync: Sheets requests of the last minute by this Google connection's live progress writes "
            "(no patient data). Safe to delete."
        )
        self._store.set(self.key, json.dumps(ledger, separators=(",", ":")), description)
