"""Reading rows through gspread and SheetsHook, over HTTP, against the emulator."""

from __future__ import annotations

import time
import tracemalloc
from datetime import date

import pytest

from phone_sync.sheets.headers import DuplicateHeaderError
from phone_sync.sheets.rows import MissingHeaderError, SheetRow, read_table
from phone_sync.sheets.statuses import StatusCell, write_statuses

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

    rows = read_table(hook, sheets_config(spreadsheet_id)).rows

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

    rows = read_table(hook, sheets_config(spreadsheet_id)).rows

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

    rows = read_table(hook, sheets).rows

    assert rows == [
        SheetRow(3, "A1", 811, "success", date(2024, 5, 1)),
        SheetRow(6, "A2", None, "", date(2024, 5, 3)),
        SheetRow(7, "", 812, "", None),
    ]


def test_missing_header_names_header_and_worksheet(emulator, hook, spreadsheet_id):
    emulator.create(spreadsheet_id, [{"title": "Pasien Jakarta", "rows": [["identifier", "phone"], ["1", "2"]]}])

    with pytest.raises(MissingHeaderError) as caught:
        read_table(hook, sheets_config(spreadsheet_id, "Pasien Jakarta"))

    assert "'phone_number'" in str(caught.value)
    assert "'Pasien Jakarta'" in str(caught.value)
    assert caught.value.header == "phone_number"


def test_a_header_row_sorted_away_is_named_as_such_without_quoting_the_patient_row(emulator, hook, spreadsheet_id):
    patient = ["3302011234567890", "0812-3456-7890", "Siti Rahayu", "12/03/1980", "Jl. Melati No. 17/3"]
    emulator.create(spreadsheet_id, [{"title": "Sheet1", "rows": [patient, HEADER], "value_input": "RAW"}])

    with pytest.raises(MissingHeaderError) as caught:
        read_table(hook, sheets_config(spreadsheet_id))

    message = str(caught.value)
    assert "looks like a patient's row" in message
    assert "5 filled cells" in message
    assert not [cell for cell in [*patient, "Siti", "1980", "Melati", "17/3"] if cell in message]


def test_a_renamed_header_names_the_regions_headers_found_but_no_other_cell(emulator, hook, spreadsheet_id):
    emulator.create(spreadsheet_id, [{"title": "Sheet1", "rows": [["identifier", "nomor_hp", "Siti Rahayu"]]}])

    with pytest.raises(MissingHeaderError) as caught:
        read_table(hook, sheets_config(spreadsheet_id))

    assert "among them this region's headers 'identifier' (column A)" in str(caught.value)
    assert "Siti" not in str(caught.value)
    assert "nomor_hp" not in str(caught.value), "a cell's text may be patient data: never quoted"


def test_a_header_on_the_header_row_twice_is_a_set_up_error_naming_both_columns(emulator, hook, spreadsheet_id):
    emulator.create(spreadsheet_id, [{"title": "Sheet1", "rows": [[*HEADER, " Identifier "], ["1", "2", "", "", "3"]]}])

    with pytest.raises(DuplicateHeaderError) as caught:
        read_table(hook, sheets_config(spreadsheet_id))

    assert "header 'identifier' is on the header row 2 times (columns A and E)" in str(caught.value)


def test_an_identifier_the_sheet_holds_as_a_rounded_number_is_flagged_and_its_status_still_placed(
    emulator, hook, spreadsheet_id
):
    """Sheets keeps numbers as doubles: a NIK typed as a number above 2**53, or pasted as 3.3E+15, lost digits."""
    full_width = "".join(chr(0xFF10 + int(d)) for d in "3302011234567891")
    emulator.create(
        spreadsheet_id,
        [
            {
                "title": "Sheet1",
                "rows": [
                    HEADER,
                    ["9471021234567891", "081234567890", "", ""],  # typed as a number: above 2**53
                    ["3.3E+15", "081234567891", "", ""],  # pasted from a scientific view
                    ["'3.3E+15", "081234567892", "", ""],  # the same, as text
                    ["3302011234567890", "081234567893", "", ""],  # a number below 2**53 keeps every digit
                    [full_width, "081234567894", "", ""],
                ],
            }
        ],
    )
    assert emulator.cells(spreadsheet_id, "Sheet1", "A2", view="unformatted") == [[9471021234567892]]

    table = read_table(hook, sheets_config(spreadsheet_id))

    assert [(row.identifier, row.identifier_lost_digits) for row in table.rows] == [
        ("9471021234567892", True),
        ("3300000000000000", True),
        ("3.3E+15", True),
        ("3302011234567890", False),
        ("3302011234567891", False),
    ]
    cells = [StatusCell(row.row, row.identifier, f"status {row.row}") for row in table.rows]
    result = write_statuses(hook, sheets_config(spreadsheet_id), cells, None, None, identifier_column=1)
    assert (result.written, result.not_placed) == (5, []), "each status goes beside the row that was read"


def test_missing_status_header_is_not_an_error_when_reading(emulator, hook, spreadsheet_id):
    emulator.create(spreadsheet_id, [{"title": "Sheet1", "rows": [HEADER[:2], ["1", "2"]]}])

    assert read_table(hook, sheets_config(spreadsheet_id)).rows == [SheetRow(2, "1", 2, "", None)]


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

    rows = read_table(hook, sheets_config(spreadsheet_id)).rows

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
    rows = read_table(hook, sheets_config(spreadsheet_id, feed_date="feed_date")).rows
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    assert len(rows) == 100_000
    assert rows[-1] == SheetRow(100_001, "3302010000099999", "081200099999", "", date(2024, 5, 1))
    assert elapsed < 20
    assert peak < 75 * 2**20, f"peak {peak / 2**20:.0f} MiB"  # the per-task budget left for data
