"""Operator scenarios against a running Airflow on the embedded default: LocalExecutor on SQLite.

One deployment (api-server, scheduler, dag-processor, triggerer) serves every scenario of this
module; each scenario has its own regions, servers and spreadsheet, so they do not interfere.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import pytest

from localservers.fhir.faults import GATEWAY
from localservers.scenario import generate
from localservers.sinks.processes import WebhookSink
from localservers.stack import FhirOAuth, conn_env_name
from tests.e2e import scenarios
from tests.e2e.harness import RegionSpec, World, running_world
from tests.phi import files
from tests.regions import PROJECT_REGIONS, report_rows

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TIMEZONE = "Asia/Jakarta"
TODAY = scenarios.backfill_today(TIMEZONE)


ALERTS_CONN_ID = "e2e_alerts_chat"
GATEWAY_REGION = "e2e_gateway"
DEMO_DISPLAY_NAME = json.loads((PROJECT_REGIONS / "demo.json").read_text())["display_name"]


@pytest.fixture(scope="module")
def alerts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebhookSink]:
    """The chat webhook the set-up-error region alerts (the run-failure rule runs in the dag-processor)."""
    with WebhookSink(log_path=tmp_path_factory.mktemp("alerts") / "webhook.log") as sink:
        yield sink


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, alerts: WebhookSink) -> Iterator[World]:
    specs = [
        RegionSpec("e2e_run", generate(500, seed=11)),
        # Its grid is docs/operations.md's screenshots: named and tagged as the demo region it shows.
        RegionSpec("demo", generate(600, seed=12), {"display_name": DEMO_DISPLAY_NAME, "tags": ["demo"]}),
        RegionSpec(
            "e2e_backfill",
            scenarios.backfill_scenario(300, TODAY),
            {
                "schedule": "@daily",
                "timezone": TIMEZONE,
                "start_date": (TODAY - timedelta(days=30)).isoformat(),
                "rows": {"select": "data_interval"},
            },
        ),
        RegionSpec("e2e_north", generate(300, seed=14), {"batch_size": 50, "max_parallel_batches": 2}),
        RegionSpec("e2e_south", generate(300, seed=15), {"batch_size": 50, "max_parallel_batches": 3}),
        RegionSpec("e2e_steady", generate(300, seed=16)),
        RegionSpec("e2e_fragile", generate(40, seed=17)),
        # OAuth2 against a SATUSEHAT-style gateway that grants at most 2 tokens per minute.
        RegionSpec("e2e_oauth", generate(300, seed=18), {"batch_size": 40}, FhirOAuth(grant_limit=2)),
        RegionSpec(
            "e2e_setup",
            generate(60, seed=19),
            {"alerts": {"webhook_conn_id": ALERTS_CONN_ID, "on_batch_failure": False, "failure_rate_threshold": None}},
        ),
        RegionSpec("e2e_preview", generate(250, seed=20)),
        # No room for progress writes (18 a minute, all kept for the run's own steps and races): the batches a
        # clear reruns after write-back succeeded must write their own statuses.
        RegionSpec("e2e_only_failed", generate(600, seed=21), {"sheets": {"requests_per_minute": 18}}),
        RegionSpec("e2e_live", generate(500, seed=22)),
        RegionSpec(GATEWAY_REGION, generate(300, seed=31)),
    ]
    env = {conn_env_name(ALERTS_CONN_ID): alerts.connection()}
    with running_world(tmp_path_factory.mktemp("e2e-local"), specs, env, executor="LocalExecutor") as started:
        # A SATUSEHAT-style gateway that refuses all it can (GET searches of one identifier, JSON Patch only,
        # pages of 10, a CapabilityStatement that claims everything), and answers 429 above the region's rate.
        gateway = started.regions[GATEWAY_REGION]
        gateway.fhir_faults(**GATEWAY, throttle_rps=gateway.config.fhir_requests_per_second)
        yield started


def test_triggered_run_completes(world: World) -> None:
    scenarios.triggered_run_completes(world, "e2e_run")


def test_outage_then_clear_failed_map_indexes(world: World) -> None:
    scenarios.outage_then_clear(world, "demo", shots="grid")


def test_outage_then_clear_the_runs_failed_tasks_only(world: World) -> None:
    scenarios.outage_then_clear(world, "e2e_only_failed", only_failed=True)


def test_statuses_appear_while_batches_run_and_a_killed_batch_is_retried(world: World) -> None:
    scenarios.statuses_appear_while_batches_run(world, "e2e_live")


def test_backfill_after_outage(world: World) -> None:
    scenarios.backfill_after_outage(world, "e2e_backfill", TODAY)


def test_two_regions_at_once(world: World) -> None:
    scenarios.two_regions_at_once(world, ("e2e_north", "e2e_south"))


def test_region_file_broken_while_running(world: World) -> None:
    scenarios.broken_region_file(world, "e2e_steady", "e2e_fragile")


def test_fhir_connection_form_and_test_button(world: World) -> None:
    scenarios.fhir_connection_form(world, "e2e_run")


def test_shared_token_across_batch_processes(world: World) -> None:
    scenarios.shared_token(world, "e2e_oauth")


def test_a_renamed_header_fails_at_once_and_the_alert_names_it(world: World, alerts: WebhookSink) -> None:
    scenarios.renamed_header(world, "e2e_setup", alerts)


def test_a_preview_triggered_through_the_api(world: World) -> None:
    scenarios.preview_through_the_api(world, "e2e_preview")


def test_a_run_through_the_all_refusals_gateway(world: World) -> None:
    """The batches run in parallel, in their own processes, learn what the gateway refuses from its answers
    and fall back at once, sharing the region's rate: green on the first try of every task, and not one 429."""
    region = world.regions[GATEWAY_REGION]

    batches = scenarios.triggered_run_completes(world, GATEWAY_REGION)  # statuses, phones, the report's counts

    assert {ti["try_number"] for ti in batches} == {1}, "no batch was retried"
    seen = region.fhir_stats()["by_interaction_status"]
    refused = ("search 405", "search 400", "batch 405", "update 405")
    # Each refusal at most once per batch (parallel batches may each meet it before one has saved it).
    assert all(1 <= seen.get(refusal, 0) <= len(batches) for refusal in refused), seen
    assert {key for key in seen if key.split()[1] not in ("200", "201")} == set(refused), seen  # no 429
    assert report_rows(region)[-1]["FHIR profile"] == "search GET x1, update PATCH"


def test_no_patient_data_at_rest_after_every_scenario(world: World) -> None:
    """Last: the SQLite metadata database and every log the deployment wrote hold no identifier or phone."""
    scenarios.assert_no_phi_at_rest(world, files(world.cluster.home / "airflow.db"))
