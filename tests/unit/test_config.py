"""Region files: valid examples load, every kind of broken file names its file and field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from phone_sync.check_regions import main as check_regions
from phone_sync.config import RegionConfigError, load_region, load_regions
from tests.regions import PROJECT_REGIONS

MINIMAL: dict[str, Any] = {
    "region": "banyumas",
    "display_name": "Kabupaten Banyumas",
    "owner": "dinkes-banyumas",
    "start_date": "2026-01-01",
    "sheets": {"conn_id": "google_sheets_banyumas", "spreadsheet_id": "sheet-1", "worksheet": "pasien"},
    "fhir": {"conn_id": "fhir_banyumas", "identifier_system": "https://fhir.kemkes.go.id/id/nik"},
}


def write(tmp_path: Path, data: object, name: str = "banyumas") -> Path:
    path = tmp_path / f"{name}.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def with_change(path: str, value: object) -> dict[str, Any]:
    data = json.loads(json.dumps(MINIMAL))
    *parents, leaf = path.split(".")
    node = data
    for key in parents:
        node = node.setdefault(key, {})
    if value is ...:
        del node[leaf]
    else:
        node[leaf] = value
    return data


def test_minimal_file_gets_defaults(tmp_path: Path) -> None:
    config = load_region(write(tmp_path, MINIMAL))
    assert config.dag_id == "phone_sync__banyumas"
    assert config.schedule == "@daily"
    assert config.timezone == "Asia/Jakarta"
    assert config.batch_size == 100
    assert config.sheets.columns.status == "status_update_phone_number"
    assert config.sheets.header_row == 1
    assert config.phone.default_country == "ID"
    assert config.phone.output_format == "E164"
    assert config.rows.retry_failed is True


def test_shipped_regions_are_valid() -> None:
    configs, errors = load_regions(PROJECT_REGIONS)
    assert errors == []
    by_region = {c.region: c for c in configs}
    assert set(by_region) >= {"purbalingga", "lombok_barat", "demo"}
    assert by_region["purbalingga"].timezone == "Asia/Jakarta"
    assert by_region["lombok_barat"].timezone == "Asia/Makassar"


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ("{not json", "(file)", "not valid JSON"),
        ("[1, 2]", "(file)", "JSON object"),
        (with_change("sheets.spreadsheet_id", ...), "sheets.spreadsheet_id", "Field required"),
        (with_change("fhir", ...), "fhir", "Field required"),
        (with_change("batch_size", 0), "batch_size", "greater than or equal to 1"),
        (with_change("batch_size", "many"), "batch_size", "valid integer"),
        (with_change("timezone", "Asia/Jakart"), "timezone", "unknown IANA timezone"),
        (with_change("schedule", "every day"), "schedule", "cron expression"),
        (with_change("phone.output_format", "INTERNATIONAL"), "phone.output_format", "'E164' or 'NATIONAL'"),
        (with_change("phone.default_country", "Indonesia"), "phone.default_country", "pattern"),
        (with_change("fhir.telecom_policy", "overwrite"), "fhir.telecom_policy", "'replace' or 'keep_old'"),
        (with_change("sheets.colums", {}), "sheets.colums", "unknown field"),
        (with_change("start_date", "yesterday"), "start_date", "date"),
        (with_change("rows", {"select": "data_interval"}), "(file)", "feed_date"),
        (with_change("region", "lombok_barat"), "region", "does not match the file name"),
    ],
)
def test_bad_file_names_file_and_field(tmp_path: Path, data: object, field: str, words: str) -> None:
    path = write(tmp_path, data)
    with pytest.raises(RegionConfigError) as caught:
        load_region(path)
    message = str(caught.value)
    assert str(path) in message
    assert any(p.startswith(f"{field}:") and words in p for p in caught.value.problems), caught.value.problems


@pytest.mark.parametrize(
    "secret_path",
    ["fhir.token", "fhir.password", "sheets.private_key", "fhir.client_secret", "api_key", "sheets.credential_file"],
)
def test_secrets_are_rejected_with_a_pointer_to_connections(tmp_path: Path, secret_path: str) -> None:
    with pytest.raises(RegionConfigError) as caught:
        load_region(write(tmp_path, with_change(secret_path, "s3cr3t-value")))
    message = str(caught.value)
    assert secret_path in message
    assert "Airflow connection" in message
    assert "s3cr3t-value" not in message


def test_secret_nested_in_a_list_is_found(tmp_path: Path) -> None:
    data = with_change("tags", [{"bearer_token": "x"}])
    with pytest.raises(RegionConfigError, match=r"tags\.0\.bearer_token"):
        load_region(write(tmp_path, data))


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    data = with_change("batch_size", 0)
    data["timezone"] = "Mars/Olympus"
    with pytest.raises(RegionConfigError) as caught:
        load_region(write(tmp_path, data))
    fields = {p.split(":")[0] for p in caught.value.problems}
    assert {"batch_size", "timezone"} <= fields


def test_regions_sharing_a_server_or_sheet_are_both_rejected(tmp_path: Path) -> None:
    write(tmp_path, MINIMAL)
    other = with_change("region", "cilacap")
    other["fhir"]["conn_id"] = MINIMAL["fhir"]["conn_id"]
    other["sheets"]["conn_id"] = "google_sheets_cilacap"
    other["sheets"]["spreadsheet_id"] = "sheet-2"
    write(tmp_path, other, "cilacap")
    configs, errors = load_regions(tmp_path)
    assert configs == []
    assert {e.path.stem for e in errors} == {"banyumas", "cilacap"}
    assert all("fhir.conn_id" in str(e) for e in errors)


def test_one_bad_file_does_not_stop_the_others(tmp_path: Path) -> None:
    write(tmp_path, MINIMAL)
    write(tmp_path, "{", "broken")
    configs, errors = load_regions(tmp_path)
    assert [c.region for c in configs] == ["banyumas"]
    assert [e.path.name for e in errors] == ["broken.json"]


def test_check_regions_prints_every_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path, MINIMAL)
    write(tmp_path, with_change("region", "x"), "broken")
    assert check_regions([str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "ok     banyumas.json" in out
    assert "broken.json" in out
    assert "region:" in out
    assert "1 valid, 1 invalid" in out


def test_check_regions_passes_on_shipped_files(capsys: pytest.CaptureFixture[str]) -> None:
    assert check_regions([str(PROJECT_REGIONS)]) == 0
