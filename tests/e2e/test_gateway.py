"""A region behind a SATUSEHAT-style gateway that refuses all it can, through a running Airflow (LocalExecutor).

The gateway passes GET searches with one identifier only, updates by JSON Patch only, pages of 10, and its
CapabilityStatement claims everything anyway. The batches run in parallel, in their own processes, learn
what it refuses from its answers and fall back at once: the run is green on the first try of every task.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from localservers.fhir.faults import GATEWAY
from localservers.scenario import generate
from tests.e2e import scenarios
from tests.e2e.harness import RegionSpec, World, running_world
from tests.regions import report_rows

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

NAME = "e2e_gateway"
REFUSED = ("search 405", "search 400", "batch 405", "update 405")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    specs = [RegionSpec(NAME, generate(300, seed=31))]
    with running_world(tmp_path_factory.mktemp("e2e-gateway"), specs, executor="LocalExecutor") as started:
        # The gateway answers 429 above the region's rate: the batches, sharing it, never pass it.
        started.regions[NAME].fhir_faults(**GATEWAY, throttle_rps=started.regions[NAME].config.fhir_requests_per_second)
        yield started


def test_a_run_through_the_all_refusals_gateway(world: World) -> None:
    region = world.regions[NAME]

    batches = scenarios.triggered_run_completes(world, NAME)  # statuses, phones, versions, the report's counts

    assert {ti["try_number"] for ti in batches} == {1}, "no batch was retried"
    seen = region.fhir_stats()["by_interaction_status"]
    # Each refusal at most once per batch (parallel batches may each meet it before one has saved it).
    assert all(1 <= seen.get(refusal, 0) <= len(batches) for refusal in REFUSED), seen
    assert {key for key in seen if key.split()[1] not in ("200", "201")} == set(REFUSED), seen
    assert report_rows(region)[-1]["FHIR profile"] == "search GET x1, update PATCH"
