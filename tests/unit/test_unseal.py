"""``phone-sync-unseal``: a help that reads well and names its environment, a warning before patient data
reaches a terminal, and ``--api`` only over https (plain http to loopback), through the one HTTP path."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from localservers.sinks.processes import Redirector
from phone_sync.contracts import Batch, Batches, BatchRow, ContractError, batch_key
from phone_sync.crypto import Sealer, new_key
from phone_sync.unseal import KEY_ENV, TOKEN_ENV, TTY_WARNING, main, opened

NIK, PHONE = "3302011234567890", "+6281234567890"
API_TOKEN = "api-token-for-unseal-tests-01"
XCOM_PATH = "/api/v2/dags/phone_sync__demo/dagRuns/manual__1/taskInstances/process_batch/xcomEntries/return_value"


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    value = new_key()
    monkeypatch.setenv(KEY_ENV, value)
    monkeypatch.setenv(TOKEN_ENV, API_TOKEN)
    return value


def sealed_batch(key: str) -> dict[str, object]:
    row = BatchRow(row=2, identifier=NIK, phone=PHONE, effective=date(2026, 11, 28))
    batch = Batch(index=0, label="rows 2-2", rows=[row])
    batches = Batches.by_key([batch], identifier_column=1, columns={"identifier": 1})
    return batches[batch_key(0)].to_xcom(Sealer.from_text(key))


@pytest.fixture
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Redirector, Redirector]]:
    logs = tmp_path_factory.mktemp("unseal-api")
    with Redirector(log_path=logs / "api.log") as api, Redirector(log_path=logs / "elsewhere.log") as other:
        yield api, other


def show_api(url: str) -> list[str]:
    return ["show", "--api", url, "--dag-id", "phone_sync__demo", "--run-id", "manual__1"]


@pytest.mark.parametrize("argv", [["--help"], ["show", "--help"]])
def test_help_reads_as_text_and_names_the_environment(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: phone-sync-unseal")
    assert f"{KEY_ENV} " in text
    assert f"{TOKEN_ENV} " in text
    assert "patient data in clear" in text
    assert "``" not in text, "no reStructuredText markup"
    assert "\\" not in text, "no escaped line breaks"


def test_api_values_are_fetched_over_loopback_http_with_the_token(
    key: str, servers: tuple[Redirector, Redirector], capsys: pytest.CaptureFixture[str]
) -> None:
    api, _ = servers
    api.route(XCOM_PATH, 200, json={"key": "return_value", "value": sealed_batch(key)})

    assert main(show_api(api.url)) == 0

    assert json.loads(capsys.readouterr().out)["batches"][0]["rows"][0]["identifier"] == NIK
    [request] = api.received()
    assert request["path"] == XCOM_PATH + "?map_index=-1&deserialize=true"
    assert request["authorization"] is True


@pytest.mark.parametrize("url", ["http://airflow.example", "airflow.example", "ftp://127.0.0.1"])
def test_api_refuses_plain_http_to_a_remote_host(key: str, url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(show_api(url)) == 1
    said = capsys.readouterr().err
    assert "unseal: the Airflow API URL must use https (plain http is only allowed to loopback hosts)" in said
    assert API_TOKEN not in said


def test_api_redirect_elsewhere_takes_neither_token_nor_data(
    key: str, servers: tuple[Redirector, Redirector], capsys: pytest.CaptureFixture[str]
) -> None:
    api, elsewhere = servers
    api.route(XCOM_PATH, 307, elsewhere.url + XCOM_PATH)

    assert main(show_api(api.url)) == 1

    assert "another origin" in capsys.readouterr().err
    assert elsewhere.received() == []


def _show(value: Path, key: str, *, terminal: bool) -> tuple[bytes, bytes]:
    """Run the CLI with stdout a terminal (a pseudo-terminal) or a pipe; return (stdout, stderr)."""
    argv = [sys.executable, "-m", "phone_sync.unseal", "show", str(value)]
    env = {**os.environ, KEY_ENV: key}
    if not terminal:
        done = subprocess.run(argv, env=env, capture_output=True, timeout=120, check=True)
        return done.stdout, done.stderr
    leader, follower = pty.openpty()
    with subprocess.Popen(argv, env=env, stdout=follower, stderr=subprocess.PIPE) as process:
        os.close(follower)
        shown = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closed with the process
                break
            if not chunk:
                break
            shown += chunk
        stderr = process.stderr.read() if process.stderr else b""
    os.close(leader)
    assert process.returncode == 0, stderr
    return shown, stderr


def test_a_terminal_is_warned_before_patient_data_a_pipe_is_not(tmp_path: Path) -> None:
    key = new_key()
    value = tmp_path / "batch.json"
    value.write_text(json.dumps(sealed_batch(key)))

    shown, warned = _show(value, key, terminal=True)
    assert NIK.encode() in shown
    assert TTY_WARNING.encode() in warned

    piped, quiet = _show(value, key, terminal=False)
    assert NIK.encode() in piped
    assert quiet == b""


def test_the_batch_indexes_show_as_they_are_and_a_foreign_value_is_refused() -> None:
    sealer = Sealer.from_text(new_key())
    assert opened(json.dumps([0, 1, 2]), sealer) == [0, 1, 2]  # clean_phones' return value
    with pytest.raises(ContractError, match="not a phone-sync XCom contract"):
        opened({"rows": [NIK]}, sealer)
