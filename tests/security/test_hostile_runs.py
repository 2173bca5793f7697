"""Hostile input through whole runs (``dag.test()``): a cell that rounds to another patient's identifier, and a
server that stops answering. Neither may update the wrong patient or stall the region."""

from __future__ import annotations

import pytest
import requests

from localservers.fhir.seed import make_patient
from localservers.scenario import generate
from localservers.stack import LocalRegion
from tests.regions import MakeRegion, phones_by_identifier, run_dag, statuses, ti_tries

pytestmark = pytest.mark.slow


def add_patient(region: LocalRegion, nik: str, phone: str) -> None:
    response = requests.post(
        f"{region.fhir.url}/Patient",
        json=make_patient(nik, phone=phone),
        headers={"Authorization": f"Bearer {region.fhir_token}"},
        timeout=10,
    )
    response.raise_for_status()


def test_an_identifier_typed_as_a_number_never_updates_the_patient_it_rounds_to(make_region: MakeRegion) -> None:
    """NIKs of provinces 91 and above exceed 2**53: typed as a number, 9471021234567891 is kept as ...892."""
    scenario = generate(40, seed=51)
    region = make_region(scenario)
    add_patient(region, "9471021234567892", phone="+6281211112222")  # someone else, whose NIK it rounds to
    row = len(scenario.rows) + 2
    typed = ["9471021234567891", "Nama", "081299998888", scenario.run_date.isoformat()]
    region.sheet_edit({"op": "set", "range": f"A{row}:D{row}", "values": [typed]})
    assert region.cells()[row - 1][0] == 9471021234567892, "the emulator keeps numbers as Sheets does: doubles"

    dag_run = run_dag(region, scenario.run_date)

    assert dag_run.state == "success"
    [other] = phones_by_identifier(region)["9471021234567892"]
    assert (other["phone"], other["version"]) == ("+6281211112222", 1), "the other patient was not touched"
    assert statuses(region)[row] == (
        f"failed: identifier was stored as a number and lost digits; re-enter it as text (clean-r{row})"
    )


def test_a_batch_whose_server_stops_answering_fails_at_its_time_limit_and_says_so(
    make_region: MakeRegion, capfd: pytest.CaptureFixture[str]
) -> None:
    scenario = generate(60, seed=52)
    region = make_region(scenario, timeouts={"batch_minutes": 0.1})  # 6 s: a tiny override, as the docs allow
    region.fhir_faults(latency_ms=25_000)  # under the hook's 30 s request timeout: only the time limit stops it

    dag_run = run_dag(region, scenario.run_date)

    assert dag_run.state == "failed"
    tries = ti_tries(dag_run)
    assert tries[("process_batch", 0)] == ("failed", 2), "timed out, retried once (FAST_RETRIES), timed out again"
    assert tries[("write_back_statuses", -1)][0] == "success"
    rows = [text for row, text in statuses(region).items() if text.startswith("failed: batch not processed")]
    assert rows, "the batch's rows say why they were not processed"
    assert all("stopped at its time limit of 6 s (see timeouts in the region file)" in text for text in rows)
    assert "AirflowTaskTimeout: stopped at its time limit of 6 s" in capfd.readouterr().out
