"""The trigger form starts on preview, so one click never writes to FHIR; runs that send no mode (the schedule,
an API trigger or backfill without ``conf.mode``, ``dag.test()``) stay in the region file's mode."""

from __future__ import annotations

import copy
from datetime import datetime, time
from types import SimpleNamespace
from typing import Any

import pendulum
import pytest

from localservers.scenario import generate
from phone_sync.config import RegionConfig
from phone_sync.controls import Controls
from phone_sync.dag_factory import build_region_dag
from phone_sync.regions import load_region
from tests.regions import DEMO_REGION, MakeRegion, report_rows

WRITES = ("batch", "update", "create", "delete", "patch")


def form_conf(config: RegionConfig) -> dict[str, Any]:
    """What the UI's trigger (and backfill) form sends untouched: every field at its default."""
    return copy.deepcopy(build_region_dag(config).params).validate()


def context(conf: dict[str, Any] | None, config: RegionConfig) -> dict[str, Any]:
    """A task context as far as the controls read it: the params (defaults merged with conf) and the run's conf."""
    params = {**copy.deepcopy(build_region_dag(config).params).validate(), **(conf or {})}
    return {"params": params, "dag_run": SimpleNamespace(conf=conf or {})}


def test_the_trigger_form_shows_preview_as_the_mode() -> None:
    config = load_region(DEMO_REGION)
    assert config.mode == "live"
    assert form_conf(config)["mode"] == "preview"


@pytest.mark.parametrize(
    ("region_mode", "conf", "mode"),
    [
        ("live", None, "live"),  # scheduled run, API trigger or backfill without conf
        ("live", {}, "live"),
        ("live", {"rows": "2-10"}, "live"),  # an API call that names other fields only
        ("live", "form", "preview"),  # the form, untouched
        ("live", {"mode": "live"}, "live"),  # the form with Live chosen
        ("preview", None, "preview"),
        ("preview", {"mode": "live"}, "live"),
    ],
)
def test_the_mode_comes_from_the_runs_conf_else_the_region_file(
    region_mode: str, conf: dict[str, Any] | str | None, mode: str
) -> None:
    config = load_region(DEMO_REGION).model_copy(update={"mode": region_mode})
    sent = form_conf(config) if conf == "form" else conf
    assert Controls.from_context(context(sent, config), config).mode == mode


@pytest.mark.slow
def test_a_run_triggered_from_the_untouched_form_previews_and_one_without_conf_goes_live(
    make_region: MakeRegion,
) -> None:
    scenario = generate(60, seed=68)
    region = make_region(scenario)
    day = pendulum.instance(datetime.combine(scenario.run_date, time(1)), tz=region.config.timezone)
    dag = build_region_dag(region.config)

    assert dag.test(logical_date=day, run_conf=form_conf(region.config)).state == "success"
    writes = sum(n for name, n in region.fhir_stats()["by_interaction"].items() if name in WRITES)
    assert writes == 0, "the form's default wrote to FHIR"

    assert build_region_dag(region.config).test(logical_date=day.add(days=1)).state == "success"
    assert [row["mode"] for row in report_rows(region)] == ["preview", "live"]
    assert sum(n for name, n in region.fhir_stats()["by_interaction"].items() if name in WRITES) > 0
