"""Finding columns by header text, and adding the write-back headers a sheet does not have yet.

Operators rename, reorder and insert columns; matching header text (trimmed, case-insensitive)
on the configured header row keeps a run pointed at the right columns.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from phone_sync.config import SheetsConfig
from phone_sync.errors import SetupError

from .a1 import cell_range, col_letter, row_range
from .values import as_text

if TYPE_CHECKING:  # the header rules are also used where no Sheets client is loaded (a batch's progress write)
    from .hook import SheetsHook

log = logging.getLogger(__name__)

WRITE_FIELDS = ("status", "run_time", "run_id", "status_link")
# What header texts never hold and patient rows do: a run of five digits (an identifier, a phone), a date.
DATA_LIKE = re.compile(r"\d{5}|\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}")


class MissingHeaderError(SetupError, ValueError):
    """A configured header is not on the header row (renamed? sorted away?).

    Names the header and what the row holds, but never the row's texts: a header row that was sorted away
    leaves a patient's row in its place, so only the region's own header texts found there are named.
    """

    def __init__(self, header: str, sheets: SheetsConfig, found: HeaderRow) -> None:
        self.header = header
        self.worksheet = sheets.worksheet
        row = sheets.header_row
        super().__init__(
            f"header {header!r} not found on row {row} of worksheet {sheets.worksheet!r}: {found.described(sheets)}; "
            + (
                f"put the header row back in row {row} (or set sheets.header_row)"
                if found.looks_like_data
                else "fix the header in the sheet or sheets.columns in the region file"
            )
        )


class DuplicateHeaderError(SetupError, ValueError):
    """A header the region reads or writes is on the header row more than once: which column is meant?"""

    def __init__(self, header: str, columns: list[int]) -> None:
        where = " and ".join(col_letter(column) for column in columns)
        super().__init__(
            f"header {header!r} is on the header row {len(columns)} times (columns {where}); rename or remove "
            "all but one, so phone-sync knows which column to use"
        )


def _key(text: str) -> str:
    return text.strip().casefold()


@dataclass(frozen=True)
class HeaderRow:
    """The header row as read: texts by 1-based column."""

    texts: list[str] = field(repr=False)  # a sorted-away header leaves patient data here: never in a repr

    def find(self, header: str) -> int | None:
        """1-based column of ``header``, or ``None``; DuplicateHeaderError when it is there twice."""
        columns = self._columns(header)
        if len(columns) > 1:
            raise DuplicateHeaderError(header, columns)
        return columns[0] if columns else None

    def _columns(self, header: str) -> list[int]:
        wanted = _key(header)
        return [index for index, text in enumerate(self.texts, start=1) if _key(text) == wanted]

    @property
    def next_free(self) -> int:
        """The first cell after the last used one (never a gap that may hold unlabelled data)."""
        used = [i for i, text in enumerate(self.texts, start=1) if text.strip()]
        return (used[-1] if used else 0) + 1

    @property
    def looks_like_data(self) -> bool:
        """A cell holds a long run of digits or a date: a patient's row, not headers."""
        return any(DATA_LIKE.search(text) for text in self.texts)

    def described(self, sheets: SheetsConfig) -> str:
        """What the row holds, without its texts: cell count, whether it looks like data, the region's headers there."""
        filled = sum(1 for text in self.texts if text.strip())
        if self.looks_like_data:
            return (
                f"the row looks like a patient's row, not headers ({filled} filled cells, among them digits or a "
                "date; its cells are not shown here): was the sheet sorted with its header row in it?"
            )
        configured = [text for text in dict.fromkeys(sheets.columns.model_dump().values()) if text]
        known = [
            f"{text!r} (column {', '.join(col_letter(column) for column in columns)})"
            for text in configured
            if (columns := self._columns(text))
        ]
        which = f"among them this region's headers {', '.join(known)}" if known else "none a header of this region"
        return f"the row has {filled} filled cells, {which} (others are not shown: a sheet's text may be patient data)"


def read_header(hook: SheetsHook, sheets: SheetsConfig) -> HeaderRow:
    """One small request: the header row, unformatted."""
    values = hook.get_values(sheets.spreadsheet_id, row_range(sheets.worksheet, sheets.header_row)) or [[]]
    return HeaderRow([as_text(v) for v in values[0]])


def require(header: HeaderRow, sheets: SheetsConfig, text: str) -> int:
    column = header.find(text)
    if column is None:
        raise MissingHeaderError(text, sheets, header)
    return column


def plan_write_columns(header: HeaderRow, sheets: SheetsConfig) -> tuple[dict[str, int], list[dict[str, object]]]:
    """Columns for status (and the optional run time / run id / link), adding missing headers.

    Returns the columns by field and the value ranges that write the new header cells; those
    go out with the first batch of statuses, so adding a header costs no extra request.
    """
    columns: dict[str, int] = {}
    new_headers: list[dict[str, object]] = []
    next_free = header.next_free
    for name in WRITE_FIELDS:
        text = getattr(sheets.columns, name)
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
        columns[name] = column
    return columns, new_headers


def ensure_grid(hook: SheetsHook, spreadsheet_id: str, title: str, dimension: str, needed: int) -> None:
    """Grow worksheet ``title`` to ``needed`` ``ROWS`` or ``COLUMNS`` (the API refuses writes beyond its grid)."""
    properties = hook.worksheet(spreadsheet_id, title)
    if properties is None:
        raise ValueError(f"worksheet {title!r} not found in spreadsheet {spreadsheet_id!r}")
    count = "rowCount" if dimension == "ROWS" else "columnCount"
    current = int(properties.get("gridProperties", {}).get(count, 0))
    if current < needed:
        hook.append_dimension(spreadsheet_id, properties["sheetId"], dimension, needed - current)
