"""An Airflow listener that profiles each task process of the benchmark's scheduler: where its time goes.

Loaded only by the benchmark's Airflow (a plugin in its temporary plugins folder); the pipeline code
is untouched. When a task ends it appends one JSON line to ``$BENCH_TASK_FILE``: peak RSS
(``VmHWM``), CPU seconds, and the seconds of each phase, measured inside the real task process:

=============  ==========================================================================================
``start``      the process forked -> the task runner calls its listeners (comms, plugins loaded)
``parse``      the DAG file parsed (``phone_sync.dag_factory``, the region file, its imports)
``prepare``    templates rendered, rendered fields sent, the mapped input read (minus what is listed below)
``imports``    the modules the task body imports, imported here first and timed one by one (the task's
               own ``import`` then finds them loaded: the same cost, moved and named)
``xcom_read``  round trips to the supervisor for XCom values (``GetXCom*``), in prepare and in the task
``xcom_write`` ``SetXCom`` round trips inside the task (side XComs); the return value's push is ``push``
``unseal``     ``Sealer.open_json`` and ``Contract._opened`` (open + validate); ``seal``: ``Sealer.seal_json``
               (serialise + seal)
``http_*``     requests on the wire (``requests.Session.send``): ``fhir``, ``token``, ``sheets``
``pacing``     ``RateLimiter.acquire`` waits (the region's request rate, shared by parallel batches)
``work``       the task callable minus all of the above: the work itself
``push``       the return value's XCom push: serialising it (``push``) and the round trip (``push_comms``)
``finish``     the round trip that reports the task's success to the supervisor (which calls the API)
=============  ==========================================================================================

``start`` holds the fork, the supervisor telling the task server-side that it started (an API call)
and sending the startup message, and the plugins loading.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from airflow.listeners import hookimpl

from bench.procstats import cpu_seconds, peak_rss_mib

REGION_DAG_PREFIX = "phone_sync__"
TASK_IMPORTS: dict[str, tuple[str, ...]] = {
    "extract_rows": ("phone_sync.pipeline.tasks", "phone_sync.sheets.rows", "phone_sync.sheets.hook"),
    "clean_phones": ("phone_sync.pipeline.tasks", "phonenumbers metadata"),
    "process_batch": ("phone_sync.pipeline.tasks", "phone_sync.fhir.client", "phone_sync.fhir.hook",
                      "phone_sync.pipeline.progress", "phone_sync.sheets.progress", "fhir.resources.R4B.patient",
                      "phonenumbers metadata"),
    "write_back_statuses": ("phone_sync.pipeline.tasks", "phone_sync.sheets.statuses", "phone_sync.sheets.hook"),
    "run_report": ("phone_sync.pipeline.tasks", "phone_sync.sheets.report", "phone_sync.sheets.hook"),
}
XCOM_READS = ("GetXCom", "GetXComCount", "GetXComSequenceItem", "GetXComSequenceSlice")

_phase = "start"
_seconds: dict[str, float] = defaultdict(float)
_calls: dict[str, int] = defaultdict(int)
_imports: dict[str, float] = {}
_marks: dict[str, float] = {}
_in_runner = False


def _add(key: str, seconds: float) -> None:
    _seconds[key] += seconds
    _calls[key] += 1


def _timed(key: str | Callable[..., str], fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` with its wall time added to ``key`` (or to ``key(*args)``)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started, began = time.perf_counter(), time.time()
        try:
            return fn(*args, **kwargs)
        finally:
            name = key if isinstance(key, str) else key(*args, **kwargs)
            _add(name, time.perf_counter() - started)
            if name.startswith("http_"):  # when the process first and last talked to each server
                _marks.setdefault(f"{name}:first", began)
                _marks[f"{name}:last"] = time.time()

    return wrapper


def _phased(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` as a phase: its wall time under ``name``, and the comms it sends counted in it."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        global _phase
        _phase = name
        try:
            return _timed(name, fn)(*args, **kwargs)
        finally:
            _phase = f"after_{name}"

    return wrapper


def _message_key(comms: Any, msg: Any) -> str:
    """A supervisor message by kind (most become an API call): ``message:GetXCom``."""
    return f"message:{type(msg).__name__}"


def _comms_key(comms: Any, msg: Any) -> str:
    kind = type(msg).__name__
    if kind in XCOM_READS:
        return f"xcom_read:{_phase}"
    if kind == "SetXCom":
        return f"xcom_write:{_phase}"
    return f"comms_other:{_phase}"


def _http_key(session: Any, request: Any, **kwargs: Any) -> str:
    url = str(getattr(request, "url", ""))
    if urlsplit(url).path.endswith("/oauth2/token"):
        return "http_token"
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(url))
    for name in ("fhir", "sheets"):
        if origin and os.environ.get(f"BENCH_{name.upper()}_URL", "").startswith(origin):
            return f"http_{name}"
    return "http_other"


def _install_runner_timers() -> None:
    """Wrap the task runner's phases (module globals it calls by name) and the supervisor comms."""
    from airflow.sdk.execution_time import comms, task_runner

    task_runner.parse = _phased("parse", task_runner.parse)
    task_runner._prepare = _phased("prepare", task_runner._prepare)
    task_runner._execute_task = _phased("execute", task_runner._execute_task)
    task_runner._push_xcom_if_needed = _phased("push", task_runner._push_xcom_if_needed)
    comms.CommsDecoder.send = _timed(_comms_key, _timed(_message_key, comms.CommsDecoder.send))


def _install_work_timers() -> None:
    """After the DAG file is parsed (these modules are loaded by then): sealing, HTTP, pacing."""
    import requests

    from phone_sync.contracts import Contract
    from phone_sync.crypto import Sealer
    from phone_sync.http.pacing import RateLimiter

    # The primitives: contracts call them directly, and seal/open go through them. A contract's sealed lines are
    # opened and validated one at a time (``Contract._opened``): the two are timed together.
    Sealer.seal_json = _timed("seal", Sealer.seal_json)
    Sealer.open_json = _timed("unseal", Sealer.open_json)
    Contract._opened = classmethod(_timed("unseal", Contract._opened.__func__))  # type: ignore[method-assign]
    requests.Session.send = _timed(_http_key, requests.Session.send)
    RateLimiter.acquire = _timed("pacing", RateLimiter.acquire)


def _import(name: str) -> None:
    if name == "phonenumbers metadata":
        import phonenumbers

        phonenumbers.parse("081234567890", "ID")  # loads the region's metadata, as the first real parse would
    else:
        __import__(name)


@hookimpl
def on_starting(component: Any) -> None:
    global _in_runner
    if type(component).__name__ != "TaskRunnerMarker":
        return
    _in_runner = True
    _marks["starting"] = time.time()
    _install_runner_timers()


@hookimpl
def on_task_instance_running(previous_state: Any, task_instance: Any) -> None:
    if not _in_runner:
        return
    _install_work_timers()
    if not task_instance.dag_id.startswith(REGION_DAG_PREFIX):
        return
    for name in TASK_IMPORTS.get(task_instance.task_id, ()):
        started = time.perf_counter()
        _import(name)
        _imports[name] = round(time.perf_counter() - started, 4)


def _profile() -> dict[str, float]:
    """Seconds per phase; each phase's own figure is what is left after the parts measured inside it."""
    seconds = dict(_seconds)
    got = seconds.get
    imports = sum(_imports.values())
    http = {key: round(value, 4) for key, value in seconds.items() if key.startswith("http_")}
    inside = got("unseal", 0) + got("seal", 0) + got("pacing", 0) + sum(http.values())
    profile = {
        "parse": got("parse", 0) - got("xcom_read:parse", 0) - got("comms_other:parse", 0),
        "prepare": got("prepare", 0) - imports - got("xcom_read:prepare", 0) - got("comms_other:prepare", 0),
        "imports": imports,
        "xcom_read": got("xcom_read:prepare", 0) + got("xcom_read:execute", 0) + got("xcom_read:parse", 0),
        "xcom_write": got("xcom_write:execute", 0),
        "comms_other": sum(v for k, v in seconds.items() if k.startswith("comms_other:")
                           and k.split(":")[1] not in ("push", "after_push")),
        "unseal": got("unseal", 0),
        "seal": got("seal", 0),
        **http,
        "pacing": got("pacing", 0),
        "work": got("execute", 0) - got("xcom_read:execute", 0) - got("xcom_write:execute", 0)
        - got("comms_other:execute", 0) - inside,
        "push": got("push", 0) - got("xcom_write:push", 0) - got("comms_other:push", 0),
        "push_comms": got("xcom_write:push", 0) + got("comms_other:push", 0),
        "finish": got("comms_other:after_push", 0),
    }
    return {key: round(value, 4) for key, value in profile.items()}


def _record(task_instance: Any, state: str) -> None:
    path = os.environ.get("BENCH_TASK_FILE")
    if not path or not _in_runner:
        return
    import psutil

    now = time.time()
    created = psutil.Process().create_time()
    map_index = getattr(task_instance, "map_index", -1)
    line: dict[str, Any] = {
        "dag_id": task_instance.dag_id,
        "task_id": task_instance.task_id,
        "map_index": map_index,
        "state": state,
        "pid": os.getpid(),
        "ru_maxrss_mib": round(peak_rss_mib(), 1),
        "cpu_seconds": round(cpu_seconds(), 3),
        "in_process_seconds": round(now - created, 3),
        "start": round(_marks.get("starting", created) - created, 4),
        "http_windows": {key.removesuffix(":first"): [at, _marks[key.replace(":first", ":last")]]
                         for key, at in _marks.items() if key.endswith(":first")},
        "profile": _profile(),
        "imports": dict(_imports),
        "messages": {key.removeprefix("message:"): n for key, n in _calls.items() if key.startswith("message:")},
        "message_seconds": {key.removeprefix("message:"): round(seconds, 4) for key, seconds in _seconds.items()
                            if key.startswith("message:")},
        "calls": {key: _calls[key] for key in ("unseal", "seal", "pacing", "http_fhir", "http_token", "http_sheets")
                  if _calls.get(key)},
    }
    if map_index is None or map_index <= 0:
        line["modules"] = sorted(sys.modules)
    with open(path, "a") as out:
        out.write(json.dumps(line) + "\n")


@hookimpl
def on_task_instance_success(previous_state: Any, task_instance: Any) -> None:
    _record(task_instance, "success")


@hookimpl
def on_task_instance_failed(previous_state: Any, task_instance: Any, error: Any) -> None:
    _record(task_instance, "failed")
