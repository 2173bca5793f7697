"""An Airflow listener that records each task process's peak RSS (``VmHWM``) when it ends.

Loaded only by the benchmark's scheduler (a plugin in its temporary plugins folder); the
pipeline code is untouched. One JSON line per task instance in ``$BENCH_RSS_FILE``.
"""

from __future__ import annotations

import json
import os
import resource
from typing import Any

from airflow.listeners import hookimpl


def peak_rss_mib() -> float:
    """``VmHWM``: peak RSS of this process's address space (a forked task counts what it shares)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _record(task_instance: Any, state: str) -> None:
    path = os.environ.get("BENCH_RSS_FILE")
    if not path:
        return
    line = {
        "dag_id": task_instance.dag_id,
        "task_id": task_instance.task_id,
        "map_index": getattr(task_instance, "map_index", -1),
        "state": state,
        "pid": os.getpid(),
        "ru_maxrss_mib": round(peak_rss_mib(), 1),
    }
    with open(path, "a") as out:
        out.write(json.dumps(line) + "\n")


@hookimpl
def on_task_instance_success(previous_state: Any, task_instance: Any) -> None:
    _record(task_instance, "success")


@hookimpl
def on_task_instance_failed(previous_state: Any, task_instance: Any, error: Any) -> None:
    _record(task_instance, "failed")
