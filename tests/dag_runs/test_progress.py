"""Live progress in the sheet through dag.test(): each batch writes its statuses as it finishes, within the
region's Sheets quota, and write-back completes and reconciles the rest.

A thread reads the sheet while the run moves (through the emulator's control API, which spends no quota), so
the tests see what an operator watching the spreadsheet sees.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
import requests

from localservers.scenario import Scenario, generate
from localservers.stack import LocalRegion
from localservers.watch import watching
from tests.dag_runs.test_controls import preview_rows, run
from tests.dag_runs.test_pipeline import assert_rows_match
from tests.regions import MakeRegion, report_rows, statuses, ti_tries

pytestmark = pytest.mark.slow

SLOW_FHIR = ("--latency-ms", "40")


def started_at(dag_run: Any, task_id: str) -> datetime:
    from airflow.utils.session import create_session

    with create_session() as session:
        [ti] = [ti for ti in dag_run.get_task_instances(session=session) if ti.task_id == task_id]
        return ti.start_date


def set_sheets_quota(region: LocalRegion, per_minute: int) -> None:
    settings = {"read_per_user": per_minute, "write_per_user": per_minute}
    requests.put(f"{region.sheets.url}/_emulator/config", json=settings, timeout=10).raise_for_status()


def rows_with_status(scenario: Scenario) -> int:
    return sum(1 for expected in scenario.expected.values() if expected.kind != "blank")


def test_finished_batches_show_in_the_sheet_before_write_back_starts(make_region: MakeRegion) -> None:
    scenario = generate(450, seed=71)
    region = make_region(scenario, fhir_args=SLOW_FHIR)

    with watching(region) as watch:
        dag_run = run(region, scenario)

    assert dag_run.state == "success"
    first = watch.first_seen()
    assert first is not None
    assert first < started_at(dag_run, "write_back_statuses").timestamp(), "statuses appeared only at the end"
    assert_rows_match(region, scenario)
    [report] = report_rows(region)
    assert report["statuses written live"] > 0
    assert report["statuses written live"] + report["statuses written at end"] == rows_with_status(scenario)
    assert region.sheet_requests()["throttled"] == 0


def test_a_quota_so_small_that_most_batches_defer_still_gets_every_status_right(make_region: MakeRegion) -> None:
    # 20 a minute: 10 kept for the run's own steps, 8 for races between 4 batches, 2 left: one live write.
    scenario = generate(450, seed=72)
    region = make_region(scenario, sheets={"requests_per_minute": 20})
    set_sheets_quota(region, 20)

    dag_run = run(region, scenario)

    assert dag_run.state == "success"
    assert_rows_match(region, scenario)
    [report] = report_rows(region)
    batches = sum(1 for (task, _), _ in ti_tries(dag_run).items() if task == "process_batch")
    assert batches >= 4
    assert 0 < report["statuses written live"] <= 100, "one batch's write fits the minute, the others defer"
    assert report["statuses written live"] + report["statuses written at end"] == rows_with_status(scenario)
    counts = region.sheet_requests()
    assert counts["throttled"] == 0, "no request went against the quota"
    assert all(tries == 1 for (task, _), (_, tries) in ti_tries(dag_run).items()), "nothing was retried"


def test_rows_an_operator_inserts_above_mid_run_never_take_a_wrong_status(make_region: MakeRegion) -> None:
    scenario = generate(450, seed=73)
    region = make_region(scenario, fhir_args=SLOW_FHIR)

    def operator_inserts_two_rows() -> None:
        region.sheet_edit({"op": "insert", "row": 2, "count": 2})

    with watching(region, on_first=operator_inserts_two_rows):
        dag_run = run(region, scenario)

    assert dag_run.state == "success"
    sheet = statuses(region)
    header, *rows = region.cells()
    identifier_col = header.index(region.config.sheets.columns.identifier)
    moved = 0
    for row, expected in scenario.expected.items():
        now = row + 2  # every data row moved down by the two inserted rows
        cells = rows[now - 2]
        assert str(cells[identifier_col] if len(cells) > identifier_col else "") == str(scenario.rows[row - 2][0])
        if expected.kind == "blank":
            assert sheet[now] == ""
        else:
            assert sheet[now], f"row {row} (now {now}) has no status"
            moved += 1
    assert sheet[2] == sheet[3] == "", "the inserted rows get no status"
    [report] = report_rows(region)
    assert report["statuses written live"] > 0, "batches before the insert wrote live"
    assert report["statuses written at end"] > 0, "write-back placed the rows that moved"
    assert report["statuses not placed"] == 0
    assert moved == rows_with_status(scenario)


def test_a_preview_fills_its_worksheet_as_batches_finish(make_region: MakeRegion) -> None:
    scenario = generate(450, seed=74)
    region = make_region(scenario)

    dag_run = run(region, scenario, {"mode": "preview"})

    assert dag_run.state == "success"
    assert set(statuses(region).values()) == {""}, "the status column is not touched"
    _header, *lines = preview_rows(region)
    assert [line[0] for line in lines] == sorted(row for row, e in scenario.expected.items() if e.kind != "blank")
    [report] = report_rows(region)
    assert report["statuses written live"] > 0
    assert report["statuses written live"] + report["statuses written at end"] == len(lines)
