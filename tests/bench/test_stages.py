"""Every benchmark stage on a tiny region, as ``make bench`` runs it: it cannot silently break again.

The whole run goes through ``python -m bench.run`` in a fresh process whose ``HOME`` is a temporary
folder, so the test also proves that no stage creates or uses ``~/airflow``. One Airflow deployment
starts (the scheduler stage). The ``scale``, ``celery`` and ``gateway`` stages are the ``scheduler`` stage
with more rows, another executor or the gateway's refusals (``bench.stages.scale``, ``.celery`` and
``bench.gateway.gateway`` are one call of it each; a deployment on the CeleryExecutor is tested by
``tests/e2e/test_celery_executor.py``, a run through the gateway by ``tests/e2e/test_local_executor.py``),
so they are left to ``make bench``: three Airflow deployments less in every ``make test``. The gateway's
report is printed here from the scheduler stage's result.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import gateway, run
from localservers.airflow_env import REPO_ROOT, airflow_env

pytestmark = pytest.mark.slow


STAGES = [stage for stage in run.ALL_STAGES if stage not in ("scale", "celery", "gateway")]


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    home = tmp_path_factory.mktemp("home")
    results = tmp_path_factory.mktemp("results")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env["HOME"] = str(home)
    argv = [
        sys.executable,
        "-m",
        "bench.run",
        "--rows",
        "30",
        "--baseline-rows",
        "10",
        "--memory-rows",
        "100",
        "--import-repeats",
        "1",
        "--results",
        str(results),
        "--stages",
        *STAGES,
    ]
    done = subprocess.run(argv, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=1500, check=False)
    (written,) = results.glob("*.json")
    return {
        "code": done.returncode,
        "out": done.stdout + done.stderr,
        "home": home,
        "results": json.loads(written.read_text()),
    }


def test_every_stage_runs_and_the_run_exits_0(bench_run: dict[str, Any]) -> None:
    results = bench_run["results"]
    assert results.get("errors") is None, bench_run["out"][-4000:]
    assert bench_run["code"] == 0, bench_run["out"][-4000:]
    for stage in STAGES:
        assert stage in results, f"stage {stage} left no result"
    for key in ("inprocess", "dagtest", "scheduler"):
        assert results[key]["statuses_lost"] == 0, key
    for key in ("dagtest", "scheduler"):
        assert results[key]["fhir_tokens"] == 1, f"{key}: OAuth2, one shared token per run"


def test_the_memory_stage_measures_write_back_writing_every_status(bench_run: dict[str, Any]) -> None:
    from localservers.scenario import generate

    (probe,) = bench_run["results"]["memory"]
    scenario = generate(probe["rows"], seed=11)
    assert probe["write_back_statuses"] == sum(1 for e in scenario.expected.values() if e.kind != "blank")
    assert probe["write_back_peak_rss_mib"] >= probe["write_back_import_rss_mib"] > 0


def test_no_stage_touches_the_users_airflow_home(bench_run: dict[str, Any]) -> None:
    assert not (bench_run["home"] / "airflow").exists(), "a stage created ~/airflow"


def test_airflow_runs_print_their_profile_bounds_and_metadata(bench_run: dict[str, Any]) -> None:
    results, out = bench_run["results"], bench_run["out"]
    for key in ("scheduler",):
        result = results[key]
        assert result["state"] == "success", key
        batch = result["tasks"]["process_batch"]
        assert batch["profiled"] == batch["count"], f"{key}: every batch process reported its profile"
        assert batch["imports"]["phone_sync.fhir.client"] > 0
        assert batch["profile"]["http_fhir"] > 0
        assert batch["profile"]["unseal"] > 0
        assert batch["message_seconds"]["GetXCom"] > 0, f"{key}: its supervisor round trips timed by kind"
        # Each API round trip costs a batch 40-90 ms on a loaded deployment: a batch pulls its mapped reference
        # (which says where its statuses go) and its rows' key, nothing else.
        assert batch["messages"]["GetXCom"] == 2, f"{key}: {batch['messages']}"
        # A batch writes its statuses with the light Sheets client: the Google provider costs 1.2 s of CPU and
        # 35 MiB in each of hundreds of processes (it crept in once through an import of sheets.statuses).
        heavy = {"gspread", "airflow.providers.google.common.hooks.base_google", "phone_sync.sheets.hook"}
        assert not heavy & set(batch["modules"]), f"{key}: a batch process imported {heavy & set(batch['modules'])}"
        # Tasks that touch no token: their sealing is the contracts' own (Sealer.seal_json / Contract._opened).
        assert result["tasks"]["extract_rows"]["profile"]["seal"] > 0, f"{key}: extract's sealing not timed"
        assert result["tasks"]["write_back_statuses"]["profile"]["unseal"] > 0, f"{key}: write-back's unsealing"
        assert result["xcom"]["sealed_bytes"] > 0
        assert result["xcom"]["plain_bytes"] > 0
        assert result["db_growth_mib"]["xcom"] > 0
        assert result["fhir_bound_seconds"] > 0
    assert "Where each task process's time goes" in out
    assert "lower bounds: empty DAG" in out
    assert "process_batch supervisor round trips per process (mean count, ms): " in out
    assert "not needed by a batch" in out
    assert "Targets (a miss is a finding, not an error)" in out


def test_the_gateway_report_puts_requests_beside_the_rates_bound(bench_run: dict[str, Any]) -> None:
    result = bench_run["results"]["scheduler"]  # the gateway stage's result has the scheduler stage's shape
    requests = result["fhir_requests"] + result["fhir_tokens"]

    printed = gateway.format_gateway(result)
    verdict = gateway.verdict(result)

    per_100 = 100 * requests / result["rows"]
    assert f"{per_100:.1f} FHIR requests per 100 rows; wall {result['seconds']:.0f} s" in printed
    assert f"lower bound {result['fhir_bound_seconds']:.0f} s ({requests:,} requests" in printed
    assert "search 200" in printed
    timeline = result["fhir_timeline"]  # from the FHIR server's request log and the run's own times
    parts = ("before_first_request", "at_rate", "rate_unused", "after_last_request")
    assert sum(timeline[part] for part in parts) == pytest.approx(result["seconds"], abs=0.5)
    assert f"{timeline['at_rate']:.0f} s of requests at the rate" in printed
    edges = result["tasks"]["process_batch"]["fhir_edges"]
    assert 0 < edges["start_to_first_request"] < result["seconds"]
    assert f"a batch holds its slot {edges['start_to_first_request']:.2f} s from its start" in printed
    promise_met = result["seconds"] <= gateway.PROMISE_SECONDS
    assert (verdict["measured"], verdict["met"]) == (round(result["seconds"]), promise_met)


def _exit_code(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, inprocess: Any) -> int:
    for name, value in airflow_env(tmp_path / "airflow").items():
        monkeypatch.setenv(name, value)  # main() sets its own; these restore the session's afterwards
    monkeypatch.setattr(run.stages, "inprocess", inprocess)
    return run.main(["--rows", "30", "--stages", "inprocess", "--results", str(tmp_path)])


def test_a_missed_target_is_printed_and_exits_0(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missed = {
        "name": "batch logic",
        "rows": 30,
        "seconds": 3.0,
        "rows_per_second": 10.0,
        "wall_10k_seconds": 1000.0,
        "fhir_requests": 30,
        "fhir_tokens": 1,
        "sheets_requests": 9,
        "statuses_lost": 2,
        "task_rss_mib": {"one process": 300.0},
    }
    assert _exit_code(monkeypatch, tmp_path, lambda *args: missed) == 0
    assert "[MISSED] statuses lost (batch logic): 2" in capsys.readouterr().out


def test_a_crashed_stage_exits_1(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def crash(*args: Any) -> None:
        raise RuntimeError("stage broke")

    assert _exit_code(monkeypatch, tmp_path, crash) == 1
