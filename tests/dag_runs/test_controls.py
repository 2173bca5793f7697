"""Trigger-form controls through dag.test(): preview, a slice of rows, listed identifiers, resend.

Each test asserts what reached the FHIR server (its request log and versionIds) and the sheet (status
column, preview worksheet, report row), including "nothing" where nothing may be written.
"""

from __future__ import annotations

import copy
import json
from collections import Counter
from datetime import datetime, time
from typing import Any

import pendulum
import pytest

from localservers.scenario import Scenario, generate
from localservers.stack import LocalRegion
from phone_sync.config import RegionConfig
from phone_sync.contracts import Extracted
from phone_sync.crypto import Sealer
from phone_sync.dag_factory import build_region_dag
from tests.dag_runs.test_pipeline import assert_rows_match
from tests.regions import MakeRegion, report_rows, statuses, ti_tries, xcom_value

pytestmark = pytest.mark.slow

WRITES = ("batch", "update", "create", "delete", "patch")


def run(
    region: LocalRegion, scenario: Scenario, conf: dict[str, Any] | None = None, config: RegionConfig | None = None
) -> Any:
    config = config or region.config
    logical = pendulum.instance(datetime.combine(scenario.run_date, time(1)), tz=config.timezone)
    return build_region_dag(config).test(logical_date=logical, run_conf=conf)


def fhir_writes(region: LocalRegion) -> int:
    by_interaction = region.fhir_stats()["by_interaction"]
    return sum(count for name, count in by_interaction.items() if name in WRITES)


def versions(region: LocalRegion) -> dict[str, str]:
    return {p["id"]: p["meta"]["versionId"] for p in region.patients()}


def preview_rows(region: LocalRegion) -> list[list[Any]]:
    return region.cells(region.config.sheets.preview_worksheet)


def test_a_preview_decides_every_row_and_writes_nothing(make_region: MakeRegion) -> None:
    scenario = generate(300, seed=61)
    region = make_region(scenario)
    before = versions(region)

    dag_run = run(region, scenario, {"mode": "preview"})

    assert dag_run.state == "success"
    assert fhir_writes(region) == 0, "a preview sends no FHIR write"
    assert versions(region) == before
    assert set(statuses(region).values()) == {""}, "the status column is not touched"
    header, *lines = preview_rows(region)
    assert header == ["row", "identifier", "phone to write", "decision", "run id"]
    decided = {line[0]: line for line in lines}
    assert set(decided) == {row for row, e in scenario.expected.items() if e.kind != "blank"}
    for row, expected in scenario.expected.items():
        if expected.kind == "blank":
            continue
        _, identifier, phone, decision, run_id = decided[row]
        assert identifier == scenario.identifiers[row]
        assert run_id == dag_run.run_id
        if expected.kind == "updated":
            assert decision.startswith(f"would update {expected.phone}"), (row, decision)
            assert phone == expected.phone
        else:
            prefix = {
                "unchanged": "unchanged",
                "not_found": "not found",
                "invalid_phone": "invalid phone: ",
                "skipped": "skipped: ",
            }[expected.kind]
            assert decision.startswith(prefix), (row, expected, decision)
    assert any(line[3] == "skipped: newer number on record" for line in lines)
    [report] = report_rows(region)
    assert (report["mode"], report["controls"]) == ("preview", "preview")
    assert report["updated"] == sum(1 for e in scenario.expected.values() if e.kind == "updated")

    # The next preview replaces the worksheet; a live run afterwards does the real work.
    assert run(region, scenario, {"mode": "preview"}).state == "success"
    assert len(preview_rows(region)) == len(lines) + 1
    assert run(region, scenario).state == "success"
    assert_rows_match(region, scenario)
    assert [r["mode"] for r in report_rows(region)] == ["preview", "preview", "live"]


def test_a_region_file_in_preview_mode_previews_on_its_schedule(make_region: MakeRegion) -> None:
    scenario = generate(60, seed=62)
    region = make_region(scenario, mode="preview")
    dag = build_region_dag(region.config)
    assert dag.dag_display_name.endswith("(PREVIEW)")
    assert "Mode: preview." in (dag.doc_md or "")
    assert dag.params["mode"] == "preview", "a scheduled run takes the region's mode"

    dag_run = run(region, scenario)

    assert dag_run.state == "success"
    assert fhir_writes(region) == 0
    assert len(preview_rows(region)) > 1
    [report] = report_rows(region)
    assert (report["mode"], report["controls"]) == ("preview", "")


def test_a_slice_of_rows_reads_and_sends_only_those_rows(make_region: MakeRegion) -> None:
    scenario = generate(300, seed=63)
    region = make_region(scenario)

    dag_run = run(region, scenario, {"rows": "rows 40-139"})

    assert dag_run.state == "success"
    sheet = statuses(region)
    assert all(text == "" for row, text in sheet.items() if not 40 <= row <= 139)
    assert all(text for row, text in sheet.items() if 40 <= row <= 139 and scenario.expected[row].kind != "blank")
    extracted = xcom_value(dag_run, "extract_rows")
    rows = Extracted.from_xcom(extracted, Sealer.from_text(region.phi_key)).rows
    assert rows
    assert {row.row for row in rows} <= set(range(40, 140)), "rows outside the slice are not in XCom at all"
    [report] = report_rows(region)
    assert report["controls"] == "rows 40-139"


def test_only_listed_identifiers_run(make_region: MakeRegion) -> None:
    scenario = generate(200, seed=64)
    region = make_region(scenario)
    every = list(scenario.identifiers.values())
    updated = [scenario.identifiers[row] for row, e in scenario.expected.items() if e.kind == "updated"]
    wanted = [nik for nik in updated if every.count(nik) == 1][:5]
    region.add_worksheet(region.config.sheets.select_worksheet, [["identifier"], *[[nik] for nik in wanted]])

    dag_run = run(region, scenario, {"listed_only": True})

    assert dag_run.state == "success"
    done = {row for row, text in statuses(region).items() if text}
    assert {scenario.identifiers[row] for row in done} == set(wanted)
    assert all(statuses(region)[row].startswith("success") for row in done)
    [report] = report_rows(region)
    assert report["controls"] == "only identifiers listed in 'phone_sync_select'"
    assert "3303" not in json.dumps(report), "the report names no identifier"


def test_resend_sends_successful_rows_again_without_writing_twice(make_region: MakeRegion) -> None:
    scenario = generate(150, seed=65)
    region = make_region(scenario)
    assert run(region, scenario).state == "success"
    first = statuses(region)
    after_first = versions(region)
    writes = fhir_writes(region)

    dag_run = run(region, scenario, {"resend": True})

    assert dag_run.state == "success"
    second = statuses(region)
    resent = [row for row, text in first.items() if text.startswith("success")]
    assert resent
    assert all(second[row] == "unchanged" for row in resent), "the patient already carries the number"
    assert versions(region) == after_first, "nothing written twice"
    assert fhir_writes(region) == writes
    newer = [
        row for row, e in scenario.expected.items() if e.kind == "skipped" and first[row].startswith("skipped: newer")
    ]
    assert all(second[row].startswith("skipped: newer number on record") for row in newer)
    [_, report] = report_rows(region)
    assert report["controls"] == "resend"
    assert report["unchanged"] >= len(resent)


@pytest.mark.parametrize(
    ("conf", "said"),
    [
        ({"rows": "120-40"}, "params.rows: row 120 comes after row 40"),
        ({"rows": "1-40"}, "data starts at row 2, below the header"),
    ],
)
def test_a_control_the_form_would_refuse_stops_the_first_task(
    make_region: MakeRegion, conf: dict[str, Any], said: str
) -> None:
    scenario = generate(30, seed=66)
    region = make_region(scenario)

    dag_run = run(region, scenario, conf)

    assert ti_tries(dag_run)[("extract_rows", -1)] == ("failed", 1)
    [report] = report_rows(region)
    assert said in report["problem"]
    assert report["mode"] == "invalid controls"
    assert set(statuses(region).values()) == {""}


def test_the_trigger_form_validates_types_ranges_and_formats(make_region: MakeRegion) -> None:
    from airflow.sdk.definitions.param import ParamsDict
    from airflow.sdk.exceptions import ParamValidationError

    region = make_region(generate(5, seed=67))
    params: ParamsDict = build_region_dag(region.config).params
    assert set(params) == {"mode", "rows", "listed_only", "resend"}
    assert params.get_param("mode").schema["enum"] == ["live", "preview"]
    for key, bad in (("mode", "maybe"), ("rows", "2 to 10"), ("resend", "yes"), ("listed_only", 1)):
        with pytest.raises(ParamValidationError, match=f"param {key}"):
            copy.deepcopy(params)[key] = bad
    trial = copy.deepcopy(params)
    trial["rows"], trial["mode"] = "rows 2-101", "preview"
    assert trial.validate()["rows"] == "rows 2-101"
    # The UI sends an optional field the operator left empty as null: the defaults must pass as they are.
    trial["rows"] = None
    assert trial.validate()["rows"] is None
    assert copy.deepcopy(params).validate() == {"mode": "preview", "rows": None, "listed_only": False, "resend": False}
    assert Counter(str(p.schema.get("type")) for p in params.values()) == Counter(
        {"string": 1, "['null', 'string']": 1, "boolean": 2}
    )
