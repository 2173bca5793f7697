"""Writing statuses back: re-check row identity, then as few ``values:batchUpdate`` requests as possible.

Operators sort, insert and delete rows while a run is in flight. Before writing, the header row
and the identifier column are read again (one ``values:batchGet`` when the caller passes the
identifier's column as the rows were read and it has not moved; else a header read and a column
read); a status goes where that row still holds its identifier,
follows the identifier if it moved and is unique, and is otherwise not written (reported as not
placed). A status never lands next to the wrong patient. Values go out RAW, so text such as
``=HYPERLINK(...)`` stays text.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from itertools import chain

from gspread.exceptions import APIError

from phone_sync.config import SheetsConfig
from phone_sync.redaction import mask

from .a1 import cell_range, row_range
from .errors import explains_setup_errors
from .headers import HeaderRow, ensure_grid, plan_write_columns, read_header, require
from .hook import SheetsHook
from .placement import MAX_PAYLOAD_BYTES, StatusCell, chunk_by_payload, place, value_ranges
from .values import as_text

__all__ = ["StatusCell", "StatusWriteError", "WriteResult", "add_write_columns", "write_statuses"]

log = logging.getLogger(__name__)


@dataclass
class WriteResult:
    written: int = 0
    moved: int = 0
    not_placed: list[int] = field(default_factory=list)  # rows (as read) whose status was not written
    requests: int = 0


class StatusWriteError(RuntimeError):
    """Statuses that could not be written after retries; the task fails so a clear retries them."""


def _read_identity(
    hook: SheetsHook, sheets: SheetsConfig, hint: int | None, *, want_column: bool
) -> tuple[HeaderRow, list[object] | None]:
    """The header row and the identifier column as they are now.

    With a hint, both come in one ``values:batchGet``; the column is used only if the header
    still names the identifier there (else the moved column is read again). Without a hint the
    header is read first, then the column (when there are statuses to place).
    """
    first = sheets.header_row + 1
    if hint is not None:
        answer = hook.batch_get_values(
            sheets.spreadsheet_id,
            [row_range(sheets.worksheet, sheets.header_row), cell_range(sheets.worksheet, hint, first)],
            major_dimension="COLUMNS",
        )
        header_range, column_range = (answer.get("valueRanges") or [{}, {}])[:2]
        # Column-major: the header row comes back as one single-cell list per column.
        header = HeaderRow([as_text(cell[0]) if cell else "" for cell in header_range.get("values") or []])  # type: ignore[arg-type]
        column = require(header, sheets, sheets.columns.identifier)
        if column == hint:
            return header, (column_range.get("values") or [[]])[0]
        log.info(
            "Identifier header %r moved from column %d to %d since the rows were read; re-reading it",
            sheets.columns.identifier,
            hint,
            column,
        )
    else:
        header = read_header(hook, sheets)
        column = require(header, sheets, sheets.columns.identifier)
    if not want_column:
        return header, None
    values = hook.get_values(
        sheets.spreadsheet_id, cell_range(sheets.worksheet, column, first), major_dimension="COLUMNS"
    )
    return header, (values or [[]])[0]


@explains_setup_errors
def add_write_columns(hook: SheetsHook, sheets: SheetsConfig, header: HeaderRow) -> dict[str, int]:
    """The write fields' columns, adding the headers the worksheet lacks now (one request, two more when the
    grid must widen), so the batches find them when they write their progress."""
    columns, new_headers = plan_write_columns(header, sheets)
    if new_headers:
        ensure_grid(hook, sheets.spreadsheet_id, sheets.worksheet, "COLUMNS", max(columns.values()))
        hook.batch_update_values(sheets.spreadsheet_id, new_headers)
    return columns


@explains_setup_errors
def write_statuses(
    hook: SheetsHook,
    sheets: SheetsConfig,
    cells: list[StatusCell],
    run_id: str | None,
    run_time: datetime | None,
    *,
    identifier_column: int | None = None,
    max_payload_bytes: int = MAX_PAYLOAD_BYTES,
) -> WriteResult:
    """Write every status that can be placed safely; raise StatusWriteError if the API refuses.

    ``identifier_column``: the identifier's column when the rows were read
    (:attr:`~phone_sync.sheets.rows.SheetTable.columns`); only a hint, checked against the header.
    Requests: header and identifier column (1 with a hint that still holds, else 2) + one
    ``values:batchUpdate`` per ~1 MB of statuses; a header beyond the grid's last column costs
    two more, once.
    """
    before = hook.request_count
    result = WriteResult()
    first = sheets.header_row + 1
    header, current = _read_identity(hook, sheets, identifier_column, want_column=bool(cells))
    columns, new_headers = plan_write_columns(header, sheets)
    if new_headers:
        ensure_grid(hook, sheets.spreadsheet_id, sheets.worksheet, "COLUMNS", max(columns.values()))
    if not cells and not new_headers:
        result.requests = hook.request_count - before
        return result

    placed, lost = place(cells, current or [], first)
    del current  # 100,000 identifiers as re-read: not needed while the requests are built
    result.moved = sum(1 for p in placed if p.row != p.cell.row)
    result.not_placed = sorted(c.row for c in lost)
    for cell in lost:
        log.warning(
            "Status for row %d (identifier %s) not written: the row no longer holds it and it is not "
            "unique elsewhere in worksheet %r",
            cell.row,
            mask(cell.identifier),
            sheets.worksheet,
        )

    # Each request's ranges built as it is sent: at 100,000 rows all of them at once are several MiB.
    ranges = chain(new_headers, value_ranges(sheets.worksheet, placed, columns, run_id, run_time))
    for number, batch in enumerate(chunk_by_payload(ranges, max_payload_bytes), start=1):
        try:
            hook.batch_update_values(sheets.spreadsheet_id, batch)
        except APIError as exc:
            raise StatusWriteError(
                f"request {number} writing {len(placed)} statuses to worksheet "
                f"{sheets.worksheet!r} failed after retries: Sheets API answered {exc.code} "
                f"{exc.error.get('status', '')}; earlier requests were written, and clearing the task "
                "writes them all again (writes are idempotent)"
            ) from exc
    result.written = len(placed)
    result.requests = hook.request_count - before
    log.info(
        "Wrote %d statuses to worksheet %r (%d followed a moved row, %d not placed) in %d Sheets requests",
        result.written,
        sheets.worksheet,
        result.moved,
        len(result.not_placed),
        result.requests,
    )
    return result
