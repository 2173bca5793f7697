"""Helpers shared by the Sheets tests."""

from __future__ import annotations

from typing import Any

from phone_sync.config import ColumnHeaders, SheetsConfig

HEADER = ["identifier", "phone_number", "status_update_phone_number", "feed_date"]


def sheets_config(spreadsheet_id: str, worksheet: str = "Sheet1", **columns: Any) -> SheetsConfig:
    return SheetsConfig(
        conn_id="sheets_test",
        spreadsheet_id=spreadsheet_id,
        worksheet=worksheet,
        columns=ColumnHeaders(**columns),
        requests_per_minute=300,
    )
