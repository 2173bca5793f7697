"""Whole runs through ``dag.test()`` against FHIR servers that each refuse one interaction, and the gateway
that refuses them all: every row gets its real status, every patient its number, no task retries, and a
refusal is answered once per run at most (the batches after the first start from what it learned).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator

import pytest

from localservers.scenario import generate
from localservers.stack import LocalRegion
from phone_sync.fhir.profile_store import VARIABLE_PREFIX
from tests.dag_runs.test_pipeline import assert_rows_match
from tests.dag_runs.test_shared_token import clear_statuses
from tests.regions import MakeRegion, report_rows, run_dag, statuses, ti_tries

pytestmark = pytest.mark.slow

REFUSALS = frozenset({"400", "404", "405", "415", "501"})


@pytest.fixture(autouse=True)
def _no_profile_learned_before(airflow_db: None) -> Iterator[None]:
    """Every region here uses connection ``fhir_demo``: no test starts from another server's profile."""
    from airflow.models.variable import Variable

    Variable.delete(f"{VARIABLE_PREFIX}fhir_demo")
    yield
    Variable.delete(f"{VARIABLE_PREFIX}fhir_demo")


def emails(region: LocalRegion) -> dict[str, list[dict[str, str]]]:
    return {p["id"]: [t for t in p.get("telecom", []) if t["system"] == "email"] for p in region.patients()}


def refusals(region: LocalRegion) -> Counter[str]:
    """Refused requests by interaction and status, e.g. ``{"search 405": 1}``."""
    seen = region.fhir_stats()["by_interaction_status"]
    return Counter({key: n for key, n in seen.items() if key.rsplit(" ", 1)[1] in REFUSALS})


def assert_clean_run(region: LocalRegion, scenario: object, dag_run: object) -> None:
    """Green, every row as the scenario expects, no task tried twice."""
    tries = ti_tries(dag_run)
    assert dag_run.state == "success", tries  # type: ignore[attr-defined]
    assert {key: attempt for key, (_, attempt) in tries.items() if attempt != 1} == {}, "a task was retried"
    assert_rows_match(region, scenario)  # type: ignore[arg-type]
    assert not [text for text in statuses(region).values() if "batch not processed" in text]


@pytest.mark.parametrize(
    ("fhir_args", "profile", "refused"),
    [
        # An honest CapabilityStatement: nothing refused is even tried.
        (("--no-batch",), "search POST, update PUT", {}),
        (("--no-search-post",), "search GET, update batch", {"search 405": 1}),
        (("--or-lists=refused",), "search GET x1, update batch", {"search 400": 2}),
        (("--or-lists=misread",), "search GET x1, update batch", {}),
        # PUT refused, in batch Bundles too, and the CapabilityStatement claiming it anyway.
        (("--no-put", "--capability-hides-refusals"), "search POST, update PATCH", {"update 405": 0}),
    ],
    ids=["no-batch", "no-search-post", "or-lists-refused", "or-lists-misread", "no-put"],
)
def test_a_server_refusing_one_interaction(
    make_region: MakeRegion, fhir_args: tuple[str, ...], profile: str, refused: dict[str, int]
) -> None:
    scenario = generate(250, seed=51)
    region = make_region(scenario, fhir_args=fhir_args)
    before = emails(region)

    dag_run = run_dag(region, scenario.run_date)

    assert_clean_run(region, scenario, dag_run)
    assert emails(region) == before
    assert refusals(region) == Counter(refused)
    [report] = report_rows(region)
    assert report["FHIR profile"] == profile


def test_the_all_refusals_gateway_across_batches_and_runs(
    make_region: MakeRegion, capfd: pytest.CaptureFixture[str]
) -> None:
    scenario = generate(250, seed=52)
    region = make_region(scenario, fhir_args=("--gateway",))
    before = emails(region)

    dag_run = run_dag(region, scenario.run_date)

    assert_clean_run(region, scenario, dag_run)
    # dag.test() runs one batch at a time: each, alone, takes the region's whole rate (not a fourth of it).
    rates = re.findall(r"batch done summary.*?fhir_rate=([\d.]+)", capfd.readouterr().out)
    assert len(rates) == 3
    assert {float(rate) for rate in rates} == {50.0}
    assert emails(region) == before
    # Each refusal once in the run: the first batch learned it, the others started from it.
    assert refusals(region) == Counter({"search 405": 1, "search 400": 1, "batch 405": 1, "update 405": 1})
    assert region.fhir_stats()["by_interaction"]["patch"] >= 150
    [report] = report_rows(region)
    assert report["FHIR profile"] == "search GET x1, update PATCH"

    # The next run starts from the profile learned: not one refusal.
    requests_before = region.fhir_stats()["by_interaction_status"]
    clear_statuses(region, len(scenario.rows))
    assert run_dag(region, scenario.run_date).state == "success"
    assert refusals(region) == Counter({"search 405": 1, "search 400": 1, "batch 405": 1, "update 405": 1})
    assert region.fhir_stats()["by_interaction_status"] != requests_before
    assert report_rows(region)[-1]["FHIR profile"] == "search GET x1, update PATCH"


def test_pinned_interactions_are_used_from_the_first_request(make_region: MakeRegion) -> None:
    scenario = generate(120, seed=53)
    region = make_region(scenario, fhir={"interactions": {"search": "get_single", "update": "patch"}})

    dag_run = run_dag(region, scenario.run_date)

    assert_clean_run(region, scenario, dag_run)
    seen = region.fhir_stats()["by_interaction"]
    assert "batch" not in seen
    assert "update" not in seen
    assert seen["patch"] > 50
    assert {e["method"] for e in _searches(region)} == {"GET"}
    assert report_rows(region)[0]["FHIR profile"] == "search GET x1, update PATCH"


def _searches(region: LocalRegion) -> list[dict[str, object]]:
    import requests

    log = requests.get(f"{region.fhir.url}/_admin/requests", timeout=10).json()
    return [entry for entry in log if entry["interaction"] == "search"]


def test_no_way_left_to_update_fails_the_batches_at_once_naming_the_refusals(make_region: MakeRegion) -> None:
    scenario = generate(150, seed=54)
    region = make_region(scenario, fhir_args=("--gateway", "--no-patch"))

    dag_run = run_dag(region, scenario.run_date)

    assert dag_run.state == "failed"
    tries = ti_tries(dag_run)
    batches = {key: value for key, value in tries.items() if key[0] == "process_batch"}
    assert batches
    assert set(batches.values()) == {("failed", 1)}, "a set-up error: no retry although the region allows one"
    [report] = report_rows(region)
    problem = report["problem"]
    assert problem == (
        "process_batch: region demo: connection 'fhir_demo': the FHIR server refuses every way to update a Patient "
        "(batch Bundle, PUT, PATCH: HTTP 405 not-supported; it said: not-supported (HAPI-0389)); "
        "its CapabilityStatement claims batch, update, patch. Allow one, or pin fhir.interactions"
    )
    assert all(p["meta"]["versionId"] == "1" for p in region.patients()), "nothing was written"
