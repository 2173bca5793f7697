"""``phone-sync-check-regions``: where it looks without a folder, what it skips, and ``--connections``, which
names every region that cannot run for a missing connection or PHI key, without printing a secret."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from phone_sync.crypto import new_key
from phone_sync.regions import REGIONS_DIR_ENV
from tests.regions import DEMO_REGION, PROJECT_REGIONS

CHECK = Path(sys.executable).parent / "phone-sync-check-regions"
KEY_CONN = "phi_key_check_regions_test"  # its own id: the session's metadata DB is shared with other tests


def check(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != REGIONS_DIR_ENV and not k.startswith("AIRFLOW_CONN_")}
    return subprocess.run(
        [str(CHECK), *args], capture_output=True, text=True, timeout=180, cwd=cwd, env={**base, **(env or {})}
    )


def demo_folder(folder: Path) -> Path:
    folder.mkdir(parents=True)
    data = json.loads(DEMO_REGION.read_text(encoding="utf-8"))
    (folder / "demo.json").write_text(json.dumps({**data, "phi_key_conn_id": KEY_CONN}), encoding="utf-8")
    return folder


def airflow_cli(*args: str) -> None:
    """The ``airflow`` CLI with the environment the checks below run in (the same metadata DB)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
    subprocess.run([sys.executable, "-m", "airflow", *args], env=env, check=True, capture_output=True, timeout=180)


@pytest.fixture
def key_in_metadata_db(airflow_db: None) -> Iterator[str]:
    """The PHI key as the UI stores it: a connection in the metadata DB (not an environment variable)."""
    key = "-" + new_key()[1:]  # a valid key that argparse would take for an option (1 in 64 do)
    airflow_cli("connections", "add", KEY_CONN, "--conn-type", "generic", f"--conn-password={key}")
    yield key
    airflow_cli("connections", "delete", KEY_CONN)


def test_missing_connections_and_key_are_named_per_region(tmp_path: Path, airflow_db: None) -> None:
    regions = demo_folder(tmp_path / "regions")
    result = check(str(regions), "--offline", "--connections", cwd=tmp_path)
    assert result.returncode == 3, result.stdout + result.stderr
    for conn_id, setting in (("fhir_demo", "fhir.conn_id"), ("google_sheets_demo", "sheets.conn_id")):
        assert f"region demo cannot run: connection '{conn_id}' ({setting}) is not defined" in result.stdout
    assert f"connection '{KEY_CONN}' (phi_key_conn_id) is not defined" in result.stdout
    assert "1 region(s) missing a connection or the PHI key" in result.stdout


def test_connections_found_in_env_and_metadata_db_pass_without_printing_them(
    tmp_path: Path, key_in_metadata_db: str
) -> None:
    regions = demo_folder(tmp_path / "regions")
    token = "fhir-token-" + new_key()[:20]
    env = {
        "AIRFLOW_CONN_FHIR_DEMO": json.dumps({"conn_type": "fhir", "host": "https://fhir.test", "password": token}),
        "AIRFLOW_CONN_GOOGLE_SHEETS_DEMO": json.dumps({"conn_type": "google_cloud_platform"}),
    }
    result = check(str(regions), "--offline", "--connections", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 region(s) missing a connection or the PHI key" in result.stdout
    assert token not in result.stdout + result.stderr
    assert key_in_metadata_db not in result.stdout + result.stderr


def test_a_phi_key_that_is_no_fernet_key_is_named_not_shown(tmp_path: Path, airflow_db: None) -> None:
    regions = demo_folder(tmp_path / "regions")
    bad = "not-a-fernet-key-but-a-secret-anyway"
    env = {f"AIRFLOW_CONN_{KEY_CONN.upper()}": json.dumps({"conn_type": "generic", "password": bad})}
    result = check(str(regions), "--offline", "--connections", cwd=tmp_path, env=env)
    assert result.returncode == 3
    assert f"connection '{KEY_CONN}' (phi_key_conn_id): key 1 of 1 is not a Fernet key" in result.stdout
    assert bad not in result.stdout + result.stderr


def test_without_a_folder_it_finds_the_airflow_homes_regions_whatever_the_working_directory(tmp_path: Path) -> None:
    home = tmp_path / "airflow"
    shutil.copytree(PROJECT_REGIONS, home / "include" / "regions")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = check("--offline", cwd=elsewhere, env={"AIRFLOW_HOME": str(home)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"in {home / 'include' / 'regions'}" in result.stdout
    assert "skip   _template.json" in result.stdout


def test_without_a_folder_and_none_to_find_it_says_where_it_looked(tmp_path: Path) -> None:
    result = check("--offline", cwd=tmp_path, env={"AIRFLOW_HOME": str(tmp_path / "airflow")})
    assert result.returncode == 1
    assert REGIONS_DIR_ENV in result.stderr
    assert str(tmp_path / "include" / "regions") in result.stderr
    assert str(tmp_path / "airflow" / "include" / "regions") in result.stderr
