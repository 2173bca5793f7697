"""What a run writes to its logs: enough to find every row, and no patient data or token."""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest

from localservers.scenario import generate
from tests.regions import MakeRegion, run_dag, statuses

pytestmark = pytest.mark.slow


def test_a_full_run_logs_no_identifier_phone_or_token(
    make_region: MakeRegion, capfd: pytest.CaptureFixture[str]
) -> None:
    scenario = generate(300, seed=21)
    region = make_region(scenario)
    # One batch fails too, so failure paths log as well.
    region.fhir_faults(outage_identifiers=[scenario.identifiers[min(scenario.identifiers)]])
    run_dag(region, scenario.run_date)
    output = capfd.readouterr()
    logs = output.out + output.err
    assert "batch start" in logs  # the capture really holds the run's task logs

    identifiers = set(scenario.identifiers.values())
    phones = {re.sub(r"\D", "", str(row[2]))[-9:] for row in scenario.rows if row[2]}
    phones |= {
        re.sub(r"\D", "", t["value"])[-9:] for p in scenario.patients for t in p["telecom"] if t["system"] == "phone"
    }
    leaked_ids = [i for i in identifiers if i in logs]
    leaked_phones = [p for p in phones if len(p) >= 9 and p in re.sub(r"[\s\-]", "", logs)]
    assert leaked_ids == []
    assert leaked_phones == []
    assert region.fhir_token not in logs
    assert region.keyfile["private_key"].splitlines()[1] not in logs


def test_every_failed_or_skipped_status_has_its_log_line_and_link(
    make_region: MakeRegion, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.dinkes.example")
    scenario = generate(250, seed=22)
    columns = {"identifier": "nik", "phone": "phone_number", "feed_date": "feed_date", "status_link": "log"}
    region = make_region(scenario, sheets={"columns": columns})
    dag_run = run_dag(region, scenario.run_date)
    logs = capfd.readouterr().out
    header, *rows = region.cells()
    links = {number: row[header.index("log")] for number, row in enumerate(rows, start=2) if row[0]}
    run_page = f"https://airflow.dinkes.example/dags/phone_sync__demo/runs/{quote(dag_run.run_id, safe='')}"
    for row, text in statuses(region).items():
        if not text:
            continue
        corr = re.search(r"\(b(\d+)-r\d+\)$", text)
        if corr or text.startswith(("success", "unchanged")):
            assert links[row].startswith(f"{run_page}/tasks/process_batch/mapped/"), (row, links[row])
        if corr:
            assert links[row].endswith(f"/mapped/{int(corr[1])}")
        if "(clean-r" in text:
            assert links[row] == f"{run_page}/tasks/clean_phones"
    for row, text in statuses(region).items():
        if text.startswith(("failed", "skipped")):
            corr = re.search(r"\(((?:b\d+|clean)-r\d+)\)$", text)
            assert corr, text
            assert f"corr={corr[1]}" in logs or f"'corr': '{corr[1]}'" in logs or f'"corr": "{corr[1]}"' in logs, (
                row,
                text,
            )
