"""The run report tab: created once with a header, one appended row per run."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from phone_sync.sheets.report import REPORT_COLUMNS, append_report, report_row

from .helpers import HEADER, sheets_config


def run_values(run_id: str, updated: int) -> dict[str, object]:
    return {
        "run_id": run_id,
        "logical_date": datetime(2024, 5, 1),
        "start": datetime(2024, 5, 1, 2, 0, 5),
        "duration": timedelta(seconds=93.25),
        "rows read": 120,
        "updated": updated,
        "FHIR requests": 14,
        "Sheets requests": 5,
        "link": "http://localhost:8080/dags/phone_sync__demo/runs/" + run_id,
    }


def test_report_rows_append_and_the_tab_is_created_once(emulator, hook, spreadsheet_id):
    emulator.create(spreadsheet_id, [{"title": "Sheet1", "rows": [HEADER]}])
    sheets = sheets_config(spreadsheet_id)

    emulator.reset_counts()
    append_report(hook, sheets, run_values("scheduled__1", 7))
    first = emulator.counts()["total"]
    append_report(hook, sheets, run_values("=cmd|' /C calc'!A0", 3))  # formula-looking text stays text
    second = emulator.counts()["total"] - first

    tabs = [s["properties"]["title"] for s in emulator.metadata(spreadsheet_id)["sheets"]]
    assert tabs == ["Sheet1", "phone_sync_report"]
    rows = emulator.cells(spreadsheet_id, "phone_sync_report", view="unformatted")
    assert rows[0] == list(REPORT_COLUMNS)
    assert len(rows) == 3
    assert rows[1][:6] == ["scheduled__1", "2024-05-01 00:00:00", "2024-05-01 02:00:05", 93.2, 120, 7]
    assert rows[1][REPORT_COLUMNS.index("link")].endswith("/runs/scheduled__1")
    assert emulator.cells(spreadsheet_id, "phone_sync_report", "A3")[0][0]["type"] == "text"
    assert emulator.counts()["by_method"]["spreadsheets.batchUpdate"] == 1  # addSheet, once
    assert (first, second) == (3, 1)  # refused append + addSheet + append once; then the append alone


def test_report_keys_are_checked():
    with pytest.raises(ValueError, match="'rows_updated'"):
        report_row({"rows_updated": 1})
    assert len(report_row({})) == len(REPORT_COLUMNS)
