"""Patient data never rests in clear inside Airflow: proven by scanning what a real run leaves behind."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from localservers.scenario import generate
from localservers.sinks.processes import SmtpSink, WebhookSink
from localservers.stack import conn_env_name
from phone_sync.contracts import Batch, BatchRow, ContractError, batch_key
from phone_sync.crypto import PhiKeyError, Sealer, new_key
from tests.alerts.conftest import alert_settings, every_body, rules_posted
from tests.phi import files, names_of, national_number, phi_of, scan, scan_text
from tests.regions import MakeRegion, report_rows, run_dag, statuses, ti_states

pytestmark = pytest.mark.slow


def airflow_leftovers() -> list[tuple[str, bytes]]:
    """The metadata database file (every table, every column, as bytes) and the whole log folder."""
    home = Path(os.environ["AIRFLOW_HOME"])
    database = Path(os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].removeprefix("sqlite:///"))
    found = list(files(*[p for p in database.parent.glob(database.name + "*") if p.is_file()]))
    if (home / "logs").exists():
        found += list(files(home / "logs"))
    return found


def test_a_full_run_leaves_no_identifier_or_phone_in_airflow(
    make_region: MakeRegion, capfd: pytest.CaptureFixture[str]
) -> None:
    scenario = generate(400, seed=31)
    region = make_region(scenario, sheets={"columns": {"status_link": "log"}})
    # One batch fails for good: failure paths (XCom of the failure, statuses of the batch) run too.
    region.fhir_faults(outage_identifiers=[scenario.identifiers[min(scenario.identifiers)]])
    dag_run = run_dag(region, scenario.run_date)
    assert dag_run.state == "failed"
    assert any(text.startswith("success") for text in statuses(region).values()), "the run did its work"
    output = capfd.readouterr()

    needles = phi_of(scenario)
    assert len(needles) > 700
    leftovers = airflow_leftovers()
    assert sum(len(blob) for _, blob in leftovers) > 100_000, "the scan reads the real database"
    hits = scan([*leftovers, ("stdout", output.out.encode()), ("stderr", output.err.encode())], needles)
    assert hits == [], f"patient data at rest in Airflow: {hits[:5]}"


HOSTILE_ADDRESS = "Jl. Melati No. 17/3 RT 003/RW 004"


def slashed(iso_date: str) -> str:
    """A birth date as Indonesian forms write it: ``1980-03-12`` -> ``12/03/1980``."""
    return "/".join(reversed(iso_date.split("-")))


def test_a_hostile_sheet_and_hostile_fhir_answers_leave_no_patient_data_behind(
    make_region: MakeRegion, smtp: SmtpSink, webhook: WebhookSink, capfd: pytest.CaptureFixture[str]
) -> None:
    """Names, birth dates, addresses and slashed numbers where phone-sync reads text: a header row sorted away,
    names in identifier and phone cells, and a FHIR server that quotes patients in its 400s and 422s. Four
    real runs, then the database, the logs, the output, the report rows and every alert are scanned."""
    scenario = generate(120, seed=36)
    region = make_region(scenario, batch_size=50, alerts=alert_settings(failure_rate_threshold=0.01, daily_digest=True))
    quoted = scenario.patients[:3]
    names = [" ".join([*p["name"][0]["given"], p["name"][0]["family"]]) for p in quoted]
    quote = "; ".join(
        f"Patient {name} (NIK {p['identifier'][0]['value']}, lahir {slashed(p['birthDate'])}, {HOSTILE_ADDRESS}, "
        f"HP {p['telecom'][0]['value'] if p['telecom'] else '-'}) is not permitted"
        for name, p in zip(names, quoted, strict=True)
    )
    header = region.cells()[0]

    # 1. An operator sorted the header row away: row 1 holds a patient's row.
    nik, birth = quoted[0]["identifier"][0]["value"], slashed(quoted[0]["birthDate"])
    patient_row = [nik, names[0], "0812-3456-7890", f"'{birth}", "", HOSTILE_ADDRESS]
    region.sheet_edit({"op": "set", "range": "A1:F1", "values": [patient_row]})
    assert run_dag(region, scenario.run_date).state == "failed"
    region.sheet_edit({"op": "set", "range": "A1:F1", "values": [header]})
    # Names where identifiers and phones belong.
    region.sheet_edit({"op": "set", "range": "A3:C3", "values": [[names[1], "pasien", "'0812 3456 7890"]]})
    region.sheet_edit({"op": "set", "range": "C4", "values": [[f"{names[2]}, {HOSTILE_ADDRESS}"]]})
    # 2. and 3. The server refuses every search, then every batch Bundle, quoting patients.
    region.fhir_faults(refuse={"search": 400}, quote=quote)
    assert run_dag(region, scenario.run_date).state == "failed"
    region.fhir_faults(refuse={"batch": 400})
    assert run_dag(region, scenario.run_date).state == "failed"
    # 4. It rejects some patients' updates (422 per entry), quoting them.
    region.fhir_faults(refuse={}, reject_identifiers=list(scenario.identifiers.values())[:20])
    run_dag(region, scenario.run_date)
    output = capfd.readouterr()

    assert any(text.startswith("failed: rejected by the FHIR server: HTTP 422") for text in statuses(region).values())
    assert rules_posted(webhook).keys() >= {"run_failed", "batch_failed", "failure_rate", "digest"}
    alerts = [(f"alert {i}", body.encode()) for i, body in enumerate(every_body(smtp, webhook))]
    reports = [(f"report row {i}", json.dumps(row).encode()) for i, row in enumerate(report_rows(region))]
    assert len(reports) == 4
    streams = [("stdout", output.out.encode()), ("stderr", output.err.encode())]
    everything = [*airflow_leftovers(), *alerts, *reports, *streams]
    words = names_of(scenario) | {p["birthDate"] for p in quoted} | {slashed(p["birthDate"]) for p in quoted}
    words |= {HOSTILE_ADDRESS, "Melati", "17/3", "003/RW"}
    hits = scan(everything, phi_of(scenario)) + scan_text(everything, words)
    assert hits == [], f"patient data left behind: {hits[:8]}"


def test_the_scan_finds_a_planted_value(make_region: MakeRegion, tmp_path: Path) -> None:
    """The scan can fail: a phone and an identifier planted where a leak would put them are found."""
    from airflow.models.variable import Variable

    scenario = generate(20, seed=32)
    identifier = scenario.identifiers[min(scenario.identifiers)]
    phone = next(str(row[2]) for row in scenario.rows if str(row[2]).startswith("08") and "," not in str(row[2]))
    Variable.set("phone_sync_planted", json.dumps({"note": f"call {phone}"}))
    log = Path(os.environ["AIRFLOW_HOME"]) / "logs" / "planted.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(f"identifier={identifier}\n")
    try:
        hits = scan(airflow_leftovers(), phi_of(scenario))
    finally:
        Variable.delete("phone_sync_planted")
        log.unlink()
    found = {hit.value for hit in hits}
    assert identifier in found
    assert national_number(phone) in found, "a phone written with dashes is found too"


def test_xcom_holds_ciphertext_and_readable_labels(make_region: MakeRegion, tmp_path: Path) -> None:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    scenario = generate(150, seed=33)
    region = make_region(scenario)
    dag_run = run_dag(region, scenario.run_date)
    assert dag_run.state == "success"
    with create_session() as session:
        rows = session.query(XComModel).filter(XComModel.run_id == dag_run.run_id).all()
        values = {(x.task_id, x.key, x.map_index): x.value for x in rows}

    def value(task: str, key: str, map_index: int = -1) -> Any:
        found = values[(task, key, map_index)]
        return json.loads(found) if isinstance(found, str) else found

    # Each return value is one XCom: no key of a returned dict pushed again on its own (Airflow's default for a
    # dict return type: a second copy of the sealed rows and an API call per key).
    for task, key, map_index in values:
        if key == "return_value" and isinstance(returned := value(task, key, map_index), dict):
            split = {k for k in returned if (task, k, map_index) in values}
            assert not split, f"{task}[{map_index}] pushed {sorted(split)} besides its return value"

    assert value("clean_phones", "return_value") == [0, 1], "the mapped input is the batch indexes alone"
    refs = value("clean_phones", "batch_refs")
    assert all(set(ref) == {"contract", "v", "index", "label", "size"} for ref in refs), "refs hold no rows"
    assert all(re.fullmatch(r"rows \d+-\d+", ref["label"]) for ref in refs), "labels stay readable for the grid"
    batches = value("clean_phones", batch_key(refs[0]["index"]))
    assert batch_key(refs[1]["index"]) == batch_key(refs[0]["index"]), "neighbouring batches share one value"
    assert set(batches) == {"contract", "v", "indexes", "labels", "identifier_column", "columns", "sealed"}
    assert all(isinstance(n, int) for n in batches["columns"].values()), "only column numbers"
    assert batches["labels"] == [ref["label"] for ref in refs]
    report = value("run_report", "return_value")
    assert report["rows read"] == len([r for r in scenario.rows if r[0]])

    # An operator with the key opens one batch with the CLI; without it, nothing opens.
    value = tmp_path / "batch.json"
    value.write_text(json.dumps(batches))
    unseal = [sys.executable, "-m", "phone_sync.unseal", "show", str(value)]
    shown = subprocess.run(unseal, env={**os.environ, "PHONE_SYNC_PHI_KEY": region.phi_key}, capture_output=True)
    assert shown.returncode == 0, shown.stderr
    rows = json.loads(shown.stdout)["batches"][1]["rows"]
    first, last = (int(n) for n in batches["labels"][1].removeprefix("rows ").split("-"))
    assert (rows[0]["row"], rows[-1]["row"]) == (first, last)
    assert {r["identifier"] for r in rows} <= set(scenario.identifiers.values())
    refused = subprocess.run(unseal, env={**os.environ, "PHONE_SYNC_PHI_KEY": new_key()}, capture_output=True)
    assert refused.returncode == 1
    assert b"cannot be opened" in refused.stderr
    assert not any(i.encode() in refused.stdout + refused.stderr for i in scenario.identifiers.values())


def test_a_missing_key_stops_the_run_at_the_first_task_naming_the_connection(
    make_region: MakeRegion, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    scenario = generate(50, seed=34)
    region = make_region(scenario)
    monkeypatch.delenv(conn_env_name(region.config.phi_key_conn_id))

    dag_run = run_dag(region, scenario.run_date)

    assert dag_run.state == "failed"
    states = ti_states(dag_run)
    assert states[("extract_rows", -1)] == "failed"
    assert states[("clean_phones", -1)] == "upstream_failed"
    assert states[("write_back_statuses", -1)] == "skipped"
    assert states[("run_report", -1)] == "failed"
    assert all(text == "" for text in statuses(region).values()), "nothing was written to the sheet"
    [report] = report_rows(region)
    assert "extract_rows" in report["problem"]
    assert "'phone_sync_phi_key'" in report["problem"]
    assert "does not exist" in report["problem"]
    logs = capfd.readouterr().out
    assert logs.count("'phone_sync_phi_key' (the key that encrypts") >= 1


def test_a_malformed_key_is_refused_before_anything_is_read(
    make_region: MakeRegion, monkeypatch: pytest.MonkeyPatch
) -> None:
    scenario = generate(30, seed=35)
    region = make_region(scenario)
    monkeypatch.setenv(
        conn_env_name(region.config.phi_key_conn_id), json.dumps({"conn_type": "generic", "password": "hunter2"})
    )
    before = region.sheet_requests()["total"]

    dag_run = run_dag(region, scenario.run_date)

    assert ti_states(dag_run)[("extract_rows", -1)] == "failed"
    [report] = report_rows(region)
    assert "is not a Fernet key" in report["problem"]
    assert "hunter2" not in json.dumps(report)
    assert region.sheet_requests()["total"] - before <= 3, "only the report row went to the sheet"


def test_rotation_keeps_old_values_readable_and_a_wrong_key_says_what_to_fix() -> None:
    old, new = new_key(), new_key()
    batch = Batch(
        index=4,
        label="rows 2-3",
        rows=[BatchRow(row=2, identifier="3303000011112222", phone="+6281234567890", effective="2026-11-20")],
    )
    sealed = batch.to_xcom(Sealer.from_text(old))
    assert "3303000011112222" not in json.dumps(sealed)
    assert "81234567890" not in json.dumps(sealed)

    assert Batch.from_xcom(sealed, Sealer.from_text(f"{new},{old}")) == batch, "after rotation: new first, old kept"
    resealed = batch.to_xcom(Sealer.from_text(f"{new},{old}"))
    with pytest.raises(PhiKeyError, match="cannot be opened"):
        Batch.from_xcom(resealed, Sealer.from_text(old))  # the new key seals
    with pytest.raises(PhiKeyError, match=r"connection 'phone_sync_phi_key'.*keep the old key after the new one"):
        Batch.from_xcom(sealed, Sealer.from_text(new, "Airflow connection 'phone_sync_phi_key'"))
    with pytest.raises(ContractError, match="must be sealed"):
        batch.to_xcom()


@pytest.mark.parametrize("separator", [";", " ", "\n", "\t", ""])
def test_keys_joined_by_anything_but_a_comma_are_refused_naming_the_position(separator: str) -> None:
    """Fernet alone reads ``NEW;OLD`` as NEW (base64 stops at its padding): OLD would be dropped without a word."""
    old, new = new_key(), new_key()
    sealed = Sealer.from_text(old).seal({"row": 2})
    with pytest.raises(PhiKeyError, match=r"key 2 of 2 is not a Fernet key.*separate several keys with commas"):
        Sealer.from_text(f"{new}, {new}{separator}{old}")

    assert Sealer.from_text(f"{new},\n {old}").open(sealed) == {"row": 2}, "commas, with spaces around them, separate"
