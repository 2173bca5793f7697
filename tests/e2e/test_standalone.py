"""``make standalone`` as a new user meets it: the UI on 127.0.0.1 only, the demo connections in the metadata DB
with a working Test button, no run before the first trigger (which maps every batch and previews), every process
stopped on exit, and the same PHI key after a restart, so a batch of an earlier start can still be cleared."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psutil
import pytest
import requests

from localservers.browser import Browser
from localservers.process import free_port
from localservers.standalone import KEY_FILE

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
DAG_ID = "phone_sync__demo"
ROWS = 250  # three batches


class Standalone:
    """One ``python -m localservers.standalone`` process, talked to as the UI does (REST API v2)."""

    def __init__(self, process: subprocess.Popen[str], port: int) -> None:
        self.process = process
        self.url = f"http://127.0.0.1:{port}"
        self.token = requests.get(f"{self.url}/auth/token", timeout=30).json()["access_token"]

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"}
        response = requests.request(method, f"{self.url}/api/v2{path}", headers=headers, timeout=60, **kwargs)
        assert response.status_code in (200, 201), f"{method} {path}: {response.status_code} {response.text[:300]}"
        return response.json()

    def wait_for_run(self, run_id: str, timeout: float = 300) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.api("GET", f"/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}")
            if run["state"] in ("success", "failed"):
                return run
            time.sleep(2)
        raise AssertionError(f"run {run_id} did not finish in {timeout}s")

    def batches(self, run_id: str) -> list[dict[str, Any]]:
        path = f"/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}/taskInstances"
        found = self.api("GET", path, params={"task_id": "process_batch", "limit": 100})["task_instances"]
        return [ti for ti in found if ti["task_id"] == "process_batch"]


@contextmanager
def standalone(workdir: Path, port: int) -> Iterator[Standalone]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    argv = [sys.executable, "-m", "localservers.standalone", "--rows", str(ROWS), "--port", str(port)]
    process = subprocess.Popen(
        [*argv, "--workdir", str(workdir)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        seen = []
        for line in process.stdout:
            seen.append(line)
            if "Ctrl-C stops everything" in line:
                break
        else:
            raise AssertionError("standalone exited before the UI was up:\n" + "".join(seen[-30:]))
        yield Standalone(process, port)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)  # only when the test failed before stopping it itself
            process.wait()


def trigger_from_the_form(app: Standalone, tmp_path: Path, conf: dict[str, Any]) -> str:
    """Trigger as a person does: the DAG's Trigger button, then the form's, untouched (headless Chromium). Without
    Chromium, the REST call with the body that form sends (``conf``: every field at its default)."""
    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        return app.api("POST", f"/dags/{DAG_ID}/dagRuns", json={"logical_date": None, "conf": conf})["dag_run_id"]
    dialog = "[...document.querySelectorAll('[role=dialog]')].find(d => d.innerText.startsWith('Trigger Dag'))"
    login = f"{app.url}/auth/token/login?next={quote(f'{app.url}/dags/{DAG_ID}', safe='')}"
    with Browser(tmp_path / "chromium") as browser:
        browser.open(login)
        browser.wait_for("[...document.querySelectorAll('button')].some(b => b.innerText.trim() === 'Trigger')", 90)
        browser.click("[...document.querySelectorAll('button')].find(b => b.innerText.trim() === 'Trigger')")
        browser.wait_for(f"{dialog}?.innerText.includes('Only listed identifiers')")
        browser.click(f"[...{dialog}.querySelectorAll('button')].find(b => b.innerText.trim() === 'Trigger')")
        deadline = time.monotonic() + 60
        while not (runs := app.api("GET", f"/dags/{DAG_ID}/dagRuns")["dag_runs"]) and time.monotonic() < deadline:
            time.sleep(1)
    (run,) = runs
    return run["dag_run_id"]


def stop_like_ctrl_c(app: Standalone) -> list[psutil.Process]:
    """SIGINT, as Ctrl-C sends it; returns the processes it had started, for the caller to check."""
    started = psutil.Process(app.process.pid).children(recursive=True)
    app.process.send_signal(signal.SIGINT)
    assert app.process.wait(timeout=90) == 0
    return started


def test_standalone_from_first_trigger_to_a_restart(tmp_path: Path) -> None:
    port = free_port()
    with standalone(tmp_path, port) as app:
        started = psutil.Process(app.process.pid).children(recursive=True)
        listening = {
            (conn.laddr.ip, conn.laddr.port)
            for proc in started
            if proc.is_running()
            for conn in proc.net_connections(kind="inet")
            if conn.status == psutil.CONN_LISTEN
        }
        assert ("127.0.0.1", port) in listening
        assert not [addr for addr in listening if addr[1] == port and addr[0] != "127.0.0.1"], listening

        ids = {c["connection_id"] for c in app.api("GET", "/connections")["connections"]}
        assert {"fhir_demo", "google_sheets_demo", "phone_sync_phi_key"} <= ids, "the UI lists the demo connections"
        fhir = app.api("GET", "/connections/fhir_demo")
        tested = app.api("POST", "/connections/test", json={k: fhir[k] for k in ("connection_id", "conn_type", "host")})
        assert tested["status"] is True, tested

        assert app.api("GET", f"/dags/{DAG_ID}/dagRuns")["total_entries"] == 0, "a run took the rows before the user"
        form = app.api("GET", f"/dags/{DAG_ID}/details")["params"]
        conf = {name: field["value"] for name, field in form.items()}  # what the untouched trigger form sends
        assert conf["mode"] == "preview"
        preview = trigger_from_the_form(app, tmp_path, conf)
        assert app.api("GET", f"/dags/{DAG_ID}/dagRuns/{quote(preview, safe='')}")["conf"]["mode"] == "preview"
        assert app.wait_for_run(preview)["state"] == "success"
        assert len(app.batches(preview)) == 3, "the first preview found every row"

        live_body = {"logical_date": None, "conf": {**conf, "mode": "live"}}
        live = app.api("POST", f"/dags/{DAG_ID}/dagRuns", json=live_body)["dag_run_id"]
        assert app.wait_for_run(live)["state"] == "success"

        key_file = tmp_path / "airflow" / KEY_FILE
        key = key_file.read_text()
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        started = stop_like_ctrl_c(app)
        time.sleep(1)
        left = [p for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        assert not left, [(p.pid, p.cmdline()[:4]) for p in left]

    with standalone(tmp_path, port) as app:
        assert key_file.read_text() == key
        body = {
            "dag_run_id": live,
            "task_ids": [["process_batch", 1]],
            "only_failed": False,
            "include_downstream": True,
            "dry_run": False,
        }
        app.api("POST", f"/dags/{DAG_ID}/clearTaskInstances", json=body)
        rerun = app.wait_for_run(live)
        assert rerun["state"] == "success", "a batch sealed before the restart opens with the kept key"
        assert max(ti["try_number"] for ti in app.batches(live)) == 2
        stop_like_ctrl_c(app)
