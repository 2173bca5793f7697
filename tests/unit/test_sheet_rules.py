"""Pure rules of the Sheets side that whole runs reach: write columns, live placement, preview lines."""

from __future__ import annotations

from phone_sync.config import ColumnHeaders, SheetsConfig
from phone_sync.outcomes import Outcome, Reason, Status
from phone_sync.pipeline.preview import line_numbers, preview_line
from phone_sync.sheets.headers import HeaderRow, plan_write_columns
from phone_sync.sheets.placement import StatusCell, in_place, line_ranges, row_spans

SHEETS = SheetsConfig(
    conn_id="google_sheets_demo",
    spreadsheet_id="demo-spreadsheet",
    worksheet="patients",
    columns=ColumnHeaders(identifier="nik", phone="hp", run_time="updated_at", run_id="run"),
)


def test_write_columns_found_are_kept_and_missing_ones_added_after_the_last_used_cell() -> None:
    header = HeaderRow(["nik", "hp", "", "Status_Update_Phone_Number ", "notes", ""])
    columns, new_headers = plan_write_columns(header, SHEETS)
    assert columns == {"status": 4, "run_time": 6, "run_id": 7}, "matched trimmed and case-insensitively"
    assert new_headers == [
        {"range": "'patients'!F1:F1", "values": [["updated_at"]]},
        {"range": "'patients'!G1:G1", "values": [["run"]]},
    ], "never into the gap in column C, which may hold unlabelled data"


def test_a_live_write_goes_only_where_the_row_still_holds_its_identifier() -> None:
    cells = [StatusCell(2, "A", "success"), StatusCell(3, "B", "success"), StatusCell(9, "C", "unchanged")]
    placed, left = in_place(cells, {2: "A", 3: "X", 4: "B"})  # B moved down a row; row 9 is empty now
    assert [(p.row, p.cell.identifier) for p in placed] == [(2, "A")]
    assert [c.row for c in left] == [3, 9], "moved rows are write-back's to follow"


def test_row_spans_read_a_batch_in_few_ranges() -> None:
    assert row_spans([12, 2, 3, 4, 60, 61, 200], gap=50) == [(2, 61), (200, 200)]
    assert row_spans([5, 5], gap=0) == [(5, 5)]


def test_preview_lines_keep_sheet_order_and_consecutive_lines_share_a_range() -> None:
    lines = line_numbers([40, 7, 12, 7])
    assert lines == {7: 2, 12: 3, 40: 4}, "line 1 is the header"
    updated = Status(row=12, identifier="3302", outcome=Outcome.UPDATED, batch=0)
    invalid = Status(row=40, identifier="3303", outcome=Outcome.INVALID_PHONE, reason=Reason.INVALID_PHONE,
                     detail="too_short")
    assert preview_line(3, updated, "+6281234567890", "run-1") == (
        3, [12, "3302", "+6281234567890", "would update +6281234567890", "run-1"]
    )
    assert preview_line(4, invalid, None, "run-1")[1][3] == "invalid phone: too short"
    ranges = line_ranges("phone_sync_preview", [(4, ["d"]), (2, ["b"]), (3, ["c"]), (9, ["x"])])
    assert [r["range"] for r in ranges] == ["'phone_sync_preview'!A2:E4", "'phone_sync_preview'!A9:E9"]
    assert ranges[0]["values"] == [["b"], ["c"], ["d"]]
