"""A batch's statuses into the sheet the moment it finishes: the operators' live view of a run.

Best effort, by design: two requests (re-read the batch's rows with the header row, then write) on the
region's shared access token (``sheets.access``), only within the progress share of the region's Sheets
quota (``sheets.quota``), never retried. A status goes only where its row still holds its identifier; a row
that moved, a header that moved, a refused or throttled request, or no share left: the status stays for
write-back, which follows moved rows and writes everything the batches did not. A preview writes its
decision lines to the preview worksheet instead, at the lines ``clean_phones`` gave them (one request).

No Sheets client is loaded (gspread and google-auth cost a batch process 0.2 s and 11 MiB): the two
calls are plain HTTP through the project's retry path, with one attempt.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

import requests

from phone_sync.config import SheetsConfig
from phone_sync.http.pacing import Backoff
from phone_sync.http.retry import HttpRetry, RedirectRefused, RetriesExhausted
from phone_sync.http.secrets import mask_secret
from phone_sync.http.session import http_session

from .a1 import cell_range, row_range
from .access import SheetsAccess
from .headers import HeaderRow
from .placement import StatusCell, in_place, row_spans, value_ranges
from .values import as_text, identifier_text

log = logging.getLogger(__name__)

SPAN_GAP = 50  # rows between two of a batch's rows read anyway, rather than a range more
TIMEOUT_SECONDS = 20.0


class NotWritten(Exception):
    """A progress write that did not happen; ``reason`` is a short, data-free phrase for the log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Progress:
    """What a progress write did: the rows it wrote, what it left for write-back and why, what it cost."""

    written: list[int] = field(default_factory=list)
    left: list[int] = field(default_factory=list)
    reason: str | None = None  # why rows were left, when they were
    requests: int = 0


class LiveSheet:
    """The two Sheets API calls of a progress write, on the shared access, with one attempt each."""

    def __init__(self, access: SheetsAccess, spreadsheet_id: str, session: requests.Session | None = None) -> None:
        self.access = access
        mask_secret(access.token)
        self.url = f"{access.api_url.rstrip('/')}/v4/spreadsheets/{quote(spreadsheet_id, safe='')}"
        self.session = session or http_session()
        self.retry = HttpRetry(Backoff(attempts=1), service="Sheets")

    @property
    def requests(self) -> int:
        return self.retry.stats.total

    def batch_get(self, ranges: list[str]) -> dict[str, Any]:
        params = {"ranges": ranges, "valueRenderOption": "UNFORMATTED_VALUE", "majorDimension": "COLUMNS"}
        return self._send("GET", "values:batchGet", "read", params=params)

    def batch_update(self, data: list[dict[str, object]]) -> dict[str, Any]:
        body = {"valueInputOption": "RAW", "data": data}
        return self._send("POST", "values:batchUpdate", "write", json=body)

    def _send(self, method: str, call: str, kind: str, **kwargs: Any) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.access.token}"} if self.access.token else {}
        label = f"{method} {call}"
        try:
            response = self.retry.send(
                self.session, method, f"{self.url}/{call}", kind=kind, label=label,
                headers=headers, timeout=TIMEOUT_SECONDS, **kwargs,
            )
        except RetriesExhausted as exhausted:
            raise NotWritten(f"{label} {exhausted.problem}") from None
        except RedirectRefused:
            raise NotWritten(f"{label} was redirected off its origin") from None
        except requests.RequestException as exc:
            raise NotWritten(f"{label} {type(exc).__name__}") from None
        if not response.ok:
            raise NotWritten(f"{label} answered HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            raise NotWritten(f"{label} did not answer JSON") from None
        return body if isinstance(body, dict) else {}


def write_statuses_live(
    sheet: LiveSheet,
    sheets: SheetsConfig,
    columns: dict[str, int],
    cells: list[StatusCell],
    *,
    run_id: str,
    run_time: datetime,
) -> Progress:
    """Write the statuses of ``cells`` whose rows still hold their identifiers; the rest are left.

    ``columns``: the identifier's and the write fields' columns as ``extract_rows`` found (or added) them.
    """
    progress = Progress()
    try:
        current = _current_identifiers(sheet, sheets, columns, [cell.row for cell in cells])
        placed, left = in_place(cells, current)
        if placed:
            write_columns = {name: column for name, column in columns.items() if name != "identifier"}
            sheet.batch_update(list(value_ranges(sheets.worksheet, placed, write_columns, run_id, run_time)))
        progress.written = [p.row for p in placed]
        progress.left = [cell.row for cell in left]
        if left:
            progress.reason = "rows moved since they were read"
    except NotWritten as exc:
        progress.left, progress.reason = [cell.row for cell in cells], exc.reason
    progress.requests = sheet.requests
    return progress


def _current_identifiers(
    sheet: LiveSheet, sheets: SheetsConfig, columns: dict[str, int], rows: list[int]
) -> dict[int, str]:
    """The identifier of each of ``rows`` as the sheet holds it now, and the header checked: one request."""
    identifier = columns["identifier"]
    spans = row_spans(rows, SPAN_GAP)
    ranges = [row_range(sheets.worksheet, sheets.header_row)]
    ranges += [cell_range(sheets.worksheet, identifier, first, identifier, last) for first, last in spans]
    answer = sheet.batch_get(ranges)
    value_ranges_ = answer.get("valueRanges") or []
    if len(value_ranges_) != len(ranges):
        raise NotWritten("values:batchGet answered another number of ranges")
    # Column-major: the header row comes back as one single-cell list per column.
    header = HeaderRow([as_text(cell[0]) if cell else "" for cell in value_ranges_[0].get("values") or []])
    for name, column in columns.items():
        if header.find(getattr(sheets.columns, name)) != column:
            raise NotWritten("columns moved since the rows were read")
    current: dict[int, str] = {}
    for (first, _), found in zip(spans, value_ranges_[1:], strict=True):
        values = (found.get("values") or [[]])[0]
        current.update({first + offset: identifier_text(value) for offset, value in enumerate(values)})
    return current


def write_preview_live(sheet: LiveSheet, data: list[dict[str, object]]) -> Progress:
    """Write a batch's preview lines (``sheets.placement.line_ranges``): one request; left whole if refused."""
    progress = Progress()
    try:
        sheet.batch_update(data)
    except NotWritten as exc:
        progress.reason = exc.reason
    progress.requests = sheet.requests
    return progress
