"""The run report tab: one row per DAG run, appended with ``values:append``.

Operators read this tab to see what each run did without opening Airflow; the tab is created
(with its header row) the first time a region reports. A run whose tab exists costs one request:
the append goes out directly, and only an answer that the tab does not exist creates it.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta

from gspread.exceptions import APIError

from phone_sync.config import SheetsConfig
from phone_sync.report import REPORT_COLUMNS

from .a1 import quote_sheet
from .errors import explains_setup_errors, is_missing_tab
from .hook import SheetsHook

log = logging.getLogger(__name__)

_BY_KEY = {name.casefold(): name for name in REPORT_COLUMNS}


def _key(name: str) -> str:
    return name.replace("_", " ").strip().casefold()


def report_row(values: dict[str, object]) -> list[object]:
    """Values in column order; keys match column names case-insensitively, ``_`` for spaces.

    Unknown keys are errors, so a renamed counter cannot silently drop out of the report.
    """
    row: dict[str, object] = {}
    for name, value in values.items():
        column = _BY_KEY.get(_key(name))
        if column is None:
            raise ValueError(f"unknown report column {name!r}; columns are {', '.join(REPORT_COLUMNS)}")
        row[column] = value
    return [_cell(row.get(column)) for column in REPORT_COLUMNS]


def _cell(value: object) -> object:
    """JSON-able cell values; sent RAW, so text stays text and numbers stay numbers."""
    if value is None:
        return ""
    if isinstance(value, timedelta):
        return round(value.total_seconds(), 1)
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _create_report_tab(hook: SheetsHook, sheets: SheetsConfig) -> bool:
    """Add the tab; ``False`` if another run added it first (then it already has its header)."""
    try:
        hook.add_sheet(
            sheets.spreadsheet_id, sheets.report_worksheet, rows=1000, columns=len(REPORT_COLUMNS), frozen_rows=1
        )
    except APIError as exc:
        if exc.code == 400 and "already exists" in str(exc.error.get("message", "")):
            return False
        raise
    log.info("Created report worksheet %r", sheets.report_worksheet)
    return True



def _append(hook: SheetsHook, sheets: SheetsConfig, lines: list[list[object]]) -> None:
    hook.append_values(sheets.spreadsheet_id, f"{quote_sheet(sheets.report_worksheet)}!A1", lines)


@explains_setup_errors
def append_report(hook: SheetsHook, sheets: SheetsConfig, values: dict[str, object]) -> None:
    """Append this run's row to the report tab, creating the tab with a header row if missing.

    Requests: 1 when the tab exists; 3 the first time (the refused append, addSheet, and the
    header with the row in one append).
    """
    row = report_row(values)
    try:
        _append(hook, sheets, [row])
    except APIError as exc:
        if not is_missing_tab(exc):
            raise
        lines: list[list[object]] = [row]
        if _create_report_tab(hook, sheets):
            lines.insert(0, list(REPORT_COLUMNS))  # header and first row in one request
        _append(hook, sheets, lines)
    log.info("Appended run report row to worksheet %r", sheets.report_worksheet)
