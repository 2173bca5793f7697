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


OLD_DOCKERFILE = """FROM apache/airflow:3.3.2
USER airflow
COPY --chown=airflow:root requirements.txt /opt/phone-sync/requirements.txt
COPY --chown=airflow:root pyproject.toml README.md /opt/phone-sync/src-dist/
ENV PYTHONPATH=/opt/airflow
RUN pip install --no-cache-dir "apache-airflow==3.3.2" -r /opt/phone-sync/requirements.txt \\
    && pip install --no-cache-dir --no-deps /opt/phone-sync/src-dist
"""


def test_dockerfile_installs_the_project_with_airflows_constraints() -> None:
    text = (ROOT / "docker" / "Dockerfile").read_text(encoding="utf-8")
    assert '--constraint "${HOME}/constraints.txt"' in text
    assert "requirements" not in text.replace("requirements.lock is for .venv and CI", "")
    assert checker._check_dockerfile("airflow", ROOT / "docker" / "Dockerfile", ROOT) == []


def test_checker_catches_a_dockerfile_that_moves_airflows_pins(tmp_path: Path) -> None:
    """The old shape: the whole freeze over the image, no constraints, the project without its dependencies."""
    (tmp_path / "requirements.txt").write_text("apache-airflow==3.3.2\n")
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "README.md").write_text("")
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(OLD_DOCKERFILE)
    problems = "\n".join(checker._check_dockerfile("airflow", dockerfile, tmp_path))
    assert "pip install without Airflow's constraints" in problems
    assert "pip install of a requirements file" in problems
    assert "sets PYTHONPATH" in problems
    assert "does not name apache-airflow==3.3.2" in problems  # the second install
    fixed = OLD_DOCKERFILE.replace("-r /opt/phone-sync/requirements.txt", '--constraint "${HOME}/constraints.txt"')
    fixed = fixed.replace("--no-deps /opt/phone-sync/src-dist", '-c "${HOME}/constraints.txt" /opt/phone-sync/src-dist')
    dockerfile.write_text(fixed.replace("ENV PYTHONPATH=/opt/airflow\n", ""))
    remaining = checker._check_dockerfile("airflow", dockerfile, tmp_path)
    assert remaining == [
        "airflow: pip install without Airflow's constraints (${HOME}/constraints.txt)",
        "airflow: pip install does not name apache-airflow==3.3.2, so it may move Airflow",
    ]


def test_checker_refuses_pythonpath_outside_the_dev_tooling() -> None:
    config = copy.deepcopy(checker.yaml_config())
    scheduler = config["services"]["airflow-scheduler"]
    scheduler["environment"] = {**scheduler["environment"], "PYTHONPATH": "/opt/airflow/plugins"}  # not the anchor's
    assert checker.check(config) == [
        "airflow-scheduler: sets PYTHONPATH (the phone_sync package is installed in the image)"
    ]


def test_checker_catches_an_env_example_without_the_phi_key_and_an_init_that_does_not_check(tmp_path: Path) -> None:
    example = tmp_path / ".env.example"
    text = (ROOT / "docker" / ".env.example").read_text(encoding="utf-8")
    example.write_text("\n".join(line for line in text.splitlines() if "PHONE_SYNC_PHI_KEY" not in line))
    init = tmp_path / "init.sh"
    init.write_text("airflow db migrate\npython -m phone_sync.check_regions || true\n")
    problems = checker.check_env_example(example, init)
    assert "no AIRFLOW_CONN_PHONE_SYNC_PHI_KEY for region demo" in "\n".join(problems)
    assert "init.sh does not run phone-sync-check-regions --connections" in problems
