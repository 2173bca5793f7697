"""A region whose FHIR server is an OAuth2 client of a SATUSEHAT-style gateway that limits token grants.

Whole runs through ``dag.test()``: every batch is its own task with its own hook, as in production, so
without the shared token each batch would ask for one and meet the gateway's limit.
"""

from __future__ import annotations

import json

import pytest

from localservers.fhir.auth import token_hash
from localservers.scenario import generate
from localservers.stack import FhirOAuth, LocalRegion, conn_env_name
from phone_sync.crypto import Sealer
from phone_sync.fhir.token_store import VARIABLE_PREFIX
from tests.fhir.helpers import MetadataVariables
from tests.regions import MakeRegion, report_rows, run_dag, statuses, ti_states

pytestmark = pytest.mark.slow


def grants(region: LocalRegion) -> int:
    return int(region.fhir_stats()["tokens_issued"])


def clear_statuses(region: LocalRegion, rows: int) -> None:
    """An operator sends every row again by clearing the status column."""
    header, *_ = region.cells()
    col = chr(ord("A") + header.index(region.config.sheets.columns.status))
    region.sheet_edit({"op": "set", "range": f"{col}2:{col}{rows + 1}", "values": [[""] for _ in range(rows)]})


def test_one_token_per_run_and_none_while_it_lasts(make_region: MakeRegion) -> None:
    scenario = generate(400, seed=23)
    region = make_region(scenario, fhir_oauth=FhirOAuth(grant_limit=2), batch_size=60)

    run = run_dag(region, scenario.run_date)

    assert run.state == "success", ti_states(run)
    batches = [key for key in ti_states(run) if key[0] == "process_batch"]
    assert len(batches) >= 4
    assert grants(region) == 1, "one token for the whole run"
    assert region.fhir_stats()["token_refusals"] == {}
    assert not any(text.startswith("failed: batch not processed") for text in statuses(region).values())

    # The token waits in the metadata DB sealed with the region's PHI key: ciphertext only.
    raw = MetadataVariables().get(VARIABLE_PREFIX + region.config.fhir.conn_id)
    assert raw is not None
    token = Sealer([region.phi_key]).open(json.loads(raw)["sealed"])["access_token"]
    assert token not in raw
    assert set(region.fhir_stats()["by_token"]) - {"none"} == {token_hash(token)}

    # A second run within the token's life asks for none.
    clear_statuses(region, len(scenario.rows))
    again = run_dag(region, scenario.run_date)
    assert again.state == "success", ti_states(again)
    assert grants(region) == 1
    assert [r["unchanged"] for r in report_rows(region)][-1] > 0


def test_refused_credentials_stop_the_run_before_any_batch(
    make_region: MakeRegion, monkeypatch: pytest.MonkeyPatch
) -> None:
    scenario = generate(150, seed=24)
    oauth = FhirOAuth()
    region = make_region(scenario, fhir_oauth=oauth)
    wrong = FhirOAuth(client_id=oauth.client_id, client_secret="not-the-secret-1234", token_path=oauth.token_path)
    monkeypatch.setenv(conn_env_name(region.config.fhir.conn_id), json.dumps(wrong.connection(region.fhir.url)))

    run = run_dag(region, scenario.run_date)

    assert run.state == "failed"
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = {ti.task_id: ti for ti in run.get_task_instances(session=session)}
    assert str(tis["clean_phones"].state) == "failed"
    assert tis["clean_phones"].try_number == 1, "a set-up error is not retried"
    assert str(tis["process_batch"].state) == "upstream_failed"
    assert region.fhir_stats()["token_refusals"] == {"invalid_client": 1}, "asked once, never again"
    [report] = report_rows(region)
    problem = str(report["problem"])
    assert f"connection '{region.config.fhir.conn_id}'" in problem
    assert "invalid_client" in problem
    assert "not-the-secret-1234" not in problem
