"""This process's memory and CPU, from ``/proc`` and ``getrusage``: standard library only.

Imported by the benchmark's children and by the listener that task processes load, so it must
never import Airflow (whose settings are read once, at its first import).
"""

from __future__ import annotations

import os
import resource

MIB = 2**20


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


def current_rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MIB


def cpu_seconds() -> float:
    """User + system CPU this process has used (a forked child counts from its fork)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
