"""The product end to end: the demo region's DAG through dag.test() against local servers."""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta

import pytest

from localservers.scenario import IDENTIFIER_SYSTEM, Scenario, generate
from localservers.stack import LocalRegion
from phone_sync.contracts import ExtractedRow
from phone_sync.phones import canonical
from phone_sync.pipeline.batching import clean_and_batch
from tests.regions import (
    STATUS_PREFIX,
    MakeRegion,
    batch_labels,
    phones_by_identifier,
    report_rows,
    run_dag,
    statuses,
    ti_states,
    xcom_value,
)

pytestmark = pytest.mark.slow


def assert_rows_match(region: LocalRegion, scenario: Scenario) -> Counter[str]:
    """Every row's sheet status and every patient's phone against the scenario's expectations."""
    sheet = statuses(region)
    patients = phones_by_identifier(region)
    kinds: Counter[str] = Counter()
    for row, expected in scenario.expected.items():
        kinds[expected.kind] += 1
        if expected.kind == "blank":
            assert sheet[row] == "", f"blank row {row} got a status"
            continue
        assert sheet[row].startswith(STATUS_PREFIX[expected.kind]), (row, expected, sheet[row])
        matched = patients.get(scenario.identifiers[row], [])
        if expected.kind == "not_found":
            assert matched == []
            continue
        assert matched, f"row {row}: no patient"
        for patient in matched:
            assert canonical(patient["phone"]) == expected.phone, (row, expected, patient["phone"])
    return kinds


def batches_of(region: LocalRegion, scenario: Scenario) -> list[list[int]]:
    """The sheet rows of each batch, as clean_phones will cut them (the same pure function)."""
    rows = [
        ExtractedRow(
            row=number, identifier=row[0], phone=row[2], feed_date=date.fromisoformat(row[3]) if row[3] else None
        )
        for number, row in enumerate(scenario.rows, start=2)
        if row[0]
    ]
    cleaned = clean_and_batch(rows, region.config.phone, scenario.run_date, region.config.batch_size)
    return [[r.row for r in batch.rows] for batch in cleaned.batches]


def test_thirty_batches_end_to_end(make_region: MakeRegion) -> None:
    """3,000 rows: every kind of row the scenario makes, many times over (10,000 are the benchmark's)."""
    scenario = generate(3_000, seed=11)
    region = make_region(scenario)
    emails_before = {p["id"]: [t for t in p["telecom"] if t["system"] == "email"] for p in region.patients()}

    dag_run = run_dag(region, scenario.run_date)

    assert dag_run.state == "success"
    kinds = assert_rows_match(region, scenario)
    sheet = statuses(region)
    by_identifier = phones_by_identifier(region)
    two = [
        r
        for r, e in scenario.expected.items()
        if e.kind == "updated" and len(by_identifier[scenario.identifiers[r]]) == 2
    ]
    assert two, "scenario has identifiers with two patients"
    assert all(sheet[r] == "success (2 patients)" for r in two)
    # Emails and other telecom entries survive every update.
    emails_after = {p["id"]: [t for t in p["telecom"] if t["system"] == "email"] for p in region.patients()}
    assert emails_after == emails_before
    # The report row adds up to what the sheet says.
    [report] = report_rows(region)
    assert report["rows read"] == len(scenario.rows) - kinds["blank"]
    assert report["updated"] == kinds["updated"]
    assert report["unchanged"] == kinds["unchanged"]
    assert report["not found"] == kinds["not_found"]
    assert report["invalid phone"] == kinds["invalid_phone"]
    assert report["skipped"] == kinds["skipped"]
    assert report["batches failed"] == 0
    assert report["statuses not placed"] == 0
    # Request economy: at most 10 FHIR requests per 100 rows sent to FHIR, one mapped task per batch.
    batches = batches_of(region, scenario)
    sent = sum(len(b) for b in batches)
    assert report["FHIR requests"] <= sent / 10
    assert sorted(k[1] for k in ti_states(dag_run) if k[0] == "process_batch") == list(range(len(batches)))
    # Airflow hands a mapped batch its item by reading the whole mapped list, in every batch process: numbers only.
    assert xcom_value(dag_run, "clean_phones") == list(range(len(batches)))
    assert batch_labels(dag_run) == {i: f"rows {rows[0]}-{rows[-1]}" for i, rows in enumerate(batches)}


def test_rerun_changes_nothing_on_the_server(make_region: MakeRegion) -> None:
    scenario = generate(600, seed=5)
    region = make_region(scenario)
    assert run_dag(region, scenario.run_date).state == "success"
    versions = {p["id"]: p["meta"]["versionId"] for p in region.patients()}
    first = statuses(region)

    # Operators re-send every row by clearing the status column; the same logical date runs again.
    header, *_ = region.cells()
    col = chr(ord("A") + header.index(region.config.sheets.columns.status))
    region.sheet_edit(
        {"op": "set", "range": f"{col}2:{col}{len(scenario.rows) + 1}", "values": [[""] for _ in scenario.rows]}
    )
    assert run_dag(region, scenario.run_date).state == "success"

    assert {p["id"]: p["meta"]["versionId"] for p in region.patients()} == versions
    second = statuses(region)
    for row, text in first.items():
        if text.startswith("success"):
            assert second[row] == "unchanged", (row, text, second[row])
        else:
            assert second[row].split(" (")[0] == text.split(" (")[0]


def test_a_failed_batch_fails_the_run_and_its_rows_say_so_until_rerun(make_region: MakeRegion) -> None:
    scenario = generate(450, seed=3)
    region = make_region(scenario)
    batches = batches_of(region, scenario)
    doomed_rows = batches[1]
    # An outage for the second batch: FHIR answers 503 to any request naming one of its identifiers.
    region.fhir_faults(outage_identifiers=[scenario.identifiers[r] for r in doomed_rows])

    dag_run = run_dag(region, scenario.run_date)

    assert dag_run.state == "failed"
    states = ti_states(dag_run)
    assert [k for k, s in states.items() if k[0] == "process_batch" and s == "failed"] == [("process_batch", 1)]
    assert states[("write_back_statuses", -1)] == "success"
    assert states[("run_report", -1)] == "failed"
    sheet = statuses(region)
    for row in doomed_rows:
        assert sheet[row].startswith("failed: batch not processed ("), sheet[row]
        assert sheet[row].endswith(f"will retry (b01-r{row})")
    others = [r for batch in batches[:1] + batches[2:] for r in batch]
    assert not any(sheet[r].startswith("failed: batch not processed") for r in others)
    assert all(sheet[r].startswith("success") for r in others if scenario.expected[r].kind == "updated")
    [report] = report_rows(region)
    assert report["batches failed"] == 1
    versions = {p["id"]: p["meta"]["versionId"] for p in region.patients()}

    # The outage ends; the next run of the same date picks up exactly the rows that say 'failed'.
    region.clear_fhir_faults()
    assert run_dag(region, scenario.run_date).state == "success"
    assert_rows_match(region, scenario)
    after = {p["id"]: p["meta"]["versionId"] for p in region.patients()}
    changed = {pid for pid in after if after[pid] != versions[pid]}
    by_identifier = phones_by_identifier(region)
    batch_patients = {p["id"] for r in doomed_rows for p in by_identifier.get(scenario.identifiers[r], [])}
    assert changed, "the failed batch was applied on the rerun"
    assert changed <= batch_patients, "only the failed batch's patients were written on the rerun"
    assert all(int(after[pid]) == int(versions[pid]) + 1 for pid in changed), "each written exactly once"


def test_backfill_processes_each_day_and_never_overwrites_a_newer_number(make_region: MakeRegion) -> None:
    day = date(2026, 11, 20)
    nik = ["3303000000000001", "3303000000000002", "3303000000000003", "3303000000000004"]
    newest = day + timedelta(days=5)  # a number set after the backfilled days
    patients = [
        _patient(nik[0], "081100000001"),
        _patient(nik[1], "081100000002"),
        _patient(nik[2], "081100000003", since=newest),
        _patient(nik[3], "081100000004"),
    ]
    rows = [
        [nik[0], "a", "081200000001", day.isoformat(), "", ""],
        [nik[1], "b", "081200000002", (day + timedelta(days=1)).isoformat(), "", ""],
        [nik[2], "c", "081200000003", (day + timedelta(days=2)).isoformat(), "", ""],
        [nik[3], "d", "081200000004", (day + timedelta(days=9)).isoformat(), "", ""],  # not in the backfill
    ]
    scenario = Scenario(rows=rows, patients=patients, expected={}, identifiers={})
    region = make_region(scenario, rows={"select": "data_interval"})

    for offset in range(3):  # a backfill of three daily runs, oldest first
        assert run_dag(region, day + timedelta(days=offset + 1)).state == "success"

    sheet = statuses(region)
    assert sheet[2] == "success"
    assert sheet[3] == "success"
    assert sheet[4].startswith("skipped: newer number on record")
    assert sheet[5] == "", "a row outside every backfilled interval is untouched"
    phones = {k: v[0]["phone"] for k, v in phones_by_identifier(region).items()}
    assert canonical(phones[nik[0]]) == "+6281200000001"
    assert canonical(phones[nik[2]]) == "+6281100000003", "the newer number stays"
    assert canonical(phones[nik[3]]) == "+6281100000004"
    periods = {k: v[0]["telecom"][0].get("period", {}) for k, v in phones_by_identifier(region).items()}
    assert periods[nik[0]]["start"].startswith(day.isoformat()), "period.start is the row's feed date"
    assert [r["rows read"] for r in report_rows(region)] == [4, 4, 4]
    assert [r["updated"] for r in report_rows(region)] == [1, 1, 0]


def _patient(nik: str, phone: str, since: date | None = None) -> dict:
    contact = {"system": "phone", "value": phone, "use": "mobile"}
    if since:
        contact["period"] = {"start": since.isoformat()}
    return {
        "resourceType": "Patient",
        "identifier": [{"system": IDENTIFIER_SYSTEM, "value": nik}],
        "telecom": [contact],
    }
