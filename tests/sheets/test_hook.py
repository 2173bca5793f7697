"""SheetsHook: pacing to the region's rate, Retry-After, counting every attempt, one request per method."""

from __future__ import annotations

import time

import pytest
import requests
from gspread.exceptions import APIError

from phone_sync.http.pacing import Backoff
from phone_sync.sheets.hook import quota_limiter
from phone_sync.sheets.rows import read_table
from phone_sync.sheets.statuses import StatusCell, write_statuses

from .helpers import HEADER, sheets_config


def test_requests_are_paced_to_requests_per_minute(emulator, make_hook, spreadsheet_id):
    emulator.create(spreadsheet_id, [{"title": "Sheet1", "rows": [HEADER, ["A", "1", "", ""]]}])
    hook = make_hook(requests_per_minute=240)  # one request every 0.25 s
    sheets = sheets_config(spreadsheet_id)

    started = time.monotonic()
    rows = read_table(hook, sheets).rows
    write_statuses(hook, sheets, [StatusCell(r.row, r.identifier, "success") for r in rows], None, None)
    elapsed = time.monotonic() - started

    assert hook.request_count == 5
    # The first three go out at once (a task's header and columns); the rest at the remaining rate.
    assert elapsed >= 2 * 60 / (240 - 3) - 0.05


def test_no_minute_ever_holds_more_than_the_quota() -> None:
    """Google counts requests per minute per user: burst + paced requests never exceed it in any 60 s."""
    now = [0.0]
    sent: list[float] = []

    def sleep(seconds: float) -> None:
        now[0] += seconds

    limiter = quota_limiter(60, clock=lambda: now[0], sleep=sleep)
    for _ in range(300):
        limiter.acquire()
        sent.append(now[0])
    most = max(sum(1 for t in sent if start <= t < start + 60) for start in sent)
    assert 57 <= most <= 60, "the quota is used, never exceeded"


def test_retry_after_is_honoured_and_every_attempt_counted(emulator, make_hook, spreadsheet_id):
    emulator.create(spreadsheet_id, [{"title": "Sheet1", "rows": [HEADER, ["A", "1", "", ""], ["B", "2", "", ""]]}])
    hook = make_hook(backoff=Backoff(attempts=4, base=0.005, cap=1.0))  # jitter alone would retry at once
    sheets = sheets_config(spreadsheet_id)
    emulator.configure(write_per_user=1, window_seconds=1.5)
    emulator.reset_counts()

    write_statuses(hook, sheets, [StatusCell(2, "A", "one")], None, None)
    write_statuses(hook, sheets, [StatusCell(3, "B", "two")], None, None)

    counts = emulator.counts()
    assert counts["throttled_write"] <= 1  # waited for the window named by Retry-After, not hammering
    assert hook.request_counts() == {
        "total": counts["total"],
        "read": counts["read"],
        "write": counts["write"],
        "throttled": counts["throttled"],
        "retried": counts["throttled"],
    }
    assert emulator.column_values(spreadsheet_id, "Sheet1", "C", 2, 3) == ["one", "two"]


def test_sheets_api_url_points_the_unchanged_client_at_the_emulator(emulator, hook, spreadsheet_id):
    emulator.create(spreadsheet_id, [{"title": "Sheet1", "rows": [HEADER]}])
    emulator.reset_counts()
    assert hook.api_url == emulator.url
    assert hook.get_conn() is hook.get_conn()  # one client per hook: one pacer, one counter

    assert hook.get_values(spreadsheet_id, "Sheet1!A1:B1") == [HEADER[:2]]
    assert emulator.counts()["by_method"] == {"values.get": 1}


def test_emulator_latency_is_configurable(emulator, hook, spreadsheet_id):
    emulator.create(spreadsheet_id, [{"title": "Sheet1", "rows": [HEADER]}])
    emulator.configure(latency_ms=300)

    started = time.monotonic()
    read_table(hook, sheets_config(spreadsheet_id))

    assert time.monotonic() - started >= 0.6  # two requests


# One method per API call: each is exactly one request, checked on the emulator's own counts.


def one_request(emulator, method):
    counts = emulator.counts()
    assert counts["by_method"] == {method: 1}, counts
    emulator.reset_counts()


def test_get_values_is_one_unformatted_request(emulator, hook, spreadsheet_id):
    emulator.create(
        spreadsheet_id,
        [{"title": "Sheet1", "rows": [HEADER, ["A", "6281234567890", "", "2024-05-01"]], "scientific": [HEADER[1]]}],
    )
    emulator.reset_counts()

    assert hook.get_values(spreadsheet_id, "Sheet1!A2:D2") == [["A", 6281234567890, "", 45413]]
    one_request(emulator, "values.get")
    assert hook.get_values(spreadsheet_id, "Sheet1!A1:B2", major_dimension="COLUMNS") == [
        ["identifier", "A"],
        ["phone_number", 6281234567890],
    ]
    one_request(emulator, "values.get")
    assert hook.get_values(spreadsheet_id, "Sheet1!B2", value_render_option="FORMATTED_VALUE") == [["6.28123E+12"]]
    one_request(emulator, "values.get")
    assert hook.get_values(spreadsheet_id, "Sheet1!A9:B9") == []
    one_request(emulator, "values.get")


def test_batch_get_values_is_one_request_for_many_ranges(emulator, hook, spreadsheet_id):
    emulator.create(spreadsheet_id, [{"title": "Sheet1", "rows": [HEADER, ["A", "0811"], ["B", "0812"]]}])
    emulator.reset_counts()

    answer = hook.batch_get_values(spreadsheet_id, ["Sheet1!A2:A", "Sheet1!B2:B"], major_dimension="COLUMNS")

    assert [r.get("values") for r in answer["valueRanges"]] == [[["A", "B"]], [[811, 812]]]
    one_request(emulator, "values.batchGet")


def test_batch_update_values_writes_many_ranges_raw_in_one_request(emulator, hook, spreadsheet_id):
    emulator.create(spreadsheet_id, [{"title": "Sheet1", "rows": [HEADER, ["A", "0811"], ["B", "0812"]]}])
    emulator.reset_counts()

    hook.batch_update_values(
        spreadsheet_id,
        [{"range": "Sheet1!C2", "values": [["=1+1"]]}, {"range": "Sheet1!D3", "values": [["0812"]]}],
    )

    one_request(emulator, "values.batchUpdate")
    assert emulator.cells(spreadsheet_id, "Sheet1", "C2:D3", view="unformatted") == [["=1+1"], ["", "0812"]]
    assert emulator.cells(spreadsheet_id, "Sheet1", "C2")[0][0]["type"] == "text", "RAW: a formula stays text"


def test_append_values_adds_rows_after_the_table_in_one_request(emulator, hook, spreadsheet_id):
    emulator.create(spreadsheet_id, [{"title": "Sheet1", "rows": [HEADER, ["A", "0811", "", ""]]}])
    emulator.reset_counts()

    hook.append_values(spreadsheet_id, "'Sheet1'!A1", [["B", "0812"], ["C", "=2+2"]])

    one_request(emulator, "values.append")
    assert emulator.cells(spreadsheet_id, "Sheet1", "A2:B4", view="unformatted") == [
        ["A", 811],
        ["B", "0812"],
        ["C", "=2+2"],
    ]


def test_sheet_properties_add_sheet_and_append_dimension_are_one_request_each(emulator, hook, spreadsheet_id):
    emulator.create(spreadsheet_id, [{"title": "Sheet1", "rows": [HEADER]}])
    emulator.reset_counts()

    hook.add_sheet(spreadsheet_id, "report", rows=10, columns=3, frozen_rows=1)
    one_request(emulator, "spreadsheets.batchUpdate")
    sheets = {s["properties"]["title"]: s["properties"] for s in hook.get_spreadsheet(spreadsheet_id)["sheets"]}
    one_request(emulator, "spreadsheets.get")
    assert sheets["report"]["gridProperties"] == {"rowCount": 10, "columnCount": 3}

    hook.append_dimension(spreadsheet_id, sheets["report"]["sheetId"], "COLUMNS", 2)
    one_request(emulator, "spreadsheets.batchUpdate")
    assert emulator.grid(spreadsheet_id, "report")["col_count"] == 5


def test_a_refusal_is_an_api_error_with_http_code_and_google_status(emulator, hook, spreadsheet_id):
    emulator.create(spreadsheet_id, [{"title": "Sheet1", "rows": [HEADER]}])

    with pytest.raises(APIError) as raised:
        hook.add_sheet(spreadsheet_id, "Sheet1", rows=10, columns=3)

    assert raised.value.code == 400
    assert raised.value.error["status"] == "INVALID_ARGUMENT"
    assert "already exists" in raised.value.error["message"]
    assert "spreadsheets:batchUpdate" in "\n".join(raised.value.__notes__)


def test_a_non_google_error_page_still_gives_the_http_code(emulator, make_hook, spreadsheet_id):
    hook = make_hook(sheets_api_url=emulator.url + "/no-such-proxy-path")  # answers FastAPI's own 404 page

    with pytest.raises(APIError) as raised:
        hook.get_values(spreadsheet_id, "Sheet1!A1")

    assert raised.value.code == 404, "gspread alone says -1 when the body is not Google's error JSON"


def test_an_append_that_timed_out_is_not_repeated_but_a_read_is(emulator, make_connection, spreadsheet_id):
    from phone_sync.sheets.hook import SheetsHook

    emulator.create(spreadsheet_id, [{"title": "Sheet1", "rows": [HEADER, ["A", "0811", "", ""]]}])
    hook = SheetsHook(make_connection(), requests_per_minute=60_000, backoff=Backoff(3, 0.01, 0.05), timeout=0.3)
    emulator.configure(latency_ms=600)
    emulator.reset_counts()

    with pytest.raises(requests.Timeout):
        hook.append_values(spreadsheet_id, "'Sheet1'!A1", [["B", "0812"]])
    with pytest.raises(requests.Timeout):
        hook.get_values(spreadsheet_id, "Sheet1!A1")
    time.sleep(0.8)  # let the emulator finish what the client gave up on

    assert emulator.counts()["by_method"] == {"values.append": 1, "values.get": 3}
    assert hook.request_counts() == {"total": 4, "read": 3, "write": 1, "throttled": 0, "retried": 2}
    emulator.configure(latency_ms=0)
    assert emulator.column_values(spreadsheet_id, "Sheet1", "A", 2, 4) == ["A", "B", ""], "the append landed, once"
