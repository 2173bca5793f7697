"""A real Airflow 3 deployment on loopback: api-server, scheduler, dag-processor, triggerer and,
for the CeleryExecutor, Celery workers, each a separate process with its own log file.

Used by the end-to-end tests (and usable by the benchmark). It talks to Airflow only through the
public REST API v2 with a token from the simple auth manager's ``/auth/token``, as the UI does, and
stops exactly the processes it started, by pid (and their process group, which each child leads),
even when the caller fails half-way.

    with AirflowCluster(tmp / "airflow", extra_env=connections) as cluster:
        cluster.wait_for_dag("phone_sync__demo")
        cluster.unpause("phone_sync__demo")
        run = cluster.wait_for_run("phone_sync__demo", cluster.trigger("phone_sync__demo"))
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests

from localservers.airflow_env import REPO_ROOT, airflow_env
from localservers.process import free_port

FINISHED = frozenset({"success", "failed"})
API_PAGE = 100  # the REST API's default [api] maximum_page_limit: a larger limit is cut to it
WORKER_NAME_ENV = "PHONE_SYNC_WORKER_NAME"


def worker_hostname() -> str:
    """``[core] hostname_callable`` for workers sharing one machine: the host plus the worker's name.

    Task instances record it as their ``hostname``, so the REST API shows which Celery worker ran
    each mapped batch. Outside a named worker it is the plain fully qualified host name.
    """
    host = socket.getfqdn()
    name = os.environ.get(WORKER_NAME_ENV)
    return f"{name}.{host}" if name else host


@dataclass
class Component:
    """One Airflow process: its command, extra environment, log file and (once started) Popen."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None


class AirflowError(RuntimeError):
    """Airflow did not reach the expected state in time; the message says what and where to look."""


class AirflowCluster:
    """Start an Airflow deployment in ``home``; every component a child process on loopback ports.

    ``executor`` is ``LocalExecutor`` (SQLite in ``home`` unless ``database_url`` is given) or
    ``CeleryExecutor`` (needs ``database_url`` on PostgreSQL and ``broker_url``; starts
    ``celery_workers`` workers serving their own queue, so concurrent sessions never share tasks).
    ``extra_env`` reaches every component: the regions' ``AIRFLOW_CONN_*`` variables, the regions folder.
    ``port`` fixes the API server's port (else a free one); ``config`` overrides settings (``core__fernet_key``).
    """

    def __init__(
        self,
        home: Path,
        *,
        extra_env: dict[str, str] | None = None,
        executor: str = "LocalExecutor",
        database_url: str | None = None,
        broker_url: str | None = None,
        result_backend: str | None = None,
        celery_workers: int = 2,
        worker_concurrency: int = 4,
        parse_interval: int = 10,
        parallelism: int = 16,
        port: int | None = None,
        config: dict[str, str] | None = None,
    ) -> None:
        if executor not in ("LocalExecutor", "CeleryExecutor"):
            raise ValueError(f"unsupported executor {executor!r}")
        if executor == "CeleryExecutor" and not (database_url and broker_url):
            raise ValueError("CeleryExecutor needs database_url (PostgreSQL) and broker_url (Redis)")
        self.home = home
        self.executor = executor
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.queue = f"phone_sync_e2e_{secrets.token_hex(4)}"
        self.celery_workers = celery_workers if executor == "CeleryExecutor" else 0
        self.components: list[Component] = []
        self._token: str | None = None
        self._session = requests.Session()
        overrides = {
            "core__executor": executor,
            "core__execution_api_server_url": f"{self.url}/execution/",
            "core__simple_auth_manager_all_admins": "True",
            "core__test_connection": "Enabled",  # the connection form's Test button (POST /connections/test)
            "core__dags_are_paused_at_creation": "True",
            "core__parallelism": str(parallelism),
            "core__hostname_callable": f"{__name__}.worker_hostname",
            "core__fernet_key": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
            "api__host": "127.0.0.1",
            "api__port": str(self.port),
            "api__base_url": self.url,
            "api__workers": "1",
            "api__secret_key": secrets.token_urlsafe(32),
            "api_auth__jwt_secret": secrets.token_urlsafe(32),
            "logging__worker_log_server_port": str(free_port()),
            "logging__trigger_log_server_port": str(free_port()),
            "dag_processor__refresh_interval": "5",
            "dag_processor__min_file_process_interval": str(parse_interval),
            "scheduler__dag_stale_not_seen_duration": "600",
            "operators__default_queue": self.queue,
            "celery__worker_concurrency": str(worker_concurrency),
        }
        overrides.update(config or {})
        if database_url:
            overrides["database__sql_alchemy_conn"] = database_url
        if broker_url:
            overrides["celery__broker_url"] = broker_url
        if result_backend or database_url:
            overrides["celery__result_backend"] = result_backend or f"db+{database_url}"
        self.env = {**airflow_env(home, **overrides), **(extra_env or {})}
        self.logs = home / "process-logs"

    # --- lifecycle -------------------------------------------------------------------------------

    def _child_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        env.update(self.env)
        env.update(extra or {})
        return env

    def _run(self, name: str, argv: list[str], timeout: float) -> None:
        log = self.logs / f"{name}.log"
        with open(log, "ab") as out:
            result = subprocess.run(
                argv, env=self._child_env(), stdout=out, stderr=subprocess.STDOUT, timeout=timeout, check=False
            )
        if result.returncode:
            raise AirflowError(f"{' '.join(argv[1:4])} exited with {result.returncode}; see {log}")

    def start(self, timeout: float = 180.0) -> AirflowCluster:
        """Migrate the metadata DB, start every component, get a token."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        atexit.register(self.stop)
        airflow = [sys.executable, "-m", "airflow"]
        self._run("db-migrate", [*airflow, "db", "migrate"], timeout)
        self.components = [
            Component("api-server", [*airflow, "api-server", "--host", "127.0.0.1", "--port", str(self.port)]),
            Component("scheduler", [*airflow, "scheduler"]),
            Component("dag-processor", [*airflow, "dag-processor"]),
            Component("triggerer", [*airflow, "triggerer"]),
        ]
        for number in range(1, self.celery_workers + 1):
            name = f"worker{number}"
            self.components.append(
                Component(
                    f"celery-{name}",
                    [*airflow, "celery", "worker", "--queues", self.queue, "--celery-hostname", f"{name}@%h"],
                    {WORKER_NAME_ENV: name, "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port())},
                )
            )
        try:
            for component in self.components:
                out = open(self.logs / f"{component.name}.log", "ab")  # noqa: SIM115 (handed to the child)
                try:
                    component.process = subprocess.Popen(
                        component.argv,
                        env=self._child_env(component.env),
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        cwd=REPO_ROOT,  # workers import this module's worker_hostname from here
                        start_new_session=True,
                    )
                finally:
                    out.close()
            self._wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                health = self._session.get(f"{self.url}/api/v2/monitor/health", timeout=5).json()
                last = health
                parts = [health.get("metadatabase", {}), health.get("scheduler", {}), health.get("dag_processor", {})]
                if all(part.get("status") == "healthy" for part in parts):
                    return
            except (requests.ConnectionError, requests.Timeout, ValueError) as exc:
                last = exc
            time.sleep(1)
        raise AirflowError(
            f"Airflow at {self.url} not healthy within {timeout:.0f}s (last: {last}); logs in {self.logs}"
        )

    def _check_alive(self) -> None:
        for component in self.components:
            if component.process is not None and component.process.poll() is not None:
                raise AirflowError(
                    f"{component.name} exited with code {component.process.returncode}; "
                    f"see {self.logs / (component.name + '.log')}"
                )

    def stop(self, timeout: float = 15.0) -> None:
        """Stop what this object started: SIGTERM each pid, wait, then SIGKILL each one's process group.

        All components get SIGTERM at once and share one deadline, so a slow shutdown costs it once.
        """
        started = [c for c in self.components if c.process is not None]
        for component in started:
            assert component.process is not None
            if component.process.poll() is None:
                component.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for component in started:
            process = component.process
            assert process is not None
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
            # Children it forked (task runners, uvicorn and Celery pool workers) share its process group.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            component.process = None
        self._session.close()

    def __enter__(self) -> AirflowCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- REST API v2 -----------------------------------------------------------------------------

    @property
    def token(self) -> str:
        if self._token is None:
            response = self._session.get(f"{self.url}/auth/token", timeout=30)
            response.raise_for_status()
            self._token = response.json()["access_token"]
        return self._token

    def api(
        self, method: str, path: str, *, ok: Iterable[int] = (200, 201), prefix: str = "/api/v2", **kwargs: Any
    ) -> Any:
        """Call ``/api/v2{path}`` with the bearer token; any status outside ``ok`` raises with the body."""
        for attempt in range(2):
            response = self._session.request(
                method,
                f"{self.url}{prefix}{path}",
                headers={"Authorization": f"Bearer {self.token}"},
                timeout=60,
                **kwargs,
            )
            if response.status_code == 401 and attempt == 0:
                self._token = None  # expired: fetch a new one once
                continue
            break
        if response.status_code not in set(ok):
            raise AirflowError(f"{method} {prefix}{path} -> {response.status_code}: {response.text[:500]}")
        return response.json() if response.content else None

    def ui(self, method: str, path: str, **kwargs: Any) -> Any:
        """The UI's own endpoints (``/ui{path}``), e.g. ``/connections/hook_meta``: what the forms show."""
        return self.api(method, path, prefix="/ui", **kwargs)

    def wait_until(self, what: str, probe: Callable[[], Any], timeout: float, interval: float = 1.0) -> Any:
        """Poll ``probe`` until it returns something truthy; fail naming ``what`` and the log folder."""
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive()
            value = probe()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AirflowError(f"timed out after {timeout:.0f}s waiting for {what}; logs in {self.logs}")
            time.sleep(interval)

    def dag(self, dag_id: str) -> dict[str, Any] | None:
        return self.api("GET", f"/dags/{dag_id}", ok=(200, 404)) if dag_id else None

    def wait_for_dag(self, dag_id: str, timeout: float = 120.0) -> dict[str, Any]:
        def parsed() -> dict[str, Any] | None:
            found = self.dag(dag_id)
            return found if found and "dag_id" in found else None

        return self.wait_until(f"DAG {dag_id} to be parsed", parsed, timeout)

    def unpause(self, dag_id: str) -> None:
        self.api("PATCH", f"/dags/{dag_id}", json={"is_paused": False})

    def pause(self, dag_id: str) -> None:
        self.api("PATCH", f"/dags/{dag_id}", json={"is_paused": True})

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        """A manual run (no logical date); returns its run id."""
        body = {"logical_date": None, "conf": conf or {}}
        return self.api("POST", f"/dags/{dag_id}/dagRuns", json=body)["dag_run_id"]

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")

    def runs(self, dag_id: str, **params: Any) -> list[dict[str, Any]]:
        return self.api("GET", f"/dags/{dag_id}/dagRuns", params={"limit": 100, **params})["dag_runs"]

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 300.0) -> dict[str, Any]:
        """Wait until the run is finished (success or failed) and return it."""

        def finished() -> dict[str, Any] | None:
            found = self.run(dag_id, run_id)
            return found if found["state"] in FINISHED else None

        return self.wait_until(f"run {run_id} of {dag_id} to finish", finished, timeout, interval=2)

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """Every task instance of a run, page by page: the API answers at most ``[api] maximum_page_limit``
        (100 by default) per request, and a 100,000-row run has about 1,000."""
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances"
        found: list[dict[str, Any]] = []
        while True:
            params = {"limit": API_PAGE, "offset": len(found), "order_by": "map_index"}
            page = self.api("GET", path, params=params)["task_instances"]
            found.extend(page)
            if len(page) < API_PAGE:
                return found

    def clear_map_indexes(self, dag_id: str, run_id: str, task_id: str, map_indexes: Iterable[int]) -> list[Any]:
        """Clear only these map indexes of ``task_id`` and what depends on them, as an operator would."""
        body = {
            "dag_run_id": run_id,
            "task_ids": [[task_id, index] for index in map_indexes],
            "only_failed": False,
            "include_downstream": True,
            "dry_run": False,
        }
        return self.api("POST", f"/dags/{dag_id}/clearTaskInstances", json=body)["task_instances"]

    def clear_run(self, dag_id: str, run_id: str, *, only_failed: bool = True) -> list[Any]:
        """The run's Clear dialog: every task of the run, or (``only_failed``) only those that failed. As the UI
        does, a dry run lists the task instances (returned here), then the clear itself."""
        path = f"/dags/{dag_id}/dagRuns/{run_id}/clear"
        listed = self.api("POST", path, json={"dry_run": True, "only_failed": only_failed})["task_instances"]
        self.api("POST", path, json={"dry_run": False, "only_failed": only_failed})
        return listed

    def kill_task_process(self, ti_id: str) -> bool:
        """SIGKILL the process running task instance ``ti_id`` (titled exactly ``airflow worker -- <id>``; its
        supervisor, titled ``airflow worker -- LocalExecutor: ...``, lives on and reports the death), as a task
        killed by the kernel's OOM killer would be; False when no such process runs (the task finished)."""
        import psutil

        for process in psutil.process_iter(["cmdline"]):
            if " ".join(process.info["cmdline"] or []).strip() == f"airflow worker -- {ti_id}":
                process.kill()
                return True
        return False

    def backfill(self, dag_id: str, from_date: str, to_date: str, **options: Any) -> dict[str, Any]:
        body = {
            "dag_id": dag_id,
            "from_date": from_date,
            "to_date": to_date,
            "reprocess_behavior": "none",
            "max_active_runs": 1,
            **options,
        }
        return self.api("POST", "/backfills", json=body)

    def backfill_state(self, backfill_id: int) -> dict[str, Any]:
        return self.api("GET", f"/backfills/{backfill_id}")

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}"
        return self.api("GET", path, params={"map_index": map_index, "deserialize": True})["value"]

    # --- the UI, for the docs' screenshots ---------------------------------------------------------

    def login_url(self, ui_path: str) -> str:
        """A URL that logs a browser in (simple auth manager, all admins) and lands on ``ui_path``."""
        return f"{self.url}/auth/token/login?next={quote(self.url + ui_path, safe='')}"

    def screenshot(self, ui_path: str, out: Path, size: str = "1600,1000", budget_ms: int = 15000) -> Path:
        """Headless Chromium screenshot of a UI page (``/dags/<id>/runs/<run>``), logged in as the UI does."""
        chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        if chromium is None:
            raise AirflowError("no chromium on PATH: apt-get install -y chromium")
        out.parent.mkdir(parents=True, exist_ok=True)
        login = self.login_url(ui_path)
        argv = [
            chromium,
            "--headless",
            "--no-sandbox",  # root in CI containers
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={self.home / 'chromium-profile'}",
            f"--window-size={size}",
            f"--virtual-time-budget={budget_ms}",
            f"--screenshot={out}",
            login,
        ]
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
        return out
