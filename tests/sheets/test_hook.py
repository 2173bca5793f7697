"""SheetsHook's client: pacing to the region's rate, honouring Retry-After, counting every attempt."""

from __future__ import annotations

import time

from phone_sync.http.pacing import Backoff
from phone_sync.sheets.rows import read_rows
from phone_sync.sheets.statuses import StatusCell, write_statuses

from .helpers import HEADER, sheets_config


def test_requests_are_paced_to_requests_per_minute(emulator, make_hook, spreadsheet_id):
    emulator.create(spreadsheet_id, [{"title": "Sheet1", "rows": [HEADER, ["A", "1", "", ""]]}])
    hook = make_hook(requests_per_minute=240)  # one request every 0.25 s
    sheets = sheets_config(spreadsheet_id)

    started = time.monotonic()
    rows = read_rows(hook, sheets)
    write_statuses(hook, sheets, [StatusCell(r.row, r.identifier, "success") for r in rows], None, None)
    elapsed = time.monotonic() - started

    assert hook.request_count == 5
    assert elapsed >= 4 * 0.25 - 0.05


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
    read_rows(hook, sheets_config(spreadsheet_id))

    assert time.monotonic() - started >= 0.6  # two requests
