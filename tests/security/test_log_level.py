"""Local Airflow homes (the demo, ``make standalone``, the tests, the benchmark) never log at DEBUG.

At DEBUG, Airflow 3.3's in-process supervisor (``dag.test()``, ``airflow dags test``) logs every secret it is
asked to mask, in clear: the FHIR token, the PHI key. A shell that exports DEBUG must not carry that into them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SHOW_LEVEL = """
import os, sys
from pathlib import Path
from localservers.airflow_env import airflow_env
os.environ.update(airflow_env(Path(sys.argv[1])))  # as localservers.demo and the test session do
from airflow.configuration import conf
print(conf.get("logging", "logging_level"))
"""


def test_a_shell_that_exports_debug_does_not_make_a_local_airflow_home_log_at_debug(tmp_path: Path) -> None:
    env = {**os.environ, "AIRFLOW__LOGGING__LOGGING_LEVEL": "DEBUG"}
    shown = subprocess.run(
        [sys.executable, "-c", SHOW_LEVEL, str(tmp_path)], env=env, capture_output=True, text=True, check=True
    )
    assert shown.stdout.strip() == "INFO"
