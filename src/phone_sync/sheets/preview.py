"""A preview run's decisions, in a worksheet of their own that each preview replaces.

The status column is never touched by a preview: operators read the decisions beside the sheet, and the
next live run starts from the same statuses. ``extract_rows`` empties the worksheet (adding it the first
time) and sizes it for the run's rows; then every batch writes its lines as it finishes, and write-back
the rest, each line at the place ``clean_phones`` gave it (the run's rows in sheet order), so the
worksheet fills in while the run moves and never needs sorting.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from gspread.exceptions import APIError

from phone_sync.config import SheetsConfig

from .a1 import quote_sheet
from .errors import explains_setup_errors, is_missing_tab
from .headers import ensure_grid
from .hook import SheetsHook
from .placement import PREVIEW_HEADER, PREVIEW_WIDTH, line_ranges

log = logging.getLogger(__name__)




@explains_setup_errors
def prepare_preview(hook: SheetsHook, sheets: SheetsConfig, lines: int) -> int:
    """Empty the preview worksheet (add it when missing), room for ``lines`` lines and the header; returns the
    Sheets requests it took (three, or four when the worksheet must grow)."""
    before = hook.request_count
    tab = quote_sheet(sheets.preview_worksheet)
    rows = lines + 1
    try:
        hook.clear_values(sheets.spreadsheet_id, f"{tab}!A:{chr(ord('A') + PREVIEW_WIDTH - 1)}")
    except APIError as exc:
        if not is_missing_tab(exc):
            raise
        hook.add_sheet(sheets.spreadsheet_id, sheets.preview_worksheet, rows=rows, columns=PREVIEW_WIDTH, frozen_rows=1)
        log.info("Created preview worksheet %r", sheets.preview_worksheet)
    else:
        ensure_grid(hook, sheets.spreadsheet_id, sheets.preview_worksheet, "ROWS", rows)
    hook.batch_update_values(sheets.spreadsheet_id, line_ranges(sheets.preview_worksheet, [(1, list(PREVIEW_HEADER))]))
    return hook.request_count - before


@explains_setup_errors
def write_preview_lines(hook: SheetsHook, sheets: SheetsConfig, lines: Sequence[tuple[int, list[object]]]) -> int:
    """Write ``(line, values)`` pairs into the prepared preview worksheet; returns the requests it took."""
    if not lines:
        return 0
    before = hook.request_count
    hook.batch_update_values(sheets.spreadsheet_id, line_ranges(sheets.preview_worksheet, lines))
    log.info("Wrote %d preview decisions to worksheet %r", len(lines), sheets.preview_worksheet)
    return hook.request_count - before
