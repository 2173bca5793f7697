"""Credentials from the Airflow connection reach the emulator through google-auth's real code paths."""

from __future__ import annotations

import pytest
from google.auth.exceptions import InvalidOperation
from gspread.exceptions import APIError

from localservers.sheets.keyfile import demo_keyfile
from phone_sync.sheets.errors import SheetsSetupError
from phone_sync.sheets.rows import read_table
from phone_sync.sheets.statuses import StatusCell, write_statuses

from .helpers import HEADER, sheets_config

EMAIL = "region-demo@phone-sync.iam.gserviceaccount.com"


def test_keyfile_dict_service_account_gets_a_token_and_is_the_user(emulator, make_hook, spreadsheet_id):
    emulator.create(spreadsheet_id, [{"title": "Sheet1", "rows": [HEADER, ["A", "0811", "", ""]]}])
    emulator.configure(allow_anonymous=False)
    hook = make_hook(keyfile_dict=demo_keyfile(emulator.url + "/token", EMAIL))
    sheets = sheets_config(spreadsheet_id)

    rows = read_table(hook, sheets).rows
    write_statuses(hook, sheets, [StatusCell(r.row, r.identifier, "success") for r in rows], None, None)

    assert hook.scopes == ["https://www.googleapis.com/auth/spreadsheets"]
    assert emulator.counts()["by_user"][EMAIL] == {"read": 4, "write": 1}
    assert emulator.column_values(spreadsheet_id, "Sheet1", "C", 2, 2) == ["success"]


def test_without_credentials_the_emulator_refuses(emulator, make_hook, spreadsheet_id):
    emulator.create(spreadsheet_id, [{"title": "Sheet1", "rows": [HEADER]}])
    emulator.configure(allow_anonymous=False)

    # google-auth answers the 401 by trying to refresh, which anonymous credentials cannot do
    with pytest.raises(InvalidOperation):
        read_table(make_hook(), sheets_config(spreadsheet_id))

    assert emulator.counts()["by_status"] == {"401": 1}


def test_a_token_without_the_spreadsheets_scope_is_refused(emulator, make_hook, spreadsheet_id):
    emulator.create(spreadsheet_id, [{"title": "Sheet1", "rows": [HEADER]}])
    hook = make_hook(
        keyfile_dict=demo_keyfile(emulator.url + "/token", EMAIL),
        scope="https://www.googleapis.com/auth/cloud-platform",
    )

    with pytest.raises(SheetsSetupError, match="lacks the spreadsheets scope") as caught:
        read_table(hook, sheets_config(spreadsheet_id))

    assert "auth/cloud-platform" in str(caught.value)
    assert isinstance(caught.value.__context__, APIError)
    assert caught.value.__context__.code == 403
