"""Reading rows through gspread and SheetsHook, over HTTP, against the emulator."""

from __future__ import annotations

import time
import tracemalloc
from datetime import date

import pytest

from phone_sync.sheets.rows import MissingHeaderError, SheetRow, read_rows

from .helpers import HEADER, sheets_config


def test_number_phone_keeps_every_digit_while_sheets_shows_scientific(emulator, hook, spreadsheet_id):
    emulator.create(
        spreadsheet_id,
        [
            {
                "title": "Sheet1",
                "rows": [HEADER, ["3302011234567890", "6281234567890", "", ""]],
                "scientific": ["phone_number"],
            }
        ],
    )
    # What the operator sees, and what a FORMATTED_VALUE read (gspread's default) would return:
    assert emulator.cells(spreadsheet_id, "Sheet1", "B2", view="formatted") == [["6.28123E+12"]]
    assert emulator.cells(spreadsheet_id, "Sheet1", "B2")[0][0]["type"] == "number"

    rows = read_rows(hook, sheets_config(spreadsheet_id))

    assert rows == [SheetRow(row=2, identifier="3302011234567890", phone=6281234567890, status="", feed_date=None)]
    assert isinstance(rows[0].phone, int)


def test_text_keeps_leading_zeros_and_is_never_numericised(emulator, hook, spreadsheet_id):
    emulator.create(
        spreadsheet_id,
        [
            {
                "title": "Sheet1",
                "rows": [HEADER, ["'0012", "'081234567890", "", ""], ["77", "081234567890", "", ""]],
            }
        ],
    )
    # Typed into Sheets without the apostrophe, the second phone became a number (zero lost):
    assert emulator.cells(spreadsheet_id, "Sheet1", "B3")[0][0] == {
        "type": "number",
        "value": 81234567890,
        "formatted": "81234567890",
    }

    rows = read_rows(hook, sheets_config(spreadsheet_id))

    assert [(r.identifier, r.phone) for r in rows] == [("0012", "081234567890"), ("77", 81234567890)]


def test_rows_carry_sheet_row_numbers_blank_rows_skipped_and_feed_dates_parsed(emulator, hook, spreadsheet_id):
    emulator.create(
        spreadsheet_id,
        [
            {
                "title": "Data",
                "rows": [
                    ["note: synced nightly"],
                    [" Identifier ", "PHONE_NUMBER", "Status_Update_Phone_Number", "Feed date"],
                    ["A1", "0811", "success", "2024-05-01"],  # a date cell (USER_ENTERED parses it)
                    ["", "", "", ""],
                    ["", "", "stale status", ""],
                    ["A2", "", "", "'2024-05-03"],  # ISO text
                    ["", "0812", "", "'01/05/2024"],  # ambiguous day/month: not guessed
                ],
            }
        ],
    )
    sheets = sheets_config(spreadsheet_id, "Data", feed_date="feed date").model_copy(update={"header_row": 2})

    rows = read_rows(hook, sheets)

    assert rows == [
        SheetRow(3, "A1", 811, "success", date(2024, 5, 1)),
        SheetRow(6, "A2", None, "", date(2024, 5, 3)),
        SheetRow(7, "", 812, "", None),
    ]


def test_missing_header_names_header_and_worksheet(emulator, hook, spreadsheet_id):
    emulator.create(spreadsheet_id, [{"title": "Pasien Jakarta", "rows": [["identifier", "phone"], ["1", "2"]]}])

    with pytest.raises(MissingHeaderError) as caught:
        read_rows(hook, sheets_config(spreadsheet_id, "Pasien Jakarta"))

    assert "'phone_number'" in str(caught.value)
    assert "'Pasien Jakarta'" in str(caught.value)
    assert caught.value.header == "phone_number"


def test_missing_status_header_is_not_an_error_when_reading(emulator, hook, spreadsheet_id):
    emulator.create(spreadsheet_id, [{"title": "Sheet1", "rows": [HEADER[:2], ["1", "2"]]}])

    assert read_rows(hook, sheets_config(spreadsheet_id)) == [SheetRow(2, "1", 2, "", None)]


def test_reading_is_one_header_read_and_one_batch_get(emulator, hook, spreadsheet_id):
    emulator.create(
        spreadsheet_id,
        [
            {
                "title": "Sheet1",
                "rows": [["notes", *HEADER, "other"], *[["x", str(i), "0812", "", "", "y"] for i in range(50)]],
            }
        ],
    )
    emulator.reset_counts()

    rows = read_rows(hook, sheets_config(spreadsheet_id))

    counts = emulator.counts()
    assert len(rows) == 50
    assert counts["by_method"] == {"values.get": 1, "values.batchGet": 1}
    assert hook.request_counts() == {"total": 2, "read": 2, "write": 0, "throttled": 0, "retried": 0}


@pytest.mark.slow
def test_100000_rows_read_fast_and_lean(emulator, hook, spreadsheet_id):
    data = [[str(3302010000000000 + i), f"'0812{i:08d}", "", "2024-05-01", "x" * 40] for i in range(100_000)]
    emulator.create(spreadsheet_id, [{"title": "Sheet1", "rows": [[*HEADER, "notes"], *data]}])
    del data

    tracemalloc.start()
    started = time.perf_counter()
    rows = read_rows(hook, sheets_config(spreadsheet_id, feed_date="feed_date"))
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    assert len(rows) == 100_000
    assert rows[-1] == SheetRow(100_001, "3302010000099999", "081200099999", "", date(2024, 5, 1))
    assert elapsed < 20
    assert peak < 75 * 2**20, f"peak {peak / 2**20:.0f} MiB"  # the per-task budget left for data
