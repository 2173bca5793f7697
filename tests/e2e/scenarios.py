"""The operator scenarios, written once and run against each executor's deployment.

Each drives Airflow through the REST API only and then checks the three places an operator would
look: the FHIR server (phones and versionIds), the sheet (every row's status) and the report row.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable
from datetime import date, timedelta
from typing import Any
from urllib.parse import quote

import pendulum
import requests

from localservers.fhir.auth import token_hash
from localservers.scenario import IDENTIFIER_SYSTEM, Expected, Scenario, generate
from localservers.sinks.processes import WebhookSink
from localservers.stack import LocalRegion
from phone_sync.crypto import new_key
from phone_sync.fhir.connection import conn_fields
from phone_sync.phones import canonical
from tests.e2e.harness import (
    RUN_ID_HEADER,
    World,
    assert_fhir,
    assert_report,
    assert_statuses,
    batches,
    current_phones,
    dialog_screenshot,
    expected_counts,
    fhir_patients,
    label_rows,
    max_concurrency,
    parse_time,
    read_sheet,
    report_for,
    screenshot,
)
from tests.phi import files, phi_of, scan
from tests.regions import STATUS_PREFIX

RUN_TIMEOUT = 240.0
_BLANK = Expected("blank", None)


def _states(world: World, dag_id: str, run_id: str) -> str:
    """Task states of a run, for failure messages."""
    tis = world.cluster.task_instances(dag_id, run_id)
    return ", ".join(f"{ti['task_id']}[{ti['map_index']}]={ti['state']}" for ti in tis)


def _start(world: World, name: str) -> str:
    dag_id = world.config(name).dag_id
    world.cluster.wait_for_dag(dag_id)
    world.cluster.unpause(dag_id)
    return dag_id


def _assert_run_ids(world: World, name: str, run_id: str, rows: set[int] | None = None) -> None:
    """Every processed row names the run that wrote its status."""
    sheet = read_sheet(world.regions[name])
    scenario = world.scenarios[name]
    wrong = [
        row
        for row, expected in scenario.expected.items()
        if expected.kind != "blank" and (rows is None or row in rows) and sheet.cell(row, RUN_ID_HEADER) != run_id
    ]
    assert not wrong, f"rows {wrong[:10]} do not carry run id {run_id}"


# --- 1. a triggered run completes -------------------------------------------------------------------


def triggered_run_completes(world: World, name: str) -> list[dict[str, Any]]:
    """Trigger the region once; every row gets its status, every patient its number, one report row."""
    cluster, region, scenario = world.cluster, world.regions[name], world.scenarios[name]
    dag_id = _start(world, name)
    run_id = cluster.trigger(dag_id)
    run = cluster.wait_for_run(dag_id, run_id, RUN_TIMEOUT)
    assert run["state"] == "success", f"run {run_id} {run['state']}: {_states(world, dag_id, run_id)}"
    tis = batches(cluster, dag_id, run_id)
    assert len(tis) >= 3, tis
    assert all(ti["state"] == "success" for ti in tis), tis
    assert all(ti["rendered_map_index"].startswith("rows ") for ti in tis), "map_index_template not rendered"
    assert_statuses(region, scenario)
    _assert_run_ids(world, name, run_id)
    assert_fhir(region, scenario)
    reports = report_for(region, run_id)
    assert len(reports) == 1, reports
    assert_report(reports[0], scenario)
    return tis


# --- 2. outage, then clear only the failed map indexes ----------------------------------------------


def _outage_identifiers(scenario: Scenario, near: tuple[int, ...]) -> dict[int, str]:
    """An updated row's identifier close to each of the given sheet rows (one per target batch)."""
    updated = [row for row, e in scenario.expected.items() if e.kind == "updated"]
    picked: dict[int, str] = {}
    for target in near:
        row = min(updated, key=lambda r: abs(r - target))
        picked[row] = scenario.identifiers[row]
    return picked


def outage_then_clear(world: World, name: str, shots: str = "", *, only_failed: bool = False) -> dict[str, Any]:
    """503s for two batches: they fail after retries, the rest is written; clearing them completes the run.

    The operator clears the failed map indexes with downstream tasks; or (``only_failed``) the run's failed
    tasks only, from the run's Clear dialog: then write-back, which succeeded, does not run again, and the
    cleared batches write their statuses themselves.
    """
    cluster, region, scenario = world.cluster, world.regions[name], world.scenarios[name]
    dag_id = _start(world, name)
    last_row = max(scenario.expected)
    down = _outage_identifiers(scenario, (last_row // 4, 3 * last_row // 4))
    region.fhir_faults(outage_identifiers=list(down.values()))

    run_id = cluster.trigger(dag_id)
    run = cluster.wait_for_run(dag_id, run_id, RUN_TIMEOUT)
    assert run["state"] == "failed", f"run {run_id} should fail during the outage: {_states(world, dag_id, run_id)}"
    tis = batches(cluster, dag_id, run_id)
    failed = [ti for ti in tis if ti["state"] == "failed"]
    assert len(failed) == 2, f"expected the two batches holding the down identifiers to fail: {tis}"
    assert all(ti["try_number"] == 2 for ti in failed), "each failed batch should have used its one retry"
    failed_rows = {row for ti in failed for row in label_rows(ti["rendered_map_index"])}
    assert set(down) <= failed_rows, f"down rows {sorted(down)} not in failed batches {failed_rows}"
    assert all(ti["state"] == "success" for ti in tis if ti not in failed), tis

    # The other batches' work is written; the failed batches' rows say so and nothing of theirs reached FHIR.
    sheet = read_sheet(region)
    ok_rows = {row for ti in tis if ti not in failed for row in label_rows(ti["rendered_map_index"])}
    for row in failed_rows & set(scenario.expected):
        status = sheet.status(row, region.config)
        if scenario.expected[row].kind in ("updated", "unchanged", "not_found"):
            assert status.startswith("failed: batch not processed"), f"row {row}: {status!r}"
    decided_elsewhere = set(scenario.expected) - failed_rows  # rows in good batches or decided while cleaning
    assert_statuses(region, _only(scenario, decided_elsewhere))
    # Phones of the good batches' rows (superseded duplicates aside: their winner may be in a failed batch);
    # versionIds of every patient: 2 for those good rows, 1 for everyone else.
    assert_fhir(region, _only(scenario, {r for r in ok_rows if scenario.expected.get(r, _BLANK).kind != "skipped"}))
    patients = fhir_patients(region)
    for row in failed_rows & set(scenario.identifiers):
        for patient in patients.get(scenario.identifiers[row], []):
            assert patient["meta"]["versionId"] == "1", f"row {row} of a failed batch was written"
    first = report_for(region, run_id)
    assert len(first) == 1, first
    assert first[0]["batches failed"] == 2, first
    report_ti = next(ti for ti in cluster.task_instances(dag_id, run_id) if ti["task_id"] == "run_report")
    assert report_ti["state"] == "failed", report_ti
    if shots:
        screenshot(cluster, f"/dags/{dag_id}/runs/{run_id}", f"{shots}-failed-batches")

    # The outage ends; meanwhile the deployment rotated its PHI key (new first, old kept). The operator clears
    # the failed map indexes: their inputs, sealed with the old key, still open.
    region.clear_fhir_faults()
    world.rotate_phi_key()
    indexes = [ti["map_index"] for ti in failed]
    if only_failed:
        cleared = cluster.clear_run(dag_id, run_id, only_failed=True)
        downstream = {"process_batch", "run_report"}  # write-back succeeded: it is not cleared
    else:
        cleared = cluster.clear_map_indexes(dag_id, run_id, "process_batch", indexes)
        downstream = {"process_batch", "write_back_statuses", "run_report"}
    cleared_keys = {(ti["task_id"], ti["map_index"]) for ti in cleared}
    assert cleared_keys >= {("process_batch", i) for i in indexes}, cleared_keys
    assert {k[0] for k in cleared_keys} == downstream, cleared_keys
    assert {k[1] for k in cleared_keys if k[0] == "process_batch"} == set(indexes), "other batches were cleared"

    run = cluster.wait_for_run(dag_id, run_id, RUN_TIMEOUT)
    assert run["state"] == "success", f"run {run_id} after clearing: {_states(world, dag_id, run_id)}"
    tis = batches(cluster, dag_id, run_id)
    assert all(ti["state"] == "success" for ti in tis), tis
    assert {ti["map_index"]: ti["try_number"] for ti in tis if ti["map_index"] in indexes} == dict.fromkeys(indexes, 3)
    assert_statuses(region, scenario)
    _assert_run_ids(world, name, run_id)
    assert_fhir(region, scenario)  # every updated patient at versionId 2: written exactly once
    reports = report_for(region, run_id)
    assert len(reports) == 2, reports
    assert_report(reports[-1], scenario)  # counts what the cleared batches did, not the first run's counts
    if shots:
        screenshot(cluster, f"/dags/{dag_id}/runs/{run_id}", f"{shots}-after-clear")
        screenshot(cluster, f"/dags/{dag_id}/runs/{run_id}/tasks/process_batch/mapped", f"{shots}-mapped-batches")
    return {"run_id": run_id, "failed_indexes": indexes, "batches": tis}


# --- 2b. the sheet fills in while batches run; a killed batch process is retried -----------------------


def statuses_appear_while_batches_run(world: World, name: str) -> dict[str, Any]:
    """Through the scheduler: each finished batch's statuses are in the sheet before write-back starts (the
    operators' live view). A batch whose task process is killed, as a dying worker would, is retried and its
    rows end right; nothing is written twice."""
    cluster, region, scenario = world.cluster, world.regions[name], world.scenarios[name]
    dag_id = _start(world, name)
    region.fhir_faults(latency_ms=250)  # a slow national gateway: a batch takes seconds
    run_id = cluster.trigger(dag_id)
    seen: list[tuple[float, int]] = []  # (time, statuses in the sheet)
    killed = None  # the map index whose kill landed mid-work (its task instance was retried)
    pending = None  # a map index just killed, not yet known to have died mid-work
    too_late: set[int] = set()  # kills that landed as the task was already ending in success
    deadline = time.time() + RUN_TIMEOUT
    while time.time() < deadline:
        sheet = read_sheet(region)
        seen.append((time.time(), sum(1 for row in scenario.expected if sheet.status(row, region.config))))
        batches = {
            ti["map_index"]: ti for ti in cluster.task_instances(dag_id, run_id) if ti["task_id"] == "process_batch"
        }
        if pending is not None:
            ti = batches[pending]
            if ti["try_number"] >= 2 or ti["state"] in ("up_for_retry", "failed"):
                killed, pending = pending, None
            elif ti["state"] == "success":
                too_late.add(pending)
                pending = None
        if killed is None and pending is None and any(count for _, count in seen):
            running = [
                ti
                for index, ti in batches.items()
                if ti["state"] == "running" and ti["try_number"] == 1 and index not in too_late
            ]
            youngest = max(running, key=lambda ti: ti["start_date"] or "", default=None)  # the most work ahead
            if youngest and cluster.kill_task_process(youngest["id"]):
                pending = youngest["map_index"]
        if cluster.run(dag_id, run_id)["state"] in ("success", "failed"):
            break
        time.sleep(0.3)
    run = cluster.run(dag_id, run_id)
    assert run["state"] == "success", f"run {run_id} {run['state']}: {_states(world, dag_id, run_id)}"
    tis = cluster.task_instances(dag_id, run_id)
    write_back = next(ti for ti in tis if ti["task_id"] == "write_back_statuses")
    first = next((at for at, count in seen if count), None)
    assert first is not None, "no status was in the sheet before the run ended"
    assert first < parse_time(write_back["start_date"]).timestamp(), "statuses appeared only with write-back"
    assert killed is not None, f"no batch process was killed mid-work (killed too late: {sorted(too_late)})"
    [retried] = [ti for ti in tis if ti["task_id"] == "process_batch" and ti["map_index"] == killed]
    assert retried["try_number"] == 2, retried
    region.clear_fhir_faults()
    # The killed try may have updated its patients before it died: its retry finds them `unchanged`.
    killed_rows = set(label_rows(retried["rendered_map_index"]))
    assert_statuses(region, _only(scenario, set(scenario.expected) - killed_rows))
    sheet = read_sheet(region)
    for row in killed_rows & set(scenario.expected):
        status, kind = sheet.status(row, region.config), scenario.expected[row].kind
        allowed = ("success", "unchanged") if kind == "updated" else (STATUS_PREFIX[kind],)
        assert status.startswith(allowed), f"row {row} of the killed batch: {status!r} ({kind})"
    assert_fhir(region, scenario)  # written exactly once, the killed batch's patients included
    [report] = report_for(region, run_id)
    want = expected_counts(scenario)
    assert report["updated"] + report["unchanged"] == want["updated"] + want["unchanged"], report
    assert (report["failed"], report["batches failed"], report["statuses not placed"]) == (0, 0, 0), report
    assert report["statuses written live"] > 0, report
    return {"run_id": run_id, "killed": killed, "seen": seen}


def _only(scenario: Scenario, rows: set[int]) -> Scenario:
    """The scenario restricted to ``rows`` (for checks while part of the run is still failed)."""
    return Scenario(
        rows=scenario.rows,
        patients=scenario.patients,
        expected={row: e for row, e in scenario.expected.items() if row in rows},
        identifiers=scenario.identifiers,
        run_date=scenario.run_date,
    )


# --- 3. backfill after an outage ----------------------------------------------------------------------


def backfill_today(timezone: str) -> date:
    return pendulum.now(timezone).date()


def backfill_scenario(rows: int, today: date, seed: int = 13) -> Scenario:
    """Rows fed on the three days before yesterday, plus a patient whose number was changed today."""
    scenario = generate(rows, seed=seed, run_date=today - timedelta(days=1))  # feed dates today-2 .. today-4
    row = max(scenario.expected) + 1
    nik, old, new = "3303999900000001", "081299990001", "081299990002"
    scenario.patients.append(
        {
            "resourceType": "Patient",
            "identifier": [{"system": IDENTIFIER_SYSTEM, "value": nik}],
            "name": [{"family": "Baru", "given": ["Nomor"]}],
            "telecom": [{"system": "phone", "value": old, "use": "mobile", "period": {"start": today.isoformat()}}],
        }
    )
    scenario.rows.append([nik, "pasien", new, (today - timedelta(days=3)).isoformat(), "", ""])
    scenario.identifiers[row] = nik
    scenario.expected[row] = Expected("skipped", canonical(old))
    return scenario


def backfill_after_outage(world: World, name: str, today: date) -> list[dict[str, Any]]:
    """The DAG was unreachable for three days; a backfill runs one run per day, each on its own day's rows."""
    cluster, region, scenario = world.cluster, world.regions[name], world.scenarios[name]
    config = region.config
    days = [today - timedelta(days=n) for n in (4, 3, 2)]
    dag_id = _start(world, name)

    # Unpausing lets the scheduler run the latest interval (yesterday) only: catchup is off.
    def scheduled() -> list[dict[str, Any]]:
        runs = cluster.runs(dag_id, run_type=["scheduled"])
        return [r for r in runs if r["state"] in ("success", "failed")]

    latest = cluster.wait_until("the scheduled run of yesterday's interval", scheduled, RUN_TIMEOUT)
    assert len(latest) == 1, latest
    assert latest[0]["state"] == "success", latest
    assert all(not read_sheet(region).status(row, config) for row in scenario.expected), "no feed day ran yet"

    def local(day: date) -> str:
        return pendulum.datetime(day.year, day.month, day.day, tz=config.timezone).isoformat()

    backfill = cluster.backfill(dag_id, local(days[0]), local(days[-1]))
    cluster.wait_until(
        f"backfill {backfill['id']} to complete",
        lambda: cluster.backfill_state(backfill["id"])["completed_at"],
        3 * RUN_TIMEOUT,
        interval=2,
    )
    runs = sorted(cluster.runs(dag_id, run_type=["backfill"]), key=lambda r: r["logical_date"])
    assert [r["state"] for r in runs] == ["success"] * 3, runs
    run_days = [pendulum.parse(r["logical_date"]).in_timezone(config.timezone).date() for r in runs]
    assert run_days == days, f"backfill runs for {run_days}, expected {days}"

    feed_col = config.sheets.columns.feed_date
    sheet = read_sheet(region)
    in_scope = {row for row in scenario.expected if str(sheet.cell(row, feed_col)) in {d.isoformat() for d in days}}
    assert_statuses(region, scenario, rows=in_scope)
    for run, day in zip(runs, days, strict=True):
        rows = {row for row in in_scope if str(sheet.cell(row, feed_col)) == day.isoformat()}
        assert rows, f"no rows fed on {day}"
        _assert_run_ids(world, name, run["dag_run_id"], rows)
        reports = report_for(region, run["dag_run_id"])
        assert len(reports) == 1, reports
        assert_report(reports[0], scenario, rows)
    assert_fhir(region, scenario, rows=in_scope)
    newer = max(scenario.expected)
    assert read_sheet(region).status(newer, config).startswith("skipped: newer number on record")
    kept = fhir_patients(region)[scenario.identifiers[newer]][0]
    assert current_phones(kept) == {scenario.expected[newer].phone}
    assert kept["meta"]["versionId"] == "1"
    assert expected_counts(scenario, in_scope)["skipped"] >= 1
    return runs


# --- 4. two regions at once ---------------------------------------------------------------------------


def two_regions_at_once(world: World, names: tuple[str, str]) -> dict[str, int]:
    """Both regions triggered together: each only on its own servers with its own token, within its limit."""
    cluster = world.cluster
    dag_ids = {name: _start(world, name) for name in names}
    run_ids = {name: cluster.trigger(dag_ids[name]) for name in names}
    spans, peaks = {}, {}
    for name in names:
        region, scenario = world.regions[name], world.scenarios[name]
        run = cluster.wait_for_run(dag_ids[name], run_ids[name], RUN_TIMEOUT)
        assert run["state"] == "success", f"{name}: {_states(world, dag_ids[name], run_ids[name])}"
        assert_statuses(region, scenario)
        assert_fhir(region, scenario)
        reports = report_for(region, run_ids[name])
        assert len(reports) == 1, reports
        assert_report(reports[0], scenario)

        tis = batches(cluster, dag_ids[name], run_ids[name])
        peaks[name] = max_concurrency(tis)
        limit = region.config.max_parallel_batches
        assert 1 <= peaks[name] <= limit, f"{name}: {peaks[name]} batches at once, limit {limit}"
        assert {ti["pool"] for ti in tis} == {"default_pool"}, "batches need no pool of their own"
        spans[name] = (min(parse_time(t["start_date"]) for t in tis), max(parse_time(t["end_date"]) for t in tis))

        # Every FHIR request on this region's server carried this region's token, and only its own.
        log = requests.get(f"{region.fhir.url}/_admin/requests", timeout=30).json()
        tokens = {entry["token"] for entry in log if entry["interaction"] != "metadata"}
        assert len(log) > 10, f"{name}: too few FHIR requests logged ({len(log)})"
        assert tokens == {token_hash(region.fhir_token)}, f"{name}: tokens seen {tokens}"
        users = set(region.sheet_requests()["by_user"])
        assert users == {f"phone-sync-{region.config.region}@local.test"}, f"{name}: sheet users {users}"
    (a_start, a_end), (b_start, b_end) = spans[names[0]], spans[names[1]]
    assert a_start < b_end, f"the two regions' batches did not overlap: {spans}"
    assert b_start < a_end, f"the two regions' batches did not overlap: {spans}"
    return peaks


# --- 5. a region file broken while Airflow runs -------------------------------------------------------


def broken_region_file(world: World, steady: str, fragile: str) -> dict[str, Any]:
    """Break one region's file mid-run and drop an unedited copy of the running region's file beside it
    (a file manager names it ``<region> copy.json``): the running region's runs complete; each bad file
    shows as its own config-error DAG saying why, and none is an import error."""
    cluster = world.cluster
    steady_id, fragile_id = _start(world, steady), _start(world, fragile)
    run_id = cluster.trigger(steady_id)

    path = world.regions_dir / f"{fragile}.json"
    broken = json.loads(path.read_text(encoding="utf-8"))
    broken["batch_size"] = 0  # an operator's typo: must be 1..1000
    path.write_text(json.dumps(broken, indent=2), encoding="utf-8")
    copy = world.regions_dir / f"{steady} copy.json"  # same region, connections and spreadsheet
    shutil.copy(world.regions_dir / f"{steady}.json", copy)

    def config_error() -> dict[str, Any] | None:
        found = cluster.dag(fragile_id) or {}
        return found if "config-error" in {t["name"] for t in found.get("tags", [])} else None

    def copy_shown() -> dict[str, Any] | None:
        """Found as an operator would: the config-error DAG whose description names the file."""
        listed = cluster.api("GET", "/dags", params={"tags": ["config-error"], "limit": 100})["dags"]
        named = f"Invalid region file {copy.name}: "
        return next((d for d in listed if (d["description"] or "").startswith(named)), None)

    shown = cluster.wait_until(f"{fragile_id} to show as a config-error DAG", config_error, 120, interval=2)
    assert f"{fragile}.json" in shown["description"], shown["description"]
    assert "batch_size" in shown["description"], shown["description"]
    assert shown["timetable_summary"] in (None, "None"), shown["timetable_summary"]
    details = cluster.api("GET", f"/dags/{fragile_id}/details")
    assert "batch_size" in (details.get("doc_md") or ""), details.get("doc_md")

    copied = cluster.wait_until(f"{copy.name} to show as a config-error DAG", copy_shown, 120, interval=2)
    assert re.fullmatch(rf"{steady_id}_copy__[0-9a-f]{{8}}", copied["dag_id"]), copied["dag_id"]
    assert copied["is_paused"], copied
    assert copied["timetable_summary"] in (None, "None"), copied
    copy_doc = cluster.api("GET", f"/dags/{copied['dag_id']}/details").get("doc_md") or ""
    for text in (copied["description"], copy_doc):
        assert "does not match the file name" in text, text
        for field in ("fhir.conn_id", "sheets.conn_id", "sheets.spreadsheet_id"):
            assert f"{field}: " in text, text
        assert f"is also used by region {steady} (file {steady}.json), which keeps it" in text, text

    errors = cluster.api("GET", "/importErrors")
    assert errors["total_entries"] == 0, f"a broken region file must not be an import error: {errors}"

    region, scenario = world.regions[steady], world.scenarios[steady]
    run = cluster.wait_for_run(steady_id, run_id, RUN_TIMEOUT)
    assert run["state"] == "success", _states(world, steady_id, run_id)
    assert_statuses(region, scenario)
    assert_fhir(region, scenario)
    assert len(report_for(region, run_id)) == 1
    # A run started after both bad files were parsed: every task process parses the folder with the copy in it.
    again = cluster.trigger(steady_id)
    run = cluster.wait_for_run(steady_id, again, RUN_TIMEOUT)
    assert run["state"] == "success", _states(world, steady_id, again)
    assert len(report_for(region, again)) == 1
    assert_statuses(region, scenario)
    steady_dag = cluster.dag(steady_id) or {}
    assert "config-error" not in {t["name"] for t in steady_dag.get("tags", [])}
    assert cluster.api("GET", "/importErrors")["total_entries"] == 0
    return {"fragile": shown, "copy": copied}


EDIT_BUTTON = json.dumps('button[aria-label="Edit Connection"]')  # a CSS selector as a JavaScript string
# What the connection form writes into extra for a bearer connection: every field, defaults, empty ones null.
FORM_EXTRA = {**{name: field["schema"].get("default") for name, field in conn_fields().items()}, "auth_type": "bearer"}


def fhir_connection_form(world: World, name: str) -> dict[str, Any]:
    """Scenario 6: an operator adds a region's FHIR connection in the UI's form and presses Test.

    The api-server offers the ``fhir`` type with its own fields; a connection made as the form makes it
    (``POST /api/v2/connections``) tests green against the region's server, and the same form with a wrong
    token tests red, saying the credentials were refused and showing no token.
    """
    cluster, region = world.cluster, world.regions[name]
    meta = cluster.ui("GET", "/connections/hook_meta")
    (fhir,) = [m for m in meta if m["connection_type"] == "fhir"]
    assert fhir["hook_name"] == "FHIR"
    assert set(fhir["extra_fields"]) == set(FORM_EXTRA)

    conn_id = f"fhir_{name}_form"
    body = {
        "connection_id": conn_id,
        "conn_type": "fhir",
        "description": f"{region.config.display_name} FHIR server",
        "host": region.fhir.url,
        "password": region.fhir_token,
        "extra": json.dumps(FORM_EXTRA),
    }
    created = cluster.api("POST", "/connections", json=body)
    assert (created["conn_type"], created["password"]) == ("fhir", "***")

    passed = cluster.api("POST", "/connections/test", json=body)
    assert passed["status"] is True, passed
    assert passed["message"] == (
        f"FHIR 4.0.1 server at {region.fhir.url}: metadata OK, bearer token accepted (GET Patient?_count=0); "
        "interaction profile from its CapabilityStatement: search POST, update batch (batch, update, patch)"
    )

    wrong_token = "not-the-region-token-" + region.fhir_token[-4:]
    failed = cluster.api("POST", "/connections/test", json={**body, "password": wrong_token})
    assert failed["status"] is False, failed
    refused = "answers metadata, but the FHIR server refused the credentials (HTTP 401 on GET /Patient)"
    assert refused in failed["message"]
    assert wrong_token not in failed["message"]
    assert region.fhir_token not in failed["message"]

    edit = f"[...document.querySelectorAll('tr')].find(r => r.innerText.includes('{conn_id}'))"
    dialog_screenshot(
        cluster,
        "/connections",
        "connection-form-fhir",
        clicks=[
            f"{edit}?.querySelector({EDIT_BUTTON})",
            "[...document.querySelectorAll('[role=dialog] [aria-expanded]')]"
            ".find(b => b.innerText.trim() === 'Extra Fields')",
        ],
        ready="document.querySelector('[role=dialog]')?.innerText.includes('OAuth2 token URL')",
    )
    return {"passed": passed, "failed": failed}


# --- 7. one OAuth2 token for a run's parallel batches -------------------------------------------------


def _token_requests(region: LocalRegion) -> int:
    """Requests the region's token endpoint has answered so far (granted or refused)."""
    log = requests.get(f"{region.fhir.url}/_admin/requests", timeout=30).json()
    return sum(1 for entry in log if entry["interaction"] == "token")


def shared_token(world: World, name: str) -> list[dict[str, Any]]:
    """An OAuth2 region whose gateway limits grants: batches in parallel processes share one token per run,
    and a second run while the token lives asks for none."""
    cluster, region, scenario = world.cluster, world.regions[name], world.scenarios[name]
    dag_id = _start(world, name)
    before = _token_requests(region)
    run_id = cluster.trigger(dag_id)
    run = cluster.wait_for_run(dag_id, run_id, RUN_TIMEOUT)
    assert run["state"] == "success", f"run {run_id} {run['state']}: {_states(world, dag_id, run_id)}"
    tis = batches(cluster, dag_id, run_id)
    assert len(tis) >= 4, tis
    assert max_concurrency(tis) >= 2, "batches should have run in parallel"
    assert len({ti["pid"] for ti in tis}) >= 2, "batches ran in several processes"
    assert _token_requests(region) - before == 1, "one token request for the whole run"
    assert region.fhir_stats()["token_refusals"] == {}
    assert_statuses(region, scenario)
    assert_fhir(region, scenario)
    assert_report(report_for(region, run_id)[0], scenario)

    # The operator sends every row again; the token from the first run is still valid.
    status = region.config.sheets.columns.status
    col = chr(ord("A") + read_sheet(region).header.index(status))
    last = max(scenario.expected)
    region.sheet_edit({"op": "set", "range": f"{col}2:{col}{last}", "values": [[""] for _ in range(2, last + 1)]})
    before = _token_requests(region)
    again = cluster.trigger(dag_id)
    run = cluster.wait_for_run(dag_id, again, RUN_TIMEOUT)
    assert run["state"] == "success", f"run {again} {run['state']}: {_states(world, dag_id, again)}"
    assert len(batches(cluster, dag_id, again)) >= 4
    assert _token_requests(region) - before == 0, "the second run reused the shared token"
    [report] = report_for(region, again)
    assert report["unchanged"] >= expected_counts(scenario)["updated"], report
    return tis


# --- 8. a set-up mistake: fail at once, skip cleanly, say why -------------------------------------------


def renamed_header(world: World, name: str, alerts: WebhookSink) -> dict[str, Any]:
    """An operator renames the phone column: extract fails on its first try (no retries), the tasks after it
    skip or fail cleanly, the run is red, the report row and the alert name the step and the region's headers found."""
    cluster, region = world.cluster, world.regions[name]
    dag_id = _start(world, name)
    phone_col = chr(ord("A") + read_sheet(region).header.index(region.config.sheets.columns.phone))
    region.sheet_edit({"op": "set", "range": f"{phone_col}1", "values": [["nomor_hp"]]})
    alerts.clear()

    run_id = cluster.trigger(dag_id)
    run = cluster.wait_for_run(dag_id, run_id, RUN_TIMEOUT)

    assert run["state"] == "failed", _states(world, dag_id, run_id)
    tis = {(ti["task_id"], ti["map_index"]): ti for ti in cluster.task_instances(dag_id, run_id)}
    assert (tis[("extract_rows", -1)]["state"], tis[("extract_rows", -1)]["try_number"]) == ("failed", 1)
    assert tis[("clean_phones", -1)]["state"] == "upstream_failed"
    assert tis[("write_back_statuses", -1)]["state"] == "skipped"
    assert tis[("run_report", -1)]["state"] == "failed"
    [report] = report_for(region, run_id)
    assert report["problem"].startswith(f"extract_rows: region {name}: header 'phone_number' not found")
    assert "among them this region's headers 'nik' (column A)" in report["problem"]
    assert "nomor_hp" not in report["problem"], "a cell's text may be patient data: never quoted"
    posted = cluster.wait_until(
        "the run-failure alert",
        lambda: [p for p in alerts.received() if (p["json"] or {}).get("run_id") == run_id],
        RUN_TIMEOUT,
    )
    [alert] = posted
    assert alert["json"]["summary"] == "run failed at extract_rows"
    assert "header 'phone_number' not found" in alert["json"]["text"]
    assert not any(nik in alert["body"] for nik in world.scenarios[name].identifiers.values())
    return alert["json"]


# --- 9. a preview triggered through the REST API with conf ---------------------------------------------


WRITE_INTERACTIONS = {"batch", "update", "create", "patch", "delete"}


def preview_through_the_api(world: World, name: str) -> dict[str, Any]:
    """A manual preview of rows 2-101 (as the trigger form sends it): decisions in the preview worksheet,
    not a single FHIR write, the status column untouched, the report row marked."""
    cluster, region, scenario = world.cluster, world.regions[name], world.scenarios[name]
    dag_id = _start(world, name)
    form = cluster.api("GET", f"/dags/{dag_id}/details")["params"]
    assert set(form) == {"mode", "rows", "listed_only", "resend"}, form
    assert form["mode"]["schema"]["enum"] == ["live", "preview"]
    refused = requests.post(
        f"{cluster.url}/api/v2/dags/{dag_id}/dagRuns",
        json={"logical_date": None, "conf": {"mode": "maybe"}},
        headers={"Authorization": f"Bearer {cluster.token}"},
        timeout=30,
    )
    assert refused.status_code == 400, "Airflow checks the form's types before a run exists"

    run_id = cluster.trigger(dag_id, conf={"mode": "preview", "rows": "2-101"})
    run = cluster.wait_for_run(dag_id, run_id, RUN_TIMEOUT)

    assert run["state"] == "success", _states(world, dag_id, run_id)
    log = requests.get(f"{region.fhir.url}/_admin/requests", timeout=30).json()
    assert log, "the preview searched the server"
    assert not [entry for entry in log if entry["interaction"] in WRITE_INTERACTIONS], "no FHIR write"
    sheet = read_sheet(region)
    assert all(not sheet.status(row, region.config) for row in scenario.expected), "status column untouched"
    header, *lines = region.cells(region.config.sheets.preview_worksheet)
    assert header[:4] == ["row", "identifier", "phone to write", "decision"]
    in_slice = {row for row, e in scenario.expected.items() if 2 <= row <= 101 and e.kind != "blank"}
    assert {line[0] for line in lines} == in_slice
    would = [line for line in lines if str(line[3]).startswith("would update ")]
    assert len(would) == sum(1 for row in in_slice if scenario.expected[row].kind == "updated")
    [report] = report_for(region, run_id)
    assert (report["mode"], report["controls"]) == ("preview", "preview; rows 2-101")
    assert cluster.api("GET", f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}")["note"] == (
        "phone-sync controls: preview; rows 2-101"
    )
    trigger_dialog = "[...document.querySelectorAll('[role=dialog]')].find(d => d.innerText.startsWith('Trigger Dag'))"
    dialog_screenshot(
        cluster,
        f"/dags/{dag_id}",
        "trigger-form",
        clicks=["[...document.querySelectorAll('button')].find(b => b.innerText.trim() === 'Trigger')"],
        # The form opens with its parameters; Trigger is enabled with every default (an empty optional field is null).
        ready=f"{trigger_dialog}?.innerText.includes('Only listed identifiers')"
        f" && ![...{trigger_dialog}.querySelectorAll('button')].find(b => b.innerText.trim() === 'Trigger').disabled",
        dialog=trigger_dialog,
    )
    return report


# --- 10. what the runs left behind in Airflow holds no patient data ---------------------------------------


def assert_no_phi_at_rest(world: World, database: Iterable[tuple[str, bytes]]) -> None:
    """Every identifier and phone of every region's scenario, in any form, is absent from the metadata
    ``database`` (its file or a dump) and every log the deployment wrote; the one batch XCom fetched through
    the REST API opens only with the key (the operator's CLI)."""
    home = world.cluster.home
    leftovers = [*database, *files(home / "logs", home / "process-logs")]
    needles = set().union(*(phi_of(scenario) for scenario in world.scenarios.values()))
    assert sum(len(blob) for _, blob in leftovers) > 1_000_000, "the scan reads the real database and logs"
    hits = scan(leftovers, needles)
    assert hits == [], f"patient data at rest in Airflow: {hits[:5]}"

    # One batch of the first region that ran to success, opened with the operator's CLI.
    name, run_id = next(
        (name, run["dag_run_id"])
        for name in world.regions
        for run in world.cluster.runs(world.config(name).dag_id)
        if run["state"] == "success"
    )
    dag_id = world.config(name).dag_id
    unseal = [sys.executable, "-m", "phone_sync.unseal", "show", "--api", world.cluster.url]
    unseal += ["--dag-id", dag_id, "--run-id", run_id, "--task-id", "process_batch", "--map-index", "0"]
    env = {**os.environ, "AIRFLOW_API_TOKEN": world.cluster.token}
    opened = subprocess.run(unseal, env={**env, "PHONE_SYNC_PHI_KEY": ",".join(world.phi_keys)}, capture_output=True)
    assert opened.returncode == 0, opened.stderr
    statuses = json.loads(opened.stdout)["statuses"]
    assert {s["identifier"] for s in statuses} <= set(world.scenarios[name].identifiers.values())
    refused = subprocess.run(unseal, env={**env, "PHONE_SYNC_PHI_KEY": new_key()}, capture_output=True)
    assert refused.returncode == 1
    assert b"cannot be opened" in refused.stderr
