"""What a mapped batch's task process imports, what it costs, and what of it a batch does not need.

``task_like`` replays, under ``python -X importtime``, what a ``process_batch`` task process imports
after the task runner (which its supervisor forked it with): the DAG file, then the task module, then
what ``process_batch`` imports itself, then the FHIR validation models and the phone metadata it loads
on first use. Each step's import time is split by top-level package.

``marginal`` starts from a process that already holds what a batch needs, then times one import of a
group a batch does not need: what deleting that group from a batch process would save.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from localservers.airflow_env import REPO_ROOT

RUNNER = "airflow.sdk.execution_time.task_runner"
STEPS: list[tuple[str, str]] = [
    ("DAG file (phone_sync.dag_factory, the region file)",
     "from phone_sync.dag_factory import build_all; build_all()"),
    ("phone_sync.pipeline.tasks", "import phone_sync.pipeline.tasks"),
    ("process_batch's own imports (fhir.client, fhir.hook)",
     "import phone_sync.fhir.client, phone_sync.fhir.hook"),
    ("fhir.resources R4B Patient (first validation)", "import fhir.resources.R4B.patient"),
    ("phonenumbers metadata for ID (first parse)", "import phonenumbers; phonenumbers.parse('081234567890', 'ID')"),
]
# What a batch needs beyond the task runner: its contracts, sealing, the FHIR client and hook, logging.
BATCH_NEEDS = (
    "airflow.sdk", "phone_sync.config", "phone_sync.contracts", "phone_sync.crypto", "phone_sync.errors",
    "phone_sync.outcomes", "phone_sync.pipeline.step_log", "phone_sync.redaction",
    "phone_sync.fhir.client", "phone_sync.fhir.hook", "fhir.resources.R4B.patient", "phonenumbers",
)
# Groups a batch process does not need, each by the module prefixes that make it up.
UNNEEDED: list[tuple[str, tuple[str, ...]]] = [
    ("gspread + google-auth + googleapiclient (Sheets client)", ("gspread", "google.auth", "google.oauth2",
                                                                  "googleapiclient", "google_auth_httplib2")),
    ("Google provider (airflow.providers.google)", ("airflow.providers.google",)),
    ("phone_sync.sheets (hook, rows, statuses, report)", ("phone_sync.sheets",)),
    ("phone_sync.alerts (dispatch, rules, message, notifiers)", ("phone_sync.alerts",)),
    ("HTTP provider (airflow.providers.http, the alert webhook's HttpHook)", ("airflow.providers.http",)),
    ("SMTP provider (email alerts)", ("airflow.providers.smtp",)),
    ("Celery provider", ("airflow.providers.celery", "celery", "kombu")),
    ("other Airflow providers", ("airflow.providers",)),
    ("Airflow notifier base (airflow.sdk.bases.notifier)", ("airflow.sdk.bases.notifier",)),
    ("phone_sync.report", ("phone_sync.report",)),
    ("phone_sync.links", ("phone_sync.links",)),
    ("other tasks' pipeline modules (batching, selection, collect)",
     ("phone_sync.pipeline.batching", "phone_sync.pipeline.selection", "phone_sync.pipeline.collect")),
    ("croniter", ("croniter",)),
]


def members(modules: set[str], prefixes: tuple[str, ...], taken: set[str]) -> list[str]:
    """The loaded modules under ``prefixes`` not claimed by an earlier group."""
    return sorted(m for m in modules if m not in taken and any(m == p or m.startswith(p + ".") for p in prefixes))


def _python(code: str, env: dict[str, str], *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *flags, "-c", code], env={**os.environ, **env}, cwd=REPO_ROOT,
                          capture_output=True, text=True, check=True, timeout=300)


def task_like(env: dict[str, str]) -> dict[str, Any]:
    """Each step's import time, split by top-level package; and the modules the process ends with."""
    lines = [f"import sys, {RUNNER}", "sys.stderr.write('@@ step runner\\n')"]
    for number, (_, code) in enumerate(STEPS):
        lines += [code, f"sys.stderr.write('@@ step {number}\\n')"]
    lines.append("import json; print(json.dumps(sorted(sys.modules)))")
    done = _python("\n".join(lines), env, "-X", "importtime")
    steps: list[dict[str, Any]] = []
    current: dict[str, float] | None = None
    for line in done.stderr.splitlines():
        if line.startswith("@@ step "):
            which = line.split()[-1]
            if current is not None:
                name = STEPS[int(which)][0]
                steps.append({"step": name, "seconds": round(sum(current.values()), 3),
                              "by_package": dict(sorted(((k, round(v, 3)) for k, v in current.items()),
                                                        key=lambda kv: -kv[1])[:6])})
            current = defaultdict(float)
        elif current is not None and line.startswith("import time:") and "|" in line:
            self_us, _cumulative, module = line[len("import time:"):].split("|")
            if self_us.strip().isdigit():
                current[_group(module.strip())] += int(self_us) / 1e6
    return {"steps": steps, "modules": json.loads(done.stdout)}


def _group(module: str) -> str:
    parts = module.split(".")
    if parts[0] in ("airflow", "phone_sync", "google", "fhir") and len(parts) > 1:
        depth = 3 if parts[:2] == ["airflow", "providers"] else 2
        return ".".join(parts[:depth])
    return parts[0]


def marginal(env: dict[str, str], modules: list[str], repeats: int) -> dict[str, float]:
    """Seconds and MiB importing ``modules`` adds to a process that already holds what a batch needs
    (best of ``repeats``)."""
    probe = "\n".join([
        "import importlib, json, time",
        f"import {RUNNER}",
        *(f"import {name}" for name in BATCH_NEEDS),
        "from bench.procstats import current_rss_mib",
        "rss, started = current_rss_mib(), time.perf_counter()",
        f"for name in {modules!r}:",
        "    try:",
        "        importlib.import_module(name)",
        "    except Exception:",  # a vendored or platform-only submodule: the rest still counts
        "        pass",
        "print(json.dumps({'seconds': time.perf_counter() - started, 'mib': current_rss_mib() - rss}))",
    ])
    runs = [json.loads(_python(probe, env).stdout.splitlines()[-1]) for _ in range(repeats)]
    return {"seconds": round(min(r["seconds"] for r in runs), 3), "mib": round(min(r["mib"] for r in runs), 1)}


def profile_imports(regions_dir: Path, env: dict[str, str], repeats: int = 3,
                    batch_modules: list[str] | None = None) -> dict[str, Any]:
    """The task-like import steps, and every unneeded group a batch process loads with its marginal cost.

    ``batch_modules``: what a real batch process held (the scheduler stage's listener); else the replay's.
    """
    env = {**env, "PHONE_SYNC_REGIONS_DIR": str(regions_dir)}
    replay = task_like(env)
    loaded = set(batch_modules or replay["modules"])
    taken: set[str] = set()
    unneeded = []
    for name, prefixes in UNNEEDED:
        found = members(loaded, prefixes, taken)
        if found:
            taken.update(found)
            unneeded.append({"group": name, "modules": len(found), "examples": found[:4],
                             **marginal(env, found, repeats)})
    return {"steps": replay["steps"], "unneeded": unneeded, "modules": replay["modules"],
            "source": "a real process_batch task process" if batch_modules else "the task-like replay"}
