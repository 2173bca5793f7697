"""``make demo``: what a person reads is the progress, the report and where to look, in under 60 lines; the task
logs go to a file; the sheet's statuses are counted in the report's words and agree with it; and
``make demo ARGS=--keep-running`` keeps the servers up with the sheet's address on screen."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_make_passes_args_to_the_demo() -> None:
    dry = subprocess.run(
        [shutil.which("make") or "make", "-n", "demo", "ARGS=--keep-running --rows 50"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
        timeout=60,
    )
    assert "-m localservers.demo --keep-running --rows 50" in dry.stdout


def test_the_demo_prints_a_short_summary_whose_counts_are_the_reports(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    demo = subprocess.Popen(
        [sys.executable, "-m", "localservers.demo", "--rows", "300", "--workdir", str(tmp_path), "--keep-running"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert demo.stdout is not None
    assert demo.stdin is not None
    lines: list[str] = []
    try:
        for line in demo.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("Servers are up"):
                break
        output = "\n".join(lines)
        sheet_url = re.search(r"the sheet: (http://127\.0\.0\.1:\d+/\S+);", output)
        assert sheet_url, output
        assert requests.get(sheet_url[1], timeout=30).status_code == 200, "the sheet is served while it waits"
        demo.stdin.write("\n")
        demo.stdin.flush()
        assert demo.wait(timeout=60) == 0
    finally:
        if demo.poll() is None:  # the test failed first: SIGTERM lets the demo stop the servers it started
            demo.terminate()
            demo.wait(timeout=60)

    assert len(lines) < 60, output
    assert "DAG run finished: success" in output
    assert not [line for line in lines if "[info" in line or "[DAG TEST]" in line], "task log lines on the terminal"
    for task in ("extract_rows", "clean_phones", "write_back_statuses", "run_report"):
        assert re.search(rf"^  {task} +success$", output, re.MULTILINE), output
    assert re.search(r"^  process_batch +3 batches: 3 success$", output, re.MULTILINE), output
    timeline = re.search(r"The sheet while the run moved \(.*\): (.*); write-back started at (\d+) s\.", output)
    assert timeline, output
    points = [(int(at), int(n.replace(",", ""))) for at, n in re.findall(r"(\d+) s: ([\d,]+)", timeline[1])]
    assert any(count for at, count in points if at <= int(timeline[2])), "statuses showed before write-back"
    log = (tmp_path / "task-logs.txt").read_text(encoding="utf-8")
    assert "[DAG TEST] end task task_id=run_report" in log

    report = dict(re.findall(r"^ +([a-z ]+): (\d+)$", output, re.MULTILINE))
    statuses = output.split("Statuses in the sheet, in the report's words: ")[1].splitlines()[0]
    counted = {name: int(n) for name, n in re.findall(r"([a-z ]+?) (\d+)(?:, |$)", statuses)}
    assert counted, statuses
    for column in ("updated", "unchanged", "not found", "invalid phone", "conflicts", "failed", "skipped", "queued"):
        assert counted.get(column, 0) == int(report[column]), (column, statuses, report)
