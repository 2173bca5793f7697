"""Every region file gives one well-formed DAG; a broken file never takes the others down."""

from __future__ import annotations

import json
import shutil
import socket
from datetime import timedelta
from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.sdk import CronDataIntervalTimetable

from phone_sync.dag_factory import CONFIG_ERROR_TAG
from phone_sync.regions import REGIONS_DIR_ENV, load_regions
from tests.regions import PROJECT_REGIONS

DAGS_FOLDER = Path(__file__).resolve().parents[2] / "dags"
PIPELINE = ["extract_rows", "clean_phones", "process_batch", "write_back_statuses", "run_report"]


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("DAG parsing must not touch the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def parse(monkeypatch: pytest.MonkeyPatch, regions: Path) -> DagBag:
    monkeypatch.setenv(REGIONS_DIR_ENV, str(regions))
    return DagBag(dag_folder=str(DAGS_FOLDER))


@pytest.fixture
def regions_copy(tmp_path: Path) -> Path:
    target = tmp_path / "regions"
    shutil.copytree(PROJECT_REGIONS, target)
    return target


def test_every_region_file_gives_one_dag(monkeypatch: pytest.MonkeyPatch, no_network: None) -> None:
    bag = parse(monkeypatch, PROJECT_REGIONS)
    assert bag.import_errors == {}
    configs, errors = load_regions(PROJECT_REGIONS)
    assert errors == []
    assert sorted(bag.dag_ids) == sorted(c.dag_id for c in configs)
    for config in configs:
        dag = bag.dags[config.dag_id]
        assert [t.task_id for t in dag.topological_sort()] == PIPELINE
        assert dag.timezone.name == config.timezone
        assert dag.timetable.expression == CronDataIntervalTimetable(config.schedule, timezone="UTC").expression
        assert dag.timetable.timezone == config.timezone
        assert dag.tags >= {"phone-sync", config.region, *config.tags}
        assert CONFIG_ERROR_TAG not in dag.tags
        assert dag.catchup is False
        assert dag.max_active_runs == 1
        assert config.sheets.spreadsheet_id in dag.doc_md
        assert config.fhir.conn_id in dag.doc_md
        assert "clear its status" in dag.doc_md
        for task in dag.tasks:
            assert task.owner == config.owner
            assert task.retries >= 1
            assert task.retry_exponential_backoff
            assert task.retry_delay >= timedelta(seconds=10)
        batch = dag.get_task("process_batch")
        assert batch.max_active_tis_per_dag == config.max_parallel_batches
        assert dag.get_task("write_back_statuses").trigger_rule == "all_done"
        assert dag.get_task("run_report").trigger_rule == "all_done"


def test_batches_use_no_custom_pool_and_are_bounded_per_dag(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pool only limits, and one that nobody created leaves batches queued forever; one run at a time
    with ``max_active_tis_per_dag`` gives each region the same bound with nothing to set up."""
    bag = parse(monkeypatch, PROJECT_REGIONS)
    configs, _ = load_regions(PROJECT_REGIONS)
    for config in configs:
        dag = bag.dags[config.dag_id]
        assert dag.max_active_runs == 1
        assert {task.pool for task in dag.tasks} == {"default_pool"}
        assert dag.get_task("process_batch").max_active_tis_per_dag == config.max_parallel_batches


def test_region_timezones_and_schedules() -> None:
    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    assert bag.dags["phone_sync__purbalingga"].timezone.name == "Asia/Jakarta"
    assert bag.dags["phone_sync__lombok_barat"].timezone.name == "Asia/Makassar"


@pytest.mark.parametrize(
    ("content", "field"),
    [
        ("{ broken json", "(file)"),
        ('{"region": "lombok_barat"}', "display_name"),
        ("SECRET", "fhir.token"),
        ("MISMATCH", "region"),
    ],
)
def test_broken_region_file_is_visible_and_isolated(
    monkeypatch: pytest.MonkeyPatch, regions_copy: Path, content: str, field: str
) -> None:
    path = regions_copy / "lombok_barat.json"
    data = json.loads(path.read_text())
    if content == "SECRET":
        data["fhir"]["token"] = "abc"
        content = json.dumps(data)
    elif content == "MISMATCH":
        data["region"] = "lombok"
        content = json.dumps(data)
    path.write_text(content)

    bag = parse(monkeypatch, regions_copy)

    assert bag.import_errors == {}, "a broken region file must not become a file-wide import error"
    healthy = bag.dags["phone_sync__purbalingga"]
    assert [t.task_id for t in healthy.topological_sort()] == PIPELINE
    assert "phone_sync__demo" in bag.dags
    broken = bag.dags["phone_sync__lombok_barat"]
    assert CONFIG_ERROR_TAG in broken.tags
    assert not broken.timetable.can_be_scheduled  # never scheduled while broken
    for text in (broken.description, broken.doc_md):
        assert "lombok_barat.json" in text
        assert field in text
    assert [t.task_id for t in broken.tasks] == ["region_file_invalid"]


def test_new_region_needs_only_a_file(monkeypatch: pytest.MonkeyPatch, regions_copy: Path) -> None:
    data = json.loads((regions_copy / "demo.json").read_text())
    data.update(region="banyumas", display_name="Banyumas")
    data["sheets"].update(conn_id="google_sheets_banyumas", spreadsheet_id="banyumas-spreadsheet")
    data["fhir"].update(conn_id="fhir_banyumas")
    (regions_copy / "banyumas.json").write_text(json.dumps(data))
    bag = parse(monkeypatch, regions_copy)
    assert "phone_sync__banyumas" in bag.dags
    assert bag.import_errors == {}


def test_a_task_process_builds_only_its_own_dag(regions_copy: Path) -> None:
    """Airflow tells a task process which DAG it parses for; building every region's DAG there is waste."""
    from airflow.sdk.definitions._internal.dag_parsing_context import _airflow_parsing_context_manager

    from phone_sync.dag_factory import build_all

    (regions_copy / "broken copy.json").write_text("{", encoding="utf-8")
    everything = build_all(regions_copy)
    [broken_id] = [dag_id for dag_id, dag in everything.items() if CONFIG_ERROR_TAG in dag.tags]
    for dag_id in ("phone_sync__demo", broken_id):
        with _airflow_parsing_context_manager(dag_id=dag_id, task_id="extract_rows"):
            assert list(build_all(regions_copy)) == [dag_id]
