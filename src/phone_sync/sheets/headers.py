"""Finding columns by header text, and adding the write-back headers a sheet does not have yet.

Operators rename, reorder and insert columns; matching header text (trimmed, case-insensitive)
on the configured header row keeps a run pointed at the right columns.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from phone_sync.config import SheetsConfig
from phone_sync.errors import SetupError

from .a1 import cell_range, row_range
from .values import as_text

if TYPE_CHECKING:  # the header rules are also used where no Sheets client is loaded (a batch's progress write)
    from .hook import SheetsHook

log = logging.getLogger(__name__)

WRITE_FIELDS = ("status", "run_time", "run_id", "status_link")


class MissingHeaderError(SetupError, ValueError):
    """A configured header is not on the header row (renamed?); names it and the headers that are there."""

    def __init__(self, header: str, worksheet: str, header_row: int, found: list[str]) -> None:
        self.header = header
        self.worksheet = worksheet
        super().__init__(
            f"header {header!r} not found on row {header_row} of worksheet {worksheet!r} "
            f"(headers there: {', '.join(repr(h) for h in found if h) or 'none'}); "
            "fix the header in the sheet or sheets.columns in the region file"
        )


def _key(text: str) -> str:
    return text.strip().casefold()


@dataclass(frozen=True)
class HeaderRow:
    """The header row as read: texts by 1-based column."""

    texts: list[str]

    def find(self, header: str) -> int | None:
        """1-based column of ``header`` (first match), or ``None``."""
        wanted = _key(header)
        for index, text in enumerate(self.texts, start=1):
            if _key(text) == wanted:
                return index
        return None

    @property
    def next_free(self) -> int:
        """The first cell after the last used one (never a gap that may hold unlabelled data)."""
        used = [i for i, text in enumerate(self.texts, start=1) if text.strip()]
        return (used[-1] if used else 0) + 1


def read_header(hook: SheetsHook, sheets: SheetsConfig) -> HeaderRow:
    """One small request: the header row, unformatted."""
    values = hook.get_values(sheets.spreadsheet_id, row_range(sheets.worksheet, sheets.header_row)) or [[]]
    return HeaderRow([as_text(v) for v in values[0]])


def require(header: HeaderRow, sheets: SheetsConfig, text: str) -> int:
    column = header.find(text)
    if column is None:
        raise MissingHeaderError(text, sheets.worksheet, sheets.header_row, header.texts)
    return column


def plan_write_columns(header: HeaderRow, sheets: SheetsConfig) -> tuple[dict[str, int], list[dict[str, object]]]:
    """Columns for status (and the optional run time / run id / link), adding missing headers.

    Returns the columns by field and the value ranges that write the new header cells; those
    go out with the first batch of statuses, so adding a header costs no extra request.
    """
    columns: dict[str, int] = {}
    new_headers: list[dict[str, object]] = []
    next_free = header.next_free
    for field in WRITE_FIELDS:
        text = getattr(sheets.columns, field)
        if not text:
            continue
        column = header.find(text)
        if column is None:
            column = next_free
            next_free += 1
            new_headers.append(
                {"range": cell_range(sheets.worksheet, column, sheets.header_row, column, sheets.header_row),
                 "values": [[text]]}
            )
            log.info("Worksheet %r has no %r header; adding it in column %d", sheets.worksheet, text, column)
        columns[field] = column
    return columns, new_headers


def ensure_grid_columns(hook: SheetsHook, sheets: SheetsConfig, needed: int) -> None:
    """Widen the worksheet when a new header falls outside its grid (the API refuses such writes)."""
    metadata = hook.get_spreadsheet(sheets.spreadsheet_id)
    for sheet in metadata.get("sheets", []):
        props = sheet.get("properties", {})
        if props.get("title") != sheets.worksheet:
            continue
        current = int(props.get("gridProperties", {}).get("columnCount", 0))
        if current < needed:
            hook.append_dimension(sheets.spreadsheet_id, props["sheetId"], "COLUMNS", needed - current)
        return
    raise ValueError(f"worksheet {sheets.worksheet!r} not found in spreadsheet {sheets.spreadsheet_id!r}")
