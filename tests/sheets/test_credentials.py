"""Credentials from the Google connection: a key is read as the Google provider reads it, without loading it."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from google.auth import impersonated_credentials
from google.auth.credentials import AnonymousCredentials

from localservers.sheets.keyfile import demo_keyfile
from phone_sync.errors import SetupError
from phone_sync.sheets.credentials import _from_provider
from phone_sync.sheets.hook import SPREADSHEETS_SCOPE, SheetsHook

TOKEN_URI = "http://127.0.0.1:9/token"
KEY = demo_keyfile(TOKEN_URI)


def connection(monkeypatch: pytest.MonkeyPatch, **extra: Any) -> str:
    monkeypatch.setenv(
        "AIRFLOW_CONN_SHEETS_CREDS", json.dumps({"conn_type": "google_cloud_platform", "extra": extra})
    )
    return "sheets_creds"


def described(credentials: Any) -> dict[str, Any]:
    return {
        "type": type(credentials),
        "email": getattr(credentials, "service_account_email", None),
        "scopes": getattr(credentials, "scopes", None),
        "token_uri": getattr(credentials, "_token_uri", None),
        "project": getattr(credentials, "project_id", None),
    }


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({"keyfile_dict": KEY}, id="key-json"),
        pytest.param({"keyfile_dict": json.dumps(KEY).replace("\\n", "\\\\n")}, id="key-text-escaped-newlines"),
        pytest.param({"extra__google_cloud_platform__keyfile_dict": json.dumps(KEY)}, id="legacy-prefix"),
        pytest.param({"keyfile_dict": KEY, "scope": "https://a.example/x, https://b.example/y"}, id="own-scopes"),
        pytest.param({"is_anonymous": True}, id="anonymous"),
    ],
)
def test_a_key_connection_gets_the_credentials_the_provider_builds(monkeypatch, extra):
    hook = SheetsHook(connection(monkeypatch, **extra))

    ours = hook.get_credentials()

    assert described(ours) == described(_from_provider(hook.gcp_conn_id, hook.scopes))
    assert hook.get_credentials() is ours


def test_a_key_file_gets_the_credentials_the_provider_builds(monkeypatch, tmp_path):
    key_file = tmp_path / "key.json"
    key_file.write_text(json.dumps(KEY))
    hook = SheetsHook(connection(monkeypatch, key_path=str(key_file)))

    ours = hook.get_credentials()

    assert described(ours)["email"] == KEY["client_email"]
    assert described(ours) == described(_from_provider(hook.gcp_conn_id, hook.scopes))


def test_a_connection_only_the_provider_understands_goes_to_the_provider(monkeypatch):
    target = "sheets-writer@region.iam.gserviceaccount.com"
    hook = SheetsHook(connection(monkeypatch, keyfile_dict=KEY, impersonation_chain=target))

    credentials = hook.get_credentials()

    assert isinstance(credentials, impersonated_credentials.Credentials)
    assert credentials.service_account_email == target
    assert not isinstance(credentials, AnonymousCredentials)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"keyfile_dict": '{"private_key": "-----BEGIN PRIVATE KEY-----\\nMIIEsecret'}, "keyfile_dict is not"),
        ({"keyfile_dict": {"client_email": "a@b.c", "private_key": "MIIEsecret", "token_uri": TOKEN_URI}}, "not a"),
        ({"key_path": "/keys/region.p12"}, "key_path must name a JSON key file"),
    ],
)
def test_a_key_that_is_not_one_is_a_setup_error_that_never_quotes_it(monkeypatch, extra, message):
    with pytest.raises(SetupError, match=message) as caught:
        SheetsHook(connection(monkeypatch, **extra)).get_credentials()

    assert "MIIEsecret" not in str(caught.value)
    assert "sheets_creds" in str(caught.value)


def test_a_sheets_task_with_a_key_never_loads_the_google_provider(monkeypatch):
    """What the module is for: the provider costs every Sheets task 27 MiB and 0.6 s (docs/development.md)."""
    connection(monkeypatch, keyfile_dict=KEY, scope=SPREADSHEETS_SCOPE)
    code = (
        "import sys\n"
        "from phone_sync.pipeline import tasks\n"
        "from phone_sync.sheets.hook import SheetsHook\n"
        "SheetsHook('sheets_creds').get_credentials()\n"
        "print(sorted(m for m in sys.modules if m.startswith(('airflow.providers.google.', 'googleapiclient'))))\n"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout

    # Airflow's provider registry reads every provider's get_provider_info; nothing else of it may load.
    assert loaded.strip() == "['airflow.providers.google.get_provider_info']"
