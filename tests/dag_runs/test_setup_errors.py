"""Configuration mistakes an operator meets fail at once, say why, and leave a red run with a report row.

Each case: the failing task fails on its first try although the region allows a retry, downstream tasks
skip or fail cleanly (no secondary exceptions), the run is red, and the report row (when the sheet is
reachable) names the step and the cause with what was found instead.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from localservers.scenario import generate
from localservers.stack import LocalRegion, conn_env_name
from tests.regions import MakeRegion, region_file, report_rows, run_dag, statuses, ti_tries

pytestmark = pytest.mark.slow

STOPPED_AT_EXTRACT = {
    ("extract_rows", -1): ("failed", 1),
    ("clean_phones", -1): ("upstream_failed", 0),
    ("process_batch", -1): ("upstream_failed", 0),
    ("write_back_statuses", -1): ("skipped", 1),
    ("run_report", -1): ("failed", 1),
}


def assert_stopped_at_extract(dag_run: Any) -> None:
    assert dag_run.state == "failed"
    tries = ti_tries(dag_run)
    assert {key: tries[key] for key in STOPPED_AT_EXTRACT} == STOPPED_AT_EXTRACT


def started(make_region: MakeRegion, rows: int = 60, seed: int = 41) -> tuple[LocalRegion, Any]:
    scenario = generate(rows, seed=seed)
    return make_region(scenario), scenario


def test_a_renamed_column_header_fails_at_once_naming_the_headers_found(make_region: MakeRegion) -> None:
    """Names the region's headers that are there; other cells are never quoted (they may be a patient's row)."""
    region, scenario = started(make_region)
    region.sheet_edit({"op": "set", "range": "C1", "values": [["nomor_hp"]]})  # was phone_number

    dag_run = run_dag(region, scenario.run_date)

    assert_stopped_at_extract(dag_run)
    [report] = report_rows(region)
    problem = report["problem"]
    assert problem.startswith("extract_rows: region demo: header 'phone_number' not found on row 1")
    assert "among them this region's headers 'nik' (column A)" in problem, "what was found instead"
    assert "nomor_hp" not in problem
    assert report["rows read"] in ("", None)
    assert all(text == "" for row, text in statuses(region).items() if row > 1), "no status was written"


def test_a_renamed_worksheet_names_the_worksheets_that_exist(make_region: MakeRegion, tmp_path: Any) -> None:
    region, scenario = started(make_region)
    typo = region_file(tmp_path / "typo", sheets={"worksheet": "Pasien"})

    dag_run = run_dag(region, scenario.run_date, typo)

    assert_stopped_at_extract(dag_run)
    [report] = report_rows(region)
    assert "worksheet 'Pasien' not found" in report["problem"]
    assert "worksheets there: 'patients'" in report["problem"]


def test_a_spreadsheet_not_shared_with_the_account_fails_at_once(make_region: MakeRegion) -> None:
    region, scenario = started(make_region)
    region.share_sheet(["someone-else@dinkes.example"])

    dag_run = run_dag(region, scenario.run_date)

    assert_stopped_at_extract(dag_run)  # the report cannot reach the sheet either, and still fails cleanly
    region.share_sheet(None)
    assert report_rows(region) == []


def test_a_spreadsheet_that_does_not_exist_fails_at_once(make_region: MakeRegion, capfd: Any) -> None:
    region, scenario = started(make_region)
    region.delete_sheet()

    dag_run = run_dag(region, scenario.run_date)

    assert_stopped_at_extract(dag_run)
    logs = capfd.readouterr().out
    assert "does not exist (HTTP 404 from the Sheets API); check sheets.spreadsheet_id" in logs


@pytest.mark.parametrize(
    ("fault", "said"),
    [
        ("wrong_token", "refused the credentials (HTTP 401"),
        ("forbidden", "refused access (HTTP 403"),
    ],
)
def test_refused_fhir_credentials_fail_every_batch_at_once(
    make_region: MakeRegion, monkeypatch: pytest.MonkeyPatch, fault: str, said: str
) -> None:
    region, scenario = started(make_region, rows=250, seed=42)
    if fault == "wrong_token":  # the connection carries a token the server does not know
        wrong = {"conn_type": "fhir", "host": region.fhir.url, "password": "not-the-token"}
        monkeypatch.setenv(conn_env_name(region.config.fhir.conn_id), json.dumps(wrong))
    else:
        region.fhir_faults(forbidden=True)

    dag_run = run_dag(region, scenario.run_date)

    assert dag_run.state == "failed"
    tries = ti_tries(dag_run)
    batches = {key: value for key, value in tries.items() if key[0] == "process_batch"}
    assert len(batches) == 3
    assert set(batches.values()) == {("failed", 1)}, "refused credentials are not retried"
    assert tries[("write_back_statuses", -1)] == ("success", 1)
    [report] = report_rows(region)
    assert report["batches failed"] == 3
    assert report["problem"].startswith("process_batch: region demo: connection 'fhir_demo'")
    assert said in report["problem"]
    sent = [text for text in statuses(region).values() if text.startswith("failed: batch not processed")]
    assert sent
    assert all(said in text for text in sent)
