"""A batch process stays light: what ``process_batch`` imports on its way (its status cells, its live
progress write) never pulls in the Sheets hook, gspread or the Google provider. Those cost 1.2 s of CPU and
35 MiB in each of up to 930 batch processes; an import of ``sheets.statuses`` for one dataclass once
doubled the 10,000-row run. ``tests/bench/test_stages.py`` checks the same in a real task process."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("gspread", "airflow.providers.google.common.hooks.base_google", "phone_sync.sheets.hook")

PROBE = f"""
import sys
from pathlib import Path

from phone_sync.outcomes import Outcome, Status
from phone_sync.pipeline import progress, tasks
from phone_sync.regions import load_region
from phone_sync.fhir import client, hook, profile_store  # process_batch's own lazy imports
from phone_sync.sheets import access, placement, quota
from phone_sync.sheets import progress as live

config = load_region(Path("include/regions/demo.json"))
tasks._status_cell(config, "manual__1")(Status(row=2, identifier="3201010101010001", outcome=Outcome.UPDATED))
placement.line_ranges("phone_sync_preview", [(2, ["2", "x", "y", "z", "r"])])
print(sorted(m for m in {HEAVY!r} if m in sys.modules))
"""


def test_what_a_batch_imports_leaves_the_sheets_hook_and_google_provider_out() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
