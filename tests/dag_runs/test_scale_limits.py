"""More pending rows than one run may map: the run takes what fits, queues the rest, and stays honest.

Airflow refuses to map more than ``[core] max_map_length`` task instances (1024 by default, ~102,400 rows
at 100 rows a batch). Lowered here to 2, so a few hundred rows show the same cliff.
"""

from __future__ import annotations

import os
from collections import Counter

import pytest

from localservers.scenario import generate
from tests.dag_runs.test_pipeline import assert_rows_match, batches_of
from tests.regions import MakeRegion, report_rows, run_dag, statuses, ti_tries

pytestmark = pytest.mark.slow


def test_rows_beyond_max_map_length_are_queued_and_sent_by_the_next_run(
    make_region: MakeRegion, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__CORE__MAX_MAP_LENGTH", "2")
    scenario = generate(400, seed=51)
    region = make_region(scenario)
    batches = batches_of(region, scenario)
    assert len(batches) == 4, "the scenario needs twice what one run may map"

    first = run_dag(region, scenario.run_date)

    assert first.state == "success"
    assert sorted(k[1] for k in ti_tries(first) if k[0] == "process_batch") == [0, 1]
    sheet = statuses(region)
    queued = {row for batch in batches[2:] for row in batch}
    assert all(sheet[row].startswith("queued: more rows than one run may take (2 batches)") for row in queued)
    assert not any(sheet[row].startswith("queued") for batch in batches[:2] for row in batch)
    [report] = report_rows(region)
    assert report["queued"] == len(queued)
    assert report["batches failed"] == 0

    second = run_dag(region, scenario.run_date)

    assert second.state == "success"
    assert_rows_match(region, scenario)
    assert [r["queued"] for r in report_rows(region)] == [len(queued), 0]
    assert Counter(text.split(":")[0] for text in statuses(region).values())["queued"] == 0


def test_a_failed_clean_step_never_ends_green(make_region: MakeRegion, monkeypatch: pytest.MonkeyPatch) -> None:
    """The old failure mode: clean_phones failed (Airflow refused its push), write-back and the report ran
    anyway and the run ended green with 0 updated and 0 batches failed."""
    from phone_sync.pipeline import tasks

    def refused(*args: object, **kwargs: object) -> None:
        raise RuntimeError("pushed value is too large to map as a downstream's dependency")

    monkeypatch.setattr(tasks, "clean_and_batch", refused)
    scenario = generate(40, seed=52)
    region = make_region(scenario)

    dag_run = run_dag(region, scenario.run_date)

    assert dag_run.state == "failed"
    tries = ti_tries(dag_run)
    assert tries[("clean_phones", -1)] == ("failed", 2), "an unexplained failure is retried"
    assert tries[("write_back_statuses", -1)][0] == "skipped"
    assert tries[("run_report", -1)][0] == "failed"
    [report] = report_rows(region)
    assert report["problem"] == "clean_phones: RuntimeError", "the cause, without a library's message"
    assert all(text == "" for text in statuses(region).values())


def test_check_regions_warns_when_a_sheet_needs_several_runs(
    make_region: MakeRegion, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from phone_sync.check_regions import main as check_regions
    from phone_sync.regions import REGIONS_DIR_ENV

    region = make_region(generate(450, seed=53))
    folder = os.environ[REGIONS_DIR_ENV]

    monkeypatch.setenv("AIRFLOW__CORE__MAX_MAP_LENGTH", "2")
    assert check_regions([folder]) == 0
    said = capsys.readouterr().out
    assert "WARN: worksheet 'patients' has room for 999 rows, more than one run takes (200)" in said

    monkeypatch.setenv("AIRFLOW__CORE__MAX_MAP_LENGTH", "1024")
    assert check_regions([folder]) == 0
    assert "worksheet 'patients' has room for 999 rows; one run takes 102,400" in capsys.readouterr().out
    assert region.config.region in said
