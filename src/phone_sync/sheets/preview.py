"""A preview run's decisions, in a worksheet of their own that each preview replaces.

The status column is never touched by a preview: operators read the decisions beside the sheet, and the
next live run starts from the same statuses. Two requests (clear, then write), four the first time (the
clear finds no tab, which is added).
"""

from __future__ import annotations

import logging

from gspread.exceptions import APIError

from phone_sync.config import SheetsConfig

from .a1 import quote_sheet
from .errors import explains_setup_errors
from .hook import SheetsHook

log = logging.getLogger(__name__)

PREVIEW_HEADER = ("row", "identifier", "phone to write", "decision", "run id")


def _missing_tab(exc: APIError) -> bool:
    return exc.code == 400 and "unable to parse range" in str(exc.error.get("message", "")).lower()


@explains_setup_errors
def write_preview(hook: SheetsHook, sheets: SheetsConfig, lines: list[list[object]]) -> int:
    """Replace the preview worksheet with a header and ``lines``; returns the Sheets requests it took."""
    before = hook.request_count
    tab = quote_sheet(sheets.preview_worksheet)
    values = [list(PREVIEW_HEADER), *lines]
    try:
        hook.clear_values(sheets.spreadsheet_id, f"{tab}!A:{chr(ord('A') + len(PREVIEW_HEADER) - 1)}")
    except APIError as exc:
        if not _missing_tab(exc):
            raise
        hook.add_sheet(
            sheets.spreadsheet_id,
            sheets.preview_worksheet,
            rows=len(values),
            columns=len(PREVIEW_HEADER),
            frozen_rows=1,
        )
        log.info("Created preview worksheet %r", sheets.preview_worksheet)
    # After the clear the table is empty: the append writes from A1 and grows the grid as needed.
    hook.append_values(sheets.spreadsheet_id, f"{tab}!A1", values, insert_data_option="OVERWRITE")
    log.info("Wrote %d preview decisions to worksheet %r", len(lines), sheets.preview_worksheet)
    return hook.request_count - before
