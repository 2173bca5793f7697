"""Writing statuses back: batching, row identity, RAW text, added headers, quota bursts, failure."""

from __future__ import annotations

import logging
from datetime import datetime

import pytest

from phone_sync.http.pacing import Backoff
from phone_sync.sheets.rows import read_table
from phone_sync.sheets.statuses import StatusCell, StatusWriteError, write_statuses

from .helpers import HEADER, sheets_config


def seed(emulator, spreadsheet_id, identifiers, **sheet):
    rows = [HEADER, *[[ident, f"'0812{i:08d}", "", ""] for i, ident in enumerate(identifiers)]]
    emulator.create(spreadsheet_id, [{"title": "Sheet1", "rows": rows, **sheet}])


def statuses(emulator, spreadsheet_id, first, last, column="C"):
    return emulator.column_values(spreadsheet_id, "Sheet1", column, first, last)


def test_10000_statuses_go_out_in_one_batch_update(emulator, hook, spreadsheet_id):
    seed(emulator, spreadsheet_id, [f"P{i:05d}" for i in range(10_000)])
    sheets = sheets_config(spreadsheet_id)
    rows = read_table(hook, sheets).rows
    # every 7th row has no status this run, so the rows are not one contiguous range
    cells = [StatusCell(r.row, r.identifier, f"success ({r.row})") for r in rows if r.row % 7]
    emulator.reset_counts()

    result = write_statuses(hook, sheets, cells, run_id="manual__1", run_time=None)

    counts = emulator.counts()
    assert counts["write"] == 1, counts
    assert counts["read"] == 2, counts  # header row + identifier column re-check
    assert counts["max_body_bytes"] < 2_000_000
    assert result.requests == 3
    assert (result.written, result.moved, result.not_placed) == (len(cells), 0, [])
    written = statuses(emulator, spreadsheet_id, 2, 10_001)
    assert written == [f"success ({row})" if row % 7 else "" for row in range(2, 10_002)]


def test_identifier_column_hint_makes_the_re_check_one_request(emulator, hook, spreadsheet_id):
    seed(emulator, spreadsheet_id, [f"P{i:05d}" for i in range(500)])
    sheets = sheets_config(spreadsheet_id)
    table = read_table(hook, sheets)
    cells = [StatusCell(r.row, r.identifier, "success") for r in table.rows]
    emulator.reset_counts()

    result = write_statuses(hook, sheets, cells, None, None, identifier_column=table.columns["identifier"])

    assert emulator.counts()["by_method"] == {"values.batchGet": 1, "values.batchUpdate": 1}
    assert (result.requests, result.written) == (2, 500)
    assert set(statuses(emulator, spreadsheet_id, 2, 501)) == {"success"}


def test_a_stale_hint_is_checked_against_the_header_and_the_moved_column_re_read(emulator, hook, spreadsheet_id):
    seed(emulator, spreadsheet_id, ["A", "B", "C"])
    sheets = sheets_config(spreadsheet_id)
    table = read_table(hook, sheets)
    cells = [StatusCell(r.row, r.identifier, f"for {r.identifier}") for r in table.rows]
    # mid-run the operator sorts by identifier descending and puts a new column before everything
    emulator.edit(spreadsheet_id, "Sheet1", {"op": "sort", "column": "A", "descending": True})
    rows = emulator.cells(spreadsheet_id, "Sheet1", "A1:D4", view="unformatted")
    emulator.create(spreadsheet_id, [{"title": "Sheet1", "rows": [["notes", *line] for line in rows]}])
    emulator.reset_counts()

    result = write_statuses(hook, sheets, cells, None, None, identifier_column=table.columns["identifier"])

    assert emulator.counts()["by_method"] == {"values.batchGet": 1, "values.get": 1, "values.batchUpdate": 1}
    assert (result.written, result.moved, result.not_placed) == (3, 2, [])
    assert emulator.column_values(spreadsheet_id, "Sheet1", "B", 2, 4) == ["C", "B", "A"]
    assert statuses(emulator, spreadsheet_id, 2, 4, column="D") == ["for C", "for B", "for A"]


def test_payload_limit_splits_into_few_requests(emulator, hook, spreadsheet_id):
    seed(emulator, spreadsheet_id, [f"P{i:05d}" for i in range(2_000)])
    sheets = sheets_config(spreadsheet_id)
    cells = [StatusCell(r.row, r.identifier, "failed: " + "x" * 200) for r in read_table(hook, sheets).rows]
    emulator.reset_counts()

    result = write_statuses(hook, sheets, cells, None, None, max_payload_bytes=100_000)

    counts = emulator.counts()
    assert 4 <= counts["write"] <= 6, counts  # ~420 kB of statuses in 100 kB requests
    assert counts["max_body_bytes"] <= 100_000
    assert result.written == 2_000
    assert set(statuses(emulator, spreadsheet_id, 2, 2_001)) == {"failed: " + "x" * 200}


def test_status_follows_a_row_the_operator_moved(emulator, hook, spreadsheet_id):
    seed(emulator, spreadsheet_id, ["A", "B", "C", "D"])
    sheets = sheets_config(spreadsheet_id)
    cells = [StatusCell(r.row, r.identifier, f"status of {r.identifier}") for r in read_table(hook, sheets).rows]
    # mid-run: a new row is inserted at the top and D is dragged above B
    emulator.edit(
        spreadsheet_id,
        "Sheet1",
        {"op": "insert", "row": 2, "values": [["NEW", "0811"]]},
        {"op": "move", "from": 6, "to": 3},
    )
    assert emulator.column_values(spreadsheet_id, "Sheet1", "A", 2, 6) == ["NEW", "D", "A", "B", "C"]

    result = write_statuses(hook, sheets, cells, None, None)

    assert (result.written, result.moved, result.not_placed) == (4, 4, [])
    assert statuses(emulator, spreadsheet_id, 2, 6) == ["", "status of D", "status of A", "status of B", "status of C"]


def test_sort_mid_run_keeps_every_status_beside_its_patient(emulator, hook, spreadsheet_id):
    seed(emulator, spreadsheet_id, [f"ID{n:03d}" for n in (5, 3, 9, 1, 7)])
    sheets = sheets_config(spreadsheet_id)
    cells = [StatusCell(r.row, r.identifier, f"for {r.identifier}") for r in read_table(hook, sheets).rows]
    emulator.edit(spreadsheet_id, "Sheet1", {"op": "sort", "column": "A", "descending": True})

    write_statuses(hook, sheets, cells, None, None)

    rows = emulator.cells(spreadsheet_id, "Sheet1", "A2:C6", view="unformatted")
    expected = ["ID009", "ID007", "ID005", "ID003", "ID001"]
    assert [(line[0], line[2]) for line in rows] == [(i, f"for {i}") for i in expected]


def test_duplicate_identifier_inserted_mid_run_does_not_move_statuses(emulator, hook, spreadsheet_id):
    seed(emulator, spreadsheet_id, ["A", "B", "C"])
    sheets = sheets_config(spreadsheet_id)
    cells = [StatusCell(r.row, r.identifier, "success") for r in read_table(hook, sheets).rows]
    # an operator inserts a second "B" row above row 3: row 3 still holds identifier B
    emulator.edit(spreadsheet_id, "Sheet1", {"op": "insert", "row": 3, "values": [["B", "0899"]]})
    assert emulator.column_values(spreadsheet_id, "Sheet1", "A", 2, 5) == ["A", "B", "B", "C"]

    result = write_statuses(hook, sheets, cells, None, None)

    assert statuses(emulator, spreadsheet_id, 2, 5) == ["success", "success", "", "success"]
    assert (result.written, result.moved, result.not_placed) == (3, 1, [])  # C followed its row


def test_ambiguous_move_is_reported_not_written(emulator, hook, spreadsheet_id, caplog):
    seed(emulator, spreadsheet_id, ["3302011111111111", "3302012222222222"])
    sheets = sheets_config(spreadsheet_id)
    cells = [StatusCell(r.row, r.identifier, "success") for r in read_table(hook, sheets).rows]
    # the first patient's row moves down, and someone pastes a copy of it further down too
    emulator.edit(
        spreadsheet_id,
        "Sheet1",
        {"op": "insert", "row": 2, "values": [["3302019999999999", "0800"]]},
        {"op": "insert", "row": 6, "values": [["3302011111111111", "0801"]]},
    )

    with caplog.at_level(logging.DEBUG):
        result = write_statuses(hook, sheets, cells, None, None)

    assert result.not_placed == [2]
    assert (result.written, result.moved) == (1, 1)
    assert statuses(emulator, spreadsheet_id, 2, 6) == ["", "", "success", "", ""]
    assert "3302011111111111" not in caplog.text
    assert "****1111" in caplog.text


def _duplicated(emulator, hook, spreadsheet_id, identifiers):
    """The sheet's rows and a status for each, naming the row it was read at (the winner says success)."""
    seed(emulator, spreadsheet_id, identifiers)
    sheets = sheets_config(spreadsheet_id)
    cells = [StatusCell(r.row, r.identifier, f"read at {r.row}") for r in read_table(hook, sheets).rows]
    return sheets, cells


def test_a_duplicated_identifier_follows_rows_inserted_above(emulator, hook, spreadsheet_id):
    sheets, cells = _duplicated(emulator, hook, spreadsheet_id, ["X", "X", "B"])
    emulator.edit(
        spreadsheet_id, "Sheet1", {"op": "insert", "row": 2, "count": 2, "values": [["N1", "0"], ["N2", "0"]]}
    )

    result = write_statuses(hook, sheets, cells, None, None)

    # Before: row 3 still held X, so "read at 3" was written there, on the row that was read at 2.
    assert statuses(emulator, spreadsheet_id, 2, 6) == ["", "", "read at 2", "read at 3", "read at 4"]
    assert (result.written, result.moved, result.not_placed) == (3, 3, [])


def test_a_duplicated_identifier_keeps_its_order_when_rows_go_in_between(emulator, hook, spreadsheet_id):
    sheets, cells = _duplicated(emulator, hook, spreadsheet_id, ["X", "B", "X"])
    emulator.edit(
        spreadsheet_id,
        "Sheet1",
        {"op": "insert", "row": 2, "values": [["N1", "0"]]},
        {"op": "insert", "row": 4, "count": 2, "values": [["N2", "0"], ["N3", "0"]]},
    )

    result = write_statuses(hook, sheets, cells, None, None)

    assert emulator.column_values(spreadsheet_id, "Sheet1", "A", 2, 7) == ["N1", "X", "N2", "N3", "B", "X"]
    assert statuses(emulator, spreadsheet_id, 2, 7) == ["", "read at 2", "", "", "read at 3", "read at 4"]
    assert result.not_placed == []


def test_a_genuinely_ambiguous_duplicate_is_not_placed(emulator, hook, spreadsheet_id):
    sheets, cells = _duplicated(emulator, hook, spreadsheet_id, ["X", "X", "B", "C", "D"])
    # A third X is pasted between the two, which then sit at different offsets: no rule fits.
    emulator.edit(spreadsheet_id, "Sheet1", {"op": "insert", "row": 3, "values": [["X", "0"]]})
    emulator.edit(spreadsheet_id, "Sheet1", {"op": "insert", "row": 2, "values": [["N1", "0"]]})

    result = write_statuses(hook, sheets, cells, None, None)

    assert emulator.column_values(spreadsheet_id, "Sheet1", "A", 2, 5) == ["N1", "X", "X", "X"]
    assert result.not_placed == [2, 3]
    assert statuses(emulator, spreadsheet_id, 3, 5) == ["", "", ""]
    assert statuses(emulator, spreadsheet_id, 6, 8) == ["read at 4", "read at 5", "read at 6"]


def test_deleted_row_is_not_placed(emulator, hook, spreadsheet_id):
    seed(emulator, spreadsheet_id, ["A", "B", "C"])
    sheets = sheets_config(spreadsheet_id)
    cells = [StatusCell(r.row, r.identifier, "success") for r in read_table(hook, sheets).rows]
    emulator.edit(spreadsheet_id, "Sheet1", {"op": "delete", "row": 3})

    result = write_statuses(hook, sheets, cells, None, None)

    assert result.not_placed == [3]
    assert statuses(emulator, spreadsheet_id, 2, 3) == ["success", "success"]


def test_formula_looking_text_stays_text(emulator, hook, spreadsheet_id):
    seed(emulator, spreadsheet_id, ["A", "B"])
    sheets = sheets_config(spreadsheet_id)
    evil = '=HYPERLINK("http://evil.example/","click")'
    cells = [StatusCell(2, "A", evil), StatusCell(3, "B", "+62 812")]

    write_statuses(hook, sheets, cells, None, None)

    a, b = (line[2] for line in emulator.cells(spreadsheet_id, "Sheet1", "A2:C3"))
    assert a == {"type": "text", "value": evil, "formatted": evil}
    assert b["type"] == "text"


def test_missing_status_header_is_added_in_first_free_cell_even_past_the_grid(emulator, hook, spreadsheet_id):
    emulator.create(
        spreadsheet_id,
        [
            {
                "title": "Sheet1",
                "rows": [["identifier", "phone_number", "", "notes"], ["A", "'0811", "", "n"]],
                "col_count": 4,
            }
        ],
    )
    sheets = sheets_config(spreadsheet_id, run_id="run id")

    result = write_statuses(hook, sheets, [StatusCell(2, "A", "success")], "scheduled__2024", None)

    assert result.written == 1
    assert emulator.cells(spreadsheet_id, "Sheet1", "A1:F2", view="unformatted") == [
        ["identifier", "phone_number", "", "notes", "status_update_phone_number", "run id"],
        ["A", "0811", "", "n", "success", "scheduled__2024"],
    ]
    assert emulator.grid(spreadsheet_id, "Sheet1")["col_count"] == 6


def test_optional_columns_written_alongside_in_one_range(emulator, hook, spreadsheet_id):
    emulator.create(
        spreadsheet_id,
        [
            {
                "title": "Sheet1",
                "rows": [
                    ["identifier", "phone_number", "status_update_phone_number", "last run", "run", "details"],
                    ["A", "1", "", "", "", "old link"],
                    ["B", "2", "", "", "", "old link"],
                ],
            }
        ],
    )
    sheets = sheets_config(spreadsheet_id, run_time="Last Run", run_id="run", status_link="details")
    cells = [
        StatusCell(2, "A", "failed: invalid phone (b01-r2)", link="http://airflow/x"),
        StatusCell(3, "B", "success"),
    ]
    emulator.reset_counts()

    write_statuses(hook, sheets, cells, "manual__7", datetime(2024, 5, 1, 10, 30))

    assert emulator.counts()["by_method"]["values.batchUpdate"] == 1
    assert emulator.cells(spreadsheet_id, "Sheet1", "C2:F3", view="unformatted") == [
        ["failed: invalid phone (b01-r2)", "2024-05-01 10:30:00", "manual__7", "http://airflow/x"],
        ["success", "2024-05-01 10:30:00", "manual__7", ""],  # the stale link is cleared
    ]


def test_429_burst_is_ridden_out(emulator, make_hook, spreadsheet_id):
    hook = make_hook(backoff=Backoff(attempts=10, base=0.05, cap=0.5))
    seed(emulator, spreadsheet_id, [f"P{i}" for i in range(30)])
    sheets = sheets_config(spreadsheet_id)
    rows = read_table(hook, sheets).rows
    emulator.configure(read_per_user=2, write_per_user=1, window_seconds=1.0)
    emulator.reset_counts()

    for start in range(0, 30, 10):  # three write-backs back to back: 3 reads + 1 write each
        cells = [StatusCell(r.row, r.identifier, f"run {start}") for r in rows[start : start + 10]]
        assert write_statuses(hook, sheets, cells, None, None).written == 10

    counts = emulator.counts()
    assert counts["throttled"] > 0, counts
    assert hook.request_counts()["throttled"] == counts["throttled"]
    assert statuses(emulator, spreadsheet_id, 2, 31) == [f"run {10 * (i // 10)}" for i in range(30)]


def test_status_that_cannot_be_written_fails_the_task(emulator, make_hook, spreadsheet_id):
    hook = make_hook(backoff=Backoff(attempts=2, base=0.01, cap=0.05))
    seed(emulator, spreadsheet_id, ["A"])
    emulator.configure(write_per_user=0, window_seconds=0.5)

    with pytest.raises(StatusWriteError, match="429"):
        write_statuses(hook, sheets_config(spreadsheet_id), [StatusCell(2, "A", "success")], None, None)

    assert statuses(emulator, spreadsheet_id, 2, 2) == [""]
    assert emulator.counts()["throttled_write"] == 2  # tried, retried, gave up


def test_logs_never_show_identifiers_or_phones(emulator, make_hook, spreadsheet_id, caplog):
    hook = make_hook(backoff=Backoff(attempts=10, base=0.05, cap=0.3))
    emulator.create(
        spreadsheet_id,
        [
            {
                "title": "Sheet1",
                "rows": [
                    HEADER,
                    ["3302015555555555", "6281234567890", "", ""],
                    ["3302016666666666", "'081298765432", "", ""],
                ],
            }
        ],
    )
    sheets = sheets_config(spreadsheet_id)
    with caplog.at_level(logging.DEBUG):
        rows = read_table(hook, sheets).rows
        emulator.edit(spreadsheet_id, "Sheet1", {"op": "delete", "row": 2})
        emulator.configure(write_per_user=1, read_per_user=1, window_seconds=0.5)
        write_statuses(hook, sheets, [StatusCell(r.row, r.identifier, "success") for r in rows], "r", None)

    assert "Sheets" in caplog.text  # something was logged
    for secret in ("3302015555555555", "3302016666666666", "6281234567890", "081298765432", "81298765432"):
        assert secret not in caplog.text
