"""Every command-line entry point answers ``--help`` with its usage, and does nothing else."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

MODULES = [
    "phone_sync.check_regions",
    "phone_sync.unseal",
    "localservers.demo",
    "localservers.standalone",
    "localservers.fhir",
    "localservers.fhir.seed",
    "localservers.sheets",
    "localservers.sheets.keyfile",
    "localservers.sinks.smtp",
    "localservers.sinks.webhook",
    "bench.run",
]
SCRIPTS = ["docker/check_compose.py", "docker/demo_servers.py"]
CONSOLE_SCRIPTS = ["phone-sync-check-regions", "phone-sync-unseal"]


def _help(argv: list[str]) -> subprocess.CompletedProcess[str]:
    # The repository on the path as the compose demo profile mounts it (the local servers are not installed);
    # an Airflow home that does not exist, so a command that touched the metadata DB would fail.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "sqlite:////nonexistent/x.db"}
    argv = [*argv, "--help"]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=ROOT, env=env, check=False)


@pytest.mark.parametrize(
    "argv",
    [[sys.executable, "-m", m] for m in MODULES]
    + [[sys.executable, s] for s in SCRIPTS]
    + [[str(BIN / c)] for c in CONSOLE_SCRIPTS],
    ids=MODULES + SCRIPTS + CONSOLE_SCRIPTS,
)
def test_help(argv: list[str]) -> None:
    result = _help(argv)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("usage: "), result.stdout[:500]
    assert "Traceback" not in result.stderr


def test_check_regions_reads_a_folder_argument(tmp_path: Path) -> None:
    """The folder is still a positional argument (``--help`` used to be taken for one)."""
    result = subprocess.run(
        [str(BIN / "phone-sync-check-regions"), str(tmp_path)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 1
    assert f"no region files (*.json) in {tmp_path}" in result.stdout

