"""docker-compose.yaml: valid Compose (``docker compose config``), and every service's command, build
file and mount points at something that exists in this repository. Fast: no Docker engine needed.
"""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load_checker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_compose", ROOT / "docker" / "check_compose.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


checker = _load_checker()
needs_compose = pytest.mark.skipif(
    not checker.compose_available(),
    reason="the `docker compose` client plugin is not installed (.ci/run installs it); YAML checks still run",
)


@needs_compose
@pytest.mark.parametrize("env_file", [None, ROOT / "docker" / ".env.example"], ids=["no-env", "env-example"])
def test_docker_compose_config_passes_and_points_at_real_files(env_file: Path | None) -> None:
    config = checker.docker_config(env_file)
    assert checker.check(config) == []
    worker = config["services"]["airflow-worker"]
    assert worker["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert {"demo", "hapi"} <= {p for s in config["services"].values() for p in s.get("profiles", [])}


def test_compose_yaml_points_at_real_files() -> None:
    assert checker.check(checker.yaml_config()) == []


def test_env_example_names_every_regions_connections() -> None:
    assert checker.check_env_example() == []


def test_checker_catches_a_missing_mount_and_script() -> None:
    config = copy.deepcopy(checker.yaml_config())
    init = config["services"]["airflow-init"]
    init["command"] = ["/opt/phone-sync/docker/no_such_init.sh"]
    init["volumes"] = [v.replace("./include", "./no_such_folder") for v in init["volumes"]]
    config["services"]["airflow-scheduler"]["command"] = "schedulr"
    del config["services"]["redis"]
    problems = "\n".join(checker.check(config))
    assert "no_such_init.sh" in problems
    assert "no_such_folder does not exist" in problems
    assert "'schedulr' is not an airflow component command" in problems
    assert "missing service redis" in problems
