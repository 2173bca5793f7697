"""End-to-end harness: region files in a temporary folder, their local servers, one running Airflow
(:class:`localservers.airflow_cluster.AirflowCluster`) and the checks every scenario shares.

Airflow is reached only through its REST API v2; the FHIR server and the Sheets emulator are read
back through their own HTTP APIs (FHIR search with the region's token, the emulator's control API).
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import requests

from localservers.airflow_cluster import AirflowCluster
from localservers.browser import Browser
from localservers.scenario import Scenario
from localservers.stack import FhirOAuth, LocalRegion, conn_env_name, local_region
from phone_sync.config import RegionConfig
from phone_sync.crypto import DEFAULT_KEY_CONN_ID as PHI_KEY_CONN_ID
from phone_sync.crypto import new_key
from phone_sync.phones import canonical
from phone_sync.pipeline.run_note import API_CONN_ID as RUN_NOTE_CONN_ID
from tests.regions import STATUS_PREFIX, merged, region_file, report_rows

RUN_ID_HEADER = "run_id"
# Short task retries so a failed batch turns red in seconds, not minutes.
FAST_RETRIES = {"count": 1, "delay_seconds": 2, "max_delay_seconds": 4}


@dataclass
class RegionSpec:
    """A test region: its name, changes to demo.json, and the synthetic sheet and patients it starts with;
    ``fhir_oauth`` makes its FHIR connection an OAuth2 client of its server instead of a static token."""

    name: str
    scenario: Scenario
    changes: dict[str, Any] = field(default_factory=dict)
    fhir_oauth: FhirOAuth | None = None


@dataclass
class World:
    """Everything one test module runs against."""

    regions_dir: Path
    regions: dict[str, LocalRegion]
    scenarios: dict[str, Scenario]
    cluster: AirflowCluster
    phi_keys: list[str] = field(default_factory=list)  # the PHI key connection's keys, newest first

    def config(self, name: str) -> RegionConfig:
        return self.regions[name].config

    def set_phi_keys(self, keys: list[str]) -> None:
        """The deployment's PHI key connection, as a secrets backend or the UI would hold it (newest first)."""
        body = {"connection_id": PHI_KEY_CONN_ID, "conn_type": "generic", "password": ",".join(keys)}
        if self.phi_keys:
            self.cluster.api("PATCH", f"/connections/{PHI_KEY_CONN_ID}", json=body)
        else:
            self.cluster.api("POST", "/connections", json=body)
        self.phi_keys = list(keys)

    def rotate_phi_key(self) -> str:
        """A new key first, the old ones kept after it (docs/security.md); returns the new key."""
        key = new_key()
        self.set_phi_keys([key, *self.phi_keys])
        return key


def write_region(folder: Path, name: str, changes: dict[str, Any] | None = None) -> RegionConfig:
    """demo.json as region ``name`` with its own connections and spreadsheet, unscheduled, fast retries."""
    own = {
        "region": name,
        "display_name": f"E2E {name}",
        "tags": ["e2e"],
        "schedule": None,
        "retries": FAST_RETRIES,
        "sheets": {
            "conn_id": f"google_sheets_{name}",
            "spreadsheet_id": f"{name}-spreadsheet",
            "columns": {"run_id": RUN_ID_HEADER},
        },
        "fhir": {"conn_id": f"fhir_{name}"},
    }
    return region_file(folder, **merged(own, changes or {}))


@contextmanager
def running_world(
    workdir: Path, specs: list[RegionSpec], extra_env: dict[str, str] | None = None, **cluster_options: Any
) -> Iterator[World]:
    """Region files, their servers, then Airflow with every region's connections; all stopped on exit.

    The PHI key is a connection in Airflow's database (not the environment), so a scenario can rotate it.
    """
    regions_dir = workdir / "regions"
    regions_dir.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        regions: dict[str, LocalRegion] = {}
        for spec in specs:
            config = write_region(regions_dir, spec.name, spec.changes)
            regions[spec.name] = _enter_region(stack, config, spec.scenario, workdir / "servers", spec.fhir_oauth)
        env = {"PHONE_SYNC_REGIONS_DIR": str(regions_dir), **(extra_env or {})}
        for region in regions.values():
            env.update(region.connections)
        env.pop(conn_env_name(PHI_KEY_CONN_ID))
        cluster = AirflowCluster(workdir / "airflow", extra_env=env, **cluster_options)
        # Lets a run's first task write the run's note through the REST API (all users are admins here).
        cluster.env[conn_env_name(RUN_NOTE_CONN_ID)] = json.dumps({"conn_type": "http", "host": cluster.url})
        stack.enter_context(cluster)
        world = World(regions_dir, regions, {s.name: s.scenario for s in specs}, cluster)
        world.set_phi_keys([new_key()])
        yield world


def _enter_region(
    stack: ExitStack, config: RegionConfig, scenario: Scenario, workdir: Path, fhir_oauth: FhirOAuth | None = None
) -> LocalRegion:
    """Start a region's servers; retried because ``local_region`` passes ``--token <random>`` and a token
    starting with ``-`` makes the FHIR server's argparse exit (see the report: ``--token=<token>`` fixes it).
    """
    for attempt in range(3):
        try:
            return stack.enter_context(local_region(config, scenario, workdir, fhir_oauth=fhir_oauth))
        except RuntimeError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


# --- reading back the region's servers ---------------------------------------------------------------


def fhir_patients(region: LocalRegion) -> dict[str, list[dict[str, Any]]]:
    """Every Patient on the region's FHIR server, by identifier value, read through its search API."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {region.fhir_token}"
    url: str | None = f"{region.fhir.url}/Patient?_count=500"
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    while url:
        response = session.get(url, timeout=60)
        response.raise_for_status()
        bundle = response.json()
        for entry in bundle.get("entry", []):
            patient = entry["resource"]
            for ident in patient.get("identifier", []):
                found[ident["value"]].append(patient)
        url = next((link["url"] for link in bundle.get("link", []) if link["relation"] == "next"), None)
    return found


def current_phones(patient: dict[str, Any]) -> set[str | None]:
    """E.164 numbers of the patient's phones that are not marked old."""
    return {
        canonical(contact["value"])
        for contact in patient.get("telecom", [])
        if contact.get("system") == "phone" and contact.get("use") != "old"
    }


@dataclass
class Sheet:
    """The region's worksheet as the emulator holds it, rows by sheet row number."""

    header: list[str]
    rows: dict[int, list[Any]]

    def cell(self, row: int, column: str) -> Any:
        index = self.header.index(column)
        values = self.rows.get(row, [])
        return values[index] if index < len(values) else ""

    def status(self, row: int, config: RegionConfig) -> str:
        return str(self.cell(row, config.sheets.columns.status) or "")


def read_sheet(region: LocalRegion) -> Sheet:
    header, *rows = region.cells()
    return Sheet([str(h) for h in header], {number: row for number, row in enumerate(rows, start=2)})


def report_for(region: LocalRegion, run_id: str) -> list[dict[str, Any]]:
    return [row for row in report_rows(region) if row.get("run id") == run_id]


# --- assertions every scenario shares ---------------------------------------------------------------


def assert_statuses(region: LocalRegion, scenario: Scenario, rows: set[int] | None = None) -> Sheet:
    """Every expected row (or those in ``rows``) carries the status its kind calls for; the others none."""
    sheet = read_sheet(region)
    wrong = []
    for row, expected in scenario.expected.items():
        status = sheet.status(row, region.config)
        prefix = STATUS_PREFIX[expected.kind] if rows is None or row in rows else ""
        ok = status.startswith(prefix) if prefix else status == ""
        if not ok:
            wrong.append(f"row {row}: expected {prefix or 'no status'!r} ({expected.kind}), got {status!r}")
    assert not wrong, f"{len(wrong)} wrong statuses in {region.config.region}:\n" + "\n".join(wrong[:20])
    return sheet


def assert_fhir(region: LocalRegion, scenario: Scenario, rows: set[int] | None = None) -> None:
    """Final phones as expected, and each patient written exactly once if its row updated it (versionId)."""
    patients = fhir_patients(region)
    problems = []
    updated_ids = {
        scenario.identifiers[row]
        for row, expected in scenario.expected.items()
        if expected.kind == "updated" and (rows is None or row in rows)
    }
    for row, expected in scenario.expected.items():
        if expected.kind == "blank" or (rows is not None and row not in rows):
            continue
        ident = scenario.identifiers[row]
        for patient in patients.get(ident, []):
            if expected.phone and expected.phone not in current_phones(patient):
                problems.append(f"row {row} ({expected.kind}): phone {current_phones(patient)} != {expected.phone}")
    for ident, found in patients.items():
        want = "2" if ident in updated_ids else "1"
        problems += [
            f"identifier ...{ident[-4:]}: versionId {p['meta']['versionId']}, expected {want}"
            for p in found
            if p["meta"]["versionId"] != want
        ]
    assert not problems, f"{len(problems)} FHIR problems in {region.config.region}:\n" + "\n".join(problems[:20])


def expected_counts(scenario: Scenario, rows: set[int] | None = None) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for row, expected in scenario.expected.items():
        if expected.kind != "blank" and (rows is None or row in rows):
            counts[expected.kind] += 1
    return counts


def assert_report(report: dict[str, Any], scenario: Scenario, rows: set[int] | None = None) -> None:
    """The report row's counts match the scenario's expectations."""
    want = expected_counts(scenario, rows)
    got = {
        "updated": report["updated"],
        "unchanged": report["unchanged"],
        "not_found": report["not found"],
        "invalid_phone": report["invalid phone"],
        "skipped": report["skipped"],
    }
    assert got == {kind: want.get(kind, 0) for kind in got}, f"report {got} != expected {dict(want)}"
    for column in ("failed", "conflicts", "batches failed"):
        assert report[column] == 0, report
    assert report["statuses not placed"] == 0, report


# --- reading Airflow through the REST API -----------------------------------------------------------


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def max_concurrency(task_instances: list[dict[str, Any]]) -> int:
    """Most task instances running at the same moment, from their start and end times."""
    events = []
    for ti in task_instances:
        if ti["start_date"] and ti["end_date"]:
            events += [(parse_time(ti["start_date"]), 1), (parse_time(ti["end_date"]), -1)]
    running = peak = 0
    for _, step in sorted(events, key=lambda e: (e[0], e[1])):  # an end before a start at the same instant
        running += step
        peak = max(peak, running)
    return peak


def batches(cluster: AirflowCluster, dag_id: str, run_id: str) -> list[dict[str, Any]]:
    tis = [ti for ti in cluster.task_instances(dag_id, run_id) if ti["task_id"] == "process_batch"]
    return sorted(tis, key=lambda ti: ti["map_index"])


def label_rows(label: str) -> range:
    """``rows 2-106`` -> the sheet rows that batch covered."""
    first, last = label.removeprefix("rows ").split("-")
    return range(int(first), int(last) + 1)


def screenshot(cluster: AirflowCluster, path: str, name: str) -> None:
    """With PHONE_SYNC_E2E_SCREENSHOTS=<folder>, save a headless Chromium screenshot of a UI page there."""
    folder = os.environ.get("PHONE_SYNC_E2E_SCREENSHOTS")
    if folder:
        cluster.screenshot(path, Path(folder) / f"{name}.png")


def dialog_screenshot(
    cluster: AirflowCluster,
    ui_path: str,
    name: str,
    clicks: list[str],
    ready: str,
    dialog: str = "document.querySelector('[role=dialog]')",
) -> None:
    """With PHONE_SYNC_E2E_SCREENSHOTS=<folder>, click through a UI page to a dialog and save the dialog.

    ``clicks`` and ``ready`` are JavaScript expressions: the elements to click in turn, then what must be
    true before the picture (the dialog's content rendered).
    """
    folder = os.environ.get("PHONE_SYNC_E2E_SCREENSHOTS")
    if not folder:
        return
    with Browser(cluster.home / "chromium-devtools") as browser:
        browser.open(cluster.login_url(ui_path))
        for element in clicks:
            browser.click(element)
        browser.wait_for(ready)
        time.sleep(1)  # the accordion's opening animation
        browser.screenshot(Path(folder) / f"{name}.png", clip=dialog)
