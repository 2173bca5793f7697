"""Region files: valid examples load, every kind of broken file names its file and field."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from phone_sync.check_regions import main as check_regions
from phone_sync.regions import RegionConfigError, load_region, load_regions
from tests.regions import PROJECT_REGIONS

MINIMAL: dict[str, Any] = {
    "region": "banyumas",
    "display_name": "Kabupaten Banyumas",
    "owner": "dinkes-banyumas",
    "start_date": "2026-01-01",
    "sheets": {"conn_id": "google_sheets_banyumas", "spreadsheet_id": "banyumas-spreadsheet-1", "worksheet": "pasien"},
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


def _directory(path: Path) -> None:
    path.mkdir()


def _dangling_link(path: Path) -> None:
    path.symlink_to(path.with_name("gone.json"))


def _fifo(path: Path) -> None:
    os.mkfifo(path)  # reading it would block the parse forever


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (b"", "not valid JSON: Expecting value"),
        ('{"display_name": "Cilacap \u00e9"}'.encode("latin-1"), "not UTF-8 text (byte 27)"),
        (b"\xef\xbb\xbf{}", "not valid JSON: Unexpected UTF-8 BOM"),
        (b"[" * 100_000, "nested more than 32 levels deep"),  # RecursionError inside json
        (b'{"tags": ' + b"[" * 300 + b"]" * 300 + b"}", "nested more than 32 levels deep"),  # ... or in pydantic
        (b"1" * 5000, "number too long"),
        (b" " * 1_000_001, "larger than 1,000,000 bytes"),
        (_directory, "a directory"),
        (_dangling_link, "a symbolic link to a missing file"),
        (_fifo, "not a regular file"),
    ],
    ids=["empty", "latin-1", "bom", "deep-json", "deep-value", "huge-number", "huge", "directory", "dangling", "fifo"],
)
def test_unreadable_files_are_refused_naming_the_file(tmp_path: Path, make: Any, words: str) -> None:
    path = tmp_path / "banyumas.json"
    if isinstance(make, bytes):
        path.write_bytes(make)
    else:
        make(path)
    with pytest.raises(RegionConfigError) as caught:
        load_region(path)
    [problem] = caught.value.problems
    assert problem.startswith("(file): ")
    assert words in problem


def test_file_names_and_keys_are_printed_escaped(tmp_path: Path) -> None:
    """A name that is not UTF-8, or a key holding a newline, must not break a terminal or the metadata DB."""
    path = Path(os.fsdecode(os.fsencode(tmp_path) + b"/\xffx\nname.json"))
    path.write_text(json.dumps({"bad\nkey\u200b": 1}))
    with pytest.raises(RegionConfigError) as caught:
        load_region(path)
    text = str(caught.value)
    text.encode("utf-8")  # strict: no lone surrogates left
    assert "\\xffx\\nname.json" in text
    assert "bad\\nkey\\u200b: unknown field" in text


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


PEM = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n"


@pytest.mark.parametrize(
    ("path", "value", "kind"),
    [
        ("display_name", PEM, "a PEM block"),
        ("owner", "Bearer ya29.a0AfB_byC1x2y3z4-secretpart", "a bearer token"),
        ("fhir.identifier_system", "https://fhir.example/nik?access_token=abc123secret", "parameter"),
        ("tags", ["ok", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJlLXBhcnQ"], "a JSON Web Token"),
        ("sheets.worksheet", "AIzaSyA-1234567890abcdefghijklmnopqrstu", "a Google API key"),
        ("fhir.identifier_system", "https://user:hunter2@fhir.example/nik", "a URL with a user and password"),
        ("alerts.email", ["https://hooks.slack.com/services/T000/B000/secret-part"], "webhook URL"),
    ],
)
def test_values_that_look_like_secrets_are_refused_whatever_their_key(
    tmp_path: Path, path: str, value: object, kind: str
) -> None:
    with pytest.raises(RegionConfigError) as caught:
        load_region(write(tmp_path, with_change(path, value)))
    message = str(caught.value)
    assert kind in message
    assert path in message
    assert "Airflow connection" in message
    items = value if isinstance(value, list) else [value]
    fragments = [part for item in items for part in re.split(r"[\s/?=:@]+", item)]
    assert not [part for part in fragments if len(part) >= 8 and part in message], "the value is never echoed"


@pytest.mark.parametrize(
    ("spreadsheet_id", "words"),
    [
        ("https://docs.google.com/spreadsheets/d/1PbgPhoneSyncRegistryPurbalinggaXX/edit", "holds the sheet's URL"),
        ("Data pasien Purbalingga", "is not a Google spreadsheet id"),
        ("short-id", "is not a Google spreadsheet id"),
        ("1PbgPhoneSync'; DROP--", "is not a Google spreadsheet id"),
    ],
)
def test_a_spreadsheet_id_must_look_like_one(tmp_path: Path, spreadsheet_id: str, words: str) -> None:
    with pytest.raises(RegionConfigError) as caught:
        load_region(write(tmp_path, with_change("sheets.spreadsheet_id", spreadsheet_id)))
    assert f"sheets.spreadsheet_id: {words}" in str(caught.value)
    assert spreadsheet_id not in str(caught.value), "never echoed: it may be a pasted secret"


@pytest.mark.parametrize("spreadsheet_id", ["1PbgPhoneSyncRegistryPurbalinggaXXXXXXXXXX", "demo-spreadsheet"])
def test_google_ids_and_the_demos_local_id_are_spreadsheet_ids(tmp_path: Path, spreadsheet_id: str) -> None:
    config = load_region(write(tmp_path, with_change("sheets.spreadsheet_id", spreadsheet_id)))
    assert config.sheets.spreadsheet_id == spreadsheet_id


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    data = with_change("batch_size", 0)
    data["timezone"] = "Mars/Olympus"
    with pytest.raises(RegionConfigError) as caught:
        load_region(write(tmp_path, data))
    fields = {p.split(":")[0] for p in caught.value.problems}
    assert {"batch_size", "timezone"} <= fields


def sharing(name: str, field: str, start_date: str = "2026-01-01", **changes: Any) -> dict[str, Any]:
    """MINIMAL as region ``name`` with its own connections and sheet, except ``field`` (shared with banyumas)."""
    data = with_change("region", name)
    data["start_date"] = start_date
    data["sheets"].update(conn_id=f"google_sheets_{name}", spreadsheet_id=f"spreadsheet-of-{name}")
    data["fhir"]["conn_id"] = f"fhir_{name}"
    section, key = field.split(".")
    data[section][key] = MINIMAL[section][key]
    data.update(changes)
    return data


@pytest.mark.parametrize("field", ["fhir.conn_id", "sheets.conn_id", "sheets.spreadsheet_id"])
def test_regions_sharing_a_server_or_sheet_stop_only_the_later_one(tmp_path: Path, field: str) -> None:
    # cilacap's name sorts after banyumas but alpha's before: the later start_date decides, not the name.
    write(tmp_path, MINIMAL)
    write(tmp_path, sharing("cilacap", field, start_date="2026-03-01"), "cilacap")
    write(tmp_path, sharing("alpha", field, start_date="2026-02-01"), "alpha")
    configs, errors = load_regions(tmp_path)
    assert [c.region for c in configs] == ["banyumas"]
    assert [e.path.name for e in errors] == ["alpha.json", "cilacap.json"]
    for error in errors:
        [problem] = error.problems
        assert problem.startswith(f"{field}: {MINIMAL[field.split('.')[0]][field.split('.')[1]]!r} is also used by ")
        assert "region banyumas (file banyumas.json), which keeps it" in problem
        assert "start_date 2026-01-01 is earlier" in problem


def test_same_start_date_the_file_name_sorting_later_is_stopped(tmp_path: Path) -> None:
    write(tmp_path, MINIMAL)
    write(tmp_path, sharing("aceh", "sheets.spreadsheet_id"), "aceh")
    configs, errors = load_regions(tmp_path)
    assert [c.region for c in configs] == ["aceh"]
    assert [e.path.name for e in errors] == ["banyumas.json"]
    assert "region aceh (file aceh.json), which keeps it: same start_date" in errors[0].problems[0]


def test_an_unedited_copy_never_stops_the_region_it_copies(tmp_path: Path) -> None:
    """A file manager's copy sorts first (' ' < '.') and may start earlier, but it is invalid anyway: it is stopped."""
    write(tmp_path, MINIMAL)
    write(tmp_path, with_change("start_date", "2025-01-01"), "banyumas copy")
    configs, errors = load_regions(tmp_path)
    assert [c.region for c in configs] == ["banyumas"]
    [error] = errors
    assert error.path.name == "banyumas copy.json"
    assert error.problems[0].startswith("region: 'banyumas' does not match the file name")
    clashes = error.problems[1:]
    assert [p.split(":")[0] for p in clashes] == ["fhir.conn_id", "sheets.conn_id", "sheets.spreadsheet_id"]
    kept = "region banyumas (file banyumas.json), which keeps it: this file is invalid anyway"
    assert all(kept in p for p in clashes)


def test_check_regions_reports_only_the_later_file_of_a_clash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path, MINIMAL)
    write(tmp_path, sharing("cilacap", "fhir.conn_id", start_date="2026-06-01"), "cilacap")
    assert check_regions([str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "ok     banyumas.json" in out
    assert "ERROR  region file " in out
    error = out[out.index("ERROR"):]
    assert "cilacap.json" in error
    assert "fhir.conn_id: 'fhir_banyumas' is also used by region banyumas" in error
    assert "1 valid, 1 invalid" in out


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
